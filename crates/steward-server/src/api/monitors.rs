//! Resource monitors (`/api/v1/monitors`), metric series (`/api/v1/systems/{system}/metrics`) and the server's
//! own health figures in Prometheus' text format (`/metrics`). The work is `app::monitors`.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use steward_protocol::monitor::{MAX_INTERVAL_SECONDS, MIN_INTERVAL_SECONDS, Metric};
use steward_types::api::jobs::JobTarget;
use steward_types::api::monitors::{
    AGENT_OFFLINE_METRIC, DEFAULT_MONITOR_INTERVAL_SECONDS, MetricQuery, MetricSeries, Monitor, MonitorCreate,
};
use steward_types::api::{Page, Role, Timestamp};
use steward_types::{ErrorResponse, MonitorId, validate};

use crate::api::extract::{self, Path, Query};
use crate::api::{Created, created};
use crate::app::monitors;
use crate::audit::{AuditEntry, finish};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The longest hold time (a week).
const MAX_HOLD_SECONDS: u32 = 7 * 24 * 3600;
/// The most points a series answer holds.
const MAX_POINTS: u32 = 10_000;

async fn find_monitor(conn: &mut steward_store::Conn, id_or_name: &str) -> ApiResult<Monitor> {
    steward_store::monitors::get(conn, id_or_name).await?.ok_or_else(|| ApiError::not_found("monitor", id_or_name))
}

/// Checks a new monitor; returns its target with the system's or group's canonical name.
async fn check(conn: &mut steward_store::Conn, body: &MonitorCreate) -> ApiResult<JobTarget> {
    validate::name("name", &body.name)?;
    validate::description("description", body.description.as_deref().unwrap_or_default())?;
    if body.metric != AGENT_OFFLINE_METRIC {
        Metric::parse(&body.metric).map_err(|reason| ApiError::validation("metric", reason))?;
    }
    if !body.threshold.is_finite() {
        return Err(ApiError::validation("threshold", "must be a finite number"));
    }
    if let Some(clear) = body.clear_threshold {
        if !clear.is_finite() {
            return Err(ApiError::validation("clear_threshold", "must be a finite number"));
        }
        let rising = body.comparison.rising();
        if (rising && clear > body.threshold) || (!rising && clear < body.threshold) {
            return Err(ApiError::validation(
                "clear_threshold",
                format!(
                    "{clear} would clear before the monitor raises: with {} {} it must be {} the threshold",
                    body.comparison.symbol(),
                    body.threshold,
                    if rising { "at or below" } else { "at or above" }
                ),
            ));
        }
    }
    if body.hold_seconds > MAX_HOLD_SECONDS {
        return Err(ApiError::validation("hold_seconds", format!("at most {MAX_HOLD_SECONDS} (a week)")));
    }
    if let Some(interval) = body.interval_seconds
        && !(MIN_INTERVAL_SECONDS..=MAX_INTERVAL_SECONDS).contains(&interval)
    {
        return Err(ApiError::validation(
            "interval_seconds",
            format!("must be {MIN_INTERVAL_SECONDS} to {MAX_INTERVAL_SECONDS}"),
        ));
    }
    Ok(match &body.target {
        JobTarget::System { system } => {
            let found = steward_store::systems::get(conn, system)
                .await?
                .ok_or_else(|| ApiError::validation("target.system", format!("no system is named {system:?}")))?;
            JobTarget::System { system: found.name }
        }
        JobTarget::Group { group } => {
            let found = steward_store::groups::get(conn, group)
                .await?
                .ok_or_else(|| ApiError::validation("target.group", format!("no group is named {group:?}")))?;
            JobTarget::Group { group: found.name }
        }
    })
}

#[utoipa::path(post, path = "/api/v1/monitors", tag = "monitors", request_body = MonitorCreate,
    responses((status = 201, body = Monitor), (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn monitor_create(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<MonitorCreate>,
) -> ApiResult<Created<Monitor>> {
    let entry = AuditEntry::new(&caller.user.name, "monitor.create", &body.name).details(serde_json::json!({
        "target": body.target, "metric": body.metric, "comparison": body.comparison.symbol(), "threshold": body.threshold,
    }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let target = check(&mut tx, &body).await?;
        if steward_store::monitors::get(&mut tx, &body.name).await?.is_some() {
            return Err(ApiError::conflict(format!("monitor {:?} already exists", body.name)));
        }
        let monitor = Monitor {
            id: MonitorId::new(),
            name: body.name.clone(),
            description: body.description.clone().unwrap_or_default(),
            target,
            metric: body.metric.clone(),
            comparison: body.comparison,
            threshold: body.threshold,
            clear_threshold: body.clear_threshold.unwrap_or(body.threshold),
            hold_seconds: body.hold_seconds,
            severity: body.severity,
            interval_seconds: body.interval_seconds.unwrap_or(DEFAULT_MONITOR_INTERVAL_SECONDS),
            created_by: caller.user.name.clone(),
            created_at: Timestamp::now(),
            states: Vec::new(),
        };
        steward_store::monitors::insert(&mut tx, &monitor).await?;
        Ok(monitor)
    }
    .await;
    let monitor = finish(&state, tx, entry, result).await?;
    replan(&state);
    Ok(created(monitor))
}

/// Sends every system its new plan, in the background.
fn replan(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(error) = monitors::plan_all_systems(&state).await {
            tracing::warn!(error = %crate::error_chain(&error), "cannot plan the monitors");
        }
    });
}

#[utoipa::path(get, path = "/api/v1/monitors", tag = "monitors", responses((status = 200, body = Page<Monitor>)))]
pub async fn monitor_list(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Page<Monitor>>> {
    let mut conn = state.store.conn().await?;
    Ok(Json(Page { items: steward_store::monitors::list(&mut conn).await?, next: None }))
}

#[utoipa::path(get, path = "/api/v1/monitors/{monitor}", tag = "monitors", params(("monitor" = String, Path, description = "Name or ID")),
    responses((status = 200, body = Monitor), (status = 404, body = ErrorResponse)))]
