//! The inventory an agent reports about its system, and the patch that carries a change to it.
//!
//! The agent sends the whole [`Inventory`] once, when the server asks for it (first connection, or when the
//! server's copy no longer matches the agent's), and afterwards only an [`InventoryPatch`]: the sections that changed,
//! and for packages only the packages that were installed, upgraded or removed.
//!
//! Every list is kept sorted by its key so that two collections of the same system serialize to the same bytes;
//! [`Inventory::digest`] relies on that to let agent and server check they hold the same inventory.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Everything an agent knows about its system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub host: HostFacts,
    pub block_devices: Vec<BlockDevice>,
    pub filesystems: Vec<Filesystem>,
    pub interfaces: Vec<NetworkInterface>,
    pub packages: Vec<Package>,
    /// z/VM guest facts from `/proc/sysinfo`; present only on s390x guests of z/VM.
    pub zvm: Option<ZvmGuest>,
    /// Results of the first-boot personalization steps of a Steward guest, by name; empty elsewhere. Left out of
    /// the JSON when empty, so the digest of an inventory without results is what it was before this field
    /// existed (a server upgrade does not make every agent send its whole inventory again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub personalization: Vec<PersonalizationResult>,
}

/// The small, rarely changing facts about the system as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HostFacts {
    pub hostname: String,
    pub os: OsRelease,
    pub kernel: Kernel,
    /// Machine architecture as `uname -m` reports it (`x86_64`, `s390x`, `aarch64`).
    pub arch: String,
    pub cpu: Cpu,
    pub memory: Memory,
    /// Hypervisor the system runs on, if any: `kvm`, `zvm`, `qemu`, `xen`, `vmware`, `hyperv`, or `none`.
    pub hypervisor: String,
}

/// Fields of `/etc/os-release` (or `/usr/lib/os-release`); empty strings where the file has no such field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OsRelease {
    pub id: String,
    pub id_like: String,
    pub name: String,
    pub version_id: String,
    pub version: String,
    pub pretty_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// `uname -r`.
    pub release: String,
    /// `uname -v`.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    /// Online logical CPUs.
    pub count: u32,
    /// Model name from `/proc/cpuinfo` (on s390x, the machine type), empty when unknown.
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Memory {
    pub total_bytes: u64,
    pub swap_total_bytes: u64,
}

/// A block device from `/sys/block` (whole disks; partitions are listed with their parent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BlockDevice {
    /// Kernel name, for example `vda` or `dasda`.
    pub name: String,
    pub size_bytes: u64,
    /// Model string where the device has one, else empty.
    pub model: String,
    pub rotational: bool,
    pub read_only: bool,
    /// Partitions of this device, by kernel name, sorted.
    pub partitions: Vec<String>,
}

/// A mounted filesystem backed by a block device or a network share (pseudo filesystems are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    pub mount_point: String,
    pub device: String,
    pub fs_type: String,
    pub size_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
}

impl Filesystem {
    /// Used space as a percentage of the space available to unprivileged users, as `df` computes it.
    pub fn used_pct(&self) -> f64 {
        let denominator = self.used_bytes.saturating_add(self.available_bytes);
        if denominator == 0 { 0.0 } else { (self.used_bytes as f64 * 100.0 / denominator as f64 * 10.0).round() / 10.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    pub name: String,
    /// MAC address in lower-case colon notation; empty for interfaces without one (loopback, tunnels).
    pub mac: String,
    pub mtu: u32,
    /// Operational state from `/sys/class/net/*/operstate` (`up`, `down`, `unknown`).
    pub state: String,
    /// Addresses in CIDR notation (`192.0.2.10/24`, `2001:db8::1/64`), sorted.
    pub addresses: Vec<String>,
}

/// Which package manager a package belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    Dpkg,
    Rpm,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: String,
    pub arch: String,
    pub version: String,
    pub manager: PackageManager,
}

impl Package {
    /// The key that identifies a package within one system's inventory.
    pub fn key(&self) -> PackageKey {
        PackageKey {
            name: self.name.clone(),
            arch: self.arch.clone(),
            version: self.version.clone(),
            manager: self.manager,
        }
    }
}

/// Identifies an installed package. The version is part of it: rpm keeps several versions of one name and
/// architecture installed side by side (`kernel`, `gpg-pubkey`), so an upgrade is a removal plus an install.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PackageKey {
    pub name: String,
    pub arch: String,
    pub version: String,
    pub manager: PackageManager,
}

/// Facts z/VM reports to its guests in `/proc/sysinfo` (the "VM00" lines), plus the machine facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ZvmGuest {
    /// The guest's z/VM user ID (`VM00 Name`).
    pub userid: String,
    /// The hypervisor's control program identifier (`VM00 Control Program`, for example `z/VM    7.1.0`).
    pub control_program: String,
    /// The LPAR the z/VM system runs in (`LPAR Name`).
    pub lpar_name: String,
    /// Machine type (`Type`), for example `8561`.
    pub machine_type: String,
    /// Virtual CPUs of the guest (`VM00 CPUs Total`).
    pub cpus_total: u32,
    /// Dedicated/shared CPU counts as reported (`VM00 CPUs Dedicated`, `VM00 CPUs Shared`).
    pub cpus_dedicated: u32,
    pub cpus_shared: u32,
    /// CPU capability of the guest (`VM00 Capability`).
    pub capability: u64,
}

