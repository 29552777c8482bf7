//! Resource monitors end to end with a real agent: a filesystem the test mounts (a 1 MiB tmpfs) filled past a
//! monitor's threshold raises an event, emptying it past the clear threshold clears it; the samples are queried
//! back; an agent that goes away raises `agent.offline`; bad monitors are refused naming the field; `/metrics`
//! shows the server's own figures. Needs root (mount).
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::{Agent, Server, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// A tmpfs of 1 MiB mounted at `path`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status =
            Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "steward-test"]).arg(path).status().unwrap();
        assert!(status.success(), "mounting a tmpfs needs root (the test suite runs as root)");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A plain HTTP GET on loopback (the answer's whole text, headers included).
fn http_get(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn events(server: &Server, event_type: &str) -> Vec<serde_json::Value> {
    server.api().get(&format!("/events?type={event_type}")).body["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_filled_filesystem_raises_and_clears_and_an_agent_going_away_raises() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start();
    let api = server.api();
    let mut agent = Agent::start(&server.api_url, Some(&server.enrollment_token(1)), &temp.path().join("agent"));
    let id = eventually("the agent enrolls", WAIT, || agent.system_id());
    let system = eventually("the system is online", WAIT, || {
        let found = api.get(&format!("/systems/{id}")).body;
        (found["state"] == "online").then(|| found["name"].as_str().unwrap().to_owned())
    });
    let mount = temp.path().join("fill");
    let _tmpfs = Tmpfs::mount(&mount);
    let mount_text = mount.display().to_string();

    let refused = |body: serde_json::Value, field: &str, text: &str| {
        let answer = api.post("/monitors", body);
        assert_eq!(answer.status, 422, "{:#}", answer.body);
        assert_eq!(answer.body["error"]["details"]["field"], field, "{:#}", answer.body);
        assert!(answer.error_message().contains(text), "{:#}", answer.body);
    };
    let target = json!({"kind": "system", "system": system});
    let monitor = |name: &str, metric: &str| {
        json!({"name": name, "target": target, "metric": metric, "comparison": ">", "threshold": 50.0,
            "clear_threshold": 30.0, "interval_seconds": 1})
    };
    refused(monitor("bad", "cpu.temperature"), "metric", "not a metric");
    refused(monitor("bad", "filesystem.used"), "metric", "mount point");
    let mut wrong_clear = monitor("bad", "memory.used");
    wrong_clear["clear_threshold"] = json!(60.0);
    refused(wrong_clear, "clear_threshold", "at or below");
    let mut zero = monitor("bad", "memory.used");
    zero["interval_seconds"] = json!(0);
    refused(zero, "interval_seconds", "1 to 86400");
    let mut nowhere = monitor("bad", "memory.used");
    nowhere["target"] = json!({"kind": "group", "group": "nope"});
    refused(nowhere, "target.group", "nope");
    assert_eq!(api.get("/monitors").body["items"], json!([]));

    // Through the CLI, as an operator would.
    server.cli_ok(&[
        "monitors",
        "create",
        "fill",
        "--system",
        &system,
        "--metric",
        &format!("filesystem.used:{mount_text}"),
        "--above",
        "50",
        "--clear",
        "30",
        "--interval",
        "1s",
        "--severity",
        "critical",
    ]);
    eventually("the first samples arrive", WAIT, || {
        let shown = api.get("/monitors/fill").body;
        (shown["states"][0]["last_value"].as_f64()? < 50.0).then_some(())
    });
    std::fs::write(mount.join("data"), vec![7u8; 700 * 1024]).unwrap();
    let raised = eventually("the monitor raises", WAIT, || events(&server, "monitor.raised").into_iter().next());
    assert_eq!(raised["severity"], "critical", "{raised:#}");
    assert_eq!(raised["source"], system.as_str(), "{raised:#}");
    assert_eq!(api.get("/monitors/fill").body["states"][0]["state"], "raised");
    std::fs::remove_file(mount.join("data")).unwrap();
    let cleared = eventually("the monitor clears", WAIT, || events(&server, "monitor.cleared").into_iter().next());
    assert!(cleared["message"].as_str().unwrap().contains("fill cleared"), "{cleared:#}");

    let series =
        server.cli_json(&["metrics", "query", &system, &format!("filesystem.used:{mount_text}"), "--since", "5m"]);
    let values: Vec<f64> =
        series["points"].as_array().unwrap().iter().map(|point| point["value"].as_f64().unwrap()).collect();
    assert!(values.iter().any(|value| *value > 50.0) && values.iter().any(|value| *value < 30.0), "{values:?}");
    let bad_query = api.get(&format!("/systems/{system}/metrics?metric=memory.used&since=soon"));
    assert_eq!(bad_query.status, 422, "{:#}", bad_query.body);

    let metrics = http_get(&server.api_url, "/metrics");
    let ingested: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("steward_samples_ingested_total "))
        .and_then(|value| value.parse().ok())
        .unwrap();
    assert!(ingested >= 3 && metrics.contains("steward_monitors 1\n"), "{metrics}");

    // An agent that goes away: agent.offline is evaluated on the server.
    let offline =
        json!({"name": "gone", "target": target, "metric": "agent.offline", "comparison": ">=", "threshold": 1.0});
    assert_eq!(api.post("/monitors", offline).status, 201);
    assert_eq!(server.cli(&["monitors", "delete", "fill"]).status.code(), Some(0));
    std::thread::sleep(Duration::from_secs(1));
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let gone = eventually("agent.offline raises", WAIT, || {
        events(&server, "monitor.raised")
            .into_iter()
            .find(|event| event["message"].as_str().unwrap_or("").contains("agent.offline"))
    });
    assert_eq!(gone["severity"], "warning", "{gone:#}");
    let offline = eventually("an agent.offline event", WAIT, || events(&server, "agent.offline").into_iter().next());
    assert_eq!(offline["source"], system.as_str(), "{offline:#}");
    assert!(events(&server, "agent.online").iter().any(|event| event["source"] == system.as_str()));
}
