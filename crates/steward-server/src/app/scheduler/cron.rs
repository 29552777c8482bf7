//! Cron schedules with a time zone: the five fields of cron(5) (minute, hour, day of month, month, day of week)
//! with lists, ranges, steps, month and weekday names, `7` for Sunday, and the macros `@hourly`, `@daily`
//! (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`). As in Vixie cron, when both the day of month
//! and the day of week are restricted, a day matching either runs.
//!
//! Times are civil times in the schedule's IANA time zone. Across a daylight saving change a civil time that does
//! not exist (the hour skipped in spring) runs at the first instant after the gap, and one that exists twice (the
//! hour repeated in autumn) runs once, at its first occurrence.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// How far ahead `next_after` looks before it decides a schedule never runs (a 29 February that is also a Monday
/// comes back within 28 years).
const LOOKAHEAD_YEARS: i16 = 30;

#[derive(Debug, Clone)]
pub struct CronSchedule {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    day_of_month_restricted: bool,
    day_of_week_restricted: bool,
    time_zone: TimeZone,
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field: its name for messages, its range, and the names its values may have (index + first value).
struct Field {
    name: &'static str,
    first: u32,
    last: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field { name: "minute", first: 0, last: 59, names: &[] },
    Field { name: "hour", first: 0, last: 23, names: &[] },
    Field { name: "day of month", first: 1, last: 31, names: &[] },
    Field { name: "month", first: 1, last: 12, names: &MONTHS },
    // 7 is Sunday too; it is folded onto 0 after parsing.
    Field { name: "day of week", first: 0, last: 7, names: &WEEKDAYS },
];

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        let lower = text.to_ascii_lowercase();
        if let Some(position) = self.names.iter().position(|name| *name == lower) {
            return Ok(position as u32 + if self.names.len() == 12 { 1 } else { 0 });
        }
        let value: u32 = text.parse().map_err(|_| format!("{}: {text:?} is not a number or a name", self.name))?;
        if !(self.first..=self.last).contains(&value) {
            return Err(format!("{}: {value} is outside {}-{}", self.name, self.first, self.last));
        }
        Ok(value)
    }

    /// The set of values as a bit mask, and whether the field was `*` (or `*/1`).
    fn parse(&self, text: &str) -> Result<(u64, bool), String> {
        let mut mask = 0u64;
        let mut unrestricted = false;
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => {
                    let step: u32 =
                        step.parse().map_err(|_| format!("{}: step {step:?} is not a number", self.name))?;
                    if step == 0 || step > self.last {
                        return Err(format!("{}: step {step} must be 1 to {}", self.name, self.last));
                    }
                    (range, step)
                }
                None => (item, 1),
            };
            let (low, high) = match range {
                "*" => {
                    unrestricted |= step == 1;
                    (self.first, self.last)
                }
                "" => return Err(format!("{}: an empty item in {text:?}", self.name)),
                _ => match range.split_once('-') {
                    Some((low, high)) => {
                        let (low, high) = (self.value(low)?, self.value(high)?);
                        if low > high {
                            return Err(format!("{}: the range {range} goes backwards", self.name));
                        }
                        (low, high)
                    }
                    // `5/15` means from 5 to the end, every 15.
                    None if step > 1 => (self.value(range)?, self.last),
                    None => {
                        let value = self.value(range)?;
                        (value, value)
                    }
                },
            };
            let mut value = low;
            while value <= high {
                mask |= 1 << value;
                value += step;
            }
        }
        Ok((mask, unrestricted))
    }
}

impl CronSchedule {
    /// Parses a cron expression for the IANA time zone `time_zone` (`UTC`, `Europe/Berlin`); the message names
    /// the field that is wrong.
    pub fn parse(expression: &str, time_zone: &str) -> Result<CronSchedule, String> {
        let time_zone = TimeZone::get(time_zone)
            .map_err(|_| format!("{time_zone:?} is not a time zone (such as UTC or Europe/Berlin)"))?;
        let expanded = match expression.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other if other.starts_with('@') => {
                return Err(format!("{other:?} is not a macro (@hourly, @daily, @weekly, @monthly, @yearly)"));
            }
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "{expression:?} has {} field(s); cron has five: minute hour day-of-month month day-of-week",
                parts.len()
            ));
        }
        let mut masks = [(0u64, false); 5];
        for (index, (field, text)) in FIELDS.iter().zip(&parts).enumerate() {
            masks[index] = field.parse(text)?;
        }
        let mut days_of_week = masks[4].0;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week | 1) & 0x7F;
        }
        let schedule = CronSchedule {
            minutes: masks[0].0,
            hours: masks[1].0 as u32,
            days_of_month: masks[2].0 as u32,
            months: masks[3].0 as u16,
            days_of_week: days_of_week as u8,
            day_of_month_restricted: !masks[2].1,
            day_of_week_restricted: !masks[4].1,
            time_zone,
        };
        if schedule.next_after(Timestamp::now()).is_none() {
            return Err(format!("{expression:?} never runs (no such day in {LOOKAHEAD_YEARS} years)"));
        }
        Ok(schedule)
    }

    fn day_matches(&self, date: Date) -> bool {
        let day_of_month = self.days_of_month & (1 << date.day()) != 0;
        let day_of_week = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        match (self.day_of_month_restricted, self.day_of_week_restricted) {
            (true, true) => day_of_month || day_of_week,
            _ => day_of_month && day_of_week,
        }
    }

    /// The first instant after `after` the schedule runs at; `None` if it never does within the lookahead.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned(self.time_zone.clone()).datetime();
        // The next whole minute after `after`, in civil time.
        let mut time = start.with().second(0).subsec_nanosecond(0).build().ok()?.checked_add(1.minute()).ok()?;
        let horizon = start.year().checked_add(LOOKAHEAD_YEARS)?;
        while time.year() <= horizon {
            if self.months & (1 << time.month()) == 0 {
                time = first_of_next_month(time)?;
                continue;
            }
            if !self.day_matches(time.date()) {
                time = time.date().tomorrow().ok()?.to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if self.hours & (1 << time.hour()) == 0 {
                time = time.with().minute(0).build().ok()?.checked_add(1.hour()).ok()?;
                continue;
            }
            if self.minutes & (1 << time.minute()) == 0 {
                time = time.checked_add(1.minute()).ok()?;
                continue;
            }
            let instant = self.time_zone.to_ambiguous_timestamp(time).compatible().ok()?;
            if instant > after {
                return Some(instant);
            }
            // A repeated civil time (autumn) whose first instant is already past: it ran then.
            time = time.checked_add(1.minute()).ok()?;
        }
        None
    }
}

