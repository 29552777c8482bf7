//! The whole inventory collected from fixture roots: a Debian x86_64 KVM guest and a SLES s390x z/VM guest.

use std::path::{Path, PathBuf};

use steward_agent::inventory::{self, FIXTURE_ADDRESSES};
use steward_protocol::{
    BlockDevice, Cpu, Filesystem, HostFacts, Inventory, Kernel, Memory, NetworkInterface, OsRelease, Package,
    PackageManager, ZvmGuest,
};

/// A system root being built in a temporary directory.
struct Root {
    dir: tempfile::TempDir,
    fixtures: PathBuf,
}

impl Root {
    fn new(fixture_set: &str) -> Self {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(fixture_set);
        Root { dir: tempfile::tempdir().expect("tempdir"), fixtures }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, path: &str, contents: impl AsRef<[u8]>) -> &Self {
        let path = self.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
        self
    }

    /// Copies a fixture file to `path` under the root.
    fn fixture(&self, path: &str, fixture: &str) -> &Self {
        let contents = std::fs::read(self.fixtures.join(fixture)).expect("fixture");
        self.file(path, contents)
    }

    fn dir(&self, path: &str) -> &Self {
        std::fs::create_dir_all(self.path().join(path)).expect("mkdir");
        self
    }

    fn block_device(&self, name: &str, sectors: u64, model: Option<&str>, rotational: bool, partitions: &[&str]) {
        let base = format!("sys/block/{name}");
        self.file(&format!("{base}/size"), format!("{sectors}\n"));
        self.file(&format!("{base}/ro"), "0\n");
        self.file(&format!("{base}/queue/rotational"), if rotational { "1\n" } else { "0\n" });
        self.file(&format!("{base}/holders/.keep"), "");
        if let Some(model) = model {
            // sysfs pads SCSI and NVMe model strings with blanks.
            self.file(&format!("{base}/device/model"), format!("{model:<40}\n"));
        }
        for (number, partition) in partitions.iter().enumerate() {
            self.file(&format!("{base}/{partition}/partition"), format!("{}\n", number + 1));
            self.file(&format!("{base}/{partition}/size"), "2048\n");
        }
    }

    fn interface(&self, name: &str, mac: &str, mtu: u32, state: &str) {
        let base = format!("sys/class/net/{name}");
        self.file(&format!("{base}/address"), format!("{mac}\n"));
        self.file(&format!("{base}/mtu"), format!("{mtu}\n"));
        self.file(&format!("{base}/operstate"), format!("{state}\n"));
    }
}

fn debian_root() -> Root {
    let root = Root::new("debian-x86_64");
    root.file("proc/sys/kernel/hostname", "web01\n")
        .file("proc/sys/kernel/osrelease", "6.1.0-18-amd64\n")
        .file("proc/sys/kernel/version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)\n")
        .fixture("usr/lib/os-release", "os-release")
        .fixture("proc/cpuinfo", "cpuinfo")
        .fixture("proc/meminfo", "meminfo")
        .fixture("proc/self/mounts", "mounts")
        .fixture("var/lib/dpkg/status", "dpkg-status")
        .fixture(FIXTURE_ADDRESSES, "addresses")
        .file("sys/devices/system/cpu/online", "0-1\n")
        .file("sys/class/dmi/id/sys_vendor", "QEMU\n")
        .file("sys/class/dmi/id/product_name", "Standard PC (Q35 + ICH9, 2009)\n")
        .file("sys/class/net/bonding_masters", "\n")
        .dir("etc");
    // /etc/os-release is a symlink to ../usr/lib/os-release, as on Debian.
    std::os::unix::fs::symlink("../usr/lib/os-release", root.path().join("etc/os-release")).expect("symlink");
    root.block_device("vda", 41_943_040, None, true, &["vda1", "vda14", "vda15"]);
    root.block_device("nvme0n1", 209_715_200, Some("QEMU NVMe Ctrl"), false, &["nvme0n1p1"]);
    root.block_device("sr0", 0, Some("QEMU DVD-ROM"), true, &[]);
    root.block_device("loop0", 131_072, None, false, &[]);
    root.interface("lo", "00:00:00:00:00:00", 65536, "unknown");
    root.interface("ens3", "52:54:00:12:34:56", 1500, "up");
    root.interface("docker0", "02:42:3B:5E:1A:07", 1500, "down");
    root
}

