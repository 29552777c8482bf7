//! Operations (sagas) and their steps. The server's saga engine persists every step's state before and after it
//! runs; `params` is the saga's own JSON document (what it created, so that undo knows what to remove).

use sqlx::Row;
use steward_types::api::Timestamp;
use steward_types::api::operations::{Operation, OperationState, OperationStep, StepState};
use steward_types::{ErrorBody, OperationId};

use crate::{Conn, Result, corrupt, next_cursor, unexpected_value};

/// An operation as the saga engine needs it: the API view plus its parameters.
#[derive(Debug, Clone)]
pub struct OperationRecord {
    pub operation: Operation,
    pub target_id: String,
    pub params: serde_json::Value,
}

pub struct NewOperation<'a> {
    pub id: OperationId,
    pub kind: &'a str,
    pub target_kind: &'a str,
    pub target_id: &'a str,
    pub target_name: &'a str,
    pub steps: &'a [&'a str],
    pub params: &'a serde_json::Value,
    pub created_by: &'a str,
    /// The operation that drives this one (a complex operation drives one child per member).
    pub parent: Option<OperationId>,
}

pub async fn insert(conn: &mut Conn, new: &NewOperation<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO operations (id, kind, target_kind, target_id, target_name, state, params, created_by, created_at,
            parent_id)
         VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $9)",
    )
    .bind(new.id.to_string())
    .bind(new.kind)
    .bind(new.target_kind)
    .bind(new.target_id)
    .bind(new.target_name)
    .bind(new.params.to_string())
    .bind(new.created_by)
    .bind(Timestamp::now().millis())
    .bind(new.parent.map(|parent| parent.to_string()))
    .execute(&mut *conn)
    .await?;
    for (position, name) in new.steps.iter().enumerate() {
        sqlx::query("INSERT INTO operation_steps (operation_id, position, name, state) VALUES ($1, $2, $3, 'pending')")
            .bind(new.id.to_string())
            .bind(position as i64)
            .bind(name)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn steps(conn: &mut Conn, id: &str) -> Result<Vec<OperationStep>> {
    let rows = sqlx::query(
        "SELECT name, state, started_at, finished_at, detail FROM operation_steps
         WHERE operation_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get("state")?;
            Ok(OperationStep {
                name: row.try_get("name")?,
                state: StepState::parse(&state).ok_or_else(|| corrupt("step state", unexpected_value(&state)))?,
                started_at: row.try_get::<Option<i64>, _>("started_at")?.map(Timestamp),
                finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
                detail: row.try_get("detail")?,
            })
        })
        .collect()
}

const COLUMNS: &str = "SELECT id, kind, target_kind, target_id, target_name, state, params, error, created_by,
    created_at, finished_at, parent_id FROM operations";

async fn from_row(conn: &mut Conn, row: &sqlx::sqlite::SqliteRow) -> Result<OperationRecord> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let params: String = row.try_get("params")?;
    let error: Option<String> = row.try_get("error")?;
    let parent: Option<String> = row.try_get("parent_id")?;
    let steps = steps(conn, &id).await?;
    let done = steps.iter().filter(|step| step.state == StepState::Done).count() as u32;
    Ok(OperationRecord {
        operation: Operation {
            id: OperationId::parse(&id).ok_or_else(|| corrupt("operation id", unexpected_value(&id)))?,
            kind: row.try_get("kind")?,
            target_kind: row.try_get("target_kind")?,
            target: row.try_get("target_name")?,
            state: OperationState::parse(&state).ok_or_else(|| corrupt("operation state", unexpected_value(&state)))?,
            progress_done: done,
            progress_total: steps.len() as u32,
            steps,
            error: error
                .map(|text| serde_json::from_str::<ErrorBody>(&text))
                .transpose()
                .map_err(|e| corrupt("operation error", e))?,
            created_by: row.try_get("created_by")?,
            created_at: Timestamp(row.try_get("created_at")?),
            finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
            parent: parent.as_deref().and_then(OperationId::parse),
        },
        target_id: row.try_get("target_id")?,
        params: serde_json::from_str(&params).map_err(|error| corrupt("operation parameters", error))?,
    })
}

pub async fn get(conn: &mut Conn, id: OperationId) -> Result<Option<OperationRecord>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE id = $1")))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => Ok(Some(from_row(conn, &row).await?)),
        None => Ok(None),
    }
}

