//! Requests for the administration of a running system: its processes (list, signal), its services (list, start,
//! stop, restart) and its network configuration (interfaces, routes, DNS), with the agent's answers.
//!
//! These travel in [`AgentRequest`](crate::AgentRequest) and [`AgentResponse`](crate::AgentResponse) like the
//! other requests; they were added without a protocol version: an older agent answers them with
//! `AgentResponse::Error` ("does not know this request"), and an older server never sends them.
//!
//! Rules both ends check (the server before sending, the agent again before acting) live here: the signals one
//! may send ([`SignalSpec::parse`]), what a service name may be ([`check_service_name`]), what a process name may
//! be ([`check_process_name`]) and the range of process IDs ([`MAX_PID`]).

use serde::{Deserialize, Serialize};

use crate::inventory::NetworkInterface;

/// The largest process ID Linux hands out (`PID_MAX_LIMIT` on 64-bit systems).
pub const MAX_PID: u32 = 4_194_304;

/// The most bytes of a process's command line the agent reports; the rest is cut (and `…` appended).
pub const MAX_PROCESS_COMMAND_BYTES: usize = 4096;

/// The longest service name accepted (systemd's limit for unit names).
pub const MAX_SERVICE_NAME_BYTES: usize = 255;

/// The longest process name accepted for signalling by name (a file name's limit).
pub const MAX_PROCESS_NAME_BYTES: usize = 255;

/// All processes of the system at the end of a short CPU sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProcessListing {
    /// How long the CPU sample lasted, in milliseconds: `sample_cpu_ticks` of each process were used in it.
    pub sample_ms: u64,
    /// The kernel's clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of every `*_ticks` field.
    pub ticks_per_second: u64,
    pub processes: Vec<ProcessInfo>,
}

/// One process, from `/proc/PID/{stat,status,cmdline}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    /// The real user ID, and its name from `/etc/passwd` (the number when it has none).
    pub uid: u32,
    pub user: String,
    /// The state letter of `/proc/PID/stat`: `R` running, `S` sleeping, `D` disk wait, `Z` zombie, `T` stopped,
    /// `t` traced, `I` idle kernel thread, `X` dead.
    pub state: String,
    /// User and system CPU time used since the process started.
    pub cpu_ticks: u64,
    /// User and system CPU time used during the listing's sample (all of it for a process started during it).
    pub sample_cpu_ticks: u64,
    /// Resident memory.
    pub rss_bytes: u64,
    /// When the process started, in clock ticks after boot (`/proc/PID/stat` field 22). With the PID it names
    /// one process for good: a PID the kernel hands out again comes with another start time.
    pub start_time: u64,
    /// When the process started, in milliseconds since the Unix epoch (boot time plus `start_time`).
    pub started_at_ms: i64,
    /// The command name of `/proc/PID/comm` (at most 15 bytes: the kernel cuts it).
    pub name: String,
    /// The arguments of `/proc/PID/cmdline` joined by spaces, at most [`MAX_PROCESS_COMMAND_BYTES`]; for a
    /// kernel thread (no arguments) its name in brackets, as `ps` shows it.
    pub command: String,
}

/// Send `signal` to process `pid` if it is still the process that started at `start_time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalProcess {
    pub pid: u32,
    /// The process's `start_time` as listed.
    pub start_time: u64,
    /// A signal as [`SignalSpec::parse`] reads it (`TERM`, `SIGKILL`, `10`).
    pub signal: String,
}

/// Send `signal` to every process whose name is `name`: its command name (`/proc/PID/comm`) or the file name of
/// its program (the last part of its first argument). PID 1 and the agent itself are never signalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalProcessesByName {
    pub name: String,
    pub signal: String,
}

/// What signalling did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignalOutcome {
    /// The number of the signal sent.
    pub signal: i32,
    /// How many processes matched.
    pub matched: u32,
    /// How many were signalled.
    pub signalled: u32,
    /// The PIDs signalled.
    pub pids: Vec<u32>,
    /// Why the others were not (one line each, naming the PID).
    pub errors: Vec<String>,
}

/// The signals one may name; any other is given by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedSignal {
    Hup,
    Int,
    Kill,
    Usr1,
    Usr2,
    Term,
    Cont,
    Stop,
}

