//! Starting, stopping and restarting a guest. A stop asks the guest to shut down (the ACPI power button on
//! x86_64, a signal-quiesce on s390x) and powers it off after the timeout; a stop cannot be undone, a start is
//! undone by powering the guest off again.

use serde::{Deserialize, Serialize};
use steward_types::HostId;
use steward_types::api::virtual_servers::VirtualServer;

use super::{StepResult, unknown_step};
use crate::app::hosts;
use crate::state::AppState;

pub const KIND: &str = "virtual_server_power";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    Start,
    Stop,
    Restart,
}

impl PowerAction {
    pub fn steps(self) -> &'static [&'static str] {
        match self {
            PowerAction::Start => &["start_guest"],
            PowerAction::Stop => &["stop_guest"],
            PowerAction::Restart => &["stop_guest", "start_guest"],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub host: HostId,
    pub server: VirtualServer,
    pub action: PowerAction,
    /// Seconds between the shutdown request and powering off; `None` powers off at once.
    pub stop_timeout_seconds: Option<u64>,
}

pub async fn run(state: &AppState, step: &str, params: &mut Params) -> StepResult {
    let driver = state.hosts.driver(params.host)?;
    match step {
        "start_guest" => hosts::guest_start(state, &driver, &params.server).await,
        "stop_guest" => hosts::guest_stop(state, &driver, &params.server, params.stop_timeout_seconds).await,
        other => Err(unknown_step(KIND, other)),
    }
}

pub async fn undo(state: &AppState, step: &str, params: &mut Params) -> StepResult<()> {
    let driver = state.hosts.driver(params.host)?;
    match step {
        "start_guest" => hosts::guest_stop(state, &driver, &params.server, None).await.map(|_| ()),
        // A guest that was asked to stop cannot be un-asked; if it still runs, it runs.
        "stop_guest" => Ok(()),
        other => Err(unknown_step(KIND, other)),
    }
}
