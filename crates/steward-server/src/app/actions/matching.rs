//! The pure rules of event action plans: whether a plan's filter takes an event, whether a time falls in a weekly
//! window or a maintenance window, the repeat control (duplicates, flapping) and the retry backoff. No IO here, so
//! every rule is unit-tested on its own.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use steward_types::api::Timestamp;
use steward_types::api::event_actions::{EventFilter, MaintenanceSchedule, Throttle, TimeWindow, Weekday};
use steward_types::api::events::Event;
use steward_types::{EventId, SystemId};

/// What a plan's filter looks at besides the event: the event's system (its ID and name) and that system's groups
/// at the time of the event.
pub struct EventSubject<'a> {
    pub event: &'a Event,
    pub system: Option<(SystemId, &'a str)>,
    pub groups: &'a [String],
}

/// Whether `event_type` is taken by `pattern`: equal, or a prefix of it when the pattern ends with `*`.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// Whether a plan's filter takes the event, time windows aside (see [`in_time_windows`]).
pub fn filter_matches(filter: &EventFilter, subject: &EventSubject<'_>) -> bool {
    let event = subject.event;
    if !filter.types.is_empty() && !filter.types.iter().any(|pattern| type_matches(pattern, &event.event_type)) {
        return false;
    }
    if filter.min_severity.is_some_and(|minimum| event.severity < minimum) {
        return false;
    }
    if !filter.sources.is_empty() && !filter.sources.contains(&event.source) {
        return false;
    }
    if !filter.systems.is_empty() || !filter.groups.is_empty() {
        let Some((id, name)) = subject.system else { return false };
        let by_system =
            filter.systems.iter().any(|system| system == name || SystemId::parse(system).is_some_and(|s| s == id));
        let by_group = filter.groups.iter().any(|group| subject.groups.contains(group));
        if !by_system && !by_group {
            return false;
        }
    }
    true
}

/// Parses `HH:MM` (24-hour clock) into minutes since midnight.
pub fn parse_time_of_day(text: &str) -> Result<u32, String> {
    let error = || format!("{text:?} is not a time of day like 08:30 (HH:MM, 24-hour clock)");
    let (hours, minutes) = text.split_once(':').ok_or_else(error)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(error());
    }
    let hours: u32 = hours.parse().map_err(|_| error())?;
    let minutes: u32 = minutes.parse().map_err(|_| error())?;
    if hours > 23 || minutes > 59 {
        return Err(error());
    }
    Ok(hours * 60 + minutes)
}

/// The IANA time zone named, or why not.
pub fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(name).map_err(|_| format!("{name:?} is not a known IANA time zone (like Europe/Berlin)"))
}

/// Whether `at` falls in the weekly window in `zone`. A window whose end is not after its start runs past
/// midnight: its days are the days it starts on.
pub fn in_weekly_window(
    days: &[Weekday],
    from: &str,
    to: &str,
    zone: &jiff::tz::TimeZone,
    at: Timestamp,
) -> Result<bool, String> {
    let (from, to) = (parse_time_of_day(from)?, parse_time_of_day(to)?);
    let instant = jiff::Timestamp::from_millisecond(at.millis()).map_err(|error| error.to_string())?;
    let local = instant.to_zoned(zone.clone());
    let minute = u32::from(local.hour().unsigned_abs()) * 60 + u32::from(local.minute().unsigned_abs());
    let today = local.weekday().to_monday_one_offset();
    let yesterday = if today == 1 { 7 } else { today - 1 };
    let on = |day: i8| days.is_empty() || days.iter().any(|weekday| weekday.number() == day);
    Ok(if from < to {
        on(today) && (from..to).contains(&minute)
    } else {
        (on(today) && minute >= from) || (on(yesterday) && minute < to)
    })
}

