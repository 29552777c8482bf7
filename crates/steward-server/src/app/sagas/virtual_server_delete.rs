//! Deleting a virtual server: stop the guest, cut its agent channel, remove the guest (definition, disks,
//! config drive, sockets, logs), its NICs, and its records. Everything up to the removal of the guest can be
//! undone (the guest is started again if it ran); the removal and what follows cannot, and each of those steps
//! is idempotent, so repeating the delete finishes it.

use serde::{Deserialize, Serialize};
use steward_hypervisor::GuestState;
use steward_types::HostId;
use steward_types::api::virtual_servers::VirtualServer;

use super::{StepResult, unknown_step};
use crate::app::hosts;
use crate::state::AppState;

pub const KIND: &str = "virtual_server_delete";
pub const STEPS: &[&str] = &["stop_guest", "detach_agent", "undefine_guest", "delete_nics", "delete_records"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub host: HostId,
    pub server: VirtualServer,
    pub taps: Vec<String>,
    /// Whether the guest ran when the delete began (recorded by `stop_guest` the first time it runs).
    pub was_running: Option<bool>,
}

pub async fn run(state: &AppState, step: &str, params: &mut Params) -> StepResult {
    let driver = state.hosts.driver(params.host)?;
    match step {
        "stop_guest" => {
            if params.was_running.is_none() {
                params.was_running =
                    Some(matches!(driver.power(&params.server.name).await, GuestState::Running { .. }));
            }
            hosts::guest_stop(state, &driver, &params.server, None).await
        }
        "detach_agent" => {
            if let Some(system) = params.server.system {
                state.agents.detach_serial(system);
            }
            Ok(None)
        }
        // A z/VM entry Steward adopted is given back (with its minidisks) rather than deleted.
        "undefine_guest" if params.server.registered && driver.capabilities().definition_adoption => {
            driver.release_guest(&params.server.name).await?;
            Ok(Some("directory entry released, kept with its minidisks".into()))
        }
        "undefine_guest" => {
            driver.undefine_guest(&params.server.name).await?;
            Ok(None)
        }
        "delete_nics" => {
            for tap in &params.taps {
                driver.nic_delete(tap).await?;
            }
            Ok(None)
        }
        "delete_records" => {
            hosts::virtual_server_forget(state, params.server.id, params.server.system).await?;
            Ok(None)
        }
        other => Err(unknown_step(KIND, other)),
    }
}

pub async fn undo(state: &AppState, step: &str, params: &mut Params) -> StepResult<()> {
    let driver = state.hosts.driver(params.host)?;
    match step {
        "stop_guest" => {
            if params.was_running == Some(true) {
                hosts::guest_start(state, &driver, &params.server).await?;
            }
            Ok(())
        }
        "detach_agent" => {
            if params.was_running == Some(true) {
                hosts::attach_agent(state, &driver, &params.server);
            }
            Ok(())
        }
        // Past the point of no return: these steps are finished by repeating the delete, not undone.
        "undefine_guest" | "delete_nics" | "delete_records" => Ok(()),
        other => Err(unknown_step(KIND, other)),
    }
}
