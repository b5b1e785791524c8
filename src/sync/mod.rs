//! The sync engine: reads the source, maps, plans against the destination, applies the
//! plan and reports the run as an `ImportRunStatus`.

pub(crate) mod after_run;
mod deadline;
mod incremental;
pub(crate) mod mode;
mod profile;
mod read;
mod refusals;
pub(crate) mod report;
pub(crate) mod stop;
#[cfg(test)]
mod tests;

use std::sync::Mutex;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::api::{
    ApiCalls, ImportMode, ImportPhase, ImportRunStatus, ImportSummary, Progress, RecordError,
    Severity, WhenRemoved,
};
use crate::clock::{rfc3339, Clock};
use crate::destination::{
    Account, Accounts, ConvergenceNotes, DestinationMember, DestinationStats, MemberDirectory,
    WriteOp, WriteOutcome,
};
use crate::ledger::{Ledger, LedgerStore, ManagedIds, Origin};
use crate::mapping::{CompiledMapping, DesiredSet, PackedDesired};
use crate::member::{Attr, AttrSet, Change, MemberFields};
use crate::notify::{InvitationIntent, OutboxStore};
use crate::plan::{
    plan_sets, PackedPlan, PlanItem, PlanOptions, PlanScope, PlannedWrite, Vanished, WriteKind,
};
use crate::progress::ProgressSink;
use crate::source::{EmployeeSource, SourceStats};

pub use after_run::{notify_after_run, unsent_mail_warning, RunInfo};
pub use report::{errors_csv, report_csv, report_part_name, report_parts, MAX_INLINE_ERRORS};
pub use stop::StopSignal;

/// Writes sent between two checks for a stop request; a destination that takes more in
/// one request (`/Bulk`) gets batches of that size, up to [`MAX_WRITE_BATCH`], so that a
/// batch is never split into more requests than its writes need.
const WRITE_BATCH: usize = 500;
const MAX_WRITE_BATCH: usize = 5_000;

/// How one run behaves.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Write nothing; count what would have happened.
    pub dry_run: bool,
    /// `safety.maxLeaversPercent`.
    pub max_leavers_percent: u32,
    /// Leavers approved for this run, if any.
    pub approved_leavers: Option<u32>,
    /// `spec.leavers.whenRemoved`.
    pub when_removed: WhenRemoved,
    /// `spec.destination.scim.profile`: members it refuses are error rows, never sent.
    pub profile: crate::api::ScimProfile,
    /// Asks the run to stop at its next safe point (the run ends `Interrupted`).
    pub stop: StopSignal,
    /// Values earlier runs wrote that the destination did not keep (from the state).
    pub convergence: ConvergenceNotes,
    /// Full or incremental, decided from the ledger's cursor; none: always full, and no
    /// cursor is kept.
    pub mode: Option<mode::ModePolicy>,
    /// `spec.runDeadline`: a run still going this long after it started is stopped and
    /// ends `Failed`; none: no deadline.
    pub deadline: Option<std::time::Duration>,
}

fn api_calls(source: &SourceStats, dest: &DestinationStats) -> ApiCalls {
    ApiCalls {
        freshteam_list: source.list_requests,
        freshteam_detail: source.detail_requests,
        freshteam_lookups: source.lookup_requests,
        freshteam_throttled: source.throttled,
        freshteam_retries: source.retries,
        destination_reads: dest.reads,
        destination_writes: dest.writes + dest.bulk_operations,
        destination_bulk: dest.bulk_requests,
        destination_lookups: dest.lookup_requests,
    }
}

/// Everything a run produced.
#[derive(Clone, Debug, Default)]
pub struct ImportOutcome {
    pub status: ImportRunStatus,
    /// Every error and warning row (the status keeps the first 50).
    pub report: Vec<RecordError>,
    /// One row per change the run made (or, dry, would make): severity `change`, field
    /// `created` / `updated` / `leaver` / `reactivated`, the message saying what.
    pub changes: Vec<RecordError>,
    /// Employee IDs of members created by this run (for invitations).
    pub created: Vec<CreatedMember>,
    /// Leavers a `Blocked` run held back.
    pub blocked_leavers: u32,
    /// Employee IDs with a member in the destination after the run (`None` when the
    /// destination could not be read).
    pub member_ids: Option<HashSet<String>>,
    /// The convergence notes to keep for the next run; `None`: keep the previous ones
    /// (a dry run, or a run that never got to write).
    pub convergence: Option<ConvergenceNotes>,
    /// Mapping targets (`spec.mapping` field names) the destination does not keep.
    pub unsupported_targets: Vec<String>,
    /// New members were held back (their state could not be recorded): how many and why,
    /// as the status message says it.
    pub held_back: Option<String>,
}

impl ImportOutcome {
    /// A run that failed before it could import anything: started at `start`, ended at
    /// `end` because of `message`.
    pub fn failed(
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
        message: String,
    ) -> Self {
        let mut outcome = ImportOutcome::default();
        outcome.status.start_time = Some(rfc3339(start));
        outcome.into_failed(end, message)
    }

    /// This run, ended at `end` as `Failed` because of `message`; what it counted so far
    /// (its mode, its API calls) stays.
    pub fn into_failed(mut self, end: chrono::DateTime<chrono::Utc>, message: String) -> Self {
        self.status.phase = ImportPhase::Failed;
        self.status.message = Some(message);
        self.status.completion_time = Some(rfc3339(end));
        self
    }

