//! `steward processes list SYSTEM [--sort cpu|rss|pid] [--user U]` and `steward processes kill (SYSTEM PID |
//! --group G --name NAME) [--signal S]`.
//!
//! Killing by PID looks the process up in a fresh listing first and sends its start time along, so the agent
//! refuses if the PID has meanwhile been given to another process.

use clap::{Subcommand, ValueEnum};
use steward_types::api::system_admin::{
    GroupActionResult, GroupProcessSignal, ProcessList, ProcessSignal, SignalOutcome,
};

use super::{Context, ExitWithOutput};
use crate::client::segment;
use crate::output::{Format, Table, json, size};

#[derive(Debug, Subcommand)]
pub enum ProcessesCommand {
    /// List a system's processes (CPU % over a 0.5 s sample, of one CPU, as top shows it).
    List {
        system: String,
        /// Order by CPU use or resident memory (largest first), or by PID.
        #[arg(long, value_enum, default_value = "pid")]
        sort: SortBy,
        /// Only processes of this user (name or number).
        #[arg(long)]
        user: Option<String>,
    },
    /// Signal a process of a system by PID, or every process of a name on every member of a group.
    Kill {
        /// The system (not with --group).
        system: Option<String>,
        /// The process ID (not with --group).
        pid: Option<u32>,
        /// Signal processes on every member of this group (with --name).
        #[arg(long)]
        group: Option<String>,
        /// With --group: the process name (command name or program file name).
        #[arg(long)]
        name: Option<String>,
        /// TERM, KILL, HUP, INT, USR1, USR2, STOP, CONT, or a number from 1 to 64.
        #[arg(long, short = 's', default_value = "TERM")]
        signal: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    Cpu,
    Rss,
    Pid,
}

pub async fn run(context: &Context, command: ProcessesCommand) -> anyhow::Result<String> {
    match command {
        ProcessesCommand::List { system, sort, user } => list(context, &system, sort, user.as_deref()).await,
        ProcessesCommand::Kill { system, pid, group, name, signal } => match (system, pid, group, name) {
            (Some(system), Some(pid), None, None) => kill(context, &system, pid, signal).await,
            (None, None, Some(group), Some(name)) => kill_by_name(context, &group, name, signal).await,
            (_, _, Some(_), None) => anyhow::bail!("--group needs --name: the processes are signalled by name"),
            (_, _, None, Some(_)) => anyhow::bail!("--name needs --group; on one system, kill by PID"),
            (Some(_), None, None, None) | (None, _, None, None) => {
                anyhow::bail!("give a system and a PID (`steward processes kill SYSTEM PID`), or --group and --name")
            }
            (Some(_), _, Some(_), Some(_)) | (None, Some(_), Some(_), Some(_)) => {
                anyhow::bail!("give either a system and a PID, or --group and --name, not both")
            }
        },
    }
}

async fn list(context: &Context, system: &str, sort: SortBy, user: Option<&str>) -> anyhow::Result<String> {
    let mut list: ProcessList = context.client.get(&format!("/systems/{}/processes", segment(system)), &[]).await?;
    if let Some(user) = user {
        list.processes.retain(|process| process.user == user || process.uid.to_string() == user);
    }
    match sort {
        SortBy::Cpu => list.processes.sort_by(|a, b| b.cpu_percent.total_cmp(&a.cpu_percent).then(a.pid.cmp(&b.pid))),
        SortBy::Rss => list.processes.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid))),
        SortBy::Pid => list.processes.sort_by_key(|process| process.pid),
    }
    Ok(match context.format {
        Format::Json => json(&list),
        Format::Table => {
            let mut table = Table::new(&["PID", "PPID", "USER", "S", "%CPU", "RSS", "STARTED", "COMMAND"]);
            for process in &list.processes {
                let mut command = process.command.clone();
                if command.chars().count() > 120 {
                    command = command.chars().take(117).collect::<String>() + "...";
                }
                table.row(vec![
                    process.pid.to_string(),
                    process.ppid.to_string(),
                    process.user.clone(),
                    process.state.clone(),
                    format!("{:.1}", process.cpu_percent),
                    size(process.rss_bytes),
                    process.started_at.to_string(),
                    command,
                ]);
            }
            table.render()
        }
    })
}

async fn kill(context: &Context, system: &str, pid: u32, signal: String) -> anyhow::Result<String> {
    steward_types::api::system_admin::signal("--signal", &signal).map_err(|error| anyhow::anyhow!("{error}"))?;
    steward_types::api::system_admin::pid("PID", pid).map_err(|error| anyhow::anyhow!("{error}"))?;
    let list: ProcessList = context.client.get(&format!("/systems/{}/processes", segment(system)), &[]).await?;
    let process = list
        .processes
        .iter()
        .find(|process| process.pid == pid)
        .ok_or_else(|| anyhow::anyhow!("{system} has no process {pid}"))?;
    let body = ProcessSignal { signal, start_time: process.start_time };
    let outcome: SignalOutcome =
        context.client.post(&format!("/systems/{}/processes/{pid}/signal", segment(system)), &body).await?;
    Ok(match context.format {
        Format::Json => json(&outcome),
        Format::Table => format!("Sent signal {} to process {pid} ({}) on {system}.\n", outcome.signal, process.name),
    })
}

async fn kill_by_name(context: &Context, group: &str, name: String, signal: String) -> anyhow::Result<String> {
    let body = GroupProcessSignal { name, signal };
    body.validate().map_err(|error| anyhow::anyhow!("{error}"))?;
    let result: GroupActionResult<SignalOutcome> =
        context.client.post(&format!("/groups/{}/processes/signal", segment(group)), &body).await?;
    let output = match context.format {
        Format::Json => json(&result),
        Format::Table => {
            let mut table = Table::new(&["SYSTEM", "MATCHED", "SIGNALLED", "ERRORS"]);
            for target in &result.targets {
                match (&target.outcome, &target.error) {
                    (Some(outcome), _) => table.row(vec![
                        target.system.clone(),
                        outcome.matched.to_string(),
                        outcome.signalled.to_string(),
                        if outcome.errors.is_empty() { "-".into() } else { outcome.errors.join("; ") },
                    ]),
                    (None, Some(error)) => {
                        table.row(vec![target.system.clone(), "-".into(), "-".into(), error.message.clone()])
                    }
                    (None, None) => table.row(vec![target.system.clone(), "-".into(), "-".into(), "-".into()]),
                }
            }
            table.render()
        }
    };
    let incomplete =
        result.failed > 0 || result.targets.iter().flat_map(|target| &target.outcome).any(|o| !o.errors.is_empty());
    if incomplete {
        return Err(ExitWithOutput { output, code: 1 }.into());
    }
    Ok(output)
}
