//! Commands run on a system through its agent, end to end: the HTTP API (`POST /systems/{id}/commands`) and
//! `steward run`, against a real server and the real `steward-agent` binary connected over TLS.

#![allow(clippy::unwrap_used)] // Test helpers fail the test on any surprise.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{Agent, Server, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// A server with one enrolled agent, online; returns the system's ID and name.
fn server_with_agent(temp: &std::path::Path) -> (Server, Agent, String, String) {
    let server = Server::start();
    let token = server.enrollment_token(1);
    let agent = Agent::start(&server.api_url, Some(&token), &temp.join("agent"));
    let id = eventually("the agent enrolls", WAIT, || agent.system_id());
    let name = eventually("the system is online", WAIT, || {
        let system = server.api().get(&format!("/systems/{id}")).body;
        (system["state"] == "online").then(|| system["name"].as_str().unwrap().to_string())
    });
    (server, agent, id, name)
}

#[test]
fn commands_run_through_the_api_and_are_audited_without_secrets() {
    let temp = tempfile::tempdir().unwrap();
    let (server, agent, id, name) = server_with_agent(temp.path());
    let api = server.api();
    let path = format!("/systems/{id}/commands");

    let echo = api.post(&path, json!({"argv": ["echo", "hello", "$HOME"]}));
    assert_eq!(echo.status, 200, "{:?}", echo.body);
    assert_eq!(echo.body["stdout"], "hello $HOME\n", "no shell unless asked for");
    assert_eq!(echo.body["exit_code"], 0);
    assert_eq!(echo.body["signal"], serde_json::Value::Null);
    assert_eq!(echo.body["timed_out"], false);
    assert!(echo.body["duration_ms"].is_u64());

    // By name as well as by ID; a failing command is still a 200 with its exit code.
    let failing =
        api.post(&format!("/systems/{name}/commands"), json!({"argv": ["sh", "-c", "echo oops >&2; exit 3"]}));
    assert_eq!(failing.status, 200, "{:?}", failing.body);
    assert_eq!(failing.body["exit_code"], 3);
    assert_eq!(failing.body["stderr"], "oops\n");

    let secret_value = "s3cret-value-never-audited";
    let secret_input = "input-that-is-never-audited";
    let fed = api.post(
        &path,
        json!({
            "argv": ["sh", "-c", "read line; echo \"$line/$TOKEN_VALUE\""],
            "environment": {"TOKEN_VALUE": secret_value},
            "stdin": format!("{secret_input}\n"),
            "working_directory": "/tmp",
        }),
    );
    assert_eq!(fed.status, 200, "{:?}", fed.body);
    assert_eq!(fed.body["stdout"], format!("{secret_input}/{secret_value}\n"));

    let slow = api.post(&path, json!({"argv": ["sleep", "600"], "timeout_seconds": 1}));
    assert_eq!(slow.status, 200, "{:?}", slow.body);
    assert_eq!(slow.body["timed_out"], true);
    assert_eq!(slow.body["signal"], 9);
    assert_eq!(slow.body["exit_code"], serde_json::Value::Null);

    // A program the system does not have: the agent's own refusal, naming it.
    let missing = api.post(&path, json!({"argv": ["steward-no-such-program"]}));
    assert_eq!(missing.status, 409, "{:?}", missing.body);
    assert_eq!(missing.body["error"]["details"]["reason"], "agent_error");
    assert!(missing.error_message().contains("\"steward-no-such-program\""), "{:?}", missing.body);

    // Bad bodies are refused before anything runs, naming the field.
    for (body, status, field_or_text) in [
        (json!({"argv": []}), 422, "argv"),
        (json!({"argv": [""]}), 422, "argv[0]"),
        (json!({"argv": ["echo", "a\u{0}b"]}), 422, "argv[1]"),
        (json!({"argv": ["env"], "environment": {"1BAD": "x"}}), 422, "environment.1BAD"),
        (json!({"argv": ["true"], "timeout_seconds": 0}), 422, "timeout_seconds"),
        (json!({"argv": ["true"], "timeout_seconds": 86401}), 422, "timeout_seconds"),
        (json!({"argv": ["true"], "working_directory": "tmp"}), 422, "working_directory"),
        (json!({"argv": ["true"], "shell": true}), 422, "unknown field `shell`"),
        (json!({"timeout_seconds": 5}), 422, "missing field `argv`"),
        (json!({"argv": "ls -l"}), 422, "argv"),
    ] {
        let answer = api.post(&path, body.clone());
        assert_eq!(answer.status, status, "{body}: {:?}", answer.body);
        let field = answer.body["error"]["details"]["field"].as_str().unwrap_or_default();
        assert!(field == field_or_text || answer.error_message().contains(field_or_text), "{body}: {:?}", answer.body);
    }
    let many: Vec<String> = (0..4097).map(|n| n.to_string()).collect();
    let too_many = api.post(&path, json!({"argv": many}));
    assert_eq!(too_many.body["error"]["details"]["field"], "argv", "{:?}", too_many.body);
    let not_json = api.raw("POST", &path, Some("application/json"), Some(b"{argv".to_vec()));
    assert_eq!((not_json.status, not_json.error_code()), (400, "bad_request"));
    let unknown = api.post("/systems/no-such-system/commands", json!({"argv": ["true"]}));
    assert_eq!(unknown.status, 404);

    // Only operators and administrators may run commands; a viewer's refusal is audited.
    assert_eq!(api.post("/users", json!({"name": "vera", "role": "viewer"})).status, 201);
    let viewer_token =
        api.post("/tokens", json!({"name": "t", "user": "vera"})).body["secret"].as_str().unwrap().to_string();
    let refused = api.with_token(Some(&viewer_token)).post(&path, json!({"argv": ["true"]}));
    assert_eq!((refused.status, refused.error_code()), (403, "forbidden"));

    let records = api.get("/audit?action=system.command&limit=100").body["items"].as_array().unwrap().clone();
    let fed_record = records
        .iter()
        .find(|record| record["details"]["environment"] == json!(["TOKEN_VALUE"]))
        .expect("the command with an environment is audited");
    assert_eq!(fed_record["outcome"], "success");
    assert_eq!(fed_record["actor"], "admin");
    assert_eq!(fed_record["details"]["argv"][0], "sh");
    assert_eq!(fed_record["details"]["exit_code"], 0);
    assert_eq!(fed_record["details"]["system_id"], id.as_str());
    assert_eq!(fed_record["details"]["stdin_bytes"], secret_input.len() + 1);
    assert!(records.iter().any(|r| r["outcome"] == "failure" && r["actor"] == "vera"), "{records:?}");
    assert!(records.iter().any(|r| r["details"]["error"]["code"] == "validation_failed"), "{records:?}");
    let capped = records.iter().find(|r| r["details"]["argv"][0] == "0").expect("the 4097 arguments are audited");
    assert_eq!(capped["details"]["argv"].as_array().unwrap().len(), 51, "50 arguments and a note");
    let everything = serde_json::to_string(&records).unwrap();
    assert!(!everything.contains(secret_value), "an environment value is in the audit trail");
    assert!(!everything.contains(secret_input), "the command's input is in the audit trail");

    // An offline system: a clear conflict, not a wait.
    drop(agent);
    eventually("offline", WAIT, || {
        (server.api().get(&format!("/systems/{id}")).body["state"] == "offline").then_some(())
    });
    let offline = api.post(&path, json!({"argv": ["true"]}));
    assert_eq!((offline.status, offline.error_code()), (409, "conflict"), "{:?}", offline.body);
    assert_eq!(offline.body["error"]["details"]["reason"], "system_offline");
    assert!(offline.error_message().contains(&name) && offline.error_message().contains("not connected"));
}

