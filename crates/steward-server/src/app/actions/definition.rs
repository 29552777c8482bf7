//! Checking event action plans and maintenance windows completely before they are stored: every error names the
//! field (`actions[1].url`, `filter.active[0].from`) and says what is wrong. Names of systems, groups and jobs
//! must exist now (they may go away later; a delivery then says so).

use steward_store::Conn;
use steward_types::api::Timestamp;
use steward_types::api::event_actions::{
    EventFilter, MAX_PLAN_ACTIONS, MAX_THROTTLE_SECONDS, MaintenanceSchedule, MaintenanceScope, PlanAction, Throttle,
    TimeWindow,
};
use steward_types::validate;

use super::matching::{parse_time_of_day, time_zone};
use super::{smtp, webhook};
use crate::error::{ApiError, ApiResult};

/// The longest secret, password, URL and header value accepted.
const MAX_SECRET: usize = 1024;
const MAX_URL: usize = 2048;
const MAX_HEADERS: usize = 20;
const MAX_RECIPIENTS: usize = 50;
const MAX_LIST: usize = 100;

fn invalid(field: impl AsRef<str>, reason: impl Into<String>) -> ApiError {
    ApiError::validation(field.as_ref(), reason)
}

fn check_list_length(field: &str, length: usize) -> ApiResult<()> {
    if length > MAX_LIST {
        return Err(invalid(field, format!("has {length} entries; at most {MAX_LIST} are allowed")));
    }
    Ok(())
}

/// Checks the `from` and `to` of a weekly window whose fields are `{prefix}.from` and `{prefix}.to`.
fn check_times(prefix: &str, from: &str, to: &str) -> ApiResult<()> {
    let from = parse_time_of_day(from).map_err(|reason| invalid(format!("{prefix}.from"), reason))?;
    let to = parse_time_of_day(to).map_err(|reason| invalid(format!("{prefix}.to"), reason))?;
    if from == to {
        return Err(invalid(format!("{prefix}.to"), "must differ from `from` (the window would be empty)"));
    }
    Ok(())
}

fn check_windows(field: &str, windows: &[TimeWindow]) -> ApiResult<()> {
    check_list_length(field, windows.len())?;
    for (index, window) in windows.iter().enumerate() {
        check_times(&format!("{field}[{index}]"), &window.from, &window.to)?;
    }
    Ok(())
}

/// An event type pattern: letters, digits, `.`, `_`, `-`, optionally ending with `*`.
fn check_type_pattern(field: &str, pattern: &str) -> ApiResult<()> {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    let good = body.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if pattern.is_empty() || pattern.len() > 128 || !good {
        return Err(invalid(
            field,
            format!(
                "{pattern:?} is not an event type like job.failed or a prefix like complex.* (a `*` only at the end)"
            ),
        ));
    }
    Ok(())
}

async fn check_filter(conn: &mut Conn, filter: &EventFilter) -> ApiResult<()> {
    check_list_length("filter.types", filter.types.len())?;
    for (index, pattern) in filter.types.iter().enumerate() {
        check_type_pattern(&format!("filter.types[{index}]"), pattern)?;
    }
    check_list_length("filter.systems", filter.systems.len())?;
    for (index, system) in filter.systems.iter().enumerate() {
        if steward_store::systems::get(conn, system).await?.is_none() {
            return Err(invalid(format!("filter.systems[{index}]"), format!("no system is named {system:?}")));
        }
    }
    check_list_length("filter.groups", filter.groups.len())?;
    for (index, group) in filter.groups.iter().enumerate() {
        if steward_store::groups::get(conn, group).await?.is_none() {
            return Err(invalid(format!("filter.groups[{index}]"), format!("no group is named {group:?}")));
        }
    }
    check_list_length("filter.sources", filter.sources.len())?;
    if let Some(index) = filter.sources.iter().position(|source| source.is_empty() || source.len() > 256) {
        return Err(invalid(format!("filter.sources[{index}]"), "must be 1 to 256 characters long"));
    }
    time_zone(&filter.time_zone).map_err(|reason| invalid("filter.time_zone", reason))?;
    check_windows("filter.active", &filter.active)
}

fn check_throttle(throttle: &Throttle) -> ApiResult<()> {
    if throttle.duplicate_window_seconds > MAX_THROTTLE_SECONDS {
        return Err(invalid(
            "throttle.duplicate_window_seconds",
            format!("must be 0 (off) to {MAX_THROTTLE_SECONDS} (a week)"),
        ));
    }
    if let Some(flap) = throttle.flapping {
        if flap.events == 0 || flap.events > 10_000 {
            return Err(invalid("throttle.flapping.events", "must be 1 to 10000: more than this many events flap"));
        }
        if flap.within_seconds == 0 || flap.within_seconds > MAX_THROTTLE_SECONDS {
            return Err(invalid(
                "throttle.flapping.within_seconds",
                format!("must be 1 to {MAX_THROTTLE_SECONDS} (a week)"),
            ));
        }
    }
    Ok(())
}

