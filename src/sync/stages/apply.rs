//! Apply: the writes (or, dry, their count), what their outcomes teach the convergence
//! notes, the invitations confirmed and the managers linked. The plan's sets are freed
//! when this stage is done ([`Planned::settle`]).

use std::collections::{HashMap, HashSet};

use super::commit::Committed;
use super::links;
use super::plan::Counts;
use super::plan::Planned;
use super::rows::{change_row, tally};
use super::writes::apply_writes;
use crate::api::{ImportSummary, RecordError, Severity};
use crate::destination::{Accounts, ConvergenceNotes, WriteOutcome};
use crate::ledger::Ledger;
use crate::mapping::DesiredSet;
use crate::member::Attr;
use crate::plan::{Blocked, PlanItem, WriteKind};
use crate::sync::{refusals, CreatedMember, ImportJob, Sets};

/// What the writes left for the rest of the run; none of the plan's sets.
pub(super) struct Written {
    pub summary: ImportSummary,
    pub report: Vec<RecordError>,
    pub changes: Vec<RecordError>,
    /// In plan order.
    pub created: Vec<CreatedMember>,
    /// `None`: keep the previous notes (a dry run).
    pub convergence: Option<ConvergenceNotes>,
    /// Why the writes stopped early, saying how far they got.
    pub stopped: Option<String>,
    pub blocked: Option<Blocked>,
    pub held_back: Option<String>,
    /// The ledger as recorded before the writes, to save again with the new accounts.
    pub recorded: Option<Ledger>,
    /// Whether the run went through: only then does the cursor move on.
    pub went_through: bool,
    /// Employee IDs with an account after the run; none after an incremental run.
    pub member_ids: Option<HashSet<String>>,
}

/// A dry run: counts what the writes would do, and their change rows.
pub(super) fn dry_run(job: &ImportJob<'_>, mut planned: Planned) -> Written {
    let plan = &planned.plan;
    let summary = &mut planned.counts.summary;
    summary.created = plan.count(WriteKind::Create);
    summary.updated = plan.count(WriteKind::Update);
    summary.reactivated = plan.count(WriteKind::Reactivate);
    summary.leavers = plan.count(WriteKind::Leaver);
    job.progress.advance(plan.writes.len() as u64);
    let sets = planned.sets.view();
    let changes = plan
        .writes
        .iter()
        .map(|item| change_row(item, sets))
        .collect();
    planned.settle(Applied {
        changes,
        ..Applied::default()
    })
}

/// The writes, after the commit.
pub(super) async fn apply(
    job: &ImportJob<'_>,
    mut planned: Planned,
    committed: Committed<'_>,
) -> Written {
    let sets = planned.sets.view();
    let writes = &planned.plan.writes;
    let sent = {
        let managers = managers(job, sets.desired);
        apply_writes(
            job.destination,
            writes,
            sets,
            &managers,
            job.progress,
            &job.options.stop,
        )
        .await
    };
    let applied = sent.results.iter().filter(|r| r.is_some()).count();
    let stopped = sent.stopped.map(|reason| {
        format!(
            "{reason}; stopped after {applied} of {} writes, the next run applies the rest",
            writes.len()
        )
    });
    let notes = &mut planned.notes;
    let changes = record_outcomes(job, writes, sets, sent.results, &mut planned.counts, notes);
    job.destination.learnt(notes);
    let convergence = Some(std::mem::take(notes));
    let mut made = sent.created;
    made.sort_unstable_by_key(|(i, _)| *i);
    let created: Vec<CreatedMember> = made.into_iter().map(|(_, c)| c).collect();
    if let Some(store) = committed.outbox {
        let ids: Vec<(String, String)> = created
            .iter()
            .map(|c| (c.employee_id.clone(), c.id.clone()))
            .collect();
        if let Err(e) = crate::notify::confirm_accounts(store, &ids).await {
            job.progress.warn(&format!("invitation outbox: {e}"));
        }
    }
    if planned.plan.pending_manager_links > 0 && !created.is_empty() && stopped.is_none() {
        let report = &mut planned.counts.report;
        links::link_new_managers(sets, &created, &planned.options, job.destination, report).await;
    }
    planned.settle(Applied {
        changes,
        created,
        convergence,
        stopped,
        recorded: committed.recorded,
        held_back: committed.held_back,
    })
}

