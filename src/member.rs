//! The member: one person on the rewards platform, as the operator manages it.

pub mod target;

use std::fmt;

/// A member field the mapping can fill. `Active` is driven by the leaver rule, not the
/// mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attr {
    Email,
    FirstName,
    LastName,
    DisplayName,
    JobTitle,
    Department,
    EmployeeNumber,
    Manager,
    /// A target of `spec.mapping.attributes[]` (its text, interned:
    /// [`target::intern`]).
    Extra(&'static str),
}

impl Attr {
    pub const ALL: [Attr; 8] = [
        Attr::Email,
        Attr::FirstName,
        Attr::LastName,
        Attr::DisplayName,
        Attr::JobTitle,
        Attr::Department,
        Attr::EmployeeNumber,
        Attr::Manager,
    ];

    /// The member field's name as written in `spec.mapping`.
    pub fn field_name(self) -> &'static str {
        match self {
            Attr::Email => "email",
            Attr::FirstName => "firstName",
            Attr::LastName => "lastName",
            Attr::DisplayName => "displayName",
            Attr::JobTitle => "jobTitle",
            Attr::Department => "department",
            Attr::EmployeeNumber => "employeeNumber",
            Attr::Manager => "manager",
            Attr::Extra(target) => target,
        }
    }

    /// The name change rows show: a fixed field's name, an extension attribute without
    /// its URN (`costCenter`), any other target as written.
    pub fn display_name(self) -> &'static str {
        match self {
            Attr::Extra(target) if target.starts_with("urn:") => {
                let head = target.split('[').next().unwrap_or(target);
                head.rfind(':').map_or(target, |i| &target[i + 1..])
            }
            other => other.field_name(),
        }
    }

    /// The SCIM attribute path a value is written to (`name.givenName`,
    /// `urn:…:enterprise:2.0:User:department`, an extra target as mapped).
    pub fn scim_path(self) -> String {
        let enterprise = |name: &str| format!("{}:{name}", target::ENTERPRISE_SCHEMA);
        match self {
            Attr::Email => "userName".into(),
            Attr::FirstName => "name.givenName".into(),
            Attr::LastName => "name.familyName".into(),
            Attr::DisplayName => "displayName".into(),
            Attr::JobTitle => "title".into(),
            Attr::Department => enterprise("department"),
            Attr::EmployeeNumber => enterprise("employeeNumber"),
            Attr::Manager => enterprise("manager"),
            Attr::Extra(t) => t.to_string(),
        }
    }

    /// The index of a fixed field in [`Attr::ALL`]; `None` for an extra target.
    pub fn fixed_index(self) -> Option<usize> {
        Some(match self {
            Attr::Email => 0,
            Attr::FirstName => 1,
            Attr::LastName => 2,
            Attr::DisplayName => 3,
            Attr::JobTitle => 4,
            Attr::Department => 5,
            Attr::EmployeeNumber => 6,
            Attr::Manager => 7,
            Attr::Extra(_) => return None,
        })
    }

    pub fn is_extra(self) -> bool {
        matches!(self, Attr::Extra(_))
    }
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// A set of member fields (the ones a mapping manages): the fixed ones, then the extra
/// targets in mapping order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttrSet {
    bits: u16,
    extra: &'static [&'static str],
}

impl AttrSet {
    pub fn insert(&mut self, attr: Attr) {
        match attr {
            Attr::Extra(t) => {
                if !self.extra.contains(&t) {
                    let mut list = self.extra.to_vec();
                    list.push(t);
                    self.extra = target::intern_list(&list);
                }
            }
            fixed => self.bits |= 1 << fixed.fixed_index().expect("a fixed field"),
        }
    }
    pub fn contains(self, attr: Attr) -> bool {
        match attr {
            Attr::Extra(t) => self.extra.contains(&t),
            fixed => self.bits & (1 << fixed.fixed_index().expect("a fixed field")) != 0,
        }
    }
    pub fn iter(self) -> impl Iterator<Item = Attr> {
        Attr::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
            .chain(self.extra.iter().map(|t| Attr::Extra(t)))
    }
    /// The extra targets, in mapping order.
    pub fn extras(self) -> &'static [&'static str] {
        self.extra
    }
    /// The set without `attr`.
    pub fn without(self, attr: Attr) -> AttrSet {
        self.iter().filter(|a| *a != attr).collect()
    }
}

