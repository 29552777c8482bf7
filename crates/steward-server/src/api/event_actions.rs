//! Event action plans (`/api/v1/event-action-plans`), their deliveries (`/api/v1/deliveries`) and maintenance
//! windows (`/api/v1/maintenance-windows`). Matching and delivery are `app::actions`; secrets are accepted here
//! and never returned nor audited.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use steward_types::api::event_actions::{
    Delivery, DeliveryQuery, DeliveryState, EventActionPlan, EventActionPlanCreate, EventActionPlanDefinition,
    MaintenanceWindow, MaintenanceWindowCreate, PlanAction,
};
use steward_types::api::{Page, Role, Timestamp};
use steward_types::{ErrorResponse, EventActionPlanId, MaintenanceWindowId, validate};

use crate::api::extract::{self, Path, Query};
use crate::api::{Created, created};
use crate::app::actions::definition::{check_plan, check_window};
use crate::audit::{AuditEntry, finish};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

async fn find_plan(conn: &mut steward_store::Conn, id_or_name: &str) -> ApiResult<EventActionPlan> {
    steward_store::event_actions::plan_get(conn, id_or_name)
        .await?
        .ok_or_else(|| ApiError::not_found("event action plan", id_or_name))
}

async fn find_window(conn: &mut steward_store::Conn, id_or_name: &str) -> ApiResult<MaintenanceWindow> {
    steward_store::event_actions::window_get(conn, id_or_name)
        .await?
        .ok_or_else(|| ApiError::not_found("maintenance window", id_or_name))
}

/// What the audit trail keeps of a plan: no secret, no header value.
fn audited(filter: &impl serde::Serialize, actions: &[PlanAction]) -> serde_json::Value {
    serde_json::json!({
        "filter": filter,
        "actions": actions.iter().map(PlanAction::kind).collect::<Vec<_>>(),
    })
}

#[utoipa::path(post, path = "/api/v1/event-action-plans", tag = "event-action-plans", request_body = EventActionPlanCreate,
    responses((status = 201, body = EventActionPlan), (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn event_action_plan_create(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<EventActionPlanCreate>,
) -> ApiResult<Created<EventActionPlan>> {
    let entry = AuditEntry::new(&caller.user.name, "event_action_plan.create", &body.name)
        .details(audited(&body.filter, &body.actions));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        validate::name("name", &body.name)?;
        let description = body.description.clone().unwrap_or_default();
        check_plan(&mut tx, &description, &body.filter, &body.throttle, &body.actions).await?;
        if steward_store::event_actions::plan_get(&mut tx, &body.name).await?.is_some() {
            return Err(ApiError::conflict(format!("event action plan {:?} already exists", body.name)));
        }
        let now = Timestamp::now();
        let plan = EventActionPlan {
            id: EventActionPlanId::new(),
            name: body.name.clone(),
            description,
            enabled: body.enabled.unwrap_or(true),
            filter: body.filter.clone(),
            throttle: body.throttle,
            actions: body.actions.iter().map(strip_flags).collect(),
            created_by: caller.user.name.clone(),
            created_at: now,
            updated_at: now,
        };
        steward_store::event_actions::plan_insert(&mut tx, &plan).await?;
        Ok(plan.redacted())
    }
    .await;
    Ok(created(finish(&state, tx, entry, result).await?))
}

/// The `has_secret`/`has_password` flags are the server's to set when it shows a plan; what a caller sent in them
/// is not kept.
fn strip_flags(action: &PlanAction) -> PlanAction {
    let mut action = action.clone();
    match &mut action {
        PlanAction::Webhook { has_secret, .. } => *has_secret = false,
        PlanAction::Email { has_password, .. } => *has_password = false,
        _ => {}
    }
    action
}

#[utoipa::path(get, path = "/api/v1/event-action-plans", tag = "event-action-plans",
    responses((status = 200, body = Page<EventActionPlan>)))]
pub async fn event_action_plan_list(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Page<EventActionPlan>>> {
    let mut conn = state.store.conn().await?;
    let plans = steward_store::event_actions::plan_list(&mut conn).await?;
    Ok(Json(Page { items: plans.iter().map(EventActionPlan::redacted).collect(), next: None }))
}

#[utoipa::path(get, path = "/api/v1/event-action-plans/{plan}", tag = "event-action-plans",
    params(("plan" = String, Path, description = "Name or ID")),
    responses((status = 200, body = EventActionPlan), (status = 404, body = ErrorResponse)))]
pub async fn event_action_plan_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(plan): Path<String>,
) -> ApiResult<Json<EventActionPlan>> {
    let mut conn = state.store.conn().await?;
    Ok(Json(find_plan(&mut conn, &plan).await?.redacted()))
}

