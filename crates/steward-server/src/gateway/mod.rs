//! The agent gateway: a TLS listener where every enrolled agent keeps one connection, and the virtio-serial
//! sockets of the QEMU guests this server runs, where their agents talk without network or enrollment.
//!
//! The TLS handshake demands a client certificate signed by our CA; the connection is then accepted only if the
//! certificate's serial is in the store, not revoked, and names the same system as its common name
//! (`connection.rs`). A guest's serial socket identifies the guest by itself (`serial.rs`). Both channels then
//! run the same conversation (`session.rs`). The [`Registry`] holds one handle per connected system so the API
//! can push messages to it, make requests that wait for the agent's answer (`requests.rs`) or cut it off, and
//! the serial attachments.
//!
//! **Architecture invariant:** nothing here runs on a timer per connection once a conversation is established; an
//! idle fleet costs no CPU. Dead TLS peers are found by TCP keepalive, which the kernel does without waking us;
//! a serial socket closes when its guest stops.

mod connection;
mod requests;
mod serial;
mod session;

pub use requests::AgentRequestError;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use steward_protocol::{AgentRequest, AgentResponse, ServerMessage};
use steward_types::SystemId;
use tokio::net::TcpListener;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};

use crate::state::AppState;

/// Requests queued for one connection; beyond this the API is told the agent is not taking requests.
const CONTROL_QUEUE: usize = 64;

/// Why the server ends a connection, and whether the agent may come back.
pub(crate) type Stop = Option<(String, bool)>;

/// What a connection receives from the rest of the server: requests to pass to its agent (a bounded queue),
/// and an order to stop, which always gets through however full the queue is.
pub(crate) struct Control {
    pub requests: mpsc::Receiver<ServerMessage>,
    pub stop: watch::Receiver<Stop>,
}

struct AgentHandle {
    connection: u64,
    requests: mpsc::Sender<ServerMessage>,
    stop: watch::Sender<Stop>,
}

impl AgentHandle {
    fn stop(&self, reason: &str, retry: bool) {
        self.stop.send_replace(Some((reason.to_string(), retry)));
    }
}

/// A guest's agent socket that cannot be attached.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSocketPath(String);

/// The connected agents, by system, and the guests whose serial channel the server keeps connected.
#[derive(Default)]
pub struct Registry {
    agents: Mutex<HashMap<SystemId, AgentHandle>>,
    next_connection: AtomicU64,
    serial: serial::SerialAttachments,
    pending: requests::PendingRequests,
}

impl Registry {
    /// Keeps the guest's virtio-serial socket (`DATA/hosts/local/guests/<name>/agent.sock`, QEMU listening)
    /// connected and serves the agent in the guest over it, as `system`, whose record must already exist.
    /// Reconnects with backoff (0.1 s .. 5 s) while the socket is missing or closes, so call it when the guest
    /// is started, or before, and for every running guest when the server starts. Idempotent for the same
    /// socket; a different socket replaces the attachment. Stops by itself when the system is deleted. Must be
    /// called inside the server's Tokio runtime.
    pub fn attach_serial(&self, state: &AppState, system: SystemId, socket: PathBuf) -> Result<(), InvalidSocketPath> {
        serial::validate_socket_path(&socket).map_err(InvalidSocketPath)?;
        self.serial.attach(state, system, socket);
        Ok(())
    }

    /// Stops serving `system`'s serial channel: says goodbye to its agent (which may come back on a later
    /// attachment) and closes the socket. Idempotent; false if it was not attached.
    pub fn detach_serial(&self, system: SystemId) -> bool {
        self.serial.detach(system, "the server detached from this guest's channel")
    }

    /// The socket `system`'s serial channel is attached through, if it is.
    pub fn serial_socket(&self, system: SystemId) -> Option<PathBuf> {
        self.serial.socket(system)
    }

    /// Queues a message for a connected agent; false if it is not connected or its queue is full.
    pub fn send(&self, system: SystemId, message: ServerMessage) -> bool {
        let agents = self.agents.lock().unwrap_or_else(|poison| poison.into_inner());
        agents.get(&system).is_some_and(|handle| handle.requests.try_send(message).is_ok())
    }