/// Whether `at` falls in one of the windows (always when there are none).
pub fn in_time_windows(windows: &[TimeWindow], zone_name: &str, at: Timestamp) -> Result<bool, String> {
    if windows.is_empty() {
        return Ok(true);
    }
    let zone = time_zone(zone_name)?;
    for window in windows {
        if in_weekly_window(&window.days, &window.from, &window.to, &zone, at)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a maintenance window is on at `at`.
pub fn maintenance_on(schedule: &MaintenanceSchedule, at: Timestamp) -> Result<bool, String> {
    match schedule {
        MaintenanceSchedule::Once { start, end } => Ok(*start <= at && at < *end),
        MaintenanceSchedule::Weekly { days, from, to, time_zone: zone } => {
            in_weekly_window(days, from, to, &time_zone(zone)?, at)
        }
    }
}

/// The repeat-control memory of one plan for one event type and source (stored as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleState {
    /// Times (Unix milliseconds) of the latest events, within the flapping window, at most its count + 1.
    #[serde(default)]
    pub recent: Vec<i64>,
    /// The last event's time.
    #[serde(default)]
    pub last_event_at: Option<i64>,
    /// While flapping: the event whose flapping notice counts the events suppressed since.
    #[serde(default)]
    pub flapping: Option<EventId>,
    /// The event acted on last and until when later ones are its duplicates.
    #[serde(default)]
    pub duplicate_of: Option<EventId>,
    #[serde(default)]
    pub duplicates_until: Option<i64>,
}

/// What becomes of an event that a plan matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleDecision {
    /// Act on it.
    Deliver,
    /// Count it on the deliveries of this earlier event.
    Duplicate(EventId),
    /// Too many events: send one flapping notice (about this event) instead.
    StartFlapping,
    /// Flapping still: count it on this event's flapping notice.
    Flapping(EventId),
}

/// Decides what becomes of `event` (raised at `at`) and updates the memory.
pub fn throttle_decide(
    state: &mut ThrottleState,
    throttle: &Throttle,
    event: EventId,
    at: Timestamp,
) -> ThrottleDecision {
    let now = at.millis();
    let previous = state.last_event_at.replace(now);
    if let Some(flap) = throttle.flapping {
        let window = i64::from(flap.within_seconds) * 1000;
        if let Some(anchor) = state.flapping {
            let quiet = previous.is_none_or(|last| now - last >= window);
            if !quiet {
                return ThrottleDecision::Flapping(anchor);
            }
            state.flapping = None;
            state.recent.clear();
        }
        state.recent.retain(|time| now - time < window);
        state.recent.push(now);
        if state.recent.len() > flap.events as usize {
            state.recent.clear();
            state.flapping = Some(event);
            return ThrottleDecision::StartFlapping;
        }
    } else {
        state.flapping = None;
        state.recent.clear();
    }
    if throttle.duplicate_window_seconds > 0 {
        if let (Some(anchor), Some(until)) = (state.duplicate_of, state.duplicates_until)
            && now < until
        {
            return ThrottleDecision::Duplicate(anchor);
        }
        state.duplicate_of = Some(event);
        state.duplicates_until = Some(now + i64::from(throttle.duplicate_window_seconds) * 1000);
    } else {
        state.duplicate_of = None;
        state.duplicates_until = None;
    }
    ThrottleDecision::Deliver
}

