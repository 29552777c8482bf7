//! Dynamic group membership: a dynamic group's members are the systems whose facts document matches its query.
//! Membership is materialized in the store and recomputed when a query changes (the whole fleet is evaluated,
//! a batch of inventories at a time) and when a system's inventory or state changes (that system against every
//! dynamic group).

use steward_protocol::Inventory;
use steward_store::Conn;
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

/// Recomputes every member of one dynamic group from the whole fleet.
pub async fn recompute_group(conn: &mut Conn, group: GroupId, query: &Query) -> ApiResult<u64> {
    steward_store::groups::members_clear(conn, group).await?;
    let mut after = String::new();
    let mut members = 0;
    loop {
        let batch = steward_store::systems::facts_batch(conn, &after, 200).await?;
        let Some((last, ..)) = batch.last() else { break };
        after = last.to_string();
        for (system, name, state, inventory) in &batch {
            if query.matches(&facts(name, *state, inventory.as_ref())) {
                steward_store::groups::member_add(conn, group, *system).await?;
                members += 1;
            }
        }
    }
    Ok(members)
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
            Ok(query) if query.matches(&document) => steward_store::groups::member_add(conn, group, system).await?,
            Ok(_) => {}
            Err(error) => tracing::warn!(group = %group, %error, "a stored group query no longer parses"),
        }
    }
    Ok(())
}

fn facts(name: &str, state: SystemState, inventory: Option<&Inventory>) -> serde_json::Value {
    facts_document(&SystemFacts { name: name.to_string(), state: state.as_str().to_string() }, inventory)
}
