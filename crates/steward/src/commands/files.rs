//! `steward files push SYSTEM LOCAL REMOTE`, `steward files push --group GROUP LOCAL REMOTE`, `steward files pull
//! SYSTEM REMOTE LOCAL`, with `-r` for directories (as tar streams). Bytes stream in both directions: a blocking
//! thread reads (or writes) the local side through a channel of a few chunks, so a 1 GiB file costs a few MiB.
//!
//! A pushed file's SHA-256 is computed first (one extra read of the local file) and sent along, so the agent
//! renames it into place only if what it received matches; a pulled file (or tree) is written under temporary
//! names and renamed only when its SHA-256 matches the `Steward-Sha256` trailer the server verified against the
//! agent's. Progress goes to standard error when it is a terminal. The exit code is non-zero when any target
//! failed.

use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::BodyExt as _;
use sha2::{Digest, Sha256};
use steward_agent::files::owners::Owners;
use steward_agent::files::tree::{self, Meta, Staging};
use steward_agent::files::{ChannelReader, ChannelWriter};
use steward_protocol::files::{StreamEnd, hex_digest};
use steward_types::api::files::{
    FilePushed, GroupFilePush, HEADER_GID, HEADER_GROUP, HEADER_KIND, HEADER_MODE, HEADER_MTIME, HEADER_UID,
    HEADER_USER, TAR_MEDIA_TYPE, TRAILER_SHA256, parse_mode,
};
use tokio::sync::mpsc;

use super::{Context, ExitWithOutput};
use crate::client::segment;
use crate::output::{Format, Table, json};

#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// Push a local file (a directory with -r) to a system, or with --group to every member of a group.
    Push(PushArgs),
    /// Pull a file (a directory with -r) from a system.
    Pull(PullArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Push to every member of this group (name or ID); then give LOCAL REMOTE only.
    #[arg(long)]
    group: Option<String>,
    /// Push a directory, with its files' modes, owners, times and symbolic links.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Permission bits in octal (default: the local file's).
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
    /// Owner on the system: USER:GROUP, USER or :GROUP, names or numbers.
    #[arg(long, value_name = "USER:GROUP")]
    owner: Option<String>,
    /// SYSTEM LOCAL REMOTE, or LOCAL REMOTE with --group; REMOTE is the absolute path to write.
    #[arg(required = true, num_args = 2..=3, value_name = "ARGS")]
    paths: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Pull a directory, with its files' modes, times, links (and owners, when run as root).
    #[arg(short = 'r', long)]
    recursive: bool,
    /// The system: its name or ID.
    system: String,
    /// The absolute path on the system.
    remote: String,
    /// Where to write: a path, or an existing directory to write into.
    local: PathBuf,
}

pub async fn run(context: &Context, command: FilesCommand) -> anyhow::Result<String> {
    match command {
        FilesCommand::Push(args) => push(context, args).await,
        FilesCommand::Pull(args) => pull(context, args).await,
    }
}

