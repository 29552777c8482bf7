//! Resource monitors: what each agent samples, samples stored and downsampled, and thresholds evaluated on
//! arrival.
//!
//! - **Plans.** A system's plan is every metric a monitor on it or on one of its groups needs, at the shortest
//!   interval asked for. It is pushed to the agent (`AgentRequest::ConfigureMonitors`) after every Welcome, at
//!   once when a monitor is created or deleted, and by a reconcile pass every minute when a system's plan changed
//!   (its group memberships moved); the server keeps each system's plan to evaluate samples against.
//! - **Ingest.** Agents' `Samples` go into a bounded queue; one writer takes what is queued (up to 10,000
//!   samples, or what arrived within 50 ms), appends it in one transaction, and evaluates each sample against the
//!   system's plan (`evaluate.rs`) in the same pass, so a threshold crossed is an event within milliseconds of
//!   the sample's arrival (`monitor.raised`, `monitor.cleared`, with the monitor's severity).
//! - **agent.offline** is evaluated on the server every 5 seconds from the agent registry; every minute each
//!   hypervisor host is probed, and one that stops answering raises `host.unreachable`.
//! - **Retention.** Every 5 minutes complete 5-minute buckets are folded into `samples_5m` (min, max, sum,
//!   count); raw samples are kept a day, buckets 30 days.

pub mod evaluate;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use steward_protocol::AgentRequest;
use steward_protocol::monitor::{MonitorPlan, PlannedMetric, Sample};
use steward_types::api::Timestamp;
use steward_types::api::events::{Event, Severity};
use steward_types::api::jobs::JobTarget;
use steward_types::api::monitors::{AGENT_OFFLINE_METRIC, AlertState, Monitor};
use steward_types::{EventId, MonitorId, SystemId};
use tokio::sync::mpsc;

use crate::state::AppState;
use evaluate::{Condition, Tracked, Transition};

/// Samples queued between the agents' connections and the writer.
const INGEST_QUEUE: usize = 4096;
const INGEST_BATCH: usize = 10_000;
const INGEST_WAIT: Duration = Duration::from_millis(50);
const RECONCILE_EVERY: Duration = Duration::from_secs(60);
const OFFLINE_EVERY: Duration = Duration::from_secs(5);
const RETENTION_EVERY: Duration = Duration::from_secs(300);
const RAW_RETENTION: i64 = 24 * 3600 * 1000;
const BUCKET_RETENTION: i64 = 30 * 24 * 3600 * 1000;
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// One monitor as a system's plan evaluates it.
#[derive(Debug, Clone)]
struct Watch {
    monitor: MonitorId,
    name: String,
    severity: Severity,
    condition: Condition,
}

/// What a system samples and which monitors each metric feeds.
#[derive(Debug, Clone, Default, PartialEq)]
struct SystemPlan {
    metrics: BTreeMap<String, u32>,
    watches: BTreeMap<String, Vec<(MonitorId, String, Severity, ConditionKey)>>,
}

/// `Condition` with its floats as bits, so plans compare exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConditionKey {
    comparison: steward_types::api::monitors::Comparison,
    threshold: u64,
    clear: u64,
    hold_millis: i64,
}

impl ConditionKey {
    fn of(monitor: &Monitor) -> Self {
        ConditionKey {
            comparison: monitor.comparison,
            threshold: monitor.threshold.to_bits(),
            clear: monitor.clear_threshold.to_bits(),
            hold_millis: i64::from(monitor.hold_seconds) * 1000,
        }
    }

    fn condition(self) -> Condition {
        Condition {
            comparison: self.comparison,
            threshold: f64::from_bits(self.threshold),
            clear_threshold: f64::from_bits(self.clear),
            hold_millis: self.hold_millis,
        }
    }
}

/// A value and when it was sampled (ms).
pub type LastValue = (f64, i64);

struct Batch {
    system: SystemId,
    at: i64,
    samples: Vec<Sample>,
}

