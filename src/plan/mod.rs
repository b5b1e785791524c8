//! Planning: desired members against the destination's members → the writes to make.
//! Pure: no I/O, no clock.

#[cfg(test)]
mod tests;

mod sets;

pub use sets::plan_sets;

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};

use crate::api::{RecordError, Severity, WhenRemoved};
use crate::destination::{Account, Accounts, DestinationMember, UpdateOp, WriteOp};
use crate::ledger::ManagedIds;
use crate::mapping::{lowercase, DesiredSet, MappedSource, PackedDesired};
#[cfg(test)]
use crate::member::diff_member;
use crate::member::{Attr, AttrSet, Change, LeaverReason, Member, MemberFields};

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

/// The outcome of planning, with its writes made ([`PlannedWrite`]) or by reference
/// ([`PlanItem`], a [`PackedPlan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan<W = PlannedWrite> {
    /// Writes in a safe order: creates, then updates and re-activations, then leavers.
    pub writes: Vec<W>,
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
    /// Ledger members whose account is gone from the destination.
    pub vanished: Vanished,
}

/// Ledger members whose account no longer exists in the destination (closed down after a
/// leaver, deleted by hand): no account has the destination id the ledger recorded, and
/// none has their externalId.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vanished {
    /// Current staff in scope, created again: Employee ID and the vanished account's id,
    /// sorted by Employee ID.
    pub recreated: Vec<(String, String)>,
    /// Members who get no account (a leaver): their entries are dropped from the ledger
    /// instead of deactivating an account that is not there. Sorted.
    pub forgotten: Vec<String>,
}

impl Vanished {
    /// The vanished account a create of this member replaces, when it does.
    pub fn replaces(&self, employee_id: &str) -> Option<&str> {
        let at = self
            .recreated
            .binary_search_by(|(id, _)| id.as_str().cmp(employee_id))
            .ok()?;
        Some(self.recreated[at].1.as_str())
    }

    /// Whether this member's ledger entry is dropped (its account is gone for good).
    pub fn forgets(&self, employee_id: &str) -> bool {
        self.forgotten
            .binary_search_by(|id| id.as_str().cmp(employee_id))
            .is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.recreated.is_empty() && self.forgotten.is_empty()
    }
}

impl<W> Default for Plan<W> {
    fn default() -> Self {
        Plan {
            writes: Vec::new(),
            unchanged: 0,
            skipped: 0,
            errors: Vec::new(),
            managed: 0,
            active_managed: 0,
            adopted: Vec::new(),
            blocked: None,
            pending_manager_links: 0,
            vanished: Vanished::default(),
        }
    }
}

/// What a planned write is, made or packed.
pub trait Planned {
    fn kind(&self) -> WriteKind;
}

impl Planned for PlannedWrite {
    fn kind(&self) -> WriteKind {
        self.kind
    }
}

impl Planned for PlanItem {
    fn kind(&self) -> WriteKind {
        self.kind
    }
}

impl<W: Planned> Plan<W> {
    pub fn count(&self, kind: WriteKind) -> u32 {
        self.writes.iter().filter(|w| w.kind() == kind).count() as u32
    }
}

/// A planned write by reference into the desired members and the accounts it was
/// planned from: a run with 100,000 creates holds these, and turns each into its
/// [`PlannedWrite`] only when it sends it ([`PackedPlan::write`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanItem {
    pub kind: WriteKind,
    /// Why, for a leaver.
    pub leaver_reason: Option<LeaverReason>,
    /// Index of the desired member (`None`: a member removed from Freshteam).
    pub desired: Option<u32>,
    /// Index of the account (`None`: a create).
    pub account: Option<u32>,
    /// Index of the manager's account, when resolved.
    pub manager: Option<u32>,
    /// The changes of an update (empty for a create).
    pub changes: Vec<Change>,
    pub managed: AttrSet,
}

/// [`Plan`] with [`PlanItem`]s instead of writes.
pub type PackedPlan = Plan<PlanItem>;

