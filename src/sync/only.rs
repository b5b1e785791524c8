//! An on-demand run (`sync --only`, an `OnDemand` ImportRun): the import for the
//! employees it names alone. Freshteam is asked for those employees only, the
//! destination for their accounts only (by the ledger's id, `externalId` and
//! `userName`); the plan sees only them, so nobody else is written or marked as a leaver,
//! and the incremental cursor stays where it was. Each named employee's steps are
//! explained in `status.members`.
//!
//! The stages call in at three points: [`read`] (instead of the full or changed read),
//! [`explain`] (after planning, before any write) and [`finish`] (after the run).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::incremental::{add_unseen, find_or_list, keys_of};
use super::stages::read::Read;
use super::stages::RunEnd;
use super::{ImportJob, ImportOutcome, Sets};
use crate::api::{
    FieldChange, MatchedAccount, MatchedBy, MemberAction, MemberSteps, RecordError, Severity,
};
use crate::destination::{Accounts, DestinationError, DestinationMember};
use crate::ledger::Ledger;
use crate::mapping::{lowercase, DesiredSet, Mapper, PackedDesired};
use crate::member::{Attr, Change, LeaverReason, MemberFields};
use crate::plan::{PackedPlan, WriteKind};

/// The `status.mode_reason` of an on-demand run.
pub(super) fn reason(ids: &[String]) -> String {
    format!(
        "on demand: only {} and their accounts; the incremental cursor is left as it was",
        ids.join(", ")
    )
}

/// Reads the named employees (mapped; anyone else the source sent is dropped) and
/// their accounts. Reads are abandoned when a stop is asked for.
pub(super) async fn read(
    job: &ImportJob<'_>,
    ledger: Option<&Ledger>,
    ids: &[String],
) -> Result<Read, RunEnd> {
    let mut mapper = Mapper::new(job.mapping, HashMap::new()).partial();
    let fetch = job
        .source
        .fetch_named(ids, &job.mapping.request, job.progress, &mut mapper);
    let stats = tokio::select! {
        biased;
        reason = job.options.stop.stopped() => {
            return Err(RunEnd::interrupted(reason, "while reading Freshteam; nothing was written"))
        }
        r = fetch => r.map_err(|e| RunEnd::failed(format!("Freshteam: {e}")))?,
    };
    let mut desired = mapper.finish();
    keep_named(&mut desired, ids);
    job.progress.set_total(ids.len() as u64);
    job.progress
        .phase("Reading their accounts in the destination");
    let accounts = tokio::select! {
        biased;
        reason = job.options.stop.stopped() => {
            return Err(RunEnd::interrupted(reason, "while reading the destination; nothing was written")
                .with_calls(stats))
        }
        r = accounts_of(job, &desired, ledger) => r,
    };
    match accounts {
        Ok(found) => Ok(Read {
            stats,
            desired,
            current: Accounts::from(&found[..]),
        }),
        Err(e) => Err(RunEnd::failed(format!("destination: {e}")).with_calls(stats)),
    }
}

/// Keeps only what concerns the named employees: the source may send more (a server
/// that ignores the filter).
fn keep_named(desired: &mut DesiredSet, ids: &[String]) {
    let named: HashSet<&str> = ids.iter().map(String::as_str).collect();
    desired
        .members
        .retain(|d| named.contains(d.member.employee_id()));
    desired.drafts.retain(|id| named.contains(id.as_str()));
    desired.ignored.retain(|id| named.contains(id.as_str()));
    desired
        .ambiguous_ids
        .retain(|id| named.contains(id.as_str()));
    desired.errors.retain(|e| {
        e.employee_id
            .as_deref()
            .is_some_and(|id| named.contains(id))
    });
    desired.records = ids.len();
}

/// The accounts of the named employees (and their managers'): by the id the ledger
/// recorded, and searched for by `externalId` and `userName` (every account only when
/// the destination cannot search).
async fn accounts_of(
    job: &ImportJob<'_>,
    desired: &DesiredSet,
    ledger: Option<&Ledger>,
) -> Result<Vec<DestinationMember>, DestinationError> {
    let managers = job.mapping.managed.contains(Attr::Manager);
    let wanted = keys_of(desired, managers);
    let known: Vec<String> = wanted
        .external_ids
        .iter()
        .filter_map(|id| ledger.and_then(|l| l.account(id)))
        .collect();
    let mut found: Vec<DestinationMember> = job
        .destination
        .get_members(&known)
        .await?
        .unwrap_or_default();
    let searched = find_or_list(&wanted, job.destination).await?;
    add_unseen(&mut found, searched);
    Ok(found)
}

/// Whether a found employee is in the integration's scope (`spec.scope.filter`): one
/// out of scope is a leaver "out of scope" under `whenOutOfScope: Deactivate`, and not
/// among the members at all under `Ignore` (see [`steps_of`]).
fn in_scope(member: &PackedDesired) -> bool {
    member.leaver_reason != Some(LeaverReason::OutOfScope)
}

