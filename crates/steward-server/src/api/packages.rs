//! The package repository (`/api/v1/packages`) and software distribution (`POST
//! /api/v1/packages/{package}/distribute`). The work is `app::packages`.
//!
//! An upload is the package file as the request body (streamed, capped at `MAX_PACKAGE_BYTES`); a build is
//! either a JSON `PackageBuildSpec` naming a directory on the server (administrators only) or a tar archive
//! (`Content-Type: application/x-tar`) holding `spec.json` and the tree under `files/`. Distribution runs now,
//! answering one result per target with the tool's exact output, or later as a job with task `package`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use steward_types::api::files::TAR_MEDIA_TYPE;
use steward_types::api::jobs::{DEFAULT_JOB_CONCURRENCY, Job, JobTarget, JobTask, MissedRuns};
use steward_types::api::packages::{
    MAX_PACKAGE_BYTES, Package, PackageBuildSpec, PackageBuilt, PackageDistribute, PackageDistribution,
    PackageDistributionScheduled, PackageTargetOutcome,
};
use steward_types::api::system_admin::{GroupActionResult, TargetResult};
use steward_types::api::{Page, Role, Timestamp};
use steward_types::{ErrorResponse, JobId};

use crate::api::extract::Path;
use crate::api::system_admin::{checked, fan_out, find, group_members, spawn_recorded};
use crate::api::{Created, created};
use crate::app::files::BodySource;
use crate::app::packages as repository;
use crate::audit::{AuditEntry, authorize, finish, record_failure};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

fn package_details(package: &Package) -> serde_json::Value {
    serde_json::json!({
        "package": package.id, "format": package.format, "name": package.name, "version": package.version,
        "architecture": package.architecture, "sha256": package.sha256, "size": package.size,
    })
}

#[utoipa::path(post, path = "/api/v1/packages", tag = "packages",
    request_body(content = Vec<u8>, description = "The .deb or .rpm file", content_type = "application/octet-stream"),
    responses((status = 201, description = "Stored, with the metadata read from the package", body = Package),
        (status = 403, body = ErrorResponse),
        (status = 409, description = "The repository has this format, name, version and architecture already (`details.reason` = `duplicate_package`)", body = ErrorResponse),
        (status = 413, description = "Larger than 4 GiB", body = ErrorResponse),
        (status = 422, description = "Not a .deb or .rpm package, or a damaged one (`details.field` = `package`)", body = ErrorResponse)))]
pub async fn package_upload(State(state): State<AppState>, caller: Caller, body: Body) -> ApiResult<Created<Package>> {
    let entry = AuditEntry::new(&caller.user.name, "package.upload", "");
    authorize(&state, &caller, Role::Operator, &entry).await?;
    let prepared = async {
        let received = repository::receive(&state, BodySource(body), MAX_PACKAGE_BYTES).await?;
        let info = repository::read_metadata(&received.path).await?;
        Ok((received, info))
    }
    .await;
    let (entry, (mut received, info)) = checked(&state, entry, prepared).await?;
    let package = repository::describe(&info, &received, &caller.user.name);
    let entry = AuditEntry { target: package.name.clone(), ..entry }.details(package_details(&package));
    let mut tx = state.store.begin().await?;
    let result = repository::add(&state, &mut tx, &package, &mut received).await.map(|()| package);
    Ok(created(finish(&state, tx, entry, result).await?))
}

#[utoipa::path(get, path = "/api/v1/packages", tag = "packages", responses((status = 200, body = Page<Package>)))]
pub async fn package_list(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Page<Package>>> {
    let mut conn = state.store.conn().await?;
    Ok(Json(Page { items: steward_store::packages::list(&mut conn).await?, next: None }))
}

#[utoipa::path(get, path = "/api/v1/packages/{package}", tag = "packages",
    params(("package" = String, Path, description = "ID")),
    responses((status = 200, body = Package), (status = 404, body = ErrorResponse)))]
pub async fn package_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(package): Path<String>,
) -> ApiResult<Json<Package>> {
    Ok(Json(repository::find(&state, &package).await?))
}

