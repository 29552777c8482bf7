//! Hypervisor hosts and their guests: `/api/v1/hosts`.

use axum::Json;
use axum::extract::State;
use steward_types::ErrorResponse;
use steward_types::api::Page;
use steward_types::api::hosts::{Accelerator, Host, HostArchitecture, HostGuest, HostKind};

use crate::api::extract::Path;
use crate::app::hosts::{Driver, arch_from_driver};
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
            "hint": "the local host exists when qemu-system-x86_64 or qemu-system-s390x is installed"
        }))
    })?;
    let driver = state.hosts.driver(host.id).map_err(|error| ApiError::new(error.code, error.message))?;
    Ok((host, driver))
}

async fn host_view(record: steward_store::hosts::HostRecord, driver: &Driver) -> ApiResult<Host> {
    let facts = driver.probe().await?;
    Ok(Host {
        id: record.id,
        name: record.name,
        kind: HostKind::Qemu,
        architectures: facts
            .emulators
            .iter()
            .filter_map(|emulator| {
                // Only QEMU hosts are registered so far; z/VM's CP gets its API value with z/VM host registration.
                let accelerator = match emulator.accelerator {
                    steward_hypervisor::Accelerator::Kvm => Accelerator::Kvm,
                    steward_hypervisor::Accelerator::Tcg => Accelerator::Tcg,
                    steward_hypervisor::Accelerator::ZvmCp => return None,
                };
                Some(HostArchitecture {
                    arch: arch_from_driver(emulator.arch),
                    emulator: emulator.binary.display().to_string(),
                    version: emulator.version.clone(),
                    accelerator,
                })
            })
            .collect(),
        cpus: facts.cpus,
        memory_bytes: facts.memory_total_bytes,
        memory_available_bytes: facts.memory_available_bytes,
        storage_directory: facts.storage_directory.display().to_string(),
        storage_free_bytes: facts.storage_free_bytes,
        storage_total_bytes: facts.storage_total_bytes,
        created_at: record.created_at,
    })
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
    // Which virtual server each running process is (an adopted process has a name of its own).
    let mut by_pid = std::collections::HashMap::new();
    for record in servers {
        if let steward_hypervisor::GuestState::Running { pid } = driver.power(&record.server.name).await {
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
            virtual_server: by_pid.get(&guest.pid).cloned(),
        })
        .collect();
    Ok(Json(Page { items, next: None }))
}