#[utoipa::path(put, path = "/api/v1/event-action-plans/{plan}", tag = "event-action-plans",
    params(("plan" = String, Path, description = "Name or ID")), request_body = EventActionPlanDefinition,
    responses((status = 200, body = EventActionPlan), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn event_action_plan_update(
    State(state): State<AppState>,
    caller: Caller,
    Path(plan): Path<String>,
    extract::Json(body): extract::Json<EventActionPlanDefinition>,
) -> ApiResult<Json<EventActionPlan>> {
    let entry = AuditEntry::new(&caller.user.name, "event_action_plan.update", &plan)
        .details(audited(&body.filter, &body.actions));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let mut found = find_plan(&mut tx, &plan).await?;
        let description = body.description.clone().unwrap_or_default();
        check_plan(&mut tx, &description, &body.filter, &body.throttle, &body.actions).await?;
        found.description = description;
        found.enabled = body.enabled.unwrap_or(true);
        found.filter = body.filter.clone();
        found.throttle = body.throttle;
        found.actions = body.actions.iter().map(strip_flags).collect();
        found.updated_at = Timestamp::now();
        steward_store::event_actions::plan_update(&mut tx, &found).await?;
        // Repeat control starts afresh under the new definition; deliveries already recorded keep theirs.
        steward_store::event_actions::throttles_clear(&mut tx, found.id).await?;
        Ok(found.redacted())
    }
    .await;
    Ok(Json(finish(&state, tx, entry, result).await?))
}

#[utoipa::path(delete, path = "/api/v1/event-action-plans/{plan}", tag = "event-action-plans",
    params(("plan" = String, Path, description = "Name or ID")),
    responses((status = 204), (status = 404, body = ErrorResponse)))]
pub async fn event_action_plan_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(plan): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "event_action_plan.delete", &plan);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let found = find_plan(&mut tx, &plan).await?;
        // Its deliveries go with it: pending ones are not carried out.
        steward_store::event_actions::plan_delete(&mut tx, found.id).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    finish(&state, tx, entry, result).await
}

#[utoipa::path(get, path = "/api/v1/deliveries", tag = "event-action-plans", params(DeliveryQuery),
    responses((status = 200, body = Page<Delivery>), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn delivery_list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(query): Query<DeliveryQuery>,
) -> ApiResult<Json<Page<Delivery>>> {
    let delivery_state = match query.state.as_deref() {
        Some(text) => Some(DeliveryState::parse(text).ok_or_else(|| {
            let known: Vec<&str> = DeliveryState::ALL.iter().map(|state| state.as_str()).collect();
            ApiError::validation("state", format!("{text:?} is not a delivery state ({})", known.join(", ")))
        })?),
        None => None,
    };
    let mut conn = state.store.conn().await?;
    let plan = match query.plan.as_deref() {
        Some(plan) => Some(find_plan(&mut conn, plan).await?.id),
        None => None,
    };
    let (items, next) = steward_store::event_actions::delivery_list(
        &mut conn,
        plan,
        delivery_state,
        query.after.as_deref(),
        steward_store::page_limit(query.limit),
    )
    .await?;
    Ok(Json(Page { items, next }))
}

#[utoipa::path(post, path = "/api/v1/maintenance-windows", tag = "event-action-plans", request_body = MaintenanceWindowCreate,
    responses((status = 201, body = MaintenanceWindow), (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn maintenance_window_create(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<MaintenanceWindowCreate>,
) -> ApiResult<Created<MaintenanceWindow>> {
    let entry = AuditEntry::new(&caller.user.name, "maintenance_window.create", &body.name)
        .details(serde_json::json!({ "scope": body.scope, "schedule": body.schedule }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        validate::name("name", &body.name)?;
        let description = body.description.clone().unwrap_or_default();
        validate::description("description", &description)?;
        check_window(&mut tx, &body.scope, &body.schedule).await?;
        if steward_store::event_actions::window_get(&mut tx, &body.name).await?.is_some() {
            return Err(ApiError::conflict(format!("maintenance window {:?} already exists", body.name)));
        }
        let window = MaintenanceWindow {
            id: MaintenanceWindowId::new(),
            name: body.name.clone(),
            description,
            scope: body.scope.clone(),
            schedule: body.schedule.clone(),
            created_by: caller.user.name.clone(),
            created_at: Timestamp::now(),
        };
        steward_store::event_actions::window_insert(&mut tx, &window).await?;
        Ok(window)
    }
    .await;
    Ok(created(finish(&state, tx, entry, result).await?))
}

#[utoipa::path(get, path = "/api/v1/maintenance-windows", tag = "event-action-plans",
    responses((status = 200, body = Page<MaintenanceWindow>)))]
pub async fn maintenance_window_list(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Page<MaintenanceWindow>>> {
    let mut conn = state.store.conn().await?;
    Ok(Json(Page { items: steward_store::event_actions::window_list(&mut conn).await?, next: None }))
}

#[utoipa::path(get, path = "/api/v1/maintenance-windows/{window}", tag = "event-action-plans",
    params(("window" = String, Path, description = "Name or ID")),
    responses((status = 200, body = MaintenanceWindow), (status = 404, body = ErrorResponse)))]
pub async fn maintenance_window_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(window): Path<String>,
) -> ApiResult<Json<MaintenanceWindow>> {
    let mut conn = state.store.conn().await?;
    Ok(Json(find_window(&mut conn, &window).await?))
}

#[utoipa::path(delete, path = "/api/v1/maintenance-windows/{window}", tag = "event-action-plans",
    params(("window" = String, Path, description = "Name or ID")),
    responses((status = 204), (status = 404, body = ErrorResponse)))]
pub async fn maintenance_window_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(window): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "maintenance_window.delete", &window);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let found = find_window(&mut tx, &window).await?;
        steward_store::event_actions::window_delete(&mut tx, found.id).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    finish(&state, tx, entry, result).await
}
