//! A guest's z/VM directory entry: built from a `GuestSpec` (`guest_records`) and read back into one
//! (`spec_from_entry`), so that describing a defined guest gives back the definition it was given.
//!
//! The entry `define_guest` writes, in this order (control statements before device statements, as DirMaint
//! keeps them):
//!
//! ```text
//! USER WEB01 AUTOONLY 1024M 1024M G          password policy, memory (initial = maximum), privilege class G
//! * STEWARD GUEST                            the marker of entries Steward defined
//! INCLUDE LNXDFLT                            the configured profile (console, spool), when there is one
//! MACHINE ESA 8                              the configured maximum of CPUs (at least the guest's)
//! CPU 00 BASE                                one CPU statement per virtual CPU
//! CPU 01
//! IPL 0100                                   the boot disk (the spec's first disk)
//! SHARE RELATIVE 100                         the CPU share (100 is normal, as in Steward)
//! IUCV STEWARD PRIORITY MSGLIMIT 255         the agent channel: IUCV from the guest to the server's user
//! MDISK 0100 3390 1 3339 SIM001 MR           minidisks, kept as disk_create made them
//! NICDEF 0600 TYPE QDIO DEVICES 3 LAN SYSTEM VSW1 MACID 000007
//! ```
//!
//! An entry made by `disk_create` before the guest is defined is a placeholder: `USER WEB01 NOLOG ...` with
//! the marker `* STEWARD DISKS` and the minidisks; `define_guest` completes it.

use crate::error::{HypervisorError, Result};
use crate::types::{Arch, Boot, DiskAttachment, DiskFormat, GuestSpec, Nic};
use crate::zvm::names::{self, DiskPath, MacPrefix};

/// The comment that marks an entry `define_guest` wrote.
pub const GUEST_MARKER: &str = "* STEWARD GUEST";
/// The comment that marks a placeholder entry `disk_create` made to hold minidisks before the guest exists.
pub const PLACEHOLDER_MARKER: &str = "* STEWARD DISKS";
/// The longest directory statement.
pub const RECORD_LENGTH: usize = 72;

/// What the host's configuration puts into every guest entry.
#[derive(Debug, Clone)]
pub struct EntryPolicy {
    pub password: String,
    pub profile: Option<String>,
    pub max_cpus: u32,
    pub iucv_peer: String,
    pub mac_prefix: MacPrefix,
}

/// One minidisk statement of an entry, with the fields the driver needs; `record` is the statement as the
/// directory holds it, written back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinidiskRecord {
    pub vdev: String,
    pub device_type: String,
    /// The size in the device's unit (cylinders on 3390).
    pub size: u64,
    /// The volume of an explicit extent.
    pub volume: Option<String>,
    pub record: String,
}

/// One NIC statement coupled to a virtual switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicRecord {
    pub vdev: String,
    pub vswitch: Option<String>,
    pub macid: Option<String>,
}

/// A directory entry as read from `Image_Query_DM`, with the statements the driver understands parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// Every record, trimmed of its blank padding, upper case.
    pub records: Vec<String>,
    pub userid: String,
    pub password: String,
    pub storage: String,
    pub cpus: Vec<String>,
    pub ipl: Option<String>,
    pub share: Option<(String, String)>,
    pub iucv: Vec<String>,
    pub minidisks: Vec<MinidiskRecord>,
    pub nics: Vec<NicRecord>,
    pub guest_marker: bool,
    pub placeholder_marker: bool,
}

