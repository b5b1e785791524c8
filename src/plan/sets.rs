//! The planner over packed members and accounts: who is managed, what each desired
//! member needs, who left, and the leaver threshold, as separate steps.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};

use super::{
    clash_message, email_clash, error_row, Blocked, PackedPlan, PlanItem, PlanOptions, PlanScope,
    UserNames, Want, WriteKind,
};
use crate::api::WhenRemoved;
use crate::destination::Accounts;
use crate::ledger::ManagedIds;
use crate::mapping::{DesiredSet, PackedDesired};
use crate::member::{diff_fields, Attr, Change, LeaverReason};

/// [`super::plan_with_ledger`] over packed members and accounts, the writes as
/// [`PlanItem`]s.
pub fn plan_sets(
    desired: &DesiredSet,
    current: &Accounts,
    ledger: Option<&dyn ManagedIds>,
    options: &PlanOptions,
) -> PackedPlan {
    let planner = Planner::new(desired, current, ledger, options);
    let mut plan = PackedPlan {
        errors: desired.errors.clone(),
        ..PackedPlan::default()
    };
    let removed = planner.managed_accounts(&mut plan);
    let mut writes = Writes::default();
    for (index, d) in desired.members.iter().enumerate() {
        planner.member(index as u32, d, &mut plan, &mut writes);
    }
    plan.vanished.recreated.sort_unstable();
    plan.vanished.forgotten.sort_unstable();
    planner.removed(removed, &mut plan, &mut writes);
    planner.hold_leavers_over_threshold(&mut plan, &mut writes.leavers);
    plan.writes = writes.into_order();
    plan
}

/// The writes planned so far, by kind: sent creates first, then updates, then leavers.
#[derive(Default)]
struct Writes {
    creates: Vec<PlanItem>,
    updates: Vec<PlanItem>,
    leavers: Vec<PlanItem>,
}

impl Writes {
    fn into_order(self) -> Vec<PlanItem> {
        let Writes {
            mut creates,
            mut updates,
            mut leavers,
        } = self;
        creates.reserve_exact(updates.len() + leavers.len());
        creates.append(&mut updates);
        creates.append(&mut leavers);
        creates
    }
}

/// What every step reads: the inputs and the destination indexed by externalId.
struct Planner<'a> {
    desired: &'a DesiredSet,
    current: &'a Accounts,
    ledger: Option<&'a dyn ManagedIds>,
    options: &'a PlanOptions,
    by_external: HashMap<&'a str, u32>,
    /// Two accounts with one externalId: the destination side is ambiguous too.
    ambiguous_in_destination: HashSet<&'a str>,
    user_names: UserNames<'a>,
}

impl<'a> Planner<'a> {
    fn new(
        desired: &'a DesiredSet,
        current: &'a Accounts,
        ledger: Option<&'a dyn ManagedIds>,
        options: &'a PlanOptions,
    ) -> Self {
        // Sized up front: growing re-hashes every key.
        let mut by_external: HashMap<&str, u32> = HashMap::with_capacity(current.len());
        let mut ambiguous_in_destination = HashSet::new();
        for (i, m) in current.iter().enumerate() {
            let key = m.employee_id();
            if !key.is_empty() && by_external.insert(key, i as u32).is_some() {
                ambiguous_in_destination.insert(key);
            }
        }
        Planner {
            desired,
            current,
            ledger,
            options,
            by_external,
            ambiguous_in_destination,
            user_names: UserNames {
                current,
                map: OnceCell::new(),
            },
        }
    }

    fn in_ledger(&self, id: &str) -> bool {
        self.ledger.is_some_and(|l| l.manages(id))
    }

    /// Counts the managed accounts, notes the adopted ones and returns the active ones
    /// whose employee is in no Freshteam list (removed).
    fn managed_accounts(&self, plan: &mut PackedPlan) -> Vec<u32> {
        let desired = self.desired;
        let source_ids: HashSet<&str> = desired
            .members
            .iter()
            .map(|d| d.member.employee_id())
            .chain(desired.ambiguous_ids.iter().map(String::as_str))
            .collect();
        // Employees present in Freshteam whose record could not be applied (an error
        // row): never "removed".
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
        let mut removed = Vec::new();
        for (i, m) in self.current.iter().enumerate() {
            let id = m.employee_id();
            let matched = source_ids.contains(id);
            if id.is_empty() || !(matched || self.in_ledger(id)) {
                continue;
            }
            plan.managed += 1;
            plan.active_managed += u32::from(m.active());
            if matched && self.ledger.is_some() && !self.in_ledger(id) {
                plan.adopted.push(id.to_string());
            }
            let gone =
                self.options.scope == PlanScope::Everyone && !matched && !drafts.contains(id);
            if gone && m.active() && !self.ambiguous_in_destination.contains(id) {
                removed.push(i as u32);
            }
        }
        plan.adopted.sort_unstable();
        plan.adopted.dedup();
        plan.skipped += desired
            .drafts
            .iter()
            .filter(|id| !self.by_external.contains_key(id.as_str()))
            .count() as u32;
        removed
    }

