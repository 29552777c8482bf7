//! `steward hosts ...`: the hypervisor hosts, what they can run, and every guest they run.

use clap::Subcommand;
use steward_types::api::hosts::{Accelerator, Host, HostArchitecture, HostGuest};

use super::Context;
use crate::client::segment;
use crate::output::{Format, Table, fields, json, label, optional, size, size_mib, yes_no};

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// List hosts.
    List,
    /// Show a host with its architectures and storage.
    Show { host: String },
    /// List every QEMU guest running on a host, managed by Steward or not.
    Guests { host: String },
}

fn accelerator(accelerator: Accelerator) -> &'static str {
    match accelerator {
        Accelerator::Kvm => "kvm",
        Accelerator::Tcg => "tcg",
    }
}

/// `x86_64 (tcg), s390x (tcg)`.
fn architectures(architectures: &[HostArchitecture]) -> String {
    if architectures.is_empty() {
        return "none".into();
    }
    architectures
        .iter()
        .map(|architecture| format!("{} ({})", architecture.arch, accelerator(architecture.accelerator)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(context: &Context, command: HostsCommand) -> anyhow::Result<String> {
    let client = &context.client;
    match command {
        HostsCommand::List => {
            let hosts: Vec<Host> = client.list_all("/hosts", &[], None).await?;
            Ok(match context.format {
                Format::Json => json(&hosts),
                Format::Table => {
                    let mut table = Table::new(&["NAME", "KIND", "ARCHITECTURES", "CPUS", "MEMORY", "STORAGE-FREE"]);
                    for host in &hosts {
                        table.row(vec![
                            host.name.clone(),
                            kind(host),
                            architectures(&host.architectures),
                            host.cpus.to_string(),
                            size(host.memory_bytes),
                            size(host.storage_free_bytes),
                        ]);
                    }
                    table.render()
                }
            })
        }
        HostsCommand::Show { host } => {
            let host: Host = client.get(&format!("/hosts/{}", segment(&host)), &[]).await?;
            Ok(match context.format {
                Format::Json => json(&host),
                Format::Table => render_host(&host),
            })
        }
        HostsCommand::Guests { host } => {
            let guests: Vec<HostGuest> =
                client.list_all(&format!("/hosts/{}/guests", segment(&host)), &[], None).await?;
            Ok(match context.format {
                Format::Json => json(&guests),
                Format::Table => {
                    let mut table = Table::new(&["NAME", "PID", "ARCH", "CPUS", "MEMORY", "MANAGED", "VIRTUAL-SERVER"]);
                    for guest in &guests {
                        table.row(vec![
                            guest.name.clone(),
                            guest.pid.to_string(),
                            optional(&guest.arch),
                            optional(&guest.cpus),
                            guest.memory_mib.map_or_else(|| "-".into(), size_mib),
                            yes_no(guest.managed),
                            optional(&guest.virtual_server),
                        ]);
                    }
                    table.render()
                }
            })
        }
    }
}

fn kind(host: &Host) -> String {
    label(&host.kind)
}

fn render_host(host: &Host) -> String {
    let mut out = fields(&[
        ("Name", host.name.clone()),
        ("ID", host.id.to_string()),
        ("Kind", kind(host)),
        ("CPUs", host.cpus.to_string()),
        ("Memory", format!("{} ({} available)", size(host.memory_bytes), size(host.memory_available_bytes))),
        ("Storage", host.storage_directory.clone()),
        ("Storage free", format!("{} of {}", size(host.storage_free_bytes), size(host.storage_total_bytes))),
        ("Created", host.created_at.to_string()),
    ]);
    out.push_str("\nArchitectures:\n");
    let mut table = Table::new(&["ARCH", "ACCELERATOR", "VERSION", "EMULATOR"]);
    for architecture in &host.architectures {
        table.row(vec![
            architecture.arch.to_string(),
            accelerator(architecture.accelerator).into(),
            architecture.version.clone(),
            architecture.emulator.clone(),
        ]);
    }
    out.push_str(&table.render());
    out
}
