//! End to end with real QEMU guests (TCG): the five steps of z/VM Center on x86_64 with the starter image and
//! its agent, an s390x guest personalized from its config drive, guests on an isolated network reaching each
//! other, every QEMU guest of the host listed, and guests surviving a server restart.
//! The starter images are built by `cargo xtask images` (scripts/test does it first).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Api, Server, eventually, qemu_processes, require_qemu};

fn image_dir(arch: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/images").join(arch);
    assert!(
        dir.join("template.json").exists(),
        "the {arch} starter image is missing: run `cargo xtask images` (scripts/test does)"
    );
    dir
}

fn console(api: &Api, name: &str) -> String {
    api.get(&format!("/virtual-servers/{name}/console?bytes=200000")).body["text"].as_str().unwrap_or("").to_string()
}

/// Waits until the system of that name is online and has reported an inventory; returns the system.
fn registered(api: &Api, name: &str) -> serde_json::Value {
    eventually(&format!("the agent of {name} registers"), Duration::from_secs(120), || {
        let system = api.get(&format!("/systems/{name}")).body;
        (system["state"] == "online" && !system["inventory"].is_null()).then_some(system)
    })
}

fn addresses(system: &serde_json::Value) -> Vec<String> {
    let mut found = Vec::new();
    for interface in system["inventory"]["interfaces"].as_array().into_iter().flatten() {
        for address in interface["addresses"].as_array().into_iter().flatten() {
            found.push(address.as_str().map(str::to_string).unwrap_or_else(|| address.to_string()));
        }
    }
    found
}

