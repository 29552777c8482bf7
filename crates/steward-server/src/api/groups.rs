//! Static and dynamic groups: `/api/v1/groups`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use steward_types::api::groups::{Group, GroupCreate, GroupKind, GroupMembersChange, GroupUpdate};
use steward_types::api::systems::SystemSummary;
use steward_types::api::{Page, PageQuery, Role, Timestamp};
use steward_types::{ErrorResponse, GroupId, validate};

use crate::api::extract::{self, Path, Query};
use crate::api::systems::find_system;
use crate::api::{Created, created};
use crate::app::groups::{evaluate_fleet, parse_query, store_members};
use crate::audit::{AuditEntry, finish};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The largest number of systems one call may add to a static group.
const MAX_MEMBERS_PER_CALL: usize = 1000;

async fn find_group(conn: &mut steward_store::Conn, id_or_name: &str) -> ApiResult<Group> {
    steward_store::groups::get(conn, id_or_name).await?.ok_or_else(|| ApiError::not_found("group", id_or_name))
}

#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", params(PageQuery), responses((status = 200, body = Page<Group>)))]
pub async fn group_list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Group>>> {
    let mut conn = state.store.conn().await?;
    let (items, next) =
        steward_store::groups::list(&mut conn, page.after.as_deref(), steward_store::page_limit(page.limit)).await?;
    Ok(Json(Page { items, next }))
}

#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", request_body = GroupCreate,
    responses((status = 201, body = Group), (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn group_create(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<GroupCreate>,
) -> ApiResult<Created<Group>> {
    let entry = AuditEntry::new(&caller.user.name, "group.create", &body.name)
        .details(serde_json::json!({ "query": body.query, "description": body.description }));
    // The fleet is evaluated before the write lock is taken (and only for a caller who may create groups).
    let query = body.query.as_deref().map(parse_query).transpose();
    let evaluation = match (&query, caller.require(Role::Operator)) {
        (Ok(Some(query)), Ok(())) => Some(evaluate_fleet(&state.store, query).await?),
        _ => None,
    };
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        validate::name("name", &body.name)?;
        let description = body.description.clone().unwrap_or_default();
        validate::description("description", &description)?;
        let query = query?;
        let mut group = Group {
            id: GroupId::new(),
            name: body.name.clone(),
            kind: if query.is_some() { GroupKind::Dynamic } else { GroupKind::Static },
            description,
            query: query.as_ref().map(|query| query.as_str().to_string()),
            member_count: 0,
            created_at: Timestamp::now(),
        };
        steward_store::groups::insert(&mut tx, &group).await?;
        if let (Some(query), Some(evaluation)) = (&query, evaluation) {
            group.member_count = store_members(&mut tx, group.id, query, evaluation).await?;
        }
        Ok(group)
    }
    .await;
    finish(&state, tx, entry, result).await.map(created)
}

#[utoipa::path(get, path = "/api/v1/groups/{group}", tag = "groups", params(("group" = String, Path, description = "Name or ID")),
    responses((status = 200, body = Group), (status = 404, body = ErrorResponse)))]
pub async fn group_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(group): Path<String>,
) -> ApiResult<Json<Group>> {
    let mut conn = state.store.conn().await?;
    Ok(Json(find_group(&mut conn, &group).await?))
}

