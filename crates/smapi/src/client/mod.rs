//! [`SmapiClient`]: typed SMAPI calls over TCP, optionally inside TLS.
//!
//! SMAPI serves **one request per connection**: connect, write the request, read the request id (sent when
//! the server accepts the request), read the output length and the output, close. The client therefore opens a
//! connection per exchange and bounds how many are open at once with a semaphore.
//!
//! Around each exchange:
//! - **Connect retries**: refused or timed-out connections are retried after each delay of
//!   [`ClientConfig::connect_retry_delays`] (zthin's schedule by default: 0, 0, 1, 1, 2, 2, 8, 8, 16, 32 s).
//! - **Timeouts**: the request id must arrive within [`ClientConfig::request_timeout`]; the reply within the
//!   same, or within [`ClientConfig::long_request_timeout`] for functions marked [`CallDuration::Long`].
//! - **Lost replies**: when the connection drops after the request id arrived, the request is in the server's
//!   hands. The client waits [`ClientConfig::recovery_delay`], asks for the reply with `Response_Recovery` on
//!   a new connection, and if the server knows no such request (4/4) sends the original request once more,
//!   as zthin does.
//! - **Asynchronous operations**: a 592 reply means DirMaint goes on working; [`SmapiClient::call`] polls
//!   `Query_Asynchronous_Operation_DM` every [`ClientConfig::poll_interval`] until it succeeds (RS 100),
//!   fails (RS 108) or [`ClientConfig::poll_attempts`] polls have passed. [`SmapiClient::call_once`] returns
//!   the [`Outcome`] without polling.
//!
//! ```no_run
//! # async fn example() -> Result<(), smapi::Error> {
//! use smapi::{ClientConfig, Credentials, SmapiClient, functions::ImageStatusQuery};
//! let credentials = Credentials::new("MAINT", "secret").expect("valid credentials");
//! let client = SmapiClient::new(ClientConfig::new("zvm1.example.com:44444"), credentials);
//! let status = client.call(&ImageStatusQuery::new("LINUX01")).await?;
//! println!("active: {:?}", status.active_images);
//! # Ok(())
//! # }
//! ```

mod transport;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

pub use transport::{Connecting, Stream, TcpTransport, Transport};

use crate::error::Error;
use crate::functions::{OperationStatus, QueryAsynchronousOperationDm, ResponseRecovery};
use crate::request::{CallDuration, Credentials, SmapiRequest, encode_request};
use crate::response::{DEFAULT_MAX_OUTPUT_BYTES, Outcome, Reply, interpret};

/// TLS towards the SMAPI server: the rustls configuration (roots, provider) and the name to verify.
#[derive(Clone)]
pub struct TlsSettings {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TlsSettings").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

/// How the client talks to one SMAPI server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the request server.
    pub address: String,
    pub tls: Option<TlsSettings>,
    /// Connections open at once (each carries one request).
    pub max_concurrent_requests: usize,
    /// How long one connection attempt (and a TLS handshake) may take.
    pub connect_timeout: Duration,
    /// The delays between connection attempts; their number is the number of retries.
    pub connect_retry_delays: Vec<Duration>,
    /// How long sending, the request id and a normal reply may take (zthin: 240 s).
    pub request_timeout: Duration,
    /// How long the reply of a long call may take (Feilong: 900 s).
    pub long_request_timeout: Duration,
    /// The pause before `Response_Recovery` after a connection dropped (zthin: 2 s).
    pub recovery_delay: Duration,
    /// The pause before each poll of an asynchronous operation (zthin: 15 s).
    pub poll_interval: Duration,
    /// The number of polls before giving up on an asynchronous operation (zthin: 12).
    pub poll_attempts: u32,
    /// The largest reply output accepted; a larger announced length is refused before it is read.
    pub max_output_bytes: usize,
}