    /// Plans one desired member: an error row, nothing, a create, an update or a leaver.
    fn member(&self, index: u32, d: &PackedDesired, plan: &mut PackedPlan, writes: &mut Writes) {
        let id = d.member.employee_id();
        let email = d.member.email();
        if self.ambiguous_in_destination.contains(id) {
            plan.errors.push(error_row(
                id,
                email,
                Some("employeeId"),
                format!("several destination accounts have externalId {id}; none was changed: remove the duplicates in the destination"),
            ));
            return;
        }
        let item = self.item(index, d, plan);
        match self.by_external.get(id) {
            Some(&a) => self.existing(a, d, item, plan, writes),
            None if !d.member.active() => {
                plan.skipped += 1;
                if self.in_ledger(id) {
                    plan.vanished.forgotten.push(id.to_string());
                }
            }
            None => {
                if let Some(holder) = self.user_names.holder(email) {
                    let message = clash_message(email, holder);
                    plan.errors
                        .push(error_row(id, email, Some("email"), message));
                    return;
                }
                // Managed, with an account recorded, and no account now: it vanished.
                if let Some(gone) = self.ledger.and_then(|l| l.account_of(id)) {
                    plan.vanished.recreated.push((id.to_string(), gone));
                }
                writes.creates.push(PlanItem {
                    kind: WriteKind::Create,
                    ..item
                });
            }
        }
    }

    /// The item for a desired member, without its kind, account or changes yet: the
    /// manager's account resolved, or left as it is until that account exists.
    fn item(&self, index: u32, d: &PackedDesired, plan: &mut PackedPlan) -> PlanItem {
        let (manager, pending) = match d.manager_employee_id() {
            None => (None, false),
            Some(m) => match self.by_external.get(m) {
                Some(&a) => (Some(a), false),
                None => (None, true),
            },
        };
        let mut managed = self.options.managed;
        if !d.unknown.is_empty() {
            managed = managed.iter().filter(|a| !d.unknown.contains(a)).collect();
        }
        if pending {
            plan.pending_manager_links += 1;
            managed = managed.iter().filter(|a| *a != Attr::Manager).collect();
        }
        PlanItem {
            kind: WriteKind::Create,
            leaver_reason: None,
            desired: Some(index),
            account: None,
            manager,
            changes: Vec::new(),
            managed,
        }
    }

    /// A desired member with an account: a leaver, a reactivation, an update or nothing.
    fn existing(
        &self,
        a: u32,
        d: &PackedDesired,
        item: PlanItem,
        plan: &mut PackedPlan,
        writes: &mut Writes,
    ) {
        let cur = self.current.get(a as usize);
        let item = PlanItem {
            account: Some(a),
            ..item
        };
        if !d.member.active() {
            if cur.active() {
                writes.leavers.push(PlanItem {
                    kind: WriteKind::Leaver,
                    leaver_reason: d.leaver_reason.or(Some(LeaverReason::Inactive)),
                    changes: vec![Change::Active(false)],
                    ..item
                });
            } else {
                plan.unchanged += 1;
            }
            return;
        }
        let want = Want {
            member: d,
            manager: item.manager.map(|m| self.current.get(m as usize).id()),
        };
        let mut changes = diff_fields(cur, &want, item.managed);
        if let Some(holder) = email_clash(&changes, cur, &self.user_names) {
            let (id, email) = (d.member.employee_id(), d.member.email());
            let message = clash_message(email, holder);
            plan.errors
                .push(error_row(id, email, Some("email"), message));
            return;
        }
        let kind = if !cur.active() {
            changes.push(Change::Active(true));
            WriteKind::Reactivate
        } else if changes.is_empty() {
            plan.unchanged += 1;
            return;
        } else {
            WriteKind::Update
        };
        writes.updates.push(PlanItem {
            kind,
            changes,
            ..item
        });
    }

    /// Managed accounts whose employee is in no Freshteam list, as `whenRemoved` says.
    fn removed(&self, removed: Vec<u32>, plan: &mut PackedPlan, writes: &mut Writes) {
        for a in removed {
            match self.options.when_removed {
                WhenRemoved::Deactivate => writes.leavers.push(PlanItem {
                    kind: WriteKind::Leaver,
                    leaver_reason: Some(LeaverReason::Removed),
                    desired: None,
                    account: Some(a),
                    manager: None,
                    changes: vec![Change::Active(false)],
                    managed: self.options.managed,
                }),
                WhenRemoved::Ignore => plan.unchanged += 1,
            }
        }
    }

    /// Holds every leaver back when there are more than the threshold allows and no
    /// approval covers them.
    fn hold_leavers_over_threshold(&self, plan: &mut PackedPlan, leavers: &mut Vec<PlanItem>) {
        let options = self.options;
        // The base is the active managed members: members deactivated long ago must not
        // make room for more leavers. A plan of the changed few only knows the ledger's
        // size.
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
    }
}