impl NamedSignal {
    pub const ALL: [NamedSignal; 8] = [
        NamedSignal::Hup,
        NamedSignal::Int,
        NamedSignal::Kill,
        NamedSignal::Usr1,
        NamedSignal::Usr2,
        NamedSignal::Term,
        NamedSignal::Cont,
        NamedSignal::Stop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NamedSignal::Hup => "HUP",
            NamedSignal::Int => "INT",
            NamedSignal::Kill => "KILL",
            NamedSignal::Usr1 => "USR1",
            NamedSignal::Usr2 => "USR2",
            NamedSignal::Term => "TERM",
            NamedSignal::Cont => "CONT",
            NamedSignal::Stop => "STOP",
        }
    }
}

/// A signal by name or by number. Names are resolved on the agent, whose architecture decides their numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalSpec {
    Named(NamedSignal),
    /// 1 to 64.
    Number(u8),
}

impl SignalSpec {
    /// Reads `TERM`, `SIGTERM`, `term` (the names of [`NamedSignal`]) or a number from 1 to 64. The error says what
    /// is accepted.
    pub fn parse(text: &str) -> Result<SignalSpec, String> {
        let trimmed = text.trim();
        if let Ok(number) = trimmed.parse::<u32>() {
            return match u8::try_from(number) {
                Ok(number @ 1..=64) => Ok(SignalSpec::Number(number)),
                _ => Err(format!("signal {number} is out of range: signals are numbered 1 to 64")),
            };
        }
        let upper = trimmed.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        NamedSignal::ALL.into_iter().find(|signal| signal.name() == bare).map(SignalSpec::Named).ok_or_else(|| {
            let names: Vec<&str> = NamedSignal::ALL.iter().map(|signal| signal.name()).collect();
            format!("{text:?} is not a signal: use one of {} or a number from 1 to 64", names.join(", "))
        })
    }
}

/// Checks a service's name: 1 to 255 bytes of letters, digits and `_ . @ : - \` (systemd escapes use `\`), not
/// starting with `-` or `.`. So it can never be a path, an option, nor `..`.
pub fn check_service_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_SERVICE_NAME_BYTES {
        return Err(format!("a service name has 1 to {MAX_SERVICE_NAME_BYTES} characters"));
    }
    if name.starts_with('-') || name.starts_with('.') {
        return Err(format!("service name {name:?} must not start with '-' or '.'"));
    }
    if let Some(bad) =
        name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | ':' | '-' | '\\')))
    {
        return Err(format!(
            "service name {name:?} contains {bad:?}: use letters, digits and _ . @ : - \\ (no '/', no spaces)"
        ));
    }
    Ok(())
}

/// Checks a process name for signalling by name: 1 to 255 bytes, no `/`, no control character.
pub fn check_process_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_PROCESS_NAME_BYTES {
        return Err(format!("a process name has 1 to {MAX_PROCESS_NAME_BYTES} bytes"));
    }
    if name.contains('/') || name.chars().any(char::is_control) {
        return Err(format!("process name {name:?} must not contain '/' nor control characters"));
    }
    Ok(())
}

/// What to do with a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServiceVerb {
    Start,
    Stop,
    Restart,
}

impl ServiceVerb {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceVerb::Start => "start",
            ServiceVerb::Stop => "stop",
            ServiceVerb::Restart => "restart",
        }
    }

    pub fn parse(text: &str) -> Option<ServiceVerb> {
        [ServiceVerb::Start, ServiceVerb::Stop, ServiceVerb::Restart].into_iter().find(|verb| verb.as_str() == text)
    }
}

/// Which service manager the agent used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServiceManager {
    /// systemd units, through `systemctl`.
    Systemd,
    /// The init system's scripts (`/etc/init.d/NAME start|stop|restart|status`).
    InitScripts,
}

/// The services of a system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceListing {
    pub manager: ServiceManager,
    /// For init scripts: the directory they were found in.
    pub directory: Option<String>,
    pub services: Vec<ServiceInfo>,
}

/// One service and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceInfo {
    /// The unit name (`cron.service`) or the script's name.
    pub name: String,
    /// `running`, `stopped`, `failed`, `starting`, `stopping` or `unknown`.
    pub state: String,
    /// What the manager said: systemd's load, active and sub states (`loaded active running`); for a script,
    /// the exit code of `status` and its meaning.
    pub detail: String,
    /// systemd's description of the unit; empty for scripts.
    pub description: String,
}

/// Start, stop or restart one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAction {
    pub name: String,
    pub action: ServiceVerb,
}

