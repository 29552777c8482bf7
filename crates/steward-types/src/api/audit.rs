//! The audit trail: one record per mutating API call.

use serde::{Deserialize, Serialize};

use super::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Success,
    Failure,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    pub at: Timestamp,
    /// The user who made the call (`agent:<system>` for agent enrollment).
    pub actor: String,
    /// What was done, as `<resource>.<verb>` (`group.create`).
    pub action: String,
    /// The object acted on, by name where it has one.
    pub target: String,
    pub outcome: AuditOutcome,
    /// The request's non-secret fields, and on failure the error.
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditListQuery {
    pub limit: Option<u32>,
    pub after: Option<String>,
    /// Only records by this user.
    pub actor: Option<String>,
    /// Only records whose action starts with this (`group.` or `group.create`).
    pub action: Option<String>,
}
