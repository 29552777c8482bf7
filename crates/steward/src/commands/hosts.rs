//! `steward hosts ...`: the hypervisor hosts, what they can run, and every guest they run.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use steward_types::api::hosts::{
    Accelerator, Host, HostArchitecture, HostCreate, HostGuest, HostKind, ZvmHostSettings, default_image_holder_prefix,
    default_mac_prefix,
};

use super::Context;
use crate::client::segment;
use crate::output::{Format, Table, fields, json, label, optional, size, size_mib, yes_no};

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// List hosts.
    List,
    /// Show a host with its architectures and storage.
    Show { host: String },
    /// List every guest of a host, managed by Steward or not.
    Guests { host: String },
    /// Register a z/VM system, after checking that Steward can use it (authentication, API level, DirMaint,
    /// the disk pool); prints what to change on z/VM when something is missing.
    Add(Box<HostAdd>),
    /// Remove a z/VM host that has no virtual servers, templates, networks or complexes left (nothing on z/VM
    /// is touched).
    Delete { host: String },
}

/// `steward hosts add`.
#[derive(Debug, clap::Args)]
pub struct HostAdd {
    name: String,
    /// The kind of host: zvm (the local QEMU host registers itself).
    #[arg(long = "type", value_parser = ["zvm"])]
    kind: String,
    /// The SMAPI request server, HOST:PORT (usually port 44444).
    #[arg(long)]
    address: String,
    /// The SMAPI user (listed in VSMWORK1 AUTHLIST).
    #[arg(long)]
    user: String,
    /// A file holding the SMAPI user's password (its first line).
    #[arg(long)]
    password_file: PathBuf,
    /// The DirMaint group new minidisks come from.
    #[arg(long, default_value = "LINUX")]
    disk_pool: String,
    /// The CA certificate (PEM file) of the SMAPI server's TLS certificate; SMAPI inside TLS when given.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// The name in the SMAPI server's TLS certificate, when it is not the address's host.
    #[arg(long)]
    tls_server_name: Option<String>,
    /// The system's MAC prefix (VMLAN MACPREFIX).
    #[arg(long, default_value_t = default_mac_prefix())]
    mac_prefix: String,
    /// The first characters of the image-holder users that keep template disks.
    #[arg(long, default_value_t = default_image_holder_prefix())]
    image_holder_prefix: String,
    /// The profile guest entries INCLUDE (console and spool devices).
    #[arg(long)]
    profile: Option<String>,
    /// The real device (OSA) of virtual switches Steward defines.
    #[arg(long)]
    vswitch_real_device: Option<String>,
    /// How often a DirMaint operation in progress is polled, in milliseconds (default 2000).
    #[arg(long)]
    poll_interval_ms: Option<u64>,
}

fn accelerator(accelerator: Accelerator) -> &'static str {
    match accelerator {
        Accelerator::Kvm => "kvm",
        Accelerator::Tcg => "tcg",
        Accelerator::ZvmCp => "z/VM CP",
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
        HostsCommand::Add(add) => {
            let HostAdd {
                name,
                kind: _,
                address,
                user,
                password_file,
                disk_pool,
                tls_ca,
                tls_server_name,
                mac_prefix,
                image_holder_prefix,
                profile,
                vswitch_real_device,
                poll_interval_ms,
            } = *add;
            let password = std::fs::read_to_string(&password_file)
                .with_context(|| format!("cannot read the password file {}", password_file.display()))?;
            let password = password.lines().next().unwrap_or_default().to_owned();
            let tls_ca_certificate = tls_ca
                .map(|path| {
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read the CA certificate {}", path.display()))
                })
                .transpose()?;
            let body = HostCreate {
                name,
                kind: HostKind::Zvm,
                zvm: Some(ZvmHostSettings {
                    address,
                    user,
                    disk_pool,
                    tls_ca_certificate,
                    tls_server_name,
                    mac_prefix,
                    image_holder_prefix,
                    profile,
                    vswitch_real_device,
                    poll_interval_ms,
                }),
                password: Some(password),
            };
            let host: Host = match client.post("/hosts", &body).await {
                Ok(host) => host,
                Err(crate::client::ClientError::Api { message, details, .. }) if details.get("problems").is_some() => {
                    anyhow::bail!("{}", not_ready(&message, &details));
                }
                Err(error) => return Err(error.into()),
            };
            Ok(match context.format {
                Format::Json => json(&host),
                Format::Table => render_host(&host),
            })
        }
        HostsCommand::Delete { host } => {
            client.delete(&format!("/hosts/{}", segment(&host))).await?;
            Ok(format!("Host {host} removed.\n"))
        }
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

/// The checks a z/VM system failed, each with what to change there.
fn not_ready(message: &str, details: &serde_json::Value) -> String {
    let mut text = format!("{}\n", message.split(": ").next().unwrap_or(message));
    for problem in details["problems"].as_array().into_iter().flatten() {
        let field = |name: &str| problem[name].as_str().unwrap_or_default().to_owned();
        text.push_str(&format!(
            "\n  {}\n    problem: {}\n    fix:     {}\n",
            field("check"),
            field("problem"),
            field("fix")
        ));
    }
    text
}

fn kind(host: &Host) -> String {
    label(&host.kind)
}

fn render_host(host: &Host) -> String {
    let mut lines = vec![
        ("Name", host.name.clone()),
        ("ID", host.id.to_string()),
        ("Kind", kind(host)),
        ("CPUs", if host.cpus == 0 { "-".into() } else { host.cpus.to_string() }),
        ("Memory", format!("{} ({} available)", size(host.memory_bytes), size(host.memory_available_bytes))),
        ("Storage", host.storage_directory.clone()),
        ("Storage free", format!("{} of {}", size(host.storage_free_bytes), size(host.storage_total_bytes))),
    ];
    if let Some(zvm) = &host.zvm {
        let tls = if zvm.tls_ca_certificate.is_some() { " (TLS)" } else { "" };
        lines.push(("SMAPI", format!("{} as {}{tls}", zvm.address, zvm.user)));
        lines.push(("MAC prefix", zvm.mac_prefix.clone()));
        lines.push(("Image holders", format!("{}nn", zvm.image_holder_prefix)));
    }
    if let Some(error) = &host.error {
        lines.push(("Unreachable", error.clone()));
    }
    lines.push(("Created", host.created_at.to_string()));
    let mut out = fields(&lines);
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
