//! Server complexes end to end: bad definitions and requests are refused before anything is created; the
//! per-member sagas (add, apply) unwind at every step and repeat harmlessly; and a two-tier complex of real QEMU
//! guests (TCG, the starter image with its agent) is cloned, drifts out of band (a NIC detached through QMP, a
//! hostname changed through the agent, a tier's CPU share raised), is checked, applied, and checked clean.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use steward_hypervisor::qemu::qmp::QmpClient;
use support::{Answer, Api, Server, eventually, qemu_processes, require_qemu, tiny_os_image};

fn refused(answer: &Answer, status: u16, needle: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert!(answer.error_message().contains(needle), "{:?} should mention {needle:?}", answer.body);
}

fn tier(name: &str, network: Option<(&str, &str)>) -> Value {
    let mut tier =
        json!({"name": name, "server_template": "small", "os_template": "base", "naming": format!("{name}-{{n}}")});
    if let Some((network, pool)) = network {
        tier["networks"] = json!([{"network": network, "pool": pool}]);
    }
    tier
}

fn import_tiny(api: &Api, work: &Path, name: &str, agent: bool) {
    let (disk, kernel) = tiny_os_image(work);
    let import = json!({"name": name, "file": disk, "arch": "x86_64", "boot": "direct", "kernel": kernel,
        "cmdline": "console=ttyS0", "personalization": "nocloud", "agent": agent});
    assert_eq!(api.wait_operation(&api.post("/os-templates", import))["state"], "succeeded");
}

