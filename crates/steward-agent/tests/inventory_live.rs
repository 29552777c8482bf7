//! The inventory of the machine the tests run on (a Debian system): sane values from every source.

use std::path::Path;
use std::time::{Duration, Instant};

use steward_agent::inventory;

#[test]
fn collects_this_machine() {
    let started = Instant::now();
    let collected = inventory::collect(Path::new("/"));
    let elapsed = started.elapsed();
    eprintln!(
        "collected in {elapsed:?}: {} packages, {} filesystems, {} interfaces, {} block devices, hypervisor {}",
        collected.packages.len(),
        collected.filesystems.len(),
        collected.interfaces.len(),
        collected.block_devices.len(),
        collected.host.hypervisor,
    );
    let host = &collected.host;
    assert!(!host.hostname.is_empty());
    assert!(!host.kernel.release.is_empty());
    assert!(!host.kernel.version.is_empty());
    assert!(!host.os.id.is_empty());
    assert_eq!(host.arch, inventory::uname_arch());
    assert!(host.cpu.count >= 1);
    assert!(host.memory.total_bytes > 0);
    assert!(["kvm", "zvm", "qemu", "xen", "vmware", "hyperv", "none"].contains(&host.hypervisor.as_str()));

    let slash = collected.filesystems.iter().find(|fs| fs.mount_point == "/").expect("/ in filesystems");
    assert!(slash.size_bytes > 0);
    assert!(collected.filesystems.iter().all(|fs| fs.fs_type != "proc" && fs.fs_type != "tmpfs"));

    let lo = collected.interfaces.iter().find(|interface| interface.name == "lo").expect("lo in interfaces");
    assert_eq!(lo.mac, "");
    assert!(lo.addresses.iter().any(|address| address == "127.0.0.1/8"), "{:?}", lo.addresses);

    assert!(Path::new("/var/lib/dpkg/status").exists(), "the test machine is a Debian system");
    assert!(!collected.packages.is_empty());
    assert!(collected.packages.iter().any(|package| package.name == "dpkg"));
    assert!(collected.block_devices.iter().all(|device| !device.name.starts_with("loop") && device.size_bytes > 0));

    // Normalized: a second collection of an unchanged system has the same packages, in the same order.
    assert_eq!(inventory::collect(Path::new("/")).packages, collected.packages);
    // Generous for a debug build on a busy machine; a release build takes a few milliseconds.
    assert!(elapsed < Duration::from_secs(2), "collection took {elapsed:?}");
}
