//! `steward zvm-sim` as a newcomer starts it: it prints that it is a simulator and what it created, answers
//! SMAPI on the address it prints (through the `smapi` client), keeps its state in a private file, and loads
//! that state again after a restart.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

use smapi::functions::QueryApiFunctionalLevel;
use smapi::{ClientConfig, Credentials, SmapiClient};
use support::steward_binary;

/// Starts the simulator; returns the process and everything it printed up to its state line.
fn start(state: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(steward_binary())
        .args(["zvm-sim", "--listen", "127.0.0.1:0", "--user", "ADMIN:Adm1n-Pass", "--state"])
        .arg(state)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("State file:") {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "zvm-sim ended early: {printed}");
        printed.push_str(&line);
    }
    (child, printed)
}

fn address(printed: &str) -> String {
    printed.lines().next().unwrap().rsplit(' ').next().unwrap().to_owned()
}

fn stop(mut child: Child) {
    support::signal(&child, 15);
    child.wait().unwrap();
}

#[test]
fn the_simulator_says_what_it_is_answers_smapi_and_keeps_its_state() {
    let temp = tempfile::tempdir().unwrap();
    let state = temp.path().join("zvm-sim.json");
    let (child, printed) = start(&state);
    assert!(printed.starts_with("z/VM SMAPI simulator (zvm-sim, not z/VM) listening on 127.0.0.1:"), "{printed}");
    assert!(printed.contains("Created a new simulated system"), "{printed}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let level = runtime.block_on(async {
        let client =
            SmapiClient::new(ClientConfig::new(address(&printed)), Credentials::new("ADMIN", "Adm1n-Pass").unwrap());
        client.call(&QueryApiFunctionalLevel::new("ADMIN")).await
    });
    let level = level.unwrap();
    assert!((710..=719).contains(&level.level), "a z/VM 7.1 level: {level:?}");
    let wrong = runtime.block_on(async {
        let client =
            SmapiClient::new(ClientConfig::new(address(&printed)), Credentials::new("ADMIN", "wrong").unwrap());
        client.call(&QueryApiFunctionalLevel::new("ADMIN")).await
    });
    assert_eq!(wrong.unwrap_err().call_error().unwrap().return_code, 120, "bad credentials are refused");
    stop(child);

    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the state file holds passwords");
    let (child, printed) = start(&state);
    assert!(printed.contains("State loaded from"), "{printed}");
    stop(child);
}
