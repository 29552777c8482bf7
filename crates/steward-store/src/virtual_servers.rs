//! Virtual servers, kept as their API document (JSON) beside the columns that are looked up, and their NICs
//! (a table of their own: MAC addresses are unique across the store, and networks count what is attached).
//! A virtual server is `creating` while the saga that makes it runs, `ready` afterwards, `deleting` while it goes.

use sqlx::Row;
use steward_types::api::virtual_servers::VirtualServer;
use steward_types::{HostId, NetworkId, VirtualServerId};

use crate::templates::{document, to_document};
use crate::{Conn, Result, conflict_as, next_cursor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtualServerState {
    Creating,
    Ready,
    Deleting,
}

impl VirtualServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            VirtualServerState::Creating => "creating",
            VirtualServerState::Ready => "ready",
            VirtualServerState::Deleting => "deleting",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "ready" => VirtualServerState::Ready,
            "deleting" => VirtualServerState::Deleting,
            _ => VirtualServerState::Creating,
        }
    }
}

/// The stored virtual server with the IDs the document names only by name.
#[derive(Debug, Clone)]
pub struct VirtualServerRecord {
    pub server: VirtualServer,
    pub host: HostId,
    pub state: VirtualServerState,
}

pub(crate) fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<VirtualServerRecord> {
    let host: String = row.try_get("host_id")?;
    let state: String = row.try_get("state")?;
    Ok(VirtualServerRecord {
        server: document("virtual server", row)?,
        host: HostId::parse(&host).unwrap_or_default(),
        state: VirtualServerState::parse(&state),
    })
}

pub async fn insert(
    conn: &mut Conn,
    server: &VirtualServer,
    host: HostId,
    server_template: Option<steward_types::ServerTemplateId>,
    state: VirtualServerState,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO virtual_servers (id, name, host_id, server_template_id, system_id, state, data, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(server.id.to_string())
    .bind(&server.name)
    .bind(host.to_string())
    .bind(server_template.map(|id| id.to_string()))
    .bind(server.system.map(|id| id.to_string()))
    .bind(state.as_str())
    .bind(to_document("virtual server", server)?)
    .bind(server.created_at.millis())
    .execute(conn)
    .await
    .map_err(conflict_as(format!("virtual server {:?}", server.name)))?;
    Ok(())
}

/// Replaces the document, the deployed OS template and the state.
pub async fn update(
    conn: &mut Conn,
    server: &VirtualServer,
    os_template: Option<steward_types::OsTemplateId>,
    state: VirtualServerState,
) -> Result<()> {
    sqlx::query("UPDATE virtual_servers SET data = $2, os_template_id = $3, system_id = $4, state = $5 WHERE id = $1")
        .bind(server.id.to_string())
        .bind(to_document("virtual server", server)?)
        .bind(os_template.map(|id| id.to_string()))
        .bind(server.system.map(|id| id.to_string()))
        .bind(state.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces the document alone (the deployed OS template and the state stay).
pub async fn set_document(conn: &mut Conn, server: &VirtualServer) -> Result<()> {
    sqlx::query("UPDATE virtual_servers SET data = $2 WHERE id = $1")
        .bind(server.id.to_string())
        .bind(to_document("virtual server", server)?)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_state(conn: &mut Conn, id: VirtualServerId, state: VirtualServerState) -> Result<()> {
    sqlx::query("UPDATE virtual_servers SET state = $2 WHERE id = $1")
        .bind(id.to_string())
        .bind(state.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

const COLUMNS: &str = "SELECT data, host_id, state FROM virtual_servers";

pub async fn get(conn: &mut Conn, id_or_name: &str) -> Result<Option<VirtualServerRecord>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE id = $1 OR name = $1")))
        .bind(id_or_name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(
    conn: &mut Conn,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<VirtualServerRecord>, Option<String>)> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE name > $1 ORDER BY name LIMIT $2")))
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(conn)
        .await?;
    let servers = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    let next = next_cursor(&servers, limit, |record| record.server.name.clone());
    Ok((servers, next))
}

/// Every virtual server of a host (the server re-attaches to their guests when it starts).
pub async fn list_on_host(conn: &mut Conn, host: HostId) -> Result<Vec<VirtualServerRecord>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE host_id = $1 ORDER BY name")))
        .bind(host.to_string())
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn delete(conn: &mut Conn, id: VirtualServerId) -> Result<()> {
    sqlx::query("DELETE FROM virtual_servers WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

pub async fn nic_insert(
    conn: &mut Conn,
    server: VirtualServerId,
    position: u32,
    network: NetworkId,
    mac: &str,
    address: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO virtual_server_nics (virtual_server_id, position, network_id, mac, address)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(server.to_string())
    .bind(position as i64)
    .bind(network.to_string())
    .bind(mac)
    .bind(address)
    .execute(conn)
    .await
    .map_err(conflict_as(format!("MAC address {mac} or address {}", address.unwrap_or("-"))))?;
    Ok(())
}

pub async fn nic_delete(conn: &mut Conn, mac: &str) -> Result<()> {
    sqlx::query("DELETE FROM virtual_server_nics WHERE mac = $1").bind(mac).execute(conn).await?;
    Ok(())
}

/// Whether a MAC address is already given to a NIC.
pub async fn mac_taken(conn: &mut Conn, mac: &str) -> Result<bool> {
    let row = sqlx::query("SELECT COUNT(*) FROM virtual_server_nics WHERE mac = $1").bind(mac).fetch_one(conn).await?;
    Ok(row.try_get::<i64, _>(0)? > 0)
}
