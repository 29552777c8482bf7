//! The scheduler: jobs run once, on a cron schedule in a time zone, or on demand, on one system or on every
//! member of a group, with a result per target for every run.
//!
//! One task looks every second for enabled jobs whose `next_run_at` has passed. For each it records a run and the
//! job's next time in one transaction (so a job never runs twice for one due time, and a crash loses at most the
//! run in flight), then carries the run out in a task of its own: the targets are resolved at that moment (a
//! group's members now), worked on `concurrency` at a time through their agents, and each target's result is
//! stored as it finishes. A slow run never delays other jobs.
//!
//! At start, runs the previous server left running become `interrupted`, and jobs that fell due while it was down
//! follow their policy (`missed_runs`): `run_once` runs them once now (trigger `missed`), `skip` records one
//! `skipped` run and waits for the next time. A run with a failed target raises a `job.failed` event (about that
//! system when only one failed), through `app::events::raise` in the transaction that finishes the run.

pub mod cron;

use std::sync::Arc;
use std::time::Duration;

use steward_protocol::request::{AgentRequest, AgentResponse};
use steward_types::api::Timestamp;
use steward_types::api::events::{Event, Severity};
use steward_types::api::jobs::{
    Job, JobRunState, JobSchedule, JobTarget, JobTargetResult, JobTask, JobTrigger, TargetState,
};
use steward_types::api::systems::SystemSummary;
use steward_types::{EventId, JobRunId};

use crate::state::AppState;

/// How often the scheduler looks for due jobs.
const TICK: Duration = Duration::from_secs(1);
/// How much longer than a command's timeout a target waits for its agent's answer.
const ANSWER_GRACE: Duration = Duration::from_secs(10);
/// The most of each output stream a target's result keeps.
const MAX_KEPT_OUTPUT: usize = 64 * 1024;

/// When `job` runs next by itself after `after`; `None` when it does not (disabled, manual, a one-off that ran).
pub fn next_run(job: &Job, after: Timestamp) -> Result<Option<Timestamp>, String> {
    if !job.enabled {
        return Ok(None);
    }
    match &job.schedule {
        JobSchedule::Once { at } => Ok((*at > after).then_some(*at)),
        JobSchedule::Cron { expression, time_zone } => {
            let schedule = cron::CronSchedule::parse(expression, time_zone)?;
            let after = jiff::Timestamp::from_millisecond(after.millis()).map_err(|error| error.to_string())?;
            Ok(schedule.next_after(after).map(|next| Timestamp(next.as_millisecond())))
        }
        JobSchedule::Manual => Ok(None),
    }
}

/// Starts the scheduler: first what the previous server left (interrupted runs, missed runs), then the loop.
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        if let Err(error) = catch_up(&state).await {
            tracing::error!(error = %crate::error_chain(&error), "the scheduler could not catch up after the start");
        }
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = start_due(&state, JobTrigger::Schedule).await {
                tracing::warn!(error = %crate::error_chain(&error), "the scheduler could not start due jobs");
            }
        }
    });
}

async fn catch_up(state: &AppState) -> steward_store::Result<()> {
    let now = Timestamp::now();
    let mut tx = state.store.begin().await?;
    let interrupted = steward_store::jobs::runs_interrupt(&mut tx, now).await?;
    tx.commit().await?;
    if interrupted > 0 {
        tracing::warn!(interrupted, "job runs were interrupted by the server's stop");
    }
    start_due(state, JobTrigger::Missed).await
}

/// Records a run of every due job with the job's next time, then carries each out.
async fn start_due(state: &AppState, trigger: JobTrigger) -> steward_store::Result<()> {
    let now = Timestamp::now();
    let mut conn = state.store.conn().await?;
    let due = steward_store::jobs::due(&mut conn, now).await?;
    drop(conn);
    for job in due {
        let next = next_run(&job, now).unwrap_or_else(|error| {
            tracing::error!(job = %job.name, %error, "the job's schedule no longer parses; it stops running by itself");
            None
        });
        let skip = trigger == JobTrigger::Missed && job.missed_runs == steward_types::api::jobs::MissedRuns::Skip;
        let run = JobRunId::new();
        let mut tx = state.store.begin().await?;
        steward_store::jobs::set_schedule(&mut tx, job.id, job.enabled, next).await?;
        let run_state = if skip { JobRunState::Skipped } else { JobRunState::Running };
        steward_store::jobs::run_insert(&mut tx, run, job.id, trigger, job.next_run_at, run_state, now).await?;
        tx.commit().await?;
        if skip {
            tracing::info!(job = %job.name, "a run missed while the server was down is skipped");
        } else {
            spawn_run(state.clone(), job, run);
        }
    }
    Ok(())
}

