//! A session on an agent (`steward_protocol::session`), seen from the server: a shell on a pseudo-terminal or a
//! command whose output streams. [`RemoteSession`] turns each step into a request through the gateway's
//! `Registry::request`, so a session fails as soon as its agent's connection ends.
//!
//! Flow control: whoever reads calls [`RemoteSession::read`] again only once it passed the last output on (to a
//! WebSocket, to a response body), and the agent keeps at most 64 KiB per stream meanwhile; so a client that
//! reads slowly slows the remote process down instead of growing anyone's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use steward_protocol::session::{
    SESSION_BUFFER_BYTES, SESSION_INPUT_BYTES, SessionExit, SessionOpen, SessionRequest, SessionResponse, TerminalSize,
    decode_bytes, encode_bytes,
};
use steward_protocol::{AgentRequest, AgentResponse};
use steward_types::SystemId;

use crate::gateway::{AgentRequestError, Registry};

/// How long the agent may take to answer a step other than a read.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a read may wait for output: a shell may sit idle for as long as its user likes, and the request
/// ends anyway when the connection does.
const READ_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// What one read brought.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SessionOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Set on the last output: the session is over.
    pub exit: Option<SessionExit>,
}

/// An open session on a system's agent. Dropping it closes the session (in the background) unless it ended.
pub struct RemoteSession {
    agents: Arc<Registry>,
    system: SystemId,
    session: u64,
    /// The process ID on the system.
    pub pid: u32,
    ended: AtomicBool,
}

impl RemoteSession {
    /// Starts a session on `system`.
    pub async fn open(agents: Arc<Registry>, system: SystemId, open: SessionOpen) -> Result<Self, AgentRequestError> {
        let request = AgentRequest::Session(SessionRequest::Open(open));
        match agents.request(system, request, STEP_TIMEOUT).await? {
            AgentResponse::Session(SessionResponse::Opened { session, pid }) => {
                Ok(Self { agents, system, session, pid, ended: AtomicBool::new(false) })
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Waits for output, or for the end; after an output with `exit`, the session is over.
    pub async fn read(&self) -> Result<SessionOutput, AgentRequestError> {
        let request = AgentRequest::Session(SessionRequest::Read { session: self.session });
        match self.agents.request(self.system, request, READ_TIMEOUT).await? {
            AgentResponse::Session(SessionResponse::Output { stdout, stderr, exit }) => {
                let decode = |text: &str| decode_bytes(text, SESSION_BUFFER_BYTES).map_err(AgentRequestError::Agent);
                Ok(SessionOutput { stdout: decode(&stdout)?, stderr: decode(&stderr)?, exit })
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Marks the session as over (its last output was read), so dropping it sends nothing.
    pub fn mark_ended(&self) {
        self.ended.store(true, Ordering::Relaxed);
    }

    /// Writes `bytes` to the session's terminal or standard input, in steps of at most 64 KiB; returns once the
    /// agent wrote them all.
    pub async fn input(&self, bytes: &[u8]) -> Result<(), AgentRequestError> {
        for piece in bytes.chunks(SESSION_INPUT_BYTES) {
            let data = encode_bytes(piece);
            self.step(SessionRequest::Input { session: self.session, data }).await?;
        }
        Ok(())
    }

    /// Closes a command's standard input.
    pub async fn close_input(&self) -> Result<(), AgentRequestError> {
        self.step(SessionRequest::CloseInput { session: self.session }).await.map(|_| ())
    }

    pub async fn resize(&self, size: TerminalSize) -> Result<(), AgentRequestError> {
        self.step(SessionRequest::Resize { session: self.session, size }).await.map(|_| ())
    }

    /// Hangs up on the session (SIGHUP to a shell's process group, SIGKILL to a command's).
    pub async fn close(&self) -> Result<(), AgentRequestError> {
        self.mark_ended();
        self.step(SessionRequest::Close { session: self.session }).await.map(|_| ())
    }

    async fn step(&self, request: SessionRequest) -> Result<SessionResponse, AgentRequestError> {
        match self.agents.request(self.system, AgentRequest::Session(request), STEP_TIMEOUT).await? {
            AgentResponse::Session(response) => Ok(response),
            other => Err(unexpected(&other)),
        }
    }
}

impl Drop for RemoteSession {
    fn drop(&mut self) {
        if self.ended.load(Ordering::Relaxed) {
            return;
        }
        let (agents, system, session) = (Arc::clone(&self.agents), self.system, self.session);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let request = AgentRequest::Session(SessionRequest::Close { session });
                if let Err(error) = agents.request(system, request, STEP_TIMEOUT).await {
                    tracing::debug!(%system, session, %error, "closing an abandoned session failed");
                }
            });
        }
    }
}

fn unexpected(answer: &AgentResponse) -> AgentRequestError {
    tracing::error!(?answer, "the agent answered a session step with something else");
    AgentRequestError::Agent("the agent answered a session step with something unexpected".into())
}