#[utoipa::path(delete, path = "/api/v1/packages/{package}", tag = "packages",
    params(("package" = String, Path, description = "ID")),
    responses((status = 204), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn package_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(package): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "package.delete", &package);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let id = steward_types::PackageId::parse(&package).ok_or_else(|| ApiError::not_found("package", &package))?;
        let found =
            steward_store::packages::get(&mut tx, id).await?.ok_or_else(|| ApiError::not_found("package", &package))?;
        steward_store::packages::delete(&mut tx, id).await?;
        Ok(found)
    }
    .await;
    let found = finish(&state, tx, entry, result).await?;
    repository::remove_file_if_unused(&state, &found).await;
    Ok(StatusCode::NO_CONTENT)
}

fn is_tar(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|media| media.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(TAR_MEDIA_TYPE))
}

#[utoipa::path(post, path = "/api/v1/packages/build", tag = "packages",
    request_body(content = PackageBuildSpec, description = "A spec naming `files_directory` on the server (administrators), or a tar archive (`application/x-tar`) of `spec.json` and `files/`"),
    responses((status = 201, description = "The .deb and the .rpm built and stored", body = PackageBuilt),
        (status = 403, body = ErrorResponse),
        (status = 409, description = "The repository has one of them already", body = ErrorResponse),
        (status = 422, description = "The spec or the archive is not valid (`details.field` names the field)", body = ErrorResponse)))]
