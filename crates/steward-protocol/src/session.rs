//! Sessions: an interactive shell on a pseudo-terminal, or a command whose output streams as it comes, carried
//! over the agent's one channel as ordinary requests ([`AgentRequest::Session`](crate::AgentRequest::Session)),
//! each answered by one [`AgentResponse::Session`](crate::AgentResponse::Session) or an error. So the server's
//! table of pending requests and its "connection ended" handling apply to every step, and other messages pass
//! between them.
//!
//! ```text
//!  server                                          agent
//!  Open{user, terminal, argv, ...}          ──>    fork/exec on a pty (or pipes)
//!                                           <──    Opened{session, pid}
//!  Read{session}                            ──>    held until output or the exit is there
//!                                           <──    Output{stdout, stderr, exit?}     (the server asks again
//!  Input{session, data}                     ──>                                      once it passed it on)
//!                                           <──    Written{bytes}   (once the bytes are in the pty or pipe)
//!  Resize{session, rows, cols}              ──>    TIOCSWINSZ: the shell gets SIGWINCH
//!                                           <──    Resized
//!  Close{session}                           ──>    SIGHUP (shell) or SIGKILL (command) to its process group
//!                                           <──    Closed
//! ```
//!
//! Flow control: the agent keeps at most [`SESSION_BUFFER_BYTES`] of each output stream and stops reading the pty
//! (or pipe) while that much waits for the server; the server sends the next `Read` only once it passed the last
//! output on to its client. A flood of output thus blocks the writer on the managed system, and no side's memory
//! grows. Input is bounded the same way: one `Input` of at most [`SESSION_INPUT_BYTES`] at a time.
//!
//! The `Output` that carries `exit` is the last: the agent forgets the session after sending it. A session also
//! ends with the conversation it started in: the agent hangs up on every session of a connection that ended.
//!
//! Bytes travel as base64 in the JSON (like file chunks), so the frames stay valid JSON and binary output passes
//! untouched. Compatibility: an older agent reads `{"type":"session",...}` as
//! [`AgentRequest::Unsupported`](crate::AgentRequest::Unsupported) and answers an error saying so.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The most bytes of one output stream the agent holds for a session (and so the most one `Output` carries).
pub const SESSION_BUFFER_BYTES: usize = 64 * 1024;

/// The most bytes one `Input` carries.
pub const SESSION_INPUT_BYTES: usize = 64 * 1024;

/// The most sessions one connection may have open at a time.
pub const MAX_SESSIONS: usize = 16;

/// What the server asks of an agent about sessions; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SessionRequest {
    Open(SessionOpen),
    /// Bytes for the session's terminal or standard input (base64, at most [`SESSION_INPUT_BYTES`]).
    Input {
        session: u64,
        data: String,
    },
    /// Closes the command's standard input (a command without a terminal sees the end of its input).
    CloseInput {
        session: u64,
    },
    Resize {
        session: u64,
        size: TerminalSize,
    },
    /// Asks for the output that is there, or waits for some (or for the exit).
    Read {
        session: u64,
    },
    /// Hangs up: the session's process group gets SIGHUP (a terminal) or SIGKILL (a command).
    Close {
        session: u64,
    },
}

/// Starts a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SessionOpen {
    /// The user to run as (a name from the system's `/etc/passwd`); the agent's own user when absent.
    #[serde(default)]
    pub user: Option<String>,
    /// A pseudo-terminal of this size and type; without it the command gets pipes (stdout and stderr apart).
    #[serde(default)]
    pub terminal: Option<TerminalSpec>,
    /// The program and its arguments; without it the user's login shell (or `/bin/sh`), as a login shell.
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    /// Variables added to the session's environment.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// After this many seconds the session's process group is killed and its exit says `timed_out`.
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
    /// The directory to start in; the user's home for a shell, `/` for a command, when absent.
    #[serde(default)]
    pub working_directory: Option<String>,
}

/// The pseudo-terminal of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalSpec {
    pub size: TerminalSize,
    /// The `TERM` the session gets (`xterm-256color`, ...).
    pub term: String,
}

/// A window size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
}

/// How a session's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SessionExit {
    /// The exit code, when the process exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// True when it was killed at its timeout.
    pub timed_out: bool,
}

/// The agent's answer to a session request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SessionResponse {
    Opened {
        session: u64,
        pid: u32,
    },
    Written {
        bytes: u64,
    },
    InputClosed,
    Resized,
    /// Output (base64; a terminal's all in `stdout`), and the exit once the process ended and its output was read.
    Output {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        stdout: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        stderr: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit: Option<SessionExit>,
    },
    Closed,
}

