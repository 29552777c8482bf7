//! One agent connection, from TLS handshake to close.
//!
//! ```text
//!  TLS handshake ──> certificate check ──> Hello ──> Welcome ──> serving ──> closed
//!   (CA-signed)      (serial known, not    (protocol            (agent messages,
//!                     revoked, CN = ID)     version)              API requests)
//! ```
//! Any violation (bad frame, unknown message, wrong order, oversized frame) ends the connection with a
//! `Goodbye` naming the reason: a misbehaving agent is disconnected, not trusted.

use std::net::SocketAddr;
use std::time::Duration;

use steward_protocol::{
    AgentMessage, FrameError, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerMessage, read_frame, write_frame,
};
use steward_types::SystemId;
use steward_types::api::systems::SystemState;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::Control;

/// A peer that does not take a frame within this time is treated as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

async fn send<W: AsyncWrite + Unpin>(writer: &mut W, message: &ServerMessage) -> Result<(), FrameError> {
    match tokio::time::timeout(WRITE_TIMEOUT, write_frame(writer, message)).await {
        Ok(result) => result,
        Err(_) => Err(FrameError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "the agent stopped reading"))),
    }
}
use crate::app::inventory::{inventory_patch, inventory_replace, system_set_state};
use crate::state::AppState;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a connection ended; told to the agent in the `Goodbye` where it can still be told.
struct Ending {
    reason: String,
    retry: bool,
}

impl Ending {
    fn retry(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), retry: true }
    }

    fn refuse(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), retry: false }
    }
}

pub(super) async fn handle(stream: TcpStream, peer: SocketAddr, acceptor: tokio_rustls::TlsAcceptor, state: AppState) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "agent TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "agent TLS handshake timed out");
            return;
        }
    };
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|certificate| crate::pki::certificate_serial_and_name(certificate));
    let (reader, mut writer) = tokio::io::split(tls);
    let system = match identify(&state, identity).await {
        Ok(system) => system,
        Err(ending) => {
            tracing::warn!(%peer, reason = %ending.reason, "agent refused");
            goodbye(&mut writer, ending).await;
            return;
        }
    };

    // Frames are read in a task of their own because reading a frame is not cancel-safe inside `select!`.
    let (frames_sender, mut frames) = mpsc::channel::<Result<AgentMessage, FrameError>>(4);
    let reader_task = tokio::spawn(async move {
        let mut reader = reader;
        loop {
            let frame = read_frame::<AgentMessage, _>(&mut reader, MAX_FRAME_BYTES).await;
            let failed = frame.is_err();
            if frames_sender.send(frame).await.is_err() || failed {
                break;
            }
        }
    });
    let ending = serve(system, &mut frames, &mut writer, &state).await;
    reader_task.abort();
    tracing::info!(%peer, %system, reason = %ending.reason, "agent connection closed");
    goodbye(&mut writer, ending).await;
}

async fn identify(state: &AppState, identity: Option<(String, String)>) -> Result<SystemId, Ending> {
    let (serial, common_name) = identity.ok_or_else(|| Ending::refuse("no usable client certificate"))?;
    let unavailable = |_| Ending::retry("the server's store is unavailable");
    let mut conn = state.store.conn().await.map_err(unavailable)?;
    let system = steward_store::systems::certificate_valid_for(&mut conn, &serial)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| Ending::refuse("this agent's certificate is revoked or unknown; enroll it again"))?;
    if system.to_string() != common_name {
        return Err(Ending::refuse("the certificate's name does not match its registration"));
    }
    Ok(system)
}

/// Checks again that the system still exists (deleting a system revokes its certificates).
async fn identify_again(state: &AppState, system: SystemId) -> Result<(), Ending> {
    let mut conn = state.store.conn().await.map_err(|_| Ending::retry("the server's store is unavailable"))?;
    match steward_store::systems::get(&mut conn, &system.to_string()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Ending::refuse("this agent's certificate is revoked or unknown; enroll it again")),
        Err(_) => Err(Ending::retry("the server's store is unavailable")),
    }
}

