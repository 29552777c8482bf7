//! Operating system templates: `/api/v1/os-templates` (import, list, show, delete; capture is an action of
//! virtual servers).

use std::path::{Path as FsPath, PathBuf};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use steward_types::api::os_templates::{BootMethod, DiskFormat, OsTemplate, OsTemplateImport, OsTemplateOrigin};
use steward_types::api::{Page, PageQuery, Role, Timestamp};
use steward_types::{ErrorResponse, OperationId, OsTemplateId, validate};

use crate::api::extract::{self, Path, Query};
use crate::api::hosts::find_host;
use crate::api::operations::{Accepted, OperationStart, operation_accepted, operation_record};
use crate::app::hosts::{LOCAL_HOST, TemplateFiles};
use crate::app::sagas::os_template_import as import;
use crate::audit::{AuditEntry, finish};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Longest kernel command line accepted (Linux's own limit on x86 is 2048).
const MAX_CMDLINE: usize = 2048;

pub async fn find_os_template(conn: &mut steward_store::Conn, id_or_name: &str) -> ApiResult<OsTemplate> {
    match steward_store::templates::os_template_get(conn, id_or_name).await? {
        Some((template, steward_store::templates::OsTemplateState::Ready)) => Ok(template),
        Some((template, _)) => Err(ApiError::conflict(format!(
            "OS template {:?} is still being created; wait for its operation",
            template.name
        ))),
        None => Err(ApiError::not_found("OS template", id_or_name)),
    }
}

/// A path the server must read: absolute, and an existing regular file.
pub fn readable_file(field: &str, path: &str) -> ApiResult<PathBuf> {
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(ApiError::validation(field, "must be an absolute path on the server's machine"));
    }
    match std::fs::metadata(&path) {
        Ok(metadata) if metadata.is_file() => Ok(path),
        Ok(_) => Err(ApiError::validation(field, format!("{} is not a regular file", path.display()))),
        Err(error) => Err(ApiError::validation(field, format!("cannot read {}: {error}", path.display()))),
    }
}

/// The format of an image file from its first bytes (qcow2 starts with `QFI\xfb`).
fn detect_format(path: &FsPath) -> ApiResult<DiskFormat> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path)
        .map_err(|error| ApiError::validation("file", format!("cannot read {}: {error}", path.display())))?;
    let read = file.read(&mut magic).unwrap_or(0);
    Ok(if read == 4 && &magic == b"QFI\xfb" { DiskFormat::Qcow2 } else { DiskFormat::Raw })
}

#[utoipa::path(get, path = "/api/v1/os-templates", tag = "os-templates", params(PageQuery),
    responses((status = 200, body = Page<OsTemplate>)))]
pub async fn os_template_list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<OsTemplate>>> {
    let mut conn = state.store.conn().await?;
    let (items, next) = steward_store::templates::os_template_list(
        &mut conn,
        page.after.as_deref(),
        steward_store::page_limit(page.limit),
    )
    .await?;
    Ok(Json(Page { items, next }))
}

#[utoipa::path(get, path = "/api/v1/os-templates/{template}", tag = "os-templates",
    params(("template" = String, Path, description = "Name or ID")),
    responses((status = 200, body = OsTemplate), (status = 404, body = ErrorResponse)))]
pub async fn os_template_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(template): Path<String>,
) -> ApiResult<Json<OsTemplate>> {
    let mut conn = state.store.conn().await?;
    Ok(Json(find_os_template(&mut conn, &template).await?))
}

