//! Resource monitors, their state per system, and metric samples (raw, then in 5-minute buckets).

use sqlx::Row;
use steward_types::api::Timestamp;
use steward_types::api::monitors::{AlertState, MetricPoint, Monitor, MonitorState};
use steward_types::{MonitorId, SystemId};

use crate::templates::{document, to_document};
use crate::{Conn, Result, conflict_as, corrupt, unexpected_value};

/// The width of a downsampled bucket.
pub const BUCKET_MILLIS: i64 = 5 * 60 * 1000;

pub async fn insert(conn: &mut Conn, monitor: &Monitor) -> Result<()> {
    sqlx::query("INSERT INTO monitors (id, name, data, created_at) VALUES ($1, $2, $3, $4)")
        .bind(monitor.id.to_string())
        .bind(&monitor.name)
        .bind(to_document("monitor", monitor)?)
        .bind(monitor.created_at.millis())
        .execute(conn)
        .await
        .map_err(conflict_as(format!("monitor {:?}", monitor.name)))?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id_or_name: &str) -> Result<Option<Monitor>> {
    let row = sqlx::query("SELECT data FROM monitors WHERE id = $1 OR name = $1")
        .bind(id_or_name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(|row| document("monitor", row)).transpose()
}

pub async fn list(conn: &mut Conn) -> Result<Vec<Monitor>> {
    let rows = sqlx::query("SELECT data FROM monitors ORDER BY name").fetch_all(conn).await?;
    rows.iter().map(|row| document("monitor", row)).collect()
}

pub async fn delete(conn: &mut Conn, id: MonitorId) -> Result<()> {
    sqlx::query("DELETE FROM monitors WHERE id = $1").bind(id.to_string()).execute(conn).await?;
    Ok(())
}

pub async fn states(conn: &mut Conn, monitor: MonitorId) -> Result<Vec<MonitorState>> {
    let rows = sqlx::query(
        "SELECT m.system_id, s.name, m.state, m.since, m.last_value, m.last_sample_at FROM monitor_states m
         JOIN systems s ON s.id = m.system_id WHERE m.monitor_id = $1 ORDER BY s.name",
    )
    .bind(monitor.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let system: String = row.try_get("system_id")?;
            let state: String = row.try_get("state")?;
            Ok(MonitorState {
                system: row.try_get("name")?,
                system_id: SystemId::parse(&system).ok_or_else(|| corrupt("system id", unexpected_value(&system)))?,
                state: AlertState::parse(&state).ok_or_else(|| corrupt("monitor state", unexpected_value(&state)))?,
                since: Timestamp(row.try_get("since")?),
                last_value: row.try_get("last_value")?,
                last_sample_at: row.try_get::<Option<i64>, _>("last_sample_at")?.map(Timestamp),
            })
        })
        .collect()
}

/// Every stored state, for the evaluator to start from after a restart.
pub async fn all_states(conn: &mut Conn) -> Result<Vec<(MonitorId, SystemId, AlertState, Timestamp)>> {
    let rows = sqlx::query("SELECT monitor_id, system_id, state, since FROM monitor_states").fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            let monitor: String = row.try_get("monitor_id")?;
            let system: String = row.try_get("system_id")?;
            let state: String = row.try_get("state")?;
            Ok((
                MonitorId::parse(&monitor).ok_or_else(|| corrupt("monitor id", unexpected_value(&monitor)))?,
                SystemId::parse(&system).ok_or_else(|| corrupt("system id", unexpected_value(&system)))?,
                AlertState::parse(&state).ok_or_else(|| corrupt("monitor state", unexpected_value(&state)))?,
                Timestamp(row.try_get("since")?),
            ))
        })
        .collect()
}

