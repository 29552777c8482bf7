//! Change watching: tells the agent when something the inventory reflects may have changed, without ever waking
//! up on a timer while nothing happens.
//!
//! [`ChangeWatcher`] listens to the kernel's own change notifications:
//! - **Packages** (inotify): `/var/lib/dpkg`, for `status` being written or renamed into place (dpkg writes
//!   `status-new` and renames it); `/var/lib/rpm` when it exists, for writes to or renames of the database files
//!   (`rpmdb.sqlite`, `Packages`, `Packages.db`). Only writes are watched, never reads, so the collector's own
//!   reading of the databases does not trigger a new round.
//! - **OS identity and host name** (inotify): `/etc`, for `os-release` and `hostname` being written, renamed,
//!   created or removed. (`/usr/lib/os-release` belongs to a package; its changes show up as package changes.)
//! - **Personalization results** (inotify): `/var/lib/steward/personalization` when it exists (Steward guest
//!   images have it), for results being written, renamed into place or removed.
//! - **Kernel host name** (running system only): `/proc/sys/kernel/hostname` signals `POLLPRI` after every
//!   `sethostname(2)`, which [`tokio::io::unix::AsyncFd`] waits for with [`Interest::PRIORITY`].
//! - **Mount table** (running system only): `/proc/self/mounts` signals `POLLPRI | POLLERR` whenever a filesystem is
//!   mounted, unmounted or remounted in the agent's mount namespace.
//! - **Network** (running system only): a `NETLINK_ROUTE` socket subscribed to link and IPv4/IPv6 address changes.
//!   Address notifications that only refresh an address already known (IPv6 router advertisements renew lifetimes
//!   every few minutes, duplicate address detection changes flags) are recognised and ignored: the watcher asks the
//!   kernel for the current addresses once at start and keeps the set of (interface, family, prefix, address).
//!
//! The inotify sources are resolved under the watcher's root, so tests can use a temporary directory; the kernel
//! sources are set up only when the root is `/`, since they describe the running system whatever the root.
//! A source that cannot be set up (a missing directory, no permission for netlink) is logged and skipped.
//! Block devices and filesystem usage have no change notification and are not watched.
//!
//! Events come in bursts (a package upgrade rewrites the dpkg status many times), so [`ChangeWatcher::changed`]
//! resolves only once the events have settled: no further relevant event for the settle time (2 s by default).
//! A source that never stops firing cannot hold the report back forever: a burst is cut after [`MAX_DELAY`].
//! The settle timer exists only between an event and the end of its burst; when idle the watcher waits on file
//! descriptors alone, so the agent's thread sleeps in `epoll_wait` without a timeout.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use inotify::{EventMask, Inotify, StreamExt, WatchDescriptor, WatchMask};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// The default settle time: how long the sources must be quiet before a change is reported.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);

/// The longest a continuous stream of events can hold a report back.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// Files in the rpm database directory whose writes mean the installed packages changed.
const RPM_DATABASE_FILES: [&str; 3] = ["rpmdb.sqlite", "Packages", "Packages.db"];

/// Files in `/etc` the inventory reflects.
const ETC_FILES: [&str; 2] = ["os-release", "hostname"];

/// Watches what the inventory is made of and reports, debounced, that it may have changed.
#[derive(Debug)]
pub struct ChangeWatcher {
    settle: Duration,
    /// The burst being debounced: when its first event came and when it settles. `None` while idle.
    burst: Option<Burst>,
    sources: Sources,
}

#[derive(Debug, Clone, Copy)]
struct Burst {
    first: Instant,
    deadline: Instant,
}

impl ChangeWatcher {
    /// Starts watching what the inventory is made of under `root` (`/` in production).
    ///
    /// Sources that cannot be set up are skipped, logged at warn level when they should have worked and at debug
    /// level when they are simply absent (a directory that does not exist). Fails only outside a Tokio runtime;
    /// like every Tokio I/O type it needs the runtime's I/O driver enabled.
    pub fn new(root: &Path) -> io::Result<Self> {
        // Without a runtime the sources below could not be registered (Tokio would panic).
        tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let live = root == Path::new("/");
        let sources = Sources {
            inotify: InotifySource::new(root),
            hostname: if live { priority_source("/proc/sys/kernel/hostname") } else { None },
            mounts: if live { priority_source("/proc/self/mounts") } else { None },
            netlink: if live { NetlinkSource::new() } else { None },
        };
        let watcher = ChangeWatcher { settle: DEFAULT_SETTLE, burst: None, sources };
        tracing::debug!(sources = ?watcher.sources(), "watching for inventory changes");
        Ok(watcher)
    }