    /// Adds warning rows to the report, the summary's warnings count and the inline
    /// rows of the status.
    pub fn add_warnings(&mut self, rows: impl IntoIterator<Item = RecordError>) {
        let before = self.report.len();
        self.report.extend(rows);
        self.status.summary.warnings += (self.report.len() - before) as u32;
        self.status.errors = self
            .report
            .iter()
            .take(MAX_INLINE_ERRORS)
            .cloned()
            .collect();
    }
}

/// A member this run created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedMember {
    pub id: String,
    pub employee_id: String,
    pub email: String,
    pub first_name: Option<String>,
    /// The manager's destination id the member was created with.
    pub manager: Option<String>,
}

/// Runs one import end to end. Never panics on bad data: record problems become report
/// rows, an unusable source or destination makes the run `Failed`.
///
/// With an `outbox`, an invitation intent is recorded durably for every member before it
/// is created and confirmed after, so that [`crate::notify::deliver_pending`] can send
/// each invitation exactly once, even across a crash.
pub async fn run_import(
    mapping: &CompiledMapping,
    source: &dyn EmployeeSource,
    destination: &dyn MemberDirectory,
    options: &ImportOptions,
    outbox: Option<&dyn OutboxStore>,
    progress: &dyn ProgressSink,
    clock: &dyn Clock,
) -> ImportOutcome {
    run_import_with_ledger(
        mapping,
        source,
        destination,
        options,
        outbox,
        None,
        progress,
        clock,
    )
    .await
}

/// [`run_import`] with the integration's ledger of managed members. Without one,
/// members are managed when their externalId is among this run's employees, and an
/// employee removed from Freshteam for good cannot be detected.
///
/// The ledger is saved before any member is created (with the members about to be
/// created in it). When it cannot be saved, or the invitation intents cannot be
/// recorded, no member is created in this run and the report says why.
///
/// While it runs, a wait for the destination's rate limit is passed on to `progress`
/// ([`ProgressSink::waiting`]); past `options.deadline` the run is stopped like any
/// stop request and ends `Failed`, naming the deadline.
#[allow(clippy::too_many_arguments)]
pub async fn run_import_with_ledger(
    mapping: &CompiledMapping,
    source: &dyn EmployeeSource,
    destination: &dyn MemberDirectory,
    options: &ImportOptions,
    outbox: Option<&dyn OutboxStore>,
    ledger_store: Option<&dyn LedgerStore>,
    progress: &dyn ProgressSink,
    clock: &dyn Clock,
) -> ImportOutcome {
    let run = import(
        mapping,
        source,
        destination,
        options,
        outbox,
        ledger_store,
        progress,
        clock,
    );
    let Some(limit) = options.deadline else {
        return crate::progress::forward_waits(progress, run).await;
    };
    let reason = deadline::reason(limit);
    // Whether the deadline is what stopped the run (another stop may have come first).
    let past_deadline = std::sync::atomic::AtomicBool::new(false);
    let watchdog = async {
        tokio::time::sleep(limit).await;
        let first = options.stop.stop(reason.clone());
        past_deadline.store(first, std::sync::atomic::Ordering::Relaxed);
        std::future::pending::<ImportOutcome>().await
    };
    let outcome = crate::progress::forward_waits(progress, async {
        tokio::select! {
            outcome = run => outcome,
            never = watchdog => never,
        }
    })
    .await;
    if past_deadline.load(std::sync::atomic::Ordering::Relaxed) {
        deadline::past(outcome, &reason)
    } else {
        outcome
    }
}