    /// Asks `system`'s agent to carry out `request` and waits for its answer, at most `timeout`, over whichever
    /// channel the agent is connected by (TLS or virtio-serial). The agent's own refusal (`AgentResponse::Error`)
    /// comes back as [`AgentRequestError::Agent`], so `Ok` holds a real answer: `Command` for `RunCommand`,
    /// `Inventory` for `CollectInventory`. Dropping the future abandons the request (the agent still carries it
    /// out; its answer is dropped). Must be called inside the server's Tokio runtime.
    pub async fn request(
        &self,
        system: SystemId,
        request: AgentRequest,
        timeout: Duration,
    ) -> Result<AgentResponse, AgentRequestError> {
        let id = self.pending.next_id();
        let (_pending, answer) = {
            let agents = self.agents.lock().unwrap_or_else(|poison| poison.into_inner());
            let handle = agents.get(&system).ok_or(AgentRequestError::Offline)?;
            // Waiting before sending: the answer may come back before `try_send` returns.
            let (guard, answer) = self.pending.insert(id, system, handle.connection);
            match handle.requests.try_send(ServerMessage::Request { id, request }) {
                Ok(()) => (guard, answer),
                Err(TrySendError::Full(_)) => return Err(AgentRequestError::QueueFull),
                // The conversation is ending; its registration goes in a moment.
                Err(TrySendError::Closed(_)) => return Err(AgentRequestError::Offline),
            }
        };
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(AgentResponse::Error { message })) => Err(AgentRequestError::Agent(message)),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_connection_ended)) => Err(AgentRequestError::Disconnected),
            Err(_elapsed) => Err(AgentRequestError::TimedOut { seconds: timeout.as_secs_f64().ceil() as u64 }),
        }
    }

    /// Hands an agent's answer, read on `connection` of `system`, to the request waiting for it.
    fn answer(&self, system: SystemId, connection: u64, id: u64, response: AgentResponse) {
        self.pending.answer(system, connection, id, response);
    }

    /// Ends a system's connection for good (its certificate was revoked).
    /// The systems whose agent is connected now.
    pub(crate) fn connected_systems(&self) -> Vec<SystemId> {
        self.agents.lock().unwrap_or_else(|poison| poison.into_inner()).keys().copied().collect()
    }

    pub fn disconnect(&self, system: SystemId, reason: &str) {
        let agents = self.agents.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(handle) = agents.get(&system) {
            handle.stop(reason, false);
        }
    }

    /// Whether any connection of `system` is registered.
    pub(crate) fn is_connected(&self, system: SystemId) -> bool {
        self.agents.lock().unwrap_or_else(|poison| poison.into_inner()).contains_key(&system)
    }

    /// Whether `connection` is the current connection of `system`.
    fn is_current(&self, system: SystemId, connection: u64) -> bool {
        let agents = self.agents.lock().unwrap_or_else(|poison| poison.into_inner());
        agents.get(&system).is_some_and(|handle| handle.connection == connection)
    }

    /// Registers a new connection; an older connection of the same system is told to close.
    fn register(&self, system: SystemId) -> (u64, Control) {
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (requests, requests_receiver) = mpsc::channel(CONTROL_QUEUE);
        let (stop, stop_receiver) = watch::channel(None);
        let mut agents = self.agents.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(previous) = agents.insert(system, AgentHandle { connection, requests, stop }) {
            previous.stop("another connection with the same identity replaced this one", false);
        }
        (connection, Control { requests: requests_receiver, stop: stop_receiver })
    }

    /// Forgets a connection, unless a newer one of the same system has replaced it. True if it was current.
    /// Either way the requests sent on it fail now: nothing will answer them.
    fn unregister(&self, system: SystemId, connection: u64) -> bool {
        let current = {
            let mut agents = self.agents.lock().unwrap_or_else(|poison| poison.into_inner());
            let current = agents.get(&system).is_some_and(|handle| handle.connection == connection);
            if current {
                agents.remove(&system);
            }
            current
        };
        // Only now: a request made before the handle went is failed here, and none can be made for it after.
        self.pending.connection_ended(connection);
        current
    }

    /// Tells every agent the server is going away; they reconnect with backoff. Serial attachments stop.
    pub fn shutdown_all(&self) {
        self.serial.detach_all("the server is shutting down");
        let agents = self.agents.lock().unwrap_or_else(|poison| poison.into_inner());
        for handle in agents.values() {
            handle.stop("the server is shutting down", true);
        }
    }
}

/// Accepts agent connections until `shutdown` changes.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Running out of file descriptors must not spin: pause briefly.
                tracing::warn!(%error, "agent gateway accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        set_keepalive(&stream);
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            connection::handle(stream, peer, acceptor, state).await;
        });
    }
    state.agents.shutdown_all();
}

fn set_keepalive(stream: &tokio::net::TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(15))
        .with_retries(4);
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(%error, "cannot set TCP keepalive");
    }
    let _ = stream.set_nodelay(true);
}
