//! The guest lifecycle with real QEMU under TCG and no operating system: the guests boot a generated firmware
//! that spins forever (`jmp $`), so they run, answer QMP and ignore the ACPI power button.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use steward_hypervisor::qemu::firmware;
use steward_hypervisor::{
    Arch, Boot, ConfigDrive, DefineOutcome, DiskAttachment, DiskFormat, GuestSpec, GuestState, Hypervisor,
    HypervisorError, Nic, StartOutcome, StopOutcome,
};

fn idle_firmware(test_host: &support::TestHost) -> PathBuf {
    let path = test_host.path("idle.bin");
    std::fs::write(&path, firmware::idle_loop_bios()).unwrap();
    path
}

fn idle_guest(name: &str, firmware: PathBuf) -> GuestSpec {
    GuestSpec {
        name: name.to_owned(),
        arch: Arch::X86_64,
        cpus: 1,
        memory_mib: 32,
        cpu_share: 100,
        disks: vec![],
        config_drive: None,
        nics: vec![],
        boot: Boot::Firmware { firmware: Some(firmware) },
        agent_channel: true,
    }
}

fn running_pid(state: GuestState) -> u32 {
    match state {
        GuestState::Running { pid } => pid,
        GuestState::Stopped => panic!("the guest is not running"),
    }
}

#[tokio::test]
async fn a_guest_lives_and_dies_and_leaves_nothing_behind() {
    if !support::qemu_available() {
        return;
    }
    let mut test_host = support::TestHost::new();
    let host = test_host.open();
    let firmware = idle_firmware(&test_host);
    let spec = idle_guest("idle01", firmware.clone());

    assert_eq!(host.define_guest(&spec).await.unwrap(), DefineOutcome::Created);
    assert_eq!(host.define_guest(&spec).await.unwrap(), DefineOutcome::Unchanged);
    assert_eq!(Hypervisor::defined_guests(&host).await.unwrap(), ["idle01"]);
    assert_eq!(Hypervisor::status(&host, "idle01").await.unwrap(), GuestState::Stopped);

    let started = std::time::Instant::now();
    let StartOutcome::Started { pid } = Hypervisor::start(&host, "idle01").await.unwrap() else {
        panic!("the first start must start the guest");
    };
    eprintln!("start to QMP answering: {:?}", started.elapsed());
    assert_eq!(Hypervisor::start(&host, "idle01").await.unwrap(), StartOutcome::AlreadyRunning { pid });
    assert_eq!(Hypervisor::status(&host, "idle01").await.unwrap(), GuestState::Running { pid });
    assert!(host.agent_socket("idle01").unwrap().exists());

    let description = host.describe_guest("idle01").await.unwrap();
    assert_eq!(description.spec, spec);
    assert_eq!(description.run_state.as_deref(), Some("running"));
    assert_eq!(description.live_cpu_share, Some(100));
    let live = description.live.unwrap();
    assert_eq!((live.memory_mib, live.cpus, live.managed), (Some(32), Some(1), true));

    // A QEMU Steward did not start is listed too, as unmanaged.
    let mut foreign = tokio::process::Command::new("qemu-system-x86_64")
        .args(["-name", "foreign-guest", "-m", "24", "-nodefaults", "-display", "none", "-accel", "tcg", "-bios"])
        .arg(&firmware)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let foreign_pid = foreign.id().unwrap();
    test_host.extra_pids.push(foreign_pid);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listings = Hypervisor::list_guests(&host).await.unwrap();
    let ours = listings.iter().find(|listing| listing.pid == pid).unwrap();
    assert_eq!((ours.name.as_deref(), ours.arch, ours.managed), (Some("idle01"), Some(Arch::X86_64), true));
    let theirs = listings.iter().find(|listing| listing.pid == foreign_pid).unwrap();
    assert_eq!((theirs.name.as_deref(), theirs.memory_mib, theirs.managed), (Some("foreign-guest"), Some(24), false));
    foreign.kill().await.unwrap();

    // Nothing handles the power button, so the stop is forced after the short timeout.
    assert_eq!(Hypervisor::stop(&host, "idle01", Duration::from_millis(500)).await.unwrap(), StopOutcome::Forced);
    assert_eq!(
        Hypervisor::stop(&host, "idle01", Duration::from_millis(500)).await.unwrap(),
        StopOutcome::AlreadyStopped
    );
    assert_eq!(Hypervisor::status(&host, "idle01").await.unwrap(), GuestState::Stopped);
    assert!(!steward_hypervisor::qemu::processes::process_alive(pid));

    // Restart brings it back with a new process; undefine then stops it and removes everything.
    let StartOutcome::Started { pid: second_pid } = host.restart("idle01", Duration::ZERO).await.unwrap() else {
        panic!("restart must start the guest");
    };
    Hypervisor::undefine_guest(&host, "idle01").await.unwrap();
    Hypervisor::undefine_guest(&host, "idle01").await.unwrap();
    assert!(!steward_hypervisor::qemu::processes::process_alive(second_pid));
    assert!(!host.guests_directory().join("idle01").exists());
    assert!(support::processes_mentioning(test_host.directory.path()).is_empty());
    let gone = Hypervisor::status(&host, "idle01").await.unwrap_err();
    assert!(matches!(gone, HypervisorError::NotFound { .. }), "{gone}");
}

