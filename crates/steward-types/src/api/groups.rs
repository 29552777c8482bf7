//! Static and dynamic groups of systems.

use serde::{Deserialize, Serialize};

use super::Timestamp;
use crate::ids::GroupId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// Members are added and removed by hand.
    Static,
    /// Members are the systems whose inventory matches the query, kept current as inventories change.
    Dynamic,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    pub kind: GroupKind,
    pub description: String,
    /// The query of a dynamic group.
    pub query: Option<String>,
    pub member_count: u64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupCreate {
    pub name: String,
    /// Makes the group dynamic.
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    /// A new query (dynamic groups only).
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Systems to add to or remove from a static group, by name or ID.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMembersChange {
    pub systems: Vec<String>,
}
