//! The package repository and software distribution.
//!
//! Files live in `DATA/packages/<sha256>.<deb|rpm>`: an upload is streamed to a temporary name in that directory
//! (`.upload-*`), its digest computed on the way and its size capped, its metadata read with
//! `steward_package::read_package`, and only then renamed to its final name. A build (`build_packages`) writes a
//! `.deb` and an `.rpm` from one spec and tree in a temporary directory there, then stores both the same way.
//!
//! Distributing a package to a system ([`apply_to_system`]) stages a directory on the agent, pushes the file there
//! through the file transfer of `app/files.rs`, asks the agent to run the system's tool, and then asks for an
//! inventory refresh so the inventory shows the change. The tool's commands, exit codes and exact output are the
//! result. Immediate distributions (`api/packages.rs`) and scheduled ones (a job whose task is `package`,
//! `app/scheduler`) both go through it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use steward_package::{PackageFormat, PackageInfo, PackageSpec};
use steward_protocol::files::{PushBegin, StreamFormat, hex_digest};
use steward_protocol::software::{PackageAction, PackageOperation};
use steward_protocol::{AgentRequest, AgentResponse, ServerMessage};
use steward_types::api::Timestamp;
use steward_types::api::packages::{Package, PackageBuildSpec, PackageTargetOutcome};
use steward_types::api::systems::SystemSummary;
use steward_types::{PackageId, SystemId};
use tokio::io::AsyncWriteExt as _;

use crate::app::files::{ChunkSource, FileSource, push};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How long the agent may take to make a staging directory.
const STAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the package tool may run (the agent's own limit is 1800 s), plus a margin for its answer.
const TOOL_TIMEOUT: Duration = Duration::from_secs(1800 + 30);
/// The largest `spec.json` of a build upload.
const MAX_SPEC_BYTES: u64 = 1024 * 1024;
/// The most entries a build upload's tree may have.
const MAX_TREE_ENTRIES: usize = 100_000;

/// The repository directory.
pub fn repository(state: &AppState) -> PathBuf {
    state.data_dir.join("packages")
}

/// The file of a stored package.
pub fn package_file(state: &AppState, package: &Package) -> PathBuf {
    repository(state).join(format!("{}.{}", package.sha256, package.format))
}

/// A file received into the repository directory under a temporary name, removed when dropped unless kept.
pub struct Received {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    kept: bool,
}

impl Drop for Received {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A fresh temporary name in the repository directory (created if needed).
async fn temporary(state: &AppState, prefix: &str) -> ApiResult<PathBuf> {
    let directory = repository(state);
    tokio::fs::create_dir_all(&directory)
        .await
        .map_err(|error| ApiError::internal(format!("cannot create {}: {error}", directory.display())))?;
    Ok(directory.join(format!(".{prefix}-{:016x}", rand::random::<u64>())))
}

/// Streams `source` to a temporary file, refusing more than `limit` bytes (nothing is left then).
pub async fn receive(state: &AppState, mut source: impl ChunkSource, limit: u64) -> ApiResult<Received> {
    let path = temporary(state, "upload").await?;
    let failed = |error: std::io::Error| ApiError::internal(format!("cannot store the upload: {error}"));
    let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await.map_err(failed)?;
    let mut received = Received { path, bytes: 0, sha256: String::new(), kept: false };
    let mut digest = Sha256::new();
    while let Some(data) = source.next_bytes().await {
        let data = data.map_err(|message| ApiError::bad_request(format!("reading the upload failed: {message}")))?;
        received.bytes += data.len() as u64;
        if received.bytes > limit {
            return Err(ApiError::new(
                steward_types::ErrorCode::PayloadTooLarge,
                format!("the upload is larger than the limit of {limit} bytes"),
            ));
        }
        digest.update(&data);
        file.write_all(&data).await.map_err(failed)?;
    }
    file.sync_all().await.map_err(failed)?;
    received.sha256 = hex_digest(&digest.finalize());
    Ok(received)
}

/// Reads the metadata of the package in `path`; a file that is not a package is a 422 naming the problem.
pub async fn read_metadata(path: &Path) -> ApiResult<PackageInfo> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)
            .map_err(|error| ApiError::internal(format!("cannot read {}: {error}", path.display())))?;
        steward_package::read_package(std::io::BufReader::new(file))
            .map_err(|error| ApiError::validation("package", crate::error_chain(&error)))
    })
    .await
    .map_err(|error| ApiError::internal(format!("reading the package failed: {error}")))?
}

