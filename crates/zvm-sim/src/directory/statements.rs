//! Directory statements: the ones the simulator understands (USER, INCLUDE, MACHINE, CPU, IPL, MDISK, NICDEF,
//! SHARE) parsed into their fields, every other statement kept verbatim.
//!
//! Statements are stored upper case, as DirMaint keeps them. Understood statements are rendered in one canonical
//! form without indentation (`MDISK 0888 3390 1457 10 LX3002 W READ WRITE MULTIPLE`, as the recorded
//! `Image_Query_DM` shows them); the others keep their spelling, indentation included. The state file stores
//! each statement as its rendered line, so it stays readable and is parsed by the same code.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a directory statement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("directory statement {statement:?}: {reason}")]
pub struct StatementError {
    pub statement: String,
    pub reason: String,
}

fn refuse(statement: &str, reason: impl Into<String>) -> StatementError {
    StatementError { statement: statement.trim().to_owned(), reason: reason.into() }
}

/// One statement of a directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Statement {
    User(UserStatement),
    /// `PROFILE name`: the first statement of a profile.
    Profile(String),
    Include(String),
    Machine {
        mode: String,
        max_cpus: Option<u32>,
    },
    Cpu {
        address: String,
        base: bool,
        options: Vec<String>,
    },
    Ipl {
        target: String,
        options: Vec<String>,
    },
    Mdisk(Minidisk),
    Nicdef(Nicdef),
    Share {
        kind: String,
        value: String,
    },
    Other(String),
}

/// `USER userid password storage maxstorage privileges`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserStatement {
    pub userid: String,
    pub password: String,
    pub storage: String,
    pub max_storage: String,
    pub privileges: String,
}

/// Where a minidisk's space is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extent {
    /// Cylinders (or blocks) `start` to `start + size - 1` of a volume.
    Volume { start: u32, size: u32, volid: String },
    /// DirMaint's automatic allocation (`AUTOG size group`, `AUTOR size region`, `AUTOV size volume`), only in
    /// statements given to create or replace an entry; it is resolved to a volume extent before it is stored.
    Automatic { kind: String, size: u32, area: String },
    /// A virtual disk in storage (`V-DISK blocks`) or a temporary disk (`T-DISK size`): no pool space.
    Virtual { kind: String, size: u32 },
}

/// `MDISK vdev devtype extent mode [readpw [writepw [multipw]]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minidisk {
    pub vdev: String,
    pub device_type: String,
    pub extent: Extent,
    pub mode: String,
    pub passwords: Vec<String>,
}

impl Minidisk {
    /// The size in the volume's unit.
    pub fn size(&self) -> u32 {
        match &self.extent {
            Extent::Volume { size, .. } | Extent::Automatic { size, .. } | Extent::Virtual { size, .. } => *size,
        }
    }
}

/// `NICDEF vdev TYPE type DEVICES n [LAN owner name] [MACID x] [CHPID x] [VLAN n] [PORTTYPE x]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nicdef {
    pub vdev: String,
    pub adapter_type: String,
    pub devices: u32,
    /// The LAN owner (`SYSTEM` for a virtual switch) and the LAN or switch name.
    pub lan: Option<(String, String)>,
    /// Further operands in order (`MACID`, `CHPID`, `VLAN`, `PORTTYPE`) with their values.
    pub options: Vec<(String, String)>,
}

impl Nicdef {
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The virtual switch this NIC is defined on, if it is on one.
    pub fn vswitch(&self) -> Option<&str> {
        match &self.lan {
            Some((owner, name)) if owner == "SYSTEM" => Some(name),
            _ => None,
        }
    }
}

