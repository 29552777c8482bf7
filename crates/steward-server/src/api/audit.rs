//! `GET /api/v1/audit`: the audit trail, newest first.

use axum::Json;
use axum::extract::State;
use steward_types::api::Page;
use steward_types::api::audit::{AuditListQuery, AuditRecord};

use crate::api::extract::Query;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditListQuery),
    responses((status = 200, body = Page<AuditRecord>), (status = 401, body = steward_types::ErrorResponse)))]
pub async fn audit_list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(query): Query<AuditListQuery>,
) -> ApiResult<Json<Page<AuditRecord>>> {
    let before = query
        .after
        .as_deref()
        .map(|after| {
            after
                .parse::<i64>()
                .map_err(|_| ApiError::validation("after", "must be the `next` value of a previous page"))
        })
        .transpose()?;
    let mut conn = state.store.conn().await?;
    let (items, next) = steward_store::audit::list(
        &mut conn,
        query.actor.as_deref(),
        query.action.as_deref(),
        before,
        steward_store::page_limit(query.limit),
    )
    .await?;
    Ok(Json(Page { items, next }))
}