async fn push(context: &Context, args: PushArgs) -> anyhow::Result<String> {
    let (group, system, local, remote) = match (&args.group, args.paths.as_slice()) {
        (Some(group), [local, remote]) => (Some(group.clone()), None, local, remote),
        (None, [system, local, remote]) => (None, Some(system.clone()), local, remote),
        (Some(_), _) => anyhow::bail!("with --group, give LOCAL REMOTE"),
        (None, _) => anyhow::bail!("give SYSTEM LOCAL REMOTE (or --group GROUP LOCAL REMOTE)"),
    };
    let local = PathBuf::from(local);
    let metadata = std::fs::metadata(&local).with_context(|| format!("cannot read {}", local.display()))?;
    let directory = metadata.is_dir();
    if directory && !args.recursive {
        anyhow::bail!("{} is a directory; push it with -r", local.display());
    }
    if !directory && !metadata.is_file() {
        anyhow::bail!("{} is not a regular file or a directory", local.display());
    }
    if let Some(mode) = &args.mode {
        parse_mode(mode).map_err(|error| anyhow::anyhow!("--mode: {}", error.reason))?;
    }
    let mut query: Vec<(&str, String)> = vec![("path", remote.clone())];
    if let Some(owner) = &args.owner {
        query.push(("owner", owner.clone()));
    }
    match (&args.mode, directory) {
        (Some(mode), _) => query.push(("mode", mode.clone())),
        (None, false) => query.push(("mode", format!("{:04o}", metadata.mode() & 0o7777))),
        (None, true) => {}
    }
    if !directory {
        query.push(("mtime", metadata.mtime().to_string()));
        let path = local.clone();
        let sha256 = tokio::task::spawn_blocking(move || file_sha256(&path))
            .await?
            .with_context(|| format!("cannot read {}", local.display()))?;
        query.push(("sha256", sha256));
    }
    let (request, target) = match (&group, &system) {
        (Some(group), _) => {
            (context.client.request(reqwest::Method::POST, &format!("/groups/{}/files", segment(group))), group)
        }
        (None, Some(system)) => {
            (context.client.request(reqwest::Method::PUT, &format!("/systems/{}/files", segment(system))), system)
        }
        (None, None) => anyhow::bail!("give SYSTEM LOCAL REMOTE"),
    };
    let media = if directory { TAR_MEDIA_TYPE } else { "application/octet-stream" };
    let (chunks, received) = mpsc::channel::<Vec<u8>>(4);
    let failure = Arc::new(Mutex::new(None));
    let total = (!directory).then_some(metadata.len());
    let label = format!("{} -> {target}:{remote}", local.display());
    let producer = {
        let (local, failure) = (local.clone(), Arc::clone(&failure));
        tokio::task::spawn_blocking(move || produce(&local, directory, chunks, &failure, Progress::new(label, total)))
    };
    let body = reqwest::Body::wrap(UploadBody { chunks: received, failure });
    let request = request.query(&query).header(reqwest::header::CONTENT_TYPE, media).body(body);
    if group.is_some() {
        let outcome: GroupFilePush = context.client.send(request).await?;
        let _ = producer.await;
        return group_output(context, &outcome);
    }
    let pushed: FilePushed = context.client.send(request).await?;
    let sent = producer.await?.map_err(|message| anyhow::anyhow!(message))?;
    if sent.sha256 != pushed.sha256 || sent.bytes != pushed.bytes {
        anyhow::bail!(
            "{}: the system reports {} bytes with SHA-256 {}, but {} bytes with SHA-256 {} were sent",
            pushed.system,
            pushed.bytes,
            pushed.sha256,
            sent.bytes,
            sent.sha256
        );
    }
    Ok(match context.format {
        Format::Json => json(&pushed),
        Format::Table => format!(
            "pushed {} to {}:{} ({} bytes, {} entries, SHA-256 {})\n",
            local.display(),
            pushed.system,
            pushed.path,
            pushed.bytes,
            pushed.entries,
            pushed.sha256
        ),
    })
}

