//! Administration of running systems through their agents: processes (list, signal), services (list, start,
//! stop, restart), the network configuration, and the facts tree; on one system or on every member of a group.

use serde::{Deserialize, Serialize};
pub use steward_protocol::system_admin::{
    DnsConfiguration, MAX_PID, NetworkConfiguration, ProcessInfo, ProcessListing, Route, ServiceActionOutcome,
    ServiceInfo, ServiceListing, ServiceManager, ServiceVerb, SignalOutcome, SignalSpec,
};

use super::Timestamp;
use crate::ErrorBody;
use crate::ids::SystemId;
use crate::validate::ValidationError;

/// One process of a system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// The user's name, or the number when `/etc/passwd` has none.
    pub user: String,
    /// `R` running, `S` sleeping, `D` disk wait, `Z` zombie, `T` stopped, `t` traced, `I` idle kernel thread.
    pub state: String,
    /// CPU use during the listing's sample (`sample_ms`), in percent of one CPU as `top` shows it (so above 100
    /// for a process using several CPUs).
    pub cpu_percent: f64,
    /// CPU time used since the process started, in seconds.
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    /// The start time in clock ticks after boot: pass it back with the PID to signal this process, so a PID that
    /// was reused since the listing is never signalled.
    pub start_time: u64,
    /// The start time as a date.
    pub started_at: Timestamp,
    /// The command name (at most 15 characters: the kernel cuts it).
    pub name: String,
    /// The command line (at most 4096 bytes; `[name]` for a kernel thread).
    pub command: String,
}

/// The processes of a system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProcessList {
    /// How long the CPU sample lasted, in milliseconds.
    pub sample_ms: u64,
    pub processes: Vec<Process>,
}

impl ProcessList {
    /// The agent's listing in the API's terms: CPU ticks become a percentage and seconds.
    pub fn from_listing(listing: ProcessListing) -> Self {
        let per_second = listing.ticks_per_second.max(1) as f64;
        let sample_seconds = (listing.sample_ms.max(1) as f64) / 1000.0;
        let processes = listing
            .processes
            .into_iter()
            .map(|process| Process {
                pid: process.pid,
                ppid: process.ppid,
                uid: process.uid,
                user: process.user,
                state: process.state,
                cpu_percent: round_to_tenth(process.sample_cpu_ticks as f64 / per_second / sample_seconds * 100.0),
                cpu_seconds: (process.cpu_ticks as f64 / per_second * 100.0).round() / 100.0,
                rss_bytes: process.rss_bytes,
                start_time: process.start_time,
                started_at: Timestamp(process.started_at_ms),
                name: process.name,
                command: process.command,
            })
            .collect();
        Self { sample_ms: listing.sample_ms, processes }
    }
}

fn round_to_tenth(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn default_signal() -> String {
    "TERM".into()
}

/// The body of `POST /api/v1/systems/{system}/processes/{pid}/signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessSignal {
    /// `TERM` (the default), `KILL`, `HUP`, `INT`, `USR1`, `USR2`, `STOP`, `CONT` (with or without `SIG`), or a
    /// number from 1 to 64.
    #[serde(default = "default_signal")]
    #[schema(default = "TERM")]
    pub signal: String,
    /// The process's `start_time` as listed; the agent refuses when the PID is now another process's.
    pub start_time: u64,
}

impl ProcessSignal {
    pub fn validate(&self) -> Result<(), ValidationError> {
        signal("signal", &self.signal)
    }
}

/// The body of `POST /api/v1/groups/{group}/processes/signal`: signal every process of a name on every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupProcessSignal {
    /// The process name: the command name or the program's file name (`sshd`), without `/`.
    pub name: String,
    #[serde(default = "default_signal")]
    #[schema(default = "TERM")]
    pub signal: String,
}

