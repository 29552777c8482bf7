//! Resource monitoring on the agent: which metrics to sample and how often (sent by the server as a
//! [`crate::AgentRequest::ConfigureMonitors`] request, after every Welcome and whenever the system's monitors
//! change), and the samples the agent sends back ([`crate::AgentMessage::Samples`]). The agent samples only what
//! is planned; all metrics due at the same moment are sampled in one wake-up and sent in one message, and an agent
//! with an empty plan has no timer at all.
//!
//! A metric is named by a key, `NAME` or `NAME:ARGUMENT`:
//!
//! | key | unit | what |
//! |---|---|---|
//! | `cpu.utilization` | % | busy share of all CPUs since the previous sample (`/proc/stat`) |
//! | `load.1`, `load.5`, `load.15` | | load averages |
//! | `memory.used` | % | `(MemTotal - MemAvailable) / MemTotal` |
//! | `filesystem.used:MOUNT` | % | used blocks of the file system mounted at MOUNT (`statvfs`, as `df`) |
//! | `disk.read:DEVICE`, `disk.write:DEVICE` | bytes/s | since the previous sample (`/proc/diskstats`) |
//! | `network.receive:IFACE`, `network.transmit:IFACE` | bytes/s | since the previous sample (`/proc/net/dev`) |
//! | `process.count:NAME` | | processes whose command name (`/proc/PID/comm`) is NAME |
//! | `service.active:NAME` | 0/1 | 1 when the service runs (`systemctl is-active`, or the init script's status) |

use serde::{Deserialize, Serialize};

/// The shortest sampling interval a monitor may ask for.
pub const MIN_INTERVAL_SECONDS: u32 = 1;
/// The longest one (a day).
pub const MAX_INTERVAL_SECONDS: u32 = 86_400;
/// The most metrics one system samples.
pub const MAX_PLANNED_METRICS: usize = 256;

/// One metric as the agent understands its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    CpuUtilization,
    Load(LoadWindow),
    MemoryUsed,
    FilesystemUsed(String),
    DiskRead(String),
    DiskWrite(String),
    NetworkReceive(String),
    NetworkTransmit(String),
    ProcessCount(String),
    ServiceActive(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoadWindow {
    One,
    Five,
    Fifteen,
}

/// The metric names, with whether they take an argument and what it is.
pub const METRICS: &[(&str, Option<&str>)] = &[
    ("cpu.utilization", None),
    ("load.1", None),
    ("load.5", None),
    ("load.15", None),
    ("memory.used", None),
    ("filesystem.used", Some("mount point")),
    ("disk.read", Some("block device")),
    ("disk.write", Some("block device")),
    ("network.receive", Some("interface")),
    ("network.transmit", Some("interface")),
    ("process.count", Some("process name")),
    ("service.active", Some("service name")),
];

impl Metric {
    /// Parses a key; the message says what is wrong with it.
    pub fn parse(key: &str) -> Result<Metric, String> {
        let (name, argument) = match key.split_once(':') {
            Some((name, argument)) => (name, Some(argument)),
            None => (key, None),
        };
        let Some((_, wanted)) = METRICS.iter().find(|(known, _)| *known == name) else {
            let names: Vec<&str> = METRICS.iter().map(|(name, _)| *name).collect();
            return Err(format!("{name:?} is not a metric; known: {}", names.join(", ")));
        };
        let argument = match (wanted, argument) {
            (None, None) => String::new(),
            (None, Some(_)) => return Err(format!("{name} takes no argument (no `:`)")),
            (Some(what), None) | (Some(what), Some("")) => {
                return Err(format!("{name} needs a {what}: {name}:ARGUMENT"));
            }
            (Some(what), Some(argument)) => {
                if argument.len() > 255 || argument.chars().any(|character| character.is_control()) {
                    return Err(format!("{name}: the {what} {argument:?} is too long or has control characters"));
                }
                if *what == "mount point" && !argument.starts_with('/') {
                    return Err(format!("{name}: the mount point {argument:?} is not an absolute path"));
                }
                if *what != "mount point" && argument.contains('/') {
                    return Err(format!("{name}: the {what} {argument:?} contains '/'"));
                }
                argument.to_owned()
            }
        };
        Ok(match name {
            "cpu.utilization" => Metric::CpuUtilization,
            "load.1" => Metric::Load(LoadWindow::One),
            "load.5" => Metric::Load(LoadWindow::Five),
            "load.15" => Metric::Load(LoadWindow::Fifteen),
            "memory.used" => Metric::MemoryUsed,
            "filesystem.used" => Metric::FilesystemUsed(argument),
            "disk.read" => Metric::DiskRead(argument),
            "disk.write" => Metric::DiskWrite(argument),
            "network.receive" => Metric::NetworkReceive(argument),
            "network.transmit" => Metric::NetworkTransmit(argument),
            "process.count" => Metric::ProcessCount(argument),
            _ => Metric::ServiceActive(argument),
        })
    }

    /// The key, as `parse` reads it.
    pub fn key(&self) -> String {
        match self {
            Metric::CpuUtilization => "cpu.utilization".into(),
            Metric::Load(LoadWindow::One) => "load.1".into(),
            Metric::Load(LoadWindow::Five) => "load.5".into(),
            Metric::Load(LoadWindow::Fifteen) => "load.15".into(),
            Metric::MemoryUsed => "memory.used".into(),
            Metric::FilesystemUsed(mount) => format!("filesystem.used:{mount}"),
            Metric::DiskRead(device) => format!("disk.read:{device}"),
            Metric::DiskWrite(device) => format!("disk.write:{device}"),
            Metric::NetworkReceive(interface) => format!("network.receive:{interface}"),
            Metric::NetworkTransmit(interface) => format!("network.transmit:{interface}"),
            Metric::ProcessCount(name) => format!("process.count:{name}"),
            Metric::ServiceActive(name) => format!("service.active:{name}"),
        }
    }

    /// The unit values are in, for display.
    pub fn unit(&self) -> &'static str {
        match self {
            Metric::CpuUtilization | Metric::MemoryUsed | Metric::FilesystemUsed(_) => "%",
            Metric::DiskRead(_) | Metric::DiskWrite(_) | Metric::NetworkReceive(_) | Metric::NetworkTransmit(_) => {
                "bytes/s"
            }
            Metric::Load(_) | Metric::ProcessCount(_) | Metric::ServiceActive(_) => "",
        }
    }
}

/// One metric to sample, every `interval_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedMetric {
    pub metric: String,
    pub interval_seconds: u32,
}

/// Everything the agent samples; replaces the previous plan. Empty: sample nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorPlan {
    pub metrics: Vec<PlannedMetric>,
}

/// One sampled value; `value` is absent when the metric could not be read (`error` says why: a mount point that
/// is not mounted, a device that does not exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_keys_say_why() {
        for key in [
            "cpu.utilization",
            "load.15",
            "memory.used",
            "filesystem.used:/srv/data",
            "disk.read:vda",
            "network.transmit:eth0",
            "process.count:nginx",
            "service.active:ssh",
        ] {
            assert_eq!(Metric::parse(key).map(|metric| metric.key()), Ok(key.to_owned()));
        }
        assert!(Metric::parse("cpu.temperature").unwrap_err().contains("not a metric"));
        assert!(Metric::parse("filesystem.used").unwrap_err().contains("mount point"));
        assert!(Metric::parse("filesystem.used:srv").unwrap_err().contains("absolute"));
        assert!(Metric::parse("memory.used:x").unwrap_err().contains("no argument"));
        assert!(Metric::parse("disk.read:../sda").unwrap_err().contains("'/'"));
    }
}
