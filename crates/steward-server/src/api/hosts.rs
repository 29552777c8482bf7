//! Hypervisor hosts and their guests: `/api/v1/hosts`.

use axum::Json;
use axum::extract::State;
use std::sync::Arc;

use steward_types::api::hosts::{
    Accelerator, Host, HostArchitecture, HostCreate, HostGuest, HostKind, ZvmHostSettings,
};
use steward_types::api::{Page, Role, Timestamp};
use steward_types::{ErrorCode, ErrorResponse, validate};

use crate::api::extract::{self, Path};
use crate::api::{Created, created};
use crate::app::hosts::{Driver, arch_from_driver};
use crate::audit::{AuditEntry, finish};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub async fn find_host(
    state: &AppState,
    conn: &mut steward_store::Conn,
    id_or_name: &str,
) -> ApiResult<(steward_store::hosts::HostRecord, Driver)> {
    let host = steward_store::hosts::get(conn, id_or_name).await?.ok_or_else(|| {
        ApiError::not_found("host", id_or_name).with_details(serde_json::json!({
            "kind": "host", "id": id_or_name,
            "hint": "the local host exists when qemu-system-x86_64 or qemu-system-s390x is installed; z/VM hosts are added with steward hosts add"
        }))
    })?;
    let driver = state.hosts.driver(host.id).map_err(|error| ApiError::new(error.code, error.message))?;
    Ok((host, driver))
}

/// The host with what it can do now; a host that cannot be probed is shown with the reason and zero figures.
async fn host_view(record: steward_store::hosts::HostRecord, driver: &Driver) -> ApiResult<Host> {
    let (facts, error) = match driver.probe().await {
        Ok(facts) => (facts, None),
        Err(error) if record.kind == HostKind::Zvm => (
            steward_hypervisor::HostFacts {
                emulators: Vec::new(),
                cpus: 0,
                memory_total_bytes: 0,
                memory_available_bytes: 0,
                storage_directory: Default::default(),
                storage_free_bytes: 0,
                storage_total_bytes: 0,
            },
            Some(crate::error_chain(&error)),
        ),
        Err(error) => return Err(error.into()),
    };
    Ok(Host {
        error,
        id: record.id,
        name: record.name,
        kind: record.kind,
        architectures: facts
            .emulators
            .iter()
            .map(|emulator| HostArchitecture {
                arch: arch_from_driver(emulator.arch),
                emulator: emulator.binary.display().to_string(),
                version: emulator.version.clone(),
                accelerator: match emulator.accelerator {
                    steward_hypervisor::Accelerator::Kvm => Accelerator::Kvm,
                    steward_hypervisor::Accelerator::Tcg => Accelerator::Tcg,
                    steward_hypervisor::Accelerator::ZvmCp => Accelerator::ZvmCp,
                },
            })
            .collect(),
        cpus: facts.cpus,
        memory_bytes: facts.memory_total_bytes,
        memory_available_bytes: facts.memory_available_bytes,
        storage_directory: facts.storage_directory.display().to_string(),
        storage_free_bytes: facts.storage_free_bytes,
        storage_total_bytes: facts.storage_total_bytes,
        zvm: record.settings.as_deref().and_then(|settings| serde_json::from_str(settings).ok()),
        created_at: record.created_at,
    })
}

/// The problems found on a z/VM system that is not ready, with what to change there: `422` with
/// `details.problems`.
fn not_ready(address: &str, problems: Vec<steward_hypervisor::zvm::preflight::PreflightProblem>) -> ApiError {
    let summary: Vec<String> =
        problems.iter().map(|problem| format!("{}: {}", problem.check, problem.problem)).collect();
    ApiError::new(
        ErrorCode::ValidationFailed,
        format!("the z/VM system at {address} is not ready for Steward: {}", summary.join("; ")),
    )
    .with_details(serde_json::json!({ "problems": problems }))
}

