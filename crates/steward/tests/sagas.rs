//! The three generic saga tests for every operation kind, through the real server and the real QEMU driver:
//! a failure injected after each step leaves nothing behind (no record, disk, overlay, NIC, process); running
//! every step twice is harmless; running every undo twice is harmless. And a server killed in the middle of an
//! operation finishes it when it starts again. One server runs all cases: each fault names its target.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::json;
use support::{Api, Server, qemu_processes, require_qemu, tiny_os_image};

const CREATE: &[&str] = &["record", "create_disks", "create_nics", "define_guest", "finish"];
const IMPORT: &[&str] = &["record", "copy_image", "copy_boot_files", "checksum", "finish"];
const DEPLOY: &[&str] =
    &["clone_disk", "write_config_drive", "define_guest", "record", "start_guest", "discard_previous"];
const CAPTURE: &[&str] = &["record", "flatten_disk", "seal", "copy_boot_files", "checksum", "finish"];
const REGISTER: &[&str] = &["record", "define_guest", "adopt_process", "finish"];
const DELETE: &[&str] = &["stop_guest", "detach_agent", "undefine_guest", "delete_nics", "delete_records"];

/// Fault plan entries: fail after each step (target `<prefix>-<step>`), repeat every step (`<prefix>-r`),
/// repeat every undo after a failure at the last step that can be undone (`<prefix>-u`).
fn plan_for(kind: &str, prefix: &str, steps: &[&str], last_undoable: &str) -> Vec<String> {
    let mut plan: Vec<String> = steps.iter().map(|step| format!("fail_after:{kind}:{step}:{prefix}-{step}")).collect();
    plan.push(format!("repeat:{kind}:*:{prefix}-r"));
    plan.push(format!("repeat_undo:{kind}:*:{prefix}-u"));
    plan.push(format!("fail_after:{kind}:{last_undoable}:{prefix}-u"));
    plan
}

fn case_names(prefix: &str, steps: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = steps.iter().map(|step| format!("{prefix}-{step}")).collect();
    names.push(format!("{prefix}-u"));
    names
}

fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            found.insert(path);
        }
    }
    found
}

