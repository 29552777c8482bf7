//! `steward os-templates ...`: importing disk images (optionally described by the image builder's
//! `template.json`), capturing virtual servers, listing and deleting templates.
//!
//! The server reads image files on its own machine, so every path is made absolute here, and a missing file is
//! an error before anything is sent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Deserialize;
use steward_types::api::hosts::Arch;
use steward_types::api::os_templates::{
    BootMethod, DiskFormat, OsTemplate, OsTemplateImport, Personalization, VirtualServerCapture,
};
use steward_types::validate;

use super::Context;
use super::operations::{Outcome, WaitArgs, follow};
use super::server_templates::arch;
use crate::client::segment;
use crate::output::{Format, Table, fields, json, label, optional, size, yes_no};

#[derive(Debug, Subcommand)]
pub enum OsTemplatesCommand {
    /// Import a disk image (qcow2 or raw) as an OS template.
    Import(ImportArgs),
    /// Capture a stopped virtual server into a new, sealed OS template.
    Capture {
        /// The new template's name.
        name: String,
        /// The virtual server (name or ID) to capture.
        #[arg(long = "from")]
        virtual_server: String,
        /// Free text saying what it is for.
        #[arg(long)]
        description: Option<String>,
        /// The image starts the Steward agent (by default: as the source's template says; no for a registered
        /// guest).
        #[arg(long)]
        agent: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List OS templates.
    List,
    /// Show an OS template.
    Show { template: String },
    /// Delete an OS template and its image.
    Delete {
        template: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The new template's name.
    pub name: String,
    /// The disk image; by default the metadata's `disk`.
    #[arg(long, required_unless_present = "metadata")]
    pub file: Option<PathBuf>,
    /// The image builder's template.json: fills every setting below (paths relative to its directory).
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    /// The host (name or ID) to keep the template on; the server's own host by default.
    #[arg(long)]
    pub host: Option<String>,
    /// The image's format: qcow2 or raw (detected from the file when absent).
    #[arg(long, value_parser = disk_format)]
    pub format: Option<DiskFormat>,
    /// The image's architecture: x86_64 or s390x.
    #[arg(long, value_parser = arch, required_unless_present = "metadata")]
    pub arch: Option<Arch>,
    /// How the guest boots: direct (the hypervisor loads --kernel and --initrd) or firmware (from the disk).
    #[arg(long, value_parser = boot_method, required_unless_present = "metadata")]
    pub boot: Option<BootMethod>,
    /// The kernel, for direct boot.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// The initrd, for direct boot.
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    /// The kernel command line, for direct boot.
    #[arg(long)]
    pub cmdline: Option<String>,
    /// How deploy personalizes the image: nocloud (a cloud-init config drive) or none.
    #[arg(long, value_parser = personalization, required_unless_present = "metadata")]
    pub personalization: Option<Personalization>,
    /// The image starts the Steward agent at boot.
    #[arg(long, conflicts_with = "no_agent")]
    pub agent: bool,
    /// The image does not start the Steward agent (overrides the metadata).
    #[arg(long)]
    pub no_agent: bool,
    /// Free text saying what it is for.
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// What the starter image builder writes next to its images (`template.json`); paths are relative to it.
#[derive(Debug, Default, Deserialize)]
pub struct ImageMetadata {
    pub arch: Option<Arch>,
    pub boot: Option<BootMethod>,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub cmdline: Option<String>,
    pub disk: Option<String>,
    pub disk_format: Option<DiskFormat>,
    pub personalization: Option<Personalization>,
    pub agent: Option<bool>,
    /// SHA-256 of each file, by its name as written in this document.
    #[serde(default)]
    pub sha256: BTreeMap<String, String>,
}

fn disk_format(text: &str) -> Result<DiskFormat, String> {
    match text {
        "qcow2" => Ok(DiskFormat::Qcow2),
        "raw" => Ok(DiskFormat::Raw),
        _ => Err(format!("{text:?} is not a disk format: use qcow2 or raw")),
    }
}

fn boot_method(text: &str) -> Result<BootMethod, String> {
    match text {
        "direct" => Ok(BootMethod::Direct),
        "firmware" => Ok(BootMethod::Firmware),
        _ => Err(format!("{text:?} is not a boot method: use direct or firmware")),
    }
}

fn personalization(text: &str) -> Result<Personalization, String> {
    match text {
        "nocloud" => Ok(Personalization::Nocloud),
        "none" => Ok(Personalization::None),
        _ => Err(format!("{text:?} is not a personalization: use nocloud or none")),
    }
}

/// The absolute, canonical form of `path` (given with `flag`), which must be an existing regular file.
pub fn existing_file(flag: &str, path: &Path) -> anyhow::Result<String> {
    let absolute =
        std::fs::canonicalize(path).map_err(|error| anyhow::anyhow!("{flag} {}: {error}", path.display()))?;
    if !absolute.is_file() {
        anyhow::bail!("{flag} {}: not a regular file", path.display());
    }
    absolute
        .into_os_string()
        .into_string()
        .map_err(|path| anyhow::anyhow!("{flag} {}: the path is not valid UTF-8", PathBuf::from(path).display()))
}

/// Reads `template.json`.
pub fn read_metadata(path: &Path) -> anyhow::Result<ImageMetadata> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--metadata {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("--metadata {}: not an image builder's template.json", path.display()))
}

/// The import request `args` describe, with the SHA-256 the metadata expects of the disk, if it names one.
/// Explicit flags win over the metadata; metadata paths are relative to the metadata file's directory.
pub fn import_request(args: &ImportArgs) -> anyhow::Result<(OsTemplateImport, Option<String>)> {
    validate::name("name", &args.name)?;
    let (metadata, directory) = match &args.metadata {
        Some(path) => {
            let directory = path.parent().map(Path::to_path_buf).unwrap_or_default();
            (read_metadata(path)?, directory)
        }
        None => (ImageMetadata::default(), PathBuf::new()),
    };
    let from_metadata = |flag: &str, relative: &Option<String>| -> anyhow::Result<Option<String>> {
        relative.as_ref().map(|relative| existing_file(flag, &directory.join(relative))).transpose()
    };
    let (file, expected_sha256) = match (&args.file, &metadata.disk) {
        (Some(file), _) => (existing_file("--file", file)?, None),
        (None, Some(disk)) => {
            let expected = metadata.sha256.get(disk).or_else(|| {
                Path::new(disk).file_name().and_then(|name| name.to_str()).and_then(|name| metadata.sha256.get(name))
            });
            (existing_file("--file (the metadata's disk)", &directory.join(disk))?, expected.cloned())
        }
        (None, None) => anyhow::bail!("--file is needed: the metadata names no \"disk\""),
    };
    let kernel = match &args.kernel {
        Some(kernel) => Some(existing_file("--kernel", kernel)?),
        None => from_metadata("--kernel (the metadata's kernel)", &metadata.kernel)?,
    };
    let initrd = match &args.initrd {
        Some(initrd) => Some(existing_file("--initrd", initrd)?),
        None => from_metadata("--initrd (the metadata's initrd)", &metadata.initrd)?,
    };
    let missing = |flag: &str, key: &str| anyhow::anyhow!("{flag} is needed: the metadata has no \"{key}\"");
    let boot = args.boot.or(metadata.boot).ok_or_else(|| missing("--boot", "boot"))?;
    if boot == BootMethod::Direct && kernel.is_none() {
        anyhow::bail!("--boot direct needs --kernel (or a \"kernel\" in the metadata)");
    }
    let agent = if args.agent || args.no_agent { args.agent } else { metadata.agent.unwrap_or(false) };
    let request = OsTemplateImport {
        name: args.name.clone(),
        host: args.host.clone(),
        file,
        format: args.format.or(metadata.disk_format),
        arch: args.arch.or(metadata.arch).ok_or_else(|| missing("--arch", "arch"))?,
        boot,
        kernel,
        initrd,
        cmdline: args.cmdline.clone().or(metadata.cmdline),
        personalization: args
            .personalization
            .or(metadata.personalization)
            .ok_or_else(|| missing("--personalization", "personalization"))?,
        agent,
        description: args.description.clone(),
    };
    Ok((request, expected_sha256))
}

pub async fn run(context: &Context, command: OsTemplatesCommand) -> anyhow::Result<String> {
    let client = &context.client;
    match command {
        OsTemplatesCommand::Import(args) => {
            let (request, expected_sha256) = import_request(&args)?;
            let operation = client.start_operation("/os-templates", &request).await?;
            if let Outcome::Detached(text) = follow(context, operation, args.wait).await? {
                return Ok(text);
            }
            let template = show(context, &request.name).await?;
            if let Some(expected) = expected_sha256
                && !expected.eq_ignore_ascii_case(&template.sha256)
            {
                eprintln!(
                    "warning: the imported image's SHA-256 is {}, but the metadata says {expected}: the image changed \
                     after it was built",
                    template.sha256
                );
            }
            Ok(render(context, &template))
        }
        OsTemplatesCommand::Capture { name, virtual_server, description, agent, wait } => {
            validate::name("name", &name)?;
            let path = format!("/virtual-servers/{}/capture", segment(&virtual_server));
            let body = VirtualServerCapture { name: name.clone(), description, agent: agent.then_some(true) };
            let operation = client.start_operation(&path, &body).await?;
            if let Outcome::Detached(text) = follow(context, operation, wait).await? {
                return Ok(text);
            }
            Ok(render(context, &show(context, &name).await?))
        }
        OsTemplatesCommand::List => {
            let templates: Vec<OsTemplate> = client.list_all("/os-templates", &[], None).await?;
            Ok(match context.format {
                Format::Json => json(&templates),
                Format::Table => {
                    let mut table = Table::new(&[
                        "NAME",
                        "HOST",
                        "ARCH",
                        "BOOT",
                        "FORMAT",
                        "SIZE",
                        "PERSONALIZATION",
                        "AGENT",
                        "ORIGIN",
                    ]);
                    for template in &templates {
                        table.row(vec![
                            template.name.clone(),
                            template.host.clone(),
                            template.arch.to_string(),
                            label(&template.boot),
                            template.disk_format.as_str().into(),
                            size(template.disk_size_bytes),
                            label(&template.personalization),
                            yes_no(template.agent),
                            label(&template.origin),
                        ]);
                    }
                    table.render()
                }
            })
        }
        OsTemplatesCommand::Show { template } => Ok(render(context, &show(context, &template).await?)),
        OsTemplatesCommand::Delete { template, wait } => {
            if let Some(operation) =
                client.delete_maybe_operation(&format!("/os-templates/{}", segment(&template))).await?
                && let Outcome::Detached(text) = follow(context, operation, wait).await?
            {
                return Ok(text);
            }
            Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "deleted": template })),
                Format::Table => format!("Deleted OS template {template}.\n"),
            })
        }
    }
}