#[allow(clippy::too_many_arguments)]
async fn import(
    mapping: &CompiledMapping,
    source: &dyn EmployeeSource,
    destination: &dyn MemberDirectory,
    options: &ImportOptions,
    outbox: Option<&dyn OutboxStore>,
    ledger_store: Option<&dyn LedgerStore>,
    progress: &dyn ProgressSink,
    clock: &dyn Clock,
) -> ImportOutcome {
    let mut outcome = ImportOutcome::default();
    outcome.status.phase = ImportPhase::Running;
    let started = clock.now();
    outcome.status.start_time = Some(rfc3339(started));

    let mut ledger = match ledger_store {
        Some(store) => match store.load_ledger().await {
            Ok(l) => Some(l),
            Err(e) => {
                return fail(
                    outcome,
                    clock,
                    format!("the ledger of managed members could not be read ({}): {e}; nothing was changed", store.ledger_location()),
                )
            }
        },
        None => None,
    };

    let cursor = ledger.as_ref().and_then(|l| l.cursor.clone());
    let cursor = cursor.as_ref();
    let choice = match (&options.mode, ledger_store) {
        (Some(policy), Some(_)) => {
            Some(mode::choose_mode(policy, cursor, options.dry_run, started))
        }
        (Some(policy), None) if policy.requested == mode::RequestedMode::Full => {
            Some(mode::choose_mode(policy, None, options.dry_run, started))
        }
        (Some(_), None) => Some(mode::ModeChoice {
            mode: ImportMode::Full,
            reason: "no state to keep an incremental cursor in (sync without --state-file)".into(),
            since: None,
        }),
        (None, _) => None,
    };
    outcome.status.mode = Some(choice.as_ref().map_or(ImportMode::Full, |c| c.mode));
    outcome.status.mode_reason = choice.as_ref().map(|c| c.reason.clone());
    let since = choice.as_ref().and_then(|c| c.since);

    let (source_stats, desired, current) = if let Some(since) = since {
        progress.phase("Reading the employees changed in Freshteam");
        let read = incremental::read_changed(
            mapping,
            source,
            destination,
            ledger.as_ref(),
            since,
            progress,
        );
        let read = tokio::select! {
            biased;
            reason = options.stop.stopped() => {
                return interrupted(outcome, clock, reason, "while reading; nothing was written")
            }
            r = read => r,
        };
        match read {
            Ok(r) => (r.stats, r.desired, Accounts::from(&r.current[..])),
            Err(incremental::ReadError::Source(e)) => {
                return fail(outcome, clock, format!("Freshteam: {e}"))
            }
            Err(incremental::ReadError::Destination(stats, e)) => {
                outcome.status.api_calls = Some(api_calls(&stats, &destination.stats()));
                return fail(outcome, clock, format!("destination: {e}"));
            }
        }
    } else {
        progress.phase("Reading Freshteam employees");
        // Both sides are read at once: the destination's list, usually the longest part of a
        // steady-state run, overlaps Freshteam's. A Freshteam failure ends the run at once;
        // a destination failure waits for Freshteam so the report still counts its calls.
        // Reads are abandoned as soon as a stop is asked for: they changed nothing.
        // Records are mapped as soon as Freshteam is read, and accounts packed page by page
        // as they arrive: neither side is ever held whole as plain records or members.
        let accounts = Mutex::new(Accounts::default());
        let add_page = |page: Vec<DestinationMember>| {
            accounts.lock().expect("accounts lock").extend(&page);
        };
        let (fetched, listed) = {
            let mut fetch = std::pin::pin!(async {
                let read = read::read_desired(mapping, &mapping.request, source, progress).await?;
                progress.phase("Reading destination members");
                Ok::<_, crate::source::SourceError>(read)
            });
            let mut list = std::pin::pin!(destination.list_pages(&add_page));
            let (mut fetched, mut listed) = (None, None);
            while fetched.is_none() || listed.is_none() {
                tokio::select! {
                    biased;
                    reason = options.stop.stopped() => {
                        let Some((source_stats, _)) = &fetched else {
                            return interrupted(outcome, clock, reason, "while reading Freshteam; nothing was written");
                        };
                        outcome.status.api_calls = Some(api_calls(source_stats, &destination.stats()));
                        return interrupted(outcome, clock, reason, "while reading the destination; nothing was written")
                    }
                    f = &mut fetch, if fetched.is_none() => match f {
                        Ok(f) => fetched = Some(f),
                        Err(e) => return fail(outcome, clock, format!("Freshteam: {e}")),
                    },
                    l = &mut list, if listed.is_none() => listed = Some(l),
                }
            }
            (fetched, listed)
        };
        let (Some((source_stats, desired)), Some(listed)) = (fetched, listed) else {
            unreachable!("the loop ends once both reads are done");
        };
        let current = match listed {
            Ok(()) => {
                let mut current = accounts.into_inner().expect("accounts lock");
                current.dedup();
                current
            }
            Err(e) => {
                outcome.status.api_calls = Some(api_calls(&source_stats, &destination.stats()));
                return fail(outcome, clock, format!("destination: {e}"));
            }
        };
        (source_stats, desired, current)
    };
    let total = desired.records as u64;

    // What the destination does not keep is never written nor compared.
    let kept = destination.keeps();
    let unsupported: Vec<Attr> = mapping
        .managed
        .iter()
        .filter(|a| !kept.contains(*a))
        .collect();
    let managed: AttrSet = mapping
        .managed
        .iter()
        .filter(|a| kept.contains(*a))
        .collect();
    let plan_options = PlanOptions {
        managed,
        max_leavers_percent: options.max_leavers_percent,
        approved_leavers: options.approved_leavers,
        when_removed: options.when_removed,
        scope: match since {
            Some(_) => PlanScope::Changed {
                managed: ledger.as_ref().map_or(0, |l| l.len() as u32),
            },
            None => PlanScope::Everyone,
        },
    };
    let (desired, mut refused) = profile::screen(desired, options.profile, managed);
    let managed_ids = ledger.as_ref().map(|l| l as &dyn ManagedIds);
    let mut planned = plan_sets(&desired, &current, managed_ids, &plan_options);
    let vanished = std::mem::take(&mut planned.vanished);
    let sets = Sets {
        desired: &desired,
        current: &current,
        vanished: &vanished,
    };
    let (held_rows, mut notes) = hold_back_unkept(&mut planned, sets, &options.convergence);
    let refused_rows = refusals::hold_back_refused(
        &mut planned,
        sets,
        &options.convergence,
        &mut notes,
        since.is_some(),
    );
    let decided = total.saturating_sub(planned.writes.len() as u64);
    progress.advance(decided);

    let mut summary = ImportSummary {
        unchanged: planned.unchanged,
        skipped: planned.skipped,
        ..ImportSummary::default()
    };
    let mut report = std::mem::take(&mut planned.errors);
    let mut stopped: Option<String> = None;
    if !unsupported.is_empty() {
        let names: Vec<String> = unsupported
            .iter()
            .map(|a| destination.target_name(*a))
            .collect();
        report.push(RecordError {
            employee_id: None,
            email: None,
            field: Some(
                unsupported
                    .iter()
                    .map(|a| a.field_name())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            severity: Severity::Warning,
            message: format!(
                "the destination does not keep these mapping targets, so they are never written or compared: {}",
                names.join(", ")
            ),
        });
        outcome.unsupported_targets = unsupported
            .iter()
            .map(|a| a.field_name().to_string())
            .collect();
    }
    report.extend(held_rows);
    refused += refused_rows.len();
    report.extend(refused_rows);
    // Why creates were held back, when they were.
    let mut held_back: Option<String> = None;
    // The ledger as this run recorded it.
    let mut recorded: Option<Ledger> = None;
    let mut created: Vec<CreatedMember> = Vec::new();

    if options.dry_run {
        summary.created = planned.count(WriteKind::Create);
        summary.updated = planned.count(WriteKind::Update);
        summary.reactivated = planned.count(WriteKind::Reactivate);
        summary.leavers = planned.count(WriteKind::Leaver);
        progress.advance(planned.writes.len() as u64);
        outcome.changes = planned
            .writes
            .iter()
            .map(|item| change_row(item, sets))
            .collect();
    } else if let Some(reason) = options.stop.reason() {
        outcome.status.api_calls = Some(api_calls(&source_stats, &destination.stats()));
        return interrupted(outcome, clock, reason, "before any write");
    } else {
        progress.phase("Applying changes");
        destination.remember(&options.convergence);
        if let (Some(store), Some(mut next)) = (ledger_store, ledger.take()) {
            if !next_ledger(&mut next, sets, &planned, since.is_some()) {
                recorded = Some(next);
            } else if let Err(e) = store.save_ledger(&next).await {
                let why = format!(
                    "the ledger of managed members could not be saved ({}): {e}",
                    store.ledger_location()
                );
                held_back = hold_back_creates(&mut planned, sets, &mut report, &why);
            } else {
                recorded = Some(next);
            }
        }
        drop(ledger);
        let outbox = match outbox {
            Some(store) => match record_invitations(store, &planned.writes, sets).await {
                Ok(()) => Some(store),
                Err(why) => {
                    held_back =
                        held_back.or(hold_back_creates(&mut planned, sets, &mut report, &why));
                    None
                }
            },
            None => None,
        };
        let managers: HashMap<&str, &str> = if mapping.managed.contains(Attr::Manager) {
            desired
                .members
                .iter()
                .filter_map(|d| Some((d.member.employee_id(), d.manager_employee_id()?)))
                .collect()
        } else {
            HashMap::new()
        };
        let (results, made, stop) = apply_writes(
            destination,
            &planned.writes,
            sets,
            &managers,
            progress,
            &options.stop,
        )
        .await;
        drop(managers);
        let applied = results.iter().filter(|r| r.is_some()).count();
        if let Some(reason) = stop {
            stopped = Some(format!(
                "{reason}; stopped after {applied} of {} writes, the next run applies the rest",
                planned.writes.len()
            ));
        }
        // In plan order: each applied write's tally, report row and change row.
        let mut changes = Vec::with_capacity(applied);
        for (item, result) in planned.writes.iter().zip(results) {
            let Some(result) = result else {
                continue;
            };
            match &result {
                WriteOutcome::Updated if item.account.is_some() => {
                    notes.record(sets.employee_id(item), &item.changes);
                }
                // What the service's answer shows it did not keep: the next run's plan
                // would write it again, the note holds it back.
                WriteOutcome::Created { unkept, .. } => {
                    notes.record(sets.employee_id(item), unkept);
                }
                _ => {}
            }
            refused += usize::from(refusals::remember(&mut notes, item, sets, &result, clock));
            let failed = matches!(result, WriteOutcome::Failed { .. });
            tally(item, sets, result, &mut summary, &mut report);
            if !failed {
                changes.push(change_row(item, sets));
            }
        }
        destination.learnt(&mut notes);
        outcome.convergence = Some(std::mem::take(&mut notes));
        outcome.changes = changes;
        // In plan order (creates go in waves down the reporting line).
        let mut made = made;
        made.sort_unstable_by_key(|(i, _)| *i);
        created = made.into_iter().map(|(_, c)| c).collect();
        if let Some(store) = outbox {
            let ids: Vec<(String, String)> = created
                .iter()
                .map(|c| (c.employee_id.clone(), c.id.clone()))
                .collect();
            if let Err(e) = crate::notify::confirm_accounts(store, &ids).await {
                progress.warn(&format!("invitation outbox: {e}"));
            }
        }
        if planned.pending_manager_links > 0 && !created.is_empty() && stopped.is_none() {
            link_new_managers(sets, &created, &plan_options, destination, &mut report).await;
        }
    }

    // Only a run that went through moves the cursor on: anything less reads again from
    // where the last one that did started. Members the destination refuses for their
    // values do not hold it back: a change of those values is a change the next run reads.
    let went_through = stopped.is_none()
        && planned.blocked.is_none()
        && held_back.is_none()
        && report
            .iter()
            .filter(|r| r.severity == Severity::Error)
            .count()
            == refused;
    drop(planned.writes);
    drop(desired);
    // A run that saw only some accounts cannot tell who has none.
    let mut member_ids: HashSet<String> = HashSet::with_capacity(current.len() + created.len());
    member_ids.extend(
        current
            .iter()
            .map(|m| m.employee_id())
            .filter(|id| !id.is_empty())
            .map(str::to_string),
    );
    drop(current);
    member_ids.extend(created.iter().map(|c| c.employee_id.clone()));
    // Saved once the plan's sets are gone: at a first import of 100,000 this save is
    // the run's peak.
    if let (Some(store), Some(mut keep)) = (ledger_store, recorded.take()) {
        let mut changed = false;
        for c in &created {
            changed |= keep.set_account(&c.employee_id, Some(&c.id));
        }
        if let (Some(policy), Some(choice), true) = (&options.mode, &choice, went_through) {
            let next = mode::next_cursor(policy, choice, cursor, started);
            changed |= keep.cursor.as_ref() != Some(&next);
            keep.cursor = Some(next);
        }
        if changed {
            if let Err(e) = store.save_ledger(&keep).await {
                report.push(RecordError {
                    severity: Severity::Warning,
                    message: format!("the ledger could not be saved after the writes ({}): {e}; the next run reads again from the previous cursor", store.ledger_location()),
                    ..RecordError::default()
                });
            }
        }
    }
    summary.errors = report
        .iter()
        .filter(|r| r.severity == Severity::Error)
        .count() as u32;
    summary.warnings = report
        .iter()
        .filter(|r| r.severity == Severity::Warning)
        .count() as u32;
    outcome.member_ids = since.is_none().then_some(member_ids);
    outcome.created = created;
    outcome.blocked_leavers = planned.blocked.as_ref().map_or(0, |b| b.leavers);
    outcome.status.leavers_awaiting_approval = planned.blocked.as_ref().map(|b| b.leavers);
    outcome.status.api_calls = Some(api_calls(&source_stats, &destination.stats()));

    let status = &mut outcome.status;
    status.phase = if stopped.is_some() {
        ImportPhase::Interrupted
    } else if planned.blocked.is_some() {
        ImportPhase::Blocked
    } else if summary.errors > 0 {
        ImportPhase::PartiallySucceeded
    } else {
        ImportPhase::Succeeded
    };
    let mut message = match (&stopped, &planned.blocked) {
        (Some(why), _) => format!("Interrupted: {why} ({})", describe(&summary, false)),
        (None, Some(b)) => b.message(),
        (None, None) => describe(&summary, options.dry_run),
    };
    if let Some(held) = &held_back {
        message.push_str("; ");
        message.push_str(held);
    }
    status.message = Some(message);
    status.progress = Some(Progress::new(total, total));
    status.summary = summary;
    status.errors = report.iter().take(MAX_INLINE_ERRORS).cloned().collect();
    status.completion_time = Some(rfc3339(clock.now()));
    outcome.report = report;
    outcome.held_back = held_back;
    outcome
}

/// The desired members and the accounts a plan refers into.
#[derive(Clone, Copy)]
struct Sets<'a> {
    desired: &'a DesiredSet,
    current: &'a Accounts,
    /// Ledger members whose account is gone from the destination.
    vanished: &'a Vanished,
}

