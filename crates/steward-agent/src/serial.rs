//! The agent's end of the virtio-serial management channel (`--channel virtio-serial`): the analogue of z/VM's
//! IUCV for QEMU guests. The hypervisor gives the guest a port named `org.steward.agent.0` whose host end is a
//! unix socket only the Steward server on that host connects to, so the channel works before (and without) any
//! guest network.
//!
//! **Trust model.** There is no enrollment token, no certificate and no TLS here: the port is a point-to-point
//! link between this guest and its hypervisor that nothing else can see or reach, so the server knows which guest
//! speaks from which socket it reads, and the guest trusts the channel as it trusts the hypervisor that runs it
//! (which could read its memory anyway).
//!
//! **What the Linux driver does** (`drivers/char/virtio_console.c`), and what follows from it:
//! - while no host process holds the socket, `read` returns 0 and `poll` reports `POLLHUP`; so end of file is
//!   "the server is not there", and the agent must wait with a timer (the session's backoff, capped at a few
//!   seconds), since there is nothing to sleep on in epoll;
//! - what the guest writes while the host end is not connected is dropped by QEMU, so a Hello may be lost;
//! - what the host writes while no guest process has the port open waits in the socket until one opens it, so
//!   a fresh agent may read the rest of a conversation it never had, from the middle of a frame; closing the port
//!   discards what the guest kernel had buffered.
//!
//! Hence every frame carries a marker (`steward_protocol::synced`) and both sides may start over:
//!
//! ```text
//!  open port ──► Hello ──► await Welcome ───────────────────► serving ──► (as over TLS)
//!     ▲            ▲        │ HelloRequest: Hello again          │ HelloRequest: Hello, await Welcome again
//!     │            └────────┤ nothing yet: Hello again after     │ Welcome: report as after the first
//!     │                     │   the backoff delay (≤ 4 s)         │
//!     └── backoff (≤ 4 s) ◄─┴─ end of file (no server), ◄────────┘ end of file, frame error (garbage)
//!                              frame error
//! ```
//! Every path converges: whichever side (re)starts sends its opening frame (the server a HelloRequest on every
//! connect, the agent a Hello on every open), each answers the other's, duplicates only cost a second Welcome,
//! and a frame error closes the port so that both sides start over from their markers. Once serving, the agent
//! sleeps in epoll on the port and the change watcher: no timer.
//!
//! The port is opened `O_RDWR | O_NONBLOCK | O_CLOEXEC` and driven by [`AsyncFd`] on the single runtime thread
//! (no `tokio::fs`, no blocking pool). The driver blocks writes (`EAGAIN`, no `POLLOUT`) while the host end is
//! not connected, and Tokio takes a hang-up for final: once it has seen `POLLHUP` it reports the descriptor ready
//! for good, so every later `EAGAIN` would spin. A hang-up is not final here (the server comes back), so the port
//! is not used while hung up: opening checks for `POLLHUP` first, and "would block" after a hang-up ends the
//! conversation (end of file for reads, not connected for writes); the port is then closed and opened afresh. For tests, `--channel-device` names any character device instead (a
//! pseudo-terminal's follower side, set to raw mode here).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use steward_protocol::{
    AgentMessage, FrameError, MAX_FRAME_BYTES, ServerMessage, SyncedFrameReader, write_synced_frame,
};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where the virtio-serial driver lists its ports, each with a `name` file.
const VIRTIO_PORTS: &str = "/sys/class/virtio-ports";

/// Which device the serial channel runs over.
#[derive(Debug, Clone)]
pub enum SerialDevice {
    /// The virtio-serial port with this name, found under `/sys/class/virtio-ports`.
    PortName(String),
    /// A device path given on the command line (for tests: a pseudo-terminal).
    Path(PathBuf),
}

impl SerialDevice {
    /// The device node to open now; an error names what is missing.
    fn resolve(&self) -> Result<PathBuf, String> {
        match self {
            SerialDevice::Path(path) => Ok(path.clone()),
            SerialDevice::PortName(name) => find_port(Path::new(VIRTIO_PORTS), Path::new("/dev"), name),
        }
    }
}

/// Finds the port called `name` in `ports` (`/sys/class/virtio-ports`), as its node in `dev`.
fn find_port(ports: &Path, dev: &Path, name: &str) -> Result<PathBuf, String> {
    let entries = std::fs::read_dir(ports)
        .map_err(|error| format!("no virtio-serial ports ({}: {error}); is this a QEMU guest?", ports.display()))?;
    for entry in entries.flatten() {
        let port_name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if port_name.trim_end() == name {
            return Ok(dev.join(entry.file_name()));
        }
    }
    Err(format!("no virtio-serial port named {name:?} in {}", ports.display()))
}

/// An open port (or test device), readable and writable without blocking the runtime's only thread.
pub struct SerialPort {
    fd: AsyncFd<File>,
}

