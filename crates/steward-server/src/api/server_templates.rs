//! Virtual server templates: `/api/v1/server-templates`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use steward_types::api::server_templates::{DEFAULT_CPU_SHARE, ServerTemplate, ServerTemplateCreate};
use steward_types::api::{Page, PageQuery, Role, Timestamp};
use steward_types::{ErrorResponse, ServerTemplateId, validate};

use crate::api::extract::{self, Path, Query};
use crate::api::networks::find_network;
use crate::api::{Created, created};
use crate::audit::{AuditEntry, finish};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const MAX_CPUS: u32 = 64;
pub const MIN_MEMORY_MIB: u64 = 64;
pub const MAX_DISKS: usize = 8;
pub const MAX_NICS: usize = 8;
const MIN_DISK_BYTES: u64 = 1 << 20;
const MAX_DISK_BYTES: u64 = 16 << 40;

pub async fn find_server_template(conn: &mut steward_store::Conn, id_or_name: &str) -> ApiResult<ServerTemplate> {
    steward_store::templates::server_template_get(conn, id_or_name)
        .await?
        .ok_or_else(|| ApiError::not_found("server template", id_or_name))
}

#[utoipa::path(get, path = "/api/v1/server-templates", tag = "server-templates", params(PageQuery),
    responses((status = 200, body = Page<ServerTemplate>)))]
pub async fn server_template_list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<ServerTemplate>>> {
    let mut conn = state.store.conn().await?;
    let (items, next) = steward_store::templates::server_template_list(
        &mut conn,
        page.after.as_deref(),
        steward_store::page_limit(page.limit),
    )
    .await?;
    Ok(Json(Page { items, next }))
}

#[utoipa::path(post, path = "/api/v1/server-templates", tag = "server-templates", request_body = ServerTemplateCreate,
    responses((status = 201, body = ServerTemplate), (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn server_template_create(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<ServerTemplateCreate>,
) -> ApiResult<Created<ServerTemplate>> {
    let entry = AuditEntry::new(&caller.user.name, "server_template.create", &body.name).details(serde_json::json!({
        "arch": body.arch, "cpus": body.cpus, "memory_mib": body.memory_mib, "disks": body.disks, "nics": body.nics,
        "cpu_share": body.cpu_share,
    }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        validate::name("name", &body.name)?;
        let description = body.description.clone().unwrap_or_default();
        validate::description("description", &description)?;
        if body.cpus == 0 || body.cpus > MAX_CPUS {
            return Err(ApiError::validation("cpus", format!("must be between 1 and {MAX_CPUS}")));
        }
        if body.memory_mib < MIN_MEMORY_MIB || body.memory_mib > 1 << 20 {
            return Err(ApiError::validation("memory_mib", format!("must be between {MIN_MEMORY_MIB} MiB and 1 TiB")));
        }
        if body.disks.is_empty() || body.disks.len() > MAX_DISKS {
            return Err(ApiError::validation("disks", format!("must list 1 to {MAX_DISKS} disk sizes")));
        }
        if let Some((index, size)) =
            body.disks.iter().enumerate().find(|(_, size)| !(MIN_DISK_BYTES..=MAX_DISK_BYTES).contains(*size))
        {
            return Err(ApiError::validation(
                &format!("disks[{index}]"),
                format!("{size} bytes is outside 1 MiB to 16 TiB"),
            ));
        }
        if body.nics.len() > MAX_NICS {
            return Err(ApiError::validation("nics", format!("at most {MAX_NICS} NICs")));
        }
        for network in &body.nics {
            find_network(&mut tx, network).await?;
        }
        let cpu_share = body.cpu_share.unwrap_or(DEFAULT_CPU_SHARE);
        if !(1..=10_000).contains(&cpu_share) {
            return Err(ApiError::validation("cpu_share", "must be between 1 and 10000 (100 is normal)"));
        }
        let template = ServerTemplate {
            id: ServerTemplateId::new(),
            name: body.name.clone(),
            description,
            arch: body.arch,
            cpus: body.cpus,
            memory_mib: body.memory_mib,
            disks: body.disks.clone(),
            nics: body.nics.clone(),
            cpu_share,
            created_at: Timestamp::now(),
        };
        steward_store::templates::server_template_insert(&mut tx, &template).await?;
        Ok(template)
    }
    .await;
    finish(&state, tx, entry, result).await.map(created)
}

#[utoipa::path(get, path = "/api/v1/server-templates/{template}", tag = "server-templates",
    params(("template" = String, Path, description = "Name or ID")),
    responses((status = 200, body = ServerTemplate), (status = 404, body = ErrorResponse)))]
pub async fn server_template_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(template): Path<String>,
) -> ApiResult<Json<ServerTemplate>> {
    let mut conn = state.store.conn().await?;
    Ok(Json(find_server_template(&mut conn, &template).await?))
}

#[utoipa::path(delete, path = "/api/v1/server-templates/{template}", tag = "server-templates",
    params(("template" = String, Path, description = "Name or ID")),
    responses((status = 204), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn server_template_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(template): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "server_template.delete", &template);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let found = find_server_template(&mut tx, &template).await?;
        if steward_store::templates::server_template_in_use(&mut tx, found.id).await? {
            return Err(ApiError::conflict(format!(
                "virtual servers were created from server template {:?}; delete them first",
                found.name
            )));
        }
        steward_store::templates::server_template_delete(&mut tx, found.id).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    finish(&state, tx, entry, result).await
}
