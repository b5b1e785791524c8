//! When to import: manual requests, previews and the schedule. Pure: the reconciler
//! passes the clock's `now` in.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::api::ImportTrigger;
use crate::schedule::Schedule;

/// What the reconciler knows about an integration at this moment.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub now: DateTime<Utc>,
    pub published: bool,
    pub generation: i64,
    pub schedule: &'a Schedule,
    pub time_zone: Tz,
    /// Value of the `import-requested-at` annotation.
    pub requested_at: Option<&'a str>,
    /// `status.lastHandledImportRequest`.
    pub last_handled_request: Option<&'a str>,
    /// Value of the `full-reconcile-requested-at` annotation.
    pub full_requested_at: Option<&'a str>,
    /// `status.lastHandledFullReconcileRequest`.
    pub last_handled_full_request: Option<&'a str>,
    /// The generation the last preview was computed for.
    pub preview_generation: Option<i64>,
    /// The schedule slot of the last scheduled run (or the moment scheduling began).
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// Value of the `approve-leavers` annotation.
    pub approved_run: Option<&'a str>,
    /// `status.lastHandledApproval`.
    pub last_handled_approval: Option<&'a str>,
    /// A run of this integration is under way.
    pub running: bool,
}

/// A run to start now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartRun {
    pub trigger: ImportTrigger,
    pub dry_run: bool,
    /// The annotation value this run handles (manual requests).
    pub request: Option<String>,
    /// The `full-reconcile-requested-at` value this run handles: it compares everything.
    pub full_request: Option<String>,
    /// The Blocked run whose leavers this run may apply.
    pub approval: Option<String>,
    /// The schedule slot this run is for (scheduled runs).
    pub slot: Option<DateTime<Utc>>,
}

/// The reconciler's instructions.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Decision {
    pub start: Option<StartRun>,
    /// `status.nextImportTime` (published integrations only).
    pub next_import_time: Option<DateTime<Utc>>,
    /// New `status.lastScheduleTime`, when it moves.
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// Reconcile again after this long at the latest.
    pub requeue_after: Option<Duration>,
}

/// An annotation's value when it asks for something not handled yet.
fn unhandled<'a>(value: Option<&'a str>, handled: Option<&str>) -> Option<&'a str> {
    value.filter(|v| !v.is_empty() && Some(*v) != handled)
}

/// How soon a request that waits for a run to end is looked at again.
const REQUEST_RECHECK_SECONDS: i64 = 5;

