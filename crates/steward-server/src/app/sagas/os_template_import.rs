//! Importing an image file as an OS template: the image (kept in its format: qcow2 images are cloned as
//! overlays, raw images by full copy), the kernel and initrd for direct boot, a checksum. The API transaction
//! has stored the template (state `creating`), so the name is reserved.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use steward_store::templates::OsTemplateState;
use steward_types::HostId;
use steward_types::api::os_templates::OsTemplate;

use super::{StepResult, unknown_step};
use crate::app::hosts;
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

pub async fn run(state: &AppState, step: &str, params: &mut Params) -> StepResult {
    let driver = state.hosts.driver(params.host)?;
    let files = hosts::TemplateFiles::new(&driver, &params.template);
    match step {
        "record" => Ok(None),
        "copy_image" => {
            let report = driver.image_import(&params.file, &files.disk, params.template.disk_format).await?;
            Ok(Some(format!("{} MiB at {:.0} MiB/s", report.bytes >> 20, report.bytes_per_second / 1_048_576.0)))
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
        "copy_image" => files.remove_all().await,
        "copy_boot_files" | "checksum" => Ok(()),
        "finish" => Ok(hosts::os_template_store(state, &params.template, OsTemplateState::Creating).await?),
        other => Err(unknown_step(KIND, other)),
    }
}
