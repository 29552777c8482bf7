//! System accounts through the agents: `GET /api/v1/systems/{system}/accounts` lists users and groups (never a
//! password hash); `POST /api/v1/systems/{system}/accounts` and `POST /api/v1/groups/{group}/accounts` change
//! them with the system's shadow-utils (the body is an `AccountChange`: `create_user`, `modify_user`,
//! `delete_user`, `set_password`, `lock`, `unlock`, `expiry`, `add_to_groups`, `remove_from_group`,
//! `create_group`, `delete_group`).
//!
//! Every change is audited with its kind and subject; a password is never recorded nor logged (the audit
//! details say only that one was set). A change whose tool failed is, on one system, a 409 whose message and
//! details carry the tool's exit code and exact output; on a group, that member's result.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use steward_protocol::software::{AccountChange, ToolOutcome};
use steward_protocol::{AgentRequest, AgentResponse};
use steward_types::ErrorResponse;
use steward_types::api::Role;
use steward_types::api::packages::{AccountChangeOutcome, AccountListing};
use steward_types::api::system_admin::GroupActionResult;
use steward_types::api::systems::SystemSummary;

use crate::api::extract::{Json as JsonBody, Path};
use crate::api::system_admin::{checked, fan_out, find, group_members, group_result, spawn_recorded};
use crate::audit::{AuditEntry, authorize};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Listing reads three files; a change runs at most two tools of 120 s each.
const LIST_ANSWER: Duration = Duration::from_secs(30);
const CHANGE_ANSWER: Duration = Duration::from_secs(2 * 120 + 30);

#[utoipa::path(get, path = "/api/v1/systems/{system}/accounts", tag = "systems",
    params(("system" = String, Path, description = "Name or ID")),
    responses((status = 200, description = "Users (with the password's state and aging, never the hash) and groups", body = AccountListing),
        (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse), (status = 504, body = ErrorResponse)))]
pub async fn system_accounts(
    State(state): State<AppState>,
    _caller: Caller,
    Path(system): Path<String>,
) -> ApiResult<Json<AccountListing>> {
    let summary = find(&state, &system).await?;
    match ask(&state, &summary, AgentRequest::ListAccounts, LIST_ANSWER).await? {
        AgentResponse::Accounts(listing) => Ok(Json(listing)),
        other => Err(unexpected(&summary, &other)),
    }
}

/// What the audit trail keeps of a change: its kind, subject and settings, never a password.
fn change_details(change: &AccountChange) -> serde_json::Value {
    let mut details = serde_json::to_value(change).unwrap_or_else(|_| serde_json::json!({}));
    if let serde_json::Value::Object(map) = &mut details
        && map.remove("password").is_some()
    {
        map.insert("password_set".into(), serde_json::json!(true));
    }
    details
}

#[utoipa::path(post, path = "/api/v1/systems/{system}/accounts", tag = "systems",
    params(("system" = String, Path, description = "Name or ID")), request_body = AccountChange,
    responses((status = 200, description = "The change was made: the tools' commands, exit codes and exact output", body = AccountChangeOutcome),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
        (status = 409, description = "The system is offline, or a tool failed (`details.reason` = `account_change_failed`, with `exit_code`, `output` and the whole `outcome`)", body = ErrorResponse),
        (status = 422, body = ErrorResponse), (status = 504, body = ErrorResponse)))]
pub async fn system_account_change(
    State(state): State<AppState>,
    caller: Caller,
    Path(system): Path<String>,
    JsonBody(change): JsonBody<AccountChange>,
) -> ApiResult<Json<AccountChangeOutcome>> {
    let entry = AuditEntry::new(&caller.user.name, "system.account_change", &system).details(change_details(&change));
    authorize(&state, &caller, Role::Operator, &entry).await?;
    let prepared = async {
        change.validate().map_err(field_error)?;
        find(&state, &system).await
    }
    .await;
    let (mut entry, summary) = checked(&state, entry, prepared).await?;
    if let serde_json::Value::Object(details) = &mut entry.details {
        details.insert("system_id".into(), serde_json::json!(summary.id));
    }
    let work_state = state.clone();
    let outcome = spawn_recorded(
        state,
        entry,
        async move { change_on(&work_state, &summary, change).await },
        |outcome: &AccountChangeOutcome| serde_json::json!({ "exit_codes": exit_codes(&outcome.runs) }),
    )
    .await?;
    Ok(Json(outcome))
}