/// How one first-boot personalization step of a Steward guest ended, as the guest's first-boot wrapper recorded
/// it in `/var/lib/steward/personalization/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PersonalizationResult {
    /// The step's name (the file's name).
    pub name: String,
    /// The step's exit code; 0 means it succeeded.
    pub exit_code: i32,
}

impl Inventory {
    /// SHA-256 over the canonical JSON form, in lower-case hex. Agent and server compare digests after a
    /// reconnect to decide whether a patch against the agent's last report is enough.
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let hash = Sha256::digest(&bytes);
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Puts every list into its canonical order; collectors call this before reporting.
    pub fn normalize(&mut self) {
        self.block_devices.sort_by(|a, b| a.name.cmp(&b.name));
        for device in &mut self.block_devices {
            device.partitions.sort();
        }
        self.filesystems.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        self.interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        for interface in &mut self.interfaces {
            interface.addresses.sort();
        }
        self.packages.sort();
        self.packages.dedup();
        self.personalization.sort_by(|a, b| a.name.cmp(&b.name));
        self.personalization.dedup_by(|a, b| a.name == b.name);
    }

    /// The patch that turns `self` into `newer`, or `None` when nothing changed.
    pub fn diff(&self, newer: &Inventory) -> Option<InventoryPatch> {
        let mut patch = InventoryPatch::default();
        if self.host != newer.host {
            patch.host = Some(newer.host.clone());
        }
        if self.block_devices != newer.block_devices {
            patch.block_devices = Some(newer.block_devices.clone());
        }
        if self.filesystems != newer.filesystems {
            patch.filesystems = Some(newer.filesystems.clone());
        }
        if self.interfaces != newer.interfaces {
            patch.interfaces = Some(newer.interfaces.clone());
        }
        if self.zvm != newer.zvm {
            patch.zvm = Some(newer.zvm.clone());
        }
        if self.personalization != newer.personalization {
            patch.personalization = Some(newer.personalization.clone());
        }
        if self.packages != newer.packages {
            let old: std::collections::BTreeMap<PackageKey, &Package> =
                self.packages.iter().map(|p| (p.key(), p)).collect();
            let new: std::collections::BTreeMap<PackageKey, &Package> =
                newer.packages.iter().map(|p| (p.key(), p)).collect();
            patch.packages_installed = new
                .iter()
                .filter(|(key, package)| old.get(*key) != Some(*package))
                .map(|(_, package)| (*package).clone())
                .collect();
            patch.packages_removed = old.keys().filter(|key| !new.contains_key(*key)).cloned().collect();
        }
        if patch.is_empty() { None } else { Some(patch) }
    }

    /// Applies a patch produced by [`Inventory::diff`]; the result is normalized.
    pub fn apply(&mut self, patch: InventoryPatch) {
        if let Some(host) = patch.host {
            self.host = host;
        }
        if let Some(block_devices) = patch.block_devices {
            self.block_devices = block_devices;
        }
        if let Some(filesystems) = patch.filesystems {
            self.filesystems = filesystems;
        }
        if let Some(interfaces) = patch.interfaces {
            self.interfaces = interfaces;
        }
        if let Some(zvm) = patch.zvm {
            self.zvm = zvm;
        }
        if let Some(personalization) = patch.personalization {
            self.personalization = personalization;
        }
        if !patch.packages_installed.is_empty() || !patch.packages_removed.is_empty() {
            let mut packages: std::collections::BTreeMap<PackageKey, Package> =
                std::mem::take(&mut self.packages).into_iter().map(|p| (p.key(), p)).collect();
            for key in &patch.packages_removed {
                packages.remove(key);
            }
            for package in patch.packages_installed {
                packages.insert(package.key(), package);
            }
            self.packages = packages.into_values().collect();
        }
        self.normalize();
    }
}

/// A change to an inventory: each section that changed is replaced whole, except packages, which are patched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct InventoryPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<HostFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_devices: Option<Vec<BlockDevice>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystems: Option<Vec<Filesystem>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<NetworkInterface>>,
    /// `Some(None)` says the z/VM facts disappeared.
    #[serde(skip_serializing_if = "Option::is_none", with = "double_option")]
    pub zvm: Option<Option<ZvmGuest>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub personalization: Option<Vec<PersonalizationResult>>,
    /// Packages newly installed (an upgrade removes the old version and installs the new one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages_installed: Vec<Package>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages_removed: Vec<PackageKey>,
}

impl InventoryPatch {
    pub fn is_empty(&self) -> bool {
        self.host.is_none()
            && self.block_devices.is_none()
            && self.filesystems.is_none()
            && self.interfaces.is_none()
            && self.zvm.is_none()
            && self.personalization.is_none()
            && self.packages_installed.is_empty()
            && self.packages_removed.is_empty()
    }

    /// Names of the sections this patch touches, for the inventory history.
    pub fn sections(&self) -> Vec<&'static str> {
        let mut sections = Vec::new();
        if self.host.is_some() {
            sections.push("host");
        }
        if self.block_devices.is_some() {
            sections.push("block_devices");
        }
        if self.filesystems.is_some() {
            sections.push("filesystems");
        }
        if self.interfaces.is_some() {
            sections.push("interfaces");
        }
        if self.zvm.is_some() {
            sections.push("zvm");
        }
        if self.personalization.is_some() {
            sections.push("personalization");
        }
        if !self.packages_installed.is_empty() || !self.packages_removed.is_empty() {
            sections.push("packages");
        }
        sections
    }
}

/// Serde support for `Option<Option<T>>` where an explicit `null` means `Some(None)`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &Option<Option<T>>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}
