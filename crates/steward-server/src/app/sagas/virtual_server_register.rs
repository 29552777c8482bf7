//! Registering a guest installed outside Steward (step 1 of the five steps): its disk stays where it is and is
//! never deleted by Steward (on z/VM, its directory entry is adopted as it is and given back at delete); the guest gets a definition, a system record, and, if it is running now, its
//! process is adopted: Steward stops it (through its own QMP socket if it has one), and starts the guest under its own control from then on. The API transaction has stored the virtual server (`creating`).

use serde::{Deserialize, Serialize};
use steward_hypervisor::GuestSpec;
use steward_store::virtual_servers::VirtualServerState;
use steward_types::{HostId, SystemId, VirtualServerId};

use super::{StepResult, unknown_step};
use crate::app::hosts;
use crate::state::AppState;

pub const KIND: &str = "virtual_server_register";
pub const STEPS: &[&str] = &["record", "define_guest", "adopt_process", "finish"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub virtual_server: VirtualServerId,
    pub host: HostId,
    pub system: SystemId,
    pub spec: GuestSpec,
    /// The running QEMU process to adopt, when the guest runs.
    pub pid: Option<u32>,
    /// The host keeps the guest's definition (a z/VM directory entry): it is adopted as it is
    /// (`Hypervisor::adopt_guest`) instead of defined from `spec`.
    #[serde(default)]
    pub adopt_definition: bool,
}

pub async fn run(state: &AppState, step: &str, params: &mut Params) -> StepResult {
    let driver = state.hosts.driver(params.host)?;
    match step {
        "record" => {
            hosts::system_record_ensure(state, params.system, &params.spec.name).await?;
            Ok(None)
        }
        "define_guest" if params.adopt_definition => {
            driver.adopt_guest(&params.spec.name).await?;
            Ok(Some("directory entry adopted as it is".into()))
        }
        "define_guest" => {
            driver.define_guest(&params.spec).await?;
            Ok(None)
        }
        "adopt_process" => match params.pid {
            Some(pid) => {
                driver.adopt_process(&params.spec.name, pid).await?;
                Ok(Some(format!("adopted QEMU process {pid}")))
            }
            None => Ok(Some("the guest is not running".into())),
        },
        "finish" => {
            hosts::virtual_server_set_state(state, params.virtual_server, VirtualServerState::Ready).await?;
            Ok(None)
        }
        other => Err(unknown_step(KIND, other)),
    }
}

pub async fn undo(state: &AppState, step: &str, params: &mut Params) -> StepResult<()> {
    let driver = state.hosts.driver(params.host)?;
    match step {
        "record" => hosts::virtual_server_forget(state, params.virtual_server, Some(params.system)).await,
        // The registered disk lies outside the guest's directory, so removing the definition leaves it alone.
        "define_guest" if params.adopt_definition => Ok(driver.release_guest(&params.spec.name).await?),
        "define_guest" => Ok(driver.undefine_guest(&params.spec.name).await?),
        // The process is given back, still running, before the definition goes.
        "adopt_process" => Ok(driver.release_process(&params.spec.name).await?),
        "finish" => {
            hosts::virtual_server_set_state(state, params.virtual_server, VirtualServerState::Creating).await?;
            Ok(())
        }
        other => Err(unknown_step(KIND, other)),
    }
}
