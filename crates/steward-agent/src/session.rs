//! The agent's connection to the gateway: connect with its certificate, say hello, report inventory, then wait
//! for either a request from the server or a change on the system. Reconnects with jittered backoff.
//!
//! ```text
//!            ┌────────── backoff (1 s .. 60 s, jittered) ◄─────────┐
//!            ▼                                                      │ connection lost, Goodbye{retry}
//!   connect + TLS ──► Hello ──► Welcome ──► report ──► idle ────────┤
//!                                            ▲          │ change noticed (inotify, netlink, mounts)
//!                                            └──────────┘ or RefreshInventory
//!   Goodbye{retry: false} ──► exit: the certificate was revoked
//! ```
//! While idle the agent has nothing scheduled: it sleeps in epoll until the server or the kernel has news.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use steward_protocol::{
    AgentMessage, FrameError, Inventory, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerMessage, read_frame, write_frame,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::state::{Enrolled, StateDir};
use crate::watch::ChangeWatcher;

/// A connection that lasted this long resets the reconnect backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(60);

/// Why the agent stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    #[error("the server refused this agent for good: {0}")]
    Refused(String),
    #[error("cannot set up TLS from the state directory: {0}")]
    Tls(String),
}

/// How one connection ended.
enum Ended {
    /// Try again after a backoff delay.
    Retry(String),
    /// Do not try again with this identity.
    Refused(String),
    /// A signal asked us to stop.
    Shutdown,
}

pub struct Session {
    enrolled: Enrolled,
    state: StateDir,
    inventory_root: PathBuf,
    tls: tokio_rustls::TlsConnector,
}

impl Session {
    pub fn new(enrolled: Enrolled, state: StateDir, inventory_root: PathBuf) -> Result<Self, Stopped> {
        let tls = tls_connector(&enrolled).map_err(Stopped::Tls)?;
        Ok(Self { enrolled, state, inventory_root, tls })
    }

    /// Runs until a signal (returns `Ok`) or until the server refuses the agent for good.
    pub async fn run(self, watcher: &mut ChangeWatcher, shutdown: &mut mpsc::Receiver<()>) -> Result<(), Stopped> {
        let mut backoff = Backoff::default();
        loop {
            let started = tokio::time::Instant::now();
            let ended = tokio::select! {
                ended = self.connect_and_serve(watcher) => ended,
                _ = shutdown.recv() => Ended::Shutdown,
            };
            // Only a connection that lasted starts the delays afresh; one the server keeps ending at once (a full
            // disk, say) must not turn the fleet into a tight reconnect loop.
            if started.elapsed() >= STABLE_CONNECTION {
                backoff.reset();
            }
            match ended {
                Ended::Shutdown => return Ok(()),
                Ended::Refused(reason) => return Err(Stopped::Refused(reason)),
                Ended::Retry(reason) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%reason, ?delay, "disconnected from the server; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.recv() => return Ok(()),
                    }
                }
            }
        }
    }

    async fn connect_and_serve(&self, watcher: &mut ChangeWatcher) -> Ended {
        let identity = &self.enrolled.identity;
        let address = (identity.gateway_host.as_str(), identity.gateway_port);
        let tcp = match tokio::time::timeout(Duration::from_secs(30), TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(error)) => return Ended::Retry(format!("cannot connect to {}:{}: {error}", address.0, address.1)),
            Err(_) => return Ended::Retry("connecting timed out".into()),
        };
        set_keepalive(&tcp);
        let name = ServerName::try_from(steward_protocol::GATEWAY_TLS_NAME).expect("a valid DNS name");
        let tls = match tokio::time::timeout(Duration::from_secs(30), self.tls.connect(name, tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => return Ended::Retry(format!("TLS handshake failed: {error}")),
            Err(_) => return Ended::Retry("TLS handshake timed out".into()),
        };
        let (reader, mut writer) = tokio::io::split(tls);
        let mut frames = spawn_reader(reader);
        let mut last = self.state.last_inventory();
        let hello = AgentMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            inventory_digest: last.as_ref().map(Inventory::digest),
        };
        if let Err(error) = write_frame(&mut writer, &hello).await {
            return Ended::Retry(format!("cannot send hello: {error}"));
        }
        let send_full = match tokio::time::timeout(Duration::from_secs(30), frames.recv()).await {
            Ok(Some(Ok(ServerMessage::Welcome { send_full_inventory, .. }))) => send_full_inventory,
            Ok(Some(Ok(ServerMessage::Goodbye { reason, retry }))) => return goodbye(reason, retry),
            Ok(Some(Ok(other))) => return Ended::Retry(format!("expected a welcome, got {other:?}")),
            Ok(Some(Err(error))) => return frame_ended(error),
            Ok(None) => return Ended::Retry("the server closed the connection".into()),
            Err(_) => return Ended::Retry("no welcome within 30 seconds".into()),
        };
        tracing::info!(system = %self.enrolled.identity.system_name, "connected to the server");
        if send_full {
            last = None;
        }
        if let Err(ended) = self.report(&mut writer, &mut last).await {
            return ended;
        }
        loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some(Ok(ServerMessage::RefreshInventory { full })) => {
                        tracing::info!(full, "the server asked for an inventory refresh");
                        if full {
                            last = None;
                        }
                        if let Err(ended) = self.report(&mut writer, &mut last).await {
                            return ended;
                        }
                    }
                    Some(Ok(ServerMessage::Goodbye { reason, retry })) => return goodbye(reason, retry),
                    Some(Ok(ServerMessage::Welcome { .. })) => return Ended::Retry("protocol violation: a second welcome".into()),
                    Some(Err(error)) => return frame_ended(error),
                    None => return Ended::Retry("the server closed the connection".into()),
                },
                () = watcher.changed() => {
                    if let Err(ended) = self.report(&mut writer, &mut last).await {
                        return ended;
                    }
                }
            }
        }
    }

    /// Collects the inventory and sends it whole (when `last` is `None`) or as a patch against `last`.
    async fn report<W: AsyncWrite + Unpin>(&self, writer: &mut W, last: &mut Option<Inventory>) -> Result<(), Ended> {
        let current = crate::inventory::collect(&self.inventory_root);
        let message = match last.as_ref() {
            None => AgentMessage::Inventory { inventory: Box::new(current.clone()) },
            Some(previous) => match previous.diff(&current) {
                Some(patch) => AgentMessage::InventoryPatch { patch: Box::new(patch) },
                None => return Ok(()),
            },
        };
        write_frame(writer, &message).await.map_err(frame_ended)?;
        if let Err(error) = self.state.save_last_inventory(&current) {
            tracing::warn!(error = %error, "cannot keep the reported inventory; the next connection sends it whole");
        }
        *last = Some(current);
        // Collecting and encoding an inventory peaks at a few MiB of heap; give it back before idling.
        // SAFETY: malloc_trim only releases free heap memory and is safe to call at any time.
        #[cfg(target_env = "gnu")]
        unsafe {
            libc::malloc_trim(0)
        };
        Ok(())
    }
}

