//! Managed systems and their inventory.

use serde::{Deserialize, Serialize};
use steward_protocol::Inventory;

use super::Timestamp;
use crate::ids::SystemId;

/// Whether the system's agent is connected right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SystemState {
    Online,
    Offline,
}

impl SystemState {
    pub fn as_str(self) -> &'static str {
        match self {
            SystemState::Online => "online",
            SystemState::Offline => "offline",
        }
    }
}

/// A system as listed: the identifying facts without the full inventory.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SystemSummary {
    pub id: SystemId,
    pub name: String,
    pub state: SystemState,
    pub hostname: String,
    /// `PRETTY_NAME` of os-release.
    pub os: String,
    pub arch: String,
    pub agent_version: String,
    pub enrolled_at: Timestamp,
    /// When the agent last connected or sent anything.
    pub last_contact_at: Option<Timestamp>,
}

/// A system with its whole inventory (`null` until the agent first reported it).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SystemDetail {
    #[serde(flatten)]
    pub summary: SystemSummary,
    pub inventory: Option<Inventory>,
    pub inventory_updated_at: Option<Timestamp>,
    /// Names of the groups the system is a member of.
    pub groups: Vec<String>,
}

/// Filters of `GET /api/v1/systems`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SystemListQuery {
    pub limit: Option<u32>,
    pub after: Option<String>,
    /// Only members of this group (name or ID).
    pub group: Option<String>,
    /// Only systems in this state.
    pub state: Option<SystemState>,
    /// Only systems whose inventory matches this query (the group query language). This evaluates the query
    /// over the whole fleet at each call; for a filter used often, create a dynamic group.
    pub query: Option<String>,
}

/// One entry of a system's inventory history.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InventoryChange {
    pub at: Timestamp,
    /// Sections that changed (`host`, `filesystems`, `packages`, ...) or `full` for a whole report.
    pub sections: Vec<String>,
    /// The patch as the agent sent it (for a full report, a summary).
    pub change: serde_json::Value,
}