impl SerialPort {
    pub fn open(path: &Path) -> io::Result<Self> {
        // std opens with O_CLOEXEC; O_NOCTTY keeps a terminal device from becoming our controlling terminal.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)?;
        make_raw_if_terminal(&file)?;
        if hung_up(&file)? {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "the host end of the port is not connected"));
        }
        // SAFETY: `file` owns its descriptor and moves into the AsyncFd, which keeps it open, unchanged, until the
        // AsyncFd is dropped; nothing else holds or closes that descriptor.
        let fd = unsafe { AsyncFd::register(file) }.map_err(io::Error::from)?;
        Ok(Self { fd })
    }
}

/// Whether the port reports `POLLHUP` now: no host process holds its socket (or a terminal's other side is gone).
fn hung_up(file: &File) -> io::Result<bool> {
    let mut poll = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN | libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd for a descriptor `file` owns; a zero timeout never blocks.
    if unsafe { libc::poll(&mut poll, 1, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(poll.revents & libc::POLLHUP != 0)
}

/// A terminal would echo, translate line ends and treat some bytes as signals; frames need every byte as is.
fn make_raw_if_terminal(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `file`; isatty only inspects it.
    if unsafe { libc::isatty(fd) } != 1 {
        return Ok(());
    }
    // SAFETY: termios is plain data that tcgetattr fills in completely before it is read.
    let mut termios: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a valid terminal descriptor and `termios` a valid, writable termios.
    if unsafe { libc::tcgetattr(fd, &mut termios) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `termios` was initialized by tcgetattr above.
    unsafe { libc::cfmakeraw(&mut termios) };
    // SAFETY: as for tcgetattr; the settings come from cfmakeraw.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &termios) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl AsyncRead for SerialPort {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let hung_up = guard.ready().is_read_closed();
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| fd.get_ref().read(unfilled)) {
                Ok(Ok(count)) => {
                    buf.advance(count);
                    return Poll::Ready(Ok(()));
                }
                // A pseudo-terminal whose other side is gone reports EIO: end of file, as a port without a host.
                Ok(Err(error)) if error.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(error)) => return Poll::Ready(Err(error)),
                // The host end hung up (and may be back): Tokio would report ready for good; end of file instead.
                Err(_would_block) if hung_up => return Poll::Ready(Ok(())),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for SerialPort {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            let hung_up = guard.ready().is_write_closed();
            match guard.try_io(|fd| fd.get_ref().write(data)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) if hung_up => {
                    let error = io::Error::new(io::ErrorKind::NotConnected, "the host end of the port hung up");
                    return Poll::Ready(Err(error));
                }
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One opening of the port: the conversation runs over it until end of file or a frame error.
pub(crate) struct SerialLink {
    port: SerialPort,
    reader: SyncedFrameReader,
}

impl SerialLink {
    pub(crate) fn open(device: &SerialDevice) -> Result<Self, String> {
        let path = device.resolve()?;
        let port = match SerialPort::open(&path) {
            Ok(port) => port,
            Err(error) if error.kind() == io::ErrorKind::NotConnected => {
                return Err("the server is not attached to this guest's port".into());
            }
            Err(error) => return Err(format!("cannot open {}: {error}", path.display())),
        };
        Ok(Self { port, reader: SyncedFrameReader::new(MAX_FRAME_BYTES) })
    }

    /// The next message; cancel-safe (the reader keeps partial frames).
    pub(crate) async fn receive(&mut self) -> Result<ServerMessage, FrameError> {
        let discarded = self.reader.discarded_bytes();
        let message = self.reader.read(&mut self.port).await;
        let skipped = self.reader.discarded_bytes() - discarded;
        if skipped > 0 {
            tracing::debug!(skipped, "skipped stale bytes on the serial channel");
        }
        message
    }

    pub(crate) async fn send(&mut self, message: &AgentMessage) -> Result<(), FrameError> {
        write_synced_frame(&mut self.port, message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_by_name() {
        let sys = tempfile::tempdir().unwrap();
        for (entry, name) in [("vport0p1", "org.qemu.guest_agent.0\n"), ("vport1p1", "org.steward.agent.0\n")] {
            std::fs::create_dir(sys.path().join(entry)).unwrap();
            std::fs::write(sys.path().join(entry).join("name"), name).unwrap();
        }
        let found = find_port(sys.path(), Path::new("/dev"), "org.steward.agent.0").unwrap();
        assert_eq!(found, PathBuf::from("/dev/vport1p1"));
        let missing = find_port(sys.path(), Path::new("/dev"), "org.example.other").unwrap_err();
        assert!(missing.contains("no virtio-serial port named \"org.example.other\""), "{missing}");
        let no_ports = find_port(&sys.path().join("absent"), Path::new("/dev"), "x").unwrap_err();
        assert!(no_ports.contains("is this a QEMU guest?"), "{no_ports}");
    }
}