/// The repository record of a package read as `info`.
pub fn describe(info: &PackageInfo, received: &Received, uploaded_by: &str) -> Package {
    let format = match info.format {
        PackageFormat::Deb => "deb",
        PackageFormat::Rpm => "rpm",
    };
    let file_name = match info.format {
        PackageFormat::Deb => format!("{}_{}_{}.deb", info.name, info.version.replace(':', "%3a"), info.architecture),
        PackageFormat::Rpm => format!("{}-{}.{}.rpm", info.name, info.version.replace(':', "_"), info.architecture),
    };
    // The name becomes a path on the agents: only characters package names and versions normally have.
    let file_name: String = file_name
        .chars()
        .map(
            |character| if character.is_ascii_alphanumeric() || "._+~%-".contains(character) { character } else { '_' },
        )
        .collect();
    Package {
        id: PackageId::new(),
        format: format.to_owned(),
        name: info.name.clone(),
        version: info.version.clone(),
        architecture: info.architecture.clone(),
        normalized_architecture: info.normalized_architecture.clone(),
        summary: info.summary.clone(),
        description: info.description.clone(),
        maintainer: info.maintainer.clone(),
        vendor: info.vendor.clone(),
        depends: info
            .depends
            .iter()
            .filter(|dependency| !dependency.internal)
            .map(|dependency| dependency.to_deb_string())
            .collect(),
        installed_size: info.installed_size,
        file_count: info.file_count,
        size: received.bytes,
        sha256: received.sha256.clone(),
        file_name,
        uploaded_by: uploaded_by.to_owned(),
        uploaded_at: Timestamp::now(),
    }
}

/// Adds `package` to the repository inside `tx`: refused with 409 when the same format, name, version and
/// architecture is there already; the received file is renamed to its final name.
pub async fn add(
    state: &AppState,
    tx: &mut steward_store::Conn,
    package: &Package,
    received: &mut Received,
) -> ApiResult<()> {
    if let Some(existing) =
        steward_store::packages::find_same(tx, &package.format, &package.name, &package.version, &package.architecture)
            .await?
    {
        return Err(ApiError::conflict(format!(
            "the repository already has {} {} {} ({}) as package {}",
            package.name, package.version, package.architecture, package.format, existing.id
        ))
        .with_details(serde_json::json!({ "reason": "duplicate_package", "package": existing.id })));
    }
    let destination = package_file(state, package);
    tokio::fs::rename(&received.path, &destination)
        .await
        .map_err(|error| ApiError::internal(format!("cannot store the package file: {error}")))?;
    received.kept = true;
    steward_store::packages::insert(tx, package).await?;
    Ok(())
}

/// Removes a package's file when no other record uses it (call after the record is gone).
pub async fn remove_file_if_unused(state: &AppState, package: &Package) {
    let unused = match state.store.conn().await {
        Ok(mut conn) => {
            steward_store::packages::count_by_sha256(&mut conn, &package.sha256).await.is_ok_and(|n| n == 0)
        }
        Err(_) => false,
    };
    if unused {
        let _ = tokio::fs::remove_file(package_file(state, package)).await;
    }
}

/// The `PackageSpec` of a build request whose files are in `files`.
pub fn package_spec(spec: &PackageBuildSpec, files: PathBuf) -> ApiResult<PackageSpec> {
    let architecture = spec
        .architecture
        .parse()
        .map_err(|error: steward_package::PackageError| ApiError::validation("architecture", error.to_string()))?;
    let depends = if spec.depends.is_empty() {
        Vec::new()
    } else {
        steward_package::parse_deb_dependencies(&spec.depends.join(", "))
            .map_err(|error| ApiError::validation("depends", error.to_string()))?
    };
    let timestamp = spec.timestamp.unwrap_or_else(|| Timestamp::now().millis().max(0) as u64 / 1000);
    Ok(PackageSpec {
        name: spec.name.clone(),
        epoch: spec.epoch,
        version: spec.version.clone(),
        release: spec.release.clone(),
        architecture,
        summary: spec.summary.clone(),
        description: spec.description.clone(),
        maintainer: spec.maintainer.clone(),
        license: spec.license.clone(),
        depends,
        files,
        scripts: steward_package::Scripts {
            pre_install: spec.scripts.pre_install.clone(),
            post_install: spec.scripts.post_install.clone(),
            pre_remove: spec.scripts.pre_remove.clone(),
            post_remove: spec.scripts.post_remove.clone(),
        },
        timestamp,
    })
}

