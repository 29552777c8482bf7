//! Capturing a stopped virtual server into a new OS template: its boot disk flattened (no backing chain) and
//! compressed, then sealed (machine-id emptied, SSH host keys, MAC-bound network configuration, agent identity
//! and instance data removed, so clones never collide), the boot files it uses, a checksum, and provenance.
//! The API transaction has stored the template (state `creating`); the operation's target is the virtual
//! server, so it cannot be started while it is being captured.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use steward_types::HostId;
use steward_types::api::os_templates::OsTemplate;

use super::StepResult;
use super::template_steps::{self, TemplateParams};
use crate::app::hosts::TemplateFiles;
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

impl TemplateParams for Params {
    fn template(&mut self) -> &mut OsTemplate {
        &mut self.template
    }

    fn boot_files(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        (self.kernel.clone(), self.initrd.clone())
    }
}

pub async fn run(state: &AppState, step: &str, params: &mut Params) -> StepResult {
    let driver = state.hosts.driver(params.host)?;
    let disk = TemplateFiles::new(&driver, &params.template).disk;
    match step {
        "flatten_disk" => {
            driver.disk_capture(&params.source_disk, &disk).await?;
            Ok(Some(match params.template.disk_location {
                Some(_) => format!("copied to {}", disk.display()),
                None => "flattened and compressed".into(),
            }))
        }
        "seal" if !driver.capabilities().sealing => Ok(Some(
            "not sealed: this host cannot read the disk off-line; the image must reset its identity at first boot \
             (docs/zvm.md)"
                .into(),
        )),
        "seal" => {
            // Sealing an already sealed image finds nothing more; keep what the first run removed.
            for item in driver.seal_disk(&disk).await? {
                if !params.template.sealed.contains(&item) {
                    params.template.sealed.push(item);
                }
            }
            Ok(Some(format!("{} item(s) sealed", params.template.sealed.len())))
        }
        _ => template_steps::run(state, &driver, KIND, step, params).await,
    }
}

pub async fn undo(state: &AppState, step: &str, params: &mut Params) -> StepResult<()> {
    let driver = state.hosts.driver(params.host)?;
    template_steps::undo(state, &driver, KIND, step, params).await
}
