//! Raising events: the one way an event is recorded. [`raise`] inserts the event and, in the same transaction,
//! the deliveries of every enabled event action plan that takes it, so an event is never recorded without its
//! deliveries and a crash after the commit loses nothing (the delivery worker picks them up after a restart).

use steward_store::Conn;
use steward_store::event_actions::NewDelivery;
use steward_types::DeliveryId;
use steward_types::api::Timestamp;
use steward_types::api::event_actions::{DeliveryKind, DeliveryState, EventActionPlan, MaintenanceScope};
use steward_types::api::events::Event;

use crate::app::actions::matching::{
    EventSubject, ThrottleDecision, ThrottleState, filter_matches, in_time_windows, maintenance_on, throttle_decide,
};

/// What raising an event did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// Deliveries recorded to be carried out (or suppressed by a maintenance window).
    pub deliveries: usize,
}

/// Records `event` (about the resource with ID `source_id`) and enqueues the deliveries of the plans it matches,
/// all through `conn`: call it inside the transaction that records what the event is about.
pub async fn raise(conn: &mut Conn, event: &Event, source_id: &str) -> steward_store::Result<Raised> {
    steward_store::events::insert(conn, event, source_id).await?;
    let plans = steward_store::event_actions::plans_enabled(conn).await?;
    if plans.is_empty() {
        return Ok(Raised::default());
    }
    let mut system_name = None;
    let mut groups = Vec::new();
    if let Some(system) = event.system_id {
        system_name = steward_store::systems::get(conn, &system.to_string()).await?.map(|summary| summary.name);
        groups = steward_store::groups::groups_of(conn, system).await?;
    }
    let subject = EventSubject { event, system: event.system_id.zip(system_name.as_deref()), groups: &groups };
    let maintenance = match subject.system {
        Some(_) => active_maintenance(conn, &subject).await?,
        None => None,
    };
    let source_key = format!("{}:{source_id}", event.source_kind);
    let mut raised = Raised::default();
    for plan in &plans {
        if !filter_matches(&plan.filter, &subject) {
            continue;
        }
        match in_time_windows(&plan.filter.active, &plan.filter.time_zone, event.created_at) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::warn!(plan = %plan.name, %error, "the plan's active windows no longer parse; it is skipped");
                continue;
            }
        }
        if let Some(window) = &maintenance {
            raised.deliveries += enqueue(conn, plan, event, DeliveryKind::Event, Some(window)).await?;
            continue;
        }
        let stored = steward_store::event_actions::throttle_get(conn, plan.id, &event.event_type, &source_key).await?;
        let mut state: ThrottleState = stored.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default();
        let decision = throttle_decide(&mut state, &plan.throttle, event.id, event.created_at);
        let text = serde_json::to_string(&state).unwrap_or_default();
        steward_store::event_actions::throttle_set(conn, plan.id, &event.event_type, &source_key, &text).await?;
        match decision {
            ThrottleDecision::Deliver => {
                raised.deliveries += enqueue(conn, plan, event, DeliveryKind::Event, None).await?;
            }
            ThrottleDecision::StartFlapping => {
                raised.deliveries += enqueue(conn, plan, event, DeliveryKind::Flapping, None).await?;
            }
            ThrottleDecision::Duplicate(first) => {
                steward_store::event_actions::deliveries_count_duplicate(
                    conn,
                    plan.id,
                    first,
                    DeliveryKind::Event,
                    event.created_at,
                )
                .await?;
            }
            ThrottleDecision::Flapping(notice) => {
                steward_store::event_actions::deliveries_count_duplicate(
                    conn,
                    plan.id,
                    notice,
                    DeliveryKind::Flapping,
                    event.created_at,
                )
                .await?;
            }
        }
    }
    Ok(raised)
}

/// The name of a maintenance window on now for the event's system (directly or through one of its groups).
async fn active_maintenance(conn: &mut Conn, subject: &EventSubject<'_>) -> steward_store::Result<Option<String>> {
    let Some((system_id, system_name)) = subject.system else { return Ok(None) };
    for window in steward_store::event_actions::window_list(conn).await? {
        let applies = match &window.scope {
            MaintenanceScope::System { system } => system == system_name || *system == system_id.to_string(),
            MaintenanceScope::Group { group } => subject.groups.contains(group),
        };
        if applies && maintenance_on(&window.schedule, subject.event.created_at).unwrap_or(false) {
            return Ok(Some(window.name));
        }
    }
    Ok(None)
}

/// The text a flapping notice says.
pub fn flapping_message(plan: &EventActionPlan, event: &Event) -> String {
    let (events, seconds) = plan.throttle.flapping.map(|flap| (flap.events, flap.within_seconds)).unwrap_or_default();
    format!(
        "{} {} is flapping: more than {events} {} events within {seconds} s; further ones are counted, not acted \
         on, until it has been quiet for {seconds} s (latest: {})",
        event.source_kind, event.source, event.event_type, event.message
    )
}

/// Records one delivery per action of the plan; suppressed ones (by `maintenance`) are recorded too, never
/// dropped silently.
async fn enqueue(
    conn: &mut Conn,
    plan: &EventActionPlan,
    event: &Event,
    kind: DeliveryKind,
    maintenance: Option<&String>,
) -> steward_store::Result<usize> {
    let message = match kind {
        DeliveryKind::Event => event.message.clone(),
        DeliveryKind::Flapping => flapping_message(plan, event),
    };
    let payload = serde_json::to_value(event).unwrap_or_default();
    let source = format!("{} {}", event.source_kind, event.source);
    let (state, next_attempt_at) = match maintenance {
        Some(_) => (DeliveryState::Suppressed, None),
        None => (DeliveryState::Pending, Some(Timestamp::now())),
    };
    for (index, action) in plan.actions.iter().enumerate() {
        let delivery = NewDelivery {
            id: DeliveryId::new(),
            plan: plan.id,
            action_index: index as u32,
            action,
            kind,
            event_id: event.id,
            event_type: &event.event_type,
            source: &source,
            message: &message,
            payload: &payload,
            state,
            next_attempt_at,
            suppressed_by: maintenance.map(String::as_str),
            created_at: event.created_at,
        };
        steward_store::event_actions::delivery_insert(conn, &delivery).await?;
    }
    if let Some(window) = maintenance {
        tracing::info!(plan = %plan.name, event = %event.id, %window, "deliveries suppressed by a maintenance window");
    }
    Ok(plan.actions.len())
}