pub async fn package_build(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Created<PackageBuilt>> {
    let entry = AuditEntry::new(&caller.user.name, "package.build", "");
    authorize(&state, &caller, Role::Operator, &entry).await?;
    let scratch = match repository::scratch(&state).await {
        Ok(scratch) => scratch,
        Err(error) => {
            record_failure(&state, entry, &error, Timestamp::now()).await;
            return Err(error);
        }
    };
    let prepared = async {
        let (spec, files) = if is_tar(&headers) {
            let upload = repository::receive(&state, BodySource(body), MAX_PACKAGE_BYTES).await?;
            repository::unpack_build_upload(upload.path.clone(), scratch.0.clone()).await?
        } else {
            let bytes = axum::body::to_bytes(body, crate::api::MAX_BODY_BYTES)
                .await
                .map_err(|error| ApiError::bad_request(format!("reading the body failed: {error}")))?;
            let spec: PackageBuildSpec = serde_json::from_slice(&bytes)
                .map_err(|error| ApiError::bad_request(format!("the body is not a package spec: {error}")))?;
            let Some(directory) = spec.files_directory.clone() else {
                return Err(ApiError::validation(
                    "files_directory",
                    "name a directory on the server, or upload a tar archive of spec.json and files/",
                ));
            };
            // Reading any directory of the server is for its administrators.
            caller.require(Role::Administrator)?;
            if !directory.starts_with('/') {
                return Err(ApiError::validation("files_directory", format!("{directory:?} is not an absolute path")));
            }
            (spec, std::path::PathBuf::from(directory))
        };
        let package_spec = repository::package_spec(&spec, files)?;
        let built = repository::build(package_spec, &scratch.0).await?;
        let mut described = Vec::new();
        for received in built {
            let info = repository::read_metadata(&received.path).await?;
            described.push((repository::describe(&info, &received, &caller.user.name), received));
        }
        Ok((spec, described))
    }
    .await;
    let (entry, (spec, described)) = checked(&state, entry, prepared).await?;
    let entry = AuditEntry { target: spec.name.clone(), ..entry }.details(serde_json::json!({
        "files_directory": spec.files_directory,
        "packages": described.iter().map(|(package, _)| package_details(package)).collect::<Vec<_>>(),
    }));
    let mut tx = state.store.begin().await?;
    let result = async {
        let mut stored = Vec::new();
        for (package, mut received) in described {
            repository::add(&state, &mut tx, &package, &mut received).await?;
            stored.push(package);
        }
        let rpm = stored.pop().ok_or_else(|| ApiError::internal("the build made no .rpm"))?;
        let deb = stored.pop().ok_or_else(|| ApiError::internal("the build made no .deb"))?;
        Ok(PackageBuilt { deb, rpm })
    }
    .await;
    let result = finish(&state, tx, entry, result).await;
    if let Err(error) = &result
        && error.code == steward_types::ErrorCode::Conflict
    {
        tracing::info!(package = %spec.name, "a build was refused: the repository has its packages already");
    }
    drop(scratch);
    Ok(created(result?))
}

#[utoipa::path(post, path = "/api/v1/packages/{package}/distribute", tag = "packages",
    params(("package" = String, Path, description = "ID")), request_body = PackageDistribute,
    responses(
        (status = 200, description = "Distributed now: one result per target with the tool's commands, exit codes and exact output; a target the tool could not run on has an error", body = GroupActionResult<PackageTargetOutcome>),
        (status = 201, description = "Scheduled: the job created (task `package`), whose runs keep a result per target", body = PackageDistributionScheduled),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn package_distribute(
    State(state): State<AppState>,
    caller: Caller,
    Path(package): Path<String>,
    crate::api::extract::Json(body): crate::api::extract::Json<PackageDistribute>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse as _;
    let target_text = match &body.target {
        JobTarget::System { system } => format!("system {system}"),
        JobTarget::Group { group } => format!("group {group}"),
    };
    let entry = AuditEntry::new(&caller.user.name, "package.distribute", &target_text)
        .details(serde_json::json!({ "package": package, "action": body.action.as_str(), "schedule": body.schedule }));
    if let Some(schedule) = body.schedule.clone() {
        let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
        let result = async {
            let found = repository::find(&state, &package).await?;
            let mut job = Job {
                id: JobId::new(),
                name: body.job_name.clone().unwrap_or_else(|| {
                    format!("{}-{}-{}", found.name, body.action.as_str(), Timestamp::now().millis())
                }),
                description: format!("{} {} {} ({})", body.action.as_str(), found.name, found.version, found.format),
                task: JobTask::Package { package: found.id, action: body.action },
                target: body.target.clone(),
                schedule,
                missed_runs: MissedRuns::RunOnce,
                concurrency: DEFAULT_JOB_CONCURRENCY,
                enabled: true,
                next_run_at: None,
                created_by: caller.user.name.clone(),
                created_at: Timestamp::now(),
            };
            job.next_run_at = crate::api::jobs::check(&mut tx, &job).await?;
            if steward_store::jobs::get(&mut tx, &job.name).await?.is_some() {
                return Err(ApiError::conflict(format!("job {:?} already exists", job.name)));
            }
            steward_store::jobs::insert(&mut tx, &job).await?;
            Ok(job)
        }
        .await;
        let job = finish(&state, tx, entry, result).await?;
        return Ok(created(PackageDistributionScheduled { job }).into_response());
    }
    authorize(&state, &caller, Role::Operator, &entry).await?;
    let prepared = async {
        let found = repository::find(&state, &package).await?;
        let (name, members) = match &body.target {
            JobTarget::System { system } => {
                let summary = find(&state, system).await?;
                (summary.name.clone(), vec![summary])
            }
            JobTarget::Group { group } => {
                let (group, members) = group_members(&state, group).await?;
                (group.name, members)
            }
        };
        Ok((found, name, members))
    }
    .await;
    let (entry, (found, name, members)) = checked(&state, entry, prepared).await?;
    let action = body.action;
    let work_state = state.clone();
    let result = spawn_recorded(
        state,
        entry,
        async move {
            let found = std::sync::Arc::new(found);
            let targets = fan_out(&work_state, members, move |state, summary| {
                let found = std::sync::Arc::clone(&found);
                async move {
                    repository::apply_to_system(&state, &found, action, &summary).await.map_err(|mut error| {
                        error.message = format!("{}: {}", summary.name, error.message);
                        error
                    })
                }
            })
            .await;
            Ok(distribution(name, targets))
        },
        |result: &PackageDistribution| {
            let targets: Vec<_> = result
                .targets
                .iter()
                .map(|target| match (&target.outcome, &target.error) {
                    (Some(outcome), _) => serde_json::json!({
                        "system": target.system,
                        "succeeded": outcome.succeeded,
                        "exit_code": outcome.runs.last().and_then(|run| run.exit_code),
                        "command": outcome.runs.last().map(|run| run.command.join(" ")),
                    }),
                    (None, Some(error)) => serde_json::json!({ "system": target.system, "error": error.message }),
                    (None, None) => serde_json::json!({ "system": target.system }),
                })
                .collect();
            serde_json::json!({ "succeeded": result.succeeded, "failed": result.failed, "targets": targets })
        },
    )
    .await?;
    Ok(Json(result).into_response())
}

/// The per-target results, a tool that failed counted as a failure.
fn distribution(name: String, targets: Vec<TargetResult<PackageTargetOutcome>>) -> PackageDistribution {
    let failed = targets
        .iter()
        .filter(|target| target.error.is_some() || target.outcome.as_ref().is_some_and(|outcome| !outcome.succeeded))
        .count() as u32;
    GroupActionResult { group: name, succeeded: targets.len() as u32 - failed, failed, targets }
}
