//! One agent's conversation once its first Hello is in, whatever channel carries it: the TLS connection of
//! `connection.rs` or the guest's virtio-serial socket of `serial.rs`.
//!
//! ```text
//!  Hello ──> registered ──> still exists? ──> online ──> Welcome ──> serving ──> ended: Goodbye, offline
//!  (protocol  (replaces an                               (send full    │ agent messages: store the inventory
//!   version)   older connection)                          inventory?)  │ API requests: pass them on
//!                                                                      │ agent responses: to the request
//!                                                                      │   waiting for them (`requests.rs`)
//!                                                                      │ serial only: a new Hello (the agent
//!                                                                      │ restarted) gets a new Welcome
//! ```
//! Any violation (bad frame, unknown message, wrong order, oversized frame) ends the conversation with a
//! `Goodbye` naming the reason: a misbehaving agent is disconnected, not trusted. Nothing here runs on a timer
//! while the conversation is idle.

use std::time::Duration;

use steward_protocol::{
    AgentMessage, FrameError, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerMessage, SyncedFrameReader, read_frame,
    write_frame, write_synced_frame,
};
use steward_types::SystemId;
use steward_types::api::systems::SystemState;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Control;
use crate::app::inventory::{inventory_patch, inventory_replace, system_set_state};
use crate::state::AppState;

/// A peer that does not take a frame within this time is treated as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What carries the conversation; it decides the framing and what may happen mid-conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Channel {
    /// Mutual TLS: the certificate identifies the agent; length-prefixed frames.
    Tls,
    /// A guest's virtio-serial port: the socket identifies the guest; frames with resynchronisation markers, and
    /// the agent may start over with a new Hello at any time.
    Serial,
}

/// Frames from the agent, read by the task of [`spawn_reader`].
pub(super) type Frames = mpsc::Receiver<Result<AgentMessage, FrameError>>;

/// Why a conversation ended; told to the agent in the `Goodbye` where it can still be told.
#[derive(Debug, Clone)]
pub(super) struct Ending {
    pub reason: String,
    pub retry: bool,
}

impl Ending {
    pub fn retry(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), retry: true }
    }

    pub fn refuse(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), retry: false }
    }
}

/// Reads frames in a task of its own, because reading a frame is not cancel-safe inside `select!`. The task ends
/// after the first error; the caller aborts it when the conversation ends.
pub(super) fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(
    mut reader: R,
    channel: Channel,
) -> (Frames, JoinHandle<()>) {
    let (sender, frames) = mpsc::channel::<Result<AgentMessage, FrameError>>(4);
    let task = tokio::spawn(async move {
        // Over serial the first frame may follow stale bytes; the synced reader skips to its marker.
        let mut synced = SyncedFrameReader::new(MAX_FRAME_BYTES);
        loop {
            let frame = match channel {
                Channel::Tls => read_frame::<AgentMessage, _>(&mut reader, MAX_FRAME_BYTES).await,
                Channel::Serial => synced.read::<AgentMessage, _>(&mut reader).await,
            };
            let failed = frame.is_err();
            if sender.send(frame).await.is_err() || failed {
                break;
            }
        }
    });
    (frames, task)
}

/// Sends one message in the channel's framing.
pub(super) async fn send<W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &ServerMessage,
    channel: Channel,
) -> Result<(), FrameError> {
    let write = async {
        match channel {
            Channel::Tls => write_frame(writer, message).await,
            Channel::Serial => write_synced_frame(writer, message).await,
        }
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(result) => result,
        Err(_) => Err(FrameError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "the agent stopped reading"))),
    }
}

/// Tells the agent why the conversation ends (best effort, briefly) and closes the writing side.
pub(super) async fn goodbye<W: AsyncWrite + Unpin>(writer: &mut W, ending: Ending, channel: Channel) {
    let message = ServerMessage::Goodbye { reason: ending.reason, retry: ending.retry };
    let _ = tokio::time::timeout(Duration::from_secs(5), send(writer, &message, channel)).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncWriteExt::shutdown(writer)).await;
}

