//! File transfers for the server (`steward_protocol::files` has the conversation): each open transfer is a task
//! of its own that takes its requests in order from a short queue, and does its file work on a blocking thread
//! (`tree.rs`) fed through a channel of at most two chunks. So a transfer holds a few chunks at most, the
//! conversation never waits for a disk, and other requests and reports go on meanwhile.
//!
//! ```text
//!  conversation ──(request, in order)──> transfer task ──(chunks, 2 at most)──> blocking writer: temp file(s)
//!       ▲                                     │  acknowledges a chunk once the writer took it
//!       └────────────── answers ──────────────┘  PushEnd: compare bytes and SHA-256, then commit (rename)
//! ```
//!
//! Transfers belong to the conversation they started in ([`Transfers`] lives as long as it): when it ends,
//! their queues close, the tasks stop, and what a push wrote under temporary names is removed.

pub mod owners;
pub mod policy;
pub mod tree;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use steward_protocol::files::{
    ChunkAccepted, FILE_CHUNK_BYTES, FILE_WINDOW_CHUNKS, FileRequest, FileResponse, PullBegin, PullData, PushBegin,
    PushEnd, PushOutcome, StreamEnd, StreamFormat, TransferRef, TransferStarted, decode_chunk, encode_chunk,
    hex_digest,
};
use steward_protocol::{AgentMessage, AgentResponse};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use self::owners::Owners;
use self::policy::FilePolicy;
use self::tree::{Meta, Staging};
use crate::requests::{Answers, answer};

/// How many transfers may be open at a time in one conversation.
pub const MAX_TRANSFERS: usize = 8;

/// A request for a transfer task, with the ID to answer it under.
type Step = (u64, FileRequest);

/// Why a transfer failed, once it has.
type Failure = Arc<std::sync::Mutex<Option<String>>>;

/// What a transfer does, with the ID of the request that began it.
enum Work {
    Push(u64, PushBegin),
    Pull(u64, PullBegin),
}

/// Runs a transfer's task; when it fails, records why and answers the steps still queued with the same reason.
async fn run(
    transfer: u64,
    work: Work,
    policy: Arc<FilePolicy>,
    failure: Failure,
    mut steps: mpsc::Receiver<Step>,
    answers: Answers,
) {
    let result = match work {
        Work::Push(id, begin) => push(transfer, id, begin, policy, &mut steps, &answers).await,
        Work::Pull(id, begin) => pull(transfer, id, begin, policy, &mut steps, &answers).await,
    };
    let Err(reason) = result else { return };
    tracing::debug!(transfer, %reason, "a transfer failed");
    if let Ok(mut slot) = failure.lock() {
        *slot = Some(reason.clone());
    }
    steps.close();
    while let Ok((id, _)) = steps.try_recv() {
        let _ = answers.send(error_answer(id, reason.clone())).await;
    }
}

/// Answers `id` with an error and returns it as the transfer's failure.
async fn fail(answers: &Answers, id: u64, message: String) -> Result<(), String> {
    let _ = answers.send(error_answer(id, message.clone())).await;
    Err(message)
}

/// The open transfers of one conversation.
pub struct Transfers {
    policy: Arc<FilePolicy>,
    open: HashMap<u64, (mpsc::Sender<Step>, Failure)>,
    next: u64,
}

impl Transfers {
    pub fn new(policy: Arc<FilePolicy>) -> Self {
        Self { policy, open: HashMap::new(), next: 0 }
    }