#[utoipa::path(post, path = "/api/v1/os-templates", tag = "os-templates", request_body = OsTemplateImport,
    responses((status = 202, body = steward_types::api::operations::OperationAccepted), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn os_template_import(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<OsTemplateImport>,
) -> ApiResult<Accepted> {
    let host_name = body.host.clone().unwrap_or_else(|| LOCAL_HOST.to_string());
    let entry = AuditEntry::new(&caller.user.name, "os_template.import", &body.name).details(serde_json::json!({
        "host": host_name, "file": body.file, "arch": body.arch, "boot": body.boot, "kernel": body.kernel,
        "initrd": body.initrd, "cmdline": body.cmdline, "personalization": body.personalization,
    }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        validate::name("name", &body.name)?;
        let description = body.description.clone().unwrap_or_default();
        validate::description("description", &description)?;
        let file = readable_file("file", &body.file)?;
        let format = match body.format {
            Some(format) => format,
            None => detect_format(&file)?,
        };
        let kernel = body.kernel.as_deref().map(|path| readable_file("kernel", path)).transpose()?;
        let initrd = body.initrd.as_deref().map(|path| readable_file("initrd", path)).transpose()?;
        match body.boot {
            BootMethod::Direct if kernel.is_none() => {
                return Err(ApiError::validation("kernel", "direct boot needs a kernel"));
            }
            BootMethod::Firmware if kernel.is_some() || initrd.is_some() => {
                return Err(ApiError::validation("boot", "firmware boot takes no kernel or initrd; use direct boot"));
            }
            _ => {}
        }
        if let Some(cmdline) = &body.cmdline
            && (cmdline.len() > MAX_CMDLINE || cmdline.chars().any(char::is_control))
        {
            return Err(ApiError::validation("cmdline", format!("must be one line of at most {MAX_CMDLINE} bytes")));
        }
        let (host, driver) = find_host(&state, &mut tx, &host_name).await?;
        if !driver.capabilities().image_import {
            return Err(ApiError::validation(
                "host",
                format!(
                    "host {} cannot take an image file (SMAPI has no way to write a minidisk's data); capture a \
                     template from a guest there instead (steward virtual-servers capture)",
                    host.name
                ),
            ));
        }
        let facts = driver.probe().await?;
        let needed = file_size(&file)?;
        if needed > facts.storage_free_bytes {
            return Err(ApiError::validation(
                "file",
                format!(
                    "the image needs {} MiB, host {} has {} MiB free",
                    needed >> 20,
                    host.name,
                    facts.storage_free_bytes >> 20
                ),
            ));
        }
        let template = OsTemplate {
            id: OsTemplateId::new(),
            name: body.name.clone(),
            description,
            host: host.name.clone(),
            arch: body.arch,
            boot: body.boot,
            cmdline: body.cmdline.clone(),
            has_kernel: kernel.is_some(),
            has_initrd: initrd.is_some(),
            disk_format: format,
            disk_size_bytes: 0,
            file_size_bytes: 0,
            sha256: String::new(),
            personalization: body.personalization,
            agent: body.agent,
            origin: OsTemplateOrigin::Imported,
            source_virtual_server: None,
            source_file: Some(file.display().to_string()),
            sealed: Vec::new(),
            disk_location: None,
            created_at: Timestamp::now(),
        };
        steward_store::templates::os_template_insert(
            &mut tx,
            &template,
            host.id,
            steward_store::templates::OsTemplateState::Creating,
        )
        .await?;
        let params = import::Params { host: host.id, template: template.clone(), file, kernel, initrd };
        operation_record(
            &mut tx,
            &caller,
            OperationStart {
                id: OperationId::new(),
                kind: import::KIND,
                steps: import::STEPS,
                target_kind: "os_template",
                target_id: template.id.to_string(),
                target_name: &template.name,
                params: &params,
                parent: None,
            },
        )
        .await
    }
    .await;
    let id = finish(&state, tx, entry, result).await?;
    operation_accepted(&state, id).await
}

fn file_size(path: &FsPath) -> ApiResult<u64> {
    std::fs::metadata(path)
        .map(|metadata| metadata.len())
        .map_err(|error| ApiError::validation("file", format!("cannot read {}: {error}", path.display())))
}

#[utoipa::path(delete, path = "/api/v1/os-templates/{template}", tag = "os-templates",
    params(("template" = String, Path, description = "Name or ID")),
    responses((status = 204), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn os_template_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(template): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "os_template.delete", &template);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let found = find_os_template(&mut tx, &template).await?;
        let users = steward_store::templates::os_template_users(&mut tx, found.id).await?;
        if !users.is_empty() {
            return Err(ApiError::conflict(format!(
                "OS template {:?} is deployed in {} (their disks may be overlays on it); delete or redeploy them first",
                found.name,
                users.join(", ")
            )));
        }
        let (_, driver) = find_host(&state, &mut tx, &found.host).await?;
        steward_store::templates::os_template_delete(&mut tx, found.id).await?;
        TemplateFiles::new(&driver, &found)
            .remove_all(&driver, &found)
            .await
            .map_err(|error| ApiError::new(error.code, error.message))?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    finish(&state, tx, entry, result).await
}
