//! The server's end of the virtio-serial management channel: the analogue of z/VM's IUCV for QEMU guests.
//!
//! Every QEMU guest Steward creates has a virtio-serial port `org.steward.agent.0` whose host end is a unix
//! socket, `DATA/hosts/local/guests/<name>/agent.sock` (QEMU listens: `server=on,wait=off`). While a guest is
//! *attached* ([`super::Registry::attach_serial`]) the server keeps one connection to that socket, reconnecting
//! with backoff while the guest is not running yet or restarts, and talks to the agent in the guest with the same
//! messages as over TLS (`session.rs`).
//!
//! **Trust model.** No enrollment token, no certificate, no TLS: the socket belongs to one guest and only the
//! hypervisor's process and this server (same host, same user) can reach it, so *which socket* says *which guest*,
//! as an IUCV connection names its z/VM user. The server trusts the channel as it trusts the hypervisor; the
//! guest trusts it as it trusts its hypervisor. The system record exists before the agent speaks (the saga that
//! creates the guest creates it, without a certificate); it is checked at every connect and again after each
//! Hello, and an attachment whose system was deleted stops for good.
//!
//! **Resynchronisation.** Either end may come and go while the other keeps its end open, and QEMU drops what the
//! guest writes while no one holds the socket. So every frame carries a marker (`steward_protocol::synced`), and
//! the server speaks first on every connection:
//!
//! ```text
//!  connect ──> HelloRequest ──> skip to a marker ──> Hello ──> conversation (session.rs) ──┐
//!     ▲   (no timer: a guest without a running agent costs nothing)     │ Hello again: Welcome │
//!     │                                                                  ▼ again               │
//!     └── backoff 0.1 s .. 5 s ◄── socket closed (guest stopped), frame error (garbage), ◄─────┘
//!                                  Goodbye; deleted system: stop
//! ```
//! A frame error ends the conversation and the connection: reconnecting discards whatever was in flight, the
//! agent sees the port's host end go away (or gets the new HelloRequest) and says Hello again. The agent side
//! (`steward-agent/src/serial.rs`) repeats an unanswered Hello, so a Hello lost in the gap is said again.
//!
//! QEMU does not tell a socket client when the guest closes its port, so an agent that stops while the guest runs
//! is seen offline only when the guest stops or the agent comes back with a new Hello.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use steward_protocol::{AgentMessage, FrameError, ServerMessage};
use steward_types::SystemId;
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::session::{self, Channel, Ending};
use crate::state::AppState;

/// Reconnect delays while a guest's socket is missing or refuses: short, because a guest that was just started
/// should register at once, and cheap (one failed connect per attempt).
const RECONNECT_BASE: Duration = Duration::from_millis(100);
const RECONNECT_CAP: Duration = Duration::from_secs(5);

/// Why an attachment is told to stop; `None` while it runs.
type StopReason = Option<String>;

/// The attached guests, by system: one task each that keeps the guest's socket connected.
#[derive(Default)]
pub(super) struct SerialAttachments {
    attachments: Mutex<HashMap<SystemId, Attachment>>,
    next_generation: AtomicU64,
}

struct Attachment {
    socket: PathBuf,
    /// Tells a finished task's clean-up apart from a newer attachment of the same system.
    generation: u64,
    stop: watch::Sender<StopReason>,
    task: JoinHandle<()>,
}

