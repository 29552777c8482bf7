//! Request and response bodies of the REST API, one module per resource, with their OpenAPI schemas.
//!
//! Request types deny unknown fields so that a misspelt field is an error, not silently ignored.

pub mod audit;
pub mod complexes;
pub mod enrollment;
pub mod event_actions;
pub mod events;
pub mod files;
pub mod groups;
pub mod hosts;
pub mod jobs;
pub mod monitors;
pub mod networks;
pub mod operations;
pub mod os_templates;
pub mod packages;
pub mod server_templates;
pub mod sessions;
pub mod system_admin;
pub mod systems;
pub mod users;
pub mod virtual_servers;

use serde::{Deserialize, Serialize};

/// A point in time, shown as RFC 3339 in UTC (`2026-11-25T09:30:00.123Z`), stored as Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Self((time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_seconds(self, seconds: u64) -> Self {
        Self(self.0.saturating_add((seconds as i64).saturating_mul(1000)))
    }

    pub fn to_rfc3339(self) -> String {
        let Ok(at) = time::OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000) else {
            return self.0.to_string();
        };
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        at.format(&format).unwrap_or_else(|_| self.0.to_string())
    }

    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
        Some(Self((at.unix_timestamp_nanos() / 1_000_000) as i64))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 timestamp")))
    }
}

/// One page of a list. Pass `next` back as `after` to get the following page; `null` means this was the last.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Paging parameters every list endpoint takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many items (1 to 1000, default 100).
    pub limit: Option<u32>,
    /// The `next` value of the previous page.
    pub after: Option<String>,
}

/// The default and largest page sizes.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// What a role may do: viewers read, operators also act on systems and groups, administrators also manage users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Administrator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Administrator => "administrator",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "administrator" => Some(Role::Administrator),
            _ => None,
        }
    }
}

/// `GET /api/v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` when the store answers.
    pub status: String,
    pub version: String,
}
