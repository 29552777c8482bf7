//! The saga engine: runs an operation's steps in order, persisting each step's state before and after it runs,
//! and on failure undoes, in reverse order, every step that ran (including the one that failed, which may have
//! done part of its work). Steps and undos are idempotent, so after a crash the engine simply runs the step that
//! was running again: an operation that was `running` resumes, one that was `unwinding` goes on unwinding.
//!
//! ```text
//!  step:  pending ──> running ──> done ─────────────┐
//!                        │                          │ (a later step failed)
//!                        └──> failed ──> undoing ──> undone
//! ```
//!
//! A saga may end with cleanup steps (`is_cleanup`): they run after the point of no return, so their failure
//! is reported on the step and the operation still succeeds; nothing is undone.
//!
//! Fault injection (`FaultPlan`, from `STEWARD_FAULT_INJECTION`) lets tests fail, repeat or crash at any step.

use steward_store::StoreError;
use steward_store::operations::OperationRecord;
use steward_types::api::operations::{OperationState, StepState};
use steward_types::{ErrorBody, ErrorCode, OperationId};

use super::faults::{Fault, FaultPlan};
use super::{StepError, is_cleanup, run_step, undo_step};
use crate::state::AppState;

/// Drives an operation to its end in the background.
pub fn spawn(state: AppState, id: OperationId) {
    tokio::spawn(async move {
        if let Err(error) = drive(&state, id).await {
            tracing::error!(operation = %id, error = %crate::error_chain(&error), "operation stopped: the store failed; it resumes at the next start");
        }
    });
}

/// Drives a child operation in a task of its own once `limit` grants a permit (a parent operation drives its
/// children this way; a task of its own also keeps the parent's future from containing the child's).
pub fn spawn_limited(
    state: AppState,
    id: OperationId,
    limit: std::sync::Arc<tokio::sync::Semaphore>,
) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    tokio::spawn(async move {
        let _permit = limit.acquire_owned().await;
        drive(&state, id).await
    })
}

/// Picks up every operation a previous run of the server left unfinished.
pub async fn resume_all(state: &AppState) -> Result<usize, StoreError> {
    let mut conn = state.store.conn().await?;
    let unfinished = steward_store::operations::unfinished(&mut conn).await?;
    drop(conn);
    for id in &unfinished {
        tracing::info!(operation = %id, "resuming an operation left unfinished");
        spawn(state.clone(), *id);
    }
    Ok(unfinished.len())
}

async fn load(state: &AppState, id: OperationId) -> Result<Option<OperationRecord>, StoreError> {
    let mut conn = state.store.conn().await?;
    steward_store::operations::get(&mut conn, id).await
}

async fn set_step(
    state: &AppState,
    id: OperationId,
    position: usize,
    step_state: StepState,
    detail: Option<&str>,
    params: Option<&serde_json::Value>,
) -> Result<(), StoreError> {
    let mut tx = state.store.begin().await?;
    if let Some(params) = params {
        steward_store::operations::set_params(&mut tx, id, params).await?;
    }
    steward_store::operations::set_step(&mut tx, id, position, step_state, detail).await?;
    tx.commit().await
}

/// Records a finished step with the saga's parameters and, in the same transaction, either marks the next step
/// running or, after the last one, the operation succeeded: one write per step.
async fn advance(
    state: &AppState,
    id: OperationId,
    position: usize,
    detail: Option<&str>,
    params: &serde_json::Value,
    next: Option<usize>,
) -> Result<(), StoreError> {
    let mut tx = state.store.begin().await?;
    steward_store::operations::set_params(&mut tx, id, params).await?;
    steward_store::operations::set_step(&mut tx, id, position, StepState::Done, detail).await?;
    match next {
        Some(next) => steward_store::operations::set_step(&mut tx, id, next, StepState::Running, None).await?,
        None => steward_store::operations::set_state(&mut tx, id, OperationState::Succeeded, None).await?,
    }
    tx.commit().await
}

async fn set_state(
    state: &AppState,
    id: OperationId,
    operation_state: OperationState,
    error: Option<&ErrorBody>,
) -> Result<(), StoreError> {
    let mut tx = state.store.begin().await?;
    steward_store::operations::set_state(&mut tx, id, operation_state, error).await?;
    if matches!(operation_state, OperationState::Failed | OperationState::UnwindFailed)
        && let Some(record) = steward_store::operations::get(&mut tx, id).await?
    {
        let operation = record.operation;
        let unwind_failed = operation_state == OperationState::UnwindFailed;
        let reason = operation.error.as_ref().map(|error| error.message.clone()).unwrap_or_default();
        let event = steward_types::api::events::Event {
            id: steward_types::EventId::new(),
            event_type: "operation.failed".to_owned(),
            severity: if unwind_failed {
                steward_types::api::events::Severity::Critical
            } else {
                steward_types::api::events::Severity::Warning
            },
            source_kind: operation.target_kind.clone(),
            source: operation.target.clone(),
            system_id: None,
            message: format!(
                "{} of {} {} failed{}: {reason}",
                operation.kind,
                operation.target_kind,
                operation.target,
                if unwind_failed { " and could not be undone" } else { "" }
            ),
            details: serde_json::json!({ "operation": id, "kind": operation.kind, "state": operation_state }),
            created_at: steward_types::api::Timestamp::now(),
        };
        crate::app::events::raise(&mut tx, &event, &record.target_id).await?;
    }
    tx.commit().await
}

