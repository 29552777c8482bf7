//! Operating system templates: a Linux installation's disk image plus what is needed to boot and personalize it.

use serde::{Deserialize, Serialize};

use super::Timestamp;
use super::hosts::Arch;
use crate::ids::OsTemplateId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BootMethod {
    /// The hypervisor loads the template's kernel and initrd with its command line.
    Direct,
    /// The guest's firmware boots from the disk.
    Firmware,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskFormat {
    Qcow2,
    Raw,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Personalization {
    /// A NoCloud config drive (`cidata`: meta-data, network-config, user-data), as cloud-init reads it.
    Nocloud,
    /// The image personalizes nothing; deploy sets no hostname or address.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OsTemplateOrigin {
    Imported,
    Captured,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OsTemplate {
    pub id: OsTemplateId,
    pub name: String,
    pub description: String,
    pub host: String,
    pub arch: Arch,
    pub boot: BootMethod,
    /// Kernel command line for direct boot.
    pub cmdline: Option<String>,
    pub has_kernel: bool,
    pub has_initrd: bool,
    pub disk_format: DiskFormat,
    /// The disk's virtual size in bytes.
    pub disk_size_bytes: u64,
    /// What the image file occupies.
    pub file_size_bytes: u64,
    /// SHA-256 of the disk image file.
    pub sha256: String,
    pub personalization: Personalization,
    /// Whether the image starts the Steward agent on the management channel at boot.
    pub agent: bool,
    pub origin: OsTemplateOrigin,
    /// For captured templates: the virtual server it was captured from.
    pub source_virtual_server: Option<String>,
    /// For imported templates: the file it was imported from.
    pub source_file: Option<String>,
    /// What was removed or emptied so that clones never collide.
    pub sealed: Vec<String>,
    /// Where the image lives when the host names it (a z/VM minidisk of an image holder, `STWIMG01/1000`); on
    /// QEMU hosts it is a file in the server's template storage and this is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_location: Option<String>,
    pub created_at: Timestamp,
}

/// Import an image file that the server can read (a path on the server's machine).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OsTemplateImport {
    pub name: String,
    /// Host name or ID; default `local`.
    #[serde(default)]
    pub host: Option<String>,
    /// Absolute path of the disk image (qcow2 or raw).
    pub file: String,
    /// Detected from the file when absent.
    #[serde(default)]
    pub format: Option<DiskFormat>,
    pub arch: Arch,
    pub boot: BootMethod,
    /// Absolute path of the kernel, for direct boot.
    #[serde(default)]
    pub kernel: Option<String>,
    #[serde(default)]
    pub initrd: Option<String>,
    #[serde(default)]
    pub cmdline: Option<String>,
    pub personalization: Personalization,
    #[serde(default)]
    pub agent: bool,
    #[serde(default)]
    pub description: Option<String>,
}

/// Capture a stopped virtual server into a new, sealed OS template.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerCapture {
    /// The new OS template's name.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Whether the image starts the Steward agent; by default what the source's OS template says (false for a
    /// registered guest).
    #[serde(default)]
    pub agent: Option<bool>,
}
