//! z/VM hosts end to end, against the z/VM simulator (`zvm-sim`, started in this process on 127.0.0.1): the
//! checks of `steward hosts add --type zvm` with what they tell the operator to fix, the five steps (register a
//! guest someone else defined, capture it into an image holder, a server template, create, deploy), a server
//! complex whose consistency check reads the directory, and faults (a full disk pool, DirMaint gone during an
//! operation, a reply lost after its request id) after which nothing is left in the directory or the pool.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use smapi::functions::{ImageCreateDm, ImageDefinitionUpdateDm, ImageQueryDm, ImageVolumeSpaceQueryDm};
use smapi::{ClientConfig, Credentials, SmapiClient};
use support::{Api, Server};
use zvm_sim::{Fault, Simulator, SimulatorConfig, Timing};

const ADMIN: &str = "ADMIN";
const PASSWORD: &str = "Adm1n-Pass";

struct Sim {
    runtime: tokio::runtime::Runtime,
    simulator: Option<Simulator>,
    client: SmapiClient,
}

impl Sim {
    /// A simulator with an administrator, a user that is in no AUTHLIST entry, a pool of two small volumes in
    /// group LINUX, and short durations.
    fn start() -> Sim {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let simulator = runtime.block_on(async {
            let mut config = SimulatorConfig::new("127.0.0.1:0".parse().unwrap());
            config.users.push(format!("{ADMIN}:{PASSWORD}").parse().unwrap());
            config.users.push("NOBODY:Nobody-Pass".parse().unwrap());
            config.pools.push("LINUX:SIM001:3000".parse().unwrap());
            config.pools.push("LINUX:SIM002:3000".parse().unwrap());
            config.timing = Timing {
                operation: Duration::from_millis(30),
                copy_per_thousand_units: Duration::from_millis(10),
                guest_shutdown: Duration::from_millis(50),
                signal_timeout: Duration::from_secs(300),
            };
            Simulator::start(config).await.unwrap()
        });
        let mut config = ClientConfig::new(simulator.address().to_string());
        config.poll_interval = Duration::from_millis(20);
        let client = SmapiClient::new(config, Credentials::new(ADMIN, PASSWORD).unwrap());
        Sim { runtime, simulator: Some(simulator), client }
    }

    fn address(&self) -> String {
        self.simulator.as_ref().unwrap().address().to_string()
    }

    fn fault(&self, fault: &str) {
        self.simulator.as_ref().unwrap().add_fault(fault.parse::<Fault>().unwrap());
    }

    fn clear_faults(&self) {
        self.simulator.as_ref().unwrap().clear_faults();
    }

    /// The user's directory entry, `None` when it has none.
    fn entry(&self, userid: &str) -> Option<Vec<String>> {
        self.runtime.block_on(self.client.call(&ImageQueryDm::new(userid))).ok()
    }

    /// Free cylinders in group LINUX.
    fn pool_free(&self) -> u64 {
        let query = ImageVolumeSpaceQueryDm::new(
            ADMIN,
            smapi::functions::VolumeSpaceQuery::Free,
            smapi::functions::VolumeSpaceEntry::Group,
            "LINUX",
        );
        let records = self.runtime.block_on(self.client.call(&query)).unwrap();
        records.iter().filter_map(|record| record.split_whitespace().nth(3)?.parse::<u64>().ok()).sum()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(simulator) = self.simulator.take() {
            self.runtime.block_on(simulator.shutdown());
        }
    }
}

fn password_file(dir: &Path, name: &str, password: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path.display().to_string()
}

