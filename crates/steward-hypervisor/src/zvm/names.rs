//! Steward's names in z/VM's terms, checked before any SMAPI call: a guest name is a z/VM user ID, a disk path
//! is `USERID/VDEV`, a network is a virtual switch, a NIC's `tap` is its virtual device number, and a MAC
//! address is the system's MAC prefix followed by the NIC's `MACID`.
//!
//! Names are accepted in any case and used upper case, as z/VM keeps them.

use std::fmt;
use std::path::Path;

use crate::error::{HypervisorError, Result};

/// The characters z/VM allows in a user ID (and in the names of virtual switches, groups and profiles).
fn is_name_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || "@#$+-:_".contains(character)
}

/// Checks a z/VM name of 1 to 8 characters and returns it upper case; `what` names the field in errors.
pub fn zvm_name(what: &str, name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(HypervisorError::invalid(what, "is empty; z/VM names are 1 to 8 characters"));
    }
    if name.chars().count() > 8 {
        return Err(HypervisorError::invalid(
            what,
            format!("{name:?} has {} characters; z/VM names are 1 to 8 characters", name.chars().count()),
        ));
    }
    if let Some(bad) = name.chars().find(|character| !is_name_character(*character)) {
        return Err(HypervisorError::invalid(
            what,
            format!("{name:?} contains {bad:?}; z/VM names use only letters, digits and @#$+-:_"),
        ));
    }
    Ok(name.to_ascii_uppercase())
}

/// A guest name as a z/VM user ID (1 to 8 characters), upper case.
pub fn userid(name: &str) -> Result<String> {
    zvm_name("guest name (a z/VM user ID)", name)
}

/// The user IDs z/VM and its service machines ship with (exact names), which Steward never defines, changes,
/// logs on or off, whatever their entries say.
const SYSTEM_USERIDS: &[&str] = &[
    "OPERATOR", "OPERSYMP", "DISKACNT", "EREP", "LGLOPR", "SYSMON", "MONWRITE", "GCS", "AVSVM", "TSAFVM", "XCHANGE",
    "VMUTIL", "CBDIODSP", "IBMUSER", "SYSADMIN", "CMSBATCH", "PVM", "LOHCOST", "PERSMAPI", "SMTP", "FTPSERVE",
    "REXECD", "SNMPD", "SNMPQE", "LPSERVE", "PORTMAP", "NAMESRV", "VMNFS", "MPROUTE", "DHCPD", "SSLDCSSM", "ZVMLXAPP",
    "ZHCP", "XCAT", "OPNCLOUD", "DELTA", "MIGMAINT", "SYSMAINT",
];

/// Prefixes of z/VM's system user IDs (`MAINT710`, `VSMWORK1`, `DTCVSW1`, `5VMTCP40`, ...).
const SYSTEM_USERID_PREFIXES: &[&str] = &[
    "MAINT", "VSM", "DTC", "DIRM", "DATAMOV", "TCP", "RACF", "RACM", "RSCS", "OSADMIN", "VMSERV", "AUTOLOG", "BLD",
    "5VM", "5684", "LDAP", "PERF", "OPER", "OSASF", "ZVMLX",
];

/// Why Steward refuses to touch this user ID, when it is one of z/VM's system users (`MAINT`, `OPERATOR`,
/// `TCPIP`, `DIRMAINT`, `VSMWORK1`, ...); `None` for any other.
pub fn system_userid(userid: &str) -> Option<String> {
    let userid = userid.to_ascii_uppercase();
    let matched = SYSTEM_USERIDS.contains(&userid.as_str())
        || SYSTEM_USERID_PREFIXES.iter().any(|prefix| userid.starts_with(prefix));
    matched.then(|| {
        format!(
            "{userid} is (or is named like) one of z/VM's system user IDs (MAINT, OPERATOR, TCPIP, DIRMAINT, VSM*, \
             ...); Steward never defines, changes, logs on or off such a user"
        )
    })
}

/// A guest name Steward may use: a z/VM user ID that is not a system user's.
pub fn guest_userid(name: &str) -> Result<String> {
    let userid = userid(name)?;
    match system_userid(&userid) {
        Some(reason) => Err(HypervisorError::invalid("guest name (a z/VM user ID)", reason)),
        None => Ok(userid),
    }
}

/// A virtual device number: 1 to 4 hexadecimal digits, returned as 4 upper-case digits (`600` is `0600`).
pub fn vdev(what: &str, text: &str) -> Result<String> {
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(HypervisorError::invalid(
            what,
            format!("{text:?} is not a z/VM virtual device number (1 to 4 hexadecimal digits, such as 0100)"),
        ));
    }
    Ok(format!("{:0>4}", text.to_ascii_uppercase()))
}

/// A minidisk named by a disk path `USERID/VDEV`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DiskPath {
    pub owner: String,
    pub vdev: String,
}

impl DiskPath {
    /// Parses `USERID/VDEV` (for example `WEB01/0100`).
    pub fn parse(path: &Path) -> Result<DiskPath> {
        let what = "disk path";
        let text = path.to_str().ok_or_else(|| HypervisorError::invalid(what, "is not valid UTF-8"))?;
        let Some((owner, vdev_text)) =
            text.split_once('/').filter(|(owner, vdev)| !owner.is_empty() && !vdev.contains('/'))
        else {
            return Err(HypervisorError::invalid(
                what,
                format!("{text:?} is not USERID/VDEV; on z/VM a disk is a minidisk of a user, such as WEB01/0100"),
            ));
        };
        let owner = zvm_name(&format!("owner of disk path {text:?}"), owner)?;
        let vdev = vdev(&format!("device number of disk path {text:?}"), vdev_text)?;
        Ok(DiskPath { owner, vdev })
    }

