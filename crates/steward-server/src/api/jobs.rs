//! Scheduled jobs: `/api/v1/jobs` and their runs, `/api/v1/job-runs/{run}`. The scheduler is `app::scheduler`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use steward_types::api::jobs::{
    DEFAULT_JOB_CONCURRENCY, Job, JobCreate, JobEnable, JobRun, JobRunState, JobSchedule, JobTarget, JobTask,
    JobTrigger, MAX_JOB_CONCURRENCY,
};
use steward_types::api::{Page, Role, Timestamp};
use steward_types::{ErrorResponse, JobId, JobRunId, validate};

use crate::api::extract::{self, Path};
use crate::api::{Created, created};
use crate::app::scheduler;
use crate::audit::{AuditEntry, finish};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Runs listed per job, newest first.
const RUNS_LISTED: u32 = 100;

async fn find_job(conn: &mut steward_store::Conn, id_or_name: &str) -> ApiResult<Job> {
    steward_store::jobs::get(conn, id_or_name).await?.ok_or_else(|| ApiError::not_found("job", id_or_name))
}

/// Checks a new job completely (its target must exist now; a group may be empty); returns its first run time.
pub(crate) async fn check(conn: &mut steward_store::Conn, job: &Job) -> ApiResult<Option<Timestamp>> {
    validate::name("name", &job.name)?;
    validate::description("description", &job.description)?;
    match &job.task {
        JobTask::Command { command } => command
            .validate()
            .map_err(|error| ApiError::validation(&format!("task.command.{}", error.field), error.reason.clone()))?,
        JobTask::Package { package, .. } => {
            if steward_store::packages::get(conn, *package).await?.is_none() {
                return Err(ApiError::validation("task.package", format!("the repository has no package {package}")));
            }
        }
    }
    match &job.target {
        JobTarget::System { system } => {
            if steward_store::systems::get(conn, system).await?.is_none() {
                return Err(ApiError::validation("target.system", format!("no system is named {system:?}")));
            }
        }
        JobTarget::Group { group } => {
            if steward_store::groups::get(conn, group).await?.is_none() {
                return Err(ApiError::validation("target.group", format!("no group is named {group:?}")));
            }
        }
    }
    if !(1..=MAX_JOB_CONCURRENCY).contains(&job.concurrency) {
        return Err(ApiError::validation("concurrency", format!("must be 1 to {MAX_JOB_CONCURRENCY}")));
    }
    let now = Timestamp::now();
    if let JobSchedule::Once { at } = &job.schedule
        && *at <= now
    {
        return Err(ApiError::validation("schedule.at", format!("{at} is in the past (it is {now} now)")));
    }
    scheduler::next_run(job, now).map_err(|reason| {
        let field = match &job.schedule {
            JobSchedule::Cron { .. } if reason.contains("time zone") => "schedule.time_zone",
            _ => "schedule.expression",
        };
        ApiError::validation(field, reason)
    })
}

#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = JobCreate,
    responses((status = 201, body = Job), (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn job_create(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<JobCreate>,
) -> ApiResult<Created<Job>> {
    let entry = AuditEntry::new(&caller.user.name, "job.create", &body.name).details(serde_json::json!({
        "target": body.target, "schedule": body.schedule,
    }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let mut job = Job {
            id: JobId::new(),
            name: body.name.clone(),
            description: body.description.clone().unwrap_or_default(),
            task: body.task.clone(),
            target: body.target.clone(),
            schedule: body.schedule.clone(),
            missed_runs: body.missed_runs,
            concurrency: body.concurrency.unwrap_or(DEFAULT_JOB_CONCURRENCY),
            enabled: body.enabled.unwrap_or(true),
            next_run_at: None,
            created_by: caller.user.name.clone(),
            created_at: Timestamp::now(),
        };
        job.next_run_at = check(&mut tx, &job).await?;
        if steward_store::jobs::get(&mut tx, &job.name).await?.is_some() {
            return Err(ApiError::conflict(format!("job {:?} already exists", job.name)));
        }
        steward_store::jobs::insert(&mut tx, &job).await?;
        Ok(job)
    }
    .await;
    Ok(created(finish(&state, tx, entry, result).await?))
}

#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", responses((status = 200, body = Page<Job>)))]
pub async fn job_list(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Page<Job>>> {
    let mut conn = state.store.conn().await?;
    Ok(Json(Page { items: steward_store::jobs::list(&mut conn).await?, next: None }))
}

#[utoipa::path(get, path = "/api/v1/jobs/{job}", tag = "jobs", params(("job" = String, Path, description = "Name or ID")),
    responses((status = 200, body = Job), (status = 404, body = ErrorResponse)))]
pub async fn job_show(State(state): State<AppState>, _caller: Caller, Path(job): Path<String>) -> ApiResult<Json<Job>> {
    let mut conn = state.store.conn().await?;
    Ok(Json(find_job(&mut conn, &job).await?))
}

#[utoipa::path(delete, path = "/api/v1/jobs/{job}", tag = "jobs", params(("job" = String, Path, description = "Name or ID")),
    responses((status = 204), (status = 404, body = ErrorResponse)))]