fn group_output(context: &Context, outcome: &GroupFilePush) -> anyhow::Result<String> {
    let text = match context.format {
        Format::Json => json(outcome),
        Format::Table => {
            let mut table = Table::new(&["SYSTEM", "RESULT", "BYTES", "SHA256"]);
            for result in &outcome.results {
                let status = match &result.error {
                    None => "ok".to_string(),
                    Some(error) => format!("failed: {}", error.message),
                };
                table.row(vec![
                    result.system.clone(),
                    status,
                    result.bytes.map(|bytes| bytes.to_string()).unwrap_or_else(|| "-".into()),
                    result.sha256.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            format!(
                "{}{} of {} members got {} ({} bytes, SHA-256 {})\n",
                table.render(),
                outcome.succeeded,
                outcome.results.len(),
                outcome.path,
                outcome.bytes,
                outcome.sha256
            )
        }
    };
    if outcome.failed > 0 {
        return Err(ExitWithOutput { output: text, code: 1 }.into());
    }
    Ok(text)
}

/// Reads the local file or tree into `chunks`; a failure is left in `failure` before the channel closes, so the
/// upload ends with an error instead of looking complete.
fn produce(
    local: &Path,
    directory: bool,
    chunks: mpsc::Sender<Vec<u8>>,
    failure: &Mutex<Option<String>>,
    progress: Progress,
) -> Result<StreamEnd, String> {
    let mut writer = ProgressWriter { inner: ChannelWriter::new(chunks), progress };
    let written = if directory {
        tree::pack(local, &mut writer, &Owners::load(Path::new("/")))
    } else {
        std::fs::File::open(local)
            .and_then(|mut file| std::io::copy(&mut file, &mut writer))
            .map(|_| ())
            .map_err(|error| format!("{}: {error}", local.display()))
    };
    writer.progress.finish();
    match written {
        Ok(()) => writer.inner.finish(),
        Err(message) => {
            if let Ok(mut slot) = failure.lock() {
                *slot = Some(message.clone());
            }
            drop(writer);
            Err(message)
        }
    }
}

/// The bytes of a local file as a streamed request body, for other commands' uploads; the task ends with the
/// bytes sent and their SHA-256, or the reading error (which also ends the body with an error).
pub(super) fn file_body(local: &Path) -> (reqwest::Body, tokio::task::JoinHandle<Result<StreamEnd, String>>) {
    let (chunks, received) = mpsc::channel::<Vec<u8>>(4);
    let failure = Arc::new(Mutex::new(None));
    let total = std::fs::metadata(local).ok().map(|metadata| metadata.len());
    let producer = {
        let (local, failure) = (local.to_path_buf(), Arc::clone(&failure));
        let label = local.display().to_string();
        tokio::task::spawn_blocking(move || produce(&local, false, chunks, &failure, Progress::new(label, total)))
    };
    (reqwest::Body::wrap(UploadBody { chunks: received, failure }), producer)
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut digest = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(hex_digest(&digest.finalize()));
        }
        digest.update(&buffer[..read]);
    }
}

/// The request body of a push, fed by the blocking reader.
struct UploadBody {
    chunks: mpsc::Receiver<Vec<u8>>,
    failure: Arc<Mutex<Option<String>>>,
}

impl http_body::Body for UploadBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        match self.chunks.poll_recv(context) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(chunk))))),
            Poll::Ready(None) => {
                let failure = self.failure.lock().ok().and_then(|mut slot| slot.take());
                Poll::Ready(failure.map(|message| Err(std::io::Error::other(message))))
            }
        }
    }
}

async fn pull(context: &Context, args: PullArgs) -> anyhow::Result<String> {
    let request = context
        .client
        .request(reqwest::Method::GET, &format!("/systems/{}/files", segment(&args.system)))
        .query(&[("path", args.remote.as_str())])
        .header(reqwest::header::TE, "trailers");
    let response = context.client.send_streaming(request).await?;
    let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_string);
    let directory = header(HEADER_KIND).as_deref() == Some("directory");
    if directory && !args.recursive {
        anyhow::bail!("{}:{} is a directory; pull it with -r", args.system, args.remote);
    }
    let target = match (args.local.is_dir(), Path::new(&args.remote).file_name()) {
        (true, Some(name)) => args.local.join(name),
        _ => args.local.clone(),
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let owners = Owners::load(Path::new("/"));
    let meta = {
        let number = |name: &str| header(name).and_then(|value| value.parse::<u32>().ok());
        let (uid, gid) = match (root, number(HEADER_UID), number(HEADER_GID)) {
            (true, Some(uid), Some(gid)) => {
                let (uid, gid) = owners.for_entry(
                    &header(HEADER_USER).unwrap_or_default(),
                    uid,
                    &header(HEADER_GROUP).unwrap_or_default(),
                    gid,
                );
                (Some(uid), Some(gid))
            }
            _ => (None, None),
        };
        Meta {
            mode: header(HEADER_MODE).and_then(|mode| u32::from_str_radix(&mode, 8).ok()),
            uid,
            gid,
            mtime: header(HEADER_MTIME).and_then(|mtime| mtime.parse().ok()),
        }
    };
    let total = if directory { None } else { header("steward-size").and_then(|size| size.parse().ok()) };
    let (chunks, received) = mpsc::channel::<Vec<u8>>(4);
    let consumer = {
        let target = target.clone();
        tokio::task::spawn_blocking(move || {
            let mut reader = ChannelReader::new(received);
            let staging = if directory {
                let mut staging = Staging::for_directory(target, Meta::default(), root, owners)?;
                staging.unpack(&mut reader)?;
                staging
            } else {
                let (mut staging, file) = Staging::for_file(target, meta)?;
                staging.write_file(file, &mut reader)?;
                staging
            };
            Ok::<_, String>((staging, reader.summary()))
        })
    };
    let mut progress = Progress::new(format!("{}:{} -> {}", args.system, args.remote, target.display()), total);
    let mut body = http::Response::<reqwest::Body>::from(response).into_body();
    let mut announced: Option<String> = None;
    let mut broken: Option<String> = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                broken = Some(format!("{error:#}"));
                break;
            }
        };
        match frame.into_data() {
            Ok(data) => {
                progress.add(data.len() as u64);
                if chunks.send(data.to_vec()).await.is_err() {
                    // The writer failed; its error is reported below.
                    break;
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    announced = trailers.get(TRAILER_SHA256).and_then(|value| value.to_str().ok()).map(str::to_string);
                }
            }
        }
    }
    progress.finish();
    drop(chunks);
    let (staging, received) = consumer.await?.map_err(|message| anyhow::anyhow!(message))?;
    if let Some(broken) = broken {
        anyhow::bail!(
            "the transfer broke off after {} bytes (the audit trail has the cause); nothing was written: {broken}",
            received.bytes
        );
    }
    let Some(announced) = announced else {
        anyhow::bail!("the server sent no checksum trailer (a proxy may have dropped it); nothing was written");
    };
    if announced != received.sha256 {
        anyhow::bail!(
            "checksum mismatch: received SHA-256 {}, the server verified {announced}; nothing was written",
            received.sha256
        );
    }
    let entries =
        tokio::task::spawn_blocking(move || staging.commit()).await?.map_err(|message| anyhow::anyhow!(message))?;
    Ok(match context.format {
        Format::Json => json(&serde_json::json!({
            "system": args.system,
            "path": args.remote,
            "local": target,
            "kind": if directory { "directory" } else { "file" },
            "bytes": received.bytes,
            "sha256": received.sha256,
            "entries": entries,
        })),
        Format::Table => format!(
            "pulled {}:{} to {} ({} bytes, {entries} entries, SHA-256 {})\n",
            args.system,
            args.remote,
            target.display(),
            received.bytes,
            received.sha256
        ),
    })
}

