//! File transfer: `PUT /systems/{system}/files?path=...` writes the request body (a file, or a tar archive with
//! `Content-Type: application/x-tar`) on a system; `GET` streams a file or directory back; `POST
//! /groups/{group}/files?path=...` pushes one upload to every member. Bodies stream through the server (see
//! `app/files.rs`); a group upload is spooled once to a file in the data directory, then pushed to the members
//! with a bounded concurrency. Every transfer is audited with its system, path, size, SHA-256 and outcome.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use steward_protocol::files::{EntryMetadata, OwnerSpec, PushBegin, StreamFormat, hex_digest};
use steward_types::api::files::{
    FileBody, FilePullQuery, FilePushQuery, FilePushed, FileTargetError, FileTargetResult, GroupFilePush, HEADER_GID,
    HEADER_GROUP, HEADER_KIND, HEADER_MODE, HEADER_MTIME, HEADER_SIZE, HEADER_UID, HEADER_USER, TAR_MEDIA_TYPE,
    TRAILER_BYTES, TRAILER_SHA256,
};
use steward_types::api::systems::SystemSummary;
use steward_types::api::{Role, Timestamp};
use steward_types::{ErrorCode, ErrorResponse};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

use crate::api::extract::{Path, Query};
use crate::api::systems::find_system;
use crate::app::files::{BodySource, ChunkSource, FileSource, PullStream, TransferError, push};
use crate::audit::{AuditEntry, authorize, record, record_failure};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How many members of a group receive a file at the same time.
const GROUP_PUSH_CONCURRENCY: usize = 4;

impl From<TransferError> for ApiError {
    fn from(error: TransferError) -> Self {
        match error {
            TransferError::Agent(error) => error.into(),
            TransferError::Source(message) => ApiError::bad_request(format!("reading the upload failed: {message}")),
            error @ TransferError::UploadChecksum { .. } => ApiError::validation("sha256", error.to_string()),
            error @ TransferError::PullChecksum { .. } => {
                ApiError::conflict(error.to_string()).with_details(serde_json::json!({ "reason": "checksum_mismatch" }))
            }
            error @ TransferError::Protocol(_) => {
                tracing::error!(%error, "a file transfer went wrong");
                ApiError::internal(error.to_string())
            }
        }
    }
}

/// The push the query asks for, checked.
fn push_begin(query: &FilePushQuery, headers: &HeaderMap) -> ApiResult<PushBegin> {
    let mode = query.validate()?;
    let owner = query
        .owner
        .as_deref()
        .map(OwnerSpec::parse)
        .transpose()
        .map_err(|reason| ApiError::validation("owner", reason))?;
    let format = match headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()) {
        Some(media)
            if media.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case(TAR_MEDIA_TYPE)) =>
        {
            StreamFormat::Tar
        }
        _ => StreamFormat::File,
    };
    Ok(PushBegin { path: query.path.clone(), format, mode, owner, mtime: query.mtime })
}

fn format_name(format: StreamFormat) -> &'static str {
    match format {
        StreamFormat::File => "file",
        StreamFormat::Tar => "tar",
    }
}

fn push_details(begin: &PushBegin) -> serde_json::Value {
    serde_json::json!({
        "path": begin.path,
        "format": format_name(begin.format),
        "mode": begin.mode.map(|mode| format!("{mode:04o}")),
        "owner": begin.owner,
        "mtime": begin.mtime,
    })
}

fn insert(entry: &mut AuditEntry, key: &str, value: serde_json::Value) {
    if let serde_json::Value::Object(details) = &mut entry.details {
        details.insert(key.into(), value);
    }
}

#[utoipa::path(put, path = "/api/v1/systems/{system}/files", tag = "files",
    params(("system" = String, Path, description = "Name or ID"), FilePushQuery),
    request_body(content = FileBody, description = "The file's bytes, or a tar archive of a directory with `Content-Type: application/x-tar`", content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Written under its final name, with the SHA-256 both sides computed", body = FilePushed),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
        (status = 409, description = "The system is offline (`system_offline`), or its agent refused or failed: a path outside its allowed roots, a full disk, a checksum mismatch (`agent_error`); nothing was left under the final name", body = ErrorResponse),
        (status = 422, body = ErrorResponse), (status = 503, body = ErrorResponse), (status = 504, body = ErrorResponse)))]
