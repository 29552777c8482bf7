//! `steward packages upload FILE | list | show ID | delete ID | build --spec spec.yaml --files DIR` and
//! `steward packages install|upgrade|remove ID (SYSTEM | --group G) [--at TIME | --cron EXPR]`.
//!
//! A build uploads a tar archive made here of `spec.json` (the YAML spec as JSON) and the directory under
//! `files/`; with `--server-files DIR` the server reads the directory itself (administrators only).

use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use steward_protocol::files::EntryKind;
use steward_protocol::software::PackageAction;
use steward_protocol::tar::{TarEntry, TarWriter};
use steward_types::api::Page;
use steward_types::api::Timestamp;
use steward_types::api::files::TAR_MEDIA_TYPE;
use steward_types::api::jobs::{JobSchedule, JobTarget};
use steward_types::api::packages::{
    Package, PackageBuildSpec, PackageBuilt, PackageDistribute, PackageDistribution, PackageDistributionScheduled,
};

use super::{Context, ExitWithOutput};
use crate::client::segment;
use crate::output::{Format, Table, fields, json, optional};

#[derive(Debug, Subcommand)]
pub enum PackagesCommand {
    /// Upload a .deb or .rpm into the repository (its name, version, architecture and dependencies are read
    /// from the package).
    Upload { file: PathBuf },
    /// List the repository's packages.
    List,
    /// Show a package.
    Show { package: String },
    /// Delete a package from the repository.
    Delete { package: String },
    /// Build a .deb and an .rpm from a spec (YAML or JSON) and a directory installed at `/`, and store both.
    Build(BuildArgs),
    /// Install a package on a system or on every member of a group, now or on a schedule.
    Install(DistributeArgs),
    /// Upgrade to this package on a system or a group.
    Upgrade(DistributeArgs),
    /// Remove this package (by its name) from a system or a group.
    Remove(DistributeArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The spec: name, version, release, architecture, summary, description, maintainer, license, depends,
    /// scripts (pre_install, post_install, pre_remove, post_remove), timestamp.
    #[arg(long)]
    spec: PathBuf,
    /// The directory of files (uploaded as a tar archive).
    #[arg(long, conflicts_with = "server_files", required_unless_present = "server_files")]
    files: Option<PathBuf>,
    /// A directory on the server instead (administrators only).
    #[arg(long)]
    server_files: Option<String>,
}

#[derive(Debug, Args)]
pub struct DistributeArgs {
    /// The package's ID.
    package: String,
    /// The system (or none, with --group).
    system: Option<String>,
    /// Every member of this group.
    #[arg(long, conflicts_with = "system")]
    group: Option<String>,
    /// Run once at this time (RFC 3339) as a job instead of now.
    #[arg(long, conflicts_with = "cron")]
    at: Option<String>,
    /// Run on this cron schedule as a job.
    #[arg(long)]
    cron: Option<String>,
    /// The cron schedule's time zone.
    #[arg(long, default_value = "UTC")]
    time_zone: String,
    /// The name of the job a schedule creates.
    #[arg(long)]
    job_name: Option<String>,
}

pub async fn run(context: &Context, command: PackagesCommand) -> anyhow::Result<String> {
    match command {
        PackagesCommand::Upload { file } => upload(context, &file).await,
        PackagesCommand::List => {
            let page: Page<Package> = context.client.get("/packages", &[]).await?;
            Ok(match context.format {
                Format::Json => json(&page.items),
                Format::Table => {
                    let mut table = Table::new(&["ID", "FORMAT", "NAME", "VERSION", "ARCHITECTURE", "SIZE"]);
                    for package in &page.items {
                        table.row(vec![
                            package.id.to_string(),
                            package.format.clone(),
                            package.name.clone(),
                            package.version.clone(),
                            package.architecture.clone(),
                            package.size.to_string(),
                        ]);
                    }
                    table.render()
                }
            })
        }
        PackagesCommand::Show { package } => {
            let package: Package = context.client.get(&format!("/packages/{}", segment(&package)), &[]).await?;
            Ok(show(context, &package))
        }
        PackagesCommand::Delete { package } => {
            context.client.delete(&format!("/packages/{}", segment(&package))).await?;
            Ok(format!("deleted package {package}\n"))
        }
        PackagesCommand::Build(args) => build(context, args).await,
        PackagesCommand::Install(args) => distribute(context, PackageAction::Install, args).await,
        PackagesCommand::Upgrade(args) => distribute(context, PackageAction::Upgrade, args).await,
        PackagesCommand::Remove(args) => distribute(context, PackageAction::Remove, args).await,
    }
}

fn show(context: &Context, package: &Package) -> String {
    match context.format {
        Format::Json => json(package),
        Format::Table => fields(&[
            ("ID", package.id.to_string()),
            ("Name", package.name.clone()),
            ("Version", package.version.clone()),
            ("Architecture", format!("{} ({})", package.architecture, package.normalized_architecture)),
            ("Format", package.format.clone()),
            ("Summary", package.summary.clone()),
            ("Maintainer", optional(&package.maintainer)),
            ("Depends", package.depends.join(", ")),
            ("Installed size", optional(&package.installed_size)),
            ("Files", package.file_count.to_string()),
            ("File", format!("{} ({} bytes, SHA-256 {})", package.file_name, package.size, package.sha256)),
            ("Uploaded", format!("{} by {}", package.uploaded_at, package.uploaded_by)),
        ]),
    }
}

async fn upload(context: &Context, file: &Path) -> anyhow::Result<String> {
    let metadata = std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if !metadata.is_file() {
        anyhow::bail!("{} is not a file", file.display());
    }
    let (body, producer) = super::files::file_body(file);
    let request = context
        .client
        .request(reqwest::Method::POST, "/packages")
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(body);
    let package: Package = context.client.send(request).await?;
    producer.await?.map_err(|message| anyhow::anyhow!(message))?;
    Ok(show(context, &package))
}

async fn build(context: &Context, args: BuildArgs) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&args.spec).with_context(|| format!("cannot read {}", args.spec.display()))?;
    let mut spec: PackageBuildSpec =
        serde_yaml::from_str(&text).with_context(|| format!("{} is not a package spec", args.spec.display()))?;
    let built: PackageBuilt = match (args.files, args.server_files) {
        (_, Some(directory)) => {
            spec.files_directory = Some(directory);
            context.client.post("/packages/build", &spec).await?
        }
        (Some(files), None) => {
            if spec.files_directory.is_some() {
                anyhow::bail!("{}: files_directory is for --server-files", args.spec.display());
            }
            let archive = std::env::temp_dir().join(format!("steward-build-{}.tar", std::process::id()));
            let written = {
                let (spec, files, archive) = (spec.clone(), files.clone(), archive.clone());
                tokio::task::spawn_blocking(move || write_build_archive(&spec, &files, &archive)).await?
            };
            let result = match written {
                Ok(()) => {
                    let (body, producer) = super::files::file_body(&archive);
                    let request = context
                        .client
                        .request(reqwest::Method::POST, "/packages/build")
                        .header(reqwest::header::CONTENT_TYPE, TAR_MEDIA_TYPE)
                        .body(body);
                    let sent = context.client.send::<PackageBuilt>(request).await;
                    let _ = producer.await;
                    sent.map_err(anyhow::Error::from)
                }
                Err(error) => Err(error),
            };
            let _ = std::fs::remove_file(&archive);
            result?
        }
        (None, None) => anyhow::bail!("give --files DIR or --server-files DIR"),
    };
    Ok(match context.format {
        Format::Json => json(&built),
        Format::Table => format!(
            "built {} {}:\n  {}  {}  ({} bytes)\n  {}  {}  ({} bytes)\n",
            built.deb.name,
            built.deb.version,
            built.deb.id,
            built.deb.file_name,
            built.deb.size,
            built.rpm.id,
            built.rpm.file_name,
            built.rpm.size
        ),
    })
}

