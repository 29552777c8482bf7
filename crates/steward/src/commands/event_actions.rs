//! `steward event-action-plans ...`, `steward deliveries list` and `steward maintenance-windows ...`: what happens
//! when events are raised, whether it happened, and when nothing should.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use steward_types::api::Timestamp;
use steward_types::api::event_actions::{
    Delivery, EventActionPlan, EventActionPlanDefinition, MaintenanceSchedule, MaintenanceScope, MaintenanceWindow,
    MaintenanceWindowCreate, PlanAction, Weekday,
};
use steward_types::validate;

use super::Context;
use crate::client::segment;
use crate::output::{Format, Table, fields, json, label, optional};

#[derive(Debug, Subcommand)]
pub enum EventActionPlansCommand {
    /// Create a plan from a file (YAML or JSON: filter, throttle, actions; see docs/event-actions.md).
    Create {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Replace a plan's definition with a file's (secrets must be given again).
    Update {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// List plans.
    List,
    /// Show a plan (without its secrets) and its latest deliveries.
    Show { name: String },
    /// Delete a plan and its deliveries.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first, with their state, attempts and last error.
    List {
        /// Only this plan's.
        #[arg(long)]
        plan: Option<String>,
        /// Only those in this state: pending, retrying, delivered, gave_up, suppressed.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceWindowsCommand {
    /// Create a window: once (`--start`, `--end`) or weekly (`--weekly --from 02:00 --to 04:00 --days sun`), for a
    /// system or a group.
    Create(Box<WindowCreateArgs>),
    /// List windows.
    List,
    /// Delete a window.
    Delete { name: String },
}

#[derive(Debug, clap::Args)]
pub struct WindowCreateArgs {
    name: String,
    /// The system whose events are silenced.
    #[arg(long, conflicts_with = "group", required_unless_present = "group")]
    system: Option<String>,
    /// The group whose members' events are silenced.
    #[arg(long)]
    group: Option<String>,
    /// Once: the start (RFC 3339, for example 2026-12-24T18:00:00Z).
    #[arg(long, requires = "end", conflicts_with = "weekly")]
    start: Option<String>,
    /// Once: the end (RFC 3339).
    #[arg(long, requires = "start")]
    end: Option<String>,
    /// Every week, from `--from` to `--to` on `--days`.
    #[arg(long, requires_all = ["from", "to"])]
    weekly: bool,
    /// Weekly: the start time of day (HH:MM).
    #[arg(long)]
    from: Option<String>,
    /// Weekly: the end time of day (HH:MM); earlier than --from runs past midnight.
    #[arg(long)]
    to: Option<String>,
    /// Weekly: the days (mon,tue,...; every day when absent).
    #[arg(long, value_delimiter = ',', value_parser = weekday)]
    days: Vec<Weekday>,
    /// Weekly: the IANA time zone.
    #[arg(long, default_value = "UTC")]
    time_zone: String,
    #[arg(long)]
    description: Option<String>,
}

fn weekday(text: &str) -> Result<Weekday, String> {
    serde_json::from_value(serde_json::Value::String(text.to_ascii_lowercase()))
        .map_err(|_| format!("{text:?} is not a day: mon, tue, wed, thu, fri, sat or sun"))
}

/// Reads a plan file: JSON when it parses as JSON, YAML otherwise; errors name the file and the place.
pub fn read_plan(path: &Path) -> anyhow::Result<EventActionPlanDefinition> {
    let text =
        std::fs::read_to_string(path).map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()));
    }
    serde_yaml::from_str(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
}

fn action_text(action: &PlanAction) -> String {
    match action {
        PlanAction::Log => "log".to_owned(),
        PlanAction::Webhook { url, has_secret, .. } => {
            format!("webhook {url}{}", if *has_secret { " (signed)" } else { "" })
        }
        PlanAction::Email { server, to, .. } => format!("email to {} via {server}", to.join(", ")),
        PlanAction::Command { system, command } => format!("command on {system}: {}", command.argv.join(" ")),
        PlanAction::Job { job } => format!("job {job}"),
    }
}

fn deliveries_table(deliveries: &[Delivery]) -> String {
    let mut table =
        Table::new(&["CREATED", "PLAN", "ACTION", "KIND", "EVENT", "STATE", "ATTEMPTS", "DUPLICATES", "LAST ERROR"]);
    for delivery in deliveries {
        table.row(vec![
            delivery.created_at.to_string(),
            delivery.plan.clone(),
            format!("{} {}", delivery.action_index, delivery.action),
            label(&delivery.kind),
            format!("{} ({})", delivery.event_type, delivery.source),
            match &delivery.suppressed_by {
                Some(window) => format!("suppressed by {window}"),
                None => label(&delivery.state),
            },
            delivery.attempts.to_string(),
            delivery.duplicates.to_string(),
            delivery.last_error.clone().unwrap_or_default(),
        ]);
    }
    table.render()
}

fn render_plan(context: &Context, plan: &EventActionPlan) -> String {
    match context.format {
        Format::Json => json(plan),
        Format::Table => {
            let filter = &plan.filter;
            let list = |items: &[String]| if items.is_empty() { "any".to_owned() } else { items.join(", ") };
            let mut out = fields(&[
                ("Name", plan.name.clone()),
                ("ID", plan.id.to_string()),
                ("Enabled", if plan.enabled { "yes".into() } else { "no".into() }),
                ("Types", list(&filter.types)),
                ("Severity", filter.min_severity.map(|s| format!("{} or worse", s.as_str())).unwrap_or("any".into())),
                ("Sources", list(&filter.sources)),
                ("Systems", list(&filter.systems)),
                ("Groups", list(&filter.groups)),
                (
                    "Active",
                    if filter.active.is_empty() {
                        "always".into()
                    } else {
                        format!("{} window(s) in {}", filter.active.len(), filter.time_zone)
                    },
                ),
                (
                    "Duplicates",
                    match plan.throttle.duplicate_window_seconds {
                        0 => "every event acted on".to_owned(),
                        seconds => format!("counted within {seconds} s"),
                    },
                ),
                (
                    "Flapping",
                    plan.throttle
                        .flapping
                        .map(|flap| format!("more than {} events within {} s", flap.events, flap.within_seconds))
                        .unwrap_or("not detected".into()),
                ),
                ("Description", plan.description.clone()),
                ("Created", format!("{} by {}", plan.created_at, plan.created_by)),
            ]);
            out.push_str("Actions:\n");
            for (index, action) in plan.actions.iter().enumerate() {
                out.push_str(&format!("  {index}: {}\n", action_text(action)));
            }
            out
        }
    }
}

pub async fn run_plans(context: &Context, command: EventActionPlansCommand) -> anyhow::Result<String> {
    let client = &context.client;
    match command {
        EventActionPlansCommand::Create { name, file } => {
            validate::name("name", &name)?;
            let body = read_plan(&file)?.named(name);
            let plan: EventActionPlan = client.post("/event-action-plans", &body).await?;
            Ok(render_plan(context, &plan))
        }
        EventActionPlansCommand::Update { name, file } => {
            let body = read_plan(&file)?;
            let plan: EventActionPlan = client.put(&format!("/event-action-plans/{}", segment(&name)), &body).await?;
            Ok(render_plan(context, &plan))
        }
        EventActionPlansCommand::List => {
            let plans: Vec<EventActionPlan> = client.list_all("/event-action-plans", &[], None).await?;
            Ok(match context.format {
                Format::Json => json(&plans),
                Format::Table => {
                    let mut table = Table::new(&["NAME", "ENABLED", "TYPES", "ACTIONS"]);
                    for plan in &plans {
                        table.row(vec![
                            plan.name.clone(),
                            if plan.enabled { "yes".into() } else { "no".into() },
                            if plan.filter.types.is_empty() { "any".into() } else { plan.filter.types.join(", ") },
                            plan.actions.iter().map(PlanAction::kind).collect::<Vec<_>>().join(", "),
                        ]);
                    }
                    table.render()
                }
            })
        }
        EventActionPlansCommand::Show { name } => {
            let plan: EventActionPlan = client.get(&format!("/event-action-plans/{}", segment(&name)), &[]).await?;
            let deliveries: Vec<Delivery> =
                client.list_all("/deliveries", &[("plan", plan.id.to_string())], Some(10)).await?;
            Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "plan": plan, "deliveries": deliveries })),
                Format::Table => {
                    format!("{}\nLatest deliveries:\n{}", render_plan(context, &plan), deliveries_table(&deliveries))
                }
            })
        }
        EventActionPlansCommand::Delete { name } => {
            client.delete(&format!("/event-action-plans/{}", segment(&name))).await?;
            Ok(format!("Event action plan {name} deleted.\n"))
        }
    }
}

