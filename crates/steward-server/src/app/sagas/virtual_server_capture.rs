//! Capturing a stopped virtual server into a new OS template: its boot disk flattened (no backing chain) and
//! compressed, then sealed (machine-id emptied, SSH host keys, MAC-bound network configuration, agent identity
//! and instance data removed, so clones never collide), the boot files it uses, a checksum, and provenance.
//! The API transaction has stored the template (state `creating`); the operation's target is the virtual
//! server, so it cannot be started while it is being captured.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use steward_store::templates::OsTemplateState;
use steward_types::HostId;
use steward_types::api::os_templates::OsTemplate;

use super::{StepResult, unknown_step};
use crate::app::hosts;
use crate::state::AppState;

pub const KIND: &str = "virtual_server_capture";
pub const STEPS: &[&str] = &["record", "flatten_disk", "seal", "copy_boot_files", "checksum", "finish"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub host: HostId,
    pub template: OsTemplate,
    pub source_disk: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
}

pub async fn run(state: &AppState, step: &str, params: &mut Params) -> StepResult {
    let driver = state.hosts.driver(params.host)?;
    let files = hosts::TemplateFiles::new(&driver, &params.template);
    match step {
        "record" => Ok(None),
        "flatten_disk" => {
            driver.disk_capture(&params.source_disk, &files.disk).await?;
            Ok(Some("flattened and compressed".into()))
        }
        "seal" => {
            // Sealing an already sealed image finds nothing more; keep what the first run removed.
            let sealed = driver.seal_disk(&files.disk).await?;
            for item in sealed {
                if !params.template.sealed.contains(&item) {
                    params.template.sealed.push(item);
                }
            }
            Ok(Some(format!("{} item(s) sealed", params.template.sealed.len())))
        }
        "copy_boot_files" => files.copy_boot_files(params.kernel.as_deref(), params.initrd.as_deref()).await,
        "checksum" => {
            let detail = files.describe(&driver, &mut params.template).await?;
            Ok(Some(detail))
        }
        "finish" => {
            hosts::os_template_store(state, &params.template, OsTemplateState::Ready).await?;
            Ok(None)
        }
        other => Err(unknown_step(KIND, other)),
    }
}

pub async fn undo(state: &AppState, step: &str, params: &mut Params) -> StepResult<()> {
    let driver = state.hosts.driver(params.host)?;
    let files = hosts::TemplateFiles::new(&driver, &params.template);
    match step {
        "record" => hosts::os_template_forget(state, params.template.id).await,
        "flatten_disk" => files.remove_all().await,
        "seal" | "copy_boot_files" | "checksum" => Ok(()),
        "finish" => Ok(hosts::os_template_store(state, &params.template, OsTemplateState::Creating).await?),
        other => Err(unknown_step(KIND, other)),
    }
}
