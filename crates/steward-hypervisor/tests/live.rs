//! Devices of running guests, with real QEMU under TCG: the starter image (`cargo xtask images`) boots with a
//! NIC on a network in the test's own namespace and an extra disk with a serial; `describe_guest` lists both
//! live; an operator detaches the NIC through QMP and `sync_live` plugs it back; a disk added to or removed
//! from the definition is plugged in or out while the guest runs, and the guest sees it (a personalization
//! script prints the guest's disks with their serials and its MAC addresses on the console whenever they
//! change). On x86_64 (`pc`) the guest ejects PCI devices through ACPI; on s390x ccw devices go without it.
//! A guest that never ejects (a firmware loop) makes `sync_live` fail with a clear error after its bounded wait.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use steward_hypervisor::qemu::QemuHost;
use steward_hypervisor::qemu::firmware;
use steward_hypervisor::qemu::qmp::QmpClient;
use steward_hypervisor::{
    Arch, Boot, ConfigDrive, DefineOutcome, DiskAttachment, DiskFormat, GuestSpec, Hypervisor, HypervisorError,
    LiveDisk, LiveNic, LiveSync, Nic, PersonalizationScript, StartOutcome,
};

/// How long a TCG guest may take to boot and run its personalization (two cores shared with other work).
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the guest may take to notice a device change (its watcher looks once a second).
const GUEST_NOTICE_TIMEOUT: Duration = Duration::from_secs(120);

/// The personalization scripts: `env` prints its environment, `watch` prints the result `env` recorded and
/// starts a bounded background loop printing a `steward-live:` line whenever the disks (with serials) or the
/// MAC addresses change.
fn scripts() -> Vec<PersonalizationScript> {
    let env = "echo \"steward-live: env complex=$STEWARD_COMPLEX index=$STEWARD_MEMBER_INDEX\"\n";
    let watch = r#"echo "steward-live: env result $(cat /var/lib/steward/personalization/env)"
(
  i=0
  last=
  while [ "$i" -lt 1200 ]; do
    now="disks"
    for d in /sys/block/vd*; do
      [ -e "$d" ] || continue
      now="$now ${d##*/}=$(cat "$d/serial" 2>/dev/null)"
    done
    now="$now macs"
    for n in /sys/class/net/*; do
      [ "${n##*/}" = lo ] && continue
      now="$now $(cat "$n/address" 2>/dev/null)"
    done
    if [ "$now" != "$last" ]; then
      echo "steward-live: $now end"
      last=$now
    fi
    sleep 1
    i=$((i + 1))
  done
) </dev/null &
"#;
    vec![
        PersonalizationScript { name: "env".to_owned(), body: env.to_owned() },
        PersonalizationScript { name: "watch".to_owned(), body: watch.to_owned() },
    ]
}

/// The console log of a guest, from byte `offset` on.
fn console_from(host: &QemuHost, name: &str, offset: usize) -> String {
    let bytes = std::fs::read(host.guests_directory().join(name).join("console.log")).unwrap_or_default();
    String::from_utf8_lossy(bytes.get(offset..).unwrap_or_default()).into_owned()
}

/// The length of the console log now, so later waits look only at what the guest printed afterwards.
fn console_length(host: &QemuHost, name: &str) -> usize {
    std::fs::metadata(host.guests_directory().join(name).join("console.log"))
        .map_or(0, |metadata| metadata.len() as usize)
}

