//! Scheduled jobs, their runs and each run's result per target system.

use sqlx::Row;
use steward_types::api::Timestamp;
use steward_types::api::jobs::{Job, JobRun, JobRunState, JobTargetResult, JobTrigger, TargetState};
use steward_types::{JobId, JobRunId, SystemId};

use crate::templates::{document, to_document};
use crate::{Conn, Result, conflict_as, corrupt, unexpected_value};

/// The job document keeps everything but the columns the scheduler reads and writes on its own.
fn job_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Job> {
    let mut job: Job = document("job", row)?;
    job.enabled = row.try_get::<i64, _>("enabled")? != 0;
    job.next_run_at = row.try_get::<Option<i64>, _>("next_run_at")?.map(Timestamp);
    Ok(job)
}

const JOB_COLUMNS: &str = "SELECT data, enabled, next_run_at FROM jobs";

pub async fn insert(conn: &mut Conn, job: &Job) -> Result<()> {
    sqlx::query(
        "INSERT INTO jobs (id, name, data, enabled, next_run_at, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(job.id.to_string())
    .bind(&job.name)
    .bind(to_document("job", job)?)
    .bind(job.enabled as i64)
    .bind(job.next_run_at.map(|at| at.millis()))
    .bind(&job.created_by)
    .bind(job.created_at.millis())
    .execute(conn)
    .await
    .map_err(conflict_as(format!("job {:?}", job.name)))?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id_or_name: &str) -> Result<Option<Job>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{JOB_COLUMNS} WHERE id = $1 OR name = $1")))
        .bind(id_or_name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(job_from_row).transpose()
}

pub async fn list(conn: &mut Conn) -> Result<Vec<Job>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{JOB_COLUMNS} ORDER BY name"))).fetch_all(conn).await?;
    rows.iter().map(job_from_row).collect()
}

/// Enabled jobs whose next run is at or before `now`, earliest first.
pub async fn due(conn: &mut Conn, now: Timestamp) -> Result<Vec<Job>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{JOB_COLUMNS} WHERE enabled = 1 AND next_run_at IS NOT NULL AND next_run_at <= $1 ORDER BY next_run_at"
    )))
    .bind(now.millis())
    .fetch_all(conn)
    .await?;
    rows.iter().map(job_from_row).collect()
}