/// Each named employee's steps up to the plan: found (and where), in scope, mapped
/// values, the account matched and how, the planned action with old → new values. An
/// Employee ID Freshteam does not know is that member's error row, added to `report`.
pub(super) fn explain(
    ids: &[String],
    sets: Sets<'_>,
    plan: &PackedPlan,
    ledger: Option<&Ledger>,
    report: &mut Vec<RecordError>,
) -> Vec<MemberSteps> {
    ids.iter()
        .map(|id| {
            let steps = steps_of(id, sets, plan, ledger, report);
            if !steps.found {
                report.push(not_found(id));
            }
            steps
        })
        .collect()
}

fn not_found(id: &str) -> RecordError {
    RecordError {
        employee_id: Some(id.to_string()),
        email: None,
        field: Some("employeeId".into()),
        severity: Severity::Error,
        message: format!(
            "{id}: no Freshteam employee has this Employee ID (in any list: current, inactive, terminated, deleted or draft)"
        ),
    }
}

fn steps_of(
    id: &str,
    sets: Sets<'_>,
    plan: &PackedPlan,
    ledger: Option<&Ledger>,
    report: &[RecordError],
) -> MemberSteps {
    let mut steps = MemberSteps {
        employee_id: id.to_string(),
        ..MemberSteps::default()
    };
    let desired = sets
        .desired
        .members
        .iter()
        .find(|d| d.member.employee_id() == id);
    let row = report
        .iter()
        .chain(&plan.errors)
        .find(|r| r.employee_id.as_deref() == Some(id) && r.severity == Severity::Error);
    if sets.desired.ignored.iter().any(|d| d == id) {
        steps.found = true;
        steps.in_scope = Some(false);
        steps.action = MemberAction::Skip;
        steps.result = Some(
            "out of scope (spec.scope.filter); spec.scope.whenOutOfScope: Ignore leaves its member as it is".into(),
        );
        return steps;
    }
    if sets.desired.drafts.iter().any(|d| d == id) {
        steps.found = true;
        steps.population = Some("draft".into());
        steps.action = MemberAction::Skip;
        steps.result = Some("a draft profile is never provisioned".into());
        return steps;
    }
    let Some(d) = desired else {
        steps.found = row.is_some() || sets.desired.ambiguous_ids.iter().any(|a| a == id);
        if let Some(r) = row {
            steps.action = MemberAction::Error;
            steps.error = Some(r.message.clone());
        }
        return steps;
    };
    steps.found = true;
    steps.population = Some(d.leaver_reason.map_or("active", |r| r.as_str()).to_string());
    steps.in_scope = Some(in_scope(d));
    steps.values = values_of(d);
    steps.account = matched(id, d, sets.current, ledger);
    planned(id, sets, plan, &mut steps);
    if let Some(r) = row {
        steps.action = MemberAction::Error;
        steps.error = Some(r.message.clone());
    }
    steps
}

/// The mapped values by field name: the fixed fields and the `spec.mapping.attributes[]`
/// targets (named as in the change rows).
fn values_of(d: &PackedDesired) -> BTreeMap<String, String> {
    let member = d.member.unpack();
    let fixed = Attr::ALL
        .into_iter()
        .filter_map(|a| Some((a.field_name(), member.get(a)?)));
    let extra = member.extra.iter().map(|(t, v)| (*t, v.as_str()));
    let mut values: BTreeMap<String, String> = fixed
        .chain(extra)
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    values.insert("active".into(), d.member.active().to_string());
    values
}

/// The account of the employee: by its `externalId` (through the id the ledger
/// recorded, when it did), else one holding the employee's e-mail as `userName`.
fn matched(
    id: &str,
    d: &PackedDesired,
    current: &Accounts,
    ledger: Option<&Ledger>,
) -> Option<MatchedAccount> {
    if let Some(a) = current.iter().find(|a| a.employee_id() == id) {
        let by = match ledger.and_then(|l| l.account(id)) {
            Some(recorded) if recorded == a.id() => MatchedBy::Ledger,
            _ => MatchedBy::ExternalId,
        };
        return Some(MatchedAccount {
            id: a.id().to_string(),
            by,
        });
    }
    let email = lowercase(d.member.email());
    current
        .iter()
        .find(|a| !email.is_empty() && lowercase(a.email()) == email)
        .map(|a| MatchedAccount {
            id: a.id().to_string(),
            by: MatchedBy::UserName,
        })
}

