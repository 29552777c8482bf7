//! Event action plans (filters on events bound to actions), maintenance windows (times when a system's or a
//! group's events trigger nothing) and deliveries (one action carried out for one event, with its attempts).
//!
//! Secrets (a webhook's signing secret, an SMTP password) are accepted on input and never returned: a plan shown by
//! the API has `secret`/`password` absent and `has_secret`/`has_password` telling whether one is set. A `PUT`
//! replaces the whole plan, so its secrets must be given again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Timestamp;
use super::events::Severity;
use super::systems::SystemCommand;
use crate::ids::{DeliveryId, EventActionPlanId, EventId, MaintenanceWindowId};

/// The most actions one plan may have.
pub const MAX_PLAN_ACTIONS: usize = 10;
/// The longest duplicate or flapping window: a week.
pub const MAX_THROTTLE_SECONDS: u32 = 7 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Monday is 1, Sunday 7 (ISO 8601).
    pub fn number(self) -> i8 {
        match self {
            Weekday::Mon => 1,
            Weekday::Tue => 2,
            Weekday::Wed => 3,
            Weekday::Thu => 4,
            Weekday::Fri => 5,
            Weekday::Sat => 6,
            Weekday::Sun => 7,
        }
    }
}

/// A time of the week, repeated: from `from` to `to` (`HH:MM`, 24-hour clock) on each of `days` (every day when
/// empty). A window whose `to` is not after its `from` runs past midnight into the next day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    #[serde(default)]
    pub days: Vec<Weekday>,
    /// `HH:MM`, for example `08:00`.
    pub from: String,
    /// `HH:MM`, for example `18:00`.
    pub to: String,
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

/// Which events a plan acts on. Every given criterion must hold; an empty list means "any".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// Event types, exactly (`job.failed`) or by prefix with a final `*` (`complex.*`; `*` alone: any type).
    #[serde(default)]
    pub types: Vec<String>,
    /// Only events at least this severe (any severity when absent).
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Only events about one of these systems (name or ID) ...
    #[serde(default)]
    pub systems: Vec<String>,
    /// ... or about a member of one of these groups (membership at the time of the event). Events about no system
    /// never match a plan that names systems or groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Only events whose source (a job's or a complex's name) is one of these.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Only events raised inside one of these windows (any time when empty), in `time_zone`.
    #[serde(default)]
    pub active: Vec<TimeWindow>,
    /// The IANA time zone of `active` (`UTC` by default).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

impl Default for EventFilter {
    fn default() -> Self {
        Self {
            types: Vec::new(),
            min_severity: None,
            systems: Vec::new(),
            groups: Vec::new(),
            sources: Vec::new(),
            active: Vec::new(),
            time_zone: default_time_zone(),
        }
    }
}

/// Flap detection: more than `events` events of one type from one source within `within_seconds` send one
/// "flapping" notice, and then nothing for that type and source until it has been quiet for `within_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlapDetection {
    pub events: u32,
    pub within_seconds: u32,
}

/// Repeat control of a plan, per event type and source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    /// Events of one type from one source within this many seconds of one that was acted on are counted on its
    /// deliveries (`duplicates`) instead of acted on again; 0 (the default): every event is acted on.
    #[serde(default)]
    pub duplicate_window_seconds: u32,
    #[serde(default)]
    pub flapping: Option<FlapDetection>,
}

/// How an e-mail action uses TLS with its SMTP server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// STARTTLS, or no mail at all (the default).
    #[default]
    Required,
    /// STARTTLS when the server offers it; without it the mail goes in clear, and credentials are never sent.
    Opportunistic,
    /// Never STARTTLS (a relay on loopback, for example).
    None,
}

/// What a plan does with an event that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum PlanAction {
    /// A line in the server's event log (its log output, target `steward::event_log`).
    Log,
    /// An HTTP POST of the event as JSON, retried with backoff until the server answers 2xx.
    Webhook {
        /// `http://` or `https://`.
        url: String,
        /// Signs each body: `X-Steward-Signature: sha256=<hex HMAC-SHA256 of the body>`. Never returned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        /// Set by the server: whether a secret is set.
        #[serde(default)]
        has_secret: bool,
        /// Extra request headers.
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// An e-mail through an SMTP server.
    Email {
        /// `host:port` of the SMTP server (a submission port is usually 587).
        server: String,
        #[serde(default)]
        tls: SmtpTls,
        /// Authenticates (AUTH PLAIN or LOGIN) when given; only over TLS unless `tls` is `none`.
        #[serde(default)]
        username: Option<String>,
        /// Never returned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        /// Set by the server: whether a password is set.
        #[serde(default)]
        has_password: bool,
        /// A PEM certificate authority to trust for this server besides the system's (a private CA).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_certificate: Option<String>,
        from: String,
        to: Vec<String>,
    },
    /// Runs a command on a system through its agent; delivered when it exits with 0.
    Command { system: String, command: SystemCommand },
    /// Starts a run of a job (trigger `manual`); delivered when the run is started.
    Job { job: String },
}

