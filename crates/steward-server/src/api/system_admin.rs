//! Administration of running systems through their agents: `/api/v1/systems/{system}/{processes,services,
//! network,facts}` and the group actions `/api/v1/groups/{group}/{processes/signal,services/{name}/{action}}`.
//!
//! Listings are not audited; every action is, the way commands are (`audit::authorize` first, the outcome
//! recorded by `audit::record` once known, in a task of its own so a caller that hangs up loses neither the
//! action nor its record). A group action runs on every member at once (at most [`GROUP_CONCURRENCY`] at a
//! time) and answers `200` with one result per member, each an outcome or the error a call on that system alone
//! would have answered (offline, refused, timed out). The facts come from the stored inventory, not the agent.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use steward_protocol::system_admin::{ServiceAction, SignalProcess, SignalProcessesByName};
use steward_protocol::{AgentRequest, AgentResponse};
use steward_types::api::groups::Group;
use steward_types::api::system_admin::{
    GroupActionResult, GroupProcessSignal, NetworkConfiguration, ProcessList, ProcessSignal, ServiceActionOutcome,
    ServiceListing, ServiceVerb, SignalOutcome, SystemFacts, TargetResult,
};
use steward_types::api::systems::SystemSummary;
use steward_types::api::{Role, Timestamp};
use steward_types::query::facts_document;
use steward_types::{ErrorBody, ErrorResponse, validate::ValidationError};

use crate::api::extract::{Json as JsonBody, Path};
use crate::api::systems::find_system;
use crate::audit::AuditEntry;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How many members of a group are asked at the same time.
pub const GROUP_CONCURRENCY: usize = 16;

/// Listing processes (a 0.5 s sample), signalling, reading the network configuration.
const QUICK_ANSWER: Duration = Duration::from_secs(30);

/// Listing services (each init script's `status` may take 10 s) and acting on one (the agent allows 120 s, then
/// reads the state afterwards).
const SERVICE_ANSWER: Duration = Duration::from_secs(150);

#[utoipa::path(get, path = "/api/v1/systems/{system}/processes", tag = "systems",
    params(("system" = String, Path, description = "Name or ID")),
    responses((status = 200, body = ProcessList), (status = 404, body = ErrorResponse),
        (status = 409, description = "The system is offline (`details.reason` = `system_offline`) or its agent refused (`agent_error`)", body = ErrorResponse),
        (status = 504, description = "The agent did not answer in time", body = ErrorResponse)))]
pub async fn system_processes(
    State(state): State<AppState>,
    _caller: Caller,
    Path(system): Path<String>,
) -> ApiResult<Json<ProcessList>> {
    let summary = find(&state, &system).await?;
    match ask(&state, &summary, AgentRequest::ListProcesses, QUICK_ANSWER).await? {
        AgentResponse::Processes(listing) => Ok(Json(ProcessList::from_listing(listing))),
        other => Err(unexpected(&summary, &other)),
    }
}

#[utoipa::path(post, path = "/api/v1/systems/{system}/processes/{pid}/signal", tag = "systems",
    params(("system" = String, Path, description = "Name or ID"), ("pid" = u32, Path, description = "Process ID, 2 to 4194304")),
    request_body = ProcessSignal,
    responses((status = 200, body = SignalOutcome), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
        (status = 409, description = "The system is offline, or the agent refused: the process is gone, is no longer the one listed (another start time), is the agent itself", body = ErrorResponse),
        (status = 422, body = ErrorResponse), (status = 504, body = ErrorResponse)))]
pub async fn system_process_signal(
    State(state): State<AppState>,
    caller: Caller,
    Path((system, pid)): Path<(String, u32)>,
    JsonBody(body): JsonBody<ProcessSignal>,
) -> ApiResult<Json<SignalOutcome>> {
    let details = serde_json::json!({ "pid": pid, "start_time": body.start_time, "signal": body.signal });
    let entry = AuditEntry::new(&caller.user.name, "system.process_signal", &system).details(details);
    crate::audit::authorize(&state, &caller, Role::Operator, &entry).await?;
    let prepared = async {
        steward_types::api::system_admin::pid("pid", pid)?;
        body.validate()?;
        find(&state, &system).await
    }
    .await;
    let (entry, summary) = checked(&state, entry, prepared).await?;
    let request = AgentRequest::SignalProcess(SignalProcess { pid, start_time: body.start_time, signal: body.signal });
    let work_state = state.clone();
    let outcome = audited(state, entry, summary.id, async move {
        match ask(&work_state, &summary, request, QUICK_ANSWER).await? {
            AgentResponse::Signalled(outcome) => Ok(outcome),
            other => Err(unexpected(&summary, &other)),
        }
    })
    .await?;
    Ok(Json(outcome))
}