impl PackedPlan {
    /// The Employee ID a planned write is for.
    pub fn employee_id<'a>(
        item: &PlanItem,
        desired: &'a DesiredSet,
        accounts: &'a Accounts,
    ) -> &'a str {
        match (item.desired, item.account) {
            (Some(d), _) => desired.members[d as usize].member.employee_id(),
            (None, Some(a)) => accounts.get(a as usize).employee_id(),
            (None, None) => "",
        }
    }

    /// The e-mail a planned write is for.
    pub fn email<'a>(item: &PlanItem, desired: &'a DesiredSet, accounts: &'a Accounts) -> &'a str {
        match (item.desired, item.account) {
            (Some(d), _) => desired.members[d as usize].member.email(),
            (None, Some(a)) => accounts.get(a as usize).email(),
            (None, None) => "",
        }
    }

    /// The write an item stands for, as it would be sent.
    pub fn write(item: &PlanItem, desired: &DesiredSet, accounts: &Accounts) -> PlannedWrite {
        let want = item.desired.map(|d| {
            let mut member = desired.members[d as usize].member.unpack();
            member.manager = item
                .manager
                .map(|m| accounts.get(m as usize).id().to_string());
            member
        });
        let op = match (item.account, want) {
            (None, Some(want)) => WriteOp::Create {
                member: only_managed(want, item.managed),
            },
            (Some(a), want) => {
                let cur = accounts.get(a as usize);
                let desired = want.unwrap_or_else(|| {
                    let mut gone = cur.member();
                    gone.active = false;
                    gone
                });
                WriteOp::Update(UpdateOp {
                    id: cur.id().to_string(),
                    version: cur.version().map(str::to_string),
                    has_work_email: cur.has_work_email(),
                    changes: item.changes.clone(),
                    desired,
                    managed: item.managed,
                })
            }
            (None, None) => unreachable!("a planned write has a member or an account"),
        };
        PlannedWrite {
            kind: item.kind,
            op,
            leaver_reason: item.leaver_reason,
        }
    }

    /// The plan with every write made.
    pub fn into_plan(self, desired: &DesiredSet, accounts: &Accounts) -> Plan {
        let writes = self
            .writes
            .iter()
            .map(|i| Self::write(i, desired, accounts))
            .collect();
        Plan {
            writes,
            unchanged: self.unchanged,
            skipped: self.skipped,
            errors: self.errors,
            managed: self.managed,
            active_managed: self.active_managed,
            adopted: self.adopted,
            blocked: self.blocked,
            pending_manager_links: self.pending_manager_links,
            vanished: self.vanished,
        }
    }
}

fn error_row(employee_id: &str, email: &str, field: Option<&str>, message: String) -> RecordError {
    RecordError {
        employee_id: Some(employee_id.to_string()),
        email: Some(email.to_string()),
        field: field.map(str::to_string),
        severity: Severity::Error,
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
    let desired = DesiredSet::from(desired);
    let accounts = Accounts::from(current);
    let ledger = ledger.map(|l| l as &dyn ManagedIds);
    plan_sets(&desired, &accounts, ledger, options).into_plan(&desired, &accounts)
}

/// A desired member as it should be: its manager resolved to the manager's account id.
struct Want<'a> {
    member: &'a PackedDesired,
    manager: Option<&'a str>,
}

impl MemberFields for Want<'_> {
    fn field(&self, attr: Attr) -> Option<&str> {
        match attr {
            Attr::Manager => self.manager,
            _ => self.member.member.field(attr),
        }
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

/// Who holds which userName (case-insensitive, as SCIM compares it). Built on first
/// use: a run without creates or e-mail changes never needs it.
struct UserNames<'a> {
    current: &'a Accounts,
    map: OnceCell<HashMap<Cow<'a, str>, &'a Account>>,
}

impl<'a> UserNames<'a> {
    fn holder(&self, email: &str) -> Option<&'a Account> {
        self.map
            .get_or_init(|| {
                let mut map = HashMap::with_capacity(self.current.len());
                for m in self.current.iter() {
                    map.insert(lowercase(m.email()), m);
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
    cur: &Account,
    user_names: &UserNames<'a>,
) -> Option<&'a Account> {
    changes.iter().find_map(|c| match c {
        Change::Set(Attr::Email, email) => user_names
            .holder(email)
            .filter(|holder| holder.id() != cur.id()),
        _ => None,
    })
}

fn clash_message(email: &str, holder: &Account) -> String {
    if holder.employee_id().is_empty() {
        format!("{email} is already the userName of a destination account this integration does not manage (id {}); resolve the clash in the destination", holder.id())
    } else {
        format!(
            "{email} is already the userName of the member with Employee ID {}; fix the e-mail in Freshteam",
            holder.employee_id()
        )
    }
}
