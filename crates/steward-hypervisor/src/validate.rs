//! Input validation shared by the drivers: names, MAC addresses, guest definitions. Every check returns an
//! `InvalidInput` error naming the field and what is wrong, so a bad request never reaches a command line.

use std::path::Path;

use crate::error::{HypervisorError, Result};
use crate::types::{Boot, GuestSpec};

/// The longest guest name.
pub const GUEST_NAME_MAX: usize = 63;
/// The longest Linux network interface name.
pub const INTERFACE_NAME_MAX: usize = 15;
/// The smallest and largest CPU share.
pub const CPU_SHARE_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;

/// A name made of letters, digits, `-`, `_` and `.`, starting with a letter or digit.
pub fn simple_name(what: &str, name: &str, max_len: usize) -> Result<()> {
    if name.is_empty() {
        return Err(HypervisorError::invalid(what, "must not be empty"));
    }
    if name.len() > max_len {
        return Err(HypervisorError::invalid(what, format!("{name:?} is longer than {max_len} characters")));
    }
    if !name.starts_with(|first: char| first.is_ascii_alphanumeric()) {
        return Err(HypervisorError::invalid(what, format!("{name:?} must start with a letter or digit")));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(HypervisorError::invalid(
            what,
            format!("{name:?} contains {bad:?}; only letters, digits, '-', '_' and '.' are allowed"),
        ));
    }
    Ok(())
}

/// A guest name.
pub fn guest_name(name: &str) -> Result<()> {
    simple_name("guest name", name, GUEST_NAME_MAX)
}

/// A network interface name (tap, bridge): at most 15 characters, no dots.
pub fn interface_name(what: &str, name: &str) -> Result<()> {
    simple_name(what, name, INTERFACE_NAME_MAX)?;
    if name.contains('.') {
        return Err(HypervisorError::invalid(what, format!("{name:?} must not contain '.'")));
    }
    Ok(())
}

/// A unicast MAC address written `xx:xx:xx:xx:xx:xx`.
pub fn mac_address(what: &str, mac: &str) -> Result<()> {
    let octets: Vec<&str> = mac.split(':').collect();
    let well_formed = octets.len() == 6
        && octets.iter().all(|octet| octet.len() == 2 && octet.chars().all(|c| c.is_ascii_hexdigit()));
    if !well_formed {
        return Err(HypervisorError::invalid(what, format!("{mac:?} is not a MAC address like 52:54:00:12:34:56")));
    }
    let first = u8::from_str_radix(octets[0], 16).map_err(|error| HypervisorError::invalid(what, error.to_string()))?;
    if first & 1 == 1 {
        return Err(HypervisorError::invalid(what, format!("{mac:?} is a multicast address; a NIC needs unicast")));
    }
    Ok(())
}

/// An absolute path without characters a command line cannot carry.
pub fn absolute_path(what: &str, path: &Path) -> Result<()> {
    if !path.is_absolute() {
        return Err(HypervisorError::invalid(what, format!("{} is not an absolute path", path.display())));
    }
    if path.to_str().is_none() {
        return Err(HypervisorError::invalid(what, format!("{} is not valid UTF-8", path.display())));
    }
    Ok(())
}

/// The longest disk serial number (virtio-blk's limit: the guest reads at most 20 bytes).
pub const DISK_SERIAL_MAX: usize = 20;

/// A disk serial number: 1..=20 letters, digits, `-` and `_`.
pub fn disk_serial(what: &str, serial: &str) -> Result<()> {
    if serial.is_empty() {
        return Err(HypervisorError::invalid(what, "must not be empty (leave the serial out instead)"));
    }
    if serial.len() > DISK_SERIAL_MAX {
        return Err(HypervisorError::invalid(
            what,
            format!("{serial:?} is longer than {DISK_SERIAL_MAX} characters (virtio-blk's limit)"),
        ));
    }
    if let Some(bad) = serial.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))) {
        return Err(HypervisorError::invalid(
            what,
            format!("{serial:?} contains {bad:?}; only letters, digits, '-' and '_' are allowed"),
        ));
    }
    Ok(())
}

/// A CPU share.
pub fn cpu_share(share: u32) -> Result<()> {
    if !CPU_SHARE_RANGE.contains(&share) {
        return Err(HypervisorError::invalid(
            "CPU share",
            format!("{share} is outside {}..={} (100 is normal)", CPU_SHARE_RANGE.start(), CPU_SHARE_RANGE.end()),
        ));
    }
    Ok(())
}

