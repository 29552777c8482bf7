//! Requests the server makes of an agent, and the agent's answers: run a command, collect the inventory now.
//!
//! A request travels in [`ServerMessage::Request`](crate::ServerMessage::Request) with an ID the server chose;
//! the agent answers each with exactly one [`AgentMessage::Response`](crate::AgentMessage::Response) carrying the
//! same ID, in whatever order the requests finish. The server alone enforces a deadline: the agent never needs a
//! timer for a request other than the command's own timeout.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::inventory::Inventory;
use crate::system_admin::{
    NetworkConfiguration, ProcessListing, ServiceAction, ServiceActionOutcome, ServiceListing, SignalOutcome,
    SignalProcess, SignalProcessesByName,
};

/// The most output the agent keeps of each stream of a command (standard output, standard error); the rest is
/// read and discarded, so the command never blocks on a full pipe.
pub const MAX_COMMAND_OUTPUT_BYTES: usize = 1024 * 1024;

/// What the server asks of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentRequest {
    /// Run a program and report how it ended, with its output.
    RunCommand(CommandRequest),
    /// Collect the whole inventory now and answer with it (nothing is stored or reported besides).
    CollectInventory,
    /// Sample these metrics from now on (replacing the previous plan) and send them as `Samples` messages;
    /// answered with `MonitorsConfigured` (see `crate::monitor`).
    ConfigureMonitors(crate::monitor::MonitorPlan),
    /// List every process, with its CPU use over a short sample (`system_admin.rs` has the types of these).
    ListProcesses,
    /// Signal one process, if it is still the one listed.
    SignalProcess(SignalProcess),
    /// Signal every process of a name.
    SignalProcessesByName(SignalProcessesByName),
    /// List the services and their state.
    ListServices,
    /// Start, stop or restart a service.
    ServiceAction(ServiceAction),
    /// Report the network configuration: interfaces, routes, DNS.
    NetworkConfiguration,
    /// A step of a file transfer (`files.rs`).
    File(crate::files::FileRequest),
    /// A step of a shell session or a streamed command (`session.rs`).
    Session(crate::session::SessionRequest),
    /// Make a private directory for a package file to be pushed to (`software.rs` has the types of these).
    PackageStage,
    /// Install, upgrade or remove a package with the system's tool.
    Package(crate::software::PackageOperation),
    /// List the users and groups.
    ListAccounts,
    /// Change a user or group with shadow-utils.
    Account(crate::software::AccountChange),
    /// A request kind this build does not know: a newer server asked for something this agent cannot do. Never
    /// sent; an agent answers it with [`AgentResponse::Error`] instead of failing to read the whole message, so
    /// new kinds can be added without a protocol version.
    #[serde(other)]
    Unsupported,
}

/// A program to run on the agent's system, without a shell unless `argv` names one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// The program (looked up in the agent's `PATH` unless it contains a `/`) and its arguments; never empty.
    pub argv: Vec<String>,
    /// Variables added to the agent's own environment for this command.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Written to the command's standard input, which is then closed; without it standard input is `/dev/null`.
    #[serde(default)]
    pub stdin: Option<String>,
    /// After this many seconds the command and its whole process group are killed.
    pub timeout_seconds: u32,
    /// The directory to run in; the agent's own working directory (`/`) when absent.
    #[serde(default)]
    pub working_directory: Option<String>,
}

/// The agent's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentResponse {
    /// A command ran (whatever its exit code, even if it was killed at its timeout).
    Command(CommandOutcome),
    /// The inventory collected for a `CollectInventory` request.
    Inventory(Box<Inventory>),
    /// The plan of a `ConfigureMonitors` request is in force: this many metrics are sampled.
    MonitorsConfigured { metrics: u32 },
    /// The answer to `ListProcesses`.
    Processes(ProcessListing),
    /// The answer to `SignalProcess` and `SignalProcessesByName`.
    Signalled(SignalOutcome),
    /// The answer to `ListServices`.
    Services(ServiceListing),
    /// The answer to `ServiceAction` (also when the action failed: its exit code and output say how).
    ServiceAction(ServiceActionOutcome),
    /// The answer to `NetworkConfiguration`.
    Network(NetworkConfiguration),
    /// The answer to a `File` request.
    File(crate::files::FileResponse),
    /// The answer to a `Session` request.
    Session(crate::session::SessionResponse),
    /// The answer to `PackageStage`.
    PackageStaged(crate::software::PackageStaged),
    /// The answer to `Package` and `Account`: the commands run, with their exit codes and exact output (also
    /// when one failed).
    Tool(crate::software::ToolOutcome),
    /// The answer to `ListAccounts`.
    Accounts(crate::software::AccountListing),
    /// The request could not be carried out: the program could not be started, the agent is busy, the request is
    /// not valid or not supported. The message says which, for a human.
    Error { message: String },
}

