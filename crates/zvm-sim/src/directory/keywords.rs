//! The keyword view of a directory entry.
//!
//! `Image_Definition_Query_DM` answers `KEYWORD=value` lines in the shape recorded on z/VM 7.1: the keywords
//! the entry has, in alphabetical order (`CONSOLE=VDEV=0009 DEVTYPE=3215 CLASS=T`, `CPU=CPUADDR=00 BASE=YES
//! DEDICATE=NO`, `MDISK=VDEV=0777 DEVTYPE=3390 DISKTYPE=PERM START=2467 COUNT=1000 VOLID=LX3004 MODE=W ...`,
//! the password as a bare value, ...), then the optional keywords it lacks, empty (`NICDEF=`, `SHARE=`).
//!
//! `Image_Definition_Update_DM` applies `STORAGE_INITIAL`, `STORAGE_MAXIMUM`, `PRIVILEGE_CLASSES`, `PASSWORD`,
//! `IPL`, `CPU`, `CPU_MAXIMUM`, `SHARE`, `INCLUDE`, `MDISK` (`OPERATION=ADD` or `DELETE`), `COMMAND_DEFINE_CPU`,
//! `COMMAND_SET_VCONFIG` and `OPTION`. Any other keyword is refused as unknown (8/3002, naming it), a bad value
//! is 8/3032. All keywords of one call apply together or not at all.

use smapi::server::{OutputWriter, ParameterReader};

use super::statements::{Extent, Minidisk, Statement, normalize_vdev, storage_bytes, valid_name};
use super::{Entry, place_minidisk};
use crate::answer::{Answer, Context, Outcome, RC_CPU, RC_DISK_DEFINITION, RC_KEYWORD, RC_PROFILE};
use crate::state::State;

/// Every keyword the query knows, alphabetical.
const QUERY_KEYWORDS: &[&str] = &[
    "COMMAND_DEFINE_CPU",
    "COMMAND_SET_CPUAFFINITY",
    "COMMAND_SET_SHARE",
    "COMMAND_SET_VCONFIG",
    "CONSOLE",
    "CPU",
    "CPU_MAXIMUM",
    "DEDICATE",
    "INCLUDE",
    "IPL",
    "LINK",
    "MDISK",
    "NICDEF",
    "OPTION",
    "PASSWORD",
    "PRIVILEGE_CLASSES",
    "SHARE",
    "SPOOL",
    "STORAGE_INITIAL",
    "STORAGE_MAXIMUM",
    "VMRELOCATE",
];

/// Keywords reported empty (`KEYWORD=`) when the entry has none.
const REPORTED_WHEN_ABSENT: &[&str] = &[
    "COMMAND_DEFINE_CPU",
    "COMMAND_SET_CPUAFFINITY",
    "COMMAND_SET_SHARE",
    "COMMAND_SET_VCONFIG",
    "DEDICATE",
    "INCLUDE",
    "NICDEF",
    "OPTION",
    "SHARE",
    "VMRELOCATE",
];

/// The words of a verbatim statement that starts with `prefix` (upper case, blank-separated).
fn verbatim<'a>(entry: &'a Entry, prefix: &[&str]) -> Vec<Vec<&'a str>> {
    entry
        .statements
        .iter()
        .filter_map(|statement| match statement {
            Statement::Other(text) => {
                let words: Vec<&str> = text.split_whitespace().collect();
                words.starts_with(prefix).then(|| words[prefix.len()..].to_vec())
            }
            _ => None,
        })
        .collect()
}

fn vdev(text: &str) -> String {
    normalize_vdev(text).unwrap_or_else(|| text.to_owned())
}

/// `NAME=value` pairs from alternating words (`TYPE IFL` to `TYPE=IFL`).
fn word_pairs(words: &[&str]) -> String {
    words.chunks(2).map(|pair| pair.join("=")).collect::<Vec<_>>().join(" ")
}

