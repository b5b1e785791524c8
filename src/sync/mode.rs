//! Full or incremental: which kind of run this is, decided from the cursor the last
//! successful run left. Pure: the caller passes the time.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::api::{FreshteamIntegrationSpec, ImportMode};
use crate::ledger::ImportCursor;
use crate::schedule::Schedule;

/// How far before the cursor an incremental run reads. Freshteam documents
/// `updated_since` as a date, its granularity and time zone are unconfirmed: a day
/// before the cursor, sent as a date, covers any account time zone. Reading a change
/// twice is harmless (an unchanged member causes no write).
pub(crate) const OVERLAP: Duration = Duration::hours(24);

/// A cursor older than this is suspect: the run is a full one.
pub(crate) const MAX_CURSOR_AGE: Duration = Duration::days(31);

/// Which kinds of run the caller allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RequestedMode {
    /// Incremental between full reconciliations, full when one is due.
    #[default]
    Auto,
    /// Full, whatever the cursor says.
    Full,
    /// Incremental whenever the cursor allows one, even when the full schedule is due.
    Incremental,
}

/// What decides the kind of a run (`ImportOptions::mode`).
#[derive(Clone, Debug)]
pub struct ModePolicy {
    pub requested: RequestedMode,
    /// `spec.fullReconcile.schedule` in `spec.timeZone`.
    pub full_schedule: Schedule,
    pub time_zone: Tz,
    /// [`spec_fingerprint`] of the spec this run works from.
    pub fingerprint: String,
}

/// The decision for one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ModeChoice {
    pub mode: ImportMode,
    /// For `status.modeReason`.
    pub reason: String,
    /// An incremental run reads what changed from here on (the cursor minus [`OVERLAP`]).
    pub since: Option<DateTime<Utc>>,
}

fn full(reason: impl Into<String>) -> ModeChoice {
    ModeChoice {
        mode: ImportMode::Full,
        reason: reason.into(),
        since: None,
    }
}

/// Decides whether a run starting at `now` is full or incremental.
pub(crate) fn choose_mode(
    policy: &ModePolicy,
    cursor: Option<&ImportCursor>,
    dry_run: bool,
    now: DateTime<Utc>,
) -> ModeChoice {
    if policy.requested == RequestedMode::Full {
        return full("a full reconciliation was asked for");
    }
    if dry_run {
        return full("a preview compares everything");
    }
    let Some(c) = cursor else {
        return full("first run: no earlier successful run to continue from");
    };
    if c.spec != policy.fingerprint {
        return full("the spec changed since the last successful run");
    }
    if c.since > now || c.last_full > c.since {
        return full(format!(
            "the incremental cursor ({}) is suspect (in the future or before the last full reconciliation)",
            c.since.to_rfc3339()
        ));
    }
    if now - c.since > MAX_CURSOR_AGE {
        return full(format!(
            "the last successful run ({}) is more than {} days ago",
            c.since.to_rfc3339(),
            MAX_CURSOR_AGE.num_days()
        ));
    }
    if policy.requested == RequestedMode::Auto {
        if let Some(due) = policy
            .full_schedule
            .next_after(policy.time_zone, c.last_full)
        {
            if due <= now {
                return full(format!(
                    "the full reconciliation scheduled '{}' was due at {}",
                    policy.full_schedule.source,
                    due.to_rfc3339()
                ));
            }
        }
    }
    let since = c.since - OVERLAP;
    ModeChoice {
        mode: ImportMode::Incremental,
        reason: format!(
            "changes since {} (the last successful run, less {} h of overlap)",
            since.format("%Y-%m-%d"),
            OVERLAP.num_hours()
        ),
        since: Some(since),
    }
}

/// The cursor a successful run leaves: it started at `started`.
pub(crate) fn next_cursor(
    policy: &ModePolicy,
    choice: &ModeChoice,
    old: Option<&ImportCursor>,
    started: DateTime<Utc>,
) -> ImportCursor {
    let was_full = choice.mode == ImportMode::Full;
    ImportCursor {
        since: started,
        last_full: match old {
            Some(c) if !was_full => c.last_full,
            _ => started,
        },
        spec: policy.fingerprint.clone(),
    }
}

