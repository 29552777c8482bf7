//! Steward's persistence: the SQLite store (WAL, embedded, no setup), its migrations, and one module per resource.
//!
//! Every function takes a `&mut Conn`, so callers decide the transaction: an API handler opens one with
//! [`Store::begin`], makes its change and writes the audit record through the same connection, then commits.
//!
//! **Architecture invariant:** no business rules here. The store checks only what the schema guarantees
//! (uniqueness, references) and maps rows to the types of `steward-types`.
//!
//! The SQL is kept portable (`$1` placeholders, no SQLite-only functions in queries) so that a PostgreSQL
//! backend needs its own migrations and pool type, not new queries.

pub mod audit;
pub mod complexes;
pub mod enrollment;
pub mod event_actions;
pub mod events;
pub mod groups;
pub mod hosts;
pub mod jobs;
pub mod monitors;
pub mod operations;
pub mod packages;
pub mod systems;
pub mod templates;
pub mod users;
pub mod virtual_servers;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The database the store runs on.
pub type Db = sqlx::Sqlite;
/// A connection or a transaction (`&mut *tx`) of that database.
pub type Conn = sqlx::SqliteConnection;
/// A write transaction. Writers queue for a permit inside the process before they take a pooled connection,
/// so a crowd of waiting writers never starves reads (and the agent gateway) of connections.
pub struct Transaction {
    inner: sqlx::Transaction<'static, Db>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Transaction {
    pub async fn commit(self) -> Result<()> {
        Ok(self.inner.commit().await?)
    }
}

impl std::ops::Deref for Transaction {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.inner
    }
}

impl std::ops::DerefMut for Transaction {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.inner
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} already exists")]
    Conflict { what: String },
    #[error("stored {what} is unreadable")]
    Corrupt {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("database migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("the store is closed")]
    Closed,
    #[error("unsupported database URL {0:?}: this build supports sqlite: URLs")]
    UnsupportedUrl(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps a unique-constraint violation to `Conflict { what }`, any other error to `Database`.
pub(crate) fn conflict_as(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StoreError {
    let what = what.into();
    move |error| match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => StoreError::Conflict { what },
        _ => StoreError::Database(error),
    }
}

/// A plain error for a stored value the schema should have prevented.
pub(crate) fn unexpected_value(value: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected value {value:?}"))
}

pub(crate) fn corrupt(what: &str, source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Corrupt { what: what.to_string(), source: Box::new(source) }
}

/// The connection pool and the entry point for transactions.
#[derive(Clone, Debug)]
pub struct Store {
    pool: sqlx::Pool<Db>,
    writers: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and runs the migrations.
    pub async fn open_file(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new().filename(path).create_if_missing(true);
        Self::open_with(options).await
    }

    /// Opens a database by URL (`sqlite:///path/to/file.db`).
    pub async fn open_url(url: &str) -> Result<Self> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        }
        let options = SqliteConnectOptions::from_str(url)?.create_if_missing(true);
        Self::open_with(options).await
    }

    async fn open_with(options: SqliteConnectOptions) -> Result<Self> {
        // WAL with synchronous=NORMAL: a committed transaction survives a crash of the process (kill -9); a power
        // loss may take the last transactions back, never leave the database inconsistent. FULL would fsync on
        // every commit and cap writes at the disk's sync rate.
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool, writers: std::sync::Arc::new(tokio::sync::Semaphore::new(1)) })
    }

    /// Starts a write transaction. It takes SQLite's write lock at once (`BEGIN IMMEDIATE`), so concurrent
    /// writers queue on the busy timeout instead of failing when a read would have to upgrade to a write.
    pub async fn begin(&self) -> Result<Transaction> {
        let permit = self.writers.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
        Ok(Transaction { inner: self.pool.begin_with("BEGIN IMMEDIATE").await?, _permit: permit })
    }

    /// A pooled connection for reads that need no transaction.
    pub async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Db>> {
        Ok(self.pool.acquire().await?)
    }

    /// Checks that the database answers (for `/api/v1/health`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Runs SQLite's own consistency check; `Ok(())` when it reports `ok`.
    pub async fn integrity_check(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(line,)| line).filter(|line| line != "ok").collect())
    }

    pub async fn close(&self) {
        self.writers.close();
        self.pool.close().await;
    }
}

/// Clamps a requested page size to the API's limits.
pub fn page_limit(limit: Option<u32>) -> u32 {
    limit.unwrap_or(steward_types::api::DEFAULT_PAGE_LIMIT).clamp(1, steward_types::api::MAX_PAGE_LIMIT)
}

/// The `next` cursor of a page: the key of its last item when the page is full.
pub(crate) fn next_cursor<T>(items: &[T], limit: u32, key: impl Fn(&T) -> String) -> Option<String> {
    if items.len() as u32 >= limit { items.last().map(key) } else { None }
}

/// Row counts for the server's `/metrics`: (metric name, help text, value).
pub async fn health_counts(conn: &mut Conn) -> Result<Vec<(&'static str, &'static str, i64)>> {
    let queries = [
        (
            "steward_systems_online",
            "Systems whose agent is connected.",
            "SELECT COUNT(*) FROM systems WHERE online = 1",
        ),
        (
            "steward_systems_offline",
            "Systems whose agent is not connected.",
            "SELECT COUNT(*) FROM systems WHERE online = 0",
        ),
        (
            "steward_operations_running",
            "Operations running or undoing themselves.",
            "SELECT COUNT(*) FROM operations WHERE state IN ('running', 'unwinding')",
        ),
        ("steward_events", "Events recorded.", "SELECT COUNT(*) FROM events"),
        ("steward_monitors", "Monitors defined.", "SELECT COUNT(*) FROM monitors"),
        ("steward_jobs", "Jobs defined.", "SELECT COUNT(*) FROM jobs"),
        ("steward_job_runs_running", "Job runs in progress.", "SELECT COUNT(*) FROM job_runs WHERE state = 'running'"),
        (
            "steward_deliveries_pending",
            "Event action deliveries waiting for their next attempt.",
            "SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'retrying')",
        ),
    ];
    let mut counts = Vec::with_capacity(queries.len());
    for (name, help, query) in queries {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(query)).fetch_one(&mut *conn).await?;
        counts.push((name, help, count));
    }
    Ok(counts)
}
