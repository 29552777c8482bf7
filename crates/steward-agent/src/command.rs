//! Running one command for the server: the program of `argv` itself (a shell only if `argv` names one), with the
//! request's variables added to the agent's environment, its input written to standard input and then closed,
//! and its output captured.
//!
//! The command runs in a process group of its own, so the timeout kills everything it started, not only the
//! program itself (`sh -c 'sleep 600'` leaves a `sleep` that would keep the output pipes open). The same happens
//! when the agent stops while the command runs. Each output stream is kept up to
//! [`MAX_COMMAND_OUTPUT_BYTES`]; what comes after is read and thrown away, so a chatty command never blocks on a
//! full pipe. The command counts as finished when it has exited and both pipes are closed: a background process
//! that keeps them open holds the answer back until the timeout.
//!
//! Everything runs on the agent's single runtime thread: the pipes are non-blocking and the exit is noticed
//! through the runtime's child-process support, so a running command costs no thread and no polling.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use steward_protocol::{CommandOutcome, CommandRequest, MAX_COMMAND_OUTPUT_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// After the timeout killed the command's group, how long to wait for the pipes to close: a process that left
/// the group (a daemon calling `setsid`) may hold them open for good.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);

/// Runs `request` to its end or its timeout. An error (a message for the server's caller) means the command did
/// not run: the request is not valid, or the program could not be started.
pub async fn run(request: CommandRequest) -> Result<CommandOutcome, String> {
    check(&request)?;
    let CommandRequest { argv, environment, stdin, timeout_seconds, working_directory } = request;
    let program = &argv[0];
    let mut command = tokio::process::Command::new(program);
    command
        .args(&argv[1..])
        .envs(&environment)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(directory) = &working_directory {
        // Checked first: a missing directory would otherwise fail the start as "no such file", which reads as
        // a missing program.
        match std::fs::metadata(directory) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => return Err(format!("the working directory {directory:?} is not a directory")),
            Err(error) => return Err(format!("the working directory {directory:?} is not usable: {error}")),
        }
        command.current_dir(directory);
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(|error| format!("cannot run {program:?}: {error}"))?;
    let mut group = ProcessGroup::of(&child);
    let input = child.stdin.take().zip(stdin);
    let mut stdout_pipe = child.stdout.take();
    let mut stderr_pipe = child.stderr.take();
    let mut stdout = Capture::default();
    let mut stderr = Capture::default();

    let finished = tokio::time::timeout(Duration::from_secs(u64::from(timeout_seconds)), async {
        let feed = async move {
            if let Some((mut pipe, text)) = input {
                // A command that does not read its input closes the pipe early (EPIPE): not an error here.
                let _ = pipe.write_all(text.as_bytes()).await;
                // Dropping the pipe closes it: the command sees the end of its input.
            }
        };
        tokio::join!(feed, drain(stdout_pipe.as_mut(), &mut stdout), drain(stderr_pipe.as_mut(), &mut stderr));
        child.wait().await
    })
    .await;
    let (status, timed_out) = match finished {
        Ok(status) => (status, false),
        Err(_elapsed) => {
            group.kill();
            let _ = tokio::time::timeout(DRAIN_AFTER_KILL, async {
                tokio::join!(drain(stdout_pipe.as_mut(), &mut stdout), drain(stderr_pipe.as_mut(), &mut stderr))
            })
            .await;
            (child.wait().await, true)
        }
    };
    // Reaped (or failing to be): the group's ID may be reused from here on, so it must not be signalled again.
    group.disarm();
    let status = status.map_err(|error| format!("cannot learn how {program:?} ended: {error}"))?;
    Ok(CommandOutcome {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout: String::from_utf8_lossy(&stdout.kept).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.kept).into_owned(),
        stdout_truncated: stdout.truncated,
        stderr_truncated: stderr.truncated,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Refuses what cannot be run as asked, naming what is wrong.
fn check(request: &CommandRequest) -> Result<(), String> {
    match request.argv.first() {
        None => return Err("argv is empty: it must name a program".into()),
        Some(program) if program.is_empty() => return Err("argv[0] is empty: it must name a program".into()),
        Some(_) => {}
    }
    if let Some(index) = request.argv.iter().position(|argument| argument.contains('\0')) {
        return Err(format!("argv[{index}] contains a NUL character"));
    }
    for (name, value) in &request.environment {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(format!("environment variable name {name:?} is not usable (empty, or with '=' or NUL)"));
        }
        if value.contains('\0') {
            return Err(format!("environment variable {name} contains a NUL character"));
        }
    }
    if request.working_directory.as_ref().is_some_and(|directory| directory.is_empty() || directory.contains('\0')) {
        return Err("the working directory is empty or contains a NUL character".into());
    }
    if request.timeout_seconds == 0 {
        return Err("timeout_seconds must be at least 1".into());
    }
    Ok(())
}

/// One output stream: the first [`MAX_COMMAND_OUTPUT_BYTES`], and whether there was more.
#[derive(Default)]
struct Capture {
    kept: Vec<u8>,
    truncated: bool,
}

impl Capture {
    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_COMMAND_OUTPUT_BYTES.saturating_sub(self.kept.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Reads `pipe` to its end into `capture`; a read error ends it like the end of the stream.
async fn drain<R: AsyncRead + Unpin>(pipe: Option<&mut R>, capture: &mut Capture) {
    let Some(pipe) = pipe else { return };
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(count) => capture.push(&buffer[..count]),
        }
    }
}

/// The command's process group (its leader is the command, started with `process_group(0)`): killed when the
/// timeout passes, and when the run is dropped before the command was reaped (the agent is stopping).
struct ProcessGroup {
    id: Option<libc::pid_t>,
}

impl ProcessGroup {
    fn of(child: &tokio::process::Child) -> Self {
        Self { id: child.id().and_then(|id| libc::pid_t::try_from(id).ok()) }
    }

    fn kill(&mut self) {
        if let Some(id) = self.id {
            // SAFETY: kill(2) with a negative ID signals that process group; the leader is our unreaped child,
            // so the ID cannot have been reused.
            if unsafe { libc::kill(-id, libc::SIGKILL) } != 0 {
                tracing::debug!(group = id, error = %std::io::Error::last_os_error(), "cannot kill a command's group");
            }
        }
    }

    fn disarm(&mut self) {
        self.id = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn request(argv: &[&str]) -> CommandRequest {
        CommandRequest {
            argv: argv.iter().map(|argument| argument.to_string()).collect(),
            environment: BTreeMap::new(),
            stdin: None,
            timeout_seconds: 30,
            working_directory: None,
        }
    }

    #[tokio::test]
    async fn reports_output_and_exit_code() {
        let outcome = run(request(&["sh", "-c", "echo out; echo err >&2; exit 3"])).await.expect("runs");
        assert_eq!(outcome.exit_code, Some(3));
        assert_eq!(outcome.signal, None);
        assert!(!outcome.timed_out);
        assert_eq!(outcome.stdout, "out\n");
        assert_eq!(outcome.stderr, "err\n");
        assert!(!outcome.stdout_truncated && !outcome.stderr_truncated);

        // No shell unless asked for: the metacharacters reach the program as they are.
        let outcome = run(request(&["echo", "$HOME", "a;b", "*"])).await.expect("runs");
        assert_eq!(outcome.stdout, "$HOME a;b *\n");
        assert_eq!(outcome.exit_code, Some(0));
    }

    #[tokio::test]
    async fn passes_input_environment_and_working_directory() {
        let directory = tempfile::tempdir().expect("tempdir");
        let mut with_input = request(&["sh", "-c", "cat; echo \"[$GREETING]\"; pwd"]);
        with_input.stdin = Some("line one\nline two\n".into());
        with_input.environment.insert("GREETING".into(), "hello world".into());
        with_input.working_directory = Some(directory.path().display().to_string());
        let outcome = run(with_input).await.expect("runs");
        let expected = format!("line one\nline two\n[hello world]\n{}\n", directory.path().display());
        assert_eq!(outcome.stdout, expected);
        // The agent's own environment is kept.
        let outcome = run(request(&["sh", "-c", "test -n \"$PATH\""])).await.expect("runs");
        assert_eq!(outcome.exit_code, Some(0));
        // Input is optional, and a command that ignores it does not fail the run.
        let mut ignored = request(&["true"]);
        ignored.stdin = Some("x".repeat(1 << 20));
        assert_eq!(run(ignored).await.expect("runs").exit_code, Some(0));
    }

    #[tokio::test]
    async fn keeps_a_bounded_part_of_the_output_and_reads_the_rest() {
        // Three times the limit on stdout: the command must not block on the full pipe, and exits normally.
        let script = "head -c 3145728 /dev/zero | tr '\\0' 'a'; echo tail >&2";
        let outcome = run(request(&["sh", "-c", script])).await.expect("runs");
        assert_eq!(outcome.exit_code, Some(0));
        assert_eq!(outcome.stdout.len(), MAX_COMMAND_OUTPUT_BYTES);
        assert!(outcome.stdout.bytes().all(|byte| byte == b'a'));
        assert!(outcome.stdout_truncated);
        assert_eq!(outcome.stderr, "tail\n");
        assert!(!outcome.stderr_truncated);

        // Bytes that are not UTF-8 are replaced, not refused.
        let outcome = run(request(&["printf", "ok \\377\\n"])).await.expect("runs");
        assert_eq!(outcome.stdout, "ok \u{fffd}\n");
    }

    #[tokio::test]
    async fn kills_the_whole_group_at_the_timeout() {
        let marker = tempfile::tempdir().expect("tempdir");
        let pid_file = marker.path().join("sleep.pid");
        // The shell starts a sleep in the background and waits: killing the shell alone would leave the sleep
        // (and the open pipes) behind.
        let script = format!("echo started; sleep 300 & echo $! > {}; wait", pid_file.display());
        let mut slow = request(&["sh", "-c", &script]);
        slow.timeout_seconds = 1;
        let outcome = run(slow).await.expect("runs");
        assert!(outcome.timed_out);
        assert_eq!(outcome.exit_code, None);
        assert_eq!(outcome.signal, Some(libc::SIGKILL));
        assert_eq!(outcome.stdout, "started\n", "output before the timeout is kept");
        let sleep: libc::pid_t = std::fs::read_to_string(&pid_file).expect("pid").trim().parse().expect("a pid");
        // The background sleep was in the group: it ends (its exit may lag the signal by a moment), leaving at
        // most a zombie until its new parent reaps it.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{sleep}/stat")).unwrap_or_default();
            let status = state.rsplit_once(") ").and_then(|(_, rest)| rest.get(..1)).unwrap_or("");
            if state.is_empty() || matches!(status, "Z" | "X") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the background sleep survived: {state}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn refuses_what_cannot_run_and_names_it() {
        let missing = run(request(&["steward-no-such-program"])).await.expect_err("no such program");
        assert!(missing.contains("cannot run \"steward-no-such-program\""), "{missing}");
        assert!(missing.contains("No such file"), "{missing}");
        assert!(run(request(&[])).await.expect_err("empty argv").contains("argv is empty"));
        assert!(run(request(&["echo", "a\0b"])).await.expect_err("NUL").contains("argv[1] contains a NUL"));
        let mut bad_name = request(&["true"]);
        bad_name.environment.insert("A=B".into(), "x".into());
        assert!(run(bad_name).await.expect_err("bad name").contains("\"A=B\" is not usable"));
        let mut nowhere = request(&["true"]);
        nowhere.working_directory = Some("/nonexistent/steward".into());
        let error = run(nowhere).await.expect_err("no directory");
        assert!(error.contains("working directory \"/nonexistent/steward\""), "{error}");
        let mut no_time = request(&["true"]);
        no_time.timeout_seconds = 0;
        assert!(run(no_time).await.expect_err("no time").contains("timeout_seconds"));
    }
}
