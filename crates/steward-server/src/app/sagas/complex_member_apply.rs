//! Making one member of a complex consistent again: the planned guest definition (the current one with the
//! selected deviations repaired: CPUs, memory, share, NICs, extra disks), new disks and NICs created first, a
//! fresh config drive (same instance, so first-boot scripts do not run again), the running guest brought to
//! its definition (hot-plug, share; a restart when CPUs or memory changed), the record, and then the guest layer
//! through the agent (hostname, addresses, mounts, scripts run again). The config drive is rewritten in place
//! when the member's NICs change (the guest reads it at boot). The taps of dropped NICs are removed only in the
//! last step.
//!
//! The guest-layer step has no undo: what it sets (a hostname, an address, a mount) is what the complex wants,
//! and the step is safe to run again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use steward_hypervisor::{ConfigDrive, GuestSpec, GuestState, Nic};
use steward_types::api::virtual_servers::VirtualServer;
use steward_types::{ErrorCode, HostId, NetworkId};

use super::{StepError, StepResult, unknown_step};
use crate::app::complexes::agent;
use crate::app::hosts;
use crate::state::AppState;

pub const KIND: &str = "complex_member_apply";
pub const STEPS: &[&str] = &[
    "reserve",
    "create_disks",
    "create_nics",
    "write_config_drive",
    "define_guest",
    "live",
    "record",
    "guest",
    "discard_previous",
];

/// How long the guest layer waits for the agent (after a start or restart).
const AGENT_WAIT: Duration = Duration::from_secs(300);
const ACTION_TIMEOUT_SECONDS: u32 = 300;

/// One change inside the guest, run through the agent as `/bin/sh -c script`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestAction {
    pub property: String,
    pub script: String,
    pub stdin: Option<String>,
    pub environment: BTreeMap<String, String>,
}

/// A NIC row the apply adds (a network the member had no NIC on) or drops (a network the tier no longer has).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NicRow {
    pub network: NetworkId,
    pub position: u32,
    pub nic: Nic,
    pub address: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub host: HostId,
    pub before: VirtualServer,
    pub after: VirtualServer,
    /// NIC rows the API transaction inserted (released by undoing `reserve`).
    pub reserved_nics: Vec<NicRow>,
    /// NIC rows removed by `record`.
    pub dropped_nics: Vec<NicRow>,
    pub create_disks: Vec<(PathBuf, u64)>,
    pub create_nics: Vec<Nic>,
    /// The member's config drive rewritten in place (same path, same instance) when its NICs change, so a later
    /// boot configures them; the running guest keeps reading the drive it opened. With the drive as it was, for
    /// undo.
    pub config_drive: Option<(PathBuf, ConfigDrive)>,
    pub previous_config_drive: Option<ConfigDrive>,
    pub spec: GuestSpec,
    /// Whether the running guest's devices must follow the definition (a hypervisor-layer deviation was selected).
    pub sync_live: bool,
    /// Whether the member should run (`None`: leave its power state alone).
    pub run: Option<bool>,
    pub guest_actions: Vec<GuestAction>,
    /// Recorded the first time `define_guest` and `live` run.
    pub previous_spec: Option<GuestSpec>,
    pub was_running: Option<bool>,
}