/// The lines of one keyword for this entry; empty when the entry has none.
fn keyword_lines(entry: &Entry, keyword: &str) -> Vec<String> {
    let user = entry.user();
    match keyword {
        "CONSOLE" => verbatim(entry, &["CONSOLE"])
            .into_iter()
            .filter_map(|words| match words.as_slice() {
                [address, device_type, rest @ ..] => Some(format!(
                    "CONSOLE=VDEV={} DEVTYPE={device_type} CLASS={}",
                    vdev(address),
                    rest.first().copied().unwrap_or("T")
                )),
                _ => None,
            })
            .collect(),
        "CPU" => {
            let cpus: Vec<String> = entry
                .statements
                .iter()
                .filter_map(|statement| match statement {
                    Statement::Cpu { address, base, options } => Some(format!(
                        "CPU=CPUADDR={address} BASE={} DEDICATE={}",
                        if *base { "YES" } else { "NO" },
                        if options.iter().any(|option| option == "DEDICATE") { "YES" } else { "NO" }
                    )),
                    _ => None,
                })
                .collect();
            if cpus.is_empty() { vec!["CPU=CPUADDR=00 BASE=YES DEDICATE=NO".to_owned()] } else { cpus }
        }
        "CPU_MAXIMUM" => {
            let machine = entry.statements.iter().find_map(|statement| match statement {
                Statement::Machine { mode, max_cpus } => Some((mode.clone(), max_cpus.unwrap_or(1))),
                _ => None,
            });
            let (mode, count) = machine.unwrap_or_else(|| ("ESA".to_owned(), 1));
            vec![format!("CPU_MAXIMUM=COUNT={count} TYPE={mode}")]
        }
        "IPL" => entry
            .statements
            .iter()
            .filter_map(|statement| match statement {
                Statement::Ipl { target, options } => {
                    let mut line = format!("IPL=VDEV={target}");
                    if !options.is_empty() {
                        line.push(' ');
                        line.push_str(&word_pairs(&options.iter().map(String::as_str).collect::<Vec<_>>()));
                    }
                    Some(line)
                }
                _ => None,
            })
            .collect(),
        "LINK" => verbatim(entry, &["LINK"])
            .into_iter()
            .filter_map(|words| match words.as_slice() {
                [userid, first, second, rest @ ..] => Some(format!(
                    "LINK=USERID={userid} VDEV1={first} VDEV2={} MODE={}",
                    vdev(second),
                    rest.first().copied().unwrap_or("RR")
                )),
                _ => None,
            })
            .collect(),
        "MDISK" => entry.minidisks().map(minidisk_line).collect(),
        "PASSWORD" => user.map(|user| user.password.clone()).into_iter().collect(),
        "PRIVILEGE_CLASSES" => user.map(|user| format!("PRIVILEGE_CLASSES={}", user.privileges)).into_iter().collect(),
        "SPOOL" => verbatim(entry, &["SPOOL"])
            .into_iter()
            .filter_map(|words| match words.as_slice() {
                [address, device_type, kind @ ("READER" | "PUNCH"), rest @ ..] => Some(format!(
                    "SPOOL=VDEV={} DEVTYPE={device_type}_{kind} CLASS={}",
                    vdev(address),
                    rest.first().copied().unwrap_or("A")
                )),
                [address, device_type, rest @ ..] => Some(format!(
                    "SPOOL=VDEV={} DEVTYPE={device_type} CLASS={}",
                    vdev(address),
                    rest.first().copied().unwrap_or("A")
                )),
                _ => None,
            })
            .collect(),
        "STORAGE_INITIAL" => user.map(|user| format!("STORAGE_INITIAL={}", user.storage)).into_iter().collect(),
        "STORAGE_MAXIMUM" => user.map(|user| format!("STORAGE_MAXIMUM={}", user.max_storage)).into_iter().collect(),
        "COMMAND_DEFINE_CPU" => verbatim(entry, &["COMMAND", "DEFINE", "CPU"])
            .into_iter()
            .filter_map(|words| {
                let (address, rest) = words.split_first()?;
                Some(format!("COMMAND_DEFINE_CPU=CPUADDR={address} {}", word_pairs(rest)))
            })
            .map(|line| line.trim_end().to_owned())
            .collect(),
        "COMMAND_SET_VCONFIG" => verbatim(entry, &["COMMAND", "SET", "VCONFIG"])
            .into_iter()
            .map(|words| format!("COMMAND_SET_VCONFIG={}", word_pairs(&words)))
            .collect(),
        "COMMAND_SET_SHARE" | "COMMAND_SET_CPUAFFINITY" => {
            let what = keyword.trim_start_matches("COMMAND_SET_");
            verbatim(entry, &["COMMAND", "SET", what])
                .into_iter()
                .map(|words| format!("{keyword}={}", words.join(" ")))
                .collect()
        }
        "DEDICATE" => verbatim(entry, &["DEDICATE"])
            .into_iter()
            .filter_map(|words| match words.as_slice() {
                [virtual_device, real_device, ..] => {
                    Some(format!("DEDICATE=VDEV={} RDEV={}", vdev(virtual_device), vdev(real_device)))
                }
                _ => None,
            })
            .collect(),
        "INCLUDE" => entry
            .statements
            .iter()
            .filter_map(|statement| match statement {
                Statement::Include(profile) => Some(format!("INCLUDE={profile}")),
                _ => None,
            })
            .collect(),
        "NICDEF" => entry
            .nics()
            .map(|nic| {
                let mut line = format!("NICDEF=VDEV={} TYPE={} DEVICES={}", nic.vdev, nic.adapter_type, nic.devices);
                match &nic.lan {
                    Some((owner, name)) if owner == "SYSTEM" => {
                        line.push_str(&format!(" LAN=SYSTEM SWITCHNAME={name}"))
                    }
                    Some((owner, name)) => line.push_str(&format!(" LAN={owner} LANNAME={name}")),
                    None => {}
                }
                for (key, value) in &nic.options {
                    line.push_str(&format!(" {key}={value}"));
                }
                line
            })
            .collect(),
        "OPTION" => {
            verbatim(entry, &["OPTION"]).into_iter().map(|words| format!("OPTION={}", words.join(" "))).collect()
        }
        "SHARE" => entry
            .statements
            .iter()
            .filter_map(|statement| match statement {
                Statement::Share { kind, value } => Some(format!("SHARE={kind}={value}")),
                _ => None,
            })
            .collect(),
        "VMRELOCATE" => verbatim(entry, &["VMRELOCATE"])
            .into_iter()
            .map(|words| format!("VMRELOCATE={}", words.join(" ")))
            .collect(),
        _ => Vec::new(),
    }
}