    /// Takes request `id`; returns an answer to send now, or `None` when the transfer's task will answer through
    /// `answers`.
    pub fn handle(&mut self, id: u64, request: FileRequest, answers: &Answers) -> Option<AgentMessage> {
        match request {
            FileRequest::PushBegin(begin) => {
                let (transfer, steps, failure) = match self.open_transfer() {
                    Ok(opened) => opened,
                    Err(message) => return Some(answer(id, AgentResponse::Error { message })),
                };
                tracing::info!(id, transfer, path = %begin.path, format = ?begin.format, "receiving a file from the server");
                let work = Work::Push(id, begin);
                tokio::spawn(run(transfer, work, Arc::clone(&self.policy), failure, steps, answers.clone()));
                None
            }
            FileRequest::PullBegin(begin) => {
                let (transfer, steps, failure) = match self.open_transfer() {
                    Ok(opened) => opened,
                    Err(message) => return Some(answer(id, AgentResponse::Error { message })),
                };
                tracing::info!(id, transfer, path = %begin.path, "sending a file to the server");
                let work = Work::Pull(id, begin);
                tokio::spawn(run(transfer, work, Arc::clone(&self.policy), failure, steps, answers.clone()));
                None
            }
            FileRequest::PushChunk(ref chunk) => self.forward(chunk.transfer, id, request),
            FileRequest::PushEnd(ref end) => self.forward(end.transfer, id, request),
            FileRequest::PullChunk(ref chunk) => self.forward(chunk.transfer, id, request),
            FileRequest::Close(TransferRef { transfer }) => {
                if self.open.get(&transfer).is_some_and(|(steps, _)| !steps.is_closed()) {
                    return self.forward(transfer, id, request);
                }
                // Closing a transfer that already ended is not an error: it is closed.
                self.open.remove(&transfer);
                Some(file_answer(id, FileResponse::Closed(TransferRef { transfer })))
            }
        }
    }

    fn open_transfer(&mut self) -> Result<(u64, mpsc::Receiver<Step>, Failure), String> {
        self.open.retain(|_, (steps, _)| !steps.is_closed());
        if self.open.len() >= MAX_TRANSFERS {
            return Err(format!(
                "busy: {MAX_TRANSFERS} file transfers are open on this agent already; try again later"
            ));
        }
        self.next += 1;
        let (sender, steps) = mpsc::channel(FILE_WINDOW_CHUNKS + 2);
        let failure = Failure::default();
        self.open.insert(self.next, (sender, Arc::clone(&failure)));
        Ok((self.next, steps, failure))
    }

    fn forward(&mut self, transfer: u64, id: u64, request: FileRequest) -> Option<AgentMessage> {
        let Some((steps, failure)) = self.open.get(&transfer) else {
            let message =
                format!("there is no transfer {transfer} on this connection (it ended, failed or never began)");
            return Some(answer(id, AgentResponse::Error { message }));
        };
        let message = match steps.try_send((id, request)) {
            Ok(()) => return None,
            Err(TrySendError::Full(_)) => {
                format!("transfer {transfer}: more than {FILE_WINDOW_CHUNKS} chunks in flight")
            }
            Err(TrySendError::Closed(_)) => {
                // A transfer that failed answers every later step with the reason it failed, so the caller hears
                // it whichever answer arrives first.
                let reason = failure.lock().ok().and_then(|reason| reason.clone());
                self.open.remove(&transfer);
                reason.unwrap_or_else(|| format!("transfer {transfer} has ended"))
            }
        };
        Some(answer(id, AgentResponse::Error { message }))
    }
}

/// Whether `message` answers one chunk of a transfer (after which the conversation does not trim its heap).
pub fn is_chunk_answer(message: &AgentMessage) -> bool {
    matches!(
        message,
        AgentMessage::Response {
            response: AgentResponse::File(
                FileResponse::ChunkAccepted(_) | FileResponse::Data(PullData { end: None, .. })
            ),
            ..
        }
    )
}

fn file_answer(id: u64, response: FileResponse) -> AgentMessage {
    answer(id, AgentResponse::File(response))
}

fn error_answer(id: u64, message: String) -> AgentMessage {
    answer(id, AgentResponse::Error { message })
}

