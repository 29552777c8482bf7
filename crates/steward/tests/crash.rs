//! `kill -9` of the server in the middle of writes: every change the server acknowledged is still there after a
//! restart, each with its audit record (they share a transaction), and SQLite reports a consistent database.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use support::Server;

#[test]
fn sigkill_during_writes_loses_no_acknowledged_change() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut server = Server::start_in(&data, &[]);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let api = server.api();
            let acknowledged = acknowledged.clone();
            std::thread::spawn(move || {
                for n in 0..10_000 {
                    let name = format!("crash-{writer}-{n}");
                    let answer = std::panic::catch_unwind(|| api.post("/groups", json!({"name": name})));
                    match answer {
                        Ok(answer) if answer.status == 201 => acknowledged.lock().unwrap().push(name),
                        Ok(answer) => panic!("unexpected answer before the kill: {answer:?}"),
                        // The connection broke: the server is gone.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    support::eventually("some writes were acknowledged", Duration::from_secs(30), || {
        (acknowledged.lock().unwrap().len() >= 50).then_some(())
    });
    server.kill();
    for writer in writers {
        let _ = writer.join();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let server = Server::start_in(&data, &[]);
    let api = server.api();
    let mut stored = std::collections::HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(after) => format!("/groups?limit=1000&after={after}"),
            None => "/groups?limit=1000".to_string(),
        };
        let page = api.get(&path).body;
        for group in page["items"].as_array().unwrap() {
            stored.insert(group["name"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    for name in &acknowledged {
        assert!(stored.contains(name), "acknowledged group {name} was lost");
    }
    // Every stored group has its audit record: change and record were committed together.
    let mut audited = std::collections::HashSet::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(before) => format!("/audit?action=group.create&limit=1000&after={before}"),
            None => "/audit?action=group.create&limit=1000".to_string(),
        };
        let page = api.get(&path).body;
        for record in page["items"].as_array().unwrap() {
            if record["outcome"] == "success" {
                audited.insert(record["target"].as_str().unwrap().to_string());
            }
        }
        match page["next"].as_str() {
            Some(next) => before = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(stored, audited, "groups and their audit records disagree");
    drop(server);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = steward_store::Store::open_file(&data.join("steward.db")).await.unwrap();
        assert_eq!(store.integrity_check().await.unwrap(), Vec::<String>::new());
        store.close().await;
    });
}
