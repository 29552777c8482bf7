//! Shell sessions and streamed commands end to end: `steward shell` runs inside a pseudo-terminal this test
//! opens (as a user's terminal would be), against a real server and the real `steward-agent` over TLS on
//! loopback; and `steward run --stream`.

#![allow(clippy::unwrap_used)] // Test helpers fail the test on any surprise.

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Agent, Server, eventually, steward_binary};

const WAIT: Duration = Duration::from_secs(30);

/// A server with one enrolled agent, online; returns the system's ID and name.
fn server_with_agent(temp: &std::path::Path) -> (Server, Agent, String, String) {
    let server = Server::start();
    let token = server.enrollment_token(1);
    let agent = Agent::start(&server.api_url, Some(&token), &temp.join("agent"));
    let id = eventually("the agent enrolls", WAIT, || agent.system_id());
    let name = eventually("the system is online", WAIT, || {
        let system = server.api().get(&format!("/systems/{id}")).body;
        (system["state"] == "online").then(|| system["name"].as_str().unwrap().to_string())
    });
    (server, agent, id, name)
}

/// `steward` running with a pseudo-terminal as its controlling terminal, as in a user's terminal window.
struct InTerminal {
    master: File,
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl InTerminal {
    fn start(server: &Server, args: &[&str], rows: u16, cols: u16) -> Self {
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: openpty writes two descriptors; name and termios may be null.
        let result = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
        assert_eq!(result, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned by nothing else.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut command = Command::new(steward_binary());
        command
            .args(args)
            .env("STEWARD_SERVER", &server.api_url)
            .env("STEWARD_TOKEN", &server.token)
            .env("TERM", "xterm")
            .env_remove("STEWARD_CA_FILE")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start steward in a terminal");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let shared = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(count) = reader.read(&mut buffer) {
                if count == 0 {
                    break;
                }
                shared.lock().unwrap().extend_from_slice(&buffer[..count]);
            }
        });
        Self { master, child, screen }
    }

    fn type_text(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until the screen shows `text` (after what it showed when `since` was taken).
    fn wait_for(&self, since: usize, text: &str) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.screen().get(since..).unwrap_or_default().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the terminal never showed {text:?}; it shows:\n{}", self.screen());
    }

    fn mark(&self) -> usize {
        self.screen().len()
    }

    fn resize(&self, rows: u16, cols: u16) {
        let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads the winsize, which lives across the call; the kernel signals SIGWINCH.
        assert_eq!(unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ as _, &size) }, 0);
    }

    /// The pty's local modes (what `stty` shows as icanon, echo, ...).
    fn local_modes(&self) -> libc::tcflag_t {
        // SAFETY: a zeroed termios is valid for tcgetattr to fill in.
        let mut modes: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes into the structure, which lives across the call.
        assert_eq!(unsafe { libc::tcgetattr(self.master.as_raw_fd(), &mut modes) }, 0);
        modes.c_lflag
    }

    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited by itself");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("steward shell did not exit; the terminal shows:\n{}", self.screen());
    }
}

impl Drop for InTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_shell_session_runs_in_a_terminal_resizes_takes_ctrl_c_and_is_audited() {
    let temp = tempfile::tempdir().unwrap();
    let (server, _agent, id, name) = server_with_agent(temp.path());
    let mut terminal = InTerminal::start(&server, &["shell", &name], 30, 100);
    assert!(terminal.local_modes() & libc::ICANON != 0, "a fresh terminal is in canonical mode");

    // The remote shell's terminal has this one's size, then follows it when the window changes.
    let mark = terminal.mark();
    terminal.type_text("stty size\n");
    terminal.wait_for(mark, "30 100");
    terminal.resize(41, 121);
    let deadline = Instant::now() + WAIT;
    loop {
        let mark = terminal.mark();
        terminal.type_text("stty size\n");
        let shown = Instant::now() + Duration::from_secs(2);
        while Instant::now() < shown && !terminal.screen()[mark..].contains("\n") {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        if terminal.screen()[mark..].contains("41 121") {
            break;
        }
        assert!(Instant::now() < deadline, "the resize never arrived:\n{}", terminal.screen());
    }

    // Ctrl-C interrupts the remote foreground command, not this client: the shell answers right away.
    let mark = terminal.mark();
    terminal.type_text("echo started-$((40+2)); sleep 100\n");
    terminal.wait_for(mark, "started-42");
    std::thread::sleep(Duration::from_millis(300));
    terminal.type_text("\x03");
    let mark = terminal.mark();
    terminal.type_text("echo back-$((1+1))\n");
    terminal.wait_for(mark, "back-2");

    let mark = terminal.mark();
    terminal.type_text("echo hello; tty; exit 3\n");
    terminal.wait_for(mark, "hello");
    assert_eq!(terminal.wait_exit(), 3, "the shell's exit code is the client's:\n{}", terminal.screen());
    let screen = terminal.screen();
    assert!(screen[mark..].contains("/dev/pts/"), "{screen}");
    assert!(terminal.local_modes() & libc::ICANON != 0, "the terminal's mode is restored on exit");

    // One record when it began (who, which system, as whom), one when it ended; what was typed is in neither.
    let api = server.api();
    let records = api.get("/audit?action=system.shell").body["items"].as_array().unwrap().clone();
    let started: Vec<_> = records.iter().filter(|record| record["action"] == "system.shell").collect();
    assert_eq!(started.len(), 1, "{records:?}");
    assert_eq!(started[0]["actor"], "admin");
    assert_eq!(started[0]["outcome"], "success");
    assert_eq!(started[0]["details"]["system_id"], id.as_str());
    let ended = api.get("/audit?action=system.shell_end").body["items"].as_array().unwrap().clone();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["details"]["exit_code"], 3);
    assert_eq!(ended[0]["details"]["ended"], "exited");
    assert!(ended[0]["details"]["duration_ms"].as_u64().unwrap() > 0);
    let everything = serde_json::to_string(&api.get("/audit?limit=200").body).unwrap();
    assert!(!everything.contains("started-"), "keystrokes are in the audit trail");
}