impl FromIterator<Attr> for AttrSet {
    fn from_iter<I: IntoIterator<Item = Attr>>(iter: I) -> Self {
        let mut set = AttrSet::default();
        for a in iter {
            set.insert(a);
        }
        set
    }
}

/// A member's attributes. `manager` holds the manager's destination id once resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// The member key (SCIM `externalId`).
    pub employee_id: String,
    /// SCIM `userName` and primary work e-mail.
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub employee_number: Option<String>,
    pub manager: Option<String>,
    /// Values of `spec.mapping.attributes[]` targets ([`Attr::Extra`]), only those set.
    pub extra: Vec<(&'static str, String)>,
    /// False for a leaver.
    pub active: bool,
}

impl Member {
    pub fn get(&self, attr: Attr) -> Option<&str> {
        match attr {
            Attr::Email => Some(self.email.as_str()),
            Attr::FirstName => self.first_name.as_deref(),
            Attr::LastName => self.last_name.as_deref(),
            Attr::DisplayName => self.display_name.as_deref(),
            Attr::JobTitle => self.job_title.as_deref(),
            Attr::Department => self.department.as_deref(),
            Attr::EmployeeNumber => self.employee_number.as_deref(),
            Attr::Manager => self.manager.as_deref(),
            Attr::Extra(t) => self
                .extra
                .iter()
                .find(|(k, _)| *k == t)
                .map(|(_, v)| v.as_str()),
        }
    }

    pub fn set(&mut self, attr: Attr, value: Option<String>) {
        match attr {
            Attr::Email => self.email = value.unwrap_or_default(),
            Attr::FirstName => self.first_name = value,
            Attr::LastName => self.last_name = value,
            Attr::DisplayName => self.display_name = value,
            Attr::JobTitle => self.job_title = value,
            Attr::Department => self.department = value,
            Attr::EmployeeNumber => self.employee_number = value,
            Attr::Manager => self.manager = value,
            Attr::Extra(t) => {
                self.extra.retain(|(k, _)| *k != t);
                if let Some(v) = value {
                    self.extra.push((t, v));
                }
            }
        }
    }
}

/// One change to an existing member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Set a field to a value.
    Set(Attr, String),
    /// Remove a field's value (the source no longer has one).
    Clear(Attr),
    /// Activate (returning employee) or deactivate (leaver).
    Active(bool),
}

impl Change {
    /// Applies the change to a member in memory (what the destination will hold).
    pub fn apply_to(&self, member: &mut Member) {
        match self {
            Change::Set(a, v) => member.set(*a, Some(v.clone())),
            Change::Clear(a) => member.set(*a, None),
            Change::Active(active) => member.active = *active,
        }
    }
}

/// Why a member is a leaver (shown on every leaver row of a run's report).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaverReason {
    /// The employee's status is one of `spec.leavers.statuses` (default `inactive`).
    Inactive,
    /// Terminated in Freshteam.
    Terminated,
    /// Deleted in Freshteam.
    Deleted,
    /// The employee appears in no Freshteam list any more ("Delete Forever"); only the
    /// integration's ledger knows they were managed.
    Removed,
    /// `spec.scope.filter` no longer keeps the employee (`whenOutOfScope: Deactivate`).
    OutOfScope,
}

impl LeaverReason {
    /// `inactive`, `terminated`, `deleted` or `removed from Freshteam`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaverReason::Inactive => "inactive",
            LeaverReason::Terminated => "terminated",
            LeaverReason::Deleted => "deleted",
            LeaverReason::Removed => "removed from Freshteam",
            LeaverReason::OutOfScope => "out of scope",
        }
    }
}

impl fmt::Display for LeaverReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The changes that turn `current` into `desired`, for managed fields only. `Active`
/// is not compared here.
pub fn diff_member(current: &Member, desired: &Member, managed: AttrSet) -> Vec<Change> {
    diff_fields(current, desired, managed)
}