pub async fn run_deliveries(context: &Context, command: DeliveriesCommand) -> anyhow::Result<String> {
    let DeliveriesCommand::List { plan, state, limit } = command;
    let mut query = Vec::new();
    if let Some(plan) = plan {
        query.push(("plan", plan));
    }
    if let Some(state) = state {
        query.push(("state", state));
    }
    let deliveries: Vec<Delivery> = context.client.list_all("/deliveries", &query, Some(limit)).await?;
    Ok(match context.format {
        Format::Json => json(&deliveries),
        Format::Table => deliveries_table(&deliveries),
    })
}

fn schedule_text(schedule: &MaintenanceSchedule) -> String {
    match schedule {
        MaintenanceSchedule::Once { start, end } => format!("{start} to {end}"),
        MaintenanceSchedule::Weekly { days, from, to, time_zone } => {
            let days = if days.is_empty() {
                "every day".to_owned()
            } else {
                days.iter().map(label).collect::<Vec<_>>().join(",")
            };
            format!("{days} {from}-{to} ({time_zone})")
        }
    }
}

fn scope_text(scope: &MaintenanceScope) -> String {
    match scope {
        MaintenanceScope::System { system } => format!("system {system}"),
        MaintenanceScope::Group { group } => format!("group {group}"),
    }
}

