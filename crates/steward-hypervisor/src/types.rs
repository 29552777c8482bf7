//! The values that cross the `Hypervisor` trait: host facts, guest definitions, guest states, disk facts.
//! They are plain data (serde-serializable, so a guest definition is stored as JSON and the server can record
//! what it asked for), and they name no driver: a z/VM guest is described by the same `GuestSpec`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A guest CPU architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    X86_64,
    S390x,
}

impl Arch {
    /// Every architecture the drivers know.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::S390x];

    /// The name QEMU and Linux use (`x86_64`, `s390x`).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::S390x => "s390x",
        }
    }

    /// Parses the QEMU/Linux name.
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "x86_64" => Some(Arch::X86_64),
            "s390x" => Some(Arch::S390x),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// How guests of one architecture are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accelerator {
    /// Hardware virtualization, verified by actually running a guest.
    Kvm,
    /// QEMU's binary translator (always works, slower).
    Tcg,
    /// z/VM's Control Program: every guest of a z/VM host runs under CP (SIE), so there is nothing to choose.
    ZvmCp,
}

impl Accelerator {
    /// The value of QEMU's `-accel` option (`zvm-cp` for z/VM, which has no such option).
    pub fn as_str(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
            Accelerator::ZvmCp => "zvm-cp",
        }
    }
}

/// What one installed emulator offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatorFacts {
    pub arch: Arch,
    pub binary: PathBuf,
    /// The version QEMU reports, for example `7.2.22`.
    pub version: String,
    pub accelerator: Accelerator,
}

/// What a host offers, as found by `probe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// One entry per architecture whose emulator is installed.
    pub emulators: Vec<EmulatorFacts>,
    pub cpus: u32,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    /// The directory holding this host's guests and disks.
    pub storage_directory: PathBuf,
    pub storage_free_bytes: u64,
    pub storage_total_bytes: u64,
}

impl HostFacts {
    /// The facts of the emulator for `arch`, if it is installed.
    pub fn emulator(&self, arch: Arch) -> Option<&EmulatorFacts> {
        self.emulators.iter().find(|emulator| emulator.arch == arch)
    }
}

/// The image format of a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskFormat {
    Qcow2,
    Raw,
}

impl DiskFormat {
    /// The name `qemu-img` and `-drive format=` use.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

/// What `disk_info` reports about a disk image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// The format `qemu-img` detected (`qcow2`, `raw`, ...).
    pub format: String,
    /// The size the guest sees.
    pub virtual_size_bytes: u64,
    /// The space the image takes on the host.
    pub actual_size_bytes: u64,
    /// The image this one is an overlay of, if any.
    pub backing_file: Option<PathBuf>,
}

/// What a full copy cost (`disk_copy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskCopyReport {
    /// The virtual size of the copy.
    pub bytes: u64,
    pub seconds: f64,
    /// `bytes / seconds`; zero when nothing was copied because the copy already existed.
    pub bytes_per_second: f64,
    /// True when the destination already held a finished copy, so nothing was done.
    pub already_present: bool,
}

/// A disk attached to a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskAttachment {
    pub path: PathBuf,
    pub format: DiskFormat,
    /// The serial number the guest sees (`/sys/block/vdX/serial` under virtio-blk), so it can tell its extra
    /// disks apart whatever order they appear in: 1..=20 characters of letters, digits, `-` and `_`
    /// (virtio-blk's limit). The QEMU driver also derives the disk's device id from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// A network interface of a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// The Steward network the NIC is on.
    pub network: String,
    /// The host-side device (a tap on QEMU), at most 15 characters.
    pub tap: String,
    /// The guest's MAC address, `xx:xx:xx:xx:xx:xx`.
    pub mac: String,
}

/// How a guest boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Boot {
    /// Direct kernel boot: the host hands the kernel, initrd and command line to the guest.
    Direct { kernel: PathBuf, initrd: Option<PathBuf>, cmdline: String },
    /// The guest's firmware boots from the first disk; `firmware` replaces the emulator's default firmware
    /// image (QEMU's `-bios`) when set.
    Firmware { firmware: Option<PathBuf> },
}

/// A guest definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSpec {
    /// Letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 63 characters.
    pub name: String,
    pub arch: Arch,
    pub cpus: u32,
    pub memory_mib: u64,
    /// Relative CPU weight: 100 is normal, 200 gets twice the CPU time under contention (1..=10000).
    pub cpu_share: u32,
    /// The first disk is the boot disk.
    pub disks: Vec<DiskAttachment>,
    /// A NoCloud config drive image (see `ConfigDrive`), attached read-only after the disks.
    pub config_drive: Option<PathBuf>,
    pub nics: Vec<Nic>,
    pub boot: Boot,
    /// Whether the guest gets the management channel (a virtio-serial port named `org.steward.agent.0`).
    pub agent_channel: bool,
}

/// Whether a guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum GuestState {
    Running { pid: u32 },
    Stopped,
}

/// What `define_guest` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefineOutcome {
    Created,
    /// The same definition was already stored.
    Unchanged,
    /// A different definition was replaced; a running guest picks it up at its next start, or now for what
    /// `sync_live` can change while it runs.
    Updated,
}

/// What `start` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum StartOutcome {
    Started { pid: u32 },
    AlreadyRunning { pid: u32 },
}

/// How `stop` ended the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOutcome {
    /// The guest shut down by itself after the power-button request.
    Graceful,
    /// The guest did not react in time and was ended by the host.
    Forced,
    /// The guest was not running.
    AlreadyStopped,
}

