//! First start: the administrator `admin` and its token, written to `DATA/admin-token` (mode 0600).
//!
//! The token file is written before the user is committed, so a crash in between leaves at worst a file
//! whose token does not work yet; the next start, finding no users, writes a new one.

use std::path::Path;

use steward_store::Store;
use steward_store::audit::NewAuditRecord;
use steward_types::api::audit::AuditOutcome;
use steward_types::api::users::{Token, User};
use steward_types::api::{Role, Timestamp};
use steward_types::{TokenId, UserId};

use crate::{StartError, pki, secrets};

/// Creates the first administrator if there are no users; true if it did.
pub async fn first_administrator(store: &Store, token_path: &Path) -> Result<bool, StartError> {
    let mut tx = store.begin().await?;
    if steward_store::users::user_count(&mut tx).await? > 0 {
        return Ok(false);
    }
    let now = Timestamp::now();
    let user = User { id: UserId::new(), name: "admin".into(), role: Role::Administrator, created_at: now };
    let secret = secrets::generate(secrets::API_TOKEN_PREFIX);
    let token = Token {
        id: TokenId::new(),
        name: "initial".into(),
        user: user.name.clone(),
        prefix: secrets::display_prefix(&secret),
        created_at: now,
        expires_at: None,
        last_used_at: None,
    };
    steward_store::users::user_insert(&mut tx, &user).await?;
    steward_store::users::token_insert(&mut tx, &token, user.id, &secrets::hash(&secret)).await?;
    steward_store::audit::insert(
        &mut tx,
        &NewAuditRecord {
            at: now,
            actor: "steward".into(),
            action: "user.create".into(),
            target: user.name.clone(),
            outcome: AuditOutcome::Success,
            details: serde_json::json!({ "role": "administrator", "reason": "first start", "token_file": token_path }),
        },
    )
    .await?;
    pki::write_private(token_path, format!("{secret}\n").as_bytes())
        .map_err(|source| StartError::Write { path: token_path.to_path_buf(), source })?;
    tx.commit().await?;
    Ok(true)
}
