//! The complex reconciler: a background loop that checks each complex when its interval has passed and records
//! what it found; each deviation not seen by the previous check becomes a `complex.deviation` event. It only
//! reads and records: making members consistent again is `apply`, which an operator (or, later, an event action
//! plan) starts. A complex busy with an operation is skipped until the operation ends.

use std::sync::Arc;
use std::time::Duration;

use steward_store::StoreError;
use steward_types::EventId;
use steward_types::api::Timestamp;
use steward_types::api::complexes::{ComplexDefinition, Deviation, Layer};
use steward_types::api::events::{Event, Severity};
use steward_types::api::hosts::HostKind;

use super::Context;
use super::check::{Finding, check};
use crate::state::AppState;

/// How often the loop looks for complexes due for a check.
const TICK: Duration = Duration::from_secs(5);
/// The background check interval on a QEMU host when the definition does not say.
pub const DEFAULT_INTERVAL_SECONDS: u64 = 300;

/// The background check interval of a complex; 0: off. z/VM hosts default to off (every check costs SMAPI
/// calls there); QEMU hosts to `DEFAULT_INTERVAL_SECONDS`.
pub fn interval_seconds(definition: &ComplexDefinition, host: HostKind) -> u64 {
    definition.reconcile_interval_seconds.unwrap_or(match host {
        HostKind::Qemu => DEFAULT_INTERVAL_SECONDS,
        HostKind::Zvm => 0,
    })
}

/// Records a check's findings; returns the deviations that are new, each of which became an event.
pub async fn record(
    state: &AppState,
    context: &Context,
    findings: &[Finding],
    checked: &[String],
) -> Result<Vec<Deviation>, StoreError> {
    let deviations: Vec<Deviation> = findings.iter().map(|finding| finding.deviation.clone()).collect();
    let now = Timestamp::now();
    let mut tx = state.store.begin().await?;
    let fresh =
        steward_store::complexes::deviations_record(&mut tx, context.complex.id, checked, &deviations, now).await?;
    for deviation in &fresh {
        let layer = match deviation.layer {
            Layer::Hypervisor => "hypervisor",
            Layer::Guest => "guest",
        };
        let event = Event {
            id: EventId::new(),
            event_type: "complex.deviation".to_owned(),
            severity: Severity::Warning,
            source_kind: "complex".to_owned(),
            source: context.complex.name.clone(),
            system_id: None,
            message: format!(
                "member {} deviates in {} ({layer}): expected {}, actual {}",
                deviation.member, deviation.property, deviation.expected, deviation.actual
            ),
            details: serde_json::to_value(deviation).unwrap_or_default(),
            created_at: now,
        };
        crate::app::events::raise(&mut tx, &event, &context.complex.id.to_string()).await?;
    }
    tx.commit().await?;
    Ok(fresh)
}

async fn due_complexes(state: &AppState) -> Result<Vec<String>, StoreError> {
    let mut conn = state.store.conn().await?;
    let complexes = steward_store::complexes::list(&mut conn).await?;
    let now = Timestamp::now();
    let mut due = Vec::new();
    for complex in complexes {
        let Some(host) = steward_store::hosts::get(&mut conn, &complex.host.to_string()).await? else { continue };
        let interval = interval_seconds(&complex.definition, host.kind);
        let is_due = interval > 0 && complex.last_checked_at.is_none_or(|last| last.plus_seconds(interval) <= now);
        if is_due && steward_store::operations::active_for_target(&mut conn, &complex.id.to_string()).await?.is_none() {
            due.push(complex.id.to_string());
        }
    }
    Ok(due)
}

async fn reconcile_once(state: &AppState) -> Result<(), StoreError> {
    for complex in due_complexes(state).await? {
        let mut conn = state.store.conn().await?;
        let context = match Context::load(state, &mut conn, &complex).await {
            Ok(context) => Arc::new(context),
            Err(error) => {
                tracing::warn!(complex, error = %error.message, "complex not checked: its definition no longer resolves");
                continue;
            }
        };
        drop(conn);
        let (findings, checked) = check(state, context.clone(), None).await;
        let fresh = record(state, &context, &findings, &checked).await?;
        tracing::info!(complex = %context.complex.name, deviations = findings.len(), new = fresh.len(), "complex checked");
    }
    Ok(())
}

/// Runs the reconciler until the process ends.
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = reconcile_once(&state).await {
                tracing::warn!(error = %crate::error_chain(&error), "the complex reconciler could not read or write the store");
            }
        }
    });
}