impl<'a> Sets<'a> {
    fn employee_id(&self, item: &PlanItem) -> &'a str {
        PackedPlan::employee_id(item, self.desired, self.current)
    }
    fn email(&self, item: &PlanItem) -> &'a str {
        PackedPlan::email(item, self.desired, self.current)
    }
    fn write(&self, item: &PlanItem) -> PlannedWrite {
        PackedPlan::write(item, self.desired, self.current)
    }
}

/// The ledger to record before the writes: the members managed at the start that
/// still have an account, those this plan adopts, and those it is about to create.
///
/// A run that read only the changed few (`partial`) saw only their accounts: it keeps
/// every member of the old ledger (a full reconciliation drops those without one).
/// Members whose account vanished are dropped when they get none, and keep the vanished
/// account's id until the new one is created (a run that fails to create it tries again).
fn next_ledger(ledger: &mut Ledger, sets: Sets<'_>, planned: &PackedPlan, partial: bool) -> bool {
    // Employee ID → the one account holding it (none when several do).
    let mut accounts: HashMap<&str, Option<&str>> = HashMap::with_capacity(sets.current.len());
    for m in sets.current.iter() {
        let key = m.employee_id();
        if !key.is_empty() {
            accounts
                .entry(key)
                .and_modify(|a| *a = None)
                .or_insert(Some(m.id()));
        }
    }
    // Updated in place: at 100,000 members a second copy is a good part of a run's memory.
    let before = ledger.len();
    let mut changed = false;
    let vanished = sets.vanished;
    let recreated = |id: &str| vanished.replaces(id).is_some();
    ledger.retain(|id| {
        !vanished.forgets(id) && (partial || accounts.contains_key(id) || recreated(id))
    });
    changed |= ledger.add_missing(planned.adopted.iter().map(String::as_str), Origin::Adopted);
    changed |= ledger.update_accounts(|id| match accounts.get(id) {
        Some(known) => Some(*known),
        None if partial || recreated(id) => None,
        None => Some(None),
    });
    let creates = planned
        .writes
        .iter()
        .filter(|item| item.kind == WriteKind::Create)
        .map(|item| sets.employee_id(item));
    changed |= ledger.add_missing(creates, Origin::Created);
    changed || before != ledger.len()
}

