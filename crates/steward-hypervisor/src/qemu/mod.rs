//! The QEMU driver: one `QemuHost` per storage directory (the server passes `DATA/hosts/local`), running each
//! guest as its own detached `qemu-system-*` process so guests survive the server's exit, and finding them
//! again from their pid files when a new `QemuHost` opens the same directory.
//!
//! Layout of the storage directory:
//!
//! ```text
//! ROOT/
//!   guests/<name>/guest.json    the definition (QEMU has none of its own; written atomically)
//!                 qemu.pid      pid of the running QEMU (-pidfile)
//!                 qmp.sock      the QEMU monitor (QMP; `QemuHost::qmp_socket`)
//!                 agent.sock    the management channel, when the guest has one
//!                 console.log   the guest's console
//!                 qemu.log      what QEMU printed while starting
//!   tmp/                        scratch files (the KVM probe firmware)
//! ```
//!
//! Modules: `probe` (emulators, accelerator), `disk` and `seal` (qcow2 images), `network` (namespace, bridges,
//! taps), `guest` (definitions and the process lifecycle), `cmdline` (the QEMU command line and device ids),
//! `live` (devices of a running guest: `describe_guest`'s live devices, `sync_live`), `qmp` (the monitor
//! client, public), `processes` (the /proc scan), `cpu_share` (scheduler weight), `firmware` (tiny firmware
//! images), `command` (running helper programs).

pub mod cmdline;
pub mod command;
pub mod cpu_share;
pub mod disk;
pub mod firmware;
pub mod guest;
pub mod live;
pub mod network;
pub mod probe;
pub mod processes;
pub mod qmp;
pub mod seal;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{HypervisorError, Result};
use crate::fsutil;
use crate::hypervisor::{Hypervisor, HypervisorFuture};
use crate::types::{
    Capabilities, ConfigDrive, DefineOutcome, DiskCopyReport, DiskFormat, DiskInfo, DiskNaming, GuestDescription,
    GuestListing, GuestSpec, GuestState, HostFacts, LiveSync, StartOutcome, StopOutcome,
};

/// How to open a `QemuHost`.
#[derive(Debug, Clone)]
pub struct QemuHostConfig {
    /// The storage directory (created if missing).
    pub root: PathBuf,
    /// The network namespace holding this host's networks; unique per server data directory.
    pub namespace: String,
    /// Where to look for `qemu-system-*` and `qemu-img` (a `PATH`-style list); `None` means this process's
    /// `PATH`.
    pub search_path: Option<OsString>,
}

/// A QEMU host rooted at a storage directory.
#[derive(Debug)]
pub struct QemuHost {
    root: PathBuf,
    guests_directory: PathBuf,
    search_path: OsString,
    networks: network::Networks,
    guest_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    unplug_timeout: Duration,
}

impl QemuHost {
    /// Opens (creating the directories if needed) the host at `config.root`.
    pub fn new(config: QemuHostConfig) -> Result<Self> {
        let root = fsutil::absolute(&config.root)?;
        if root.to_str().is_none() {
            return Err(HypervisorError::invalid(
                "storage directory",
                format!("{} is not valid UTF-8", root.display()),
            ));
        }
        let guests_directory = root.join("guests");
        fsutil::create_directory(&guests_directory)?;
        let search_path = config.search_path.unwrap_or_else(|| std::env::var_os("PATH").unwrap_or_default());
        Ok(QemuHost {
            networks: network::Networks::new(config.namespace)?,
            root,
            guests_directory,
            search_path,
            guest_locks: std::sync::Mutex::new(HashMap::new()),
            unplug_timeout: live::DEFAULT_UNPLUG_TIMEOUT,
        })
    }

    /// Changes how long `sync_live` waits for a running guest to release a device it removes (default
    /// `live::DEFAULT_UNPLUG_TIMEOUT`).
    pub fn with_unplug_timeout(mut self, timeout: Duration) -> Self {
        self.unplug_timeout = timeout;
        self
    }

    /// How long `sync_live` waits for a running guest to release a device.
    pub fn unplug_timeout(&self) -> Duration {
        self.unplug_timeout
    }

    /// The storage directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding one directory per guest.
    pub fn guests_directory(&self) -> &Path {
        &self.guests_directory
    }

    /// The network namespace of this host.
    pub fn namespace(&self) -> &str {
        self.networks.namespace()
    }

    /// The network operations (also reachable through the trait).
    pub fn networks(&self) -> &network::Networks {
        &self.networks
    }

    /// The `qemu-img` operations.
    pub fn disks(&self) -> Result<disk::DiskTool> {
        command::find_in_path("qemu-img", &self.search_path)
            .map(disk::DiskTool::new)
            .ok_or_else(|| HypervisorError::ToolMissing { program: "qemu-img".to_owned() })
    }

    /// The emulator facts (cached per process).
    pub async fn emulators(&self) -> Result<Vec<crate::types::EmulatorFacts>> {
        probe::probe_emulators(&self.search_path, &self.root.join("tmp")).await
    }

    /// What the host offers.
    pub async fn probe(&self) -> Result<HostFacts> {
        probe::probe_host(&self.search_path, &self.root).await
    }

    /// The lock serializing lifecycle operations on one guest within this process.
    fn guest_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.guest_locks.lock() {
            Ok(locks) => locks,
            Err(poisoned) => poisoned.into_inner(),
        };
        locks.entry(name.to_owned()).or_default().clone()
    }

    /// Seals a captured image in place (see `seal`).
    pub async fn seal_disk(&self, path: &Path) -> Result<Vec<String>> {
        seal::seal_disk(&self.disks()?, path).await
    }
}

