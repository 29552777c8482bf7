//! The command line: argument definitions and one module per resource. Every command returns the text to print,
//! so output can be tested without a terminal; `steward run` also returns the remote command's error output and
//! exit code ([`Finished`]).

mod accounts;
mod audit;
mod complexes;
mod enrollment;
mod event_actions;
mod events;
mod facts;
mod files;
mod groups;
mod hosts;
mod jobs;
mod monitors;
mod network_config;
mod networks;
mod operations;
mod os_templates;
mod packages;
mod processes;
mod run;
mod serve;
mod server_templates;
mod services;
mod shell;
mod systems;
mod users;
mod virtual_servers;
mod zvm_sim;

use clap::{Parser, Subcommand};

use crate::client::{Client, ClientError};
use crate::output::Format;

#[derive(Debug, Parser)]
#[command(name = "steward", version, about = "Systems management for Linux fleets and their hypervisors.")]
pub struct Cli {
    /// URL of the Steward server.
    #[arg(long, global = true, env = "STEWARD_SERVER", default_value = "http://127.0.0.1:8440")]
    server: String,
    /// API token (the administrator's is in DATA/admin-token after the first start).
    #[arg(long, global = true, env = "STEWARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate to trust for an HTTPS server (the server's own CA is DATA/ca.pem).
    #[arg(long, global = true, env = "STEWARD_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Steward server.
    Serve(serve::ServeArgs),
    /// Run the z/VM SMAPI simulator (for development and tests; it is not z/VM).
    #[command(name = "zvm-sim")]
    ZvmSim(zvm_sim::ZvmSimArgs),
    /// Show who the token belongs to.
    Whoami,
    /// Manage users.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Tokens(users::TokensCommand),
    /// Manage tokens agents enroll with.
    #[command(subcommand, name = "enrollment-tokens")]
    EnrollmentTokens(enrollment::EnrollmentTokensCommand),
    /// Managed systems and their inventory.
    #[command(subcommand)]
    Systems(systems::SystemsCommand),
    /// Static and dynamic groups of systems.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Hypervisor hosts and the guests they run.
    #[command(subcommand)]
    Hosts(hosts::HostsCommand),
    /// Isolated virtual networks on a host.
    #[command(subcommand)]
    Networks(networks::NetworksCommand),
    /// Server templates: the hardware shape of virtual servers.
    #[command(subcommand, name = "server-templates")]
    ServerTemplates(server_templates::ServerTemplatesCommand),
    /// OS templates: Linux images to deploy into virtual servers.
    #[command(subcommand, name = "os-templates")]
    OsTemplates(os_templates::OsTemplatesCommand),
    /// Virtual servers: create, deploy, register, power actions, console.
    #[command(subcommand, name = "virtual-servers")]
    VirtualServers(virtual_servers::VirtualServersCommand),
    /// Long-running operations and their steps.
    #[command(subcommand)]
    Operations(operations::OperationsCommand),
    /// Run a command on a system and exit with its exit code (124: timed out and killed, 128+N: killed by signal
    /// N, 255: could not be run).
    Run(run::RunArgs),
    /// Server complexes: tiered groups of cloned guests whose properties are enforced and checked.
    #[command(subcommand)]
    Complexes(complexes::ComplexesCommand),
    /// Events (complex deviations, failed job runs, ...).
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Scheduled jobs: a command on a system or a group, once, on a cron schedule, or on demand.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Resource monitors: thresholds on a metric of a system or a group's members.
    #[command(subcommand)]
    Monitors(monitors::MonitorsCommand),
    /// Metric samples of a system.
    #[command(subcommand)]
    Metrics(monitors::MetricsCommand),
    /// A system's processes: list them, signal one, or signal them by name on a group.
    #[command(subcommand)]
    Processes(processes::ProcessesCommand),
    /// A system's services: list them; start, stop, restart on a system or a group.
    #[command(subcommand)]
    Services(services::ServicesCommand),
    /// A system's network configuration (read-only).
    #[command(subcommand)]
    Network(network_config::NetworkCommand),
    /// Push and pull files and directories (streamed, checksummed, atomically renamed into place).
    #[command(subcommand)]
    Files(files::FilesCommand),
    /// Event action plans: event filters bound to actions (log, webhook, e-mail, command, job).
    #[command(subcommand, name = "event-action-plans")]
    EventActionPlans(event_actions::EventActionPlansCommand),
    /// Deliveries of event action plans: each action carried out for an event, with its attempts.
    #[command(subcommand)]
    Deliveries(event_actions::DeliveriesCommand),
    /// Maintenance windows: times when a system's or a group's events trigger no actions.
    #[command(subcommand, name = "maintenance-windows")]
    MaintenanceWindows(event_actions::MaintenanceWindowsCommand),
    /// An interactive shell on a system, through its agent; exits with the shell's exit code.
    Shell(shell::ShellArgs),
    /// The package repository: upload, build, and install, upgrade or remove on systems and groups.
    #[command(subcommand)]
    Packages(packages::PackagesCommand),
    /// Users and groups of a system or of a group's members.
    #[command(subcommand)]
    Accounts(accounts::AccountsCommand),
}