/// Runs the operation from where it stands until it succeeds, fails (everything undone) or an undo fails.
pub async fn drive(state: &AppState, id: OperationId) -> Result<(), StoreError> {
    let Some(record) = load(state, id).await? else { return Ok(()) };
    let kind = record.operation.kind.clone();
    let target = record.operation.target.clone();
    let mut params = record.params;
    let faults = state.faults.clone();
    let steps = record.operation.steps;

    if record.operation.state == OperationState::Running {
        let mut failure = None;
        // Whether the transaction that finished the previous step already marked this one running.
        let mut marked_running = false;
        for (position, step) in steps.iter().enumerate() {
            if step.state == StepState::Done {
                continue;
            }
            if !std::mem::take(&mut marked_running) {
                set_step(state, id, position, StepState::Running, None, None).await?;
            }
            let fault = |fault: Fault| faults.has(fault, &kind, &step.name, &target);
            let mut result = if fault(Fault::Fail) {
                Err(StepError::injected(&kind, &step.name))
            } else {
                run_step(state, &kind, &step.name, &mut params).await
            };
            if result.is_ok() && fault(Fault::Repeat) {
                result = run_step(state, &kind, &step.name, &mut params).await;
            }
            if result.is_ok() && fault(Fault::FailAfter) {
                result = Err(StepError::injected(&kind, &step.name));
            }
            if fault(Fault::Crash) {
                tracing::error!(operation = %id, step = %step.name, "fault injection: crashing after the step ran");
                std::process::abort();
            }
            match result {
                Ok(detail) => {
                    let next =
                        steps.iter().enumerate().skip(position + 1).find(|(_, next)| next.state != StepState::Done);
                    let next = next.map(|(next, _)| next);
                    advance(state, id, position, detail.as_deref(), &params, next).await?;
                    if next.is_none() {
                        return Ok(());
                    }
                    marked_running = true;
                }
                Err(error) if is_cleanup(&kind, &step.name) => {
                    // Past the point of no return the operation has done what it was for; what the cleanup could
                    // not remove is reported on the step, and nothing is undone.
                    tracing::warn!(operation = %id, step = %step.name, error = %error.message, "cleanup step failed");
                    let detail = format!("cleanup failed, remove what is left by hand: {}", error.message);
                    set_step(state, id, position, StepState::Failed, Some(&detail), Some(&params)).await?;
                }
                Err(error) => {
                    tracing::warn!(operation = %id, step = %step.name, error = %error.message, "step failed; undoing");
                    set_step(state, id, position, StepState::Failed, Some(&error.message), Some(&params)).await?;
                    failure = Some(ErrorBody {
                        code: error.code,
                        message: error.message.clone(),
                        details: serde_json::json!({ "step": step.name }),
                    });
                    break;
                }
            }
        }
        match failure {
            None => return set_state(state, id, OperationState::Succeeded, None).await,
            Some(error) => set_state(state, id, OperationState::Unwinding, Some(&error)).await?,
        }
    } else if record.operation.state.is_finished() && record.operation.state != OperationState::UnwindFailed {
        return Ok(());
    } else {
        set_state(state, id, OperationState::Unwinding, None).await?;
    }
    unwind(state, id, &kind, &target, &mut params, &faults).await
}

async fn unwind(
    state: &AppState,
    id: OperationId,
    kind: &str,
    target: &str,
    params: &mut serde_json::Value,
    faults: &FaultPlan,
) -> Result<(), StoreError> {
    // The steps as they stand now (the forward pass may have changed them).
    let Some(record) = load(state, id).await? else { return Ok(()) };
    for (position, step) in record.operation.steps.iter().enumerate().rev() {
        if matches!(step.state, StepState::Pending | StepState::Undone) {
            continue;
        }
        set_step(state, id, position, StepState::Undoing, None, None).await?;
        let fault = |fault: Fault| faults.has(fault, kind, &step.name, target);
        let mut result = undo_step(state, kind, &step.name, params).await;
        if result.is_ok() && fault(Fault::RepeatUndo) {
            result = undo_step(state, kind, &step.name, params).await;
        }
        if fault(Fault::FailUndo) && result.is_ok() {
            result = Err(StepError::injected(kind, &format!("undo of {}", step.name)));
        }
        if let Err(error) = result {
            tracing::error!(operation = %id, step = %step.name, error = %error.message, "undo failed; retried at the next start");
            let detail = format!("undo failed: {}", error.message);
            set_step(state, id, position, StepState::Undoing, Some(&detail), Some(params)).await?;
            let error = ErrorBody {
                code: ErrorCode::Internal,
                message: format!("undoing failed too: {}", error.message),
                details: serde_json::json!({ "step": step.name }),
            };
            // The first failure stays the operation's error; the undo failure is on its step.
            return set_state(state, id, OperationState::UnwindFailed, Some(&error)).await;
        }
        set_step(state, id, position, StepState::Undone, None, Some(params)).await?;
    }
    set_state(state, id, OperationState::Failed, None).await
}