fn first_of_next_month(time: DateTime) -> Option<DateTime> {
    let first = time.date().first_of_month().checked_add(1.month()).ok()?;
    Some(first.to_datetime(jiff::civil::Time::midnight()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn next(expression: &str, zone: &str, after: &str) -> String {
        CronSchedule::parse(expression, zone).unwrap().next_after(at(after)).unwrap().to_string()
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        assert_eq!(next("*/15 * * * *", "UTC", "2026-11-25T10:07:30Z"), "2026-11-25T10:15:00Z");
        assert_eq!(next("0 9-17/4 * * mon-fri", "UTC", "2026-11-27T14:00:00Z"), "2026-11-27T17:00:00Z");
        assert_eq!(next("0 9-17/4 * * mon-fri", "UTC", "2026-11-27T17:00:00Z"), "2026-11-30T09:00:00Z");
        assert_eq!(next("30 2 1 jan,jul *", "UTC", "2026-11-25T00:00:00Z"), "2027-01-01T02:30:00Z");
        assert_eq!(next("0 0 * * 7", "UTC", "2026-11-25T00:00:00Z"), "2026-11-29T00:00:00Z", "7 is Sunday");
        assert_eq!(next("@monthly", "UTC", "2026-11-25T00:00:00Z"), "2026-12-01T00:00:00Z");
        assert_eq!(next("5/20 * * * *", "UTC", "2026-11-25T00:26:00Z"), "2026-11-25T00:45:00Z");
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // The 13th, or any Friday: Friday 27 November comes before 13 December.
        assert_eq!(next("0 12 13 * fri", "UTC", "2026-11-25T00:00:00Z"), "2026-11-27T12:00:00Z");
        // Only the day of month restricted: the 13th.
        assert_eq!(next("0 12 13 * *", "UTC", "2026-11-25T00:00:00Z"), "2026-12-13T12:00:00Z");
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        // 09:00 in Berlin is 08:00 UTC in winter.
        assert_eq!(next("0 9 * * *", "Europe/Berlin", "2026-11-25T10:00:00Z"), "2026-11-26T08:00:00Z");
        // 02:30 does not exist on 29 March 2026 in Berlin: it runs at 03:00 CEST (01:00 UTC).
        assert_eq!(next("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z"), "2026-03-29T01:30:00Z");
        // 02:30 exists twice on 25 October 2026: it runs once, at the first (00:30 UTC), then the next day.
        assert_eq!(next("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z"), "2026-10-25T00:30:00Z");
        assert_eq!(next("30 2 * * *", "Europe/Berlin", "2026-10-25T00:30:00Z"), "2026-10-26T01:30:00Z");
        // Leap days.
        assert_eq!(next("0 0 29 2 *", "UTC", "2026-11-25T00:00:00Z"), "2028-02-29T00:00:00Z");
    }

    #[test]
    fn bad_expressions_name_what_is_wrong() {
        let error = |expression: &str| CronSchedule::parse(expression, "UTC").unwrap_err();
        assert!(error("* * * *").contains("five"));
        assert!(error("60 * * * *").contains("minute: 60 is outside 0-59"));
        assert!(error("* 24 * * *").contains("hour"));
        assert!(error("* * 0 * *").contains("day of month"));
        assert!(error("* * * foo *").contains("month: \"foo\""));
        assert!(error("*/0 * * * *").contains("step 0"));
        assert!(error("5-1 * * * *").contains("backwards"));
        assert!(error("0 0 30 2 *").contains("never runs"));
        assert!(error("@often").contains("macro"));
        assert!(error("1,,2 * * * *").contains("empty item"));
        assert!(CronSchedule::parse("* * * * *", "Mars/Olympus").unwrap_err().contains("time zone"));
    }
}
