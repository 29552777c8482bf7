//! The package repository's records (the files themselves are in the data directory, named by SHA-256).

use steward_types::PackageId;
use steward_types::api::packages::Package;

use crate::templates::{document, to_document};
use crate::{Conn, Result, conflict_as};

pub async fn insert(conn: &mut Conn, package: &Package) -> Result<()> {
    sqlx::query(
        "INSERT INTO packages (id, format, name, version, architecture, sha256, data, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(package.id.to_string())
    .bind(&package.format)
    .bind(&package.name)
    .bind(&package.version)
    .bind(&package.architecture)
    .bind(&package.sha256)
    .bind(to_document("package", package)?)
    .bind(package.uploaded_at.millis())
    .execute(conn)
    .await
    .map_err(conflict_as(format!(
        "{} package {} {} {}",
        package.format, package.name, package.version, package.architecture
    )))?;
    Ok(())
}

/// The package with this ID.
pub async fn get(conn: &mut Conn, id: PackageId) -> Result<Option<Package>> {
    let row = sqlx::query("SELECT data FROM packages WHERE id = $1").bind(id.to_string()).fetch_optional(conn).await?;
    row.as_ref().map(|row| document("package", row)).transpose()
}

/// Packages of this name, every format, version and architecture.
pub async fn by_name(conn: &mut Conn, name: &str) -> Result<Vec<Package>> {
    let rows = sqlx::query("SELECT data FROM packages WHERE name = $1 ORDER BY format, version, architecture")
        .bind(name)
        .fetch_all(conn)
        .await?;
    rows.iter().map(|row| document("package", row)).collect()
}

/// The package of this format, name, version and architecture, if the repository has it.
pub async fn find_same(
    conn: &mut Conn,
    format: &str,
    name: &str,
    version: &str,
    architecture: &str,
) -> Result<Option<Package>> {
    let row =
        sqlx::query("SELECT data FROM packages WHERE format = $1 AND name = $2 AND version = $3 AND architecture = $4")
            .bind(format)
            .bind(name)
            .bind(version)
            .bind(architecture)
            .fetch_optional(conn)
            .await?;
    row.as_ref().map(|row| document("package", row)).transpose()
}

pub async fn list(conn: &mut Conn) -> Result<Vec<Package>> {
    let rows =
        sqlx::query("SELECT data FROM packages ORDER BY name, format, version, architecture").fetch_all(conn).await?;
    rows.iter().map(|row| document("package", row)).collect()
}

pub async fn delete(conn: &mut Conn, id: PackageId) -> Result<()> {
    sqlx::query("DELETE FROM packages WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

/// How many packages use the file of this digest (a file is removed with the last one).
pub async fn count_by_sha256(conn: &mut Conn, sha256: &str) -> Result<i64> {
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM packages WHERE sha256 = $1").bind(sha256).fetch_one(conn).await?;
    Ok(count)
}
