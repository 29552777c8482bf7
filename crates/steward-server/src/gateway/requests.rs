//! Requests to agents that wait for an answer ([`super::Registry::request`]): each gets an ID no other request of
//! this server process has, an entry in the table of pending requests, and a deadline the caller chooses.
//!
//! ```text
//!  request() ──> pending[id] ──> queued on the agent's connection ──> Request{id} sent ──> Response{id} ──> Ok
//!     │ not connected: Offline      │ queue full: QueueFull                 │ the connection ends: Disconnected
//!     │                             │                                      │ the deadline passes: TimedOut
//!     └── the entry is removed on every path, also when the caller drops the future
//! ```
//! An answer is taken only from the connection the request was sent on: an agent cannot answer (or guess the ID
//! of) another system's request. Answers nobody waits for any more are logged and dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use steward_protocol::AgentResponse;
use steward_types::SystemId;
use tokio::sync::oneshot;

/// Why a request to an agent got no useful answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentRequestError {
    /// The system has no connected agent.
    #[error("the system's agent is not connected (the system is offline)")]
    Offline,
    /// The agent's connection has too many messages queued already.
    #[error("the agent's connection has too many requests queued; try again shortly")]
    QueueFull,
    /// The connection ended before the agent answered; the request may or may not have been carried out.
    #[error("the agent's connection ended before it answered; the request may or may not have been carried out")]
    Disconnected,
    /// No answer within the caller's deadline (the agent may still be working on it).
    #[error("the agent did not answer within {seconds} seconds")]
    TimedOut { seconds: u64 },
    /// The agent answered that it could not carry out the request, and why.
    #[error("the agent could not carry out the request: {0}")]
    Agent(String),
}

/// The requests waiting for their answer, by ID.
#[derive(Default)]
pub(super) struct PendingRequests {
    waiting: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
}

struct Pending {
    system: SystemId,
    connection: u64,
    answer: oneshot::Sender<AgentResponse>,
}

impl PendingRequests {
    /// A fresh request ID (never 0, never reused by this process).
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Waits for the answer to `id`, to come from `connection` of `system`. The entry is removed by the returned
    /// guard, whatever becomes of the request.
    pub(super) fn insert(
        &self,
        id: u64,
        system: SystemId,
        connection: u64,
    ) -> (PendingGuard<'_>, oneshot::Receiver<AgentResponse>) {
        let (answer, receiver) = oneshot::channel();
        self.lock().insert(id, Pending { system, connection, answer });
        (PendingGuard { pending: self, id }, receiver)
    }

    /// Hands an agent's answer to whoever waits for it; an answer nobody waits for is logged and dropped.
    pub(super) fn answer(&self, system: SystemId, connection: u64, id: u64, response: AgentResponse) {
        let mut waiting = self.lock();
        let Some(pending) = waiting.remove(&id) else {
            tracing::info!(%system, id, "an answer to a request nobody waits for (timed out or abandoned); dropped");
            return;
        };
        if pending.system != system || pending.connection != connection {
            tracing::warn!(%system, id, asked = %pending.system, "an answer to a request made on another connection; dropped");
            waiting.insert(id, pending);
            return;
        }
        // The caller may have given up in the meantime; then nobody needs the answer.
        let _ = pending.answer.send(response);
    }

    /// Fails every request sent on `connection`, which ended: their callers learn it at once.
    pub(super) fn connection_ended(&self, connection: u64) {
        // Dropping the senders wakes the callers with "disconnected".
        self.lock().retain(|_, pending| pending.connection != connection);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.waiting.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Removes a request's entry when the request is over, also when its caller's future is dropped.
pub(super) struct PendingGuard<'a> {
    pending: &'a PendingRequests,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use steward_protocol::{AgentRequest, CommandOutcome, ServerMessage};

    use super::*;
    use crate::gateway::Registry;

    /// The ID of the request the fake connection received.
    async fn received(control: &mut crate::gateway::Control) -> u64 {
        match control.requests.recv().await {
            Some(ServerMessage::Request { id, request: AgentRequest::CollectInventory }) => id,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_answer_reaches_its_request_and_only_from_its_connection() {
        let registry = Registry::default();
        let (system, other) = (SystemId::new(), SystemId::new());
        let (connection, mut control) = registry.register(system);
        let (other_connection, _other_control) = registry.register(other);
        let outcome = CommandOutcome { exit_code: Some(0), stdout: "hi\n".into(), ..CommandOutcome::default() };
        let answered = async {
            let id = received(&mut control).await;
            // Another system's agent cannot answer this request; the unknown ID is dropped too.
            registry.answer(other, other_connection, id, AgentResponse::Error { message: "forged".into() });
            registry.answer(system, connection, id + 1000, AgentResponse::Error { message: "stray".into() });
            assert_eq!(registry.pending.len(), 1, "still waiting after a forged and a stray answer");
            registry.answer(system, connection, id, AgentResponse::Command(outcome.clone()));
        };
        let (result, ()) =
            tokio::join!(registry.request(system, AgentRequest::CollectInventory, Duration::from_secs(30)), answered);
        assert_eq!(result, Ok(AgentResponse::Command(outcome)));
        assert_eq!(registry.pending.len(), 0);

        // The agent's refusal is an error of its own.
        let refused = async {
            let id = received(&mut control).await;
            registry.answer(system, connection, id, AgentResponse::Error { message: "busy".into() });
        };
        let (result, ()) =
            tokio::join!(registry.request(system, AgentRequest::CollectInventory, Duration::from_secs(30)), refused);
        assert_eq!(result, Err(AgentRequestError::Agent("busy".into())));
    }

    #[tokio::test]
    async fn every_way_a_request_fails_leaves_nothing_pending() {
        let registry = Registry::default();
        let system = SystemId::new();
        let request = || AgentRequest::CollectInventory;
        let offline = registry.request(system, request(), Duration::from_secs(30)).await;
        assert_eq!(offline, Err(AgentRequestError::Offline));

        let (connection, mut control) = registry.register(system);
        let timed_out = registry.request(system, request(), Duration::from_millis(200)).await;
        assert_eq!(timed_out, Err(AgentRequestError::TimedOut { seconds: 1 }));
        assert_eq!(registry.pending.len(), 0);
        // The late answer is dropped without harm.
        let late = received(&mut control).await;
        registry.answer(system, connection, late, AgentResponse::Error { message: "late".into() });

        // The connection ends while the request waits.
        let disconnected = async {
            received(&mut control).await;
            assert!(registry.unregister(system, connection));
        };
        let (result, ()) = tokio::join!(registry.request(system, request(), Duration::from_secs(30)), disconnected);
        assert_eq!(result, Err(AgentRequestError::Disconnected));
        assert_eq!(registry.pending.len(), 0);

        // A caller that gives up (drops the future) removes its entry.
        let (_connection, mut control) = registry.register(system);
        {
            let abandoned = registry.request(system, request(), Duration::from_secs(30));
            tokio::pin!(abandoned);
            tokio::select! {
                _ = &mut abandoned => panic!("nobody answered"),
                _ = received(&mut control) => {}
            }
            assert_eq!(registry.pending.len(), 1);
        }
        assert_eq!(registry.pending.len(), 0);

        // A full queue is told apart from an absent agent.
        for _ in 0..super::super::CONTROL_QUEUE {
            assert!(registry.send(system, ServerMessage::RefreshInventory { full: false }));
        }
        let full = registry.request(system, request(), Duration::from_secs(30)).await;
        assert_eq!(full, Err(AgentRequestError::QueueFull));
        assert_eq!(registry.pending.len(), 0);
    }
}
