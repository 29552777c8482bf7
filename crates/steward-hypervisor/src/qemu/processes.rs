//! Finding QEMU processes on the host by scanning `/proc/*/cmdline`: every `qemu-system-*` process, whoever
//! started it, with what its command line says (name, architecture, memory, CPUs, disks). A process is
//! *managed* when its pid file or QMP socket lies under this host's guest directory.
//!
//! Also the liveness checks used for guests (is this pid alive, not a zombie, and still our QEMU?), because a
//! pid file can outlive its process and the pid can be reused.

use std::path::{Path, PathBuf};

use crate::types::{Arch, GuestListing};

/// The command line of a process, split at NUL bytes; `None` when it is gone or unreadable.
pub fn read_cmdline(pid: u32) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if bytes.is_empty() {
        return None;
    }
    Some(
        bytes
            .split(|byte| *byte == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect(),
    )
}

/// Whether `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesized command name, which may itself contain spaces or parentheses.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// The architecture of a QEMU command line, when its program is `qemu-system-<arch>`.
pub fn emulator_arch(arguments: &[String]) -> Option<Option<Arch>> {
    let program = arguments.first()?;
    let base = Path::new(program).file_name()?.to_str()?;
    let arch = base.strip_prefix("qemu-system-")?;
    Some(Arch::from_name(arch))
}

/// The value following `option` (`-name`, `-m`, ...), first occurrence.
pub(crate) fn option_value<'a>(arguments: &'a [String], option: &str) -> Option<&'a str> {
    let position = arguments.iter().position(|argument| argument == option || argument == &format!("-{option}"))?;
    arguments.get(position + 1).map(String::as_str)
}

/// Splits a QEMU option string at commas, where `,,` is a literal comma.
pub fn split_qemu_options(value: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut characters = value.chars().peekable();
    while let Some(character) = characters.next() {
        if character == ',' {
            if characters.peek() == Some(&',') {
                characters.next();
                if let Some(last) = parts.last_mut() {
                    last.push(',');
                }
            } else {
                parts.push(String::new());
            }
        } else if let Some(last) = parts.last_mut() {
            last.push(character);
        }
    }
    parts
}

/// Escapes a value for a QEMU option string (`,` becomes `,,`).
pub fn escape_qemu_value(value: &str) -> String {
    value.replace(',', ",,")
}

/// The value of `key=` in a QEMU option string, or the leading implied value when `key` is the implied one.
pub(crate) fn option_field(value: &str, key: &str, implied: bool) -> Option<String> {
    let parts = split_qemu_options(value);
    for (index, part) in parts.iter().enumerate() {
        if let Some(found) = part.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')) {
            return Some(found.to_owned());
        }
        if implied && index == 0 && !part.contains('=') {
            return Some(part.clone());
        }
    }
    None
}

/// Memory in MiB from a `-m` value (`256`, `256M`, `1G`, `size=512M,slots=2`).
fn parse_memory_mib(value: &str) -> Option<u64> {
    let size = option_field(value, "size", true)?;
    let (number, unit) = match size.char_indices().find(|(_, character)| !character.is_ascii_digit()) {
        Some((index, _)) => size.split_at(index),
        None => (size.as_str(), "M"),
    };
    let number: u64 = number.parse().ok()?;
    match unit.to_ascii_uppercase().as_str() {
        "M" | "MB" => Some(number),
        "G" | "GB" => number.checked_mul(1024),
        "T" | "TB" => number.checked_mul(1024 * 1024),
        "K" | "KB" => Some(number / 1024),
        _ => None,
    }
}

/// A listing of one QEMU process from its command line; `guest_directory` decides `managed`.
pub fn listing_from_cmdline(pid: u32, arguments: &[String], guest_directory: &Path) -> Option<GuestListing> {
    let arch = emulator_arch(arguments)?;
    let name = option_value(arguments, "-name").and_then(|value| option_field(value, "guest", true));
    let memory_mib = option_value(arguments, "-m").and_then(parse_memory_mib);
    let cpus = option_value(arguments, "-smp")
        .and_then(|value| option_field(value, "cpus", true))
        .and_then(|count| count.parse().ok())
        .or(Some(1));
    let disks = arguments
        .windows(2)
        .filter(|pair| pair[0] == "-drive" || pair[0] == "--drive")
        .filter_map(|pair| option_field(&pair[1], "file", false))
        .map(PathBuf::from)
        .collect();
    let managed_paths = [option_value(arguments, "-pidfile").map(str::to_owned), qmp_socket_path(arguments)];
    let managed = managed_paths.iter().flatten().any(|path| Path::new(path).starts_with(guest_directory));
    Some(GuestListing { pid, name, arch, memory_mib, cpus, disks, managed })
}

/// The path of a `-qmp unix:PATH,...` socket.
pub fn qmp_socket_path(arguments: &[String]) -> Option<String> {
    let value = option_value(arguments, "-qmp")?;
    let first = split_qemu_options(value).into_iter().next()?;
    first.strip_prefix("unix:").map(str::to_owned)
}

/// When the process started, in clock ticks since boot (`/proc/PID/stat` field 22): with the pid, it names one
/// process for good (a pid alone may be reused).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces; the fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Every QEMU process on the host.
pub fn scan(guest_directory: &Path) -> Vec<GuestListing> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut listings: Vec<GuestListing> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let arguments = read_cmdline(pid)?;
            if !process_alive(pid) {
                return None;
            }
            listing_from_cmdline(pid, &arguments, guest_directory)
        })
        .collect();
    listings.sort_by_key(|listing| listing.pid);
    listings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn qemu_command_lines_are_understood() {
        let managed = arguments(
            "/usr/bin/qemu-system-x86_64 -name web01,process=stw-web01 -m 256 -smp 2 \
             -pidfile /data/guests/web01/qemu.pid -drive file=/data/a,,b.qcow2,if=none,id=disk0,format=qcow2",
        );
        let listing = listing_from_cmdline(42, &managed, Path::new("/data/guests")).unwrap();
        assert_eq!(listing.name.as_deref(), Some("web01"));
        assert_eq!(listing.arch, Some(Arch::X86_64));
        assert_eq!(listing.memory_mib, Some(256));
        assert_eq!(listing.cpus, Some(2));
        assert_eq!(listing.disks, [PathBuf::from("/data/a,b.qcow2")]);
        assert!(listing.managed);

        let foreign = arguments("qemu-system-s390x -name guest=zlinux -m size=1G,slots=2 -smp cpus=4,sockets=1");
        let listing = listing_from_cmdline(7, &foreign, Path::new("/data/guests")).unwrap();
        assert_eq!(listing.name.as_deref(), Some("zlinux"));
        assert_eq!(listing.arch, Some(Arch::S390x));
        assert_eq!(listing.memory_mib, Some(1024));
        assert_eq!(listing.cpus, Some(4));
        assert!(!listing.managed);

        assert!(listing_from_cmdline(1, &arguments("/bin/sh -c qemu-system-x86_64"), Path::new("/")).is_none());
    }

    #[test]
    fn option_strings_are_split_and_escaped() {
        assert_eq!(split_qemu_options("file=a,,b,if=none"), ["file=a,b", "if=none"]);
        assert_eq!(escape_qemu_value("a,b"), "a,,b");
    }

    #[test]
    fn this_process_is_alive() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX));
    }
}
