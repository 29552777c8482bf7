//! The devices of a running guest, read and changed through QMP while it runs: `describe_guest`'s
//! `live_devices` and `sync_live`.
//!
//! What QEMU 7.2 reports (checked against a running guest):
//!
//! - `query-rx-filter`: one entry per NIC, `name` is the device's `id` (`nic-525400aa0001`; a NIC started
//!   without id gets `virtio-net-pci.0`, which is no QOM path), `main-mac` the MAC in use;
//! - `query-block`: one entry per block backend, `qdev` the device's QOM path plus `/virtio-backend`
//!   (`/machine/peripheral/disk0/virtio-backend`), `inserted.file` and `inserted.ro`; a disk plugged with
//!   `blockdev-add` has an empty `device` but the same `qdev`. The serial is not there: it is read with
//!   `qom-get` of the device's `serial` property (`""` when it has none).
//!
//! `sync_live` compares the stored definition with that, matching a device by its id (see `cmdline`) or, for a
//! device started under another id, by MAC or image path, then:
//!
//! ```text
//!  1. device_del every NIC and disk the definition no longer has (and a NIC whose tap changed), then wait
//!     until QEMU reports each gone (polling qom-list, at most `unplug_timeout`), then netdev_del their tap
//!     backends and blockdev-del the block nodes sync_live had added;
//!  2. disks it lacks: blockdev-add (node name = the disk id; a node left over is reused if it opens the same
//!     image) + device_add virtio-blk-{pci,ccw} with id and serial;
//!  3. NICs it lacks: netdev_add tap (an existing netdev of that id, left behind when someone removed only the
//!     device, is reused) + device_add virtio-net-{pci,ccw} with id and MAC;
//!  4. the CPU share (scheduler weight of every QEMU thread).
//! ```
//!
//! On `pc` (x86_64) unplugging a PCI device is a request: QEMU signals the guest through ACPI and removes the
//! device only when the guest ejects it (Linux's `acpiphp`, built into Debian's kernels); a guest that never
//! does (still booting, no ACPI, no operating system) makes `sync_live` fail with `UnplugTimeout` after the
//! bounded wait, and the request stays pending in QEMU. On `s390-ccw-virtio` ccw devices go at once.
//!
//! Differences a running QEMU cannot take (machine, memory, CPU count, kernel, firmware, boot disk, config
//! drive, management channel, a disk's serial, a NIC started without id, a NIC for a guest that started
//! without any and so runs outside the network namespace) are reported in `restart_required`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{HypervisorError, Result};
use crate::qemu::QemuHost;
use crate::qemu::cmdline::{self, GuestPaths};
use crate::qemu::cpu_share;
use crate::qemu::guest::{adopted_pid, running_pid};
use crate::qemu::processes::{self, option_field, option_value};
use crate::qemu::qmp::QmpClient;
use crate::types::{Accelerator, Arch, DiskAttachment, GuestSpec, LiveDevices, LiveDisk, LiveNic, LiveSync, Nic};

/// How long `sync_live` waits, by default, for the guest to release the devices it removes.
pub const DEFAULT_UNPLUG_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the wait for a removed device looks again.
const UNPLUG_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The QOM container of devices created with an `id`.
const PERIPHERAL: &str = "/machine/peripheral";

/// The QOM path of a device named by `device_id` (an id, or already a QOM path).
fn qom_path(device_id: &str) -> String {
    if device_id.starts_with('/') { device_id.to_owned() } else { format!("{PERIPHERAL}/{device_id}") }
}

/// The device id (or, for a device without id, the QOM path) of a block backend's `qdev` path.
fn device_id_of_qdev(qdev: &str) -> String {
    let device = qdev.strip_suffix("/virtio-backend").unwrap_or(qdev);
    match device.strip_prefix(PERIPHERAL).and_then(|rest| rest.strip_prefix('/')) {
        Some(id) if !id.contains('/') => id.to_owned(),
        _ => device.to_owned(),
    }
}

fn protocol_error(guest: &str, message: String) -> HypervisorError {
    HypervisorError::Qmp { guest: guest.to_owned(), message }
}

