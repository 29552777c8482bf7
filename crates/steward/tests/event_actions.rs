//! Event action plans end to end, against a real server: `job.failed` events (a manual job on an empty group, or
//! on an offline system) go to a webhook on loopback (signed, retried after a 500, an unreachable one retrying
//! with its error), to a real SMTP server on loopback (aiosmtpd, with STARTTLS and AUTH, and in clear), are counted
//! as duplicates and flapping, are suppressed by a maintenance window, and a delivery pending while the server is
//! killed is delivered after the restart. Bad plans and windows are refused naming the field. A monitor on a
//! real agent's system, in a group a plan filters on, reaches a webhook when it raises and when it clears.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{Agent, Server, eventually};

const WAIT: Duration = Duration::from_secs(60);

/// A server whose failed deliveries are retried after about a second (then two, four, ...).
fn start_server(data_dir: &Path) -> Server {
    Server::start_in(data_dir, &["--delivery-retry-seconds", "1"])
}

/// One request the test webhook received.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// An HTTP server on 127.0.0.1 that records every request and answers with the next queued status (200 when the
/// queue is empty).
struct Hook {
    address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

impl Hook {
    fn start(answers: &[u16]) -> Hook {
        Hook::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), answers)
    }

    fn start_on(listener: TcpListener, answers: &[u16]) -> Hook {
        let address = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(answers.iter().copied().collect::<VecDeque<_>>()));
        let (kept, queued) = (received.clone(), answers.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (kept, queued) = (kept.clone(), queued.clone());
                std::thread::spawn(move || {
                    let _ = answer(stream, &kept, &queued);
                });
            }
        });
        Hook { address, received, answers }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn answer(stream: TcpStream, kept: &Mutex<Vec<Received>>, queued: &Mutex<VecDeque<u16>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers.get("content-length").and_then(|length| length.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    kept.lock().unwrap().push(Received { headers, body });
    let status = queued.lock().unwrap().pop_front().unwrap_or(200);
    let mut stream = stream;
    write!(stream, "HTTP/1.1 {status} Status\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy")?;
    stream.flush()
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// HMAC-SHA256 (RFC 2104), written here again so the test does not trust the server's own.
fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let inner: Vec<u8> = block.iter().map(|byte| byte ^ 0x36).chain(message.iter().copied()).collect();
    let inner = Sha256::digest(&inner);
    let outer: Vec<u8> = block.iter().map(|byte| byte ^ 0x5c).chain(inner.iter().copied()).collect();
    Sha256::digest(&outer).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Creates an empty group and a manual job on it: each run fails ("ran on no system") and raises `job.failed`.
fn failing_job(server: &Server, job: &str) {
    let api = server.api();
    let group = format!("{job}-targets");
    assert_eq!(api.post("/groups", json!({"name": group})).status, 201);
    let body = json!({"name": job, "task": {"kind": "command", "command": {"argv": ["true"]}},
        "target": {"kind": "group", "group": group}, "schedule": {"kind": "manual"}});
    let created = api.post("/jobs", body);
    assert_eq!(created.status, 201, "{:#}", created.body);
}

/// Runs a job and waits for the run to finish (so its event is raised).
fn run_job(server: &Server, job: &str) {
    let api = server.api();
    let started = api.post(&format!("/jobs/{job}/run"), json!({}));
    assert_eq!(started.status, 202, "{:#}", started.body);
    let run = started.body["id"].as_str().unwrap().to_owned();
    eventually(&format!("the run of {job} finishes"), WAIT, || {
        (api.get(&format!("/job-runs/{run}")).body["state"] != "running").then_some(())
    });
}

fn deliveries(server: &Server, plan: &str) -> Vec<Value> {
    let answer = server.api().get(&format!("/deliveries?plan={plan}"));
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    answer.body["items"].as_array().cloned().unwrap_or_default()
}

fn create_plan(server: &Server, body: Value) -> Value {
    let answer = server.api().post("/event-action-plans", body);
    assert_eq!(answer.status, 201, "{:#}", answer.body);
    answer.body
}

#[test]
fn bad_plans_and_windows_are_refused_naming_the_field() {
    let temp = tempfile::tempdir().unwrap();
    let server = start_server(&temp.path().join("data"));
    let api = server.api();
    failing_job(&server, "doomed");
    let refused = |path: &str, body: Value, field: &str, text: &str| {
        let answer = api.post(path, body);
        assert_eq!(answer.status, 422, "{field}: {:#}", answer.body);
        assert_eq!(answer.body["error"]["details"]["field"], field, "{:#}", answer.body);
        assert!(answer.error_message().contains(text), "{field}: {:#}", answer.body);
    };
    let plan = |extra: Value| {
        let mut body = json!({"name": "bad", "actions": [{"kind": "log"}]});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let plans = "/event-action-plans";
    refused(plans, plan(json!({"actions": []})), "actions", "1 to 10");
    refused(
        plans,
        plan(json!({"actions": [{"kind": "webhook", "url": "ftp://example.com/x"}]})),
        "actions[0].url",
        "http",
    );
    refused(plans, plan(json!({"actions": [{"kind": "webhook", "url": "not a url"}]})), "actions[0].url", "not a URL");
    refused(
        plans,
        plan(
            json!({"actions": [{"kind": "webhook", "url": "http://127.0.0.1/", "headers": {"X-Steward-Signature": "x"}}]}),
        ),
        "actions[0].headers.X-Steward-Signature",
        "Steward itself",
    );
    let email = |change: Value| {
        let mut action = json!({"kind": "email", "server": "mail.example.com:587", "from": "steward@example.com", "to": ["ops@example.com"]});
        for (key, value) in change.as_object().unwrap() {
            action[key] = value.clone();
        }
        plan(json!({"actions": [{"kind": "log"}, action]}))
    };
    refused(plans, email(json!({"server": "mail.example.com"})), "actions[1].server", "host:port");
    refused(plans, email(json!({"to": ["Ops <ops@example.com>"]})), "actions[1].to[0]", "not an e-mail address");
    refused(plans, email(json!({"from": "nobody"})), "actions[1].from", "not an e-mail address");
    refused(plans, email(json!({"username": "steward"})), "actions[1].password", "required");
    refused(plans, plan(json!({"actions": [{"kind": "job", "job": "nope"}]})), "actions[0].job", "nope");
    refused(
        plans,
        plan(json!({"actions": [{"kind": "command", "system": "ghost", "command": {"argv": ["true"]}}]})),
        "actions[0].system",
        "ghost",
    );
    refused(plans, plan(json!({"filter": {"types": ["job*.x"]}})), "filter.types[0]", "prefix");
    refused(plans, plan(json!({"filter": {"groups": ["nope"]}})), "filter.groups[0]", "nope");
    refused(plans, plan(json!({"filter": {"time_zone": "Mars/Olympus"}})), "filter.time_zone", "time zone");
    refused(
        plans,
        plan(json!({"filter": {"active": [{"from": "8:00", "to": "18:00"}]}})),
        "filter.active[0].from",
        "HH:MM",
    );
    refused(
        plans,
        plan(json!({"throttle": {"flapping": {"events": 0, "within_seconds": 60}}})),
        "throttle.flapping.events",
        "1 to",
    );
    refused(
        plans,
        plan(json!({"throttle": {"flapping": {"events": 3, "within_seconds": 0}}})),
        "throttle.flapping.within_seconds",
        "1 to",
    );
    refused(plans, plan(json!({"name": "has space"})), "name", "letters, digits");
    let windows = "/maintenance-windows";
    let group = json!({"kind": "group", "group": "doomed-targets"});
    refused(
        windows,
        json!({"name": "w", "scope": group, "schedule": {"kind": "once", "start": "2030-01-02T00:00:00Z", "end": "2030-01-01T00:00:00Z"}}),
        "schedule.end",
        "not after",
    );
    refused(
        windows,
        json!({"name": "w", "scope": group, "schedule": {"kind": "weekly", "from": "25:00", "to": "02:00"}}),
        "schedule.from",
        "HH:MM",
    );
    refused(
        windows,
        json!({"name": "w", "scope": {"kind": "system", "system": "ghost"}, "schedule": {"kind": "weekly", "from": "01:00", "to": "02:00"}}),
        "scope.system",
        "ghost",
    );
    assert_eq!(api.get(plans).body["items"], json!([]), "nothing created by refusals");
    assert_eq!(api.get(windows).body["items"], json!([]), "nothing created by refusals");
    let unknown_state = api.get("/deliveries?state=lost");
    assert_eq!(unknown_state.status, 422, "{:#}", unknown_state.body);
}

#[test]
fn a_webhook_is_signed_retried_after_a_500_and_an_unreachable_one_shows_its_error() {
    let temp = tempfile::tempdir().unwrap();
    let server = start_server(&temp.path().join("data"));
    let hook = Hook::start(&[500]);
    let unreachable = format!("http://127.0.0.1:{}/hook", free_port());
    failing_job(&server, "doomed");
    let plan = create_plan(
        &server,
        json!({"name": "hook", "filter": {"types": ["job.*"], "min_severity": "warning"},
        "actions": [
            {"kind": "webhook", "url": hook.url(), "secret": "s3cret", "headers": {"X-Team": "ops"}},
            {"kind": "webhook", "url": unreachable},
        ]}),
    );
    assert_eq!(plan["actions"][0]["has_secret"], true, "{plan:#}");
    assert!(plan["actions"][0].get("secret").is_none(), "the secret is never returned: {plan:#}");
    let shown = server.api().get("/event-action-plans/hook").body;
    assert!(!shown.to_string().contains("s3cret"), "{shown:#}");

    run_job(&server, "doomed");
    let delivered = eventually("the webhook is delivered after a 500", WAIT, || {
        deliveries(&server, "hook")
            .into_iter()
            .find(|delivery| delivery["action_index"] == 0 && delivery["state"] == "delivered")
    });
    assert_eq!(delivered["attempts"], 2, "{delivered:#}");
    assert_eq!(delivered["event_type"], "job.failed");
    assert!(delivered["last_error"].as_str().unwrap().contains("500"), "{delivered:#}");
    let received = hook.received();
    assert_eq!(received.len(), 2, "one failed and one successful POST: {received:?}");
    for request in &received {
        let expected = format!("sha256={}", hmac_sha256_hex(b"s3cret", &request.body));
        assert_eq!(request.headers["x-steward-signature"], expected, "the signature covers the body");
        assert_eq!(request.headers["x-steward-delivery"], delivered["id"].as_str().unwrap());
        assert_eq!(request.headers["x-steward-event"], "job.failed");
        assert_eq!(request.headers["x-team"], "ops");
        assert_eq!(request.headers["content-type"], "application/json");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["plan"], "hook");
        assert_eq!(body["kind"], "event");
        assert_eq!(body["event"]["type"], "job.failed");
        assert_eq!(body["event"]["source"], "doomed");
        assert!(body["message"].as_str().unwrap().contains("ran on no system"), "{body:#}");
        let sent_at = request.headers["x-steward-timestamp"].parse::<i64>().unwrap();
        let body_time = steward_types::api::Timestamp::parse_rfc3339(body["sent_at"].as_str().unwrap()).unwrap();
        assert_eq!(sent_at, body_time.millis() / 1000, "the timestamp header is the signed sent_at");
    }

    let failing = eventually("the unreachable webhook shows its error", WAIT, || {
        deliveries(&server, "hook")
            .into_iter()
            .find(|delivery| delivery["action_index"] == 1 && delivery["attempts"] != 0)
    });
    assert_eq!(failing["state"], "retrying", "{failing:#}");
    assert!(failing["next_attempt_at"].is_string(), "{failing:#}");
    let error = failing["last_error"].as_str().unwrap();
    assert!(error.contains(&unreachable), "{error}");

    let listed = server.cli_ok(&["deliveries", "list", "--plan", "hook"]);
    assert!(listed.contains("delivered") && listed.contains("retrying"), "{listed}");
    let retrying = server.api().get("/deliveries?state=retrying").body["items"].as_array().unwrap().len();
    assert_eq!(retrying, 1);
}

/// The SMTP servers of the e-mail test: aiosmtpd (Debian's python3-aiosmtpd), one requiring STARTTLS and AUTH,
/// one in clear; each message is written to the directory as JSON with its envelope and session.
const SMTP_SERVERS: &str = r#"
import json, os, ssl, sys, uuid
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

directory, secure_port, plain_port, certificate, key, user, password = sys.argv[1:8]

class Save:
    def __init__(self, name):
        self.name = name

    async def handle_DATA(self, server, session, envelope):
        record = {"server": self.name, "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                  "content": envelope.content.decode("utf-8", "replace"), "tls": session.ssl is not None,
                  "authenticated": bool(session.authenticated)}
        path = os.path.join(directory, "%s-%s.json" % (self.name, uuid.uuid4().hex))
        with open(path + ".tmp", "w") as out:
            json.dump(record, out)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"

def authenticator(server, session, envelope, mechanism, auth_data):
    good = auth_data.login == user.encode() and auth_data.password == password.encode()
    # handled=False: aiosmtpd itself answers a failure (535).
    return AuthResult(success=good, handled=False)

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(certificate, key)
secure = Controller(Save("secure"), hostname="127.0.0.1", port=int(secure_port), tls_context=context,
                    require_starttls=True, authenticator=authenticator, auth_require_tls=True)
plain = Controller(Save("plain"), hostname="127.0.0.1", port=int(plain_port))
secure.start()
plain.start()
print("READY", flush=True)
sys.stdin.read()
"#;

/// Debian's Python with aiosmtpd (`scripts/test` installs python3-aiosmtpd); the test fails without it.
fn require_aiosmtpd() -> &'static str {
    let python = "/usr/bin/python3";
    let found = std::process::Command::new(python)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|status| status.success());
    assert!(found, "{python} with aiosmtpd is needed: apt-get install python3-aiosmtpd (scripts/test does)");
    python
}