pub(super) fn frame_ending(error: FrameError) -> Ending {
    match error {
        FrameError::Closed => Ending::retry("the agent closed the connection"),
        FrameError::Io(error) => Ending::retry(format!("connection error: {error}")),
        FrameError::TooLarge { length, limit } => {
            Ending::retry(format!("protocol violation: a frame of {length} bytes exceeds the limit of {limit}"))
        }
        FrameError::Malformed(error) => Ending::retry(format!("protocol violation: malformed message: {error}")),
        FrameError::OutOfSync { found } => {
            Ending::retry(format!("the channel is out of step: expected a frame marker, found {found:02x?}"))
        }
    }
}

/// Serves `system`'s agent from its first `hello` until the conversation ends.
pub(super) async fn serve<W: AsyncWrite + Unpin>(
    system: SystemId,
    hello: AgentMessage,
    frames: &mut Frames,
    writer: &mut W,
    state: &AppState,
    channel: Channel,
) -> Ending {
    let (welcome, agent_version) = match welcome_for(state, system, hello).await {
        Ok(welcome) => welcome,
        Err(ending) => return ending,
    };
    let (registration, mut control) = Registration::new(state, system);
    let connection = registration.connection;
    // The system may have been deleted (its certificate revoked) while the hello was awaited, when there was
    // nothing to disconnect.
    if let Err(ending) = exists_still(state, system, channel).await {
        return ending;
    }
    let current = || state.agents.is_current(system, connection);
    if let Err(error) = system_set_state(&state.store, system, SystemState::Online, current).await {
        tracing::warn!(%system, error = %error.message, "cannot record the agent as online");
    }
    if let Err(error) = record_agent_version(state, system, &agent_version).await {
        tracing::warn!(%system, error = %crate::error_chain(&error), "cannot record the agent's version");
    }
    tracing::info!(%system, %agent_version, ?channel, ?welcome, "agent connected");
    let ending = match send(writer, &welcome, channel).await {
        Ok(()) => {
            // The agent samples what the system's monitors need (or nothing): tell it, once the conversation runs.
            let pushing = state.clone();
            tokio::spawn(async move { crate::app::monitors::push_plan(&pushing, system, true).await });
            serve_messages(system, connection, frames, &mut control, writer, state, channel).await
        }
        Err(error) => frame_ending(error),
    };
    drop(registration);
    ending
}

async fn record_agent_version(
    state: &AppState,
    system: SystemId,
    version: &str,
) -> Result<(), steward_store::StoreError> {
    let mut tx = state.store.begin().await?;
    steward_store::systems::set_agent_version(&mut tx, system, version).await?;
    tx.commit().await
}

/// Checks a Hello and builds its Welcome; also returns the agent's version, for the log.
async fn welcome_for(
    state: &AppState,
    system: SystemId,
    hello: AgentMessage,
) -> Result<(ServerMessage, String), Ending> {
    let AgentMessage::Hello { protocol_version, agent_version, inventory_digest } = hello else {
        return Err(Ending::refuse("protocol violation: the first message must be a hello"));
    };
    if protocol_version != PROTOCOL_VERSION {
        return Err(Ending::refuse(format!(
            "this server speaks agent protocol {PROTOCOL_VERSION}, the agent speaks {protocol_version}"
        )));
    }
    let stored_digest = match state.store.conn().await {
        Ok(mut conn) => steward_store::systems::inventory_digest(&mut conn, system).await.ok().flatten(),
        Err(_) => return Err(Ending::retry("the server's store is unavailable")),
    };
    let send_full_inventory = inventory_digest.is_none() || inventory_digest != stored_digest;
    let welcome = ServerMessage::Welcome {
        protocol_version: PROTOCOL_VERSION,
        system_id: system.to_string(),
        send_full_inventory,
    };
    Ok((welcome, agent_version))
}

/// Checks again that the system still exists (deleting a system revokes its certificates).
async fn exists_still(state: &AppState, system: SystemId, channel: Channel) -> Result<(), Ending> {
    let mut conn = state.store.conn().await.map_err(|_| Ending::retry("the server's store is unavailable"))?;
    match steward_store::systems::get(&mut conn, &system.to_string()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) if channel == Channel::Serial => Err(Ending::refuse("this guest's system was deleted from Steward")),
        Ok(None) => Err(Ending::refuse("this agent's certificate is revoked or unknown; enroll it again")),
        Err(_) => Err(Ending::retry("the server's store is unavailable")),
    }
}

