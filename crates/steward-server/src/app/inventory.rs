//! Inventory ingest: what the gateway calls when an agent reports its whole inventory or a patch.
//!
//! Each report is one transaction: the new inventory, its history entry and the system's dynamic group
//! memberships change together. A patch is read and applied inside that same transaction.

use steward_protocol::{Inventory, InventoryPatch};
use steward_store::{Conn, Store};
use steward_types::SystemId;
use steward_types::api::Timestamp;
use steward_types::api::systems::{InventoryChange, SystemState, SystemSummary};

use crate::error::{ApiError, ApiResult};

/// Stores a whole inventory.
pub async fn inventory_replace(store: &Store, system: SystemId, mut inventory: Inventory) -> ApiResult<()> {
    inventory.normalize();
    let change = InventoryChange {
        at: Timestamp::now(),
        sections: vec!["full".into()],
        change: serde_json::json!({
            "hostname": inventory.host.hostname,
            "os": inventory.host.os.pretty_name,
            "packages": inventory.packages.len(),
            "filesystems": inventory.filesystems.len(),
            "interfaces": inventory.interfaces.len(),
        }),
    };
    let mut tx = store.begin().await?;
    let summary = system_summary(&mut tx, system).await?;
    store_inventory(&mut tx, &summary, &inventory, &change).await?;
    tx.commit().await?;
    Ok(())
}

/// Applies a patch to the stored inventory. Fails with a conflict when the server has no inventory to patch
/// (the gateway then asks the agent for a whole one).
pub async fn inventory_patch(store: &Store, system: SystemId, patch: InventoryPatch) -> ApiResult<()> {
    let mut tx = store.begin().await?;
    let summary = system_summary(&mut tx, system).await?;
    let (mut inventory, _) = steward_store::systems::inventory_get(&mut tx, system)
        .await?
        .ok_or_else(|| ApiError::conflict("there is no inventory to patch"))?;
    let change = InventoryChange {
        at: Timestamp::now(),
        sections: patch.sections().into_iter().map(str::to_string).collect(),
        change: serde_json::to_value(&patch).unwrap_or_default(),
    };
    inventory.apply(patch);
    store_inventory(&mut tx, &summary, &inventory, &change).await?;
    tx.commit().await?;
    Ok(())
}

async fn system_summary(conn: &mut Conn, system: SystemId) -> ApiResult<SystemSummary> {
    steward_store::systems::get(conn, &system.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("system", &system.to_string()))
}

async fn store_inventory(
    conn: &mut Conn,
    summary: &SystemSummary,
    inventory: &Inventory,
    change: &InventoryChange,
) -> ApiResult<()> {
    steward_store::systems::inventory_set(conn, summary.id, inventory, change).await?;
    crate::app::groups::recompute_system(conn, summary.id, &summary.name, summary.state, Some(inventory)).await
}

/// Records that a system's agent connected or disconnected, and updates state-dependent group memberships.
/// `still_current` is asked inside the write transaction, so an agent that already reconnected on a new
/// connection is not marked offline by its old one: writers are serialized, and a new connection registers
/// before it records itself online, so the check cannot miss it.
pub async fn system_set_state(
    store: &Store,
    system: SystemId,
    state: SystemState,
    still_current: impl Fn() -> bool,
) -> ApiResult<()> {
    let mut tx = store.begin().await?;
    if !still_current() {
        return Ok(());
    }
    let Some(summary) = steward_store::systems::get(&mut tx, &system.to_string()).await? else {
        return Ok(());
    };
    let online = state == SystemState::Online;
    steward_store::systems::set_contact(&mut tx, system, online, Timestamp::now()).await?;
    // Only a change is an event: a reconnecting agent that was online already raises none.
    if (summary.state == SystemState::Online) != online {
        let event = steward_types::api::events::Event {
            id: steward_types::EventId::new(),
            event_type: if online { "agent.online" } else { "agent.offline" }.to_owned(),
            severity: if online {
                steward_types::api::events::Severity::Info
            } else {
                steward_types::api::events::Severity::Warning
            },
            source_kind: "system".to_owned(),
            source: summary.name.clone(),
            system_id: Some(system),
            message: format!("{}: the agent {}", summary.name, if online { "connected" } else { "disconnected" }),
            details: serde_json::json!({}),
            created_at: Timestamp::now(),
        };
        crate::app::events::raise(&mut tx, &event, &system.to_string()).await?;
    }
    // A query may test `state`, so memberships can change; the inventory is loaded only when there is a query.
    if !steward_store::groups::dynamic_groups(&mut tx).await?.is_empty() {
        let inventory = steward_store::systems::inventory_get(&mut tx, system).await?.map(|(inventory, _)| inventory);
        crate::app::groups::recompute_system(&mut tx, system, &summary.name, state, inventory.as_ref()).await?;
    }
    tx.commit().await?;
    Ok(())
}