struct SmtpServers {
    child: std::process::Child,
}

impl Drop for SmtpServers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn messages(directory: &Path) -> Vec<Value> {
    let mut found: Vec<Value> = std::fs::read_dir(directory)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "json").then(|| serde_json::from_slice(&std::fs::read(path).ok()?).ok())?
        })
        .collect();
    found.sort_by_key(|message| message["server"].as_str().unwrap_or("").to_owned());
    found
}

#[test]
fn an_email_goes_through_a_real_smtp_server_with_starttls_and_auth_and_in_clear() {
    let python = require_aiosmtpd();
    let temp = tempfile::tempdir().unwrap();
    let mail = temp.path().join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate_pem = certified.cert.pem();
    std::fs::write(temp.path().join("cert.pem"), &certificate_pem).unwrap();
    std::fs::write(temp.path().join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    std::fs::write(temp.path().join("smtp.py"), SMTP_SERVERS).unwrap();
    let (secure_port, plain_port) = (free_port(), free_port());
    let mut child = std::process::Command::new(python)
        .arg(temp.path().join("smtp.py"))
        .arg(&mail)
        .args([secure_port.to_string(), plain_port.to_string()])
        .arg(temp.path().join("cert.pem"))
        .arg(temp.path().join("key.pem"))
        .args(["steward", "pa55word"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    let _smtp = SmtpServers { child };
    assert_eq!(ready.trim(), "READY", "the SMTP servers did not start");

    let server = start_server(&temp.path().join("data"));
    failing_job(&server, "doomed");
    let secure = |password: &str| {
        json!({"kind": "email", "server": format!("localhost:{secure_port}"), "tls": "required",
            "username": "steward", "password": password, "ca_certificate": certificate_pem,
            "from": "steward@example.com", "to": ["ops@example.com"]})
    };
    let plan = create_plan(
        &server,
        json!({"name": "mail", "filter": {"types": ["job.failed"], "sources": ["doomed"]}, "actions": [
            secure("pa55word"),
            {"kind": "email", "server": format!("127.0.0.1:{plain_port}"), "tls": "none",
             "from": "steward@example.com", "to": ["a@example.com", "b@example.com"]},
        ]}),
    );
    assert_eq!(plan["actions"][0]["has_password"], true, "{plan:#}");
    assert!(!plan.to_string().contains("pa55word"), "the password is never returned: {plan:#}");
    create_plan(&server, json!({"name": "wrong-password", "actions": [secure("guess")]}));
    create_plan(
        &server,
        json!({"name": "no-tls", "actions": [{"kind": "email", "server": format!("127.0.0.1:{plain_port}"),
            "from": "steward@example.com", "to": ["ops@example.com"]}]}),
    );

    run_job(&server, "doomed");
    eventually("both e-mails are delivered", WAIT, || {
        deliveries(&server, "mail").iter().all(|delivery| delivery["state"] == "delivered").then_some(())
    });
    let received = eventually("both messages arrive", WAIT, || {
        let found = messages(&mail);
        (found.len() == 2).then_some(found)
    });
    let (plain, secure) = (&received[0], &received[1]);
    assert_eq!(secure["server"], "secure");
    assert_eq!(secure["tls"], true, "{secure:#}");
    assert_eq!(secure["authenticated"], true, "{secure:#}");
    assert_eq!(secure["mail_from"], "steward@example.com");
    assert_eq!(secure["rcpt_tos"], json!(["ops@example.com"]));
    let content = secure["content"].as_str().unwrap();
    assert!(content.contains("Subject: [Steward] warning job.failed job doomed"), "{content}");
    assert!(content.contains("To: ops@example.com"), "{content}");
    assert!(content.contains("ran on no system"), "{content}");
    assert!(content.contains("Plan: mail"), "{content}");
    assert_eq!(plain["tls"], false, "{plain:#}");
    assert_eq!(plain["rcpt_tos"], json!(["a@example.com", "b@example.com"]));

    let refused = eventually("the wrong password is given up", WAIT, || {
        deliveries(&server, "wrong-password").into_iter().find(|delivery| delivery["attempts"] != 0)
    });
    assert_eq!(refused["state"], "gave_up", "{refused:#}");
    let error = refused["last_error"].as_str().unwrap();
    assert!(error.contains("AUTH PLAIN") && error.contains("535"), "{error}");
    let no_tls = eventually("the server without STARTTLS is given up", WAIT, || {
        deliveries(&server, "no-tls").into_iter().find(|delivery| delivery["state"] == "gave_up")
    });
    assert!(no_tls["last_error"].as_str().unwrap().contains("does not offer STARTTLS"), "{no_tls:#}");
    assert_eq!(messages(&mail).len(), 2, "nothing else was sent");
}

#[test]
fn duplicates_and_flapping_are_counted_on_one_delivery_each() {
    let temp = tempfile::tempdir().unwrap();
    let server = start_server(&temp.path().join("data"));
    failing_job(&server, "flappy");
    std::fs::write(
        temp.path().join("plan.yaml"),
        "description: failed jobs, once an hour\nfilter:\n  types: [job.failed]\nthrottle:\n  duplicate_window_seconds: 3600\n  flapping:\n    events: 3\n    within_seconds: 3600\nactions:\n  - kind: log\n",
    )
    .unwrap();
    let created = server.cli_ok(&[
        "event-action-plans",
        "create",
        "quiet",
        "--file",
        temp.path().join("plan.yaml").to_str().unwrap(),
    ]);
    assert!(created.contains("counted within 3600 s"), "{created}");
    for _ in 0..5 {
        run_job(&server, "flappy");
    }
    let all = eventually("the event and the flapping notice are delivered", WAIT, || {
        let all = deliveries(&server, "quiet");
        all.iter().all(|delivery| delivery["state"] == "delivered").then_some(all)
    });
    assert_eq!(all.len(), 2, "one delivery for the event, one flapping notice: {all:#?}");
    let event = all.iter().find(|delivery| delivery["kind"] == "event").unwrap();
    let flapping = all.iter().find(|delivery| delivery["kind"] == "flapping").unwrap();
    assert_eq!(event["duplicates"], 2, "the 2nd and 3rd events are duplicates: {event:#}");
    assert_eq!(flapping["duplicates"], 1, "the 5th event is counted on the flapping notice: {flapping:#}");
    assert!(flapping["message"].as_str().unwrap().contains("is flapping: more than 3"), "{flapping:#}");
    assert_eq!(server.api().get("/events?type=job.failed").body["items"].as_array().unwrap().len(), 5);
    let log = eventually("the log action wrote its lines", WAIT, || {
        let log = server.log();
        (log.matches("event action").count() >= 2).then_some(log)
    });
    assert!(log.contains("steward::event_log"), "{log}");
    let shown = server.cli_ok(&["event-action-plans", "show", "quiet"]);
    assert!(shown.contains("flapping") && shown.contains("log"), "{shown}");
}

#[test]
fn a_maintenance_window_suppresses_deliveries_for_its_group() {
    let temp = tempfile::tempdir().unwrap();
    let server = start_server(&temp.path().join("data"));
    let api = server.api();
    let mut agent = Agent::start(&server.api_url, Some(&server.enrollment_token(1)), &temp.path().join("agent"));
    let id = eventually("the agent enrolls", WAIT, || agent.system_id());
    let system = eventually("the system is online", WAIT, || {
        let system = api.get(&format!("/systems/{id}")).body;
        (system["state"] == "online").then(|| system["name"].as_str().unwrap().to_owned())
    });
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    eventually("the system is offline", WAIT, || {
        (api.get(&format!("/systems/{id}")).body["state"] == "offline").then_some(())
    });
    assert_eq!(api.post("/groups", json!({"name": "racks"})).status, 201);
    assert!(api.post("/groups/racks/members", json!({"systems": [system]})).status < 300);
    let job = json!({"name": "probe", "task": {"kind": "command", "command": {"argv": ["true"]}},
        "target": {"kind": "system", "system": system}, "schedule": {"kind": "manual"}});
    assert_eq!(api.post("/jobs", job).status, 201);
    create_plan(&server, json!({"name": "watch", "filter": {"groups": ["racks"]}, "actions": [{"kind": "log"}]}));
    let output = server.cli_ok(&[
        "maintenance-windows",
        "create",
        "patching",
        "--group",
        "racks",
        "--start",
        "2020-01-01T00:00:00Z",
        "--end",
        "2099-01-01T00:00:00Z",
    ]);
    assert!(output.contains("group racks"), "{output}");

    run_job(&server, "probe");
    let suppressed =
        eventually("the delivery is recorded as suppressed", WAIT, || deliveries(&server, "watch").into_iter().next());
    assert_eq!(suppressed["state"], "suppressed", "{suppressed:#}");
    assert_eq!(suppressed["suppressed_by"], "patching");
    assert_eq!(suppressed["attempts"], 0);
    let event = &api.get("/events?type=job.failed").body["items"][0];
    assert_eq!(event["system_id"], id.as_str(), "the event is about the one failed system: {event:#}");

    assert!(server.cli_ok(&["maintenance-windows", "list"]).contains("patching"));
    server.cli_ok(&["maintenance-windows", "delete", "patching"]);
    run_job(&server, "probe");
    eventually("without the window the next event is delivered", WAIT, || {
        deliveries(&server, "watch").iter().any(|delivery| delivery["state"] == "delivered").then_some(())
    });
    assert_eq!(deliveries(&server, "watch").len(), 2);
}

#[test]
fn a_delivery_pending_when_the_server_is_killed_is_delivered_after_the_restart() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut server = start_server(&data_dir);
    // The receiver is down (503) until the server has been killed.
    let hook = Hook::start(&[503; 1000]);
    failing_job(&server, "doomed");
    create_plan(&server, json!({"name": "durable", "actions": [{"kind": "webhook", "url": hook.url()}]}));
    run_job(&server, "doomed");
    let pending = eventually("the delivery failed once", WAIT, || {
        deliveries(&server, "durable").into_iter().find(|delivery| delivery["state"] == "retrying")
    });
    server.kill();
    hook.answers.lock().unwrap().clear();
    let before = hook.received().len();

    let server = start_server(&data_dir);
    let delivered = eventually("the delivery is delivered after the restart", WAIT, || {
        deliveries(&server, "durable").into_iter().find(|delivery| delivery["state"] == "delivered")
    });
    assert_eq!(delivered["id"], pending["id"]);
    assert!(delivered["attempts"].as_u64().unwrap() >= 2, "{delivered:#}");
    let received = hook.received();
    assert!(received.len() > before, "the restarted server posted again");
    assert_eq!(received.last().unwrap().headers["x-steward-delivery"], pending["id"].as_str().unwrap());
}

#[test]
fn a_monitor_crossing_its_threshold_on_a_group_member_reaches_a_webhook_and_its_clearing_too() {
    let temp = tempfile::tempdir().unwrap();
    let server = start_server(&temp.path().join("data"));
    let api = server.api();
    let agent = Agent::start(&server.api_url, Some(&server.enrollment_token(1)), &temp.path().join("agent"));
    let id = eventually("the agent enrolls", WAIT, || agent.system_id());
    let system = eventually("the system is online", WAIT, || {
        let found = api.get(&format!("/systems/{id}")).body;
        (found["state"] == "online").then(|| found["name"].as_str().unwrap().to_owned())
    });
    assert_eq!(api.post("/groups", json!({"name": "watched"})).status, 201);
    assert!(api.post("/groups/watched/members", json!({"systems": [system]})).status < 300);
    let hook = Hook::start(&[]);
    create_plan(
        &server,
        json!({"name": "paging", "filter": {"types": ["monitor.*"], "groups": ["watched"]},
            "actions": [{"kind": "webhook", "url": hook.url()}]}),
    );
    // A process count the test controls: a copy of `sleep` under a name no other process has.
    let name = format!("stw-{}", std::process::id() % 100_000);
    let program = temp.path().join(&name);
    std::fs::copy("/bin/sleep", &program).unwrap();
    let mut sleeper = std::process::Command::new(&program).arg("300").spawn().unwrap();
    let monitor = json!({"name": "sleepers", "target": {"kind": "group", "group": "watched"},
        "metric": format!("process.count:{name}"), "comparison": ">=", "threshold": 1.0, "interval_seconds": 1});
    assert_eq!(api.post("/monitors", monitor).status, 201);
    let types = || -> Vec<String> {
        hook.received()
            .iter()
            .filter_map(|request| serde_json::from_slice::<Value>(&request.body).ok())
            .filter_map(|body| body["event"]["type"].as_str().map(str::to_owned))
            .collect()
    };
    eventually("the raised monitor reaches the webhook", WAIT, || {
        types().contains(&"monitor.raised".to_owned()).then_some(())
    });
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    eventually("the cleared monitor reaches the webhook", WAIT, || {
        types().contains(&"monitor.cleared".to_owned()).then_some(())
    });
}
