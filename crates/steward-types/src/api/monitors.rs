//! Resource monitors (a threshold on a metric of a system or of a group's members, with a hold time and a clear
//! condition), their state per system, and metric time series.

use serde::{Deserialize, Serialize};

use super::Timestamp;
use super::events::Severity;
use super::jobs::JobTarget;
use crate::ids::{MonitorId, SystemId};

/// The server-side metric: the system's agent is not connected (1) or is (0); needs no sampling.
pub const AGENT_OFFLINE_METRIC: &str = "agent.offline";
/// Sampling interval unless the monitor says (seconds).
pub const DEFAULT_MONITOR_INTERVAL_SECONDS: u32 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Comparison {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
}

impl Comparison {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Above => value > threshold,
            Comparison::AtLeast => value >= threshold,
            Comparison::Below => value < threshold,
            Comparison::AtMost => value <= threshold,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Above => ">",
            Comparison::AtLeast => ">=",
            Comparison::Below => "<",
            Comparison::AtMost => "<=",
        }
    }

    /// Whether higher values are worse (the clear threshold must then be at or below the threshold).
    pub fn rising(self) -> bool {
        matches!(self, Comparison::Above | Comparison::AtLeast)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorCreate {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A system or a group (its members now and later, dynamic groups included).
    pub target: JobTarget,
    /// A metric key: `cpu.utilization`, `load.1`, `memory.used`, `filesystem.used:/srv`, `disk.read:vda`,
    /// `network.receive:eth0`, `process.count:nginx`, `service.active:ssh`, or `agent.offline`.
    pub metric: String,
    pub comparison: Comparison,
    pub threshold: f64,
    /// The value at which a raised monitor clears (hysteresis); the threshold itself when absent. For `>` it
    /// must not be above the threshold, for `<` not below.
    #[serde(default)]
    pub clear_threshold: Option<f64>,
    /// How long the condition must hold before the monitor raises (0: at the first sample).
    #[serde(default)]
    pub hold_seconds: u32,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// How often the agent samples the metric: 1 to 86400 seconds (60 by default).
    #[serde(default)]
    pub interval_seconds: Option<u32>,
}

fn default_severity() -> Severity {
    Severity::Warning
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Monitor {
    pub id: MonitorId,
    pub name: String,
    pub description: String,
    pub target: JobTarget,
    pub metric: String,
    pub comparison: Comparison,
    pub threshold: f64,
    pub clear_threshold: f64,
    pub hold_seconds: u32,
    pub severity: Severity,
    pub interval_seconds: u32,
    pub created_by: String,
    pub created_at: Timestamp,
    /// The monitor's state on each system it watches (in `GET /monitors/{monitor}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<MonitorState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition does not hold.
    Ok,
    /// It holds, for less than the hold time so far.
    Pending,
    /// It held for the hold time: an event was raised, and it has not cleared since.
    Raised,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Ok => "ok",
            AlertState::Pending => "pending",
            AlertState::Raised => "raised",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Ok, Self::Pending, Self::Raised].into_iter().find(|state| state.as_str() == text)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MonitorState {
    pub system: String,
    pub system_id: SystemId,
    pub state: AlertState,
    /// Since when it is in this state.
    pub since: Timestamp,
    pub last_value: Option<f64>,
    pub last_sample_at: Option<Timestamp>,
}

/// `GET /api/v1/systems/{system}/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricQuery {
    pub metric: String,
    /// How far back: `30s`, `15m`, `6h`, `7d`, or an RFC 3339 time (1 hour by default).
    #[serde(default)]
    pub since: Option<String>,
}

/// One point of a series: a sample, or a 5-minute bucket (with its minimum, maximum and count) for older data.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricPoint {
    pub at: Timestamp,
    /// The sample, or the bucket's average.
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricSeries {
    pub system: String,
    pub metric: String,
    pub unit: String,
    pub points: Vec<MetricPoint>,
}
