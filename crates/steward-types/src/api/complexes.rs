//! Server complexes: a persistent desired state for a tiered group of guests on one host. Each tier names the
//! templates its members are cloned from and the properties Steward enforces on them; a consistency check
//! compares every property with reality (the hypervisor's definition and the guest as its agent sees it).
//!
//! The definition a user writes (YAML or JSON, `steward complexes create NAME --host H --file complex.yaml`):
//!
//! ```yaml
//! description: web shop
//! variables: { environment: test }        # passed to every script as STEWARD_VAR_ENVIRONMENT
//! reconcile_interval_seconds: 300          # background check; 0 turns it off
//! tiers:
//!   - name: web
//!     server_template: small
//!     os_template: debian-12
//!     naming: "web-{n}"                    # {n} is the member index, {complex} and {tier} also work
//!     cpu_share: 100                       # cpus / memory_mib / cpu_share default to the server template's
//!     networks:                            # one NIC per entry, in this order
//!       - { network: shop-lan, pool: "10.77.0.10-10.77.0.99", gateway: 10.77.0.1 }
//!     disks:                               # extra disks, formatted and mounted at first boot
//!       - { size: 64M, filesystem: ext2, mount_point: /srv/data }
//!     scripts:
//!       - { name: motd, body: "#!/bin/sh\necho \"$STEWARD_TIER $STEWARD_MEMBER_INDEX\" > /etc/motd\n" }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Timestamp;
use super::operations::Operation;
use super::virtual_servers::{CloneMethod, PersonalizationScript};
use crate::ids::{ComplexId, SystemId, VirtualServerId};

/// One NIC of every member of a tier: its network and where its static address comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierNetwork {
    /// Network name or ID, on the complex's host.
    pub network: String,
    /// The addresses members get, as `FIRST-LAST` inside the network's subnet; none means DHCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
}

/// An extra disk of every member of a tier, formatted and mounted by the first boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierDisk {
    /// For example `64M`, `10G`, or a number of bytes.
    pub size: String,
    /// The `mkfs.<filesystem>` the guest runs on a blank disk, for example `ext4`, `xfs`, `ext2`.
    pub filesystem: String,
    /// An absolute path in the guest.
    pub mount_point: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: String,
    /// Server template name or ID.
    pub server_template: String,
    /// OS template name or ID.
    pub os_template: String,
    /// The member name: `{n}` (required) is the member index from 1; `{complex}` and `{tier}` are replaced too.
    pub naming: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<u32>,
    #[serde(default)]
    pub networks: Vec<TierNetwork>,
    #[serde(default)]
    pub disks: Vec<TierDisk>,
    #[serde(default)]
    pub scripts: Vec<PersonalizationScript>,
    /// Passed to this tier's scripts as `STEWARD_VAR_<NAME>` (over the complex's variables of the same name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// What a complex should be: the document of `--file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplexDefinition {
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// How often the background reconciler checks the complex; 0 turns it off. Default: 300 on QEMU hosts,
    /// off on z/VM hosts (each check costs SMAPI calls there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_interval_seconds: Option<u64>,
    pub tiers: Vec<Tier>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplexCreate {
    pub name: String,
    /// Host name or ID.
    pub host: String,
    pub definition: ComplexDefinition,
}

/// Replaces a complex's definition. Tiers with members keep their templates and naming; every other property
/// may change, and members deviate from it until `apply`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplexUpdate {
    pub definition: ComplexDefinition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Its clone operation runs.
    Creating,
    Ready,
    /// Its removal runs.
    Deleting,
}

/// A static address a member holds on one of its tier's networks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberAddress {
    pub network: String,
    /// With its prefix, for example `10.77.0.10/24`.
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComplexMember {
    pub name: String,
    pub virtual_server: VirtualServerId,
    pub system: Option<SystemId>,
    pub tier: String,
    pub index: u32,
    pub state: MemberState,
    pub addresses: Vec<MemberAddress>,
    /// Properties whose actual value was adopted for this member (property -> value), overriding the tier.
    pub adopted: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Complex {
    pub id: ComplexId,
    pub name: String,
    pub host: String,
    pub definition: ComplexDefinition,
    pub members: Vec<ComplexMember>,
    /// The deviations the last check found (by the API or the reconciler).
    pub deviations: u64,
    pub last_checked_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplexMembersAdd {
    pub tier: String,
    /// How many members to clone (1 to 1000).
    pub count: u32,
    /// Start the members and wait for their personalization (default true); false only defines them.
    #[serde(default = "default_true")]
    pub start: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone: Option<CloneMethod>,
    /// Members cloned at the same time (default 4, at most 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<u32>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplexMembersRemove {
    /// Member names.
    pub members: Vec<String>,
}

/// Where a property lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The guest's definition and its live devices on the host.
    Hypervisor,
    /// Inside the guest, as its agent reports it.
    Guest,
}

/// One enforced property of one member that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deviation {
    pub member: String,
    /// For example `cpu_share`, `nic:shop-lan`, `hostname`, `mount:/srv/data`, `script:motd`.
    pub property: String,
    pub expected: String,
    pub actual: String,
    pub layer: Layer,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsistencyReport {
    pub complex: String,
    pub checked_at: Timestamp,
    pub members_checked: u32,
    pub deviations: Vec<Deviation>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplexApply {
    /// Only this member (default: every member with deviations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Only this property, or every property of a kind (`nic` matches `nic:lan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplexAdopt {
    pub member: String,
    pub property: String,
}

/// The answer of `apply`: the operation that makes the members consistent (one child operation per member),
/// or none when a fresh check found nothing to apply.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComplexApplyStarted {
    pub operation: Option<Operation>,
    /// The deviations the operation repairs.
    pub deviations: Vec<Deviation>,
}