#[test]
fn the_five_steps_with_real_x86_64_guests_on_one_network() {
    require_qemu();
    let images = image_dir("x86_64");
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut server = Server::start_in(&data_dir, &[]);
    let api = server.api();

    let host = server.cli_json(&["hosts", "show", "local"]);
    let architectures: Vec<&str> =
        host["architectures"].as_array().unwrap().iter().map(|arch| arch["arch"].as_str().unwrap()).collect();
    assert!(architectures.contains(&"x86_64") && architectures.contains(&"s390x"), "{host:#}");

    server.cli_ok(&["networks", "create", "lan", "--host", "local", "--subnet", "10.78.0.0/24"]);
    server.cli_ok(&["os-templates", "import", "starter", "--metadata", images.join("template.json").to_str().unwrap()]);
    server.cli_ok(&[
        "server-templates",
        "create",
        "small",
        "--arch",
        "x86_64",
        "--cpus",
        "1",
        "--memory",
        "256M",
        "--disk",
        "256M",
        "--nic",
        "lan",
    ]);

    // Step 1: register a manually installed guest (a copy of the starter disk, booted by its own kernel).
    let manual_disk = temp.path().join("manual.qcow2");
    let status = Command::new("qemu-img")
        .args(["convert", "-q", "-O", "qcow2"])
        .arg(images.join("disk.qcow2"))
        .arg(&manual_disk)
        .status()
        .unwrap();
    assert!(status.success());
    server.cli_ok(&[
        "virtual-servers",
        "register",
        "manual",
        "--host",
        "local",
        "--disk",
        manual_disk.to_str().unwrap(),
        "--arch",
        "x86_64",
        "--cpus",
        "1",
        "--memory",
        "256M",
        "--kernel",
        images.join("vmlinuz").to_str().unwrap(),
        "--initrd",
        images.join("initrd.img").to_str().unwrap(),
        "--cmdline",
        "console=ttyS0 root=/dev/vda rw quiet",
    ]);
    server.cli_ok(&["virtual-servers", "start", "manual"]);

    // A golden guest deployed from the starter image, to be captured.
    server.cli_ok(&["virtual-servers", "create", "golden", "--host", "local", "--template", "small"]);
    server.cli_ok(&[
        "virtual-servers",
        "deploy",
        "golden",
        "--os-template",
        "starter",
        "--hostname",
        "golden",
        "--address",
        "10.78.0.10/24",
        "--start",
    ]);
    let golden = registered(&api, "golden");
    assert_eq!(golden["inventory"]["host"]["hostname"], "golden", "{golden:#}");
    let manual = registered(&api, "manual");
    assert_eq!(manual["state"], "online");

    // Step 2: capture the stopped golden guest into a sealed OS template.
    let stopped = server.cli_json(&["virtual-servers", "stop", "golden", "--timeout", "60"]);
    assert_eq!(stopped["power"], "stopped", "{stopped:#}");
    let captured = server.cli_json(&["os-templates", "capture", "golden-image", "--from", "golden"]);
    let sealed = captured["sealed"].to_string();
    for expected in ["/etc/machine-id", "/etc/steward/network.conf", "/var/lib/steward-agent"] {
        assert!(sealed.contains(expected), "{expected} was not sealed: {captured:#}");
    }
    assert_eq!(captured["source_virtual_server"], "golden");

    // Steps 3 to 5: a server template, two virtual servers, deployed with their own hostnames and addresses.
    server.cli_ok(&[
        "server-templates",
        "create",
        "web",
        "--arch",
        "x86_64",
        "--cpus",
        "1",
        "--memory",
        "256M",
        "--disk",
        "512M",
        "--nic",
        "lan",
    ]);
    let probe = temp.path().join("reach.sh");
    std::fs::write(
        &probe,
        "for i in $(seq 1 60); do if ping -c 1 -W 1 10.78.0.12 >/dev/null 2>&1; then echo 'reach 10.78.0.12: ok'; exit 0; fi; sleep 1; done\necho 'reach 10.78.0.12: failed'; exit 1\n",
    )
    .unwrap();
    for (name, address) in [("web1", "10.78.0.11/24"), ("web2", "10.78.0.12/24")] {
        server.cli_ok(&["virtual-servers", "create", name, "--host", "local", "--template", "web"]);
        let mut deploy = vec![
            "virtual-servers",
            "deploy",
            name,
            "--os-template",
            "golden-image",
            "--hostname",
            name,
            "--address",
            address,
            "--gateway",
            "10.78.0.1",
            "--dns",
            "10.78.0.1",
            "--start",
        ];
        let script = format!("reach={}", probe.display());
        if name == "web1" {
            deploy.extend(["--script", &script]);
        }
        let shown = server.cli_json(&deploy);
        assert_eq!(shown["disks"][0]["origin"], "overlay");
    }
    for (name, address) in [("web1", "10.78.0.11"), ("web2", "10.78.0.12")] {
        let system = registered(&api, name);
        assert_eq!(system["inventory"]["host"]["hostname"], name, "{system:#}");
        let found = addresses(&system);
        assert!(found.iter().any(|found| found.contains(address)), "{name} has {found:?}");
    }
    eventually("web1 reaches web2 over the isolated network", Duration::from_secs(120), || {
        console(&api, "web1").contains("reach 10.78.0.12: ok").then_some(())
    });

    // Every QEMU guest of the host is listed, ones Steward did not start too.
    let mut foreign = Command::new("qemu-system-x86_64")
        .args(["-name", "foreign-guest", "-accel", "tcg", "-m", "64", "-display", "none", "-nodefaults", "-S"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guests = eventually("the foreign guest is listed", Duration::from_secs(20), || {
        let guests = server.cli_json(&["hosts", "guests", "local"]);
        guests.to_string().contains("foreign-guest").then_some(guests)
    });
    let _ = foreign.kill();
    let _ = foreign.wait();
    // Other servers' guests (other tests) may be listed too: they are not this server's, so not managed here.
    let listed = |name: &str, managed: bool| {
        guests.as_array().unwrap().iter().any(|guest| guest["name"] == name && guest["managed"] == managed)
    };
    assert!(listed("foreign-guest", false), "{guests:#}");
    assert!(listed("web1", true), "{guests:#}");
    assert!(guests.as_array().unwrap().iter().any(|guest| guest["virtual_server"] == "web1"), "{guests:#}");

    // Guests survive a server restart, and the server re-attaches to their agents.
    let web2 = format!("{}/", data_dir.join("hosts/local/guests/web2").display());
    let pids = qemu_processes(&web2);
    assert_eq!(pids.len(), 1);
    server.terminate();
    assert_eq!(qemu_processes(&web2), pids, "the guest must outlive the server");
    let server = Server::start_in(&data_dir, &[]);
    let api = server.api();
    eventually("web2's agent is back after the restart", Duration::from_secs(60), || {
        (api.get("/systems/web2").body["state"] == "online").then_some(())
    });
    assert_eq!(api.get("/virtual-servers/web2").body["power"], "running");

    // Delete removes guests, disks, config drives and sockets.
    for name in ["web1", "web2", "golden", "manual"] {
        server.cli_ok(&["virtual-servers", "delete", name]);
        let left = qemu_processes(&format!("{}/", data_dir.join("hosts/local/guests").join(name).display()));
        let cmdlines: Vec<String> = left
            .iter()
            .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " "))
            .collect();
        assert!(left.is_empty(), "{name} still runs: {cmdlines:?}");
        assert!(!data_dir.join("hosts/local/guests").join(name).exists(), "{name}'s files are left");
    }
    assert!(manual_disk.exists(), "a registered guest's own disk is never deleted by Steward");
    assert_eq!(api.get("/systems/web1").status, 404);
}

