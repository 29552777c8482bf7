//! The agent's TLS channel to the gateway (`--channel tls`, the default): TCP with kernel keepalive, then TLS
//! with the certificate from enrollment, verifying the gateway against the server's CA only.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use steward_protocol::{AgentMessage, FrameError, MAX_FRAME_BYTES, ServerMessage, read_frame, write_frame};
use tokio::io::{AsyncRead, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;

use crate::state::Enrolled;

/// How to reach the gateway, and as whom.
pub struct TlsTransport {
    pub(crate) enrolled: Enrolled,
    connector: tokio_rustls::TlsConnector,
}

impl TlsTransport {
    pub fn new(enrolled: Enrolled) -> Result<Self, String> {
        let connector = tls_connector(&enrolled)?;
        Ok(Self { enrolled, connector })
    }
}

/// One TLS connection: frames are read in a task of their own (reading a frame is not cancel-safe).
pub(crate) struct TlsLink {
    frames: mpsc::Receiver<Result<ServerMessage, FrameError>>,
    writer: WriteHalf<TlsStream<TcpStream>>,
    /// The reader task holds the other half of the connection: it goes with the link, or the socket stays open.
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for TlsLink {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl TlsLink {
    pub(crate) async fn connect(transport: &TlsTransport) -> Result<Self, String> {
        let identity = &transport.enrolled.identity;
        let address = (identity.gateway_host.as_str(), identity.gateway_port);
        let tcp = match tokio::time::timeout(Duration::from_secs(30), TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(error)) => return Err(format!("cannot connect to {}:{}: {error}", address.0, address.1)),
            Err(_) => return Err("connecting timed out".into()),
        };
        set_keepalive(&tcp);
        let name = ServerName::try_from(steward_protocol::GATEWAY_TLS_NAME)
            .map_err(|error| format!("the gateway's TLS name is not a valid DNS name: {error}"))?;
        let tls = match tokio::time::timeout(Duration::from_secs(30), transport.connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => return Err(format!("TLS handshake failed: {error}")),
            Err(_) => return Err("TLS handshake timed out".into()),
        };
        let (reader, writer) = tokio::io::split(tls);
        let (frames, reader) = spawn_reader(reader);
        Ok(Self { frames, writer, reader })
    }

    /// The next message; cancel-safe (it comes from the reader task's queue).
    pub(crate) async fn receive(&mut self) -> Result<ServerMessage, FrameError> {
        self.frames.recv().await.unwrap_or(Err(FrameError::Closed))
    }

    pub(crate) async fn send(&mut self, message: &AgentMessage) -> Result<(), FrameError> {
        write_frame(&mut self.writer, message).await
    }
}

fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(
    mut reader: R,
) -> (mpsc::Receiver<Result<ServerMessage, FrameError>>, tokio::task::JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(4);
    let task = tokio::spawn(async move {
        loop {
            let frame = read_frame::<ServerMessage, _>(&mut reader, MAX_FRAME_BYTES).await;
            let failed = frame.is_err();
            if sender.send(frame).await.is_err() || failed {
                break;
            }
        }
    });
    (receiver, task)
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