/// A scratch directory in the repository directory, removed with everything in it when dropped.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn scratch(state: &AppState) -> ApiResult<Scratch> {
    let path = temporary(state, "build").await?;
    tokio::fs::create_dir(&path)
        .await
        .map_err(|error| ApiError::internal(format!("cannot create a build directory: {error}")))?;
    Ok(Scratch(path))
}

/// Unpacks a build upload (a tar archive holding `spec.json` and the tree under `files/`) into `into`; returns
/// the spec and the tree's directory.
pub async fn unpack_build_upload(archive: PathBuf, into: PathBuf) -> ApiResult<(PackageBuildSpec, PathBuf)> {
    tokio::task::spawn_blocking(move || unpack(&archive, &into))
        .await
        .map_err(|error| ApiError::internal(format!("unpacking the upload failed: {error}")))?
}

fn unpack(archive: &Path, into: &Path) -> ApiResult<(PackageBuildSpec, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    use steward_protocol::files::EntryKind;
    use steward_protocol::tar::{TarReader, relative_components};
    let file =
        std::fs::File::open(archive).map_err(|error| ApiError::internal(format!("cannot read the upload: {error}")))?;
    let mut reader = TarReader::new(std::io::BufReader::new(file));
    let tree = into.join("files");
    std::fs::create_dir(&tree).map_err(|error| ApiError::internal(format!("cannot unpack: {error}")))?;
    let bad = |message: String| ApiError::validation("body", message);
    let io = |error: std::io::Error| ApiError::internal(format!("cannot unpack the upload: {error}"));
    let mut spec_text: Option<Vec<u8>> = None;
    let mut entries = 0usize;
    while let Some(entry) = reader.next_entry().map_err(|error| bad(format!("the tar archive: {error}")))? {
        entries += 1;
        if entries > MAX_TREE_ENTRIES {
            return Err(bad(format!("the archive has more than {MAX_TREE_ENTRIES} entries")));
        }
        let components = relative_components(&entry.path).map_err(bad)?;
        match components.as_slice() {
            [] => continue,
            ["spec.json"] => {
                if entry.kind != EntryKind::File || entry.size > MAX_SPEC_BYTES {
                    return Err(bad(format!("spec.json must be a file of at most {MAX_SPEC_BYTES} bytes")));
                }
                let mut text = Vec::new();
                reader.entry_data().read_to_end(&mut text).map_err(io)?;
                spec_text = Some(text);
            }
            ["files"] => continue,
            ["files", rest @ ..] => {
                let mut path = tree.clone();
                for (index, component) in rest.iter().enumerate() {
                    path.push(component);
                    // Nothing is ever written through a symbolic link the archive made.
                    if index + 1 < rest.len()
                        && std::fs::symlink_metadata(&path).is_ok_and(|metadata| metadata.file_type().is_symlink())
                    {
                        return Err(bad(format!("{}: a parent directory is a symbolic link", entry.path)));
                    }
                }
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                match entry.kind {
                    EntryKind::Directory => {
                        std::fs::create_dir_all(&path).map_err(io)?;
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(entry.mode & 0o7777))
                            .map_err(io)?;
                    }
                    EntryKind::File => {
                        let mut out = std::fs::File::create(&path).map_err(io)?;
                        std::io::copy(&mut reader.entry_data(), &mut out).map_err(io)?;
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(entry.mode & 0o7777))
                            .map_err(io)?;
                    }
                    EntryKind::Symlink => {
                        std::os::unix::fs::symlink(&entry.link_target, &path).map_err(io)?;
                    }
                }
            }
            _ => {
                return Err(bad(format!(
                    "{}: the archive may hold only spec.json and the files/ directory",
                    entry.path
                )));
            }
        }
    }
    let text = spec_text.ok_or_else(|| bad("the archive has no spec.json".into()))?;
    let spec: PackageBuildSpec =
        serde_json::from_slice(&text).map_err(|error| ApiError::validation("spec.json", error.to_string()))?;
    if spec.files_directory.is_some() {
        return Err(ApiError::validation("spec.json", "files_directory is for a JSON body, not an upload"));
    }
    Ok((spec, tree))
}