fn virtual_server_names(api: &Api) -> Vec<String> {
    api.get("/virtual-servers").body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|server| server["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn bad_complex_input_is_refused_before_anything_is_created() {
    require_qemu();
    let server = Server::start();
    let api = server.api();
    let work = tempfile::tempdir().unwrap();
    assert_eq!(api.post("/networks", json!({"name": "lan", "host": "local", "subnet": "10.12.0.0/24"})).status, 201);
    assert_eq!(api.post("/networks", json!({"name": "bare", "host": "local"})).status, 201);
    let small = json!({"name": "small", "arch": "x86_64", "cpus": 1, "memory_mib": 128, "disks": [32 << 20]});
    assert_eq!(api.post("/server-templates", small).status, 201);
    let zsmall = json!({"name": "zsmall", "arch": "s390x", "cpus": 1, "memory_mib": 128, "disks": [32 << 20]});
    assert_eq!(api.post("/server-templates", zsmall).status, 201);
    import_tiny(&api, work.path(), "base", true);
    import_tiny(&api, &work.path().join("b"), "noagent", false);

    let create =
        |definition: Value| api.post("/complexes", json!({"name": "shop", "host": "local", "definition": definition}));
    let with = |change: &dyn Fn(&mut Value)| {
        let mut definition = json!({"tiers": [tier("web", Some(("lan", "10.12.0.10-10.12.0.11")))]});
        change(&mut definition["tiers"][0]);
        create(definition)
    };
    refused(&create(json!({"tiers": []})), 422, "1 to 16 tiers");
    refused(&with(&|tier| tier["networks"][0]["network"] = json!("nowhere")), 404, "nowhere");
    refused(&with(&|tier| tier["server_template"] = json!("zsmall")), 422, "x86_64 template");
    refused(&with(&|tier| tier["os_template"] = json!("noagent")), 422, "agent");
    refused(&with(&|tier| tier["naming"] = json!("web")), 422, "{n}");
    refused(&with(&|tier| tier["naming"] = json!("web_{n}")), 422, "host name");
    refused(&with(&|tier| tier["networks"][0]["pool"] = json!("10.13.0.1-10.13.0.5")), 422, "outside network");
    refused(&with(&|tier| tier["networks"][0]["pool"] = json!("10.12.0.9-10.12.0.2")), 422, "comes after");
    refused(&with(&|tier| tier["networks"][0]["network"] = json!("bare")), 422, "has no subnet");
    refused(
        &with(&|tier| tier["disks"] = json!([{"size": "1G", "filesystem": "ext4", "mount_point": "srv"}])),
        422,
        "absolute path",
    );
    refused(
        &with(&|tier| tier["disks"] = json!([{"size": "lots", "filesystem": "ext4", "mount_point": "/srv"}])),
        422,
        "size",
    );
    refused(&with(&|tier| tier["scripts"] = json!([{"name": "steward-x", "body": "true"}])), 422, "Steward's own");
    refused(&with(&|tier| tier["memory_mib"] = json!(1u64 << 30)), 422, "memory_mib");
    refused(&with(&|tier| tier["surprise"] = json!(1)), 422, "surprise");
    let two_tiers = json!({"tiers": [tier("web", None), tier("web", None)]});
    refused(&create(two_tiers), 422, "defined twice");
    assert_eq!(api.get("/complexes").body, json!([]));

    // A valid complex; requests against it that cannot be met change nothing.
    assert_eq!(with(&|_| {}).status, 201);
    refused(&with(&|_| {}), 409, "already exists");
    let add = |tier: &str, count: u32| {
        api.post("/complexes/shop/add-members", json!({"tier": tier, "count": count, "start": false}))
    };
    refused(&add("db", 1), 422, "no tier \"db\"");
    refused(&add("web", 0), 422, "count");
    refused(&add("web", 3), 409, "2 free address(es); 3 needed");
    // A virtual server already holding a name the pattern makes.
    let taken = json!({"name": "web-1", "host": "local", "server_template": "small"});
    assert_eq!(api.wait_operation(&api.post("/virtual-servers", taken))["state"], "succeeded");
    refused(&add("web", 1), 409, "\"web-1\"");
    assert_eq!(virtual_server_names(&api), ["web-1"]);
    let memory = json!({"tier": "web", "count": 1, "start": true});
    let mut huge = json!({"tiers": [tier("big", None)]});
    huge["tiers"][0]["memory_mib"] = json!(16 << 10);
    assert_eq!(api.post("/complexes", json!({"name": "big", "host": "local", "definition": huge})).status, 201);
    let mut many = memory.clone();
    many["tier"] = json!("big");
    many["count"] = json!(1000);
    refused(&api.post("/complexes/big/add-members", many), 409, "out of memory");
    assert_eq!(virtual_server_names(&api), ["web-1"]);
    let operations = api.get("/operations").body;
    let complex_operations = operations["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|operation| operation["kind"].as_str().unwrap().starts_with("complex"));
    assert_eq!(complex_operations.count(), 0, "no refused request started an operation: {operations:#}");

    // A tier with members keeps its templates and naming; removing it is refused too.
    let stray = api.delete("/virtual-servers/web-1");
    assert_eq!(api.wait_operation(&stray)["state"], "succeeded");
    assert_eq!(api.wait_operation(&add("web", 1))["state"], "succeeded");
    // The background reconciler notices when a tier's property changes under a member and records an event.
    let mut raised =
        json!({"reconcile_interval_seconds": 1, "tiers": [tier("web", Some(("lan", "10.12.0.10-10.12.0.11")))]});
    raised["tiers"][0]["cpu_share"] = json!(300);
    assert_eq!(api.send("PUT", "/complexes/shop", json!({"definition": raised})).status, 200);
    let event = eventually("the reconciler records the deviation", Duration::from_secs(60), || {
        let events = api.get("/events?type=complex.deviation&source=shop").body;
        events["items"].as_array().unwrap().first().cloned()
    });
    assert_eq!(event["severity"], "warning", "{event:#}");
    assert_eq!((&event["details"]["member"], &event["details"]["property"]), (&json!("web-1"), &json!("cpu_share")));
    let complex = api.get("/complexes/shop").body;
    assert_eq!(complex["deviations"], 1, "{complex:#}");
    assert!(complex["last_checked_at"].is_string(), "{complex:#}");

    let renamed = json!({"definition": {"tiers": [{"name": "web", "server_template": "small", "os_template": "base", "naming": "www-{n}"}]}});
    refused(&api.send("PUT", "/complexes/shop", renamed), 409, "same templates and naming");
    refused(
        &api.send("PUT", "/complexes/shop", json!({"definition": {"tiers": [tier("db", None)]}})),
        409,
        "has members",
    );
    refused(&api.delete("/complexes/shop"), 409, "remove them first");
    refused(
        &api.post("/complexes/shop/adopt", json!({"member": "web-1", "property": "hostname"})),
        409,
        "does not deviate",
    );
    refused(&api.post("/complexes/shop/adopt", json!({"member": "web-9", "property": "hostname"})), 404, "web-9");
    refused(&api.post("/complexes/shop/remove-members", json!({"members": ["db-1"]})), 422, "not a member");
}

/// The steps of the member sagas, as the server names them.
const ADD: &[&str] = &[
    "record",
    "clone_disk",
    "create_disks",
    "create_nics",
    "write_config_drive",
    "define_guest",
    "finish",
    "start_guest",
    "await_agent",
];
const APPLY: &[&str] = &[
    "reserve",
    "create_disks",
    "create_nics",
    "write_config_drive",
    "define_guest",
    "live",
    "record",
    "guest",
    "discard_previous",
];

fn guest_files(server: &Server, name: &str) -> Vec<String> {
    let dir = server.data_dir.join("hosts/local/guests").join(name);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn complex_sagas_unwind_at_every_step_and_repeat_harmlessly() {
    require_qemu();
    let mut plan: Vec<String> = Vec::new();
    for (index, step) in ADD.iter().enumerate() {
        plan.push(format!("fail_after:complex_member_add:{step}:ad{index}-1"));
    }
    plan.push("repeat:complex_member_add:*:ar-1".into());
    plan.push("repeat_undo:complex_member_add:*:au-1".into());
    plan.push("fail_after:complex_member_add:await_agent:au-1".into());
    plan.push("fail_after:complex_member_add:define_guest:mix-2".into());
    for (index, step) in APPLY.iter().enumerate() {
        plan.push(format!("fail_after:complex_member_apply:{step}:ap{index}-1"));
    }
    plan.push("repeat:complex_member_apply:*:apr-1".into());
    plan.push("repeat_undo:complex_member_apply:*:apu-1".into());
    plan.push("fail_after:complex_member_apply:guest:apu-1".into());
    let server = Server::start_with_env(&[("STEWARD_FAULT_INJECTION", &plan.join(","))]);
    let api = server.api();
    let work = tempfile::tempdir().unwrap();
    assert_eq!(api.post("/networks", json!({"name": "cx", "host": "local", "subnet": "10.14.0.0/24"})).status, 201);
    let small = json!({"name": "small", "arch": "x86_64", "cpus": 1, "memory_mib": 128, "disks": [32 << 20, 8 << 20]});
    assert_eq!(api.post("/server-templates", small).status, 201);
    import_tiny(&api, work.path(), "base", true);
    let pool = Some(("cx", "10.14.0.10-10.14.0.250"));
    let with_disk = |name: &str| {
        let mut tier = tier(name, pool);
        tier["disks"] = json!([{"size": "8M", "filesystem": "ext2", "mount_point": "/srv/data"}]);
        tier["scripts"] = json!([{"name": "hello", "body": "#!/bin/sh\necho hello"}]);
        tier
    };

    // Adding members: a failure after any step leaves nothing of that member; the others of the same request stay.
    let mut add_tiers: Vec<Value> = (0..ADD.len()).map(|index| with_disk(&format!("ad{index}"))).collect();
    add_tiers.extend(["ar", "au", "mix"].map(with_disk));
    let adds =
        json!({"name": "adds", "host": "local", "definition": {"reconcile_interval_seconds": 0, "tiers": add_tiers}});
    assert_eq!(api.post("/complexes", adds).status, 201);
    let add = |tier: &str, count: u32| {
        api.wait_operation(
            &api.post("/complexes/adds/add-members", json!({"tier": tier, "count": count, "start": false})),
        )
    };
    for index in 0..ADD.len() {
        let operation = add(&format!("ad{index}"), 1);
        let member = format!("ad{index}-1");
        assert_eq!(operation["state"], "failed", "{member}: {operation:#}");
        assert!(operation["error"]["message"].as_str().unwrap().contains("1 of 1 member(s) failed"), "{operation:#}");
        assert_eq!(api.get(&format!("/virtual-servers/{member}")).status, 404, "{member} left behind");
        assert_eq!(api.get(&format!("/systems/{member}")).status, 404, "{member}'s system left behind");
        assert!(guest_files(&server, &member).is_empty(), "{member}: {:?}", guest_files(&server, &member));
    }
    let mixed = add("mix", 2);
    assert_eq!(mixed["state"], "failed", "{mixed:#}");
    assert!(mixed["error"]["message"].as_str().unwrap().contains("1 added and kept: mix-1"), "{mixed:#}");
    assert_eq!(api.get("/virtual-servers/mix-1").status, 200);
    assert_eq!(api.get("/virtual-servers/mix-2").status, 404);
    assert_eq!(add("au", 1)["state"], "failed");
    assert_eq!(api.get("/virtual-servers/au-1").status, 404);
    assert!(guest_files(&server, "au-1").is_empty());
    assert_eq!(add("ar", 1)["state"], "succeeded");
    let repeated = api.get("/virtual-servers/ar-1").body;
    assert_eq!(repeated["nics"][0]["address"], "10.14.0.11/24", "mix-1 holds .10: {repeated:#}");
    assert_eq!(
        guest_files(&server, "ar-1"),
        ["cidata.img", "data-stw96b53e47.qcow2", "disk0.qcow2", "disk1.qcow2", "guest.json"]
    );
    // Every address a failed member held is free again: the next member gets the lowest free one.
    let members = api.get("/complexes/adds").body["members"].clone();
    assert_eq!(members.as_array().unwrap().len(), 2, "{members:#}");

    // Applying: a tier gains a network and a higher CPU share; a failure after any step restores the member.
    let apply_tiers: Vec<Value> = (0..APPLY.len())
        .map(|index| tier(&format!("ap{index}"), None))
        .chain(["apr", "apu"].map(|name| tier(name, None)))
        .collect();
    let applies = json!({"name": "applies", "host": "local", "definition": {"reconcile_interval_seconds": 0, "tiers": apply_tiers.clone()}});
    assert_eq!(api.post("/complexes", applies).status, 201);
    for tier in &apply_tiers {
        let name = tier["name"].as_str().unwrap();
        let body = json!({"tier": name, "count": 1, "start": false});
        assert_eq!(api.wait_operation(&api.post("/complexes/applies/add-members", body))["state"], "succeeded");
    }
    let changed: Vec<Value> = apply_tiers
        .iter()
        .map(|tier| {
            let mut tier = tier.clone();
            tier["cpu_share"] = json!(300);
            tier["networks"] = json!([{"network": "cx", "pool": "10.14.0.10-10.14.0.250"}]);
            tier
        })
        .collect();
    let update = api.send(
        "PUT",
        "/complexes/applies",
        json!({"definition": {"reconcile_interval_seconds": 0, "tiers": changed}}),
    );
    assert_eq!(update.status, 200, "{:?}", update.body);
    let report = api.post("/complexes/applies/check", json!({})).body;
    assert_eq!(report["deviations"].as_array().unwrap().len(), 2 * (APPLY.len() + 2), "{report:#}");
    let before: Vec<(Value, Vec<String>, String)> = (0..APPLY.len())
        .map(|index| {
            let name = format!("ap{index}-1");
            let guest =
                std::fs::read_to_string(server.data_dir.join("hosts/local/guests").join(&name).join("guest.json"))
                    .unwrap();
            (api.get(&format!("/virtual-servers/{name}")).body, guest_files(&server, &name), guest)
        })
        .collect();
    let started = api.post("/complexes/applies/apply", json!({}));
    assert_eq!(started.status, 202, "{:?}", started.body);
    let id = started.body["operation"]["id"].as_str().unwrap().to_owned();
    let operation = api.wait_operation(&Answer { status: 202, body: json!({"operation": {"id": id}}) });
    assert_eq!(operation["state"], "failed", "{operation:#}");
    for (index, step) in APPLY.iter().enumerate() {
        let name = format!("ap{index}-1");
        let (record, files, guest) = &before[index];
        let now = api.get(&format!("/virtual-servers/{name}")).body;
        if *step == "discard_previous" {
            // Past the point of no return: the member is consistent, the failed cleanup is reported.
            assert_eq!(now["cpu_share"], 300, "{name}: {now:#}");
            continue;
        }
        assert_eq!(&now, record, "{name} ({step}): record changed");
        assert_eq!(&guest_files(&server, &name), files, "{name} ({step}): files changed");
        let guest_now =
            std::fs::read_to_string(server.data_dir.join("hosts/local/guests").join(&name).join("guest.json")).unwrap();
        assert_eq!(&guest_now, guest, "{name} ({step}): definition changed");
    }
    let repeated = api.get("/virtual-servers/apr-1").body;
    assert_eq!(repeated["cpu_share"], 300, "{repeated:#}");
    assert_eq!(repeated["nics"].as_array().unwrap().len(), 1, "{repeated:#}");
    assert_eq!(api.get("/virtual-servers/apu-1").body["cpu_share"], 100);
    let report = api.post("/complexes/applies/check", json!({})).body;
    let members: Vec<&str> =
        report["deviations"].as_array().unwrap().iter().map(|d| d["member"].as_str().unwrap()).collect();
    assert!(!members.contains(&"apr-1") && !members.contains(&"ap8-1"), "{report:#}");
    assert!(members.contains(&"apu-1") && members.contains(&"ap0-1"), "{report:#}");
    assert!(qemu_processes(&server.data_dir.display().to_string()).is_empty(), "no member was started");
}

/// Runs one QMP command on a guest's monitor socket through the driver's public client, as an operator's tool
/// would; returns its `return` value.
fn qmp(socket: &Path, command: &str, arguments: Value) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = QmpClient::connect("web-1", socket).await.unwrap();
        client.execute(command, Some(arguments)).await.unwrap()
    })
}

