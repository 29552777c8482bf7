//! How the client reaches a SMAPI server: a [`Transport`] opens one byte stream per request. [`TcpTransport`]
//! dials the request server over TCP; tests and a future IUCV transport plug in their own. TLS, when
//! configured, is layered on top by the client, whatever the transport.

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A connected byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What [`Transport::connect`] returns.
pub type Connecting<'a> = Pin<Box<dyn Future<Output = io::Result<Box<dyn Stream>>> + Send + 'a>>;

/// Opens connections to one SMAPI server.
pub trait Transport: Send + Sync {
    /// Opens a new connection. `ConnectionRefused`, `TimedOut` and similar errors are retried by the client.
    fn connect(&self) -> Connecting<'_>;

    /// Where the connections go, for error messages.
    fn describe(&self) -> String;
}

/// TCP to `host:port` (the request server VSMREQIN listens on 44444 by default).
#[derive(Debug, Clone)]
pub struct TcpTransport {
    address: String,
}

impl TcpTransport {
    pub fn new(address: impl Into<String>) -> Self {
        TcpTransport { address: address.into() }
    }
}

impl Transport for TcpTransport {
    fn connect(&self) -> Connecting<'_> {
        Box::pin(async move {
            let stream = TcpStream::connect(&self.address).await?;
            // Requests are written in one piece and the server answers in pieces; do not delay either.
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Box<dyn Stream>)
        })
    }

    fn describe(&self) -> String {
        self.address.clone()
    }
}

/// Whether a failed connection attempt is worth repeating: the server may be restarting or busy.
pub(crate) fn is_transient_connect_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::TimedOut
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
    )
}