pub async fn monitor_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(monitor): Path<String>,
) -> ApiResult<Json<Monitor>> {
    let mut conn = state.store.conn().await?;
    let mut found = find_monitor(&mut conn, &monitor).await?;
    // What the evaluator holds now; the stored states (kept for restarts) fill in systems not heard from since.
    let mut states = steward_store::monitors::states(&mut conn, found.id).await?;
    for (system, tracked, last) in state.monitors.states_of(found.id) {
        let name = match states.iter().find(|known| known.system_id == system) {
            Some(known) => known.system.clone(),
            None => match steward_store::systems::get(&mut conn, &system.to_string()).await? {
                Some(summary) => summary.name,
                None => continue,
            },
        };
        states.retain(|known| known.system_id != system);
        states.push(steward_types::api::monitors::MonitorState {
            system: name,
            system_id: system,
            state: tracked.state,
            since: Timestamp(tracked.since),
            last_value: last.map(|(value, _)| value),
            last_sample_at: last.map(|(_, at)| Timestamp(at)),
        });
    }
    states.sort_by(|first, second| first.system.cmp(&second.system));
    found.states = states;
    Ok(Json(found))
}

#[utoipa::path(delete, path = "/api/v1/monitors/{monitor}", tag = "monitors", params(("monitor" = String, Path, description = "Name or ID")),
    responses((status = 204), (status = 404, body = ErrorResponse)))]
pub async fn monitor_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(monitor): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "monitor.delete", &monitor);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let found = find_monitor(&mut tx, &monitor).await?;
        steward_store::monitors::delete(&mut tx, found.id).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    let status = finish(&state, tx, entry, result).await?;
    replan(&state);
    Ok(status)
}

/// `30s`, `15m`, `6h`, `7d`, or an RFC 3339 time, as milliseconds since the epoch.
fn since_millis(text: &str, now: i64) -> ApiResult<i64> {
    if let Some(at) = Timestamp::parse_rfc3339(text) {
        return Ok(at.millis());
    }
    let (number, unit) = text.split_at(text.find(|character: char| !character.is_ascii_digit()).unwrap_or(text.len()));
    let amount: i64 = number
        .parse()
        .map_err(|_| ApiError::validation("since", format!("{text:?} is not 30s, 15m, 6h, 7d or an RFC 3339 time")))?;
    let unit_millis = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(ApiError::validation("since", format!("{text:?}: the unit must be s, m, h or d"))),
    };
    Ok(now - amount.saturating_mul(unit_millis))
}

#[utoipa::path(get, path = "/api/v1/systems/{system}/metrics", tag = "monitors",
    params(("system" = String, Path, description = "Name or ID"), MetricQuery),
    responses((status = 200, body = MetricSeries), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn system_metrics(
    State(state): State<AppState>,
    _caller: Caller,
    Path(system): Path<String>,
    Query(query): Query<MetricQuery>,
) -> ApiResult<Json<MetricSeries>> {
    let metric = Metric::parse(&query.metric).map_err(|reason| ApiError::validation("metric", reason))?;
    let now = Timestamp::now().millis();
    let since = since_millis(query.since.as_deref().unwrap_or("1h"), now)?;
    let mut conn = state.store.conn().await?;
    let found =
        steward_store::systems::get(&mut conn, &system).await?.ok_or_else(|| ApiError::not_found("system", &system))?;
    // Older than the raw retention: buckets, then the raw samples that are left.
    let raw_from = steward_store::monitors::samples(&mut conn, found.id, &query.metric, since, 1)
        .await?
        .first()
        .map(|point| point.at.millis())
        .unwrap_or(now);
    let mut points = if raw_from > since {
        steward_store::monitors::buckets(&mut conn, found.id, &query.metric, since, raw_from, MAX_POINTS).await?
    } else {
        Vec::new()
    };
    let room = MAX_POINTS.saturating_sub(points.len() as u32);
    points
        .extend(steward_store::monitors::samples(&mut conn, found.id, &query.metric, since.max(raw_from), room).await?);
    Ok(Json(MetricSeries { system: found.name, metric: metric.key(), unit: metric.unit().to_owned(), points }))
}

/// The server's own health figures for Prometheus (no authentication: counts only, nothing about systems).
pub async fn prometheus(
    State(state): State<AppState>,
) -> ApiResult<([(axum::http::HeaderName, &'static str); 1], String)> {
    let mut conn = state.store.conn().await?;
    let counts = steward_store::health_counts(&mut conn).await?;
    drop(conn);
    let (planned, raised) = state.monitors.gauges();
    let mut text = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    };
    metric(
        "steward_agents_connected",
        "gauge",
        "Agents connected now.",
        state.agents.connected_systems().len().to_string(),
    );
    for (name, help, value) in &counts {
        metric(name, "gauge", help, value.to_string());
    }
    metric(
        "steward_samples_ingested_total",
        "counter",
        "Metric samples stored since the server started.",
        state.monitors.samples_ingested.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "steward_samples_unreadable_total",
        "counter",
        "Samples an agent could not read (no value) since the server started.",
        state.monitors.samples_failed.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "steward_monitor_events_total",
        "counter",
        "Monitor events (raised and cleared) since the server started.",
        state.monitors.events_raised.load(Ordering::Relaxed).to_string(),
    );
    metric("steward_monitored_systems", "gauge", "Systems with a monitor plan.", planned.to_string());
    metric("steward_monitors_raised", "gauge", "Monitor states raised now.", raised.to_string());
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
