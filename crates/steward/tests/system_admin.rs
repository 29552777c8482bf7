//! Administration of running systems end to end, against a real server and real `steward-agent` processes on
//! loopback: processes (listed, signalled by PID with their start time, signalled by name on a group), services
//! (init scripts of a scratch directory the agents are pointed at, never the host's), the network configuration,
//! and the facts tree. Every process the tests signal is a child of the test itself.

#![allow(clippy::unwrap_used)] // Test helpers fail the test on any surprise.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Agent, Server, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// Starts an agent (with `init_directory` for its services, if given) and waits until its system is online;
/// returns the agent, the system's ID and name.
fn online_agent(server: &Server, dir: &Path, init_directory: Option<&Path>) -> (Agent, String, String) {
    let token = server.enrollment_token(1);
    let mut command = Command::new(support::agent_binary());
    if let Some(directory) = init_directory {
        command.env("STEWARD_AGENT_INIT_DIR", directory);
    }
    let agent = Agent::start_with(command, &server.api_url, Some(&token), dir);
    let id = eventually("the agent enrolls", WAIT, || agent.system_id());
    let name = eventually("the system is online", WAIT, || {
        let system = server.api().get(&format!("/systems/{id}")).body;
        (system["state"] == "online").then(|| system["name"].as_str().unwrap().to_string())
    });
    (agent, id, name)
}

fn wait_offline(server: &Server, id: &str) {
    eventually("the system is offline", WAIT, || {
        (server.api().get(&format!("/systems/{id}")).body["state"] == "offline").then_some(())
    });
}

