//! Processes: the listing with a CPU sample, and signals that can never reach the wrong process.
//!
//! CPU use is measured over [`SAMPLE`]: the processes are read, the agent waits (on its runtime, not a thread),
//! reads them again, and reports the CPU ticks each used in between. The server turns that into a percentage of
//! one CPU, as `top` shows it.
//!
//! A signal names the process by PID *and* start time. The agent first opens a pidfd for the PID (which pins that
//! very process: a PID reused later is another process the pidfd does not refer to), then checks the start time
//! of the process under the PID, and signals through the pidfd. So a PID that was reused between the listing and
//! the signal is refused ("no longer the one listed"), and one reused between the check and the signal cannot
//! be hit either. On a kernel without pidfds (before 5.3) the check is followed by `kill(2)`, which leaves a
//! window of microseconds. PID 1 and the agent itself are never signalled.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use steward_protocol::system_admin::{
    MAX_PID, MAX_PROCESS_COMMAND_BYTES, NamedSignal, ProcessInfo, ProcessListing, SignalOutcome, SignalSpec,
    check_process_name,
};

use super::procfs::{self, RawProcess};

/// How long the CPU sample lasts.
pub const SAMPLE: Duration = Duration::from_millis(500);

/// Where the system's processes and users are: `/proc` and `/etc/passwd`, or a fixture tree in tests.
#[derive(Debug, Clone)]
pub struct ProcessSource {
    pub proc_root: PathBuf,
    pub passwd: PathBuf,
}

impl ProcessSource {
    pub fn live() -> Self {
        Self { proc_root: PathBuf::from("/proc"), passwd: PathBuf::from("/etc/passwd") }
    }
}

/// Lists every process with the CPU ticks it used during a sample of `sample`.
pub async fn list(source: ProcessSource, sample: Duration) -> Result<ProcessListing, String> {
    let first_source = source.clone();
    let first = blocking(move || procfs::read_processes(&first_source.proc_root)).await?;
    tokio::time::sleep(sample).await;
    let started = std::time::Instant::now();
    let (second, boot_time, users) = blocking(move || {
        let processes = procfs::read_processes(&source.proc_root)?;
        let boot_time = std::fs::read_to_string(source.proc_root.join("stat"))
            .ok()
            .and_then(|text| procfs::parse_boot_time(&text))
            .unwrap_or(0);
        let users = std::fs::read_to_string(&source.passwd).map(|text| procfs::parse_passwd(&text)).unwrap_or_default();
        Ok((processes, boot_time, users))
    })
    .await?;
    // The sample ends when the second reading started; reading takes a few milliseconds at most.
    let sample_ms = u64::try_from((sample + started.elapsed() / 2).as_millis()).unwrap_or(u64::MAX);
    let ticks_per_second = clock_ticks_per_second();
    let page_size = page_size();
    let before: HashMap<(u32, u64), u64> =
        first.iter().map(|process| ((process.stat.pid, process.stat.start_time), process.stat.cpu_ticks)).collect();
    let processes = second
        .into_iter()
        .map(|process| {
            let key = (process.stat.pid, process.stat.start_time);
            let sample_cpu_ticks = process.stat.cpu_ticks.saturating_sub(before.get(&key).copied().unwrap_or_default());
            describe(process, sample_cpu_ticks, boot_time, ticks_per_second, page_size, &users)
        })
        .collect();
    Ok(ProcessListing { sample_ms, ticks_per_second, processes })
}

fn describe(
    process: RawProcess,
    sample_cpu_ticks: u64,
    boot_time: u64,
    ticks_per_second: u64,
    page_size: u64,
    users: &HashMap<u32, String>,
) -> ProcessInfo {
    let RawProcess { stat, uid, cmdline } = process;
    let mut command = procfs::format_cmdline(&cmdline, MAX_PROCESS_COMMAND_BYTES);
    if command.is_empty() {
        command = format!("[{}]", stat.name);
    }
    let started_after_boot_ms = stat.start_time.saturating_mul(1000) / ticks_per_second.max(1);
    let started_at_ms =
        i64::try_from(boot_time.saturating_mul(1000).saturating_add(started_after_boot_ms)).unwrap_or(i64::MAX);
    ProcessInfo {
        pid: stat.pid,
        ppid: stat.ppid,
        uid,
        user: users.get(&uid).cloned().unwrap_or_else(|| uid.to_string()),
        state: stat.state.to_string(),
        cpu_ticks: stat.cpu_ticks,
        sample_cpu_ticks,
        rss_bytes: stat.rss_pages.saturating_mul(page_size),
        start_time: stat.start_time,
        started_at_ms,
        name: stat.name,
        command,
    }
}