fn zvm_root() -> Root {
    let root = Root::new("sles-s390x-zvm");
    root.file("proc/sys/kernel/hostname", "lnxweb01\n")
        .file("proc/sys/kernel/osrelease", "5.14.21-150500.55.52-default\n")
        .file("proc/sys/kernel/version", "#1 SMP PREEMPT_DYNAMIC Tue Mar  5 16:53:41 UTC 2024 (a62851f)\n")
        .fixture("etc/os-release", "os-release")
        .fixture("proc/sysinfo", "sysinfo")
        .fixture("proc/cpuinfo", "cpuinfo")
        .fixture("proc/meminfo", "meminfo")
        .fixture("proc/self/mounts", "mounts")
        .fixture(FIXTURE_ADDRESSES, "addresses")
        .file("sys/devices/system/cpu/online", "0-1\n")
        // SLES keeps the rpm database here; it is only queried (through rpm) on the running system.
        .file("var/lib/rpm/Packages.db", "not a database\n");
    // ECKD DASDs: a 3390 model 9 and a model 27, with no model attribute.
    root.block_device("dasda", 14_424_480, None, false, &["dasda1", "dasda2"]);
    root.block_device("dasdb", 43_273_440, None, false, &["dasdb1"]);
    root.interface("lo", "00:00:00:00:00:00", 65536, "unknown");
    root.interface("encbdf0", "02:00:0c:00:00:2a", 8192, "up");
    root
}

/// Collects and checks that "/" (the temporary directory itself) got real usage figures and mount points missing
/// under the root none, then zeroes all usage, which depends on the disk the test runs on.
fn collect_without_usage(root: &Root) -> Inventory {
    let mut collected = inventory::collect(root.path());
    let slash = collected.filesystems.iter().find(|fs| fs.mount_point == "/").expect("/ mounted");
    assert!(slash.size_bytes > 0, "statvfs on the root");
    assert!(slash.used_bytes + slash.available_bytes <= slash.size_bytes);
    for fs in &mut collected.filesystems {
        if !root.path().join(fs.mount_point.trim_start_matches('/')).exists() {
            assert_eq!((fs.size_bytes, fs.used_bytes, fs.available_bytes), (0, 0, 0), "{}", fs.mount_point);
        }
        fs.size_bytes = 0;
        fs.used_bytes = 0;
        fs.available_bytes = 0;
    }
    collected
}

fn filesystem(mount_point: &str, device: &str, fs_type: &str) -> Filesystem {
    Filesystem {
        mount_point: mount_point.into(),
        device: device.into(),
        fs_type: fs_type.into(),
        ..Filesystem::default()
    }
}

fn interface(name: &str, mac: &str, mtu: u32, state: &str, addresses: &[&str]) -> NetworkInterface {
    NetworkInterface {
        name: name.into(),
        mac: mac.into(),
        mtu,
        state: state.into(),
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
    }
}

fn block(name: &str, sectors: u64, model: &str, rotational: bool, partitions: &[&str]) -> BlockDevice {
    BlockDevice {
        name: name.into(),
        size_bytes: sectors * 512,
        model: model.into(),
        rotational,
        read_only: false,
        partitions: partitions.iter().map(|p| p.to_string()).collect(),
    }
}

fn dpkg(name: &str, arch: &str, version: &str) -> Package {
    Package { name: name.into(), arch: arch.into(), version: version.into(), manager: PackageManager::Dpkg }
}

