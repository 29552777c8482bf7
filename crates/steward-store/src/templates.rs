//! Virtual server templates and OS templates, each kept as its API document (JSON) beside the looked-up columns.
//! An OS template is `creating` while the import or capture that makes it runs, then `ready`.

use sqlx::Row;
use steward_types::api::os_templates::OsTemplate;
use steward_types::api::server_templates::ServerTemplate;
use steward_types::{HostId, OsTemplateId, ServerTemplateId};

use crate::{Conn, Result, conflict_as, corrupt, next_cursor};

pub(crate) fn document<T: serde::de::DeserializeOwned>(what: &str, row: &sqlx::sqlite::SqliteRow) -> Result<T> {
    let data: String = row.try_get("data")?;
    serde_json::from_str(&data).map_err(|error| corrupt(what, error))
}

pub(crate) fn to_document<T: serde::Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|error| corrupt(what, error))
}

pub async fn server_template_insert(conn: &mut Conn, template: &ServerTemplate) -> Result<()> {
    sqlx::query("INSERT INTO server_templates (id, name, data, created_at) VALUES ($1, $2, $3, $4)")
        .bind(template.id.to_string())
        .bind(&template.name)
        .bind(to_document("server template", template)?)
        .bind(template.created_at.millis())
        .execute(conn)
        .await
        .map_err(conflict_as(format!("server template {:?}", template.name)))?;
    Ok(())
}

pub async fn server_template_get(conn: &mut Conn, id_or_name: &str) -> Result<Option<ServerTemplate>> {
    let row = sqlx::query("SELECT data FROM server_templates WHERE id = $1 OR name = $1")
        .bind(id_or_name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(|row| document("server template", row)).transpose()
}

pub async fn server_template_list(
    conn: &mut Conn,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<ServerTemplate>, Option<String>)> {
    let rows = sqlx::query("SELECT data FROM server_templates WHERE name > $1 ORDER BY name LIMIT $2")
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(conn)
        .await?;
    let templates = rows.iter().map(|row| document("server template", row)).collect::<Result<Vec<ServerTemplate>>>()?;
    let next = next_cursor(&templates, limit, |template| template.name.clone());
    Ok((templates, next))
}

pub async fn server_template_delete(conn: &mut Conn, id: ServerTemplateId) -> Result<()> {
    sqlx::query("DELETE FROM server_templates WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

/// Whether any virtual server was created from the template.
pub async fn server_template_in_use(conn: &mut Conn, id: ServerTemplateId) -> Result<bool> {
    let row = sqlx::query("SELECT COUNT(*) FROM virtual_servers WHERE server_template_id = $1")
        .bind(id.to_string())
        .fetch_one(conn)
        .await?;
    Ok(row.try_get::<i64, _>(0)? > 0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsTemplateState {
    Creating,
    Ready,
}

impl OsTemplateState {
    fn as_str(self) -> &'static str {
        match self {
            OsTemplateState::Creating => "creating",
            OsTemplateState::Ready => "ready",
        }
    }
}

pub async fn os_template_insert(
    conn: &mut Conn,
    template: &OsTemplate,
    host: HostId,
    state: OsTemplateState,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO os_templates (id, name, host_id, state, data, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(template.id.to_string())
    .bind(&template.name)
    .bind(host.to_string())
    .bind(state.as_str())
    .bind(to_document("OS template", template)?)
    .bind(template.created_at.millis())
    .execute(conn)
    .await
    .map_err(conflict_as(format!("OS template {:?}", template.name)))?;
    Ok(())
}

/// Replaces the stored document and state (the saga fills in size, checksum and what was sealed as it goes).
pub async fn os_template_update(conn: &mut Conn, template: &OsTemplate, state: OsTemplateState) -> Result<()> {
    sqlx::query("UPDATE os_templates SET data = $2, state = $3 WHERE id = $1")
        .bind(template.id.to_string())
        .bind(to_document("OS template", template)?)
        .bind(state.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// A template by ID or name, with whether it is ready; creating templates are visible (their name is taken).
pub async fn os_template_get(conn: &mut Conn, id_or_name: &str) -> Result<Option<(OsTemplate, OsTemplateState)>> {
    let row = sqlx::query("SELECT data, state FROM os_templates WHERE id = $1 OR name = $1")
        .bind(id_or_name)
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get("state")?;
    let state = if state == "ready" { OsTemplateState::Ready } else { OsTemplateState::Creating };
    Ok(Some((document("OS template", &row)?, state)))
}

pub async fn os_template_list(
    conn: &mut Conn,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<OsTemplate>, Option<String>)> {
    let rows = sqlx::query("SELECT data FROM os_templates WHERE name > $1 AND state = 'ready' ORDER BY name LIMIT $2")
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(conn)
        .await?;
    let templates = rows.iter().map(|row| document("OS template", row)).collect::<Result<Vec<OsTemplate>>>()?;
    let next = next_cursor(&templates, limit, |template| template.name.clone());
    Ok((templates, next))
}

pub async fn os_template_delete(conn: &mut Conn, id: OsTemplateId) -> Result<()> {
    sqlx::query("DELETE FROM os_templates WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

/// The names of virtual servers whose disks were deployed from the template.
pub async fn os_template_users(conn: &mut Conn, id: OsTemplateId) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT name FROM virtual_servers WHERE os_template_id = $1 ORDER BY name")
        .bind(id.to_string())
        .fetch_all(conn)
        .await?;
    rows.iter().map(|row| Ok(row.try_get("name")?)).collect()
}

/// The image locations (`OsTemplate::disk_location`) of every OS template on a host, in any state.
pub async fn os_template_locations(conn: &mut Conn, host: HostId) -> Result<Vec<String>> {
    let rows =
        sqlx::query("SELECT data FROM os_templates WHERE host_id = $1").bind(host.to_string()).fetch_all(conn).await?;
    let mut locations = Vec::new();
    for row in &rows {
        let template: OsTemplate = document("OS template", row)?;
        locations.extend(template.disk_location);
    }
    Ok(locations)
}