/// A connection's place in the registry. Dropping it, on any path out of the connection including a panic,
/// unregisters the connection and records the system offline unless a newer connection took over.
struct Registration {
    state: AppState,
    system: SystemId,
    connection: u64,
}

impl Registration {
    fn new(state: &AppState, system: SystemId) -> (Self, Control) {
        let (connection, control) = state.agents.register(system);
        (Self { state: state.clone(), system, connection }, control)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.state.agents.unregister(self.system, self.connection) {
            return;
        }
        let (state, system) = (self.state.clone(), self.system);
        tokio::spawn(async move {
            let still_gone = || !state.agents.is_connected(system);
            if let Err(error) = system_set_state(&state.store, system, SystemState::Offline, still_gone).await {
                tracing::warn!(%system, error = %error.message, "cannot record the agent as offline");
            }
        });
    }
}

async fn serve_messages<W: AsyncWrite + Unpin>(
    system: SystemId,
    connection: u64,
    frames: &mut Frames,
    control: &mut Control,
    writer: &mut W,
    state: &AppState,
    channel: Channel,
) -> Ending {
    loop {
        tokio::select! {
            // A stop order comes first: when a newer connection replaces this one, its request queue closes at
            // the same moment, and the agent must hear why (replaced, do not retry), not "shutting down".
            biased;
            changed = control.stop.changed() => {
                let stop = control.stop.borrow_and_update().clone();
                return match (changed, stop) {
                    (Ok(()), Some((reason, retry))) => Ending { reason, retry },
                    _ => Ending::retry("the server is shutting down"),
                };
            }
            frame = frames.recv() => {
                let message = match frame {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => return frame_ending(error),
                    None => return Ending::retry("the agent closed the connection"),
                };
                let stored = match message {
                    AgentMessage::Hello { .. } if channel == Channel::Serial => {
                        // The agent in the guest started over (restarted, or its Hello crossed our HelloRequest):
                        // answer as the first time, on the same registration.
                        let welcome = match welcome_for(state, system, message).await {
                            Ok((welcome, agent_version)) => {
                                // It may be a new agent (upgraded in the guest) on the same channel.
                                if let Err(error) = record_agent_version(state, system, &agent_version).await {
                                    tracing::warn!(%system, error = %crate::error_chain(&error), "cannot record the agent's version");
                                }
                                welcome
                            }
                            Err(ending) => return ending,
                        };
                        tracing::debug!(%system, ?welcome, "the agent started over; welcoming it again");
                        if let Err(error) = send(writer, &welcome, channel).await {
                            return frame_ending(error);
                        }
                        Ok(())
                    }
                    AgentMessage::Hello { .. } => return Ending::refuse("protocol violation: a second hello"),
                    AgentMessage::Response { id, response } => {
                        state.agents.answer(system, connection, id, response);
                        Ok(())
                    }
                    AgentMessage::Samples { at_ms, samples } => {
                        state.monitors.submit(system, at_ms, samples).await;
                        Ok(())
                    }
                    AgentMessage::Inventory { inventory } => inventory_replace(&state.store, system, *inventory).await,
                    AgentMessage::InventoryPatch { patch } => {
                        match inventory_patch(&state.store, system, *patch).await {
                            Err(error) if error.code == steward_types::ErrorCode::Conflict => {
                                // The server has nothing to patch: ask for the whole inventory instead.
                                let refresh = ServerMessage::RefreshInventory { full: true };
                                if let Err(error) = send(writer, &refresh, channel).await {
                                    return frame_ending(error);
                                }
                                Ok(())
                            }
                            other => other,
                        }
                    }
                };
                if let Err(error) = stored {
                    tracing::error!(%system, error = %error.message, "cannot store the agent's inventory");
                    return Ending::retry("the server could not store the report; send it again after reconnecting");
                }
            }
            request = control.requests.recv() => match request {
                Some(message) => {
                    if let Err(error) = send(writer, &message, channel).await {
                        return frame_ending(error);
                    }
                }
                None => return Ending::retry("the server is shutting down"),
            },
        }
    }
}