/// One guest found running on the host, whether this host's driver started it or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestListing {
    pub pid: u32,
    /// The guest's name (QEMU `-name`), if it has one.
    pub name: Option<String>,
    pub arch: Option<Arch>,
    pub memory_mib: Option<u64>,
    pub cpus: Option<u32>,
    pub disks: Vec<PathBuf>,
    /// True when the guest is one of this host's defined guests.
    pub managed: bool,
}

/// A guest's definition with what is live, for drift checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestDescription {
    pub spec: GuestSpec,
    pub state: GuestState,
    /// What the running process really has (from its command line), when it runs.
    pub live: Option<GuestListing>,
    /// The run state QEMU reports (`running`, `paused`, `shutdown`, ...), when it runs and answers.
    pub run_state: Option<String>,
    /// The CPU share applied to the running process, when it runs.
    pub live_cpu_share: Option<u32>,
    /// The NICs and disks the running guest has now (hot-plugged ones included, the config drive and the
    /// management channel excluded), when it runs and its monitor answers.
    #[serde(default)]
    pub live_devices: Option<LiveDevices>,
}

/// The devices a running guest really has, as its hypervisor reports them (on QEMU: QMP `query-rx-filter` and
/// `query-block`), so drift checks see devices attached or detached behind Steward's back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveDevices {
    pub nics: Vec<LiveNic>,
    /// The guest's disks, without its config drive.
    pub disks: Vec<LiveDisk>,
}

/// One NIC of a running guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveNic {
    /// The MAC address the NIC uses now, lower case.
    pub mac: String,
    /// The hypervisor's name of the device (on QEMU its `id`, `nic-<mac digits>` for the NICs Steward plugs).
    pub device_id: String,
}

/// One disk of a running guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveDisk {
    /// The hypervisor's name of the device (on QEMU its `id`, or its QOM path when it has none).
    pub device_id: String,
    /// The image behind the device, when it has one.
    pub path: Option<PathBuf>,
    /// The serial number the guest sees, when the device has one.
    pub serial: Option<String>,
    pub read_only: bool,
}

/// What `sync_live` changed on a running guest, as human-readable items (`nic 52:54:00:12:34:56 on network
/// lan`, `disk /data/extra.qcow2 (serial data1)`). All lists are empty when the guest already matched its
/// definition or does not run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSync {
    /// Devices plugged into the running guest.
    pub attached: Vec<String>,
    /// Devices removed from the running guest.
    pub detached: Vec<String>,
    /// Other settings changed live (the CPU share).
    #[serde(default)]
    pub applied: Vec<String>,
    /// Differences that only a restart can apply (CPU count, memory, boot, ...): the guest still runs with the
    /// old value.
    pub restart_required: Vec<String>,
}

impl LiveSync {
    /// True when nothing was changed and nothing waits for a restart.
    pub fn is_empty(&self) -> bool {
        self.attached.is_empty()
            && self.detached.is_empty()
            && self.applied.is_empty()
            && self.restart_required.is_empty()
    }
}

/// The network configuration of one guest NIC on a config drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum NicAddressing {
    Static {
        address: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
        dns: Vec<IpAddr>,
    },
    Dhcp,
    /// The NIC is brought up without an address.
    None,
}

/// One NIC as the guest should configure it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicConfig {
    pub mac: String,
    pub config: NicAddressing,
}

/// A personalization script run at first boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalizationScript {
    /// Letters, digits, `-`, `_` and `.`.
    pub name: String,
    pub body: String,
}

/// The contents of a NoCloud config drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDrive {
    pub instance_id: String,
    pub hostname: String,
    pub nics: Vec<NicConfig>,
    pub scripts: Vec<PersonalizationScript>,
    /// Environment variables exported to every personalization script (`STEWARD_COMPLEX`,
    /// `STEWARD_MEMBER_INDEX`, ...): names `[A-Za-z_][A-Za-z0-9_]*`, values any text without NUL.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

/// How a host stores guest disks, which decides how the server names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskNaming {
    /// Disks are image files the server names inside its storage directory on the host (QEMU).
    Files,
    /// Disks are minidisks named `USERID/VDEV` (z/VM): the guest's disks count up from device `0100`, its NICs
    /// from `0600` (three device numbers each), template disks belong to an image-holder user.
    Minidisks,
}

/// What a driver can do, so that the server plans operations the host supports (instead of failing half-way
/// on an `Unsupported` verb).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `disk_overlay`: copy-on-write clones of a template's disk.
    pub copy_on_write: bool,
    /// `config_drive_write`: personalization on a NoCloud drive read at first boot.
    pub config_drive: bool,
    /// `seal_disk`: resetting a captured disk's identity off-line.
    pub sealing: bool,
    /// `agent_socket`: a management channel from the server into each guest (virtio-serial).
    pub agent_channel: bool,
    /// Importing an image file from the server's file system into template storage.
    pub image_import: bool,
    /// `adopt_process`: taking over a running guest process started outside Steward.
    pub process_adoption: bool,
    /// `adopt_guest`: taking over a guest definition made outside Steward (a z/VM directory entry).
    pub definition_adoption: bool,
    /// The first three bytes every NIC's MAC address must have (z/VM: the system's MAC prefix).
    pub mac_prefix: [u8; 3],
    pub disk_naming: DiskNaming,
}
