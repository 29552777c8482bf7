//! The facts document built from a realistic inventory, the example queries of the documentation evaluated on it,
//! and a check that the user documentation lists every field of the schema.

use serde_json::json;
use steward_protocol::inventory::{
    BlockDevice, Cpu, Filesystem, HostFacts, Inventory, Kernel, Memory, NetworkInterface, OsRelease, Package,
    PackageManager, ZvmGuest,
};
use steward_types::query::{Expr, FieldType, Query, Segment, SystemFacts, facts_document, fields};

const GIB: u64 = 1 << 30;

fn package(name: &str, arch: &str, version: &str) -> Package {
    Package { name: name.into(), arch: arch.into(), version: version.into(), manager: PackageManager::Dpkg }
}

fn debian() -> Inventory {
    let mut inventory = Inventory {
        host: HostFacts {
            hostname: "web1.example.com".into(),
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
                version: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1".into(),
            },
            arch: "x86_64".into(),
            cpu: Cpu { count: 4, model: "AMD EPYC 7763 64-Core Processor".into() },
            memory: Memory { total_bytes: 8 * GIB - 123 * 4096, swap_total_bytes: GIB },
            hypervisor: "kvm".into(),
        },
        block_devices: vec![BlockDevice {
            name: "vda".into(),
            size_bytes: 20 * GIB,
            model: String::new(),
            rotational: false,
            read_only: false,
            partitions: vec!["vda1".into(), "vda2".into()],
        }],
        filesystems: vec![
            Filesystem {
                mount_point: "/".into(),
                device: "/dev/vda1".into(),
                fs_type: "ext4".into(),
                size_bytes: 20_956_397_568,
                used_bytes: 7_383_408_640,
                available_bytes: 12_480_614_400,
            },
            Filesystem {
                mount_point: "/boot/efi".into(),
                device: "/dev/vda2".into(),
                fs_type: "vfat".into(),
                size_bytes: 535_805_952,
                used_bytes: 6_172_672,
                available_bytes: 529_633_280,
            },
        ],
        interfaces: vec![
            NetworkInterface {
                name: "eth0".into(),
                mac: "52:54:00:12:34:56".into(),
                mtu: 1500,
                state: "up".into(),
                addresses: vec!["10.0.0.5/24".into(), "fe80::5054:ff:fe12:3456/64".into()],
            },
            NetworkInterface {
                name: "lo".into(),
                mac: String::new(),
                mtu: 65536,
                state: "unknown".into(),
                addresses: vec!["127.0.0.1/8".into(), "::1/128".into()],
            },
        ],
        packages: vec![
            package("bash", "amd64", "5.2.15-2+b2"),
            package("libc6", "i386", "2.36-9+deb12u4"),
            package("libc6", "amd64", "2.36-9+deb12u4"),
            package("openssh-server", "amd64", "1:9.2p1-2+deb12u2"),
        ],
        zvm: None,
        personalization: vec![],
    };
    inventory.normalize();
    inventory
}

fn sles_on_zvm() -> Inventory {
    let mut inventory = debian();
    inventory.host.os = OsRelease {
        id: "sles".into(),
        id_like: "suse".into(),
        name: "SLES".into(),
        version_id: "15.5".into(),
        version: "15-SP5".into(),
        pretty_name: "SUSE Linux Enterprise Server 15 SP5".into(),
    };
    inventory.host.arch = "s390x".into();
    inventory.host.hypervisor = "zvm".into();
    inventory.packages = vec![Package {
        name: "openssh-server".into(),
        arch: "s390x".into(),
        version: "9.6p1-150600.4.3".into(),
        manager: PackageManager::Rpm,
    }];
    inventory.zvm = Some(ZvmGuest {
        userid: "LINUX01".into(),
        control_program: "z/VM    7.3.0".into(),
        lpar_name: "LPAR1".into(),
        machine_type: "8561".into(),
        cpus_total: 2,
        cpus_dedicated: 0,
        cpus_shared: 2,
        capability: 2_988,
    });
    inventory
}

fn system(name: &str) -> SystemFacts {
    SystemFacts { name: name.into(), state: "online".into() }
}

#[test]
fn facts_document_without_inventory_has_only_name_and_state() {
    let facts = facts_document(&SystemFacts { name: "new1".into(), state: "offline".into() }, None);
    assert_eq!(facts, json!({ "name": "new1", "state": "offline" }));
}