async fn show(context: &Context, template: &str) -> anyhow::Result<OsTemplate> {
    Ok(context.client.get(&format!("/os-templates/{}", segment(template)), &[]).await?)
}

fn render(context: &Context, template: &OsTemplate) -> String {
    if context.format == Format::Json {
        return json(template);
    }
    let source = match (&template.source_virtual_server, &template.source_file) {
        (Some(virtual_server), _) => format!("virtual server {virtual_server}"),
        (None, Some(file)) => file.clone(),
        (None, None) => "-".into(),
    };
    fields(&[
        ("Name", template.name.clone()),
        ("ID", template.id.to_string()),
        ("Host", template.host.clone()),
        ("Architecture", template.arch.to_string()),
        ("Boot", label(&template.boot)),
        ("Kernel", yes_no(template.has_kernel)),
        ("Initrd", yes_no(template.has_initrd)),
        ("Command line", optional(&template.cmdline)),
        ("Disk format", template.disk_format.as_str().into()),
        ("Disk size", size(template.disk_size_bytes)),
        ("File size", size(template.file_size_bytes)),
        ("SHA-256", template.sha256.clone()),
        ("Personalization", label(&template.personalization)),
        ("Agent", yes_no(template.agent)),
        ("Origin", label(&template.origin)),
        ("Source", source),
        ("Sealed", if template.sealed.is_empty() { "-".into() } else { template.sealed.join(", ") }),
        ("Description", template.description.clone()),
        ("Created", template.created_at.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    fn parse(args: &[&str]) -> Result<ImportArgs, String> {
        let cli =
            Cli::try_parse_from([&["steward", "os-templates", "import"], args].concat()).map_err(|e| e.to_string())?;
        match cli.command {
            Command::OsTemplates(OsTemplatesCommand::Import(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    /// A directory laid out as the image builder leaves it.
    fn image_directory() -> tempfile::TempDir {
        let temp = tempfile::tempdir().unwrap();
        for file in ["disk.qcow2", "vmlinuz", "initrd.img", "other.raw"] {
            std::fs::write(temp.path().join(file), file).unwrap();
        }
        let metadata = serde_json::json!({
            "arch": "x86_64", "boot": "direct", "kernel": "vmlinuz", "initrd": "initrd.img",
            "cmdline": "root=/dev/vda console=ttyS0", "disk": "disk.qcow2", "disk_format": "qcow2",
            "personalization": "nocloud", "agent": true, "sha256": {"disk.qcow2": "ab12"}, "built_by": "xtask"
        });
        std::fs::write(temp.path().join("template.json"), metadata.to_string()).unwrap();
        temp
    }

    #[test]
    fn metadata_fills_every_field_with_paths_relative_to_its_directory() {
        let temp = image_directory();
        let directory = std::fs::canonicalize(temp.path()).unwrap();
        let metadata = temp.path().join("template.json");
        let (request, expected) =
            import_request(&parse(&["debian", "--metadata", metadata.to_str().unwrap()]).unwrap()).unwrap();
        assert_eq!(request.file, directory.join("disk.qcow2").to_str().unwrap());
        assert_eq!(request.kernel.as_deref(), directory.join("vmlinuz").to_str());
        assert_eq!(request.initrd.as_deref(), directory.join("initrd.img").to_str());
        assert_eq!(request.cmdline.as_deref(), Some("root=/dev/vda console=ttyS0"));
        assert_eq!(
            (request.arch, request.boot, request.format),
            (Arch::X86_64, BootMethod::Direct, Some(DiskFormat::Qcow2))
        );
        assert_eq!(request.personalization, Personalization::Nocloud);
        assert!(request.agent);
        assert_eq!(request.host, None);
        assert_eq!(expected.as_deref(), Some("ab12"));
    }

    #[test]
    fn explicit_flags_override_the_metadata() {
        let temp = image_directory();
        let metadata = temp.path().join("template.json");
        let other = temp.path().join("other.raw");
        let args = parse(&[
            "debian",
            "--metadata",
            metadata.to_str().unwrap(),
            "--file",
            other.to_str().unwrap(),
            "--format",
            "raw",
            "--boot",
            "firmware",
            "--personalization",
            "none",
            "--no-agent",
            "--cmdline",
            "quiet",
            "--host",
            "local",
            "--description",
            "mine",
        ])
        .unwrap();
        let (request, expected) = import_request(&args).unwrap();
        assert!(request.file.ends_with("/other.raw"), "{}", request.file);
        assert_eq!(expected, None, "the metadata's checksum is not the other file's");
        assert_eq!((request.format, request.boot), (Some(DiskFormat::Raw), BootMethod::Firmware));
        assert_eq!(request.personalization, Personalization::None);
        assert!(!request.agent);
        assert_eq!(request.cmdline.as_deref(), Some("quiet"));
        assert_eq!((request.host.as_deref(), request.description.as_deref()), (Some("local"), Some("mine")));
    }

    #[test]
    fn without_metadata_the_flags_are_required_and_files_must_exist() {
        let temp = image_directory();
        let disk = temp.path().join("disk.qcow2");
        let disk = disk.to_str().unwrap();
        for flag in ["--arch", "--boot", "--personalization"] {
            let mut args =
                vec!["debian", "--file", disk, "--arch", "x86_64", "--boot", "firmware", "--personalization", "none"];
            let at = args.iter().position(|arg| *arg == flag).unwrap();
            args.drain(at..at + 2);
            let error = parse(&args).unwrap_err();
            assert!(error.contains(flag), "{flag} is required: {error}");
        }
        let error =
            parse(&["debian", "--arch", "x86_64", "--boot", "firmware", "--personalization", "none"]).unwrap_err();
        assert!(error.contains("--file"), "{error}");
        let error =
            parse(&["debian", "--file", disk, "--arch", "x86_64", "--boot", "bios", "--personalization", "none"])
                .unwrap_err();
        assert!(error.contains("--boot") && error.contains("direct or firmware"), "{error}");

        let missing = parse(&[
            "debian",
            "--file",
            "/nonexistent/disk.qcow2",
            "--arch",
            "x86_64",
            "--boot",
            "firmware",
            "--personalization",
            "none",
        ])
        .unwrap();
        let error = import_request(&missing).unwrap_err().to_string();
        assert!(error.starts_with("--file /nonexistent/disk.qcow2: "), "{error}");
        let directory = parse(&[
            "debian",
            "--file",
            temp.path().to_str().unwrap(),
            "--arch",
            "x86_64",
            "--boot",
            "firmware",
            "--personalization",
            "none",
        ])
        .unwrap();
        assert!(import_request(&directory).unwrap_err().to_string().contains("not a regular file"));
        let no_kernel =
            parse(&["debian", "--file", disk, "--arch", "x86_64", "--boot", "direct", "--personalization", "none"])
                .unwrap();
        assert_eq!(
            import_request(&no_kernel).unwrap_err().to_string(),
            "--boot direct needs --kernel (or a \"kernel\" in the metadata)"
        );
    }

    #[test]
    fn broken_metadata_is_reported_with_its_path() {
        let temp = image_directory();
        let metadata = temp.path().join("template.json");
        std::fs::write(&metadata, r#"{"arch": "arm64"}"#).unwrap();
        let error = import_request(&parse(&["debian", "--metadata", metadata.to_str().unwrap()]).unwrap()).unwrap_err();
        let text = format!("{error:#}");
        assert!(text.starts_with(&format!("--metadata {}", metadata.display())) && text.contains("arm64"), "{text}");
        std::fs::write(
            &metadata,
            r#"{"arch": "x86_64", "boot": "firmware", "personalization": "none", "disk": "gone.qcow2"}"#,
        )
        .unwrap();
        let error = import_request(&parse(&["debian", "--metadata", metadata.to_str().unwrap()]).unwrap()).unwrap_err();
        assert!(error.to_string().contains("gone.qcow2"), "{error}");
        std::fs::write(&metadata, r#"{"boot": "firmware", "personalization": "none", "disk": "disk.qcow2"}"#).unwrap();
        let error = import_request(&parse(&["debian", "--metadata", metadata.to_str().unwrap()]).unwrap()).unwrap_err();
        assert_eq!(error.to_string(), "--arch is needed: the metadata has no \"arch\"");
    }
}