/// Checks what both ends require of an `Open` before anything is started.
pub fn check_open(open: &SessionOpen) -> Result<(), String> {
    if let Some(user) = &open.user
        && (user.is_empty() || user.len() > 64 || user.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':'))
    {
        return Err(format!("{user:?} is not a user name"));
    }
    if let Some(terminal) = &open.terminal {
        if terminal.size.rows == 0 || terminal.size.cols == 0 {
            return Err("a terminal needs at least one row and one column".into());
        }
        if terminal.term.is_empty()
            || terminal.term.len() > 64
            || !terminal.term.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
        {
            return Err(format!("{:?} is not a terminal type", terminal.term));
        }
    }
    if let Some(argv) = &open.argv {
        if argv.is_empty() || argv[0].is_empty() {
            return Err("the command is empty".into());
        }
        if argv.iter().any(|argument| argument.contains('\0')) {
            return Err("an argument contains a NUL byte".into());
        }
    }
    for (name, value) in &open.environment {
        if name.is_empty() || name.contains('=') || name.contains('\0') || value.contains('\0') {
            return Err(format!("{name:?} is not an environment variable name, or its value has a NUL byte"));
        }
    }
    if open.timeout_seconds == Some(0) {
        return Err("a timeout must be at least one second".into());
    }
    if let Some(directory) = &open.working_directory
        && (!directory.starts_with('/') || directory.contains('\0'))
    {
        return Err(format!("{directory:?} is not an absolute directory"));
    }
    Ok(())
}

/// Session bytes as they travel (base64).
pub fn encode_bytes(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes session bytes, refusing more than `limit` before decoding them.
pub fn decode_bytes(text: &str, limit: usize) -> Result<Vec<u8>, String> {
    if text.len() > base64::encoded_len(limit, true).unwrap_or(usize::MAX) {
        return Err(format!("{} base64 characters are more than the {limit} bytes allowed", text.len()));
    }
    base64::engine::general_purpose::STANDARD.decode(text).map_err(|error| format!("the data is not base64: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentMessage, AgentRequest, AgentResponse, ServerMessage};

    #[test]
    fn session_messages_survive_the_wire_and_are_tagged() {
        let open = SessionOpen {
            user: Some("nobody".into()),
            terminal: Some(TerminalSpec { size: TerminalSize { rows: 24, cols: 80 }, term: "xterm".into() }),
            ..SessionOpen::default()
        };
        let message = ServerMessage::Request { id: 4, request: AgentRequest::Session(SessionRequest::Open(open)) };
        let text = serde_json::to_string(&message).expect("encode");
        assert!(text.contains(r#""request":{"type":"session","op":"open","user":"nobody""#), "{text}");
        assert_eq!(serde_json::from_str::<ServerMessage>(&text).expect("decode"), message);

        let output = AgentResponse::Session(SessionResponse::Output {
            stdout: encode_bytes(b"hello\r\n"),
            stderr: String::new(),
            exit: Some(SessionExit { exit_code: Some(3), signal: None, timed_out: false }),
        });
        let message = AgentMessage::Response { id: 4, response: output };
        let text = serde_json::to_string(&message).expect("encode");
        assert!(!text.contains("stderr"), "{text}");
        assert_eq!(serde_json::from_str::<AgentMessage>(&text).expect("decode"), message);
    }

    #[test]
    fn opens_are_checked_and_data_is_bounded() {
        assert!(check_open(&SessionOpen::default()).is_ok());
        for (open, reason) in [
            (SessionOpen { user: Some("a b".into()), ..SessionOpen::default() }, "not a user name"),
            (SessionOpen { argv: Some(vec![]), ..SessionOpen::default() }, "empty"),
            (SessionOpen { timeout_seconds: Some(0), ..SessionOpen::default() }, "at least one second"),
            (SessionOpen { working_directory: Some("tmp".into()), ..SessionOpen::default() }, "absolute"),
            (
                SessionOpen {
                    terminal: Some(TerminalSpec { size: TerminalSize { rows: 0, cols: 80 }, term: "xterm".into() }),
                    ..SessionOpen::default()
                },
                "one row",
            ),
            (
                SessionOpen {
                    terminal: Some(TerminalSpec { size: TerminalSize { rows: 1, cols: 1 }, term: "x;rm".into() }),
                    ..SessionOpen::default()
                },
                "terminal type",
            ),
        ] {
            let error = check_open(&open).expect_err(reason);
            assert!(error.contains(reason), "{error}");
        }
        assert_eq!(decode_bytes(&encode_bytes(b"\x03\xff"), 2).expect("decodes"), b"\x03\xff");
        assert!(decode_bytes(&encode_bytes(&[0; 10]), 4).expect_err("too long").contains("more than the 4 bytes"));
        assert!(decode_bytes("!!", 4).expect_err("not base64").contains("not base64"));
    }
}