    /// The path as the driver writes it (`WEB01/0100`).
    pub fn to_path(&self) -> std::path::PathBuf {
        self.to_string().into()
    }
}

impl fmt::Display for DiskPath {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.owner, self.vdev)
    }
}

/// The system's MAC prefix (CP's `VMLAN MACPREFIX`): the first three bytes of every guest NIC's MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacPrefix(pub [u8; 3]);

impl MacPrefix {
    /// Parses `02:00:5a` (or with `-`).
    pub fn parse(text: &str) -> Result<MacPrefix> {
        let bytes: Vec<Option<u8>> =
            text.split([':', '-']).map(|part| u8::from_str_radix(part, 16).ok().filter(|_| part.len() == 2)).collect();
        match bytes.as_slice() {
            [Some(first), Some(second), Some(third)] => Ok(MacPrefix([*first, *second, *third])),
            _ => Err(HypervisorError::invalid(
                "MAC prefix",
                format!("{text:?} is not three bytes such as 02:00:5a (z/VM's VMLAN MACPREFIX)"),
            )),
        }
    }

    /// The `MACID` (six hexadecimal digits) of a NIC whose MAC is `mac`; refuses a MAC outside the prefix.
    pub fn macid(&self, what: &str, mac: &str) -> Result<String> {
        crate::validate::mac_address(what, mac)?;
        let bytes: Vec<u8> = mac.split(':').filter_map(|part| u8::from_str_radix(part, 16).ok()).collect();
        if bytes.len() != 6 || bytes[..3] != self.0 {
            return Err(HypervisorError::invalid(
                what,
                format!(
                    "{mac:?} does not start with this z/VM system's MAC prefix {self}; CP gives every guest NIC \
                     that prefix (VMLAN MACPREFIX) and only the last three bytes (the NICDEF's MACID) are chosen"
                ),
            ));
        }
        Ok(format!("{:02X}{:02X}{:02X}", bytes[3], bytes[4], bytes[5]))
    }

    /// The MAC address (lower case, `:`-separated) of a NIC with this `MACID`; `None` if it is not six
    /// hexadecimal digits.
    pub fn mac(&self, macid: &str) -> Option<String> {
        if macid.len() != 6 {
            return None;
        }
        let value = u32::from_str_radix(macid, 16).ok()?;
        let [_, fourth, fifth, sixth] = value.to_be_bytes();
        let [first, second, third] = self.0;
        Some(format!("{first:02x}:{second:02x}:{third:02x}:{fourth:02x}:{fifth:02x}:{sixth:02x}"))
    }
}

impl fmt::Display for MacPrefix {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [first, second, third] = self.0;
        write!(formatter, "{first:02x}:{second:02x}:{third:02x}")
    }
}

/// A MAC address as CP reports it (`02-00-5A-00-00-07`) in Steward's spelling (`02:00:5a:00:00:07`).
pub fn mac_from_cp(text: &str) -> String {
    text.replace('-', ":").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_one_to_eight_characters() {
        assert_eq!(userid("web01").unwrap(), "WEB01");
        assert_eq!(userid("LNX$1@#").unwrap(), "LNX$1@#");
        let long = userid("webserver01").unwrap_err().to_string();
        assert!(long.contains("11 characters") && long.contains("1 to 8"), "{long}");
        assert!(userid("").unwrap_err().to_string().contains("empty"));
        assert!(userid("web.01").unwrap_err().to_string().contains("'.'"));
    }

    #[test]
    fn disk_paths_name_a_user_and_a_device() {
        let path = DiskPath::parse(Path::new("web01/100")).unwrap();
        assert_eq!(path, DiskPath { owner: "WEB01".into(), vdev: "0100".into() });
        assert_eq!(path.to_string(), "WEB01/0100");
        for bad in ["/var/lib/disk.qcow2", "WEB01", "WEB01/01000", "WEB01/XYZ", "TOOLONGUSER/0100", "a/b/c"] {
            assert!(DiskPath::parse(Path::new(bad)).is_err(), "{bad}");
        }
        let error = DiskPath::parse(Path::new("/images/debian.qcow2")).unwrap_err().to_string();
        assert!(error.contains("disk path"), "{error}");
    }

    #[test]
    fn system_userids_are_refused_and_others_pass() {
        for system in ["maint", "MAINT710", "OPERATOR", "TCPIP", "DIRMAINT", "VSMWORK1", "DTCVSW1", "5VMTCP40"] {
            assert!(guest_userid(system).unwrap_err().to_string().contains("system user"), "{system}");
        }
        for guest in ["web01", "LINUX01", "DB-1", "STWIMG01"] {
            assert!(guest_userid(guest).is_ok(), "{guest}");
        }
    }

    #[test]
    fn macs_are_the_prefix_and_the_macid() {
        let prefix = MacPrefix::parse("02:00:5A").unwrap();
        assert_eq!(prefix.macid("mac", "02:00:5a:00:01:0f").unwrap(), "00010F");
        assert_eq!(prefix.mac("00010F").unwrap(), "02:00:5a:00:01:0f");
        let error = prefix.macid("MAC of NIC 0", "52:54:00:00:00:01").unwrap_err().to_string();
        assert!(error.contains("MAC prefix 02:00:5a"), "{error}");
        assert!(MacPrefix::parse("02:00").is_err());
        assert_eq!(mac_from_cp("02-00-5A-00-00-07"), "02:00:5a:00:00:07");
        assert_eq!(vdev("tap", "600").unwrap(), "0600");
    }
}