/// One push: prepare (check the path, create the temporary file or the directory), stream the chunks to the
/// blocking writer, then verify and commit on `PushEnd`.
async fn push(
    transfer: u64,
    begin_id: u64,
    begin: PushBegin,
    policy: Arc<FilePolicy>,
    steps: &mut mpsc::Receiver<Step>,
    answers: &Answers,
) -> Result<(), String> {
    let format = begin.format;
    let prepared = tokio::task::spawn_blocking(move || prepare_push(&policy, &begin)).await;
    let (mut staging, file) = match prepared {
        Ok(Ok(prepared)) => prepared,
        Ok(Err(message)) => {
            tracing::info!(transfer, %message, "refusing a push");
            return fail(answers, begin_id, message).await;
        }
        Err(error) => {
            return fail(answers, begin_id, format!("preparing the transfer failed: {error}")).await;
        }
    };
    let started = TransferStarted { transfer, format, entry: None };
    if answers.send(file_answer(begin_id, FileResponse::Started(started))).await.is_err() {
        return Ok(());
    }
    let (chunks, received) = mpsc::channel::<Vec<u8>>(2);
    let writer = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader::new(received);
        let written = match file {
            Some(file) => staging.write_file(file, &mut reader).map(|_| ()),
            None => staging.unpack(&mut reader),
        };
        // Dropping the staging on error removes what it wrote.
        let summary = reader.summary();
        written.map(|()| (staging, summary.bytes, summary.sha256))
    });
    let mut chunks = Some(chunks);
    // Chunks may arrive out of order (the server sends its window of requests concurrently); they are taken in
    // sequence, the early ones waiting here (at most a window of them).
    let mut waiting: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    let mut expected = 0u64;
    while let Some((id, step)) = steps.recv().await {
        let reply = match step {
            FileRequest::PushChunk(chunk) => {
                if chunk.sequence < expected
                    || chunk.sequence >= expected + FILE_WINDOW_CHUNKS as u64
                    || waiting.contains_key(&chunk.sequence)
                {
                    let message = format!(
                        "transfer {transfer}: chunk {} is outside the window (chunk {expected} is due)",
                        chunk.sequence
                    );
                    return fail(answers, id, message).await;
                }
                waiting.insert(chunk.sequence, (id, chunk.data));
                while let Some((id, data)) = waiting.remove(&expected) {
                    let sequence = expected;
                    expected += 1;
                    let data = match decode_chunk(&data) {
                        Ok(data) => data,
                        Err(message) => {
                            return fail(answers, id, format!("transfer {transfer}: {message}")).await;
                        }
                    };
                    let taken = match &chunks {
                        Some(chunks) => chunks.send(data).await.is_ok(),
                        None => false,
                    };
                    if !taken {
                        // The writer stopped: its error is the answer.
                        drop(chunks.take());
                        let message = match writer.await {
                            Ok(Err(message)) => message,
                            Ok(Ok(_)) => "the writer stopped before the end of the stream".into(),
                            Err(error) => format!("the writer failed: {error}"),
                        };
                        tracing::info!(transfer, %message, "a push failed");
                        return fail(answers, id, message).await;
                    }
                    let accepted = ChunkAccepted { transfer, sequence };
                    if answers.send(file_answer(id, FileResponse::ChunkAccepted(accepted))).await.is_err() {
                        return Ok(());
                    }
                }
                continue;
            }
            FileRequest::PushEnd(end) => {
                drop(chunks.take());
                let reply = if waiting.is_empty() {
                    finish_push(transfer, id, end, writer).await
                } else {
                    error_answer(id, format!("transfer {transfer}: the push ended before chunk {expected} came"))
                };
                let _ = answers.send(reply).await;
                return Ok(());
            }
            FileRequest::Close(_) => {
                tracing::info!(transfer, "the server abandoned a push; removing what it wrote");
                let _ = answers.send(file_answer(id, FileResponse::Closed(TransferRef { transfer }))).await;
                return Ok(());
            }
            other => error_answer(id, format!("transfer {transfer} is a push; {other:?} does not belong to it")),
        };
        let _ = answers.send(reply).await;
        return Ok(());
    }
    tracing::info!(transfer, "the connection ended during a push; removing what it wrote");
    Ok(())
}

/// Ends a push: waits for the writer, compares what it received with what the server sent, and commits.
async fn finish_push(
    transfer: u64,
    id: u64,
    end: PushEnd,
    writer: tokio::task::JoinHandle<Result<(Staging, u64, String), String>>,
) -> AgentMessage {
    match writer.await {
        Ok(Ok((staging, bytes, sha256))) => {
            if bytes != end.bytes || sha256 != end.sha256 {
                let target = staging.target().display().to_string();
                drop(staging);
                return error_answer(
                    id,
                    format!(
                        "{target}: checksum mismatch: received {bytes} bytes with SHA-256 {sha256}, the server sent \
                         {} bytes with SHA-256 {}; nothing was written",
                        end.bytes, end.sha256
                    ),
                );
            }
            let path = staging.target().display().to_string();
            match tokio::task::spawn_blocking(move || staging.commit()).await {
                Ok(Ok(entries)) => {
                    tracing::info!(transfer, %path, bytes, %sha256, entries, "a push was committed");
                    file_answer(id, FileResponse::Pushed(PushOutcome { path, bytes, sha256, entries }))
                }
                Ok(Err(message)) => error_answer(id, message),
                Err(error) => error_answer(id, format!("committing the transfer failed: {error}")),
            }
        }
        Ok(Err(message)) => error_answer(id, message),
        Err(error) => error_answer(id, format!("the writer failed: {error}")),
    }
}

