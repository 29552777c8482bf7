//! `steward server-templates ...`: the hardware shape of a guest (architecture, CPUs, memory, disks, NICs).
//! Also the parsers of sizes and architectures other commands share.

use clap::Subcommand;
use steward_types::api::hosts::Arch;
use steward_types::api::server_templates::{ServerTemplate, ServerTemplateCreate};
use steward_types::validate;

use super::Context;
use crate::client::segment;
use crate::output::{Format, Table, fields, json, size, size_mib};

const MEBIBYTE: u64 = 1 << 20;

#[derive(Debug, Subcommand)]
pub enum ServerTemplatesCommand {
    /// Create a server template.
    Create {
        name: String,
        /// The guest's architecture: x86_64 or s390x.
        #[arg(long, value_parser = arch)]
        arch: Arch,
        /// Virtual CPUs.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
        cpus: u32,
        /// Memory, for example 512M or 2G.
        #[arg(long, value_parser = memory_mib)]
        memory: u64,
        /// A disk's size, for example 10G; repeat for more disks. The first receives the operating system.
        #[arg(long = "disk", value_parser = disk_bytes, required = true)]
        disks: Vec<u64>,
        /// The network (name) of a NIC; repeat for more NICs, in order.
        #[arg(long = "nic")]
        nics: Vec<String>,
        /// Relative CPU weight, 1 to 10000 (100 is normal).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        cpu_share: Option<u32>,
        /// Free text saying what it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List server templates.
    List,
    /// Show a server template.
    Show { template: String },
    /// Delete a server template (virtual servers created from it stay).
    Delete { template: String },
}

/// `--arch`: `x86_64` or `s390x`.
pub fn arch(text: &str) -> Result<Arch, String> {
    Arch::parse(text).ok_or_else(|| format!("{text:?} is not an architecture: use x86_64 or s390x"))
}

/// `--memory`: a size such as `512M` or `2G`, in whole MiB.
pub fn memory_mib(text: &str) -> Result<u64, String> {
    let bytes = validate::size_bytes("--memory", text).map_err(|error| error.reason)?;
    if bytes == 0 {
        return Err("the memory must not be zero".into());
    }
    if bytes % MEBIBYTE != 0 {
        return Err(format!("{text:?} is not a whole number of MiB (for example 512M or 2G)"));
    }
    Ok(bytes / MEBIBYTE)
}

/// `--disk` (as a size): `10G`, in bytes.
pub fn disk_bytes(text: &str) -> Result<u64, String> {
    let bytes = validate::size_bytes("--disk", text).map_err(|error| error.reason)?;
    if bytes == 0 {
        return Err("a disk must not be empty".into());
    }
    Ok(bytes)
}

pub async fn run(context: &Context, command: ServerTemplatesCommand) -> anyhow::Result<String> {
    let client = &context.client;
    let template: ServerTemplate = match command {
        ServerTemplatesCommand::Create { name, arch, cpus, memory, disks, nics, cpu_share, description } => {
            validate::name("name", &name)?;
            let body =
                ServerTemplateCreate { name, arch, cpus, memory_mib: memory, disks, nics, cpu_share, description };
            client.post("/server-templates", &body).await?
        }
        ServerTemplatesCommand::List => {
            let templates: Vec<ServerTemplate> = client.list_all("/server-templates", &[], None).await?;
            return Ok(match context.format {
                Format::Json => json(&templates),
                Format::Table => {
                    let mut table =
                        Table::new(&["NAME", "ARCH", "CPUS", "MEMORY", "DISKS", "NICS", "CPU-SHARE", "DESCRIPTION"]);
                    for template in &templates {
                        table.row(vec![
                            template.name.clone(),
                            template.arch.to_string(),
                            template.cpus.to_string(),
                            size_mib(template.memory_mib),
                            disk_list(&template.disks),
                            if template.nics.is_empty() { "-".into() } else { template.nics.join(",") },
                            template.cpu_share.to_string(),
                            template.description.clone(),
                        ]);
                    }
                    table.render()
                }
            });
        }
        ServerTemplatesCommand::Show { template } => {
            client.get(&format!("/server-templates/{}", segment(&template)), &[]).await?
        }
        ServerTemplatesCommand::Delete { template } => {
            client.delete(&format!("/server-templates/{}", segment(&template))).await?;
            return Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "deleted": template })),
                Format::Table => format!("Deleted server template {template}.\n"),
            });
        }
    };
    Ok(match context.format {
        Format::Json => json(&template),
        Format::Table => fields(&[
            ("Name", template.name.clone()),
            ("ID", template.id.to_string()),
            ("Architecture", template.arch.to_string()),
            ("CPUs", template.cpus.to_string()),
            ("CPU share", template.cpu_share.to_string()),
            ("Memory", size_mib(template.memory_mib)),
            ("Disks", disk_list(&template.disks)),
            ("NICs", if template.nics.is_empty() { "none".into() } else { template.nics.join(", ") }),
            ("Description", template.description.clone()),
            ("Created", template.created_at.to_string()),
        ]),
    })
}

/// `10.0 GiB, 512 MiB`.
fn disk_list(disks: &[u64]) -> String {
    if disks.is_empty() {
        return "-".into();
    }
    disks.iter().map(|disk| size(*disk)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    fn parse(args: &[&str]) -> Result<ServerTemplatesCommand, String> {
        let cli = Cli::try_parse_from([&["steward", "server-templates"], args].concat()).map_err(|e| e.to_string())?;
        match cli.command {
            Command::ServerTemplates(command) => Ok(command),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn create_takes_sizes_repeated_disks_and_nics() {
        let command = parse(&[
            "create",
            "small",
            "--arch",
            "s390x",
            "--cpus",
            "2",
            "--memory",
            "512M",
            "--disk",
            "10G",
            "--disk",
            "512MiB",
            "--nic",
            "lan",
            "--nic",
            "backend",
            "--cpu-share",
            "200",
        ])
        .unwrap();
        let ServerTemplatesCommand::Create { name, arch, cpus, memory, disks, nics, cpu_share, description } = command
        else {
            panic!("not a create: {command:?}");
        };
        assert_eq!((name.as_str(), arch, cpus, memory), ("small", Arch::S390x, 2, 512));
        assert_eq!(disks, vec![10 << 30, 512 << 20]);
        assert_eq!(nics, vec!["lan", "backend"]);
        assert_eq!((cpu_share, description), (Some(200), None));
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        let base = ["create", "t", "--arch", "x86_64", "--cpus", "1"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat()).unwrap_err();
        let error = with(&["--memory", "ten", "--disk", "1G"]);
        assert!(error.contains("--memory") && error.contains("not a size like 512M"), "{error}");
        let error = with(&["--memory", "1500K", "--disk", "1G"]);
        assert!(error.contains("--memory") && error.contains("whole number of MiB"), "{error}");
        let error = with(&["--memory", "0", "--disk", "1G"]);
        assert!(error.contains("must not be zero"), "{error}");
        let error = with(&["--memory", "1G", "--disk", "5X"]);
        assert!(error.contains("--disk") && error.contains("\"5X\" is not a size"), "{error}");
        let error = with(&["--memory", "1G"]);
        assert!(error.contains("--disk"), "a disk is required: {error}");
        let error =
            parse(&["create", "t", "--arch", "arm", "--cpus", "1", "--memory", "1G", "--disk", "1G"]).unwrap_err();
        assert!(error.contains("--arch") && error.contains("use x86_64 or s390x"), "{error}");
        let error = with(&["--memory", "1G", "--disk", "1G", "--cpu-share", "0"]);
        assert!(error.contains("--cpu-share"), "{error}");
    }
}
