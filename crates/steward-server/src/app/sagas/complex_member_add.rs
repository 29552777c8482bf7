//! Cloning one member of a complex: its boot disk from the tier's OS template (copy-on-write when possible), its
//! blank and extra disks, its NICs, a config drive with its hostname, addresses, the generated disk script and
//! the tier's scripts, the guest definition; then, when asked, it starts and the step `await_agent` waits until
//! the agent in the guest reports every script's result. The API transaction has stored the virtual server
//! (`creating`), its NICs with their MAC and static addresses, and its membership, so names and addresses are
//! reserved before anything is created; undoing `record` releases all of that.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use steward_hypervisor::{ConfigDrive, DiskFormat, GuestSpec};
use steward_store::virtual_servers::VirtualServerState;
use steward_types::api::virtual_servers::VirtualServer;
use steward_types::{ErrorCode, HostId, OsTemplateId};

use super::{StepError, StepResult, unknown_step};
use crate::app::complexes::agent;
use crate::app::hosts;
use crate::state::AppState;

pub const KIND: &str = "complex_member_add";
pub const STEPS: &[&str] = &[
    "record",
    "clone_disk",
    "create_disks",
    "create_nics",
    "write_config_drive",
    "define_guest",
    "finish",
    "start_guest",
    "await_agent",
];

/// How long a started member gets to boot and report its scripts' results.
const AGENT_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub host: HostId,
    pub server: VirtualServer,
    pub os_template: OsTemplateId,
    pub image: PathBuf,
    pub image_format: DiskFormat,
    pub overlay: bool,
    pub boot_disk_bytes: u64,
    /// Blank disks: the server template's further disks and the tier's extra disks.
    pub blank_disks: Vec<(PathBuf, u64)>,
    pub config_drive: Option<(PathBuf, ConfigDrive)>,
    pub spec: GuestSpec,
    pub start: bool,
    /// The scripts whose result the member must report (none when it is not started).
    pub scripts: Vec<String>,
}

impl Params {
    /// The boot disk of the member (the first disk of its definition).
    fn boot_disk(&self) -> StepResult<&std::path::Path> {
        self.spec.disks.first().map(|disk| disk.path.as_path()).ok_or_else(|| {
            StepError::new(ErrorCode::Internal, format!("the planned definition of {} has no disk", self.server.name))
        })
    }
}

pub async fn run(state: &AppState, step: &str, params: &mut Params) -> StepResult {
    let driver = state.hosts.driver(params.host)?;
    let name = &params.server.name;
    match step {
        "record" => {
            if let Some(system) = params.server.system {
                hosts::system_record_ensure(state, system, name).await?;
            }
            Ok(None)
        }
        "clone_disk" => {
            driver
                .clone_boot_disk(
                    params.boot_disk()?,
                    &params.image,
                    params.image_format,
                    params.overlay,
                    params.boot_disk_bytes,
                )
                .await
        }
        "create_disks" => {
            for (path, size) in &params.blank_disks {
                driver.disk_create(path, *size).await?;
            }
            Ok(Some(format!("{} blank disk(s)", params.blank_disks.len())))
        }
        "create_nics" => {
            for nic in &params.spec.nics {
                driver.nic_create(&nic.network, &nic.tap).await?;
            }
            Ok(Some(format!("{} NIC(s)", params.spec.nics.len())))
        }
        "write_config_drive" => match &params.config_drive {
            Some((path, drive)) => {
                driver.config_drive_write(path, drive).await?;
                Ok(Some(format!("hostname {}", drive.hostname)))
            }
            None => Ok(Some("the OS template is not personalized".into())),
        },
        "define_guest" => {
            driver.define_guest(&params.spec).await?;
            Ok(None)
        }
        "finish" => {
            hosts::virtual_server_store(state, &params.server, Some(params.os_template), VirtualServerState::Ready)
                .await?;
            Ok(None)
        }
        "start_guest" => {
            if !params.start {
                return Ok(Some("not requested".into()));
            }
            hosts::guest_start(state, &driver, &params.server).await
        }
        "await_agent" => {
            let Some(system) = params.server.system.filter(|_| params.start) else {
                return Ok(Some("not started".into()));
            };
            let results = agent::await_personalization(state, system, &params.scripts, AGENT_WAIT)
                .await
                .map_err(|message| StepError::new(ErrorCode::Internal, format!("member {name}: {message}")))?;
            Ok(Some(results))
        }
        other => Err(unknown_step(KIND, other)),
    }
}

pub async fn undo(state: &AppState, step: &str, params: &mut Params) -> StepResult<()> {
    let driver = state.hosts.driver(params.host)?;
    match step {
        "record" => hosts::virtual_server_forget(state, params.server.id, params.server.system).await,
        "clone_disk" => {
            driver.disk_delete(params.boot_disk()?).await?;
            hosts::remove_directory_if_empty(&driver.guest_directory(&params.server.name)).await
        }
        "create_disks" => {
            for (path, _) in &params.blank_disks {
                driver.disk_delete(path).await?;
            }
            Ok(())
        }
        "create_nics" => {
            for nic in &params.spec.nics {
                driver.nic_delete(&nic.tap).await?;
            }
            Ok(())
        }
        "write_config_drive" => match &params.config_drive {
            Some((path, _)) => Ok(driver.disk_delete(path).await?),
            None => Ok(()),
        },
        "define_guest" => Ok(driver.undefine_guest(&params.server.name).await?),
        "finish" => {
            hosts::virtual_server_set_state(state, params.server.id, VirtualServerState::Creating).await?;
            Ok(())
        }
        "start_guest" => {
            hosts::guest_stop(state, &driver, &params.server, None).await?;
            Ok(())
        }
        "await_agent" => Ok(()),
        other => Err(unknown_step(KIND, other)),
    }
}
