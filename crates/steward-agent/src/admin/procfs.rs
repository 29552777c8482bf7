//! Reading processes from `/proc`: the parsers work on the files' text (so they are tested on fixture text), and
//! [`read_processes`] walks a proc directory (`/proc` on the running system, a fixture tree in tests).
//!
//! `/proc/PID/stat` is the source of most fields. Its second field, the command name in parentheses, may itself
//! hold spaces and parentheses (a process can name itself `a) R 1 (b`), so the fields after it are found from the
//! *last* `)` of the line. Field numbers below are those of proc(5).

use std::collections::HashMap;
use std::path::Path;

/// The fields of `/proc/PID/stat` the agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// Field 2, without the parentheses.
    pub name: String,
    /// Field 3.
    pub state: char,
    /// Field 4.
    pub ppid: u32,
    /// Fields 14 and 15 added: user and system time, in clock ticks.
    pub cpu_ticks: u64,
    /// Field 22: clock ticks after boot.
    pub start_time: u64,
    /// Field 24: resident set size, in pages.
    pub rss_pages: u64,
}

/// Parses one `/proc/PID/stat` line; `None` when it is not one.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let name = text[open + 1..close].to_string();
    // Fields 3 onwards; index 0 is field 3.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |number: usize| rest.get(number - 3).copied();
    let number = |number: usize| field(number).and_then(|text| text.parse::<u64>().ok());
    let mut state_chars = field(3)?.chars();
    let state = state_chars.next()?;
    if state_chars.next().is_some() {
        return None;
    }
    Some(Stat {
        pid,
        name,
        state,
        ppid: u32::try_from(number(4)?).ok()?,
        cpu_ticks: number(14)?.saturating_add(number(15)?),
        start_time: number(22)?,
        // A kernel thread may show 0; the field is signed in the kernel but never negative in practice.
        rss_pages: field(24)?.parse::<i64>().ok()?.max(0).unsigned_abs(),
    })
}

/// The real user ID of the `Uid:` line of `/proc/PID/status`.
pub fn parse_status_uid(text: &str) -> Option<u32> {
    text.lines().find_map(|line| line.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().next()?.parse().ok())
}

/// The boot time (`btime`, seconds since the epoch) of `/proc/stat`.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("btime ")).and_then(|value| value.trim().parse().ok())
}

/// User names by ID from `/etc/passwd` text (the first entry of an ID wins, as `getpwuid` does).
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut users = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_password), Some(uid)) = (fields.next(), fields.next(), fields.next()) else { continue };
        if let Ok(uid) = uid.parse::<u32>()
            && !name.is_empty()
            && !name.starts_with('#')
        {
            users.entry(uid).or_insert_with(|| name.to_string());
        }
    }
    users
}

/// A `/proc/PID/cmdline` as a command line: arguments joined by spaces, at most `limit` bytes (cut at a character
/// boundary, `…` appended); empty for a kernel thread.
pub fn format_cmdline(bytes: &[u8], limit: usize) -> String {
    let trimmed = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    let mut text = String::from_utf8_lossy(trimmed).replace('\0', " ");
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The file name of a command line's program (its first argument's last part): `/usr/sbin/sshd -D` gives `sshd`.
pub fn program_name(cmdline: &[u8]) -> String {
    let first = cmdline.split(|byte| *byte == 0).next().unwrap_or_default();
    let base = first.rsplit(|byte| *byte == b'/').next().unwrap_or_default();
    String::from_utf8_lossy(base).into_owned()
}

/// One process as read from a proc directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawProcess {
    pub stat: Stat,
    pub uid: u32,
    /// `/proc/PID/cmdline` as read (arguments separated by NUL), at most a few pages.
    pub cmdline: Vec<u8>,
}

/// How much of a command line is read: enough for [`steward_protocol::system_admin::MAX_PROCESS_COMMAND_BYTES`]
/// and the program's name.
const CMDLINE_READ_LIMIT: u64 = 16 * 1024;

/// Every process under `proc_root` (`/proc`). A process that ends while it is read is left out.
pub fn read_processes(proc_root: &Path) -> std::io::Result<Vec<RawProcess>> {
    let mut processes = Vec::new();
    for entry in std::fs::read_dir(proc_root)?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        if let Some(process) = read_process(proc_root, pid) {
            processes.push(process);
        }
    }
    processes.sort_by_key(|process| process.stat.pid);
    Ok(processes)
}