fn minidisk_line(disk: &Minidisk) -> String {
    let mut line = format!("MDISK=VDEV={} DEVTYPE={}", disk.vdev, disk.device_type);
    match &disk.extent {
        Extent::Volume { start, size, volid } => {
            line.push_str(&format!(" DISKTYPE=PERM START={start} COUNT={size} VOLID={volid}"))
        }
        Extent::Automatic { kind, size, area } => line.push_str(&format!(" DISKTYPE={kind} COUNT={size} NAME={area}")),
        Extent::Virtual { kind, size } => line.push_str(&format!(" DISKTYPE={kind} COUNT={size}")),
    }
    line.push_str(&format!(" MODE={}", disk.mode));
    for (name, password) in ["READPASSWORD", "WRITEPASSWORD", "MULTIPASSWORD"].iter().zip(&disk.passwords) {
        line.push_str(&format!(" {name}={password}"));
    }
    line
}

/// `Image_Definition_Query_DM`: `*` for everything, or the keywords named.
pub fn definition_query(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let requested = reader.framed_list()?;
    if requested.is_empty() {
        return Err(Answer::missing_keyword());
    }
    let entry = state.directory.entry(&context.target)?;
    let mut lines = Vec::new();
    if requested.iter().any(|keyword| keyword.trim() == "*") {
        let mut absent = Vec::new();
        for keyword in QUERY_KEYWORDS {
            let found = keyword_lines(entry, keyword);
            if found.is_empty() {
                if REPORTED_WHEN_ABSENT.contains(keyword) {
                    absent.push(format!("{keyword}="));
                }
            } else {
                lines.extend(found);
            }
        }
        lines.extend(absent);
    } else {
        for keyword in &requested {
            let name = keyword.trim().to_uppercase();
            if !QUERY_KEYWORDS.contains(&name.as_str()) {
                return Err(Answer::unknown_keyword(keyword));
            }
            let found = keyword_lines(entry, &name);
            if found.is_empty() {
                lines.push(format!("{name}="));
            } else {
                lines.extend(found);
            }
        }
    }
    let mut output = OutputWriter::new();
    output.nul_list(&lines);
    Ok(Answer::output(output))
}

