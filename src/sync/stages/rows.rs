//! The rows a run reports about its writes: a change row for each write it made (or,
//! dry, would make), an error row for each that failed.

use crate::api::{ImportSummary, RecordError, Severity};
use crate::destination::WriteOutcome;
use crate::member::{Attr, Change, MemberFields};
use crate::plan::{PlanItem, WriteKind};
use crate::sync::Sets;

/// The change row of a write: what it did (or, dry, would do). Failed writes are error
/// rows already and get none.
pub(super) fn change_row(item: &PlanItem, sets: Sets<'_>) -> RecordError {
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

/// Counts an applied write in the summary, or reports it as an error row.
pub(super) fn tally(
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
