//! Planning: desired members against the destination's members → the writes to make.
//! Pure: no I/O, no clock.

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};

use crate::api::{RecordError, WhenRemoved};
use crate::destination::{DestinationMember, WriteOp};
use crate::mapping::{lowercase, DesiredMember, MappedSource};
use crate::member::{diff_member, Attr, AttrSet, Change, LeaverReason, Member};

/// Knobs of one planning pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// Member fields the mapping manages; others are never compared or written.
    pub managed: AttrSet,
    /// `safety.maxLeaversPercent`.
    pub max_leavers_percent: u32,
    /// Leavers approved for this run (`None`: no approval).
    pub approved_leavers: Option<u32>,
    /// `spec.leavers.whenRemoved`: what becomes of a ledger member whose employee is in
    /// no Freshteam list.
    pub when_removed: WhenRemoved,
    /// Whether the plan sees every employee and account, or only those that changed.
    pub scope: PlanScope,
}

/// What a plan is given to compare.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlanScope {
    /// Every employee and every destination account (a full reconciliation): an account
    /// in the ledger whose employee is in no list was removed from Freshteam.
    #[default]
    Everyone,
    /// Only the employees changed since a cursor, and their accounts (an incremental
    /// run): an absent employee is unchanged, never removed, and the leaver threshold is
    /// taken over `managed`, the members in the ledger.
    Changed { managed: u32 },
}

/// Why a kind of write is in the plan (drives the summary counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    Create,
    Update,
    Reactivate,
    Leaver,
}

/// A write with the reason for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedWrite {
    pub kind: WriteKind,
    pub op: WriteOp,
    /// Why, for a leaver.
    pub leaver_reason: Option<LeaverReason>,
}

/// The leaver threshold was crossed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub leavers: u32,
    pub managed: u32,
    pub max_percent: u32,
}

impl Blocked {
    pub fn message(&self) -> String {
        let pct = if self.managed == 0 {
            100.0
        } else {
            self.leavers as f64 * 100.0 / self.managed as f64
        };
        format!(
            "{} of {} active managed members ({pct:.1}%) would be marked as leavers, above safety.maxLeaversPercent {}%: no member was deactivated; approve this run to apply them",
            self.leavers, self.managed, self.max_percent
        )
    }
}

/// The outcome of planning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Writes in a safe order: creates, then updates and re-activations, then leavers.
    pub writes: Vec<PlannedWrite>,
    pub unchanged: u32,
    pub skipped: u32,
    /// Record errors (mapping's and planning's).
    pub errors: Vec<RecordError>,
    /// Destination accounts the integration manages: in its ledger, or adopted by this
    /// plan (without a ledger: externalId among the source's employees).
    pub managed: u32,
    /// Of those, the active ones: the base of the leaver threshold.
    pub active_managed: u32,
    /// Employee IDs of existing accounts this plan adopts into the ledger (their
    /// externalId matched one of the integration's employees for the first time).
    pub adopted: Vec<String>,
    /// Leavers held back by the safety threshold (not in `writes`).
    pub blocked: Option<Blocked>,
    /// Desired members whose manager is not in the destination yet; a follow-up pass
    /// after the creates links them.
    pub pending_manager_links: u32,
}

impl Plan {
    pub fn count(&self, kind: WriteKind) -> u32 {
        self.writes.iter().filter(|w| w.kind == kind).count() as u32
    }
}

fn error_row(member: &Member, field: Option<&str>, message: String) -> RecordError {
    RecordError {
        employee_id: Some(member.employee_id.clone()),
        email: Some(member.email.clone()),
        field: field.map(str::to_string),
        severity: "error".into(),
        message,
    }
}

/// Plans a run without a ledger: managed members are those whose externalId is among
/// the source's employees, and nobody removed from Freshteam can be detected.
pub fn plan(desired: &MappedSource, current: &[DestinationMember], options: &PlanOptions) -> Plan {
    plan_with_ledger(desired, current, None, options)
}