#[test]
fn debian_x86_64_kvm_guest() {
    let root = debian_root();
    let collected = collect_without_usage(&root);
    let expected = Inventory {
        host: HostFacts {
            hostname: "web01".into(),
            os: OsRelease {
                id: "debian".into(),
                id_like: String::new(),
                name: "Debian GNU/Linux".into(),
                version_id: "12".into(),
                version: "12 (bookworm)".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
            },
            kernel: Kernel {
                release: "6.1.0-18-amd64".into(),
                version: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)".into(),
            },
            arch: inventory::uname_arch().into(),
            cpu: Cpu { count: 2, model: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz".into() },
            memory: Memory { total_bytes: 8_131_372 * 1024, swap_total_bytes: 1_003_516 * 1024 },
            hypervisor: "kvm".into(),
        },
        block_devices: vec![
            block("nvme0n1", 209_715_200, "QEMU NVMe Ctrl", false, &["nvme0n1p1"]),
            block("vda", 41_943_040, "", true, &["vda1", "vda14", "vda15"]),
        ],
        filesystems: vec![
            filesystem("/", "/dev/vda1", "ext4"),
            filesystem("/boot/efi", "/dev/vda15", "vfat"),
            filesystem("/mnt/backup share", "backup.example.com:/export/web01", "nfs4"),
            filesystem("/srv/data", "/dev/nvme0n1p1", "xfs"),
            filesystem("/var/lib/docker/overlay2/3f1c2a/merged", "overlay", "overlay"),
        ],
        interfaces: vec![
            interface("docker0", "02:42:3b:5e:1a:07", 1500, "down", &[]),
            interface(
                "ens3",
                "52:54:00:12:34:56",
                1500,
                "up",
                &["192.0.2.10/24", "2001:db8:10::10/64", "fe80::5054:ff:fe12:3456/64"],
            ),
            interface("lo", "", 65536, "unknown", &["127.0.0.1/8", "::1/128"]),
        ],
        packages: vec![
            dpkg("adduser", "all", "3.134"),
            dpkg("apt", "amd64", "2.6.1"),
            dpkg("libc6", "amd64", "2.36-9+deb12u4"),
            dpkg("libc6", "i386", "2.36-9+deb12u4"),
            dpkg("linux-image-6.1.0-18-amd64", "amd64", "6.1.76-1"),
            dpkg("nginx", "amd64", "1.22.1-9"),
            dpkg("perl-base", "amd64", "5.36.0-7+deb12u1"),
            dpkg("tzdata", "all", "2024a-0+deb12u1"),
            dpkg("zlib1g", "amd64", "1:1.2.13.dfsg-1"),
        ],
        zvm: None,
        personalization: vec![],
    };
    assert_eq!(collected, expected);
}

#[test]
fn sles_s390x_zvm_guest() {
    let root = zvm_root();
    let collected = collect_without_usage(&root);
    let expected = Inventory {
        host: HostFacts {
            hostname: "lnxweb01".into(),
            os: OsRelease {
                id: "sles".into(),
                id_like: "suse".into(),
                name: "SLES".into(),
                version_id: "15.5".into(),
                version: "15-SP5".into(),
                pretty_name: "SUSE Linux Enterprise Server 15 SP5".into(),
            },
            kernel: Kernel {
                release: "5.14.21-150500.55.52-default".into(),
                version: "#1 SMP PREEMPT_DYNAMIC Tue Mar  5 16:53:41 UTC 2024 (a62851f)".into(),
            },
            // The architecture is the agent binary's, not the fixture's.
            arch: inventory::uname_arch().into(),
            cpu: Cpu { count: 2, model: "8561".into() },
            memory: Memory { total_bytes: 4_029_560 * 1024, swap_total_bytes: 2_097_084 * 1024 },
            hypervisor: "zvm".into(),
        },
        block_devices: vec![
            block("dasda", 14_424_480, "", false, &["dasda1", "dasda2"]),
            block("dasdb", 43_273_440, "", false, &["dasdb1"]),
        ],
        filesystems: vec![
            filesystem("/", "/dev/dasda2", "btrfs"),
            filesystem("/.snapshots", "/dev/dasda2", "btrfs"),
            filesystem("/boot/zipl", "/dev/dasda1", "ext2"),
            filesystem("/home", "/dev/dasda2", "btrfs"),
            filesystem("/opt", "/dev/dasda2", "btrfs"),
            filesystem("/srv", "/dev/dasdb1", "xfs"),
            filesystem("/var", "/dev/dasda2", "btrfs"),
        ],
        interfaces: vec![
            interface("encbdf0", "02:00:0c:00:00:2a", 8192, "up", &["10.20.30.41/24", "fe80::ff:fe00:2a/64"]),
            interface("lo", "", 65536, "unknown", &["127.0.0.1/8", "::1/128"]),
        ],
        // The rpm database is read through the rpm binary, which only describes the running system.
        packages: vec![],
        zvm: Some(ZvmGuest {
            userid: "LNXWEB01".into(),
            control_program: "z/VM    7.3.0".into(),
            lpar_name: "ZVMLP01".into(),
            machine_type: "8561".into(),
            cpus_total: 2,
            cpus_dedicated: 0,
            cpus_shared: 0,
            capability: 456,
        }),
        personalization: vec![],
    };
    assert_eq!(collected, expected);
}

