//! Enrollment tokens: N-use, expiring secrets agents present once to get a certificate.

use sqlx::Row;
use steward_types::EnrollmentTokenId;
use steward_types::api::Timestamp;
use steward_types::api::enrollment::EnrollmentToken;

use crate::{Conn, Result, corrupt, next_cursor, unexpected_value};

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<EnrollmentToken> {
    let id: String = row.try_get("id")?;
    Ok(EnrollmentToken {
        id: EnrollmentTokenId::parse(&id).ok_or_else(|| corrupt("enrollment token id", unexpected_value(&id)))?,
        prefix: row.try_get("prefix")?,
        description: row.try_get("description")?,
        uses: row.try_get::<i64, _>("uses")? as u32,
        used: row.try_get::<i64, _>("used")? as u32,
        created_by: row.try_get("created_by")?,
        created_at: Timestamp(row.try_get("created_at")?),
        expires_at: Timestamp(row.try_get("expires_at")?),
    })
}

const COLUMNS: &str =
    "SELECT id, prefix, description, uses, used, created_by, created_at, expires_at FROM enrollment_tokens";

pub async fn insert(conn: &mut Conn, token: &EnrollmentToken, secret_hash: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO enrollment_tokens (id, secret_hash, prefix, description, uses, used, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8)",
    )
    .bind(token.id.to_string())
    .bind(secret_hash)
    .bind(&token.prefix)
    .bind(&token.description)
    .bind(token.uses as i64)
    .bind(&token.created_by)
    .bind(token.created_at.millis())
    .bind(token.expires_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn list(conn: &mut Conn, after: Option<&str>, limit: u32) -> Result<(Vec<EnrollmentToken>, Option<String>)> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE id > $1 ORDER BY id LIMIT $2")))
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(conn)
        .await?;
    let tokens = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    let next = next_cursor(&tokens, limit, |token| token.id.to_string());
    Ok((tokens, next))
}

pub async fn get(conn: &mut Conn, id: EnrollmentTokenId) -> Result<Option<EnrollmentToken>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE id = $1")))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn get_by_hash(conn: &mut Conn, secret_hash: &str) -> Result<Option<EnrollmentToken>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE secret_hash = $1")))
        .bind(secret_hash)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Takes one use of the token if it has one left and has not expired; false otherwise. Atomic, so two agents
/// racing for the last use cannot both win.
pub async fn consume(conn: &mut Conn, id: EnrollmentTokenId, now: Timestamp) -> Result<bool> {
    let result =
        sqlx::query("UPDATE enrollment_tokens SET used = used + 1 WHERE id = $1 AND used < uses AND expires_at > $2")
            .bind(id.to_string())
            .bind(now.millis())
            .execute(conn)
            .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn delete(conn: &mut Conn, id: EnrollmentTokenId) -> Result<()> {
    sqlx::query("DELETE FROM enrollment_tokens WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}
