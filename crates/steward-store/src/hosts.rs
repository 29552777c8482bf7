//! Hypervisor hosts and their networks. What a host can do (architectures, memory, storage) is probed live by
//! the server; the store keeps only identity.

use sqlx::Row;
use steward_types::api::Timestamp;
use steward_types::api::hosts::HostKind;
use steward_types::api::networks::Network;
use steward_types::{HostId, NetworkId};

use crate::{Conn, Result, conflict_as, corrupt, next_cursor, unexpected_value};

#[derive(Debug, Clone)]
pub struct HostRecord {
    pub id: HostId,
    pub name: String,
    pub kind: HostKind,
    /// How to reach the host (JSON, for kinds registered through the API); never the secret.
    pub settings: Option<String>,
    pub created_at: Timestamp,
}

fn host_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<HostRecord> {
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    Ok(HostRecord {
        id: HostId::parse(&id).ok_or_else(|| corrupt("host id", unexpected_value(&id)))?,
        name: row.try_get("name")?,
        kind: HostKind::parse(&kind).ok_or_else(|| corrupt("host kind", unexpected_value(&kind)))?,
        settings: row.try_get("settings")?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

/// Inserts the host unless one of that name exists; returns the stored record either way.
pub async fn ensure(conn: &mut Conn, name: &str, kind: HostKind) -> Result<HostRecord> {
    if let Some(host) = get(conn, name).await? {
        return Ok(host);
    }
    let host =
        HostRecord { id: HostId::new(), name: name.to_string(), kind, settings: None, created_at: Timestamp::now() };
    insert(conn, &host, None).await?;
    Ok(host)
}

/// Inserts a host with its secret (the password of a z/VM host's SMAPI user).
pub async fn insert(conn: &mut Conn, host: &HostRecord, secret: Option<&str>) -> Result<()> {
    sqlx::query("INSERT INTO hosts (id, name, kind, settings, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(host.id.to_string())
        .bind(&host.name)
        .bind(host.kind.as_str())
        .bind(&host.settings)
        .bind(secret)
        .bind(host.created_at.millis())
        .execute(conn)
        .await
        .map_err(conflict_as(format!("host {:?}", host.name)))?;
    Ok(())
}

/// The host's secret, for the server to open its connection.
pub async fn secret(conn: &mut Conn, id: HostId) -> Result<Option<String>> {
    let row = sqlx::query("SELECT secret FROM hosts WHERE id = $1").bind(id.to_string()).fetch_optional(conn).await?;
    Ok(match row {
        Some(row) => row.try_get("secret")?,
        None => None,
    })
}

/// What still lives on a host, by kind of resource (virtual servers, OS templates, networks, complexes): a host
/// is removed only when this is empty.
pub async fn dependents(conn: &mut Conn, id: HostId) -> Result<Vec<(String, i64)>> {
    let mut found = Vec::new();
    for (what, table) in [
        ("virtual server(s)", "virtual_servers"),
        ("OS template(s)", "os_templates"),
        ("network(s)", "networks"),
        ("complex(es)", "complexes"),
    ] {
        let count: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table} WHERE host_id = $1")))
                .bind(id.to_string())
                .fetch_one(&mut *conn)
                .await?;
        if count > 0 {
            found.push((what.to_owned(), count));
        }
    }
    Ok(found)
}

pub async fn delete(conn: &mut Conn, id: HostId) -> Result<()> {
    sqlx::query("DELETE FROM hosts WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id_or_name: &str) -> Result<Option<HostRecord>> {
    let row = sqlx::query("SELECT id, name, kind, settings, created_at FROM hosts WHERE id = $1 OR name = $1")
        .bind(id_or_name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(host_from_row).transpose()
}

pub async fn get_by_id(conn: &mut Conn, id: HostId) -> Result<Option<HostRecord>> {
    get(conn, &id.to_string()).await
}

pub async fn list(conn: &mut Conn) -> Result<Vec<HostRecord>> {
    let rows =
        sqlx::query("SELECT id, name, kind, settings, created_at FROM hosts ORDER BY name").fetch_all(conn).await?;
    rows.iter().map(host_from_row).collect()
}

const NETWORK_COLUMNS: &str = "SELECT n.id, n.name, h.name AS host, n.subnet, n.description, n.created_at,
    (SELECT COUNT(*) FROM virtual_server_nics v WHERE v.network_id = n.id) AS attached
    FROM networks n JOIN hosts h ON h.id = n.host_id";

fn network_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Network> {
    let id: String = row.try_get("id")?;
    Ok(Network {
        id: NetworkId::parse(&id).ok_or_else(|| corrupt("network id", unexpected_value(&id)))?,
        name: row.try_get("name")?,
        host: row.try_get("host")?,
        subnet: row.try_get("subnet")?,
        description: row.try_get("description")?,
        attached_nics: row.try_get::<i64, _>("attached")? as u64,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

pub async fn network_insert(conn: &mut Conn, network: &Network, host: HostId) -> Result<()> {
    sqlx::query(
        "INSERT INTO networks (id, name, host_id, subnet, description, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(network.id.to_string())
    .bind(&network.name)
    .bind(host.to_string())
    .bind(&network.subnet)
    .bind(&network.description)
    .bind(network.created_at.millis())
    .execute(conn)
    .await
    .map_err(conflict_as(format!("network {:?}", network.name)))?;
    Ok(())
}

pub async fn network_get(conn: &mut Conn, id_or_name: &str) -> Result<Option<Network>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{NETWORK_COLUMNS} WHERE n.id = $1 OR n.name = $1")))
        .bind(id_or_name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(network_from_row).transpose()
}

pub async fn network_list(conn: &mut Conn, after: Option<&str>, limit: u32) -> Result<(Vec<Network>, Option<String>)> {
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(format!("{NETWORK_COLUMNS} WHERE n.name > $1 ORDER BY n.name LIMIT $2")))
            .bind(after.unwrap_or(""))
            .bind(limit as i64)
            .fetch_all(conn)
            .await?;
    let networks = rows.iter().map(network_from_row).collect::<Result<Vec<_>>>()?;
    let next = next_cursor(&networks, limit, |network| network.name.clone());
    Ok((networks, next))
}

pub async fn network_delete(conn: &mut Conn, id: NetworkId) -> Result<()> {
    sqlx::query("DELETE FROM networks WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}