impl Entry {
    /// Parses the records of an entry (one statement each, blank padded to 72 columns).
    pub fn parse(records: &[String]) -> Entry {
        let mut entry = Entry::default();
        for record in records {
            let line = record.trim_end().to_ascii_uppercase();
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["USER" | "IDENTITY", userid, password, rest @ ..] => {
                    entry.userid = (*userid).to_owned();
                    entry.password = (*password).to_owned();
                    entry.storage = rest.first().map(|storage| (*storage).to_owned()).unwrap_or_default();
                }
                ["*", "STEWARD", "GUEST"] => entry.guest_marker = true,
                ["*", "STEWARD", "DISKS"] => entry.placeholder_marker = true,
                ["CPU", address, ..] => entry.cpus.push((*address).to_owned()),
                ["IPL", target, ..] => entry.ipl = Some((*target).to_owned()),
                ["SHARE", kind, value] => entry.share = Some(((*kind).to_owned(), (*value).to_owned())),
                ["IUCV", rest @ ..] => entry.iucv.push(rest.join(" ")),
                ["MDISK", vdev, device_type, extent @ ..] => {
                    let (size, volume) = match extent {
                        ["AUTOG" | "AUTOR" | "AUTOV" | "V-DISK" | "T-DISK", size, ..] => (size.parse().ok(), None),
                        [_start, size, volume, ..] => (size.parse().ok(), Some((*volume).to_owned())),
                        _ => (None, None),
                    };
                    if let Ok(vdev) = names::vdev("minidisk", vdev) {
                        entry.minidisks.push(MinidiskRecord {
                            vdev,
                            device_type: (*device_type).to_owned(),
                            size: size.unwrap_or(0),
                            volume,
                            record: line.clone(),
                        });
                    }
                }
                ["NICDEF", vdev, rest @ ..] => {
                    if let Ok(vdev) = names::vdev("NIC", vdev) {
                        entry.nics.push(NicRecord {
                            vdev,
                            vswitch: operand_after(rest, "LAN", 2).map(str::to_owned),
                            macid: operand_after(rest, "MACID", 1).map(str::to_owned),
                        });
                    }
                }
                _ => {}
            }
            entry.records.push(line);
        }
        entry
    }

    /// The minidisk at `vdev`.
    pub fn minidisk(&self, vdev: &str) -> Option<&MinidiskRecord> {
        self.minidisks.iter().find(|disk| disk.vdev == vdev)
    }

    /// Whether `define_guest` may take this entry over: one it wrote, or a placeholder of `disk_create`.
    pub fn is_steward_entry(&self) -> bool {
        self.guest_marker || self.placeholder_marker
    }
}

/// The operand `offset` words after `keyword` (`LAN SYSTEM VSW1`: offset 2 is `VSW1`).
fn operand_after<'a>(words: &[&'a str], keyword: &str, offset: usize) -> Option<&'a str> {
    let position = words.iter().position(|word| *word == keyword)?;
    words.get(position + offset).copied()
}

/// The records of a placeholder entry holding minidisks of a user that has no guest definition yet (or of an
/// image holder): it can never log on (`NOLOG`).
pub fn placeholder_records(userid: &str) -> Vec<String> {
    vec![format!("USER {userid} NOLOG 32M 32M G"), PLACEHOLDER_MARKER.to_owned()]
}

/// One NIC of a checked spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedNic {
    pub vdev: String,
    pub vswitch: String,
    pub macid: String,
}

/// A spec in z/VM's terms: the user ID, its disks (the boot disk first) and its NICs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSpec {
    pub userid: String,
    pub disks: Vec<DiskPath>,
    pub nics: Vec<CheckedNic>,
}