impl Statement {
    /// Parses one line (upper-cased first). Blank lines and comments are kept verbatim.
    pub fn parse(line: &str) -> Result<Statement, StatementError> {
        let upper = line.to_uppercase();
        let trimmed = upper.trim_end().to_owned();
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let Some((&keyword, operands)) = words.split_first() else {
            return Ok(Statement::Other(trimmed));
        };
        if keyword.starts_with('*') {
            return Ok(Statement::Other(trimmed));
        }
        match keyword {
            "USER" | "IDENTITY" => parse_user(&trimmed, operands).map(Statement::User),
            "PROFILE" => match operands {
                [name] => Ok(Statement::Profile(checked_name(&trimmed, name)?)),
                _ => Err(refuse(&trimmed, "PROFILE takes exactly one name")),
            },
            "INCLUDE" => match operands {
                [name] => Ok(Statement::Include(checked_name(&trimmed, name)?)),
                _ => Err(refuse(&trimmed, "INCLUDE takes exactly one profile name")),
            },
            "MACHINE" => match operands {
                [mode] => Ok(Statement::Machine { mode: (*mode).to_owned(), max_cpus: None }),
                [mode, count] => {
                    let count = parse_number(&trimmed, "the maximum CPU count", count)?;
                    if !(1..=64).contains(&count) {
                        return Err(refuse(&trimmed, "the maximum CPU count must be 1 to 64"));
                    }
                    Ok(Statement::Machine { mode: (*mode).to_owned(), max_cpus: Some(count) })
                }
                _ => Err(refuse(&trimmed, "MACHINE takes a mode and an optional CPU count")),
            },
            "CPU" => {
                let Some((address, rest)) = operands.split_first() else {
                    return Err(refuse(&trimmed, "CPU needs an address"));
                };
                let address = cpu_address(&trimmed, address)?;
                let base = rest.contains(&"BASE");
                let options = rest.iter().filter(|word| **word != "BASE").map(|word| (*word).to_owned()).collect();
                Ok(Statement::Cpu { address, base, options })
            }
            "IPL" => match operands.split_first() {
                Some((target, rest)) => Ok(Statement::Ipl {
                    target: normalize_ipl_target(target),
                    options: rest.iter().map(|word| (*word).to_owned()).collect(),
                }),
                None => Err(refuse(&trimmed, "IPL needs a device or system name")),
            },
            "MDISK" => parse_mdisk(&trimmed, operands).map(Statement::Mdisk),
            "NICDEF" => parse_nicdef(&trimmed, operands).map(Statement::Nicdef),
            "SHARE" => match operands {
                [kind @ ("RELATIVE" | "ABSOLUTE"), value] => {
                    Ok(Statement::Share { kind: (*kind).to_owned(), value: (*value).to_owned() })
                }
                _ => Err(refuse(&trimmed, "SHARE takes RELATIVE or ABSOLUTE and a value")),
            },
            _ => Ok(Statement::Other(trimmed)),
        }
    }

    /// The statement as a directory line (without the blank padding to 72 columns).
    pub fn render(&self) -> String {
        match self {
            Statement::User(user) => format!(
                "USER {} {:<8} {} {} {}",
                user.userid, user.password, user.storage, user.max_storage, user.privileges
            ),
            Statement::Profile(name) => format!("PROFILE {name}"),
            Statement::Include(name) => format!("INCLUDE {name}"),
            Statement::Machine { mode, max_cpus: Some(count) } => format!("MACHINE {mode} {count}"),
            Statement::Machine { mode, max_cpus: None } => format!("MACHINE {mode}"),
            Statement::Cpu { address, base, options } => {
                let mut words = vec!["CPU".to_owned(), address.clone()];
                if *base {
                    words.push("BASE".into());
                }
                words.extend(options.iter().cloned());
                words.join(" ")
            }
            Statement::Ipl { target, options } => {
                std::iter::once(format!("IPL {target}")).chain(options.iter().cloned()).collect::<Vec<_>>().join(" ")
            }
            Statement::Mdisk(disk) => {
                let extent = match &disk.extent {
                    Extent::Volume { start, size, volid } => format!("{start} {size} {volid}"),
                    Extent::Automatic { kind, size, area } => format!("{kind} {size} {area}"),
                    Extent::Virtual { kind, size } => format!("{kind} {size}"),
                };
                let mut line = format!("MDISK {} {} {extent} {}", disk.vdev, disk.device_type, disk.mode);
                for password in &disk.passwords {
                    line.push(' ');
                    line.push_str(password);
                }
                line
            }
            Statement::Nicdef(nic) => {
                let mut line = format!("NICDEF {} TYPE {} DEVICES {}", nic.vdev, nic.adapter_type, nic.devices);
                if let Some((owner, name)) = &nic.lan {
                    line.push_str(&format!(" LAN {owner} {name}"));
                }
                for (key, value) in &nic.options {
                    line.push_str(&format!(" {key} {value}"));
                }
                line
            }
            Statement::Share { kind, value } => format!("SHARE {kind} {value}"),
            Statement::Other(text) => text.clone(),
        }
    }

