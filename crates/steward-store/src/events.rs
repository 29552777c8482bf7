//! Events, newest first. Written only through the server's `app::events::raise`, which enqueues the deliveries of
//! the event action plans that match in the same transaction.

use sqlx::Row;
use steward_types::api::Timestamp;
use steward_types::api::events::{Event, Severity};
use steward_types::{EventId, SystemId};

use crate::{Conn, Result, corrupt, next_cursor, unexpected_value};

/// What an event is about, beyond its kind and name (the ID of the source resource).
pub async fn insert(conn: &mut Conn, event: &Event, source_id: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO events
           (id, type, severity, source_kind, source_id, source_name, message, details, created_at, system_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(event.id.to_string())
    .bind(&event.event_type)
    .bind(event.severity.as_str())
    .bind(&event.source_kind)
    .bind(source_id)
    .bind(&event.source)
    .bind(&event.message)
    .bind(event.details.to_string())
    .bind(event.created_at.millis())
    .bind(event.system_id.map(|id| id.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Newest first, optionally of one type and about one source; the cursor is the creation time and ID.
pub async fn list(
    conn: &mut Conn,
    event_type: Option<&str>,
    source: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<Event>, Option<String>)> {
    let (before_time, before_id) = match after.and_then(|cursor| cursor.split_once('_')) {
        Some((time, id)) => (time.parse::<i64>().unwrap_or(i64::MAX), id.to_string()),
        None => (i64::MAX, String::new()),
    };
    let rows = sqlx::query(
        "SELECT id, type, severity, source_kind, source_name, message, details, created_at, system_id FROM events
         WHERE ($1 IS NULL OR type = $1) AND ($2 IS NULL OR source_name = $2)
           AND (created_at < $3 OR (created_at = $3 AND id < $4) OR $4 = '')
         ORDER BY created_at DESC, id DESC LIMIT $5",
    )
    .bind(event_type)
    .bind(source)
    .bind(before_time)
    .bind(before_id)
    .bind(limit as i64)
    .fetch_all(conn)
    .await?;
    let events = rows
        .iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            let severity: String = row.try_get("severity")?;
            let details: String = row.try_get("details")?;
            let system: Option<String> = row.try_get("system_id")?;
            Ok(Event {
                id: EventId::parse(&id).ok_or_else(|| corrupt("event id", unexpected_value(&id)))?,
                event_type: row.try_get("type")?,
                severity: Severity::parse(&severity)
                    .ok_or_else(|| corrupt("event severity", unexpected_value(&severity)))?,
                source_kind: row.try_get("source_kind")?,
                source: row.try_get("source_name")?,
                system_id: match system {
                    Some(system) => Some(
                        SystemId::parse(&system).ok_or_else(|| corrupt("event system", unexpected_value(&system)))?,
                    ),
                    None => None,
                },
                message: row.try_get("message")?,
                details: serde_json::from_str(&details).map_err(|error| corrupt("event details", error))?,
                created_at: Timestamp(row.try_get("created_at")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let next = next_cursor(&events, limit, |event| format!("{}_{}", event.created_at.millis(), event.id));
    Ok((events, next))
}
