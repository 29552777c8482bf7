//! Scheduled jobs end to end, with real agents on loopback: a job on a group records a result per target (an
//! offline member fails with the reason), one-off and cron jobs run by themselves, bad input is refused naming
//! the field, runs missed while the server was down follow their policy, and a run the server's stop cut short
//! is recorded as interrupted.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Agent, Server, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// Starts an agent and waits until its system is online; returns it with the system's name.
fn online_agent(server: &Server, dir: &std::path::Path) -> (Agent, String) {
    let agent = Agent::start(&server.api_url, Some(&server.enrollment_token(1)), dir);
    let id = eventually("the agent enrolls", WAIT, || agent.system_id());
    let name = eventually("the system is online", WAIT, || {
        let system = server.api().get(&format!("/systems/{id}")).body;
        (system["state"] == "online").then(|| system["name"].as_str().unwrap().to_owned())
    });
    (agent, name)
}

fn in_seconds(seconds: i64) -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    steward_types::api::Timestamp(millis + seconds * 1000).to_string()
}

fn runs(server: &Server, job: &str) -> Vec<Value> {
    server.api().get(&format!("/jobs/{job}/runs")).body["items"].as_array().cloned().unwrap_or_default()
}

fn finished_run(server: &Server, job: &str) -> Value {
    let id = eventually(&format!("a run of {job} finishes"), WAIT, || {
        runs(server, job)
            .into_iter()
            .find(|run| run["state"] != "running")
            .map(|run| run["id"].as_str().unwrap().to_owned())
    });
    server.api().get(&format!("/job-runs/{id}")).body
}

#[test]
fn a_job_runs_on_a_group_by_itself_and_on_demand_with_a_result_per_target() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start();
    let api = server.api();
    let (_first, first) = online_agent(&server, &temp.path().join("a1"));
    let (_second, second) = online_agent(&server, &temp.path().join("a2"));
    let (mut gone, third) = online_agent(&server, &temp.path().join("a3"));
    gone.child.kill().unwrap();
    gone.child.wait().unwrap();
    eventually("the third system is offline", WAIT, || {
        (api.get(&format!("/systems/{third}")).body["state"] == "offline").then_some(())
    });
    assert_eq!(api.post("/groups", json!({"name": "web"})).status, 201);
    let added = api.post("/groups/web/members", json!({"systems": [first, second, third]}));
    assert!(added.status < 300, "{:#}", added.body);

    // Bad input names the field.
    let command = json!({"kind": "command", "command": {"argv": ["sh", "-c", "echo hi"]}});
    let group = json!({"kind": "group", "group": "web"});
    let refused = |body: Value, field: &str, text: &str| {
        let answer = api.post("/jobs", body);
        assert_eq!(answer.status, 422, "{:#}", answer.body);
        assert_eq!(answer.body["error"]["details"]["field"], field, "{:#}", answer.body);
        assert!(answer.error_message().contains(text), "{:#}", answer.body);
    };
    let job =
        |name: &str, schedule: Value| json!({"name": name, "task": command, "target": group, "schedule": schedule});
    refused(job("bad", json!({"kind": "cron", "expression": "61 * * * *"})), "schedule.expression", "minute: 61");
    refused(
        job("bad", json!({"kind": "cron", "expression": "0 3 * * *", "time_zone": "Mars/Olympus"})),
        "schedule.time_zone",
        "time zone",
    );
    refused(job("bad", json!({"kind": "once", "at": "2020-01-01T00:00:00Z"})), "schedule.at", "in the past");
    refused(
        json!({"name": "bad", "task": command, "target": {"kind": "group", "group": "nope"}, "schedule": {"kind": "manual"}}),
        "target.group",
        "nope",
    );
    refused(
        json!({"name": "bad", "task": {"kind": "command", "command": {"argv": []}}, "target": group, "schedule": {"kind": "manual"}}),
        "task.command.argv",
        "empty",
    );
    assert_eq!(api.get("/jobs").body["items"], json!([]), "nothing created by refusals");

    // On demand, through the CLI: two members answer, the offline one fails with the reason; exit code 1.
    server.cli_ok(&["jobs", "create", "hello", "--group", "web", "--manual", "--", "sh", "-c", "echo hi from $0"]);
    let output = server.cli(&["jobs", "run", "hello"]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("3 (2 succeeded, 1 failed)"), "{text}");
    let run = finished_run(&server, "hello");
    assert_eq!(run["state"], "partial", "{run:#}");
    assert_eq!(run["trigger"], "manual");
    for result in run["results"].as_array().unwrap() {
        if result["system"] == third.as_str() {
            assert_eq!(result["state"], "failed", "{result:#}");
            assert!(result["error"].as_str().unwrap().contains("not connected"), "{result:#}");
        } else {
            assert_eq!(result["state"], "succeeded", "{result:#}");
            assert_eq!(result["stdout"], "hi from sh\n", "{result:#}");
        }
    }
    let events = api.get("/events?type=job.failed").body;
    assert!(events["items"][0]["message"].as_str().unwrap().contains(&third), "{events:#}");

    // By itself: once, a few seconds from now, on one system; a cron job knows its next time.
    let once = json!({"name": "soon", "task": command, "target": {"kind": "system", "system": first}, "schedule": {"kind": "once", "at": in_seconds(2)}});
    assert_eq!(api.post("/jobs", once).status, 201);
    let run = finished_run(&server, "soon");
    assert_eq!((run["trigger"].as_str(), run["state"].as_str()), (Some("schedule"), Some("succeeded")), "{run:#}");
    assert_eq!(api.get("/jobs/soon").body["next_run_at"], Value::Null, "a one-off job runs once");
    let cron = job("often", json!({"kind": "cron", "expression": "*/5 * * * *", "time_zone": "Europe/Berlin"}));
    let created = api.post("/jobs", cron);
    assert_eq!(created.status, 201, "{:#}", created.body);
    let next = created.body["next_run_at"].as_str().unwrap();
    assert!(next > in_seconds(0).as_str() && next <= in_seconds(301).as_str(), "{next}");
    let disabled = api.post("/jobs/often/enabled", json!({"enabled": false}));
    assert_eq!(disabled.body["next_run_at"], Value::Null, "{:#}", disabled.body);
    assert_eq!(api.delete("/jobs/often").status, 204);
}

