//! `steward monitors ...` (thresholds on a metric of a system or a group's members) and `steward metrics query`
//! (a system's samples of one metric).

use clap::Subcommand;
use steward_types::api::events::Severity;
use steward_types::api::jobs::JobTarget;
use steward_types::api::monitors::{Comparison, MetricSeries, Monitor, MonitorCreate};

use super::Context;
use crate::client::segment;
use crate::output::{Format, Table, fields, json, label, optional};

#[derive(Debug, Subcommand)]
pub enum MonitorsCommand {
    /// Create a monitor: `steward monitors create full-root --group web --metric filesystem.used:/ --above 90
    /// --clear 85 --for 2m --severity critical`.
    Create(Box<MonitorCreateArgs>),
    /// List monitors.
    List,
    /// Show a monitor with its state on each system.
    Show { monitor: String },
    /// Delete a monitor (the agents stop sampling what only it needed).
    Delete { monitor: String },
}

#[derive(Debug, clap::Args)]
pub struct MonitorCreateArgs {
    name: String,
    #[arg(long, conflicts_with = "group", required_unless_present = "group")]
    system: Option<String>,
    #[arg(long)]
    group: Option<String>,
    /// cpu.utilization, load.1, load.5, load.15, memory.used, filesystem.used:MOUNT, disk.read:DEV,
    /// disk.write:DEV, network.receive:IFACE, network.transmit:IFACE, process.count:NAME, service.active:NAME,
    /// agent.offline.
    #[arg(long)]
    metric: String,
    /// Raise when the value is above this.
    #[arg(long, conflicts_with_all = ["below", "at_least", "at_most"])]
    above: Option<f64>,
    /// Raise when the value is at least this.
    #[arg(long, conflicts_with_all = ["below", "at_most"])]
    at_least: Option<f64>,
    /// Raise when the value is below this.
    #[arg(long, conflicts_with = "at_most")]
    below: Option<f64>,
    /// Raise when the value is at most this.
    #[arg(long)]
    at_most: Option<f64>,
    /// Clear only when the value is back past this (hysteresis); the threshold by default.
    #[arg(long)]
    clear: Option<f64>,
    /// How long the condition must hold before the monitor raises: 30s, 2m, 1h (0 by default).
    #[arg(long = "for", default_value = "0s")]
    hold: String,
    #[arg(long, value_parser = ["info", "warning", "critical"], default_value = "warning")]
    severity: String,
    /// Sampling interval: 10s, 1m, ... (60 s by default).
    #[arg(long)]
    interval: Option<String>,
    #[arg(long)]
    description: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// A system's samples of one metric: `steward metrics query web-1 cpu.utilization --since 1h`.
    Query {
        system: String,
        metric: String,
        /// How far back: 30s, 15m, 6h, 7d, or an RFC 3339 time.
        #[arg(long, default_value = "1h")]
        since: String,
    },
}