fn add_host(server: &Server, sim: &Sim, user: &str, password_file: &str, pool: &str) -> std::process::Output {
    server.cli(&[
        "hosts",
        "add",
        "z1",
        "--type",
        "zvm",
        "--address",
        &sim.address(),
        "--user",
        user,
        "--password-file",
        password_file,
        "--disk-pool",
        pool,
        "--mac-prefix",
        "02:00:5a",
        "--poll-interval-ms",
        "20",
    ])
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn register_host(server: &Server, sim: &Sim, dir: &Path) {
    let output = add_host(server, sim, ADMIN, &password_file(dir, "admin.pw", PASSWORD), "LINUX");
    assert!(output.status.success(), "{}", stderr(&output));
}

fn succeeded(api: &Api, accepted: support::Answer) -> Value {
    assert_eq!(accepted.status, 202, "{:#}", accepted.body);
    let operation = api.wait_operation(&accepted);
    assert_eq!(operation["state"], "succeeded", "{operation:#}");
    operation
}

fn failed(api: &Api, accepted: support::Answer) -> Value {
    assert_eq!(accepted.status, 202, "{:#}", accepted.body);
    let operation = api.wait_operation(&accepted);
    assert_eq!(operation["state"], "failed", "{operation:#}");
    operation
}

fn has_record(entry: &[String], prefix: &str) -> bool {
    entry.iter().any(|record| record.trim_start().starts_with(prefix))
}

#[test]
fn adding_a_zvm_host_checks_it_and_says_what_to_change_on_zvm() {
    let sim = Sim::start();
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let server = Server::start_in(&data_dir, &[]);

    let wrong = add_host(&server, &sim, ADMIN, &password_file(temp.path(), "wrong.pw", "not-it"), "LINUX");
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("password file"), "{}", stderr(&wrong));

    let nobody = add_host(&server, &sim, "NOBODY", &password_file(temp.path(), "nobody.pw", "Nobody-Pass"), "LINUX");
    assert!(!nobody.status.success());
    assert!(stderr(&nobody).contains("VSMWORK1 AUTHLIST"), "{}", stderr(&nobody));
    assert!(stderr(&nobody).contains("NOBODY"), "the AUTHLIST line names the user: {}", stderr(&nobody));

    let admin_password = password_file(temp.path(), "admin.pw", PASSWORD);
    sim.fault("dirmaint-down");
    let down = add_host(&server, &sim, ADMIN, &admin_password, "LINUX");
    assert!(!down.status.success());
    assert!(stderr(&down).contains("XAUTOLOG DIRMAINT"), "{}", stderr(&down));
    sim.clear_faults();

    let pool = add_host(&server, &sim, ADMIN, &admin_password, "NOPOOL");
    assert!(!pool.status.success());
    assert!(stderr(&pool).contains("EXTENT CONTROL"), "{}", stderr(&pool));

    let api = server.api();
    let bad = api.post(
        "/hosts",
        json!({"name": "z2", "kind": "zvm", "password": "x", "zvm": {"address": "nowhere", "user": ADMIN, "disk_pool": "LINUX"}}),
    );
    assert_eq!(bad.status, 422, "{:#}", bad.body);
    assert!(bad.error_message().contains("HOST:PORT"), "{:#}", bad.body);
    let long = api.post(
        "/hosts",
        json!({"name": "z2", "kind": "zvm", "password": "x", "zvm": {"address": sim.address(), "user": ADMIN, "disk_pool": "POOLNAMEISLONG"}}),
    );
    assert_eq!(long.status, 422, "{:#}", long.body);
    assert!(long.error_message().contains("1 to 8 characters"), "{:#}", long.body);
    assert_eq!(api.get("/hosts/z2").status, 404, "nothing registered after refusals");

    register_host(&server, &sim, temp.path());
    let shown = server.cli_ok(&["hosts", "show", "z1"]);
    assert!(shown.contains("z/VM CP") && shown.contains("LINUX"), "{shown}");
    let host = api.get("/hosts/z1").body;
    assert_eq!(host["kind"], "zvm");
    assert!(host.get("password").is_none() && !host.to_string().contains(PASSWORD), "never the password: {host:#}");
    assert!(host["storage_free_bytes"].as_u64().unwrap() > 0, "{host:#}");

    // A restarted server opens the host again from its stored settings.
    drop(server);
    let server = Server::start_in(&data_dir, &[]);
    assert_eq!(server.api().get("/hosts/z1").body["kind"], "zvm");
    assert_eq!(server.api().delete("/hosts/z1").status, 204);
    assert_eq!(server.api().get("/hosts/z1").status, 404);
}