#[tokio::test]
async fn guests_survive_the_host_object_and_are_found_again() {
    if !support::qemu_available() {
        return;
    }
    let test_host = support::TestHost::new();
    let firmware = idle_firmware(&test_host);
    let pid = {
        let host = test_host.open();
        host.define_guest(&idle_guest("survivor", firmware)).await.unwrap();
        running_pid(match host.start("survivor").await.unwrap() {
            StartOutcome::Started { pid } => GuestState::Running { pid },
            StartOutcome::AlreadyRunning { .. } => panic!("nothing was running"),
        })
    };
    // The first QemuHost is gone (as after a server restart); a new one on the same root re-attaches.
    let host = test_host.open();
    assert_eq!(host.status("survivor").unwrap(), GuestState::Running { pid });
    // Even without its pid file the guest is found by its command line.
    std::fs::remove_file(host.guests_directory().join("survivor/qemu.pid")).unwrap();
    assert_eq!(host.status("survivor").unwrap(), GuestState::Running { pid });
    assert_eq!(host.stop("survivor", Duration::from_millis(300)).await.unwrap(), StopOutcome::Forced);
    assert!(!steward_hypervisor::qemu::processes::process_alive(pid));
}

#[tokio::test]
async fn the_cpu_share_applies_to_a_running_guest() {
    if !support::qemu_available() {
        return;
    }
    let test_host = support::TestHost::new();
    let host = test_host.open();
    let mut spec = idle_guest("weighted", idle_firmware(&test_host));
    spec.cpu_share = 50;
    host.define_guest(&spec).await.unwrap();
    let pid = running_pid(match host.start("weighted").await.unwrap() {
        StartOutcome::Started { pid } | StartOutcome::AlreadyRunning { pid } => GuestState::Running { pid },
    });
    assert_eq!(host.describe_guest("weighted").await.unwrap().live_cpu_share, Some(50));
    host.set_cpu_share("weighted", 200).await.unwrap();
    let description = host.describe_guest("weighted").await.unwrap();
    assert_eq!((description.spec.cpu_share, description.live_cpu_share), (200, Some(200)));
    // Every thread of the process carries the weight (nice -3).
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
        let nice: i32 = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(16).unwrap().parse().unwrap();
        assert_eq!(nice, -3);
    }
    assert!(host.set_cpu_share("weighted", 0).await.unwrap_err().to_string().contains("CPU share"));
    host.undefine_guest("weighted").await.unwrap();
}

#[tokio::test]
async fn a_guest_with_a_disk_a_config_drive_and_a_nic_runs_inside_the_namespace() {
    if !support::qemu_available() || !support::can_create_namespaces() {
        return;
    }
    let test_host = support::TestHost::new();
    let host = test_host.open();
    let disk = test_host.path("root.qcow2");
    host.disk_create(&disk, 16 << 20).await.unwrap();
    let config_drive = test_host.path("cidata.img");
    let drive = ConfigDrive {
        instance_id: "vs-9".to_owned(),
        hostname: "net01".to_owned(),
        nics: vec![],
        scripts: vec![],
        environment: Default::default(),
    };
    host.config_drive_write(&config_drive, &drive).await.unwrap();
    let mut spec = idle_guest("net01", idle_firmware(&test_host));
    spec.disks = vec![DiskAttachment { path: disk.clone(), format: DiskFormat::Qcow2, serial: None }];
    spec.config_drive = Some(config_drive);
    spec.nics =
        vec![Nic { network: "lan".to_owned(), tap: "tapnet01".to_owned(), mac: "52:54:00:aa:00:01".to_owned() }];
    host.define_guest(&spec).await.unwrap();

    // Without its tap the guest cannot start, and says why.
    let missing = host.start("net01").await.unwrap_err();
    assert!(matches!(missing, HypervisorError::NicMissing { .. }), "{missing}");

    host.network_create("lan").await.unwrap();
    host.nic_create("lan", "tapnet01").await.unwrap();
    let StartOutcome::Started { pid } = host.start("net01").await.unwrap() else { panic!("must start") };
    let namespace_of = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_ne!(namespace_of(pid), namespace_of(std::process::id()), "QEMU runs in the host's namespace");
    let listing = host.list_guests().into_iter().find(|listing| listing.pid == pid).unwrap();
    assert_eq!(listing.disks.len(), 2);
    assert_eq!(listing.disks[0], disk);
    // The tap is in use by QEMU: its carrier is up only while a process has it open.
    let tap = std::process::Command::new("ip")
        .args(["-n", &test_host.namespace, "-o", "link", "show", "dev", "tapnet01"])
        .output()
        .unwrap();
    let tap = String::from_utf8_lossy(&tap.stdout);
    assert!(!tap.contains("NO-CARRIER"), "{tap}");

    host.undefine_guest("net01").await.unwrap();
    host.nic_delete("tapnet01").await.unwrap();
    host.network_delete("lan").await.unwrap();
}