impl PlanAction {
    pub fn kind(&self) -> &'static str {
        match self {
            PlanAction::Log => "log",
            PlanAction::Webhook { .. } => "webhook",
            PlanAction::Email { .. } => "email",
            PlanAction::Command { .. } => "command",
            PlanAction::Job { .. } => "job",
        }
    }

    /// The action as the API shows it: secrets removed, their presence told.
    pub fn redacted(&self) -> Self {
        let mut action = self.clone();
        match &mut action {
            PlanAction::Webhook { secret, has_secret, .. } => {
                *has_secret = secret.take().is_some();
            }
            PlanAction::Email { password, has_password, .. } => {
                *has_password = password.take().is_some();
            }
            _ => {}
        }
        action
    }
}

/// The body of `POST /api/v1/event-action-plans`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventActionPlanCreate {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A disabled plan matches nothing (true by default).
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub filter: EventFilter,
    #[serde(default)]
    pub throttle: Throttle,
    pub actions: Vec<PlanAction>,
}

/// The body of `PUT /api/v1/event-action-plans/{plan}` and the content of a plan file (`steward
/// event-action-plans create NAME --file plan.yaml`): the whole plan but its name.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventActionPlanDefinition {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub filter: EventFilter,
    #[serde(default)]
    pub throttle: Throttle,
    pub actions: Vec<PlanAction>,
}

impl EventActionPlanDefinition {
    pub fn named(self, name: String) -> EventActionPlanCreate {
        EventActionPlanCreate {
            name,
            description: self.description,
            enabled: self.enabled,
            filter: self.filter,
            throttle: self.throttle,
            actions: self.actions,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventActionPlan {
    pub id: EventActionPlanId,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub filter: EventFilter,
    pub throttle: Throttle,
    pub actions: Vec<PlanAction>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl EventActionPlan {
    /// The plan as the API shows it: no secrets.
    pub fn redacted(&self) -> Self {
        let mut plan = self.clone();
        plan.actions = plan.actions.iter().map(PlanAction::redacted).collect();
        plan
    }
}

/// Whose events a maintenance window silences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum MaintenanceScope {
    System {
        system: String,
    },
    /// Every member of the group at the time of the event.
    Group {
        group: String,
    },
}

/// When a maintenance window is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum MaintenanceSchedule {
    /// From `start` to `end`, once.
    Once { start: Timestamp, end: Timestamp },
    /// Every week: from `from` to `to` (`HH:MM`) on each of `days` (every day when empty) in `time_zone`.
    Weekly {
        #[serde(default)]
        days: Vec<Weekday>,
        from: String,
        to: String,
        #[serde(default = "default_time_zone")]
        time_zone: String,
    },
}

/// The body of `POST /api/v1/maintenance-windows`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindowCreate {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub scope: MaintenanceScope,
    pub schedule: MaintenanceSchedule,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MaintenanceWindow {
    pub id: MaintenanceWindowId,
    pub name: String,
    pub description: String,
    pub scope: MaintenanceScope,
    pub schedule: MaintenanceSchedule,
    pub created_by: String,
    pub created_at: Timestamp,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not tried yet.
    Pending,
    /// Tried and failed (`last_error`); tried again at `next_attempt_at`.
    Retrying,
    Delivered,
    /// Failed on every attempt, or failed in a way no retry can fix; not tried again.
    GaveUp,
    /// Not carried out because a maintenance window was on (`suppressed_by`).
    Suppressed,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 5] = [
        DeliveryState::Pending,
        DeliveryState::Retrying,
        DeliveryState::Delivered,
        DeliveryState::GaveUp,
        DeliveryState::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Delivered => "delivered",
            DeliveryState::GaveUp => "gave_up",
            DeliveryState::Suppressed => "suppressed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }
}

/// What a delivery tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// The event itself.
    Event,
    /// That events of one type from one source are flapping (and are suppressed until quiet).
    Flapping,
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Event => "event",
            DeliveryKind::Flapping => "flapping",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Event, Self::Flapping].into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One action of a plan carried out for one event.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: DeliveryId,
    pub plan: String,
    /// The action's place in the plan (from 0) and its kind.
    pub action_index: u32,
    pub action: String,
    pub kind: DeliveryKind,
    pub event_id: EventId,
    pub event_type: String,
    /// The event's source: its kind and name (`job nightly`).
    pub source: String,
    /// What the delivery says (the event's message, or the flapping notice).
    pub message: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// Later events of the same type and source counted here instead of acted on (duplicates, or events while
    /// flapping).
    pub duplicates: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// The maintenance window that suppressed it.
    pub suppressed_by: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

/// Filters of `GET /api/v1/deliveries` (newest first, with the usual paging).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries of this plan (name or ID).
    #[serde(default)]
    pub plan: Option<String>,
    /// Only deliveries in this state: pending, retrying, delivered, gave_up, suppressed.
    #[serde(default)]
    pub state: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next` value of the previous page.
    #[serde(default)]
    pub after: Option<String>,
}