/// Newest first; the cursor is the creation time and ID of the last item.
pub async fn list(
    conn: &mut Conn,
    state: Option<OperationState>,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<Operation>, Option<String>)> {
    let (before_time, before_id) = match after.and_then(|cursor| cursor.split_once('_')) {
        Some((time, id)) => (time.parse::<i64>().unwrap_or(i64::MAX), id.to_string()),
        None => (i64::MAX, String::new()),
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{COLUMNS} WHERE ($1 IS NULL OR state = $1) AND (created_at < $2 OR (created_at = $2 AND id < $3) OR $3 = '')
         ORDER BY created_at DESC, id DESC LIMIT $4"
    )))
    .bind(state.map(|state| state.as_str()))
    .bind(before_time)
    .bind(before_id)
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await?;
    let mut operations = Vec::with_capacity(rows.len());
    for row in &rows {
        operations.push(from_row(conn, row).await?.operation);
    }
    let next =
        next_cursor(&operations, limit, |operation| format!("{}_{}", operation.created_at.millis(), operation.id));
    Ok((operations, next))
}

/// Operations the engine must drive on: still running, unwinding, or left with a failed undo. Child operations
/// are left out: their parent drives them.
pub async fn unfinished(conn: &mut Conn) -> Result<Vec<OperationId>> {
    let rows = sqlx::query(
        "SELECT id FROM operations WHERE state IN ('running', 'unwinding', 'unwind_failed') AND parent_id IS NULL
         ORDER BY created_at",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            OperationId::parse(&id).ok_or_else(|| corrupt("operation id", unexpected_value(&id)))
        })
        .collect()
}

/// The operations a parent operation drives, oldest first.
pub async fn children(conn: &mut Conn, parent: OperationId) -> Result<Vec<Operation>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE parent_id = $1 ORDER BY created_at, id")))
        .bind(parent.to_string())
        .fetch_all(&mut *conn)
        .await?;
    let mut operations = Vec::with_capacity(rows.len());
    for row in &rows {
        operations.push(from_row(conn, row).await?.operation);
    }
    Ok(operations)
}

/// The unfinished operation acting on a target, if any (one at a time per resource).
pub async fn active_for_target(conn: &mut Conn, target_id: &str) -> Result<Option<OperationId>> {
    let row = sqlx::query(
        "SELECT id FROM operations WHERE target_id = $1 AND state IN ('running', 'unwinding', 'unwind_failed') LIMIT 1",
    )
    .bind(target_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(|row| row.try_get::<String, _>("id").ok()).and_then(|id| OperationId::parse(&id)))
}

pub async fn set_state(
    conn: &mut Conn,
    id: OperationId,
    state: OperationState,
    error: Option<&ErrorBody>,
) -> Result<()> {
    let error = error.map(serde_json::to_string).transpose().map_err(|e| corrupt("operation error", e))?;
    sqlx::query("UPDATE operations SET state = $2, error = COALESCE($3, error), finished_at = $4 WHERE id = $1")
        .bind(id.to_string())
        .bind(state.as_str())
        .bind(error)
        .bind(state.is_finished().then(|| Timestamp::now().millis()))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_params(conn: &mut Conn, id: OperationId, params: &serde_json::Value) -> Result<()> {
    sqlx::query("UPDATE operations SET params = $2 WHERE id = $1")
        .bind(id.to_string())
        .bind(params.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a step's new state; `started_at` is set when it starts running or undoing, `finished_at` otherwise.
pub async fn set_step(
    conn: &mut Conn,
    id: OperationId,
    position: usize,
    state: StepState,
    detail: Option<&str>,
) -> Result<()> {
    let now = Timestamp::now().millis();
    let starting = matches!(state, StepState::Running | StepState::Undoing);
    sqlx::query(
        "UPDATE operation_steps SET state = $3,
            started_at = CASE WHEN $4 THEN $5 ELSE started_at END,
            finished_at = CASE WHEN $4 THEN NULL ELSE $5 END,
            detail = COALESCE($6, detail)
         WHERE operation_id = $1 AND position = $2",
    )
    .bind(id.to_string())
    .bind(position as i64)
    .bind(state.as_str())
    .bind(starting)
    .bind(now)
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}