#[utoipa::path(post, path = "/api/v1/hosts", tag = "hosts", request_body = HostCreate,
    responses((status = 201, body = Host), (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn host_create(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<HostCreate>,
) -> ApiResult<Created<Host>> {
    let address = body.zvm.as_ref().map(|settings| settings.address.clone());
    let entry = AuditEntry::new(&caller.user.name, "host.create", &body.name)
        .details(serde_json::json!({ "kind": body.kind, "address": address }));
    crate::audit::authorize(&state, &caller, Role::Administrator, &entry).await?;
    // Everything is checked, the system included, before the write transaction: z/VM may take seconds to answer.
    let checked = async {
        validate::name("name", &body.name)?;
        if body.kind != HostKind::Zvm {
            return Err(ApiError::validation(
                "kind",
                "only z/VM hosts are added through the API; the local QEMU host registers itself when QEMU is installed",
            ));
        }
        let settings: ZvmHostSettings =
            body.zvm.clone().ok_or_else(|| ApiError::validation("zvm", "is required for a z/VM host"))?;
        let password = body.password.clone().ok_or_else(|| ApiError::validation("password", "is required"))?;
        if password.is_empty() {
            return Err(ApiError::validation("password", "is empty"));
        }
        let zvm = crate::app::zvm::driver(&settings, &password)?;
        let report = zvm.preflight().await.map_err(|problems| not_ready(&settings.address, problems))?;
        Ok((settings, password, zvm, report))
    }
    .await;
    let (settings, password, zvm, report) = match checked {
        Ok(checked) => checked,
        Err(error) => {
            let failed: ApiResult<Created<Host>> = Err(error);
            crate::audit::record(&state, entry, &failed).await;
            return failed;
        }
    };
    let entry = entry.details(serde_json::json!({
        "kind": body.kind, "address": settings.address, "user": settings.user, "disk_pool": settings.disk_pool,
        "api_level": report.api_level, "cp_level": report.cp_level,
    }));
    let record = steward_store::hosts::HostRecord {
        id: steward_types::HostId::new(),
        name: body.name.clone(),
        kind: HostKind::Zvm,
        settings: Some(serde_json::to_string(&settings).map_err(|error| ApiError::internal(error.to_string()))?),
        created_at: Timestamp::now(),
    };
    let mut tx = state.store.begin().await?;
    let result = steward_store::hosts::insert(&mut tx, &record, Some(&password)).await.map_err(ApiError::from);
    finish(&state, tx, entry, result).await?;
    let driver = Driver::new(Arc::new(zvm), crate::app::zvm::storage(&state.data_dir, &record.name));
    state.hosts.insert(record.id, driver.clone());
    tracing::info!(host = %record.name, api_level = report.api_level, "z/VM host registered");
    Ok(created(host_view(record, &driver).await?))
}

#[utoipa::path(delete, path = "/api/v1/hosts/{host}", tag = "hosts", params(("host" = String, Path, description = "Name or ID")),
    responses((status = 204), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn host_delete(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "host.delete", &host);
    let mut tx = crate::audit::begin(&state, &caller, Role::Administrator, &entry).await?;
    let result = async {
        let record =
            steward_store::hosts::get(&mut tx, &host).await?.ok_or_else(|| ApiError::not_found("host", &host))?;
        if record.kind == HostKind::Qemu {
            return Err(ApiError::conflict(format!(
                "host {} is this machine's QEMU host; it is registered as long as QEMU is installed",
                record.name
            )));
        }
        let dependents = steward_store::hosts::dependents(&mut tx, record.id).await?;
        if !dependents.is_empty() {
            let listed: Vec<String> = dependents.iter().map(|(what, count)| format!("{count} {what}")).collect();
            return Err(ApiError::conflict(format!(
                "host {} still has {}; delete them first (nothing on z/VM is touched by removing a host)",
                record.name,
                listed.join(", ")
            )));
        }
        steward_store::hosts::delete(&mut tx, record.id).await?;
        Ok(record.id)
    }
    .await;
    let id = finish(&state, tx, entry, result).await?;
    state.hosts.remove(id);
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/hosts", tag = "hosts", responses((status = 200, body = Page<Host>)))]
pub async fn host_list(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Page<Host>>> {
    let mut conn = state.store.conn().await?;
    let records = steward_store::hosts::list(&mut conn).await?;
    drop(conn);
    let mut items = Vec::new();
    for record in records {
        if let Ok(driver) = state.hosts.driver(record.id) {
            items.push(host_view(record, &driver).await?);
        }
    }
    Ok(Json(Page { items, next: None }))
}

#[utoipa::path(get, path = "/api/v1/hosts/{host}", tag = "hosts", params(("host" = String, Path, description = "Name or ID")),
    responses((status = 200, body = Host), (status = 404, body = ErrorResponse)))]
pub async fn host_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(host): Path<String>,
) -> ApiResult<Json<Host>> {
    let mut conn = state.store.conn().await?;
    let (record, driver) = find_host(&state, &mut conn, &host).await?;
    drop(conn);
    Ok(Json(host_view(record, &driver).await?))
}

#[utoipa::path(get, path = "/api/v1/hosts/{host}/guests", tag = "hosts", params(("host" = String, Path, description = "Name or ID")),
    responses((status = 200, body = Page<HostGuest>), (status = 404, body = ErrorResponse)))]
pub async fn host_guests(
    State(state): State<AppState>,
    _caller: Caller,
    Path(host): Path<String>,
) -> ApiResult<Json<Page<HostGuest>>> {
    let mut conn = state.store.conn().await?;
    let (record, driver) = find_host(&state, &mut conn, &host).await?;
    let servers = steward_store::virtual_servers::list_on_host(&mut conn, record.id).await?;
    drop(conn);
    let listings = driver.list_guests().await?;
    // Which virtual server each running process is (an adopted process has a name of its own); guests that are
    // no processes (z/VM user IDs) are known by name.
    let by_name = driver.capabilities().definition_adoption;
    let mut by_pid = std::collections::HashMap::new();
    let mut names = std::collections::HashMap::new();
    for record in servers {
        if by_name {
            names.insert(record.server.name.to_ascii_uppercase(), record.server.name);
        } else if let steward_hypervisor::GuestState::Running { pid } = driver.power(&record.server.name).await {
            by_pid.insert(pid, record.server.name);
        }
    }
    let items = listings
        .into_iter()
        .map(|guest| HostGuest {
            name: guest.name.clone().unwrap_or_else(|| guest.pid.to_string()),
            pid: guest.pid,
            arch: guest.arch.map(arch_from_driver),
            cpus: guest.cpus,
            memory_mib: guest.memory_mib,
            disks: guest.disks.iter().map(|disk| disk.display().to_string()).collect(),
            managed: guest.managed,
            virtual_server: match (by_name, &guest.name) {
                (true, Some(name)) => names.get(&name.to_ascii_uppercase()).cloned(),
                _ => by_pid.get(&guest.pid).cloned(),
            },
        })
        .collect();
    Ok(Json(Page { items, next: None }))
}