/// The monitoring state the server shares: the ingest queue, each system's plan, each monitor's state per system,
/// and counters for `/metrics`.
pub struct Monitors {
    queue: mpsc::Sender<Batch>,
    receiver: Mutex<Option<mpsc::Receiver<Batch>>>,
    plans: Mutex<HashMap<SystemId, SystemPlan>>,
    states: Mutex<HashMap<(MonitorId, SystemId), Tracked>>,
    /// The last value each monitor saw on each system, and when (ms).
    last: Mutex<HashMap<(MonitorId, SystemId), LastValue>>,
    pub samples_ingested: AtomicU64,
    pub samples_failed: AtomicU64,
    pub events_raised: AtomicU64,
}

impl Default for Monitors {
    fn default() -> Self {
        let (queue, receiver) = mpsc::channel(INGEST_QUEUE);
        Monitors {
            queue,
            receiver: Mutex::new(Some(receiver)),
            plans: Mutex::new(HashMap::new()),
            states: Mutex::new(HashMap::new()),
            last: Mutex::new(HashMap::new()),
            samples_ingested: AtomicU64::new(0),
            samples_failed: AtomicU64::new(0),
            events_raised: AtomicU64::new(0),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Monitors {
    /// Queues an agent's samples; waits while the writer is behind (the agent's connection slows down, nothing
    /// is dropped).
    pub async fn submit(&self, system: SystemId, at: i64, samples: Vec<Sample>) {
        if self.queue.send(Batch { system, at, samples }).await.is_err() {
            tracing::warn!(%system, "the sample writer is gone; samples dropped");
        }
    }

    /// A monitor's state on every system it has seen a value from since the server started (or that was pending
    /// or raised before): (system, state, since, last value and when).
    pub fn states_of(&self, monitor: MonitorId) -> Vec<(SystemId, Tracked, Option<LastValue>)> {
        let states = lock(&self.states);
        let last = lock(&self.last);
        states
            .iter()
            .filter(|((id, _), _)| *id == monitor)
            .map(|((_, system), tracked)| (*system, *tracked, last.get(&(monitor, *system)).copied()))
            .collect()
    }

    /// Systems with a plan and monitors raised now, for `/metrics`.
    pub fn gauges(&self) -> (usize, usize) {
        let raised = lock(&self.states).values().filter(|tracked| tracked.state == AlertState::Raised).count();
        (lock(&self.plans).len(), raised)
    }
}

/// Whether a monitor watches a system: the system itself, or a group it is a member of.
fn watches(monitor: &Monitor, system_name: &str, groups: &[String]) -> bool {
    match &monitor.target {
        JobTarget::System { system } => system == system_name,
        JobTarget::Group { group } => groups.contains(group),
    }
}

async fn plan_for(
    state: &AppState,
    system: SystemId,
    monitors: &[Monitor],
) -> steward_store::Result<(SystemPlan, MonitorPlan)> {
    let mut plan = SystemPlan::default();
    if !monitors.is_empty() {
        let mut conn = state.store.conn().await?;
        let Some(summary) = steward_store::systems::get(&mut conn, &system.to_string()).await? else {
            return Ok((SystemPlan::default(), MonitorPlan::default()));
        };
        let groups = steward_store::groups::groups_of(&mut conn, system).await?;
        for monitor in monitors.iter().filter(|monitor| watches(monitor, &summary.name, &groups)) {
            if monitor.metric != AGENT_OFFLINE_METRIC {
                let interval = plan.metrics.entry(monitor.metric.clone()).or_insert(monitor.interval_seconds);
                *interval = (*interval).min(monitor.interval_seconds);
            }
            plan.watches.entry(monitor.metric.clone()).or_default().push((
                monitor.id,
                monitor.name.clone(),
                monitor.severity,
                ConditionKey::of(monitor),
            ));
        }
    }
    let wire = MonitorPlan {
        metrics: plan
            .metrics
            .iter()
            .map(|(metric, interval)| PlannedMetric { metric: metric.clone(), interval_seconds: *interval })
            .collect(),
    };
    Ok((plan, wire))
}

async fn all_monitors(state: &AppState) -> steward_store::Result<Vec<Monitor>> {
    let mut conn = state.store.conn().await?;
    steward_store::monitors::list(&mut conn).await
}

/// Computes the system's plan and, when it changed (or `always`), sends it to its agent.
pub async fn push_plan(state: &AppState, system: SystemId, always: bool) {
    match all_monitors(state).await {
        Ok(monitors) => push_plan_with(state, system, always, &monitors).await,
        Err(error) => tracing::warn!(%system, error = %crate::error_chain(&error), "cannot read the monitors"),
    }
}

async fn push_plan_with(state: &AppState, system: SystemId, always: bool, monitors: &[Monitor]) {
    let (plan, wire) = match plan_for(state, system, monitors).await {
        Ok(planned) => planned,
        Err(error) => {
            tracing::warn!(%system, error = %crate::error_chain(&error), "cannot compute the monitor plan");
            return;
        }
    };
    let changed = lock(&state.monitors.plans).get(&system).cloned().unwrap_or_default() != plan;
    if !changed && !always {
        return;
    }
    if plan.watches.is_empty() {
        lock(&state.monitors.plans).remove(&system);
    } else {
        lock(&state.monitors.plans).insert(system, plan);
    }
    if !state.agents.is_connected(system) {
        return;
    }
    let metrics = wire.metrics.len();
    match state.agents.request(system, AgentRequest::ConfigureMonitors(wire), PUSH_TIMEOUT).await {
        Ok(_) => tracing::debug!(%system, metrics, "monitor plan sent"),
        Err(error) => tracing::info!(%system, %error, "the agent did not take its monitor plan"),
    }
}

/// Pushes plans to every connected system whose plan changed (or all of them, `always`).
pub async fn push_all(state: &AppState, always: bool) {
    let monitors = match all_monitors(state).await {
        Ok(monitors) => monitors,
        Err(error) => return tracing::warn!(error = %crate::error_chain(&error), "cannot read the monitors"),
    };
    for system in state.agents.connected_systems() {
        push_plan_with(state, system, always, &monitors).await;
    }
}

/// Starts the writer, the reconcile pass, the agent.offline evaluation and retention.
pub fn spawn(state: AppState) {
    let receiver = lock(&state.monitors.receiver).take();
    let Some(receiver) = receiver else { return };
    let writer_state = state.clone();
    tokio::spawn(async move {
        if let Err(error) = restore_states(&writer_state).await {
            tracing::error!(error = %crate::error_chain(&error), "cannot load the monitors' states");
        }
        write_samples(writer_state, receiver).await;
    });
    let loop_state = state.clone();
    tokio::spawn(async move {
        let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
        let mut offline = tokio::time::interval(OFFLINE_EVERY);
        let mut retention = tokio::time::interval(RETENTION_EVERY);
        for ticks in [&mut reconcile, &mut offline, &mut retention] {
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let mut hosts = HashMap::new();
        loop {
            tokio::select! {
                _ = reconcile.tick() => {
                    push_all(&loop_state, false).await;
                    if let Err(error) = crate::app::hosts::check_reachability(&loop_state, &mut hosts).await {
                        tracing::warn!(error = %crate::error_chain(&error), "cannot record a host's reachability");
                    }
                }
                _ = offline.tick() => {
                    if let Err(error) = evaluate_offline(&loop_state).await {
                        tracing::warn!(error = %crate::error_chain(&error), "cannot evaluate agent.offline monitors");
                    }
                }
                _ = retention.tick() => {
                    if let Err(error) = apply_retention(&loop_state).await {
                        tracing::warn!(error = %crate::error_chain(&error), "cannot downsample samples");
                    }
                }
            }
        }
    });
}

async fn restore_states(state: &AppState) -> steward_store::Result<()> {
    let mut conn = state.store.conn().await?;
    let stored = steward_store::monitors::all_states(&mut conn).await?;
    let mut states = lock(&state.monitors.states);
    for (monitor, system, alert, since) in stored {
        states.insert((monitor, system), Tracked { state: alert, since: since.millis() });
    }
    Ok(())
}

/// One state change to store, with its event when it raised or cleared.
struct Change {
    monitor: MonitorId,
    system: SystemId,
    tracked: Tracked,
    value: f64,
    at: i64,
    event: Option<Event>,
}

/// Evaluates one sample of `metric` against the system's plan; returns the state changes.
fn evaluate(state: &AppState, system: SystemId, metric: &str, value: f64, at: i64, changes: &mut Vec<Change>) {
    let watches: Vec<Watch> = {
        let plans = lock(&state.monitors.plans);
        let Some(plan) = plans.get(&system) else { return };
        let Some(watches) = plan.watches.get(metric) else { return };
        watches
            .iter()
            .map(|(monitor, name, severity, key)| Watch {
                monitor: *monitor,
                name: name.clone(),
                severity: *severity,
                condition: key.condition(),
            })
            .collect()
    };
    let mut states = lock(&state.monitors.states);
    let mut last = lock(&state.monitors.last);
    for watch in watches {
        last.insert((watch.monitor, system), (value, at));
        let tracked = *states.entry((watch.monitor, system)).or_insert(Tracked { state: AlertState::Ok, since: at });
        let (next, transition) = watch.condition.step(tracked, value, at);
        if transition == Transition::None {
            continue;
        }
        states.insert((watch.monitor, system), next);
        let event = match transition {
            Transition::Raised | Transition::Cleared => {
                let raised = transition == Transition::Raised;
                let condition = watch.condition;
                Some(Event {
                    id: EventId::new(),
                    event_type: if raised { "monitor.raised" } else { "monitor.cleared" }.to_owned(),
                    severity: if raised { watch.severity } else { Severity::Info },
                    source_kind: "system".to_owned(),
                    source: String::new(),
                    system_id: Some(system),
                    message: if raised {
                        format!(
                            "monitor {}: {metric} is {value:.2} ({} {})",
                            watch.name,
                            condition.comparison.symbol(),
                            condition.threshold
                        )
                    } else {
                        format!("monitor {} cleared: {metric} is {value:.2}", watch.name)
                    },
                    details: serde_json::json!({
                        "monitor": watch.name, "metric": metric, "value": value,
                        "threshold": condition.threshold, "clear_threshold": condition.clear_threshold,
                    }),
                    created_at: Timestamp(at),
                })
            }
            _ => None,
        };
        changes.push(Change { monitor: watch.monitor, system, tracked: next, value, at, event });
    }
}

/// Stores state changes and their events; names the system in each event.
async fn store_changes(
    state: &AppState,
    tx: &mut steward_store::Conn,
    changes: Vec<Change>,
) -> steward_store::Result<()> {
    let mut names: HashMap<SystemId, String> = HashMap::new();
    for mut change in changes {
        steward_store::monitors::state_set(
            tx,
            change.monitor,
            change.system,
            change.tracked.state,
            Timestamp(change.tracked.since),
            Some(change.value),
            Some(Timestamp(change.at)),
        )
        .await?;
        if let Some(event) = change.event.as_mut() {
            let name = match names.get(&change.system) {
                Some(name) => name.clone(),
                None => {
                    let name = steward_store::systems::get(tx, &change.system.to_string())
                        .await?
                        .map(|summary| summary.name)
                        .unwrap_or_else(|| change.system.to_string());
                    names.insert(change.system, name.clone());
                    name
                }
            };
            event.source = name;
            event.message = format!("{}: {}", event.source, event.message);
            crate::app::events::raise(tx, event, &change.system.to_string()).await?;
            state.monitors.events_raised.fetch_add(1, Ordering::Relaxed);
            tracing::info!(event = %event.event_type, system = %event.source, message = %event.message, "monitor event");
        }
    }
    Ok(())
}

async fn write_samples(state: AppState, mut receiver: mpsc::Receiver<Batch>) {
    while let Some(first) = receiver.recv().await {
        let mut batches = vec![first];
        let mut count = batches[0].samples.len();
        let deadline = tokio::time::Instant::now() + INGEST_WAIT;
        while count < INGEST_BATCH {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(batch)) => {
                    count += batch.samples.len();
                    batches.push(batch);
                }
                _ => break,
            }
        }
        let mut rows = Vec::with_capacity(count);
        let mut changes = Vec::new();
        let mut failed = 0u64;
        for batch in batches {
            for sample in batch.samples {
                match sample.value.filter(|value| value.is_finite()) {
                    Some(value) => {
                        evaluate(&state, batch.system, &sample.metric, value, batch.at, &mut changes);
                        rows.push((batch.system, sample.metric, batch.at, value));
                    }
                    None => failed += 1,
                }
            }
        }
        let written = async {
            let mut tx = state.store.begin().await?;
            steward_store::monitors::samples_insert(&mut tx, &rows).await?;
            store_changes(&state, &mut tx, changes).await?;
            tx.commit().await
        }
        .await;
        match written {
            Ok(()) => {
                state.monitors.samples_ingested.fetch_add(rows.len() as u64, Ordering::Relaxed);
                state.monitors.samples_failed.fetch_add(failed, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::error!(samples = rows.len(), error = %crate::error_chain(&error), "cannot store samples")
            }
        }
    }
}

async fn evaluate_offline(state: &AppState) -> steward_store::Result<()> {
    let systems: Vec<SystemId> = {
        let plans = lock(&state.monitors.plans);
        plans
            .iter()
            .filter(|(_, plan)| plan.watches.contains_key(AGENT_OFFLINE_METRIC))
            .map(|(system, _)| *system)
            .collect()
    };
    if systems.is_empty() {
        return Ok(());
    }
    let now = Timestamp::now().millis();
    let mut changes = Vec::new();
    for system in systems {
        let value = if state.agents.is_connected(system) { 0.0 } else { 1.0 };
        evaluate(state, system, AGENT_OFFLINE_METRIC, value, now, &mut changes);
    }
    if changes.is_empty() {
        return Ok(());
    }
    let mut tx = state.store.begin().await?;
    store_changes(state, &mut tx, changes).await?;
    tx.commit().await
}

/// Plans for systems that are not connected (agent.offline needs them): computed once at start and when
/// monitors change, for every system a monitor watches.
pub async fn plan_all_systems(state: &AppState) -> steward_store::Result<()> {
    let mut conn = state.store.conn().await?;
    let monitors = steward_store::monitors::list(&mut conn).await?;
    if monitors.is_empty() {
        lock(&state.monitors.plans).clear();
        return Ok(());
    }
    let (systems, _) = steward_store::systems::list(&mut conn, None, None, None, u32::MAX).await?;
    drop(conn);
    for system in systems {
        push_plan_with(state, system.id, false, &monitors).await;
    }
    Ok(())
}

async fn apply_retention(state: &AppState) -> steward_store::Result<()> {
    let now = Timestamp::now().millis();
    let bucket = steward_store::monitors::BUCKET_MILLIS;
    let before = now - now.rem_euclid(bucket);
    let mut tx = state.store.begin().await?;
    let folded_until = steward_store::monitors::folded_until(&mut tx).await?.unwrap_or(0);
    let folded =
        steward_store::monitors::downsample(&mut tx, folded_until, before, now - RAW_RETENTION, now - BUCKET_RETENTION)
            .await?;
    tx.commit().await?;
    tracing::debug!(folded, "samples downsampled");
    Ok(())
}
