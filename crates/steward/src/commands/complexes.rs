//! `steward complexes ...`: server complexes, their members, the consistency check, apply and adopt.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use steward_types::api::complexes::{
    Complex, ComplexAdopt, ComplexApply, ComplexApplyStarted, ComplexCreate, ComplexDefinition, ComplexMembersAdd,
    ComplexMembersRemove, ComplexUpdate, ConsistencyReport, Layer,
};
use steward_types::api::virtual_servers::CloneMethod;
use steward_types::validate;

use super::operations::{Outcome, WaitArgs, follow};
use super::{Context, ExitWithOutput};
use crate::client::segment;
use crate::output::{Format, Table, fields, json, label, optional};

#[derive(Debug, Subcommand)]
pub enum ComplexesCommand {
    /// Create a complex on a host from a definition file (YAML or JSON: tiers, templates, naming, networks with
    /// address pools, extra disks, CPUs, memory, CPU share, scripts, variables).
    Create {
        name: String,
        #[arg(long)]
        host: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Replace a complex's definition; members deviate from changed properties until `apply`.
    Update {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// List complexes.
    List,
    /// Show a complex with its members.
    Show { name: String },
    /// Delete a complex (it must have no members).
    Delete { name: String },
    /// Clone new members of a tier, unattended and in parallel.
    AddMembers {
        name: String,
        #[arg(long)]
        tier: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Only define the members; do not start them.
        #[arg(long)]
        no_start: bool,
        /// How boot disks are cloned: auto (copy-on-write when possible), overlay or copy.
        #[arg(long, value_parser = super::virtual_servers::clone_method)]
        clone: Option<CloneMethod>,
        /// Members cloned at the same time (default 4).
        #[arg(long)]
        parallel: Option<u32>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Remove members: their guests and disks are deleted.
    RemoveMembers {
        name: String,
        /// Member names.
        #[arg(required = true)]
        members: Vec<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Compare every enforced property of every member with reality; exits 1 when a member deviates.
    Check { name: String },
    /// Make members consistent again (all deviations, or those of one member or property).
    Apply {
        name: String,
        #[arg(long)]
        member: Option<String>,
        /// A property (`cpu_share`, `nic:lan`) or a kind of property (`nic`).
        #[arg(long)]
        property: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Take a member's actual value of a property into the complex's desired state for that member.
    Adopt {
        name: String,
        #[arg(long)]
        member: String,
        #[arg(long)]
        property: String,
    },
}

/// Reads a definition file: JSON when it parses as JSON, YAML otherwise; errors name the file and the place.
pub fn read_definition(path: &Path) -> anyhow::Result<ComplexDefinition> {
    let text =
        std::fs::read_to_string(path).map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()));
    }
    serde_yaml::from_str(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
}

fn layer(layer: Layer) -> &'static str {
    match layer {
        Layer::Hypervisor => "hypervisor",
        Layer::Guest => "guest",
    }
}

pub fn report_table(report: &ConsistencyReport) -> String {
    if report.deviations.is_empty() {
        return format!("Complex {}: {} member(s) checked, all consistent.\n", report.complex, report.members_checked);
    }
    let mut table = Table::new(&["MEMBER", "PROPERTY", "EXPECTED", "ACTUAL", "LAYER"]);
    for deviation in &report.deviations {
        table.row(vec![
            deviation.member.clone(),
            deviation.property.clone(),
            deviation.expected.clone(),
            deviation.actual.clone(),
            layer(deviation.layer).to_owned(),
        ]);
    }
    format!(
        "{}Complex {}: {} deviation(s) in {} member(s) checked.\n",
        table.render(),
        report.complex,
        report.deviations.len(),
        report.members_checked
    )
}

fn show_complex(context: &Context, complex: &Complex) -> String {
    match context.format {
        Format::Json => json(complex),
        Format::Table => {
            let tiers: Vec<String> = complex
                .definition
                .tiers
                .iter()
                .map(|tier| {
                    let count = complex.members.iter().filter(|member| member.tier == tier.name).count();
                    format!("{} ({count} x {} / {})", tier.name, tier.server_template, tier.os_template)
                })
                .collect();
            let mut text = fields(&[
                ("Name", complex.name.clone()),
                ("ID", complex.id.to_string()),
                ("Host", complex.host.clone()),
                ("Description", complex.definition.description.clone()),
                ("Tiers", tiers.join(", ")),
                ("Deviations", complex.deviations.to_string()),
                ("Last checked", optional(&complex.last_checked_at)),
            ]);
            if !complex.members.is_empty() {
                let mut table = Table::new(&["MEMBER", "TIER", "INDEX", "STATE", "ADDRESSES", "ADOPTED"]);
                for member in &complex.members {
                    table.row(vec![
                        member.name.clone(),
                        member.tier.clone(),
                        member.index.to_string(),
                        label(&member.state),
                        member.addresses.iter().map(|address| address.address.clone()).collect::<Vec<_>>().join(" "),
                        member
                            .adopted
                            .iter()
                            .map(|(property, value)| format!("{property}={value}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ]);
                }
                text.push('\n');
                text.push_str(&table.render());
            }
            text
        }
    }
}

/// Runs a consistency check and prints its report; deviations make the command exit 1.
async fn check(context: &Context, name: &str) -> anyhow::Result<String> {
    let path = format!("/complexes/{}/check", segment(name));
    let report: ConsistencyReport = context.client.post(&path, &serde_json::json!({})).await?;
    let text = match context.format {
        Format::Json => json(&report),
        Format::Table => report_table(&report),
    };
    if report.deviations.is_empty() {
        return Ok(text);
    }
    Err(ExitWithOutput { output: text, code: 1 }.into())
}

pub async fn run(context: &Context, command: ComplexesCommand) -> anyhow::Result<String> {
    let client = &context.client;
    let path = |name: &str, action: &str| format!("/complexes/{}{action}", segment(name));
    let (name, operation, wait) = match command {
        ComplexesCommand::Create { name, host, file } => {
            validate::name("name", &name)?;
            let definition = read_definition(&file)?;
            let complex: Complex = client.post("/complexes", &ComplexCreate { name, host, definition }).await?;
            return Ok(show_complex(context, &complex));
        }
        ComplexesCommand::Update { name, file } => {
            let definition = read_definition(&file)?;
            let complex: Complex = client.put(&path(&name, ""), &ComplexUpdate { definition }).await?;
            return Ok(show_complex(context, &complex));
        }
        ComplexesCommand::List => {
            let complexes: Vec<Complex> = client.get("/complexes", &[]).await?;
            return Ok(match context.format {
                Format::Json => json(&complexes),
                Format::Table => {
                    let mut table = Table::new(&["NAME", "HOST", "TIERS", "MEMBERS", "DEVIATIONS", "LAST CHECKED"]);
                    for complex in &complexes {
                        table.row(vec![
                            complex.name.clone(),
                            complex.host.clone(),
                            complex
                                .definition
                                .tiers
                                .iter()
                                .map(|tier| tier.name.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                            complex.members.len().to_string(),
                            complex.deviations.to_string(),
                            optional(&complex.last_checked_at),
                        ]);
                    }
                    table.render()
                }
            });
        }
        ComplexesCommand::Show { name } => {
            let complex: Complex = client.get(&path(&name, ""), &[]).await?;
            return Ok(show_complex(context, &complex));
        }
        ComplexesCommand::Delete { name } => {
            client.delete(&path(&name, "")).await?;
            return Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "deleted": name })),
                Format::Table => format!("Deleted complex {name}.\n"),
            });
        }
        ComplexesCommand::AddMembers { name, tier, count, no_start, clone, parallel, wait } => {
            let body = ComplexMembersAdd { tier, count, start: !no_start, clone, parallel };
            let operation = client.start_operation(&path(&name, "/add-members"), &body).await?;
            (name, operation, wait)
        }
        ComplexesCommand::RemoveMembers { name, members, wait } => {
            let operation =
                client.start_operation(&path(&name, "/remove-members"), &ComplexMembersRemove { members }).await?;
            (name, operation, wait)
        }
        ComplexesCommand::Check { name } => return check(context, &name).await,
        ComplexesCommand::Apply { name, member, property, wait } => {
            let started: ComplexApplyStarted =
                client.post(&path(&name, "/apply"), &ComplexApply { member, property }).await?;
            let Some(operation) = started.operation else {
                return Ok(match context.format {
                    Format::Json => json(&started),
                    Format::Table => format!("Complex {name}: nothing to apply.\n"),
                });
            };
            if context.format == Format::Table && !wait.no_wait {
                for deviation in &started.deviations {
                    eprintln!(
                        "applying {} {} ({} -> {})",
                        deviation.member, deviation.property, deviation.actual, deviation.expected
                    );
                }
            }
            if let Outcome::Detached(text) = follow(context, operation, wait).await? {
                return Ok(text);
            }
            // What the members look like now.
            return check(context, &name).await;
        }
        ComplexesCommand::Adopt { name, member, property } => {
            let complex: Complex = client.post(&path(&name, "/adopt"), &ComplexAdopt { member, property }).await?;
            return Ok(show_complex(context, &complex));
        }
    };
    if let Outcome::Detached(text) = follow(context, operation, wait).await? {
        return Ok(text);
    }
    let complex: Complex = client.get(&path(&name, ""), &[]).await?;
    Ok(show_complex(context, &complex))
}
