//! `steward shell SYSTEM [--user U]`: an interactive shell on a system through its agent, over the server's
//! WebSocket (`GET /api/v1/systems/{system}/shell`); and `steward run --stream`, a command whose output is
//! written here as it comes (`POST /api/v1/systems/{system}/commands/stream`).
//!
//! The shell puts this terminal in raw mode (so Ctrl-C, Ctrl-Z and every key go to the remote shell), restores it
//! on every way out (the guard's `Drop` runs on return, on error and on a panic's unwinding; SIGTERM and SIGHUP
//! end the session first), sends the window size at start and on every SIGWINCH, and exits with the remote
//! shell's exit code (128+N when a signal N ended it).

use std::io::Write;
use std::os::fd::RawFd;

use base64::Engine as _;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use steward_types::api::sessions::{CommandEvent, DEFAULT_TERM, ShellControl, ShellEvent};
use steward_types::api::systems::SystemCommand;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::run::EXIT_NOT_RUN;
use super::{Context, Finished};
use crate::client::segment;

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// The system: its name or ID.
    system: String,
    /// Log in as this user of the system (the agent's own user, root, when absent).
    #[arg(long, short = 'u')]
    user: Option<String>,
}

/// The exit code for a shell (or command) ended by signal `signal`, or that ended some other way.
fn exit_code_of(exit_code: Option<i32>, signal: Option<i32>) -> u8 {
    match (exit_code, signal) {
        (Some(code), _) => u8::try_from(code).unwrap_or(EXIT_NOT_RUN),
        (None, Some(signal)) => {
            signal.checked_add(128).and_then(|code| u8::try_from(code).ok()).unwrap_or(EXIT_NOT_RUN)
        }
        (None, None) => EXIT_NOT_RUN,
    }
}

pub async fn shell(context: &Context, args: ShellArgs) -> anyhow::Result<Finished> {
    let terminal = is_terminal(0);
    let (rows, cols) = window_size().unwrap_or((24, 80));
    let term = std::env::var("TERM").ok().filter(|term| !term.is_empty()).unwrap_or_else(|| DEFAULT_TERM.into());
    let mut query = vec![("rows", rows.to_string()), ("cols", cols.to_string()), ("term", term)];
    if let Some(user) = &args.user {
        query.push(("user", user.clone()));
    }
    let key = generate_key();
    let request = context
        .client
        .request(reqwest::Method::GET, &format!("/systems/{}/shell", segment(&args.system)))
        .query(&query)
        .header(reqwest::header::CONNECTION, "upgrade")
        .header(reqwest::header::UPGRADE, "websocket")
        .header(reqwest::header::SEC_WEBSOCKET_VERSION, "13")
        .header(reqwest::header::SEC_WEBSOCKET_KEY, &key);
    let response = context.client.send_upgrade(request).await?;
    let accepted = response.headers().get(reqwest::header::SEC_WEBSOCKET_ACCEPT).and_then(|v| v.to_str().ok());
    if accepted != Some(derive_accept_key(key.as_bytes()).as_str()) {
        anyhow::bail!("the server switched protocols without accepting this WebSocket key");
    }
    let upgraded = response.upgrade().await.map_err(|error| anyhow::anyhow!("cannot open the WebSocket: {error}"))?;
    let socket = WebSocketStream::from_raw_socket(upgraded, Role::Client, Some(WebSocketConfig::default())).await;

    // From here on this terminal is raw until the guard drops, whatever happens.
    let _raw = if terminal { Some(RawMode::enter(0)?) } else { None };
    let code = converse(socket).await;
    drop(_raw);
    match code {
        Ok(code) => Ok(Finished { exit_code: code, ..Finished::default() }),
        Err(error) => {
            Ok(Finished { stderr: format!("\r\nsteward: {error:#}\n"), exit_code: EXIT_NOT_RUN, ..Finished::default() })
        }
    }
}

/// Relays between this terminal and the socket until the remote shell ends; returns the exit code to exit with.
async fn converse<S>(mut socket: WebSocketStream<S>) -> anyhow::Result<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut input = spawn_input_reader();
    let mut resized = signal(SignalKind::window_change())?;
    let mut terminated = signal(SignalKind::terminate())?;
    let mut hung_up = signal(SignalKind::hangup())?;
    let mut stdout = std::io::stdout();
    let mut input_open = true;
    loop {
        tokio::select! {
            bytes = input.recv(), if input_open => match bytes {
                Some(bytes) => socket.send(Message::Binary(Bytes::from(bytes))).await?,
                // The end of this side's input: the remote shell keeps running until it exits (as with ssh -t).
                None => input_open = false,
            },
            message = socket.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    stdout.write_all(&bytes)?;
                    stdout.flush()?;
                }
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ShellEvent>(text.as_str()) {
                    Ok(ShellEvent::Exit { exit_code, signal }) => {
                        let _ = socket.close(None).await;
                        return Ok(exit_code_of(exit_code, signal));
                    }
                    Ok(ShellEvent::Error { message }) => anyhow::bail!("the session failed: {message}"),
                    Err(error) => anyhow::bail!("the server sent a message this client does not know: {error}"),
                },
                Some(Ok(Message::Close(_))) | None => anyhow::bail!("the server ended the session without an exit status"),
                Some(Ok(_)) => {}
                Some(Err(error)) => anyhow::bail!("the session's connection failed: {error}"),
            },
            _ = resized.recv() => {
                if let Some((rows, cols)) = window_size() {
                    let control = serde_json::to_string(&ShellControl::Resize { rows, cols })?;
                    socket.send(Message::Text(control.into())).await?;
                }
            }
            _ = terminated.recv() => anyhow::bail!("terminated; the remote shell was hung up"),
            _ = hung_up.recv() => anyhow::bail!("hung up; so was the remote shell"),
        }
    }
}