/// A one-line progress report on standard error, redrawn at most four times a second, when it is a terminal.
struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    drawn: Option<Instant>,
    enabled: bool,
}

impl Progress {
    fn new(label: String, total: Option<u64>) -> Self {
        Self { label, total, done: 0, drawn: None, enabled: std::io::stderr().is_terminal() }
    }

    fn add(&mut self, bytes: u64) {
        self.done += bytes;
        if !self.enabled || self.drawn.is_some_and(|drawn| drawn.elapsed() < Duration::from_millis(250)) {
            return;
        }
        self.drawn = Some(Instant::now());
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        let text = match self.total {
            Some(total) if total > 0 => {
                format!("{}: {:.1} of {:.1} MiB ({}%)", self.label, mib(self.done), mib(total), self.done * 100 / total)
            }
            _ => format!("{}: {:.1} MiB", self.label, mib(self.done)),
        };
        eprint!("\r\x1b[2K{text}");
    }

    fn finish(&mut self) {
        if self.enabled && self.drawn.is_some() {
            self.drawn = None;
            self.add(0);
            eprintln!();
        }
    }
}

/// Counts what passes into the channel for the progress line.
struct ProgressWriter {
    inner: ChannelWriter,
    progress: Progress,
}

impl Write for ProgressWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.progress.add(written as u64);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    fn parse(args: &[&str]) -> Result<FilesCommand, String> {
        let cli = Cli::try_parse_from([&["steward", "files"], args].concat()).map_err(|e| e.to_string())?;
        match cli.command {
            Command::Files(command) => Ok(command),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn push_takes_a_system_or_a_group() {
        let FilesCommand::Push(args) = parse(&["push", "web-1", "./a", "/tmp/a", "--mode", "0600"]).expect("parses")
        else {
            panic!("not a push")
        };
        assert_eq!(args.paths, ["web-1", "./a", "/tmp/a"]);
        assert_eq!(args.mode.as_deref(), Some("0600"));
        let FilesCommand::Push(args) = parse(&["push", "--group", "web", "-r", "./d", "/srv/d"]).expect("parses")
        else {
            panic!("not a push")
        };
        assert_eq!(args.group.as_deref(), Some("web"));
        assert!(args.recursive);
        assert!(parse(&["push", "only-one"]).is_err());
        let FilesCommand::Pull(args) = parse(&["pull", "web-1", "/etc/hosts", "."]).expect("parses") else {
            panic!("not a pull")
        };
        assert_eq!(args.remote, "/etc/hosts");
    }
}
