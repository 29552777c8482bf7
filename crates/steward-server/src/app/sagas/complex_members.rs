//! The operations that act on many members of a complex at once: adding members, removing members, applying
//! the complex. Each is a parent operation with a single step, `members`, that drives one child operation per
//! member (recorded with it in the API transaction) with bounded concurrency. A child that fails undoes itself
//! completely; the others stay. The parent succeeds when every child did, and otherwise fails with a message
//! naming which members succeeded and which failed; its undo does nothing, because each child already undid
//! what it did. After a crash the parent's step runs again and drives the children on (finished ones return at
//! once); children are never resumed on their own.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use steward_types::api::operations::OperationState;
use steward_types::{ErrorCode, OperationId};

use super::engine;
use super::{StepError, StepResult, unknown_step};
use crate::state::AppState;

pub const ADD: &str = "complex_members_add";
pub const REMOVE: &str = "complex_members_remove";
pub const APPLY: &str = "complex_apply";
pub const STEPS: &[&str] = &["members"];

/// The most children one parent runs at the same time.
pub const MAX_PARALLEL: u32 = 32;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Child {
    pub operation: OperationId,
    pub member: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub complex: String,
    pub children: Vec<Child>,
    pub parallel: u32,
}

fn verb(kind: &str) -> &'static str {
    match kind {
        ADD => "added",
        REMOVE => "removed",
        _ => "made consistent",
    }
}

pub async fn run(state: &AppState, kind: &str, step: &str, params: &mut Params) -> StepResult {
    if step != "members" {
        return Err(unknown_step(kind, step));
    }
    let semaphore = Arc::new(tokio::sync::Semaphore::new(params.parallel.clamp(1, MAX_PARALLEL) as usize));
    let tasks: Vec<_> = params
        .children
        .iter()
        .map(|child| engine::spawn_limited(state.clone(), child.operation, semaphore.clone()))
        .collect();
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                // The store failed under a child: stop here; the next start drives the children on.
                return Err(StepError::from(error));
            }
            Err(error) => {
                return Err(StepError::new(ErrorCode::Internal, format!("a member operation stopped: {error}")));
            }
        }
    }
    let mut conn = state.store.conn().await?;
    let mut succeeded = Vec::new();
    let mut failed = Vec::new();
    for child in &params.children {
        let record = steward_store::operations::get(&mut conn, child.operation).await?;
        match record.map(|record| record.operation) {
            Some(operation) if operation.state == OperationState::Succeeded => succeeded.push(child.member.clone()),
            Some(operation) => {
                let reason =
                    operation.error.map(|error| error.message).unwrap_or_else(|| operation.state.as_str().to_owned());
                failed.push(format!("{} ({reason})", child.member));
            }
            None => failed.push(format!("{} (its operation is gone)", child.member)),
        }
    }
    let verb = verb(kind);
    if failed.is_empty() {
        return Ok(Some(format!("{} {verb}: {}", succeeded.len(), succeeded.join(", "))));
    }
    let kept = if succeeded.is_empty() {
        String::new()
    } else {
        format!("; {} {verb} and kept: {}", succeeded.len(), succeeded.join(", "))
    };
    Err(StepError::new(
        ErrorCode::Internal,
        format!(
            "{} of {} member(s) failed and were undone: {}{kept}",
            failed.len(),
            params.children.len(),
            failed.join("; ")
        ),
    ))
}

/// Each child undid itself; members that succeeded stay.
pub async fn undo(_state: &AppState, kind: &str, step: &str, _params: &mut Params) -> StepResult<()> {
    match step {
        "members" => Ok(()),
        other => Err(unknown_step(kind, other)),
    }
}
