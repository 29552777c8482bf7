//! Event action plans: what happens when an event is raised, delivered durably.
//!
//! ```text
//!  producer (scheduler, complex reconciler, ...)
//!     │ app::events::raise(tx, event)             one transaction: the event + its deliveries
//!     ▼
//!  events ──> plans that match ──> deliveries (pending) ──> worker ──> log | webhook | email | command | job
//!                                        ▲                    │
//!                                        └── retrying ◄───────┘ failed: backoff with jitter, up to 8 attempts
//! ```
//!
//! **Matching** (`matching.rs`, pure): a plan's filter takes an event by type (exact, or a prefix ending with
//! `*`), minimum severity, source name, the event's system (by name or ID) or that system's groups at the time of
//! the event, and weekly time-of-day windows in an IANA time zone. An event about a system in a maintenance window
//! (per system or per group, once or weekly) still gets its deliveries, recorded as `suppressed` with the window's
//! name, never dropped silently. Repeat control is per plan, event type and source: within
//! `duplicate_window_seconds` of an event acted on, later ones are counted on its deliveries (`duplicates`); more
//! than `flapping.events` events within `flapping.within_seconds` send one `flapping` notice, and later ones are
//! counted on it until the source has been quiet for that long.
//!
//! **Durability**: `app::events::raise` records the event and its deliveries in the caller's transaction, so an
//! event is never without its deliveries and a crash after the commit loses nothing. A delivery snapshots its
//! action and the event, so it carries out what matched even when the plan changes later (deleting a plan deletes
//! its deliveries). The worker looks every second for deliveries whose `next_attempt_at` has passed, runs each in
//! a task of its own, at most [`DeliverySettings::concurrency`] at a time and each within a timeout, so a slow
//! webhook never holds up the others, and records every attempt: `delivered`, `retrying` (with `last_error` and the
//! next time, exponential backoff with jitter) or `gave_up` (after [`DeliverySettings::max_attempts`], or at once
//! for a failure no retry can fix: a 4xx answer, a 5xx SMTP reply, a command that exited non-zero, a job or system
//! that no longer exists). Delivery is at least once: a server stopped in the middle of an attempt tries it again
//! after the restart (pending rows are simply picked up), so receivers deduplicate on the delivery ID.
//!
//! **Actions**: `log` (a record of target `steward::event_log` in the server's log), `webhook` (`webhook.rs`: POST
//! of JSON, HMAC-SHA256 signature), `email` (`smtp.rs`: Steward's own SMTP client with STARTTLS and AUTH), `command`
//! (through the system's agent; delivered when it exits with 0) and `job` (a manual run of a job; delivered when
//! the run is started). Plans and windows are checked completely at creation (`definition.rs`).

pub mod definition;
pub mod matching;
pub mod smtp;
pub mod webhook;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_protocol::request::{AgentRequest, AgentResponse};
use steward_store::event_actions::{Attempt, DueDelivery};
use steward_types::api::Timestamp;
use steward_types::api::event_actions::{DeliveryKind, DeliveryState, PlanAction};
use steward_types::api::events::Event;
use steward_types::api::jobs::{JobRunState, JobTrigger};
use steward_types::{DeliveryId, JobRunId};

use crate::state::AppState;

/// How often the worker looks for due deliveries.
const TICK: Duration = Duration::from_secs(1);
/// The most deliveries in flight (running or waiting for a slot) at once.
const MAX_IN_FLIGHT: usize = 256;
/// How much longer than its own timeout a command action waits for the agent's answer.
const COMMAND_GRACE: Duration = Duration::from_secs(15);

/// How deliveries are retried and how many run at once.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// The wait after the first failed attempt; it doubles after each further one.
    pub first_retry: Duration,
    /// The longest wait between attempts.
    pub max_retry: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
    /// Deliveries carried out at once.
    pub concurrency: usize,
}

impl Default for DeliverySettings {
    /// Eight attempts over about an hour: retries after 30 s, 1, 2, 4, 8, 16 and 20 minutes (each +-25 %).
    fn default() -> Self {
        Self {
            first_retry: Duration::from_secs(30),
            max_retry: Duration::from_secs(20 * 60),
            max_attempts: 8,
            concurrency: 16,
        }
    }
}

/// Why an attempt failed, and whether another one may succeed.
#[derive(Debug)]
struct Failure {
    message: String,
    permanent: bool,
}

impl Failure {
    fn transient(message: impl Into<String>) -> Self {
        Self { message: message.into(), permanent: false }
    }

    fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), permanent: true }
    }
}

impl From<steward_store::StoreError> for Failure {
    fn from(error: steward_store::StoreError) -> Self {
        Failure::transient(format!("the store failed: {}", crate::error_chain(&error)))
    }
}

struct Worker {
    state: AppState,
    settings: DeliverySettings,
    /// The webhooks' client, or why there is none.
    http: Result<reqwest::Client, String>,
    in_flight: Mutex<HashSet<DeliveryId>>,
    slots: tokio::sync::Semaphore,
}