/// The tap devices in the server's network namespace.
fn taps(server: &Server) -> Vec<String> {
    let namespace = steward_server::network_namespace(&server.data_dir);
    let output = std::process::Command::new("ip").args(["-n", &namespace, "-o", "link", "show"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split(':').nth(1).map(str::trim))
        // Taps are `st<9 hex digits of the virtual server's ID>n<NIC index>`; bridges are named otherwise.
        .filter(|name| name.starts_with("st") && name.get(11..12) == Some("n"))
        .map(str::to_string)
        .collect()
}

fn assert_no_virtual_server(server: &Server, api: &Api, name: &str) {
    assert_eq!(api.get(&format!("/virtual-servers/{name}")).status, 404, "virtual server {name} left behind");
    assert_eq!(api.get(&format!("/systems/{name}")).status, 404, "system {name} left behind");
    let dir = server.data_dir.join("hosts/local/guests").join(name);
    assert!(!dir.exists(), "{} left behind: {:?}", dir.display(), files_under(&dir));
    assert!(qemu_processes(&format!("{}/", dir.display())).is_empty(), "a QEMU process of {name} left behind");
}

fn assert_failed_and_undone(operation: &serde_json::Value, what: &str) {
    assert_eq!(operation["state"], "failed", "{what}: {operation:#}");
    for step in operation["steps"].as_array().unwrap() {
        assert!(
            step["state"] == "undone" || step["state"] == "pending",
            "{what}: step {} is {} after unwinding",
            step["name"],
            step["state"]
        );
    }
    assert!(operation["error"]["message"].as_str().unwrap().contains("fault injected"), "{what}: {operation:#}");
}

fn create(api: &Api, name: &str) -> serde_json::Value {
    api.wait_operation(
        &api.post("/virtual-servers", json!({"name": name, "host": "local", "server_template": "small"})),
    )
}

fn deploy(api: &Api, name: &str) -> serde_json::Value {
    api.wait_operation(&api.post(
        &format!("/virtual-servers/{name}/deploy"),
        json!({"os_template": "base", "hostname": name.replace('_', "-"),
               "nics": [{"address": "10.9.0.5/24", "gateway": "10.9.0.1"}],
               "scripts": [{"name": "hello", "body": "echo hello"}]}),
    ))
}

#[test]
fn every_saga_unwinds_at_every_step_and_repeats_harmlessly() {
    require_qemu();
    let mut plan = Vec::new();
    plan.extend(plan_for("virtual_server_create", "cr", CREATE, "finish"));
    plan.extend(plan_for("os_template_import", "im", IMPORT, "finish"));
    plan.extend(plan_for("virtual_server_deploy", "de", DEPLOY, "start_guest"));
    plan.extend(plan_for("virtual_server_capture", "ca", CAPTURE, "finish"));
    plan.extend(plan_for("virtual_server_delete", "dl", DELETE, "detach_agent"));
    plan.extend(plan_for("virtual_server_register", "rg", REGISTER, "finish"));
    plan.push("fail_after:virtual_server_power:start_guest:po-f".into());
    plan.push("repeat:virtual_server_power:*:po-r".into());
    let plan = plan.join(",");
    let server = Server::start_with_env(&[("STEWARD_FAULT_INJECTION", &plan)]);
    let api = server.api();
    let work = tempfile::tempdir().unwrap();
    let (disk, kernel) = tiny_os_image(work.path());

    assert_eq!(
        api.post("/networks", json!({"name": "sagas-net", "host": "local", "subnet": "10.9.0.0/24"})).status,
        201
    );
    let template = json!({"name": "small", "arch": "x86_64", "cpus": 1, "memory_mib": 128,
        "disks": [32 << 20], "nics": ["sagas-net"]});
    assert_eq!(api.post("/server-templates", template).status, 201);
    let import = |name: &str| {
        api.wait_operation(&api.post(
            "/os-templates",
            json!({"name": name, "file": disk, "arch": "x86_64", "boot": "direct", "kernel": kernel,
                   "cmdline": "console=ttyS0", "personalization": "nocloud"}),
        ))
    };
    assert_eq!(import("base")["state"], "succeeded");
    let templates_dir = server.data_dir.join("hosts/local/templates");
    let templates_before = files_under(&templates_dir);

    // Import.
    for name in case_names("im", IMPORT) {
        assert_failed_and_undone(&import(&name), &name);
        assert_eq!(api.get(&format!("/os-templates/{name}")).status, 404, "{name} left behind");
        assert_eq!(files_under(&templates_dir), templates_before, "{name} left files behind");
    }
    let repeated = import("im-r");
    assert_eq!(repeated["state"], "succeeded", "{repeated:#}");
    assert_eq!(api.get("/os-templates/im-r").body["sha256"], api.get("/os-templates/base").body["sha256"]);

    // Create.
    for name in case_names("cr", CREATE) {
        assert_failed_and_undone(&create(&api, &name), &name);
        assert_no_virtual_server(&server, &api, &name);
        assert!(taps(&server).is_empty(), "{name}: NICs left behind: {:?}", taps(&server));
    }
    assert_eq!(create(&api, "cr-r")["state"], "succeeded");
    assert_eq!(api.get("/virtual-servers/cr-r").body["power"], "stopped");
    assert_eq!(taps(&server).len(), 1);

    // Deploy: a failure restores the virtual server exactly as it was.
    for name in case_names("de", DEPLOY) {
        assert_eq!(create(&api, &name)["state"], "succeeded");
        if name == "de-discard_previous" {
            // A cleanup step: past the point of no return its failure is reported, and nothing is undone.
            let operation = deploy(&api, &name);
            assert_eq!(operation["state"], "succeeded", "{operation:#}");
            assert_eq!(operation["steps"][5]["state"], "failed");
            assert!(operation["steps"][5]["detail"].as_str().unwrap().contains("cleanup failed"));
            assert_eq!(api.get(&format!("/virtual-servers/{name}")).body["os_template"], "base");
            continue;
        }
        let record_before = api.get(&format!("/virtual-servers/{name}")).body;
        let guest_dir = server.data_dir.join("hosts/local/guests").join(&name);
        let files_before = files_under(&guest_dir);
        let definition_before = std::fs::read_to_string(guest_dir.join("guest.json")).unwrap();
        assert_failed_and_undone(&deploy(&api, &name), &name);
        assert_eq!(api.get(&format!("/virtual-servers/{name}")).body, record_before, "{name}: record changed");
        assert_eq!(files_under(&guest_dir), files_before, "{name}: files changed");
        assert_eq!(std::fs::read_to_string(guest_dir.join("guest.json")).unwrap(), definition_before);
    }
    let deployed = deploy(&api, "cr-r");
    assert_eq!(deployed["state"], "succeeded", "{deployed:#}");
    assert_eq!(create(&api, "de-r")["state"], "succeeded");
    assert_eq!(deploy(&api, "de-r")["state"], "succeeded");
    let record = api.get("/virtual-servers/de-r").body;
    assert_eq!(record["os_template"], "base");
    assert_eq!(record["disks"][0]["origin"], "overlay");
    assert_eq!(record["nics"][0]["address"], "10.9.0.5/24");
    let names: Vec<String> = files_under(&server.data_dir.join("hosts/local/guests/de-r"))
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.iter().filter(|name| name.starts_with("disk0")).count(), 1, "{names:?}");
    assert_eq!(names.iter().filter(|name| name.starts_with("cidata")).count(), 1, "{names:?}");

    // Capture: nothing of the new template remains after a failure; a success is sealed.
    for name in case_names("ca", CAPTURE) {
        assert_eq!(create(&api, &name)["state"], "succeeded");
        assert_eq!(deploy(&api, &name)["state"], "succeeded");
        let before = files_under(&templates_dir);
        let operation = api.wait_operation(
            &api.post(&format!("/virtual-servers/{name}/capture"), json!({"name": format!("{name}-t")})),
        );
        assert_failed_and_undone(&operation, &name);
        assert_eq!(api.get(&format!("/os-templates/{name}-t")).status, 404);
        assert_eq!(files_under(&templates_dir), before, "{name} left files behind");
    }
    assert_eq!(create(&api, "ca-r")["state"], "succeeded");
    assert_eq!(deploy(&api, "ca-r")["state"], "succeeded");
    let captured = api.wait_operation(&api.post("/virtual-servers/ca-r/capture", json!({"name": "sealed"})));
    assert_eq!(captured["state"], "succeeded", "{captured:#}");
    let sealed = api.get("/os-templates/sealed").body;
    assert_eq!(sealed["origin"], "captured");
    assert_eq!(sealed["source_virtual_server"], "ca-r");
    let sealed_items: Vec<&str> =
        sealed["sealed"].as_array().unwrap().iter().map(|item| item.as_str().unwrap()).collect();
    for expected in
        ["/etc/machine-id", "/etc/ssh/ssh_host_ed25519_key", "/etc/steward/network.conf", "/var/lib/steward-agent"]
    {
        assert!(sealed_items.iter().any(|item| item.contains(expected)), "{expected} not sealed: {sealed_items:?}");
    }

    // Register: the adopted disk is never touched, whatever fails.
    let register = |name: &str| {
        api.wait_operation(&api.post(
            "/virtual-servers/register",
            json!({"name": name, "host": "local", "disk": disk, "arch": "x86_64", "cpus": 1, "memory_mib": 128}),
        ))
    };
    for name in case_names("rg", REGISTER) {
        assert_failed_and_undone(&register(&name), &name);
        assert_no_virtual_server(&server, &api, &name);
        assert!(disk.exists(), "{name}: the registered disk must stay");
    }
    let registered = register("rg-r");
    assert_eq!(registered["state"], "succeeded", "{registered:#}");
    assert_eq!(api.get("/virtual-servers/rg-r").body["registered"], true);

    // Delete: a failure before the guest is removed keeps it; repeating every step is harmless.
    for name in case_names("dl", DELETE) {
        assert_eq!(create(&api, &name)["state"], "succeeded");
        let operation = api.wait_operation(&api.delete(&format!("/virtual-servers/{name}")));
        assert_eq!(operation["state"], "failed", "{operation:#}");
        if name == "dl-delete_records" {
            // The last step ran before the injected failure: everything is gone.
            assert_no_virtual_server(&server, &api, &name);
        } else {
            // Until its last step the record stays, so repeating the delete can finish it.
            assert_eq!(api.get(&format!("/virtual-servers/{name}")).status, 200, "{name}: the record must stay");
        }
    }
    assert_eq!(create(&api, "dl-r")["state"], "succeeded");
    assert_eq!(api.wait_operation(&api.delete("/virtual-servers/dl-r"))["state"], "succeeded");
    assert_no_virtual_server(&server, &api, "dl-r");

    // Power: a start that fails is undone (the guest is powered off again); repeated start and stop converge.
    for name in ["po-f", "po-r"] {
        assert_eq!(create(&api, name)["state"], "succeeded");
    }
    let failed = api.wait_operation(&api.post("/virtual-servers/po-f/start", json!({})));
    assert_failed_and_undone(&failed, "po-f");
    assert_eq!(api.get("/virtual-servers/po-f").body["power"], "stopped");
    let guests = server.data_dir.join("hosts/local/guests");
    assert!(qemu_processes(&format!("{}/", guests.join("po-f").display())).is_empty());
    assert_eq!(api.wait_operation(&api.post("/virtual-servers/po-r/start", json!({})))["state"], "succeeded");
    assert_eq!(api.get("/virtual-servers/po-r").body["power"], "running");
    assert_eq!(qemu_processes(&format!("{}/", guests.join("po-r").display())).len(), 1);
    let stopped = api.wait_operation(&api.post("/virtual-servers/po-r/stop", json!({"force": true})));
    assert_eq!(stopped["state"], "succeeded", "{stopped:#}");
    assert!(qemu_processes(&format!("{}/", guests.join("po-r").display())).is_empty());

    // Everything this test made goes away through the API; nothing remains on the host.
    let all = api.get("/virtual-servers?limit=1000").body;
    for server_record in all["items"].as_array().unwrap() {
        let name = server_record["name"].as_str().unwrap();
        if api.get(&format!("/virtual-servers/{name}")).status == 200 && !name.starts_with("dl-") {
            assert_eq!(
                api.wait_operation(&api.delete(&format!("/virtual-servers/{name}")))["state"],
                "succeeded",
                "{name}"
            );
            assert_no_virtual_server(&server, &api, name);
        }
    }
}

