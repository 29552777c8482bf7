//! Managed systems, their agent certificates, their inventory and its history.

use sqlx::Row;
use steward_protocol::Inventory;
use steward_types::SystemId;
use steward_types::api::Timestamp;
use steward_types::api::systems::{InventoryChange, SystemState, SystemSummary};

use crate::{Conn, Result, conflict_as, corrupt, next_cursor, unexpected_value};

const SUMMARY_COLUMNS: &str =
    "s.id, s.name, s.hostname, s.os, s.arch, s.agent_version, s.online, s.enrolled_at, s.last_contact_at";

fn summary_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<SystemSummary> {
    let id: String = row.try_get("id")?;
    Ok(SystemSummary {
        id: SystemId::parse(&id).ok_or_else(|| corrupt("system id", unexpected_value(&id)))?,
        name: row.try_get("name")?,
        state: if row.try_get::<i64, _>("online")? != 0 { SystemState::Online } else { SystemState::Offline },
        hostname: row.try_get("hostname")?,
        os: row.try_get("os")?,
        arch: row.try_get("arch")?,
        agent_version: row.try_get("agent_version")?,
        enrolled_at: Timestamp(row.try_get("enrolled_at")?),
        last_contact_at: row.try_get::<Option<i64>, _>("last_contact_at")?.map(Timestamp),
    })
}

/// A system as it is first recorded at enrollment.
pub struct NewSystem<'a> {
    pub id: SystemId,
    pub name: &'a str,
    pub hostname: &'a str,
    pub agent_version: &'a str,
    pub enrolled_at: Timestamp,
}

pub async fn insert(conn: &mut Conn, system: &NewSystem<'_>) -> Result<()> {
    sqlx::query("INSERT INTO systems (id, name, hostname, agent_version, enrolled_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(system.id.to_string())
        .bind(system.name)
        .bind(system.hostname)
        .bind(system.agent_version)
        .bind(system.enrolled_at.millis())
        .execute(conn)
        .await
        .map_err(conflict_as(format!("system {:?}", system.name)))?;
    Ok(())
}

pub async fn name_taken(conn: &mut Conn, name: &str) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM systems WHERE name = $1").bind(name).fetch_one(conn).await?
        > 0)
}

/// Finds a system by ID or name.
pub async fn get(conn: &mut Conn, id_or_name: &str) -> Result<Option<SystemSummary>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SUMMARY_COLUMNS} FROM systems s WHERE s.id = $1 OR s.name = $1"
    )))
    .bind(id_or_name)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(summary_from_row).transpose()
}

/// Lists systems by name, optionally only members of a group and only in one state.
pub async fn list(
    conn: &mut Conn,
    group: Option<steward_types::GroupId>,
    state: Option<SystemState>,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<SystemSummary>, Option<String>)> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SUMMARY_COLUMNS} FROM systems s
         WHERE ($1 IS NULL OR s.id IN (SELECT system_id FROM group_members WHERE group_id = $1))
           AND ($2 IS NULL OR s.online = $2) AND s.name > $3
         ORDER BY s.name LIMIT $4"
    )))
    .bind(group.map(|id| id.to_string()))
    .bind(state.map(|state| i64::from(state == SystemState::Online)))
    .bind(after.unwrap_or(""))
    .bind(limit as i64)
    .fetch_all(conn)
    .await?;
    let systems = rows.iter().map(summary_from_row).collect::<Result<Vec<_>>>()?;
    let next = next_cursor(&systems, limit, |system| system.name.clone());
    Ok((systems, next))
}