pub async fn job_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(job): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "job.delete", &job);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let found = find_job(&mut tx, &job).await?;
        // Runs in flight finish; their records go with the job.
        steward_store::jobs::delete(&mut tx, found.id).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    finish(&state, tx, entry, result).await
}

#[utoipa::path(post, path = "/api/v1/jobs/{job}/enabled", tag = "jobs", params(("job" = String, Path, description = "Name or ID")),
    request_body = JobEnable, responses((status = 200, body = Job), (status = 404, body = ErrorResponse)))]
pub async fn job_enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(job): Path<String>,
    extract::Json(body): extract::Json<JobEnable>,
) -> ApiResult<Json<Job>> {
    let action = if body.enabled { "job.enable" } else { "job.disable" };
    let entry = AuditEntry::new(&caller.user.name, action, &job);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let mut found = find_job(&mut tx, &job).await?;
        found.enabled = body.enabled;
        // Enabling again starts from now: what fell due while it was disabled does not run.
        found.next_run_at =
            scheduler::next_run(&found, Timestamp::now()).map_err(|reason| ApiError::validation("schedule", reason))?;
        steward_store::jobs::set_schedule(&mut tx, found.id, found.enabled, found.next_run_at).await?;
        Ok(found)
    }
    .await;
    Ok(Json(finish(&state, tx, entry, result).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{job}/run", tag = "jobs", params(("job" = String, Path, description = "Name or ID")),
    responses((status = 202, body = JobRun), (status = 404, body = ErrorResponse)))]
pub async fn job_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(job): Path<String>,
) -> ApiResult<(StatusCode, Json<JobRun>)> {
    let entry = AuditEntry::new(&caller.user.name, "job.run", &job);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let run = JobRunId::new();
    let result = async {
        let found = find_job(&mut tx, &job).await?;
        steward_store::jobs::run_insert(
            &mut tx,
            run,
            found.id,
            JobTrigger::Manual,
            None,
            JobRunState::Running,
            Timestamp::now(),
        )
        .await?;
        Ok(found)
    }
    .await;
    let found = finish(&state, tx, entry, result).await?;
    scheduler::spawn_run(state.clone(), found, run);
    let mut conn = state.store.conn().await?;
    let view = steward_store::jobs::run_get(&mut conn, run)
        .await?
        .ok_or_else(|| ApiError::not_found("job run", &run.to_string()))?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[utoipa::path(get, path = "/api/v1/jobs/{job}/runs", tag = "jobs", params(("job" = String, Path, description = "Name or ID")),
    responses((status = 200, body = Page<JobRun>), (status = 404, body = ErrorResponse)))]
pub async fn job_runs(
    State(state): State<AppState>,
    _caller: Caller,
    Path(job): Path<String>,
) -> ApiResult<Json<Page<JobRun>>> {
    let mut conn = state.store.conn().await?;
    let found = find_job(&mut conn, &job).await?;
    Ok(Json(Page { items: steward_store::jobs::runs(&mut conn, found.id, RUNS_LISTED).await?, next: None }))
}

#[utoipa::path(get, path = "/api/v1/job-runs/{run}", tag = "jobs", params(("run" = String, Path, description = "Run ID")),
    responses((status = 200, body = JobRun), (status = 404, body = ErrorResponse)))]
pub async fn job_run_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(run): Path<String>,
) -> ApiResult<Json<JobRun>> {
    let id = JobRunId::parse(&run).ok_or_else(|| ApiError::not_found("job run", &run))?;
    let mut conn = state.store.conn().await?;
    Ok(Json(steward_store::jobs::run_get(&mut conn, id).await?.ok_or_else(|| ApiError::not_found("job run", &run))?))
}