    /// Sets the settle time: how long the sources must be quiet before [`ChangeWatcher::changed`] resolves.
    pub fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Names of the sources that are being watched, for logging: `dpkg`, `rpm`, `etc`, `personalization`,
    /// `hostname`, `mounts`, `netlink`.
    pub fn sources(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if let Some(inotify) = &self.sources.inotify {
            names.extend(inotify.dirs.iter().map(|(kind, _)| kind.name()));
        }
        if self.sources.hostname.is_some() {
            names.push("hostname");
        }
        if self.sources.mounts.is_some() {
            names.push("mounts");
        }
        if self.sources.netlink.is_some() {
            names.push("netlink");
        }
        names
    }

    /// Resolves once something the inventory reflects may have changed, after the changes have settled: no further
    /// event for the settle time (or [`MAX_DELAY`] after the first event of a continuous stream).
    ///
    /// Cancel-safe: dropping the future loses no event; a burst that started is still reported by the next call.
    pub async fn changed(&mut self) {
        loop {
            let deadline = self.burst.map(|burst| burst.deadline);
            // Checked here too, so that a flood of events (always ready first below) cannot hold the report back.
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                self.burst = None;
                return;
            }
            let settled = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                relevant = self.sources.next() => {
                    if relevant {
                        let now = Instant::now();
                        let first = self.burst.map_or(now, |burst| burst.first);
                        let deadline = (now + self.settle).min(first + MAX_DELAY.max(self.settle));
                        self.burst = Some(Burst { first, deadline });
                    }
                }
                () = settled => {
                    self.burst = None;
                    return;
                }
            }
        }
    }
}

/// All sources; `None` for those that are not watched.
#[derive(Debug)]
struct Sources {
    inotify: Option<InotifySource>,
    hostname: Option<AsyncFd<File>>,
    mounts: Option<AsyncFd<File>>,
    netlink: Option<NetlinkSource>,
}

/// What one source reported.
enum Outcome {
    /// Something the inventory reflects may have changed.
    Relevant,
    /// Activity that does not concern the inventory.
    Irrelevant,
    /// The source broke and is dropped.
    Failed(&'static str),
}

impl Sources {
    /// Waits for the next activity of any source; `true` when it may have changed the inventory.
    async fn next(&mut self) -> bool {
        let Sources { inotify, hostname, mounts, netlink } = self;
        let outcome = tokio::select! {
            outcome = async {
                match inotify {
                    Some(source) => source.next().await,
                    None => std::future::pending().await,
                }
            } => outcome,
            outcome = priority_ready(hostname.as_ref(), "hostname") => outcome,
            outcome = priority_ready(mounts.as_ref(), "mounts") => outcome,
            outcome = async {
                match netlink {
                    Some(source) => source.next().await,
                    None => std::future::pending().await,
                }
            } => outcome,
        };
        match outcome {
            Outcome::Relevant => true,
            Outcome::Irrelevant => false,
            Outcome::Failed(name) => {
                match name {
                    "inotify" => self.inotify = None,
                    "hostname" => self.hostname = None,
                    "mounts" => self.mounts = None,
                    _ => self.netlink = None,
                }
                tracing::warn!(source = name, "change source failed; no longer watching it");
                // The failure may have hidden a change.
                true
            }
        }
    }
}

/// Which directory an inotify watch is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchedDir {
    Dpkg,
    Rpm,
    Etc,
    Personalization,
}

impl WatchedDir {
    fn name(self) -> &'static str {
        match self {
            WatchedDir::Dpkg => "dpkg",
            WatchedDir::Rpm => "rpm",
            WatchedDir::Etc => "etc",
            WatchedDir::Personalization => "personalization",
        }
    }

    /// Whether an event about `name` in this directory concerns the inventory.
    fn concerns(self, name: &str) -> bool {
        match self {
            WatchedDir::Dpkg => name == "status",
            WatchedDir::Rpm => RPM_DATABASE_FILES.contains(&name),
            WatchedDir::Etc => ETC_FILES.contains(&name),
            // Hidden names are a writer's temporary files, which the collector skips too.
            WatchedDir::Personalization => !name.starts_with('.'),
        }
    }
}

/// The inotify watches on the package databases and `/etc`.
struct InotifySource {
    stream: inotify::EventStream<[u8; 1024]>,
    dirs: Vec<(WatchedDir, WatchDescriptor)>,
}

