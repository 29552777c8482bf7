//! Sessions for the server (`steward_protocol::session` has the conversation): an interactive shell on a
//! pseudo-terminal, or a command whose output streams. Each open session is a task of its own that owns the
//! process and its terminal or pipes, and takes the session's requests in order from a short queue.
//!
//! ```text
//!  conversation ──(Input, Resize, Read, Close)──> session task ──> pty master / pipes ──> the process group
//!       ▲                                             │ reads the pty only while its buffer has room
//!       └──────────────── answers ────────────────────┘ a Read waits until output or the exit is there
//! ```
//!
//! Sessions belong to the conversation they started in ([`Sessions`] lives as long as it): when it ends, their
//! queues close and each task hangs up on its process group (SIGHUP for a terminal, SIGKILL for a command).

pub mod spawn;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use steward_protocol::session::{
    MAX_SESSIONS, SESSION_BUFFER_BYTES, SESSION_INPUT_BYTES, SessionExit, SessionOpen, SessionRequest, SessionResponse,
    check_open, decode_bytes, encode_bytes,
};
use steward_protocol::{AgentMessage, AgentResponse};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

use self::spawn::{Account, SessionIo, Spawned};
use crate::requests::{Answers, answer};

/// How many requests of one session may wait for its task.
const SESSION_QUEUE: usize = 4;

/// After the session's process ended, how long output may still come from what it left running (a process in
/// the background holding the terminal or a pipe), counted from the last output, and at most.
const DRAIN_QUIET: Duration = Duration::from_millis(300);
const DRAIN_MOST: Duration = Duration::from_secs(5);

/// The most bytes read from a stream at once.
const READ_CHUNK: usize = 16 * 1024;

/// A request for a session task, with the ID to answer it under.
type Step = (u64, SessionRequest);

/// The open sessions of one conversation.
pub struct Sessions {
    /// Where `etc/passwd` and `etc/group` are (`/` in production).
    root: PathBuf,
    open: HashMap<u64, mpsc::Sender<Step>>,
    next: u64,
}

impl Sessions {
    pub fn new(root: PathBuf) -> Self {
        Self { root, open: HashMap::new(), next: 0 }
    }

    /// Takes request `id`; returns an answer to send now, or `None` when the session's task will answer through
    /// `answers`.
    pub fn handle(&mut self, id: u64, request: SessionRequest, answers: &Answers) -> Option<AgentMessage> {
        self.open.retain(|_, queue| !queue.is_closed());
        let session = match &request {
            SessionRequest::Open(open) => {
                let response = match self.open_session(open, answers) {
                    Ok(response) => response,
                    Err(message) => AgentResponse::Error { message },
                };
                return Some(answer(id, response));
            }
            SessionRequest::Input { session, .. }
            | SessionRequest::CloseInput { session }
            | SessionRequest::Resize { session, .. }
            | SessionRequest::Read { session }
            | SessionRequest::Close { session } => *session,
        };
        let error = |message: String| Some(answer(id, AgentResponse::Error { message }));
        let Some(queue) = self.open.get(&session) else {
            return error(format!("there is no session {session} (it ended, or never began)"));
        };
        match queue.try_send((id, request)) {
            Ok(()) => None,
            Err(TrySendError::Full(_)) => {
                error(format!("session {session} has {SESSION_QUEUE} requests waiting already; wait for their answers"))
            }
            Err(TrySendError::Closed(_)) => error(format!("session {session} has ended")),
        }
    }

    fn open_session(&mut self, open: &SessionOpen, answers: &Answers) -> Result<AgentResponse, String> {
        if self.open.len() >= MAX_SESSIONS {
            return Err(format!("{MAX_SESSIONS} sessions are open on this connection already; close one first"));
        }
        check_open(open)?;
        let account = Account::find(&self.root, open.user.as_deref())?;
        let spawned = spawn::spawn(open, &account, &self.root)?;
        self.next += 1;
        let session = self.next;
        let pid = spawned.pid;
        tracing::info!(session, pid, user = %account.name, terminal = open.terminal.is_some(), "a session began");
        let (queue, steps) = mpsc::channel(SESSION_QUEUE);
        let timeout = open.timeout_seconds.map(|seconds| Duration::from_secs(u64::from(seconds)));
        let hang_up = if open.terminal.is_some() { libc::SIGHUP } else { libc::SIGKILL };
        tokio::spawn(run(session, spawned, timeout, hang_up, steps, answers.clone()));
        self.open.insert(session, queue);
        Ok(AgentResponse::Session(SessionResponse::Opened { session, pid }))
    }
}

/// Whether `message` answers a session step (sent many times a second while output flows, so the conversation
/// does not trim the heap after each).
pub fn is_session_answer(message: &AgentMessage) -> bool {
    matches!(message, AgentMessage::Response { response: AgentResponse::Session(_), .. })
}

/// What a session holds while it runs.
struct Output {
    /// Output waiting for a `Read` (a terminal's all in `stdout`), each at most [`SESSION_BUFFER_BYTES`].
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Whether each stream may still bring output.
    stdout_open: bool,
    stderr_open: bool,
}