fn time(flag: &str, text: Option<String>) -> anyhow::Result<Timestamp> {
    let text = text.ok_or_else(|| anyhow::anyhow!("{flag} is required"))?;
    Timestamp::parse_rfc3339(&text)
        .ok_or_else(|| anyhow::anyhow!("{flag} {text:?} is not an RFC 3339 time such as 2026-12-24T18:00:00Z"))
}

pub async fn run_windows(context: &Context, command: MaintenanceWindowsCommand) -> anyhow::Result<String> {
    let client = &context.client;
    match command {
        MaintenanceWindowsCommand::Create(args) => {
            let WindowCreateArgs { name, system, group, start, end, weekly, from, to, days, time_zone, description } =
                *args;
            let scope = match (system, group) {
                (Some(system), _) => MaintenanceScope::System { system },
                (None, Some(group)) => MaintenanceScope::Group { group },
                (None, None) => anyhow::bail!("name a --system or a --group"),
            };
            let schedule = if weekly {
                MaintenanceSchedule::Weekly {
                    days,
                    from: from.unwrap_or_default(),
                    to: to.unwrap_or_default(),
                    time_zone,
                }
            } else {
                MaintenanceSchedule::Once { start: time("--start", start)?, end: time("--end", end)? }
            };
            let body = MaintenanceWindowCreate { name, description, scope, schedule };
            let window: MaintenanceWindow = client.post("/maintenance-windows", &body).await?;
            Ok(match context.format {
                Format::Json => json(&window),
                Format::Table => fields(&[
                    ("Name", window.name.clone()),
                    ("ID", window.id.to_string()),
                    ("Scope", scope_text(&window.scope)),
                    ("When", schedule_text(&window.schedule)),
                    ("Description", window.description.clone()),
                    ("Created", format!("{} by {}", window.created_at, window.created_by)),
                ]),
            })
        }
        MaintenanceWindowsCommand::List => {
            let windows: Vec<MaintenanceWindow> = client.list_all("/maintenance-windows", &[], None).await?;
            Ok(match context.format {
                Format::Json => json(&windows),
                Format::Table => {
                    let mut table = Table::new(&["NAME", "SCOPE", "WHEN", "CREATED"]);
                    for window in &windows {
                        table.row(vec![
                            window.name.clone(),
                            scope_text(&window.scope),
                            schedule_text(&window.schedule),
                            optional(&Some(window.created_at)),
                        ]);
                    }
                    table.render()
                }
            })
        }
        MaintenanceWindowsCommand::Delete { name } => {
            client.delete(&format!("/maintenance-windows/{}", segment(&name))).await?;
            Ok(format!("Maintenance window {name} deleted.\n"))
        }
    }
}
