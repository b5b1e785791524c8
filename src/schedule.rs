//! Import schedules: presets or a 5-field cron expression, read in an IANA time zone.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// Why a schedule could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "is empty: use hourly, daily, weekly or a 5-field cron expression such as \"0 3 * * *\""
    )]
    Empty,
    #[error(
        "'{text}' is not a schedule: use hourly, daily, weekly or a 5-field cron expression such as \"0 3 * * *\" (minute hour day-of-month month day-of-week){}",
        if *fields == 1 { "" } else { "; this one has a different number of fields" }
    )]
    NotASchedule { text: String, fields: usize },
    #[error("'{text}' is not a valid cron expression: {reason}")]
    InvalidCron { text: String, reason: String },
}

/// A `spec.timeZone` that names no IANA zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not an IANA time zone: use a name such as Europe/London, America/New_York or UTC"
)]
pub struct UnknownTimeZone(pub String);

/// A parsed `spec.schedule`.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The text as written.
    pub source: String,
    cron: Cron,
}

/// Cron equivalents of the presets; 03:00 keeps daily and weekly imports out of office
/// hours and clear of the 01:00–02:00 DST changes.
const PRESETS: &[(&str, &str)] = &[
    ("hourly", "0 * * * *"),
    ("daily", "0 3 * * *"),
    ("weekly", "0 3 * * 1"),
];

impl Schedule {
    /// Parses `hourly`, `daily`, `weekly` or a 5-field cron expression.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let pattern = match PRESETS.iter().find(|(name, _)| *name == trimmed) {
            Some((_, cron)) => *cron,
            None => {
                let fields = trimmed.split_whitespace().count();
                if fields != 5 {
                    return Err(ScheduleError::NotASchedule {
                        text: text.into(),
                        fields,
                    });
                }
                trimmed
            }
        };
        let cron = Cron::from_str(pattern).map_err(|e| ScheduleError::InvalidCron {
            text: text.into(),
            reason: e.to_string(),
        })?;
        Ok(Schedule {
            source: trimmed.to_string(),
            cron,
        })
    }

    /// The first scheduled time strictly after `after`, in the given zone.
    pub fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The latest scheduled time at or before `at`, in the given zone.
    pub fn previous_at_or_before(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&tz);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Parses `spec.timeZone` (absent: UTC).
pub fn parse_time_zone(name: Option<&str>) -> Result<Tz, UnknownTimeZone> {
    match name.map(str::trim) {
        None | Some("") => Ok(Tz::UTC),
        Some(n) => n.parse::<Tz>().map_err(|_| UnknownTimeZone(n.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn presets_and_cron_parse() {
        for s in [
            "hourly",
            "daily",
            "weekly",
            "0 3 * * *",
            "*/15 8-18 * * 1-5",
        ] {
            Schedule::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }

    #[test]
    fn rejections_say_what_is_accepted() {
        let e = Schedule::parse("fortnightly").unwrap_err().to_string();
        assert!(e.contains("'fortnightly' is not a schedule"), "{e}");
        assert!(e.contains("hourly, daily, weekly"), "{e}");
        let e = Schedule::parse("0 3 * *").unwrap_err().to_string();
        assert!(e.contains("different number of fields"), "{e}");
        let e = Schedule::parse("0 0 3 * * *").unwrap_err().to_string();
        assert!(e.contains("5-field"), "{e}");
        let e = Schedule::parse("61 3 * * *").unwrap_err().to_string();
        assert!(e.contains("not a valid cron expression"), "{e}");
    }

    #[test]
    fn daily_runs_at_three_local_time_across_dst() {
        let s = Schedule::parse("daily").unwrap();
        let tz: Tz = "Europe/London".parse().unwrap();
        // Winter: 03:00 GMT = 03:00 UTC.
        assert_eq!(
            s.next_after(tz, utc(2026, 1, 10, 12, 0)),
            Some(utc(2026, 1, 11, 3, 0))
        );
        // Summer: 03:00 BST = 02:00 UTC.
        assert_eq!(
            s.next_after(tz, utc(2026, 7, 10, 12, 0)),
            Some(utc(2026, 7, 11, 2, 0))
        );
        // The night the clocks go forward (29 March 2026) still has a 03:00.
        assert_eq!(
            s.next_after(tz, utc(2026, 3, 28, 12, 0)),
            Some(utc(2026, 3, 29, 2, 0))
        );
    }

    #[test]
    fn time_zones() {
        assert_eq!(parse_time_zone(None).unwrap(), Tz::UTC);
        assert_eq!(
            parse_time_zone(Some("Europe/London")).unwrap(),
            Tz::Europe__London
        );
        let e = parse_time_zone(Some("Mars/Olympus"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'Mars/Olympus' is not an IANA time zone"), "{e}");
    }
}

#[cfg(test)]
mod dst {
    use super::*;
    use chrono::TimeZone;

    fn ny() -> Tz {
        "America/New_York".parse().unwrap()
    }

    fn walk(s: &Schedule, from: DateTime<Utc>, n: usize) -> Vec<String> {
        let mut t = from;
        (0..n)
            .map(|_| {
                t = s.next_after(ny(), t).unwrap();
                t.to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn a_time_skipped_by_spring_forward_runs_once_at_the_first_valid_minute() {
        let s = Schedule::parse("30 2 * * *").unwrap();
        let start = Utc.with_ymd_and_hms(2026, 3, 7, 12, 0, 0).unwrap();
        assert_eq!(
            walk(&s, start, 3),
            [
                "2026-03-08T07:00:00+00:00", // 03:00 EDT: 02:30 does not exist that night
                "2026-03-09T06:30:00+00:00",
                "2026-03-10T06:30:00+00:00",
            ]
        );
    }

    #[test]
    fn a_time_repeated_by_fall_back_runs_once() {
        let s = Schedule::parse("30 1 * * *").unwrap();
        let start = Utc.with_ymd_and_hms(2026, 10, 31, 12, 0, 0).unwrap();
        assert_eq!(
            walk(&s, start, 2),
            ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]
        );
    }

    #[test]
    fn previous_slot_agrees_with_next_across_fall_back() {
        let s = Schedule::parse("hourly").unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 6, 30, 0).unwrap();
        let prev = s.previous_at_or_before(ny(), at).unwrap();
        assert!(prev <= at);
        assert!(s.next_after(ny(), prev).unwrap() > at);
    }
}