#[test]
fn steward_run_prints_the_streams_and_exits_with_the_command() {
    let temp = tempfile::tempdir().unwrap();
    let (server, agent, _id, name) = server_with_agent(temp.path());

    let output = server.cli(&["run", &name, "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "err\n");

    let output = server.cli(&[
        "run",
        &name,
        "--env",
        "GREETING=hi there",
        "-e",
        "EMPTY=",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING[$EMPTY]\"",
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hi there[]\n");

    // Input from the CLI's own standard input.
    let mut child = Command::new(support::steward_binary())
        .args(["run", &name, "--stdin", "-", "--", "tr", "a-z", "A-Z"])
        .env("STEWARD_SERVER", &server.api_url)
        .env("STEWARD_TOKEN", &server.token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "SHOUT\n");

    let output = server.cli(&["run", &name, "--timeout", "1", "--", "sleep", "600"]);
    assert_eq!(output.status.code(), Some(124));
    assert!(String::from_utf8_lossy(&output.stderr).contains("still running after 1 seconds and was killed"));

    let output = server.cli(&["run", &name, "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(output.status.code(), Some(128 + 15));
    assert!(String::from_utf8_lossy(&output.stderr).contains("killed by signal 15"));

    let output = server.cli(&["--output", "json", "run", &name, "--", "sh", "-c", "printf x; exit 2"]);
    assert_eq!(output.status.code(), Some(2));
    let outcome: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((outcome["stdout"].clone(), outcome["exit_code"].clone()), (json!("x"), json!(2)));

    // Failures of steward itself exit with 255, so they are not taken for the command's own.
    let output = server.cli(&["run", &name, "--", "steward-no-such-program"]);
    assert_eq!(output.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&output.stderr).contains("\"steward-no-such-program\""));
    let output = server.cli(&["run", &name, "--env", "1BAD=x", "--", "true"]);
    assert_eq!(output.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&output.stderr).contains("environment.1BAD"));

    drop(agent);
    eventually("offline", WAIT, || {
        (server.api().get(&format!("/systems/{name}")).body["state"] == "offline").then_some(())
    });
    let output = server.cli(&["run", &name, "--", "true"]);
    assert_eq!(output.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not connected") && stderr.contains(&name), "{stderr}");
}
