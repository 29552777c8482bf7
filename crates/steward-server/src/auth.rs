//! Authentication of API requests (bearer tokens) and the role rules.
//!
//! | role          | may                                                                                       |
//! |---------------|-------------------------------------------------------------------------------------------|
//! | viewer        | read everything except other users' tokens                                                |
//! | operator      | also enroll, delete and run commands on systems, manage groups, create its own API tokens |
//! | administrator | also manage users and everybody's tokens                                                  |

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use steward_types::api::users::User;
use steward_types::api::{Role, Timestamp};
use steward_types::{ErrorCode, TokenId};

use crate::error::ApiError;
use crate::state::AppState;

/// Who is calling: resolved from the `Authorization: Bearer` header of every API request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub token_id: TokenId,
    pub token_name: String,
}

impl Caller {
    /// Refuses the call unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.user.role >= role {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this needs the {} role; user {:?} is {}",
                    role.as_str(),
                    self.user.name,
                    self.user.role.as_str()
                ),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("this request needs an `Authorization: Bearer <token>` header"))?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|secret| !secret.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must have the form `Bearer <token>`"))?;
        let mut conn = state.store.conn().await?;
        let owner = steward_store::users::token_owner_by_hash(&mut conn, &crate::secrets::hash(secret))
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token is not known (it may have been deleted)"))?;
        let now = Timestamp::now();
        if owner.expires_at.is_some_and(|expires| expires <= now) {
            return Err(ApiError::unauthorized(format!("the token {:?} has expired", owner.token_name)));
        }
        drop(conn);
        let stale = owner
            .last_used_at
            .is_none_or(|used| used.millis() < now.millis() - steward_store::users::TOKEN_TOUCH_INTERVAL_MS);
        if stale {
            // Off the request path: a read must never wait for the write lock.
            let store = state.store.clone();
            let token = owner.token_id;
            tokio::spawn(async move {
                let result = async {
                    let mut tx = store.begin().await?;
                    steward_store::users::token_touch(&mut tx, token, now).await?;
                    tx.commit().await
                }
                .await;
                if let Err(error) = result {
                    tracing::debug!(error = %crate::error_chain(&error), "cannot record a token's last use");
                }
            });
        }
        Ok(Caller { user: owner.user, token_id: owner.token_id, token_name: owner.token_name })
    }
}