/// The planned action and its changes, old → new.
fn planned(id: &str, sets: Sets<'_>, plan: &PackedPlan, steps: &mut MemberSteps) {
    let Some(item) = plan.writes.iter().find(|w| sets.employee_id(w) == id) else {
        let active = steps.values.get("active").map(String::as_str) == Some("true");
        steps.action = match (&steps.account, active) {
            (None, false) => MemberAction::Skip,
            _ => MemberAction::None,
        };
        return;
    };
    steps.action = match item.kind {
        WriteKind::Create => MemberAction::Create,
        WriteKind::Update => MemberAction::Update,
        WriteKind::Reactivate => MemberAction::Reactivate,
        WriteKind::Leaver => MemberAction::Leaver,
    };
    let old = |attr: Attr| {
        item.account.and_then(|a| {
            sets.current
                .get(a as usize)
                .field(attr)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        })
    };
    if item.kind == WriteKind::Create {
        steps.changes = steps
            .values
            .iter()
            .filter(|(f, _)| f.as_str() != "active")
            .map(|(f, v)| FieldChange {
                field: f.clone(),
                old: None,
                new: Some(v.clone()),
            })
            .collect();
        return;
    }
    steps.changes = item
        .changes
        .iter()
        .map(|c| match c {
            Change::Set(attr, v) => FieldChange {
                field: attr.field_name().into(),
                old: old(*attr),
                new: Some(v.clone()),
            },
            Change::Clear(attr) => FieldChange {
                field: attr.field_name().into(),
                old: old(*attr),
                new: None,
            },
            Change::Active(on) => FieldChange {
                field: "active".into(),
                old: Some((!on).to_string()),
                new: Some(on.to_string()),
            },
        })
        .collect();
}

/// The destination's answer and the invitation, from what the run did; the steps go
/// into `status.members`.
pub(super) fn finish(
    job: &ImportJob<'_>,
    mut steps: Vec<MemberSteps>,
    outcome: &mut ImportOutcome,
) {
    let dry = job.options.dry_run;
    for s in &mut steps {
        let id = Some(s.employee_id.as_str());
        let error = outcome
            .report
            .iter()
            .find(|r| r.employee_id.as_deref() == id && r.severity == Severity::Error);
        let change = outcome
            .changes
            .iter()
            .find(|r| r.employee_id.as_deref() == id);
        if let Some(e) = error {
            s.action = MemberAction::Error;
            s.error = Some(e.message.clone());
            s.result.get_or_insert_with(|| "not applied".into());
        } else if let Some(c) = change {
            s.result = Some(match dry {
                true => format!("dry run, not sent: would be {}", c.message),
                false => format!("done: {}", c.message),
            });
        } else if s.action == MemberAction::None {
            s.result = Some("nothing to write: the account is up to date".into());
        }
        s.invitation = invitation(job, s, outcome);
    }
    outcome.status.members = steps;
}

fn invitation(job: &ImportJob<'_>, s: &MemberSteps, outcome: &ImportOutcome) -> Option<String> {
    if s.action != MemberAction::Create && s.action != MemberAction::Error {
        return s.found.then(|| "none: only a new member is invited".into());
    }
    let created = outcome
        .created
        .iter()
        .any(|c| c.employee_id == s.employee_id);
    Some(
        match (created, job.options.dry_run, job.stores.outbox.is_some()) {
            (true, _, true) => {
                "recorded before the account was created; sent when the run ends".into()
            }
            (true, _, false) => "none: welcome e-mails are off (or not kept) for this run".into(),
            (false, true, _) if s.action == MemberAction::Create => "none in a dry run".into(),
            (false, _, _) => return None,
        },
    )
}

/// Each employee's steps as text, for `sync --only` and `kubectl freshteam provision`.
pub fn describe_steps(members: &[MemberSteps]) -> String {
    let mut out = String::new();
    for s in members {
        out.push_str(&format!("  Employee {}\n", s.employee_id));
        let found = match (s.found, &s.population) {
            (false, _) => "not found".to_string(),
            (true, Some(p)) => format!("found ({p})"),
            (true, None) => "found".to_string(),
        };
        let scope = match s.in_scope {
            Some(true) => ", in scope",
            Some(false) => ", out of scope",
            None => "",
        };
        out.push_str(&format!("    Freshteam:   {found}{scope}\n"));
        if !s.values.is_empty() {
            let values: Vec<String> = s.values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("    Mapped:      {}\n", values.join(", ")));
        }
        match &s.account {
            Some(a) => out.push_str(&format!(
                "    Account:     {} (matched by {})\n",
                a.id,
                a.by.as_str()
            )),
            None if s.found => out.push_str("    Account:     none matched\n"),
            None => {}
        }
        out.push_str(&format!("    Action:      {}\n", s.action.as_str()));
        for c in &s.changes {
            out.push_str(&format!(
                "      {}: {} → {}\n",
                c.field,
                c.old.as_deref().unwrap_or("(none)"),
                c.new.as_deref().unwrap_or("(none)")
            ));
        }
        for (label, text) in [
            ("Result:     ", &s.result),
            ("Error:      ", &s.error),
            ("Invitation: ", &s.invitation),
        ] {
            if let Some(t) = text {
                out.push_str(&format!("    {label} {t}\n"));
            }
        }
    }
    out
}