fn check_url(field: &str, url: &str) -> ApiResult<()> {
    if url.len() > MAX_URL {
        return Err(invalid(field, format!("must be at most {MAX_URL} characters long")));
    }
    let parsed = reqwest::Url::parse(url).map_err(|error| invalid(field, format!("{url:?} is not a URL: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(field, format!("must be an http:// or https:// URL, not {}://", parsed.scheme())));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(field, format!("{url:?} names no host")));
    }
    Ok(())
}

fn check_secret(field: &str, secret: Option<&str>) -> ApiResult<()> {
    if let Some(secret) = secret
        && (secret.is_empty() || secret.len() > MAX_SECRET)
    {
        return Err(invalid(field, format!("must be 1 to {MAX_SECRET} bytes long")));
    }
    Ok(())
}

async fn check_action(conn: &mut Conn, field: &str, action: &PlanAction) -> ApiResult<()> {
    match action {
        PlanAction::Log => Ok(()),
        PlanAction::Webhook { url, secret, headers, .. } => {
            check_url(&format!("{field}.url"), url)?;
            check_secret(&format!("{field}.secret"), secret.as_deref())?;
            if headers.len() > MAX_HEADERS {
                return Err(invalid(format!("{field}.headers"), format!("at most {MAX_HEADERS} headers are allowed")));
            }
            for (name, value) in headers {
                let header = format!("{field}.headers.{name}");
                webhook::check_header_name(name).map_err(|reason| invalid(&header, reason))?;
                if value.len() > MAX_SECRET || value.chars().any(|c| c.is_control() && c != '\t') {
                    return Err(invalid(&header, format!("must be at most {MAX_SECRET} bytes without line breaks")));
                }
            }
            Ok(())
        }
        PlanAction::Email { server, username, password, ca_certificate, from, to, .. } => {
            smtp::parse_server(server).map_err(|reason| invalid(format!("{field}.server"), reason))?;
            smtp::check_address(from).map_err(|reason| invalid(format!("{field}.from"), reason))?;
            if to.is_empty() || to.len() > MAX_RECIPIENTS {
                return Err(invalid(format!("{field}.to"), format!("must name 1 to {MAX_RECIPIENTS} recipients")));
            }
            for (index, address) in to.iter().enumerate() {
                smtp::check_address(address).map_err(|reason| invalid(format!("{field}.to[{index}]"), reason))?;
            }
            match (username, password) {
                (Some(username), _)
                    if username.is_empty() || username.len() > 256 || username.contains(['\r', '\n', '\0']) =>
                {
                    return Err(invalid(format!("{field}.username"), "must be 1 to 256 characters on one line"));
                }
                (Some(_), None) => return Err(invalid(format!("{field}.password"), "is required with a username")),
                (None, Some(_)) => return Err(invalid(format!("{field}.username"), "is required with a password")),
                _ => {}
            }
            check_secret(&format!("{field}.password"), password.as_deref())?;
            if let Some(pem) = ca_certificate {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject;
                let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
                match certificates {
                    Ok(certificates) if !certificates.is_empty() => {}
                    Ok(_) => return Err(invalid(format!("{field}.ca_certificate"), "holds no PEM certificate")),
                    Err(error) => {
                        return Err(invalid(format!("{field}.ca_certificate"), format!("is not PEM: {error}")));
                    }
                }
            }
            Ok(())
        }
        PlanAction::Command { system, command } => {
            if steward_store::systems::get(conn, system).await?.is_none() {
                return Err(invalid(format!("{field}.system"), format!("no system is named {system:?}")));
            }
            command.validate().map_err(|error| invalid(format!("{field}.command.{}", error.field), error.reason))
        }
        PlanAction::Job { job } => {
            if steward_store::jobs::get(conn, job).await?.is_none() {
                return Err(invalid(format!("{field}.job"), format!("no job is named {job:?}")));
            }
            Ok(())
        }
    }
}

/// Checks a plan's parts (its name is checked by the caller).
pub async fn check_plan(
    conn: &mut Conn,
    description: &str,
    filter: &EventFilter,
    throttle: &Throttle,
    actions: &[PlanAction],
) -> ApiResult<()> {
    validate::description("description", description)?;
    check_filter(conn, filter).await?;
    check_throttle(throttle)?;
    if actions.is_empty() || actions.len() > MAX_PLAN_ACTIONS {
        return Err(invalid("actions", format!("must have 1 to {MAX_PLAN_ACTIONS} actions")));
    }
    for (index, action) in actions.iter().enumerate() {
        check_action(conn, &format!("actions[{index}]"), action).await?;
    }
    Ok(())
}

/// Checks a maintenance window: its system or group exists, its times make sense.
pub async fn check_window(conn: &mut Conn, scope: &MaintenanceScope, schedule: &MaintenanceSchedule) -> ApiResult<()> {
    match scope {
        MaintenanceScope::System { system } => {
            if steward_store::systems::get(conn, system).await?.is_none() {
                return Err(invalid("scope.system", format!("no system is named {system:?}")));
            }
        }
        MaintenanceScope::Group { group } => {
            if steward_store::groups::get(conn, group).await?.is_none() {
                return Err(invalid("scope.group", format!("no group is named {group:?}")));
            }
        }
    }
    match schedule {
        MaintenanceSchedule::Once { start, end } => {
            if end <= start {
                return Err(invalid("schedule.end", format!("{end} is not after the start {start}")));
            }
            let now = Timestamp::now();
            if *end <= now {
                return Err(invalid("schedule.end", format!("{end} is in the past (it is {now} now)")));
            }
        }
        MaintenanceSchedule::Weekly { days, from, to, time_zone: zone } => {
            time_zone(zone).map_err(|reason| invalid("schedule.time_zone", reason))?;
            check_list_length("schedule.days", days.len())?;
            check_times("schedule", from, to)?;
        }
    }
    Ok(())
}
