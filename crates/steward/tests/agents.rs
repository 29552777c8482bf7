//! The real `steward-agent` against a real server: enrollment, inventory, dynamic groups, reconnects after a
//! server restart, restarts without re-enrolling, revocation, inventory changes, and two agents on separate
//! test hosts (network namespaces this test creates).

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Agent, Server, eventually};

const WAIT: Duration = Duration::from_secs(30);

fn system_state(server: &Server, system: &str) -> Option<String> {
    let answer = server.api().get(&format!("/systems/{system}"));
    (answer.status == 200).then(|| answer.body["state"].as_str().unwrap_or_default().to_string())
}

fn history_len(server: &Server, system: &str) -> usize {
    server.api().get(&format!("/systems/{system}/inventory-history")).body["items"].as_array().map_or(0, Vec::len)
}

#[test]
fn an_agent_enrolls_reports_inventory_and_joins_a_dynamic_group() {
    let server = Server::start();
    let temp = tempfile::tempdir().unwrap();
    let group = server.cli_json(&[
        "groups",
        "create",
        "linux",
        "--query",
        "os.id = \"debian\" and cpu.count >= 1 and fs[\"/\"].used_pct < 100",
    ]);
    assert_eq!(group["member_count"], 0);
    let token = server.enrollment_token(1);
    let agent = Agent::start(&server.api_url, Some(&token), &temp.path().join("agent"));
    let id = eventually("the agent enrolls", WAIT, || agent.system_id());
    eventually("the system is online with inventory", WAIT, || {
        let detail = server.api().get(&format!("/systems/{id}"));
        (detail.body["state"] == "online" && detail.body["inventory"].is_object()).then_some(())
    });
    let detail = server.cli_json(&["systems", "show", &id]);
    let inventory = &detail["inventory"];
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    assert_eq!(inventory["host"]["hostname"], hostname.as_str());
    assert_eq!(inventory["host"]["os"]["id"], "debian");
    assert_eq!(inventory["host"]["arch"], std::env::consts::ARCH);
    assert!(inventory["host"]["cpu"]["count"].as_u64().unwrap() >= 1);
    assert!(inventory["host"]["memory"]["total_bytes"].as_u64().unwrap() > 0);
    assert!(inventory["filesystems"].as_array().unwrap().iter().any(|fs| fs["mount_point"] == "/"));
    assert!(inventory["interfaces"].as_array().unwrap().iter().any(|i| i["name"] == "lo"));
    let packages = inventory["packages"].as_array().unwrap();
    assert!(packages.iter().any(|p| p["name"] == "dpkg" && p["manager"] == "dpkg"), "dpkg itself is installed");
    assert_eq!(detail["groups"], serde_json::json!(["linux"]));

    // The dynamic group follows: the member shows up in the group and in a filtered list.
    let members = server.cli_json(&["groups", "members", "linux"]);
    assert_eq!(members.as_array().unwrap().len(), 1);
    let online = server.cli_json(&["systems", "list", "--state", "online", "--group", "linux"]);
    assert_eq!(online[0]["id"], id.as_str());
    // The same query filters a plain list, and a malformed one is refused with its position.
    let filtered = server.cli_json(&["systems", "list", "--query", "cpu.count >= 1 and kernel.release ~ \"*\""]);
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(server.cli_json(&["systems", "list", "--query", "cpu.count > 100000"]), serde_json::json!([]));
    let refused = server.cli(&["systems", "list", "--query", "cpu.count >"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("column"), "{refused:?}");
    // A group created afterwards is computed over the existing inventory.
    let none = server.cli_json(&["groups", "create", "zvm-only", "--query", "hypervisor = \"zvm\""]);
    assert_eq!(none["member_count"], 0);
    assert!(agent.log().contains("connected to the server"));
}

/// After a reconnect the agent's digest matches the server's copy, so at most patches follow (filesystem usage
/// may have moved), never a whole inventory.
fn assert_no_full_report_since(server: &Server, system: &str, reports_before: usize) {
    let history = server.api().get(&format!("/systems/{system}/inventory-history")).body["items"].clone();
    let history = history.as_array().expect("history items");
    let newer = &history[..history.len() - reports_before];
    assert!(newer.iter().all(|entry| entry["sections"] != serde_json::json!(["full"])), "{newer:?}");
}

#[test]
fn agents_reconnect_after_a_server_restart_and_survive_their_own_restart() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut server = Server::start_in(&data, &[]);
    let token = server.enrollment_token(1);
    let state = temp.path().join("agent");
    let mut agent = Agent::start(&server.api_url, Some(&token), &state);
    let id = eventually("the agent enrolls", WAIT, || agent.system_id());
    eventually("online", WAIT, || (system_state(&server, &id)? == "online").then_some(()));
    let reports = history_len(&server, &id);
    assert_eq!(reports, 1, "one full report at enrollment");

    // Server restart on the same ports: the agent comes back by itself and, having nothing new, sends nothing.
    let api_port = server.api_url.rsplit(':').next().unwrap().to_string();
    let gateway = server.gateway_address.clone();
    server.terminate();
    let listen = format!("127.0.0.1:{api_port}");
    let restarted_at = steward_types::api::Timestamp::now().to_string();
    let server = Server::start_in(&data, &["--listen", &listen, "--gateway-listen", &gateway]);
    // The agent may be back before the test looks (its first retry is quick): what counts is a contact made with
    // the new server, after the restart.
    eventually("the agent reconnects", WAIT, || {
        let system = server.api().get(&format!("/systems/{id}")).body;
        let contact = system["last_contact_at"].as_str().unwrap_or("").to_string();
        (system["state"] == "online" && contact > restarted_at).then_some(())
    });
    assert_no_full_report_since(&server, &id, reports);
    assert!(agent.log().contains("reconnecting"), "{}", agent.log());

    // An operator can ask the agent for a fresh report at any time.
    assert!(server.cli_ok(&["systems", "refresh", &id]).contains("Asked the agent"));
    eventually("the agent got the refresh request", WAIT, || agent.log().contains("refresh").then_some(()));

    // Membership follows state: a group of online systems loses the system when its agent stops.
    let up = server.cli_json(&["groups", "create", "up", "--query", "state = \"online\""]);
    assert_eq!(up["member_count"], 1);

    // Agent restart: no enrollment token, same identity, still no full report.
    drop(agent);
    eventually("offline after the agent stops", WAIT, || (system_state(&server, &id)? == "offline").then_some(()));
    assert_eq!(server.cli_json(&["groups", "show", "up"])["member_count"], 0);
    let refused = server.cli(&["systems", "refresh", &id]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not connected"), "{refused:?}");
    agent = Agent::start(&server.api_url, None, &state);
    eventually("the restarted agent reconnects", WAIT, || (system_state(&server, &id)? == "online").then_some(()));
    assert_eq!(agent.system_id().as_deref(), Some(id.as_str()));
    assert_no_full_report_since(&server, &id, reports);
    assert_eq!(server.cli_json(&["systems", "list"]).as_array().unwrap().len(), 1, "no second system");
}

#[test]
fn removing_a_system_revokes_its_certificate_and_its_agent_is_refused() {
    let server = Server::start();
    let temp = tempfile::tempdir().unwrap();
    let state = temp.path().join("agent");
    let mut agent = Agent::start(&server.api_url, Some(&server.enrollment_token(1)), &state);
    let id = eventually("the agent enrolls", WAIT, || agent.system_id());
    eventually("online", WAIT, || (system_state(&server, &id)? == "online").then_some(()));
    server.cli_ok(&["systems", "delete", &id]);
    let status = agent.wait_exit(WAIT).expect("the agent stops when its certificate is revoked");
    assert!(!status.success());
    assert!(agent.log().contains("revoked"), "{}", agent.log());

    // Started again with the revoked identity, it is refused at once and stops.
    let mut again = Agent::start(&server.api_url, None, &state);
    let status = again.wait_exit(WAIT).expect("a revoked agent stops");
    assert!(!status.success());
    assert!(again.log().contains("revoked or unknown"), "{}", again.log());
    assert_eq!(system_state(&server, &id), None);
    assert!(server.log().contains("agent refused"));
}

/// Creates network namespaces and removes them when dropped.
struct Namespaces(Vec<String>);

impl Namespaces {
    fn create(names: &[&str]) -> Namespaces {
        let mut created = Namespaces(Vec::new());
        for name in names {
            run("ip", &["netns", "add", name]);
            created.0.push(name.to_string());
            run("ip", &["-n", name, "link", "set", "lo", "up"]);
        }
        created
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// An agent on its own test host: a network namespace with its own hostname (UTS namespace).
fn agent_in_namespace(
    namespace: &str,
    hostname: &str,
    server_url: &str,
    token: &str,
    ca: &std::path::Path,
    state: &std::path::Path,
) -> Agent {
    let mut command = Command::new("unshare");
    command.args([
        "--uts",
        "sh",
        "-c",
        "hostname \"$0\" && namespace=\"$1\" && shift && exec ip netns exec \"$namespace\" \"$@\"",
    ]);
    command.args([hostname, namespace]);
    command.arg(support::agent_binary()).arg("--ca-file").arg(ca);
    // `sh -c` gets the host name as $0 and the namespace as $1; the agent and its arguments follow as "$@".
    Agent::start_with(command, server_url, Some(token), state)
}

#[test]
fn two_agents_on_separate_test_hosts_enroll_over_https() {
    let suffix = std::process::id();
    let (server_ns, a_ns, b_ns) = (format!("stw-srv-{suffix}"), format!("stw-a-{suffix}"), format!("stw-b-{suffix}"));
    let _namespaces = Namespaces::create(&[&server_ns, &a_ns, &b_ns]);
    // veth pairs from each host to the server's namespace, on addresses that exist only inside them.
    for (index, host) in [(1, &a_ns), (2, &b_ns)] {
        let (server_end, host_end) = (format!("s{index}-{suffix}"), format!("h{index}-{suffix}"));
        let (server_end, host_end) = (&server_end[..15.min(server_end.len())], &host_end[..15.min(host_end.len())]);
        run(
            "ip",
            &["link", "add", server_end, "netns", &server_ns, "type", "veth", "peer", "name", host_end, "netns", host],
        );
        run("ip", &["-n", &server_ns, "addr", "add", &format!("10.231.{index}.1/24"), "dev", server_end]);
        run("ip", &["-n", &server_ns, "link", "set", server_end, "up"]);
        run("ip", &["-n", host, "addr", "add", &format!("10.231.{index}.2/24"), "dev", host_end]);
        run("ip", &["-n", host, "link", "set", host_end, "up"]);
        run("ip", &["-n", host, "route", "add", "default", "via", &format!("10.231.{index}.1")]);
    }
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    // The server listens on every address of its namespace: not loopback, so the API speaks HTTPS.
    let mut command = Command::new("ip");
    command.args(["netns", "exec", &server_ns]).arg(support::steward_binary());
    command.arg("serve").arg("--data-dir").arg(&data).args(["--listen", "0.0.0.0:8440"]);
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::from(support::log_file(&data, "server")));
    let server = Server::attach(command.spawn().unwrap(), &data);
    assert!(server.api_url.starts_with("https://"), "{}", server.api_url);
    let ca = data.join("ca.pem");

    // The CLI reaches the HTTPS API from inside the server's namespace, trusting the server's CA.
    let cli = |args: &[&str]| -> serde_json::Value {
        let output = Command::new("ip")
            .args(["netns", "exec", &server_ns])
            .arg(support::steward_binary())
            .args(["--server", "https://127.0.0.1:8440", "--token", &server.token, "--ca-file"])
            .arg(&ca)
            .args(["--output", "json"])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "steward {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let token = cli(&["enrollment-tokens", "create", "--uses", "2"])["token"].as_str().unwrap().to_string();
    let a = agent_in_namespace(&a_ns, "test-host-a", "https://10.231.1.1:8440", &token, &ca, &temp.path().join("a"));
    let b = agent_in_namespace(&b_ns, "test-host-b", "https://10.231.2.1:8440", &token, &ca, &temp.path().join("b"));
    eventually("both agents enroll", WAIT, || Some((a.system_id()?, b.system_id()?)));
    let systems = eventually("both systems online with inventory", WAIT, || {
        let systems = cli(&["systems", "list", "--state", "online"]);
        (systems.as_array()?.len() == 2 && systems.as_array()?.iter().all(|s| s["hostname"] != "")).then_some(systems)
    });
    let names: Vec<&str> = systems.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["test-host-a", "test-host-b"], "{}\n{}", a.log(), b.log());
    for (name, address) in [("test-host-a", "10.231.1.2/24"), ("test-host-b", "10.231.2.2/24")] {
        let detail = cli(&["systems", "show", name]);
        let interfaces = detail["inventory"]["interfaces"].as_array().unwrap();
        assert!(
            interfaces.iter().any(|i| i["addresses"].as_array().unwrap().iter().any(|a| a == address)),
            "{name} reports its own test-host address {address}: {interfaces:?}"
        );
    }
    // A dynamic group over inventory picks the one host on 10.231.2.0/24.
    let group = cli(&["groups", "create", "net-b", "--query", "addresses contains \"10.231.2.2\""]);
    assert_eq!(group["member_count"], 1);
    let members = cli(&["groups", "members", "net-b"]);
    assert_eq!(members[0]["name"], "test-host-b");

    // A change on host b (a new interface) reaches the server as a patch, without any periodic upload.
    let before = cli(&["systems", "history", "test-host-b"]).as_array().unwrap().len();
    run("ip", &["-n", &b_ns, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"]);
    let history = eventually("the interface change is reported", WAIT, || {
        let history = cli(&["systems", "history", "test-host-b"]);
        (history.as_array()?.len() > before).then_some(history)
    });
    // Filesystem usage may have moved meanwhile, so the patch may carry that section too.
    let sections = history[0]["sections"].as_array().unwrap();
    assert!(
        sections.contains(&serde_json::json!("interfaces")) && !sections.contains(&serde_json::json!("full")),
        "{history}"
    );
    let detail = cli(&["systems", "show", "test-host-b"]);
    assert!(detail["inventory"]["interfaces"].as_array().unwrap().iter().any(|i| i["name"] == "probe0"));
    let history_a = cli(&["systems", "history", "test-host-a"]);
    assert!(
        history_a
            .as_array()
            .unwrap()
            .iter()
            .all(|entry| !entry["sections"].as_array().unwrap().contains(&serde_json::json!("interfaces"))),
        "host a's interfaces did not change: {history_a}"
    );
    drop(server);
}
