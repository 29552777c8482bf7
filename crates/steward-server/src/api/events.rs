//! Events: `GET /api/v1/events`, newest first, filtered by type and source.

use axum::Json;
use axum::extract::State;
use steward_types::api::Page;
use steward_types::api::events::{Event, EventQuery};

use crate::api::extract::Query;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, body = Page<Event>)))]
pub async fn event_list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(query): Query<EventQuery>,
) -> ApiResult<Json<Page<Event>>> {
    let mut conn = state.store.conn().await?;
    let (items, next) = steward_store::events::list(
        &mut conn,
        query.event_type.as_deref(),
        query.source.as_deref(),
        query.after.as_deref(),
        steward_store::page_limit(query.limit),
    )
    .await?;
    Ok(Json(Page { items, next }))
}
