//! The server's requests (`ServerMessage::Request`): each runs in a task of its own, so the conversation goes on
//! (reports, other requests) while a command runs, and answers through the conversation's queue of answers.
//!
//! At most [`MAX_RUNNING`] requests run at a time, across reconnects; one more is answered at once with an
//! error saying the agent is busy. A request that is still running when its conversation ends runs to its end
//! (or its timeout), and its answer is dropped: the server has already told its caller the agent went away.
//! Nothing here runs on a timer; a command's own timeout lives only as long as the command.

use std::path::PathBuf;
use std::sync::Arc;

use steward_protocol::{AgentMessage, AgentRequest, AgentResponse, MAX_FRAME_BYTES};
use tokio::sync::{Semaphore, mpsc};

/// How many requests may run at the same time.
pub const MAX_RUNNING: usize = 8;

/// Carries out the server's requests.
pub struct Requests {
    slots: Arc<Semaphore>,
    inventory_root: PathBuf,
}

/// Where the answers of one conversation go; the conversation sends them to the server.
pub type Answers = mpsc::Sender<AgentMessage>;

impl Requests {
    /// Requests whose inventory is collected under `inventory_root` (`/` in production).
    pub fn new(inventory_root: PathBuf) -> Self {
        Self { slots: Arc::new(Semaphore::new(MAX_RUNNING)), inventory_root }
    }

    /// A queue for the answers of one conversation (room for every request that can run).
    pub fn answers() -> (Answers, mpsc::Receiver<AgentMessage>) {
        mpsc::channel(MAX_RUNNING)
    }

    /// Starts carrying out request `id`; its answer will come through `answers`. Returns an answer to send now
    /// instead when the request is not started (the agent is busy, or does not know the request).
    pub fn start(&self, id: u64, request: AgentRequest, answers: &Answers) -> Option<AgentMessage> {
        if matches!(request, AgentRequest::Unsupported) {
            let message = format!(
                "steward-agent {} does not know this request; upgrade the agent to use it",
                env!("CARGO_PKG_VERSION")
            );
            tracing::info!(id, "the server made a request this agent does not know");
            return Some(answer(id, AgentResponse::Error { message }));
        }
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            tracing::info!(id, "refusing a request: {MAX_RUNNING} are running already");
            let message = format!("busy: the agent is already carrying out {MAX_RUNNING} requests; try again later");
            return Some(answer(id, AgentResponse::Error { message }));
        };
        let answers = answers.clone();
        let inventory_root = self.inventory_root.clone();
        tokio::spawn(async move {
            let response = carry_out(id, request, inventory_root).await;
            drop(slot);
            if answers.send(answer(id, response)).await.is_err() {
                tracing::info!(id, "the connection ended before the request finished; its answer is lost");
            }
        });
        None
    }
}