/// Writes the build upload: `spec.json`, then `files/` and the tree under it (links stored, not followed).
fn write_build_archive(spec: &PackageBuildSpec, files: &Path, archive: &Path) -> anyhow::Result<()> {
    if !std::fs::metadata(files).with_context(|| format!("cannot read {}", files.display()))?.is_dir() {
        anyhow::bail!("{} is not a directory", files.display());
    }
    let out = std::fs::File::create(archive).with_context(|| format!("cannot create {}", archive.display()))?;
    let mut writer = TarWriter::new(std::io::BufWriter::new(out));
    let text = serde_json::to_vec_pretty(spec)?;
    let now = Timestamp::now().millis() / 1000;
    let entry = |path: String, kind: EntryKind, size: u64, mode: u32, mtime: i64| TarEntry {
        path,
        kind,
        size,
        mode,
        uid: 0,
        gid: 0,
        user: String::new(),
        group: String::new(),
        mtime,
        link_target: String::new(),
    };
    writer.append(&entry("spec.json".into(), EntryKind::File, text.len() as u64, 0o644, now), &mut text.as_slice())?;
    append_tree(&mut writer, files, "files", &entry)?;
    writer.finish()?.flush()?;
    Ok(())
}

fn append_tree<W: std::io::Write>(
    writer: &mut TarWriter<W>,
    path: &Path,
    name: &str,
    entry: &dyn Fn(String, EntryKind, u64, u32, i64) -> TarEntry,
) -> anyhow::Result<()> {
    let metadata = std::fs::symlink_metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mode = metadata.mode() & 0o7777;
    let kind = metadata.file_type();
    if kind.is_symlink() {
        let mut link = entry(name.to_string(), EntryKind::Symlink, 0, mode, metadata.mtime());
        link.link_target = std::fs::read_link(path)?
            .to_str()
            .with_context(|| format!("{}: the link's target is not UTF-8", path.display()))?
            .to_string();
        writer.append(&link, &mut std::io::empty())?;
    } else if kind.is_file() {
        let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        writer.append(&entry(name.to_string(), EntryKind::File, metadata.len(), mode, metadata.mtime()), &mut file)?;
    } else if kind.is_dir() {
        writer
            .append(&entry(name.to_string(), EntryKind::Directory, 0, mode, metadata.mtime()), &mut std::io::empty())?;
        let mut children: Vec<_> =
            std::fs::read_dir(path)?.map(|child| child.map(|child| child.file_name())).collect::<Result<_, _>>()?;
        children.sort();
        for child in children {
            let child_name =
                child.to_str().with_context(|| format!("{}: a name is not UTF-8", path.display()))?.to_string();
            append_tree(writer, &path.join(&child), &format!("{name}/{child_name}"), entry)?;
        }
    } else {
        anyhow::bail!("{}: only files, directories and symbolic links can be packaged", path.display());
    }
    Ok(())
}