/// Checks a spec against what a z/VM guest can be (disks owned by the guest, NICs on virtual switches with
/// the system's MAC prefix, ...). Nothing is sent to z/VM before this passes.
pub fn check_spec(spec: &GuestSpec, policy: &EntryPolicy) -> Result<CheckedSpec> {
    let userid = names::guest_userid(&spec.name)?;
    if spec.arch != Arch::S390x {
        return Err(HypervisorError::invalid(
            "architecture",
            format!("z/VM runs s390x guests only, not {}", spec.arch),
        ));
    }
    if !(1..=64).contains(&spec.cpus) {
        return Err(HypervisorError::invalid("CPU count", format!("{} is outside 1..=64 (z/VM's limit)", spec.cpus)));
    }
    if !(1..=16 * 1024 * 1024).contains(&spec.memory_mib) {
        return Err(HypervisorError::invalid("memory", format!("{} MiB is outside 1..=16777216 MiB", spec.memory_mib)));
    }
    crate::validate::cpu_share(spec.cpu_share)?;
    if spec.config_drive.is_some() {
        return Err(HypervisorError::invalid(
            "config drive",
            "z/VM has no config drives; personalization reaches the guest through the agent at first boot",
        ));
    }
    match &spec.boot {
        Boot::Firmware { firmware: None } => {}
        Boot::Firmware { firmware: Some(_) } => {
            return Err(HypervisorError::invalid("boot", "z/VM IPLs the boot disk itself; there is no firmware image"));
        }
        Boot::Direct { .. } => {
            return Err(HypervisorError::invalid(
                "boot",
                "z/VM IPLs a device, not a kernel file; boot from the first disk (Boot::Firmware)",
            ));
        }
    }
    if spec.disks.is_empty() {
        return Err(HypervisorError::invalid("disks", "a z/VM guest needs a boot disk to IPL"));
    }
    let mut disks: Vec<DiskPath> = Vec::with_capacity(spec.disks.len());
    for (index, disk) in spec.disks.iter().enumerate() {
        let path = DiskPath::parse(&disk.path)?;
        if path.owner != userid {
            return Err(HypervisorError::invalid(
                format!("disk {index}"),
                format!("{path} belongs to {}; a z/VM guest's minidisks belong to its own user {userid}", path.owner),
            ));
        }
        if disk.format != DiskFormat::Raw {
            return Err(HypervisorError::invalid(
                format!("format of disk {index}"),
                "a z/VM minidisk has no image format; use raw",
            ));
        }
        if disk.serial.is_some() {
            return Err(HypervisorError::invalid(
                format!("serial of disk {index}"),
                format!("z/VM has no disk serials; the guest finds this minidisk by its device number {}", path.vdev),
            ));
        }
        if disks.contains(&path) {
            return Err(HypervisorError::invalid(format!("disk {index}"), format!("{path} is used twice")));
        }
        disks.push(path);
    }
    let mut nics: Vec<CheckedNic> = Vec::with_capacity(spec.nics.len());
    for (index, nic) in spec.nics.iter().enumerate() {
        let vswitch = names::zvm_name(&format!("network of NIC {index} (a virtual switch)"), &nic.network)?;
        let vdev = names::vdev(&format!("tap of NIC {index} (its virtual device number)"), &nic.tap)?;
        let macid = policy.mac_prefix.macid(&format!("MAC of NIC {index}"), &nic.mac)?;
        let devices = u32::from_str_radix(&vdev, 16).unwrap_or(0);
        let overlaps = |other: &str| {
            let other = u32::from_str_radix(other, 16).unwrap_or(0);
            devices.abs_diff(other) < 3
        };
        if nics.iter().any(|other| overlaps(&other.vdev)) || disks.iter().any(|disk| overlaps(&disk.vdev)) {
            return Err(HypervisorError::invalid(
                format!("tap of NIC {index}"),
                format!("a NIC takes three device numbers from {vdev}, which overlap another device of the guest"),
            ));
        }
        if nics.iter().any(|other| other.macid == macid) {
            return Err(HypervisorError::invalid(
                format!("MAC of NIC {index}"),
                format!("{:?} is used twice", nic.mac),
            ));
        }
        nics.push(CheckedNic { vdev, vswitch, macid });
    }
    Ok(CheckedSpec { userid, disks, nics })
}