#[test]
fn shells_as_another_user_refusals_and_streamed_commands() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true runs the tests as root");
        eprintln!("skipped: switching users needs the agent to run as root");
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let (server, agent, id, name) = server_with_agent(temp.path());

    let mut terminal = InTerminal::start(&server, &["shell", &name, "--user", "nobody"], 24, 80);
    let mark = terminal.mark();
    terminal.type_text("id -un; echo home-$HOME\n");
    terminal.wait_for(mark, "nobody\r\n");
    terminal.wait_for(mark, "home-/nonexistent");
    terminal.type_text("exit\n");
    assert_eq!(terminal.wait_exit(), 0);
    let records = server.api().get("/audit?action=system.shell").body["items"].as_array().unwrap().clone();
    assert!(records.iter().any(|record| record["action"] == "system.shell" && record["details"]["user"] == "nobody"));

    // A user the system does not have: refused before any WebSocket, with the reason.
    let output = server.cli(&["shell", &name, "--user", "steward-no-such-user"]);
    assert_eq!(output.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no user \"steward-no-such-user\""), "{output:?}");

    // The endpoint refuses a missing token, and a plain GET that is not a WebSocket.
    let api = server.api();
    let anonymous = api.with_token(None).get(&format!("/systems/{id}/shell"));
    assert_eq!((anonymous.status, anonymous.error_code()), (401, "unauthorized"), "{:?}", anonymous.body);
    let plain = api.get(&format!("/systems/{id}/shell"));
    assert_eq!(plain.status, 400, "{:?}", plain.body);
    assert!(plain.error_message().contains("WebSocket"), "{:?}", plain.body);

    // Streamed commands: both streams apart, the exit code, and another user.
    let output = server.cli(&["run", &name, "--stream", "--", "sh", "-c", "echo out; echo err >&2; exit 4"]);
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "err\n");
    let output = server.cli(&["run", &name, "--user", "nobody", "--", "id", "-un"]);
    assert_eq!((output.status.code(), String::from_utf8_lossy(&output.stdout).as_ref()), (Some(0), "nobody\n"));
    // More output than any buffer on the way holds arrives whole (the agent reads only as the client takes it).
    let output = server.cli(&["run", &name, "--stream", "--", "head", "-c", "20000000", "/dev/zero"]);
    assert_eq!((output.status.code(), output.stdout.len()), (Some(0), 20_000_000));
    assert!(output.stdout.iter().all(|&byte| byte == 0));
    let output = server.cli(&["run", &name, "--stream", "--timeout", "1", "--", "sleep", "100"]);
    assert_eq!(output.status.code(), Some(124), "{output:?}");
    let streamed = api.get("/audit?action=system.command").body["items"].as_array().unwrap().clone();
    assert!(streamed.iter().any(|record| record["details"]["user"] == "nobody"), "{streamed:?}");

    // An offline system: refused at once, naming it.
    drop(agent);
    eventually("offline", WAIT, || (api.get(&format!("/systems/{id}")).body["state"] == "offline").then_some(()));
    let output = server.cli(&["shell", &name]);
    assert_eq!(output.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&name) && stderr.contains("not connected"), "{stderr}");
    let records = api.get("/audit?action=system.shell").body["items"].as_array().unwrap().clone();
    let refused: Vec<_> =
        records.iter().filter(|record| record["action"] == "system.shell" && record["outcome"] == "failure").collect();
    assert!(
        refused.iter().any(|record| record["details"]["error"]["message"].as_str().unwrap().contains("not connected"))
    );
    assert!(refused.iter().any(|record| record["details"]["user"] == "steward-no-such-user"), "{refused:?}");
}