/// One process, `None` when it does not exist (any more) or its files are not readable.
pub fn read_process(proc_root: &Path, pid: u32) -> Option<RawProcess> {
    let dir = proc_root.join(pid.to_string());
    let stat = parse_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
    let uid = parse_status_uid(&std::fs::read_to_string(dir.join("status")).ok()?)?;
    let cmdline = read_bounded(&dir.join("cmdline"), CMDLINE_READ_LIMIT).unwrap_or_default();
    Some(RawProcess { stat, uid, cmdline })
}

/// The start time of process `pid` (field 22 of its stat), `None` when there is no such process.
pub fn start_time_of(proc_root: &Path, pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&text).map(|stat| stat.start_time)
}

fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLEEP_STAT: &str = "4242 (sleep) S 4200 4242 4200 34816 4242 4194304 97 0 0 0 3 5 0 0 20 0 1 0 \
        123456 5758976 218 18446744073709551615 94 95 96 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn reads_the_fields_of_a_stat_line() {
        let stat = parse_stat(SLEEP_STAT).expect("a stat line");
        assert_eq!(
            stat,
            Stat {
                pid: 4242,
                name: "sleep".into(),
                state: 'S',
                ppid: 4200,
                cpu_ticks: 8,
                start_time: 123456,
                rss_pages: 218
            }
        );
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let line = SLEEP_STAT.replace("(sleep)", "(evil) R 1 (x y)");
        let stat = parse_stat(&line).expect("a stat line");
        assert_eq!(stat.name, "evil) R 1 (x y");
        assert_eq!((stat.state, stat.ppid, stat.start_time), ('S', 4200, 123456));
    }

    #[test]
    fn kernel_threads_and_broken_lines() {
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0 18446744073709551615 0 0 \
            0 0 0 0 0 2147483647 0 1 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        let stat = parse_stat(kthread).expect("kthreadd");
        assert_eq!((stat.ppid, stat.rss_pages, stat.start_time), (0, 0, 2));
        for broken in ["", "12", "12 (x", "x (y) S 1", "12 (x) S 1 2 3", "12 (x) SS 1 2 3 4 5 6 7 8 9 10 11 12"] {
            assert_eq!(parse_stat(broken), None, "{broken:?}");
        }
        assert_eq!(parse_stat(")12 (x"), None);
    }

    #[test]
    fn status_passwd_and_boot_time() {
        let status = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\n";
        assert_eq!(parse_status_uid(status), Some(1000));
        assert_eq!(parse_status_uid("Name:\tx\n"), None);
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\nalice:x:1000:1000::/home/alice:/bin/sh\n\
            toor:x:0:0::/:/bin/sh\n";
        let users = parse_passwd(passwd);
        assert_eq!(users.get(&0).map(String::as_str), Some("root"));
        assert_eq!(users.get(&1000).map(String::as_str), Some("alice"));
        assert_eq!(users.len(), 2);
        let stat = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1767225600\nprocesses 7\n";
        assert_eq!(parse_boot_time(stat), Some(1_767_225_600));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[test]
    fn command_lines() {
        assert_eq!(format_cmdline(b"sleep\x00600\x00", 100), "sleep 600");
        assert_eq!(format_cmdline(b"", 100), "");
        assert_eq!(format_cmdline(b"sh\x00-c\x00echo \xff\x00", 100), "sh -c echo \u{fffd}");
        assert_eq!(format_cmdline("éééé".as_bytes(), 3), "é…");
        assert_eq!(program_name(b"/usr/sbin/sshd\x00-D\x00"), "sshd");
        assert_eq!(program_name(b"nginx: worker process\x00"), "nginx: worker process");
        assert_eq!(program_name(b""), "");
    }

    #[test]
    fn reads_a_fixture_proc_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("4242");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("stat"), SLEEP_STAT).expect("stat");
        std::fs::write(dir.join("status"), "Name:\tsleep\nUid:\t0\t0\t0\t0\n").expect("status");
        std::fs::write(dir.join("cmdline"), b"sleep\x00600\x00").expect("cmdline");
        // Not processes: a file named like one without its files, and other entries.
        std::fs::create_dir_all(root.path().join("77")).expect("mkdir");
        std::fs::create_dir_all(root.path().join("self")).expect("mkdir");
        std::fs::write(root.path().join("uptime"), "1 2\n").expect("uptime");
        let processes = read_processes(root.path()).expect("reads");
        assert_eq!(processes.len(), 1);
        assert_eq!(processes[0].stat.pid, 4242);
        assert_eq!(processes[0].uid, 0);
        assert_eq!(processes[0].cmdline, b"sleep\x00600\x00");
        assert_eq!(start_time_of(root.path(), 4242), Some(123456));
        assert_eq!(start_time_of(root.path(), 77), None);
    }
}