#[utoipa::path(post, path = "/api/v1/groups/{group}/processes/signal", tag = "groups",
    params(("group" = String, Path, description = "Name or ID")), request_body = GroupProcessSignal,
    responses((status = 200, description = "One result per member: how many processes matched and were signalled, or the member's error", body = GroupActionResult<SignalOutcome>),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn group_process_signal(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    JsonBody(body): JsonBody<GroupProcessSignal>,
) -> ApiResult<Json<GroupActionResult<SignalOutcome>>> {
    let details = serde_json::json!({ "name": body.name, "signal": body.signal });
    let entry = AuditEntry::new(&caller.user.name, "group.process_signal", &group).details(details);
    crate::audit::authorize(&state, &caller, Role::Operator, &entry).await?;
    let prepared = async {
        body.validate()?;
        group_members(&state, &group).await
    }
    .await;
    let (entry, (found, members)) = checked(&state, entry, prepared).await?;
    let request = SignalProcessesByName { name: body.name, signal: body.signal };
    let work_state = state.clone();
    let result = audited_group(state, entry, async move {
        let targets = fan_out(&work_state, members, move |state, summary| {
            let request = AgentRequest::SignalProcessesByName(request.clone());
            async move {
                match ask(&state, &summary, request, QUICK_ANSWER).await? {
                    AgentResponse::Signalled(outcome) => Ok(outcome),
                    other => Err(unexpected(&summary, &other)),
                }
            }
        })
        .await;
        Ok(group_result(&found, targets))
    })
    .await?;
    Ok(Json(result))
}

#[utoipa::path(get, path = "/api/v1/systems/{system}/services", tag = "systems",
    params(("system" = String, Path, description = "Name or ID")),
    responses((status = 200, body = ServiceListing), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 504, body = ErrorResponse)))]
pub async fn system_services(
    State(state): State<AppState>,
    _caller: Caller,
    Path(system): Path<String>,
) -> ApiResult<Json<ServiceListing>> {
    let summary = find(&state, &system).await?;
    match ask(&state, &summary, AgentRequest::ListServices, SERVICE_ANSWER).await? {
        AgentResponse::Services(listing) => Ok(Json(listing)),
        other => Err(unexpected(&summary, &other)),
    }
}

#[utoipa::path(post, path = "/api/v1/systems/{system}/services/{service}/{action}", tag = "systems",
    params(("system" = String, Path, description = "Name or ID"), ("service" = String, Path, description = "Unit or script name"),
        ("action" = String, Path, description = "`start`, `stop` or `restart`")),
    responses((status = 200, body = ServiceActionOutcome), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
        (status = 409, description = "The system is offline, the agent refused (no such service), or the action failed (`details.reason` = `service_action_failed`, with the command's `exit_code` and exact `output`)", body = ErrorResponse),
        (status = 422, body = ErrorResponse), (status = 504, body = ErrorResponse)))]
pub async fn system_service_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((system, service, action)): Path<(String, String, String)>,
) -> ApiResult<Json<ServiceActionOutcome>> {
    let details = serde_json::json!({ "service": service, "action": action });
    let entry = AuditEntry::new(&caller.user.name, "system.service_action", &system).details(details);
    crate::audit::authorize(&state, &caller, Role::Operator, &entry).await?;
    let prepared = async {
        let verb = service_verb(&action)?;
        steward_types::api::system_admin::service_name("service", &service)?;
        Ok((verb, find(&state, &system).await?))
    }
    .await;
    let (entry, (verb, summary)) = checked(&state, entry, prepared).await?;
    let work_state = state.clone();
    let outcome = audited(state, entry, summary.id, async move {
        service_action(&work_state, &summary, ServiceAction { name: service, action: verb }).await
    })
    .await?;
    Ok(Json(outcome))
}

#[utoipa::path(post, path = "/api/v1/groups/{group}/services/{service}/{action}", tag = "groups",
    params(("group" = String, Path, description = "Name or ID"), ("service" = String, Path, description = "Unit or script name"),
        ("action" = String, Path, description = "`start`, `stop` or `restart`")),
    responses((status = 200, description = "One result per member; a failed action has its outcome (exit code, output) and an error", body = GroupActionResult<ServiceActionOutcome>),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn group_service_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((group, service, action)): Path<(String, String, String)>,
) -> ApiResult<Json<GroupActionResult<ServiceActionOutcome>>> {
    let details = serde_json::json!({ "service": service, "action": action });
    let entry = AuditEntry::new(&caller.user.name, "group.service_action", &group).details(details);
    crate::audit::authorize(&state, &caller, Role::Operator, &entry).await?;
    let prepared = async {
        let verb = service_verb(&action)?;
        steward_types::api::system_admin::service_name("service", &service)?;
        Ok((verb, group_members(&state, &group).await?))
    }
    .await;
    let (entry, (verb, (found, members))) = checked(&state, entry, prepared).await?;
    let work_state = state.clone();
    let result = audited_group(state, entry, async move {
        let request = ServiceAction { name: service, action: verb };
        let mut targets = fan_out(&work_state, members, move |state, summary| {
            let request = request.clone();
            async move { service_action(&state, &summary, request).await }
        })
        .await;
        // A failed action keeps its outcome next to the error: its output says why.
        for target in &mut targets {
            if let Some(error) = &mut target.error
                && let Some(outcome) = error.details.as_object_mut().and_then(|details| details.remove("outcome"))
            {
                target.outcome = serde_json::from_value(outcome).ok();
            }
        }
        Ok(group_result(&found, targets))
    })
    .await?;
    Ok(Json(result))
}