pub async fn delete(conn: &mut Conn, id: SystemId) -> Result<()> {
    sqlx::query("DELETE FROM systems WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

/// Records the agent's connection state and, when it connects or speaks, the time of contact.
pub async fn set_contact(conn: &mut Conn, id: SystemId, online: bool, at: Timestamp) -> Result<()> {
    sqlx::query("UPDATE systems SET online = $2, last_contact_at = $3 WHERE id = $1")
        .bind(id.to_string())
        .bind(i64::from(online))
        .bind(at.millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the version the agent reported in its hello (agents are upgraded in place).
pub async fn set_agent_version(conn: &mut Conn, id: SystemId, version: &str) -> Result<()> {
    sqlx::query("UPDATE systems SET agent_version = $2 WHERE id = $1 AND agent_version <> $2")
        .bind(id.to_string())
        .bind(version)
        .execute(conn)
        .await?;
    Ok(())
}

/// At server start no agent is connected yet.
pub async fn mark_all_offline(conn: &mut Conn) -> Result<()> {
    sqlx::query("UPDATE systems SET online = 0 WHERE online <> 0").execute(conn).await?;
    Ok(())
}

/// The stored inventory of a system and when it was last changed.
pub async fn inventory_get(conn: &mut Conn, id: SystemId) -> Result<Option<(Inventory, Timestamp)>> {
    let row =
        sqlx::query("SELECT inventory, inventory_updated_at FROM systems WHERE id = $1 AND inventory IS NOT NULL")
            .bind(id.to_string())
            .fetch_optional(conn)
            .await?;
    let Some(row) = row else { return Ok(None) };
    let text: String = row.try_get("inventory")?;
    let inventory = serde_json::from_str(&text).map_err(|error| corrupt("inventory", error))?;
    Ok(Some((inventory, Timestamp(row.try_get("inventory_updated_at")?))))
}

pub async fn inventory_digest(conn: &mut Conn, id: SystemId) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT inventory_digest FROM systems WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .flatten())
}

/// Replaces the stored inventory and the summary columns derived from it, and appends a history entry.
pub async fn inventory_set(
    conn: &mut Conn,
    id: SystemId,
    inventory: &Inventory,
    change: &InventoryChange,
) -> Result<()> {
    let text = serde_json::to_string(inventory).map_err(|error| corrupt("inventory", error))?;
    sqlx::query(
        "UPDATE systems SET inventory = $2, inventory_digest = $3, inventory_updated_at = $4,
                hostname = $5, os = $6, arch = $7, last_contact_at = $4
         WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(text)
    .bind(inventory.digest())
    .bind(change.at.millis())
    .bind(&inventory.host.hostname)
    .bind(&inventory.host.os.pretty_name)
    .bind(&inventory.host.arch)
    .execute(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO inventory_history (system_id, at, sections, change) VALUES ($1, $2, $3, $4)")
        .bind(id.to_string())
        .bind(change.at.millis())
        .bind(change.sections.join(","))
        .bind(change.change.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// A system's inventory history, newest first; `before` is the `next` cursor of the previous page.
pub async fn history_list(
    conn: &mut Conn,
    id: SystemId,
    before: Option<i64>,
    limit: u32,
) -> Result<(Vec<InventoryChange>, Option<String>)> {
    let rows = sqlx::query(
        "SELECT id, at, sections, change FROM inventory_history WHERE system_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(id.to_string())
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit as i64)
    .fetch_all(conn)
    .await?;
    let mut changes = Vec::with_capacity(rows.len());
    let mut last_id = 0i64;
    for row in rows {
        last_id = row.try_get("id")?;
        let sections: String = row.try_get("sections")?;
        let change: String = row.try_get("change")?;
        changes.push(InventoryChange {
            at: Timestamp(row.try_get("at")?),
            sections: sections.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            change: serde_json::from_str(&change).map_err(|error| corrupt("inventory change", error))?,
        });
    }
    let next = next_cursor(&changes, limit, |_| last_id.to_string());
    Ok((changes, next))
}

/// A row of `facts_batch` or `facts_changed_since`.
pub type SystemFactsRow = (SystemId, String, SystemState, Option<Inventory>);

/// IDs of every system after `after` (by ID), with name, state and inventory, a batch at a time: used to
/// evaluate a dynamic group over the whole fleet without holding every inventory in memory.
pub async fn facts_batch(conn: &mut Conn, after: &str, limit: u32) -> Result<Vec<SystemFactsRow>> {
    let rows = sqlx::query("SELECT id, name, online, inventory FROM systems WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(after)
        .bind(limit as i64)
        .fetch_all(conn)
        .await?;
    rows.iter().map(facts_from_row).collect()
}

/// Systems that enrolled, reported inventory, or connected or disconnected at or after `since`.
pub async fn facts_changed_since(conn: &mut Conn, since: Timestamp) -> Result<Vec<SystemFactsRow>> {
    let rows = sqlx::query(
        "SELECT id, name, online, inventory FROM systems
         WHERE enrolled_at >= $1 OR inventory_updated_at >= $1 OR last_contact_at >= $1",
    )
    .bind(since.millis())
    .fetch_all(conn)
    .await?;
    rows.iter().map(facts_from_row).collect()
}

fn facts_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<SystemFactsRow> {
    let id: String = row.try_get("id")?;
    let inventory: Option<String> = row.try_get("inventory")?;
    Ok((
        SystemId::parse(&id).ok_or_else(|| corrupt("system id", unexpected_value(&id)))?,
        row.try_get("name")?,
        if row.try_get::<i64, _>("online")? != 0 { SystemState::Online } else { SystemState::Offline },
        inventory.map(|text| serde_json::from_str(&text)).transpose().map_err(|error| corrupt("inventory", error))?,
    ))
}

pub async fn certificate_insert(conn: &mut Conn, serial: &str, system: SystemId, at: Timestamp) -> Result<()> {
    sqlx::query("INSERT INTO agent_certificates (serial, system_id, issued_at) VALUES ($1, $2, $3)")
        .bind(serial)
        .bind(system.to_string())
        .bind(at.millis())
        .execute(conn)
        .await
        .map_err(conflict_as(format!("certificate {serial}")))?;
    Ok(())
}

/// The system a certificate was issued to, if the certificate is known and not revoked.
pub async fn certificate_valid_for(conn: &mut Conn, serial: &str) -> Result<Option<SystemId>> {
    let system: Option<String> =
        sqlx::query_scalar("SELECT system_id FROM agent_certificates WHERE serial = $1 AND revoked_at IS NULL")
            .bind(serial)
            .fetch_optional(conn)
            .await?;
    Ok(system.and_then(|id| SystemId::parse(&id)))
}

pub async fn certificates_revoke(conn: &mut Conn, system: SystemId, at: Timestamp) -> Result<()> {
    sqlx::query("UPDATE agent_certificates SET revoked_at = $2 WHERE system_id = $1 AND revoked_at IS NULL")
        .bind(system.to_string())
        .bind(at.millis())
        .execute(conn)
        .await?;
    Ok(())
}