fn find_process(listing: &Value, pid: u32) -> Option<Value> {
    listing["processes"].as_array().unwrap().iter().find(|process| process["pid"] == pid).cloned()
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn processes_are_listed_and_only_the_listed_one_is_signalled() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start();
    let (agent, id, name) = online_agent(&server, &temp.path().join("agent"), None);
    let api = server.api();
    let mut sleep = Command::new("sleep").arg("600").spawn().unwrap();
    let pid = sleep.id();

    let listing = api.get(&format!("/systems/{id}/processes"));
    assert_eq!(listing.status, 200, "{:?}", listing.body);
    assert!(listing.body["sample_ms"].as_u64().unwrap() >= 500);
    let process = find_process(&listing.body, pid).expect("the test's sleep is listed");
    assert_eq!(process["name"], "sleep");
    assert_eq!(process["command"], "sleep 600");
    assert_eq!(process["ppid"], std::process::id());
    assert!(process["rss_bytes"].as_u64().unwrap() > 0);
    assert!(process["cpu_percent"].is_number() && process["started_at"].is_string());
    let start_time = process["start_time"].as_u64().unwrap();
    let agent_pid = agent.child.id();
    assert!(find_process(&listing.body, agent_pid).is_some(), "the agent lists itself");

    // A start time other than the listed one: the PID is taken to be another process now, and nothing is sent.
    let signal_path = format!("/systems/{name}/processes/{pid}/signal");
    let stale = api.post(&signal_path, json!({"signal": "KILL", "start_time": start_time + 1}));
    assert_eq!((stale.status, stale.error_code()), (409, "conflict"), "{:?}", stale.body);
    assert!(stale.error_message().contains(&format!("process {pid} is no longer the one listed")), "{:?}", stale.body);
    assert!(stale.error_message().starts_with(&name), "the error names the system: {:?}", stale.body);
    assert!(sleep.try_wait().unwrap().is_none(), "the sleep was signalled despite the stale start time");

    // Process 1 and the agent itself are refused; bad input is refused naming the field.
    let init = api.post(&format!("/systems/{id}/processes/1/signal"), json!({"start_time": 1}));
    assert_eq!(init.status, 422, "{:?}", init.body);
    assert!(init.error_message().contains("process 1"), "{:?}", init.body);
    let own_start = find_process(&listing.body, agent_pid).unwrap()["start_time"].as_u64().unwrap();
    let own = api.post(&format!("/systems/{id}/processes/{agent_pid}/signal"), json!({"start_time": own_start}));
    assert_eq!(own.status, 409, "{:?}", own.body);
    assert!(own.error_message().contains("the Steward agent itself"), "{:?}", own.body);
    for (path, body, field) in [
        (signal_path.clone(), json!({"signal": "SEGV", "start_time": start_time}), "signal"),
        (signal_path.clone(), json!({"signal": "65", "start_time": start_time}), "signal"),
        (format!("/systems/{id}/processes/0/signal"), json!({"start_time": 0}), "pid"),
        (format!("/systems/{id}/processes/4194305/signal"), json!({"start_time": 0}), "pid"),
    ] {
        let answer = api.post(&path, body.clone());
        assert_eq!(answer.status, 422, "{path} {body}: {:?}", answer.body);
        assert_eq!(answer.body["error"]["details"]["field"], field, "{:?}", answer.body);
    }
    let missing_time = api.post(&signal_path, json!({"signal": "TERM"}));
    assert_eq!(missing_time.status, 422, "{:?}", missing_time.body);
    assert!(missing_time.error_message().contains("start_time"), "{:?}", missing_time.body);
    assert_eq!(api.post(&format!("/systems/{id}/processes/-5/signal"), json!({"start_time": 0})).status, 400);
    assert!(sleep.try_wait().unwrap().is_none());

    // The CLI: sorted and filtered listings, then a kill by PID that looks the start time up itself.
    let listed = server.cli_json(&["processes", "list", &name, "--sort", "rss"]);
    let sizes: Vec<u64> =
        listed["processes"].as_array().unwrap().iter().map(|p| p["rss_bytes"].as_u64().unwrap()).collect();
    assert!(sizes.windows(2).all(|pair| pair[0] >= pair[1]), "sorted by RSS, largest first");
    let user = process["user"].as_str().unwrap();
    let mine = server.cli_json(&["processes", "list", &name, "--user", user]);
    assert!(mine["processes"].as_array().unwrap().iter().all(|p| p["user"] == user));
    let table = server.cli_ok(&["processes", "list", &name, "--sort", "cpu"]);
    assert!(table.starts_with("PID"), "{table}");
    assert!(table.lines().any(|line| line.starts_with(&format!("{pid} ")) && line.ends_with("sleep 600")), "{table}");

    let killed = server.cli_ok(&["processes", "kill", &name, &pid.to_string(), "--signal", "TERM"]);
    assert_eq!(killed, format!("Sent signal 15 to process {pid} (sleep) on {name}.\n"));
    assert_eq!(sleep.wait().unwrap().signal(), Some(15));
    let after = api.get(&format!("/systems/{id}/processes")).body;
    assert!(find_process(&after, pid).is_none(), "the reaped sleep is gone from the listing");
    let gone = server.cli(&["processes", "kill", &name, &pid.to_string()]);
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains(&format!("has no process {pid}")), "{}", stderr(&gone));
    let usage = server.cli(&["processes", "kill", &name]);
    assert!(stderr(&usage).contains("give a system and a PID"), "{}", stderr(&usage));

    // Every signal is audited, refusals too; listings are not.
    let records = api.get("/audit?action=system.process_signal&limit=100").body["items"].as_array().unwrap().clone();
    let success = records.iter().find(|r| r["outcome"] == "success").expect("the kill is audited");
    assert_eq!(success["details"]["pid"], pid);
    assert_eq!(success["details"]["signal"], "TERM");
    assert_eq!(success["details"]["system_id"], id.as_str());
    assert_eq!(success["details"]["result"]["signalled"], 1);
    assert!(records.iter().any(|r| r["outcome"] == "failure"
        && r["details"]["error"]["message"].as_str().unwrap().contains("no longer the one listed")));
    assert!(records.iter().any(|r| r["details"]["error"]["code"] == "validation_failed"));

    // An offline system: a clear conflict.
    drop(agent);
    wait_offline(&server, &id);
    let offline = api.get(&format!("/systems/{id}/processes"));
    assert_eq!((offline.status, offline.error_code()), (409, "conflict"), "{:?}", offline.body);
    assert_eq!(offline.body["error"]["details"]["reason"], "system_offline");
}

