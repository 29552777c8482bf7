//! Users and their API tokens. Token secrets are never stored: only their SHA-256 (the secrets are 256-bit
//! random values, so a fast hash is as strong as a slow one) and a short prefix to recognize them by.

use sqlx::Row;
use steward_types::api::users::{Token, User};
use steward_types::api::{Role, Timestamp};
use steward_types::{TokenId, UserId};

use crate::{Conn, Result, conflict_as, corrupt, next_cursor, unexpected_value};

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<User> {
    let role: String = row.try_get("role")?;
    let id: String = row.try_get("id")?;
    Ok(User {
        id: UserId::parse(&id).ok_or_else(|| corrupt("user id", unexpected_value(&id)))?,
        name: row.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("user role", unexpected_value(&role)))?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

pub async fn user_insert(conn: &mut Conn, user: &User) -> Result<()> {
    sqlx::query("INSERT INTO users (id, name, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind(user.id.to_string())
        .bind(&user.name)
        .bind(user.role.as_str())
        .bind(user.created_at.millis())
        .execute(conn)
        .await
        .map_err(conflict_as(format!("user {:?}", user.name)))?;
    Ok(())
}

/// Finds a user by ID or by name.
pub async fn user_get(conn: &mut Conn, id_or_name: &str) -> Result<Option<User>> {
    let row = sqlx::query("SELECT id, name, role, created_at FROM users WHERE id = $1 OR name = $1")
        .bind(id_or_name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

pub async fn user_list(conn: &mut Conn, after: Option<&str>, limit: u32) -> Result<(Vec<User>, Option<String>)> {
    let rows = sqlx::query("SELECT id, name, role, created_at FROM users WHERE name > $1 ORDER BY name LIMIT $2")
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(conn)
        .await?;
    let users = rows.iter().map(user_from_row).collect::<Result<Vec<_>>>()?;
    let next = next_cursor(&users, limit, |user| user.name.clone());
    Ok((users, next))
}

pub async fn user_set_role(conn: &mut Conn, id: UserId, role: Role) -> Result<()> {
    sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
        .bind(id.to_string())
        .bind(role.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn user_delete(conn: &mut Conn, id: UserId) -> Result<()> {
    sqlx::query("DELETE FROM users WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

pub async fn administrator_count(conn: &mut Conn) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'administrator'").fetch_one(conn).await?)
}

/// The caller behind a token: the user, the token, and whether it has expired.
#[derive(Debug, Clone)]
pub struct TokenOwner {
    pub user: User,
    pub token_id: TokenId,
    pub token_name: String,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

pub async fn token_owner_by_hash(conn: &mut Conn, secret_hash: &str) -> Result<Option<TokenOwner>> {
    let row = sqlx::query(
        "SELECT u.id, u.name, u.role, u.created_at, t.id AS token_id, t.name AS token_name, t.expires_at,
                t.last_used_at
         FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.secret_hash = $1",
    )
    .bind(secret_hash)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let token_id: String = row.try_get("token_id")?;
    Ok(Some(TokenOwner {
        user: user_from_row(&row)?,
        token_id: TokenId::parse(&token_id).ok_or_else(|| corrupt("token id", unexpected_value(&token_id)))?,
        token_name: row.try_get("token_name")?,
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(Timestamp),
        last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(Timestamp),
    }))
}

/// Records that a token was used. Callers call it only when the stored time is older than
/// [`TOKEN_TOUCH_INTERVAL_MS`], so a busy token costs one write a minute, not one per request.
pub const TOKEN_TOUCH_INTERVAL_MS: i64 = 60_000;

pub async fn token_touch(conn: &mut Conn, id: TokenId, at: Timestamp) -> Result<()> {
    sqlx::query(
        "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
    )
    .bind(id.to_string())
    .bind(at.millis())
    .bind(at.millis() - TOKEN_TOUCH_INTERVAL_MS)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn token_insert(conn: &mut Conn, token: &Token, user_id: UserId, secret_hash: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, name, secret_hash, prefix, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token.id.to_string())
    .bind(user_id.to_string())
    .bind(&token.name)
    .bind(secret_hash)
    .bind(&token.prefix)
    .bind(token.created_at.millis())
    .bind(token.expires_at.map(Timestamp::millis))
    .execute(conn)
    .await
    .map_err(conflict_as(format!("token {:?} of user {:?}", token.name, token.user)))?;
    Ok(())
}

fn token_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Token> {
    let id: String = row.try_get("id")?;
    Ok(Token {
        id: TokenId::parse(&id).ok_or_else(|| corrupt("token id", unexpected_value(&id)))?,
        name: row.try_get("name")?,
        user: row.try_get("user_name")?,
        prefix: row.try_get("prefix")?,
        created_at: Timestamp(row.try_get("created_at")?),
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(Timestamp),
        last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(Timestamp),
    })
}

const TOKEN_COLUMNS: &str =
    "t.id, t.name, u.name AS user_name, t.prefix, t.created_at, t.expires_at, t.last_used_at, u.id AS user_id";

/// Lists tokens, of one user or (with `None`) of everybody, ordered by ID.
pub async fn token_list(
    conn: &mut Conn,
    user: Option<UserId>,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<Token>, Option<String>)> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE ($1 IS NULL OR t.user_id = $1) AND t.id > $2 ORDER BY t.id LIMIT $3"
    )))
    .bind(user.map(|id| id.to_string()))
    .bind(after.unwrap_or(""))
    .bind(limit as i64)
    .fetch_all(conn)
    .await?;
    let tokens = rows.iter().map(token_from_row).collect::<Result<Vec<_>>>()?;
    let next = next_cursor(&tokens, limit, |token| token.id.to_string());
    Ok((tokens, next))
}

/// Finds a token by ID, with the ID of its user.
pub async fn token_get(conn: &mut Conn, id: TokenId) -> Result<Option<(Token, UserId)>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let user_id: String = row.try_get("user_id")?;
    let user_id = UserId::parse(&user_id).ok_or_else(|| corrupt("user id", unexpected_value(&user_id)))?;
    Ok(Some((token_from_row(&row)?, user_id)))
}

pub async fn token_delete(conn: &mut Conn, id: TokenId) -> Result<()> {
    sqlx::query("DELETE FROM api_tokens WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

pub async fn user_count(conn: &mut Conn) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(conn).await?)
}
