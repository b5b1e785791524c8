//! Commit: before any write, the ledger with the members about to be created in it, and
//! an invitation intent for each of them. What cannot be recorded holds the creates back:
//! a member is never created without them.

use std::collections::HashMap;

use super::plan::Planned;
use crate::api::{RecordError, Severity};
use crate::ledger::{Ledger, Origin};
use crate::member::{Attr, MemberFields};
use crate::notify::{InvitationIntent, Outbox};
use crate::plan::{PackedPlan, PlanItem, WriteKind};
use crate::state::{StateError, Store};
use crate::sync::{ImportJob, Sets};

/// What the commit recorded, for the writes.
pub(super) struct Committed<'a> {
    /// The ledger as this run recorded it (saved again after the writes).
    pub recorded: Option<Ledger>,
    /// The outbox the intents went to; none: no invitations (none asked for, or they
    /// could not be recorded).
    pub outbox: Option<&'a dyn Store<Outbox>>,
    /// Why creates were held back, when they were.
    pub held_back: Option<String>,
}

/// The invitation intents of this run's creates could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error("its invitation could not be recorded in the invitation outbox ({0})")]
struct IntentsNotRecorded(#[from] StateError);

pub(super) async fn commit<'a>(
    job: &ImportJob<'a>,
    planned: &mut Planned,
    ledger: Option<Ledger>,
) -> Committed<'a> {
    job.progress.phase("Applying changes");
    job.destination.remember(&job.options.convergence);
    let sets = planned.sets.view();
    let (plan, report) = (&mut planned.plan, &mut planned.counts.report);
    let mut held_back = None;
    let mut recorded = None;
    if let (Some(store), Some(mut next)) = (job.stores.ledger, ledger) {
        if !next_ledger(&mut next, sets, plan, planned.partial) {
            recorded = Some(next);
        } else if let Err(e) = store.save(&next).await {
            let why = format!(
                "the ledger of managed members could not be saved ({}): {e}",
                store.location()
            );
            held_back = hold_back_creates(plan, sets, report, &why);
        } else {
            recorded = Some(next);
        }
    }
    let outbox = match job.stores.outbox {
        Some(store) => match record_invitations(store, &plan.writes, sets).await {
            Ok(()) => Some(store),
            Err(e) => {
                let why = e.to_string();
                held_back = held_back.or(hold_back_creates(plan, sets, report, &why));
                None
            }
        },
        None => None,
    };
    Committed {
        recorded,
        outbox,
        held_back,
    }
}

/// The ledger to record before the writes: the members managed at the start that
/// still have an account, those this plan adopts, and those it is about to create.
///
/// A run that read only the changed few (`partial`) saw only their accounts: it keeps
/// every member of the old ledger (a full reconciliation drops those without one).
/// Members whose account vanished are dropped when they get none, and keep the vanished
/// account's id until the new one is created (a run that fails to create it tries again).
pub(in crate::sync) fn next_ledger(
    ledger: &mut Ledger,
    sets: Sets<'_>,
    planned: &PackedPlan,
    partial: bool,
) -> bool {
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

/// Records an invitation intent for each planned create. When that fails, the caller
/// creates nobody in this run: a member is never created without its intent.
async fn record_invitations(
    store: &dyn Store<Outbox>,
    items: &[PlanItem],
    sets: Sets<'_>,
) -> Result<(), IntentsNotRecorded> {
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
    crate::notify::record_intents_for_new_accounts(store, &intents).await?;
    Ok(())
}
