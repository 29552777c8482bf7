//! Shell sessions and streamed commands (`GET /systems/{system}/shell`, a WebSocket, and
//! `POST /systems/{system}/commands/stream`, newline-delimited JSON): the messages besides the raw bytes.

use serde::{Deserialize, Serialize};

/// The terminal a shell gets when the client names none.
pub const DEFAULT_TERM: &str = "xterm-256color";

/// Where a shell session starts: who, and the terminal (query parameters of the WebSocket endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ShellQuery {
    /// The user to log in as (a name in the system's `/etc/passwd`); the agent's own user (root) when absent.
    pub user: Option<String>,
    /// The window's size in characters (default 24 rows, 80 columns).
    pub rows: Option<u16>,
    pub cols: Option<u16>,
    /// The terminal type for `TERM` (default `xterm-256color`).
    pub term: Option<String>,
}

/// A text message from the client on the shell's WebSocket (binary messages are the terminal's input bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ShellControl {
    /// The client's window changed size; the remote shell gets SIGWINCH.
    Resize { rows: u16, cols: u16 },
}

/// A text message from the server on the shell's WebSocket (binary messages are the terminal's output bytes).
/// Either is the last message before the server closes the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ShellEvent {
    /// The shell ended: its exit code, or the signal that ended it.
    Exit { exit_code: Option<i32>, signal: Option<i32> },
    /// The session failed (the agent's connection ended, ...).
    Error { message: String },
}

/// One line of a streamed command's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommandEvent {
    /// Bytes the command wrote to its standard output, base64, as they came.
    Stdout { data: String },
    /// Bytes the command wrote to its standard error, base64.
    Stderr { data: String },
    /// The last line when the command ended: its exit code, or the signal that ended it (9 at its timeout).
    Exit { exit_code: Option<i32>, signal: Option<i32>, timed_out: bool, duration_ms: u64 },
    /// The last line when the stream failed midway (the agent's connection ended, ...).
    Error { message: String },
}

/// Who a streamed command runs as (query parameter).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// The user to run as (a name in the system's `/etc/passwd`); the agent's own user when absent.
    pub user: Option<String>,
}
