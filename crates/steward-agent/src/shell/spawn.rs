//! Starting a session's process: the account it runs as (from `/etc/passwd` and `/etc/group`), a pseudo-terminal
//! (`openpty`) or pipes, and the child itself: a session of its own (`setsid`), the terminal as its controlling
//! terminal (`TIOCSCTTY`), then the account's groups, group and user (`setgroups`, `setgid`, `setuid`).
//!
//! Everything that reads a file or allocates (the account and its supplementary groups) happens before the fork:
//! between fork and exec only async-signal-safe system calls run, since the agent has other threads.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;

use steward_protocol::session::{SessionExit, SessionOpen, TerminalSize};
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

/// The `PATH` a session starts with.
const SESSION_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A user of the system, as a session needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    /// Supplementary groups (those of `/etc/group` that list the user, and the primary group).
    pub groups: Vec<u32>,
}

impl Account {
    /// The account called `name` (`Some`), or the one the agent runs as (`None`), on the system under `root`.
    pub fn find(root: &Path, name: Option<&str>) -> Result<Self, String> {
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
        // SAFETY: getuid(2) cannot fail and has no preconditions.
        let own_uid = unsafe { libc::getuid() };
        let mut found = None;
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            let [user, _, uid, gid, _, home, shell] = fields[..] else { continue };
            let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>()) else { continue };
            let matches = match name {
                Some(name) => user == name,
                None => uid == own_uid,
            };
            if matches {
                found = Some(Account {
                    name: user.to_string(),
                    uid,
                    gid,
                    home: home.to_string(),
                    shell: shell.to_string(),
                    groups: Vec::new(),
                });
                break;
            }
        }
        let mut account = match (found, name) {
            (Some(account), _) => account,
            (None, Some(name)) => return Err(format!("there is no user {name:?} on this system")),
            // The agent's own user without an entry (a container, say): what a shell needs still has a value.
            (None, None) => Account {
                name: own_uid.to_string(),
                uid: own_uid,
                // SAFETY: getgid(2) cannot fail and has no preconditions.
                gid: unsafe { libc::getgid() },
                home: "/".into(),
                shell: String::new(),
                groups: Vec::new(),
            },
        };
        let group_file = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
        account.groups.push(account.gid);
        for line in group_file.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            let [_, _, gid, members] = fields[..] else { continue };
            let Ok(gid) = gid.parse::<u32>() else { continue };
            if members.split(',').any(|member| member == account.name) && !account.groups.contains(&gid) {
                account.groups.push(gid);
            }
        }
        Ok(account)
    }

    /// The login shell, or `/bin/sh` when the entry names none, one that is not there, or one that `/etc/shells`
    /// does not list (`nologin`, `false`): the operator asked for a shell as this user, and the agent (root) may
    /// start any program as any user anyway, so a service account's "no login" does not stand in the way.
    fn shell_program(&self) -> String {
        let listed = match std::fs::read_to_string("/etc/shells") {
            Ok(shells) => shells.lines().any(|line| line.trim() == self.shell),
            Err(_) => true,
        };
        if !self.shell.is_empty() && listed && Path::new(&self.shell).is_file() {
            self.shell.clone()
        } else {
            "/bin/sh".into()
        }
    }
}

/// The group ID of `tty`, which owns terminals, if the system has one.
fn tty_group(root: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(root.join("etc/group")).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some("tty")).then(|| fields.nth(1)?.parse().ok())?
    })
}

/// A started session process and what the agent holds of it.
pub struct Spawned {
    pub child: Child,
    /// The process ID, which is also its process group and session ID.
    pub pid: u32,
    pub io: SessionIo,
}

/// The session's side of the process's input and output.
pub enum SessionIo {
    /// The pty's master side, non-blocking: input and output (both streams) in one.
    Terminal(AsyncFd<OwnedFd>),
    Pipes {
        stdin: Option<ChildStdin>,
        stdout: Option<ChildStdout>,
        stderr: Option<ChildStderr>,
    },
}

