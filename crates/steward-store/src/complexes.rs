//! Server complexes: the definition (a JSON document), the members (virtual servers with their tier, index and
//! adopted values), and the deviations the last consistency check found (kept so that the reconciler reports
//! only new ones as events).

use std::collections::BTreeMap;

use sqlx::Row;
use steward_types::api::Timestamp;
use steward_types::api::complexes::{ComplexDefinition, Deviation, Layer};
use steward_types::{ComplexId, HostId, NetworkId, VirtualServerId};

use crate::templates::to_document;
use crate::virtual_servers::VirtualServerRecord;
use crate::{Conn, Result, conflict_as, corrupt, unexpected_value};

#[derive(Debug, Clone)]
pub struct ComplexRecord {
    pub id: ComplexId,
    pub name: String,
    pub host: HostId,
    pub definition: ComplexDefinition,
    pub last_checked_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

fn parse_id<T>(what: &str, text: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    parse(text).ok_or_else(|| corrupt(what, unexpected_value(text)))
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ComplexRecord> {
    let id: String = row.try_get("id")?;
    let host: String = row.try_get("host_id")?;
    let data: String = row.try_get("data")?;
    Ok(ComplexRecord {
        id: parse_id("complex id", &id, ComplexId::parse)?,
        name: row.try_get("name")?,
        host: parse_id("host id", &host, HostId::parse)?,
        definition: serde_json::from_str(&data).map_err(|error| corrupt("complex definition", error))?,
        last_checked_at: row.try_get::<Option<i64>, _>("last_checked_at")?.map(Timestamp),
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

const COLUMNS: &str = "SELECT id, name, host_id, data, last_checked_at, created_at FROM complexes";

pub async fn insert(conn: &mut Conn, complex: &ComplexRecord) -> Result<()> {
    sqlx::query("INSERT INTO complexes (id, name, host_id, data, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(complex.id.to_string())
        .bind(&complex.name)
        .bind(complex.host.to_string())
        .bind(to_document("complex definition", &complex.definition)?)
        .bind(complex.created_at.millis())
        .execute(conn)
        .await
        .map_err(conflict_as(format!("complex {:?}", complex.name)))?;
    Ok(())
}

pub async fn set_definition(conn: &mut Conn, id: ComplexId, definition: &ComplexDefinition) -> Result<()> {
    sqlx::query("UPDATE complexes SET data = $2 WHERE id = $1")
        .bind(id.to_string())
        .bind(to_document("complex definition", definition)?)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id_or_name: &str) -> Result<Option<ComplexRecord>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE id = $1 OR name = $1")))
        .bind(id_or_name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every complex, by name (there are few; the reconciler walks them all).
pub async fn list(conn: &mut Conn) -> Result<Vec<ComplexRecord>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} ORDER BY name"))).fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

pub async fn delete(conn: &mut Conn, id: ComplexId) -> Result<()> {
    sqlx::query("DELETE FROM complexes WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

/// A member: its virtual server with its place in the complex.
#[derive(Debug, Clone)]
pub struct MemberRecord {
    pub virtual_server: VirtualServerRecord,
    pub tier: String,
    pub index: u32,
    pub adopted: BTreeMap<String, String>,
}

/// The members of a complex, by tier and index.
pub async fn members(conn: &mut Conn, complex: ComplexId) -> Result<Vec<MemberRecord>> {
    let rows = sqlx::query(
        "SELECT m.tier, m.member_index, m.adopted, v.data, v.host_id, v.state
         FROM complex_members m JOIN virtual_servers v ON v.id = m.virtual_server_id
         WHERE m.complex_id = $1 ORDER BY m.tier, m.member_index",
    )
    .bind(complex.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let adopted: String = row.try_get("adopted")?;
            Ok(MemberRecord {
                virtual_server: crate::virtual_servers::from_row(row)?,
                tier: row.try_get("tier")?,
                index: row.try_get::<i64, _>("member_index")? as u32,
                adopted: serde_json::from_str(&adopted).map_err(|error| corrupt("adopted values", error))?,
            })
        })
        .collect()
}

pub async fn member_insert(
    conn: &mut Conn,
    complex: ComplexId,
    server: VirtualServerId,
    tier: &str,
    index: u32,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO complex_members (virtual_server_id, complex_id, tier, member_index) VALUES ($1, $2, $3, $4)",
    )
    .bind(server.to_string())
    .bind(complex.to_string())
    .bind(tier)
    .bind(index as i64)
    .execute(conn)
    .await
    .map_err(conflict_as(format!("member {index} of tier {tier}")))?;
    Ok(())
}

pub async fn member_set_adopted(
    conn: &mut Conn,
    server: VirtualServerId,
    adopted: &BTreeMap<String, String>,
) -> Result<()> {
    sqlx::query("UPDATE complex_members SET adopted = $2 WHERE virtual_server_id = $1")
        .bind(server.to_string())
        .bind(to_document("adopted values", adopted)?)
        .execute(conn)
        .await?;
    Ok(())
}

/// The highest member index a tier has used, counting members still being created or removed.
pub async fn highest_index(conn: &mut Conn, complex: ComplexId, tier: &str) -> Result<u32> {
    let row = sqlx::query("SELECT MAX(member_index) FROM complex_members WHERE complex_id = $1 AND tier = $2")
        .bind(complex.to_string())
        .bind(tier)
        .fetch_one(conn)
        .await?;
    Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0) as u32)
}

/// The static addresses NICs hold on a network.
pub async fn addresses_taken(conn: &mut Conn, network: NetworkId) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT address FROM virtual_server_nics WHERE network_id = $1 AND address IS NOT NULL")
        .bind(network.to_string())
        .fetch_all(conn)
        .await?;
    rows.iter().map(|row| Ok(row.try_get("address")?)).collect()
}

/// Records what a check found and returns the deviations that were not there before (for events). The
/// deviations of members that were not checked (`members_checked` lists the ones that were) are kept.
pub async fn deviations_record(
    conn: &mut Conn,
    complex: ComplexId,
    members_checked: &[String],
    found: &[Deviation],
    at: Timestamp,
) -> Result<Vec<Deviation>> {
    let mut fresh = Vec::new();
    for member in members_checked {
        let rows = sqlx::query("SELECT property FROM complex_deviations WHERE complex_id = $1 AND member = $2")
            .bind(complex.to_string())
            .bind(member)
            .fetch_all(&mut *conn)
            .await?;
        let known: Vec<String> = rows.iter().map(|row| row.try_get("property")).collect::<Result<_, _>>()?;
        let current: Vec<&Deviation> = found.iter().filter(|deviation| &deviation.member == member).collect();
        for property in &known {
            if !current.iter().any(|deviation| &deviation.property == property) {
                sqlx::query("DELETE FROM complex_deviations WHERE complex_id = $1 AND member = $2 AND property = $3")
                    .bind(complex.to_string())
                    .bind(member)
                    .bind(property)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        for deviation in current {
            sqlx::query(
                "INSERT INTO complex_deviations (complex_id, member, property, layer, expected, actual, first_seen)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (complex_id, member, property) DO UPDATE SET layer = $4, expected = $5, actual = $6",
            )
            .bind(complex.to_string())
            .bind(member)
            .bind(&deviation.property)
            .bind(layer_text(deviation.layer))
            .bind(&deviation.expected)
            .bind(&deviation.actual)
            .bind(at.millis())
            .execute(&mut *conn)
            .await?;
            if !known.contains(&deviation.property) {
                fresh.push(deviation.clone());
            }
        }
    }
    // Members that no longer exist have no deviations.
    sqlx::query(
        "DELETE FROM complex_deviations WHERE complex_id = $1 AND member NOT IN
            (SELECT json_extract(v.data, '$.name') FROM complex_members m
             JOIN virtual_servers v ON v.id = m.virtual_server_id WHERE m.complex_id = $1)",
    )
    .bind(complex.to_string())
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE complexes SET last_checked_at = $2 WHERE id = $1")
        .bind(complex.to_string())
        .bind(at.millis())
        .execute(conn)
        .await?;
    Ok(fresh)
}

fn layer_text(layer: Layer) -> &'static str {
    match layer {
        Layer::Hypervisor => "hypervisor",
        Layer::Guest => "guest",
    }
}

/// How many deviations the last check of a complex found.
pub async fn deviation_count(conn: &mut Conn, complex: ComplexId) -> Result<u64> {
    let row = sqlx::query("SELECT COUNT(*) FROM complex_deviations WHERE complex_id = $1")
        .bind(complex.to_string())
        .fetch_one(conn)
        .await?;
    Ok(row.try_get::<i64, _>(0)? as u64)
}
