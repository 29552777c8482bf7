//! A small QMP (QEMU Machine Protocol) client: connect to a guest's Unix socket, read the greeting, negotiate
//! with `qmp_capabilities`, then send commands and wait for their `return` or `error`, skipping asynchronous
//! events (`{"event": ...}`) that arrive in between. Every read has a timeout, so a wedged QEMU cannot hang
//! the caller.
//!
//! It is public so that tools and tests can act on a guest exactly as an operator would (detach a NIC behind
//! Steward's back, for example). A refused command is `HypervisorError::QmpCommand` with QMP's error class;
//! a dead or silent socket is `HypervisorError::QmpIo`. QEMU serves one monitor client at a time (others wait
//! unanswered), so a caller closes its connection (drops the client) as soon as it is done.
//!
//! ```no_run
//! # async fn example(host: &steward_hypervisor::qemu::QemuHost) -> steward_hypervisor::Result<()> {
//! use steward_hypervisor::qemu::qmp::QmpClient;
//! let mut monitor = QmpClient::connect("web01", &host.qmp_socket("web01")?).await?;
//! monitor.execute("device_del", Some(serde_json::json!({ "id": "nic-525400123456" }))).await?;
//! # Ok(())
//! # }
//! ```
//!
//! ```text
//!  client                         QEMU
//!    | <---- {"QMP": {...}} ------- |   greeting
//!    | ---- qmp_capabilities -----> |
//!    | <---- {"return": {}} ------- |
//!    | ---- {"execute": ...} -----> |
//!    | <---- {"event": ...} ------- |   skipped
//!    | <---- {"return": ...} ------ |
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::{HypervisorError, Result};

/// How long any single read or write may take.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest line accepted from QEMU.
const MAXIMUM_LINE_BYTES: usize = 1024 * 1024;

/// A negotiated QMP connection.
pub struct QmpClient {
    guest: String,
    socket: PathBuf,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl QmpClient {
    /// Connects to `socket`, reads the greeting and enters command mode.
    pub async fn connect(guest: &str, socket: &Path) -> Result<Self> {
        let stream = tokio::time::timeout(QMP_TIMEOUT, UnixStream::connect(socket))
            .await
            .map_err(|_| timeout_error(guest, socket))?
            .map_err(|source| HypervisorError::QmpIo {
                guest: guest.to_owned(),
                socket: socket.to_path_buf(),
                source,
            })?;
        let (read_half, writer) = stream.into_split();
        let mut client = QmpClient {
            guest: guest.to_owned(),
            socket: socket.to_path_buf(),
            reader: BufReader::new(read_half),
            writer,
        };
        let greeting = client.read_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(client.protocol_error(format!("expected the QMP greeting, got {greeting}")));
        }
        client.execute("qmp_capabilities", None).await?;
        Ok(client)
    }

    /// The guest this monitor belongs to (for messages).
    pub fn guest(&self) -> &str {
        &self.guest
    }

    fn protocol_error(&self, message: String) -> HypervisorError {
        HypervisorError::Qmp { guest: self.guest.clone(), message }
    }

    fn io_error(&self, source: std::io::Error) -> HypervisorError {
        HypervisorError::QmpIo { guest: self.guest.clone(), socket: self.socket.clone(), source }
    }

    async fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        loop {
            line.clear();
            let read = tokio::time::timeout(QMP_TIMEOUT, self.reader.read_line(&mut line))
                .await
                .map_err(|_| timeout_error(&self.guest, &self.socket))?
                .map_err(|source| self.io_error(source))?;
            if read == 0 {
                return Err(self.io_error(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "QEMU closed the monitor connection",
                )));
            }
            if line.len() > MAXIMUM_LINE_BYTES {
                return Err(self.protocol_error(format!("a message is longer than {MAXIMUM_LINE_BYTES} bytes")));
            }
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(line.trim())
                .map_err(|error| self.protocol_error(format!("malformed message {:?}: {error}", line.trim())));
        }
    }

    /// Runs `command` (with `arguments`) and returns its `return` value; a refused command is
    /// `HypervisorError::QmpCommand`.
    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut text = request.to_string();
        text.push('\n');
        tokio::time::timeout(QMP_TIMEOUT, self.writer.write_all(text.as_bytes()))
            .await
            .map_err(|_| timeout_error(&self.guest, &self.socket))?
            .map_err(|source| self.io_error(source))?;
        loop {
            let message = self.read_message().await?;
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                let text =
                    |key: &str, default: &str| error.get(key).and_then(Value::as_str).unwrap_or(default).to_owned();
                return Err(HypervisorError::QmpCommand {
                    guest: self.guest.clone(),
                    command: command.to_owned(),
                    class: text("class", "GenericError"),
                    description: text("desc", "no description"),
                });
            }
            if let Some(event) = message.get("event") {
                tracing::debug!(guest = self.guest, %event, "QMP event while waiting for a reply");
                continue;
            }
            return Err(self.protocol_error(format!("unexpected message {message}")));
        }
    }

    /// The run state QEMU reports (`running`, `paused`, `shutdown`, ...).
    pub async fn run_state(&mut self) -> Result<String> {
        let status = self.execute("query-status", None).await?;
        status
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| self.protocol_error(format!("query-status returned {status}")))
    }
}

fn timeout_error(guest: &str, socket: &Path) -> HypervisorError {
    HypervisorError::QmpIo {
        guest: guest.to_owned(),
        socket: socket.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {QMP_TIMEOUT:?}")),
    }
}
