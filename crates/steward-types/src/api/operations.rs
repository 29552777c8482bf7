//! Long-running operations (sagas): each step is persisted before and after it runs and has an undo.
//!
//! ```text
//!  running ──all steps done──> succeeded
//!     │
//!     └─a step failed──> unwinding ──every undo done──> failed
//!                            └──an undo failed──> unwind_failed (retried at the next server start)
//! ```

use serde::{Deserialize, Serialize};

use super::Timestamp;
use crate::ErrorBody;
use crate::ids::OperationId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    Running,
    Succeeded,
    Unwinding,
    /// A step failed and everything done before it was undone.
    Failed,
    /// A step failed and an undo failed too; the server retries the undo when it starts.
    UnwindFailed,
}

impl OperationState {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Running => "running",
            OperationState::Succeeded => "succeeded",
            OperationState::Unwinding => "unwinding",
            OperationState::Failed => "failed",
            OperationState::UnwindFailed => "unwind_failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Running, Self::Succeeded, Self::Unwinding, Self::Failed, Self::UnwindFailed]
            .into_iter()
            .find(|state| state.as_str() == text)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::UnwindFailed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running,
    Done,
    Failed,
    Undoing,
    Undone,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Failed => "failed",
            StepState::Undoing => "undoing",
            StepState::Undone => "undone",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Running, Self::Done, Self::Failed, Self::Undoing, Self::Undone]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperationStep {
    pub name: String,
    pub state: StepState,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// What the step reported (for example how many bytes it copied), or why it failed.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Operation {
    pub id: OperationId,
    /// What it does, for example `virtual_server_create`.
    pub kind: String,
    /// The resource it acts on: its kind and name.
    pub target_kind: String,
    pub target: String,
    pub state: OperationState,
    pub steps: Vec<OperationStep>,
    /// Steps done out of all steps.
    pub progress_done: u32,
    pub progress_total: u32,
    pub error: Option<ErrorBody>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// The operation that drives this one, for the per-member operations of a complex operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<OperationId>,
}

/// The `202 Accepted` answer of an action that runs as an operation.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperationAccepted {
    pub operation: Operation,
}
