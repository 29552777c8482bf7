//! Managed systems: `/api/v1/systems`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use steward_protocol::{AgentRequest, AgentResponse, ServerMessage};
use steward_types::ErrorResponse;
use steward_types::api::systems::{
    CommandOutcome, InventoryChange, SystemCommand, SystemDetail, SystemListQuery, SystemSummary,
};
use steward_types::api::{Page, PageQuery, Role, Timestamp};

use crate::api::extract::{Json as JsonBody, Path, Query};
use crate::audit::{AuditEntry, finish};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/systems", tag = "systems", params(SystemListQuery),
    responses((status = 200, body = Page<SystemSummary>), (status = 404, body = ErrorResponse)))]
pub async fn system_list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(query): Query<SystemListQuery>,
) -> ApiResult<Json<Page<SystemSummary>>> {
    let mut conn = state.store.conn().await?;
    let group = match &query.group {
        Some(group) => Some(
            steward_store::groups::get(&mut conn, group).await?.ok_or_else(|| ApiError::not_found("group", group))?,
        ),
        None => None,
    };
    let group_name = group.as_ref().map(|group| group.name.clone());
    let group = group.map(|group| group.id);
    let limit = steward_store::page_limit(query.limit);
    let Some(text) = &query.query else {
        let (items, next) =
            steward_store::systems::list(&mut conn, group, query.state, query.after.as_deref(), limit).await?;
        return Ok(Json(Page { items, next }));
    };
    let matcher = crate::app::groups::parse_query(text)?;
    let mut names = crate::app::groups::matching_names(&mut conn, &matcher).await?;
    names.retain(|name| query.after.as_deref().is_none_or(|after| name.as_str() > after));
    let mut items = Vec::new();
    for name in names {
        if items.len() as u32 >= limit {
            break;
        }
        let Some(system) = steward_store::systems::get(&mut conn, &name).await? else { continue };
        let in_group = match &group_name {
            Some(group) => steward_store::groups::groups_of(&mut conn, system.id).await?.contains(group),
            None => true,
        };
        if in_group && query.state.is_none_or(|state| state == system.state) {
            items.push(system);
        }
    }
    let next = (items.len() as u32 >= limit).then(|| items.last().map(|s| s.name.clone())).flatten();
    Ok(Json(Page { items, next }))
}

pub(crate) async fn find_system(conn: &mut steward_store::Conn, id_or_name: &str) -> ApiResult<SystemSummary> {
    steward_store::systems::get(conn, id_or_name).await?.ok_or_else(|| ApiError::not_found("system", id_or_name))
}

#[utoipa::path(get, path = "/api/v1/systems/{system}", tag = "systems", params(("system" = String, Path, description = "Name or ID")),
    responses((status = 200, body = SystemDetail), (status = 404, body = ErrorResponse)))]
pub async fn system_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(system): Path<String>,
) -> ApiResult<Json<SystemDetail>> {
    let mut conn = state.store.conn().await?;
    let summary = find_system(&mut conn, &system).await?;
    let inventory = steward_store::systems::inventory_get(&mut conn, summary.id).await?;
    let groups = steward_store::groups::groups_of(&mut conn, summary.id).await?;
    let (inventory, inventory_updated_at) = match inventory {
        Some((inventory, at)) => (Some(inventory), Some(at)),
        None => (None, None),
    };
    Ok(Json(SystemDetail { summary, inventory, inventory_updated_at, groups }))
}

#[utoipa::path(delete, path = "/api/v1/systems/{system}", tag = "systems", params(("system" = String, Path, description = "Name or ID")),
    responses((status = 204), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn system_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(system): Path<String>,
) -> ApiResult<StatusCode> {
    let mut entry = AuditEntry::new(&caller.user.name, "system.delete", &system);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let mut deleted = None;
    let result = async {
        let summary = find_system(&mut tx, &system).await?;
        entry.details = serde_json::json!({ "before": {
            "id": summary.id, "name": summary.name, "hostname": summary.hostname, "os": summary.os, "arch": summary.arch,
        }});
        steward_store::systems::certificates_revoke(&mut tx, summary.id, Timestamp::now()).await?;
        steward_store::systems::delete(&mut tx, summary.id).await?;
        deleted = Some(summary.id);
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    let result = finish(&state, tx, entry, result).await;
    if let (Ok(_), Some(id)) = (&result, deleted) {
        // Only after the revocation is committed: the agent's connection ends now and it cannot come back.
        state.agents.disconnect(id, "the system was removed from Steward and its certificate revoked");
    }
    result
}

#[utoipa::path(get, path = "/api/v1/systems/{system}/inventory-history", tag = "systems", params(("system" = String, Path, description = "Name or ID"), PageQuery),
    responses((status = 200, body = Page<InventoryChange>), (status = 404, body = ErrorResponse)))]