pub async fn set_schedule(conn: &mut Conn, id: JobId, enabled: bool, next_run_at: Option<Timestamp>) -> Result<()> {
    sqlx::query("UPDATE jobs SET enabled = $2, next_run_at = $3 WHERE id = $1")
        .bind(id.to_string())
        .bind(enabled as i64)
        .bind(next_run_at.map(|at| at.millis()))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete(conn: &mut Conn, id: JobId) -> Result<()> {
    sqlx::query("DELETE FROM jobs WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

pub async fn run_insert(
    conn: &mut Conn,
    id: JobRunId,
    job: JobId,
    trigger: JobTrigger,
    scheduled_for: Option<Timestamp>,
    state: JobRunState,
    started_at: Timestamp,
) -> Result<()> {
    let finished = (state != JobRunState::Running).then_some(started_at.millis());
    sqlx::query(
        "INSERT INTO job_runs (id, job_id, trigger, scheduled_for, state, started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.to_string())
    .bind(job.to_string())
    .bind(trigger.as_str())
    .bind(scheduled_for.map(|at| at.millis()))
    .bind(state.as_str())
    .bind(started_at.millis())
    .bind(finished)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn run_finish(conn: &mut Conn, id: JobRunId, state: JobRunState, finished_at: Timestamp) -> Result<()> {
    sqlx::query("UPDATE job_runs SET state = $2, finished_at = $3 WHERE id = $1")
        .bind(id.to_string())
        .bind(state.as_str())
        .bind(finished_at.millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Runs the server left running when it stopped become `interrupted`, with their unfinished targets failed;
/// returns how many.
pub async fn runs_interrupt(conn: &mut Conn, now: Timestamp) -> Result<u64> {
    sqlx::query(
        "UPDATE job_run_targets SET state = 'failed', error = 'the server stopped while it ran', finished_at = $1
         WHERE state = 'running'",
    )
    .bind(now.millis())
    .execute(&mut *conn)
    .await?;
    let done = sqlx::query("UPDATE job_runs SET state = 'interrupted', finished_at = $1 WHERE state = 'running'")
        .bind(now.millis())
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

pub async fn target_insert(conn: &mut Conn, run: JobRunId, result: &JobTargetResult) -> Result<()> {
    sqlx::query(
        "INSERT INTO job_run_targets
           (run_id, system_id, system_name, state, exit_code, error, stdout, stderr, started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (run_id, system_id) DO UPDATE SET state = $4, exit_code = $5, error = $6, stdout = $7,
           stderr = $8, finished_at = $10",
    )
    .bind(run.to_string())
    .bind(result.system_id.to_string())
    .bind(&result.system)
    .bind(target_state(result.state))
    .bind(result.exit_code)
    .bind(&result.error)
    .bind(&result.stdout)
    .bind(&result.stderr)
    .bind(result.started_at.millis())
    .bind(result.finished_at.map(|at| at.millis()))
    .execute(conn)
    .await?;
    Ok(())
}

fn target_state(state: TargetState) -> &'static str {
    match state {
        TargetState::Running => "running",
        TargetState::Succeeded => "succeeded",
        TargetState::Failed => "failed",
    }
}

const RUN_COLUMNS: &str =
    "SELECT r.id, j.name AS job, r.trigger, r.scheduled_for, r.state, r.started_at, r.finished_at,
    (SELECT COUNT(*) FROM job_run_targets t WHERE t.run_id = r.id) AS targets,
    (SELECT COUNT(*) FROM job_run_targets t WHERE t.run_id = r.id AND t.state = 'succeeded') AS succeeded,
    (SELECT COUNT(*) FROM job_run_targets t WHERE t.run_id = r.id AND t.state = 'failed') AS failed
    FROM job_runs r JOIN jobs j ON j.id = r.job_id";

fn run_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<JobRun> {
    let id: String = row.try_get("id")?;
    let trigger: String = row.try_get("trigger")?;
    let state: String = row.try_get("state")?;
    Ok(JobRun {
        id: JobRunId::parse(&id).ok_or_else(|| corrupt("job run id", unexpected_value(&id)))?,
        job: row.try_get("job")?,
        trigger: JobTrigger::parse(&trigger).ok_or_else(|| corrupt("job run trigger", unexpected_value(&trigger)))?,
        scheduled_for: row.try_get::<Option<i64>, _>("scheduled_for")?.map(Timestamp),
        state: JobRunState::parse(&state).ok_or_else(|| corrupt("job run state", unexpected_value(&state)))?,
        started_at: Timestamp(row.try_get("started_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
        targets: row.try_get::<i64, _>("targets")? as u32,
        succeeded: row.try_get::<i64, _>("succeeded")? as u32,
        failed: row.try_get::<i64, _>("failed")? as u32,
        results: Vec::new(),
    })
}

/// The job's latest runs, newest first.
pub async fn runs(conn: &mut Conn, job: JobId, limit: u32) -> Result<Vec<JobRun>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{RUN_COLUMNS} WHERE r.job_id = $1 ORDER BY r.started_at DESC, r.id LIMIT $2"
    )))
    .bind(job.to_string())
    .bind(limit as i64)
    .fetch_all(conn)
    .await?;
    rows.iter().map(run_from_row).collect()
}

/// One run with its result per target.
pub async fn run_get(conn: &mut Conn, id: JobRunId) -> Result<Option<JobRun>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{RUN_COLUMNS} WHERE r.id = $1")))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(mut run) = row.as_ref().map(run_from_row).transpose()? else { return Ok(None) };
    let rows = sqlx::query(
        "SELECT system_id, system_name, state, exit_code, error, stdout, stderr, started_at, finished_at
         FROM job_run_targets WHERE run_id = $1 ORDER BY system_name",
    )
    .bind(id.to_string())
    .fetch_all(conn)
    .await?;
    for row in &rows {
        let system: String = row.try_get("system_id")?;
        let state: String = row.try_get("state")?;
        run.results.push(JobTargetResult {
            system: row.try_get("system_name")?,
            system_id: SystemId::parse(&system).ok_or_else(|| corrupt("system id", unexpected_value(&system)))?,
            state: match state.as_str() {
                "running" => TargetState::Running,
                "succeeded" => TargetState::Succeeded,
                "failed" => TargetState::Failed,
                _ => return Err(corrupt("job target state", unexpected_value(&state))),
            },
            exit_code: row.try_get("exit_code")?,
            error: row.try_get("error")?,
            stdout: row.try_get("stdout")?,
            stderr: row.try_get("stderr")?,
            started_at: Timestamp(row.try_get("started_at")?),
            finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
        });
    }
    Ok(Some(run))
}
