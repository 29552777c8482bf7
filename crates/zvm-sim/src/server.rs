//! The TCP side: one request per connection, as the SMAPI request server serves them.
//!
//! A connection: read the int4 input length and the frame (within the read timeout, at most
//! [`MAX_REQUEST_BYTES`]), send the request id, wait out an injected delay, carry the request out, send the
//! output length and the output (request id, return code, reason code, data), close. A frame announcing more
//! than the limit gets 900/36, a frame whose inner lengths do not add up 900/20; a client that stops sending is
//! dropped. With the drop fault armed, the request is carried out and its request id sent, then the connection
//! is closed without the rest; the reply stays recoverable through `Response_Recovery`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use smapi::{Reply, RequestFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::debug;

use crate::answer::{Answer, RC_SERVER};
use crate::dispatch::Shared;

/// The largest request frame accepted; directory entries are the largest requests and stay far below it.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Accepts connections until shutdown, each served in a task of its own, at most `max_connections` at once.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    read_timeout: Duration,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    // Request ids start from the clock, so ids of a restarted simulator do not repeat the previous run's.
    let start = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(1);
    let request_ids = Arc::new(AtomicU32::new(((start % 1_000_000) as u32).wrapping_mul(1000).max(1)));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    debug!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let (shared, request_ids) = (Arc::clone(&shared), Arc::clone(&request_ids));
        tokio::spawn(async move {
            serve(stream, &shared, &request_ids, read_timeout).await;
            drop(permit);
        });
    }
}

/// Completes DirMaint operations when their time comes, until shutdown.
pub(crate) async fn operations_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let next_end = shared.complete_operations();
        let wait = next_end.map(|end| {
            let now = crate::answer::millis(SystemTime::now());
            Duration::from_millis(end.saturating_sub(now))
        });
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = shared.operations_changed.notified() => {}
            _ = async {
                match wait {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
}

fn next_id(request_ids: &AtomicU32) -> u32 {
    let id = request_ids.fetch_add(1, Ordering::Relaxed);
    if id == 0 { request_ids.fetch_add(1, Ordering::Relaxed) } else { id }
}

/// The bytes after the request id: output length, request id again, codes, data.
fn rest_of_reply(request_id: u32, reply_request_id: u32, answer: Answer) -> Vec<u8> {
    let reply = Reply {
        request_id,
        reply_request_id,
        return_code: answer.return_code,
        reason_code: answer.reason_code,
        output: answer.output,
    };
    reply.encode().split_off(4)
}

async fn serve(mut stream: TcpStream, shared: &Shared, request_ids: &AtomicU32, read_timeout: Duration) {
    let _ = stream.set_nodelay(true);
    let Ok(Ok(input_length)) = tokio::time::timeout(read_timeout, stream.read_u32()).await else {
        return;
    };
    let request_id = next_id(request_ids);
    let length = usize::try_from(input_length).unwrap_or(usize::MAX);
    if length > MAX_REQUEST_BYTES {
        debug!(input_length, "request longer than the simulator accepts");
        let mut reply = request_id.to_be_bytes().to_vec();
        reply.extend(rest_of_reply(request_id, request_id, Answer::code(RC_SERVER, 36)));
        let _ = stream.write_all(&reply).await;
        let _ = stream.shutdown().await;
        return;
    }
    let mut frame = Vec::with_capacity(length + 4);
    frame.extend_from_slice(&input_length.to_be_bytes());
    frame.resize(length + 4, 0);
    match tokio::time::timeout(read_timeout, stream.read_exact(&mut frame[4..])).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    let frame = match RequestFrame::parse(&frame) {
        Ok(frame) => frame,
        Err(error) => {
            debug!(%error, "malformed request frame");
            let mut reply = request_id.to_be_bytes().to_vec();
            reply.extend(rest_of_reply(request_id, request_id, Answer::code(RC_SERVER, 20)));
            let _ = stream.write_all(&reply).await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    let drop_reply = shared.take_drop(&frame.function);
    // The request is accepted: its id goes out first. A client that left meanwhile does not stop the request.
    let _ = stream.write_all(&request_id.to_be_bytes()).await;
    if let Some(delay) = shared.reply_delay() {
        tokio::time::sleep(delay).await;
    }
    let handled = shared.handle(&frame).await;
    debug!(
        function = %frame.function,
        target = %frame.target,
        request_id,
        return_code = handled.answer.return_code,
        reason_code = handled.answer.reason_code,
        "request answered"
    );
    if let Some(caller) = &handled.caller {
        shared.record(request_id, caller, &handled.answer);
    }
    if drop_reply {
        debug!(function = %frame.function, request_id, "dropping the connection after the request id (injected fault)");
        return;
    }
    let reply_request_id = handled.original_request_id.unwrap_or(request_id);
    let _ = stream.write_all(&rest_of_reply(request_id, reply_request_id, handled.answer)).await;
    let _ = stream.shutdown().await;
}