async fn carry_out(id: u64, request: AgentRequest, inventory_root: PathBuf) -> AgentResponse {
    match request {
        AgentRequest::RunCommand(command) => {
            let program = command.argv.first().cloned().unwrap_or_default();
            tracing::info!(id, %program, timeout_seconds = command.timeout_seconds, "running a command for the server");
            match crate::command::run(command).await {
                Ok(outcome) => {
                    tracing::info!(id, %program, exit_code = ?outcome.exit_code, signal = ?outcome.signal,
                        timed_out = outcome.timed_out, duration_ms = outcome.duration_ms, "the command ended");
                    AgentResponse::Command(outcome)
                }
                Err(message) => {
                    tracing::info!(id, %program, %message, "the command did not run");
                    AgentResponse::Error { message }
                }
            }
        }
        AgentRequest::CollectInventory => {
            tracing::info!(id, "collecting the inventory for the server");
            // The collectors read files and may run `rpm`: off the runtime's only thread.
            match tokio::task::spawn_blocking(move || crate::inventory::collect(&inventory_root)).await {
                Ok(inventory) => AgentResponse::Inventory(Box::new(inventory)),
                Err(error) => AgentResponse::Error { message: format!("collecting the inventory failed: {error}") },
            }
        }
        // The conversation keeps the sampler and answers this one itself (session.rs).
        AgentRequest::ConfigureMonitors(_) => {
            AgentResponse::Error { message: "monitor plans are taken by the conversation, not as a task".into() }
        }
        request @ (AgentRequest::ListProcesses
        | AgentRequest::SignalProcess(_)
        | AgentRequest::SignalProcessesByName(_)
        | AgentRequest::ListServices
        | AgentRequest::ServiceAction(_)
        | AgentRequest::NetworkConfiguration) => crate::admin::carry_out(id, request).await,
        request @ (AgentRequest::PackageStage
        | AgentRequest::Package(_)
        | AgentRequest::ListAccounts
        | AgentRequest::Account(_)) => crate::software::carry_out(id, request).await,
        // The conversation hands file requests to its transfers (`files.rs`), never here.
        AgentRequest::File(_) => AgentResponse::Error { message: "file requests belong to a transfer".into() },
        AgentRequest::Session(_) => AgentResponse::Error { message: "session requests belong to a session".into() },
        AgentRequest::Unsupported => AgentResponse::Error { message: "this request is not supported".into() },
    }
}

/// The response as a message that fits in one frame: a command's output is cut further when its encoding (JSON
/// escapes make control characters six bytes long) would not fit, and anything else that does not fit becomes an
/// error saying so.
pub fn answer(id: u64, response: AgentResponse) -> AgentMessage {
    let mut response = response;
    loop {
        let size = serde_json::to_vec(&response).map_or(usize::MAX, |bytes| bytes.len()).saturating_add(ENVELOPE);
        if size <= MAX_FRAME_BYTES {
            return AgentMessage::Response { id, response };
        }
        response = match response {
            AgentResponse::Command(mut outcome) if !(outcome.stdout.is_empty() && outcome.stderr.is_empty()) => {
                if outcome.stdout.len() >= outcome.stderr.len() {
                    halve(&mut outcome.stdout);
                    outcome.stdout_truncated = true;
                } else {
                    halve(&mut outcome.stderr);
                    outcome.stderr_truncated = true;
                }
                AgentResponse::Command(outcome)
            }
            _ => AgentResponse::Error {
                message: format!("the answer is {size} bytes long, more than the {MAX_FRAME_BYTES} a message may have"),
            },
        };
    }
}

/// What the message around a response adds at most: `{"type":"response","id":<20 digits>,"response":}`.
const ENVELOPE: usize = 64;