/// Sends `signal` to `pid` if it is still the process that started at `start_time`. The error is a sentence for
/// the operator.
pub fn signal_one(proc_root: &Path, pid: u32, start_time: u64, signal: &str) -> Result<SignalOutcome, String> {
    let number = resolve_signal(signal)?;
    refuse_protected(pid)?;
    send_checked(proc_root, pid, start_time, number)?;
    Ok(SignalOutcome { signal: number, matched: 1, signalled: 1, pids: vec![pid], errors: Vec::new() })
}

/// Sends `signal` to every process named `name` (command name or program file name), except PID 1 and the agent.
pub fn signal_by_name(proc_root: &Path, name: &str, signal: &str) -> Result<SignalOutcome, String> {
    let number = resolve_signal(signal)?;
    check_process_name(name)?;
    let processes = procfs::read_processes(proc_root)
        .map_err(|error| format!("cannot list the processes in {}: {error}", proc_root.display()))?;
    let mut outcome = SignalOutcome { signal: number, ..SignalOutcome::default() };
    for process in processes {
        if process.stat.name != name && procfs::program_name(&process.cmdline) != name {
            continue;
        }
        let pid = process.stat.pid;
        outcome.matched += 1;
        let sent = refuse_protected(pid).and_then(|()| send_checked(proc_root, pid, process.stat.start_time, number));
        match sent {
            Ok(()) => {
                outcome.signalled += 1;
                outcome.pids.push(pid);
            }
            Err(error) => outcome.errors.push(error),
        }
    }
    Ok(outcome)
}

/// The number of a signal as this system numbers it.
pub fn resolve_signal(text: &str) -> Result<i32, String> {
    Ok(match SignalSpec::parse(text)? {
        SignalSpec::Number(number) => i32::from(number),
        SignalSpec::Named(named) => match named {
            NamedSignal::Hup => libc::SIGHUP,
            NamedSignal::Int => libc::SIGINT,
            NamedSignal::Kill => libc::SIGKILL,
            NamedSignal::Usr1 => libc::SIGUSR1,
            NamedSignal::Usr2 => libc::SIGUSR2,
            NamedSignal::Term => libc::SIGTERM,
            NamedSignal::Cont => libc::SIGCONT,
            NamedSignal::Stop => libc::SIGSTOP,
        },
    })
}

/// PID 1 (its death takes the system, or the container, down) and the agent itself are never signalled, nor a
/// PID outside the kernel's range (0 and negative PIDs would reach whole process groups).
fn refuse_protected(pid: u32) -> Result<(), String> {
    if pid == 0 || pid > MAX_PID {
        return Err(format!("{pid} is not a process ID (1 to {MAX_PID})"));
    }
    if pid == 1 {
        return Err("process 1 (the init process) is never signalled".into());
    }
    if pid == std::process::id() {
        return Err(format!("process {pid} is the Steward agent itself, which is never signalled"));
    }
    Ok(())
}