impl std::fmt::Debug for InotifySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InotifySource").field("dirs", &self.dirs).finish_non_exhaustive()
    }
}

impl InotifySource {
    fn new(root: &Path) -> Option<Self> {
        let inotify = match Inotify::init() {
            Ok(inotify) => inotify,
            Err(error) => {
                tracing::warn!(%error, "inotify unavailable; package and OS changes are not noticed");
                return None;
            }
        };
        let write_or_rename = WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO;
        let wanted = [
            (WatchedDir::Dpkg, "var/lib/dpkg", write_or_rename),
            // MODIFY rather than CLOSE_WRITE: rpm may open its database read-write even just to query it.
            (WatchedDir::Rpm, "var/lib/rpm", WatchMask::MODIFY | WatchMask::MOVED_TO | WatchMask::DELETE),
            (WatchedDir::Etc, "etc", write_or_rename | WatchMask::CREATE | WatchMask::DELETE | WatchMask::MOVED_FROM),
            (WatchedDir::Personalization, "var/lib/steward/personalization", write_or_rename | WatchMask::DELETE),
        ];
        let mut dirs = Vec::new();
        for (kind, relative, mask) in wanted {
            let path = root.join(relative);
            if !path.is_dir() {
                tracing::debug!(path = %path.display(), "not watching a directory that does not exist");
                continue;
            }
            match inotify.watches().add(&path, mask | WatchMask::ONLYDIR) {
                Ok(descriptor) => dirs.push((kind, descriptor)),
                Err(error) => tracing::warn!(path = %path.display(), %error, "cannot watch directory"),
            }
        }
        if dirs.is_empty() {
            return None;
        }
        match inotify.into_event_stream([0u8; 1024]) {
            Ok(stream) => Some(InotifySource { stream, dirs }),
            Err(error) => {
                tracing::warn!(%error, "cannot wait for inotify events");
                None
            }
        }
    }

    async fn next(&mut self) -> Outcome {
        let event = match self.stream.next().await {
            Some(Ok(event)) => event,
            Some(Err(error)) => {
                tracing::warn!(%error, "reading inotify events failed");
                return Outcome::Failed("inotify");
            }
            None => return Outcome::Failed("inotify"),
        };
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            // Events were lost; one of them may have mattered.
            return Outcome::Relevant;
        }
        let Some(kind) = self.dirs.iter().find(|(_, descriptor)| *descriptor == event.wd).map(|(kind, _)| *kind) else {
            return Outcome::Irrelevant;
        };
        if event.mask.contains(EventMask::IGNORED) {
            // The directory went away (or was unmounted); the watch is gone with it.
            tracing::debug!(dir = kind.name(), "watched directory disappeared");
            self.dirs.retain(|(_, descriptor)| *descriptor != event.wd);
            return Outcome::Relevant;
        }
        let concerns = event.name.as_deref().and_then(|name| name.to_str()).is_some_and(|name| kind.concerns(name));
        if concerns {
            tracing::trace!(dir = kind.name(), name = ?event.name, mask = ?event.mask, "inventory source changed");
            Outcome::Relevant
        } else {
            Outcome::Irrelevant
        }
    }
}

/// Opens a procfs file whose changes the kernel signals with `POLLPRI` and registers it for that.
fn priority_source(path: &str) -> Option<AsyncFd<File>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) => {
            tracing::warn!(path, %error, "cannot open change source");
            return None;
        }
    };
    // Only PRIORITY is registered: asking for ERROR would make Tokio register read interest as well, and procfs
    // files are always readable. The kernel sets POLLERR together with POLLPRI, and epoll always reports errors.
    match register(file, Interest::PRIORITY) {
        Ok(fd) => Some(fd),
        Err(error) => {
            tracing::warn!(path, %error, "cannot poll change source");
            None
        }
    }
}

/// Registers a file descriptor the value owns with the runtime's reactor.
fn register<T: AsRawFd>(owner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `owner` (a `File` or an `OwnedFd`) owns an open descriptor, closes it only when dropped, and always
    // returns that same descriptor; the `AsyncFd` takes ownership of it, so it stays open while registered.
    unsafe { AsyncFd::register_with_interest(owner, interest) }.map_err(io::Error::from)
}