pub async fn system_inventory_history(
    State(state): State<AppState>,
    _caller: Caller,
    Path(system): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<InventoryChange>>> {
    let before = page
        .after
        .as_deref()
        .map(|after| {
            after
                .parse::<i64>()
                .map_err(|_| ApiError::validation("after", "must be the `next` value of a previous page"))
        })
        .transpose()?;
    let mut conn = state.store.conn().await?;
    let summary = find_system(&mut conn, &system).await?;
    let (items, next) =
        steward_store::systems::history_list(&mut conn, summary.id, before, steward_store::page_limit(page.limit))
            .await?;
    Ok(Json(Page { items, next }))
}

#[utoipa::path(post, path = "/api/v1/systems/{system}/refresh-inventory", tag = "systems", params(("system" = String, Path, description = "Name or ID")),
    responses((status = 202), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn system_refresh_inventory(
    State(state): State<AppState>,
    caller: Caller,
    Path(system): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "system.refresh_inventory", &system);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let summary = find_system(&mut tx, &system).await?;
        if !state.agents.send(summary.id, ServerMessage::RefreshInventory { full: false }) {
            return Err(ApiError::conflict(format!("the agent of {:?} is not connected", summary.name)));
        }
        Ok(StatusCode::ACCEPTED)
    }
    .await;
    finish(&state, tx, entry, result).await
}

/// What the audit trail keeps of a command: never the environment's values nor the input (they may hold
/// secrets).
pub(crate) fn command_audit_details(command: &SystemCommand) -> serde_json::Value {
    serde_json::json!({
        "argv": command.argv,
        "environment": command.environment.keys().collect::<Vec<_>>(),
        "stdin_bytes": command.stdin.as_ref().map(String::len),
        "timeout_seconds": command.timeout_seconds,
        "working_directory": command.working_directory,
    })
}

/// How much longer than the command's own timeout the server waits for the agent's answer: the agent kills the
/// command at its timeout, then needs a moment to collect and send what it wrote.
const COMMAND_ANSWER_GRACE: Duration = Duration::from_secs(10);

#[utoipa::path(post, path = "/api/v1/systems/{system}/commands", tag = "systems",
    params(("system" = String, Path, description = "Name or ID")), request_body = SystemCommand,
    responses(
        (status = 200, description = "The command ran (whatever its exit code, even if killed at its timeout)", body = CommandOutcome),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
        (status = 409, description = "The system is offline (`details.reason` = `system_offline`), or its agent could not run the command (`agent_error`: no such program, busy)", body = ErrorResponse),
        (status = 422, body = ErrorResponse),
        (status = 503, description = "The agent's connection is saturated or ended before it answered", body = ErrorResponse),
        (status = 504, description = "The agent did not answer within the timeout and 10 seconds", body = ErrorResponse)))]
pub async fn system_run_command(
    State(state): State<AppState>,
    caller: Caller,
    Path(system): Path<String>,
    JsonBody(command): JsonBody<SystemCommand>,
) -> ApiResult<Json<CommandOutcome>> {
    let details = command_audit_details(&command);
    let mut entry = AuditEntry::new(&caller.user.name, "system.command", &system).details(details);
    crate::audit::authorize(&state, &caller, Role::Operator, &entry).await?;
    let prepared = async {
        command.validate()?;
        let mut conn = state.store.conn().await?;
        find_system(&mut conn, &system).await
    }
    .await;
    let summary = match prepared {
        Ok(summary) => summary,
        Err(error) => {
            crate::audit::record_failure(&state, entry, &error, Timestamp::now()).await;
            return Err(error);
        }
    };
    if let serde_json::Value::Object(details) = &mut entry.details {
        details.insert("system_id".into(), serde_json::json!(summary.id));
    }
    // In a task of its own: a caller that hangs up does not stop the command, and its outcome is still audited.
    let wait = Duration::from_secs(u64::from(command.timeout_seconds)) + COMMAND_ANSWER_GRACE;
    let request = AgentRequest::RunCommand(command.into_request());
    let task = tokio::spawn(async move {
        let result = match state.agents.request(summary.id, request, wait).await {
            Ok(AgentResponse::Command(outcome)) => Ok(outcome),
            Ok(other) => {
                tracing::error!(system = %summary.id, answer = ?other, "the agent answered a command with something else");
                Err(ApiError::internal("the agent answered the command with something other than its outcome"))
            }
            Err(error) => {
                let mut error = ApiError::from(error);
                error.message = format!("{}: {}", summary.name, error.message);
                Err(error)
            }
        };
        if let (Ok(outcome), serde_json::Value::Object(details)) = (&result, &mut entry.details) {
            details.insert("exit_code".into(), serde_json::json!(outcome.exit_code));
            details.insert("signal".into(), serde_json::json!(outcome.signal));
            details.insert("timed_out".into(), serde_json::json!(outcome.timed_out));
            details.insert("duration_ms".into(), serde_json::json!(outcome.duration_ms));
        }
        crate::audit::record(&state, entry, &result).await;
        result
    });
    match task.await {
        Ok(result) => result.map(Json),
        Err(error) => {
            tracing::error!(%error, "the task running a command failed");
            Err(ApiError::internal("running the command failed inside the server; the server log has the cause"))
        }
    }
}
