//! Event action plans, maintenance windows, deliveries and the repeat-control state per plan, event type and
//! source. Plans are stored with their secrets; taking them out of what the API shows is the server's business.

use sqlx::Row;
use steward_types::api::Timestamp;
use steward_types::api::event_actions::{
    Delivery, DeliveryKind, DeliveryState, EventActionPlan, MaintenanceWindow, PlanAction,
};
use steward_types::{DeliveryId, EventActionPlanId, EventId, MaintenanceWindowId};

use crate::templates::{document, to_document};
use crate::{Conn, Result, conflict_as, corrupt, next_cursor, unexpected_value};

fn plan_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<EventActionPlan> {
    let mut plan: EventActionPlan = document("event action plan", row)?;
    plan.enabled = row.try_get::<i64, _>("enabled")? != 0;
    Ok(plan)
}

pub async fn plan_insert(conn: &mut Conn, plan: &EventActionPlan) -> Result<()> {
    sqlx::query(
        "INSERT INTO event_action_plans (id, name, data, enabled, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(plan.id.to_string())
    .bind(&plan.name)
    .bind(to_document("event action plan", plan)?)
    .bind(plan.enabled as i64)
    .bind(&plan.created_by)
    .bind(plan.created_at.millis())
    .bind(plan.updated_at.millis())
    .execute(conn)
    .await
    .map_err(conflict_as(format!("event action plan {:?}", plan.name)))?;
    Ok(())
}

/// Replaces a plan's definition (its name and ID stay).
pub async fn plan_update(conn: &mut Conn, plan: &EventActionPlan) -> Result<()> {
    sqlx::query("UPDATE event_action_plans SET data = $2, enabled = $3, updated_at = $4 WHERE id = $1")
        .bind(plan.id.to_string())
        .bind(to_document("event action plan", plan)?)
        .bind(plan.enabled as i64)
        .bind(plan.updated_at.millis())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn plan_get(conn: &mut Conn, id_or_name: &str) -> Result<Option<EventActionPlan>> {
    let row = sqlx::query("SELECT data, enabled FROM event_action_plans WHERE id = $1 OR name = $1")
        .bind(id_or_name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(plan_from_row).transpose()
}

pub async fn plan_list(conn: &mut Conn) -> Result<Vec<EventActionPlan>> {
    let rows = sqlx::query("SELECT data, enabled FROM event_action_plans ORDER BY name").fetch_all(conn).await?;
    rows.iter().map(plan_from_row).collect()
}

pub async fn plans_enabled(conn: &mut Conn) -> Result<Vec<EventActionPlan>> {
    let rows = sqlx::query("SELECT data, enabled FROM event_action_plans WHERE enabled = 1 ORDER BY name")
        .fetch_all(conn)
        .await?;
    rows.iter().map(plan_from_row).collect()
}

/// Deletes a plan with its deliveries (pending ones are not carried out) and its repeat-control state.
pub async fn plan_delete(conn: &mut Conn, id: EventActionPlanId) -> Result<()> {
    sqlx::query("DELETE FROM event_action_plans WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

pub async fn window_insert(conn: &mut Conn, window: &MaintenanceWindow) -> Result<()> {
    sqlx::query("INSERT INTO maintenance_windows (id, name, data, created_by, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(window.id.to_string())
        .bind(&window.name)
        .bind(to_document("maintenance window", window)?)
        .bind(&window.created_by)
        .bind(window.created_at.millis())
        .execute(conn)
        .await
        .map_err(conflict_as(format!("maintenance window {:?}", window.name)))?;
    Ok(())
}

pub async fn window_get(conn: &mut Conn, id_or_name: &str) -> Result<Option<MaintenanceWindow>> {
    let row = sqlx::query("SELECT data FROM maintenance_windows WHERE id = $1 OR name = $1")
        .bind(id_or_name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(|row| document("maintenance window", row)).transpose()
}

pub async fn window_list(conn: &mut Conn) -> Result<Vec<MaintenanceWindow>> {
    let rows = sqlx::query("SELECT data FROM maintenance_windows ORDER BY name").fetch_all(conn).await?;
    rows.iter().map(|row| document("maintenance window", row)).collect()
}

pub async fn window_delete(conn: &mut Conn, id: MaintenanceWindowId) -> Result<()> {
    sqlx::query("DELETE FROM maintenance_windows WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

/// A delivery as recorded when its event is raised.
pub struct NewDelivery<'a> {
    pub id: DeliveryId,
    pub plan: EventActionPlanId,
    pub action_index: u32,
    pub action: &'a PlanAction,
    pub kind: DeliveryKind,
    pub event_id: EventId,
    pub event_type: &'a str,
    pub source: &'a str,
    pub message: &'a str,
    /// What the action sends (the event as JSON, or the flapping notice).
    pub payload: &'a serde_json::Value,
    pub state: DeliveryState,
    pub next_attempt_at: Option<Timestamp>,
    pub suppressed_by: Option<&'a str>,
    pub created_at: Timestamp,
}

pub async fn delivery_insert(conn: &mut Conn, delivery: &NewDelivery<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO deliveries (id, plan_id, action_index, action, kind, event_id, event_type, source, message,
           payload, state, next_attempt_at, suppressed_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
    )
    .bind(delivery.id.to_string())
    .bind(delivery.plan.to_string())
    .bind(i64::from(delivery.action_index))
    .bind(to_document("delivery action", delivery.action)?)
    .bind(delivery.kind.as_str())
    .bind(delivery.event_id.to_string())
    .bind(delivery.event_type)
    .bind(delivery.source)
    .bind(delivery.message)
    .bind(delivery.payload.to_string())
    .bind(delivery.state.as_str())
    .bind(delivery.next_attempt_at.map(Timestamp::millis))
    .bind(delivery.suppressed_by)
    .bind(delivery.created_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts one more event on the deliveries a plan made for `event` (of one kind): a duplicate, or an event while
/// flapping.
pub async fn deliveries_count_duplicate(
    conn: &mut Conn,
    plan: EventActionPlanId,
    event: EventId,
    kind: DeliveryKind,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "UPDATE deliveries SET duplicates = duplicates + 1, updated_at = $4
         WHERE plan_id = $1 AND event_id = $2 AND kind = $3",
    )
    .bind(plan.to_string())
    .bind(event.to_string())
    .bind(kind.as_str())
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// A delivery the worker is to carry out.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: DeliveryId,
    pub plan: String,
    pub action: PlanAction,
    pub kind: DeliveryKind,
    pub message: String,
    pub payload: serde_json::Value,
    pub attempts: u32,
}

/// Pending and retrying deliveries whose time has come, earliest first.
pub async fn deliveries_due(conn: &mut Conn, now: Timestamp, limit: u32) -> Result<Vec<DueDelivery>> {
    let rows = sqlx::query(
        "SELECT d.id, p.name AS plan, d.action, d.kind, d.message, d.payload, d.attempts
         FROM deliveries d JOIN event_action_plans p ON p.id = d.plan_id
         WHERE d.state IN ('pending', 'retrying') AND d.next_attempt_at <= $1
         ORDER BY d.next_attempt_at LIMIT $2",
    )
    .bind(now.millis())
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            let action: String = row.try_get("action")?;
            let kind: String = row.try_get("kind")?;
            let payload: String = row.try_get("payload")?;
            Ok(DueDelivery {
                id: DeliveryId::parse(&id).ok_or_else(|| corrupt("delivery id", unexpected_value(&id)))?,
                plan: row.try_get("plan")?,
                action: serde_json::from_str(&action).map_err(|error| corrupt("delivery action", error))?,
                kind: DeliveryKind::parse(&kind).ok_or_else(|| corrupt("delivery kind", unexpected_value(&kind)))?,
                message: row.try_get("message")?,
                payload: serde_json::from_str(&payload).map_err(|error| corrupt("delivery payload", error))?,
                attempts: row.try_get::<i64, _>("attempts")?.try_into().unwrap_or(u32::MAX),
            })
        })
        .collect()
}

/// The outcome of one attempt.
pub struct Attempt<'a> {
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub error: Option<&'a str>,
    pub at: Timestamp,
}

/// Records an attempt; a delivery deleted meanwhile (its plan was) is left deleted.
pub async fn delivery_record_attempt(conn: &mut Conn, id: DeliveryId, attempt: &Attempt<'_>) -> Result<()> {
    let delivered_at = (attempt.state == DeliveryState::Delivered).then_some(attempt.at.millis());
    sqlx::query(
        "UPDATE deliveries SET state = $2, attempts = $3, next_attempt_at = $4, last_error = COALESCE($5, last_error),
           updated_at = $6, delivered_at = $7
         WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(attempt.state.as_str())
    .bind(i64::from(attempt.attempts))
    .bind(attempt.next_attempt_at.map(Timestamp::millis))
    .bind(attempt.error)
    .bind(attempt.at.millis())
    .bind(delivered_at)
    .execute(conn)
    .await?;
    Ok(())
}

fn delivery_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Delivery> {
    let id: String = row.try_get("id")?;
    let event: String = row.try_get("event_id")?;
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let action: String = row.try_get("action")?;
    let action: PlanAction = serde_json::from_str(&action).map_err(|error| corrupt("delivery action", error))?;
    Ok(Delivery {
        id: DeliveryId::parse(&id).ok_or_else(|| corrupt("delivery id", unexpected_value(&id)))?,
        plan: row.try_get("plan")?,
        action_index: row.try_get::<i64, _>("action_index")?.try_into().unwrap_or(u32::MAX),
        action: action.kind().to_owned(),
        kind: DeliveryKind::parse(&kind).ok_or_else(|| corrupt("delivery kind", unexpected_value(&kind)))?,
        event_id: EventId::parse(&event).ok_or_else(|| corrupt("delivery event", unexpected_value(&event)))?,
        event_type: row.try_get("event_type")?,
        source: row.try_get("source")?,
        message: row.try_get("message")?,
        state: DeliveryState::parse(&state).ok_or_else(|| corrupt("delivery state", unexpected_value(&state)))?,
        attempts: row.try_get::<i64, _>("attempts")?.try_into().unwrap_or(u32::MAX),
        duplicates: row.try_get::<i64, _>("duplicates")?.try_into().unwrap_or(u32::MAX),
        next_attempt_at: row.try_get::<Option<i64>, _>("next_attempt_at")?.map(Timestamp),
        last_error: row.try_get("last_error")?,
        suppressed_by: row.try_get("suppressed_by")?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        delivered_at: row.try_get::<Option<i64>, _>("delivered_at")?.map(Timestamp),
    })
}

/// Newest first, optionally of one plan and in one state; the cursor is the creation time and ID.
pub async fn delivery_list(
    conn: &mut Conn,
    plan: Option<EventActionPlanId>,
    state: Option<DeliveryState>,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<Delivery>, Option<String>)> {
    let (before_time, before_id) = match after.and_then(|cursor| cursor.split_once('_')) {
        Some((time, id)) => (time.parse::<i64>().unwrap_or(i64::MAX), id.to_string()),
        None => (i64::MAX, String::new()),
    };
    let rows = sqlx::query(
        "SELECT d.id, p.name AS plan, d.action_index, d.action, d.kind, d.event_id, d.event_type, d.source,
           d.message, d.state, d.attempts, d.duplicates, d.next_attempt_at, d.last_error, d.suppressed_by,
           d.created_at, d.updated_at, d.delivered_at
         FROM deliveries d JOIN event_action_plans p ON p.id = d.plan_id
         WHERE ($1 IS NULL OR d.plan_id = $1) AND ($2 IS NULL OR d.state = $2)
           AND (d.created_at < $3 OR (d.created_at = $3 AND d.id < $4) OR $4 = '')
         ORDER BY d.created_at DESC, d.id DESC LIMIT $5",
    )
    .bind(plan.map(|plan| plan.to_string()))
    .bind(state.map(DeliveryState::as_str))
    .bind(before_time)
    .bind(before_id)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    let deliveries = rows.iter().map(delivery_from_row).collect::<Result<Vec<_>>>()?;
    let next = next_cursor(&deliveries, limit, |delivery| format!("{}_{}", delivery.created_at.millis(), delivery.id));
    Ok((deliveries, next))
}

/// The repeat-control state of a plan for one event type and source (JSON the server defines).
pub async fn throttle_get(
    conn: &mut Conn,
    plan: EventActionPlanId,
    event_type: &str,
    source_key: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT state FROM delivery_throttles WHERE plan_id = $1 AND event_type = $2 AND source_key = $3",
    )
    .bind(plan.to_string())
    .bind(event_type)
    .bind(source_key)
    .fetch_optional(conn)
    .await?)
}

pub async fn throttle_set(
    conn: &mut Conn,
    plan: EventActionPlanId,
    event_type: &str,
    source_key: &str,
    state: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO delivery_throttles (plan_id, event_type, source_key, state) VALUES ($1, $2, $3, $4)
         ON CONFLICT (plan_id, event_type, source_key) DO UPDATE SET state = $4",
    )
    .bind(plan.to_string())
    .bind(event_type)
    .bind(source_key)
    .bind(state)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets a plan's repeat-control state (its definition changed).
pub async fn throttles_clear(conn: &mut Conn, plan: EventActionPlanId) -> Result<()> {
    sqlx::query("DELETE FROM delivery_throttles WHERE plan_id = $1").bind(plan.to_string()).execute(conn).await?;
    Ok(())
}