/// Checks the path and prepares the staging: a temporary file for a file, the directory for a tar stream.
fn prepare_push(policy: &FilePolicy, begin: &PushBegin) -> Result<(Staging, Option<std::fs::File>), String> {
    if let Some(mode) = begin.mode
        && mode > 0o7777
    {
        return Err(format!("mode {mode:o} is not a permission mode (0 to 7777 in octal)"));
    }
    let target = policy.writable(&begin.path)?;
    let owners = Owners::load(Path::new("/"));
    let (uid, gid) = match &begin.owner {
        Some(spec) => owners.resolve(spec)?,
        None => (None, None),
    };
    let meta = Meta { mode: begin.mode, uid, gid, mtime: begin.mtime };
    match begin.format {
        StreamFormat::File => Staging::for_file(target, meta).map(|(staging, file)| (staging, Some(file))),
        StreamFormat::Tar => {
            // Only root can give files away; another agent user keeps its own.
            // SAFETY: geteuid has no preconditions and cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            Staging::for_directory(target, meta, root, owners).map(|staging| (staging, None))
        }
    }
}

/// One pull: open the file (or walk the directory into a tar stream) on a blocking thread that fills a channel of
/// two chunks, and answer each `PullChunk` with the next one.
async fn pull(
    transfer: u64,
    begin_id: u64,
    begin: PullBegin,
    policy: Arc<FilePolicy>,
    steps: &mut mpsc::Receiver<Step>,
    answers: &Answers,
) -> Result<(), String> {
    let prepared = tokio::task::spawn_blocking(move || {
        let real = policy.readable(&begin.path)?;
        let owners = Owners::load(Path::new("/"));
        let entry = tree::entry_metadata(&real, &owners)
            .map_err(|error| format!("{}: {}", begin.path, policy::describe_io(&error)))?;
        let source = match entry.kind {
            steward_protocol::files::EntryKind::Directory => Source::Directory(real),
            _ => Source::File(
                std::fs::File::open(&real)
                    .map_err(|error| format!("{}: {}", begin.path, policy::describe_io(&error)))?,
            ),
        };
        Ok::<_, String>((source, entry, owners))
    })
    .await;
    let (source, entry, owners) = match prepared {
        Ok(Ok(prepared)) => prepared,
        Ok(Err(message)) => {
            tracing::info!(transfer, %message, "refusing a pull");
            return fail(answers, begin_id, message).await;
        }
        Err(error) => {
            return fail(answers, begin_id, format!("preparing the transfer failed: {error}")).await;
        }
    };
    let format = match source {
        Source::Directory(_) => StreamFormat::Tar,
        Source::File(_) => StreamFormat::File,
    };
    let started = TransferStarted { transfer, format, entry: Some(entry) };
    if answers.send(file_answer(begin_id, FileResponse::Started(started))).await.is_err() {
        return Ok(());
    }
    let (chunks, mut produced) = mpsc::channel::<Vec<u8>>(2);
    let mut producer = Some(tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter::new(chunks);
        match source {
            Source::File(mut file) => io::copy(&mut file, &mut writer)
                .map(|_| ())
                .map_err(|error| format!("reading failed: {}", policy::describe_io(&error)))?,
            Source::Directory(root) => tree::pack(&root, &mut writer, &owners)?,
        }
        writer.finish()
    }));
    let mut end: Option<StreamEnd> = None;
    // Requests may arrive out of order; each is answered with its chunk, in sequence.
    let mut waiting: BTreeMap<u64, u64> = BTreeMap::new();
    let mut expected = 0u64;
    while let Some((id, step)) = steps.recv().await {
        match step {
            FileRequest::PullChunk(chunk) => {
                if chunk.sequence < expected
                    || chunk.sequence >= expected + FILE_WINDOW_CHUNKS as u64
                    || waiting.contains_key(&chunk.sequence)
                {
                    let message = format!(
                        "transfer {transfer}: chunk {} is outside the window (chunk {expected} is due)",
                        chunk.sequence
                    );
                    return fail(answers, id, message).await;
                }
                waiting.insert(chunk.sequence, id);
            }
            FileRequest::Close(_) => {
                let _ = answers.send(file_answer(id, FileResponse::Closed(TransferRef { transfer }))).await;
                return Ok(());
            }
            other => {
                let message = format!("transfer {transfer} is a pull; {other:?} does not belong to it");
                return fail(answers, id, message).await;
            }
        }
        while let Some(id) = waiting.remove(&expected) {
            let sequence = expected;
            expected += 1;
            let data = |data: String, end: Option<StreamEnd>| {
                file_answer(id, FileResponse::Data(PullData { transfer, sequence, data, end }))
            };
            let reply = if let Some(end) = &end {
                data(String::new(), Some(end.clone()))
            } else if let Some(bytes) = produced.recv().await {
                data(encode_chunk(&bytes), None)
            } else {
                let finished = match producer.take() {
                    Some(producer) => producer.await.unwrap_or_else(|error| Err(format!("the reader failed: {error}"))),
                    None => Err("the reader is gone".into()),
                };
                match finished {
                    Ok(finished) => {
                        tracing::info!(transfer, bytes = finished.bytes, sha256 = %finished.sha256, "a pull was read to its end");
                        end = Some(finished.clone());
                        data(String::new(), Some(finished))
                    }
                    Err(message) => {
                        tracing::info!(transfer, %message, "a pull failed");
                        return fail(answers, id, message).await;
                    }
                }
            };
            if answers.send(reply).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

enum Source {
    File(std::fs::File),
    Directory(std::path::PathBuf),
}

/// Chunks from an async task as a blocking reader (for a blocking thread), counting and hashing what it reads.
pub struct ChannelReader {
    chunks: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    position: usize,
    bytes: u64,
    digest: Sha256,
}

impl ChannelReader {
    pub fn new(chunks: mpsc::Receiver<Vec<u8>>) -> Self {
        Self { chunks, current: Vec::new(), position: 0, bytes: 0, digest: Sha256::new() }
    }

    /// The bytes read so far and their SHA-256 (lower-case hexadecimal).
    pub fn summary(self) -> StreamEnd {
        StreamEnd { bytes: self.bytes, sha256: hex_digest(&self.digest.finalize()) }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.position == self.current.len() {
            match self.chunks.blocking_recv() {
                Some(chunk) => {
                    self.digest.update(&chunk);
                    self.bytes += chunk.len() as u64;
                    self.current = chunk;
                    self.position = 0;
                }
                None => return Ok(0),
            }
        }
        let count = buffer.len().min(self.current.len() - self.position);
        buffer[..count].copy_from_slice(&self.current[self.position..self.position + count]);
        self.position += count;
        Ok(count)
    }
}

/// A blocking writer (for a blocking thread) that sends full chunks of [`FILE_CHUNK_BYTES`] to an async task,
/// counting and hashing what it sends.
pub struct ChannelWriter {
    chunks: mpsc::Sender<Vec<u8>>,
    buffer: Vec<u8>,
    bytes: u64,
    digest: Sha256,
}

impl ChannelWriter {
    pub fn new(chunks: mpsc::Sender<Vec<u8>>) -> Self {
        Self { chunks, buffer: Vec::with_capacity(FILE_CHUNK_BYTES), bytes: 0, digest: Sha256::new() }
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(FILE_CHUNK_BYTES));
        self.digest.update(&chunk);
        self.bytes += chunk.len() as u64;
        self.chunks
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the transfer was abandoned"))
    }

    /// Sends what is left; returns the size and SHA-256 of everything sent.
    pub fn finish(mut self) -> Result<StreamEnd, String> {
        self.send_buffer().map_err(|error| error.to_string())?;
        Ok(StreamEnd { bytes: self.bytes, sha256: hex_digest(&self.digest.finalize()) })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = FILE_CHUNK_BYTES - self.buffer.len();
        let taken = bytes.len().min(room);
        self.buffer.extend_from_slice(&bytes[..taken]);
        if self.buffer.len() == FILE_CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
