//! The destination profile as a stage of the import: current staff whose values the
//! destination is known to refuse ([`crate::destination::profile`]) become error rows
//! before planning, so that no request is spent on them.
//!
//! A refused employee is taken out of the desired members with an error row naming
//! them: the plan then treats them like any record that could not be applied (never
//! "removed", never adopted), so an existing member stays as it is.

use crate::api::{RecordError, ScimProfile, Severity};
use crate::destination::profile::check_member;
use crate::mapping::DesiredSet;
use crate::member::AttrSet;

/// Moves the current staff `profile` refuses (in the `managed` fields) out of
/// `desired`, one error row each; returns how many.
pub(super) fn screen(
    mut desired: DesiredSet,
    profile: ScimProfile,
    managed: AttrSet,
) -> (DesiredSet, usize) {
    if profile == ScimProfile::Generic {
        return (desired, 0);
    }
    let mut rows = Vec::new();
    desired.members.retain(|d| {
        // A leaver's write is `active: false` alone: nothing the profile checks is sent.
        if !d.member.active() {
            return true;
        }
        let refused = check_member(profile, &d.member, managed);
        if refused.is_empty() {
            return true;
        }
        let fields: Vec<&str> = refused.iter().map(|r| r.attr.field_name()).collect();
        let messages: Vec<&str> = refused.iter().map(|r| r.message.as_str()).collect();
        rows.push(RecordError {
            employee_id: Some(d.member.employee_id().to_string()),
            email: Some(d.member.email().to_string()),
            field: Some(fields.join(",")),
            severity: Severity::Error,
            message: messages.join("; "),
        });
        false
    });
    if !rows.is_empty() {
        tracing::info!(
            refused = rows.len(),
            ?profile,
            "members the destination profile refuses are not sent"
        );
    }
    let refused = rows.len();
    desired.errors.extend(rows);
    (desired, refused)
}