pub async fn system_file_push(
    State(state): State<AppState>,
    caller: Caller,
    Path(system): Path<String>,
    Query(query): Query<FilePushQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<FilePushed>> {
    let mut entry = AuditEntry::new(&caller.user.name, "system.file_push", &system)
        .details(serde_json::json!({ "path": query.path }));
    authorize(&state, &caller, Role::Operator, &entry).await?;
    let prepared = async {
        let begin = push_begin(&query, &headers)?;
        let mut conn = state.store.conn().await?;
        Ok::<_, ApiError>((begin, find_system(&mut conn, &system).await?))
    }
    .await;
    let (begin, summary) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            record_failure(&state, entry, &error, Timestamp::now()).await;
            return Err(error);
        }
    };
    entry.details = push_details(&begin);
    insert(&mut entry, "system_id", serde_json::json!(summary.id));
    // In a task of its own: the transfer's audit record is written even if the caller hangs up at the end.
    let format = begin.format;
    let task = tokio::spawn(async move {
        let mut source = BodySource(body);
        let result = push(&state.agents, summary.id, begin, &mut source, query.sha256.as_deref())
            .await
            .map(|outcome| FilePushed {
                system: summary.name.clone(),
                system_id: summary.id.to_string(),
                path: outcome.path,
                format: format_name(format).into(),
                bytes: outcome.bytes,
                sha256: outcome.sha256,
                entries: outcome.entries,
            })
            .map_err(|error| named(&summary, error.into()));
        if let Ok(pushed) = &result {
            insert(&mut entry, "bytes", serde_json::json!(pushed.bytes));
            insert(&mut entry, "sha256", serde_json::json!(pushed.sha256));
            insert(&mut entry, "entries", serde_json::json!(pushed.entries));
        }
        record(&state, entry, &result).await;
        result
    });
    match task.await {
        Ok(result) => result.map(Json),
        Err(error) => {
            tracing::error!(%error, "the task of a file push failed");
            Err(ApiError::internal("the transfer failed inside the server; the server log has the cause"))
        }
    }
}

/// The error with the system's name in front, so a group's results and a CLI's message say which system.
fn named(summary: &SystemSummary, mut error: ApiError) -> ApiError {
    error.message = format!("{}: {}", summary.name, error.message);
    error
}

#[utoipa::path(get, path = "/api/v1/systems/{system}/files", tag = "files",
    params(("system" = String, Path, description = "Name or ID"), FilePullQuery),
    responses(
        (status = 200, description = "The file's bytes (`application/octet-stream`) or a tar archive of the directory (`application/x-tar`), streamed. Headers `Steward-Kind`, `-Size`, `-Mode` (octal), `-Uid`, `-Gid`, `-User`, `-Group`, `-Mtime` describe it; the trailers `Steward-Sha256` and `Steward-Bytes` (sent when the request has `TE: trailers`) carry the digest the server verified against the agent's. A transfer that fails midway ends the connection without the body's end.", content_type = "application/octet-stream", body = FileBody),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
        (status = 409, description = "The system is offline, or its agent refused (a path outside its allowed roots, no such file)", body = ErrorResponse),
        (status = 422, body = ErrorResponse)))]
pub async fn system_file_pull(
    State(state): State<AppState>,
    caller: Caller,
    Path(system): Path<String>,
    Query(query): Query<FilePullQuery>,
) -> ApiResult<Response> {
    let mut entry = AuditEntry::new(&caller.user.name, "system.file_pull", &system)
        .details(serde_json::json!({ "path": query.path }));
    authorize(&state, &caller, Role::Operator, &entry).await?;
    let opened = async {
        steward_types::api::files::validate_path(&query.path)?;
        let mut conn = state.store.conn().await?;
        let summary = find_system(&mut conn, &system).await?;
        insert(&mut entry, "system_id", serde_json::json!(summary.id));
        let stream = PullStream::open(&state.agents, summary.id, query.path.clone())
            .await
            .map_err(|error| named(&summary, error.into()))?;
        Ok::<_, ApiError>(stream)
    }
    .await;
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(error) => {
            record_failure(&state, entry, &error, Timestamp::now()).await;
            return Err(error);
        }
    };
    let started = stream.started().clone();
    insert(&mut entry, "format", serde_json::json!(format_name(started.format)));
    let (frames, body) = mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(2);
    tokio::spawn(async move {
        let result: ApiResult<()> = loop {
            match stream.next().await {
                Some(Ok(bytes)) => {
                    if frames.send(Ok(http_body::Frame::data(bytes))).await.is_err() {
                        break Err(ApiError::new(ErrorCode::BadRequest, "the client hung up before the end"));
                    }
                }
                Some(Err(error)) => {
                    let error = ApiError::from(error);
                    let _ = frames.send(Err(std::io::Error::other(error.message.clone()))).await;
                    break Err(error);
                }
                None => {
                    let Some(end) = stream.end().cloned() else {
                        break Err(ApiError::internal("the stream ended without its digest"));
                    };
                    insert(&mut entry, "sha256", serde_json::json!(end.sha256));
                    let mut trailers = HeaderMap::new();
                    if let Ok(value) = HeaderValue::from_str(&end.sha256) {
                        trailers.insert(HeaderName::from_static(TRAILER_SHA256), value);
                    }
                    trailers.insert(HeaderName::from_static(TRAILER_BYTES), HeaderValue::from(end.bytes));
                    let _ = frames.send(Ok(http_body::Frame::trailers(trailers))).await;
                    break Ok(());
                }
            }
        };
        insert(&mut entry, "bytes", serde_json::json!(stream.bytes()));
        record(&state, entry, &result).await;
    });
    let mut response = Body::new(ChannelBody(body)).into_response();
    let headers = response.headers_mut();
    let media = if started.format == StreamFormat::Tar { TAR_MEDIA_TYPE } else { "application/octet-stream" };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    headers.insert(header::TRAILER, HeaderValue::from_static("steward-sha256, steward-bytes"));
    if let Some(metadata) = &started.entry {
        describe_entry(headers, metadata);
    }
    Ok(response)
}