async fn serve<W: AsyncWrite + Unpin>(
    system: SystemId,
    frames: &mut mpsc::Receiver<Result<AgentMessage, FrameError>>,
    writer: &mut W,
    state: &AppState,
) -> Ending {
    let hello = match tokio::time::timeout(HANDSHAKE_TIMEOUT, frames.recv()).await {
        Ok(Some(Ok(hello))) => hello,
        Ok(Some(Err(error))) => return frame_ending(error),
        Ok(None) => return Ending::retry("the agent closed the connection"),
        Err(_) => return Ending::retry("no hello within 30 seconds"),
    };
    let AgentMessage::Hello { protocol_version, agent_version, inventory_digest } = hello else {
        return Ending::refuse("protocol violation: the first message must be a hello");
    };
    if protocol_version != PROTOCOL_VERSION {
        return Ending::refuse(format!(
            "this server speaks agent protocol {PROTOCOL_VERSION}, the agent speaks {protocol_version}"
        ));
    }
    let stored_digest = match state.store.conn().await {
        Ok(mut conn) => steward_store::systems::inventory_digest(&mut conn, system).await.ok().flatten(),
        Err(_) => return Ending::retry("the server's store is unavailable"),
    };
    let send_full_inventory = inventory_digest.is_none() || inventory_digest != stored_digest;

    let (registration, mut control) = Registration::new(state, system);
    let connection = registration.connection;
    // The certificate may have been revoked while the hello was awaited, when there was nothing to disconnect.
    if let Err(ending) = identify_again(state, system).await {
        return ending;
    }
    let current = || state.agents.is_current(system, connection);
    if let Err(error) = system_set_state(&state.store, system, SystemState::Online, current).await {
        tracing::warn!(%system, error = %error.message, "cannot record the agent as online");
    }
    tracing::info!(%system, %agent_version, send_full_inventory, "agent connected");
    let welcome = ServerMessage::Welcome {
        protocol_version: PROTOCOL_VERSION,
        system_id: system.to_string(),
        send_full_inventory,
    };
    let ending = match send(writer, &welcome).await {
        Ok(()) => serve_messages(system, frames, &mut control, writer, state).await,
        Err(error) => frame_ending(error),
    };
    drop(registration);
    ending
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
    frames: &mut mpsc::Receiver<Result<AgentMessage, FrameError>>,
    control: &mut Control,
    writer: &mut W,
    state: &AppState,
) -> Ending {
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let message = match frame {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => return frame_ending(error),
                    None => return Ending::retry("the agent closed the connection"),
                };
                let stored = match message {
                    AgentMessage::Hello { .. } => return Ending::refuse("protocol violation: a second hello"),
                    AgentMessage::Inventory { inventory } => inventory_replace(&state.store, system, *inventory).await,
                    AgentMessage::InventoryPatch { patch } => {
                        match inventory_patch(&state.store, system, *patch).await {
                            Err(error) if error.code == steward_types::ErrorCode::Conflict => {
                                // The server has nothing to patch: ask for the whole inventory instead.
                                if let Err(error) = send(writer, &ServerMessage::RefreshInventory { full: true }).await {
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
                    if let Err(error) = send(writer, &message).await {
                        return frame_ending(error);
                    }
                }
                None => return Ending::retry("the server is shutting down"),
            },
            changed = control.stop.changed() => {
                let stop = control.stop.borrow_and_update().clone();
                return match (changed, stop) {
                    (Ok(()), Some((reason, retry))) => Ending { reason, retry },
                    _ => Ending::retry("the server is shutting down"),
                };
            }
        }
    }
}

fn frame_ending(error: FrameError) -> Ending {
    match error {
        FrameError::Closed => Ending::retry("the agent closed the connection"),
        FrameError::Io(error) => Ending::retry(format!("connection error: {error}")),
        FrameError::TooLarge { length, limit } => {
            Ending::retry(format!("protocol violation: a frame of {length} bytes exceeds the limit of {limit}"))
        }
        FrameError::Malformed(error) => Ending::retry(format!("protocol violation: malformed message: {error}")),
    }
}

async fn goodbye<W: AsyncWrite + Unpin>(writer: &mut W, ending: Ending) {
    let message = ServerMessage::Goodbye { reason: ending.reason, retry: ending.retry };
    let _ = tokio::time::timeout(Duration::from_secs(5), write_frame(writer, &message)).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncWriteExt::shutdown(writer)).await;
}