impl ClientConfig {
    /// zthin's and Feilong's defaults, towards `address` (`host:port`), without TLS.
    pub fn new(address: impl Into<String>) -> Self {
        ClientConfig {
            address: address.into(),
            tls: None,
            max_concurrent_requests: 8,
            connect_timeout: Duration::from_secs(10),
            connect_retry_delays: [0, 0, 1, 1, 2, 2, 8, 8, 16, 32].into_iter().map(Duration::from_secs).collect(),
            request_timeout: Duration::from_secs(240),
            long_request_timeout: Duration::from_secs(900),
            recovery_delay: Duration::from_secs(2),
            poll_interval: Duration::from_secs(15),
            poll_attempts: 12,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// A SMAPI client for one server and one set of credentials; cheap to clone (clones share the connection
/// limit).
#[derive(Clone)]
pub struct SmapiClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    credentials: Credentials,
    transport: Arc<dyn Transport>,
    permits: Semaphore,
}

/// Why one exchange failed: before the server accepted the request, or after (then it can be recovered).
enum ExchangeFailure {
    Before(Error),
    AfterRequestId { request_id: u32, error: Error },
}

impl ExchangeFailure {
    fn into_error(self) -> Error {
        match self {
            ExchangeFailure::Before(error) | ExchangeFailure::AfterRequestId { error, .. } => error,
        }
    }
}

impl SmapiClient {
    /// A client dialing `config.address` over TCP.
    pub fn new(config: ClientConfig, credentials: Credentials) -> Self {
        let transport = Arc::new(TcpTransport::new(config.address.clone()));
        SmapiClient::with_transport(config, credentials, transport)
    }

    /// A client opening its connections through `transport` (`config.address` is then only used in messages).
    pub fn with_transport(config: ClientConfig, credentials: Credentials, transport: Arc<dyn Transport>) -> Self {
        let permits = Semaphore::new(config.max_concurrent_requests.max(1));
        SmapiClient { inner: Arc::new(Inner { config, credentials, transport, permits }) }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Calls `request` and, if the server started an asynchronous operation, waits until it ends.
    pub async fn call<R: SmapiRequest>(&self, request: &R) -> Result<R::Output, Error> {
        match self.call_once(request).await? {
            Outcome::Completed { output, .. } => Ok(output),
            Outcome::Started { operation, output } => {
                if operation.operation_ids.is_empty() {
                    return Err(Error::AsynchronousOperationNotPollable {
                        function: R::FUNCTION,
                        target: request.target().to_owned(),
                        data: operation.data,
                    });
                }
                for operation_id in operation.operation_ids {
                    self.wait_for_operation(R::FUNCTION, request.target(), operation_id).await?;
                }
                Ok(output)
            }
        }
    }

    /// Calls `request` once: the reply decoded, or started asynchronous operations returned unpolled.
    pub async fn call_once<R: SmapiRequest>(&self, request: &R) -> Result<Outcome<R::Output>, Error> {
        let frame = encode_request(request, &self.inner.credentials)
            .map_err(|source| Error::Encode { function: R::FUNCTION, source })?;
        let reply = self.exchange(R::FUNCTION, request.target(), &frame, R::DURATION).await?;
        debug!(
            function = R::FUNCTION,
            target = request.target(),
            request_id = reply.request_id,
            return_code = reply.return_code,
            reason_code = reply.reason_code,
            "SMAPI reply"
        );
        interpret(request, &reply)
    }

    /// Polls an asynchronous operation that `function` started for `target` until it ends.
    pub async fn wait_for_operation(
        &self,
        function: &'static str,
        target: &str,
        operation_id: u32,
    ) -> Result<(), Error> {
        let query = QueryAsynchronousOperationDm::new(target, operation_id);
        for _ in 0..self.inner.config.poll_attempts {
            tokio::time::sleep(self.inner.config.poll_interval).await;
            let status = match self.call_once(&query).await? {
                Outcome::Completed { output, .. } => output,
                // The query itself answered "started": nothing to learn from it; ask again.
                Outcome::Started { .. } => continue,
            };
            match status {
                OperationStatus::Succeeded => return Ok(()),
                OperationStatus::InProgress => {}
                OperationStatus::Failed => {
                    return Err(Error::AsynchronousOperationFailed {
                        function,
                        target: target.to_owned(),
                        operation_id,
                        reason_code: 108,
                    });
                }
                OperationStatus::Unknown(reason_code) => {
                    return Err(Error::AsynchronousOperationFailed {
                        function,
                        target: target.to_owned(),
                        operation_id,
                        reason_code,
                    });
                }
            }
        }
        Err(Error::AsynchronousOperationStillRunning {
            function,
            target: target.to_owned(),
            operation_id,
            polls: self.inner.config.poll_attempts,
        })
    }

    /// One request and its reply, recovering the reply if the connection dropped after the request id.
    async fn exchange(
        &self,
        function: &'static str,
        target: &str,
        frame: &[u8],
        duration: CallDuration,
    ) -> Result<Reply, Error> {
        let (request_id, error) = match self.exchange_once(function, frame, duration).await {
            Ok(reply) => return Ok(reply),
            Err(ExchangeFailure::Before(error)) => return Err(error),
            Err(ExchangeFailure::AfterRequestId { request_id, error }) => (request_id, error),
        };
        warn!(function, request_id, %error, "connection dropped after the request was accepted; recovering the reply");
        tokio::time::sleep(self.inner.config.recovery_delay).await;
        let recovery = ResponseRecovery::new(target, request_id);
        let recovery_frame = encode_request(&recovery, &self.inner.credentials)
            .map_err(|source| Error::Encode { function: "Response_Recovery", source })?;
        let lost = |source: Error| Error::ReplyLost { function, request_id, source: Box::new(source) };
        let recovered = self
            .exchange_once("Response_Recovery", &recovery_frame, duration)
            .await
            .map_err(|failure| lost(failure.into_error()))?;
        if recovered.return_code == 4 && recovered.reason_code == 4 {
            // The server has no record of the request, so it never ran: send it again, once.
            warn!(function, request_id, "the server knows no such request; sending it again");
            return self.exchange_once(function, frame, duration).await.map_err(|failure| lost(failure.into_error()));
        }
        Ok(recovered)
    }

    /// One connection: connect, send, read the request id, read the reply.
    async fn exchange_once(
        &self,
        function: &'static str,
        frame: &[u8],
        duration: CallDuration,
    ) -> Result<Reply, ExchangeFailure> {
        let config = &self.inner.config;
        // The semaphore is never closed, so acquiring only fails if it were; treat that as no limit.
        let _permit = self.inner.permits.acquire().await.ok();
        let mut stream = self.connect().await.map_err(ExchangeFailure::Before)?;
        let request_timeout = config.request_timeout;
        within(function, "sending the request", request_timeout, async {
            stream.write_all(frame).await?;
            stream.flush().await
        })
        .await
        .map_err(ExchangeFailure::Before)?;
        let request_id = within(function, "waiting for the request id", request_timeout, stream.read_u32())
            .await
            .map_err(ExchangeFailure::Before)?;
        let reply_timeout = match duration {
            CallDuration::Normal => config.request_timeout,
            CallDuration::Long => config.long_request_timeout,
        };
        let after_id = |error: Error| match error {
            // A dropped connection loses the reply, which the server still has: recoverable.
            Error::Io { .. } => ExchangeFailure::AfterRequestId { request_id, error },
            other => ExchangeFailure::Before(other),
        };
        let output_length =
            within(function, "waiting for the reply", reply_timeout, stream.read_u32()).await.map_err(after_id)?;
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&request_id.to_be_bytes());
        header[4..].copy_from_slice(&output_length.to_be_bytes());
        let (_, length) = Reply::read_header(header, config.max_output_bytes)
            .map_err(|source| ExchangeFailure::Before(Error::Decode { function, source }))?;
        let body = within(function, "reading the reply", reply_timeout, read_body(&mut stream, length))
            .await
            .map_err(after_id)?;
        // The server closes its side after the reply; closing ours is a courtesy whose failure changes nothing.
        let _ = stream.shutdown().await;
        Reply::from_body(request_id, body).map_err(|source| ExchangeFailure::Before(Error::Decode { function, source }))
    }

    /// A connection, retried on transient errors, with TLS when configured.
    async fn connect(&self) -> Result<Box<dyn Stream>, Error> {
        let config = &self.inner.config;
        let address = self.inner.transport.describe();
        let mut attempts = 0u32;
        let stream = loop {
            let error = match tokio::time::timeout(config.connect_timeout, self.inner.transport.connect()).await {
                Ok(Ok(stream)) => break stream,
                Ok(Err(error)) => error,
                Err(_) => std::io::Error::new(std::io::ErrorKind::TimedOut, "connection attempt timed out"),
            };
            let retry = config.connect_retry_delays.get(attempts as usize).copied();
            attempts += 1;
            match retry {
                Some(delay) if transport::is_transient_connect_error(&error) => {
                    debug!(%address, attempts, %error, ?delay, "SMAPI connection failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                _ => return Err(Error::Connect { address, attempts, source: error }),
            }
        };
        let Some(tls) = &config.tls else {
            return Ok(stream);
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config));
        match tokio::time::timeout(config.connect_timeout, connector.connect(tls.server_name.clone(), stream)).await {
            Ok(Ok(stream)) => Ok(Box::new(stream)),
            Ok(Err(source)) => Err(Error::Tls { address, source }),
            Err(_) => Err(Error::Tls {
                address,
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"),
            }),
        }
    }
}

/// Reads exactly `length` bytes, growing the buffer as data arrives rather than trusting the length up front
/// (it was checked against the configured limit, but the peer may still stop sending early).
async fn read_body(stream: &mut Box<dyn Stream>, length: usize) -> std::io::Result<Vec<u8>> {
    const CHUNK: usize = 64 * 1024;
    let mut body = Vec::with_capacity(length.min(CHUNK));
    let mut limited = stream.take(length as u64);
    limited.read_to_end(&mut body).await?;
    if body.len() != length {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the reply ended after {} of {length} bytes", body.len()),
        ));
    }
    Ok(body)
}

/// Runs one step of an exchange with a timeout, naming the step in errors.
async fn within<T>(
    function: &'static str,
    stage: &'static str,
    after: Duration,
    step: impl Future<Output = std::io::Result<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(after, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(Error::Io { function, stage, source }),
        Err(_) => Err(Error::Timeout { function, stage, after }),
    }
}