/// Each applied write's tally, report row and change row, in plan order; what the
/// outcomes show the destination did not keep, or refused, goes into the notes.
fn record_outcomes(
    job: &ImportJob<'_>,
    items: &[PlanItem],
    sets: Sets<'_>,
    results: Vec<Option<WriteOutcome>>,
    counts: &mut Counts,
    notes: &mut ConvergenceNotes,
) -> Vec<RecordError> {
    let mut changes = Vec::new();
    for (item, result) in items.iter().zip(results) {
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
        let refused = refusals::remember(notes, item, sets, &result, job.clock);
        counts.refused += usize::from(refused);
        let failed = matches!(result, WriteOutcome::Failed { .. });
        tally(item, sets, result, &mut counts.summary, &mut counts.report);
        if !failed {
            changes.push(change_row(item, sets));
        }
    }
    changes
}

/// Employee ID → their manager's, when the mapping manages the manager link.
fn managers<'d>(job: &ImportJob<'_>, desired: &'d DesiredSet) -> HashMap<&'d str, &'d str> {
    if !job.mapping.managed.contains(Attr::Manager) {
        return HashMap::new();
    }
    desired
        .members
        .iter()
        .filter_map(|d| Some((d.member.employee_id(), d.manager_employee_id()?)))
        .collect()
}

/// What the apply stage made, beside the plan's own counts and rows.
#[derive(Default)]
pub(super) struct Applied {
    changes: Vec<RecordError>,
    created: Vec<CreatedMember>,
    convergence: Option<ConvergenceNotes>,
    stopped: Option<String>,
    recorded: Option<Ledger>,
    held_back: Option<String>,
}

impl Planned {
    /// Ends the write stages: whether the run went through, and who has an account now.
    /// The plan's writes and the desired members are freed first, the accounts once
    /// their Employee IDs are taken.
    fn settle(self, applied: Applied) -> Written {
        // Members the destination refuses for their values do not hold the cursor back:
        // a change of those values is a change the next run reads.
        let counts = &self.counts;
        let errors = counts
            .report
            .iter()
            .filter(|r| r.severity == Severity::Error)
            .count();
        let went_through = applied.stopped.is_none()
            && self.plan.blocked.is_none()
            && applied.held_back.is_none()
            && errors == counts.refused;
        let partial = self.partial;
        let (current, counts, blocked) = self.into_accounts();
        // A run that saw only some accounts cannot tell who has none.
        let mut member_ids = account_ids(current, applied.created.len());
        member_ids.extend(applied.created.iter().map(|c| c.employee_id.clone()));
        Written {
            summary: counts.summary,
            report: counts.report,
            changes: applied.changes,
            created: applied.created,
            convergence: applied.convergence,
            stopped: applied.stopped,
            blocked,
            held_back: applied.held_back,
            recorded: applied.recorded,
            went_through,
            member_ids: (!partial).then_some(member_ids),
        }
    }

    /// The accounts, the counts and the leavers the safety threshold held back; the
    /// rest of the plan and its sets (the desired members, the writes) are freed on
    /// return.
    fn into_accounts(self) -> (Accounts, Counts, Option<Blocked>) {
        (self.sets.current, self.counts, self.plan.blocked)
    }
}

/// The Employee IDs of the accounts, with room for `more`; the accounts are freed on
/// return.
fn account_ids(current: Accounts, more: usize) -> HashSet<String> {
    let mut ids: HashSet<String> = HashSet::with_capacity(current.len() + more);
    ids.extend(
        current
            .iter()
            .map(|m| m.employee_id())
            .filter(|id| !id.is_empty())
            .map(str::to_string),
    );
    ids
}
