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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Accelerator {
    /// Hardware virtualization; reported only where a guest really ran under it.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
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
    pub created_at: Timestamp,
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
