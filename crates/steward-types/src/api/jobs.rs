//! Scheduled jobs: a task (a command today) run on a system or on every member of a group, once at a time, on a
//! cron schedule in a time zone, or on demand, with a result per target for every run.

use serde::{Deserialize, Serialize};

use super::Timestamp;
use super::systems::SystemCommand;
use crate::ids::{JobId, JobRunId, SystemId};

/// What a job does on each target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum JobTask {
    /// Run a program through the system's agent (the body of `POST /systems/{system}/commands`).
    Command { command: SystemCommand },
    /// Install, upgrade or remove a package of the repository (`POST /packages/{package}/distribute`).
    Package { package: crate::ids::PackageId, action: steward_protocol::software::PackageAction },
}

/// Where a job runs: one system, or every member of a group at the time of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum JobTarget {
    System { system: String },
    Group { group: String },
}

/// When a job runs by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum JobSchedule {
    /// Once, at this time.
    Once { at: Timestamp },
    /// On a cron(5) schedule (five fields, or `@daily` and the like) in an IANA time zone (`UTC` by default).
    Cron {
        expression: String,
        #[serde(default = "default_time_zone")]
        time_zone: String,
    },
    /// Only when someone runs it (`POST /jobs/{job}/run`).
    Manual,
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

/// What happens to runs that fell due while the server was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissedRuns {
    /// One run as soon as the server is back, however many were missed (as anacron does).
    #[default]
    RunOnce,
    /// None: the missed runs are recorded as skipped and the job waits for its next time.
    Skip,
}

/// Targets a run works on at once, unless the job says.
pub const DEFAULT_JOB_CONCURRENCY: u32 = 10;
pub const MAX_JOB_CONCURRENCY: u32 = 1000;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobCreate {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub task: JobTask,
    pub target: JobTarget,
    pub schedule: JobSchedule,
    #[serde(default)]
    pub missed_runs: MissedRuns,
    /// Targets worked on at once: 1 to 1000 (10 by default).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// A disabled job runs only on demand (true by default).
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: JobId,
    pub name: String,
    pub description: String,
    pub task: JobTask,
    pub target: JobTarget,
    pub schedule: JobSchedule,
    pub missed_runs: MissedRuns,
    pub concurrency: u32,
    pub enabled: bool,
    /// When it runs next by itself; none for a manual, disabled or finished one-off job.
    pub next_run_at: Option<Timestamp>,
    pub created_by: String,
    pub created_at: Timestamp,
}

/// `POST /api/v1/jobs/{job}/enabled`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobEnable {
    pub enabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobTrigger {
    /// Its schedule came due.
    Schedule,
    /// Someone ran it.
    Manual,
    /// It fell due while the server was down and ran when the server came back.
    Missed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobRunState {
    Running,
    /// Every target succeeded.
    Succeeded,
    /// Some targets succeeded, some failed.
    Partial,
    /// Every target failed, or there was none.
    Failed,
    /// It fell due while the server was down and the job skips missed runs.
    Skipped,
    /// The server stopped while it ran.
    Interrupted,
}

impl JobRunState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobRunState::Running => "running",
            JobRunState::Succeeded => "succeeded",
            JobRunState::Partial => "partial",
            JobRunState::Failed => "failed",
            JobRunState::Skipped => "skipped",
            JobRunState::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Running, Self::Succeeded, Self::Partial, Self::Failed, Self::Skipped, Self::Interrupted]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

impl JobTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            JobTrigger::Schedule => "schedule",
            JobTrigger::Manual => "manual",
            JobTrigger::Missed => "missed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Schedule, Self::Manual, Self::Missed].into_iter().find(|trigger| trigger.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    Running,
    Succeeded,
    Failed,
}

/// What one target of a run did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobTargetResult {
    pub system: String,
    pub system_id: SystemId,
    pub state: TargetState,
    pub exit_code: Option<i32>,
    /// Why it failed when it did not run to an exit code of 0: offline, timed out, killed by a signal, refused.
    pub error: Option<String>,
    /// The command's output (at most 64 KiB of each is kept).
    pub stdout: String,
    pub stderr: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRun {
    pub id: JobRunId,
    pub job: String,
    pub trigger: JobTrigger,
    /// The time the schedule named (for scheduled and missed runs).
    pub scheduled_for: Option<Timestamp>,
    pub state: JobRunState,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub targets: u32,
    pub succeeded: u32,
    pub failed: u32,
    /// Per target (only in `GET /job-runs/{run}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<JobTargetResult>,
}
