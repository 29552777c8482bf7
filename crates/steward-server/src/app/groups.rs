//! Dynamic group membership: a dynamic group's members are the systems whose facts document matches its query.
//! Membership is materialized in the store and recomputed when a query changes and when a system's inventory or
//! state changes (that system against every dynamic group).
//!
//! A new query is evaluated over the whole fleet on a read connection, a batch of inventories at a time, without
//! the write lock ([`evaluate_fleet`]); inside the write transaction [`store_members`] then re-evaluates only
//! the systems that changed meanwhile, so agents' reports never wait for a fleet-wide evaluation.

use std::collections::BTreeSet;

use steward_protocol::Inventory;
use steward_store::{Conn, Store};
use steward_types::api::Timestamp;
use steward_types::api::systems::SystemState;
use steward_types::query::{Query, SystemFacts, facts_document};
use steward_types::{GroupId, SystemId};

use crate::error::{ApiError, ApiResult};

/// Parses a group query, turning a syntax error into a validation error that shows where and what.
pub fn parse_query(text: &str) -> ApiResult<Query> {
    Query::parse(text).map_err(|error| {
        ApiError::validation("query", error.to_string()).with_details(serde_json::json!({
            "field": "query",
            "position": error.position,
        }))
    })
}

/// The systems matching a query, and when the evaluation began.
pub struct FleetEvaluation {
    members: BTreeSet<SystemId>,
    since: Timestamp,
}

/// Evaluates a query over the whole fleet on a read connection.
pub async fn evaluate_fleet(store: &Store, query: &Query) -> ApiResult<FleetEvaluation> {
    // Taken before reading: whatever changes while we read is re-evaluated by `store_members`.
    let since = Timestamp::now();
    let mut conn = store.conn().await?;
    let mut after = String::new();
    let mut members = BTreeSet::new();
    loop {
        let batch = steward_store::systems::facts_batch(&mut conn, &after, 200).await?;
        let Some((last, ..)) = batch.last() else { break };
        after = last.to_string();
        for (system, name, state, inventory) in &batch {
            if query.matches(&facts(name, *state, inventory.as_ref())) {
                members.insert(*system);
            }
        }
    }
    Ok(FleetEvaluation { members, since })
}

/// Replaces a group's members with an evaluation, re-evaluating the systems that enrolled, reported or changed
/// state since it began. Runs inside the write transaction; returns the number of members.
pub async fn store_members(
    conn: &mut Conn,
    group: GroupId,
    query: &Query,
    evaluation: FleetEvaluation,
) -> ApiResult<u64> {
    let FleetEvaluation { mut members, since } = evaluation;
    for (system, name, state, inventory) in steward_store::systems::facts_changed_since(conn, since).await? {
        if query.matches(&facts(&name, state, inventory.as_ref())) {
            members.insert(system);
        } else {
            members.remove(&system);
        }
    }
    steward_store::groups::members_clear(conn, group).await?;
    let mut count = 0;
    for system in members {
        // A system deleted since the evaluation is skipped by the store.
        if steward_store::groups::member_add(conn, group, system).await? {
            count += 1;
        }
    }
    Ok(count)
}

/// Names of every system matching a query, sorted.
pub async fn matching_names(conn: &mut Conn, query: &Query) -> ApiResult<Vec<String>> {
    let mut after = String::new();
    let mut names = Vec::new();
    loop {
        let batch = steward_store::systems::facts_batch(conn, &after, 200).await?;
        let Some((last, ..)) = batch.last() else { break };
        after = last.to_string();
        for (_, name, state, inventory) in &batch {
            if query.matches(&facts(name, *state, inventory.as_ref())) {
                names.push(name.clone());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Recomputes one system's membership in every dynamic group.
pub async fn recompute_system(
    conn: &mut Conn,
    system: SystemId,
    name: &str,
    state: SystemState,
    inventory: Option<&Inventory>,
) -> ApiResult<()> {
    steward_store::groups::dynamic_memberships_clear(conn, system).await?;
    let groups = steward_store::groups::dynamic_groups(conn).await?;
    if groups.is_empty() {
        return Ok(());
    }
    let document = facts(name, state, inventory);
    for (group, text) in groups {
        match Query::parse(&text) {
            Ok(query) if query.matches(&document) => {
                steward_store::groups::member_add(conn, group, system).await?;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(group = %group, %error, "a stored group query no longer parses"),
        }
    }
    Ok(())
}

fn facts(name: &str, state: SystemState, inventory: Option<&Inventory>) -> serde_json::Value {
    facts_document(&SystemFacts { name: name.to_string(), state: state.as_str().to_string() }, inventory)
}
