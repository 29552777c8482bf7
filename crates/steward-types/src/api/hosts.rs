//! Hypervisor hosts, their capabilities, and every guest they run.

use serde::{Deserialize, Serialize};

use super::Timestamp;
use crate::ids::HostId;

/// A guest's processor architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "s390x")]
    S390x,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::S390x => "s390x",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "x86_64" => Some(Arch::X86_64),
            "s390x" => Some(Arch::S390x),
            _ => None,
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostKind {
    /// The machine the server runs on, with `qemu-system-*` processes.
    Qemu,
    /// A z/VM system, driven off-box through its SMAPI request server (with DirMaint).
    Zvm,
}

impl HostKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HostKind::Qemu => "qemu",
            HostKind::Zvm => "zvm",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "qemu" => Some(HostKind::Qemu),
            "zvm" => Some(HostKind::Zvm),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Accelerator {
    /// Hardware virtualization; reported only where a guest really ran under it.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
    /// z/VM's Control Program: guests run on IBM Z processors.
    ZvmCp,
}

/// One guest architecture a host can run.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostArchitecture {
    pub arch: Arch,
    /// The emulator binary, for example `/usr/bin/qemu-system-x86_64`.
    pub emulator: String,
    pub version: String,
    pub accelerator: Accelerator,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Host {
    pub id: HostId,
    pub name: String,
    pub kind: HostKind,
    /// What the host can run now (probed; empty if no emulator is installed).
    pub architectures: Vec<HostArchitecture>,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub memory_available_bytes: u64,
    /// Where guest disks, templates and sockets live.
    pub storage_directory: String,
    pub storage_free_bytes: u64,
    pub storage_total_bytes: u64,
    /// Why the host could not be probed just now (unreachable, refused); its figures are zero then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How the server reaches a z/VM host (never its password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zvm: Option<ZvmHostSettings>,
    pub created_at: Timestamp,
}

/// How to reach and use a z/VM system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZvmHostSettings {
    /// The SMAPI request server, `host:port` (44444 is SMAPI's usual port).
    pub address: String,
    /// The SMAPI user (listed in VSMWORK1 AUTHLIST).
    pub user: String,
    /// The DirMaint group new minidisks are allocated from.
    pub disk_pool: String,
    /// The CA certificate (PEM) the SMAPI server's TLS certificate is checked against; without it SMAPI is
    /// spoken in clear, as on most systems (SMAPI over TCP belongs on a management network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_certificate: Option<String>,
    /// The name the server's TLS certificate carries, when it is not the address's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// The system's MAC prefix (`VMLAN MACPREFIX`), such as `02:00:5a`.
    #[serde(default = "default_mac_prefix")]
    pub mac_prefix: String,
    /// The first characters (1 to 7) of the image-holder users that keep template disks (`STWIMG`).
    #[serde(default = "default_image_holder_prefix")]
    pub image_holder_prefix: String,
    /// The profile guest entries `INCLUDE` (console and spool devices), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The real device (OSA) of virtual switches Steward defines; `NOUPLINK` without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vswitch_real_device: Option<String>,
    /// How often a DirMaint operation in progress is polled (SMAPI RC 592), in milliseconds; 2000 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_ms: Option<u64>,
}

pub fn default_mac_prefix() -> String {
    "02:00:00".to_owned()
}

pub fn default_image_holder_prefix() -> String {
    "STWIMG".to_owned()
}

/// `POST /api/v1/hosts`: registers a z/VM system (the local QEMU host registers itself).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostCreate {
    pub name: String,
    pub kind: HostKind,
    pub zvm: Option<ZvmHostSettings>,
    /// The SMAPI user's password; stored by the server, never shown.
    pub password: Option<String>,
}

/// A guest running on a host, whether Steward manages it or not.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostGuest {
    /// The guest's name as the hypervisor knows it (QEMU's `-name`), or the process ID if it has none.
    pub name: String,
    pub pid: u32,
    pub arch: Option<Arch>,
    pub cpus: Option<u32>,
    pub memory_mib: Option<u64>,
    pub disks: Vec<String>,
    /// Whether it is one of Steward's virtual servers.
    pub managed: bool,
    /// The virtual server's name, when managed.
    pub virtual_server: Option<String>,
}
