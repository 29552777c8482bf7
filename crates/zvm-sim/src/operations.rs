//! DirMaint asynchronous operations: a request that starts one answers 592 (reason 0) with the int4 operation
//! id as its output; `Query_Asynchronous_Operation_DM` then reports 0/104 while it runs, 0/100 when it
//! succeeded, 0/108 when it failed.
//!
//! An operation holds the work to finish when its time is up (adding a minidisk statement to an entry, or
//! freeing a deleted minidisk's space) and what to undo if it fails. Its end time is wall-clock milliseconds,
//! so operations in flight survive a restart. The server's operations task completes them on time; a query
//! completes any that are due first, so an answer never lags the clock. Finished operations are remembered for
//! an hour.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use smapi::server::{OutputWriter, ParameterReader};
use tracing::info;

use crate::answer::{Answer, Context, Outcome, RC_ASYNCHRONOUS, SYNTAX_UNRECOGNIZED};
use crate::directory::statements::Statement;
use crate::state::State;

/// How long finished operations stay queryable.
const KEEP_FINISHED_MILLIS: u64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    Running,
    Succeeded,
    Failed,
}

/// What an operation does when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    /// Adds the (already placed) minidisk statement to the owner's entry; on failure frees its space.
    AddMinidisk { owner: String, statement: Statement },
    /// Frees the space of a minidisk already removed from the entry; on failure puts the statement back.
    RemoveMinidisk { owner: String, statement: Statement },
}

impl Work {
    fn owner_and_vdev(&self) -> (&str, Option<String>) {
        match self {
            Work::AddMinidisk { owner, statement } | Work::RemoveMinidisk { owner, statement } => {
                (owner, statement.device())
            }
        }
    }
}

/// One DirMaint operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub function: String,
    pub target: String,
    pub status: OperationStatus,
    /// When it ends, in milliseconds since the Unix epoch.
    pub ends_at: u64,
    /// It ends in failure (an injected fault).
    #[serde(default)]
    pub fails: bool,
    /// When it ended, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    pub work: Work,
}

/// Every operation the simulator remembers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operations {
    pub next_id: u32,
    pub operations: BTreeMap<u32, Operation>,
}

impl Default for Operations {
    fn default() -> Self {
        Operations { next_id: 1, operations: BTreeMap::new() }
    }
}

impl Operations {
    /// Records a new operation and returns its id.
    pub fn start(&mut self, context: &Context, duration: Duration, work: Work) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).filter(|next| *next < i32::MAX as u32).unwrap_or(1);
        let ends_at = context.now_millis().saturating_add(duration.as_millis() as u64);
        self.operations.insert(
            id,
            Operation {
                function: context.function.clone(),
                target: context.target.clone(),
                status: OperationStatus::Running,
                ends_at,
                fails: context.fail_operation,
                finished_at: None,
                work,
            },
        );
        id
    }

    /// Whether a running operation is adding a minidisk at `vdev` for `owner`.
    pub fn adding(&self, owner: &str, vdev: &str) -> bool {
        self.operations.values().any(|operation| {
            operation.status == OperationStatus::Running
                && matches!(operation.work, Work::AddMinidisk { .. })
                && operation.work.owner_and_vdev() == (owner, Some(vdev.to_owned()))
        })
    }

    /// The end time of the first running operation.
    pub fn next_end(&self) -> Option<u64> {
        self.operations
            .values()
            .filter(|operation| operation.status == OperationStatus::Running)
            .map(|operation| operation.ends_at)
            .min()
    }
}

/// The 592 reply of a started operation.
pub fn started(id: u32) -> Answer {
    let mut output = OutputWriter::new();
    output.int4(id as i32);
    Answer::with_output(RC_ASYNCHRONOUS, 0, output)
}

/// Finishes every running operation whose time has come; true if anything changed.
pub fn complete_due(state: &mut State, now_millis: u64) -> bool {
    let due: Vec<u32> = state
        .operations
        .operations
        .iter()
        .filter(|(_, operation)| operation.status == OperationStatus::Running && operation.ends_at <= now_millis)
        .map(|(id, _)| *id)
        .collect();
    for id in &due {
        let Some(operation) = state.operations.operations.get(id).cloned() else { continue };
        let succeeded = !operation.fails && finish(state, &operation.work);
        if !succeeded {
            undo(state, &operation.work);
        }
        let status = if succeeded { OperationStatus::Succeeded } else { OperationStatus::Failed };
        info!(operation = id, function = %operation.function, target = %operation.target, ?status, "operation ended");
        if let Some(stored) = state.operations.operations.get_mut(id) {
            stored.status = status;
            stored.finished_at = Some(now_millis);
        }
    }
    let before = state.operations.operations.len();
    state.operations.operations.retain(|_, operation| {
        let finished_at = operation.finished_at.unwrap_or(operation.ends_at);
        operation.status == OperationStatus::Running || finished_at.saturating_add(KEEP_FINISHED_MILLIS) > now_millis
    });
    !due.is_empty() || state.operations.operations.len() != before
}

/// Does the operation's work; false if it cannot be done any more (the entry went away meanwhile).
fn finish(state: &mut State, work: &Work) -> bool {
    match work {
        Work::AddMinidisk { owner, statement } => match state.directory.entries.get_mut(owner) {
            Some(entry) if statement.device().is_some_and(|vdev| !entry.has_device(&vdev)) => {
                entry.statements.push(statement.clone());
                true
            }
            _ => false,
        },
        Work::RemoveMinidisk { owner, statement } => {
            if let Some(vdev) = statement.device() {
                state.pools.release(owner, &vdev);
            }
            true
        }
    }
}

/// Undoes what starting the operation did.
fn undo(state: &mut State, work: &Work) {
    match work {
        Work::AddMinidisk { owner, statement } => {
            if let Some(vdev) = statement.device() {
                state.pools.release(owner, &vdev);
            }
        }
        Work::RemoveMinidisk { owner, statement } => match state.directory.entries.get_mut(owner) {
            Some(entry) if statement.device().is_some_and(|vdev| !entry.has_device(&vdev)) => {
                entry.statements.push(statement.clone());
            }
            _ => {
                if let Some(vdev) = statement.device() {
                    state.pools.release(owner, &vdev);
                }
            }
        },
    }
}

/// `Query_Asynchronous_Operation_DM`: 0/104 running, 0/100 succeeded, 0/108 failed; an id the simulator
/// does not know is a syntax error in the parameter (24/119).
pub fn query(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let id = reader.int4()?;
    complete_due(state, context.now_millis());
    let operation = u32::try_from(id)
        .ok()
        .and_then(|id| state.operations.operations.get(&id))
        .ok_or_else(|| Answer::syntax(1, SYNTAX_UNRECOGNIZED))?;
    let reason = match operation.status {
        OperationStatus::Running => 104,
        OperationStatus::Succeeded => 100,
        OperationStatus::Failed => 108,
    };
    Ok(Answer::code(0, reason))
}