fn goodbye(reason: String, retry: bool) -> Ended {
    if retry { Ended::Retry(format!("the server said goodbye: {reason}")) } else { Ended::Refused(reason) }
}

fn frame_ended(error: FrameError) -> Ended {
    match error {
        FrameError::Closed => Ended::Retry("the server closed the connection".into()),
        other => Ended::Retry(format!("connection error: {other}")),
    }
}

/// Reads frames in a task of its own (reading a frame is not cancel-safe inside `select!`).
fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(
    mut reader: R,
) -> mpsc::Receiver<Result<ServerMessage, FrameError>> {
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let frame = read_frame::<ServerMessage, _>(&mut reader, MAX_FRAME_BYTES).await;
            let failed = frame.is_err();
            if sender.send(frame).await.is_err() || failed {
                break;
            }
        }
    });
    receiver
}

/// Kernel keepalive finds a vanished server without the agent ever waking on a timer of its own.
fn set_keepalive(stream: &TcpStream) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
    let settings: [(libc::c_int, libc::c_int, libc::c_int); 4] = [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 120),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 30),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 4),
    ];
    for (level, option, value) in settings {
        // SAFETY: `fd` is a valid socket owned by `stream` for the duration of this call, and `value` is a
        // c_int whose size is passed along.
        let result = unsafe {
            libc::setsockopt(
                fd,
                level,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result != 0 {
            tracing::debug!(option, "cannot set a keepalive option");
        }
    }
    let _ = stream.set_nodelay(true);
}

fn tls_connector(enrolled: &Enrolled) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(enrolled.ca_pem.as_bytes()) {
        let certificate = certificate.map_err(|error| format!("ca.pem: {error}"))?;
        roots.add(certificate).map_err(|error| format!("ca.pem: {error}"))?;
    }
    let chain = CertificateDer::pem_slice_iter(enrolled.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("agent.pem: {error}"))?;
    let key =
        PrivateKeyDer::from_pem_slice(enrolled.key_pem.as_bytes()).map_err(|error| format!("agent.key: {error}"))?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|error| format!("agent certificate: {error}"))?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
