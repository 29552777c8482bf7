//! Software distribution and system accounts (`steward_protocol::software`): packages installed, upgraded and
//! removed with the system's own tool (`packages.rs`), users and groups listed from the account files and changed
//! with shadow-utils (`accounts.rs`). [`carry_out`] answers one of these requests; `requests.rs` runs it in a task
//! of its own, like every request.
//!
//! Both act on the running system unless the agent was started with `--package-root` or `--account-root` (for
//! tests: a scratch root prepared by the test), which the tools get as their root option (`dpkg --root`, `rpm
//! --root`, `useradd -R`, ...) and which the inventory and the account listing read instead of `/`.

pub mod accounts;
pub mod packages;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use steward_protocol::software::ToolRun;
use steward_protocol::{AgentRequest, AgentResponse, CommandRequest};

/// Where the agent's package and account tools act.
#[derive(Debug, Clone)]
pub struct SoftwareSettings {
    /// Where package files are staged, one private directory per package (created when needed).
    pub staging: PathBuf,
    /// The root the package tools act on and the inventory reads packages from; `None`: the running system.
    pub package_root: Option<PathBuf>,
    /// The root the account tools act on and the listing reads; `None`: the running system.
    pub account_root: Option<PathBuf>,
}

impl Default for SoftwareSettings {
    fn default() -> Self {
        Self { staging: PathBuf::from(DEFAULT_STAGING), package_root: None, account_root: None }
    }
}

/// Where package files are staged when the agent is not told otherwise.
pub const DEFAULT_STAGING: &str = "/var/tmp/steward-agent/packages";

static SETTINGS: OnceLock<SoftwareSettings> = OnceLock::new();

/// Sets where the tools act, once, at start.
pub fn configure(settings: SoftwareSettings) {
    if SETTINGS.set(settings).is_err() {
        tracing::warn!("the software settings were set twice; the first ones are kept");
    }
}

pub fn settings() -> &'static SoftwareSettings {
    SETTINGS.get_or_init(SoftwareSettings::default)
}

/// The root the package tools act on, when it is not the running system.
pub fn package_root() -> Option<&'static Path> {
    settings().package_root.as_deref()
}

/// Carries out a package or account request; any other request is answered with an error.
pub async fn carry_out(id: u64, request: AgentRequest) -> AgentResponse {
    let result = match request {
        AgentRequest::PackageStage => {
            tracing::info!(id, "staging a directory for a package");
            blocking(|| packages::stage(&settings().staging)).await.map(AgentResponse::PackageStaged)
        }
        AgentRequest::Package(operation) => {
            tracing::info!(id, action = operation.action.as_str(), package = %operation.name,
                format = operation.format.as_str(), "changing a package for the server");
            packages::carry_out(settings(), operation).await.map(AgentResponse::Tool)
        }
        AgentRequest::ListAccounts => {
            tracing::info!(id, "listing the accounts for the server");
            let root = account_root();
            blocking(move || accounts::list(&root)).await.map(AgentResponse::Accounts)
        }
        AgentRequest::Account(change) => {
            // The subject and kind only: a change may carry a password.
            tracing::info!(id, change = change.kind(), subject = %change.subject(), "changing an account for the server");
            accounts::carry_out(settings().account_root.as_deref(), change).await.map(AgentResponse::Tool)
        }
        _ => Err("not a package or account request".to_string()),
    };
    result.unwrap_or_else(|message| {
        tracing::info!(id, %message, "the request was refused or failed");
        AgentResponse::Error { message }
    })
}

fn account_root() -> PathBuf {
    settings().account_root.clone().unwrap_or_else(|| PathBuf::from("/"))
}

/// A command to run (its argument vector) and what to write to its standard input.
pub type ToolCommand = (Vec<String>, Option<String>);

/// Runs the commands of a change in order, stopping at the first that fails; `stdin` goes to the command of the
/// same index (a password for `chpasswd`), never into the reported command.
pub(crate) async fn run_all(
    commands: Vec<ToolCommand>,
    timeout_seconds: u32,
    environment: &[(&str, &str)],
) -> Result<steward_protocol::software::ToolOutcome, String> {
    let mut outcome = steward_protocol::software::ToolOutcome::default();
    for (argv, stdin) in commands {
        let request = CommandRequest {
            argv: argv.clone(),
            environment: environment.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect(),
            stdin,
            timeout_seconds,
            working_directory: None,
        };
        let ended = crate::command::run(request).await?;
        tracing::info!(program = %argv[0], exit_code = ?ended.exit_code, timed_out = ended.timed_out, "a tool ended");
        let run = ToolRun::new(argv, ended);
        let failed = !run.succeeded();
        outcome.runs.push(run);
        if failed {
            break;
        }
    }
    Ok(outcome)
}

/// Whether `program` is an executable file in a directory of `PATH`.
pub(crate) fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|directory| {
        std::fs::metadata(directory.join(program))
            .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
    })
}

/// Runs `work` off the runtime's only thread.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|error| Err(format!("the request failed: {error}")))
}