#[utoipa::path(get, path = "/api/v1/systems/{system}/network", tag = "systems",
    params(("system" = String, Path, description = "Name or ID")),
    responses((status = 200, description = "Interfaces, routes of the main table, DNS resolvers (read-only)", body = NetworkConfiguration),
        (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse), (status = 504, body = ErrorResponse)))]
pub async fn system_network(
    State(state): State<AppState>,
    _caller: Caller,
    Path(system): Path<String>,
) -> ApiResult<Json<NetworkConfiguration>> {
    let summary = find(&state, &system).await?;
    match ask(&state, &summary, AgentRequest::NetworkConfiguration, QUICK_ANSWER).await? {
        AgentResponse::Network(configuration) => Ok(Json(configuration)),
        other => Err(unexpected(&summary, &other)),
    }
}

#[utoipa::path(get, path = "/api/v1/systems/{system}/facts", tag = "systems",
    params(("system" = String, Path, description = "Name or ID")),
    responses((status = 200, description = "The facts of the stored inventory as a tree (also for an offline system)", body = SystemFacts),
        (status = 404, body = ErrorResponse)))]
pub async fn system_facts(
    State(state): State<AppState>,
    _caller: Caller,
    Path(system): Path<String>,
) -> ApiResult<Json<SystemFacts>> {
    let mut conn = state.store.conn().await?;
    let summary = find_system(&mut conn, &system).await?;
    let inventory = steward_store::systems::inventory_get(&mut conn, summary.id).await?;
    let facts = facts_document(
        &steward_types::query::SystemFacts { name: summary.name.clone(), state: summary.state.as_str().to_string() },
        inventory.as_ref().map(|(inventory, _)| inventory),
    );
    Ok(Json(SystemFacts {
        system_id: summary.id,
        system: summary.name,
        inventory_updated_at: inventory.map(|(_, at)| at),
        facts,
    }))
}

pub(crate) async fn find(state: &AppState, system: &str) -> ApiResult<SystemSummary> {
    let mut conn = state.store.conn().await?;
    find_system(&mut conn, system).await
}

/// Every member of a group, ordered by name.
pub(crate) async fn group_members(state: &AppState, group: &str) -> ApiResult<(Group, Vec<SystemSummary>)> {
    let mut conn = state.store.conn().await?;
    let found =
        steward_store::groups::get(&mut conn, group).await?.ok_or_else(|| ApiError::not_found("group", group))?;
    let mut members = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, next) =
            steward_store::groups::members(&mut conn, found.id, after.as_deref(), steward_store::page_limit(None))
                .await?;
        members.extend(page);
        match next {
            Some(next) => after = Some(next),
            None => return Ok((found, members)),
        }
    }
}

fn service_verb(action: &str) -> Result<ServiceVerb, ValidationError> {
    ServiceVerb::parse(action).ok_or_else(|| {
        ValidationError::new("action", format!("{action:?} is not an action: use start, stop or restart"))
    })
}

/// Asks `summary`'s agent; its errors name the system.
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

/// A service action; one the service manager failed is an error carrying the exit code, the exact output, and
/// the whole outcome.
async fn service_action(
    state: &AppState,
    summary: &SystemSummary,
    action: ServiceAction,
) -> ApiResult<ServiceActionOutcome> {
    let outcome = match ask(state, summary, AgentRequest::ServiceAction(action), SERVICE_ANSWER).await? {
        AgentResponse::ServiceAction(outcome) => outcome,
        other => return Err(unexpected(summary, &other)),
    };
    if outcome.succeeded() {
        return Ok(outcome);
    }
    let how = if outcome.timed_out {
        "was still running after 120 seconds and was killed".to_string()
    } else {
        match outcome.exit_code {
            Some(code) => format!("failed with exit code {code}"),
            None => "was killed by a signal".to_string(),
        }
    };
    let printed = outcome.output.trim_end();
    let message = format!(
        "{}: `{}` {how}{}",
        summary.name,
        outcome.command.join(" "),
        if printed.is_empty() { String::new() } else { format!(": {printed}") }
    );
    Err(ApiError::conflict(message).with_details(serde_json::json!({
        "reason": "service_action_failed",
        "exit_code": outcome.exit_code,
        "output": outcome.output,
        "outcome": outcome,
    })))
}