/// Plans a run. `desired` comes from [`crate::mapping::map_records`], `current` from
/// the destination's member list, `ledger` holds the Employee IDs the integration
/// manages (created or adopted by earlier runs).
///
/// Only managed accounts are ever written: those in the ledger, and those whose
/// externalId matches one of the source's employees (adopted). A ledger member whose
/// employee is in no Freshteam population is a leaver with reason "removed from
/// Freshteam" (unless `when_removed` is `Ignore`).
pub fn plan_with_ledger(
    desired: &MappedSource,
    current: &[DestinationMember],
    ledger: Option<&HashSet<String>>,
    options: &PlanOptions,
) -> Plan {
    let mut plan = Plan {
        errors: desired.errors.clone(),
        ..Plan::default()
    };

    // The destination side can be ambiguous too: two accounts with one externalId.
    // Sized up front: growing re-hashes every key.
    let mut by_external: HashMap<&str, &DestinationMember> = HashMap::with_capacity(current.len());
    let mut ambiguous_in_destination: HashSet<&str> = HashSet::new();
    for m in current {
        let key = m.member.employee_id.as_str();
        if key.is_empty() {
            continue;
        }
        if by_external.insert(key, m).is_some() {
            ambiguous_in_destination.insert(key);
        }
    }
    let user_names = UserNames {
        current,
        map: OnceCell::new(),
    };

    let source_ids: HashSet<&str> = desired
        .members
        .iter()
        .map(|d| d.member.employee_id.as_str())
        .chain(desired.ambiguous_ids.iter().map(String::as_str))
        .collect();
    // Employees present in Freshteam whose record could not be applied (an error row):
    // never "removed".
    let drafts: HashSet<&str> = desired
        .drafts
        .iter()
        .map(String::as_str)
        .chain(
            desired
                .errors
                .iter()
                .filter_map(|e| e.employee_id.as_deref()),
        )
        .collect();
    let in_ledger = |id: &str| ledger.is_some_and(|l| l.contains(id));
    let mut removed = Vec::new();
    for m in current {
        let id = m.member.employee_id.as_str();
        if id.is_empty() {
            continue;
        }
        let matched = source_ids.contains(id);
        if !(matched || in_ledger(id)) {
            continue;
        }
        plan.managed += 1;
        if m.member.active {
            plan.active_managed += 1;
        }
        if matched && ledger.is_some() && !in_ledger(id) {
            plan.adopted.push(id.to_string());
        }
        let gone = options.scope == PlanScope::Everyone && !matched && !drafts.contains(id);
        if gone && m.member.active && !ambiguous_in_destination.contains(id) {
            removed.push(m);
        }
    }
    plan.adopted.sort_unstable();
    plan.adopted.dedup();
    plan.skipped += desired
        .drafts
        .iter()
        .filter(|id| !by_external.contains_key(id.as_str()))
        .count() as u32;

    let mut creates = Vec::new();
    let mut updates = Vec::new();
    let mut leavers = Vec::new();

    for d in &desired.members {
        let id = d.member.employee_id.as_str();
        if ambiguous_in_destination.contains(id) {
            plan.errors.push(error_row(
                &d.member,
                Some("employeeId"),
                format!("several destination accounts have externalId {id}; none was changed: remove the duplicates in the destination"),
            ));
            continue;
        }
        let resolved = resolve_manager(d, &by_external);
        if resolved.pending {
            plan.pending_manager_links += 1;
        }
        // Borrowed unless the manager differs: most members are unchanged, and copying
        // each one was a good part of a steady-state plan.
        let want: Cow<Member> = if d.member.manager == resolved.id {
            Cow::Borrowed(&d.member)
        } else {
            Cow::Owned(Member {
                manager: resolved.id,
                ..d.member.clone()
            })
        };
        let mut managed = options.managed;
        if resolved.pending {
            // Leave the manager as it is until the manager's account exists.
            managed = managed.iter().filter(|a| *a != Attr::Manager).collect();
        }

        match by_external.get(id) {
            Some(cur) => {
                if !want.active {
                    if cur.member.active {
                        leavers.push(PlannedWrite {
                            kind: WriteKind::Leaver,
                            op: update_op(
                                cur,
                                vec![Change::Active(false)],
                                want.into_owned(),
                                managed,
                            ),
                            leaver_reason: d.leaver_reason.or(Some(LeaverReason::Inactive)),
                        });
                    } else {
                        plan.unchanged += 1;
                    }
                    continue;
                }
                let mut changes = diff_member(&cur.member, &want, managed);
                if let Some(holder) = email_clash(&changes, cur, &user_names) {
                    plan.errors.push(error_row(
                        &want,
                        Some("email"),
                        clash_message(&want.email, holder),
                    ));
                    continue;
                }
                if !cur.member.active {
                    changes.push(Change::Active(true));
                    updates.push(PlannedWrite {
                        kind: WriteKind::Reactivate,
                        op: update_op(cur, changes, want.into_owned(), managed),
                        leaver_reason: None,
                    });
                } else if changes.is_empty() {
                    plan.unchanged += 1;
                } else {
                    updates.push(PlannedWrite {
                        kind: WriteKind::Update,
                        op: update_op(cur, changes, want.into_owned(), managed),
                        leaver_reason: None,
                    });
                }
            }
            None if !want.active => plan.skipped += 1,
            None => {
                if let Some(holder) = user_names.holder(&want.email) {
                    plan.errors.push(error_row(
                        &want,
                        Some("email"),
                        clash_message(&want.email, holder),
                    ));
                    continue;
                }
                creates.push(PlannedWrite {
                    kind: WriteKind::Create,
                    op: WriteOp::Create {
                        member: only_managed(want.into_owned(), managed),
                    },
                    leaver_reason: None,
                });
            }
        }
    }

    for cur in removed {
        match options.when_removed {
            WhenRemoved::Deactivate => {
                let mut gone = cur.member.clone();
                gone.active = false;
                leavers.push(PlannedWrite {
                    kind: WriteKind::Leaver,
                    op: update_op(cur, vec![Change::Active(false)], gone, options.managed),
                    leaver_reason: Some(LeaverReason::Removed),
                });
            }
            WhenRemoved::Ignore => plan.unchanged += 1,
        }
    }

    // The base is the active managed members: members deactivated long ago must not
    // make room for more leavers. A plan of the changed few only knows the ledger's size.
    let base = match options.scope {
        PlanScope::Everyone => plan.active_managed,
        PlanScope::Changed { managed } => managed.max(plan.active_managed),
    };
    let leaver_count = leavers.len() as u32;
    let over_threshold =
        leaver_count as u64 * 100 > options.max_leavers_percent as u64 * base as u64;
    let approved = options.approved_leavers.is_some_and(|n| leaver_count <= n);
    if leaver_count > 0 && over_threshold && !approved {
        plan.blocked = Some(Blocked {
            leavers: leaver_count,
            managed: base,
            max_percent: options.max_leavers_percent,
        });
        leavers.clear();
    }

    plan.writes = creates;
    plan.writes.append(&mut updates);
    plan.writes.append(&mut leavers);
    plan
}

