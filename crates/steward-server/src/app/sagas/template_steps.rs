//! The steps an import and a capture share: both make an OS template in the host's template storage, reserved
//! by the API transaction (`record`), with boot files, a checksum, and a last step that makes it ready.

use std::path::PathBuf;

use steward_store::templates::OsTemplateState;
use steward_types::api::os_templates::OsTemplate;

use super::{StepResult, unknown_step};
use crate::app::hosts::{self, Driver, TemplateFiles};
use crate::state::AppState;

/// What both sagas keep about the template they make.
pub trait TemplateParams {
    fn template(&mut self) -> &mut OsTemplate;
    fn boot_files(&self) -> (Option<PathBuf>, Option<PathBuf>);
}

/// Runs a shared step.
pub async fn run<P: TemplateParams>(
    state: &AppState,
    driver: &Driver,
    kind: &str,
    step: &str,
    params: &mut P,
) -> StepResult {
    let files = TemplateFiles::new(driver, params.template());
    match step {
        // The API transaction stored the template (state `creating`).
        "record" => Ok(None),
        "copy_boot_files" => {
            let (kernel, initrd) = params.boot_files();
            files.copy_boot_files(kernel.as_deref(), initrd.as_deref()).await
        }
        "checksum" => Ok(Some(files.describe(driver, params.template()).await?)),
        "finish" => {
            hosts::os_template_store(state, params.template(), OsTemplateState::Ready).await?;
            Ok(None)
        }
        other => Err(unknown_step(kind, other)),
    }
}

/// Undoes a shared step, or the step that wrote the image (the template's directory goes with everything in it).
pub async fn undo<P: TemplateParams>(
    state: &AppState,
    driver: &Driver,
    kind: &str,
    step: &str,
    params: &mut P,
) -> StepResult<()> {
    let files = TemplateFiles::new(driver, params.template());
    match step {
        "record" => hosts::os_template_forget(state, params.template().id).await,
        "copy_image" | "flatten_disk" => files.remove_all(driver, params.template()).await,
        // Their files are in the template's directory, removed with the image.
        "seal" | "copy_boot_files" | "checksum" => Ok(()),
        "finish" => Ok(hosts::os_template_store(state, params.template(), OsTemplateState::Creating).await?),
        other => Err(unknown_step(kind, other)),
    }
}