/// `NAME=value` operands of a keyword's value (`VDEV=0100 LOADPARM=X`), quotes removed.
fn operands(value: &str) -> Result<Vec<(String, String)>, Answer> {
    value
        .trim()
        .trim_matches('\'')
        .split_whitespace()
        .map(|operand| match operand.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_uppercase(), value.to_uppercase())),
            _ => Err(invalid_input()),
        })
        .collect()
}

fn operand<'a>(operands: &'a [(String, String)], name: &str) -> Option<&'a str> {
    operands.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// 8/3032: the keyword's value is not valid input.
fn invalid_input() -> Answer {
    Answer::code(RC_KEYWORD, 3032)
}

fn statement(line: &str) -> Result<Statement, Answer> {
    Statement::parse(line).map_err(|_| invalid_input())
}

/// `Image_Definition_Update_DM`.
pub fn definition_update(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let keywords = reader.framed_list()?;
    if keywords.is_empty() {
        return Err(Answer::missing_keyword());
    }
    let target = &context.target;
    let existing = state.directory.entry(target)?;
    existing.check_unlocked()?;
    let mut entry = existing.clone();
    let mut pools = state.pools.clone();
    for keyword in &keywords {
        let Some((name, value)) = keyword.split_once('=') else {
            return Err(Answer::unknown_keyword(keyword));
        };
        let name = name.trim().to_uppercase();
        let upper = value.trim().to_uppercase();
        match name.as_str() {
            "STORAGE_INITIAL" | "STORAGE_MAXIMUM" => {
                let size = storage_bytes(&upper).ok_or_else(invalid_input)?;
                let user = entry.user_mut().ok_or_else(invalid_input)?;
                let (initial, maximum) = if name == "STORAGE_INITIAL" {
                    (size, storage_bytes(&user.max_storage).unwrap_or(size))
                } else {
                    (storage_bytes(&user.storage).unwrap_or(size), size)
                };
                if initial > maximum {
                    return Err(invalid_input());
                }
                if name == "STORAGE_INITIAL" { user.storage = upper } else { user.max_storage = upper }
            }
            "PRIVILEGE_CLASSES" => {
                if upper.is_empty() || upper.len() > 32 || !upper.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
                    return Err(invalid_input());
                }
                entry.user_mut().ok_or_else(invalid_input)?.privileges = upper;
            }
            "PASSWORD" => {
                let password = value.trim();
                if password.is_empty() || password.len() > 8 || password.contains(char::is_whitespace) {
                    return Err(invalid_input());
                }
                entry.user_mut().ok_or_else(invalid_input)?.password = password.to_uppercase();
            }
            "IPL" => {
                let operands = operands(value)?;
                let device = operand(&operands, "VDEV").ok_or_else(invalid_input)?;
                let mut line = format!("IPL {device}");
                for (key, value) in operands.iter().filter(|(key, _)| key != "VDEV") {
                    line.push_str(&format!(" {key} {value}"));
                }
                entry.set_control(statement(&line)?, |statement| matches!(statement, Statement::Ipl { .. }));
            }
            "CPU" => {
                let operands = operands(value)?;
                let address = operand(&operands, "CPUADDR").ok_or_else(invalid_input)?;
                let base = operand(&operands, "BASE") == Some("YES");
                let dedicate = operand(&operands, "DEDICATE") == Some("YES");
                let Statement::Cpu { address, .. } = statement(&format!("CPU {address}"))? else {
                    return Err(invalid_input());
                };
                check_cpu(&entry, &address, base)?;
                let line = format!(
                    "CPU {address}{}{}",
                    if base { " BASE" } else { "" },
                    if dedicate { " DEDICATE" } else { "" }
                );
                let replaced = address.clone();
                entry.set_control(
                    statement(&line)?,
                    move |statement| matches!(statement, Statement::Cpu { address, .. } if *address == replaced),
                );
            }
            "CPU_MAXIMUM" => {
                let operands = operands(value)?;
                let count = operand(&operands, "COUNT").ok_or_else(invalid_input)?;
                let mode = operand(&operands, "TYPE").unwrap_or("ESA");
                entry.set_control(statement(&format!("MACHINE {mode} {count}"))?, |statement| {
                    matches!(statement, Statement::Machine { .. })
                });
            }
            "SHARE" => {
                let (kind, amount) = upper.split_once('=').ok_or_else(invalid_input)?;
                let share = statement(&format!("SHARE {kind} {amount}"))?;
                entry.set_control(share, |statement| matches!(statement, Statement::Share { .. }));
            }
            "INCLUDE" => {
                if !valid_name(&upper) {
                    return Err(invalid_input());
                }
                if !state.directory.profiles.contains_key(&upper) {
                    return Err(Answer::code(RC_PROFILE, 4));
                }
                entry.set_control(Statement::Include(upper), |statement| matches!(statement, Statement::Include(_)));
            }
            "MDISK" => update_minidisk(&mut entry, &mut pools, target, value)?,
            "COMMAND_DEFINE_CPU" | "COMMAND_SET_VCONFIG" => {
                let operands = operands(value)?;
                let line = if name == "COMMAND_DEFINE_CPU" {
                    let address = operand(&operands, "CPUADDR").ok_or_else(invalid_input)?;
                    let rest: Vec<String> = operands
                        .iter()
                        .filter(|(key, _)| key != "CPUADDR")
                        .map(|(key, value)| format!("{key} {value}"))
                        .collect();
                    format!("COMMAND DEFINE CPU {address} {}", rest.join(" "))
                } else {
                    let rest: Vec<String> = operands.iter().map(|(key, value)| format!("{key} {value}")).collect();
                    format!("COMMAND SET VCONFIG {}", rest.join(" "))
                };
                entry.insert_control(statement(line.trim_end())?);
            }
            "OPTION" => {
                if upper.is_empty() {
                    return Err(invalid_input());
                }
                let option = statement(&format!("OPTION {upper}"))?;
                entry.set_control(option, |statement| {
                    matches!(statement, Statement::Other(text) if text.split_whitespace().next() == Some("OPTION"))
                });
            }
            _ => return Err(Answer::unknown_keyword(name.trim())),
        }
    }
    state.pools = pools;
    state.directory.entries.insert(target.clone(), entry);
    Ok(Answer::ok())
}