/// The records of the guest's entry: the statements of `spec` with the minidisk records of `current` (the
/// spec's disks first, in its order, then any other minidisk of the entry, which only `disk_delete` removes).
pub fn guest_records(spec: &GuestSpec, current: &Entry, policy: &EntryPolicy) -> Result<Vec<String>> {
    let CheckedSpec { userid, disks, nics } = check_spec(spec, policy)?;
    let mut records = vec![
        format!("USER {userid} {} {}M {}M G", policy.password, spec.memory_mib, spec.memory_mib),
        GUEST_MARKER.to_owned(),
    ];
    if let Some(profile) = &policy.profile {
        records.push(format!("INCLUDE {profile}"));
    }
    records.push(format!("MACHINE ESA {}", policy.max_cpus.clamp(spec.cpus, 64)));
    for cpu in 0..spec.cpus {
        records.push(if cpu == 0 { "CPU 00 BASE".to_owned() } else { format!("CPU {cpu:02X}") });
    }
    records.push(format!("IPL {}", disks[0].vdev));
    records.push(format!("SHARE RELATIVE {}", spec.cpu_share));
    if spec.agent_channel {
        records.push(format!("IUCV {} PRIORITY MSGLIMIT 255", policy.iucv_peer));
    }
    for disk in &disks {
        let minidisk =
            current.minidisk(&disk.vdev).ok_or_else(|| HypervisorError::DiskMissing { path: disk.to_path() })?;
        records.push(minidisk.record.clone());
    }
    for minidisk in &current.minidisks {
        if !disks.iter().any(|disk| disk.vdev == minidisk.vdev) {
            records.push(minidisk.record.clone());
        }
    }
    for nic in &nics {
        records.push(format!("NICDEF {} TYPE QDIO DEVICES 3 LAN SYSTEM {} MACID {}", nic.vdev, nic.vswitch, nic.macid));
    }
    if let Some(long) = records.iter().find(|record| record.len() > RECORD_LENGTH) {
        return Err(HypervisorError::invalid(
            "directory entry",
            format!("the statement {long:?} is longer than the {RECORD_LENGTH} columns of a directory record"),
        ));
    }
    Ok(records)
}

/// Whether two entries say the same (upper case, blanks collapsed, in order).
pub fn same_records(left: &[String], right: &[String]) -> bool {
    let normalize = |records: &[String]| -> Vec<String> {
        records
            .iter()
            .map(|record| record.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_uppercase())
            .filter(|record| !record.is_empty())
            .collect()
    };
    normalize(left) == normalize(right)
}

/// Megabytes of a CP storage size (`512M`, `2G`, `1048576K`).
pub fn storage_mib(text: &str) -> Option<u64> {
    let unit = text.chars().last()?;
    let value: u64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    match unit.to_ascii_uppercase() {
        'K' => Some(value / 1024),
        'M' => Some(value),
        'G' => value.checked_mul(1024),
        'T' => value.checked_mul(1024 * 1024),
        _ => None,
    }
}