/// Waits until a `POLLPRI` source signals a change; never resolves for an absent source.
async fn priority_ready(fd: Option<&AsyncFd<File>>, name: &'static str) -> Outcome {
    let Some(fd) = fd else { return std::future::pending().await };
    match fd.ready(Interest::PRIORITY | Interest::ERROR).await {
        Ok(mut guard) => {
            // Polling the file again (epoll does so when it reports the event) re-arms it; the readiness Tokio
            // cached is cleared so the next call waits for the next change.
            guard.clear_ready();
            tracing::trace!(source = name, "inventory source changed");
            Outcome::Relevant
        }
        Err(error) => {
            tracing::warn!(source = name, %error, "polling change source failed");
            Outcome::Failed(name)
        }
    }
}

// Netlink message layout, from <linux/netlink.h> and <linux/rtnetlink.h>.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const IFADDRMSG_LEN: usize = 8;
const RTA_HDRLEN: usize = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// Sequence number of the watcher's own address dump requests.
const DUMP_SEQ: u32 = 1;

/// Identifies an address the way the inventory sees it: lifetimes and flags left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AddressKey {
    index: u32,
    family: u8,
    prefix: u8,
    address: [u8; 16],
    local: [u8; 16],
}

/// A `NETLINK_ROUTE` socket subscribed to link and address changes.
#[derive(Debug)]
struct NetlinkSource {
    fd: AsyncFd<OwnedFd>,
    /// The socket's port id: messages addressed to it answer the watcher's own dump requests.
    port: u32,
    /// The addresses known to exist.
    addresses: std::collections::HashSet<AddressKey>,
    /// Whether an address dump is under way, and whether another one is needed after it.
    dumping: bool,
    dump_again: bool,
    buffer: Box<[u8]>,
}

impl NetlinkSource {
    fn new() -> Option<Self> {
        let fd = match open_netlink() {
            Ok(fd) => fd,
            Err(error) => {
                tracing::warn!(%error, "cannot open netlink socket; network changes are not noticed");
                return None;
            }
        };
        let port = match port_id(&fd) {
            Ok(port) => port,
            Err(error) => {
                tracing::warn!(%error, "cannot read the netlink port id");
                return None;
            }
        };
        let fd = match register(fd, Interest::READABLE) {
            Ok(fd) => fd,
            Err(error) => {
                tracing::warn!(%error, "cannot poll netlink socket");
                return None;
            }
        };
        let mut source = NetlinkSource {
            fd,
            port,
            addresses: std::collections::HashSet::new(),
            dumping: false,
            dump_again: false,
            // Large enough for any dump message the kernel builds for a reader with this buffer size.
            buffer: vec![0u8; 16 * 1024].into_boxed_slice(),
        };
        source.request_dump();
        Some(source)
    }

    /// Asks the kernel for all current addresses; the answers only fill the set of known addresses.
    fn request_dump(&mut self) {
        if self.dumping {
            self.dump_again = true;
            return;
        }
        const LEN: usize = NLMSG_HDRLEN + IFADDRMSG_LEN;
        let mut request = [0u8; LEN];
        request[0..4].copy_from_slice(&(LEN as u32).to_ne_bytes());
        request[4..6].copy_from_slice(&RTM_GETADDR.to_ne_bytes());
        request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        request[8..12].copy_from_slice(&DUMP_SEQ.to_ne_bytes());
        // Port id 0 in the request and AF_UNSPEC (0) as the family: all addresses of all families.
        // SAFETY: `request` is a valid buffer of the given length for the duration of the call; the socket is owned
        // by `self.fd`.
        let sent = unsafe {
            libc::send(self.fd.get_ref().as_raw_fd(), request.as_ptr().cast(), request.len(), libc::MSG_DONTWAIT)
        };
        if sent < 0 {
            // Without the dump, every address is taken as new once; harmless.
            tracing::debug!(error = %io::Error::last_os_error(), "netlink address dump request failed");
        } else {
            self.dumping = true;
        }
    }