/// 520/24 for a second base CPU, 520/28 for an address beyond the entry's maximum CPU count.
fn check_cpu(entry: &Entry, address: &str, base: bool) -> Result<(), Answer> {
    let maximum = entry.statements.iter().find_map(|statement| match statement {
        Statement::Machine { max_cpus, .. } => *max_cpus,
        _ => None,
    });
    let number = u32::from_str_radix(address, 16).unwrap_or(u32::MAX);
    if maximum.is_some_and(|maximum| number >= maximum) {
        return Err(Answer::code(RC_CPU, 28));
    }
    let other_base = entry
        .statements
        .iter()
        .any(|statement| matches!(statement, Statement::Cpu { address: other, base: true, .. } if other != address));
    if base && other_base {
        return Err(Answer::code(RC_CPU, 24));
    }
    Ok(())
}

/// `MDISK=OPERATION=ADD VDEV=... COUNT=... DISKTYPE=AUTOG|AUTOR|AUTOV|PERM NAME=... [START= VOLID=] [MODE=]`
/// or `MDISK=OPERATION=DELETE VDEV=...`.
fn update_minidisk(entry: &mut Entry, pools: &mut crate::pools::Pools, owner: &str, value: &str) -> Result<(), Answer> {
    let operands = operands(value)?;
    let vdev = operand(&operands, "VDEV").and_then(normalize_vdev).ok_or_else(invalid_input)?;
    match operand(&operands, "OPERATION") {
        Some("ADD") => {
            if entry.has_device(&vdev) {
                return Err(Answer::code(RC_DISK_DEFINITION, 4));
            }
            let count: u32 =
                operand(&operands, "COUNT").and_then(|count| count.parse().ok()).ok_or_else(invalid_input)?;
            let kind = operand(&operands, "DISKTYPE").unwrap_or("AUTOG");
            let extent = match kind {
                "AUTOG" | "AUTOR" | "AUTOV" => Extent::Automatic {
                    kind: kind.to_owned(),
                    size: count,
                    area: operand(&operands, "NAME").ok_or_else(invalid_input)?.to_owned(),
                },
                "PERM" => Extent::Volume {
                    start: operand(&operands, "START")
                        .and_then(|start| start.parse().ok())
                        .ok_or_else(invalid_input)?,
                    size: count,
                    volid: operand(&operands, "VOLID").ok_or_else(invalid_input)?.to_owned(),
                },
                _ => return Err(Answer::invalid_operand()),
            };
            // DirMaint takes the device type from the volumes when the caller leaves it to it.
            let device_type = match (&extent, operand(&operands, "DEVTYPE")) {
                (_, Some(given))
                    if given.starts_with("3390") || given.starts_with("9336") || given.starts_with("FB") =>
                {
                    given.to_owned()
                }
                (Extent::Automatic { kind, area, .. }, _) => {
                    pools.device_type_for(kind, area).map_err(|error| error.answer())?
                }
                _ => "3390".to_owned(),
            };
            let mut disk = Minidisk {
                vdev,
                device_type,
                extent,
                mode: operand(&operands, "MODE").unwrap_or("W").to_owned(),
                passwords: Vec::new(),
            };
            if count == 0 {
                return Err(invalid_input());
            }
            place_minidisk(pools, owner, &mut disk)?;
            entry.statements.push(Statement::Mdisk(disk));
            Ok(())
        }
        Some("DELETE") => {
            if entry.minidisk(&vdev).is_none() {
                return Err(Answer::code(RC_DISK_DEFINITION, 8));
            }
            entry.remove_device(&vdev);
            pools.release(owner, &vdev);
            Ok(())
        }
        _ => Err(Answer::invalid_operand()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(lines: &[&str]) -> Entry {
        Entry::new(lines.iter().map(|line| Statement::parse(line).unwrap()).collect())
    }

    #[test]
    fn the_recorded_shape() {
        let entry = entry(&[
            "USER GT@PING @SM8PI@ 1G 2G ABCDEFG",
            "IPL CMS",
            "  CONSOLE   0009 3215",
            "  SPOOL 00C 2540 READER *",
            "  SPOOL 00D 2540 PUNCH A",
            "  SPOOL 00E 1403 A",
            "  LINK MAINT 190 190 RR",
            "MDISK 0777 3390 2467 1000 LX3004 W READ WRITE MULTIPLE",
        ]);
        let mut lines = Vec::new();
        let mut absent = Vec::new();
        for keyword in QUERY_KEYWORDS {
            let found = keyword_lines(&entry, keyword);
            if found.is_empty() && REPORTED_WHEN_ABSENT.contains(keyword) {
                absent.push(format!("{keyword}="));
            }
            lines.extend(found);
        }
        lines.extend(absent);
        assert_eq!(
            lines,
            [
                "CONSOLE=VDEV=0009 DEVTYPE=3215 CLASS=T",
                "CPU=CPUADDR=00 BASE=YES DEDICATE=NO",
                "CPU_MAXIMUM=COUNT=1 TYPE=ESA",
                "IPL=VDEV=CMS",
                "LINK=USERID=MAINT VDEV1=190 VDEV2=0190 MODE=RR",
                "MDISK=VDEV=0777 DEVTYPE=3390 DISKTYPE=PERM START=2467 COUNT=1000 VOLID=LX3004 MODE=W \
                 READPASSWORD=READ WRITEPASSWORD=WRITE MULTIPASSWORD=MULTIPLE",
                "@SM8PI@",
                "PRIVILEGE_CLASSES=ABCDEFG",
                "SPOOL=VDEV=000C DEVTYPE=2540_READER CLASS=*",
                "SPOOL=VDEV=000D DEVTYPE=2540_PUNCH CLASS=A",
                "SPOOL=VDEV=000E DEVTYPE=1403 CLASS=A",
                "STORAGE_INITIAL=1G",
                "STORAGE_MAXIMUM=2G",
                "COMMAND_DEFINE_CPU=",
                "COMMAND_SET_CPUAFFINITY=",
                "COMMAND_SET_SHARE=",
                "COMMAND_SET_VCONFIG=",
                "DEDICATE=",
                "INCLUDE=",
                "NICDEF=",
                "OPTION=",
                "SHARE=",
                "VMRELOCATE=",
            ]
        );
    }

    #[test]
    fn keyword_updates_apply_to_the_entry() {
        let mut entry = entry(&["USER A PW 1G 2G G", "MACHINE ESA 4", "CPU 00 BASE", "  CONSOLE 0009 3215"]);
        let mut pools = crate::pools::Pools::default();
        pools.add_volume("LINUX", "SIM001", "3390", 100);
        update_minidisk(
            &mut entry,
            &mut pools,
            "A",
            "OPERATION=ADD VDEV=999 COUNT=10 DEVTYPE=XXXX DISKTYPE=AUTOG NAME=LINUX",
        )
        .unwrap();
        assert_eq!(
            entry.minidisk("0999").unwrap().extent,
            Extent::Volume { start: 1, size: 10, volid: "SIM001".into() }
        );
        assert_eq!(entry.minidisk("0999").unwrap().device_type, "3390");
        assert_eq!(
            update_minidisk(&mut entry, &mut pools, "A", "OPERATION=ADD VDEV=999 COUNT=10 DISKTYPE=AUTOG NAME=LINUX"),
            Err(Answer::code(408, 4))
        );
        assert_eq!(check_cpu(&entry, "04", false), Err(Answer::code(520, 28)));
        assert_eq!(check_cpu(&entry, "01", true), Err(Answer::code(520, 24)));
        assert_eq!(check_cpu(&entry, "01", false), Ok(()));
        update_minidisk(&mut entry, &mut pools, "A", "OPERATION=DELETE VDEV=0999").unwrap();
        assert!(pools.volumes["SIM001"].extents.is_empty());
        assert_eq!(operands("'CPUADDR=01 TYPE=IFL'").unwrap()[1], ("TYPE".into(), "IFL".into()));
    }
}