/// Recomputes an update's changes against a freshly read `current` (after a stale
/// version, HTTP 412): the same kind of update, against what the member holds now.
pub fn replan_update(
    current: &Member,
    planned: &[Change],
    desired: &Member,
    managed: AttrSet,
) -> Vec<Change> {
    let touches_attributes = planned.iter().any(|c| !matches!(c, Change::Active(_)));
    let mut changes = if touches_attributes {
        diff_member(current, desired, managed)
    } else {
        Vec::new()
    };
    for c in planned {
        if let Change::Active(active) = c {
            if current.active != *active {
                changes.push(c.clone());
            }
        }
    }
    changes
}

/// Read access to a member's fields, whether held as a [`Member`] or packed.
pub trait MemberFields {
    fn field(&self, attr: Attr) -> Option<&str>;
}

impl MemberFields for Member {
    fn field(&self, attr: Attr) -> Option<&str> {
        self.get(attr)
    }
}

/// [`diff_member`] over any two holders of member fields.
pub fn diff_fields(
    current: &impl MemberFields,
    desired: &impl MemberFields,
    managed: AttrSet,
) -> Vec<Change> {
    managed
        .iter()
        .filter_map(|attr| {
            let want = desired.field(attr).filter(|v| !v.is_empty());
            let have = current.field(attr).filter(|v| !v.is_empty());
            match (want, have) {
                (Some(w), Some(h)) if w == h => None,
                (Some(w), _) => Some(Change::Set(attr, w.to_string())),
                // A member always keeps an e-mail; mapping guarantees one anyway.
                (None, Some(_)) if attr == Attr::Email => None,
                (None, Some(_)) => Some(Change::Clear(attr)),
                (None, None) => None,
            }
        })
        .collect()
}

/// Slots of a [`PackedMember`]: the member fields in [`Attr::ALL`] order, then these.
const EMPLOYEE_ID: usize = 8;
const EXTRA: usize = 9;
const SLOTS: usize = 11;

