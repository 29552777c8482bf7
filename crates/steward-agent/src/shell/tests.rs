//! Sessions driven as the server drives them, through `Sessions::handle` and the answers queue.

use std::path::PathBuf;

use steward_protocol::session::{SessionExit, TerminalSize, TerminalSpec};

use super::*;
use crate::requests::Requests;

struct Driver {
    sessions: Sessions,
    answers: Answers,
    received: mpsc::Receiver<AgentMessage>,
    next_id: u64,
}

impl Driver {
    fn new() -> Self {
        let (answers, received) = Requests::answers();
        Self { sessions: Sessions::new(PathBuf::from("/")), answers, received, next_id: 0 }
    }

    /// Sends `request` and waits for its answer.
    async fn ask(&mut self, request: SessionRequest) -> Result<SessionResponse, String> {
        self.next_id += 1;
        let id = self.next_id;
        let message = match self.sessions.handle(id, request, &self.answers) {
            Some(message) => message,
            None => self.received.recv().await.expect("an answer"),
        };
        let AgentMessage::Response { id: answered, response } = message else { panic!("not a response") };
        assert_eq!(answered, id);
        match response {
            AgentResponse::Session(response) => Ok(response),
            AgentResponse::Error { message } => Err(message),
            other => panic!("not a session answer: {other:?}"),
        }
    }

    /// Reads until the exit: everything written to each stream, and how it ended.
    async fn read_to_exit(&mut self, session: u64) -> (Vec<u8>, Vec<u8>, SessionExit) {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        loop {
            let SessionResponse::Output { stdout: out, stderr: err, exit } =
                self.ask(SessionRequest::Read { session }).await.expect("output")
            else {
                panic!("not output")
            };
            stdout.extend(decode_bytes(&out, SESSION_BUFFER_BYTES).expect("base64"));
            stderr.extend(decode_bytes(&err, SESSION_BUFFER_BYTES).expect("base64"));
            if let Some(exit) = exit {
                return (stdout, stderr, exit);
            }
        }
    }
}

fn opened(response: Result<SessionResponse, String>) -> u64 {
    match response {
        Ok(SessionResponse::Opened { session, .. }) => session,
        other => panic!("not opened: {other:?}"),
    }
}

#[tokio::test]
async fn a_terminal_session_echoes_input_and_reports_the_exit_code() {
    let mut driver = Driver::new();
    let terminal = TerminalSpec { size: TerminalSize { rows: 30, cols: 100 }, term: "dumb".into() };
    let open = SessionOpen { terminal: Some(terminal), argv: Some(vec!["/bin/sh".into()]), ..SessionOpen::default() };
    let session = opened(driver.ask(SessionRequest::Open(open)).await);
    let resized = driver.ask(SessionRequest::Resize { session, size: TerminalSize { rows: 41, cols: 132 } }).await;
    assert_eq!(resized, Ok(SessionResponse::Resized));
    let input = b"stty size; tty; echo done-$((1+2)); exit 3\n";
    let written = driver.ask(SessionRequest::Input { session, data: encode_bytes(input) }).await;
    assert_eq!(written, Ok(SessionResponse::Written { bytes: input.len() as u64 }));
    let (stdout, stderr, exit) = driver.read_to_exit(session).await;
    let text = String::from_utf8_lossy(&stdout);
    assert!(text.contains("41 132"), "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("done-3"), "{text}");
    assert!(stderr.is_empty());
    assert_eq!(exit, SessionExit { exit_code: Some(3), signal: None, timed_out: false });
    // The session is gone once its exit was read.
    let gone = driver.ask(SessionRequest::Read { session }).await.expect_err("no such session");
    assert!(gone.contains("no session"), "{gone}");
}

#[tokio::test]
async fn a_command_streams_both_outputs_apart_and_times_out() {
    let mut driver = Driver::new();
    let open = SessionOpen {
        argv: Some(vec!["sh".into(), "-c".into(), "echo out; echo err >&2; read line; echo got-$line".into()]),
        ..SessionOpen::default()
    };
    let session = opened(driver.ask(SessionRequest::Open(open)).await);
    driver.ask(SessionRequest::Input { session, data: encode_bytes(b"x\n") }).await.expect("written");
    assert_eq!(driver.ask(SessionRequest::CloseInput { session }).await, Ok(SessionResponse::InputClosed));
    let (stdout, stderr, exit) = driver.read_to_exit(session).await;
    assert_eq!(stdout, b"out\ngot-x\n");
    assert_eq!(stderr, b"err\n");
    assert_eq!(exit.exit_code, Some(0));

    let open = SessionOpen {
        argv: Some(vec!["sleep".into(), "100".into()]),
        timeout_seconds: Some(1),
        ..SessionOpen::default()
    };
    let session = opened(driver.ask(SessionRequest::Open(open)).await);
    let (_, _, exit) = driver.read_to_exit(session).await;
    assert_eq!(exit, SessionExit { exit_code: None, signal: Some(libc::SIGKILL), timed_out: true });
}

#[tokio::test]
async fn bad_opens_and_unknown_sessions_are_refused_with_the_reason() {
    let mut driver = Driver::new();
    let missing = SessionOpen { argv: Some(vec!["steward-no-such-program".into()]), ..SessionOpen::default() };
    let error = driver.ask(SessionRequest::Open(missing)).await.expect_err("no such program");
    assert!(error.contains("no program \"steward-no-such-program\""), "{error}");
    let nobody = SessionOpen { user: Some("steward-no-such-user".into()), ..SessionOpen::default() };
    let error = driver.ask(SessionRequest::Open(nobody)).await.expect_err("no such user");
    assert!(error.contains("no user"), "{error}");
    let error = driver.ask(SessionRequest::Read { session: 99 }).await.expect_err("no such session");
    assert!(error.contains("no session 99"), "{error}");
}

#[tokio::test]
async fn closing_hangs_up_on_the_process_group() {
    let mut driver = Driver::new();
    let marker = tempfile::tempdir().expect("tempdir");
    let pid_file = marker.path().join("pid");
    let script = format!("sleep 100 & echo $! > {}; wait", pid_file.display());
    let open = SessionOpen { argv: Some(vec!["sh".into(), "-c".into(), script]), ..SessionOpen::default() };
    let session = opened(driver.ask(SessionRequest::Open(open)).await);
    let pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse::<i32>()
        {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(driver.ask(SessionRequest::Close { session }).await, Ok(SessionResponse::Closed));
    // The background `sleep` was in the session's group: it is killed too (a zombie until init reaps it).
    let gone = || {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        state.is_empty() || state.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z'))
    };
    for _ in 0..200 {
        if gone() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the session's background process {pid} survived the close");
}