impl Output {
    fn has_room(buffer: &[u8]) -> bool {
        buffer.len() < SESSION_BUFFER_BYTES
    }
}

/// Runs one session until its process ended and its last output was read, or until it is closed (or its
/// conversation ended).
async fn run(
    session: u64,
    spawned: Spawned,
    timeout: Option<Duration>,
    hang_up: i32,
    mut steps: mpsc::Receiver<Step>,
    answers: Answers,
) {
    let Spawned { mut child, pid, io } = spawned;
    let (terminal, mut stdin, mut stdout, mut stderr) = match io {
        SessionIo::Terminal(master) => (Some(master), None, None, None),
        SessionIo::Pipes { stdin, stdout, stderr } => (None, stdin, stdout, stderr),
    };
    let mut output = Output {
        stdout: Vec::new(),
        stderr: Vec::new(),
        stdout_open: true,
        stderr_open: terminal.is_none() && stderr.is_some(),
    };
    let mut stdout_chunk = vec![0u8; READ_CHUNK];
    let mut stderr_chunk = vec![0u8; READ_CHUNK];
    let mut exit: Option<SessionExit> = None;
    let mut timed_out = false;
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    // After the exit: when to stop waiting for more output.
    let mut drain_until: Option<(Instant, Instant)> = None;
    // A `Read` waiting for output, and an `Input` whose bytes are not all written yet.
    let mut waiting_read: Option<u64> = None;
    let mut pending_input: Option<(u64, Vec<u8>, usize)> = None;

    loop {
        let finished = exit.is_some() && !output.stdout_open && !output.stderr_open;
        if let Some(id) = waiting_read
            && (finished || !output.stdout.is_empty() || !output.stderr.is_empty())
        {
            waiting_read = None;
            let last = finished;
            let response = SessionResponse::Output {
                stdout: encode_bytes(&std::mem::take(&mut output.stdout)),
                stderr: encode_bytes(&std::mem::take(&mut output.stderr)),
                exit: if last { exit } else { None },
            };
            if answers.send(answer(id, AgentResponse::Session(response))).await.is_err() {
                break;
            }
            if last {
                tracing::info!(session, pid, exit = ?exit, "a session ended");
                return;
            }
        }
        let drain_at = drain_until.map(|(quiet, most)| quiet.min(most));
        tokio::select! {
            step = steps.recv() => {
                let Some((id, request)) = step else { break };
                let response = match request {
                    SessionRequest::Read { .. } => {
                        if let Some(previous) = waiting_read.replace(id) {
                            let message = "a newer read replaced this one".to_string();
                            let _ = answers.send(answer(previous, AgentResponse::Error { message })).await;
                        }
                        continue;
                    }
                    SessionRequest::Input { data, .. } => {
                        if pending_input.is_some() {
                            Err("the previous input is not written yet; wait for its answer".to_string())
                        } else {
                            match decode_bytes(&data, SESSION_INPUT_BYTES) {
                                Ok(bytes) if bytes.is_empty() => Ok(SessionResponse::Written { bytes: 0 }),
                                Ok(bytes) if terminal.is_some() || stdin.is_some() => {
                                    pending_input = Some((id, bytes, 0));
                                    continue;
                                }
                                Ok(_) => Err("the session's input is closed".to_string()),
                                Err(message) => Err(message),
                            }
                        }
                    }
                    SessionRequest::CloseInput { .. } => {
                        if terminal.is_some() {
                            Err("a terminal's input cannot be closed; send end-of-file (Ctrl-D) instead".to_string())
                        } else {
                            stdin = None;
                            Ok(SessionResponse::InputClosed)
                        }
                    }
                    SessionRequest::Resize { size, .. } => match &terminal {
                        Some(master) => spawn::resize(master.get_ref(), size).map(|()| SessionResponse::Resized),
                        None => Err("this session has no terminal to resize".to_string()),
                    },
                    SessionRequest::Close { .. } => {
                        if exit.is_none() {
                            spawn::signal_group(pid, hang_up);
                            spawn::signal_group(pid, libc::SIGCONT);
                        }
                        tracing::info!(session, pid, "the server closed a session");
                        let _ = answers.send(answer(id, AgentResponse::Session(SessionResponse::Closed))).await;
                        if let Some(read) = waiting_read.take() {
                            let message = "the session was closed".to_string();
                            let _ = answers.send(answer(read, AgentResponse::Error { message })).await;
                        }
                        return;
                    }
                    SessionRequest::Open(_) => Err("a session cannot be opened inside another".to_string()),
                };
                let response = match response {
                    Ok(response) => AgentResponse::Session(response),
                    Err(message) => AgentResponse::Error { message },
                };
                if answers.send(answer(id, response)).await.is_err() {
                    break;
                }
            }
            read = read_stream(terminal.as_ref(), stdout.as_mut(), &mut stdout_chunk),
                if output.stdout_open && Output::has_room(&output.stdout) =>
            {
                match read {
                    Ok(0) | Err(_) => output.stdout_open = false,
                    Ok(count) => {
                        output.stdout.extend_from_slice(&stdout_chunk[..count]);
                        drain_until = drain_until.map(|(_, most)| (Instant::now() + DRAIN_QUIET, most));
                    }
                }
            }
            read = read_stream(None, stderr.as_mut(), &mut stderr_chunk),
                if output.stderr_open && Output::has_room(&output.stderr) =>
            {
                match read {
                    Ok(0) | Err(_) => output.stderr_open = false,
                    Ok(count) => {
                        output.stderr.extend_from_slice(&stderr_chunk[..count]);
                        drain_until = drain_until.map(|(_, most)| (Instant::now() + DRAIN_QUIET, most));
                    }
                }
            }
            written = write_input(terminal.as_ref(), stdin.as_mut(), pending_input.as_ref()), if pending_input.is_some() => {
                let Some((id, bytes, done)) = pending_input.as_mut() else { continue };
                let response = match written {
                    Ok(count) => {
                        *done += count;
                        if *done < bytes.len() {
                            continue;
                        }
                        AgentResponse::Session(SessionResponse::Written { bytes: bytes.len() as u64 })
                    }
                    Err(error) => AgentResponse::Error { message: format!("cannot write the session's input: {error}") },
                };
                let id = *id;
                pending_input = None;
                if answers.send(answer(id, response)).await.is_err() {
                    break;
                }
            }
            status = child.wait(), if exit.is_none() => {
                exit = Some(match status {
                    Ok(status) => spawn::exit_of(status, timed_out),
                    Err(error) => {
                        tracing::warn!(session, pid, %error, "cannot learn how a session's process ended");
                        SessionExit { timed_out, ..SessionExit::default() }
                    }
                });
                let now = Instant::now();
                drain_until = Some((now + DRAIN_QUIET, now + DRAIN_MOST));
                // Input for a process that is gone is refused, not left waiting.
                if let Some((id, _, _)) = pending_input.take() {
                    let message = "the session's process has ended".to_string();
                    let _ = answers.send(answer(id, AgentResponse::Error { message })).await;
                }
            }
            () = sleep_until(deadline), if exit.is_none() && !timed_out => {
                tracing::info!(session, pid, "a session reached its timeout; killing its process group");
                timed_out = true;
                spawn::signal_group(pid, libc::SIGKILL);
            }
            () = sleep_until(drain_at), if exit.is_some() && (output.stdout_open || output.stderr_open) => {
                // Output still held back by a full buffer is read before giving up on the rest.
                if Output::has_room(&output.stdout) && Output::has_room(&output.stderr) {
                    output.stdout_open = false;
                    output.stderr_open = false;
                } else {
                    drain_until = drain_until.map(|(quiet, most)| (quiet, most.max(Instant::now() + DRAIN_QUIET)));
                }
            }
        }
    }
    // The conversation ended (or stopped listening): hang up on whatever the session still runs.
    if exit.is_none() {
        spawn::signal_group(pid, hang_up);
        spawn::signal_group(pid, libc::SIGCONT);
    }
    tracing::info!(session, pid, "a session was hung up: its connection ended");
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads some output from the terminal (when there is one) or the pipe; 0 at the end. A terminal's master
/// reports the end (all slave descriptors closed) as EIO.
async fn read_stream(
    terminal: Option<&AsyncFd<OwnedFd>>,
    pipe: Option<&mut (impl tokio::io::AsyncRead + Unpin)>,
    chunk: &mut [u8],
) -> std::io::Result<usize> {
    if let Some(master) = terminal {
        loop {
            let mut ready = master.readable().await?;
            match ready.try_io(|fd| {
                // SAFETY: read(2) into a buffer of `chunk.len()` bytes that lives across the call.
                let count = unsafe { libc::read(fd.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
                if count < 0 { Err(std::io::Error::last_os_error()) } else { Ok(count as usize) }
            }) {
                Ok(Err(error)) if error.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
    match pipe {
        Some(pipe) => pipe.read(chunk).await,
        None => Ok(0),
    }
}

/// Writes some of the pending input to the terminal or the pipe; returns how much.
async fn write_input(
    terminal: Option<&AsyncFd<OwnedFd>>,
    pipe: Option<&mut tokio::process::ChildStdin>,
    pending: Option<&(u64, Vec<u8>, usize)>,
) -> std::io::Result<usize> {
    let Some((_, bytes, done)) = pending else { return std::future::pending().await };
    let rest = bytes.get(*done..).unwrap_or_default();
    if let Some(master) = terminal {
        loop {
            let mut ready = master.writable().await?;
            match ready.try_io(|fd| {
                // SAFETY: write(2) from a buffer of `rest.len()` bytes that lives across the call.
                let count = unsafe { libc::write(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
                if count < 0 { Err(std::io::Error::last_os_error()) } else { Ok(count as usize) }
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
    match pipe {
        Some(pipe) => pipe.write(rest).await,
        None => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the input is closed")),
    }
}

#[cfg(test)]
mod tests;
