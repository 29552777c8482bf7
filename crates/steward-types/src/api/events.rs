//! Events: things that happened and that someone may want to act on (a complex member deviating from its
//! complex, later monitors, agents going offline ...). Stored, listed newest first.

use serde::{Deserialize, Serialize};

use super::Timestamp;
use crate::ids::{EventId, SystemId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Info, Self::Warning, Self::Critical].into_iter().find(|severity| severity.as_str() == text)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: EventId,
    /// For example `complex.deviation`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub severity: Severity,
    /// What the event is about: its kind (`complex`, `system`, ...) and name.
    pub source_kind: String,
    pub source: String,
    /// The system the event is about, when it is about one (maintenance windows and the system and group
    /// filters of event action plans look at it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<SystemId>,
    pub message: String,
    pub details: serde_json::Value,
    pub created_at: Timestamp,
}

/// Filters of `GET /api/v1/events` (with the usual paging).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events of this type.
    #[serde(default, rename = "type")]
    pub event_type: Option<String>,
    /// Only events about this source (its name).
    #[serde(default)]
    pub source: Option<String>,
    /// At most this many events (1 to 1000, default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next` value of the previous page.
    #[serde(default)]
    pub after: Option<String>,
}