#[test]
fn missed_and_interrupted_runs_after_a_restart() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut server = Server::start_in(&data_dir, &[]);
    let (_agent, system) = online_agent(&server, &temp.path().join("agent"));
    let api = server.api();
    let target = json!({"kind": "system", "system": system});
    let command = |argv: Value| json!({"kind": "command", "command": {"argv": argv, "timeout_seconds": 60}});
    for (name, missed) in [("catch-up", "run_once"), ("skipper", "skip")] {
        let body = json!({"name": name, "task": command(json!(["true"])), "target": target, "missed_runs": missed,
            "schedule": {"kind": "once", "at": in_seconds(4)}});
        assert_eq!(api.post("/jobs", body).status, 201);
    }
    let long = json!({"name": "long", "task": command(json!(["sleep", "30"])), "target": target, "schedule": {"kind": "manual"}});
    assert_eq!(api.post("/jobs", long).status, 201);
    assert_eq!(api.post("/jobs/long/run", json!({})).status, 202);
    eventually("the long run is under way", WAIT, || {
        (server.api().get(&format!("/job-runs/{}", runs(&server, "long")[0]["id"].as_str()?)).body["results"][0]["state"]
            == "running")
            .then_some(())
    });
    server.kill();
    std::thread::sleep(Duration::from_secs(5));
    let server = Server::start_in(&data_dir, &[]);

    let run = finished_run(&server, "catch-up");
    assert_eq!(run["trigger"], "missed", "{run:#}");
    assert_eq!(run["results"].as_array().unwrap().len(), 1, "{run:#}");
    let skipped = runs(&server, "skipper");
    assert_eq!(skipped.len(), 1, "{skipped:#?}");
    assert_eq!((skipped[0]["state"].as_str(), skipped[0]["targets"].as_u64()), (Some("skipped"), Some(0)));
    let interrupted = server.api().get(&format!("/job-runs/{}", runs(&server, "long")[0]["id"].as_str().unwrap())).body;
    assert_eq!(interrupted["state"], "interrupted", "{interrupted:#}");
    assert!(interrupted["results"][0]["error"].as_str().unwrap().contains("server stopped"), "{interrupted:#}");
}