#[test]
fn an_s390x_guest_is_deployed_and_personalized() {
    require_qemu();
    let images = image_dir("s390x");
    let server = Server::start();
    let api = server.api();
    server.cli_ok(&["networks", "create", "zlan", "--host", "local", "--subnet", "10.79.0.0/24"]);
    server.cli_ok(&["os-templates", "import", "linux-z", "--metadata", images.join("template.json").to_str().unwrap()]);
    server.cli_ok(&[
        "server-templates",
        "create",
        "z-small",
        "--arch",
        "s390x",
        "--cpus",
        "1",
        "--memory",
        "512M",
        "--disk",
        "256M",
        "--nic",
        "zlan",
    ]);
    server.cli_ok(&["virtual-servers", "create", "zguest", "--host", "local", "--template", "z-small"]);
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), "echo \"personalized on $(uname -m) as $(hostname)\"\n").unwrap();
    let script_flag = format!("hello={}", script.path().display());
    // The wrapper records each script's exit code where the agent reads it; the next script can see it.
    let check = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(check.path(), "echo \"hello recorded $(cat /var/lib/steward/personalization/hello)\"\n").unwrap();
    let check_flag = format!("check={}", check.path().display());
    server.cli_ok(&[
        "virtual-servers",
        "deploy",
        "zguest",
        "--os-template",
        "linux-z",
        "--hostname",
        "zeta",
        "--address",
        "10.79.0.5/24",
        "--gateway",
        "10.79.0.1",
        "--script",
        &script_flag,
        "--script",
        &check_flag,
        "--start",
    ]);
    let text = eventually("the s390x guest is personalized", Duration::from_secs(120), || {
        let text = console(&api, "zguest");
        text.contains("steward-firstboot: done").then_some(text)
    });
    assert!(text.contains("hostname=zeta"), "{text}");
    assert!(text.contains("10.79.0.5/24"), "{text}");
    assert!(text.contains("personalized on s390x as zeta"), "{text}");
    assert!(text.contains("hello recorded 0"), "{text}");
    assert!(text.contains("steward-personalize: check exit 0"), "{text}");
    let stopped = server.cli_json(&["virtual-servers", "stop", "zguest", "--timeout", "60"]);
    assert_eq!(stopped["power"], "stopped");
    server.cli_ok(&["virtual-servers", "delete", "zguest"]);
    assert!(qemu_processes(&format!("{}/", server.data_dir.join("hosts/local/guests/zguest").display())).is_empty());
}

#[test]
fn a_running_guest_installed_by_hand_is_registered_and_then_controlled_by_steward() {
    require_qemu();
    let server = Server::start();
    let api = server.api();
    let work = tempfile::tempdir().unwrap();
    let disk = work.path().join("handmade.qcow2");
    let status = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&disk).arg("32M").status().unwrap();
    assert!(status.success());
    let monitor = work.path().join("handmade.qmp");
    // A guest someone started by hand, with its own monitor (paused: it needs no operating system to be real).
    let handmade = Command::new("qemu-system-x86_64")
        .args(["-name", "handmade", "-accel", "tcg", "-m", "96", "-display", "none", "-nodefaults", "-S", "-drive"])
        .arg(format!("file={},if=virtio,format=qcow2", disk.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", monitor.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut handmade = KillOnDrop(handmade);
    let pid = handmade.0.id();
    eventually("the hand-made guest is listed", Duration::from_secs(20), || {
        server.cli_json(&["hosts", "guests", "local"]).to_string().contains("handmade").then_some(())
    });

    let registered =
        server.cli_json(&["virtual-servers", "register", "adopted", "--host", "local", "--guest", &pid.to_string()]);
    assert_eq!(registered["power"], "running", "{registered:#}");
    assert_eq!(registered["memory_mib"], 96);
    assert_eq!(registered["registered"], true);
    assert_eq!(registered["disks"][0]["path"], disk.display().to_string());
    let guests = server.cli_json(&["hosts", "guests", "local"]);
    let listing = guests.as_array().unwrap().iter().find(|guest| guest["pid"] == pid).cloned().unwrap();
    assert_eq!(listing["managed"], true, "{guests:#}");
    assert_eq!(listing["virtual_server"], "adopted", "{guests:#}");

    // Steward stops it through its own monitor, then runs it under its own control.
    let stopped = server.cli_json(&["virtual-servers", "stop", "adopted", "--timeout", "2"]);
    assert_eq!(stopped["power"], "stopped");
    handmade.0.wait().unwrap();
    let started = server.cli_json(&["virtual-servers", "start", "adopted"]);
    assert_eq!(started["power"], "running");
    let guest_dir = format!("{}/", server.data_dir.join("hosts/local/guests/adopted").display());
    assert_eq!(qemu_processes(&guest_dir).len(), 1);
    server.cli_ok(&["virtual-servers", "delete", "adopted"]);
    assert!(qemu_processes(&guest_dir).is_empty());
    assert!(disk.exists(), "a registered guest's own disk is never deleted by Steward");
    assert_eq!(api.get("/virtual-servers/adopted").status, 404);
}

/// A process of the test's own, killed even when the test fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