#[test]
fn five_steps_and_a_complex_on_a_zvm_host() {
    let sim = Sim::start();
    let server = Server::start();
    let temp = tempfile::tempdir().unwrap();
    register_host(&server, &sim, temp.path());
    let api = server.api();
    let pool_at_start = sim.pool_free();

    // A guest someone defined by hand, and a system user.
    let records = [
        "USER LINUX01 LBYONLY 512M 1G G",
        "INCLUDE LNXDFLT",
        "CPU 00",
        "IPL 0100",
        "MDISK 0100 3390 AUTOG 200 LINUX MR",
    ];
    sim.runtime
        .block_on(sim.client.call(&ImageCreateDm::from_records("LINUX01", records.map(str::to_owned).to_vec())))
        .unwrap();
    let refused = api.post("/virtual-servers/register", json!({"name": "maint", "host": "z1", "guest": "MAINT"}));
    assert_eq!(refused.status, 422, "{:#}", refused.body);
    assert!(refused.error_message().contains("system user"), "{:#}", refused.body);

    // 1. Register: the entry is adopted as it is.
    succeeded(
        &api,
        api.post("/virtual-servers/register", json!({"name": "linux01", "host": "z1", "guest": "LINUX01"})),
    );
    let linux01 = sim.entry("LINUX01").unwrap();
    assert!(has_record(&linux01, "* STEWARD GUEST") && has_record(&linux01, "MDISK 0100"), "{linux01:#?}");
    let shown = api.get("/virtual-servers/linux01").body;
    assert_eq!(shown["memory_mib"], 512, "{shown:#}");
    assert_eq!(shown["disks"][0]["path"], "LINUX01/0100", "{shown:#}");

    // 2. Capture into an image holder.
    let capture = api.post("/virtual-servers/linux01/capture", json!({"name": "golden", "agent": true}));
    succeeded(&api, capture);
    let golden = api.get("/os-templates/golden").body;
    assert_eq!(golden["disk_location"], "STWIMG01/1000", "{golden:#}");
    assert_eq!(golden["disk_format"], "raw");
    let holder = sim.entry("STWIMG01").unwrap();
    assert!(has_record(&holder, "USER STWIMG01 NOLOG") && has_record(&holder, "MDISK 1000"), "{holder:#?}");
    let import = api.post(
        "/os-templates",
        json!({"name": "file", "host": "z1", "file": "/etc/hostname", "arch": "s390x", "boot": "firmware", "personalization": "none"}),
    );
    assert_eq!(import.status, 422, "{:#}", import.body);
    assert!(import.error_message().contains("capture a template"), "{:#}", import.body);

    // 3. A network (a virtual switch) and a server template.
    assert_eq!(api.post("/networks", json!({"name": "lan1", "host": "z1"})).status, 201);
    let template =
        json!({"name": "small", "arch": "s390x", "cpus": 1, "memory_mib": 512, "disks": [200 << 20], "nics": ["lan1"]});
    assert_eq!(api.post("/server-templates", template).status, 201);

    // 4. Create: the entry, its minidisk from the pool, a NIC on the switch with the system's MAC prefix.
    let too_long =
        api.post("/virtual-servers", json!({"name": "webserver01", "host": "z1", "server_template": "small"}));
    assert_eq!(too_long.status, 422, "{:#}", too_long.body);
    assert!(too_long.error_message().contains("1 to 8 characters"), "{:#}", too_long.body);
    succeeded(&api, api.post("/virtual-servers", json!({"name": "web01", "host": "z1", "server_template": "small"})));
    let web01 = sim.entry("WEB01").unwrap();
    assert!(has_record(&web01, "MDISK 0100") && has_record(&web01, "NICDEF 0600"), "{web01:#?}");
    let mac = api.get("/virtual-servers/web01").body["nics"][0]["mac"].as_str().unwrap().to_owned();
    assert!(mac.starts_with("02:00:5a:"), "{mac}");

    // 5. Deploy: the image holder's disk copied into the guest, the blank one discarded, IPL from the copy.
    let deploy = json!({"os_template": "golden", "hostname": "web01"});
    let refused = api.post(
        "/virtual-servers/web01/deploy",
        json!({"os_template": "golden", "hostname": "web01", "clone": "overlay"}),
    );
    assert_eq!(refused.status, 422, "{:#}", refused.body);
    succeeded(&api, api.post("/virtual-servers/web01/deploy", deploy));
    let web01 = sim.entry("WEB01").unwrap();
    assert!(has_record(&web01, "MDISK 0101") && !has_record(&web01, "MDISK 0100"), "{web01:#?}");
    assert!(has_record(&web01, "IPL 0101"), "{web01:#?}");
    succeeded(&api, api.post("/virtual-servers/web01/start", json!({})));
    assert_eq!(api.get("/virtual-servers/web01").body["power"], "running");
    succeeded(&api, api.post("/virtual-servers/web01/stop", json!({"timeout_seconds": 5})));
    assert_eq!(api.get("/virtual-servers/web01").body["power"], "stopped");

    // A server complex: members cloned from the image holder, checked against the directory.
    let definition = json!({"tiers": [{"name": "app", "naming": "app{n}", "server_template": "small", "os_template": "golden", "networks": [{"network": "lan1"}]}]});
    let pooled = json!({"tiers": [{"name": "app", "naming": "app{n}", "server_template": "small", "os_template": "golden", "networks": [{"network": "lan1", "pool": "10.1.0.10-10.1.0.20"}]}]});
    let refused = api.post("/complexes", json!({"name": "shop", "host": "z1", "definition": pooled}));
    assert_eq!(refused.status, 422, "{:#}", refused.body);
    assert!(refused.error_message().contains("no config drive"), "{:#}", refused.body);
    assert_eq!(api.post("/complexes", json!({"name": "shop", "host": "z1", "definition": definition})).status, 201);
    let started = api.post("/complexes/shop/add-members", json!({"tier": "app", "count": 2, "start": true}));
    assert_eq!(started.status, 422, "{:#}", started.body);
    succeeded(&api, api.post("/complexes/shop/add-members", json!({"tier": "app", "count": 2, "start": false})));
    for member in ["APP1", "APP2"] {
        let entry = sim.entry(member).unwrap();
        assert!(has_record(&entry, "MDISK 0100") && has_record(&entry, "NICDEF 0600"), "{member}: {entry:#?}");
    }
    let check = api.post("/complexes/shop/check", json!({}));
    assert_eq!(check.status, 200, "{:#}", check.body);
    assert_eq!(check.body["deviations"], json!([]), "{:#}", check.body);

    // Someone changes app1's share in the directory: the check reads it there, apply writes it back.
    let update = ImageDefinitionUpdateDm::new("APP1", vec!["SHARE=RELATIVE=900".to_owned()]);
    sim.runtime.block_on(sim.client.call(&update)).unwrap();
    let output = server.cli(&["complexes", "check", "shop"]);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stdout));
    let deviations = api.post("/complexes/shop/check", json!({})).body["deviations"].clone();
    let properties: Vec<(String, String)> = deviations
        .as_array()
        .unwrap()
        .iter()
        .map(|deviation| {
            (deviation["member"].as_str().unwrap().to_owned(), deviation["property"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(properties, vec![("app1".to_owned(), "cpu_share".to_owned())], "{deviations:#}");
    let applied = api.post("/complexes/shop/apply", json!({}));
    assert_eq!(applied.status, 202, "{:#}", applied.body);
    let operation = api.wait_operation(&applied);
    assert_eq!(operation["state"], "succeeded", "{operation:#}");
    assert!(has_record(&sim.entry("APP1").unwrap(), "SHARE RELATIVE 100"), "{:#?}", sim.entry("APP1"));
    assert_eq!(api.post("/complexes/shop/check", json!({})).body["deviations"], json!([]));

    // Everything goes again, and the pool gets its space back.
    succeeded(&api, api.post("/complexes/shop/remove-members", json!({"members": ["app1", "app2"]})));
    assert!(sim.entry("APP1").is_none() && sim.entry("APP2").is_none());
    assert_eq!(api.delete("/complexes/shop").status, 204);
    let deleted = api.delete("/virtual-servers/web01");
    succeeded(&api, deleted);
    assert!(sim.entry("WEB01").is_none());
    succeeded(&api, api.delete("/virtual-servers/linux01"));
    let linux01 = sim.entry("LINUX01").unwrap();
    assert!(!has_record(&linux01, "* STEWARD GUEST") && has_record(&linux01, "MDISK 0100"), "kept: {linux01:#?}");
    assert_eq!(api.delete("/os-templates/golden").status, 204);
    let holder = sim.entry("STWIMG01");
    assert!(holder.as_ref().is_none_or(|holder| !has_record(holder, "MDISK 1000")), "{holder:#?}");
    assert_eq!(sim.pool_free(), pool_at_start - 200, "only LINUX01's own disk is left in the pool");
}

#[test]
fn zvm_faults_unwind_and_leave_nothing_in_the_directory_or_the_pool() {
    let sim = Sim::start();
    let server = Server::start();
    let temp = tempfile::tempdir().unwrap();
    register_host(&server, &sim, temp.path());
    let api = server.api();
    assert_eq!(api.post("/networks", json!({"name": "lan1", "host": "z1"})).status, 201);
    let free = sim.pool_free();

    // A full pool: three disks of 1850 cylinders fit the pool's total, but the third fits no volume (408/24).
    let gib = 1_u64 << 30;
    let three = json!({"name": "three", "arch": "s390x", "cpus": 1, "memory_mib": 512, "disks": [gib * 3 / 2, gib * 3 / 2, gib * 3 / 2], "nics": ["lan1"]});
    assert_eq!(api.post("/server-templates", three).status, 201);
    let operation =
        failed(&api, api.post("/virtual-servers", json!({"name": "big1", "host": "z1", "server_template": "three"})));
    assert!(operation["error"]["message"].as_str().unwrap().contains("no free space"), "{operation:#}");
    assert!(sim.entry("BIG1").is_none(), "{:#?}", sim.entry("BIG1"));
    assert_eq!(sim.pool_free(), free, "every cylinder given back");
    assert_eq!(api.get("/virtual-servers/big1").status, 404);
    let failed_events = api.get("/events?type=operation.failed").body;
    let message = failed_events["items"][0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("virtual_server_create of virtual_server big1 failed"), "{failed_events:#}");

    // A reply lost after its request id: the client recovers it, and the operation goes on.
    let small =
        json!({"name": "small", "arch": "s390x", "cpus": 1, "memory_mib": 512, "disks": [200 << 20], "nics": ["lan1"]});
    assert_eq!(api.post("/server-templates", small).status, 201);
    sim.fault("drop-after-request-id=Image_Disk_Create_DM");
    succeeded(&api, api.post("/virtual-servers", json!({"name": "web1", "host": "z1", "server_template": "small"})));
    let web1 = sim.entry("WEB1").unwrap();
    assert_eq!(web1.iter().filter(|record| record.starts_with("MDISK")).count(), 1, "{web1:#?}");
    let after_create = sim.pool_free();

    // DirMaint gone while a deploy runs: the copy is made, the entry cannot be written; the copy goes again.
    let records = ["USER SRC1 LBYONLY 512M 1G G", "CPU 00", "IPL 0100", "MDISK 0100 3390 AUTOG 100 LINUX MR"];
    sim.runtime
        .block_on(sim.client.call(&ImageCreateDm::from_records("SRC1", records.map(str::to_owned).to_vec())))
        .unwrap();
    succeeded(&api, api.post("/virtual-servers/register", json!({"name": "src1", "host": "z1", "guest": "SRC1"})));
    succeeded(&api, api.post("/virtual-servers/src1/capture", json!({"name": "img", "agent": true})));
    let before_deploy = sim.pool_free();
    let web1_before = sim.entry("WEB1").unwrap();
    sim.fault("fail=Image_Replace_DM:500:8");
    let operation =
        failed(&api, api.post("/virtual-servers/web1/deploy", json!({"os_template": "img", "hostname": "web1"})));
    assert!(operation["error"]["message"].as_str().unwrap().contains("500"), "{operation:#}");
    assert_eq!(sim.entry("WEB1").unwrap(), web1_before, "the entry is as it was");
    assert_eq!(sim.pool_free(), before_deploy, "the copy was deleted");
    assert_eq!(api.get("/virtual-servers/web1").body["os_template"], Value::Null);

    // And with DirMaint back, the same deploy succeeds; deleting everything frees the pool.
    succeeded(&api, api.post("/virtual-servers/web1/deploy", json!({"os_template": "img", "hostname": "web1"})));
    succeeded(&api, api.delete("/virtual-servers/web1"));
    assert!(sim.entry("WEB1").is_none());
    assert!(sim.pool_free() > after_create);
}