/// The guest's NICs (`query-rx-filter`).
pub async fn query_nics(monitor: &mut QmpClient) -> Result<Vec<LiveNic>> {
    let answer = monitor.execute("query-rx-filter", None).await?;
    let entries = answer
        .as_array()
        .ok_or_else(|| protocol_error(monitor.guest(), format!("query-rx-filter returned {answer}")))?;
    let mut nics = Vec::new();
    for entry in entries {
        let (Some(name), Some(mac)) =
            (entry.get("name").and_then(Value::as_str), entry.get("main-mac").and_then(Value::as_str))
        else {
            return Err(protocol_error(monitor.guest(), format!("query-rx-filter entry without name or MAC: {entry}")));
        };
        nics.push(LiveNic { mac: mac.to_ascii_lowercase(), device_id: name.to_owned() });
    }
    Ok(nics)
}

/// The guest's disks (`query-block`, and `qom-get serial` per device), without the config drive: the device
/// `cidata`, or any device whose image is one of `config_drives`.
pub async fn query_disks(monitor: &mut QmpClient, config_drives: &[&Path]) -> Result<Vec<LiveDisk>> {
    let answer = monitor.execute("query-block", None).await?;
    let entries =
        answer.as_array().ok_or_else(|| protocol_error(monitor.guest(), format!("query-block returned {answer}")))?;
    let mut disks = Vec::new();
    for entry in entries {
        // A backend without a device (a drive nobody uses) is no disk of the guest.
        let Some(qdev) = entry.get("qdev").and_then(Value::as_str).filter(|qdev| !qdev.is_empty()) else {
            continue;
        };
        let device_id = device_id_of_qdev(qdev);
        let inserted = entry.get("inserted");
        let path = inserted.and_then(|inserted| inserted.get("file")).and_then(Value::as_str).map(PathBuf::from);
        let read_only = inserted.and_then(|inserted| inserted.get("ro")).and_then(Value::as_bool).unwrap_or(false);
        if device_id == cmdline::CONFIG_DRIVE_ID || path.as_deref().is_some_and(|path| config_drives.contains(&path)) {
            continue;
        }
        let serial =
            match monitor.execute("qom-get", Some(json!({ "path": qom_path(&device_id), "property": "serial" }))).await
            {
                Ok(Value::String(serial)) if !serial.is_empty() => Some(serial),
                Ok(_) => None,
                // A device type without the property has no serial.
                Err(error) if error.qmp_class().is_some() => None,
                Err(error) => return Err(error),
            };
        disks.push(LiveDisk { device_id, path, serial, read_only });
    }
    Ok(disks)
}

/// The live devices of a guest whose monitor is `monitor`; `arguments` is its QEMU command line.
pub async fn query_live_devices(
    monitor: &mut QmpClient,
    spec: &GuestSpec,
    arguments: Option<&[String]>,
) -> Result<LiveDevices> {
    let live_config_drive = arguments.and_then(config_drive_of);
    let config_drives: Vec<&Path> =
        spec.config_drive.as_deref().into_iter().chain(live_config_drive.as_deref()).collect();
    let nics = query_nics(monitor).await?;
    let disks = query_disks(monitor, &config_drives).await?;
    Ok(LiveDevices { nics, disks })
}

/// The fields of every `option` argument (`-device`, `-drive`) of a command line.
fn option_values<'a>(arguments: &'a [String], option: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    arguments.windows(2).filter(move |pair| pair[0] == option).map(|pair| pair[1].as_str())
}

/// The image of the drive with this id on a command line.
fn drive_file(arguments: &[String], drive: &str) -> Option<PathBuf> {
    option_values(arguments, "-drive")
        .find(|value| option_field(value, "id", false).as_deref() == Some(drive))
        .and_then(|value| option_field(value, "file", false))
        .map(PathBuf::from)
}

/// The boot disk of a command line: the device with `bootindex=1` (its id, if it has one) and its image.
fn boot_disk_of(arguments: &[String]) -> Option<(Option<String>, PathBuf)> {
    let device = option_values(arguments, "-device")
        .find(|value| option_field(value, "bootindex", false).as_deref() == Some("1"))?;
    let drive = option_field(device, "drive", false)?;
    Some((option_field(device, "id", false), drive_file(arguments, &drive)?))
}

/// The config drive image of a command line.
fn config_drive_of(arguments: &[String]) -> Option<PathBuf> {
    drive_file(arguments, cmdline::CONFIG_DRIVE_ID)
}