#[test]
fn facts_document_from_a_realistic_inventory() {
    let facts = facts_document(&system("web1"), Some(&debian()));
    assert_eq!(facts["name"], "web1");
    assert_eq!(facts["state"], "online");
    assert_eq!(facts["hostname"], "web1.example.com");
    assert_eq!(facts["arch"], "x86_64");
    assert_eq!(facts["hypervisor"], "kvm");
    assert_eq!(facts["os"]["pretty_name"], "Debian GNU/Linux 12 (bookworm)");
    assert_eq!(
        facts["kernel"],
        json!({ "release": "6.1.0-18-amd64", "version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1" })
    );
    assert_eq!(facts["cpu"], json!({ "count": 4, "model": "AMD EPYC 7763 64-Core Processor" }));
    assert_eq!(
        facts["memory"],
        json!({ "total_bytes": 8 * GIB - 123 * 4096, "total_mb": 8191, "swap_total_bytes": GIB, "swap_total_mb": 1024 })
    );
    assert_eq!(
        facts["fs"]["/"],
        json!({
            "used_pct": 37.2,
            "size_bytes": 20_956_397_568u64,
            "used_bytes": 7_383_408_640u64,
            "available_bytes": 12_480_614_400u64,
            "size_gb": 19.5,
            "type": "ext4",
            "device": "/dev/vda1",
        })
    );
    assert_eq!(facts["fs"]["/boot/efi"]["size_gb"], 0.5);
    assert_eq!(
        facts["disk"],
        json!({ "vda": { "size_bytes": 20 * GIB, "size_gb": 20.0, "model": "", "rotational": false, "read_only": false } })
    );
    assert_eq!(
        facts["interface"]["eth0"],
        json!({ "mac": "52:54:00:12:34:56", "state": "up", "mtu": 1500,
                "addresses": ["10.0.0.5/24", "fe80::5054:ff:fe12:3456/64"] })
    );
    assert_eq!(facts["addresses"], json!(["10.0.0.5", "fe80::5054:ff:fe12:3456", "127.0.0.1", "::1"]));
    assert_eq!(facts["packages"], json!(["bash", "libc6", "openssh-server"]));
    assert_eq!(
        facts["package"]["openssh-server"],
        json!({ "version": "1:9.2p1-2+deb12u2", "arch": "amd64", "manager": "dpkg" })
    );
    // Sorted by name, then architecture: amd64 comes before i386.
    assert_eq!(facts["package"]["libc6"]["arch"], "amd64");
    assert!(facts.get("zvm").is_none());
}

#[test]
fn facts_document_of_a_zvm_guest() {
    let facts = facts_document(&system("linux01"), Some(&sles_on_zvm()));
    assert_eq!(
        facts["zvm"],
        json!({
            "userid": "LINUX01",
            "control_program": "z/VM    7.3.0",
            "lpar_name": "LPAR1",
            "machine_type": "8561",
            "cpus_total": 2,
            "cpus_dedicated": 0,
            "cpus_shared": 2,
            "capability": 2988,
        })
    );
    assert_eq!(facts["package"]["openssh-server"]["manager"], "rpm");
}

#[test]
fn every_schema_field_is_in_the_facts_document_with_its_type() {
    // The z/VM guest has every map key the field listing uses as its example (`/`, `vda`, `eth0`, `openssh-server`).
    let facts = facts_document(&system("linux01"), Some(&sles_on_zvm()));
    for field in fields() {
        let query = Query::parse(&format!("exists {}", field.path)).expect("schema paths parse");
        let Expr::Exists(path) = query.expr() else { panic!("{:?}", query.expr()) };
        let value = path.0.iter().try_fold(&facts, |value, segment| match segment {
            Segment::Field(name) | Segment::Key(name) => value.get(name),
        });
        let Some(value) = value else { panic!("{} is missing from the facts document", field.path) };
        let fits = match field.field_type {
            FieldType::String => value.is_string(),
            FieldType::Number => value.is_number(),
            FieldType::Bool => value.is_boolean(),
            FieldType::StringList => value.as_array().is_some_and(|items| items.iter().all(|item| item.is_string())),
        };
        assert!(fits, "{} is {value} in the facts document, not a {}", field.path, field.field_type.name());
    }
}

#[test]
fn documentation_examples_on_realistic_systems() {
    let web1 = facts_document(&system("web1"), Some(&debian()));
    let linux01 = facts_document(&system("linux01"), Some(&sles_on_zvm()));
    let new1 = facts_document(&SystemFacts { name: "new1".into(), state: "offline".into() }, None);
    for (source, on_web1, on_linux01, on_new1) in [
        (r#"os.id = "debian" and cpu.count >= 2 and fs["/"].used_pct < 90"#, true, false, false),
        (r#"hypervisor = "zvm""#, false, true, false),
        (r#"os.name = "SLES" and hypervisor = "zvm""#, false, true, false),
        (r#"package["openssh-server"].version ~ "1:9.*""#, true, false, false),
        ("exists zvm.userid", false, true, false),
        (r#"addresses contains "10.0.0.5""#, true, true, false),
        (r#"not exists hostname"#, false, false, true),
        (r#"state = "offline""#, false, false, true),
        (r#"zvm.userid ~ "LINUX*" and zvm.cpus_total >= 2"#, false, true, false),
        (r#"os.id in ["sles", "rhel"] or os.id_like contains "suse""#, false, true, false),
        (r#"packages contains "openssh-server" and not packages contains "telnetd""#, true, true, false),
        (r#"disk["vda"].size_gb >= 20 and disk["vda"].rotational = false"#, true, true, false),
        (r#"interface["eth0"].state = "up" and interface["eth0"].mtu = 1500"#, true, true, false),
        (r#"memory.total_mb >= 8000"#, true, true, false),
        (r#"kernel.release ~ "6.1.*""#, true, true, false),
        (r#"fs["/boot/efi"].type = "vfat""#, true, true, false),
        (r#"name ~ "linux??""#, false, true, false),
    ] {
        let query = Query::parse(source).unwrap_or_else(|error| panic!("{}", error.render(source)));
        assert_eq!(query.matches(&web1), on_web1, "{source} on web1");
        assert_eq!(query.matches(&linux01), on_linux01, "{source} on linux01");
        assert_eq!(query.matches(&new1), on_new1, "{source} on new1");
    }
}

#[test]
fn user_documentation_lists_every_field_and_its_type() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/query-language.md");
    let docs = std::fs::read_to_string(path).expect("docs/query-language.md exists");
    for field in fields() {
        let row = format!("| `{}` | {} |", field.path, field.field_type.name());
        assert!(docs.contains(&row), "docs/query-language.md has no row starting {row}");
    }
}