pub async fn state_set(
    conn: &mut Conn,
    monitor: MonitorId,
    system: SystemId,
    state: AlertState,
    since: Timestamp,
    last_value: Option<f64>,
    last_sample_at: Option<Timestamp>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO monitor_states (monitor_id, system_id, state, since, last_value, last_sample_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (monitor_id, system_id) DO UPDATE SET state = $3, since = $4, last_value = $5, last_sample_at = $6",
    )
    .bind(monitor.to_string())
    .bind(system.to_string())
    .bind(state.as_str())
    .bind(since.millis())
    .bind(last_value)
    .bind(last_sample_at.map(|at| at.millis()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends samples: (system, metric, at in ms, value). Rows go in multi-row statements of up to 200 rows.
pub async fn samples_insert(conn: &mut Conn, samples: &[(SystemId, String, i64, f64)]) -> Result<()> {
    for chunk in samples.chunks(200) {
        let mut builder =
            sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO samples (system_id, metric, at, value) ");
        builder.push_values(chunk, |mut row, (system, metric, at, value)| {
            row.push_bind(system.to_string()).push_bind(metric).push_bind(*at).push_bind(*value);
        });
        builder.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Raw samples of a series since `since`, oldest first (at most `limit`).
pub async fn samples(
    conn: &mut Conn,
    system: SystemId,
    metric: &str,
    since: i64,
    limit: u32,
) -> Result<Vec<MetricPoint>> {
    let rows = sqlx::query(
        "SELECT at, value FROM samples WHERE system_id = $1 AND metric = $2 AND at >= $3 ORDER BY at LIMIT $4",
    )
    .bind(system.to_string())
    .bind(metric)
    .bind(since)
    .bind(limit as i64)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(MetricPoint {
                at: Timestamp(row.try_get("at")?),
                value: row.try_get("value")?,
                min: None,
                max: None,
                count: None,
            })
        })
        .collect()
}

/// 5-minute buckets of a series from `since` until `until` (exclusive), oldest first.
pub async fn buckets(
    conn: &mut Conn,
    system: SystemId,
    metric: &str,
    since: i64,
    until: i64,
    limit: u32,
) -> Result<Vec<MetricPoint>> {
    let rows = sqlx::query(
        "SELECT bucket, min, max, sum, count FROM samples_5m
         WHERE system_id = $1 AND metric = $2 AND bucket >= $3 AND bucket < $4 ORDER BY bucket LIMIT $5",
    )
    .bind(system.to_string())
    .bind(metric)
    .bind(since - since.rem_euclid(BUCKET_MILLIS))
    .bind(until)
    .bind(limit as i64)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let count: i64 = row.try_get("count")?;
            let sum: f64 = row.try_get("sum")?;
            Ok(MetricPoint {
                at: Timestamp(row.try_get("bucket")?),
                value: if count > 0 { sum / count as f64 } else { 0.0 },
                min: Some(row.try_get("min")?),
                max: Some(row.try_get("max")?),
                count: Some(count as u32),
            })
        })
        .collect()
}

/// Folds raw samples older than `before` (a bucket boundary) that are not folded yet into their 5-minute buckets,
/// deletes raw samples older than `raw_until` and buckets older than `buckets_until`. Returns the rows folded.
pub async fn downsample(
    conn: &mut Conn,
    folded_until: i64,
    before: i64,
    raw_until: i64,
    buckets_until: i64,
) -> Result<u64> {
    let folded = sqlx::query(
        "INSERT INTO samples_5m (system_id, metric, bucket, min, max, sum, count)
         SELECT system_id, metric, at - (at % $3), MIN(value), MAX(value), SUM(value), COUNT(*) FROM samples
         WHERE at >= $1 AND at < $2 GROUP BY system_id, metric, at - (at % $3)
         ON CONFLICT (system_id, metric, bucket) DO UPDATE SET min = MIN(min, excluded.min),
           max = MAX(max, excluded.max), sum = sum + excluded.sum, count = count + excluded.count",
    )
    .bind(folded_until)
    .bind(before)
    .bind(BUCKET_MILLIS)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM samples WHERE at < $1").bind(raw_until).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM samples_5m WHERE bucket < $1").bind(buckets_until).execute(&mut *conn).await?;
    Ok(folded)
}

/// The bucket boundary up to which raw samples were folded: the newest bucket present, plus one bucket.
pub async fn folded_until(conn: &mut Conn) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT MAX(bucket) AS newest FROM samples_5m").fetch_one(conn).await?;
    Ok(row.try_get::<Option<i64>, _>("newest")?.map(|bucket| bucket + BUCKET_MILLIS))
}