impl SerialAttachments {
    /// Starts keeping `system`'s `socket` connected, unless that is already happening.
    pub(super) fn attach(&self, state: &AppState, system: SystemId, socket: PathBuf) {
        let mut attachments = self.attachments.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(existing) = attachments.get(&system) {
            if existing.socket == socket && !existing.task.is_finished() {
                return;
            }
            existing.stop.send_replace(Some("the guest's channel moved to another socket".into()));
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (stop, stop_receiver) = watch::channel(None);
        tracing::info!(%system, socket = %socket.display(), "attaching to the guest's agent channel");
        let task = tokio::spawn(keep_attached(state.clone(), system, socket.clone(), generation, stop_receiver));
        attachments.insert(system, Attachment { socket, generation, stop, task });
    }

    /// Stops keeping `system`'s socket connected and closes the connection; false if it was not attached.
    pub(super) fn detach(&self, system: SystemId, reason: &str) -> bool {
        let removed = self.attachments.lock().unwrap_or_else(|poison| poison.into_inner()).remove(&system);
        match removed {
            Some(attachment) => {
                attachment.stop.send_replace(Some(reason.to_string()));
                true
            }
            None => false,
        }
    }

    /// The socket `system` is attached through, if it is.
    pub(super) fn socket(&self, system: SystemId) -> Option<PathBuf> {
        let attachments = self.attachments.lock().unwrap_or_else(|poison| poison.into_inner());
        attachments.get(&system).filter(|attachment| !attachment.task.is_finished()).map(|a| a.socket.clone())
    }

    pub(super) fn detach_all(&self, reason: &str) {
        let mut attachments = self.attachments.lock().unwrap_or_else(|poison| poison.into_inner());
        for (_, attachment) in attachments.drain() {
            attachment.stop.send_replace(Some(reason.to_string()));
        }
    }

    /// Removes a finished attachment, unless a newer one of the same system replaced it.
    fn forget(&self, system: SystemId, generation: u64) {
        let mut attachments = self.attachments.lock().unwrap_or_else(|poison| poison.into_inner());
        if attachments.get(&system).is_some_and(|attachment| attachment.generation == generation) {
            attachments.remove(&system);
        }
    }
}

/// Jittered exponential reconnect delays.
struct Reconnect {
    attempt: u32,
}

impl Reconnect {
    fn next_delay(&mut self) -> Duration {
        let nominal = RECONNECT_BASE.saturating_mul(1u32 << self.attempt.min(16)).min(RECONNECT_CAP);
        self.attempt = self.attempt.saturating_add(1);
        nominal.mul_f64(rand::random_range(0.5..=1.0))
    }
}

/// How one connection to the socket ended.
enum Outcome {
    /// Detached (or the server is stopping): do not reconnect.
    Stopped,
    /// Reconnect after a delay; `spoke` when an agent said Hello on this connection.
    Ended { ending: Ending, spoke: bool },
}

/// One attachment's life: connect, converse, reconnect, until detached or the system is deleted.
async fn keep_attached(
    state: AppState,
    system: SystemId,
    socket: PathBuf,
    generation: u64,
    mut stop: watch::Receiver<StopReason>,
) {
    let mut reconnect = Reconnect { attempt: 0 };
    let mut announced_failure = false;
    loop {
        match system_exists(&state, system).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(%system, "the guest's system was deleted; no longer attaching to its channel");
                state.agents.serial.forget(system, generation);
                return;
            }
            Err(reason) => tracing::warn!(%system, %reason, "cannot check the guest's system; retrying"),
        }
        let connected = tokio::select! {
            connected = UnixStream::connect(&socket) => connected,
            _ = stop_requested(&mut stop) => return,
        };
        match connected {
            Ok(stream) => {
                announced_failure = false;
                tracing::debug!(%system, socket = %socket.display(), "connected to the guest's agent channel");
                match converse(&state, system, stream, &mut stop).await {
                    Outcome::Stopped => return,
                    Outcome::Ended { ending, spoke } => {
                        if spoke {
                            reconnect.attempt = 0;
                        }
                        tracing::info!(%system, reason = %ending.reason, "guest agent channel closed; reconnecting");
                    }
                }
            }
            Err(error) => {
                // A guest that is not running yet is normal: say so once per outage, not on every attempt.
                if !announced_failure {
                    tracing::info!(%system, socket = %socket.display(), %error, "the guest's agent channel is not there yet; retrying");
                    announced_failure = true;
                } else {
                    tracing::debug!(%system, %error, "the guest's agent channel is still not there");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(reconnect.next_delay()) => {}
            _ = stop_requested(&mut stop) => return,
        }
    }
}

/// One connection to the guest's socket: HelloRequest, wait for a Hello (with no timer), then the conversation.
async fn converse(
    state: &AppState,
    system: SystemId,
    stream: UnixStream,
    stop: &mut watch::Receiver<StopReason>,
) -> Outcome {
    let (reader, mut writer) = stream.into_split();
    let (mut frames, reader_task) = session::spawn_reader(reader, Channel::Serial);
    let mut spoke = false;
    let mut stopped = false;
    let ending = tokio::select! {
        ending = async {
            if let Err(error) = session::send(&mut writer, &ServerMessage::HelloRequest, Channel::Serial).await {
                return session::frame_ending(error);
            }
            loop {
                match frames.recv().await {
                    Some(Ok(hello @ AgentMessage::Hello { .. })) => {
                        spoke = true;
                        return session::serve(system, hello, &mut frames, &mut writer, state, Channel::Serial).await;
                    }
                    // The rest of a conversation with an earlier connection: the agent will say Hello again.
                    Some(Ok(other)) => tracing::debug!(%system, ?other, "ignoring a message before the hello"),
                    Some(Err(FrameError::Closed)) | None => return Ending::retry("the guest's socket was closed"),
                    Some(Err(error)) => return session::frame_ending(error),
                }
            }
        } => ending,
        reason = stop_requested(stop) => {
            stopped = true;
            Ending::retry(reason)
        }
    };
    reader_task.abort();
    session::goodbye(&mut writer, ending.clone(), Channel::Serial).await;
    if stopped { Outcome::Stopped } else { Outcome::Ended { ending, spoke } }
}

/// Resolves with the reason once the attachment is told to stop (or dropped).
async fn stop_requested(stop: &mut watch::Receiver<StopReason>) -> String {
    loop {
        if let Some(reason) = stop.borrow_and_update().clone() {
            return reason;
        }
        if stop.changed().await.is_err() {
            return "the attachment was dropped".into();
        }
    }
}

async fn system_exists(state: &AppState, system: SystemId) -> Result<bool, String> {
    let mut conn = state.store.conn().await.map_err(|error| format!("the store is unavailable: {error}"))?;
    steward_store::systems::get(&mut conn, &system.to_string())
        .await
        .map(|found| found.is_some())
        .map_err(|error| format!("the store is unavailable: {error}"))
}

/// Checks what a caller passes as a guest's socket, so a mistake is reported where it is made.
pub(super) fn validate_socket_path(socket: &Path) -> Result<(), String> {
    if !socket.is_absolute() {
        return Err(format!("the guest's agent socket {} is not an absolute path", socket.display()));
    }
    // sun_path holds 108 bytes including the terminating NUL.
    if socket.as_os_str().len() > 107 {
        return Err(format!(
            "the guest's agent socket {} is {} bytes long; unix sockets allow at most 107",
            socket.display(),
            socket.as_os_str().len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
