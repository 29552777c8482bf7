//! Managed systems and their inventory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
pub use steward_protocol::CommandOutcome;
use steward_protocol::{CommandRequest, Inventory};

use super::Timestamp;
use crate::ids::SystemId;
use crate::validate::ValidationError;

/// Whether the system's agent is connected right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SystemState {
    Online,
    Offline,
}

impl SystemState {
    pub fn as_str(self) -> &'static str {
        match self {
            SystemState::Online => "online",
            SystemState::Offline => "offline",
        }
    }
}

/// A system as listed: the identifying facts without the full inventory.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SystemSummary {
    pub id: SystemId,
    pub name: String,
    pub state: SystemState,
    pub hostname: String,
    /// `PRETTY_NAME` of os-release.
    pub os: String,
    pub arch: String,
    pub agent_version: String,
    pub enrolled_at: Timestamp,
    /// When the agent last connected or sent anything.
    pub last_contact_at: Option<Timestamp>,
}

/// A system with its whole inventory (`null` until the agent first reported it).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SystemDetail {
    #[serde(flatten)]
    pub summary: SystemSummary,
    pub inventory: Option<Inventory>,
    pub inventory_updated_at: Option<Timestamp>,
    /// Names of the groups the system is a member of.
    pub groups: Vec<String>,
}

/// Filters of `GET /api/v1/systems`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SystemListQuery {
    pub limit: Option<u32>,
    pub after: Option<String>,
    /// Only members of this group (name or ID).
    pub group: Option<String>,
    /// Only systems in this state.
    pub state: Option<SystemState>,
    /// Only systems whose inventory matches this query (the group query language). This evaluates the query
    /// over the whole fleet at each call; for a filter used often, create a dynamic group.
    pub query: Option<String>,
}

/// One entry of a system's inventory history.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InventoryChange {
    pub at: Timestamp,
    /// Sections that changed (`host`, `filesystems`, `packages`, ...) or `full` for a whole report.
    pub sections: Vec<String>,
    /// The patch as the agent sent it (for a full report, a summary).
    pub change: serde_json::Value,
}

/// Most arguments a command may have.
pub const MAX_COMMAND_ARGS: usize = 4096;

/// Most bytes all of a command's arguments may have together.
pub const MAX_COMMAND_ARGV_BYTES: usize = 1024 * 1024;

/// Longest a command may run, in seconds (a day).
pub const MAX_COMMAND_TIMEOUT_SECONDS: u32 = 86_400;

/// How long a command runs by default, in seconds.
pub const DEFAULT_COMMAND_TIMEOUT_SECONDS: u32 = 60;

/// The body of `POST /api/v1/systems/{system}/commands`: a program to run on the system, by its agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemCommand {
    /// The program and its arguments, run as they are (no shell unless the program is one): `["sh", "-c",
    /// "..."]` for a shell command line. At most 4096 arguments and 1 MiB in all, none with a NUL character.
    pub argv: Vec<String>,
    /// Variables added to the agent's environment; names are `[A-Za-z_][A-Za-z0-9_]*`. Their values are not
    /// recorded in the audit trail.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Written to the command's standard input, which is then closed (without it, standard input is empty). Not
    /// recorded in the audit trail.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Seconds after which the command and every process it started are killed: 1 to 86400.
    #[serde(default = "default_command_timeout")]
    #[schema(default = 60, minimum = 1, maximum = 86400)]
    pub timeout_seconds: u32,
    /// An absolute directory to run in; `/` (the agent's own) when absent.
    #[serde(default)]
    pub working_directory: Option<String>,
}

fn default_command_timeout() -> u32 {
    DEFAULT_COMMAND_TIMEOUT_SECONDS
}

