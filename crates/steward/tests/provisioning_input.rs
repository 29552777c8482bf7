//! Bad input to the provisioning API is refused before anything is created, with a message that says what to
//! change: unknown templates, architecture mismatches, more memory or disk than the host has, duplicate names,
//! invalid or out-of-subnet addresses, and a host without QEMU.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::{Answer, Server, require_qemu, tiny_os_image};

fn refused(answer: &Answer, status: u16, needle: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert!(answer.error_message().contains(needle), "{:?} should mention {needle:?}", answer.body);
}

#[test]
fn bad_provisioning_input_is_refused_with_a_clear_message_and_nothing_is_created() {
    require_qemu();
    let server = Server::start();
    let api = server.api();
    let work = tempfile::tempdir().unwrap();
    let (disk, kernel) = tiny_os_image(work.path());

    assert_eq!(api.post("/networks", json!({"name": "net", "host": "local", "subnet": "10.5.0.0/24"})).status, 201);
    refused(&api.post("/networks", json!({"name": "net", "host": "local"})), 409, "already exists");
    refused(&api.post("/networks", json!({"name": "other", "host": "nowhere"})), 404, "nowhere");
    refused(&api.post("/networks", json!({"name": "bad", "host": "local", "subnet": "10.5.0.0/40"})), 422, "prefix");
    refused(
        &api.post("/networks", json!({"name": "bad", "host": "local", "subnet": "10.5.0.7/24"})),
        422,
        "network address",
    );

    let template = |name: &str, arch: &str, memory: u64, network: &str| json!({"name": name, "arch": arch, "cpus": 1, "memory_mib": memory, "disks": [64 << 20], "nics": [network]});
    assert_eq!(api.post("/server-templates", template("small", "x86_64", 128, "net")).status, 201);
    assert_eq!(api.post("/server-templates", template("zsmall", "s390x", 128, "net")).status, 201);
    assert_eq!(api.post("/server-templates", template("huge", "x86_64", 1 << 19, "net")).status, 201);
    refused(&api.post("/server-templates", template("small", "x86_64", 128, "net")), 409, "already exists");
    refused(&api.post("/server-templates", template("t2", "x86_64", 128, "missing-net")), 404, "missing-net");
    refused(&api.post("/server-templates", template("t3", "x86_64", 16, "net")), 422, "memory_mib");
    refused(&api.post("/server-templates", template("t4", "arm", 128, "net")), 422, "arch");
    let too_many_cpus = json!({"name": "t5", "arch": "x86_64", "cpus": 0, "memory_mib": 128, "disks": [1 << 20]});
    refused(&api.post("/server-templates", too_many_cpus), 422, "cpus");

    let import = json!({"name": "base", "file": disk, "arch": "x86_64", "boot": "direct", "kernel": kernel,
        "cmdline": "console=ttyS0", "personalization": "nocloud"});
    assert_eq!(api.wait_operation(&api.post("/os-templates", import.clone()))["state"], "succeeded");
    refused(&api.post("/os-templates", import.clone()), 409, "already exists");
    let mut relative = import.clone();
    relative["name"] = json!("rel");
    relative["file"] = json!("tiny.qcow2");
    refused(&api.post("/os-templates", relative), 422, "absolute path");
    let mut missing = import.clone();
    missing["name"] = json!("missing");
    missing["file"] = json!("/nonexistent/disk.qcow2");
    refused(&api.post("/os-templates", missing), 422, "/nonexistent/disk.qcow2");
    let mut no_kernel = import.clone();
    no_kernel["name"] = json!("nokernel");
    no_kernel.as_object_mut().unwrap().remove("kernel");
    refused(&api.post("/os-templates", no_kernel), 422, "kernel");

    let create = |name: &str, template: &str| json!({"name": name, "host": "local", "server_template": template});
    refused(&api.post("/virtual-servers", create("a", "no-such-template")), 404, "no-such-template");
    refused(&api.post("/virtual-servers", create("a", "huge")), 422, "exceed host");
    refused(&api.post("/virtual-servers", create("bad name", "small")), 422, "name");
    assert_eq!(api.wait_operation(&api.post("/virtual-servers", create("vm1", "small")))["state"], "succeeded");
    refused(&api.post("/virtual-servers", create("vm1", "small")), 409, "already exists");
    assert_eq!(api.wait_operation(&api.post("/virtual-servers", create("zvm1", "zsmall")))["state"], "succeeded");

    let deploy = |template: &str, address: &str| json!({"os_template": template, "hostname": "vm1", "nics": [{"address": address}]});
    refused(&api.post("/virtual-servers/vm1/deploy", deploy("no-such-os", "10.5.0.2/24")), 404, "no-such-os");
    refused(&api.post("/virtual-servers/zvm1/deploy", deploy("base", "10.5.0.2/24")), 422, "x86_64 template");
    refused(&api.post("/virtual-servers/vm1/deploy", deploy("base", "10.5.0.2/33")), 422, "prefix");
    refused(&api.post("/virtual-servers/vm1/deploy", deploy("base", "10.5.0.2")), 422, "ADDRESS/PREFIX");
    refused(&api.post("/virtual-servers/vm1/deploy", deploy("base", "10.6.0.2/24")), 422, "subnet");
    let mut bad_hostname = deploy("base", "10.5.0.2/24");
    bad_hostname["hostname"] = json!("-bad-");
    refused(&api.post("/virtual-servers/vm1/deploy", bad_hostname), 422, "hostname");
    let mut bad_gateway = deploy("base", "10.5.0.2/24");
    bad_gateway["nics"][0]["gateway"] = json!("10.9.9.9");
    refused(&api.post("/virtual-servers/vm1/deploy", bad_gateway), 422, "gateway");
    let mut too_many = deploy("base", "10.5.0.2/24");
    too_many["nics"] = json!([{"address": "10.5.0.2/24"}, {"address": "10.5.0.3/24"}]);
    refused(&api.post("/virtual-servers/vm1/deploy", too_many), 422, "has 1");
    let mut twice = deploy("base", "10.5.0.2/24");
    twice["scripts"] = json!([{"name": "setup", "body": "true"}, {"name": "setup", "body": "false"}]);
    refused(&api.post("/virtual-servers/vm1/deploy", twice), 422, "used twice");
    let mut unknown_field = deploy("base", "10.5.0.2/24");
    unknown_field["colour"] = json!("blue");
    refused(&api.post("/virtual-servers/vm1/deploy", unknown_field), 422, "colour");
    refused(&api.post("/virtual-servers/vm1/stop", json!({"timeout_seconds": 99999})), 422, "timeout_seconds");
    refused(&api.post("/virtual-servers/vm1/capture", json!({"name": "cap"})), 422, "no operating system");

    // Nothing was created by the refused calls: the record is as create left it, and no operation failed.
    let vm1 = api.get("/virtual-servers/vm1").body;
    assert!(vm1["os_template"].is_null());
    let failed = api.get("/operations?state=failed").body;
    assert_eq!(failed["items"].as_array().unwrap().len(), 0, "{failed:#}");
    // A network with NICs attached cannot be deleted; a used server template neither.
    refused(&api.delete("/networks/net"), 409, "attached");
    refused(&api.delete("/server-templates/small"), 409, "delete them first");
    for name in ["vm1", "zvm1"] {
        assert_eq!(api.wait_operation(&api.delete(&format!("/virtual-servers/{name}")))["state"], "succeeded");
    }
    assert_eq!(api.delete("/networks/net").status, 204);
}

#[test]
fn without_qemu_there_is_no_local_host_and_the_answer_says_how_to_get_one() {
    // A PATH without the emulators (they live in /usr/bin): the server starts, but offers no host.
    let temp = tempfile::tempdir().unwrap();
    let bin = temp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["ip", "qemu-img", "mkfs.ext4", "debugfs"] {
        if let Some(found) = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|dir| std::path::Path::new(dir).join(tool))
            .find(|path| path.exists())
        {
            std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
        }
    }
    let data_dir = temp.path().join("data");
    let server = Server::start_in_env(&data_dir, &[], &[("PATH", bin.to_str().unwrap())]);
    let api = server.api();
    assert_eq!(api.get("/hosts").body["items"].as_array().unwrap().len(), 0);
    let answer = api.post("/networks", json!({"name": "net", "host": "local"}));
    refused(&answer, 404, "local");
    assert!(answer.body["error"]["details"]["hint"].as_str().unwrap().contains("qemu-system"), "{:?}", answer.body);
}