impl Hypervisor for QemuHost {
    fn driver_name(&self) -> &'static str {
        "qemu"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            copy_on_write: true,
            config_drive: true,
            sealing: true,
            agent_channel: true,
            image_import: true,
            process_adoption: true,
            definition_adoption: false,
            // QEMU's own locally administered prefix.
            mac_prefix: [0x52, 0x54, 0x00],
            disk_naming: DiskNaming::Files,
        }
    }

    /// The names `define_guest` takes (`validate::guest_name`: it names the guest's directory and QEMU's
    /// `-name`), refused here too so the server refuses them before any call.
    fn check_guest_name(&self, name: &str) -> Result<()> {
        crate::validate::guest_name(name)
    }

    fn probe(&self) -> HypervisorFuture<'_, HostFacts> {
        Box::pin(QemuHost::probe(self))
    }

    fn define_guest<'a>(&'a self, spec: &'a GuestSpec) -> HypervisorFuture<'a, DefineOutcome> {
        Box::pin(QemuHost::define_guest(self, spec))
    }

    fn undefine_guest<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(QemuHost::undefine_guest(self, name))
    }

    fn defined_guests(&self) -> HypervisorFuture<'_, Vec<String>> {
        Box::pin(async move { QemuHost::defined_guests(self) })
    }

    fn start<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, StartOutcome> {
        Box::pin(QemuHost::start(self, name))
    }

    fn stop<'a>(&'a self, name: &'a str, timeout: Duration) -> HypervisorFuture<'a, StopOutcome> {
        Box::pin(QemuHost::stop(self, name, timeout))
    }

    fn restart<'a>(&'a self, name: &'a str, timeout: Duration) -> HypervisorFuture<'a, StartOutcome> {
        Box::pin(QemuHost::restart(self, name, timeout))
    }

    fn status<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, GuestState> {
        Box::pin(async move { QemuHost::status(self, name) })
    }

    fn describe_guest<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, GuestDescription> {
        Box::pin(QemuHost::describe_guest(self, name))
    }

    fn sync_live<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, LiveSync> {
        Box::pin(QemuHost::sync_live(self, name))
    }

    fn console_log<'a>(&'a self, name: &'a str, max_bytes: usize) -> HypervisorFuture<'a, String> {
        Box::pin(async move { QemuHost::console_log(self, name, max_bytes) })
    }

    fn list_guests(&self) -> HypervisorFuture<'_, Vec<GuestListing>> {
        Box::pin(async move { Ok(QemuHost::list_guests(self)) })
    }

    fn set_cpu_share<'a>(&'a self, name: &'a str, share: u32) -> HypervisorFuture<'a, ()> {
        Box::pin(QemuHost::set_cpu_share(self, name, share))
    }

    fn adopt_process<'a>(&'a self, name: &'a str, pid: u32) -> HypervisorFuture<'a, ()> {
        Box::pin(QemuHost::adopt_process(self, name, pid))
    }

    fn release_process<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(QemuHost::release_process(self, name))
    }

    fn agent_socket(&self, name: &str) -> Result<PathBuf> {
        QemuHost::agent_socket(self, name)
    }

    fn disk_create<'a>(&'a self, path: &'a Path, size_bytes: u64) -> HypervisorFuture<'a, ()> {
        Box::pin(async move { self.disks()?.create(path, size_bytes).await })
    }

    fn disk_overlay<'a>(
        &'a self,
        path: &'a Path,
        backing: &'a Path,
        backing_format: DiskFormat,
        size_bytes: Option<u64>,
    ) -> HypervisorFuture<'a, ()> {
        Box::pin(async move { self.disks()?.overlay(path, backing, backing_format, size_bytes).await })
    }

    fn disk_copy<'a>(
        &'a self,
        source: &'a Path,
        destination: &'a Path,
        size_bytes: Option<u64>,
    ) -> HypervisorFuture<'a, DiskCopyReport> {
        Box::pin(async move { self.disks()?.copy(source, destination, size_bytes).await })
    }

    fn disk_capture<'a>(&'a self, source: &'a Path, destination: &'a Path) -> HypervisorFuture<'a, ()> {
        Box::pin(async move { self.disks()?.capture(source, destination).await })
    }

    fn disk_info<'a>(&'a self, path: &'a Path) -> HypervisorFuture<'a, DiskInfo> {
        Box::pin(async move { self.disks()?.info(path).await })
    }

    fn disk_delete<'a>(&'a self, path: &'a Path) -> HypervisorFuture<'a, ()> {
        Box::pin(async move { self.disks()?.delete(path) })
    }

    fn seal_disk<'a>(&'a self, path: &'a Path) -> HypervisorFuture<'a, Vec<String>> {
        Box::pin(QemuHost::seal_disk(self, path))
    }

    fn config_drive_write<'a>(&'a self, path: &'a Path, drive: &'a ConfigDrive) -> HypervisorFuture<'a, ()> {
        Box::pin(async move { crate::config_drive::config_drive_write(path, drive) })
    }

    fn network_create<'a>(&'a self, network: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(self.networks.network_create(network))
    }

    fn network_delete<'a>(&'a self, network: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(self.networks.network_delete(network))
    }

    fn nic_create<'a>(&'a self, network: &'a str, tap: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(self.networks.nic_create(network, tap))
    }

    fn nic_delete<'a>(&'a self, tap: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(self.networks.nic_delete(tap))
    }
}