#[test]
fn a_server_killed_in_the_middle_of_an_operation_finishes_it_after_a_restart() {
    require_qemu();
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut server = Server::start_in_env(
        &data_dir,
        &[],
        &[("STEWARD_FAULT_INJECTION", "crash:virtual_server_create:create_nics:crashing")],
    );
    let api = server.api();
    assert_eq!(api.post("/networks", json!({"name": "crash-net", "host": "local"})).status, 201);
    let template = json!({"name": "small", "arch": "x86_64", "cpus": 1, "memory_mib": 128, "disks": [16 << 20], "nics": ["crash-net"]});
    assert_eq!(api.post("/server-templates", template).status, 201);
    let accepted =
        api.post("/virtual-servers", json!({"name": "crashing", "host": "local", "server_template": "small"}));
    assert_eq!(accepted.status, 202);
    let status = server.child.wait().unwrap();
    assert!(!status.success(), "the server should have aborted at the injected crash");

    let server = Server::start_in(&data_dir, &[]);
    let api = server.api();
    let operation = api.wait_operation(&accepted);
    assert_eq!(operation["state"], "succeeded", "{operation:#}");
    assert_eq!(api.get("/virtual-servers/crashing").body["power"], "stopped");
    assert!(server.data_dir.join("hosts/local/guests/crashing/guest.json").exists());
    assert_eq!(api.wait_operation(&api.delete("/virtual-servers/crashing"))["state"], "succeeded");
    assert_eq!(api.delete("/networks/crash-net").status, 204);
}
