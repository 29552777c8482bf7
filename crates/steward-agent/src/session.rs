//! The agent's conversation with the server, over either channel: say hello, report inventory, then wait for
//! either a request from the server or a change on the system. Reconnects with jittered backoff.
//!
//! ```text
//!            ┌────────── backoff (TLS 1 s .. 60 s, serial 0.5 s .. 4 s, jittered) ◄──┐
//!            ▼                                                                       │ connection lost,
//!   connect (TLS) or open the port ──► Hello ──► Welcome ──► report ──► idle ────────┤ Goodbye{retry}
//!                                                             ▲          │ change noticed (inotify, netlink,
//!                                                             └──────────┘ mounts) or RefreshInventory
//!   Goodbye{retry: false} ──► exit: the certificate was revoked, or the server cannot talk to this agent
//! ```
//! While idle the agent has nothing scheduled: it sleeps in epoll until the server or the kernel has news.
//! A `Request` from the server starts a task of its own (`requests.rs`) and the conversation goes on; the task's
//! answer comes back through a queue the conversation reads alongside the link and the watcher.
//! Over virtio-serial the server may also start the conversation over (`HelloRequest`, another `Welcome`), and
//! an unanswered Hello is repeated; `serial.rs` explains why and draws that state machine.

use std::path::PathBuf;
use std::time::Duration;

use steward_protocol::{
    AgentMessage, AgentRequest, AgentResponse, FrameError, Inventory, PROTOCOL_VERSION, ServerMessage,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::requests::Requests;
use crate::sampler::Sampler;
use crate::serial::{SerialDevice, SerialLink};
use crate::state::StateDir;
use crate::tls::{TlsLink, TlsTransport};
use crate::watch::ChangeWatcher;

/// A connection that lasted this long resets the reconnect backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(60);

/// Over TLS, a server that does not welcome the agent within this time is treated as gone.
const TLS_WELCOME_TIMEOUT: Duration = Duration::from_secs(30);

/// Over virtio-serial, reopening the port while no server is attached is the only way to notice one arrive (the
/// port reports end of file until then); this cap bounds how long a guest takes to register once it does.
const SERIAL_RETRY_BASE: Duration = Duration::from_millis(500);
const SERIAL_RETRY_CAP: Duration = Duration::from_secs(4);

/// Why the agent stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    #[error("the server refused this agent for good: {0}")]
    Refused(String),
}

/// How one connection ended.
enum Ended {
    /// Try again after a backoff delay.
    Retry(String),
    /// Do not try again with this identity.
    Refused(String),
    /// A signal asked us to stop.
    Shutdown,
}

/// The channel to the server.
pub enum Transport {
    /// Mutual TLS over TCP to the gateway, with the identity from enrollment.
    Tls(TlsTransport),
    /// The guest's virtio-serial port (or a test device): the channel itself identifies the guest.
    Serial(SerialDevice),
}

/// One connection over either channel.
enum Link {
    Tls(TlsLink),
    Serial(SerialLink),
}

impl Link {
    async fn receive(&mut self) -> Result<ServerMessage, FrameError> {
        match self {
            Link::Tls(link) => link.receive().await,
            Link::Serial(link) => link.receive().await,
        }
    }

    async fn send(&mut self, message: &AgentMessage) -> Result<(), FrameError> {
        match self {
            Link::Tls(link) => link.send(message).await,
            Link::Serial(link) => link.send(message).await,
        }
    }

    /// Whether the server may start the conversation over on this channel (only on virtio-serial).
    fn restartable(&self) -> bool {
        matches!(self, Link::Serial(_))
    }
}

pub struct Session {
    transport: Transport,
    state: StateDir,
    inventory_root: PathBuf,
    /// The server's requests, running or not; their limit holds across reconnects.
    requests: Requests,
    /// What file transfers may read and write.
    file_policy: std::sync::Arc<crate::files::policy::FilePolicy>,
}

impl Session {
    pub fn new(transport: Transport, state: StateDir, inventory_root: PathBuf) -> Self {
        let requests = Requests::new(inventory_root.clone());
        Self { transport, state, inventory_root, requests, file_policy: Default::default() }
    }

    /// Limits file transfers to `policy`'s roots (the default allows everything but pseudo-filesystems).
    pub fn with_file_policy(mut self, policy: crate::files::policy::FilePolicy) -> Self {
        self.file_policy = std::sync::Arc::new(policy);
        self
    }