fn member_macs(api: &Api, member: &str) -> Vec<String> {
    api.get(&format!("/virtual-servers/{member}")).body["nics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|nic| nic["mac"].as_str().unwrap().to_owned())
        .collect()
}

fn deviations(report: &Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = report["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|deviation| {
            (deviation["member"].as_str().unwrap().to_owned(), deviation["property"].as_str().unwrap().to_owned())
        })
        .collect();
    found.sort();
    found
}

fn run_in(api: &Api, system: &str, argv: &[&str]) -> Value {
    let answer = api.post(&format!("/systems/{system}/commands"), json!({"argv": argv, "timeout_seconds": 60}));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

fn image_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/images/x86_64");
    assert!(dir.join("template.json").exists(), "the x86_64 starter image is missing: run `cargo xtask images`");
    dir
}

#[test]
fn a_two_tier_complex_of_real_guests_drifts_is_checked_and_applied() {
    require_qemu();
    let images = image_dir();
    let temp = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(&temp.path().join("data"), &[]);
    let api = server.api();
    server.cli_ok(&["networks", "create", "shop", "--host", "local", "--subnet", "10.79.0.0/24"]);
    server.cli_ok(&["os-templates", "import", "starter", "--metadata", images.join("template.json").to_str().unwrap()]);
    let template = [
        "server-templates",
        "create",
        "small",
        "--arch",
        "x86_64",
        "--cpus",
        "1",
        "--memory",
        "192M",
        "--disk",
        "256M",
    ];
    server.cli_ok(&template);
    let definition = temp.path().join("shop.yaml");
    std::fs::write(
        &definition,
        r#"description: a web shop
variables: { environment: test }
reconcile_interval_seconds: 0
tiers:
  - name: web
    server_template: small
    os_template: starter
    naming: "web-{n}"
    cpu_share: 100
    networks:
      - { network: shop, pool: "10.79.0.10-10.79.0.19" }
    disks:
      - { size: 16M, filesystem: ext2, mount_point: /srv/data }
    scripts:
      - name: motd
        body: |
          #!/bin/sh
          echo "$STEWARD_COMPLEX $STEWARD_TIER $STEWARD_MEMBER_INDEX $STEWARD_ADDRESS_SHOP $STEWARD_VAR_ENVIRONMENT" > /etc/motd
  - name: db
    server_template: small
    os_template: starter
    naming: "db-{n}"
    networks:
      - { network: shop, pool: "10.79.0.20-10.79.0.29" }
"#,
    )
    .unwrap();
    server.cli_ok(&["complexes", "create", "shop", "--host", "local", "--file", definition.to_str().unwrap()]);
    server.cli_ok(&["complexes", "add-members", "shop", "--tier", "web", "--count", "2"]);
    server.cli_ok(&["complexes", "add-members", "shop", "--tier", "db", "--count", "1"]);
    let complex = server.cli_json(&["complexes", "show", "shop"]);
    let addresses: Vec<&str> = complex["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| member["addresses"][0]["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["10.79.0.20/24", "10.79.0.10/24", "10.79.0.11/24"], "{complex:#}");

    // Personalized from the pattern and the pool, scripts run with their parameters, disks mounted.
    let motd = run_in(&api, "web-2", &["cat", "/etc/motd"]);
    assert_eq!(motd["stdout"], "shop web 2 10.79.0.11/24 test\n", "{motd:#}");
    let mounted = run_in(&api, "web-1", &["grep", " /srv/data ", "/proc/mounts"]);
    assert!(mounted["stdout"].as_str().unwrap().contains("ext2"), "{mounted:#}");
    let ping = run_in(&api, "web-1", &["ping", "-c", "1", "-W", "5", "10.79.0.20"]);
    assert_eq!(ping["exit_code"], 0, "web-1 reaches db-1 on the complex's network: {ping:#}");
    let clean = server.cli(&["complexes", "check", "shop"]);
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stdout));

    // Reality changes out of band: a NIC detached through QMP, a hostname changed through the agent, and the
    // web tier's CPU share raised in the definition.
    let web1_mac = member_macs(&api, "web-1").remove(0);
    let qmp_socket = server.data_dir.join("hosts/local/guests/web-1/qmp.sock");
    let nics = qmp(&qmp_socket, "query-rx-filter", json!({}));
    let device = nics.as_array().unwrap().iter().find(|nic| nic["main-mac"] == web1_mac.as_str()).unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    qmp(&qmp_socket, "device_del", json!({"id": device}));
    eventually("the guest releases the unplugged NIC", Duration::from_secs(60), || {
        let nics = qmp(&qmp_socket, "query-rx-filter", json!({}));
        (!nics.as_array().unwrap().iter().any(|nic| nic["main-mac"] == web1_mac.as_str())).then_some(())
    });
    run_in(&api, "db-1", &["hostname", "intruder"]);
    let raised = std::fs::read_to_string(&definition).unwrap().replace("cpu_share: 100", "cpu_share: 200");
    std::fs::write(&definition, raised).unwrap();
    server.cli_ok(&["complexes", "update", "shop", "--file", definition.to_str().unwrap()]);

    let check = server.cli(&["complexes", "check", "shop"]);
    assert_eq!(check.status.code(), Some(1), "a check with deviations exits 1");
    let report: Value =
        serde_json::from_slice(&server.cli(&["-o", "json", "complexes", "check", "shop"]).stdout).unwrap();
    let expected: Vec<(String, String)> = [
        ("db-1", "hostname"),
        ("web-1", "address:shop"),
        ("web-1", "cpu_share"),
        ("web-1", "nic:shop"),
        ("web-2", "cpu_share"),
    ]
    .iter()
    .map(|(member, property)| (member.to_string(), property.to_string()))
    .collect();
    assert_eq!(deviations(&report), expected, "{report:#}");
    let nic = report["deviations"].as_array().unwrap().iter().find(|d| d["property"] == "nic:shop").unwrap();
    assert_eq!(nic["actual"], "detached from the running guest");
    assert_eq!(nic["layer"], "hypervisor");
    let hostname = report["deviations"].as_array().unwrap().iter().find(|d| d["property"] == "hostname").unwrap();
    assert_eq!(
        (&hostname["expected"], &hostname["actual"], &hostname["layer"]),
        (&json!("db-1"), &json!("intruder"), &json!("guest"))
    );
    let events = api.get("/events?type=complex.deviation").body;
    assert_eq!(events["items"].as_array().unwrap().len(), 5, "one event per new deviation: {events:#}");

    server.cli_ok(&["complexes", "apply", "shop"]);
    let after = server.cli(&["complexes", "check", "shop"]);
    assert!(after.status.success(), "apply left deviations: {}", String::from_utf8_lossy(&after.stdout));
    let ping = run_in(&api, "web-1", &["ping", "-c", "1", "-W", "5", "10.79.0.20"]);
    assert_eq!(ping["exit_code"], 0, "the re-attached NIC works: {ping:#}");

    // Adopting instead of applying: the member keeps its value, and the others are unaffected.
    run_in(&api, "web-2", &["hostname", "shopfront"]);
    server.cli_ok(&["complexes", "adopt", "shop", "--member", "web-2", "--property", "hostname"]);
    let adopted = server.cli(&["complexes", "check", "shop"]);
    assert!(adopted.status.success(), "{}", String::from_utf8_lossy(&adopted.stdout));
    let complex = api.get("/complexes/shop").body;
    let web2 = complex["members"].as_array().unwrap().iter().find(|member| member["name"] == "web-2").unwrap();
    assert_eq!(web2["adopted"]["hostname"], "shopfront");

    // Removing members deletes their guests and disks and frees their addresses.
    server.cli_ok(&["complexes", "remove-members", "shop", "web-1", "web-2", "db-1"]);
    assert!(guest_files(&server, "web-1").is_empty());
    assert_eq!(virtual_server_names(&api), Vec::<String>::new());
    server.cli_ok(&["complexes", "delete", "shop"]);
    server.terminate();
}