/// Waits until a `steward-live: disks ...` line printed after `offset` satisfies `accept`; returns the line.
async fn wait_for_watch_line(
    host: &QemuHost,
    name: &str,
    offset: usize,
    timeout: Duration,
    what: &str,
    accept: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = console_from(host, name, offset);
        // A line may follow console output without a newline (the shell's prompt), so look inside lines too.
        let mut watch_lines =
            text.lines().filter_map(|line| line.find("steward-live: disks").map(|start| &line[start..]));
        if let Some(line) = watch_lines.find(|line| accept(line)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the guest did not show {what} within {timeout:?}; console since then:\n{text}\nwhole console:\n{}",
            console_from(host, name, 0)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the guest's live NICs satisfy `accept`.
async fn wait_for_live_nics(host: &QemuHost, name: &str, what: &str, accept: impl Fn(&[LiveNic]) -> bool) {
    let deadline = Instant::now() + GUEST_NOTICE_TIMEOUT;
    loop {
        let description = host.describe_guest(name).await.unwrap();
        let devices = description.live_devices.expect("a running guest reports its devices");
        if accept(&devices.nics) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not happen: {:?}", devices.nics);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn disk(path: PathBuf, serial: &str) -> DiskAttachment {
    DiskAttachment { path, format: DiskFormat::Qcow2, serial: Some(serial.to_owned()) }
}

async fn live_disks(host: &QemuHost, name: &str) -> Vec<LiveDisk> {
    host.describe_guest(name).await.unwrap().live_devices.unwrap().disks
}

/// The whole scenario on one architecture.
async fn devices_follow_the_definition_while_the_guest_runs(arch: Arch) {
    if !support::qemu_available() || !support::can_create_namespaces() {
        return;
    }
    let Some(image) = support::starter_image(arch.as_str()) else {
        return;
    };
    let test_host = support::TestHost::new();
    let host = test_host.open();
    let name = format!("live-{arch}");
    let name = name.as_str();
    let (console, memory_mib, mac) = match arch {
        Arch::X86_64 => ("ttyS0", 256, "52:54:00:5e:00:01"),
        Arch::S390x => ("ttysclp0", 512, "52:54:00:5e:00:02"),
    };

    let root = test_host.path("root.qcow2");
    host.disk_overlay(&root, &image.join("disk.qcow2"), DiskFormat::Qcow2, None).await.unwrap();
    let extra1 = test_host.path("extra1.qcow2");
    let extra2 = test_host.path("extra2.qcow2");
    host.disk_create(&extra1, 8 << 20).await.unwrap();
    host.disk_create(&extra2, 8 << 20).await.unwrap();
    let config_drive = test_host.path("cidata.img");
    let environment: BTreeMap<String, String> = [("STEWARD_COMPLEX", "web 'tier'"), ("STEWARD_MEMBER_INDEX", "3")]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    let drive = ConfigDrive {
        instance_id: format!("live-{arch}-1"),
        hostname: "live".to_owned(),
        nics: vec![],
        scripts: scripts(),
        environment,
    };
    host.config_drive_write(&config_drive, &drive).await.unwrap();
    host.network_create("lan").await.unwrap();
    host.nic_create("lan", "taplive0").await.unwrap();

    let mut spec = GuestSpec {
        name: name.to_owned(),
        arch,
        cpus: 1,
        memory_mib,
        cpu_share: 100,
        disks: vec![
            DiskAttachment { path: root.clone(), format: DiskFormat::Qcow2, serial: None },
            disk(extra1.clone(), "extra1"),
        ],
        config_drive: Some(config_drive.clone()),
        nics: vec![Nic { network: "lan".to_owned(), tap: "taplive0".to_owned(), mac: mac.to_owned() }],
        boot: Boot::Direct {
            kernel: image.join("vmlinuz"),
            initrd: Some(image.join("initrd.img")),
            cmdline: format!("console={console} root=/dev/vda rw quiet panic=-1"),
        },
        agent_channel: false,
    };
    host.define_guest(&spec).await.unwrap();

    // Not running: nothing to do.
    assert_eq!(host.sync_live(name).await.unwrap(), LiveSync::default());
    assert!(host.describe_guest(name).await.unwrap().live_devices.is_none());

    let StartOutcome::Started { .. } = host.start(name).await.unwrap() else { panic!("the guest must start") };
    let first = wait_for_watch_line(&host, name, 0, BOOT_TIMEOUT, "its devices", |_| true).await;
    assert!(first.contains("=extra1 ") && first.contains(mac), "{first}");
    let text = console_from(&host, name, 0);
    // The environment reached the script, and the wrapper recorded the first script's exit code.
    assert!(text.contains("steward-live: env complex=web 'tier' index=3"), "{text}");
    assert!(text.contains("steward-live: env result 0"), "{text}");

    // Both devices are live, under the ids derived from what they are; the config drive is not listed.
    let description = host.describe_guest(name).await.unwrap();
    let devices = description.live_devices.unwrap();
    let nic_id = format!("nic-{}", mac.replace(':', ""));
    assert_eq!(devices.nics, [LiveNic { mac: mac.to_owned(), device_id: nic_id.clone() }]);
    assert_eq!(
        devices.disks,
        [
            LiveDisk { device_id: "disk0".to_owned(), path: Some(root.clone()), serial: None, read_only: false },
            LiveDisk {
                device_id: "disk-extra1".to_owned(),
                path: Some(extra1.clone()),
                serial: Some("extra1".to_owned()),
                read_only: false,
            },
        ]
    );
    assert_eq!(host.sync_live(name).await.unwrap(), LiveSync::default(), "the guest matches its definition");

    // An operator detaches the NIC behind Steward's back, through QMP.
    // QEMU serves one QMP client at a time, so the operator's connection is closed before Steward looks.
    let offset = console_length(&host, name);
    let mut monitor = QmpClient::connect(name, &host.qmp_socket(name).unwrap()).await.unwrap();
    monitor.execute("device_del", Some(json!({ "id": nic_id }))).await.unwrap();
    drop(monitor);
    wait_for_live_nics(&host, name, "the NIC going away", |nics| nics.is_empty()).await;
    wait_for_watch_line(&host, name, offset, GUEST_NOTICE_TIMEOUT, "the NIC gone", |line| !line.contains(mac)).await;
    let mut monitor = QmpClient::connect(name, &host.qmp_socket(name).unwrap()).await.unwrap();
    let refused = monitor.execute("device_del", Some(json!({ "id": nic_id }))).await.unwrap_err();
    assert_eq!(refused.qmp_class(), Some("DeviceNotFound"), "{refused}");
    drop(monitor);
    let offset = console_length(&host, name);
    let report = host.sync_live(name).await.unwrap();
    assert_eq!(report.attached, [format!("nic {mac} on network lan")]);
    assert!(report.detached.is_empty() && report.restart_required.is_empty(), "{report:?}");
    assert_eq!(host.sync_live(name).await.unwrap(), LiveSync::default(), "a second sync has nothing to do");
    wait_for_live_nics(&host, name, "the NIC coming back", |nics| {
        nics == [LiveNic { mac: mac.to_owned(), device_id: nic_id.clone() }]
    })
    .await;
    wait_for_watch_line(&host, name, offset, GUEST_NOTICE_TIMEOUT, "the NIC again", |line| line.contains(mac)).await;

    // A second extra disk in the definition is plugged in, with its serial, and the guest sees it.
    spec.disks.push(disk(extra2.clone(), "extra2"));
    assert_eq!(host.define_guest(&spec).await.unwrap(), DefineOutcome::Updated);
    let offset = console_length(&host, name);
    let report = host.sync_live(name).await.unwrap();
    assert_eq!(report.attached, [format!("disk {} (serial extra2)", extra2.display())]);
    assert!(report.detached.is_empty(), "{report:?}");
    assert_eq!(host.sync_live(name).await.unwrap(), LiveSync::default());
    let seen = wait_for_watch_line(&host, name, offset, GUEST_NOTICE_TIMEOUT, "the disk extra2", |line| {
        line.contains("=extra2 ")
    })
    .await;
    assert!(seen.contains("=extra1 ") && seen.contains(mac), "{seen}");
    let disks = live_disks(&host, name).await;
    assert!(
        disks.contains(&LiveDisk {
            device_id: "disk-extra2".to_owned(),
            path: Some(extra2.clone()),
            serial: Some("extra2".to_owned()),
            read_only: false,
        }),
        "{disks:?}"
    );

    // Removed from the definition, it is unplugged; the guest gives it up.
    spec.disks.pop();
    host.define_guest(&spec).await.unwrap();
    let offset = console_length(&host, name);
    let report = host.sync_live(name).await.unwrap();
    assert_eq!(report.detached, [format!("disk {} (serial extra2)", extra2.display())]);
    assert!(report.attached.is_empty(), "{report:?}");
    assert_eq!(host.sync_live(name).await.unwrap(), LiveSync::default());
    wait_for_watch_line(&host, name, offset, GUEST_NOTICE_TIMEOUT, "the disk extra2 gone", |line| {
        !line.contains("=extra2 ") && line.contains("=extra1 ")
    })
    .await;
    assert!(live_disks(&host, name).await.iter().all(|disk| disk.path.as_deref() != Some(extra2.as_path())));

    // The CPU share changes live; memory only at the next start, which the report says.
    spec.cpu_share = 200;
    spec.memory_mib = memory_mib * 2;
    host.define_guest(&spec).await.unwrap();
    let report = host.sync_live(name).await.unwrap();
    assert_eq!(report.applied, ["cpu share 100 -> 200"]);
    assert_eq!(report.restart_required, [format!("memory {memory_mib} MiB -> {} MiB", memory_mib * 2)]);
    assert!(report.attached.is_empty() && report.detached.is_empty(), "{report:?}");
    let again = host.sync_live(name).await.unwrap();
    assert!(again.applied.is_empty() && again.attached.is_empty() && again.detached.is_empty(), "{again:?}");
    assert_eq!(host.describe_guest(name).await.unwrap().live_cpu_share, Some(200));

    eprintln!("console of {name}:\n{}", console_from(&host, name, 0));
    host.undefine_guest(name).await.unwrap();
    host.nic_delete("taplive0").await.unwrap();
    host.network_delete("lan").await.unwrap();
    assert!(support::processes_mentioning(test_host.directory.path()).is_empty());
}

#[tokio::test]
async fn devices_follow_the_definition_while_an_x86_64_guest_runs() {
    devices_follow_the_definition_while_the_guest_runs(Arch::X86_64).await;
}

#[tokio::test]
async fn devices_follow_the_definition_while_an_s390x_guest_runs() {
    devices_follow_the_definition_while_the_guest_runs(Arch::S390x).await;
}

/// A guest without an operating system never ejects a PCI device: the removal fails clearly after the bounded
/// wait, and stays requested.
#[tokio::test]
async fn a_guest_that_never_ejects_makes_the_removal_fail_after_a_bounded_wait() {
    if !support::qemu_available() {
        return;
    }
    let test_host = support::TestHost::new();
    let host = test_host.open().with_unplug_timeout(Duration::from_secs(2));
    let firmware_path = test_host.path("idle.bin");
    std::fs::write(&firmware_path, firmware::idle_loop_bios()).unwrap();
    let root = test_host.path("root.qcow2");
    let data = test_host.path("data.qcow2");
    host.disk_create(&root, 1 << 20).await.unwrap();
    host.disk_create(&data, 1 << 20).await.unwrap();
    let mut spec = GuestSpec {
        name: "stubborn".to_owned(),
        arch: Arch::X86_64,
        cpus: 1,
        memory_mib: 32,
        cpu_share: 100,
        // The firmware ignores the disk; it makes the data disk an extra one.
        disks: vec![DiskAttachment { path: root, format: DiskFormat::Qcow2, serial: None }],
        config_drive: None,
        nics: vec![],
        boot: Boot::Firmware { firmware: Some(firmware_path) },
        agent_channel: false,
    };
    host.define_guest(&spec).await.unwrap();
    host.start("stubborn").await.unwrap();

    // Plugging in needs no cooperation: QEMU has the disk at once.
    spec.disks.push(disk(data.clone(), "data"));
    host.define_guest(&spec).await.unwrap();
    let report = host.sync_live("stubborn").await.unwrap();
    assert_eq!(
        report,
        LiveSync { attached: vec![format!("disk {} (serial data)", data.display())], ..LiveSync::default() }
    );
    assert_eq!(live_disks(&host, "stubborn").await.len(), 2);

    spec.disks.pop();
    host.define_guest(&spec).await.unwrap();
    for _ in 0..2 {
        let error = host.sync_live("stubborn").await.unwrap_err();
        assert!(matches!(error, HypervisorError::UnplugTimeout { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains(&format!("disk {} (serial data)", data.display())), "{message}");
        assert!(message.contains("ACPI"), "{message}");
    }
    assert_eq!(live_disks(&host, "stubborn").await.len(), 2, "the disk is still there");

    // It started without NICs, so it runs outside the network namespace: a NIC waits for the next start.
    if support::can_create_namespaces() {
        spec.disks.push(disk(data.clone(), "data"));
        spec.nics =
            vec![Nic { network: "lan".to_owned(), tap: "tapstub0".to_owned(), mac: "52:54:00:5e:00:09".to_owned() }];
        host.define_guest(&spec).await.unwrap();
        host.network_create("lan").await.unwrap();
        host.nic_create("lan", "tapstub0").await.unwrap();
        let report = host.sync_live("stubborn").await.unwrap();
        let expected = "nic 52:54:00:5e:00:09 on network lan (the guest runs outside the network namespace)";
        assert_eq!(report, LiveSync { restart_required: vec![expected.to_owned()], ..LiveSync::default() });
        assert!(host.describe_guest("stubborn").await.unwrap().live_devices.unwrap().nics.is_empty());
        host.nic_delete("tapstub0").await.unwrap();
        host.network_delete("lan").await.unwrap();
    }
    host.undefine_guest("stubborn").await.unwrap();
    assert!(!Path::new(&host.qmp_socket("stubborn").unwrap()).exists());
}
