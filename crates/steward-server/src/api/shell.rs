//! Shell sessions and streamed commands on a system, through its agent (`app/sessions.rs`):
//!
//! - `GET /api/v1/systems/{system}/shell` upgrades to a WebSocket: binary messages are the terminal's bytes
//!   both ways, text messages are JSON (`ShellControl` from the client: resize; `ShellEvent` from the server: the
//!   exit, or an error, just before the server closes). The session is opened before the upgrade is accepted,
//!   so an offline system or an unknown user is refused with an ordinary error answer.
//! - `POST /api/v1/systems/{system}/commands/stream` runs a command without a terminal and answers with one
//!   `CommandEvent` per line (`application/x-ndjson`) as the output comes, the exit last.
//!
//! Both need the operator role and are audited like commands: a shell gets a record when it starts (who, which
//! system, as whom) and one when it ends (how long, how it ended); what is typed is never recorded.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use steward_protocol::session::{SessionExit, SessionOpen, TerminalSize, TerminalSpec, check_open, encode_bytes};
use steward_types::ErrorResponse;
use steward_types::api::Role;
use steward_types::api::Timestamp;
use steward_types::api::sessions::{CommandEvent, DEFAULT_TERM, ShellControl, ShellEvent, ShellQuery, StreamQuery};
use steward_types::api::systems::SystemCommand;
use tokio::sync::mpsc;

use crate::api::extract::{Json as JsonBody, Path, Query};
use crate::api::systems::find_system;
use crate::app::sessions::RemoteSession;
use crate::audit::AuditEntry;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The largest WebSocket message a client may send (typed or pasted input; split into 64 KiB steps).
const MAX_CLIENT_MESSAGE_BYTES: usize = 1024 * 1024;

#[utoipa::path(get, path = "/api/v1/systems/{system}/shell", tag = "systems",
    params(("system" = String, Path, description = "Name or ID"), ShellQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket: binary messages carry the terminal's bytes both ways; text messages are `ShellControl` (client) and `ShellEvent` (server, last before closing)", body = ShellEvent),
        (status = 400, description = "Not a WebSocket request", body = ErrorResponse),
        (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
        (status = 409, description = "The system is offline (`details.reason` = `system_offline`), or its agent could not start the shell (`agent_error`: no such user)", body = ErrorResponse),
        (status = 422, body = ErrorResponse)))]
pub async fn system_shell(
    State(state): State<AppState>,
    caller: Caller,
    Path(system): Path<String>,
    Query(query): Query<ShellQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let size = TerminalSize { rows: query.rows.unwrap_or(24), cols: query.cols.unwrap_or(80) };
    let open = SessionOpen {
        user: query.user.clone(),
        terminal: Some(TerminalSpec { size, term: query.term.clone().unwrap_or_else(|| DEFAULT_TERM.into()) }),
        ..SessionOpen::default()
    };
    let details = serde_json::json!({ "user": query.user, "rows": size.rows, "cols": size.cols });
    let mut entry = AuditEntry::new(&caller.user.name, "system.shell", &system).details(details);
    crate::audit::authorize(&state, &caller, Role::Operator, &entry).await?;
    let prepared = async {
        let upgrade = upgrade.map_err(|rejection| {
            ApiError::bad_request(format!("a shell is a WebSocket: connect with `Upgrade: websocket` ({rejection})"))
        })?;
        check_open(&open).map_err(|reason| ApiError::validation("query", reason))?;
        let mut conn = state.store.conn().await?;
        let summary = find_system(&mut conn, &system).await?;
        Ok((upgrade, summary))
    }
    .await;
    let (upgrade, summary) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            crate::audit::record_failure(&state, entry, &error, Timestamp::now()).await;
            return Err(error);
        }
    };
    if let serde_json::Value::Object(details) = &mut entry.details {
        details.insert("system_id".into(), serde_json::json!(summary.id));
    }
    let opened = RemoteSession::open(Arc::clone(&state.agents), summary.id, open).await.map_err(|error| {
        let mut error = ApiError::from(error);
        error.message = format!("{}: {}", summary.name, error.message);
        error
    });
    let session = match opened {
        Ok(session) => session,
        Err(error) => {
            crate::audit::record_failure(&state, entry, &error, Timestamp::now()).await;
            return Err(error);
        }
    };
    let mut end = AuditEntry::new(&caller.user.name, "system.shell_end", &system).details(entry.details.clone());
    crate::audit::record(&state, entry, &Ok(())).await;
    tracing::info!(system = %summary.id, user = %caller.user.name, pid = session.pid, "a shell session began");
    let started = Instant::now();
    let upgrade = upgrade.max_message_size(MAX_CLIENT_MESSAGE_BYTES).max_frame_size(MAX_CLIENT_MESSAGE_BYTES);
    Ok(upgrade
        .on_upgrade(move |socket| async move {
            let ended = relay(socket, &session).await;
            if let serde_json::Value::Object(details) = &mut end.details {
                details.insert("duration_ms".into(), serde_json::json!(started.elapsed().as_millis() as u64));
                let (how, exit) = match &ended {
                    Ended::Exited(exit) => ("exited", Some(exit)),
                    Ended::ClientLeft => ("client_left", None),
                    Ended::Failed(_) => ("failed", None),
                };
                details.insert("ended".into(), serde_json::json!(how));
                details.insert("exit_code".into(), serde_json::json!(exit.and_then(|exit| exit.exit_code)));
                details.insert("signal".into(), serde_json::json!(exit.and_then(|exit| exit.signal)));
            }
            let result = match ended {
                Ended::Failed(message) => Err(ApiError::new(steward_types::ErrorCode::Unavailable, message)),
                _ => Ok(()),
            };
            crate::audit::record(&state, end, &result).await;
        })
        .into_response())
}