/// Cuts `text` to about half, at a character boundary.
fn halve(text: &mut String) {
    let mut end = text.len() / 2;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use steward_protocol::{CommandOutcome, CommandRequest, MAX_COMMAND_OUTPUT_BYTES};

    use super::*;

    fn command(argv: &[&str]) -> AgentRequest {
        AgentRequest::RunCommand(CommandRequest {
            argv: argv.iter().map(|argument| argument.to_string()).collect(),
            environment: BTreeMap::new(),
            stdin: None,
            timeout_seconds: 30,
            working_directory: None,
        })
    }

    fn response_of(message: AgentMessage) -> (u64, AgentResponse) {
        match message {
            AgentMessage::Response { id, response } => (id, response),
            other => panic!("not a response: {other:?}"),
        }
    }

    #[tokio::test]
    async fn answers_through_the_queue_and_refuses_beyond_the_limit() {
        let requests = Requests::new(PathBuf::from("/nonexistent-root"));
        let (answers, mut received) = Requests::answers();
        // Fill every slot with a command that waits until the test creates the gate file.
        let gate_dir = tempfile::tempdir().expect("tempdir");
        let gate = gate_dir.path().join("open");
        let script = format!("while [ ! -e {} ]; do sleep 0.05; done; echo go", gate.display());
        for id in 0..MAX_RUNNING as u64 {
            assert!(requests.start(id, command(&["sh", "-c", &script]), &answers).is_none(), "request {id} starts");
        }
        let busy = requests.start(100, command(&["true"]), &answers).expect("refused at once");
        let (id, AgentResponse::Error { message }) = response_of(busy) else { panic!("not an error") };
        assert_eq!(id, 100);
        assert!(message.starts_with("busy"), "{message}");

        // Open the gate: every waiting command ends; each answer carries its own ID.
        std::fs::write(&gate, "").expect("open the gate");
        let mut ids = Vec::new();
        for _ in 0..MAX_RUNNING {
            let (id, response) = response_of(received.recv().await.expect("an answer"));
            let AgentResponse::Command(outcome) = response else { panic!("not a command outcome") };
            assert_eq!(outcome.stdout, "go\n");
            ids.push(id);
        }
        ids.sort_unstable();
        assert_eq!(ids, (0..MAX_RUNNING as u64).collect::<Vec<_>>());

        // The slots are free again.
        assert!(requests.start(200, command(&["true"]), &answers).is_none());
        assert_eq!(response_of(received.recv().await.expect("an answer")).0, 200);
    }

    #[tokio::test]
    async fn a_missing_program_and_an_unknown_request_are_errors() {
        let requests = Requests::new(PathBuf::from("/nonexistent-root"));
        let (answers, mut received) = Requests::answers();
        assert!(requests.start(1, command(&["steward-no-such-program", "x"]), &answers).is_none());
        let (_, AgentResponse::Error { message }) = response_of(received.recv().await.expect("an answer")) else {
            panic!("not an error")
        };
        assert!(message.contains("\"steward-no-such-program\""), "{message}");
        let unknown = requests.start(2, AgentRequest::Unsupported, &answers).expect("answered at once");
        let (2, AgentResponse::Error { message }) = response_of(unknown) else { panic!("not an error") };
        assert!(message.contains("does not know this request"), "{message}");
    }

    #[tokio::test]
    async fn collects_the_inventory_of_the_root() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("proc/sys/kernel")).expect("mkdir");
        std::fs::write(root.path().join("proc/sys/kernel/hostname"), "fixture-host\n").expect("write");
        let requests = Requests::new(root.path().to_path_buf());
        let (answers, mut received) = Requests::answers();
        assert!(requests.start(5, AgentRequest::CollectInventory, &answers).is_none());
        let (5, AgentResponse::Inventory(inventory)) = response_of(received.recv().await.expect("an answer")) else {
            panic!("not an inventory")
        };
        assert_eq!(inventory.host.hostname, "fixture-host");
    }

    #[test]
    fn an_answer_always_fits_in_a_frame() {
        // Control characters are escaped as six bytes each: two full streams of them would not fit.
        let outcome = CommandOutcome {
            exit_code: Some(0),
            stdout: "\u{1}".repeat(MAX_COMMAND_OUTPUT_BYTES),
            stderr: "\u{2}".repeat(MAX_COMMAND_OUTPUT_BYTES),
            ..CommandOutcome::default()
        };
        let message = answer(9, AgentResponse::Command(outcome));
        assert!(serde_json::to_vec(&message).expect("encode").len() <= MAX_FRAME_BYTES);
        let (9, AgentResponse::Command(cut)) = response_of(message) else { panic!("not a command outcome") };
        assert!(cut.stdout_truncated && cut.stderr_truncated);
        assert!(!cut.stdout.is_empty() && cut.stdout.len() < MAX_COMMAND_OUTPUT_BYTES);

        // Plain output is left alone.
        let plain = CommandOutcome { stdout: "ok\n".into(), ..CommandOutcome::default() };
        let (_, AgentResponse::Command(kept)) = response_of(answer(1, AgentResponse::Command(plain.clone()))) else {
            panic!("not a command outcome")
        };
        assert_eq!(kept, plain);

        let mut text = "ééé".to_string();
        halve(&mut text);
        assert_eq!(text, "é");
    }
}