/// A stable fingerprint of the parts of a spec that decide what a run writes: the
/// source, the destination, the mapping (with its attributes), the scope and the leaver
/// rules. Schedules,
/// notifications and history limits are not part of it.
pub(crate) fn spec_fingerprint(spec: &FreshteamIntegrationSpec) -> String {
    let mut parts = serde_json::json!({
        "source": spec.source,
        "destination": spec.destination,
        "mapping": spec.mapping,
        "leavers": spec.leavers,
    });
    // Only when set: fingerprints of specs without a scope stay as they were.
    if let Some(scope) = &spec.scope {
        parts["scope"] = serde_json::json!(scope);
    }
    // FNV-1a: stable across builds and releases, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.to_string().bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn policy() -> ModePolicy {
        ModePolicy {
            requested: RequestedMode::Auto,
            full_schedule: Schedule::parse("weekly").unwrap(),
            time_zone: Tz::UTC,
            fingerprint: "f1".into(),
        }
    }

    fn cursor(since: &str, last_full: &str) -> ImportCursor {
        ImportCursor {
            since: at(since),
            last_full: at(last_full),
            spec: "f1".into(),
        }
    }

    #[test]
    fn between_full_reconciliations_a_run_reads_changes_since_the_cursor_less_the_overlap() {
        // Weekly is Monday 03:00; the last full was Tuesday, so the next is due Monday.
        let c = cursor("2026-12-02T10:00:00Z", "2026-12-01T10:00:00Z");
        let choice = choose_mode(&policy(), Some(&c), false, at("2026-12-02T11:00:00Z"));
        assert_eq!(choice.mode, ImportMode::Incremental);
        assert_eq!(choice.since, Some(at("2026-12-01T10:00:00Z")));
        assert!(choice.reason.contains("2026-12-01"), "{}", choice.reason);
    }

    #[test]
    fn the_first_run_a_spec_change_and_a_due_schedule_are_full() {
        let p = policy();
        let now = at("2026-12-02T11:00:00Z");
        assert_eq!(choose_mode(&p, None, false, now).mode, ImportMode::Full);
        let mut changed = cursor("2026-12-02T10:00:00Z", "2026-12-01T10:00:00Z");
        changed.spec = "f0".into();
        let c = choose_mode(&p, Some(&changed), false, now);
        assert!(c.reason.contains("spec changed"), "{}", c.reason);
        // Last full on Sunday: Monday 03:00 has passed by Monday 11:00.
        let due = cursor("2026-12-07T10:00:00Z", "2026-12-06T10:00:00Z");
        let c = choose_mode(&p, Some(&due), false, at("2026-12-07T11:00:00Z"));
        assert_eq!(c.mode, ImportMode::Full);
        assert!(c.reason.contains("2026-12-07T03:00:00"), "{}", c.reason);
        // ... unless incremental is insisted on.
        let insist = ModePolicy {
            requested: RequestedMode::Incremental,
            ..policy()
        };
        let c = choose_mode(&insist, Some(&due), false, at("2026-12-07T11:00:00Z"));
        assert_eq!(c.mode, ImportMode::Incremental);
    }

    #[test]
    fn a_suspect_or_stale_cursor_a_preview_and_a_request_are_full() {
        let p = policy();
        let now = at("2026-12-02T11:00:00Z");
        let future = cursor("2026-12-03T10:00:00Z", "2026-12-01T10:00:00Z");
        assert!(choose_mode(&p, Some(&future), false, now)
            .reason
            .contains("suspect"));
        let old = cursor("2026-10-01T10:00:00Z", "2026-10-01T10:00:00Z");
        assert_eq!(
            choose_mode(&p, Some(&old), false, now).mode,
            ImportMode::Full
        );
        let ok = cursor("2026-12-02T10:00:00Z", "2026-12-01T10:00:00Z");
        assert_eq!(choose_mode(&p, Some(&ok), true, now).mode, ImportMode::Full);
        let asked = ModePolicy {
            requested: RequestedMode::Full,
            ..policy()
        };
        let c = choose_mode(&asked, Some(&ok), false, now);
        assert_eq!(c.mode, ImportMode::Full);
        // The full run restarts the clock of the full schedule.
        let next = next_cursor(&asked, &c, Some(&ok), now);
        assert_eq!((next.since, next.last_full), (now, now));
        let later = at("2026-12-02T12:00:00Z");
        assert_eq!(
            choose_mode(&p, Some(&next), false, later).mode,
            ImportMode::Incremental
        );
    }

    #[test]
    fn an_incremental_run_keeps_the_last_full_time() {
        let p = policy();
        let old = cursor("2026-12-02T10:00:00Z", "2026-12-01T10:00:00Z");
        let now = at("2026-12-02T11:00:00Z");
        let choice = choose_mode(&p, Some(&old), false, now);
        let next = next_cursor(&p, &choice, Some(&old), now);
        assert_eq!((next.since, next.last_full), (now, old.last_full));
    }

    #[test]
    fn the_fingerprint_ignores_schedules_and_follows_the_mapping() {
        let mut spec = FreshteamIntegrationSpec::default();
        let a = spec_fingerprint(&spec);
        spec.schedule = "hourly".into();
        spec.notifications.recipients.push("hr@example.com".into());
        assert_eq!(spec_fingerprint(&spec), a);
        spec.mapping.job_title = Some("team".into());
        assert_ne!(spec_fingerprint(&spec), a);
    }
}