/// Whether a command line has the management channel.
fn has_agent_channel(arguments: &[String]) -> bool {
    option_values(arguments, "-device")
        .any(|value| option_field(value, "name", false).as_deref() == Some(cmdline::AGENT_PORT_NAME))
}

/// What differs between the running command line and the one the definition gives, that only a restart
/// applies.
fn restart_differences(spec: &GuestSpec, arguments: &[String], paths: &GuestPaths) -> Result<Vec<String>> {
    let accelerator = match option_value(arguments, "-accel") {
        Some("kvm") => Accelerator::Kvm,
        _ => Accelerator::Tcg,
    };
    let expected = cmdline::guest_arguments(spec, paths, accelerator)?;
    let mut differences = Vec::new();
    let shown = |value: Option<&str>| value.unwrap_or("none").to_owned();
    if let Some(Some(arch)) = processes::emulator_arch(arguments)
        && arch != spec.arch
    {
        differences.push(format!("architecture {arch} -> {}", spec.arch));
    }
    for (option, label, unit) in [
        ("-M", "machine", ""),
        ("-m", "memory", " MiB"),
        ("-smp", "CPU count", ""),
        ("-kernel", "boot kernel", ""),
        ("-initrd", "boot initrd", ""),
        ("-append", "boot command line", ""),
        ("-bios", "boot firmware", ""),
    ] {
        let (live, wanted) = (option_value(arguments, option), option_value(&expected, option));
        if live != wanted {
            differences.push(format!("{label} {}{unit} -> {}{unit}", shown(live), shown(wanted)));
        }
    }
    let live_boot = boot_disk_of(arguments).map(|(_, path)| path);
    let wanted_boot = spec.disks.first().map(|disk| disk.path.clone());
    if live_boot != wanted_boot {
        let path = |path: &Option<PathBuf>| path.as_ref().map_or("none".to_owned(), |path| path.display().to_string());
        differences.push(format!("boot disk {} -> {}", path(&live_boot), path(&wanted_boot)));
    }
    let live_config_drive = config_drive_of(arguments);
    if live_config_drive != spec.config_drive {
        let path = |path: &Option<PathBuf>| path.as_ref().map_or("none".to_owned(), |path| path.display().to_string());
        differences.push(format!("config drive {} -> {}", path(&live_config_drive), path(&spec.config_drive)));
    }
    if has_agent_channel(arguments) != spec.agent_channel {
        differences.push(
            if spec.agent_channel { "management channel added" } else { "management channel removed" }.to_owned(),
        );
    }
    Ok(differences)
}

/// A NIC of the running guest, with what `sync_live` needs beyond `LiveNic`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunningNic {
    nic: LiveNic,
    /// Its tap backend's id (`net-<tap>`), when it could be read.
    netdev: Option<String>,
    /// Whether `device_id` names a device (a NIC started without id cannot be removed by name).
    removable: bool,
}

/// What `sync_live` is going to do.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan<'a> {
    detach_nics: Vec<RunningNic>,
    detach_disks: Vec<LiveDisk>,
    attach_disks: Vec<(usize, &'a DiskAttachment)>,
    attach_nics: Vec<&'a Nic>,
    restart_required: Vec<String>,
}