async fn distribute(context: &Context, action: PackageAction, args: DistributeArgs) -> anyhow::Result<String> {
    let target = match (args.system, args.group) {
        (Some(system), None) => JobTarget::System { system },
        (None, Some(group)) => JobTarget::Group { group },
        _ => anyhow::bail!("give a SYSTEM or --group GROUP"),
    };
    let schedule = match (args.at, args.cron) {
        (Some(at), _) => Some(JobSchedule::Once {
            at: Timestamp::parse_rfc3339(&at)
                .ok_or_else(|| anyhow::anyhow!("--at {at:?} is not an RFC 3339 time such as 2026-12-24T18:00:00Z"))?,
        }),
        (None, Some(expression)) => Some(JobSchedule::Cron { expression, time_zone: args.time_zone }),
        (None, None) => None,
    };
    let body = PackageDistribute { target, action, schedule: schedule.clone(), job_name: args.job_name };
    let path = format!("/packages/{}/distribute", segment(&args.package));
    if schedule.is_some() {
        let scheduled: PackageDistributionScheduled = context.client.post(&path, &body).await?;
        return Ok(match context.format {
            Format::Json => json(&scheduled),
            Format::Table => format!(
                "scheduled job {} ({}); next run {}\n",
                scheduled.job.name,
                scheduled.job.id,
                optional(&scheduled.job.next_run_at)
            ),
        });
    }
    let result: PackageDistribution = context.client.post(&path, &body).await?;
    let output = match context.format {
        Format::Json => json(&result),
        Format::Table => {
            let mut text = String::new();
            for target in &result.targets {
                match (&target.outcome, &target.error) {
                    (Some(outcome), _) => {
                        for run in &outcome.runs {
                            text.push_str(&format!(
                                "== {}: `{}` exit code {}\n",
                                target.system,
                                run.command.join(" "),
                                optional(&run.exit_code)
                            ));
                            text.push_str(&run.stdout);
                            text.push_str(&run.stderr);
                        }
                    }
                    (None, Some(error)) => text.push_str(&format!("== {}: failed: {}\n", target.system, error.message)),
                    (None, None) => {}
                }
            }
            text.push_str(&format!("{} succeeded, {} failed\n", result.succeeded, result.failed));
            text
        }
    };
    if result.failed > 0 {
        return Err(ExitWithOutput { output, code: 1 }.into());
    }
    Ok(output)
}
