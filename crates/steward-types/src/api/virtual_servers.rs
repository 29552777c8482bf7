//! Virtual servers: guests created from a server template, into which an OS template is deployed.

use serde::{Deserialize, Serialize};

use super::Timestamp;
use super::hosts::Arch;
use crate::ids::{SystemId, VirtualServerId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    Running,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskOrigin {
    /// An empty disk of the template's size.
    Blank,
    /// A copy-on-write overlay on an OS template's image.
    Overlay,
    /// A full copy of an OS template's image.
    Copy,
    /// A disk that existed before Steward registered the guest.
    Registered,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VirtualServerDisk {
    pub size_bytes: u64,
    pub origin: DiskOrigin,
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VirtualServerNic {
    pub network: String,
    pub mac: String,
    /// The static address deployed on this NIC (CIDR), if any.
    pub address: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VirtualServer {
    pub id: VirtualServerId,
    pub name: String,
    pub host: String,
    /// The server template it was created from (none for a registered guest).
    pub server_template: Option<String>,
    pub arch: Arch,
    pub cpus: u32,
    pub memory_mib: u64,
    pub cpu_share: u32,
    pub disks: Vec<VirtualServerDisk>,
    pub nics: Vec<VirtualServerNic>,
    /// The OS template deployed into it, if any.
    pub os_template: Option<String>,
    pub hostname: Option<String>,
    pub power: PowerState,
    /// The managed system its agent registers as.
    pub system: Option<SystemId>,
    /// Whether the guest was installed outside Steward and registered.
    pub registered: bool,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerCreate {
    pub name: String,
    /// Host name or ID.
    pub host: String,
    /// Server template name or ID.
    pub server_template: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloneMethod {
    /// A copy-on-write overlay when the image allows it (qcow2), a full copy otherwise.
    Auto,
    Overlay,
    Copy,
}

/// Network settings of one NIC, in the template's NIC order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NicSettings {
    /// A static address with its prefix, for example `10.77.0.2/24`; none means DHCP.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
}

/// A script run once in the guest at its first boot (NoCloud user-data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonalizationScript {
    pub name: String,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerDeploy {
    /// OS template name or ID.
    pub os_template: String,
    pub hostname: String,
    #[serde(default)]
    pub nics: Vec<NicSettings>,
    #[serde(default)]
    pub scripts: Vec<PersonalizationScript>,
    #[serde(default)]
    pub clone: Option<CloneMethod>,
    /// Start the guest once deployed.
    #[serde(default)]
    pub start: bool,
}

/// Adopt a guest installed outside Steward: an existing disk image, or a running QEMU guest.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerRegister {
    pub name: String,
    /// Host name or ID.
    pub host: String,
    /// A running guest of the host to adopt (its name or process ID, as `hosts guests` lists it).
    #[serde(default)]
    pub guest: Option<String>,
    /// An existing disk image (absolute path) to adopt, when no running guest is named.
    #[serde(default)]
    pub disk: Option<String>,
    #[serde(default)]
    pub arch: Option<Arch>,
    #[serde(default)]
    pub cpus: Option<u32>,
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Direct boot: kernel, initrd and command line (absolute paths).
    #[serde(default)]
    pub kernel: Option<String>,
    #[serde(default)]
    pub initrd: Option<String>,
    #[serde(default)]
    pub cmdline: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerStop {
    /// Seconds to wait for the guest to shut down after the ACPI power button before forcing it off (default 30).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Skip the ACPI request and power off at once.
    #[serde(default)]
    pub force: bool,
}

/// The tail of a guest's console.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsoleLog {
    pub text: String,
}