/// `90s`, `2m`, `1h`, `1d` (or a plain number of seconds) as seconds.
fn seconds(what: &str, text: &str) -> anyhow::Result<u32> {
    let (number, unit) = text.split_at(text.find(|character: char| !character.is_ascii_digit()).unwrap_or(text.len()));
    let amount: u32 =
        number.parse().map_err(|_| anyhow::anyhow!("{what} {text:?} is not a duration such as 90s, 2m or 1h"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => anyhow::bail!("{what} {text:?}: the unit must be s, m, h or d"),
    };
    amount.checked_mul(factor).ok_or_else(|| anyhow::anyhow!("{what} {text:?} is too long"))
}

fn target_text(target: &JobTarget) -> String {
    match target {
        JobTarget::System { system } => format!("system {system}"),
        JobTarget::Group { group } => format!("group {group}"),
    }
}

fn condition_text(monitor: &Monitor) -> String {
    let mut text = format!("{} {} {}", monitor.metric, monitor.comparison.symbol(), monitor.threshold);
    if monitor.clear_threshold != monitor.threshold {
        text.push_str(&format!(", clears at {}", monitor.clear_threshold));
    }
    if monitor.hold_seconds > 0 {
        text.push_str(&format!(", for {} s", monitor.hold_seconds));
    }
    text
}

pub async fn run(context: &Context, command: MonitorsCommand) -> anyhow::Result<String> {
    let client = &context.client;
    match command {
        MonitorsCommand::Create(args) => {
            let MonitorCreateArgs {
                name,
                system,
                group,
                metric,
                above,
                at_least,
                below,
                at_most,
                clear,
                hold,
                severity,
                interval,
                description,
            } = *args;
            let (comparison, threshold) = match (above, at_least, below, at_most) {
                (Some(value), ..) => (Comparison::Above, value),
                (_, Some(value), ..) => (Comparison::AtLeast, value),
                (_, _, Some(value), _) => (Comparison::Below, value),
                (_, _, _, Some(value)) => (Comparison::AtMost, value),
                _ => anyhow::bail!("give the threshold: --above, --at-least, --below or --at-most"),
            };
            let target = match (system, group) {
                (Some(system), _) => JobTarget::System { system },
                (None, Some(group)) => JobTarget::Group { group },
                (None, None) => anyhow::bail!("name a --system or a --group"),
            };
            let body = MonitorCreate {
                name,
                description,
                target,
                metric,
                comparison,
                threshold,
                clear_threshold: clear,
                hold_seconds: seconds("--for", &hold)?,
                severity: match severity.as_str() {
                    "info" => Severity::Info,
                    "critical" => Severity::Critical,
                    _ => Severity::Warning,
                },
                interval_seconds: interval.as_deref().map(|text| seconds("--interval", text)).transpose()?,
            };
            let monitor: Monitor = client.post("/monitors", &body).await?;
            Ok(render(context, &monitor))
        }
        MonitorsCommand::List => {
            let monitors: Vec<Monitor> = client.list_all("/monitors", &[], None).await?;
            Ok(match context.format {
                Format::Json => json(&monitors),
                Format::Table => {
                    let mut table = Table::new(&["NAME", "TARGET", "CONDITION", "SEVERITY", "INTERVAL"]);
                    for monitor in &monitors {
                        table.row(vec![
                            monitor.name.clone(),
                            target_text(&monitor.target),
                            condition_text(monitor),
                            label(&monitor.severity),
                            format!("{} s", monitor.interval_seconds),
                        ]);
                    }
                    table.render()
                }
            })
        }
        MonitorsCommand::Show { monitor } => {
            let found: Monitor = client.get(&format!("/monitors/{}", segment(&monitor)), &[]).await?;
            Ok(render(context, &found))
        }
        MonitorsCommand::Delete { monitor } => {
            client.delete(&format!("/monitors/{}", segment(&monitor))).await?;
            Ok(format!("Monitor {monitor} deleted.\n"))
        }
    }
}

fn render(context: &Context, monitor: &Monitor) -> String {
    if context.format == Format::Json {
        return json(monitor);
    }
    let mut out = fields(&[
        ("Name", monitor.name.clone()),
        ("ID", monitor.id.to_string()),
        ("Target", target_text(&monitor.target)),
        ("Condition", condition_text(monitor)),
        ("Severity", label(&monitor.severity)),
        ("Interval", format!("{} s", monitor.interval_seconds)),
        ("Description", monitor.description.clone()),
        ("Created", format!("{} by {}", monitor.created_at, monitor.created_by)),
    ]);
    if !monitor.states.is_empty() {
        let mut table = Table::new(&["SYSTEM", "STATE", "SINCE", "LAST VALUE", "LAST SAMPLE"]);
        for state in &monitor.states {
            table.row(vec![
                state.system.clone(),
                label(&state.state),
                state.since.to_string(),
                state.last_value.map_or_else(|| "-".into(), |value| format!("{value:.2}")),
                optional(&state.last_sample_at),
            ]);
        }
        out.push('\n');
        out.push_str(&table.render());
    }
    out
}

pub async fn run_metrics(context: &Context, command: MetricsCommand) -> anyhow::Result<String> {
    let MetricsCommand::Query { system, metric, since } = command;
    let series: MetricSeries = context
        .client
        .get(&format!("/systems/{}/metrics", segment(&system)), &[("metric", metric), ("since", since)])
        .await?;
    Ok(match context.format {
        Format::Json => json(&series),
        Format::Table => {
            let mut table = Table::new(&["AT", "VALUE", "MIN", "MAX", "SAMPLES"]);
            let number = |value: Option<f64>| value.map_or_else(|| "-".into(), |value| format!("{value:.2}"));
            for point in &series.points {
                table.row(vec![
                    point.at.to_string(),
                    format!(
                        "{:.2}{}",
                        point.value,
                        if series.unit.is_empty() { String::new() } else { format!(" {}", series.unit) }
                    ),
                    number(point.min),
                    number(point.max),
                    point.count.map_or_else(|| "1".into(), |count| count.to_string()),
                ]);
            }
            table.render()
        }
    })
}
