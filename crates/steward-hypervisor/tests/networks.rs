//! Isolated networks in a namespace of the test's own: creating and deleting twice is harmless, taps attach to
//! their network's bridge, and the namespace goes away with the last network.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use steward_hypervisor::qemu::network::bridge_name;
use steward_hypervisor::{Hypervisor, HypervisorError};

#[tokio::test]
async fn networks_and_nics_are_idempotent() {
    if !support::can_create_namespaces() {
        return;
    }
    let test_host = support::TestHost::new();
    let host = test_host.open();
    let namespace_path = Path::new("/run/netns").join(&test_host.namespace);

    host.network_create("lan").await.unwrap();
    host.network_create("lan").await.unwrap();
    host.network_create("backend").await.unwrap();
    assert!(namespace_path.exists());
    assert!(host.networks().network_exists("lan").await.unwrap());

    host.nic_create("lan", "tapweb0").await.unwrap();
    host.nic_create("lan", "tapweb0").await.unwrap();
    assert_eq!(host.networks().tap_master("tapweb0").await.unwrap(), Some(bridge_name("lan")));
    // Re-creating a NIC on another network moves the tap there.
    host.nic_create("backend", "tapweb0").await.unwrap();
    assert_eq!(host.networks().tap_master("tapweb0").await.unwrap(), Some(bridge_name("backend")));

    let missing = host.nic_create("nowhere", "tapx").await.unwrap_err();
    assert!(matches!(missing, HypervisorError::NetworkNotFound { .. }), "{missing}");
    let invalid = host.nic_create("lan", "a-tap-name-too-long").await.unwrap_err();
    assert!(invalid.to_string().starts_with("invalid tap name"), "{invalid}");

    // Nothing of this appears in the test process's own namespace.
    let outside = std::process::Command::new("ip").args(["link", "show"]).output().unwrap();
    let outside = String::from_utf8_lossy(&outside.stdout);
    assert!(!outside.contains("tapweb0") && !outside.contains(&bridge_name("lan")));

    host.nic_delete("tapweb0").await.unwrap();
    host.nic_delete("tapweb0").await.unwrap();
    assert!(!host.networks().tap_exists("tapweb0").await.unwrap());
    host.network_delete("lan").await.unwrap();
    host.network_delete("lan").await.unwrap();
    assert!(namespace_path.exists(), "another network remains");
    host.network_delete("backend").await.unwrap();
    assert!(!namespace_path.exists(), "the last network takes the namespace with it");
    host.network_delete("backend").await.unwrap();
    host.nic_delete("tapweb0").await.unwrap();
}