fn unexpected(summary: &SystemSummary, answer: &AgentResponse) -> ApiError {
    tracing::error!(system = %summary.id, ?answer, "the agent answered a request with something else");
    ApiError::internal(format!("{}: the agent answered with something other than what was asked", summary.name))
}

/// `result`, after recording it in the audit trail when it is a failure; the entry is handed back for the
/// record of the outcome.
pub(crate) async fn checked<T>(
    state: &AppState,
    entry: AuditEntry,
    result: ApiResult<T>,
) -> ApiResult<(AuditEntry, T)> {
    match result {
        Ok(value) => Ok((entry, value)),
        Err(error) => {
            crate::audit::record_failure(state, entry, &error, Timestamp::now()).await;
            Err(error)
        }
    }
}

/// Runs an action on one system in a task of its own and records its outcome.
async fn audited<T>(
    state: AppState,
    mut entry: AuditEntry,
    system: steward_types::SystemId,
    work: impl Future<Output = ApiResult<T>> + Send + 'static,
) -> ApiResult<T>
where
    T: serde::Serialize + Send + Sync + 'static,
{
    if let serde_json::Value::Object(details) = &mut entry.details {
        details.insert("system_id".into(), serde_json::json!(system));
    }
    spawn_recorded(state, entry, work, |outcome| serde_json::json!(outcome)).await
}

/// Runs a group action in a task of its own and records a summary of its per-member results.
async fn audited_group<T>(
    state: AppState,
    entry: AuditEntry,
    work: impl Future<Output = ApiResult<GroupActionResult<T>>> + Send + 'static,
) -> ApiResult<GroupActionResult<T>>
where
    T: serde::Serialize + Send + Sync + 'static,
{
    spawn_recorded(state, entry, work, |result| {
        let targets: Vec<_> = result
            .targets
            .iter()
            .map(|target| match &target.error {
                None => serde_json::json!({ "system": target.system, "outcome": "success" }),
                Some(error) => serde_json::json!({ "system": target.system, "error": error.message }),
            })
            .collect();
        serde_json::json!({ "succeeded": result.succeeded, "failed": result.failed, "targets": targets })
    })
    .await
}

pub(crate) async fn spawn_recorded<T: Send + Sync + 'static>(
    state: AppState,
    mut entry: AuditEntry,
    work: impl Future<Output = ApiResult<T>> + Send + 'static,
    describe: impl FnOnce(&T) -> serde_json::Value + Send + 'static,
) -> ApiResult<T> {
    let task = tokio::spawn(async move {
        let result = work.await;
        if let (Ok(value), serde_json::Value::Object(details)) = (&result, &mut entry.details) {
            details.insert("result".into(), describe(value));
        }
        crate::audit::record(&state, entry, &result).await;
        result
    });
    match task.await {
        Ok(result) => result,
        Err(error) => {
            tracing::error!(%error, "the task of an action on systems failed");
            Err(ApiError::internal("the action failed inside the server; the server log has the cause"))
        }
    }
}

/// Runs `work` on every member, at most [`GROUP_CONCURRENCY`] at a time; the results keep the members' order.
pub(crate) async fn fan_out<T, F, Fut>(state: &AppState, members: Vec<SystemSummary>, work: F) -> Vec<TargetResult<T>>
where
    T: Send + Sync + 'static,
    F: Fn(AppState, SystemSummary) -> Fut,
    Fut: Future<Output = ApiResult<T>> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(GROUP_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, summary) in members.iter().enumerate() {
        let future = work(state.clone(), summary.clone());
        let limit = Arc::clone(&limit);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (index, future.await)
        });
    }
    let mut results: Vec<Option<ApiResult<T>>> = members.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, result)) => results[index] = Some(result),
            Err(error) => tracing::error!(%error, "the task of one group member failed"),
        }
    }
    members
        .into_iter()
        .zip(results)
        .map(|(summary, result)| {
            let result =
                result.unwrap_or_else(|| Err(ApiError::internal("the action on this member failed inside the server")));
            let (outcome, error) = match result {
                Ok(outcome) => (Some(outcome), None),
                Err(error) => {
                    (None, Some(ErrorBody { code: error.code, message: error.message, details: error.details }))
                }
            };
            TargetResult { system_id: summary.id, system: summary.name, outcome, error }
        })
        .collect()
}

pub(crate) fn group_result<T>(group: &Group, targets: Vec<TargetResult<T>>) -> GroupActionResult<T> {
    let failed = targets.iter().filter(|target| target.error.is_some()).count() as u32;
    GroupActionResult { group: group.name.clone(), succeeded: targets.len() as u32 - failed, failed, targets }
}