/// What a command leaves to print, and how the process exits.
#[derive(Debug, Default)]
pub struct Finished {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: u8,
}

impl Finished {
    fn text(stdout: String) -> Self {
        Self { stdout, ..Self::default() }
    }
}

/// A command's output with a non-zero exit code (a consistency check that found deviations), returned as an
/// error so that commands keep returning their text.
#[derive(Debug, thiserror::Error)]
#[error("exit with code {code}")]
pub struct ExitWithOutput {
    pub output: String,
    pub code: u8,
}

/// What every client command gets.
pub struct Context {
    pub client: Client,
    pub format: Format,
}

pub async fn run(cli: Cli) -> anyhow::Result<Finished> {
    if let Command::Serve(args) = cli.command {
        return serve::run(args).await.map(Finished::text);
    }
    if let Command::ZvmSim(args) = cli.command {
        return zvm_sim::run(args).await.map(Finished::text);
    }
    let ca_pem = match &cli.ca_file {
        Some(path) => {
            Some(std::fs::read(path).map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?)
        }
        None => None,
    };
    let token = cli.token.map(|token| token.trim().to_string());
    let context = Context { client: Client::new(&cli.server, token, ca_pem.as_deref())?, format: cli.output };
    let text = match cli.command {
        Command::Serve(_) | Command::ZvmSim(_) => unreachable!("handled above"),
        Command::Run(args) => {
            // Its own failures must not look like the remote command's exit code 1.
            return Ok(run::run(&context, args).await.unwrap_or_else(|error| Finished {
                stderr: format!("error: {}\n", describe_error(&error)),
                exit_code: run::EXIT_NOT_RUN,
                ..Finished::default()
            }));
        }
        Command::Whoami => users::whoami(&context).await,
        Command::Users(command) => users::run_users(&context, command).await,
        Command::Tokens(command) => users::run_tokens(&context, command).await,
        Command::EnrollmentTokens(command) => enrollment::run(&context, command).await,
        Command::Systems(command) => systems::run(&context, command).await,
        Command::Groups(command) => groups::run(&context, command).await,
        Command::Audit(command) => audit::run(&context, command).await,
        Command::Hosts(command) => hosts::run(&context, command).await,
        Command::Networks(command) => networks::run(&context, command).await,
        Command::ServerTemplates(command) => server_templates::run(&context, command).await,
        Command::OsTemplates(command) => os_templates::run(&context, command).await,
        Command::VirtualServers(command) => virtual_servers::run(&context, command).await,
        Command::Operations(command) => operations::run(&context, command).await,
        Command::Complexes(command) => complexes::run(&context, command).await,
        Command::Events(command) => events::run(&context, command).await,
        Command::Jobs(command) => jobs::run(&context, command).await,
        Command::Monitors(command) => monitors::run(&context, command).await,
        Command::Metrics(command) => monitors::run_metrics(&context, command).await,
        Command::Processes(command) => processes::run(&context, command).await,
        Command::Services(command) => services::run(&context, command).await,
        Command::Network(command) => network_config::run(&context, command).await,
        Command::Files(command) => files::run(&context, command).await,
        Command::EventActionPlans(command) => event_actions::run_plans(&context, command).await,
        Command::Deliveries(command) => event_actions::run_deliveries(&context, command).await,
        Command::MaintenanceWindows(command) => event_actions::run_windows(&context, command).await,
        Command::Shell(args) => {
            return Ok(shell::shell(&context, args).await.unwrap_or_else(|error| Finished {
                stderr: format!("error: {}\n", describe_error(&error)),
                exit_code: run::EXIT_NOT_RUN,
                ..Finished::default()
            }));
        }
        Command::Packages(command) => packages::run(&context, command).await,
        Command::Accounts(command) => accounts::run(&context, command).await,
    };
    match text {
        Ok(text) => Ok(Finished::text(text)),
        Err(error) => match error.downcast::<ExitWithOutput>() {
            Ok(exit) => Ok(Finished { stdout: exit.output, exit_code: exit.code, ..Finished::default() }),
            Err(error) => Err(error),
        },
    }
}

/// One line for the user: the server's message, or the chain of causes.
pub fn describe_error(error: &anyhow::Error) -> String {
    if let Some(ClientError::Api { code, message, .. }) = error.downcast_ref::<ClientError>() {
        let mut text = message.clone();
        if code == "unauthorized" {
            text.push_str(" (set STEWARD_TOKEN or pass --token)");
        }
        return text;
    }
    let text = format!("{error:#}");
    if text.contains("certificate") || text.contains("UnknownIssuer") {
        return format!("{text} (if the server uses Steward's own CA, pass --ca-file with its DATA/ca.pem)");
    }
    text
}