/// Carries a recorded run out in a task of its own.
pub fn spawn_run(state: AppState, job: Job, run: JobRunId) {
    tokio::spawn(async move {
        if let Err(error) = carry_out(&state, &job, run).await {
            tracing::error!(job = %job.name, %run, error = %crate::error_chain(&error), "a job run failed in the server");
            let finished = async {
                let mut tx = state.store.begin().await?;
                steward_store::jobs::run_finish(&mut tx, run, JobRunState::Failed, Timestamp::now()).await?;
                tx.commit().await
            };
            if let Err(error) = finished.await {
                tracing::error!(%run, error = %crate::error_chain(&error), "a failed job run could not be recorded");
            }
        }
    });
}

/// The systems a target names now: the system, or the group's members.
async fn resolve_targets(state: &AppState, target: &JobTarget) -> steward_store::Result<Vec<SystemSummary>> {
    let mut conn = state.store.conn().await?;
    match target {
        JobTarget::System { system } => Ok(steward_store::systems::get(&mut conn, system).await?.into_iter().collect()),
        JobTarget::Group { group } => {
            let Some(group) = steward_store::groups::get(&mut conn, group).await? else { return Ok(Vec::new()) };
            let mut members = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let (page, next) = steward_store::groups::members(
                    &mut conn,
                    group.id,
                    after.as_deref(),
                    steward_types::api::MAX_PAGE_LIMIT,
                )
                .await?;
                members.extend(page);
                match next {
                    Some(next) => after = Some(next),
                    None => return Ok(members),
                }
            }
        }
    }
}

async fn carry_out(state: &AppState, job: &Job, run: JobRunId) -> steward_store::Result<()> {
    let targets = resolve_targets(state, &job.target).await?;
    let limit = Arc::new(tokio::sync::Semaphore::new(job.concurrency.max(1) as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for system in targets {
        let (state, task, limit) = (state.clone(), job.task.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            run_target(&state, run, &task, &system).await
        });
    }
    let (mut succeeded, mut failed, mut failed_ids) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(result)) if result.state == TargetState::Succeeded => succeeded.push(result.system),
            Ok(Ok(result)) => {
                failed.push(result.system);
                failed_ids.push(result.system_id);
            }
            Ok(Err(error)) => return Err(error),
            Err(error) => tracing::error!(%run, %error, "a job target's task failed"),
        }
    }
    let run_state = match (succeeded.is_empty(), failed.is_empty()) {
        (false, true) => JobRunState::Succeeded,
        (false, false) => JobRunState::Partial,
        (true, _) => JobRunState::Failed,
    };
    let now = Timestamp::now();
    let mut tx = state.store.begin().await?;
    steward_store::jobs::run_finish(&mut tx, run, run_state, now).await?;
    if run_state != JobRunState::Succeeded {
        failed.sort();
        let message = if failed.is_empty() {
            format!("job {} ran on no system: its target has no members or no longer exists", job.name)
        } else {
            format!(
                "job {}: {} of {} target(s) failed: {}",
                job.name,
                failed.len(),
                failed.len() + succeeded.len(),
                failed.join(", ")
            )
        };
        let event = Event {
            id: EventId::new(),
            event_type: "job.failed".to_owned(),
            severity: Severity::Warning,
            source_kind: "job".to_owned(),
            source: job.name.clone(),
            // About one system when one target failed (maintenance windows and plan filters look at it).
            system_id: match failed_ids.as_slice() {
                [only] => Some(*only),
                _ => None,
            },
            message,
            details: serde_json::json!({ "run": run, "failed": failed, "succeeded": succeeded.len() }),
            created_at: now,
        };
        crate::app::events::raise(&mut tx, &event, &job.id.to_string()).await?;
    }
    tx.commit().await?;
    tracing::info!(job = %job.name, %run, state = run_state.as_str(), "job run finished");
    Ok(())
}

