//! `steward services list SYSTEM` and `steward services start|stop|restart (SYSTEM | --group G) NAME`.

use clap::{Args, Subcommand};
use steward_types::api::system_admin::{GroupActionResult, ServiceActionOutcome, ServiceListing, ServiceVerb};

use super::{Context, ExitWithOutput};
use crate::client::segment;
use crate::output::{Format, Table, json, label};

#[derive(Debug, Subcommand)]
pub enum ServicesCommand {
    /// List a system's services and their state (systemd units, or init scripts where systemd does not run).
    List { system: String },
    /// Start a service on a system or on every member of a group.
    Start(ActionArgs),
    /// Stop a service on a system or on every member of a group.
    Stop(ActionArgs),
    /// Restart a service on a system or on every member of a group.
    Restart(ActionArgs),
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    /// `SYSTEM NAME`, or only `NAME` with --group.
    #[arg(required = true, num_args = 1..=2, value_name = "SYSTEM NAME")]
    arguments: Vec<String>,
    /// Act on every member of this group.
    #[arg(long)]
    group: Option<String>,
}

pub async fn run(context: &Context, command: ServicesCommand) -> anyhow::Result<String> {
    let (verb, args) = match command {
        ServicesCommand::List { system } => return list(context, &system).await,
        ServicesCommand::Start(args) => (ServiceVerb::Start, args),
        ServicesCommand::Stop(args) => (ServiceVerb::Stop, args),
        ServicesCommand::Restart(args) => (ServiceVerb::Restart, args),
    };
    match (args.group, args.arguments.as_slice()) {
        (None, [system, name]) => act(context, system, name, verb).await,
        (Some(group), [name]) => act_on_group(context, &group, name, verb).await,
        (None, _) => anyhow::bail!("give the system and the service: `steward services {} SYSTEM NAME`", verb.as_str()),
        (Some(_), _) => {
            anyhow::bail!("with --group give only the service: `steward services {} --group G NAME`", verb.as_str())
        }
    }
}

async fn list(context: &Context, system: &str) -> anyhow::Result<String> {
    let listing: ServiceListing = context.client.get(&format!("/systems/{}/services", segment(system)), &[]).await?;
    Ok(match context.format {
        Format::Json => json(&listing),
        Format::Table => {
            let mut table = Table::new(&["NAME", "STATE", "DETAIL", "DESCRIPTION"]);
            for service in &listing.services {
                table.row(vec![
                    service.name.clone(),
                    service.state.clone(),
                    service.detail.clone(),
                    service.description.clone(),
                ]);
            }
            let source = match &listing.directory {
                Some(directory) => format!("{} in {directory}", label(&listing.manager)),
                None => label(&listing.manager),
            };
            format!("Services of {system} ({source}):\n{}", table.render())
        }
    })
}

fn check(name: &str) -> anyhow::Result<()> {
    steward_types::api::system_admin::service_name("NAME", name).map_err(|error| anyhow::anyhow!("{error}"))
}

async fn act(context: &Context, system: &str, name: &str, verb: ServiceVerb) -> anyhow::Result<String> {
    check(name)?;
    let path = format!("/systems/{}/services/{}/{}", segment(system), segment(name), verb.as_str());
    let outcome: ServiceActionOutcome = context.client.post(&path, &serde_json::json!({})).await?;
    Ok(match context.format {
        Format::Json => json(&outcome),
        Format::Table => {
            let mut text = format!("{} {name} on {system}: now {}.\n", past(verb), outcome.state_after);
            text.push_str(&outcome.output);
            text
        }
    })
}

async fn act_on_group(context: &Context, group: &str, name: &str, verb: ServiceVerb) -> anyhow::Result<String> {
    check(name)?;
    let path = format!("/groups/{}/services/{}/{}", segment(group), segment(name), verb.as_str());
    let result: GroupActionResult<ServiceActionOutcome> = context.client.post(&path, &serde_json::json!({})).await?;
    let output = match context.format {
        Format::Json => json(&result),
        Format::Table => {
            let mut table = Table::new(&["SYSTEM", "RESULT", "STATE", "MESSAGE"]);
            for target in &result.targets {
                let state = target.outcome.as_ref().map(|outcome| outcome.state_after.clone());
                let (outcome, message) = match &target.error {
                    None => ("ok", target.outcome.as_ref().map(|o| o.output.trim().to_string()).unwrap_or_default()),
                    Some(error) => ("failed", error.message.clone()),
                };
                table.row(vec![
                    target.system.clone(),
                    outcome.into(),
                    state.unwrap_or_else(|| "-".into()),
                    if message.is_empty() { "-".into() } else { message },
                ]);
            }
            table.render()
        }
    };
    if result.failed > 0 {
        return Err(ExitWithOutput { output, code: 1 }.into());
    }
    Ok(output)
}

fn past(verb: ServiceVerb) -> &'static str {
    match verb {
        ServiceVerb::Start => "Started",
        ServiceVerb::Stop => "Stopped",
        ServiceVerb::Restart => "Restarted",
    }
}
