//! File transfers through an agent ([`push`], [`PullStream`]): the steps of `steward_protocol::files`, each an
//! ordinary request through [`Registry::request`], with at most [`FILE_WINDOW_CHUNKS`] chunks in flight. The bytes
//! come from a [`ChunkSource`] (an HTTP request body, a spooled upload) and go out as they arrive, cut into chunks
//! of [`FILE_CHUNK_BYTES`]; so the server holds a window of chunks per transfer, never a file.
//!
//! The server computes SHA-256 as the bytes pass: a push ends with it (and the byte count) in `PushEnd`, and the
//! agent renames nothing unless its own digest matches; a pull's digest is compared with the agent's in the last
//! chunk, and a mismatch ends the stream with an error instead of its end.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use sha2::{Digest, Sha256};
use steward_protocol::files::{
    FILE_CHUNK_BYTES, FILE_WINDOW_CHUNKS, FileRequest, FileResponse, PullBegin, PullChunk, PushBegin, PushChunk,
    PushEnd, PushOutcome, StreamEnd, TransferRef, TransferStarted, decode_chunk, encode_chunk, hex_digest,
};
use steward_protocol::{AgentRequest, AgentResponse};
use steward_types::SystemId;
use tokio::task::{JoinHandle, JoinSet};

use crate::gateway::{AgentRequestError, Registry};

/// How long the agent may take to open a transfer (check the path, create the temporary file).
const BEGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one chunk may wait for its answer (a slow disk, a congested link).
const CHUNK_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the agent may take to finish a push: write what it holds, sync, rename a whole tree.
const END_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The agent could not be asked, or refused (its message names the path and the cause).
    #[error(transparent)]
    Agent(#[from] AgentRequestError),
    /// The bytes to push could not be read (the HTTP client went away, the spool file failed).
    #[error("reading the upload failed: {0}")]
    Source(String),
    /// The upload does not have the digest its sender announced; nothing was written.
    #[error("the upload's SHA-256 is {actual}, not the {expected} it was sent with; nothing was written")]
    UploadChecksum { expected: String, actual: String },
    /// The bytes of a pull do not match the agent's digest.
    #[error(
        "the file changed or was damaged in transit: received {bytes} bytes with SHA-256 {actual}, the agent read {agent_bytes} bytes with SHA-256 {expected}"
    )]
    PullChecksum { bytes: u64, actual: String, agent_bytes: u64, expected: String },
    /// The agent answered something that does not belong to the step.
    #[error("the agent answered a transfer step with something else: {0}")]
    Protocol(String),
}

/// Where the bytes of a push come from.
pub trait ChunkSource: Send {
    /// The next bytes (of any size), `None` at the end.
    fn next_bytes(&mut self) -> impl Future<Output = Option<Result<Bytes, String>>> + Send;
}

/// An HTTP request body as a [`ChunkSource`].
pub struct BodySource(pub axum::body::Body);

impl ChunkSource for BodySource {
    async fn next_bytes(&mut self) -> Option<Result<Bytes, String>> {
        use http_body_util::BodyExt as _;
        loop {
            match self.0.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some(Ok(data)),
                    // Trailers carry no bytes.
                    Err(_) => continue,
                },
                Err(error) => return Some(Err(error.to_string())),
            }
        }
    }
}

/// A file (a spooled upload) as a [`ChunkSource`].
pub struct FileSource(pub tokio::fs::File);

impl ChunkSource for FileSource {
    async fn next_bytes(&mut self) -> Option<Result<Bytes, String>> {
        use tokio::io::AsyncReadExt as _;
        let mut buffer = vec![0u8; FILE_CHUNK_BYTES];
        match self.0.read(&mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some(Ok(Bytes::from(buffer)))
            }
            Err(error) => Some(Err(error.to_string())),
        }
    }
}