/// The `GuestSpec` an entry describes; `name` is the guest name as the caller spells it.
pub fn spec_from_entry(name: &str, entry: &Entry, policy: &EntryPolicy) -> GuestSpec {
    let mut disks: Vec<DiskAttachment> = entry
        .minidisks
        .iter()
        .map(|disk| DiskAttachment {
            path: DiskPath { owner: entry.userid.clone(), vdev: disk.vdev.clone() }.to_path(),
            format: DiskFormat::Raw,
            serial: None,
        })
        .collect();
    if let Some(ipl) = entry.ipl.as_deref().and_then(|ipl| names::vdev("IPL", ipl).ok()) {
        let boot = DiskPath { owner: entry.userid.clone(), vdev: ipl }.to_path();
        if let Some(position) = disks.iter().position(|disk| disk.path == boot) {
            let disk = disks.remove(position);
            disks.insert(0, disk);
        }
    }
    let nics = entry
        .nics
        .iter()
        .map(|nic| Nic {
            network: nic.vswitch.clone().unwrap_or_default(),
            tap: nic.vdev.clone(),
            mac: nic.macid.as_deref().and_then(|macid| policy.mac_prefix.mac(macid)).unwrap_or_default(),
        })
        .collect();
    let cpu_share = match &entry.share {
        Some((kind, value)) if kind == "RELATIVE" => value.parse().unwrap_or(100),
        _ => 100,
    };
    let peer = policy.iucv_peer.to_ascii_uppercase();
    GuestSpec {
        name: name.to_owned(),
        arch: Arch::S390x,
        cpus: u32::try_from(entry.cpus.len()).unwrap_or(u32::MAX).max(1),
        memory_mib: storage_mib(&entry.storage).unwrap_or(0),
        cpu_share,
        disks,
        config_drive: None,
        nics,
        boot: Boot::Firmware { firmware: None },
        agent_channel: entry.iucv.iter().any(|iucv| iucv.split_whitespace().next() == Some(peer.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> EntryPolicy {
        EntryPolicy {
            password: "AUTOONLY".into(),
            profile: Some("LNXDFLT".into()),
            max_cpus: 4,
            iucv_peer: "STEWARD".into(),
            mac_prefix: MacPrefix::parse("02:00:5a").unwrap(),
        }
    }

    fn spec() -> GuestSpec {
        GuestSpec {
            name: "web01".into(),
            arch: Arch::S390x,
            cpus: 2,
            memory_mib: 1024,
            cpu_share: 150,
            disks: vec![
                DiskAttachment { path: "WEB01/0100".into(), format: DiskFormat::Raw, serial: None },
                DiskAttachment { path: "WEB01/0101".into(), format: DiskFormat::Raw, serial: None },
            ],
            config_drive: None,
            nics: vec![Nic { network: "VSW1".into(), tap: "0600".into(), mac: "02:00:5a:00:00:07".into() }],
            boot: Boot::Firmware { firmware: None },
            agent_channel: true,
        }
    }

    fn placeholder_with_disks() -> Entry {
        let mut records = placeholder_records("WEB01");
        records.push("MDISK 0101 3390 3340 100 SIM001 MR".into());
        records.push("MDISK 0100 3390 1 3339 SIM001 MR".into());
        Entry::parse(&records)
    }

    #[test]
    fn a_spec_round_trips_through_its_entry() {
        let records = guest_records(&spec(), &placeholder_with_disks(), &policy()).unwrap();
        assert_eq!(records[0], "USER WEB01 AUTOONLY 1024M 1024M G");
        assert!(records.contains(&"IPL 0100".to_owned()));
        assert!(records.contains(&"NICDEF 0600 TYPE QDIO DEVICES 3 LAN SYSTEM VSW1 MACID 000007".to_owned()));
        let padded: Vec<String> = records.iter().map(|record| format!("{record:<72}")).collect();
        let entry = Entry::parse(&padded);
        assert!(entry.guest_marker && !entry.placeholder_marker);
        assert_eq!(spec_from_entry("web01", &entry, &policy()), spec());
        assert!(same_records(&records, &padded));
    }

    #[test]
    fn specs_z_vm_cannot_run_are_refused_before_any_call() {
        let mut long = spec();
        long.name = "webserver01".into();
        let error = check_spec(&long, &policy()).unwrap_err().to_string();
        assert!(error.contains("guest name") && error.contains("1 to 8"), "{error}");
        let mut foreign = spec();
        foreign.disks[1].path = "OTHER/0101".into();
        assert!(check_spec(&foreign, &policy()).unwrap_err().to_string().contains("belongs to OTHER"));
        let mut serial = spec();
        serial.disks[1].serial = Some("data".into());
        assert!(check_spec(&serial, &policy()).unwrap_err().to_string().contains("no disk serials"));
        let mut overlapping = spec();
        overlapping.nics[0].tap = "0101".into();
        assert!(check_spec(&overlapping, &policy()).unwrap_err().to_string().contains("overlap"));
        let mut missing = spec();
        missing.disks.push(DiskAttachment { path: "WEB01/0102".into(), format: DiskFormat::Raw, serial: None });
        let error = guest_records(&missing, &placeholder_with_disks(), &policy()).unwrap_err();
        assert!(matches!(error, HypervisorError::DiskMissing { .. }), "{error}");
    }

    #[test]
    fn storage_sizes() {
        assert_eq!(storage_mib("512M"), Some(512));
        assert_eq!(storage_mib("2G"), Some(2048));
        assert_eq!(storage_mib("1048576K"), Some(1024));
        assert_eq!(storage_mib("12X"), None);
    }
}
