//! The package repository, software distribution and system accounts: packages uploaded or built into the
//! server's repository, distributed to systems and groups (install, upgrade, remove) now or as a scheduled job,
//! and users and groups of systems listed and changed.

use serde::{Deserialize, Serialize};
pub use steward_protocol::software::{
    AccountChange, AccountListing, ExpirySettings, GroupAccount, PackageAction, Secret, ToolOutcome, ToolRun,
    UserAccount, UserModification, UserSettings,
};

use super::Timestamp;
use super::jobs::{JobSchedule, JobTarget};
use super::system_admin::GroupActionResult;
use crate::ids::{PackageId, SystemId};

/// The largest package the repository accepts (4 GiB).
pub const MAX_PACKAGE_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// A package in the repository, with the metadata read from its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Package {
    pub id: PackageId,
    /// `deb` or `rpm`.
    pub format: String,
    pub name: String,
    /// Debian's `Version` or RPM's `[epoch:]version-release`, as the package has it.
    pub version: String,
    /// As the package spells it (`amd64`, `x86_64`, `all`, `noarch`, ...).
    pub architecture: String,
    /// The same in the form both formats share (`x86_64`, `all`, ...).
    pub normalized_architecture: String,
    pub summary: String,
    pub description: String,
    pub maintainer: Option<String>,
    pub vendor: Option<String>,
    /// Dependencies in Debian's syntax (`libc6 (>= 2.36)`, `a | b`); RPM's own `rpmlib(...)` requirements left out.
    pub depends: Vec<String>,
    pub installed_size: Option<u64>,
    pub file_count: u64,
    /// The package file: its size, SHA-256 and the name a download or install uses.
    pub size: u64,
    pub sha256: String,
    pub file_name: String,
    pub uploaded_by: String,
    pub uploaded_at: Timestamp,
}

/// Install scripts of a package to build: shell text run by `/bin/sh`, or by the program of a `#!` line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageScripts {
    #[serde(default)]
    pub pre_install: Option<String>,
    #[serde(default)]
    pub post_install: Option<String>,
    #[serde(default)]
    pub pre_remove: Option<String>,
    #[serde(default)]
    pub post_remove: Option<String>,
}

/// The metadata of a package to build (a `.deb` and an `.rpm` from one tree of files): the JSON body of `POST
/// /packages/build` with `files_directory`, or the `spec.json` of its tar upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageBuildSpec {
    pub name: String,
    #[serde(default)]
    pub epoch: Option<u32>,
    pub version: String,
    /// The package release (Debian revision); `1` by default.
    #[serde(default = "default_release")]
    pub release: String,
    /// `x86_64`, `s390x`, `aarch64`, `ppc64le` or `all` (either format's spelling is accepted too).
    pub architecture: String,
    pub summary: String,
    #[serde(default)]
    pub description: String,
    pub maintainer: String,
    #[serde(default)]
    pub license: Option<String>,
    /// Dependencies in Debian's syntax: `libc6 (>= 2.36)`, `a | b`.
    #[serde(default)]
    pub depends: Vec<String>,
    #[serde(default)]
    pub scripts: PackageScripts,
    /// The time every file gets, in seconds since the epoch; now by default.
    #[serde(default)]
    pub timestamp: Option<u64>,
    /// Administrators only: a directory on the server whose content is installed at `/`. Without it, the body is
    /// a tar archive holding `spec.json` and the tree under `files/`.
    #[serde(default)]
    pub files_directory: Option<String>,
}

fn default_release() -> String {
    "1".to_owned()
}

/// The two packages a build stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackageBuilt {
    pub deb: Package,
    pub rpm: Package,
}

/// The body of `POST /packages/{package}/distribute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageDistribute {
    pub target: JobTarget,
    pub action: PackageAction,
    /// Run later as a job (its runs keep a result per target); now, answering the results, when absent.
    #[serde(default)]
    pub schedule: Option<JobSchedule>,
    /// The name of the job a schedule creates; `<package>-<action>-<time>` by default.
    #[serde(default)]
    pub job_name: Option<String>,
}

/// What a package change did on one system: the tool's commands with their exit codes and exact output.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackageTargetOutcome {
    pub system: String,
    pub system_id: SystemId,
    pub package: String,
    pub action: PackageAction,
    pub succeeded: bool,
    pub runs: Vec<ToolRun>,
}

/// The answer of an immediate distribution: one result per target (a single system is a target too).
pub type PackageDistribution = GroupActionResult<PackageTargetOutcome>;

/// The answer of `POST /packages/{package}/distribute` with a schedule: the job created.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackageDistributionScheduled {
    pub job: super::jobs::Job,
}

/// What an account change did on one system.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountChangeOutcome {
    pub system: String,
    pub system_id: SystemId,
    /// `create_user`, `lock`, ...
    pub change: String,
    /// The user or group changed.
    pub subject: String,
    pub succeeded: bool,
    /// The tools' commands (never their input), exit codes and exact output.
    pub runs: Vec<ToolRun>,
}