impl SystemCommand {
    /// Checks every rule of the fields above; the error names the field (`argv[2]`, `environment.PATH`).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.argv.is_empty() {
            return Err(ValidationError::new("argv", "must name a program: it is empty"));
        }
        if self.argv[0].is_empty() {
            return Err(ValidationError::new("argv[0]", "must name a program: it is empty"));
        }
        if self.argv.len() > MAX_COMMAND_ARGS {
            return Err(ValidationError::new(
                "argv",
                format!("has {} arguments; at most {MAX_COMMAND_ARGS} are allowed", self.argv.len()),
            ));
        }
        if let Some(index) = self.argv.iter().position(|argument| argument.contains('\0')) {
            return Err(ValidationError::new(format!("argv[{index}]"), "must not contain a NUL character"));
        }
        let total: usize = self.argv.iter().map(String::len).sum();
        if total > MAX_COMMAND_ARGV_BYTES {
            return Err(ValidationError::new(
                "argv",
                format!("has {total} bytes in all; at most {MAX_COMMAND_ARGV_BYTES} are allowed"),
            ));
        }
        for (name, value) in &self.environment {
            if !is_environment_name(name) {
                return Err(ValidationError::new(
                    format!("environment.{name}"),
                    "is not a variable name: use letters, digits and '_', not starting with a digit",
                ));
            }
            if value.contains('\0') {
                return Err(ValidationError::new(format!("environment.{name}"), "must not contain a NUL character"));
            }
        }
        if !(1..=MAX_COMMAND_TIMEOUT_SECONDS).contains(&self.timeout_seconds) {
            return Err(ValidationError::new(
                "timeout_seconds",
                format!("must be between 1 and {MAX_COMMAND_TIMEOUT_SECONDS} (a day), not {}", self.timeout_seconds),
            ));
        }
        if let Some(directory) = &self.working_directory
            && (!directory.starts_with('/') || directory.contains('\0') || directory.len() > 4096)
        {
            return Err(ValidationError::new(
                "working_directory",
                "must be an absolute path of at most 4096 bytes without NUL characters",
            ));
        }
        Ok(())
    }

    /// The request for the agent.
    pub fn into_request(self) -> CommandRequest {
        CommandRequest {
            argv: self.argv,
            environment: self.environment,
            stdin: self.stdin,
            timeout_seconds: self.timeout_seconds,
            working_directory: self.working_directory,
        }
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: the names a shell can use, and so the only ones a command can rely on.
pub fn is_environment_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|rest| rest.is_ascii_alphanumeric() || rest == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(argv: &[&str]) -> SystemCommand {
        serde_json::from_value(serde_json::json!({ "argv": argv })).expect("a minimal body")
    }

    #[test]
    fn defaults_and_valid_commands() {
        let minimal = command(&["uptime"]);
        assert_eq!(minimal.timeout_seconds, DEFAULT_COMMAND_TIMEOUT_SECONDS);
        assert!(minimal.environment.is_empty() && minimal.stdin.is_none() && minimal.working_directory.is_none());
        assert_eq!(minimal.validate(), Ok(()));
        let mut full = command(&["sh", "-c", "echo \"$A_1\""]);
        full.environment.insert("A_1".into(), "value with spaces = and more".into());
        full.environment.insert("_x".into(), String::new());
        full.working_directory = Some("/tmp".into());
        full.timeout_seconds = MAX_COMMAND_TIMEOUT_SECONDS;
        assert_eq!(full.validate(), Ok(()));
    }

    #[test]
    fn each_rule_names_its_field() {
        let field = |command: SystemCommand| command.validate().expect_err("refused").field;
        assert_eq!(field(command(&[])), "argv");
        assert_eq!(field(command(&[""])), "argv[0]");
        assert_eq!(field(command(&["echo", "a", "b\0"])), "argv[2]");
        let many: Vec<String> = (0..=MAX_COMMAND_ARGS).map(|n| n.to_string()).collect();
        assert_eq!(field(command(&many.iter().map(String::as_str).collect::<Vec<_>>())), "argv");
        let long = "x".repeat(MAX_COMMAND_ARGV_BYTES);
        assert_eq!(field(command(&["echo", &long])), "argv");
        for bad in ["1A", "A-B", "", "A=B", "É"] {
            let mut with_name = command(&["env"]);
            with_name.environment.insert(bad.into(), "x".into());
            assert_eq!(field(with_name), format!("environment.{bad}"));
        }
        for timeout in [0, MAX_COMMAND_TIMEOUT_SECONDS + 1] {
            let mut slow = command(&["true"]);
            slow.timeout_seconds = timeout;
            assert_eq!(field(slow), "timeout_seconds");
        }
        let mut relative = command(&["true"]);
        relative.working_directory = Some("tmp".into());
        assert_eq!(field(relative), "working_directory");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = serde_json::from_value::<SystemCommand>(serde_json::json!({"argv": ["ls"], "shell": true}))
            .expect_err("unknown field");
        assert!(error.to_string().contains("unknown field `shell`"), "{error}");
    }
}