/// How a shell's relay ended.
enum Ended {
    Exited(SessionExit),
    ClientLeft,
    Failed(String),
}

/// Passes bytes between the WebSocket and the session until either ends. The next read is asked for only once
/// the last output was sent to the client (flow control).
async fn relay(mut socket: WebSocket, session: &RemoteSession) -> Ended {
    let mut reading = Box::pin(session.read());
    loop {
        tokio::select! {
            output = &mut reading => {
                let output = match output {
                    Ok(output) => output,
                    Err(error) => return fail(&mut socket, session, error.to_string()).await,
                };
                for bytes in [output.stdout, output.stderr] {
                    if !bytes.is_empty() && socket.send(Message::Binary(bytes.into())).await.is_err() {
                        let _ = session.close().await;
                        return Ended::ClientLeft;
                    }
                }
                if let Some(exit) = output.exit {
                    session.mark_ended();
                    let event = ShellEvent::Exit { exit_code: exit.exit_code, signal: exit.signal };
                    send_last(&mut socket, &event).await;
                    return Ended::Exited(exit);
                }
                reading = Box::pin(session.read());
            }
            message = socket.recv() => {
                let result = match message {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                        let _ = session.close().await;
                        return Ended::ClientLeft;
                    }
                    Some(Ok(Message::Binary(bytes))) => session.input(&bytes).await.map_err(|error| error.to_string()),
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ShellControl>(text.as_str()) {
                        Ok(ShellControl::Resize { rows, cols }) if rows > 0 && cols > 0 => {
                            session.resize(TerminalSize { rows, cols }).await.map_err(|error| error.to_string())
                        }
                        Ok(ShellControl::Resize { .. }) => Err("a window needs at least one row and one column".into()),
                        Err(error) => Err(format!("a text message must be a control message (resize): {error}")),
                    },
                    Some(Ok(_ping_or_pong)) => Ok(()),
                };
                if let Err(message) = result {
                    return fail(&mut socket, session, message).await;
                }
            }
        }
    }
}

/// Tells the client why the session failed, closes it on both sides.
async fn fail(socket: &mut WebSocket, session: &RemoteSession, message: String) -> Ended {
    let _ = session.close().await;
    send_last(socket, &ShellEvent::Error { message: message.clone() }).await;
    Ended::Failed(message)
}

async fn send_last(socket: &mut WebSocket, event: &ShellEvent) {
    let text = serde_json::to_string(event).unwrap_or_default();
    let _ = socket.send(Message::Text(text.into())).await;
    let _ = socket.send(Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await;
}

#[utoipa::path(post, path = "/api/v1/systems/{system}/commands/stream", tag = "systems",
    params(("system" = String, Path, description = "Name or ID"), StreamQuery), request_body = SystemCommand,
    responses(
        (status = 200, description = "One `CommandEvent` per line (`application/x-ndjson`) as the command writes, its exit (or an error) last", body = CommandEvent, content_type = "application/x-ndjson"),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
        (status = 409, description = "The system is offline (`details.reason` = `system_offline`), or its agent could not start the command (`agent_error`: no such program or user)", body = ErrorResponse),
        (status = 422, body = ErrorResponse)))]