impl GroupProcessSignal {
    pub fn validate(&self) -> Result<(), ValidationError> {
        steward_protocol::system_admin::check_process_name(&self.name)
            .map_err(|reason| ValidationError::new("name", reason))?;
        signal("signal", &self.signal)
    }
}

/// Checks a signal as the agent reads it.
pub fn signal(field: &str, text: &str) -> Result<(), ValidationError> {
    SignalSpec::parse(text).map(|_| ()).map_err(|reason| ValidationError::new(field, reason))
}

/// Checks a process ID: 2 to [`MAX_PID`] (process 1 is never signalled).
pub fn pid(field: &str, pid: u32) -> Result<(), ValidationError> {
    match pid {
        0 => Err(ValidationError::new(field, "0 is not a process ID")),
        1 => Err(ValidationError::new(field, "process 1 (the init process) is never signalled")),
        pid if pid > MAX_PID => Err(ValidationError::new(field, format!("{pid} is above the largest PID, {MAX_PID}"))),
        _ => Ok(()),
    }
}

/// Checks a service name (see `steward_protocol::system_admin::check_service_name`).
pub fn service_name(field: &str, name: &str) -> Result<(), ValidationError> {
    steward_protocol::system_admin::check_service_name(name).map_err(|reason| ValidationError::new(field, reason))
}

/// What an action did on one member of a group: its outcome, or the error it met (offline, refused, failed).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetResult<T> {
    pub system_id: SystemId,
    pub system: String,
    pub outcome: Option<T>,
    /// The error as a call on that one system would have answered it.
    pub error: Option<ErrorBody>,
}

/// What an action did on every member of a group.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupActionResult<T> {
    pub group: String,
    /// How many members the action succeeded on, and failed on.
    pub succeeded: u32,
    pub failed: u32,
    /// One entry per member, ordered by system name.
    pub targets: Vec<TargetResult<T>>,
}

/// The facts a system reported, as a tree: the document the group query language is evaluated against
/// (`docs/query-language.md` lists its fields).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SystemFacts {
    pub system_id: SystemId,
    pub system: String,
    /// When the inventory the facts come from was last updated; `null` before the agent first reported.
    pub inventory_updated_at: Option<Timestamp>,
    #[schema(value_type = Object)]
    pub facts: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_become_percent_and_seconds() {
        let listing = ProcessListing {
            sample_ms: 500,
            ticks_per_second: 100,
            processes: vec![ProcessInfo {
                pid: 7,
                sample_cpu_ticks: 25,
                cpu_ticks: 1234,
                started_at_ms: 1_767_225_600_000,
                ..ProcessInfo::default()
            }],
        };
        let list = ProcessList::from_listing(listing);
        assert_eq!(list.processes[0].cpu_percent, 50.0);
        assert_eq!(list.processes[0].cpu_seconds, 12.34);
        assert_eq!(list.processes[0].started_at.to_rfc3339(), "2026-01-01T00:00:00.000Z");
    }

    #[test]
    fn bodies_are_checked_naming_the_field() {
        let body: ProcessSignal = serde_json::from_value(serde_json::json!({"start_time": 5})).expect("minimal");
        assert_eq!(body.signal, "TERM");
        assert_eq!(body.validate(), Ok(()));
        let bad = ProcessSignal { signal: "SEGV".into(), start_time: 5 };
        assert_eq!(bad.validate().expect_err("bad signal").field, "signal");
        assert!(serde_json::from_value::<ProcessSignal>(serde_json::json!({"signal": "TERM"})).is_err());
        let group = GroupProcessSignal { name: "a/b".into(), signal: "KILL".into() };
        assert_eq!(group.validate().expect_err("bad name").field, "name");
        assert_eq!(pid("pid", 1).expect_err("init").field, "pid");
        assert!(pid("pid", 0).is_err() && pid("pid", MAX_PID + 1).is_err() && pid("pid", 2).is_ok());
        assert!(service_name("service", "../x").is_err() && service_name("service", "cron").is_ok());
    }
}