/// Takes a delivery out of the in-flight set however its task ends.
struct InFlight<'a> {
    worker: &'a Worker,
    id: DeliveryId,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.worker.in_flight.lock() {
            in_flight.remove(&self.id);
        }
    }
}

/// Starts the delivery worker. Deliveries left pending or retrying by a previous server are simply due.
pub fn spawn(state: AppState, settings: DeliverySettings) {
    let http = reqwest::Client::builder()
        .user_agent(concat!("steward/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| crate::error_chain(&error));
    if let Err(error) = &http {
        tracing::error!(%error, "no HTTP client: webhook deliveries will fail");
    }
    let slots = tokio::sync::Semaphore::new(settings.concurrency.max(1));
    let worker = Arc::new(Worker { state, settings, http, in_flight: Mutex::new(HashSet::new()), slots });
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = start_due(&worker).await {
                tracing::warn!(error = %crate::error_chain(&error), "the delivery worker could not look for due deliveries");
            }
        }
    });
}

async fn start_due(worker: &Arc<Worker>) -> steward_store::Result<()> {
    let busy = worker.in_flight.lock().map(|in_flight| in_flight.len()).unwrap_or(MAX_IN_FLIGHT);
    if busy >= MAX_IN_FLIGHT {
        return Ok(());
    }
    let mut conn = worker.state.store.conn().await?;
    // Ask for the ones in flight too, so that they cannot hide the others.
    let due =
        steward_store::event_actions::deliveries_due(&mut conn, Timestamp::now(), MAX_IN_FLIGHT as u32 + 64).await?;
    drop(conn);
    for delivery in due {
        let fresh = worker
            .in_flight
            .lock()
            .map(|mut in_flight| in_flight.len() < MAX_IN_FLIGHT && in_flight.insert(delivery.id))
            .unwrap_or(false);
        if !fresh {
            continue;
        }
        let worker = worker.clone();
        tokio::spawn(async move {
            let _in_flight = InFlight { worker: &worker, id: delivery.id };
            let Ok(_slot) = worker.slots.acquire().await else { return };
            attempt(&worker, &delivery).await;
        });
    }
    Ok(())
}

/// The longest one attempt of an action may take.
fn action_timeout(action: &PlanAction) -> Duration {
    match action {
        PlanAction::Log => Duration::from_secs(5),
        PlanAction::Webhook { .. } => webhook::WEBHOOK_TIMEOUT + Duration::from_secs(5),
        PlanAction::Email { .. } => Duration::from_secs(120),
        PlanAction::Command { command, .. } => {
            Duration::from_secs(u64::from(command.timeout_seconds)) + COMMAND_GRACE + Duration::from_secs(5)
        }
        PlanAction::Job { .. } => Duration::from_secs(30),
    }
}

/// Carries out one attempt and records it.
async fn attempt(worker: &Worker, delivery: &DueDelivery) {
    let number = delivery.attempts.saturating_add(1);
    let limit = action_timeout(&delivery.action);
    let outcome = match tokio::time::timeout(limit, perform(worker, delivery, number)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::transient(format!(
            "the {} action did not finish within {} s",
            delivery.action.kind(),
            limit.as_secs()
        ))),
    };
    let now = Timestamp::now();
    let (state, next_attempt_at, error) = match outcome {
        Ok(()) => (DeliveryState::Delivered, None, None),
        Err(failure) if failure.permanent => (DeliveryState::GaveUp, None, Some(failure.message)),
        Err(failure) if number >= worker.settings.max_attempts => {
            (DeliveryState::GaveUp, None, Some(format!("{} (gave up after {number} attempts)", failure.message)))
        }
        Err(failure) => {
            let wait = matching::backoff(
                number,
                worker.settings.first_retry,
                worker.settings.max_retry,
                rand::random::<f64>(),
            );
            let next = Timestamp(now.millis().saturating_add(wait.as_millis() as i64));
            (DeliveryState::Retrying, Some(next), Some(failure.message))
        }
    };
    match &error {
        None => {
            tracing::info!(delivery = %delivery.id, plan = %delivery.plan, action = delivery.action.kind(), attempt = number, "delivered")
        }
        Some(error) => tracing::warn!(delivery = %delivery.id, plan = %delivery.plan, action = delivery.action.kind(),
            attempt = number, state = state.as_str(), %error, "a delivery attempt failed"),
    }
    let record = Attempt { state, attempts: number, next_attempt_at, error: error.as_deref(), at: now };
    let written = async {
        let mut tx = worker.state.store.begin().await?;
        steward_store::event_actions::delivery_record_attempt(&mut tx, delivery.id, &record).await?;
        tx.commit().await
    };
    if let Err(error) = written.await {
        // The delivery stays due and is tried again: at least once.
        tracing::error!(delivery = %delivery.id, error = %crate::error_chain(&error), "a delivery attempt could not be recorded");
    }
}

