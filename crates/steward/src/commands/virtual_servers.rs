//! `steward virtual-servers ...`: creating guests from server templates, deploying OS templates into them,
//! registering guests installed outside Steward, power actions, and the console.

use std::path::PathBuf;

use clap::Subcommand;
use steward_types::api::hosts::Arch;
use steward_types::api::virtual_servers::{
    CloneMethod, ConsoleLog, NicSettings, PersonalizationScript, VirtualServer, VirtualServerCreate,
    VirtualServerDeploy, VirtualServerRegister, VirtualServerStop,
};
use steward_types::validate;

use super::Context;
use super::operations::{Outcome, WaitArgs, follow};
use super::os_templates::existing_file;
use super::server_templates::{arch, memory_mib};
use crate::client::segment;
use crate::output::{Format, Table, fields, json, label, optional, size, size_mib, yes_no};

#[derive(Debug, Subcommand)]
pub enum VirtualServersCommand {
    /// Create a virtual server from a server template (blank disks, not started).
    Create {
        name: String,
        /// The host (name or ID) to create it on.
        #[arg(long)]
        host: String,
        /// The server template (name or ID) giving its hardware.
        #[arg(long)]
        template: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Deploy an OS template into a virtual server: clone its image, personalize it, optionally start it.
    Deploy(DeployArgs),
    /// Adopt a guest installed outside Steward: a running QEMU guest (--guest) or a disk image (--disk).
    Register {
        name: String,
        /// The host (name or ID) the guest or disk is on.
        #[arg(long)]
        host: String,
        /// A running guest to adopt, by its name or process ID as `steward hosts guests` lists it.
        #[arg(long, required_unless_present = "disk", conflicts_with = "disk")]
        guest: Option<String>,
        /// A disk image to adopt.
        #[arg(long)]
        disk: Option<PathBuf>,
        /// The disk's architecture: x86_64 or s390x.
        #[arg(long, value_parser = arch, conflicts_with = "guest")]
        arch: Option<Arch>,
        /// Virtual CPUs to give it.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), conflicts_with = "guest")]
        cpus: Option<u32>,
        /// Memory to give it, for example 1G.
        #[arg(long, value_parser = memory_mib, conflicts_with = "guest")]
        memory: Option<u64>,
        /// Direct boot: the kernel.
        #[arg(long, conflicts_with = "guest")]
        kernel: Option<PathBuf>,
        /// Direct boot: the initrd.
        #[arg(long, requires = "kernel")]
        initrd: Option<PathBuf>,
        /// Direct boot: the kernel command line.
        #[arg(long, requires = "kernel")]
        cmdline: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Start a virtual server.
    Start {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop a virtual server: the ACPI power button, then power off after --timeout.
    Stop {
        name: String,
        /// Seconds to wait for the guest to shut down before forcing it off (the server's default is 30).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: Option<u64>,
        /// Power off at once.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Restart a virtual server.
    Restart {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete a virtual server, stopping it first, with the disks Steward made for it (a registered disk stays).
    Delete {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Print the tail of a virtual server's console.
    Console {
        name: String,
        /// How many bytes of the end of the console to show.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=16 * 1024 * 1024))]
        bytes: Option<u64>,
    },
    /// List virtual servers.
    List,
    /// Show a virtual server with its disks and NICs.
    Show { name: String },
}

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    pub name: String,
    /// The OS template (name or ID) to deploy.
    #[arg(long)]
    pub os_template: String,
    /// The guest's host name.
    #[arg(long, value_parser = hostname)]
    pub hostname: String,
    /// A static address with its prefix for the first NIC, for example 10.77.0.2/24; DHCP without it.
    #[arg(long, value_parser = address)]
    pub address: Option<String>,
    /// The first NIC's default gateway.
    #[arg(long, value_parser = ip, requires = "address")]
    pub gateway: Option<String>,
    /// A DNS server for the first NIC; repeat for more.
    #[arg(long, value_parser = ip)]
    pub dns: Vec<String>,
    /// A script run once at first boot, as NAME=FILE; repeat for more (they run in order).
    #[arg(long = "script", value_parser = script)]
    pub scripts: Vec<(String, PathBuf)>,
    /// How the image is cloned: auto (an overlay when possible), overlay or copy.
    #[arg(long, value_parser = clone_method)]
    pub clone: Option<CloneMethod>,
    /// Start the guest once deployed.
    #[arg(long)]
    pub start: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

fn hostname(text: &str) -> Result<String, String> {
    validate::hostname("--hostname", text).map(|()| text.to_string()).map_err(|error| error.reason)
}

fn address(text: &str) -> Result<String, String> {
    validate::cidr("--address", text).map(|_| text.to_string()).map_err(|error| error.reason)
}

fn ip(text: &str) -> Result<String, String> {
    validate::ip_address("address", text).map(|_| text.to_string()).map_err(|error| error.reason)
}

fn script(text: &str) -> Result<(String, PathBuf), String> {
    let (name, file) = text.split_once('=').ok_or_else(|| format!("{text:?} is not NAME=FILE"))?;
    validate::name("NAME", name).map_err(|error| format!("the script's name {name:?} {}", error.reason))?;
    if file.is_empty() {
        return Err(format!("{text:?} names no FILE after '='"));
    }
    Ok((name.to_string(), PathBuf::from(file)))
}

pub fn clone_method(text: &str) -> Result<CloneMethod, String> {
    match text {
        "auto" => Ok(CloneMethod::Auto),
        "overlay" => Ok(CloneMethod::Overlay),
        "copy" => Ok(CloneMethod::Copy),
        _ => Err(format!("{text:?} is not a clone method: use auto, overlay or copy")),
    }
}

/// The deploy request `args` describe, with each script's file read.
pub fn deploy_request(args: &DeployArgs) -> anyhow::Result<VirtualServerDeploy> {
    if let (Some(address), Some(gateway)) = (&args.address, &args.gateway) {
        let (network, prefix) = validate::cidr("--address", address)?;
        let gateway_address = validate::ip_address("--gateway", gateway)?;
        if !validate::in_subnet(gateway_address, network, prefix) {
            anyhow::bail!("--gateway {gateway} is not in the subnet of --address {address}");
        }
    }
    let nics = if args.address.is_none() && args.dns.is_empty() {
        Vec::new()
    } else {
        vec![NicSettings { address: args.address.clone(), gateway: args.gateway.clone(), dns: args.dns.clone() }]
    };
    let mut scripts = Vec::new();
    for (name, file) in &args.scripts {
        let body = std::fs::read_to_string(file)
            .map_err(|error| anyhow::anyhow!("--script {name}={}: {error}", file.display()))?;
        scripts.push(PersonalizationScript { name: name.clone(), body });
    }
    Ok(VirtualServerDeploy {
        os_template: args.os_template.clone(),
        hostname: args.hostname.clone(),
        nics,
        scripts,
        clone: args.clone,
        start: args.start,
    })
}

/// Console text for a terminal: colour and cursor sequences and carriage returns dropped, other control
/// characters shown escaped, so a guest cannot drive the user's terminal.
pub fn console_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // A CSI sequence: ESC [ parameters, ending with a byte in '@'..='~'.
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            '\r' => {}
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push_str(&c.escape_default().to_string()),
            c => out.push(c),
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

pub async fn run(context: &Context, command: VirtualServersCommand) -> anyhow::Result<String> {
    let client = &context.client;
    let (name, operation, wait) = match command {
        VirtualServersCommand::Create { name, host, template, wait } => {
            validate::name("name", &name)?;
            let body = VirtualServerCreate { name: name.clone(), host, server_template: template };
            (name, client.start_operation("/virtual-servers", &body).await?, wait)
        }
        VirtualServersCommand::Deploy(args) => {
            let body = deploy_request(&args)?;
            let path = format!("/virtual-servers/{}/deploy", segment(&args.name));
            (args.name, client.start_operation(&path, &body).await?, args.wait)
        }
        VirtualServersCommand::Register {
            name,
            host,
            guest,
            disk,
            arch,
            cpus,
            memory,
            kernel,
            initrd,
            cmdline,
            wait,
        } => {
            validate::name("name", &name)?;
            let absolute = |flag: &str, path: Option<PathBuf>| path.map(|path| existing_file(flag, &path)).transpose();
            let body = VirtualServerRegister {
                name: name.clone(),
                host,
                guest,
                disk: absolute("--disk", disk)?,
                arch,
                cpus,
                memory_mib: memory,
                kernel: absolute("--kernel", kernel)?,
                initrd: absolute("--initrd", initrd)?,
                cmdline,
            };
            (name, client.start_operation("/virtual-servers/register", &body).await?, wait)
        }
        VirtualServersCommand::Start { name, wait } => {
            let path = format!("/virtual-servers/{}/start", segment(&name));
            (name, client.start_operation(&path, &serde_json::json!({})).await?, wait)
        }
        VirtualServersCommand::Stop { name, timeout, force, wait } => {
            let path = format!("/virtual-servers/{}/stop", segment(&name));
            let body = VirtualServerStop { timeout_seconds: timeout, force };
            (name, client.start_operation(&path, &body).await?, wait)
        }
        VirtualServersCommand::Restart { name, wait } => {
            let path = format!("/virtual-servers/{}/restart", segment(&name));
            (name, client.start_operation(&path, &serde_json::json!({})).await?, wait)
        }
        VirtualServersCommand::Delete { name, wait } => {
            let path = format!("/virtual-servers/{}", segment(&name));
            if let Some(operation) = client.delete_maybe_operation(&path).await?
                && let Outcome::Detached(text) = follow(context, operation, wait).await?
            {
                return Ok(text);
            }
            return Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "deleted": name })),
                Format::Table => format!("Deleted virtual server {name}.\n"),
            });
        }
        VirtualServersCommand::Console { name, bytes } => {
            let query: Vec<(&str, String)> = bytes.map(|bytes| vec![("bytes", bytes.to_string())]).unwrap_or_default();
            let console: ConsoleLog =
                client.get(&format!("/virtual-servers/{}/console", segment(&name)), &query).await?;
            return Ok(match context.format {
                Format::Json => json(&console),
                Format::Table => console_text(&console.text),
            });
        }
        VirtualServersCommand::List => {
            let servers: Vec<VirtualServer> = client.list_all("/virtual-servers", &[], None).await?;
            return Ok(match context.format {
                Format::Json => json(&servers),
                Format::Table => virtual_server_table(&servers),
            });
        }
        VirtualServersCommand::Show { name } => return show(context, &name).await,
    };
    if let Outcome::Detached(text) = follow(context, operation, wait).await? {
        return Ok(text);
    }
    show(context, &name).await
}

async fn show(context: &Context, name: &str) -> anyhow::Result<String> {
    let server: VirtualServer = context.client.get(&format!("/virtual-servers/{}", segment(name)), &[]).await?;
    Ok(match context.format {
        Format::Json => json(&server),
        Format::Table => render_virtual_server(&server),
    })
}

pub fn virtual_server_table(servers: &[VirtualServer]) -> String {
    let mut table = Table::new(&["NAME", "HOST", "ARCH", "CPUS", "MEMORY", "POWER", "OS-TEMPLATE", "HOSTNAME"]);
    for server in servers {
        table.row(vec![
            server.name.clone(),
            server.host.clone(),
            server.arch.to_string(),
            server.cpus.to_string(),
            size_mib(server.memory_mib),
            label(&server.power),
            optional(&server.os_template),
            optional(&server.hostname),
        ]);
    }
    table.render()
}

fn render_virtual_server(server: &VirtualServer) -> String {
    let mut out = fields(&[
        ("Name", server.name.clone()),
        ("ID", server.id.to_string()),
        ("Host", server.host.clone()),
        ("Power", label(&server.power)),
        ("Architecture", server.arch.to_string()),
        ("CPUs", server.cpus.to_string()),
        ("CPU share", server.cpu_share.to_string()),
        ("Memory", size_mib(server.memory_mib)),
        ("Server template", optional(&server.server_template)),
        ("OS template", optional(&server.os_template)),
        ("Hostname", optional(&server.hostname)),
        ("System", optional(&server.system)),
        ("Registered", yes_no(server.registered)),
        ("Created", server.created_at.to_string()),
    ]);
    out.push_str("\nDisks:\n");
    let mut table = Table::new(&["#", "SIZE", "ORIGIN", "PATH"]);
    for (index, disk) in server.disks.iter().enumerate() {
        table.row(vec![index.to_string(), size(disk.size_bytes), label(&disk.origin), disk.path.clone()]);
    }
    out.push_str(&table.render());
    out.push_str("\nNICs:\n");
    let mut table = Table::new(&["#", "NETWORK", "MAC", "ADDRESS"]);
    for (index, nic) in server.nics.iter().enumerate() {
        table.row(vec![index.to_string(), nic.network.clone(), nic.mac.clone(), optional(&nic.address)]);
    }
    out.push_str(&table.render());
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    fn parse(args: &[&str]) -> Result<VirtualServersCommand, String> {
        let cli = Cli::try_parse_from([&["steward", "virtual-servers"], args].concat()).map_err(|e| e.to_string())?;
        match cli.command {
            Command::VirtualServers(command) => Ok(command),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn deploy(args: &[&str]) -> Result<DeployArgs, String> {
        match parse(&[&["deploy", "web1", "--os-template", "debian", "--hostname", "web1.example"][..], args].concat())?
        {
            VirtualServersCommand::Deploy(args) => Ok(args),
            other => panic!("not a deploy: {other:?}"),
        }
    }

    #[test]
    fn deploy_sets_the_first_nic_and_reads_scripts() {
        let temp = tempfile::tempdir().unwrap();
        let script = temp.path().join("motd.sh");
        std::fs::write(&script, "#!/bin/sh\necho hello > /etc/motd\n").unwrap();
        let script_flag = format!("motd={}", script.display());
        let args = deploy(&[
            "--address",
            "10.77.0.2/24",
            "--gateway",
            "10.77.0.1",
            "--dns",
            "10.77.0.53",
            "--dns",
            "fd00::53",
            "--script",
            &script_flag,
            "--clone",
            "copy",
            "--start",
            "--no-wait",
        ])
        .unwrap();
        assert!(args.wait.no_wait);
        let request = deploy_request(&args).unwrap();
        assert_eq!(request.hostname, "web1.example");
        assert_eq!(request.nics.len(), 1);
        assert_eq!(request.nics[0].address.as_deref(), Some("10.77.0.2/24"));
        assert_eq!(request.nics[0].gateway.as_deref(), Some("10.77.0.1"));
        assert_eq!(request.nics[0].dns, vec!["10.77.0.53", "fd00::53"]);
        assert_eq!(request.scripts.len(), 1);
        assert_eq!(request.scripts[0].name, "motd");
        assert!(request.scripts[0].body.contains("echo hello"));
        assert_eq!(request.clone, Some(CloneMethod::Copy));
        assert!(request.start);

        let dhcp = deploy_request(&deploy(&[]).unwrap()).unwrap();
        assert!(dhcp.nics.is_empty(), "no address means DHCP: {:?}", dhcp.nics);
        assert_eq!((dhcp.clone, dhcp.start), (None, false));
    }

    #[test]
    fn bad_deploy_input_is_refused_naming_the_flag() {
        let error = deploy(&["--address", "10.77.0.2"]).unwrap_err();
        assert!(error.contains("--address") && error.contains("ADDRESS/PREFIX"), "{error}");
        let error = deploy(&["--address", "10.77.0.2/40"]).unwrap_err();
        assert!(error.contains("--address") && error.contains("at most 32"), "{error}");
        let error = deploy(&["--address", "10.77.0.2/24", "--gateway", "10.77.0"]).unwrap_err();
        assert!(error.contains("--gateway") && error.contains("not an IPv4 or IPv6 address"), "{error}");
        let error = deploy(&["--dns", "dns.example"]).unwrap_err();
        assert!(error.contains("--dns"), "{error}");
        let error = deploy(&["--gateway", "10.77.0.1"]).unwrap_err();
        assert!(error.contains("--address"), "a gateway needs an address: {error}");
        let error = deploy(&["--script", "nofile"]).unwrap_err();
        assert!(error.contains("--script") && error.contains("NAME=FILE"), "{error}");
        let error = deploy(&["--clone", "linked"]).unwrap_err();
        assert!(error.contains("--clone") && error.contains("auto, overlay or copy"), "{error}");
        let error = parse(&["deploy", "web1", "--os-template", "debian", "--hostname", "web_1"]).unwrap_err();
        assert!(error.contains("--hostname"), "{error}");

        let outside = deploy(&["--address", "10.77.0.2/24", "--gateway", "10.78.0.1"]).unwrap();
        let error = deploy_request(&outside).unwrap_err().to_string();
        assert_eq!(error, "--gateway 10.78.0.1 is not in the subnet of --address 10.77.0.2/24");
        let missing = deploy(&["--script", "setup=/nonexistent/setup.sh"]).unwrap();
        let error = deploy_request(&missing).unwrap_err().to_string();
        assert!(error.starts_with("--script setup=/nonexistent/setup.sh: "), "{error}");
    }

    #[test]
    fn register_takes_a_guest_or_a_disk_with_its_shape() {
        let command = parse(&["register", "old", "--host", "local", "--guest", "4242"]).unwrap();
        assert!(
            matches!(command, VirtualServersCommand::Register { guest: Some(ref guest), disk: None, .. } if guest == "4242")
        );
        let command = parse(&[
            "register",
            "old",
            "--host",
            "local",
            "--disk",
            "/srv/old.qcow2",
            "--arch",
            "x86_64",
            "--cpus",
            "2",
            "--memory",
            "1G",
        ])
        .unwrap();
        assert!(matches!(command, VirtualServersCommand::Register { memory: Some(1024), cpus: Some(2), .. }));
        assert!(parse(&["register", "old", "--host", "local"]).is_err(), "a guest or a disk is required");
        let error = parse(&["register", "old", "--host", "local", "--guest", "g", "--disk", "/d"]).unwrap_err();
        assert!(error.contains("cannot be used with"), "{error}");
        for flag in [["--cpus", "2"], ["--arch", "s390x"], ["--memory", "1G"], ["--kernel", "/k"]] {
            let error =
                parse(&[&["register", "old", "--host", "local", "--guest", "g"][..], &flag].concat()).unwrap_err();
            assert!(error.contains(flag[0]) && error.contains("--guest"), "{flag:?} goes with --disk only: {error}");
        }
        let error = parse(&["stop", "web1", "--timeout", "0"]).unwrap_err();
        assert!(error.contains("--timeout"), "{error}");
    }

    #[test]
    fn console_text_cannot_drive_the_terminal() {
        let raw = "\x1b[0;32m  OK  \x1b[0m] Started\r\nlogin: \x07\x1b]0;title\x07";
        assert_eq!(console_text(raw), "  OK  ] Started\nlogin: \\u{7}\\u{1b}]0;title\\u{7}\n");
        assert_eq!(console_text(""), "");
    }
}
