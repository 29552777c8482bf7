//! Writing the audit trail: every mutating API call ends through [`finish`], which records the outcome in the
//! same transaction as the change (success) or, after rolling the change back, in a transaction of its own
//! (failure). So a change is never without its record, and a failed attempt is recorded too.

use steward_store::Transaction;
use steward_store::audit::NewAuditRecord;
use steward_types::api::Timestamp;
use steward_types::api::audit::AuditOutcome;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What is being done, for the audit record. `details` must never hold a secret.
pub struct AuditEntry {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub details: serde_json::Value,
}

impl AuditEntry {
    pub fn new(actor: &str, action: &'static str, target: impl Into<String>) -> Self {
        Self { actor: actor.to_string(), action, target: target.into(), details: serde_json::json!({}) }
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Commits `tx` with a success record, or rolls it back and records the failure; returns `result` either way.
pub async fn finish<T>(state: &AppState, mut tx: Transaction, entry: AuditEntry, result: ApiResult<T>) -> ApiResult<T> {
    let now = Timestamp::now();
    match result {
        Ok(value) => {
            let record = NewAuditRecord {
                at: now,
                actor: entry.actor,
                action: entry.action.to_string(),
                target: entry.target,
                outcome: AuditOutcome::Success,
                details: entry.details,
            };
            steward_store::audit::insert(&mut tx, &record).await?;
            tx.commit().await.map_err(steward_store::StoreError::from)?;
            Ok(value)
        }
        Err(error) => {
            drop(tx); // rolls back
            record_failure(state, entry, &error, now).await;
            Err(error)
        }
    }
}

/// Records a refused or failed call in a transaction of its own.
pub async fn record_failure(state: &AppState, entry: AuditEntry, error: &ApiError, at: Timestamp) {
    let mut details = entry.details;
    if let serde_json::Value::Object(map) = &mut details {
        map.insert("error".into(), serde_json::json!({ "code": error.code, "message": error.message }));
    }
    let record = NewAuditRecord {
        at,
        actor: entry.actor,
        action: entry.action.to_string(),
        target: entry.target,
        outcome: AuditOutcome::Failure,
        details,
    };
    let result = async {
        let mut tx = state.store.begin().await?;
        steward_store::audit::insert(&mut tx, &record).await?;
        tx.commit().await?;
        Ok::<_, steward_store::StoreError>(())
    }
    .await;
    if let Err(error) = result {
        tracing::error!(error = %crate::error_chain(&error), action = record.action, "could not record a failed call in the audit trail");
    }
}