/// The subject line of an e-mail (and the summary of a log record).
fn summary(delivery: &DueDelivery, event: Option<&Event>) -> String {
    let what = match event {
        Some(event) => {
            format!("{} {} {} {}", event.severity.as_str(), event.event_type, event.source_kind, event.source)
        }
        None => "event".to_owned(),
    };
    match delivery.kind {
        DeliveryKind::Event => format!("[Steward] {what}"),
        DeliveryKind::Flapping => format!("[Steward] flapping: {what}"),
    }
}

async fn perform(worker: &Worker, delivery: &DueDelivery, number: u32) -> Result<(), Failure> {
    let event: Option<Event> = serde_json::from_value(delivery.payload.clone()).ok();
    match &delivery.action {
        PlanAction::Log => {
            tracing::info!(target: "steward::event_log", plan = %delivery.plan, delivery = %delivery.id,
                kind = delivery.kind.as_str(), event = %summary(delivery, event.as_ref()), message = %delivery.message,
                "event action");
            Ok(())
        }
        PlanAction::Webhook { url, secret, headers, .. } => {
            let sent_at = Timestamp::now();
            let body = serde_json::json!({
                "delivery": delivery.id,
                "attempt": number,
                "sent_at": sent_at,
                "plan": delivery.plan,
                "kind": delivery.kind,
                "message": delivery.message,
                "event": delivery.payload,
            });
            let http = worker.http.as_ref().map_err(|error| Failure::transient(format!("no HTTP client: {error}")))?;
            let target = webhook::Webhook { url, secret: secret.as_deref(), headers };
            let event_type = event.as_ref().map(|event| event.event_type.as_str()).unwrap_or("");
            webhook::post(
                http,
                &target,
                &delivery.id.to_string(),
                event_type,
                sent_at.millis() / 1000,
                body.to_string().into_bytes(),
            )
            .await
            .map_err(|error| Failure { permanent: error.is_permanent(), message: error.to_string() })
        }
        PlanAction::Email { server, tls, username, password, ca_certificate, from, to, .. } => {
            let settings = smtp::SmtpSettings {
                server,
                tls: *tls,
                username: username.as_deref(),
                password: password.as_deref(),
                ca_certificate: ca_certificate.as_deref(),
                from,
                to,
            };
            let details = event
                .as_ref()
                .map(|event| serde_json::to_string_pretty(&event.details).unwrap_or_default())
                .unwrap_or_default();
            let body = format!(
                "{}\n\nPlan: {}\nEvent: {}\nDelivery: {}\n\n{details}\n",
                delivery.message,
                delivery.plan,
                event.as_ref().map(|event| format!("{} at {}", event.id, event.created_at)).unwrap_or_default(),
                delivery.id,
            );
            let message = smtp::compose(&settings, &summary(delivery, event.as_ref()), &body, &delivery.id.to_string());
            smtp::send(&settings, &message)
                .await
                .map_err(|error| Failure { permanent: error.is_permanent(), message: crate::error_chain(&error) })
        }
        PlanAction::Command { system, command } => {
            let mut conn = worker.state.store.conn().await?;
            let Some(found) = steward_store::systems::get(&mut conn, system).await? else {
                return Err(Failure::permanent(format!("system {system:?} no longer exists")));
            };
            drop(conn);
            let wait = Duration::from_secs(u64::from(command.timeout_seconds)) + COMMAND_GRACE;
            let request = AgentRequest::RunCommand(command.clone().into_request());
            match worker.state.agents.request(found.id, request, wait).await {
                Ok(AgentResponse::Command(outcome)) if outcome.exit_code == Some(0) && !outcome.timed_out => Ok(()),
                Ok(AgentResponse::Command(outcome)) => {
                    let tail: String =
                        outcome.stderr.chars().rev().take(200).collect::<Vec<_>>().into_iter().rev().collect();
                    let how = if outcome.timed_out {
                        format!("was killed at its timeout of {} s", command.timeout_seconds)
                    } else if let Some(signal) = outcome.signal {
                        format!("was ended by signal {signal}")
                    } else {
                        format!("exited with {}", outcome.exit_code.unwrap_or(-1))
                    };
                    Err(Failure::permanent(format!("the command on {system} {how}: {}", tail.trim())))
                }
                Ok(other) => {
                    Err(Failure::transient(format!("the agent of {system} answered something else: {other:?}")))
                }
                Err(error) => Err(Failure::transient(format!("{system}: {error}"))),
            }
        }
        PlanAction::Job { job } => {
            let run = JobRunId::new();
            let mut tx = worker.state.store.begin().await?;
            let Some(found) = steward_store::jobs::get(&mut tx, job).await? else {
                return Err(Failure::permanent(format!("job {job:?} no longer exists")));
            };
            steward_store::jobs::run_insert(
                &mut tx,
                run,
                found.id,
                JobTrigger::Manual,
                None,
                JobRunState::Running,
                Timestamp::now(),
            )
            .await?;
            tx.commit().await?;
            tracing::info!(job = %found.name, %run, delivery = %delivery.id, "an event action plan started a job");
            crate::app::scheduler::spawn_run(worker.state.clone(), found, run);
            Ok(())
        }
    }
}