/// Starts the process `open` describes, as `account`.
pub fn spawn(open: &SessionOpen, account: &Account, root: &Path) -> Result<Spawned, String> {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    let privileged = unsafe { libc::geteuid() } == 0;
    // SAFETY: as above.
    let switch_user = account.uid != unsafe { libc::getuid() };
    if switch_user && !privileged {
        return Err(format!("the agent does not run as root and cannot start a session as {:?}", account.name));
    }
    let (program, arg0, arguments) = match &open.argv {
        Some(argv) => {
            let (program, arguments) = argv.split_first().ok_or("the command is empty")?;
            (program.clone(), None, arguments.to_vec())
        }
        None => {
            let shell = account.shell_program();
            let name = Path::new(&shell).file_name().map(|name| name.to_string_lossy().into_owned());
            // A leading dash makes it a login shell, as login(1) and sshd start it.
            (shell.clone(), Some(format!("-{}", name.unwrap_or_else(|| "sh".into()))), Vec::new())
        }
    };
    let mut command = Command::new(&program);
    command.args(&arguments);
    if let Some(arg0) = arg0 {
        command.arg0(arg0);
    }
    command.env_clear();
    command.env("HOME", &account.home).env("USER", &account.name).env("LOGNAME", &account.name);
    command.env("SHELL", account.shell_program()).env("PATH", SESSION_PATH);
    if let Ok(lang) = std::env::var("LANG") {
        command.env("LANG", lang);
    }
    if let Some(terminal) = &open.terminal {
        command.env("TERM", &terminal.term);
    }
    command.envs(&open.environment);
    let directory = match (&open.working_directory, &open.argv) {
        (Some(directory), _) => directory.clone(),
        (None, None) if Path::new(&account.home).is_dir() => account.home.clone(),
        (None, _) => "/".into(),
    };
    command.current_dir(&directory);

    let master = match &open.terminal {
        Some(terminal) => {
            let (master, slave) = open_pty(terminal.size)?;
            if privileged {
                // As login(1) leaves it: the user owns the terminal, the tty group may write to it.
                let group = tty_group(root).unwrap_or(account.gid);
                // SAFETY: fchown/fchmod on a descriptor we own.
                unsafe {
                    libc::fchown(slave.as_raw_fd(), account.uid, group);
                    libc::fchmod(slave.as_raw_fd(), 0o620);
                }
            }
            let clone = |what: &str| {
                slave.try_clone().map_err(|error| format!("cannot duplicate the terminal for {what}: {error}"))
            };
            command.stdin(Stdio::from(clone("input")?));
            command.stdout(Stdio::from(clone("output")?));
            command.stderr(Stdio::from(slave));
            Some(master)
        }
        None => {
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
            None
        }
    };
    let with_terminal = master.is_some();
    let groups: Vec<libc::gid_t> = account.groups.clone();
    let (uid, gid) = (account.uid, account.gid);
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system calls on values
    // prepared before the fork; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if with_terminal && libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if switch_user
                && (libc::setgroups(groups.len(), groups.as_ptr()) < 0
                    || libc::setgid(gid) < 0
                    || libc::setuid(uid) < 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => format!("there is no program {program:?} (or no directory {directory:?})"),
        _ => format!("cannot start {program:?} as {:?}: {error}", account.name),
    })?;
    // The command holds our copies of the terminal's slave side: without them, the master reads end of file
    // once the session's processes closed theirs.
    drop(command);
    let pid = child.id().ok_or("the session's process ended before it could be watched")?;
    let io = match master {
        // SAFETY: `master` owns its descriptor and moves into the AsyncFd, which keeps it open, unchanged, until
        // the AsyncFd is dropped; nothing else holds or closes that descriptor.
        Some(master) => SessionIo::Terminal(
            unsafe { AsyncFd::register(master) }
                .map_err(|error| format!("cannot watch the terminal: {}", std::io::Error::from(error)))?,
        ),
        None => {
            SessionIo::Pipes { stdin: child.stdin.take(), stdout: child.stdout.take(), stderr: child.stderr.take() }
        }
    };
    Ok(Spawned { child, pid, io })
}

/// A new pseudo-terminal of `size`: the master (non-blocking, close-on-exec) and the slave (close-on-exec: the
/// child gets it as its standard streams only).
fn open_pty(size: TerminalSize) -> Result<(OwnedFd, OwnedFd), String> {
    let mut master = -1;
    let mut slave = -1;
    let window = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two descriptors into the integers given; name and termios may be null.
    let result = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &window) };
    if result < 0 {
        return Err(format!("cannot open a pseudo-terminal: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: openpty succeeded, so both are open descriptors that nothing else owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fcntl on an open descriptor we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: as above.
    let flags = unsafe { libc::fcntl(master.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(format!("cannot make the terminal non-blocking: {}", std::io::Error::last_os_error()));
    }
    Ok((master, slave))
}

/// Sets the terminal's window size; the kernel sends SIGWINCH to its foreground process group.
pub fn resize(master: &OwnedFd, size: TerminalSize) -> Result<(), String> {
    let window = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which lives across the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ as _, &window) } < 0 {
        return Err(format!("cannot resize the terminal: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Signals the session's whole process group (its leader is the session's process).
pub fn signal_group(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) with a negative ID signals that process group; the leader is our unreaped child or was
    // reaped by us just now, so the group is still the session's.
    unsafe { libc::kill(-pid, signal) };
}

/// How the process ended, as the protocol says it.
pub fn exit_of(status: std::process::ExitStatus, timed_out: bool) -> SessionExit {
    SessionExit { exit_code: status.code(), signal: status.signal(), timed_out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_come_from_the_password_and_group_files() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("etc")).expect("mkdir");
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nbroken line\nalice:x:1000:100::/home/alice:/bin/zsh\n",
        )
        .expect("passwd");
        std::fs::write(root.path().join("etc/group"), "users:x:100:\nwheel:x:10:bob,alice\ntty:x:5:\n").expect("group");
        let alice = Account::find(root.path(), Some("alice")).expect("alice");
        assert_eq!((alice.uid, alice.gid, alice.home.as_str()), (1000, 100, "/home/alice"));
        assert_eq!(alice.groups, [100, 10]);
        let missing = Account::find(root.path(), Some("mallory")).expect_err("no such user");
        assert!(missing.contains("no user \"mallory\""), "{missing}");
        assert_eq!(tty_group(root.path()), Some(5));
    }
}