struct ResolvedManager {
    id: Option<String>,
    pending: bool,
}

fn resolve_manager(
    d: &DesiredMember,
    by_external: &HashMap<&str, &DestinationMember>,
) -> ResolvedManager {
    match d.manager_employee_id.as_deref() {
        None => ResolvedManager {
            id: None,
            pending: false,
        },
        Some(manager) => match by_external.get(manager) {
            Some(m) => ResolvedManager {
                id: Some(m.id.clone()),
                pending: false,
            },
            None => ResolvedManager {
                id: None,
                pending: true,
            },
        },
    }
}

fn only_managed(mut member: Member, managed: AttrSet) -> Member {
    for attr in Attr::ALL {
        if attr != Attr::Email && !managed.contains(attr) {
            member.set(attr, None);
        }
    }
    member
}

fn update_op(
    cur: &DestinationMember,
    changes: Vec<Change>,
    desired: Member,
    managed: AttrSet,
) -> WriteOp {
    WriteOp::Update {
        id: cur.id.clone(),
        version: cur.version.clone(),
        has_work_email: cur.has_work_email,
        changes,
        desired,
        managed,
    }
}

/// Who holds which userName (case-insensitive, as SCIM compares it). Built on first
/// use: a run without creates or e-mail changes never needs it.
struct UserNames<'a> {
    current: &'a [DestinationMember],
    map: OnceCell<HashMap<Cow<'a, str>, &'a DestinationMember>>,
}

impl<'a> UserNames<'a> {
    fn holder(&self, email: &str) -> Option<&'a DestinationMember> {
        self.map
            .get_or_init(|| {
                let mut map = HashMap::with_capacity(self.current.len());
                for m in self.current {
                    map.insert(lowercase(&m.member.email), m);
                }
                map
            })
            .get(lowercase(email).as_ref())
            .copied()
    }
}

/// The account that already holds the e-mail a change would give this member.
fn email_clash<'a>(
    changes: &[Change],
    cur: &DestinationMember,
    user_names: &UserNames<'a>,
) -> Option<&'a DestinationMember> {
    changes.iter().find_map(|c| match c {
        Change::Set(Attr::Email, email) => user_names
            .holder(email)
            .filter(|holder| holder.id != cur.id),
        _ => None,
    })
}

fn clash_message(email: &str, holder: &DestinationMember) -> String {
    if holder.member.employee_id.is_empty() {
        format!("{email} is already the userName of a destination account this integration does not manage (id {}); resolve the clash in the destination", holder.id)
    } else {
        format!(
            "{email} is already the userName of the member with Employee ID {}; fix the e-mail in Freshteam",
            holder.member.employee_id
        )
    }
}