/// Compares the definition with the running devices. `live_boot` is the running boot disk (from the command
/// line), which is never removed: only a restart changes it.
fn plan<'a>(
    spec: &'a GuestSpec,
    nics: &[RunningNic],
    disks: &[LiveDisk],
    live_boot: Option<&(Option<String>, PathBuf)>,
) -> Plan<'a> {
    let mut plan = Plan::default();
    let mut kept_nics = HashSet::new();
    for nic in &spec.nics {
        let id = cmdline::nic_device_id(&nic.mac);
        let found = nics
            .iter()
            .position(|running| running.nic.device_id == id || running.nic.mac.eq_ignore_ascii_case(&nic.mac));
        match found {
            None => plan.attach_nics.push(nic),
            Some(index) => {
                kept_nics.insert(index);
                let running = &nics[index];
                let wanted_netdev = cmdline::netdev_id(&nic.tap);
                if running.netdev.as_ref().is_some_and(|netdev| *netdev != wanted_netdev) {
                    if running.removable {
                        plan.detach_nics.push(running.clone());
                        plan.attach_nics.push(nic);
                    } else {
                        plan.restart_required.push(format!("nic {} moves to tap {}", nic.mac, nic.tap));
                    }
                }
            }
        }
    }
    for (index, running) in nics.iter().enumerate() {
        if kept_nics.contains(&index) {
            continue;
        }
        if running.removable {
            plan.detach_nics.push(running.clone());
        } else {
            plan.restart_required.push(format!("nic {} removed (it has no device id)", running.nic.mac));
        }
    }

    let is_live_boot = |disk: &LiveDisk| {
        live_boot.is_some_and(|(id, path)| {
            id.as_deref() == Some(disk.device_id.as_str()) || disk.path.as_deref() == Some(path.as_path())
        })
    };
    let mut kept_disks = HashSet::new();
    for (index, disk) in spec.disks.iter().enumerate() {
        let id = cmdline::disk_id(disk, index);
        let found = disks
            .iter()
            .position(|running| running.device_id == id || running.path.as_deref() == Some(disk.path.as_path()));
        match found {
            Some(found) => {
                kept_disks.insert(found);
                let running = &disks[found];
                if running.serial != disk.serial {
                    // QEMU cannot change a serial live; replugging a disk the guest uses would pull it away.
                    plan.restart_required.push(format!(
                        "serial of disk {} {} -> {}",
                        disk.path.display(),
                        running.serial.as_deref().unwrap_or("none"),
                        disk.serial.as_deref().unwrap_or("none"),
                    ));
                }
            }
            // The boot disk is not plugged in live: its difference is in restart_required already.
            None if index == 0 => {}
            None => plan.attach_disks.push((index, disk)),
        }
    }
    for (index, running) in disks.iter().enumerate() {
        if !kept_disks.contains(&index) && !is_live_boot(running) {
            plan.detach_disks.push(running.clone());
        }
    }
    plan
}

fn nic_item(running: &RunningNic) -> String {
    match running.netdev.as_deref() {
        Some(netdev) => format!("nic {} (tap {})", running.nic.mac, cmdline::tap_of_netdev(netdev).unwrap_or(netdev)),
        None => format!("nic {}", running.nic.mac),
    }
}

fn disk_item(path: Option<&Path>, serial: Option<&str>, device_id: &str) -> String {
    let what = path.map_or_else(|| format!("device {device_id}"), |path| path.display().to_string());
    match serial {
        Some(serial) => format!("disk {what} (serial {serial})"),
        None => format!("disk {what}"),
    }
}

/// Whether a QMP failure says that what was to be created already exists (`Duplicate ID 'x'` for a netdev,
/// `Duplicate nodes with node-name='x'`): QMP has no error class of its own for that.
fn is_duplicate(error: &HypervisorError) -> bool {
    matches!(error, HypervisorError::QmpCommand { class, description, .. }
        if class == "GenericError" && description.starts_with("Duplicate"))
}

/// Whether a QMP failure says that the object is not there (`DeviceNotFound`).
fn is_not_found(error: &HypervisorError) -> bool {
    error.qmp_class() == Some("DeviceNotFound")
}

/// The image of the block node `node_name`, if QEMU has such a node.
async fn block_node_file(monitor: &mut QmpClient, node_name: &str) -> Result<Option<PathBuf>> {
    let answer = monitor.execute("query-named-block-nodes", Some(json!({ "flat": true }))).await?;
    let nodes = answer
        .as_array()
        .ok_or_else(|| protocol_error(monitor.guest(), format!("query-named-block-nodes returned {answer}")))?;
    Ok(nodes
        .iter()
        .find(|node| node.get("node-name").and_then(Value::as_str) == Some(node_name))
        .map(|node| node.get("file").and_then(Value::as_str).map(PathBuf::from).unwrap_or_default()))
}

/// Whether a block backend (a device's drive) still uses the node `node_name`.
async fn node_in_use(monitor: &mut QmpClient, node_name: &str) -> Result<bool> {
    let answer = monitor.execute("query-block", None).await?;
    let entries =
        answer.as_array().ok_or_else(|| protocol_error(monitor.guest(), format!("query-block returned {answer}")))?;
    Ok(entries.iter().any(|entry| {
        entry.get("inserted").and_then(|inserted| inserted.get("node-name")).and_then(Value::as_str) == Some(node_name)
    }))
}