/// Reads this process's standard input on a thread of its own (a blocking read on a terminal cannot be
/// cancelled, and must not hold up the runtime's shutdown) and passes what it reads on, a few reads at a time.
fn spawn_input_reader() -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            // SAFETY: read(2) into a buffer of `buffer.len()` bytes that lives across the call.
            let count = unsafe { libc::read(0, buffer.as_mut_ptr().cast(), buffer.len()) };
            if count < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if count <= 0 || sender.blocking_send(buffer[..count as usize].to_vec()).is_err() {
                return;
            }
        }
    });
    receiver
}

fn is_terminal(fd: RawFd) -> bool {
    // SAFETY: isatty(3) only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// The window size of this terminal (standard output, else standard input), as rows and columns.
fn window_size() -> Option<(u16, u16)> {
    for fd in [1, 0] {
        let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCGWINSZ writes a winsize into the structure, which lives across the call.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ as _, &mut size) } == 0 && size.ws_row > 0 && size.ws_col > 0 {
            return Some((size.ws_row, size.ws_col));
        }
    }
    None
}

/// This terminal in raw mode; the previous mode comes back when it is dropped.
struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: RawFd) -> anyhow::Result<Self> {
        // SAFETY: a zeroed termios is a valid value for tcgetattr to fill in.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes into the structure, which lives across the call.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            anyhow::bail!("cannot read the terminal's mode: {}", std::io::Error::last_os_error());
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw only changes the structure it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: tcsetattr reads the structure, which lives across the call.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            anyhow::bail!("cannot put the terminal in raw mode: {}", std::io::Error::last_os_error());
        }
        Ok(Self { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: tcsetattr reads the saved structure, which lives across the call.
        unsafe { libc::tcsetattr(self.fd, libc::TCSAFLUSH, &self.saved) };
    }
}

/// `steward run --stream`: runs `body` through the streaming endpoint, writing its output here as it comes.
pub async fn run_streamed(
    context: &Context,
    system: &str,
    user: Option<&str>,
    body: &SystemCommand,
) -> anyhow::Result<Finished> {
    let mut request = context
        .client
        .request(reqwest::Method::POST, &format!("/systems/{}/commands/stream", segment(system)))
        .json(body);
    if let Some(user) = user {
        request = request.query(&[("user", user)]);
    }
    let mut response = context.client.send_streaming(request).await?;
    let mut pending: Vec<u8> = Vec::new();
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let decode = |data: &str| base64::engine::general_purpose::STANDARD.decode(data);
    while let Some(chunk) = response.chunk().await.map_err(|error| anyhow::anyhow!("the stream broke: {error}"))? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let event: CommandEvent = serde_json::from_slice(&line)
                .map_err(|error| anyhow::anyhow!("the server sent a line this client does not know: {error}"))?;
            match event {
                CommandEvent::Stdout { data } => {
                    stdout.write_all(&decode(&data)?)?;
                    stdout.flush()?;
                }
                CommandEvent::Stderr { data } => {
                    stderr.write_all(&decode(&data)?)?;
                    stderr.flush()?;
                }
                CommandEvent::Exit { exit_code, signal, timed_out, .. } => {
                    let mut finished = Finished { exit_code: exit_code_of(exit_code, signal), ..Finished::default() };
                    if timed_out {
                        finished.stderr = format!(
                            "steward: the command was still running after {} seconds and was killed\n",
                            body.timeout_seconds
                        );
                        finished.exit_code = super::run::EXIT_TIMED_OUT;
                    } else if let Some(signal) = signal {
                        finished.stderr = format!("steward: the command was killed by signal {signal}\n");
                    }
                    return Ok(finished);
                }
                CommandEvent::Error { message } => anyhow::bail!("the command's stream failed: {message}"),
            }
        }
    }
    anyhow::bail!("the server ended the stream without the command's exit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code_of(Some(3), None), 3);
        assert_eq!(exit_code_of(None, Some(2)), 130);
        assert_eq!(exit_code_of(Some(-1), None), EXIT_NOT_RUN);
        assert_eq!(exit_code_of(None, None), EXIT_NOT_RUN);
    }
}
