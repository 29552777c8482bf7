//! Operations that change hypervisor state are sagas: a fixed list of named steps per operation kind, each
//! idempotent and with an undo, run by [`engine`] with every step's state persisted. One module per kind:
//! each has `KIND`, `STEPS`, a `Params` document (what it created, so undo knows what to remove), `run` and `undo`.
//!
//! **Architecture invariant:** a step never assumes it runs for the first time: after a crash it runs again, and
//! after a failure its undo runs even if the step did only part of its work.

pub mod complex_member_add;
pub mod complex_member_apply;
pub mod complex_members;
pub mod engine;
pub mod faults;
pub mod os_template_import;
mod template_steps;
pub mod virtual_server_capture;
pub mod virtual_server_create;
pub mod virtual_server_delete;
pub mod virtual_server_deploy;
pub mod virtual_server_power;
pub mod virtual_server_register;

use serde::Serialize;
use serde::de::DeserializeOwned;
use steward_types::ErrorCode;

use crate::state::AppState;

pub use virtual_server_power::PowerAction;

/// Why a step (or its undo) failed, in words for the operator.
#[derive(Debug, Clone)]
pub struct StepError {
    pub code: ErrorCode,
    pub message: String,
}

impl StepError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn injected(kind: &str, step: &str) -> Self {
        Self::new(ErrorCode::Internal, format!("fault injected at {kind}:{step}"))
    }
}

impl From<steward_hypervisor::HypervisorError> for StepError {
    fn from(error: steward_hypervisor::HypervisorError) -> Self {
        StepError::new(ErrorCode::Internal, crate::error_chain(&error))
    }
}

impl From<steward_store::StoreError> for StepError {
    fn from(error: steward_store::StoreError) -> Self {
        StepError::new(ErrorCode::Internal, format!("the store failed: {}", crate::error_chain(&error)))
    }
}

pub type StepResult<T = Option<String>> = Result<T, StepError>;

fn parse_params<P: DeserializeOwned>(kind: &str, params: &serde_json::Value) -> StepResult<P> {
    serde_json::from_value(params.clone()).map_err(|error| {
        StepError::new(ErrorCode::Internal, format!("the stored parameters of {kind} are unreadable: {error}"))
    })
}

fn store_params<P: Serialize>(params: &P, into: &mut serde_json::Value) -> StepResult<()> {
    *into = serde_json::to_value(params)
        .map_err(|error| StepError::new(ErrorCode::Internal, format!("cannot record the parameters: {error}")))?;
    Ok(())
}

macro_rules! dispatch {
    ($state:expr, $kind:expr, $step:expr, $params:expr, $verb:ident, $($module:ident),+) => {
        match $kind {
            $(
                $module::KIND => {
                    let mut typed: $module::Params = parse_params($kind, $params)?;
                    let result = $module::$verb($state, $step, &mut typed).await;
                    store_params(&typed, $params)?;
                    result
                }
            )+
            complex_members::ADD | complex_members::REMOVE | complex_members::APPLY => {
                let mut typed: complex_members::Params = parse_params($kind, $params)?;
                let result = complex_members::$verb($state, $kind, $step, &mut typed).await;
                store_params(&typed, $params)?;
                result
            }
            other => Err(StepError::new(ErrorCode::Internal, format!("unknown operation kind {other:?}"))),
        }
    };
}

pub(crate) async fn run_step(
    state: &AppState,
    kind: &str,
    step: &str,
    params: &mut serde_json::Value,
) -> StepResult<Option<String>> {
    dispatch!(
        state,
        kind,
        step,
        params,
        run,
        virtual_server_create,
        virtual_server_deploy,
        virtual_server_delete,
        virtual_server_power,
        virtual_server_capture,
        virtual_server_register,
        os_template_import,
        complex_member_add,
        complex_member_apply
    )
}

pub(crate) async fn undo_step(
    state: &AppState,
    kind: &str,
    step: &str,
    params: &mut serde_json::Value,
) -> StepResult<()> {
    dispatch!(
        state,
        kind,
        step,
        params,
        undo,
        virtual_server_create,
        virtual_server_deploy,
        virtual_server_delete,
        virtual_server_power,
        virtual_server_capture,
        virtual_server_register,
        os_template_import,
        complex_member_add,
        complex_member_apply
    )
}

/// Steps that run after the point of no return: removing what the operation replaced.
pub(crate) fn is_cleanup(kind: &str, step: &str) -> bool {
    step == "discard_previous" && [virtual_server_deploy::KIND, complex_member_apply::KIND].contains(&kind)
}

fn unknown_step(kind: &str, step: &str) -> StepError {
    StepError::new(ErrorCode::Internal, format!("{kind} has no step {step:?}"))
}