/// Takes the creates out of the plan (state they need could not be recorded): one
/// warning row per member, saying why; the member is created on a later run.
fn hold_back_creates(
    planned: &mut PackedPlan,
    sets: Sets<'_>,
    report: &mut Vec<RecordError>,
    why: &str,
) -> Option<String> {
    let mut held = 0;
    planned.writes.retain(|item| {
        if item.kind != WriteKind::Create {
            return true;
        }
        held += 1;
        report.push(RecordError {
            employee_id: Some(sets.employee_id(item).to_string()),
            email: Some(sets.email(item).to_string()),
            field: None,
            severity: Severity::Warning,
            message: format!(
                "not created in this run: {why}; it will be created on a run that can record it"
            ),
        });
        false
    });
    if held == 0 {
        return None;
    }
    tracing::warn!(held, reason = %why, "members not created");
    Some(format!("{held} new member(s) not created: {why}"))
}

/// The change row of a write: what it did (or, dry, would do). Failed writes are error
/// rows already and get none.
fn change_row(item: &PlanItem, sets: Sets<'_>) -> RecordError {
    let (field, message) = match (item.account, item.kind) {
        (None, _) if sets.vanished.replaces(sets.employee_id(item)).is_some() => (
            "created",
            "account missing in the destination: created again".to_string(),
        ),
        (None, _) => ("created", "member created".to_string()),
        (Some(a), kind) => {
            let old = sets.current.get(a as usize);
            let fields = describe_changes(old, &item.changes);
            match kind {
                WriteKind::Leaver => (
                    "leaver",
                    format!(
                        "marked as leaver ({})",
                        item.leaver_reason.map_or("inactive", |r| r.as_str())
                    ),
                ),
                WriteKind::Reactivate if fields.is_empty() => {
                    ("reactivated", "re-activated".to_string())
                }
                WriteKind::Reactivate => ("reactivated", format!("re-activated; {fields}")),
                _ => ("updated", fields),
            }
        }
    };
    RecordError {
        employee_id: Some(sets.employee_id(item).to_string()),
        email: Some(sets.email(item).to_string()),
        field: Some(field.into()),
        severity: Severity::Change,
        message,
    }
}

