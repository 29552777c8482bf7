//! Creating a virtual server from a server template: its system record, blank disks, NICs on the host's
//! networks, and the guest definition. The API transaction has already stored the virtual server (state
//! `creating`) and its NICs, so its name and MAC addresses are reserved before the operation starts.

use serde::{Deserialize, Serialize};
use steward_hypervisor::{Arch, Boot, DiskAttachment, GuestSpec, Nic};
use steward_store::virtual_servers::VirtualServerState;
use steward_types::{HostId, SystemId, VirtualServerId};

use super::{StepResult, unknown_step};
use crate::app::hosts;
use crate::state::AppState;

pub const KIND: &str = "virtual_server_create";
pub const STEPS: &[&str] = &["record", "create_disks", "create_nics", "define_guest", "finish"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub virtual_server: VirtualServerId,
    pub name: String,
    pub host: HostId,
    pub system: SystemId,
    pub arch: Arch,
    pub cpus: u32,
    pub memory_mib: u64,
    pub cpu_share: u32,
    /// Sizes in bytes; disk `i` is `disk<i>.qcow2` in the guest's directory.
    pub disks: Vec<u64>,
    pub nics: Vec<Nic>,
}

/// The guest definition of a virtual server without an operating system yet (its firmware finds nothing to
/// boot until an OS template is deployed).
pub fn blank_spec(params: &Params, driver: &hosts::Driver) -> GuestSpec {
    GuestSpec {
        name: params.name.clone(),
        arch: params.arch,
        cpus: params.cpus,
        memory_mib: params.memory_mib,
        cpu_share: params.cpu_share,
        disks: (0..params.disks.len())
            .map(|index| DiskAttachment {
                path: driver.disk_path(&params.name, index),
                format: driver.disk_format(),
                serial: None,
            })
            .collect(),
        config_drive: None,
        nics: params.nics.clone(),
        boot: Boot::Firmware { firmware: None },
        agent_channel: true,
    }
}

pub async fn run(state: &AppState, step: &str, params: &mut Params) -> StepResult {
    let driver = state.hosts.driver(params.host)?;
    match step {
        "record" => {
            hosts::system_record_ensure(state, params.system, &params.name).await?;
            Ok(None)
        }
        "create_disks" => {
            for (index, size) in params.disks.iter().enumerate() {
                driver.disk_create(&driver.disk_path(&params.name, index), *size).await?;
            }
            Ok(Some(format!("{} blank qcow2 disk(s)", params.disks.len())))
        }
        "create_nics" => {
            for nic in &params.nics {
                driver.nic_create(&nic.network, &nic.tap).await?;
            }
            Ok(Some(format!("{} NIC(s)", params.nics.len())))
        }
        "define_guest" => {
            driver.define_guest(&blank_spec(params, &driver)).await?;
            Ok(None)
        }
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
        "create_disks" => {
            for index in 0..params.disks.len() {
                driver.disk_delete(&driver.disk_path(&params.name, index)).await?;
            }
            hosts::remove_directory_if_empty(&driver.guest_directory(&params.name)).await
        }
        "create_nics" => {
            for nic in &params.nics {
                driver.nic_delete(&nic.tap).await?;
            }
            Ok(())
        }
        "define_guest" => Ok(driver.undefine_guest(&params.name).await?),
        "finish" => {
            hosts::virtual_server_set_state(state, params.virtual_server, VirtualServerState::Creating).await?;
            Ok(())
        }
        other => Err(unknown_step(KIND, other)),
    }
}
