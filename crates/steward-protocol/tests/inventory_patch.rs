//! Property tests of the inventory patch: applying `diff(a, b)` to `a` gives exactly `b`, a patch survives the
//! wire (JSON) unchanged, and equal inventories have equal digests and no patch.

use proptest::prelude::*;
use steward_protocol::*;

fn small_string() -> impl Strategy<Value = String> {
    "[a-z0-9.-]{0,6}"
}

fn package() -> impl Strategy<Value = Package> {
    (small_string(), prop_oneof![Just("amd64".to_string()), Just("s390x".to_string())], small_string(), any::<bool>())
        .prop_map(|(name, arch, version, rpm)| Package {
            name,
            arch,
            version,
            manager: if rpm { PackageManager::Rpm } else { PackageManager::Dpkg },
        })
}

fn filesystem() -> impl Strategy<Value = Filesystem> {
    (small_string(), small_string(), 0u64..1000, 0u64..1000).prop_map(|(mount, device, used, available)| Filesystem {
        mount_point: format!("/{mount}"),
        device,
        fs_type: "ext4".into(),
        size_bytes: used + available,
        used_bytes: used,
        available_bytes: available,
    })
}

fn interface() -> impl Strategy<Value = NetworkInterface> {
    (small_string(), prop::collection::vec("10\\.0\\.[0-9]\\.[0-9]/24", 0..3)).prop_map(|(name, addresses)| {
        NetworkInterface { name, mac: String::new(), mtu: 1500, state: "up".into(), addresses }
    })
}

fn inventory() -> impl Strategy<Value = Inventory> {
    (
        small_string(),
        1u32..8,
        prop::collection::vec(package(), 0..12),
        prop::collection::vec(filesystem(), 0..4),
        prop::collection::vec(interface(), 0..3),
        prop::option::of(small_string()),
        prop::collection::vec((small_string(), -1i32..256), 0..3),
    )
        .prop_map(|(hostname, cpus, packages, filesystems, interfaces, zvm, personalization)| {
            let mut inventory = Inventory {
                host: HostFacts { hostname, cpu: Cpu { count: cpus, model: String::new() }, ..HostFacts::default() },
                packages,
                filesystems,
                interfaces,
                zvm: zvm.map(|userid| ZvmGuest { userid, ..ZvmGuest::default() }),
                personalization: personalization
                    .into_iter()
                    .map(|(name, exit_code)| PersonalizationResult { name, exit_code })
                    .collect(),
                ..Inventory::default()
            };
            // Collectors report unique keys; keep the first of each like the normalized report would.
            let mut seen = std::collections::BTreeSet::new();
            inventory.packages.retain(|package| seen.insert(package.key()));
            let mut mounts = std::collections::BTreeSet::new();
            inventory.filesystems.retain(|fs| mounts.insert(fs.mount_point.clone()));
            inventory.normalize();
            inventory
        })
}

proptest! {
    #[test]
    fn applying_the_diff_gives_the_newer_inventory(old in inventory(), new in inventory()) {
        let mut patched = old.clone();
        match old.diff(&new) {
            Some(patch) => {
                let wire: InventoryPatch = serde_json::from_str(&serde_json::to_string(&patch).unwrap()).unwrap();
                prop_assert_eq!(&wire, &patch);
                patched.apply(wire);
            }
            None => prop_assert_eq!(&old, &new),
        }
        prop_assert_eq!(patched.digest(), new.digest());
        prop_assert_eq!(patched, new);
    }

    #[test]
    fn an_inventory_has_no_diff_with_itself(inventory in inventory()) {
        prop_assert!(inventory.diff(&inventory.clone()).is_none());
        let wire: Inventory = serde_json::from_str(&serde_json::to_string(&inventory).unwrap()).unwrap();
        prop_assert_eq!(wire.digest(), inventory.digest());
    }
}

/// Personalization results are left out of the JSON when there are none, so an inventory without them keeps the
/// digest (and the wire form) it had before the field existed, and reports of older agents still read.
#[test]
fn personalization_results_appear_only_when_there_are_some() {
    let mut inventory = Inventory::default();
    let without = serde_json::to_value(&inventory).unwrap();
    assert!(without.get("personalization").is_none(), "{without}");
    let read: Inventory = serde_json::from_value(without).unwrap();
    assert_eq!(read, inventory);

    let before = inventory.clone();
    inventory.personalization = vec![
        PersonalizationResult { name: "50-users".into(), exit_code: 3 },
        PersonalizationResult { name: "10-network".into(), exit_code: 0 },
    ];
    inventory.normalize();
    assert_eq!(inventory.personalization[0].name, "10-network", "sorted by name");
    let with = serde_json::to_value(&inventory).unwrap();
    assert_eq!(with["personalization"][1], serde_json::json!({"name": "50-users", "exit_code": 3}));
    assert_ne!(inventory.digest(), before.digest());
    let patch = before.diff(&inventory).expect("a change");
    assert_eq!(patch.sections(), ["personalization"]);
    let mut patched = before.clone();
    patched.apply(patch);
    assert_eq!(patched, inventory);
}
