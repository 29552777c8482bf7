//! Isolated virtual networks: `/api/v1/networks`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use steward_types::api::networks::{Network, NetworkCreate};
use steward_types::api::{Page, PageQuery, Role, Timestamp};
use steward_types::{ErrorResponse, NetworkId, validate};

use crate::api::extract::{self, Path, Query};
use crate::api::hosts::find_host;
use crate::api::{Created, created};
use crate::audit::{AuditEntry, finish};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub async fn find_network(conn: &mut steward_store::Conn, id_or_name: &str) -> ApiResult<Network> {
    steward_store::hosts::network_get(conn, id_or_name).await?.ok_or_else(|| ApiError::not_found("network", id_or_name))
}

#[utoipa::path(get, path = "/api/v1/networks", tag = "networks", params(PageQuery), responses((status = 200, body = Page<Network>)))]
pub async fn network_list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Network>>> {
    let mut conn = state.store.conn().await?;
    let (items, next) =
        steward_store::hosts::network_list(&mut conn, page.after.as_deref(), steward_store::page_limit(page.limit))
            .await?;
    Ok(Json(Page { items, next }))
}

#[utoipa::path(post, path = "/api/v1/networks", tag = "networks", request_body = NetworkCreate,
    responses((status = 201, body = Network), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn network_create(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<NetworkCreate>,
) -> ApiResult<Created<Network>> {
    let entry = AuditEntry::new(&caller.user.name, "network.create", &body.name)
        .details(serde_json::json!({ "host": body.host, "subnet": body.subnet }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        validate::name("name", &body.name)?;
        let description = body.description.clone().unwrap_or_default();
        validate::description("description", &description)?;
        if let Some(subnet) = &body.subnet {
            let (address, prefix) = validate::cidr("subnet", subnet)?;
            let network = validate::network_address(address, prefix);
            if network != address {
                return Err(ApiError::validation(
                    "subnet",
                    format!("{subnet} is not a network address (did you mean {network}/{prefix}?)"),
                ));
            }
        }
        let (host, driver) = find_host(&state, &mut tx, &body.host).await?;
        if steward_store::hosts::network_get(&mut tx, &body.name).await?.is_some() {
            return Err(ApiError::conflict(format!("network {:?} already exists", body.name)));
        }
        let network = Network {
            id: NetworkId::new(),
            name: body.name.clone(),
            host: host.name.clone(),
            subnet: body.subnet.clone(),
            description,
            attached_nics: 0,
            created_at: Timestamp::now(),
        };
        steward_store::hosts::network_insert(&mut tx, &network, host.id).await?;
        // The bridge is made last: if it cannot be made, the transaction rolls back and nothing is left.
        driver.network_create(&network.name).await.map_err(|error| {
            ApiError::internal(format!(
                "cannot create the network on host {}: {}",
                host.name,
                crate::error_chain(&error)
            ))
        })?;
        Ok(network)
    }
    .await;
    finish(&state, tx, entry, result).await.map(created)
}

#[utoipa::path(get, path = "/api/v1/networks/{network}", tag = "networks", params(("network" = String, Path, description = "Name or ID")),
    responses((status = 200, body = Network), (status = 404, body = ErrorResponse)))]
pub async fn network_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(network): Path<String>,
) -> ApiResult<Json<Network>> {
    let mut conn = state.store.conn().await?;
    Ok(Json(find_network(&mut conn, &network).await?))
}

#[utoipa::path(delete, path = "/api/v1/networks/{network}", tag = "networks", params(("network" = String, Path, description = "Name or ID")),
    responses((status = 204), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn network_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(network): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "network.delete", &network);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let found = find_network(&mut tx, &network).await?;
        if found.attached_nics > 0 {
            return Err(ApiError::conflict(format!(
                "network {:?} has {} NIC(s) of virtual servers attached; delete those virtual servers first",
                found.name, found.attached_nics
            )));
        }
        let (_, driver) = find_host(&state, &mut tx, &found.host).await?;
        steward_store::hosts::network_delete(&mut tx, found.id).await?;
        driver.network_delete(&found.name).await.map_err(|error| {
            ApiError::internal(format!("cannot remove the network from its host: {}", crate::error_chain(&error)))
        })?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    finish(&state, tx, entry, result).await
}
