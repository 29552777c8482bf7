//! Virtual server templates: the hardware shape of a guest.

use serde::{Deserialize, Serialize};

use super::Timestamp;
use super::hosts::Arch;
use crate::ids::ServerTemplateId;

/// The default relative CPU share (QEMU: cgroup `cpu.weight` or a nice value, see the QEMU driver).
pub const DEFAULT_CPU_SHARE: u32 = 100;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServerTemplate {
    pub id: ServerTemplateId,
    pub name: String,
    pub description: String,
    pub arch: Arch,
    pub cpus: u32,
    pub memory_mib: u64,
    /// Disk sizes in bytes; the first disk receives the operating system at deploy.
    pub disks: Vec<u64>,
    /// The network of each NIC, by name.
    pub nics: Vec<String>,
    /// Relative CPU weight, 1 to 10000 (100 is normal).
    pub cpu_share: u32,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerTemplateCreate {
    pub name: String,
    pub arch: Arch,
    pub cpus: u32,
    pub memory_mib: u64,
    /// Disk sizes in bytes (at least one).
    pub disks: Vec<u64>,
    /// Network names, one per NIC.
    #[serde(default)]
    pub nics: Vec<String>,
    #[serde(default)]
    pub cpu_share: Option<u32>,
    #[serde(default)]
    pub description: Option<String>,
}