/// Decides whether to start a run now. Precedence: manual request, approval, preview
/// (unpublished, spec changed), the schedule (published). A run already under way defers
/// everything to its end; a request waiting for it is looked at again every few seconds.
pub fn decide(i: &Inputs) -> Decision {
    let mut d = Decision::default();
    let next = if i.published {
        i.schedule.next_after(i.time_zone, i.now)
    } else {
        None
    };
    d.next_import_time = next;
    d.requeue_after = next.map(|n| (n - i.now).max(Duration::seconds(1)));
    if i.published && i.last_schedule_time.is_none() {
        // Scheduling starts now: the first scheduled import is the next slot, not a
        // catch-up of slots from before the integration was published.
        d.last_schedule_time = Some(i.now);
    }
    if i.running {
        // The run's end may come just after this reconcile saw it going, with no event
        // after it: a request waiting for it is looked at again soon.
        if unhandled(i.requested_at, i.last_handled_request).is_some()
            || unhandled(i.full_requested_at, i.last_handled_full_request).is_some()
            || unhandled(i.approved_run, i.last_handled_approval).is_some()
        {
            let soon = Duration::seconds(REQUEST_RECHECK_SECONDS);
            d.requeue_after = Some(d.requeue_after.map_or(soon, |r| r.min(soon)));
        }
        return d;
    }

    if let Some(req) = unhandled(i.requested_at, i.last_handled_request) {
        d.start = Some(StartRun {
            full_request: None,
            trigger: if i.published {
                ImportTrigger::Manual
            } else {
                ImportTrigger::Preview
            },
            dry_run: !i.published,
            request: Some(req.to_string()),
            approval: None,
            slot: None,
        });
        return d;
    }

    if let Some(req) = unhandled(i.full_requested_at, i.last_handled_full_request) {
        // Unpublished, every run is a preview and compares everything anyway.
        d.start = Some(StartRun {
            full_request: Some(req.to_string()),
            trigger: if i.published {
                ImportTrigger::Manual
            } else {
                ImportTrigger::Preview
            },
            dry_run: !i.published,
            request: None,
            approval: None,
            slot: None,
        });
        return d;
    }

    if let Some(run) = unhandled(i.approved_run, i.last_handled_approval) {
        if i.published {
            d.start = Some(StartRun {
                full_request: None,
                trigger: ImportTrigger::Manual,
                dry_run: false,
                request: None,
                approval: Some(run.to_string()),
                slot: None,
            });
            return d;
        }
    }

    if !i.published {
        if i.preview_generation != Some(i.generation) {
            d.start = Some(StartRun {
                full_request: None,
                trigger: ImportTrigger::Preview,
                dry_run: true,
                request: None,
                approval: None,
                slot: None,
            });
        }
        return d;
    }

    if let Some(last) = i.last_schedule_time {
        // However many slots were missed, one catch-up run covers them.
        if let Some(slot) = i.schedule.previous_at_or_before(i.time_zone, i.now) {
            if slot > last {
                d.start = Some(StartRun {
                    full_request: None,
                    trigger: ImportTrigger::Scheduled,
                    dry_run: false,
                    request: None,
                    approval: None,
                    slot: Some(slot),
                });
                d.last_schedule_time = Some(slot);
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    struct Case {
        schedule: Schedule,
        tz: Tz,
    }

    impl Case {
        fn new(s: &str, tz: &str) -> Self {
            Case {
                schedule: Schedule::parse(s).unwrap(),
                tz: tz.parse().unwrap(),
            }
        }
        fn inputs(&self, now: DateTime<Utc>) -> Inputs<'_> {
            Inputs {
                now,
                published: true,
                generation: 1,
                schedule: &self.schedule,
                time_zone: self.tz,
                requested_at: None,
                last_handled_request: None,
                full_requested_at: None,
                last_handled_full_request: None,
                preview_generation: None,
                last_schedule_time: Some(now),
                approved_run: None,
                last_handled_approval: None,
                running: false,
            }
        }
    }

    #[test]
    fn unpublished_previews_once_per_generation() {
        let c = Case::new("daily", "UTC");
        let mut i = c.inputs(at(2026, 1, 1, 12, 0));
        i.published = false;
        let d = decide(&i);
        assert_eq!(d.start.as_ref().unwrap().trigger, ImportTrigger::Preview);
        assert!(d.start.unwrap().dry_run);
        assert_eq!(d.next_import_time, None);
        i.preview_generation = Some(1);
        assert_eq!(decide(&i).start, None);
        i.generation = 2;
        assert!(decide(&i).start.is_some());
    }

    #[test]
    fn annotation_starts_one_manual_run_and_never_repeats() {
        let c = Case::new("daily", "UTC");
        let mut i = c.inputs(at(2026, 1, 1, 12, 0));
        i.requested_at = Some("2026-01-01T12:00:00Z");
        let s = decide(&i).start.unwrap();
        assert_eq!(s.trigger, ImportTrigger::Manual);
        assert!(!s.dry_run);
        assert_eq!(s.request.as_deref(), Some("2026-01-01T12:00:00Z"));
        i.last_handled_request = Some("2026-01-01T12:00:00Z");
        assert_eq!(decide(&i).start, None);
        // Unpublished: the request is a preview.
        i.last_handled_request = None;
        i.published = false;
        i.preview_generation = Some(1);
        let s = decide(&i).start.unwrap();
        assert_eq!((s.trigger, s.dry_run), (ImportTrigger::Preview, true));
    }

    #[test]
    fn a_full_reconcile_request_starts_one_full_run_once() {
        let c = Case::new("daily", "UTC");
        let now = at(2026, 1, 1, 12, 0);
        let mut i = c.inputs(now);
        i.full_requested_at = Some("2026-01-01T11:59:00Z");
        let s = decide(&i).start.expect("a run starts now");
        assert_eq!(s.trigger, ImportTrigger::Manual);
        assert_eq!(s.full_request.as_deref(), Some("2026-01-01T11:59:00Z"));
        assert_eq!(s.request, None);
        i.last_handled_full_request = Some("2026-01-01T11:59:00Z");
        assert!(decide(&i).start.is_none());
        // An import request comes first; the full request is handled by the next reconcile.
        i.last_handled_full_request = None;
        i.requested_at = Some("r1");
        let s = decide(&i).start.unwrap();
        assert_eq!((s.request.as_deref(), s.full_request), (Some("r1"), None));
    }

    #[test]
    fn a_request_during_a_run_waits_for_its_end() {
        let c = Case::new("daily", "UTC");
        let mut i = c.inputs(at(2026, 1, 1, 12, 0));
        i.running = true;
        assert_eq!(decide(&i).requeue_after, Some(Duration::hours(15)));
        i.requested_at = Some("x");
        let waiting = decide(&i);
        assert_eq!(waiting.start, None);
        // Looked at again soon, not at the next slot: the run's end may bring no event.
        assert_eq!(waiting.requeue_after, Some(Duration::seconds(5)));
        i.running = false;
        assert!(decide(&i).start.is_some());
    }

    #[test]
    fn scheduled_run_at_the_slot_and_next_time_requeue() {
        let c = Case::new("daily", "Europe/London");
        // Published at 12:00 on 1 July: nothing now, next at 03:00 BST = 02:00 UTC.
        let mut i = c.inputs(at(2026, 7, 1, 12, 0));
        i.last_schedule_time = None;
        let d = decide(&i);
        assert_eq!(d.start, None);
        assert_eq!(d.last_schedule_time, Some(at(2026, 7, 1, 12, 0)));
        assert_eq!(d.next_import_time, Some(at(2026, 7, 2, 2, 0)));
        assert_eq!(d.requeue_after, Some(Duration::hours(14)));
        // At the slot: one scheduled run.
        let mut i = c.inputs(at(2026, 7, 2, 2, 0));
        i.last_schedule_time = Some(at(2026, 7, 1, 12, 0));
        let d = decide(&i);
        let s = d.start.unwrap();
        assert_eq!(s.trigger, ImportTrigger::Scheduled);
        assert_eq!(s.slot, Some(at(2026, 7, 2, 2, 0)));
        assert_eq!(d.last_schedule_time, Some(at(2026, 7, 2, 2, 0)));
        assert_eq!(d.next_import_time, Some(at(2026, 7, 3, 2, 0)));
        // Reconciled again a second later: the slot is handled.
        let mut i = c.inputs(at(2026, 7, 2, 2, 0) + Duration::seconds(1));
        i.last_schedule_time = Some(at(2026, 7, 2, 2, 0));
        assert_eq!(decide(&i).start, None);
    }

    #[test]
    fn downtime_gives_at_most_one_catch_up_run() {
        let c = Case::new("hourly", "UTC");
        let mut i = c.inputs(at(2026, 1, 3, 10, 20));
        i.last_schedule_time = Some(at(2026, 1, 1, 0, 0)); // two days of missed slots
        let d = decide(&i);
        assert_eq!(d.start.unwrap().slot, Some(at(2026, 1, 3, 10, 0)));
        let mut i = c.inputs(at(2026, 1, 3, 10, 21));
        i.last_schedule_time = d.last_schedule_time;
        assert_eq!(decide(&i).start, None);
    }

    #[test]
    fn dst_spring_forward_and_fall_back_each_run_once() {
        let c = Case::new("30 2 * * *", "America/New_York");
        // 8 March 2026: 02:30 does not exist; the run happens once, at 03:00 EDT.
        let mut i = c.inputs(at(2026, 3, 8, 6, 59));
        i.last_schedule_time = Some(at(2026, 3, 7, 7, 30));
        assert_eq!(decide(&i).start, None);
        assert_eq!(decide(&i).next_import_time, Some(at(2026, 3, 8, 7, 0)));
        let mut i = c.inputs(at(2026, 3, 8, 7, 0));
        i.last_schedule_time = Some(at(2026, 3, 7, 7, 30));
        let d = decide(&i);
        assert!(d.start.is_some());
        let mut i = c.inputs(at(2026, 3, 8, 8, 0));
        i.last_schedule_time = d.last_schedule_time;
        assert_eq!(decide(&i).start, None);

        // 1 November 2026: 01:30 happens twice; one run.
        let c = Case::new("30 1 * * *", "America/New_York");
        let mut i = c.inputs(at(2026, 11, 1, 5, 30));
        i.last_schedule_time = Some(at(2026, 10, 31, 5, 30));
        let d = decide(&i);
        assert!(d.start.is_some());
        let mut i = c.inputs(at(2026, 11, 1, 6, 30)); // 01:30 EST, the second 01:30
        i.last_schedule_time = d.last_schedule_time;
        assert_eq!(decide(&i).start, None);
        assert_eq!(decide(&i).next_import_time, Some(at(2026, 11, 2, 6, 30)));
    }

    #[test]
    fn approval_starts_a_run_once() {
        let c = Case::new("daily", "UTC");
        let mut i = c.inputs(at(2026, 1, 1, 12, 0));
        i.approved_run = Some("acme-abc12");
        let s = decide(&i).start.unwrap();
        assert_eq!(s.approval.as_deref(), Some("acme-abc12"));
        i.last_handled_approval = Some("acme-abc12");
        assert_eq!(decide(&i).start, None);
    }
}
