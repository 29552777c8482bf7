//! Deploying an OS template into a stopped virtual server: its first disk becomes a copy-on-write overlay on
//! the template's image (or a full copy), a NoCloud config drive carries the hostname, addresses and scripts,
//! and the guest definition boots the template. The previous disk and config drive are discarded only in the
//! last step, so every earlier failure restores the virtual server exactly as it was.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use steward_hypervisor::{Boot, ConfigDrive, DiskAttachment, DiskFormat, GuestSpec};
use steward_store::virtual_servers::VirtualServerState;
use steward_types::api::virtual_servers::{DiskOrigin, VirtualServer};
use steward_types::{HostId, OsTemplateId, VirtualServerId};

use super::{StepResult, unknown_step};
use crate::app::hosts;
use crate::state::AppState;

pub const KIND: &str = "virtual_server_deploy";
pub const STEPS: &[&str] =
    &["clone_disk", "write_config_drive", "define_guest", "record", "start_guest", "discard_previous"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub virtual_server: VirtualServerId,
    pub name: String,
    pub host: HostId,
    pub os_template: OsTemplateId,
    pub image: PathBuf,
    pub image_format: DiskFormat,
    /// Overlay (copy-on-write) or a full copy.
    pub overlay: bool,
    pub disk_size_bytes: u64,
    pub new_disk: PathBuf,
    pub config_drive: Option<(PathBuf, ConfigDrive)>,
    pub boot: Boot,
    pub start: bool,
    /// The virtual server's record as it was, and as it will be.
    pub before: VirtualServer,
    pub before_os_template: Option<OsTemplateId>,
    pub after: VirtualServer,
    /// The guest definition as it was (recorded by `define_guest` the first time it runs).
    pub previous_spec: Option<GuestSpec>,
}

pub async fn run(state: &AppState, step: &str, params: &mut Params) -> StepResult {
    let driver = state.hosts.driver(params.host)?;
    match step {
        "clone_disk" => {
            driver
                .clone_boot_disk(
                    &params.new_disk,
                    &params.image,
                    params.image_format,
                    params.overlay,
                    params.disk_size_bytes,
                )
                .await
        }
        "write_config_drive" => match &params.config_drive {
            Some((path, drive)) => {
                driver.config_drive_write(path, drive).await?;
                Ok(Some(format!("hostname {}", drive.hostname)))
            }
            None => Ok(Some("the OS template is not personalized".into())),
        },
        "define_guest" => {
            let mut current = driver.spec(&params.name).await?;
            // On z/VM the copy is a minidisk of the entry already; it is the new boot disk, not a disk it had.
            current.disks.retain(|disk| disk.path != params.new_disk);
            if params.previous_spec.is_none() {
                params.previous_spec = Some(current.clone());
            }
            let mut spec = params.previous_spec.clone().unwrap_or(current);
            let boot_disk =
                DiskAttachment { path: params.new_disk.clone(), format: driver.disk_format(), serial: None };
            if spec.disks.is_empty() {
                spec.disks.push(boot_disk);
            } else {
                spec.disks[0] = boot_disk;
            }
            spec.config_drive = params.config_drive.as_ref().map(|(path, _)| path.clone());
            spec.boot = params.boot.clone();
            driver.define_guest(&spec).await?;
            Ok(None)
        }
        "record" => {
            hosts::virtual_server_store(state, &params.after, Some(params.os_template), VirtualServerState::Ready)
                .await?;
            Ok(None)
        }
        "start_guest" => {
            if !params.start {
                return Ok(Some("not requested".into()));
            }
            hosts::guest_start(state, &driver, &params.after).await
        }
        "discard_previous" => {
            let Some(previous) = &params.previous_spec else { return Ok(None) };
            let mut discarded = Vec::new();
            let previous_disk = params.before.disks.first();
            if let (Some(disk), Some(record)) = (previous.disks.first(), previous_disk)
                && disk.path != params.new_disk
                && record.origin != DiskOrigin::Registered
            {
                driver.disk_delete(&disk.path).await?;
                discarded.push(disk.path.display().to_string());
            }
            if let Some(drive) = &previous.config_drive
                && Some(drive) != params.config_drive.as_ref().map(|(path, _)| path)
            {
                driver.disk_delete(drive).await?;
                discarded.push(drive.display().to_string());
            }
            Ok((!discarded.is_empty()).then(|| format!("removed {}", discarded.join(", "))))
        }
        other => Err(unknown_step(KIND, other)),
    }
}

pub async fn undo(state: &AppState, step: &str, params: &mut Params) -> StepResult<()> {
    let driver = state.hosts.driver(params.host)?;
    match step {
        "clone_disk" => Ok(driver.disk_delete(&params.new_disk).await?),
        "write_config_drive" => match &params.config_drive {
            Some((path, _)) => Ok(driver.disk_delete(path).await?),
            None => Ok(()),
        },
        "define_guest" => match &params.previous_spec {
            Some(previous) => Ok(driver.define_guest(previous).await.map(|_| ())?),
            None => Ok(()),
        },
        "record" => {
            hosts::virtual_server_store(state, &params.before, params.before_os_template, VirtualServerState::Ready)
                .await?;
            Ok(())
        }
        "start_guest" => {
            if params.start {
                hosts::guest_stop(state, &driver, &params.after, None).await?;
            }
            Ok(())
        }
        // The last step: once the previous disk is gone there is nothing to go back to, and nothing after it
        // can fail.
        "discard_previous" => Ok(()),
        other => Err(unknown_step(KIND, other)),
    }
}