/// `jobTitle: Engineer → Manager; department: (none) → Sales`.
fn describe_changes(old: &impl MemberFields, changes: &[Change]) -> String {
    let was = |attr: Attr| {
        old.field(attr)
            .filter(|v| !v.is_empty())
            .unwrap_or("(none)")
            .to_string()
    };
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Set(attr, v) => Some(format!("{attr}: {} → {v}", was(*attr))),
            Change::Clear(attr) => Some(format!("{attr}: {} → (none)", was(*attr))),
            Change::Active(_) => None,
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Records an invitation intent for each planned create. When that fails, the caller
/// creates nobody in this run: a member is never created without its intent.
async fn record_invitations(
    store: &dyn OutboxStore,
    items: &[PlanItem],
    sets: Sets<'_>,
) -> Result<(), String> {
    let intents: Vec<InvitationIntent> = items
        .iter()
        .filter(|item| item.kind == WriteKind::Create)
        .filter_map(|item| {
            let d = &sets.desired.members[item.desired? as usize].member;
            Some(InvitationIntent {
                employee_id: d.employee_id().to_string(),
                email: d.email().to_string(),
                first_name: item
                    .managed
                    .contains(Attr::FirstName)
                    .then(|| d.field(Attr::FirstName).map(str::to_string))
                    .flatten(),
            })
        })
        .collect();
    // Every create is a new account: one whose earlier account vanished (closed down,
    // deleted by hand) gets a new invitation.
    crate::notify::record_intents_for_new_accounts(store, &intents)
        .await
        .map_err(|e| format!("its invitation could not be recorded in the invitation outbox ({e})"))
}

/// A run stopped on request before it wrote anything.
fn interrupted(
    mut outcome: ImportOutcome,
    clock: &dyn Clock,
    reason: String,
    when: &str,
) -> ImportOutcome {
    outcome.status.phase = ImportPhase::Interrupted;
    outcome.status.message = Some(format!("Interrupted: {reason}; stopped {when}"));
    outcome.status.completion_time = Some(rfc3339(clock.now()));
    outcome
}

/// Takes out of the plan the changes earlier runs already wrote with the same value and
/// the destination did not keep (see [`crate::destination::convergence`]): one warning row
/// per member instead of a write every run. Returns those rows and the notes carried on.
fn hold_back_unkept(
    planned: &mut PackedPlan,
    sets: Sets<'_>,
    previous: &ConvergenceNotes,
) -> (Vec<RecordError>, ConvergenceNotes) {
    let mut carried = previous.sections();
    let mut rows = Vec::new();
    if !previous.has_member_notes() {
        return (rows, carried);
    }
    let mut unchanged = 0;
    planned.writes.retain_mut(|item| {
        if item.account.is_none() {
            return true;
        }
        let employee_id = sets.employee_id(item);
        let held = previous.hold_back(employee_id, &mut item.changes);
        if held.is_empty() {
            return true;
        }
        carried.carry(previous, employee_id, &held);
        let fields: Vec<&str> = held.iter().map(|a| a.field_name()).collect();
        rows.push(RecordError {
            employee_id: Some(employee_id.to_string()),
            email: Some(sets.email(item).to_string()),
            field: Some(fields.join(",")),
            severity: Severity::Warning,
            message: format!(
                "the destination accepted {} but keeps another value; not written again until the value in Freshteam changes",
                fields.join(", ")
            ),
        });
        let keep = !item.changes.is_empty();
        if !keep {
            unchanged += 1;
        }
        keep
    });
    planned.unchanged += unchanged;
    (rows, carried)
}

fn fail(outcome: ImportOutcome, clock: &dyn Clock, message: String) -> ImportOutcome {
    outcome.into_failed(clock.now(), message)
}

/// Applies the plan's writes, each made from its item only when its batch is sent.
/// Creates go in waves down the reporting line, so that a new member's manager, when
/// created in the same run, already has an id to point to. Returns each item's outcome
/// in plan order (`None` for the writes a stop request left unsent, see
/// [`write_batch`]), the members created with their item's index, and the reason of a
/// stop.
async fn apply_writes(
    destination: &dyn MemberDirectory,
    items: &[PlanItem],
    sets: Sets<'_>,
    managers: &HashMap<&str, &str>,
    progress: &dyn ProgressSink,
    stop: &StopSignal,
) -> (
    Vec<Option<WriteOutcome>>,
    Vec<(usize, CreatedMember)>,
    Option<String>,
) {
    let on_done = |_: usize, _: &WriteOutcome| progress.advance(1);
    let creating: HashSet<&str> = items
        .iter()
        .filter(|w| w.kind == WriteKind::Create)
        .map(|w| sets.employee_id(w))
        .collect();
    let mut waves: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut rest = Vec::new();
    for (i, w) in items.iter().enumerate() {
        if w.kind == WriteKind::Create {
            let depth = creation_depth(sets.employee_id(w), managers, &creating);
            waves.entry(depth).or_default().push(i);
        } else {
            rest.push(i);
        }
    }
    drop(creating);
    let mut results: Vec<Option<WriteOutcome>> = (0..items.len()).map(|_| None).collect();
    let mut created = Vec::with_capacity(waves.values().map(Vec::len).sum());
    let mut created_ids: HashMap<&str, String> = HashMap::new();
    let mut stopped = None;
    let batch = write_batch(destination);
    let batches = waves
        .values()
        .chain(std::iter::once(&rest))
        .flat_map(|wave| wave.chunks(batch));
    for idxs in batches {
        if idxs.is_empty() {
            continue;
        }
        if let Some(reason) = stop.reason() {
            stopped = Some(reason);
            break;
        }
        let ops: Vec<WriteOp> = idxs
            .iter()
            .map(|&i| {
                let mut op = sets.write(&items[i]).op;
                if let WriteOp::Create { member } = &mut op {
                    if member.manager.is_none() {
                        member.manager = managers
                            .get(member.employee_id.as_str())
                            .and_then(|m| created_ids.get(*m))
                            .cloned();
                    }
                }
                op
            })
            .collect();
        // A stop while the batch goes (waiting for the destination's rate limit, say)
        // drops it at once: the writes that settled are kept, the rest is left unsent.
        let settled = Mutex::new(vec![None; ops.len()]);
        let on_batch_done = |i: usize, outcome: &WriteOutcome| {
            on_done(i, outcome);
            settled.lock().expect("settled lock")[i] = Some(outcome.clone());
        };
        let outcomes = tokio::select! {
            outcomes = destination.apply(&ops, &on_batch_done) => outcomes.into_iter().map(Some).collect(),
            reason = stop.stopped() => {
                stopped = Some(reason);
                settled.into_inner().expect("settled lock")
            }
        };
        for ((&i, r), op) in idxs.iter().zip(outcomes).zip(ops) {
            let Some(r) = r else { continue };
            if let (WriteOutcome::Created { id, .. }, WriteOp::Create { member }) = (&r, op) {
                created_ids.insert(sets.employee_id(&items[i]), id.clone());
                created.push((
                    i,
                    CreatedMember {
                        id: id.clone(),
                        employee_id: member.employee_id,
                        email: member.email,
                        first_name: member.first_name,
                        manager: member.manager,
                    },
                ));
            }
            results[i] = Some(r);
        }
    }
    if stopped.is_none() {
        // Never answered for: a failure, not a write left for the next run.
        for r in results.iter_mut().filter(|r| r.is_none()) {
            *r = Some(WriteOutcome::Failed {
                field: None,
                message: "the destination returned no outcome for this write".into(),
                refused: None,
            });
        }
    }
    (results, created, stopped)
}

/// Writes per batch for this destination.
fn write_batch(destination: &dyn MemberDirectory) -> usize {
    destination
        .writes_per_request()
        .map_or(WRITE_BATCH, |n| n.clamp(WRITE_BATCH, MAX_WRITE_BATCH))
}

/// How many managers up the reporting line are also being created (0: none). A cycle
/// in the source data counts as depth 0 at the point it closes.
fn creation_depth(
    employee: &str,
    managers: &HashMap<&str, &str>,
    creating: &HashSet<&str>,
) -> usize {
    let mut depth = 0;
    let mut seen = HashSet::new();
    let mut cur = employee;
    while let Some(m) = managers.get(cur) {
        if !creating.contains(m) || !seen.insert(*m) || *m == employee {
            break;
        }
        depth += 1;
        cur = m;
    }
    depth
}

fn tally(
    item: &PlanItem,
    sets: Sets<'_>,
    result: WriteOutcome,
    summary: &mut ImportSummary,
    report: &mut Vec<RecordError>,
) {
    match result {
        WriteOutcome::Failed { field, message, .. } => report.push(RecordError {
            employee_id: Some(sets.employee_id(item).to_string()),
            email: Some(sets.email(item).to_string()),
            field,
            severity: Severity::Error,
            message,
        }),
        WriteOutcome::Created { .. } => summary.created += 1,
        WriteOutcome::Updated => match item.kind {
            WriteKind::Create | WriteKind::Update => summary.updated += 1,
            WriteKind::Reactivate => summary.reactivated += 1,
            WriteKind::Leaver => summary.leavers += 1,
        },
    }
}

/// After the creates, members whose manager was created in the same run get their
/// manager link, so one run converges.
async fn link_new_managers(
    sets: Sets<'_>,
    created: &[CreatedMember],
    options: &PlanOptions,
    destination: &dyn MemberDirectory,
    report: &mut Vec<RecordError>,
) {
    let by_employee: HashMap<&str, &PackedDesired> = sets
        .desired
        .members
        .iter()
        .map(|d| (d.member.employee_id(), d))
        .collect();
    let mut now = sets.current.clone();
    for c in created {
        if let Some(d) = by_employee.get(c.employee_id.as_str()) {
            let mut member = d.unpack().member;
            member.manager = c.manager.clone();
            now.push(Account::created(&c.id, &member));
        }
    }
    drop(by_employee);
    let only_managers = PlanOptions {
        managed: [Attr::Manager].into_iter().collect(),
        when_removed: WhenRemoved::Ignore,
        ..options.clone()
    };
    let follow_up = plan_sets(sets.desired, &now, None, &only_managers);
    let writes: Vec<PlannedWrite> = follow_up
        .writes
        .iter()
        .filter(|w| {
            w.kind == WriteKind::Update
                && w.account.is_some()
                && w.changes
                    .iter()
                    .all(|c| matches!(c, Change::Set(Attr::Manager, _)))
        })
        .map(|w| {
            let mut w = PackedPlan::write(w, sets.desired, &now);
            // Versions of just-created members are unknown here; the write is idempotent.
            if let WriteOp::Update { version, .. } = &mut w.op {
                *version = None;
            }
            w
        })
        .collect();
    if writes.is_empty() {
        return;
    }
    let ops: Vec<WriteOp> = writes.iter().map(|w| w.op.clone()).collect();
    let results = destination.apply(&ops, &|_, _| {}).await;
    for (w, r) in writes.iter().zip(results) {
        if let WriteOutcome::Failed { message, .. } = r {
            report.push(RecordError {
                employee_id: Some(w.op.employee_id().to_string()),
                email: Some(w.op.email().to_string()),
                field: Some("manager".into()),
                severity: Severity::Warning,
                message: format!("the manager link could not be set: {message}"),
            });
        }
    }
}

/// One line on the outcome: `12 created, 3 updated, 1 leaver, 2 errors`.
pub fn describe(s: &ImportSummary, dry_run: bool) -> String {
    let mut parts = Vec::new();
    let mut add = |n: u32, one: &str, many: &str| {
        if n > 0 {
            parts.push(format!("{n} {}", if n == 1 { one } else { many }));
        }
    };
    add(s.created, "created", "created");
    add(s.updated, "updated", "updated");
    add(s.reactivated, "re-activated", "re-activated");
    add(s.leavers, "leaver", "leavers");
    add(s.unchanged, "unchanged", "unchanged");
    add(s.skipped, "skipped", "skipped");
    add(s.errors, "error", "errors");
    add(s.warnings, "warning", "warnings");
    let text = if parts.is_empty() {
        "no employees".to_string()
    } else {
        parts.join(", ")
    };
    if dry_run {
        format!("dry run, nothing written: would be {text}")
    } else {
        text
    }
}

/// A `ProgressSink` that records the latest counts (the controller patches these into
/// `ImportRun.status.progress`).
#[derive(Default)]
pub struct ProgressCounter {
    inner: Mutex<(u64, u64)>,
    waiting: Mutex<Option<String>>,
}

impl ProgressCounter {
    pub fn snapshot(&self) -> Progress {
        let (processed, total) = *self.inner.lock().expect("progress lock");
        Progress::new(processed, total)
    }

    /// What the run waits for now, if anything ("waiting for the destination's rate
    /// limit (/Users) until …").
    pub fn waiting(&self) -> Option<String> {
        self.waiting.lock().expect("progress lock").clone()
    }
}

impl ProgressSink for ProgressCounter {
    fn set_total(&self, total: u64) {
        self.inner.lock().expect("progress lock").1 = total;
    }
    fn advance(&self, n: u64) {
        self.inner.lock().expect("progress lock").0 += n;
    }
    fn waiting(&self, wait: Option<&crate::progress::Wait>) {
        *self.waiting.lock().expect("progress lock") = wait.map(crate::progress::Wait::message);
    }
}
