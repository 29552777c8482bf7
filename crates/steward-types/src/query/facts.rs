//! The facts document: the JSON view of a system and its inventory that queries are evaluated against.

use std::collections::HashSet;

use serde_json::{Map, Value, json};
use steward_protocol::inventory::Inventory;

/// What Steward knows about a system apart from its inventory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SystemFacts {
    /// The system's name in Steward.
    pub name: String,
    /// The connection state: `online` or `offline`.
    pub state: String,
}

/// Bytes per MiB.
const MIB: u64 = 1 << 20;
/// Bytes per GiB.
const GIB: f64 = (1u64 << 30) as f64;

/// A size in GiB rounded to one decimal.
fn gib(bytes: u64) -> f64 {
    (bytes as f64 / GIB * 10.0).round() / 10.0
}

/// Builds the facts document a [`Query`](super::Query) is evaluated against.
///
/// The document has one member per field of the query language (see [`fields`](super::fields)). Without an
/// inventory, which is the case for a system that has enrolled but not yet reported, only `name` and `state` are
/// present, so every comparison on another field is false. The `zvm` group is present only when the inventory has
/// z/VM guest facts. Keyed maps are objects keyed by mount point, disk name, interface name and package name; when a
/// package is installed for several architectures, `package["name"]` describes the first in inventory order.
pub fn facts_document(system: &SystemFacts, inventory: Option<&Inventory>) -> Value {
    let mut document = Map::new();
    document.insert("name".into(), json!(system.name));
    document.insert("state".into(), json!(system.state));
    let Some(inventory) = inventory else {
        return Value::Object(document);
    };
    let host = &inventory.host;
    document.insert("hostname".into(), json!(host.hostname));
    document.insert("arch".into(), json!(host.arch));
    document.insert("hypervisor".into(), json!(host.hypervisor));
    document.insert(
        "os".into(),
        json!({
            "id": host.os.id,
            "id_like": host.os.id_like,
            "name": host.os.name,
            "version_id": host.os.version_id,
            "version": host.os.version,
            "pretty_name": host.os.pretty_name,
        }),
    );
    document.insert("kernel".into(), json!({ "release": host.kernel.release, "version": host.kernel.version }));
    document.insert("cpu".into(), json!({ "count": host.cpu.count, "model": host.cpu.model }));
    document.insert(
        "memory".into(),
        json!({
            "total_bytes": host.memory.total_bytes,
            "total_mb": host.memory.total_bytes / MIB,
            "swap_total_bytes": host.memory.swap_total_bytes,
            "swap_total_mb": host.memory.swap_total_bytes / MIB,
        }),
    );

    let mut filesystems = Map::new();
    for fs in &inventory.filesystems {
        filesystems.entry(fs.mount_point.clone()).or_insert_with(|| {
            json!({
                "used_pct": fs.used_pct(),
                "size_bytes": fs.size_bytes,
                "used_bytes": fs.used_bytes,
                "available_bytes": fs.available_bytes,
                "size_gb": gib(fs.size_bytes),
                "type": fs.fs_type,
                "device": fs.device,
            })
        });
    }
    document.insert("fs".into(), Value::Object(filesystems));

    let mut disks = Map::new();
    for disk in &inventory.block_devices {
        disks.entry(disk.name.clone()).or_insert_with(|| {
            json!({
                "size_bytes": disk.size_bytes,
                "size_gb": gib(disk.size_bytes),
                "model": disk.model,
                "rotational": disk.rotational,
                "read_only": disk.read_only,
            })
        });
    }
    document.insert("disk".into(), Value::Object(disks));

    let mut interfaces = Map::new();
    let mut addresses: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    for interface in &inventory.interfaces {
        interfaces.entry(interface.name.clone()).or_insert_with(|| {
            json!({
                "mac": interface.mac,
                "state": interface.state,
                "mtu": interface.mtu,
                "addresses": interface.addresses,
            })
        });
        for address in &interface.addresses {
            let bare = address.split_once('/').map_or(address.as_str(), |(bare, _)| bare);
            if seen.insert(bare) {
                addresses.push(bare);
            }
        }
    }
    document.insert("interface".into(), Value::Object(interfaces));
    document.insert("addresses".into(), json!(addresses));

    let mut packages = Map::new();
    let mut names: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    for package in &inventory.packages {
        packages
            .entry(package.name.clone())
            .or_insert_with(|| json!({ "version": package.version, "arch": package.arch, "manager": package.manager }));
        if seen.insert(package.name.as_str()) {
            names.push(&package.name);
        }
    }
    document.insert("package".into(), Value::Object(packages));
    document.insert("packages".into(), json!(names));

    if let Some(zvm) = &inventory.zvm {
        document.insert(
            "zvm".into(),
            json!({
                "userid": zvm.userid,
                "control_program": zvm.control_program,
                "lpar_name": zvm.lpar_name,
                "machine_type": zvm.machine_type,
                "cpus_total": zvm.cpus_total,
                "cpus_dedicated": zvm.cpus_dedicated,
                "cpus_shared": zvm.cpus_shared,
                "capability": zvm.capability,
            }),
        );
    }
    Value::Object(document)
}
