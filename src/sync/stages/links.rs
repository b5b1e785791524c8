//! After the creates, members whose manager was created in the same run get their
//! manager link, so one run converges.

use std::collections::HashMap;

use crate::api::{RecordError, Severity, WhenRemoved};
use crate::destination::{Account, Accounts, MemberDirectory, UpdateOp, WriteOp, WriteOutcome};
use crate::mapping::PackedDesired;
use crate::member::{Attr, Change};
use crate::plan::{plan_sets, PackedPlan, PlanOptions, PlannedWrite, WriteKind};
use crate::sync::{CreatedMember, Sets};

/// Links the members created in this run to their managers created in it too; a link
/// that fails is a warning row.
pub(super) async fn link_new_managers(
    sets: Sets<'_>,
    created: &[CreatedMember],
    options: &PlanOptions,
    destination: &dyn MemberDirectory,
    report: &mut Vec<RecordError>,
) {
    let now = with_created(sets, created);
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
            if let WriteOp::Update(UpdateOp { version, .. }) = &mut w.op {
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

/// The accounts as they are now: those read, and those this run created (with the
/// manager each was created with).
fn with_created(sets: Sets<'_>, created: &[CreatedMember]) -> Accounts {
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
    now
}
