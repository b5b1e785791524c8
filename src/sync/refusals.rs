//! Refusal memory as a stage of the import: a write the destination refused (HTTP 400)
//! is not sent again while it would be the same write; it is that member's error row
//! instead, until the values change in Freshteam (see
//! [`crate::destination::convergence::Refusals`]).

use super::Sets;
use crate::api::{RecordError, Severity};
use crate::clock::Clock;
use crate::destination::{ConvergenceNotes, WriteOutcome};
use crate::plan::{PackedPlan, PlanItem};

/// Takes out of the plan the writes refused before with the same values (one error row
/// each) and carries their refusals into `next`. A run that read only the changed few
/// (`partial`) also carries the refusals of members it did not plan a write for; a full
/// run drops those (nothing to send any more).
pub(super) fn hold_back_refused(
    planned: &mut PackedPlan,
    sets: Sets<'_>,
    previous: &ConvergenceNotes,
    next: &mut ConvergenceNotes,
    partial: bool,
) -> Vec<RecordError> {
    let refusals = previous.refusals();
    // This stage alone decides which refusals stand.
    *next.refusals_mut() = Default::default();
    let mut rows = Vec::new();
    if refusals.is_empty() {
        return rows;
    }
    let mut planned_ids = std::collections::HashSet::new();
    planned.writes.retain(|item| {
        let employee_id = sets.employee_id(item);
        planned_ids.insert(employee_id);
        let Some(refusal) = refusals.get(employee_id) else {
            return true;
        };
        if refusals.same_write(employee_id, &sets.write(item).op).is_none() {
            return true;
        }
        next.refusals_mut().carry(employee_id, refusal);
        rows.push(RecordError {
            employee_id: Some(employee_id.to_string()),
            email: Some(sets.email(item).to_string()),
            field: None,
            severity: Severity::Error,
            message: format!(
                "refused by the destination on {}: {}; not sent again until it changes in Freshteam",
                refusal.date, refusal.detail
            ),
        });
        false
    });
    if partial {
        for (employee_id, refusal) in refusals.iter() {
            if !planned_ids.contains(employee_id) {
                next.refusals_mut().carry(employee_id, refusal);
            }
        }
    }
    rows
}

/// Remembers a write the destination refused, for the next run; true when it was one.
pub(super) fn remember(
    next: &mut ConvergenceNotes,
    item: &PlanItem,
    sets: Sets<'_>,
    result: &WriteOutcome,
    clock: &dyn Clock,
) -> bool {
    if let WriteOutcome::Failed {
        refused: Some(answer),
        ..
    } = result
    {
        let date = clock.now().format("%Y-%m-%d").to_string();
        next.refusals_mut()
            .record(sets.employee_id(item), &sets.write(item).op, &date, answer);
        return true;
    }
    false
}