    /// Waits for messages and drains all that are pending.
    async fn next(&mut self) -> Outcome {
        let mut guard = match self.fd.readable().await {
            Ok(guard) => guard,
            Err(error) => {
                tracing::warn!(%error, "polling the netlink socket failed");
                return Outcome::Failed("netlink");
            }
        };
        let mut relevant = false;
        let mut overrun = false;
        loop {
            let buffer = &mut self.buffer;
            let received = guard.try_io(|fd| {
                // SAFETY: `buffer` is valid for writes of its length for the duration of the call.
                let n = unsafe {
                    libc::recv(fd.get_ref().as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), libc::MSG_DONTWAIT)
                };
                if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
            });
            match received {
                Ok(Ok(0)) => break,
                Ok(Ok(len)) => {
                    let len = len.min(self.buffer.len());
                    let mut dump_done = false;
                    relevant |= process_messages(&self.buffer[..len], self.port, &mut self.addresses, &mut dump_done);
                    if dump_done {
                        self.dumping = false;
                        if std::mem::take(&mut self.dump_again) {
                            overrun = true;
                        }
                    }
                }
                Ok(Err(error)) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The socket buffer overflowed and notifications were lost: report, and relearn the addresses.
                    tracing::debug!("netlink notifications lost");
                    relevant = true;
                    overrun = true;
                }
                Ok(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "reading the netlink socket failed");
                    return Outcome::Failed("netlink");
                }
                // Would block: everything is drained and the readiness is cleared.
                Err(_would_block) => break,
            }
        }
        drop(guard);
        if overrun {
            self.addresses.clear();
            self.request_dump();
        }
        if relevant { Outcome::Relevant } else { Outcome::Irrelevant }
    }
}

