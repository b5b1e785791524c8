//! Plan: what the destination keeps, the members its profile refuses, the plan itself,
//! and the writes held back (values the destination does not keep, writes it refused
//! before).

use chrono::{DateTime, Utc};

use super::read::Read;
use crate::api::{ImportSummary, PreviewMember, RecordError, Severity};
use crate::destination::{ConvergenceNotes, MemberDirectory};
use crate::ledger::{Ledger, ManagedIds};
use crate::mapping::DesiredSet;
use crate::member::{Attr, AttrSet, MemberFields};
use crate::plan::{plan_sets, PackedPlan, PlanOptions, PlanScope};
use crate::sync::sets::PlanSets;
use crate::sync::{profile, refusals, ImportJob, MappedPreview, Sets};

/// The plan and everything the write stages need from planning.
pub(super) struct Planned {
    /// What the plan refers into; freed when the writes are done.
    pub sets: PlanSets,
    pub plan: PackedPlan,
    pub options: PlanOptions,
    /// The run read only the changed few (an incremental run).
    pub partial: bool,
    /// The convergence notes to keep, as far as planning knows them.
    pub notes: ConvergenceNotes,
    pub counts: Counts,
    /// Mapping targets (field names) the destination does not keep.
    pub unsupported_targets: Vec<String>,
    /// Scope counts and a sample of mapped members.
    pub mapped: MappedPreview,
}

/// Members shown in `status.preview.sample`.
const SAMPLE: usize = 5;

/// The scope counts and the first [`SAMPLE`] current members, with the values the
/// destination keeps as they would be written (the manager, still an Employee ID here,
/// is left out).
fn mapped_preview(job: &ImportJob<'_>, desired: &DesiredSet, kept: AttrSet) -> MappedPreview {
    let sample = desired
        .members
        .iter()
        .filter(|d| d.leaver_reason.is_none())
        .take(SAMPLE)
        .map(|d| PreviewMember {
            employee_id: d.member.employee_id().to_string(),
            attributes: kept
                .iter()
                .filter(|a| *a != Attr::Manager)
                .filter_map(|a| Some((a.scim_path(), d.member.field(a)?.to_string())))
                .collect(),
        })
        .collect();
    let scoped = job.mapping.scoped();
    let out = desired.out_of_scope as u32;
    let considered = desired.records.saturating_sub(desired.drafts.len()) as u32;
    MappedPreview {
        in_scope: scoped.then(|| considered.saturating_sub(out)),
        out_of_scope: scoped.then_some(out),
        sample,
    }
}

/// What the run counts and reports, from the plan through the writes.
pub(super) struct Counts {
    pub summary: ImportSummary,
    /// Error and warning rows.
    pub report: Vec<RecordError>,
    /// Error rows for members the destination refuses for their values: they do not
    /// hold the cursor back.
    pub refused: usize,
}

pub(super) fn plan(
    job: &ImportJob<'_>,
    read: Read,
    since: Option<DateTime<Utc>>,
    ledger: Option<&Ledger>,
) -> Planned {
    let options = job.options;
    let total = read.desired.records as u64;
    let (plan_options, unsupported) = plan_options(job, since, ledger);
    let mapped = mapped_preview(job, &read.desired, plan_options.managed);
    let (desired, mut refused) =
        profile::screen(read.desired, options.profile, plan_options.managed);
    let managed_ids = ledger.map(|l| l as &dyn ManagedIds);
    let mut plan = plan_sets(&desired, &read.current, managed_ids, &plan_options);
    let vanished = std::mem::take(&mut plan.vanished);
    let sets = PlanSets {
        desired,
        current: read.current,
        vanished,
    };
    let (held_rows, mut notes) = hold_back_unkept(&mut plan, sets.view(), &options.convergence);
    let refused_rows = refusals::hold_back_refused(
        &mut plan,
        sets.view(),
        &options.convergence,
        &mut notes,
        since.is_some(),
    );
    job.progress
        .advance(total.saturating_sub(plan.writes.len() as u64));

    let summary = ImportSummary {
        unchanged: plan.unchanged,
        skipped: plan.skipped,
        ..ImportSummary::default()
    };
    let mut report = std::mem::take(&mut plan.errors);
    report.extend(unsupported_row(job.destination, &unsupported));
    report.extend(held_rows);
    refused += refused_rows.len();
    report.extend(refused_rows);
    Planned {
        sets,
        plan,
        options: plan_options,
        partial: since.is_some(),
        notes,
        counts: Counts {
            summary,
            report,
            refused,
        },
        unsupported_targets: unsupported
            .iter()
            .map(|a| a.field_name().to_string())
            .collect(),
        mapped,
    }
}

/// What the destination does not keep is never written nor compared: the plan's
/// options, and the mapping targets left out.
fn plan_options(
    job: &ImportJob<'_>,
    since: Option<DateTime<Utc>>,
    ledger: Option<&Ledger>,
) -> (PlanOptions, Vec<Attr>) {
    let kept = job.destination.keeps();
    let managed = &job.mapping.managed;
    let unsupported: Vec<Attr> = managed.iter().filter(|a| !kept.contains(*a)).collect();
    let options = PlanOptions {
        managed: managed
            .iter()
            .filter(|a| kept.contains(*a))
            .collect::<AttrSet>(),
        max_leavers_percent: job.options.max_leavers_percent,
        approved_leavers: job.options.approved_leavers,
        when_removed: job.options.when_removed,
        scope: match since {
            Some(_) => PlanScope::Changed {
                managed: ledger.map_or(0, |l| l.len() as u32),
            },
            None => PlanScope::Everyone,
        },
    };
    (options, unsupported)
}

/// The warning row naming the mapping targets the destination does not keep.
fn unsupported_row(destination: &dyn MemberDirectory, unsupported: &[Attr]) -> Option<RecordError> {
    if unsupported.is_empty() {
        return None;
    }
    let names: Vec<String> = unsupported
        .iter()
        .map(|a| destination.target_name(*a))
        .collect();
    let fields: Vec<&str> = unsupported.iter().map(|a| a.field_name()).collect();
    Some(RecordError {
        employee_id: None,
        email: None,
        field: Some(fields.join(",")),
        severity: Severity::Warning,
        message: format!(
            "the destination does not keep these mapping targets, so they are never written or compared: {}",
            names.join(", ")
        ),
    })
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