fn describe_entry(headers: &mut HeaderMap, metadata: &EntryMetadata) {
    let kind = match metadata.kind {
        steward_protocol::files::EntryKind::File => "file",
        steward_protocol::files::EntryKind::Directory => "directory",
        steward_protocol::files::EntryKind::Symlink => "symlink",
    };
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    put(HEADER_KIND, kind.into());
    put(HEADER_SIZE, metadata.size.to_string());
    put(HEADER_MODE, format!("{:04o}", metadata.mode));
    put(HEADER_UID, metadata.uid.to_string());
    put(HEADER_GID, metadata.gid.to_string());
    put(HEADER_MTIME, metadata.mtime.to_string());
    if let Some(user) = &metadata.user {
        put(HEADER_USER, user.clone());
    }
    if let Some(group) = &metadata.group {
        put(HEADER_GROUP, group.clone());
    }
}

/// A response body fed by a task through a channel of two frames, so the task waits for the client.
struct ChannelBody(mpsc::Receiver<Result<http_body::Frame<Bytes>, std::io::Error>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(context)
    }
}

#[utoipa::path(post, path = "/api/v1/groups/{group}/files", tag = "files",
    params(("group" = String, Path, description = "Name or ID"), FilePushQuery),
    request_body(content = FileBody, description = "The file's bytes, or a tar archive with `Content-Type: application/x-tar`", content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "One result per member (offline members, refusals and full disks included); `failed` counts the members that did not get the file", body = GroupFilePush),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn group_file_push(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    Query(query): Query<FilePushQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<GroupFilePush>> {
    let mut entry = AuditEntry::new(&caller.user.name, "group.file_push", &group)
        .details(serde_json::json!({ "path": query.path }));
    authorize(&state, &caller, Role::Operator, &entry).await?;
    let prepared = async {
        let begin = push_begin(&query, &headers)?;
        let mut conn = state.store.conn().await?;
        let found =
            steward_store::groups::get(&mut conn, &group).await?.ok_or_else(|| ApiError::not_found("group", &group))?;
        let mut members = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, next) = steward_store::groups::members(&mut conn, found.id, after.as_deref(), 1000).await?;
            members.extend(page);
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        drop(conn);
        let spool = Spool::receive(&state, BodySource(body), query.sha256.as_deref()).await?;
        Ok::<_, ApiError>((begin, found, members, spool))
    }
    .await;
    let (begin, found, members, spool) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            record_failure(&state, entry, &error, Timestamp::now()).await;
            return Err(error);
        }
    };
    entry.details = push_details(&begin);
    insert(&mut entry, "group_id", serde_json::json!(found.id));
    insert(&mut entry, "bytes", serde_json::json!(spool.bytes));
    insert(&mut entry, "sha256", serde_json::json!(spool.sha256));
    let task = tokio::spawn(async move {
        let spool = Arc::new(spool);
        let limit = Arc::new(tokio::sync::Semaphore::new(GROUP_PUSH_CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for (index, member) in members.iter().cloned().enumerate() {
            let (state, spool, limit, begin, caller_name) =
                (state.clone(), Arc::clone(&spool), Arc::clone(&limit), begin.clone(), caller.user.name.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (index, push_to_member(&state, &caller_name, &member, begin, &spool).await)
            });
        }
        let mut results: Vec<Option<FileTargetResult>> = vec![None; members.len()];
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, result)) => results[index] = Some(result),
                Err(error) => tracing::error!(%error, "the task of a member's push failed"),
            }
        }
        let results: Vec<FileTargetResult> = results
            .into_iter()
            .zip(&members)
            .map(|(result, member)| {
                result
                    .unwrap_or_else(|| failed_target(member, &ApiError::internal("the member's transfer task failed")))
            })
            .collect();
        let succeeded = results.iter().filter(|result| result.ok).count() as u32;
        let outcome = GroupFilePush {
            group: found.name.clone(),
            path: begin.path.clone(),
            bytes: spool.bytes,
            sha256: spool.sha256.clone(),
            succeeded,
            failed: results.len() as u32 - succeeded,
            results,
        };
        insert(&mut entry, "succeeded", serde_json::json!(outcome.succeeded));
        insert(&mut entry, "failed", serde_json::json!(outcome.failed));
        record(&state, entry, &Ok::<_, ApiError>(())).await;
        outcome
    });
    match task.await {
        Ok(outcome) => Ok(Json(outcome)),
        Err(error) => {
            tracing::error!(%error, "the task of a group push failed");
            Err(ApiError::internal("the transfer failed inside the server; the server log has the cause"))
        }
    }
}

