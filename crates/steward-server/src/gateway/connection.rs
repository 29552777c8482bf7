//! One agent's TLS connection, from handshake to close.
//!
//! ```text
//!  TLS handshake ──> certificate check ──> Hello ──> the conversation of `session.rs`
//!   (CA-signed)      (serial known, not    (within
//!                     revoked, CN = ID)     30 s)
//! ```
//! A connection that fails a check is told why in a `Goodbye` and closed.

use std::net::SocketAddr;
use std::time::Duration;

use steward_types::SystemId;
use tokio::net::TcpStream;

use super::session::{self, Channel, Ending};
use crate::state::AppState;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

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
            session::goodbye(&mut writer, ending, Channel::Tls).await;
            return;
        }
    };
    let (mut frames, reader_task) = session::spawn_reader(reader, Channel::Tls);
    let ending = match tokio::time::timeout(HANDSHAKE_TIMEOUT, frames.recv()).await {
        Ok(Some(Ok(hello))) => session::serve(system, hello, &mut frames, &mut writer, &state, Channel::Tls).await,
        Ok(Some(Err(error))) => session::frame_ending(error),
        Ok(None) => Ending::retry("the agent closed the connection"),
        Err(_) => Ending::retry("no hello within 30 seconds"),
    };
    reader_task.abort();
    tracing::info!(%peer, %system, reason = %ending.reason, "agent connection closed");
    session::goodbye(&mut writer, ending, Channel::Tls).await;
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
