//! Dynamic membership computed without the write lock stays exact: systems that enroll, change inventory or
//! disappear between the fleet evaluation and the write are accounted for.

#![allow(clippy::unwrap_used)] // Test helpers fail the test on any surprise.

use steward_protocol::Inventory;
use steward_server::app::groups::{evaluate_fleet, parse_query, store_members};
use steward_store::Store;
use steward_types::api::Timestamp;
use steward_types::api::groups::{Group, GroupKind};
use steward_types::api::systems::InventoryChange;
use steward_types::{GroupId, SystemId};

async fn enroll(store: &Store, name: &str, os_id: &str) -> SystemId {
    let id = SystemId::new();
    let mut tx = store.begin().await.unwrap();
    let system = steward_store::systems::NewSystem {
        id,
        name,
        hostname: name,
        agent_version: "test",
        enrolled_at: Timestamp::now(),
    };
    steward_store::systems::insert(&mut tx, &system).await.unwrap();
    tx.commit().await.unwrap();
    report(store, id, os_id).await;
    id
}

async fn report(store: &Store, id: SystemId, os_id: &str) {
    let mut inventory = Inventory::default();
    inventory.host.os.id = os_id.to_string();
    let change = InventoryChange { at: Timestamp::now(), sections: vec!["full".into()], change: serde_json::json!({}) };
    let mut tx = store.begin().await.unwrap();
    steward_store::systems::inventory_set(&mut tx, id, &inventory, &change).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn changes_between_evaluation_and_write_are_included() {
    let temp = tempfile::tempdir().unwrap();
    let store = Store::open_file(&temp.path().join("steward.db")).await.unwrap();
    let stays = enroll(&store, "stays", "debian").await;
    let leaves = enroll(&store, "leaves", "debian").await;
    let deleted = enroll(&store, "deleted", "debian").await;
    let joins = enroll(&store, "joins", "fedora").await;

    let query = parse_query("os.id = \"debian\"").unwrap();
    let evaluation = evaluate_fleet(&store, &query).await.unwrap();
    // Meanwhile: one system changes away, one changes in, one is deleted, one enrolls.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    report(&store, leaves, "fedora").await;
    report(&store, joins, "debian").await;
    let mut tx = store.begin().await.unwrap();
    steward_store::systems::delete(&mut tx, deleted).await.unwrap();
    tx.commit().await.unwrap();
    let new = enroll(&store, "new", "debian").await;

    let group = Group {
        id: GroupId::new(),
        name: "debian".into(),
        kind: GroupKind::Dynamic,
        description: String::new(),
        query: Some(query.as_str().to_string()),
        member_count: 0,
        created_at: Timestamp::now(),
    };
    let mut tx = store.begin().await.unwrap();
    steward_store::groups::insert(&mut tx, &group).await.unwrap();
    let count = store_members(&mut tx, group.id, &query, evaluation).await.unwrap();
    tx.commit().await.unwrap();

    let mut conn = store.conn().await.unwrap();
    let (members, _) = steward_store::groups::members(&mut conn, group.id, None, 100).await.unwrap();
    let mut names: Vec<String> = members.into_iter().map(|system| system.name).collect();
    names.sort();
    assert_eq!(names, ["joins", "new", "stays"]);
    assert_eq!(count, 3);
    let _ = (stays, new);
}