pub async fn run(state: &AppState, step: &str, params: &mut Params) -> StepResult {
    let driver = state.hosts.driver(params.host)?;
    let name = params.after.name.clone();
    match step {
        "reserve" => Ok(Some(format!("{} NIC(s) reserved", params.reserved_nics.len()))),
        "create_disks" => {
            for (path, size) in &params.create_disks {
                driver.disk_create(path, *size).await?;
            }
            Ok(Some(format!("{} disk(s)", params.create_disks.len())))
        }
        "create_nics" => {
            for nic in &params.create_nics {
                driver.nic_create(&nic.network, &nic.tap).await?;
            }
            Ok(Some(format!("{} NIC(s)", params.create_nics.len())))
        }
        "write_config_drive" => match &params.config_drive {
            Some((path, drive)) => {
                driver.config_drive_write(path, drive).await?;
                Ok(None)
            }
            None => Ok(Some("not personalized".into())),
        },
        "define_guest" => {
            if params.previous_spec.is_none() {
                params.previous_spec = Some(driver.spec(&name).await?);
            }
            driver.define_guest(&params.spec).await?;
            Ok(None)
        }
        "live" => {
            let running = matches!(driver.power(&name).await, GuestState::Running { .. });
            if params.was_running.is_none() {
                params.was_running = Some(running);
            }
            match (params.run, running) {
                (Some(true), false) => return hosts::guest_start(state, &driver, &params.after).await,
                (Some(false), true) => return hosts::guest_stop(state, &driver, &params.after, Some(30)).await,
                _ => {}
            }
            if !running || !params.sync_live {
                return Ok(None);
            }
            let report = driver.sync_live(&name).await?;
            let mut done: Vec<String> = report.attached.iter().map(|item| format!("attached {item}")).collect();
            done.extend(report.detached.iter().map(|item| format!("detached {item}")));
            if !report.restart_required.is_empty() {
                driver.restart(&name, Duration::from_secs(30)).await?;
                hosts::attach_agent(state, &driver, &params.after);
                done.push(format!("restarted for {}", report.restart_required.join(", ")));
            }
            Ok((!done.is_empty()).then(|| done.join("; ")))
        }
        "record" => {
            let mut tx = state.store.begin().await?;
            steward_store::virtual_servers::set_document(&mut tx, &params.after).await?;
            for row in &params.dropped_nics {
                steward_store::virtual_servers::nic_delete(&mut tx, &row.nic.mac).await?;
            }
            tx.commit().await?;
            Ok(None)
        }
        "guest" => {
            let should_run = params.run.unwrap_or(params.was_running.unwrap_or(true));
            if params.guest_actions.is_empty() || !should_run {
                return Ok(None);
            }
            let Some(system) = params.after.system else {
                return Err(StepError::new(ErrorCode::Conflict, format!("member {name} has no managed system")));
            };
            agent::await_personalization(state, system, &[], AGENT_WAIT)
                .await
                .map_err(|message| StepError::new(ErrorCode::Internal, format!("member {name}: {message}")))?;
            let mut done = Vec::new();
            for action in &params.guest_actions {
                agent::run_shell(
                    state,
                    system,
                    &action.script,
                    action.stdin.clone(),
                    action.environment.clone(),
                    ACTION_TIMEOUT_SECONDS,
                )
                .await
                .map_err(|message| {
                    StepError::new(
                        ErrorCode::Internal,
                        format!("member {name}: {} in the guest: {message}", action.property),
                    )
                })?;
                done.push(action.property.as_str());
            }
            Ok(Some(done.join(", ")))
        }
        "discard_previous" => {
            let mut discarded = Vec::new();
            for row in &params.dropped_nics {
                driver.nic_delete(&row.nic.tap).await?;
                discarded.push(row.nic.tap.clone());
            }
            Ok((!discarded.is_empty()).then(|| format!("removed {}", discarded.join(", "))))
        }
        other => Err(unknown_step(KIND, other)),
    }
}

pub async fn undo(state: &AppState, step: &str, params: &mut Params) -> StepResult<()> {
    let driver = state.hosts.driver(params.host)?;
    let name = params.before.name.clone();
    match step {
        "reserve" => {
            let mut tx = state.store.begin().await?;
            for row in &params.reserved_nics {
                steward_store::virtual_servers::nic_delete(&mut tx, &row.nic.mac).await?;
            }
            tx.commit().await?;
            Ok(())
        }
        "create_disks" => {
            for (path, _) in &params.create_disks {
                driver.disk_delete(path).await?;
            }
            Ok(())
        }
        "create_nics" => {
            for nic in &params.create_nics {
                driver.nic_delete(&nic.tap).await?;
            }
            Ok(())
        }
        "write_config_drive" => match (&params.config_drive, &params.previous_config_drive) {
            (Some((path, _)), Some(previous)) => Ok(driver.config_drive_write(path, previous).await?),
            _ => Ok(()),
        },
        "define_guest" | "live" => {
            if let Some(previous) = &params.previous_spec {
                driver.define_guest(previous).await?;
                if step == "live" {
                    let running = matches!(driver.power(&name).await, GuestState::Running { .. });
                    match params.was_running {
                        Some(false) if running => {
                            hosts::guest_stop(state, &driver, &params.before, None).await?;
                        }
                        Some(true) if !running => {
                            hosts::guest_start(state, &driver, &params.before).await?;
                        }
                        _ if running => {
                            driver.sync_live(&name).await?;
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        }
        "record" => {
            let mut tx = state.store.begin().await?;
            steward_store::virtual_servers::set_document(&mut tx, &params.before).await?;
            for row in &params.dropped_nics {
                if !steward_store::virtual_servers::mac_taken(&mut tx, &row.nic.mac).await? {
                    steward_store::virtual_servers::nic_insert(
                        &mut tx,
                        params.before.id,
                        row.position,
                        row.network,
                        &row.nic.mac,
                        row.address.as_deref(),
                    )
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        }
        "guest" | "discard_previous" => Ok(()),
        other => Err(unknown_step(KIND, other)),
    }
}
