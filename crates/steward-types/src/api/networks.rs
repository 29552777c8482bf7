//! Isolated virtual networks on a host: the VSwitch or guest LAN of z/VM, a bridge with no uplink on QEMU.

use serde::{Deserialize, Serialize};

use super::Timestamp;
use crate::ids::NetworkId;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Network {
    pub id: NetworkId,
    pub name: String,
    pub host: String,
    /// The subnet guest addresses on this network must belong to (CIDR), if one was given.
    pub subnet: Option<String>,
    pub description: String,
    /// How many NICs of virtual servers are attached.
    pub attached_nics: u64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    pub name: String,
    /// Host name or ID.
    pub host: String,
    /// For example `10.77.0.0/24`.
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}