pub async fn system_stream_command(
    State(state): State<AppState>,
    caller: Caller,
    Path(system): Path<String>,
    Query(query): Query<StreamQuery>,
    JsonBody(command): JsonBody<SystemCommand>,
) -> ApiResult<Response> {
    let mut details = crate::api::systems::command_audit_details(&command);
    if let serde_json::Value::Object(fields) = &mut details {
        fields.insert("user".into(), serde_json::json!(query.user));
        fields.insert("stream".into(), serde_json::json!(true));
    }
    let mut entry = AuditEntry::new(&caller.user.name, "system.command", &system).details(details);
    crate::audit::authorize(&state, &caller, Role::Operator, &entry).await?;
    let open = SessionOpen {
        user: query.user.clone(),
        terminal: None,
        argv: Some(command.argv.clone()),
        environment: command.environment.clone(),
        timeout_seconds: Some(command.timeout_seconds),
        working_directory: command.working_directory.clone(),
    };
    let prepared = async {
        command.validate()?;
        check_open(&open).map_err(|reason| ApiError::validation("user", reason))?;
        let mut conn = state.store.conn().await?;
        find_system(&mut conn, &system).await
    }
    .await;
    let summary = match prepared {
        Ok(summary) => summary,
        Err(error) => {
            crate::audit::record_failure(&state, entry, &error, Timestamp::now()).await;
            return Err(error);
        }
    };
    if let serde_json::Value::Object(details) = &mut entry.details {
        details.insert("system_id".into(), serde_json::json!(summary.id));
    }
    let started = Instant::now();
    let opened = async {
        let session = RemoteSession::open(Arc::clone(&state.agents), summary.id, open).await?;
        if let Some(stdin) = &command.stdin {
            session.input(stdin.as_bytes()).await?;
        }
        session.close_input().await?;
        Ok(session)
    }
    .await
    .map_err(|error: crate::gateway::AgentRequestError| {
        let mut error = ApiError::from(error);
        error.message = format!("{}: {}", summary.name, error.message);
        error
    });
    let session = match opened {
        Ok(session) => session,
        Err(error) => {
            crate::audit::record_failure(&state, entry, &error, Timestamp::now()).await;
            return Err(error);
        }
    };
    let (lines, body) = mpsc::channel(2);
    tokio::spawn(async move {
        let result = stream_output(&session, &lines, started).await;
        if let (Ok(exit), serde_json::Value::Object(details)) = (&result, &mut entry.details) {
            details.insert("exit_code".into(), serde_json::json!(exit.exit_code));
            details.insert("signal".into(), serde_json::json!(exit.signal));
            details.insert("timed_out".into(), serde_json::json!(exit.timed_out));
            details.insert("duration_ms".into(), serde_json::json!(started.elapsed().as_millis() as u64));
        }
        let result = result.map_err(|message| ApiError::new(steward_types::ErrorCode::Unavailable, message));
        crate::audit::record(&state, entry, &result).await;
    });
    let mut response = Body::new(LineBody(body)).into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}

/// Sends the command's output as lines until its exit; a client that hangs up kills the command.
async fn stream_output(
    session: &RemoteSession,
    lines: &mpsc::Sender<Bytes>,
    started: Instant,
) -> Result<SessionExit, String> {
    let send = |event: CommandEvent| async move {
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        lines.send(Bytes::from(line)).await.is_ok()
    };
    loop {
        let output = match session.read().await {
            Ok(output) => output,
            Err(error) => {
                let message = error.to_string();
                let _ = session.close().await;
                send(CommandEvent::Error { message: message.clone() }).await;
                return Err(message);
            }
        };
        for (bytes, stdout) in [(&output.stdout, true), (&output.stderr, false)] {
            if bytes.is_empty() {
                continue;
            }
            let data = encode_bytes(bytes);
            let event = if stdout { CommandEvent::Stdout { data } } else { CommandEvent::Stderr { data } };
            if !send(event).await {
                let _ = session.close().await;
                return Err("the client hung up; the command was killed".into());
            }
        }
        if let Some(exit) = output.exit {
            session.mark_ended();
            let duration_ms = started.elapsed().as_millis() as u64;
            let event = CommandEvent::Exit {
                exit_code: exit.exit_code,
                signal: exit.signal,
                timed_out: exit.timed_out,
                duration_ms,
            };
            send(event).await;
            return Ok(exit);
        }
    }
}

/// A response body fed line by line through a channel of two, so the stream waits for the client.
struct LineBody(mpsc::Receiver<Bytes>);

impl http_body::Body for LineBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(context).map(|line| line.map(|line| Ok(http_body::Frame::data(line))))
    }
}