/// How a service action went. A non-zero exit code is a failure whose `output` says why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceActionOutcome {
    pub name: String,
    pub action: ServiceVerb,
    pub manager: ServiceManager,
    /// The command the agent ran.
    pub command: Vec<String>,
    /// Its exit code (`None` when a signal or the timeout ended it).
    pub exit_code: Option<i32>,
    /// True when it was still running at its timeout and was killed.
    pub timed_out: bool,
    /// What it wrote, standard output then standard error, exactly.
    pub output: String,
    /// The service's state afterwards, as listed (`running`, `stopped`, ...).
    pub state_after: String,
}

impl ServiceActionOutcome {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// The network configuration of a system (read-only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NetworkConfiguration {
    pub interfaces: Vec<NetworkInterface>,
    pub routes: Vec<Route>,
    pub dns: DnsConfiguration,
}

/// One route of the main routing table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `inet` or `inet6`.
    pub family: String,
    /// The destination in CIDR notation (`0.0.0.0/0` for the default route).
    pub destination: String,
    /// The next hop, when the route goes through a gateway.
    pub gateway: Option<String>,
    pub interface: String,
    pub metric: u32,
}

/// The resolver configuration of `/etc/resolv.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DnsConfiguration {
    pub nameservers: Vec<String>,
    /// The search domains (`search`, or `domain` when there is no `search` line).
    pub search: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(SignalSpec::parse("TERM"), Ok(SignalSpec::Named(NamedSignal::Term)));
        assert_eq!(SignalSpec::parse("sigkill"), Ok(SignalSpec::Named(NamedSignal::Kill)));
        assert_eq!(SignalSpec::parse(" usr2 "), Ok(SignalSpec::Named(NamedSignal::Usr2)));
        assert_eq!(SignalSpec::parse("1"), Ok(SignalSpec::Number(1)));
        assert_eq!(SignalSpec::parse("64"), Ok(SignalSpec::Number(64)));
        for bad in ["0", "65", "4294967296", "-9", "", "SEGV", "TERM9", "SIG"] {
            let error = SignalSpec::parse(bad).expect_err(bad);
            assert!(error.contains("not a signal") || error.contains("out of range"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_requests_and_answers_travel_tagged_in_snake_case() {
        use crate::{AgentMessage, AgentRequest, AgentResponse, ServerMessage};
        let signal = AgentRequest::SignalProcess(SignalProcess { pid: 42, start_time: 7, signal: "TERM".into() });
        let message = ServerMessage::Request { id: 1, request: signal };
        let value = serde_json::to_value(&message).expect("encode");
        assert_eq!(
            value["request"],
            serde_json::json!({"type": "signal_process", "pid": 42, "start_time": 7, "signal": "TERM"})
        );
        assert_eq!(serde_json::from_value::<ServerMessage>(value).expect("decode"), message);
        for request in [AgentRequest::ListProcesses, AgentRequest::ListServices, AgentRequest::NetworkConfiguration] {
            let message = ServerMessage::Request { id: 2, request };
            let text = serde_json::to_string(&message).expect("encode");
            assert_eq!(serde_json::from_str::<ServerMessage>(&text).expect("decode"), message);
        }
        let action = AgentRequest::ServiceAction(ServiceAction { name: "cron".into(), action: ServiceVerb::Restart });
        let text = serde_json::to_string(&action).expect("encode");
        assert_eq!(text, r#"{"type":"service_action","name":"cron","action":"restart"}"#);
        let listing = ProcessListing {
            sample_ms: 500,
            ticks_per_second: 100,
            processes: vec![ProcessInfo { pid: 1, name: "init".into(), ..ProcessInfo::default() }],
        };
        let answer = AgentMessage::Response { id: 3, response: AgentResponse::Processes(listing) };
        let text = serde_json::to_string(&answer).expect("encode");
        assert_eq!(serde_json::from_str::<AgentMessage>(&text).expect("decode"), answer);
    }

    #[test]
    fn service_and_process_names() {
        for good in ["cron", "ssh.service", "getty@tty1.service", "systemd-fsck@dev-disk-by\\x2duuid.service", "a:b"] {
            assert_eq!(check_service_name(good), Ok(()), "{good}");
        }
        for bad in ["", "-f", ".", "..", "../etc/passwd", "a/b", "a b", "a;b", "é", &"x".repeat(256)] {
            assert!(check_service_name(bad).is_err(), "{bad}");
        }
        assert_eq!(check_process_name("sleep"), Ok(()));
        assert_eq!(check_process_name("kworker/0:1").map_err(|e| e.contains('/')), Err(true));
        assert!(check_process_name("").is_err() && check_process_name("a\nb").is_err());
    }
}