/// Opens a pidfd for `pid`, checks the process's start time, and signals it through the pidfd.
fn send_checked(proc_root: &Path, pid: u32, start_time: u64, signal: i32) -> Result<(), String> {
    let gone = || format!("process {pid} does not exist (any more)");
    let handle = match pidfd_open(pid) {
        Ok(handle) => Some(handle),
        Err(error) if error.raw_os_error() == Some(libc::ESRCH) => return Err(gone()),
        Err(error) if error.raw_os_error() == Some(libc::ENOSYS) => None,
        Err(error) => return Err(format!("process {pid}: cannot open it: {error}")),
    };
    let actual = procfs::start_time_of(proc_root, pid).ok_or_else(gone)?;
    if actual != start_time {
        return Err(format!(
            "process {pid} is no longer the one listed: the listed one started at tick {start_time}, the process \
             with this ID now at tick {actual}; list the processes again"
        ));
    }
    let result = match &handle {
        // SAFETY: pidfd_send_signal(2) on a pidfd we own, with no siginfo (null) and no flags.
        Some(fd) => unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        },
        // SAFETY: kill(2) with a PID checked to be in 2..=MAX_PID, so never a group nor every process.
        None => i64::from(unsafe { libc::kill(pid as libc::pid_t, signal) }),
    };
    if result != 0 {
        let error = std::io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::ESRCH) => gone(),
            Some(libc::EPERM) => format!("process {pid}: the agent may not signal it (operation not permitted)"),
            _ => format!("process {pid}: signal {signal} failed: {error}"),
        });
    }
    Ok(())
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a PID and flags and returns a new file descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("pidfd_open returned an impossible descriptor"))?;
    // SAFETY: the descriptor was just returned to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|ticks| *ticks > 0).unwrap_or(100)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|size| *size > 0).unwrap_or(4096)
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(format!("cannot read the processes: {error}")),
        Err(error) => Err(format!("reading the processes failed: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    #[tokio::test]
    async fn lists_a_child_with_its_fields() {
        let mut child = Command::new("sleep").arg("300").stdout(Stdio::null()).spawn().expect("start sleep");
        let pid = child.id();
        let listing = list(ProcessSource::live(), Duration::from_millis(50)).await.expect("lists");
        assert!(listing.ticks_per_second > 0 && listing.sample_ms >= 50);
        let me = listing.processes.iter().find(|p| p.pid == std::process::id()).expect("the test itself");
        let sleep = listing.processes.iter().find(|p| p.pid == pid).expect("the sleep");
        assert_eq!(sleep.ppid, std::process::id());
        assert_eq!(sleep.name, "sleep");
        assert_eq!(sleep.command, "sleep 300");
        assert_eq!((sleep.uid, &sleep.user), (me.uid, &me.user));
        assert!(sleep.rss_bytes > 0);
        assert!(sleep.started_at_ms >= me.started_at_ms);
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn signals_only_the_listed_process_and_never_the_protected_ones() {
        let proc_root = Path::new("/proc");
        let mut child = Command::new("sleep").arg("300").spawn().expect("start sleep");
        let pid = child.id();
        let start_time = procfs::start_time_of(proc_root, pid).expect("its start time");

        let stale = signal_one(proc_root, pid, start_time + 1, "TERM").expect_err("stale start time");
        assert!(stale.contains(&format!("process {pid} is no longer the one listed")), "{stale}");
        assert!(child.try_wait().expect("wait").is_none(), "the sleep was signalled anyway");

        assert!(signal_one(proc_root, 1, 1, "TERM").expect_err("init").contains("process 1"));
        let own = signal_one(proc_root, std::process::id(), 0, "TERM").expect_err("self");
        assert!(own.contains("the Steward agent itself"), "{own}");
        assert!(signal_one(proc_root, 0, 0, "TERM").expect_err("pid 0").contains("not a process ID"));
        assert!(signal_one(proc_root, pid, start_time, "SEGV").expect_err("bad signal").contains("not a signal"));

        let outcome = signal_one(proc_root, pid, start_time, "KILL").expect("signalled");
        assert_eq!((outcome.signal, outcome.signalled, outcome.pids), (libc::SIGKILL, 1, vec![pid]));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().expect("wait").signal(), Some(libc::SIGKILL));
        let gone = signal_one(proc_root, pid, start_time, "TERM").expect_err("reaped");
        assert!(gone.contains("does not exist") || gone.contains("no longer the one listed"), "{gone}");
    }

    #[test]
    fn signals_by_name_with_a_count() {
        // A copy of `sleep` under a name no other process has, so only the test's own children match.
        let dir = tempfile::tempdir().expect("tempdir");
        let program = dir.path().join("steward-test-sleeper");
        std::fs::copy("/bin/sleep", &program).expect("copy sleep");
        let mut children: Vec<_> = (0..2).map(|_| spawn_retrying(&program)).collect();
        let outcome = signal_by_name(Path::new("/proc"), "steward-test-sleeper", "TERM").expect("signalled");
        assert_eq!((outcome.matched, outcome.signalled), (2, 2), "{outcome:?}");
        assert!(outcome.errors.is_empty());
        for child in &mut children {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(child.wait().expect("wait").signal(), Some(libc::SIGTERM));
        }
        let none = signal_by_name(Path::new("/proc"), "steward-no-such-process", "TERM").expect("nothing matched");
        assert_eq!((none.matched, none.signalled), (0, 0));
        assert!(signal_by_name(Path::new("/proc"), "a/b", "TERM").is_err());
    }

    /// Starts a freshly copied program: another test thread forking at the moment of the copy may briefly hold
    /// it open for writing (`ETXTBSY`).
    fn spawn_retrying(program: &Path) -> std::process::Child {
        for _ in 0..50 {
            match Command::new(program).arg("300").spawn() {
                Ok(child) => return child,
                Err(error) if error.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => panic!("cannot start {}: {error}", program.display()),
            }
        }
        panic!("{} stayed busy", program.display());
    }
}