    /// Runs until a signal (returns `Ok`) or until the server refuses the agent for good.
    pub async fn run(self, watcher: &mut ChangeWatcher, shutdown: &mut mpsc::Receiver<()>) -> Result<(), Stopped> {
        let mut backoff = match self.transport {
            Transport::Tls(_) => Backoff::default(),
            Transport::Serial(_) => Backoff::new(SERIAL_RETRY_BASE, SERIAL_RETRY_CAP),
        };
        let mut previous_reason = String::new();
        loop {
            let started = Instant::now();
            let ended = tokio::select! {
                ended = self.connect_and_serve(watcher) => ended,
                _ = shutdown.recv() => Ended::Shutdown,
            };
            // Only a connection that lasted starts the delays afresh; one the server keeps ending at once (a full
            // disk, say) must not turn the fleet into a tight reconnect loop.
            if started.elapsed() >= STABLE_CONNECTION {
                backoff.reset();
            }
            match ended {
                Ended::Shutdown => return Ok(()),
                Ended::Refused(reason) => return Err(Stopped::Refused(reason)),
                Ended::Retry(reason) => {
                    let delay = backoff.next_delay();
                    // A guest waiting for its server retries every few seconds: say so once, not every time.
                    if reason != previous_reason {
                        tracing::warn!(%reason, ?delay, "disconnected from the server; reconnecting");
                    } else {
                        tracing::debug!(%reason, ?delay, "still disconnected from the server; reconnecting");
                    }
                    previous_reason = reason;
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.recv() => return Ok(()),
                    }
                }
            }
        }
    }

    async fn connect_and_serve(&self, watcher: &mut ChangeWatcher) -> Ended {
        let link = match &self.transport {
            Transport::Tls(transport) => TlsLink::connect(transport).await.map(Link::Tls),
            Transport::Serial(device) => SerialLink::open(device).map(Link::Serial),
        };
        match link {
            Ok(mut link) => self.converse(&mut link, watcher).await,
            Err(reason) => Ended::Retry(reason),
        }
    }

    /// One conversation, from the first Hello until the link fails or the server says goodbye.
    async fn converse(&self, link: &mut Link, watcher: &mut ChangeWatcher) -> Ended {
        let mut last = self.state.last_inventory();
        // Answers of requests started in this conversation; those still running when it ends are dropped.
        let (answers, mut answered) = Requests::answers();
        // File transfers of this conversation; dropping them when it ends removes what unfinished pushes wrote.
        let mut transfers = crate::files::Transfers::new(std::sync::Arc::clone(&self.file_policy));
        // Shell sessions and streamed commands of this conversation; dropping them hangs up on each.
        let mut shells = crate::shell::Sessions::new(self.inventory_root.clone());
        // While a Hello is unanswered: when to give up (TLS) or say it again (serial). `None` once welcomed: from
        // then on nothing here runs on a timer.
        let mut hello_backoff = Backoff::new(Duration::from_secs(1), SERIAL_RETRY_CAP);
        let mut awaiting_welcome = match self.say_hello(link, &last, &mut hello_backoff).await {
            Ok(deadline) => Some(deadline),
            Err(ended) => return ended,
        };
        let mut welcomed = false;
        // What the server's monitors ask for; the server sends the plan again after every Welcome.
        let mut sampler = Sampler::default();
        loop {
            let deadline = awaiting_welcome;
            let sample_at = sampler.next_wake();
            let samples_due = async move {
                match sample_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let hello_unanswered = async move {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = link.receive() => match message {
                    Ok(ServerMessage::Welcome { send_full_inventory, system_id, .. }) => {
                        if awaiting_welcome.is_none() && !link.restartable() {
                            return Ended::Retry("protocol violation: a second welcome".into());
                        }
                        if welcomed {
                            tracing::debug!(send_full_inventory, "welcomed again");
                        } else {
                            tracing::info!(system = %system_id, "connected to the server");
                        }
                        welcomed = true;
                        awaiting_welcome = None;
                        if send_full_inventory {
                            last = None;
                        }
                        if let Err(ended) = self.report(link, &mut last).await {
                            return ended;
                        }
                    }
                    Ok(ServerMessage::HelloRequest) => {
                        if !link.restartable() {
                            return Ended::Retry("protocol violation: a hello request over TLS".into());
                        }
                        tracing::debug!("the server asked for a hello");
                        hello_backoff.reset();
                        match self.say_hello(link, &last, &mut hello_backoff).await {
                            Ok(deadline) => awaiting_welcome = Some(deadline),
                            Err(ended) => return ended,
                        }
                    }
                    Ok(ServerMessage::RefreshInventory { full }) => {
                        if awaiting_welcome.is_some() {
                            // The welcome that is on its way decides what to send.
                            continue;
                        }
                        tracing::info!(full, "the server asked for an inventory refresh");
                        if full {
                            last = None;
                        }
                        if let Err(ended) = self.report(link, &mut last).await {
                            return ended;
                        }
                    }
                    Ok(ServerMessage::Request { id, request: AgentRequest::ConfigureMonitors(plan) }) => {
                        let response = match sampler.configure(&plan) {
                            Ok(metrics) => {
                                tracing::info!(metrics, "monitor plan in force");
                                AgentResponse::MonitorsConfigured { metrics }
                            }
                            Err(message) => AgentResponse::Error { message },
                        };
                        if let Err(error) = link.send(&AgentMessage::Response { id, response }).await {
                            return frame_ended(error, link.restartable());
                        }
                    }
                    Ok(ServerMessage::Request { id, request }) => {
                        let refused = match request {
                            AgentRequest::File(file) => transfers.handle(id, file, &answers),
                            AgentRequest::Session(step) => shells.handle(id, step, &answers),
                            request => self.requests.start(id, request, &answers),
                        };
                        if let Some(refused) = refused
                            && let Err(error) = link.send(&refused).await
                        {
                            return frame_ended(error, link.restartable());
                        }
                    }
                    Ok(ServerMessage::Goodbye { reason, retry }) => return goodbye(reason, retry),
                    Err(error) => return frame_ended(error, link.restartable()),
                },
                Some(answer) = answered.recv() => {
                    if let Err(error) = link.send(&answer).await {
                        return frame_ended(error, link.restartable());
                    }
                    // A command's output or an inventory peaked at a few MiB of heap; give it back before idling
                    // (not after every chunk of a transfer, which would trim thousands of times a second).
                    if !crate::files::is_chunk_answer(&answer) && !crate::shell::is_session_answer(&answer) {
                        trim_heap();
                    }
                }
                // Changes wait while a Hello is unanswered: the welcome's report includes them.
                () = watcher.changed(), if awaiting_welcome.is_none() => {
                    if let Err(ended) = self.report(link, &mut last).await {
                        return ended;
                    }
                }
                () = samples_due, if awaiting_welcome.is_none() => {
                    let samples = sampler.sample_due(Instant::now()).await;
                    let at_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|elapsed| elapsed.as_millis() as i64)
                        .unwrap_or(0);
                    if !samples.is_empty()
                        && let Err(error) = link.send(&AgentMessage::Samples { at_ms, samples }).await
                    {
                        return frame_ended(error, link.restartable());
                    }
                }
                () = hello_unanswered => {
                    if !link.restartable() {
                        return Ended::Retry("no welcome within 30 seconds".into());
                    }
                    tracing::debug!("no welcome yet; saying hello again");
                    match self.say_hello(link, &last, &mut hello_backoff).await {
                        Ok(deadline) => awaiting_welcome = Some(deadline),
                        Err(ended) => return ended,
                    }
                }
            }
        }
    }

    /// Sends a Hello naming the inventory last reported; returns until when to wait for the welcome.
    async fn say_hello(
        &self,
        link: &mut Link,
        last: &Option<Inventory>,
        hello_backoff: &mut Backoff,
    ) -> Result<Instant, Ended> {
        let hello = AgentMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            inventory_digest: last.as_ref().map(Inventory::digest),
        };
        if let Err(error) = link.send(&hello).await {
            return Err(Ended::Retry(format!("cannot send hello: {}", describe(&error))));
        }
        let wait = if link.restartable() { hello_backoff.next_delay() } else { TLS_WELCOME_TIMEOUT };
        Ok(Instant::now() + wait)
    }

    /// Collects the inventory and sends it whole (when `last` is `None`) or as a patch against `last`.
    async fn report(&self, link: &mut Link, last: &mut Option<Inventory>) -> Result<(), Ended> {
        let current = crate::inventory::collect(&self.inventory_root);
        let message = match last.as_ref() {
            None => AgentMessage::Inventory { inventory: Box::new(current.clone()) },
            Some(previous) => match previous.diff(&current) {
                Some(patch) => AgentMessage::InventoryPatch { patch: Box::new(patch) },
                None => return Ok(()),
            },
        };
        link.send(&message).await.map_err(|error| frame_ended(error, link.restartable()))?;
        if let Err(error) = self.state.save_last_inventory(&current) {
            tracing::warn!(error = %error, "cannot keep the reported inventory; the next connection sends it whole");
        }
        *last = Some(current);
        // Collecting and encoding an inventory peaks at a few MiB of heap; give it back before idling.
        trim_heap();
        Ok(())
    }
}

/// Returns free heap memory to the system, so the idle agent stays small after a peak.
fn trim_heap() {
    // SAFETY: malloc_trim only releases free heap memory and is safe to call at any time.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0)
    };
}

fn goodbye(reason: String, retry: bool) -> Ended {
    if retry { Ended::Retry(format!("the server said goodbye: {reason}")) } else { Ended::Refused(reason) }
}

fn frame_ended(error: FrameError, serial: bool) -> Ended {
    match error {
        FrameError::Closed if serial => Ended::Retry("the server is not attached to this guest's port".into()),
        FrameError::Closed => Ended::Retry("the server closed the connection".into()),
        other => Ended::Retry(format!("connection error: {}", describe(&other))),
    }
}

/// The error with its cause (`FrameError::Io` alone says only "input/output error").
fn describe(error: &FrameError) -> String {
    match error {
        FrameError::Io(cause) => format!("{error}: {cause}"),
        other => other.to_string(),
    }
}