/// Pushes the bytes of `source` to `system` as `begin` says; when `expected_sha256` is given, the agent is told
/// to commit only if the bytes have it. Returns what the agent committed.
pub async fn push(
    registry: &Arc<Registry>,
    system: SystemId,
    begin: PushBegin,
    source: &mut impl ChunkSource,
    expected_sha256: Option<&str>,
) -> Result<PushOutcome, TransferError> {
    let started = match registry.request(system, file(FileRequest::PushBegin(begin)), BEGIN_TIMEOUT).await? {
        AgentResponse::File(FileResponse::Started(started)) => started,
        other => return Err(TransferError::Protocol(format!("{other:?}"))),
    };
    let transfer = started.transfer;
    let result = push_chunks(registry, system, transfer, source, expected_sha256).await;
    if result.is_err() {
        close_later(registry, system, transfer);
    }
    result
}

async fn push_chunks(
    registry: &Arc<Registry>,
    system: SystemId,
    transfer: u64,
    source: &mut impl ChunkSource,
    expected_sha256: Option<&str>,
) -> Result<PushOutcome, TransferError> {
    let mut digest = Sha256::new();
    let mut bytes = 0u64;
    let mut sequence = 0u64;
    let mut pending = bytes::BytesMut::new();
    let mut in_flight: JoinSet<Result<AgentResponse, AgentRequestError>> = JoinSet::new();
    let mut finished = false;
    while !finished || !pending.is_empty() {
        if !finished && pending.len() < FILE_CHUNK_BYTES {
            match source.next_bytes().await {
                Some(Ok(data)) => pending.extend_from_slice(&data),
                Some(Err(message)) => return Err(TransferError::Source(message)),
                None => finished = true,
            }
            continue;
        }
        let take = pending.len().min(FILE_CHUNK_BYTES);
        let chunk = pending.split_to(take);
        digest.update(&chunk);
        bytes += chunk.len() as u64;
        let request = file(FileRequest::PushChunk(PushChunk { transfer, sequence, data: encode_chunk(&chunk) }));
        sequence += 1;
        if in_flight.len() >= FILE_WINDOW_CHUNKS {
            accepted(in_flight.join_next().await)?;
        }
        let registry = Arc::clone(registry);
        in_flight.spawn(async move { registry.request(system, request, CHUNK_TIMEOUT).await });
    }
    while let Some(answer) = in_flight.join_next().await {
        accepted(Some(answer))?;
    }
    let sha256 = hex_digest(&digest.finalize());
    if let Some(expected) = expected_sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(TransferError::UploadChecksum { expected: expected.to_ascii_lowercase(), actual: sha256 });
    }
    let end = file(FileRequest::PushEnd(PushEnd { transfer, bytes, sha256 }));
    match registry.request(system, end, END_TIMEOUT).await? {
        AgentResponse::File(FileResponse::Pushed(outcome)) => Ok(outcome),
        other => Err(TransferError::Protocol(format!("{other:?}"))),
    }
}

fn accepted(
    answer: Option<Result<Result<AgentResponse, AgentRequestError>, tokio::task::JoinError>>,
) -> Result<(), TransferError> {
    match answer {
        Some(Ok(Ok(AgentResponse::File(FileResponse::ChunkAccepted(_))))) | None => Ok(()),
        Some(Ok(Ok(other))) => Err(TransferError::Protocol(format!("{other:?}"))),
        Some(Ok(Err(error))) => Err(error.into()),
        Some(Err(error)) => Err(TransferError::Protocol(format!("a chunk's task failed: {error}"))),
    }
}

fn file(request: FileRequest) -> AgentRequest {
    AgentRequest::File(request)
}

/// Tells the agent to abandon `transfer` (it removes what a push wrote), without waiting for its answer.
fn close_later(registry: &Arc<Registry>, system: SystemId, transfer: u64) {
    let registry = Arc::clone(registry);
    tokio::spawn(async move {
        let close = file(FileRequest::Close(TransferRef { transfer }));
        if let Err(error) = registry.request(system, close, BEGIN_TIMEOUT).await {
            tracing::debug!(%system, transfer, %error, "closing a transfer failed (it may have ended already)");
        }
    });
}