#[utoipa::path(patch, path = "/api/v1/groups/{group}", tag = "groups", request_body = GroupUpdate,
    params(("group" = String, Path, description = "Name or ID")),
    responses((status = 200, body = Group), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn group_update(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    extract::Json(body): extract::Json<GroupUpdate>,
) -> ApiResult<Json<Group>> {
    let mut entry = AuditEntry::new(&caller.user.name, "group.update", &group)
        .details(serde_json::json!({ "query": body.query, "description": body.description }));
    // As for a new group, the fleet is evaluated before the write lock is taken.
    let evaluation = match (body.query.as_deref().map(parse_query).transpose(), caller.require(Role::Operator)) {
        (Ok(Some(query)), Ok(())) => Some(evaluate_fleet(&state.store, &query).await?),
        _ => None,
    };
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let found = find_group(&mut tx, &group).await?;
        entry.details = serde_json::json!({
            "before": { "query": found.query, "description": found.description },
            "after": { "query": body.query.as_ref().or(found.query.as_ref()), "description": body.description.as_ref().unwrap_or(&found.description) },
        });
        let description = body.description.clone().unwrap_or(found.description.clone());
        validate::description("description", &description)?;
        let query = match (&body.query, found.kind) {
            (Some(_), GroupKind::Static) => {
                return Err(ApiError::validation(
                    "query",
                    "a static group has no query; create a dynamic group instead",
                ));
            }
            (Some(text), GroupKind::Dynamic) => Some(parse_query(text)?),
            (None, _) => None,
        };
        let stored_query = query.as_ref().map(|q| q.as_str().to_string()).or(found.query.clone());
        steward_store::groups::update(&mut tx, found.id, stored_query.as_deref(), &description).await?;
        if let (Some(query), Some(evaluation)) = (&query, evaluation) {
            store_members(&mut tx, found.id, query, evaluation).await?;
        }
        find_group(&mut tx, &found.id.to_string()).await
    }
    .await;
    finish(&state, tx, entry, result).await.map(Json)
}

#[utoipa::path(delete, path = "/api/v1/groups/{group}", tag = "groups", params(("group" = String, Path, description = "Name or ID")),
    responses((status = 204), (status = 404, body = ErrorResponse)))]
pub async fn group_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "group.delete", &group);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let found = find_group(&mut tx, &group).await?;
        steward_store::groups::delete(&mut tx, found.id).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    finish(&state, tx, entry, result).await
}

#[utoipa::path(get, path = "/api/v1/groups/{group}/members", tag = "groups", params(("group" = String, Path, description = "Name or ID"), PageQuery),
    responses((status = 200, body = Page<SystemSummary>), (status = 404, body = ErrorResponse)))]
pub async fn group_members(
    State(state): State<AppState>,
    _caller: Caller,
    Path(group): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<SystemSummary>>> {
    let mut conn = state.store.conn().await?;
    let found = find_group(&mut conn, &group).await?;
    let (items, next) = steward_store::groups::members(
        &mut conn,
        found.id,
        page.after.as_deref(),
        steward_store::page_limit(page.limit),
    )
    .await?;
    Ok(Json(Page { items, next }))
}

fn require_static(group: &Group) -> ApiResult<()> {
    if group.kind == GroupKind::Dynamic {
        return Err(ApiError::conflict(format!(
            "{:?} is a dynamic group: its members follow its query and cannot be changed by hand",
            group.name
        )));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/groups/{group}/members", tag = "groups", request_body = GroupMembersChange,
    params(("group" = String, Path, description = "Name or ID")),
    responses((status = 200, body = Group), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn group_members_add(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    extract::Json(body): extract::Json<GroupMembersChange>,
) -> ApiResult<Json<Group>> {
    let entry = AuditEntry::new(&caller.user.name, "group.add_members", &group)
        .details(serde_json::json!({ "systems": body.systems }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        if body.systems.is_empty() || body.systems.len() > MAX_MEMBERS_PER_CALL {
            return Err(ApiError::validation("systems", format!("must name 1 to {MAX_MEMBERS_PER_CALL} systems")));
        }
        let found = find_group(&mut tx, &group).await?;
        require_static(&found)?;
        // All or nothing: one unknown system leaves the group as it was.
        for system in &body.systems {
            let summary = find_system(&mut tx, system).await?;
            steward_store::groups::member_add(&mut tx, found.id, summary.id).await?;
        }
        find_group(&mut tx, &found.id.to_string()).await
    }
    .await;
    finish(&state, tx, entry, result).await.map(Json)
}

#[utoipa::path(delete, path = "/api/v1/groups/{group}/members/{system}", tag = "groups",
    params(("group" = String, Path, description = "Name or ID"), ("system" = String, Path, description = "Name or ID")),
    responses((status = 204), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn group_member_remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((group, system)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "group.remove_member", &group)
        .details(serde_json::json!({ "system": system }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let found = find_group(&mut tx, &group).await?;
        require_static(&found)?;
        let summary = find_system(&mut tx, &system).await?;
        if !steward_store::groups::member_remove(&mut tx, found.id, summary.id).await? {
            return Err(ApiError::not_found("member of this group", &system));
        }
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    finish(&state, tx, entry, result).await
}