    /// The virtual device this statement defines, if any (minidisks, NICs, and verbatim device statements).
    pub fn device(&self) -> Option<String> {
        match self {
            Statement::Mdisk(disk) => Some(disk.vdev.clone()),
            Statement::Nicdef(nic) => Some(nic.vdev.clone()),
            Statement::Other(text) => {
                let words: Vec<&str> = text.split_whitespace().collect();
                match words.as_slice() {
                    ["CONSOLE" | "SPOOL" | "DEDICATE" | "SPECIAL", vdev, ..] => normalize_vdev(vdev),
                    ["LINK", _, _, vdev, ..] => normalize_vdev(vdev),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Device statements come after the control statements in an entry.
    pub fn is_device(&self) -> bool {
        self.device().is_some()
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.render())
    }
}

impl TryFrom<String> for Statement {
    type Error = StatementError;

    fn try_from(line: String) -> Result<Self, Self::Error> {
        Statement::parse(&line)
    }
}

impl From<Statement> for String {
    fn from(statement: Statement) -> String {
        statement.render()
    }
}

/// A 1-8 character name of the characters z/VM allows in user IDs.
pub fn checked_name(statement: &str, name: &str) -> Result<String, StatementError> {
    if valid_name(name) {
        Ok(name.to_uppercase())
    } else {
        Err(refuse(statement, format!("{name:?} is not a valid name (1-8 of A-Z, 0-9, @#$+-:_)")))
    }
}

pub fn valid_name(name: &str) -> bool {
    (1..=8).contains(&name.len()) && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"@#$+-:_".contains(&byte))
}

/// A virtual device number: 1-4 hexadecimal digits, returned as 4 upper-case digits.
pub fn normalize_vdev(vdev: &str) -> Option<String> {
    ((1..=4).contains(&vdev.len()) && vdev.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .then(|| format!("{:0>4}", vdev.to_uppercase()))
}

fn checked_vdev(statement: &str, vdev: &str) -> Result<String, StatementError> {
    normalize_vdev(vdev).ok_or_else(|| refuse(statement, format!("{vdev:?} is not a device number (1-4 hex digits)")))
}

fn cpu_address(statement: &str, address: &str) -> Result<String, StatementError> {
    let value = u8::from_str_radix(address, 16)
        .ok()
        .filter(|value| *value < 64)
        .ok_or_else(|| refuse(statement, format!("{address:?} is not a CPU address (00-3F)")))?;
    Ok(format!("{value:02X}"))
}

fn normalize_ipl_target(target: &str) -> String {
    normalize_vdev(target)
        .filter(|_| target.len() == 4 || target.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| target.to_owned())
}

fn parse_number(statement: &str, what: &str, text: &str) -> Result<u32, StatementError> {
    text.parse::<u32>().map_err(|_| refuse(statement, format!("{what} {text:?} is not a number")))
}

/// A storage size: digits and a unit K, M, G, T or P.
pub fn storage_bytes(text: &str) -> Option<u64> {
    let unit = text.chars().last()?;
    let digits = &text[..text.len() - unit.len_utf8()];
    let value: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit {
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        'P' => 1 << 50,
        _ => return None,
    };
    value.checked_mul(multiplier).filter(|bytes| *bytes > 0)
}

fn checked_storage(statement: &str, text: &str) -> Result<String, StatementError> {
    storage_bytes(text)
        .map(|_| text.to_owned())
        .ok_or_else(|| refuse(statement, format!("{text:?} is not a storage size (for example 512M or 2G)")))
}

fn parse_user(statement: &str, operands: &[&str]) -> Result<UserStatement, StatementError> {
    let [userid, password, rest @ ..] = operands else {
        return Err(refuse(statement, "USER needs a user ID and a password"));
    };
    let userid = checked_name(statement, userid)?;
    let storage = match rest.first() {
        Some(storage) => checked_storage(statement, storage)?,
        None => "1M".to_owned(),
    };
    let max_storage = match rest.get(1) {
        Some(max) => checked_storage(statement, max)?,
        None => storage.clone(),
    };
    if storage_bytes(&max_storage) < storage_bytes(&storage) {
        return Err(refuse(statement, "the maximum storage is smaller than the initial storage"));
    }
    let privileges = rest.get(2).map(|classes| (*classes).to_owned()).unwrap_or_else(|| "G".to_owned());
    if !privileges.bytes().all(|byte| byte.is_ascii_alphanumeric()) || privileges.len() > 32 {
        return Err(refuse(statement, format!("{privileges:?} is not a list of privilege classes")));
    }
    if rest.len() > 3 {
        return Err(refuse(statement, "USER takes at most user ID, password, storage, maximum storage and classes"));
    }
    Ok(UserStatement { userid, password: (*password).to_owned(), storage, max_storage, privileges })
}

fn parse_mdisk(statement: &str, operands: &[&str]) -> Result<Minidisk, StatementError> {
    let [vdev, device_type, rest @ ..] = operands else {
        return Err(refuse(statement, "MDISK needs a device number, a device type and an extent"));
    };
    let vdev = checked_vdev(statement, vdev)?;
    let (extent, rest) = match rest {
        [kind @ ("AUTOG" | "AUTOR" | "AUTOV"), size, area, rest @ ..] => (
            Extent::Automatic {
                kind: (*kind).to_owned(),
                size: parse_number(statement, "the size", size)?,
                area: checked_name(statement, area)?,
            },
            rest,
        ),
        [kind @ ("V-DISK" | "T-DISK"), size, rest @ ..] => {
            (Extent::Virtual { kind: (*kind).to_owned(), size: parse_number(statement, "the size", size)? }, rest)
        }
        [start, size, volid, rest @ ..] => (
            Extent::Volume {
                start: parse_number(statement, "the start", start)?,
                size: parse_number(statement, "the size", size)?,
                volid: checked_name(statement, volid)?,
            },
            rest,
        ),
        _ => return Err(refuse(statement, "MDISK needs an extent (start size volume, AUTOG size group, V-DISK size)")),
    };
    if let Extent::Volume { size: 0, .. } | Extent::Automatic { size: 0, .. } | Extent::Virtual { size: 0, .. } = extent
    {
        return Err(refuse(statement, "a minidisk needs a size above 0"));
    }
    let Some((mode, passwords)) = rest.split_first() else {
        return Err(refuse(statement, "MDISK needs an access mode (R, RR, W, WR, M, MR, MW)"));
    };
    if passwords.len() > 3 {
        return Err(refuse(statement, "MDISK takes at most three passwords"));
    }
    Ok(Minidisk {
        vdev,
        device_type: (*device_type).to_owned(),
        extent,
        mode: (*mode).to_owned(),
        passwords: passwords.iter().map(|password| (*password).to_owned()).collect(),
    })
}

fn parse_nicdef(statement: &str, operands: &[&str]) -> Result<Nicdef, StatementError> {
    let Some((vdev, mut rest)) = operands.split_first() else {
        return Err(refuse(statement, "NICDEF needs a device number"));
    };
    let mut nic = Nicdef {
        vdev: checked_vdev(statement, vdev)?,
        adapter_type: "QDIO".into(),
        devices: 3,
        lan: None,
        options: Vec::new(),
    };
    while let Some((keyword, after)) = rest.split_first() {
        match (*keyword, after) {
            ("TYPE", [value, more @ ..]) => {
                nic.adapter_type = match *value {
                    "QDIO" | "HIPERS" | "HIPERSOCKETS" | "IEDN" | "INMN" => (*value).to_owned(),
                    other => return Err(refuse(statement, format!("{other:?} is not a NIC type"))),
                };
                rest = more;
            }
            ("DEVICES", [value, more @ ..]) => {
                let devices = parse_number(statement, "DEVICES", value)?;
                if !(3..=3072).contains(&devices) {
                    return Err(refuse(statement, "DEVICES must be 3 to 3072"));
                }
                nic.devices = devices;
                rest = more;
            }
            ("LAN", [owner, name, more @ ..]) => {
                nic.lan = Some((checked_name(statement, owner)?, checked_name(statement, name)?));
                rest = more;
            }
            (option @ ("MACID" | "CHPID" | "VLAN" | "PORTTYPE"), [value, more @ ..]) => {
                nic.options.push((option.to_owned(), (*value).to_owned()));
                rest = more;
            }
            (other, _) => return Err(refuse(statement, format!("NICDEF operand {other:?} is not understood"))),
        }
    }
    Ok(nic)
}

/// A directory line padded with blanks to the 72 columns of a directory record.
pub fn padded(line: &str) -> String {
    format!("{line:<72}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_statements_render_like_dirmaint() {
        let statement = Statement::parse("USER gt@pong @sm8pi@ 1G 1G ABCDEFG    ").unwrap();
        assert_eq!(statement.render(), "USER GT@PONG @SM8PI@  1G 1G ABCDEFG");
        assert_eq!(padded(&statement.render()).len(), 72);
    }

    #[test]
    fn understood_statements_lose_their_indentation_others_keep_it() {
        assert_eq!(Statement::parse("  IPL CMS   ").unwrap().render(), "IPL CMS");
        assert_eq!(Statement::parse("  CONSOLE   0009 3215  ").unwrap().render(), "  CONSOLE   0009 3215");
        let mdisk = Statement::parse("mdisk 888 3390 1457 10 lx3002 w READ WRITE MULTIPLE").unwrap();
        assert_eq!(mdisk.render(), "MDISK 0888 3390 1457 10 LX3002 W READ WRITE MULTIPLE");
        assert_eq!(mdisk.device().as_deref(), Some("0888"));
        assert_eq!(Statement::parse("  LINK MAINT 190 190 RR").unwrap().device().as_deref(), Some("0190"));
    }

    #[test]
    fn nicdefs_and_automatic_disks() {
        let nic = Statement::parse("NICDEF 1000 TYPE QDIO LAN SYSTEM VSW1 MACID 123456").unwrap();
        let Statement::Nicdef(nic) = &nic else { panic!("not a NICDEF") };
        assert_eq!(nic.vswitch(), Some("VSW1"));
        assert_eq!(nic.option("MACID"), Some("123456"));
        let disk = Statement::parse("MDISK 0100 3390 AUTOG 100 LINUX MR").unwrap();
        assert_eq!(disk.render(), "MDISK 0100 3390 AUTOG 100 LINUX MR");
        let vdisk = Statement::parse("MDISK 0300 FB-512 V-DISK 1024 MR").unwrap();
        assert_eq!(vdisk.render(), "MDISK 0300 FB-512 V-DISK 1024 MR");
    }

    #[test]
    fn bad_statements_are_refused_with_a_reason() {
        assert!(Statement::parse("USER").unwrap_err().reason.contains("user ID and a password"));
        assert!(Statement::parse("USER LONGUSERID PW 1G").is_err());
        assert!(Statement::parse("USER A PW 2G 1G").unwrap_err().reason.contains("maximum storage"));
        assert!(Statement::parse("MDISK 10000 3390 1 10 V1 W").is_err());
        assert!(Statement::parse("MDISK 0100 3390 1 0 V1 W").is_err());
        assert!(Statement::parse("NICDEF 1000 TYPE FOO").is_err());
        assert!(Statement::parse("CPU 99").is_err());
        assert_eq!(Statement::parse("* a comment").unwrap(), Statement::Other("* A COMMENT".into()));
    }

    #[test]
    fn storage_sizes() {
        assert_eq!(storage_bytes("1G"), Some(1 << 30));
        assert_eq!(storage_bytes("512M"), Some(512 << 20));
        assert_eq!(storage_bytes("0M"), None);
        assert_eq!(storage_bytes("12"), None);
        assert_eq!(storage_bytes(""), None);
        assert_eq!(storage_bytes("1\u{e9}"), None);
        assert_eq!(storage_bytes("99999999999P"), None);
    }

    #[test]
    fn statements_round_trip_through_serde() {
        let statement = Statement::parse("MDISK 0100 3390 1 100 SIM001 MR").unwrap();
        let json = serde_json::to_string(&statement).unwrap();
        assert_eq!(json, "\"MDISK 0100 3390 1 100 SIM001 MR\"");
        assert_eq!(serde_json::from_str::<Statement>(&json).unwrap(), statement);
    }
}