impl QemuHost {
    /// The QMP socket of a guest (it exists while the guest runs), for `qmp::QmpClient::connect`.
    pub fn qmp_socket(&self, name: &str) -> Result<PathBuf> {
        Ok(self.guest_paths(name)?.qmp_socket())
    }

    /// Makes the running guest's NICs, disks and CPU share match its definition (see the module
    /// documentation); a guest that does not run is left alone.
    pub async fn sync_live(&self, name: &str) -> Result<LiveSync> {
        let paths = self.guest_paths(name)?;
        let lock = self.guest_lock(name);
        let _guard = lock.lock().await;
        let spec = self.read_definition(name)?;
        let Some(pid) = running_pid(&paths) else {
            return Ok(LiveSync::default());
        };
        if adopted_pid(&paths) == Some(pid) {
            return Err(HypervisorError::Unsupported {
                driver: "qemu".to_owned(),
                operation: format!(
                    "changing the devices of guest {name:?} while it runs as an adopted process (its devices \
                     are not Steward's; restart it under Steward first)"
                ),
            });
        }
        let Some(arguments) = processes::read_cmdline(pid) else {
            // It ended in the meantime: nothing runs, so nothing is to be changed.
            return Ok(LiveSync::default());
        };
        let mut report =
            LiveSync { restart_required: restart_differences(&spec, &arguments, &paths)?, ..LiveSync::default() };
        let mut monitor = QmpClient::connect(name, &paths.qmp_socket()).await?;
        let devices = query_live_devices(&mut monitor, &spec, Some(&arguments)).await?;
        let mut nics = Vec::new();
        for nic in devices.nics {
            let netdev = match monitor
                .execute("qom-get", Some(json!({ "path": qom_path(&nic.device_id), "property": "netdev" })))
                .await
            {
                Ok(Value::String(netdev)) => Some(netdev),
                Ok(_) => None,
                Err(error) if error.qmp_class().is_some() => None,
                Err(error) => return Err(error),
            };
            let removable = match monitor.execute("qom-list", Some(json!({ "path": qom_path(&nic.device_id) }))).await {
                Ok(_) => true,
                Err(error) if error.qmp_class().is_some() => false,
                Err(error) => return Err(error),
            };
            nics.push(RunningNic { nic, netdev, removable });
        }
        let live_boot = boot_disk_of(&arguments);
        let mut plan = plan(&spec, &nics, &devices.disks, live_boot.as_ref());
        if !plan.attach_nics.is_empty() && !self.networks.process_in_namespace(pid) {
            // A guest started without NICs runs outside the network namespace, where its taps are not: a tap
            // opened from there would be a new one, on no network.
            for nic in std::mem::take(&mut plan.attach_nics) {
                plan.restart_required.push(format!(
                    "nic {} on network {} (the guest runs outside the network namespace)",
                    nic.mac, nic.network
                ));
            }
        }
        report.restart_required.extend(plan.restart_required.iter().cloned());

        self.detach(name, &mut monitor, &plan, &mut report).await?;
        for (index, disk) in &plan.attach_disks {
            self.attach_disk(&mut monitor, spec.arch, disk, *index).await?;
            report.attached.push(disk_item(Some(&disk.path), disk.serial.as_deref(), ""));
        }
        for nic in &plan.attach_nics {
            self.attach_nic(name, &mut monitor, spec.arch, nic).await?;
            report.attached.push(format!("nic {} on network {}", nic.mac, nic.network));
        }
        if let Some(current) = cpu_share::current_share(pid)
            && cpu_share::nice_for_share(current) != cpu_share::nice_for_share(spec.cpu_share)
        {
            cpu_share::apply_share(name, pid, spec.cpu_share)?;
            report.applied.push(format!("cpu share {current} -> {}", spec.cpu_share));
        }
        if !report.is_empty() {
            tracing::info!(guest = name, ?report, "synchronized the running guest with its definition");
        }
        Ok(report)
    }