#[test]
fn collections_are_deterministic() {
    let root = debian_root();
    let first = collect_without_usage(&root);
    let second = collect_without_usage(&root);
    assert_eq!(first.digest(), second.digest());
    assert_eq!(first.diff(&second), None);
}

#[test]
fn an_installed_package_shows_up_as_a_patch() {
    let root = debian_root();
    let before = collect_without_usage(&root);
    let mut status = std::fs::read_to_string(root.path().join("var/lib/dpkg/status")).expect("status");
    status.push_str("\nPackage: curl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 7.88.1-10+deb12u5\n");
    root.file("var/lib/dpkg/status", status);
    let after = collect_without_usage(&root);
    let patch = before.diff(&after).expect("a change");
    assert_eq!(patch.sections(), ["packages"]);
    assert_eq!(patch.packages_installed, [dpkg("curl", "amd64", "7.88.1-10+deb12u5")]);
}

#[test]
fn empty_root_gives_an_empty_inventory() {
    let root = tempfile::tempdir().expect("tempdir");
    let collected = inventory::collect(root.path());
    let expected = Inventory {
        host: HostFacts { arch: inventory::uname_arch().into(), hypervisor: "none".into(), ..HostFacts::default() },
        ..Inventory::default()
    };
    assert_eq!(collected, expected);
}

#[test]
fn garbage_everywhere_does_not_panic() {
    let root = Root::new("none");
    let garbage: &[u8] =
        b"\xff\xfe\x00garbage: : :\n\n\t\\\\\\0\n-1-\n,,,\nVM00 CPUs Total: -5\nMemTotal: 99999999999999999999999 kB\n";
    for path in [
        "proc/sys/kernel/hostname",
        "proc/sys/kernel/osrelease",
        "proc/sys/kernel/version",
        "etc/os-release",
        "proc/sysinfo",
        "proc/cpuinfo",
        "proc/meminfo",
        "proc/self/mounts",
        "var/lib/dpkg/status",
        "sys/devices/system/cpu/online",
        "sys/class/dmi/id/sys_vendor",
        "sys/hypervisor/type",
        "sys/block/sda/size",
        "sys/block/sda/ro",
        "sys/block/sda/queue/rotational",
        "sys/block/sda/device/model",
        "sys/class/net/eth0/address",
        "sys/class/net/eth0/mtu",
        "sys/class/net/eth0/operstate",
        FIXTURE_ADDRESSES,
    ] {
        root.file(path, garbage);
    }
    let collected = inventory::collect(root.path());
    assert!(collected.block_devices.is_empty());
    assert!(collected.packages.is_empty());
    assert_eq!(collected.zvm, None);
    assert_eq!(collected.interfaces.len(), 1);
    assert_eq!(collected.interfaces[0].mtu, 0);
}
