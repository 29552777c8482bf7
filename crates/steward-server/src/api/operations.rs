//! Long-running operations (sagas): `/api/v1/operations`, and how an action handler starts one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use steward_types::api::operations::{Operation, OperationAccepted, OperationState};
use steward_types::api::{Page, PageQuery};
use steward_types::{ErrorResponse, OperationId};

use crate::api::extract::{Path, Query};
use crate::app::sagas::engine;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What an action handler records, in its audited transaction, to start an operation.
pub struct OperationStart<'a, P: Serialize> {
    /// Chosen by the caller when files or instance IDs are named after the operation.
    pub id: OperationId,
    pub kind: &'a str,
    pub steps: &'a [&'a str],
    pub target_kind: &'a str,
    pub target_id: String,
    pub target_name: &'a str,
    pub params: &'a P,
    /// The operation that drives this one (see `steward_store::operations::NewOperation::parent`).
    pub parent: Option<OperationId>,
}

/// Records the operation in `tx` (after refusing if another one acts on the same target).
pub async fn operation_record<P: Serialize>(
    tx: &mut steward_store::Conn,
    caller: &Caller,
    start: OperationStart<'_, P>,
) -> ApiResult<OperationId> {
    if let Some(active) = steward_store::operations::active_for_target(tx, &start.target_id).await? {
        return Err(ApiError::conflict(format!(
            "{} {:?} is busy with operation {active}; wait for it (steward operations wait {active})",
            start.target_kind, start.target_name
        )));
    }
    let params = serde_json::to_value(start.params)
        .map_err(|error| ApiError::internal(format!("cannot record the operation's parameters: {error}")))?;
    let id = start.id;
    steward_store::operations::insert(
        tx,
        &steward_store::operations::NewOperation {
            id,
            kind: start.kind,
            target_kind: start.target_kind,
            target_id: &start.target_id,
            target_name: start.target_name,
            steps: start.steps,
            params: &params,
            created_by: &caller.user.name,
            parent: start.parent,
        },
    )
    .await?;
    Ok(id)
}

pub type Accepted = (StatusCode, Json<OperationAccepted>);

/// Once the transaction that recorded it committed: runs the operation and answers `202 Accepted`.
pub async fn operation_accepted(state: &AppState, id: OperationId) -> ApiResult<Accepted> {
    let mut conn = state.store.conn().await?;
    let record = steward_store::operations::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::internal("the operation vanished after it was recorded"))?;
    drop(conn);
    engine::spawn(state.clone(), id);
    Ok((StatusCode::ACCEPTED, Json(OperationAccepted { operation: record.operation })))
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OperationListQuery {
    /// Only operations in this state.
    pub state: Option<OperationState>,
    pub limit: Option<u32>,
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/operations", tag = "operations", params(OperationListQuery),
    responses((status = 200, body = Page<Operation>)))]
pub async fn operation_list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(query): Query<OperationListQuery>,
) -> ApiResult<Json<Page<Operation>>> {
    let mut conn = state.store.conn().await?;
    let page = PageQuery { limit: query.limit, after: query.after };
    let (items, next) = steward_store::operations::list(
        &mut conn,
        query.state,
        page.after.as_deref(),
        steward_store::page_limit(page.limit),
    )
    .await?;
    Ok(Json(Page { items, next }))
}

#[utoipa::path(get, path = "/api/v1/operations/{operation}", tag = "operations",
    params(("operation" = String, Path, description = "ID")),
    responses((status = 200, body = Operation), (status = 404, body = ErrorResponse)))]
pub async fn operation_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Operation>> {
    let parsed = OperationId::parse(&id).ok_or_else(|| ApiError::not_found("operation", &id))?;
    let mut conn = state.store.conn().await?;
    let record = steward_store::operations::get(&mut conn, parsed)
        .await?
        .ok_or_else(|| ApiError::not_found("operation", &id))?;
    Ok(Json(record.operation))
}