    /// Asks QEMU to remove every device the plan drops, waits until all are gone, then removes their backends.
    async fn detach(&self, name: &str, monitor: &mut QmpClient, plan: &Plan<'_>, report: &mut LiveSync) -> Result<()> {
        let mut pending: Vec<(String, String)> = Vec::new();
        let device_ids = plan.detach_nics.iter().map(|nic| (nic.nic.device_id.clone(), nic_item(nic))).chain(
            plan.detach_disks.iter().map(|disk| {
                (disk.device_id.clone(), disk_item(disk.path.as_deref(), disk.serial.as_deref(), &disk.device_id))
            }),
        );
        for (device_id, item) in device_ids {
            match monitor.execute("device_del", Some(json!({ "id": device_id }))).await {
                // A removal already requested (by an operator, or by an earlier call that timed out) is accepted
                // again by QEMU 7.2, so this is idempotent too.
                Ok(_) => pending.push((device_id, item)),
                Err(error) if is_not_found(&error) => report.detached.push(item),
                Err(error) => return Err(error),
            }
        }
        let deadline = Instant::now() + self.unplug_timeout();
        loop {
            let mut still_there = Vec::new();
            for (device_id, item) in pending {
                match monitor.execute("qom-list", Some(json!({ "path": qom_path(&device_id) }))).await {
                    Ok(_) => still_there.push((device_id, item)),
                    Err(error) if is_not_found(&error) => report.detached.push(item),
                    Err(error) => return Err(error),
                }
            }
            pending = still_there;
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(HypervisorError::UnplugTimeout {
                    guest: name.to_owned(),
                    devices: pending.into_iter().map(|(_, item)| item).collect(),
                    waited: self.unplug_timeout(),
                });
            }
            tokio::time::sleep(UNPLUG_POLL_INTERVAL).await;
        }
        for netdev in plan.detach_nics.iter().filter_map(|nic| nic.netdev.as_deref()) {
            // The NIC it served is gone; a netdev nobody uses keeps the tap open for nothing.
            if plan.attach_nics.iter().any(|nic| cmdline::netdev_id(&nic.tap) == netdev) {
                continue;
            }
            match monitor.execute("netdev_del", Some(json!({ "id": netdev }))).await {
                Ok(_) => {}
                Err(error) if is_not_found(&error) => {}
                Err(error) => return Err(error),
            }
        }
        for disk in &plan.detach_disks {
            // A disk started with -drive takes its drive with it; one plugged by sync_live leaves its node, which
            // its device lets go of a moment after it left the device tree (at once on pc, where the guest took
            // its time; a few milliseconds later on s390x).
            if block_node_file(monitor, &disk.device_id).await?.is_none() {
                continue;
            }
            while node_in_use(monitor, &disk.device_id).await? {
                if Instant::now() >= deadline {
                    return Err(protocol_error(
                        name,
                        format!("the block node {} is still in use after its device was removed", disk.device_id),
                    ));
                }
                tokio::time::sleep(UNPLUG_POLL_INTERVAL).await;
            }
            monitor.execute("blockdev-del", Some(json!({ "node-name": disk.device_id }))).await?;
        }
        Ok(())
    }

    async fn attach_disk(
        &self,
        monitor: &mut QmpClient,
        arch: Arch,
        disk: &DiskAttachment,
        index: usize,
    ) -> Result<()> {
        if !disk.path.exists() {
            return Err(HypervisorError::DiskMissing { path: disk.path.clone() });
        }
        let id = cmdline::disk_id(disk, index);
        let filename = disk
            .path
            .to_str()
            .ok_or_else(|| HypervisorError::invalid("disk path", format!("{} is not UTF-8", disk.path.display())))?;
        match block_node_file(monitor, &id).await? {
            Some(file) if file == disk.path => {}
            found => {
                if found.is_some() {
                    // A node of that name left over for another image (an earlier attempt): replace it.
                    monitor.execute("blockdev-del", Some(json!({ "node-name": id }))).await?;
                }
                let node = json!({
                    "driver": disk.format.as_str(),
                    "node-name": id,
                    "file": { "driver": "file", "filename": filename },
                });
                match monitor.execute("blockdev-add", Some(node)).await {
                    Ok(_) => {}
                    Err(error) if is_duplicate(&error) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        let mut device = json!({ "driver": format!("virtio-blk-{}", cmdline::bus(arch)), "id": id, "drive": id });
        if let Some(serial) = &disk.serial {
            device["serial"] = json!(serial);
        }
        if let Err(error) = monitor.execute("device_add", Some(device)).await {
            // Leave no node behind that keeps the image open.
            let _ = monitor.execute("blockdev-del", Some(json!({ "node-name": id }))).await;
            return Err(error);
        }
        Ok(())
    }

    async fn attach_nic(&self, name: &str, monitor: &mut QmpClient, arch: Arch, nic: &Nic) -> Result<()> {
        if !self.networks.tap_exists(&nic.tap).await? {
            return Err(HypervisorError::NicMissing {
                guest: name.to_owned(),
                tap: nic.tap.clone(),
                namespace: self.namespace().to_owned(),
            });
        }
        let netdev = cmdline::netdev_id(&nic.tap);
        let backend = json!({ "type": "tap", "id": netdev, "ifname": nic.tap, "script": "no", "downscript": "no" });
        match monitor.execute("netdev_add", Some(backend)).await {
            Ok(_) => {}
            // The NIC was removed without its backend (device_del alone, as an operator does): reuse it.
            Err(error) if is_duplicate(&error) => {}
            Err(error) => return Err(error),
        }
        let mut device = json!({
            "driver": format!("virtio-net-{}", cmdline::bus(arch)),
            "id": cmdline::nic_device_id(&nic.mac),
            "netdev": netdev,
            "mac": nic.mac,
        });
        if arch == Arch::X86_64 {
            device["romfile"] = json!("");
        }
        monitor.execute("device_add", Some(device)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Boot, DiskFormat};

    fn spec() -> GuestSpec {
        GuestSpec {
            name: "web01".to_owned(),
            arch: Arch::X86_64,
            cpus: 1,
            memory_mib: 256,
            cpu_share: 100,
            disks: vec![
                DiskAttachment { path: "/d/root.qcow2".into(), format: DiskFormat::Qcow2, serial: None },
                DiskAttachment { path: "/d/data.qcow2".into(), format: DiskFormat::Qcow2, serial: Some("data".into()) },
            ],
            config_drive: Some("/d/cidata.img".into()),
            nics: vec![Nic { network: "lan".into(), tap: "tap0".into(), mac: "52:54:00:00:00:01".into() }],
            boot: Boot::Direct { kernel: "/k/vmlinuz".into(), initrd: None, cmdline: "console=ttyS0".into() },
            agent_channel: true,
        }
    }

    fn paths() -> GuestPaths {
        GuestPaths { directory: "/g/web01".into() }
    }

    fn running_arguments(spec: &GuestSpec) -> Vec<String> {
        let mut arguments = vec!["/usr/bin/qemu-system-x86_64".to_owned()];
        arguments.extend(cmdline::guest_arguments(spec, &paths(), Accelerator::Tcg).unwrap());
        arguments
    }

    fn running_nic(device_id: &str, mac: &str, tap: &str) -> RunningNic {
        RunningNic {
            nic: LiveNic { mac: mac.into(), device_id: device_id.into() },
            netdev: Some(cmdline::netdev_id(tap)),
            removable: true,
        }
    }

    fn live_disk(device_id: &str, path: &str, serial: Option<&str>) -> LiveDisk {
        LiveDisk {
            device_id: device_id.into(),
            path: Some(path.into()),
            serial: serial.map(Into::into),
            read_only: false,
        }
    }

    #[test]
    fn qdev_paths_name_devices() {
        assert_eq!(device_id_of_qdev("/machine/peripheral/disk0/virtio-backend"), "disk0");
        assert_eq!(
            device_id_of_qdev("/machine/peripheral-anon/device[2]/virtio-backend"),
            "/machine/peripheral-anon/device[2]"
        );
        assert_eq!(qom_path("disk0"), "/machine/peripheral/disk0");
        assert_eq!(qom_path("/machine/peripheral-anon/device[2]"), "/machine/peripheral-anon/device[2]");
    }

    #[test]
    fn a_running_guest_matching_its_definition_needs_nothing() {
        let spec = spec();
        let arguments = running_arguments(&spec);
        assert_eq!(restart_differences(&spec, &arguments, &paths()).unwrap(), Vec::<String>::new());
        let nics = [running_nic("nic-525400000001", "52:54:00:00:00:01", "tap0")];
        let disks = [live_disk("disk0", "/d/root.qcow2", None), live_disk("disk-data", "/d/data.qcow2", Some("data"))];
        let live_boot = boot_disk_of(&arguments);
        assert_eq!(live_boot, Some((Some("disk0".to_owned()), PathBuf::from("/d/root.qcow2"))));
        assert_eq!(plan(&spec, &nics, &disks, live_boot.as_ref()), Plan::default());
    }

    #[test]
    fn missing_devices_are_attached_and_extra_ones_detached() {
        let spec = spec();
        let arguments = running_arguments(&spec);
        let nics = [running_nic("nic-525400000009", "52:54:00:00:00:09", "tap9")];
        let disks = [live_disk("disk0", "/d/root.qcow2", None), live_disk("disk-old", "/d/old.qcow2", Some("old"))];
        let live_boot = boot_disk_of(&arguments);
        let plan = plan(&spec, &nics, &disks, live_boot.as_ref());
        assert_eq!(plan.attach_nics, [&spec.nics[0]]);
        assert_eq!(plan.detach_nics, [nics[0].clone()]);
        assert_eq!(plan.attach_disks, [(1, &spec.disks[1])]);
        assert_eq!(plan.detach_disks, [disks[1].clone()]);
        assert!(plan.restart_required.is_empty());
    }

    #[test]
    fn devices_started_under_other_ids_are_matched_by_mac_and_path() {
        let spec = spec();
        let arguments = running_arguments(&spec);
        let nics = [RunningNic {
            nic: LiveNic { mac: "52:54:00:00:00:01".into(), device_id: "virtio-net-pci.0".into() },
            netdev: None,
            removable: false,
        }];
        let disks = [
            live_disk("/machine/peripheral-anon/device[0]", "/d/root.qcow2", None),
            live_disk("/machine/peripheral-anon/device[1]", "/d/data.qcow2", Some("data")),
        ];
        let live_boot = boot_disk_of(&arguments);
        assert_eq!(plan(&spec, &nics, &disks, live_boot.as_ref()), Plan::default());
    }

    #[test]
    fn a_nic_on_another_tap_is_replugged_and_the_boot_disk_never_removed() {
        let spec = spec();
        let mut started = spec.clone();
        started.disks[0].path = "/d/old-root.qcow2".into();
        let arguments = running_arguments(&started);
        let nics = [running_nic("nic-525400000001", "52:54:00:00:00:01", "tapold")];
        let disks =
            [live_disk("disk0", "/d/old-root.qcow2", None), live_disk("disk-data", "/d/data.qcow2", Some("data"))];
        let live_boot = boot_disk_of(&arguments);
        let plan = plan(&spec, &nics, &disks, live_boot.as_ref());
        assert_eq!(plan.detach_nics, [nics[0].clone()]);
        assert_eq!(plan.attach_nics, [&spec.nics[0]]);
        assert!(plan.detach_disks.is_empty() && plan.attach_disks.is_empty(), "{plan:?}");
        let differences = restart_differences(&spec, &arguments, &paths()).unwrap();
        assert_eq!(differences, ["boot disk /d/old-root.qcow2 -> /d/root.qcow2"]);
    }

    #[test]
    fn what_only_a_restart_changes_is_listed() {
        let spec = spec();
        let mut started = spec.clone();
        started.cpus = 2;
        started.memory_mib = 128;
        started.boot =
            Boot::Direct { kernel: "/k/old".into(), initrd: Some("/k/initrd".into()), cmdline: "quiet".into() };
        started.config_drive = None;
        started.agent_channel = false;
        let differences = restart_differences(&spec, &running_arguments(&started), &paths()).unwrap();
        assert_eq!(
            differences,
            [
                "memory 128 MiB -> 256 MiB",
                "CPU count 2 -> 1",
                "boot kernel /k/old -> /k/vmlinuz",
                "boot initrd /k/initrd -> none",
                "boot command line quiet -> console=ttyS0",
                "config drive none -> /d/cidata.img",
                "management channel added",
            ]
        );
    }

    #[test]
    fn duplicates_and_absences_are_recognized() {
        let error = |class: &str, description: &str| HypervisorError::QmpCommand {
            guest: "g".into(),
            command: "netdev_add".into(),
            class: class.into(),
            description: description.into(),
        };
        assert!(is_duplicate(&error("GenericError", "Duplicate ID 'net-tap0'")));
        assert!(is_duplicate(&error("GenericError", "Duplicate nodes with node-name='disk-a'")));
        assert!(!is_duplicate(&error("GenericError", "could not open /dev/net/tun")));
        assert!(is_not_found(&error("DeviceNotFound", "Device 'x' not found")));
        assert!(!is_not_found(&error("GenericError", "Device 'x' not found")));
    }
}
