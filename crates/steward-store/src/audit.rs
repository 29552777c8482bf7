//! The audit trail. Records are only ever inserted, in the transaction of the change they describe.

use sqlx::Row;
use steward_types::api::Timestamp;
use steward_types::api::audit::{AuditOutcome, AuditRecord};

use crate::{Conn, Result, corrupt};

/// An audit record before it has an ID.
#[derive(Debug, Clone)]
pub struct NewAuditRecord {
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: AuditOutcome,
    pub details: serde_json::Value,
}

pub async fn insert(conn: &mut Conn, record: &NewAuditRecord) -> Result<i64> {
    let outcome = match record.outcome {
        AuditOutcome::Success => "success",
        AuditOutcome::Failure => "failure",
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO audit (at, actor, action, target, outcome, details) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(record.at.millis())
    .bind(&record.actor)
    .bind(&record.action)
    .bind(&record.target)
    .bind(outcome)
    .bind(record.details.to_string())
    .fetch_one(conn)
    .await?;
    Ok(id)
}

/// Lists records newest first. `before` is the ID of the last record of the previous page.
pub async fn list(
    conn: &mut Conn,
    actor: Option<&str>,
    action_prefix: Option<&str>,
    before: Option<i64>,
    limit: u32,
) -> Result<(Vec<AuditRecord>, Option<String>)> {
    let rows = sqlx::query(
        "SELECT id, at, actor, action, target, outcome, details FROM audit
         WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR substr(action, 1, length($2)) = $2) AND id < $3
         ORDER BY id DESC LIMIT $4",
    )
    .bind(actor)
    .bind(action_prefix)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit as i64)
    .fetch_all(conn)
    .await?;
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        let outcome: String = row.try_get("outcome")?;
        let details: String = row.try_get("details")?;
        records.push(AuditRecord {
            id: row.try_get("id")?,
            at: Timestamp(row.try_get("at")?),
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            target: row.try_get("target")?,
            outcome: if outcome == "success" { AuditOutcome::Success } else { AuditOutcome::Failure },
            details: serde_json::from_str(&details).map_err(|error| corrupt("audit details", error))?,
        });
    }
    let next = crate::next_cursor(&records, limit, |record| record.id.to_string());
    Ok((records, next))
}