/// How long to wait after failed attempt number `attempts` (1 for the first): `first` doubled each time, at most
/// `maximum`, then scaled by `jitter` (a random number in `[0, 1)`) into 75 % to 125 % of that.
pub fn backoff(attempts: u32, first: Duration, maximum: Duration, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    let delay = first.saturating_mul(1u32 << doublings).min(maximum);
    delay.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use steward_types::api::event_actions::FlapDetection;
    use steward_types::api::events::Severity;

    use super::*;

    fn event(event_type: &str, severity: Severity, source: &str) -> Event {
        Event {
            id: EventId::new(),
            event_type: event_type.to_owned(),
            severity,
            source_kind: "job".to_owned(),
            source: source.to_owned(),
            system_id: None,
            message: String::new(),
            details: serde_json::json!({}),
            created_at: Timestamp(0),
        }
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).expect("a test time")
    }

    #[test]
    fn types_match_exactly_or_by_prefix() {
        assert!(type_matches("job.failed", "job.failed"));
        assert!(!type_matches("job.failed", "job.failed.twice"));
        assert!(type_matches("complex.*", "complex.deviation"));
        assert!(!type_matches("complex.*", "job.failed"));
        assert!(type_matches("*", "anything"));
    }

    #[test]
    fn filters_on_type_severity_source_system_and_group() {
        let warning = event("job.failed", Severity::Warning, "nightly");
        let system = SystemId::new();
        let groups = vec!["web".to_owned()];
        let without_system = EventSubject { event: &warning, system: None, groups: &[] };
        let with_system = EventSubject { event: &warning, system: Some((system, "web-1")), groups: &groups };
        let filter = |change: &dyn Fn(&mut EventFilter)| {
            let mut filter = EventFilter::default();
            change(&mut filter);
            filter
        };
        assert!(filter_matches(&EventFilter::default(), &without_system), "an empty filter takes everything");
        assert!(filter_matches(&filter(&|f| f.types = vec!["job.*".into()]), &without_system));
        assert!(!filter_matches(&filter(&|f| f.types = vec!["complex.*".into()]), &without_system));
        assert!(filter_matches(&filter(&|f| f.min_severity = Some(Severity::Warning)), &without_system));
        assert!(!filter_matches(&filter(&|f| f.min_severity = Some(Severity::Critical)), &without_system));
        assert!(filter_matches(&filter(&|f| f.sources = vec!["nightly".into()]), &without_system));
        assert!(!filter_matches(&filter(&|f| f.sources = vec!["weekly".into()]), &without_system));
        let by_name = filter(&|f| f.systems = vec!["web-1".into()]);
        assert!(filter_matches(&by_name, &with_system));
        assert!(!filter_matches(&by_name, &without_system), "an event about no system matches no system filter");
        assert!(filter_matches(&filter(&|f| f.systems = vec![system.to_string()]), &with_system));
        assert!(filter_matches(&filter(&|f| f.groups = vec!["web".into()]), &with_system));
        assert!(!filter_matches(&filter(&|f| f.groups = vec!["db".into()]), &with_system));
    }

    #[test]
    fn weekly_windows_in_a_time_zone_and_past_midnight() {
        let berlin = time_zone("Europe/Berlin").expect("Berlin");
        // 2026-03-02 is a Monday; 07:30 UTC is 08:30 in Berlin (winter time).
        let monday_morning = at("2026-03-02T07:30:00Z");
        assert_eq!(in_weekly_window(&[Weekday::Mon], "08:00", "18:00", &berlin, monday_morning), Ok(true));
        assert_eq!(in_weekly_window(&[Weekday::Tue], "08:00", "18:00", &berlin, monday_morning), Ok(false));
        assert_eq!(in_weekly_window(&[], "09:00", "18:00", &berlin, monday_morning), Ok(false));
        // 22:00 Monday to 02:00: Tuesday 00:30 Berlin is in Monday's window, not in Tuesday's.
        let tuesday_night = at("2026-03-02T23:30:00Z");
        assert_eq!(in_weekly_window(&[Weekday::Mon], "22:00", "02:00", &berlin, tuesday_night), Ok(true));
        assert_eq!(in_weekly_window(&[Weekday::Tue], "22:00", "02:00", &berlin, tuesday_night), Ok(false));
        assert!(in_weekly_window(&[], "25:00", "02:00", &berlin, tuesday_night).is_err());
        assert!(in_time_windows(&[], "Mars/Olympus", tuesday_night).expect("no windows, no zone needed"));
        let windows = [TimeWindow { days: vec![], from: "08:00".into(), to: "09:00".into() }];
        assert!(in_time_windows(&windows, "Mars/Olympus", tuesday_night).is_err());
        assert_eq!(in_time_windows(&windows, "Europe/Berlin", monday_morning), Ok(true));
    }

    #[test]
    fn maintenance_windows_once_and_weekly() {
        let once = MaintenanceSchedule::Once { start: at("2026-03-02T07:00:00Z"), end: at("2026-03-02T08:00:00Z") };
        assert_eq!(maintenance_on(&once, at("2026-03-02T07:30:00Z")), Ok(true));
        assert_eq!(maintenance_on(&once, at("2026-03-02T08:00:00Z")), Ok(false), "the end is excluded");
        let weekly = MaintenanceSchedule::Weekly {
            days: vec![Weekday::Sun],
            from: "02:00".into(),
            to: "04:00".into(),
            time_zone: "UTC".into(),
        };
        assert_eq!(maintenance_on(&weekly, at("2026-03-01T03:00:00Z")), Ok(true), "a Sunday");
        assert_eq!(maintenance_on(&weekly, at("2026-03-02T03:00:00Z")), Ok(false), "a Monday");
    }

    #[test]
    fn duplicates_within_the_window_are_counted_on_the_first() {
        let throttle = Throttle { duplicate_window_seconds: 60, flapping: None };
        let mut state = ThrottleState::default();
        let first = EventId::new();
        assert_eq!(throttle_decide(&mut state, &throttle, first, Timestamp(0)), ThrottleDecision::Deliver);
        assert_eq!(
            throttle_decide(&mut state, &throttle, EventId::new(), Timestamp(59_999)),
            ThrottleDecision::Duplicate(first)
        );
        let later = EventId::new();
        assert_eq!(throttle_decide(&mut state, &throttle, later, Timestamp(60_000)), ThrottleDecision::Deliver);
        assert_eq!(
            throttle_decide(&mut state, &throttle, EventId::new(), Timestamp(61_000)),
            ThrottleDecision::Duplicate(later)
        );
        let off = Throttle::default();
        assert_eq!(throttle_decide(&mut state, &off, EventId::new(), Timestamp(61_500)), ThrottleDecision::Deliver);
    }

    #[test]
    fn flapping_sends_one_notice_then_suppresses_until_quiet() {
        let throttle =
            Throttle { duplicate_window_seconds: 0, flapping: Some(FlapDetection { events: 3, within_seconds: 10 }) };
        let mut state = ThrottleState::default();
        for second in 0..3 {
            let decision = throttle_decide(&mut state, &throttle, EventId::new(), Timestamp(second * 1000));
            assert_eq!(decision, ThrottleDecision::Deliver, "event {second} is within the limit");
        }
        let fourth = EventId::new();
        assert_eq!(throttle_decide(&mut state, &throttle, fourth, Timestamp(3000)), ThrottleDecision::StartFlapping);
        // Events keep coming less than 10 s apart: still flapping, however long it lasts.
        for second in [12, 21, 30] {
            let decision = throttle_decide(&mut state, &throttle, EventId::new(), Timestamp(second * 1000));
            assert_eq!(decision, ThrottleDecision::Flapping(fourth));
        }
        // Quiet for 10 s: the next event is acted on again.
        assert_eq!(
            throttle_decide(&mut state, &throttle, EventId::new(), Timestamp(40_000)),
            ThrottleDecision::Deliver
        );
        // Events spread wider than the window never flap.
        let mut spread = ThrottleState::default();
        for step in 0..10 {
            let decision = throttle_decide(&mut spread, &throttle, EventId::new(), Timestamp(step * 4000));
            assert_eq!(decision, ThrottleDecision::Deliver);
        }
        assert!(spread.recent.len() <= 4, "the memory stays bounded: {:?}", spread.recent);
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter() {
        let first = Duration::from_secs(30);
        let maximum = Duration::from_secs(1200);
        assert_eq!(backoff(1, first, maximum, 0.5), Duration::from_secs(30));
        assert_eq!(backoff(2, first, maximum, 0.5), Duration::from_secs(60));
        assert_eq!(backoff(3, first, maximum, 0.0), Duration::from_secs(90));
        assert_eq!(backoff(7, first, maximum, 0.5), maximum);
        assert_eq!(backoff(u32::MAX, first, maximum, 0.5), maximum);
        let total: Duration = (1..8).map(|attempt| backoff(attempt, first, maximum, 0.5)).sum();
        assert!(total > Duration::from_secs(3000) && total < Duration::from_secs(4800), "{total:?}");
        assert!(backoff(1, first, maximum, 0.999) < Duration::from_secs(38));
    }
}
