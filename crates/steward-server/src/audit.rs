//! Writing the audit trail: every mutating API call ends through [`finish`], which records the outcome in the
//! same transaction as the change (success) or, after rolling the change back, in a transaction of its own
//! (failure). So a change is never without its record, and a failed attempt is recorded too.
//!
//! A call that changes nothing in the store but acts elsewhere for a long time (a command run on a system) must
//! not hold the write lock meanwhile: it checks the caller with [`authorize`] and records its outcome with
//! [`record`], in a transaction of its own, once it is known.

use steward_store::Transaction;
use steward_store::audit::NewAuditRecord;
use steward_types::api::Timestamp;
use steward_types::api::audit::AuditOutcome;

use steward_types::api::Role;

use crate::auth::Caller;
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

/// Checks the caller's role before anything else, recording a refusal, and then starts the write transaction:
/// a caller without the role never queues for the write lock.
pub async fn begin(state: &AppState, caller: &Caller, role: Role, entry: &AuditEntry) -> ApiResult<Transaction> {
    authorize(state, caller, role, entry).await?;
    Ok(state.store.begin().await?)
}

/// Refuses the call, recording the refusal, unless the caller's role is at least `role`.
pub async fn authorize(state: &AppState, caller: &Caller, role: Role, entry: &AuditEntry) -> ApiResult<()> {
    if let Err(error) = caller.require(role) {
        let refused = AuditEntry {
            actor: entry.actor.clone(),
            action: entry.action,
            target: entry.target.clone(),
            details: entry.details.clone(),
        };
        record_failure(state, refused, &error, Timestamp::now()).await;
        return Err(error);
    }
    Ok(())
}

/// Longest string and list kept in an audit record: requests are recorded, not archived, and an anonymous
/// caller must not be able to grow the trail by megabytes per request.
const MAX_AUDIT_STRING: usize = 256;
const MAX_AUDIT_LIST: usize = 50;

fn bounded(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(text) => serde_json::Value::String(bounded_text(text)),
        serde_json::Value::Array(items) => {
            let total = items.len();
            let mut items: Vec<_> = items.into_iter().take(MAX_AUDIT_LIST).map(bounded).collect();
            if total > MAX_AUDIT_LIST {
                items.push(serde_json::Value::String(format!("... {} more", total - MAX_AUDIT_LIST)));
            }
            serde_json::Value::Array(items)
        }
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter().take(MAX_AUDIT_LIST).map(|(k, v)| (bounded_text(k), bounded(v))).collect(),
        ),
        other => other,
    }
}

fn bounded_text(text: String) -> String {
    if text.chars().count() <= MAX_AUDIT_STRING {
        text
    } else {
        let kept: String = text.chars().take(MAX_AUDIT_STRING).collect();
        format!("{kept}... ({} characters)", text.chars().count())
    }
}

/// Commits `tx` with a success record, or rolls it back and records the failure; returns `result` either way.
pub async fn finish<T>(state: &AppState, mut tx: Transaction, entry: AuditEntry, result: ApiResult<T>) -> ApiResult<T> {
    let now = Timestamp::now();
    match result {
        Ok(value) => {
            let record = NewAuditRecord {
                at: now,
                actor: bounded_text(entry.actor),
                action: entry.action.to_string(),
                target: bounded_text(entry.target),
                outcome: AuditOutcome::Success,
                details: bounded(entry.details),
            };
            steward_store::audit::insert(&mut tx, &record).await?;
            tx.commit().await?;
            Ok(value)
        }
        Err(error) => {
            drop(tx); // rolls back
            record_failure(state, entry, &error, now).await;
            Err(error)
        }
    }
}

/// Records the outcome of a call that changed nothing in the store, in a transaction of its own. A success that
/// cannot be recorded is logged: what it did is done and cannot be rolled back.
pub async fn record<T>(state: &AppState, entry: AuditEntry, result: &ApiResult<T>) {
    let now = Timestamp::now();
    if let Err(error) = result {
        return record_failure(state, entry, error, now).await;
    }
    let record = NewAuditRecord {
        at: now,
        actor: bounded_text(entry.actor),
        action: entry.action.to_string(),
        target: bounded_text(entry.target),
        outcome: AuditOutcome::Success,
        details: bounded(entry.details),
    };
    let written = async {
        let mut tx = state.store.begin().await?;
        steward_store::audit::insert(&mut tx, &record).await?;
        tx.commit().await
    }
    .await;
    if let Err(error) = written {
        tracing::error!(error = %crate::error_chain(&error), action = record.action, target = record.target, "could not record a call in the audit trail");
    }
}

/// Records a refused or failed call in a transaction of its own.
pub async fn record_failure(state: &AppState, entry: AuditEntry, error: &ApiError, at: Timestamp) {
    let mut details = bounded(entry.details);
    if let serde_json::Value::Object(map) = &mut details {
        map.insert("error".into(), serde_json::json!({ "code": error.code, "message": error.message }));
    }
    let record = NewAuditRecord {
        at,
        actor: bounded_text(entry.actor),
        action: entry.action.to_string(),
        target: bounded_text(entry.target),
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