#[utoipa::path(post, path = "/api/v1/groups/{group}/accounts", tag = "groups",
    params(("group" = String, Path, description = "Name or ID")), request_body = AccountChange,
    responses((status = 200, description = "One result per member; a failed tool has its outcome and an error", body = GroupActionResult<AccountChangeOutcome>),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn group_account_change(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    JsonBody(change): JsonBody<AccountChange>,
) -> ApiResult<Json<GroupActionResult<AccountChangeOutcome>>> {
    let entry = AuditEntry::new(&caller.user.name, "group.account_change", &group).details(change_details(&change));
    authorize(&state, &caller, Role::Operator, &entry).await?;
    let prepared = async {
        change.validate().map_err(field_error)?;
        group_members(&state, &group).await
    }
    .await;
    let (entry, (found, members)) = checked(&state, entry, prepared).await?;
    let work_state = state.clone();
    let result = spawn_recorded(
        state,
        entry,
        async move {
            let mut targets = fan_out(&work_state, members, move |state, summary| {
                let change = change.clone();
                async move { change_on(&state, &summary, change).await }
            })
            .await;
            for target in &mut targets {
                if let Some(error) = &mut target.error
                    && let Some(outcome) = error.details.as_object_mut().and_then(|details| details.remove("outcome"))
                {
                    target.outcome = serde_json::from_value(outcome).ok();
                }
            }
            Ok(group_result(&found, targets))
        },
        |result: &GroupActionResult<AccountChangeOutcome>| {
            let targets: Vec<_> = result
                .targets
                .iter()
                .map(|target| match &target.error {
                    None => serde_json::json!({ "system": target.system, "outcome": "success" }),
                    Some(error) => serde_json::json!({ "system": target.system, "error": error.message }),
                })
                .collect();
            serde_json::json!({ "succeeded": result.succeeded, "failed": result.failed, "targets": targets })
        },
    )
    .await?;
    Ok(Json(result))
}

/// A validation message `field: reason` as the API's validation error.
fn field_error(message: String) -> ApiError {
    match message.split_once(": ") {
        Some((field, reason)) if !field.contains(' ') => ApiError::validation(field, reason),
        _ => ApiError::validation("change", message),
    }
}

fn exit_codes(runs: &[steward_protocol::software::ToolRun]) -> Vec<Option<i32>> {
    runs.iter().map(|run| run.exit_code).collect()
}

/// Makes the change on one system; a tool that failed is a 409 carrying its exact output and the outcome.
async fn change_on(
    state: &AppState,
    summary: &SystemSummary,
    change: AccountChange,
) -> ApiResult<AccountChangeOutcome> {
    let (kind, subject) = (change.kind().to_string(), change.subject().to_string());
    let tool: ToolOutcome = match ask(state, summary, AgentRequest::Account(change), CHANGE_ANSWER).await? {
        AgentResponse::Tool(outcome) => outcome,
        other => return Err(unexpected(summary, &other)),
    };
    let outcome = AccountChangeOutcome {
        system: summary.name.clone(),
        system_id: summary.id,
        change: kind,
        subject,
        succeeded: tool.succeeded(),
        runs: tool.runs,
    };
    if outcome.succeeded {
        return Ok(outcome);
    }
    let Some(last) = outcome.runs.last() else {
        return Err(ApiError::internal(format!("{}: the agent ran no tool", summary.name)));
    };
    let how = if last.timed_out {
        "was killed at its timeout".to_string()
    } else {
        match last.exit_code {
            Some(code) => format!("failed with exit code {code}"),
            None => "was killed by a signal".to_string(),
        }
    };
    let output = format!("{}{}", last.stdout, last.stderr);
    let printed = output.trim_end();
    let message = format!(
        "{}: `{}` {how}{}",
        summary.name,
        last.command.join(" "),
        if printed.is_empty() { String::new() } else { format!(": {printed}") }
    );
    Err(ApiError::conflict(message).with_details(serde_json::json!({
        "reason": "account_change_failed",
        "exit_code": last.exit_code,
        "output": output,
        "outcome": outcome,
    })))
}

async fn ask(
    state: &AppState,
    summary: &SystemSummary,
    request: AgentRequest,
    wait: Duration,
) -> ApiResult<AgentResponse> {
    state.agents.request(summary.id, request, wait).await.map_err(|error| {
        let mut error = ApiError::from(error);
        error.message = format!("{}: {}", summary.name, error.message);
        error
    })
}

fn unexpected(summary: &SystemSummary, answer: &AgentResponse) -> ApiError {
    tracing::error!(system = %summary.id, "the agent answered an account request with something else");
    let _ = answer;
    ApiError::internal(format!("{}: the agent answered with something other than what was asked", summary.name))
}
