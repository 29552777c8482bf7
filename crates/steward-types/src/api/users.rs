//! Users, API tokens and who the caller is.

use serde::{Deserialize, Serialize};

use super::{Role, Timestamp};
use crate::ids::{TokenId, UserId};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub role: Role,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub role: Role,
}

/// An API token as listed: the secret is never shown again after creation.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Token {
    pub id: TokenId,
    pub name: String,
    pub user: String,
    /// The first characters of the secret, to recognize it.
    pub prefix: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    pub name: String,
    /// The user the token belongs to (name or ID); the caller when absent. Only administrators may name another user.
    #[serde(default)]
    pub user: Option<String>,
    /// Lifetime such as `30d` or `12h`; the token does not expire when absent.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// The answer to creating a token: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub token: Token,
    pub secret: String,
}

/// `GET /api/v1/whoami`: the caller as the server sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub user: String,
    pub role: Role,
    pub token: String,
}