/// A member's fields and up to two more strings (an account's id and version) in one
/// allocation. A run holds every employee and every account at once: as [`Member`]s
/// that is a dozen allocations each, packed it is one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackedMember {
    text: Box<str>,
    ends: [u32; SLOTS],
    /// Bit per slot: `Some` (possibly empty) rather than `None`.
    present: u16,
    active: bool,
    flag: bool,
    /// Extra targets set, each with the end of its value in `text` (after the slots).
    extra: Option<Box<[(&'static str, u32)]>>,
}

impl PackedMember {
    /// Packs `member` with two extra strings and a flag of the caller's.
    pub fn new(member: &Member, extra: [Option<&str>; 2], flag: bool) -> Self {
        Self::with_manager(member, member.manager.as_deref(), extra, flag)
    }

    /// [`PackedMember::new`] with another value in the manager's slot.
    pub fn with_manager(
        member: &Member,
        manager: Option<&str>,
        extra: [Option<&str>; 2],
        flag: bool,
    ) -> Self {
        let slot = |i: usize| -> Option<&str> {
            match i {
                7 => manager,
                0..=6 => member.get(Attr::ALL[i]),
                EMPLOYEE_ID => Some(member.employee_id.as_str()),
                _ => extra[i - EXTRA],
            }
        };
        let len: usize = (0..SLOTS)
            .map(|i| slot(i).map_or(0, str::len))
            .sum::<usize>()
            + member.extra.iter().map(|(_, v)| v.len()).sum::<usize>();
        let mut text = String::with_capacity(len);
        let mut ends = [0u32; SLOTS];
        let mut present = 0u16;
        for (i, end) in ends.iter_mut().enumerate() {
            if let Some(v) = slot(i) {
                text.push_str(v);
                present |= 1 << i;
            }
            *end = u32::try_from(text.len()).expect("a member's text fits in 4 GiB");
        }
        let extra = (!member.extra.is_empty()).then(|| {
            member
                .extra
                .iter()
                .map(|(k, v)| {
                    text.push_str(v);
                    (
                        *k,
                        u32::try_from(text.len()).expect("a member's text fits in 4 GiB"),
                    )
                })
                .collect()
        });
        PackedMember {
            text: text.into_boxed_str(),
            ends,
            present,
            active: member.active,
            flag,
            extra,
        }
    }

    fn extra_value(&self, target: &str) -> Option<&str> {
        let list = self.extra.as_deref()?;
        let i = list.iter().position(|(k, _)| *k == target)?;
        let start = if i == 0 {
            self.ends[SLOTS - 1]
        } else {
            list[i - 1].1
        } as usize;
        Some(&self.text[start..list[i].1 as usize])
    }

    fn extras(&self) -> Vec<(&'static str, String)> {
        self.extra
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|(k, _)| Some((*k, self.extra_value(k)?.to_string())))
            .collect()
    }

    fn slot(&self, i: usize) -> Option<&str> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(&self.text[start..self.ends[i] as usize])
    }

    pub fn employee_id(&self) -> &str {
        self.slot(EMPLOYEE_ID).unwrap_or("")
    }
    pub fn email(&self) -> &str {
        self.slot(0).unwrap_or("")
    }
    pub fn active(&self) -> bool {
        self.active
    }
    pub fn set_active(&mut self, active: bool) {
        self.active = active;
    }
    /// The caller's flag given to [`PackedMember::new`].
    pub fn flag(&self) -> bool {
        self.flag
    }
    /// Extra string 0 or 1 given to [`PackedMember::new`].
    pub fn extra(&self, i: usize) -> Option<&str> {
        self.slot(EXTRA + i)
    }
    pub fn unpack(&self) -> Member {
        let own = |a: Attr| self.field(a).map(str::to_string);
        Member {
            employee_id: self.employee_id().to_string(),
            email: self.email().to_string(),
            first_name: own(Attr::FirstName),
            last_name: own(Attr::LastName),
            display_name: own(Attr::DisplayName),
            job_title: own(Attr::JobTitle),
            department: own(Attr::Department),
            employee_number: own(Attr::EmployeeNumber),
            manager: own(Attr::Manager),
            extra: self.extras(),
            active: self.active,
        }
    }
}

impl MemberFields for PackedMember {
    fn field(&self, attr: Attr) -> Option<&str> {
        match attr {
            Attr::Extra(t) => self.extra_value(t),
            fixed => self.slot(fixed.fixed_index()?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_targets_pack_compare_and_show_by_name() {
        let cost = Attr::Extra(target::intern(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter",
        ));
        let nick = Attr::Extra(target::intern("nickName"));
        let mut member = Member {
            employee_id: "E1".into(),
            email: "a@acme.example".into(),
            first_name: Some("Ada".into()),
            active: true,
            ..Member::default()
        };
        member.set(cost, Some("CC-101".into()));
        member.set(nick, Some("Ada L".into()));
        let packed = PackedMember::new(&member, [Some("id-1"), None], true);
        assert_eq!(packed.field(cost), Some("CC-101"));
        assert_eq!(packed.field(nick), Some("Ada L"));
        assert_eq!(packed.field(Attr::FirstName), Some("Ada"));
        assert_eq!(packed.extra(0), Some("id-1"));
        assert_eq!(packed.unpack(), member);

        let managed: AttrSet = [Attr::Email, Attr::FirstName, cost, nick]
            .into_iter()
            .collect();
        assert_eq!(
            managed.iter().collect::<Vec<_>>(),
            vec![Attr::Email, Attr::FirstName, cost, nick]
        );
        let mut desired = member.clone();
        desired.set(cost, Some("CC-204".into()));
        desired.set(nick, None);
        let changes = diff_member(&member, &desired, managed);
        assert_eq!(
            changes,
            vec![Change::Set(cost, "CC-204".into()), Change::Clear(nick)]
        );
        assert_eq!(cost.to_string(), "costCenter");
        assert_eq!(nick.to_string(), "nickName");
        // A member without extras packs without their table.
        let plain = PackedMember::new(&Member::default(), [None, None], false);
        assert!(plain.extra.is_none());
    }
}