/// A whole guest definition.
pub fn guest_spec(spec: &GuestSpec) -> Result<()> {
    guest_name(&spec.name)?;
    if !(1..=255).contains(&spec.cpus) {
        return Err(HypervisorError::invalid("CPU count", format!("{} is outside 1..=255", spec.cpus)));
    }
    if !(16..=4 * 1024 * 1024).contains(&spec.memory_mib) {
        return Err(HypervisorError::invalid("memory", format!("{} MiB is outside 16..=4194304 MiB", spec.memory_mib)));
    }
    cpu_share(spec.cpu_share)?;
    let mut disk_paths = std::collections::HashSet::new();
    let mut serials = std::collections::HashSet::new();
    for (index, disk) in spec.disks.iter().enumerate() {
        absolute_path(&format!("path of disk {index}"), &disk.path)?;
        if !disk_paths.insert(disk.path.as_path()) {
            return Err(HypervisorError::invalid(
                format!("path of disk {index}"),
                format!("{} is used twice", disk.path.display()),
            ));
        }
        if let Some(serial) = &disk.serial {
            disk_serial(&format!("serial of disk {index}"), serial)?;
            if !serials.insert(serial.as_str()) {
                return Err(HypervisorError::invalid(
                    format!("serial of disk {index}"),
                    format!("{serial:?} is used twice"),
                ));
            }
        }
    }
    if let Some(config_drive) = &spec.config_drive {
        absolute_path("config drive path", config_drive)?;
    }
    let mut taps = std::collections::HashSet::new();
    let mut macs = std::collections::HashSet::new();
    for (index, nic) in spec.nics.iter().enumerate() {
        simple_name(&format!("network of NIC {index}"), &nic.network, 64)?;
        interface_name(&format!("tap of NIC {index}"), &nic.tap)?;
        mac_address(&format!("MAC of NIC {index}"), &nic.mac)?;
        if !taps.insert(nic.tap.as_str()) {
            return Err(HypervisorError::invalid(
                format!("tap of NIC {index}"),
                format!("{:?} is used twice", nic.tap),
            ));
        }
        if !macs.insert(nic.mac.to_ascii_lowercase()) {
            return Err(HypervisorError::invalid(
                format!("MAC of NIC {index}"),
                format!("{:?} is used twice", nic.mac),
            ));
        }
    }
    match &spec.boot {
        Boot::Direct { kernel, initrd, cmdline } => {
            absolute_path("kernel path", kernel)?;
            if let Some(initrd) = initrd {
                absolute_path("initrd path", initrd)?;
            }
            if cmdline.contains('\0') || cmdline.contains('\n') {
                return Err(HypervisorError::invalid("kernel command line", "must be one line without NUL"));
            }
        }
        Boot::Firmware { firmware } => {
            if let Some(firmware) = firmware {
                absolute_path("firmware path", firmware)?;
            }
            if spec.disks.is_empty() && firmware.is_none() {
                return Err(HypervisorError::invalid("boot", "firmware boot needs at least one disk"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(guest_name("web-01.example").is_ok());
        assert!(guest_name("").is_err());
        assert!(guest_name("-x").is_err());
        assert!(guest_name("a/b").is_err());
        assert!(guest_name(&"a".repeat(64)).is_err());
        assert!(interface_name("tap", "tap0").is_ok());
        assert!(interface_name("tap", "tap0123456789abc").is_err());
        assert!(interface_name("tap", "t.0").is_err());
    }

    fn spec_with_disks(disks: Vec<crate::types::DiskAttachment>) -> GuestSpec {
        GuestSpec {
            name: "g".to_owned(),
            arch: crate::types::Arch::X86_64,
            cpus: 1,
            memory_mib: 64,
            cpu_share: 100,
            disks,
            config_drive: None,
            nics: vec![],
            boot: Boot::Firmware { firmware: None },
            agent_channel: false,
        }
    }

    fn disk(path: &str, serial: Option<&str>) -> crate::types::DiskAttachment {
        crate::types::DiskAttachment {
            path: path.into(),
            format: crate::types::DiskFormat::Qcow2,
            serial: serial.map(str::to_owned),
        }
    }

    #[test]
    fn disk_serials_are_checked() {
        assert!(disk_serial("serial", "data-1_A").is_ok());
        assert!(disk_serial("serial", &"a".repeat(20)).is_ok());
        let too_long = disk_serial("serial of disk 1", &"a".repeat(21)).unwrap_err().to_string();
        assert!(too_long.contains("serial of disk 1") && too_long.contains("longer than 20"), "{too_long}");
        assert!(disk_serial("serial", "").unwrap_err().to_string().contains("empty"));
        for bad in ["a b", "a,b", "a.b", "a/b", "é", "a=b", "a\0"] {
            let error = disk_serial("serial", bad).unwrap_err().to_string();
            assert!(error.contains("only letters, digits"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn guest_specs_refuse_bad_and_duplicate_serials() {
        let good = spec_with_disks(vec![disk("/d/root", None), disk("/d/a", Some("a")), disk("/d/b", Some("b"))]);
        assert!(guest_spec(&good).is_ok());
        let bad = spec_with_disks(vec![disk("/d/root", None), disk("/d/a", Some("a,id=x"))]);
        let error = guest_spec(&bad).unwrap_err().to_string();
        assert!(error.contains("serial of disk 1"), "{error}");
        let twice = spec_with_disks(vec![disk("/d/root", Some("a")), disk("/d/a", Some("a"))]);
        assert!(guest_spec(&twice).unwrap_err().to_string().contains("used twice"));
        let same_path = spec_with_disks(vec![disk("/d/root", None), disk("/d/root", Some("a"))]);
        assert!(guest_spec(&same_path).unwrap_err().to_string().contains("path of disk 1"));
    }

    #[test]
    fn mac_addresses_are_checked() {
        assert!(mac_address("mac", "52:54:00:12:34:56").is_ok());
        assert!(mac_address("mac", "52:54:00:12:34").is_err());
        assert!(mac_address("mac", "52-54-00-12-34-56").is_err());
        let error = mac_address("mac", "01:00:5e:00:00:01").unwrap_err().to_string();
        assert!(error.contains("multicast"), "{error}");
    }
}
