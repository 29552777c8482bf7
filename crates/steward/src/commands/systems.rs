//! `steward systems ...`.

use clap::Subcommand;
use steward_types::api::systems::{InventoryChange, SystemDetail, SystemState, SystemSummary};

use super::Context;
use crate::client::segment;
use crate::output::{Format, Table, bytes, fields, json, optional};

#[derive(Debug, Subcommand)]
pub enum SystemsCommand {
    /// List systems.
    List {
        /// Only members of this group.
        #[arg(long)]
        group: Option<String>,
        /// Only systems in this state.
        #[arg(long, value_parser = parse_state)]
        state: Option<SystemState>,
        /// Only systems matching this query (see docs/query-language.md).
        #[arg(long)]
        query: Option<String>,
    },
    /// Show a system with its inventory.
    Show {
        system: String,
        /// Also list every installed package.
        #[arg(long)]
        packages: bool,
    },
    /// Remove a system: its certificate is revoked and its agent disconnected.
    Delete { system: String },
    /// Show the history of a system's inventory changes.
    History {
        system: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Ask the system's agent to report changes now.
    Refresh { system: String },
    /// Browse the facts a system reported, as a tree; PATH (`os.pretty_name`) shows one subtree.
    Facts { system: String, path: Option<String> },
}

fn parse_state(text: &str) -> Result<SystemState, String> {
    match text {
        "online" => Ok(SystemState::Online),
        "offline" => Ok(SystemState::Offline),
        _ => Err(format!("{text:?} is not a state: use online or offline")),
    }
}

pub fn system_table(systems: &[SystemSummary]) -> String {
    let mut table = Table::new(&["NAME", "STATE", "OS", "ARCH", "LAST CONTACT", "ID"]);
    for system in systems {
        table.row(vec![
            system.name.clone(),
            system.state.as_str().into(),
            if system.os.is_empty() { "-".into() } else { system.os.clone() },
            if system.arch.is_empty() { "-".into() } else { system.arch.clone() },
            optional(&system.last_contact_at),
            system.id.to_string(),
        ]);
    }
    table.render()
}

pub async fn run(context: &Context, command: SystemsCommand) -> anyhow::Result<String> {
    let client = &context.client;
    match command {
        SystemsCommand::List { group, state, query: filter } => {
            let mut query = Vec::new();
            if let Some(group) = group {
                query.push(("group", group));
            }
            if let Some(state) = state {
                query.push(("state", state.as_str().to_string()));
            }
            if let Some(filter) = filter {
                query.push(("query", filter));
            }
            let systems: Vec<SystemSummary> = client.list_all("/systems", &query, None).await?;
            Ok(match context.format {
                Format::Json => json(&systems),
                Format::Table => system_table(&systems),
            })
        }
        SystemsCommand::Show { system, packages } => {
            let detail: SystemDetail = client.get(&format!("/systems/{}", segment(&system)), &[]).await?;
            Ok(match context.format {
                Format::Json => json(&detail),
                Format::Table => render_detail(&detail, packages),
            })
        }
        SystemsCommand::Delete { system } => {
            client.delete(&format!("/systems/{}", segment(&system))).await?;
            Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "deleted": system })),
                Format::Table => format!("Deleted system {system}; its certificate is revoked.\n"),
            })
        }
        SystemsCommand::History { system, limit } => {
            let changes: Vec<InventoryChange> =
                client.list_all(&format!("/systems/{}/inventory-history", segment(&system)), &[], Some(limit)).await?;
            Ok(match context.format {
                Format::Json => json(&changes),
                Format::Table => {
                    let mut table = Table::new(&["AT", "SECTIONS", "CHANGE"]);
                    for change in &changes {
                        let mut summary = change.change.to_string();
                        if summary.chars().count() > 80 {
                            summary = summary.chars().take(77).collect::<String>() + "...";
                        }
                        table.row(vec![change.at.to_string(), change.sections.join(","), summary]);
                    }
                    table.render()
                }
            })
        }
        SystemsCommand::Facts { system, path } => super::facts::run(context, &system, path.as_deref()).await,
        SystemsCommand::Refresh { system } => {
            client.post_empty(&format!("/systems/{}/refresh-inventory", segment(&system))).await?;
            Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "requested": system })),
                Format::Table => format!("Asked the agent of {system} to report changes.\n"),
            })
        }
    }
}

fn render_detail(detail: &SystemDetail, with_packages: bool) -> String {
    let summary = &detail.summary;
    let mut pairs = vec![
        ("Name", summary.name.clone()),
        ("ID", summary.id.to_string()),
        ("State", summary.state.as_str().to_string()),
        ("Last contact", optional(&summary.last_contact_at)),
        ("Enrolled", summary.enrolled_at.to_string()),
        ("Agent", summary.agent_version.clone()),
        ("Groups", if detail.groups.is_empty() { "-".into() } else { detail.groups.join(", ") }),
    ];
    let Some(inventory) = &detail.inventory else {
        pairs.push(("Inventory", "not reported yet".into()));
        return fields(&pairs);
    };
    let host = &inventory.host;
    pairs.extend([
        ("Hostname", host.hostname.clone()),
        ("OS", host.os.pretty_name.clone()),
        ("Kernel", host.kernel.release.clone()),
        ("Architecture", host.arch.clone()),
        ("Hypervisor", host.hypervisor.clone()),
        ("CPUs", format!("{} x {}", host.cpu.count, host.cpu.model)),
        ("Memory", bytes(host.memory.total_bytes)),
        ("Packages", inventory.packages.len().to_string()),
        ("Inventory updated", optional(&detail.inventory_updated_at)),
    ]);
    if let Some(zvm) = &inventory.zvm {
        pairs.push(("z/VM guest", format!("{} on {} ({})", zvm.userid, zvm.lpar_name, zvm.control_program)));
    }
    let mut out = fields(&pairs);

    out.push_str("\nFilesystems:\n");
    let mut table = Table::new(&["MOUNT", "DEVICE", "TYPE", "SIZE", "USED", "USE%"]);
    for fs in &inventory.filesystems {
        table.row(vec![
            fs.mount_point.clone(),
            fs.device.clone(),
            fs.fs_type.clone(),
            bytes(fs.size_bytes),
            bytes(fs.used_bytes),
            format!("{:.1}", fs.used_pct()),
        ]);
    }
    out.push_str(&table.render());

    out.push_str("\nBlock devices:\n");
    let mut table = Table::new(&["NAME", "SIZE", "MODEL", "PARTITIONS"]);
    for device in &inventory.block_devices {
        table.row(vec![
            device.name.clone(),
            bytes(device.size_bytes),
            device.model.clone(),
            device.partitions.join(","),
        ]);
    }
    out.push_str(&table.render());

    out.push_str("\nNetwork interfaces:\n");
    let mut table = Table::new(&["NAME", "STATE", "MAC", "MTU", "ADDRESSES"]);
    for interface in &inventory.interfaces {
        table.row(vec![
            interface.name.clone(),
            interface.state.clone(),
            if interface.mac.is_empty() { "-".into() } else { interface.mac.clone() },
            interface.mtu.to_string(),
            interface.addresses.join(" "),
        ]);
    }
    out.push_str(&table.render());

    if with_packages {
        out.push_str("\nPackages:\n");
        let mut table = Table::new(&["NAME", "VERSION", "ARCH", "MANAGER"]);
        for package in &inventory.packages {
            table.row(vec![
                package.name.clone(),
                package.version.clone(),
                package.arch.clone(),
                serde_json::to_value(package.manager)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}