fn kept(mut text: String) -> String {
    if text.len() > MAX_KEPT_OUTPUT {
        let mut end = MAX_KEPT_OUTPUT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n[... cut]");
    }
    text
}

async fn run_target(
    state: &AppState,
    run: JobRunId,
    task: &JobTask,
    system: &SystemSummary,
) -> steward_store::Result<JobTargetResult> {
    let mut result = JobTargetResult {
        system: system.name.clone(),
        system_id: system.id,
        state: TargetState::Running,
        exit_code: None,
        error: None,
        stdout: String::new(),
        stderr: String::new(),
        started_at: Timestamp::now(),
        finished_at: None,
    };
    let mut tx = state.store.begin().await?;
    steward_store::jobs::target_insert(&mut tx, run, &result).await?;
    tx.commit().await?;
    let command = match task {
        JobTask::Command { command } => command,
        JobTask::Package { package, action } => {
            package_target(state, *package, *action, system, &mut result).await;
            result.state = if result.error.is_none() { TargetState::Succeeded } else { TargetState::Failed };
            result.finished_at = Some(Timestamp::now());
            let mut tx = state.store.begin().await?;
            steward_store::jobs::target_insert(&mut tx, run, &result).await?;
            tx.commit().await?;
            return Ok(result);
        }
    };
    let wait = Duration::from_secs(u64::from(command.timeout_seconds)) + ANSWER_GRACE;
    let request = AgentRequest::RunCommand(command.clone().into_request());
    match state.agents.request(system.id, request, wait).await {
        Ok(AgentResponse::Command(outcome)) => {
            result.exit_code = outcome.exit_code;
            result.stdout = kept(outcome.stdout);
            result.stderr = kept(outcome.stderr);
            result.error = if outcome.timed_out {
                Some(format!("killed at its timeout of {} s", command.timeout_seconds))
            } else if let Some(signal) = outcome.signal {
                Some(format!("ended by signal {signal}"))
            } else if outcome.exit_code != Some(0) {
                Some(format!("exit code {}", outcome.exit_code.unwrap_or(-1)))
            } else {
                None
            };
        }
        Ok(other) => result.error = Some(format!("the agent answered something else: {other:?}")),
        Err(error) => result.error = Some(error.to_string()),
    }
    result.state = if result.error.is_none() { TargetState::Succeeded } else { TargetState::Failed };
    result.finished_at = Some(Timestamp::now());
    let mut tx = state.store.begin().await?;
    steward_store::jobs::target_insert(&mut tx, run, &result).await?;
    tx.commit().await?;
    Ok(result)
}

/// A package task on one target: the tool's exit code and exact output become the target's result.
async fn package_target(
    state: &AppState,
    package: steward_types::PackageId,
    action: steward_protocol::software::PackageAction,
    system: &SystemSummary,
    result: &mut JobTargetResult,
) {
    let found = match state.store.conn().await {
        Ok(mut conn) => steward_store::packages::get(&mut conn, package).await,
        Err(error) => Err(error),
    };
    let package = match found {
        Ok(Some(package)) => package,
        Ok(None) => {
            result.error = Some(format!("the repository no longer has package {package}"));
            return;
        }
        Err(error) => {
            result.error = Some(crate::error_chain(&error));
            return;
        }
    };
    match crate::app::packages::apply_to_system(state, &package, action, system).await {
        Ok(outcome) => {
            if let Some(last) = outcome.runs.last() {
                result.exit_code = last.exit_code;
                result.stdout = kept(last.stdout.clone());
                result.stderr = kept(last.stderr.clone());
                if !outcome.succeeded {
                    result.error =
                        Some(format!("`{}` failed (exit code {:?})", last.command.join(" "), last.exit_code));
                }
            }
        }
        Err(error) => result.error = Some(error.message),
    }
}