#[test]
fn a_server_killed_while_members_are_cloned_finishes_every_member_after_a_restart() {
    require_qemu();
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut server = Server::start_in_env(
        &data_dir,
        &[],
        &[("STEWARD_FAULT_INJECTION", "crash:complex_member_add:define_guest:web-2")],
    );
    let api = server.api();
    assert_eq!(api.post("/networks", json!({"name": "lan", "host": "local", "subnet": "10.15.0.0/24"})).status, 201);
    let small = json!({"name": "small", "arch": "x86_64", "cpus": 1, "memory_mib": 128, "disks": [32 << 20]});
    assert_eq!(api.post("/server-templates", small).status, 201);
    import_tiny(&api, temp.path(), "base", true);
    let definition =
        json!({"reconcile_interval_seconds": 0, "tiers": [tier("web", Some(("lan", "10.15.0.10-10.15.0.20")))]});
    assert_eq!(api.post("/complexes", json!({"name": "shop", "host": "local", "definition": definition})).status, 201);
    let accepted =
        api.post("/complexes/shop/add-members", json!({"tier": "web", "count": 3, "start": false, "parallel": 1}));
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    let status = server.child.wait().unwrap();
    assert!(!status.success(), "the server should have aborted at the injected crash");

    // The parent resumes and drives its children on: the one that crashed repeats its step, the others run.
    let server = Server::start_in(&data_dir, &[]);
    let api = server.api();
    let operation = api.wait_operation(&accepted);
    assert_eq!(operation["state"], "succeeded", "{operation:#}");
    let complex = api.get("/complexes/shop").body;
    let members: Vec<(&str, &str)> = complex["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| (member["name"].as_str().unwrap(), member["state"].as_str().unwrap()))
        .collect();
    assert_eq!(members, [("web-1", "ready"), ("web-2", "ready"), ("web-3", "ready")], "{complex:#}");
    assert_eq!(guest_files(&server, "web-2"), ["cidata.img", "disk0.qcow2", "guest.json"]);
    let operations = api.get("/operations").body;
    let children: Vec<&Value> = operations["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|child| child["parent"] == accepted.body["operation"]["id"])
        .collect();
    assert_eq!(children.len(), 3, "{operations:#}");
    assert!(children.iter().all(|child| child["state"] == "succeeded"), "{operations:#}");
}