/// Builds the `.deb` and the `.rpm` of `spec` into `scratch`; returns both files as received ones.
pub async fn build(spec: PackageSpec, scratch: &Path) -> ApiResult<[Received; 2]> {
    let deb = scratch.join("package.deb");
    let rpm = scratch.join("package.rpm");
    let (deb_out, rpm_out) = (deb.clone(), rpm.clone());
    tokio::task::spawn_blocking(move || -> ApiResult<()> {
        let invalid = |error: steward_package::PackageError| match error {
            steward_package::PackageError::InvalidSpec { field, message } => ApiError::validation(field, message),
            other => ApiError::internal(crate::error_chain(&other)),
        };
        steward_package::build_deb(&spec, &deb_out).map_err(invalid)?;
        steward_package::build_rpm(&spec, &rpm_out).map_err(invalid)
    })
    .await
    .map_err(|error| ApiError::internal(format!("the build failed: {error}")))??;
    let digest = |path: PathBuf| -> ApiResult<Received> {
        let mut file = std::fs::File::open(&path).map_err(|error| ApiError::internal(error.to_string()))?;
        let mut digest = Sha256::new();
        let bytes = std::io::copy(&mut file, &mut digest).map_err(|error| ApiError::internal(error.to_string()))?;
        Ok(Received { path, bytes, sha256: hex_digest(&digest.finalize()), kept: false })
    };
    Ok([digest(deb)?, digest(rpm)?])
}

/// The package's record.
pub async fn find(state: &AppState, id: &str) -> ApiResult<Package> {
    let parsed = PackageId::parse(id).ok_or_else(|| ApiError::not_found("package", id))?;
    let mut conn = state.store.conn().await?;
    steward_store::packages::get(&mut conn, parsed).await?.ok_or_else(|| ApiError::not_found("package", id))
}

/// Installs, upgrades or removes `package` on `system`: stage, push, run the tool, refresh the inventory. An
/// error means the tool did not run (offline, refused, transfer failed); a tool that failed is an outcome with
/// `succeeded = false` and its exact output.
pub async fn apply_to_system(
    state: &AppState,
    package: &Package,
    action: PackageAction,
    system: &SystemSummary,
) -> ApiResult<PackageTargetOutcome> {
    let format = if package.format == "rpm" {
        steward_protocol::software::PackageFormat::Rpm
    } else {
        steward_protocol::software::PackageFormat::Deb
    };
    let file =
        if action == PackageAction::Remove { None } else { Some(stage_and_push(state, package, system.id).await?) };
    let operation = PackageOperation { action, format, name: package.name.clone(), file };
    let outcome = match state.agents.request(system.id, AgentRequest::Package(operation), TOOL_TIMEOUT).await? {
        AgentResponse::Tool(outcome) => outcome,
        other => {
            tracing::error!(system = %system.id, ?other, "the agent answered a package request with something else");
            return Err(ApiError::internal("the agent answered a package request with something else"));
        }
    };
    // The agent notices the dpkg and rpm databases change by itself; asking spares the wait and covers a root
    // the agent does not watch.
    state.agents.send(system.id, ServerMessage::RefreshInventory { full: false });
    Ok(PackageTargetOutcome {
        system: system.name.clone(),
        system_id: system.id,
        package: format!("{} {}", package.name, package.version),
        action,
        succeeded: outcome.succeeded(),
        runs: outcome.runs,
    })
}

/// Stages a directory on the agent and pushes the package file into it; returns the file's path there.
async fn stage_and_push(state: &AppState, package: &Package, system: SystemId) -> ApiResult<String> {
    let directory = match state.agents.request(system, AgentRequest::PackageStage, STAGE_TIMEOUT).await? {
        AgentResponse::PackageStaged(staged) => staged.directory,
        other => {
            tracing::error!(%system, ?other, "the agent answered a staging request with something else");
            return Err(ApiError::internal("the agent answered a staging request with something else"));
        }
    };
    let path = format!("{}/{}", directory.trim_end_matches('/'), package.file_name);
    let file = tokio::fs::File::open(package_file(state, package))
        .await
        .map_err(|error| ApiError::internal(format!("cannot read the package file: {error}")))?;
    let begin =
        PushBegin { path: path.clone(), format: StreamFormat::File, mode: Some(0o600), owner: None, mtime: None };
    push(&state.agents, system, begin, &mut FileSource(file), Some(&package.sha256)).await?;
    Ok(path)
}