/// Opens a non-blocking `NETLINK_ROUTE` socket subscribed to link and IPv4/IPv6 address changes.
fn open_netlink() -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation; the result is checked before use.
    let raw = unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE)
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created socket that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `sockaddr_nl` is plain data, for which all zeroes is a valid value.
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    address.nl_groups = (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
    // SAFETY: `address` is a valid `sockaddr_nl` and the length passed is its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(address).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// The port id the kernel assigned to a bound netlink socket.
fn port_id(fd: &OwnedFd) -> io::Result<u32> {
    // SAFETY: `sockaddr_nl` is plain data, for which all zeroes is a valid value.
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `address` and `len` are valid for writes and `len` holds the size of `address`.
    let rc = unsafe { libc::getsockname(fd.as_raw_fd(), std::ptr::addr_of_mut!(address).cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(address.nl_pid)
}

/// Processes one datagram of netlink messages; `true` when one of them may change the inventory.
/// Answers to the watcher's own dump (addressed to `port`) only fill `addresses`; `dump_done` is set at their end.
fn process_messages(
    mut data: &[u8],
    port: u32,
    addresses: &mut std::collections::HashSet<AddressKey>,
    dump_done: &mut bool,
) -> bool {
    let mut relevant = false;
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let pid = u32::from_ne_bytes([data[12], data[13], data[14], data[15]]);
        if len < NLMSG_HDRLEN || len > data.len() {
            break;
        }
        let payload = &data[NLMSG_HDRLEN..len];
        let ours = pid == port && port != 0;
        match kind {
            RTM_NEWLINK | RTM_DELLINK => relevant = true,
            RTM_NEWADDR => {
                if let Some(key) = address_key(payload) {
                    // A known address is only being refreshed; answers to the dump only record what exists.
                    relevant |= addresses.insert(key) && !ours;
                }
            }
            RTM_DELADDR => {
                if let Some(key) = address_key(payload) {
                    addresses.remove(&key);
                }
                relevant = true;
            }
            NLMSG_DONE | NLMSG_ERROR if ours => *dump_done = true,
            _ => {}
        }
        data = &data[((len + 3) & !3).min(data.len())..];
    }
    relevant
}

/// Reads the identifying parts of an `ifaddrmsg` and its address attributes.
fn address_key(payload: &[u8]) -> Option<AddressKey> {
    if payload.len() < IFADDRMSG_LEN {
        return None;
    }
    let mut key = AddressKey {
        family: payload[0],
        prefix: payload[1],
        index: u32::from_ne_bytes([payload[4], payload[5], payload[6], payload[7]]),
        address: [0; 16],
        local: [0; 16],
    };
    let mut attributes = &payload[IFADDRMSG_LEN..];
    while attributes.len() >= RTA_HDRLEN {
        let len = u16::from_ne_bytes([attributes[0], attributes[1]]) as usize;
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]);
        if len < RTA_HDRLEN || len > attributes.len() {
            break;
        }
        let value = &attributes[RTA_HDRLEN..len];
        let target = match kind {
            IFA_ADDRESS => Some(&mut key.address),
            IFA_LOCAL => Some(&mut key.local),
            _ => None,
        };
        if let Some(target) = target {
            let n = value.len().min(16);
            target[..n].copy_from_slice(&value[..n]);
        }
        let next = (len + 3) & !3;
        if next >= attributes.len() {
            break;
        }
        attributes = &attributes[next..];
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use tokio::time::timeout;

    const SETTLE: Duration = Duration::from_millis(50);

    /// Held by the tests that change the machine's mount table or host name, and by the test that must see no
    /// change at all while it runs.
    static MACHINE_WIDE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn machine_wide() -> std::sync::MutexGuard<'static, ()> {
        MACHINE_WIDE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fixture_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["var/lib/dpkg", "etc"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        dir
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writing_dpkg_status_is_reported() {
        let root = fixture_root();
        let mut watcher = ChangeWatcher::new(root.path()).expect("watcher").with_settle(SETTLE);
        assert_eq!(watcher.sources(), ["dpkg", "etc"]);
        std::fs::write(root.path().join("var/lib/dpkg/status"), "Package: a\n").expect("write");
        timeout(Duration::from_secs(5), watcher.changed()).await.expect("change reported");
        // The burst is over: nothing more is reported.
        assert!(timeout(Duration::from_millis(300), watcher.changed()).await.is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn renaming_dpkg_status_into_place_is_reported() {
        let root = fixture_root();
        let dpkg = root.path().join("var/lib/dpkg");
        std::fs::write(dpkg.join("status"), "old\n").expect("write");
        let mut watcher = ChangeWatcher::new(root.path()).expect("watcher").with_settle(SETTLE);
        // What dpkg does: write status-new (not relevant by itself), then rename it over status.
        std::fs::write(dpkg.join("status-new"), "new\n").expect("write");
        std::fs::rename(dpkg.join("status-new"), dpkg.join("status")).expect("rename");
        timeout(Duration::from_secs(5), watcher.changed()).await.expect("change reported");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_personalization_result_renamed_into_place_is_reported() {
        let root = fixture_root();
        let results = root.path().join("var/lib/steward/personalization");
        std::fs::create_dir_all(&results).expect("mkdir");
        let mut watcher = ChangeWatcher::new(root.path()).expect("watcher").with_settle(SETTLE);
        assert_eq!(watcher.sources(), ["dpkg", "etc", "personalization"]);
        std::fs::write(results.join(".10-network.tmp"), "0\n").expect("write");
        assert!(timeout(Duration::from_millis(300), watcher.changed()).await.is_err(), "a temporary file");
        std::fs::rename(results.join(".10-network.tmp"), results.join("10-network")).expect("rename");
        timeout(Duration::from_secs(5), watcher.changed()).await.expect("change reported");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn nothing_happening_reports_nothing() {
        let root = fixture_root();
        let mut watcher = ChangeWatcher::new(root.path()).expect("watcher").with_settle(SETTLE);
        assert!(timeout(Duration::from_millis(300), watcher.changed()).await.is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unrelated_files_are_ignored() {
        let root = fixture_root();
        let mut watcher = ChangeWatcher::new(root.path()).expect("watcher").with_settle(SETTLE);
        std::fs::write(root.path().join("var/lib/dpkg/lock"), "").expect("write");
        std::fs::write(root.path().join("etc/resolv.conf"), "nameserver 192.0.2.1\n").expect("write");
        // Reading the status file (as the collector does) is not a change either.
        std::fs::write(root.path().join("var/lib/dpkg/status-old"), "x").expect("write");
        let _ = std::fs::read(root.path().join("var/lib/dpkg/status-old"));
        assert!(timeout(Duration::from_millis(300), watcher.changed()).await.is_err());
        std::fs::write(root.path().join("etc/hostname"), "web01\n").expect("write");
        timeout(Duration::from_secs(5), watcher.changed()).await.expect("change reported");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn missing_directories_are_skipped() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut watcher = ChangeWatcher::new(root.path()).expect("watcher").with_settle(SETTLE);
        assert!(watcher.sources().is_empty());
        assert!(timeout(Duration::from_millis(100), watcher.changed()).await.is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bursts_are_debounced() {
        let root = fixture_root();
        let settle = Duration::from_millis(150);
        let mut watcher = ChangeWatcher::new(root.path()).expect("watcher").with_settle(settle);
        let status = root.path().join("var/lib/dpkg/status");
        let writer = async {
            for i in 0..6 {
                std::fs::write(&status, format!("{i}\n")).expect("write");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Instant::now()
        };
        let (last_write, reported) = tokio::join!(writer, async {
            timeout(Duration::from_secs(5), watcher.changed()).await.expect("change reported");
            Instant::now()
        });
        assert!(reported >= last_write, "reported before the burst ended");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn changed_is_cancel_safe() {
        let root = fixture_root();
        let mut watcher = ChangeWatcher::new(root.path()).expect("watcher").with_settle(Duration::from_millis(200));
        std::fs::write(root.path().join("var/lib/dpkg/status"), "x\n").expect("write");
        // Cancelled after the event arrived but before it settled ...
        assert!(timeout(Duration::from_millis(50), watcher.changed()).await.is_err());
        // ... the next call still reports it, without a new event.
        timeout(Duration::from_secs(5), watcher.changed()).await.expect("change reported");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn live_sources_open_on_this_machine() {
        let watcher = ChangeWatcher::new(Path::new("/")).expect("watcher");
        let sources = watcher.sources();
        for expected in ["hostname", "mounts", "netlink"] {
            assert!(sources.contains(&expected), "{expected} missing from {sources:?}");
        }
    }

    #[test]
    fn new_outside_a_runtime_fails() {
        assert!(ChangeWatcher::new(Path::new("/")).is_err());
    }

    /// Runs a future on a current-thread runtime of its own (for the tests that hold [`MACHINE_WIDE`]).
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
    }

    #[test]
    fn hostname_change_in_another_uts_namespace_is_noticed() {
        // sethostname() notifies pollers of /proc/sys/kernel/hostname in every namespace, so a change in a throwaway
        // UTS namespace exercises the source without touching this machine's host name. Needs root and unshare(1).
        let _machine_wide = machine_wide();
        block_on(async {
            let Some(hostname) = priority_source("/proc/sys/kernel/hostname") else { return };
            let status = std::process::Command::new("unshare")
                .args(["--uts", "hostname", "steward-watch-test"])
                .stderr(std::process::Stdio::null())
                .status();
            if !matches!(status, Ok(status) if status.success()) {
                eprintln!("skipped: cannot change the host name in a new UTS namespace");
                return;
            }
            let outcome = timeout(Duration::from_secs(5), priority_ready(Some(&hostname), "hostname")).await;
            assert!(matches!(outcome, Ok(Outcome::Relevant)));
            // Re-armed: no further change, no further report.
            assert!(timeout(Duration::from_millis(200), priority_ready(Some(&hostname), "hostname")).await.is_err());
        });
    }

    /// Unmounts (lazily) when dropped.
    struct Unmount(std::ffi::CString);

    impl Drop for Unmount {
        fn drop(&mut self) {
            // SAFETY: the path is a valid NUL-terminated string.
            unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
        }
    }

    #[test]
    fn mount_table_change_is_noticed() {
        // Mounts a tmpfs on a temporary directory of this mount namespace (and unmounts it). Needs CAP_SYS_ADMIN.
        let _machine_wide = machine_wide();
        block_on(async {
            let Some(mounts) = priority_source("/proc/self/mounts") else { return };
            let dir = tempfile::tempdir().expect("tempdir");
            let target = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).expect("path");
            // SAFETY: all pointers are valid NUL-terminated strings (or null data) for the duration of the call.
            let rc = unsafe {
                libc::mount(c"steward-test".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null())
            };
            if rc != 0 {
                eprintln!("skipped: cannot mount ({})", io::Error::last_os_error());
                return;
            }
            let unmount = Unmount(target);
            let outcome = timeout(Duration::from_secs(5), priority_ready(Some(&mounts), "mounts")).await;
            assert!(matches!(outcome, Ok(Outcome::Relevant)));
            drop(unmount);
            let outcome = timeout(Duration::from_secs(5), priority_ready(Some(&mounts), "mounts")).await;
            assert!(matches!(outcome, Ok(Outcome::Relevant)));
        });
    }

    /// Voluntary plus involuntary context switches of a thread of this process so far.
    fn context_switches(tid: i32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).expect("status");
        status
            .lines()
            .filter(|line| {
                line.starts_with("voluntary_ctxt_switches:") || line.starts_with("nonvoluntary_ctxt_switches:")
            })
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    }

    #[test]
    fn idle_watcher_never_wakes_up() {
        // The agent's setting: one current-thread runtime, here on a thread of its own that is observed from outside
        // (a timer inside it would itself wake it up). While nothing changes, that thread must stay asleep in
        // epoll_wait without a timeout: not a single context switch over the window. An unrelated change on this
        // machine during the window (a write in /etc, a mount, an address change) would fail the test; those are
        // rare on a test machine.
        let _machine_wide = machine_wide();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let mut watcher = ChangeWatcher::new(Path::new("/")).expect("watcher");
                // Let the start-up traffic (the answer to the netlink address dump) pass.
                let _ = timeout(Duration::from_millis(300), watcher.changed()).await;
                // SAFETY: gettid has no preconditions.
                ready_tx.send(unsafe { libc::gettid() }).expect("send");
                tokio::select! {
                    () = watcher.changed() => {}
                    _ = stop_rx => {}
                }
            });
        });
        let tid = ready_rx.recv().expect("watcher thread started");
        std::thread::sleep(Duration::from_millis(100));
        let before = context_switches(tid);
        let window = Duration::from_secs(2);
        std::thread::sleep(window);
        let switches = context_switches(tid) - before;
        stop_tx.send(()).expect("stop");
        thread.join().expect("watcher thread");
        assert_eq!(switches, 0, "{switches} context switches in {window:?} of idling");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn netlink_socket_opens_and_learns_the_addresses() {
        let Some(mut source) = NetlinkSource::new() else { panic!("netlink socket did not open") };
        assert_ne!(source.port, 0);
        // The dump answer is not a change, but fills the set of known addresses (loopback at least).
        let outcome = timeout(Duration::from_secs(5), source.next()).await.expect("dump answer");
        assert!(matches!(outcome, Outcome::Irrelevant));
        while source.dumping {
            let _ = timeout(Duration::from_secs(5), source.next()).await.expect("dump answer");
        }
        let loopback = [127, 0, 0, 1];
        assert!(source.addresses.iter().any(|key| key.family == libc::AF_INET as u8 && key.local[..4] == loopback));
    }

    fn message(kind: u16, pid: u32, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut message = Vec::new();
        message.extend_from_slice(&(len as u32).to_ne_bytes());
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(&0u16.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(&pid.to_ne_bytes());
        message.extend_from_slice(payload);
        while message.len() % 4 != 0 {
            message.push(0);
        }
        message
    }

    fn ifaddr(index: u32, address: [u8; 4], flags: u8) -> Vec<u8> {
        let mut payload = vec![libc::AF_INET as u8, 24, flags, 0];
        payload.extend_from_slice(&index.to_ne_bytes());
        for kind in [IFA_ADDRESS, IFA_LOCAL] {
            payload.extend_from_slice(&8u16.to_ne_bytes());
            payload.extend_from_slice(&kind.to_ne_bytes());
            payload.extend_from_slice(&address);
        }
        // An attribute the key ignores (IFA_CACHEINFO-like), which changes on every refresh.
        payload.extend_from_slice(&8u16.to_ne_bytes());
        payload.extend_from_slice(&6u16.to_ne_bytes());
        payload.extend_from_slice(&[flags, 1, 2, 3]);
        payload
    }

    #[test]
    fn address_refreshes_are_not_changes() {
        let port = 4242;
        let mut known = HashSet::new();
        let mut done = false;
        // The dump answer fills the set without being a change.
        let mut dump = message(RTM_NEWADDR, port, &ifaddr(2, [192, 0, 2, 10], 0));
        dump.extend(message(NLMSG_DONE, port, &[0; 4]));
        assert!(!process_messages(&dump, port, &mut known, &mut done));
        assert!(done);
        // A refresh of a known address (other flags, other lifetimes) is not a change ...
        let refresh = message(RTM_NEWADDR, 0, &ifaddr(2, [192, 0, 2, 10], 0x80));
        assert!(!process_messages(&refresh, port, &mut known, &mut done));
        // ... a new address, a removal and any link message are.
        assert!(process_messages(
            &message(RTM_NEWADDR, 0, &ifaddr(2, [192, 0, 2, 11], 0)),
            port,
            &mut known,
            &mut done
        ));
        assert!(process_messages(
            &message(RTM_DELADDR, 0, &ifaddr(2, [192, 0, 2, 11], 0)),
            port,
            &mut known,
            &mut done
        ));
        assert!(process_messages(
            &message(RTM_NEWADDR, 0, &ifaddr(2, [192, 0, 2, 11], 0)),
            port,
            &mut known,
            &mut done
        ));
        assert!(process_messages(&message(RTM_NEWLINK, 0, &[0; 16]), port, &mut known, &mut done));
        // Truncated and garbage input is ignored without panicking.
        assert!(!process_messages(&refresh[..refresh.len() - 3], port, &mut known, &mut done));
        assert!(!process_messages(&[0xff; 7], port, &mut known, &mut done));
        assert!(!process_messages(&[0; 40], port, &mut known, &mut done));
        assert_eq!(address_key(&[2, 24, 0]), None);
    }
}