/// A pull in progress: [`PullStream::next`] gives the bytes in order, keeping a window of chunks asked for.
pub struct PullStream {
    registry: Arc<Registry>,
    system: SystemId,
    started: TransferStarted,
    next_sequence: u64,
    in_flight: VecDeque<JoinHandle<Result<AgentResponse, AgentRequestError>>>,
    digest: Sha256,
    bytes: u64,
    end: Option<StreamEnd>,
    failed: bool,
}

impl PullStream {
    /// Opens `path` on `system` for reading.
    pub async fn open(registry: &Arc<Registry>, system: SystemId, path: String) -> Result<Self, TransferError> {
        let started =
            match registry.request(system, file(FileRequest::PullBegin(PullBegin { path })), BEGIN_TIMEOUT).await? {
                AgentResponse::File(FileResponse::Started(started)) => started,
                other => return Err(TransferError::Protocol(format!("{other:?}"))),
            };
        Ok(Self {
            registry: Arc::clone(registry),
            system,
            started,
            next_sequence: 0,
            in_flight: VecDeque::new(),
            digest: Sha256::new(),
            bytes: 0,
            end: None,
            failed: false,
        })
    }

    /// What the agent is reading.
    pub fn started(&self) -> &TransferStarted {
        &self.started
    }

    /// The next bytes; `None` once the whole stream came and matched the agent's digest, which
    /// [`PullStream::end`] then holds.
    pub async fn next(&mut self) -> Option<Result<Bytes, TransferError>> {
        if self.end.is_some() || self.failed {
            return None;
        }
        while self.in_flight.len() < FILE_WINDOW_CHUNKS {
            let request = file(FileRequest::PullChunk(PullChunk {
                transfer: self.started.transfer,
                sequence: self.next_sequence,
            }));
            self.next_sequence += 1;
            let (registry, system) = (Arc::clone(&self.registry), self.system);
            self.in_flight
                .push_back(tokio::spawn(async move { registry.request(system, request, CHUNK_TIMEOUT).await }));
        }
        let answer = match self.in_flight.pop_front()?.await {
            Ok(answer) => answer,
            Err(error) => return Some(self.fail(TransferError::Protocol(format!("a chunk's task failed: {error}")))),
        };
        let data = match answer {
            Ok(AgentResponse::File(FileResponse::Data(data))) => data,
            Ok(other) => return Some(self.fail(TransferError::Protocol(format!("{other:?}")))),
            Err(error) => return Some(self.fail(error.into())),
        };
        if let Some(end) = data.end {
            let actual = hex_digest(&self.digest.clone().finalize());
            if end.bytes != self.bytes || end.sha256 != actual {
                return Some(self.fail(TransferError::PullChecksum {
                    bytes: self.bytes,
                    actual,
                    agent_bytes: end.bytes,
                    expected: end.sha256,
                }));
            }
            self.end = Some(end);
            self.stop();
            return None;
        }
        match decode_chunk(&data.data) {
            Ok(bytes) => {
                self.digest.update(&bytes);
                self.bytes += bytes.len() as u64;
                Some(Ok(Bytes::from(bytes)))
            }
            Err(message) => Some(self.fail(TransferError::Protocol(message))),
        }
    }

    /// The verified size and digest, once [`PullStream::next`] returned `None`.
    pub fn end(&self) -> Option<&StreamEnd> {
        self.end.as_ref()
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn fail<T>(&mut self, error: TransferError) -> Result<T, TransferError> {
        self.failed = true;
        self.stop();
        Err(error)
    }

    /// Stops asking and closes the transfer on the agent.
    fn stop(&mut self) {
        for request in self.in_flight.drain(..) {
            request.abort();
        }
        close_later(&self.registry, self.system, self.started.transfer);
    }
}

impl Drop for PullStream {
    fn drop(&mut self) {
        // A reader that went away early (the HTTP client hung up): the agent stops reading.
        if self.end.is_none() && !self.failed {
            self.stop();
        }
    }
}