/// Pushes the spooled upload to one member, with the member's own audit record.
async fn push_to_member(
    state: &AppState,
    actor: &str,
    member: &SystemSummary,
    begin: PushBegin,
    spool: &Spool,
) -> FileTargetResult {
    let mut entry = AuditEntry::new(actor, "system.file_push", &member.name).details(push_details(&begin));
    insert(&mut entry, "system_id", serde_json::json!(member.id));
    let pushed = async {
        let file = tokio::fs::File::open(&spool.path)
            .await
            .map_err(|error| ApiError::internal(format!("cannot read the spooled upload: {error}")))?;
        push(&state.agents, member.id, begin, &mut FileSource(file), Some(&spool.sha256))
            .await
            .map_err(|error| named(member, error.into()))
    }
    .await;
    if let Ok(outcome) = &pushed {
        insert(&mut entry, "bytes", serde_json::json!(outcome.bytes));
        insert(&mut entry, "sha256", serde_json::json!(outcome.sha256));
    }
    record(state, entry, &pushed).await;
    match pushed {
        Ok(outcome) => FileTargetResult {
            system: member.name.clone(),
            system_id: member.id.to_string(),
            ok: true,
            path: Some(outcome.path),
            bytes: Some(outcome.bytes),
            sha256: Some(outcome.sha256),
            entries: Some(outcome.entries),
            error: None,
        },
        Err(error) => failed_target(member, &error),
    }
}

fn failed_target(member: &SystemSummary, error: &ApiError) -> FileTargetResult {
    let code = serde_json::to_value(error.code).ok().and_then(|code| code.as_str().map(str::to_string));
    FileTargetResult {
        system: member.name.clone(),
        system_id: member.id.to_string(),
        ok: false,
        path: None,
        bytes: None,
        sha256: None,
        entries: None,
        error: Some(FileTargetError { code: code.unwrap_or_default(), message: error.message.clone() }),
    }
}

/// An upload spooled to `DATA/spool/`, removed when dropped.
struct Spool {
    path: std::path::PathBuf,
    bytes: u64,
    sha256: String,
}

impl Spool {
    async fn receive(state: &AppState, mut source: impl ChunkSource, expected: Option<&str>) -> ApiResult<Self> {
        let directory = state.data_dir.join("spool");
        let failed = |error: std::io::Error| ApiError::internal(format!("cannot spool the upload: {error}"));
        tokio::fs::create_dir_all(&directory).await.map_err(failed)?;
        let path = directory.join(format!("upload-{:016x}", rand::random::<u64>()));
        let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await.map_err(failed)?;
        let mut spool = Self { path, bytes: 0, sha256: String::new() };
        let mut digest = Sha256::new();
        while let Some(data) = source.next_bytes().await {
            let data =
                data.map_err(|message| ApiError::bad_request(format!("reading the upload failed: {message}")))?;
            digest.update(&data);
            spool.bytes += data.len() as u64;
            file.write_all(&data).await.map_err(failed)?;
        }
        file.flush().await.map_err(failed)?;
        spool.sha256 = hex_digest(&digest.finalize());
        if let Some(expected) = expected
            && !expected.eq_ignore_ascii_case(&spool.sha256)
        {
            return Err(ApiError::validation(
                "sha256",
                format!("the upload's SHA-256 is {}, not {expected}; nothing was written", spool.sha256),
            ));
        }
        Ok(spool)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
