//! Groups and their members. Dynamic groups' members are materialized here too (the server recomputes them when
//! a query or an inventory changes), so that "members of G" is one indexed lookup for every caller.

use sqlx::Row;
use steward_types::api::Timestamp;
use steward_types::api::groups::{Group, GroupKind};
use steward_types::api::systems::SystemSummary;
use steward_types::{GroupId, SystemId};

use crate::{Conn, Result, conflict_as, corrupt, next_cursor, unexpected_value};

const COLUMNS: &str = "SELECT g.id, g.name, g.kind, g.description, g.query, g.created_at,
    (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id) AS member_count FROM system_groups g";

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Group> {
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    Ok(Group {
        id: GroupId::parse(&id).ok_or_else(|| corrupt("group id", unexpected_value(&id)))?,
        name: row.try_get("name")?,
        kind: if kind == "dynamic" { GroupKind::Dynamic } else { GroupKind::Static },
        description: row.try_get("description")?,
        query: row.try_get("query")?,
        member_count: row.try_get::<i64, _>("member_count")? as u64,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

pub async fn insert(conn: &mut Conn, group: &Group) -> Result<()> {
    sqlx::query(
        "INSERT INTO system_groups (id, name, kind, description, query, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(group.id.to_string())
    .bind(&group.name)
    .bind(match group.kind {
        GroupKind::Static => "static",
        GroupKind::Dynamic => "dynamic",
    })
    .bind(&group.description)
    .bind(&group.query)
    .bind(group.created_at.millis())
    .execute(conn)
    .await
    .map_err(conflict_as(format!("group {:?}", group.name)))?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id_or_name: &str) -> Result<Option<Group>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE g.id = $1 OR g.name = $1")))
        .bind(id_or_name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(conn: &mut Conn, after: Option<&str>, limit: u32) -> Result<(Vec<Group>, Option<String>)> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE g.name > $1 ORDER BY g.name LIMIT $2")))
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(conn)
        .await?;
    let groups = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    let next = next_cursor(&groups, limit, |group| group.name.clone());
    Ok((groups, next))
}

pub async fn update(conn: &mut Conn, id: GroupId, query: Option<&str>, description: &str) -> Result<()> {
    sqlx::query("UPDATE system_groups SET query = $2, description = $3 WHERE id = $1")
        .bind(id.to_string())
        .bind(query)
        .bind(description)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete(conn: &mut Conn, id: GroupId) -> Result<()> {
    sqlx::query("DELETE FROM system_groups WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

/// Every dynamic group with its query text.
pub async fn dynamic_groups(conn: &mut Conn) -> Result<Vec<(GroupId, String)>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, query FROM system_groups WHERE kind = 'dynamic' AND query IS NOT NULL")
            .fetch_all(conn)
            .await?;
    rows.into_iter()
        .map(|(id, query)| Ok((GroupId::parse(&id).ok_or_else(|| corrupt("group id", unexpected_value(&id)))?, query)))
        .collect()
}

/// Adds a member; adding a present member changes nothing, and a system that no longer exists is skipped.
/// True if the system exists.
pub async fn member_add(conn: &mut Conn, group: GroupId, system: SystemId) -> Result<bool> {
    let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM systems WHERE id = $1")
        .bind(system.to_string())
        .fetch_one(&mut *conn)
        .await?;
    if exists == 0 {
        return Ok(false);
    }
    sqlx::query("INSERT INTO group_members (group_id, system_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(group.to_string())
        .bind(system.to_string())
        .execute(conn)
        .await?;
    Ok(true)
}

/// Removes a member; true if it was one.
pub async fn member_remove(conn: &mut Conn, group: GroupId, system: SystemId) -> Result<bool> {
    let result = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND system_id = $2")
        .bind(group.to_string())
        .bind(system.to_string())
        .execute(conn)
        .await?;
    Ok(result.rows_affected() > 0)
}

/// Removes every member of a group (before a dynamic group is recomputed).
pub async fn members_clear(conn: &mut Conn, group: GroupId) -> Result<()> {
    sqlx::query("DELETE FROM group_members WHERE group_id = $1").bind(group.to_string()).execute(conn).await?;
    Ok(())
}

/// Removes a system from every dynamic group (before its memberships are recomputed).
pub async fn dynamic_memberships_clear(conn: &mut Conn, system: SystemId) -> Result<()> {
    sqlx::query(
        "DELETE FROM group_members WHERE system_id = $1
           AND group_id IN (SELECT id FROM system_groups WHERE kind = 'dynamic')",
    )
    .bind(system.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Names of the groups a system belongs to.
pub async fn groups_of(conn: &mut Conn, system: SystemId) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT g.name FROM group_members m JOIN system_groups g ON g.id = m.group_id WHERE m.system_id = $1 ORDER BY g.name",
    )
    .bind(system.to_string())
    .fetch_all(conn)
    .await?)
}

/// Members of a group, as system summaries ordered by name.
pub async fn members(
    conn: &mut Conn,
    group: GroupId,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<SystemSummary>, Option<String>)> {
    crate::systems::list(conn, Some(group), None, after, limit).await
}
