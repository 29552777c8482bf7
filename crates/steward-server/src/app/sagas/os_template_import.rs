//! Importing an image file as an OS template: the image (kept in its format: qcow2 images are cloned as
//! overlays, raw images by full copy), the kernel and initrd for direct boot, a checksum. The API transaction
//! has stored the template (state `creating`), so the name is reserved.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use steward_types::HostId;
use steward_types::api::os_templates::OsTemplate;

use super::StepResult;
use super::template_steps::{self, TemplateParams};
use crate::app::hosts::TemplateFiles;
use crate::state::AppState;

pub const KIND: &str = "os_template_import";
pub const STEPS: &[&str] = &["record", "copy_image", "copy_boot_files", "checksum", "finish"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub host: HostId,
    pub template: OsTemplate,
    pub file: PathBuf,
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
    if step == "copy_image" {
        let disk = TemplateFiles::new(&driver, &params.template).disk;
        let report = driver.image_import(&params.file, &disk, params.template.disk_format).await?;
        return Ok(Some(format!("{} MiB at {:.0} MiB/s", report.bytes >> 20, report.bytes_per_second / 1_048_576.0)));
    }
    template_steps::run(state, &driver, KIND, step, params).await
}

pub async fn undo(state: &AppState, step: &str, params: &mut Params) -> StepResult<()> {
    let driver = state.hosts.driver(params.host)?;
    template_steps::undo(state, &driver, KIND, step, params).await
}