/// A scratch init directory: `demo` keeps its state in `demo.state` and counts its starts in `demo.log`;
/// `broken` fails every action with a message on standard error.
fn scratch_init(dir: &Path) -> (PathBuf, PathBuf) {
    let init = dir.join("init.d");
    std::fs::create_dir_all(&init).unwrap();
    let state = dir.join("demo.state");
    let demo = format!(
        "#!/bin/sh\nSTATE={state}\nLOG={log}\ncase \"$1\" in\n\
         start) echo running > \"$STATE\"; echo start >> \"$LOG\"; echo \"demo started\" ;;\n\
         stop) echo stopped > \"$STATE\"; echo stop >> \"$LOG\"; echo \"demo stopped\" ;;\n\
         restart) echo running > \"$STATE\"; echo restart >> \"$LOG\"; echo \"demo restarted\" ;;\n\
         status) [ \"$(cat \"$STATE\" 2>/dev/null)\" = running ] && exit 0; exit 3 ;;\n\
         *) echo \"usage: demo start|stop|restart|status\" >&2; exit 2 ;;\nesac\n",
        state = state.display(),
        log = dir.join("demo.log").display(),
    );
    let broken = "#!/bin/sh\n[ \"$1\" = status ] && exit 3\necho \"broken: cannot $1: /etc/broken.conf is missing\" >&2\nexit 6\n";
    for (name, text) in [("demo", demo.as_str()), ("broken", broken)] {
        std::fs::write(init.join(name), text).unwrap();
        std::fs::set_permissions(init.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (init, state)
}

fn service_states(listing: &Value) -> Vec<(String, String)> {
    listing["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["state"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn services_of_a_scratch_init_directory_are_listed_started_stopped_and_restarted() {
    let temp = tempfile::tempdir().unwrap();
    let (init, state) = scratch_init(temp.path());
    let server = Server::start();
    let (_agent, id, name) = online_agent(&server, &temp.path().join("agent"), Some(&init));
    let api = server.api();
    let read_state = || std::fs::read_to_string(&state).unwrap_or_default().trim().to_string();

    let listing = api.get(&format!("/systems/{id}/services"));
    assert_eq!(listing.status, 200, "{:?}", listing.body);
    assert_eq!(listing.body["manager"], "init_scripts");
    assert_eq!(listing.body["directory"], init.display().to_string());
    assert_eq!(service_states(&listing.body), [("broken".into(), "stopped".into()), ("demo".into(), "stopped".into())]);

    let started = api.post(&format!("/systems/{id}/services/demo/start"), json!({}));
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_eq!((started.body["exit_code"].clone(), started.body["state_after"].clone()), (json!(0), json!("running")));
    assert_eq!(started.body["output"], "demo started\n");
    assert_eq!(read_state(), "running");
    let listed = server.cli_ok(&["services", "list", &name]);
    assert!(listed.lines().any(|line| line.starts_with("demo") && line.contains("running")), "{listed}");
    assert!(listed.starts_with(&format!("Services of {name} (init_scripts in {})", init.display())), "{listed}");

    let restarted = server.cli_ok(&["services", "restart", &name, "demo"]);
    assert_eq!(restarted, format!("Restarted demo on {name}: now running.\ndemo restarted\n"));
    let stopped = server.cli_json(&["services", "stop", &name, "demo"]);
    assert_eq!((stopped["state_after"].clone(), stopped["action"].clone()), (json!("stopped"), json!("stop")));
    assert_eq!(read_state(), "stopped");
    let log = std::fs::read_to_string(temp.path().join("demo.log")).unwrap();
    assert_eq!(log, "start\nrestart\nstop\n");

    // A failed action reports exactly what the script printed, and its exit code.
    let failed = api.post(&format!("/systems/{id}/services/broken/start"), json!({}));
    assert_eq!((failed.status, failed.error_code()), (409, "conflict"), "{:?}", failed.body);
    let details = &failed.body["error"]["details"];
    assert_eq!(details["reason"], "service_action_failed");
    assert_eq!(details["exit_code"], 6);
    assert_eq!(details["output"], "broken: cannot start: /etc/broken.conf is missing\n");
    assert!(failed.error_message().contains("failed with exit code 6: broken: cannot start"), "{:?}", failed.body);
    let cli_failed = server.cli(&["services", "start", &name, "broken"]);
    assert!(!cli_failed.status.success());
    assert!(stderr(&cli_failed).contains("/etc/broken.conf is missing"), "{}", stderr(&cli_failed));

    // Unknown services and bad names or actions are refused before anything runs.
    let absent = api.post(&format!("/systems/{id}/services/absent/start"), json!({}));
    assert_eq!(absent.status, 409, "{:?}", absent.body);
    assert!(absent.error_message().contains("there is no service \"absent\""), "{:?}", absent.body);
    for (service, action, field) in [
        ("demo", "reload", "action"),
        ("-demo", "start", "service"),
        (".hidden", "start", "service"),
        ("a%2Fb", "start", "service"),
        ("a%20b", "stop", "service"),
    ] {
        let answer = api.post(&format!("/systems/{id}/services/{service}/{action}"), json!({}));
        assert_eq!(answer.status, 422, "{service} {action}: {:?}", answer.body);
        assert_eq!(answer.body["error"]["details"]["field"], field, "{:?}", answer.body);
    }
    assert_eq!(read_state(), "stopped", "nothing ran for the refused requests");
    let usage = server.cli(&["services", "start", &name]);
    assert!(stderr(&usage).contains("give the system and the service"), "{}", stderr(&usage));

    let records = api.get("/audit?action=system.service_action&limit=100").body["items"].as_array().unwrap().clone();
    assert_eq!(records.iter().filter(|r| r["outcome"] == "success").count(), 3, "{records:?}");
    assert!(records.iter().any(|r| r["outcome"] == "failure" && r["details"]["service"] == "broken"));
}

#[test]
fn group_actions_report_one_result_per_member() {
    let temp = tempfile::tempdir().unwrap();
    let (init_a, state_a) = scratch_init(&temp.path().join("a"));
    let (init_b, state_b) = scratch_init(&temp.path().join("b"));
    let server = Server::start();
    let (_agent_a, _id_a, name_a) = online_agent(&server, &temp.path().join("agent-a"), Some(&init_a));
    let (agent_b, id_b, name_b) = online_agent(&server, &temp.path().join("agent-b"), Some(&init_b));
    let api = server.api();
    assert_eq!(api.post("/groups", json!({"name": "pair"})).status, 201);
    assert_eq!(api.post("/groups/pair/members", json!({"systems": [name_a, name_b]})).status, 200);
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default().trim().to_string();

    let started = api.post("/groups/pair/services/demo/start", json!({}));
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_eq!((started.body["succeeded"].clone(), started.body["failed"].clone()), (json!(2), json!(0)));
    assert_eq!((read(&state_a), read(&state_b)), ("running".into(), "running".into()));
    let failed = api.post("/groups/pair/services/broken/restart", json!({}));
    assert_eq!(failed.status, 200, "{:?}", failed.body);
    assert_eq!(failed.body["failed"], 2);
    for target in failed.body["targets"].as_array().unwrap() {
        assert_eq!(target["outcome"]["exit_code"], 6, "the failed outcome is kept: {target}");
        assert_eq!(target["outcome"]["output"], "broken: cannot restart: /etc/broken.conf is missing\n");
        assert!(target["error"]["message"].as_str().unwrap().contains("exit code 6"), "{target}");
    }

    // One member goes offline: it gets its own error, the other is done.
    drop(agent_b);
    wait_offline(&server, &id_b);
    let output = server.cli(&["services", "stop", "--group", "pair", "demo"]);
    assert_eq!(output.status.code(), Some(1), "a member failed: {}", stderr(&output));
    let table = stdout(&output);
    assert!(table.lines().any(|l| l.starts_with(&name_a) && l.contains(" ok ") && l.contains("stopped")), "{table}");
    assert!(table.lines().any(|l| l.starts_with(&name_b) && l.contains("failed") && l.contains("not connected")));
    assert_eq!((read(&state_a), read(&state_b)), ("stopped".into(), "running".into()));

    // Signalling by name: two children of the test under a name no other process has.
    let program = temp.path().join("steward-grp-sleeper");
    std::fs::copy("/bin/sleep", &program).unwrap();
    let mut sleepers: Vec<_> = (0..2).map(|_| spawn_retrying(&program)).collect();
    let result = api.post("/groups/pair/processes/signal", json!({"name": "steward-grp-sleeper", "signal": "USR1"}));
    assert_eq!(result.status, 200, "{:?}", result.body);
    let targets = result.body["targets"].as_array().unwrap();
    let online = targets.iter().find(|t| t["system"] == name_a.as_str()).unwrap();
    assert_eq!((online["outcome"]["matched"].clone(), online["outcome"]["signalled"].clone()), (json!(2), json!(2)));
    let offline = targets.iter().find(|t| t["system"] == name_b.as_str()).unwrap();
    assert_eq!(offline["outcome"], Value::Null);
    assert_eq!(offline["error"]["details"]["reason"], "system_offline", "{offline}");
    for sleeper in &mut sleepers {
        assert_eq!(sleeper.wait().unwrap().signal(), Some(10), "SIGUSR1 ends sleep");
    }
    let via_cli = server.cli(&["processes", "kill", "--group", "pair", "--name", "steward-grp-sleeper"]);
    assert_eq!(via_cli.status.code(), Some(1));
    let table = stdout(&via_cli);
    assert!(table.lines().any(|l| l.starts_with(&name_a) && l.split_whitespace().nth(1) == Some("0")), "{table}");
    for (body, field) in [
        (json!({"name": "a/b"}), "name"),
        (json!({"name": "sleep", "signal": "NOPE"}), "signal"),
        (json!({"name": ""}), "name"),
    ] {
        let answer = api.post("/groups/pair/processes/signal", body.clone());
        assert_eq!(answer.status, 422, "{body}: {:?}", answer.body);
        assert_eq!(answer.body["error"]["details"]["field"], field);
    }
    assert_eq!(api.post("/groups/nope/services/demo/start", json!({})).status, 404);

    let records = api.get("/audit?action=group.service_action&limit=10").body["items"].as_array().unwrap().clone();
    let partial = records.iter().find(|r| r["details"]["result"]["failed"] == 1).expect("the partial stop is audited");
    assert_eq!(partial["details"]["result"]["succeeded"], 1);
    let targets = partial["details"]["result"]["targets"].as_array().unwrap();
    assert!(targets.iter().any(|t| t["system"] == name_b.as_str() && t["error"].is_string()), "{targets:?}");
    assert!(records.iter().any(|r| r["target"] == "nope" && r["outcome"] == "failure"));
    let signals = api.get("/audit?action=group.process_signal&limit=10").body["items"].as_array().unwrap().clone();
    assert!(signals.iter().any(|r| r["details"]["name"] == "steward-grp-sleeper" && r["outcome"] == "success"));
}

#[test]
fn network_configuration_and_facts_tree() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start();
    let (_agent, id, name) = online_agent(&server, &temp.path().join("agent"), None);
    let api = server.api();

    let network = api.get(&format!("/systems/{id}/network"));
    assert_eq!(network.status, 200, "{:?}", network.body);
    let lo = network.body["interfaces"].as_array().unwrap().iter().find(|i| i["name"] == "lo").expect("lo").clone();
    assert!(lo["addresses"].as_array().unwrap().contains(&json!("127.0.0.1/8")), "{lo}");
    assert!(network.body["routes"].is_array() && network.body["dns"]["nameservers"].is_array());
    let shown = server.cli_ok(&["network", "show", &name]);
    assert!(shown.lines().any(|line| line.starts_with("lo ") && line.contains("127.0.0.1/8")), "{shown}");
    assert!(shown.contains("\nRoutes:\n") && shown.contains("\nDNS:\n"), "{shown}");

    // The facts come from the stored inventory: wait for the first report.
    let facts = eventually("the inventory is reported", WAIT, || {
        let answer = api.get(&format!("/systems/{id}/facts"));
        (answer.status == 200 && !answer.body["facts"]["os"].is_null()).then_some(answer.body)
    });
    let pretty_name = std::fs::read_to_string("/etc/os-release")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|value| value.trim_matches('"').to_string())
        .expect("PRETTY_NAME");
    assert_eq!(facts["system"], name.as_str());
    assert_eq!(facts["facts"]["os"]["pretty_name"], pretty_name.as_str());
    assert_eq!(facts["facts"]["state"], "online");
    assert!(facts["inventory_updated_at"].is_string());
    assert_eq!(server.cli_ok(&["systems", "facts", &name, "os.pretty_name"]), format!("{pretty_name}\n"));
    let tree = server.cli_ok(&["systems", "facts", &name]);
    assert!(tree.contains("\n  os:\n") && tree.contains(&format!("    pretty_name: {pretty_name}\n")), "{tree}");
    let subtree = server.cli_json(&["systems", "facts", &name, "interface.lo"]);
    assert!(subtree["addresses"].as_array().unwrap().contains(&json!("127.0.0.1/8")), "{subtree}");
    let missing = server.cli(&["systems", "facts", &name, "os.nope"]);
    assert!(stderr(&missing).contains("has no fact \"os.nope\""), "{}", stderr(&missing));
    assert_eq!(api.get("/systems/no-such-system/facts").status, 404);
}

/// Starts a freshly copied program: another thread forking at the moment of the copy may briefly hold it open for
/// writing (`ETXTBSY`).
fn spawn_retrying(program: &Path) -> std::process::Child {
    for _ in 0..50 {
        match Command::new(program).arg("600").stdout(Stdio::null()).spawn() {
            Ok(child) => return child,
            Err(error) if error.raw_os_error() == Some(26) => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => panic!("cannot start {}: {error}", program.display()),
        }
    }
    panic!("{} stayed busy", program.display());
}