/// How a command ended and what it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandOutcome {
    /// The exit code, when the command exited by itself; `None` when a signal ended it.
    pub exit_code: Option<i32>,
    /// The signal that ended the command, if one did (9 when it was killed at its timeout).
    pub signal: Option<i32>,
    /// True when the command was still running at its timeout and was killed.
    pub timed_out: bool,
    /// Standard output, decoded as UTF-8 (invalid bytes replaced), at most [`MAX_COMMAND_OUTPUT_BYTES`] of it.
    pub stdout: String,
    pub stderr: String,
    /// True when the command wrote more than was kept.
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// From starting the command until it ended and its output was read.
    pub duration_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentMessage, ServerMessage};

    fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
        let text = serde_json::to_string(value).expect("serialize");
        let back: T = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(&back, value, "{text}");
    }

    fn command() -> CommandRequest {
        CommandRequest {
            argv: vec!["sh".into(), "-c".into(), "echo \"$GREETING\"".into()],
            environment: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
            stdin: Some("input\n".into()),
            timeout_seconds: 60,
            working_directory: Some("/tmp".into()),
        }
    }

    #[test]
    fn requests_and_responses_survive_the_wire() {
        round_trip(&ServerMessage::Request { id: 7, request: AgentRequest::RunCommand(command()) });
        round_trip(&ServerMessage::Request { id: u64::MAX, request: AgentRequest::CollectInventory });
        let outcome = CommandOutcome {
            exit_code: None,
            signal: Some(9),
            timed_out: true,
            stdout: "partial ✓".into(),
            stderr: String::new(),
            stdout_truncated: true,
            stderr_truncated: false,
            duration_ms: 1500,
        };
        round_trip(&AgentMessage::Response { id: 7, response: AgentResponse::Command(outcome) });
        let inventory = Inventory {
            personalization: vec![crate::PersonalizationResult { name: "10-network".into(), exit_code: 0 }],
            ..Inventory::default()
        };
        round_trip(&AgentMessage::Response { id: 8, response: AgentResponse::Inventory(Box::new(inventory)) });
        round_trip(&AgentMessage::Response { id: 9, response: AgentResponse::Error { message: "busy".into() } });
    }

    #[test]
    fn the_wire_form_is_tagged_in_snake_case() {
        let message = ServerMessage::Request { id: 1, request: AgentRequest::CollectInventory };
        assert_eq!(
            serde_json::to_value(&message).expect("serialize"),
            serde_json::json!({"type": "request", "id": 1, "request": {"type": "collect_inventory"}})
        );
        let text = r#"{"type":"request","id":2,"request":{"type":"run_command","argv":["true"],"timeout_seconds":5}}"#;
        let ServerMessage::Request { id, request: AgentRequest::RunCommand(command) } =
            serde_json::from_str(text).expect("minimal command")
        else {
            panic!("not a command request");
        };
        assert_eq!(id, 2);
        assert_eq!(command.argv, ["true"]);
        assert!(command.environment.is_empty() && command.stdin.is_none() && command.working_directory.is_none());
    }

    #[test]
    fn a_request_kind_from_a_newer_server_is_read_as_unsupported() {
        let text = r#"{"type":"request","id":3,"request":{"type":"install_packages","names":["vim"]}}"#;
        let message: ServerMessage = serde_json::from_str(text).expect("an unknown kind still reads");
        assert_eq!(message, ServerMessage::Request { id: 3, request: AgentRequest::Unsupported });
    }

    #[test]
    fn malformed_requests_are_refused_with_the_reason() {
        for (text, reason) in [
            (
                r#"{"type":"request","id":1,"request":{"type":"run_command","timeout_seconds":5}}"#,
                "missing field `argv`",
            ),
            (
                r#"{"type":"request","id":1,"request":{"type":"run_command","argv":"ls","timeout_seconds":5}}"#,
                "invalid type",
            ),
            (
                r#"{"type":"request","id":1,"request":{"type":"run_command","argv":["ls"],"timeout_seconds":5,"shell":true}}"#,
                "unknown field `shell`",
            ),
            (r#"{"type":"request","id":-1,"request":{"type":"collect_inventory"}}"#, "invalid value"),
            (r#"{"type":"request","request":{"type":"collect_inventory"}}"#, "missing field `id`"),
            (r#"{"type":"request","id":1}"#, "missing field `request`"),
            (r#"{"type":"request","id":1,"request":"collect_inventory"}"#, "invalid type"),
        ] {
            let error = serde_json::from_str::<ServerMessage>(text).expect_err(text).to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
        let error =
            serde_json::from_str::<AgentMessage>(r#"{"type":"response","id":1,"response":{"type":"exploded"}}"#)
                .expect_err("unknown response kind")
                .to_string();
        assert!(error.contains("unknown variant `exploded`"), "{error}");
    }
}
