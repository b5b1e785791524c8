//! Mapping: Freshteam employee records → desired members, with one error row per bad
//! record. Pure: no I/O.

mod cel;
mod extra;
#[cfg(test)]
mod tests;

pub use extra::MAX_ATTRIBUTES;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::api::{LeaversSpec, MappingSpec, RecordError, ScopeSpec, Severity, WhenOutOfScope};
use crate::member::{Attr, AttrSet, LeaverReason, Member, MemberFields, PackedMember};
use crate::source::{
    EmployeeRecord, LookupFields, LookupKind, Population, SourceRequest, SourceSnapshot,
};

use crate::source::LIST_FIELDS;

/// Fields only `GET /api/employees/{id}` carries (besides `custom_field_values.*`).
pub const DETAIL_FIELDS: &[&str] = &[
    "personal_email",
    "date_of_birth",
    "gender",
    "marital_status",
    "nick_name",
    "blood_group",
    "level_id",
    "termination_reason",
    "notice_period",
    "probation_start_date",
    "probation_end_date",
    "hr_incharge_id",
];

/// Relations a field path or an expression can follow, each resolved through a lookup
/// endpoint: name, endpoint, the id field the employee record carries.
pub(super) const RELATIONS: &[(&str, LookupKind, &str)] = &[
    ("department", LookupKind::Departments, "department_id"),
    (
        "sub_department",
        LookupKind::SubDepartments,
        "sub_department_id",
    ),
    ("branch", LookupKind::Branches, "branch_id"),
    (
        "business_unit",
        LookupKind::BusinessUnits,
        "business_unit_id",
    ),
    ("team", LookupKind::Teams, "team_id"),
    ("level", LookupKind::Levels, "level_id"),
];

/// The manager's Employee ID, resolved through `reporting_to_id`.
const MANAGER_FIELDS: &[&str] = &["reporting_to", "manager"];

const CUSTOM_PREFIX: &str = "custom_field_values.";

/// A mapping that does not make sense, naming the `spec.mapping` field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct MappingError {
    /// Path in the manifest, e.g. `spec.mapping.email`.
    pub field: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Extract {
    /// Index into the record's values.
    Value(usize),
    /// Id at this index, named through the lookup.
    Lookup(LookupKind, usize),
    /// Freshteam id of the manager at this index, turned into their Employee ID.
    Manager(usize),
    /// A custom field at this index: a dropdown's `value`, else the value.
    Custom(usize),
    /// Id at this index, a field of the looked-up record.
    LookupField(LookupKind, usize, String),
    /// `value:` a constant.
    Constant(String),
    /// `expression:` CEL over `employee`.
    Expression(cel::Cel),
    /// Another employee's Freshteam id at this index, and the index of the field taken
    /// from their record (resolved once every record has been seen).
    Person(usize, usize),
}

/// A validated mapping: what to fetch and how to turn a record into a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledMapping {
    /// What to ask the source for.
    pub request: SourceRequest,
    /// Member fields this mapping writes.
    pub managed: AttrSet,
    employee_id: usize,
    status: usize,
    attrs: Vec<(Attr, Extract)>,
    derive_display_name: bool,
    leaver_statuses: HashSet<String>,
    email_field: String,
    extras: Vec<extra::ExtraAttr>,
    cel_input: extra::CelInput,
    scope: Option<extra::Scope>,
}

impl CompiledMapping {
    /// Validates `spec.mapping` and `spec.leavers`.
    pub fn compile(mapping: &MappingSpec, leavers: &LeaversSpec) -> Result<Self, MappingError> {
        let mut request = SourceRequest::default();
        let index = |request: &mut SourceRequest, name: &str| -> usize {
            match request.fields.iter().position(|f| f == name) {
                Some(i) => i,
                None => {
                    request.fields.push(name.to_string());
                    request.fields.len() - 1
                }
            }
        };

        let employee_id = match mapping.employee_id.trim() {
            "" => return Err(MappingError {
                field: "spec.mapping.employeeId".into(),
                message:
                    "must name the Freshteam field that identifies a member (default employee_id)"
                        .into(),
            }),
            name => {
                check_plain_field("spec.mapping.employeeId", name)?;
                if !LIST_FIELDS.contains(&name) {
                    request.needs_detail = true;
                }
                index(&mut request, name)
            }
        };
        let status = index(&mut request, "status");

        let email = mapping.email.as_deref().map(str::trim).unwrap_or("");
        if email.is_empty() {
            return Err(MappingError {
                field: "spec.mapping.email".into(),
                message:
                    "is required: every member needs an e-mail address (e.g. email: official_email)"
                        .into(),
            });
        }

        let targets = [
            (Attr::Email, Some(email)),
            (Attr::FirstName, mapping.first_name.as_deref()),
            (Attr::LastName, mapping.last_name.as_deref()),
            (Attr::DisplayName, mapping.display_name.as_deref()),
            (Attr::JobTitle, mapping.job_title.as_deref()),
            (Attr::Department, mapping.department.as_deref()),
            (Attr::EmployeeNumber, mapping.employee_number.as_deref()),
            (Attr::Manager, mapping.manager.as_deref()),
        ];
        let mut attrs = Vec::new();
        let mut managed = AttrSet::default();
        for (attr, source) in targets {
            let Some(source) = source.map(str::trim).filter(|s| !s.is_empty()) else {
                continue;
            };
            let field = format!("spec.mapping.{}", attr.field_name());
            let extract = if let Some((_, kind, id_field)) =
                RELATIONS.iter().find(|(name, _, _)| *name == source)
            {
                if !request.lookups.contains(kind) {
                    request.lookups.push(*kind);
                }
                Extract::Lookup(*kind, index(&mut request, id_field))
            } else if MANAGER_FIELDS.contains(&source) {
                extra::add_person(&mut request, "reporting_to_id");
                Extract::Manager(index(&mut request, "reporting_to_id"))
            } else {
                check_plain_field(&field, source)?;
                if !LIST_FIELDS.contains(&source) {
                    request.needs_detail = true;
                }
                Extract::Value(index(&mut request, source))
            };
            if attr == Attr::Manager && !matches!(extract, Extract::Manager(_)) {
                return Err(MappingError {
                    field,
                    message: format!(
                        "'{source}' cannot name a manager: use reporting_to (the manager's Employee ID via reporting_to_id)"
                    ),
                });
            }
            managed.insert(attr);
            attrs.push((attr, extract));
        }

        let mut cel_input = extra::CelInput::default();
        let extras = extra::compile_attributes(
            &mapping.attributes,
            &mut request,
            &mut managed,
            &mut cel_input,
        )?;

        let derive_display_name = mapping.display_name.is_none()
            && (managed.contains(Attr::FirstName) || managed.contains(Attr::LastName));
        if derive_display_name {
            managed.insert(Attr::DisplayName);
        }

        let leaver_statuses: HashSet<String> = leavers
            .statuses
            .iter()
            .map(|s| s.trim().to_lowercase())
            .collect();
        if leaver_statuses.contains("active") {
            return Err(MappingError {
                field: "spec.leavers.statuses".into(),
                message: "must not contain 'active': every current employee would become a leaver"
                    .into(),
            });
        }
        if let Some(empty) = leaver_statuses.iter().find(|s| s.is_empty()) {
            return Err(MappingError {
                field: "spec.leavers.statuses".into(),
                message: format!("contains an empty status '{empty}'"),
            });
        }

        Ok(CompiledMapping {
            request,
            managed,
            employee_id,
            status,
            attrs,
            derive_display_name,
            leaver_statuses,
            email_field: email.to_string(),
            extras,
            cel_input,
            scope: None,
        })
    }

    /// Adds `spec.scope` (validated: its filter compiles to a bool).
    pub fn with_scope(mut self, scope: Option<&ScopeSpec>) -> Result<Self, MappingError> {
        self.scope = extra::compile_scope(scope, &mut self.request, &mut self.cel_input)?;
        Ok(self)
    }

    /// True when `spec.scope.filter` decides who is provisioned.
    pub fn scoped(&self) -> bool {
        self.scope.is_some()
    }
}

fn check_plain_field(field: &str, name: &str) -> Result<(), MappingError> {
    if LIST_FIELDS.contains(&name) || DETAIL_FIELDS.contains(&name) {
        return Ok(());
    }
    if let Some(custom) = name.strip_prefix(CUSTOM_PREFIX) {
        if !custom.is_empty() {
            return Ok(());
        }
    }
    let hint = if name.ends_with("_id") || RELATIONS.iter().any(|(n, _, _)| name.starts_with(n)) {
        " (for a name looked up from an id use department, sub_department, branch, business_unit or team)"
    } else {
        ""
    };
    Err(MappingError {
        field: field.to_string(),
        message: format!(
            "Freshteam has no employee field '{name}'{hint}; use a standard field such as official_email or first_name, or custom_field_values.<name> for a custom field"
        ),
    })
}

/// A member the source wants, before the manager is resolved to a destination id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredMember {
    pub member: Member,
    /// The manager's Employee ID, when the mapping manages the manager and one is set.
    pub manager_employee_id: Option<String>,
    /// Set for a leaver (`member.active` false).
    pub leaver_reason: Option<LeaverReason>,
}

/// Records mapped to members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappedSource {
    /// Valid members, one per Employee ID.
    pub members: Vec<DesiredMember>,
    /// One row per rejected record.
    pub errors: Vec<RecordError>,
    /// Employee IDs the source has but that could not be applied (shared by several
    /// records): their members stay as they are and are never leavers.
    pub ambiguous_ids: Vec<String>,
    /// Employee IDs of draft profiles: never provisioned, an existing member is left as
    /// it is (and is not a leaver).
    pub drafts: Vec<String>,
    /// Records read from the source.
    pub records: usize,
    /// Records `spec.scope.filter` put out of scope.
    pub out_of_scope: usize,
    /// Employee IDs out of scope that `whenOutOfScope: Ignore` leaves alone (also in
    /// [`Self::drafts`]: like a draft, never provisioned, never a leaver).
    pub ignored: Vec<String>,
}

/// A desired member, packed (see [`PackedMember`]): its manager slot holds the
/// manager's Employee ID, not yet resolved to a destination id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedDesired {
    pub member: PackedMember,
    pub leaver_reason: Option<LeaverReason>,
    /// Attributes whose value this run could not know (another employee's field, when
    /// that employee's record was not read): never compared, never written.
    pub unknown: Box<[Attr]>,
}

impl PackedDesired {
    pub fn new(d: &DesiredMember) -> Self {
        PackedDesired {
            member: PackedMember::with_manager(
                &d.member,
                d.manager_employee_id.as_deref(),
                [None, None],
                false,
            ),
            leaver_reason: d.leaver_reason,
            unknown: Box::default(),
        }
    }

    /// The manager's Employee ID, when the mapping manages the manager and one is set.
    pub fn manager_employee_id(&self) -> Option<&str> {
        self.member.field(Attr::Manager)
    }

    /// The member with its manager not yet resolved (`manager` empty).
    pub fn unpack(&self) -> DesiredMember {
        let mut member = self.member.unpack();
        let manager_employee_id = member.manager.take();
        DesiredMember {
            member,
            manager_employee_id,
            leaver_reason: self.leaver_reason,
        }
    }
}

/// [`MappedSource`] with its members packed: what a run holds while it plans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredSet {
    pub members: Vec<PackedDesired>,
    pub errors: Vec<RecordError>,
    pub ambiguous_ids: Vec<String>,
    pub drafts: Vec<String>,
    pub records: usize,
    pub out_of_scope: usize,
    pub ignored: Vec<String>,
}

impl From<&MappedSource> for DesiredSet {
    fn from(m: &MappedSource) -> Self {
        DesiredSet {
            members: m.members.iter().map(PackedDesired::new).collect(),
            errors: m.errors.clone(),
            ambiguous_ids: m.ambiguous_ids.clone(),
            drafts: m.drafts.clone(),
            records: m.records,
            out_of_scope: m.out_of_scope,
            ignored: m.ignored.clone(),
        }
    }
}

impl DesiredSet {
    pub fn into_mapped(self) -> MappedSource {
        MappedSource {
            members: self.members.iter().map(PackedDesired::unpack).collect(),
            errors: self.errors,
            ambiguous_ids: self.ambiguous_ids,
            drafts: self.drafts,
            records: self.records,
            out_of_scope: self.out_of_scope,
            ignored: self.ignored,
        }
    }
}

/// Turns source records into desired members. Never fails: a bad record is an error
/// row.
pub fn map_records(snapshot: &SourceSnapshot, mapping: &CompiledMapping) -> MappedSource {
    let mut mapper = Mapper::new(mapping, snapshot.lookups.clone());
    mapper.lookup_fields = snapshot.lookup_fields.clone();
    for rec in &snapshot.employees {
        mapper.add(rec);
    }
    mapper.finish().into_mapped()
}

impl crate::source::RecordSink for Mapper<'_> {
    fn lookups(&mut self, lookups: HashMap<LookupKind, HashMap<i64, String>>) {
        self.lookups = lookups;
    }
    fn lookup_fields(&mut self, fields: LookupFields) {
        self.lookup_fields = fields;
    }
    fn record(&mut self, record: EmployeeRecord) {
        self.add(&record);
    }
    fn referenced(&mut self, record: EmployeeRecord) {
        self.remember(&record);
    }
}

fn value(rec: &EmployeeRecord, i: usize) -> Option<String> {
    rec.values
        .get(i)
        .and_then(|v| v.as_deref())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Maps records one at a time as they are read ([`Mapper::add`]), then settles what
/// needs them all ([`Mapper::finish`]): managers, and identities shared by several
/// records.
pub struct Mapper<'m> {
    mapping: &'m CompiledMapping,
    lookups: HashMap<LookupKind, HashMap<i64, String>>,
    lookup_fields: LookupFields,
    /// Freshteam id → Employee ID, for managers (only kept when a manager is mapped).
    employee_ids: HashMap<i64, String>,
    maps_manager: bool,
    /// Only some employees are read (an incremental or a named read).
    partial: bool,
    /// Valid records with the Freshteam id of their manager, in the order added.
    candidates: Vec<(i64, Option<i64>, PackedDesired)>,
    /// Request indices of the fields taken from other employees' records, and those
    /// values of every record seen (only when such a path is mapped).
    person_slots: Vec<usize>,
    persons: HashMap<i64, Vec<Option<String>>>,
    /// Attributes of candidates that wait for another employee's record.
    pending: Vec<Pending>,
    out: DesiredSet,
}

impl<'m> Mapper<'m> {
    pub fn new(
        mapping: &'m CompiledMapping,
        lookups: HashMap<LookupKind, HashMap<i64, String>>,
    ) -> Self {
        let maps_manager = mapping
            .attrs
            .iter()
            .any(|(_, e)| matches!(e, Extract::Manager(_)));
        Mapper {
            mapping,
            lookups,
            lookup_fields: LookupFields::new(),
            employee_ids: HashMap::new(),
            maps_manager,
            partial: false,
            candidates: Vec::new(),
            person_slots: person_slots(mapping),
            persons: HashMap::new(),
            pending: Vec::new(),
            out: DesiredSet::default(),
        }
    }

    /// The records will be some employees only (an incremental or a named read): a
    /// manager whose record is not among them is unknown this run, not unset, so the
    /// link stays as it is until a read that sees them.
    pub fn partial(mut self) -> Self {
        self.partial = true;
        self
    }

    /// What another record may need of this one: its Employee ID (to name it as a
    /// manager) and the fields taken from it.
    fn remember(&mut self, rec: &EmployeeRecord) {
        if self.maps_manager {
            if let Some(e) = value(rec, self.mapping.employee_id) {
                self.employee_ids.insert(rec.id, e);
            }
        }
        if !self.person_slots.is_empty() {
            let values = self.person_slots.iter().map(|i| value(rec, *i)).collect();
            self.persons.insert(rec.id, values);
        }
    }

    /// Maps one record (records come in Freshteam id order, each once).
    pub fn add(&mut self, rec: &EmployeeRecord) {
        let mapping = self.mapping;
        self.out.records += 1;
        self.remember(rec);
        if rec.population == Population::Draft {
            if let Some(id) = value(rec, self.mapping.employee_id) {
                self.out.drafts.push(id);
            }
            return;
        }
        let mut member = Member {
            active: true,
            ..Member::default()
        };
        let mut manager = None;
        for (attr, extract) in &self.mapping.attrs {
            if let Extract::Manager(i) = extract {
                manager = value(rec, *i).and_then(|id| id.parse::<i64>().ok());
                continue;
            }
            member.set(*attr, self.extract(rec, extract));
        }
        if self.mapping.derive_display_name {
            member.display_name = match (member.first_name.as_deref(), member.last_name.as_deref())
            {
                (Some(first), Some(last)) => Some(format!("{first} {last}")),
                (Some(name), None) | (None, Some(name)) => Some(name.to_string()),
                (None, None) => None,
            };
        }
        let by_status = value(rec, self.mapping.status).is_some_and(|status| {
            mapping
                .leaver_statuses
                .contains(lowercase(&status).as_ref())
        });
        let leaver_reason = match rec.population {
            Population::Deleted => Some(LeaverReason::Deleted),
            Population::Terminated => Some(LeaverReason::Terminated),
            Population::Inactive if self.mapping.leaver_statuses.contains("inactive") => {
                Some(LeaverReason::Inactive)
            }
            _ if by_status => Some(LeaverReason::Inactive),
            _ => None,
        };
        let mut leaver_reason = leaver_reason;
        let pending = match self.extras(rec, &mut member, &mut leaver_reason) {
            Ok(pending) => pending,
            Err(Some(row)) => return self.out.errors.push(row),
            Err(None) => {
                if let Some(id) = value(rec, self.mapping.employee_id) {
                    self.out.ignored.push(id.clone());
                    self.out.drafts.push(id);
                }
                return;
            }
        };
        member.active = leaver_reason.is_none();
        // The record is dropped on every error path: its e-mail moves into the row.
        let Some(employee_id) = value(rec, self.mapping.employee_id) else {
            let email = std::mem::take(&mut member.email);
            self.out.errors.push(RecordError {
                    employee_id: None,
                    email: (!email.is_empty()).then_some(email),
                    field: Some("employeeId".into()),
                    severity: Severity::Error,
                    message: format!(
                        "no Employee ID: Freshteam record {} has an empty {}; set the Employee ID in Freshteam",
                        rec.id,
                        self.mapping.request.fields[self.mapping.employee_id]
                    ),
                });
            return;
        };
        let email_field = &mapping.email_field;
        if member.email.is_empty() {
            self.out.errors.push(RecordError {
                employee_id: Some(employee_id),
                email: None,
                field: Some("email".into()),
                severity: Severity::Error,
                message: format!(
                    "no e-mail: {email_field} is empty; every member needs an e-mail address"
                ),
            });
            return;
        }
        if let Err(why) = check_email(&member.email) {
            let email = std::mem::take(&mut member.email);
            let message = format!("invalid e-mail '{email}' in {email_field}: {why}");
            self.out.errors.push(RecordError {
                employee_id: Some(employee_id),
                email: Some(email),
                field: Some("email".into()),
                severity: Severity::Error,
                message,
            });
            return;
        }
        member.employee_id = employee_id;
        self.candidates.push((
            rec.id,
            manager,
            PackedDesired {
                member: PackedMember::new(&member, [None, None], false),
                leaver_reason,
                unknown: Box::default(),
            },
        ));
        let at = self.candidates.len() - 1;
        self.pending.extend(
            pending
                .into_iter()
                .map(|(attr, person, slot, default)| Pending {
                    at,
                    attr,
                    person,
                    slot,
                    default,
                }),
        );
    }

    /// A fixed field's or an attribute's value from the record.
    fn extract(&self, rec: &EmployeeRecord, extract: &Extract) -> Option<String> {
        let lookup_id = |i: usize| value(rec, i).and_then(|id| id.parse::<i64>().ok());
        match extract {
            Extract::Value(i) => value(rec, *i),
            Extract::Lookup(kind, i) => self.lookups.get(kind)?.get(&lookup_id(*i)?).cloned(),
            Extract::LookupField(kind, i, field) => self
                .lookup_fields
                .get(&(*kind, field.clone()))?
                .get(&lookup_id(*i)?)
                .cloned(),
            Extract::Custom(i) => value(rec, *i).and_then(|v| dropdown_value(&v)),
            Extract::Constant(v) => Some(v.clone()).filter(|v| !v.is_empty()),
            Extract::Manager(_) | Extract::Expression(_) | Extract::Person(..) => None,
        }
    }

    /// Applies `spec.scope` and `spec.mapping.attributes[]` to a mapped record. `Err`
    /// drops the record: with its error row, or `None` when it is out of scope and
    /// `whenOutOfScope: Ignore` leaves its member alone.
    fn extras(
        &mut self,
        rec: &EmployeeRecord,
        member: &mut Member,
        leaver_reason: &mut Option<LeaverReason>,
    ) -> Result<Vec<PendingValue>, Option<RecordError>> {
        let mapping = self.mapping;
        let mut pending = Vec::new();
        if !mapping.cel_input.used && mapping.extras.is_empty() {
            return Ok(pending);
        }
        let email = (!member.email.is_empty()).then(|| member.email.clone());
        let row = |field: &str, message: String| {
            Some(RecordError {
                employee_id: value(rec, mapping.employee_id),
                email: email.clone(),
                field: Some(field.to_string()),
                severity: Severity::Error,
                message,
            })
        };
        // One context per record for the scope and every expression.
        let employee = mapping.cel_input.used.then(|| {
            cel::context(&extra::employee(
                &mapping.cel_input,
                rec,
                &self.lookups,
                &self.lookup_fields,
            ))
        });
        if let (Some(scope), Some(employee)) = (&mapping.scope, &employee) {
            let inside = extra::in_scope(scope, employee)
                .map_err(|e| row("scope", format!("spec.scope.filter: {}", e.message())))?;
            if !inside {
                self.out.out_of_scope += 1;
                // A leaver by status stays one, whatever the scope says.
                match scope.when_out {
                    WhenOutOfScope::Ignore if leaver_reason.is_none() => return Err(None),
                    WhenOutOfScope::Ignore => {}
                    WhenOutOfScope::Deactivate => {
                        leaver_reason.get_or_insert(LeaverReason::OutOfScope);
                    }
                }
            }
        }
        for x in &mapping.extras {
            if let Extract::Person(id, slot) = &x.extract {
                let person = value(rec, *id).and_then(|v| v.parse::<i64>().ok());
                pending.push((x.attr, person, *slot, x.default.clone()));
                continue;
            }
            let v = match (&x.extract, &employee) {
                (Extract::Expression(cel), Some(e)) => {
                    cel.eval_in(e, cel::Want::Text).map_err(|err| {
                        row(
                            x.attr.display_name(),
                            format!("{}.expression: {}", x.path, err.message()),
                        )
                    })?
                }
                (other, _) => self.extract(rec, other),
            };
            member.set(x.attr, v.or_else(|| x.default.clone()));
        }
        Ok(pending)
    }

    /// Every record added: the desired members.
    pub fn finish(self) -> DesiredSet {
        let Mapper {
            employee_ids,
            mut candidates,
            mut out,
            person_slots,
            persons,
            pending,
            partial,
            ..
        } = self;
        resolve_persons(&mut candidates, pending, &persons, &person_slots);
        drop(persons);
        // Managers resolve now that every record has been seen.
        for (_, manager, d) in candidates.iter_mut() {
            match manager.map(|id| employee_ids.get(&id)) {
                Some(Some(employee_id)) => {
                    let member = d.member.unpack();
                    d.member =
                        PackedMember::with_manager(&member, Some(employee_id), [None, None], false);
                }
                Some(None) if partial => mark_unknown(d, Attr::Manager),
                _ => {}
            }
        }
        drop(employee_ids);

        // An identity shared by several records is never guessed.
        // Sized up front: growing re-hashes every key, and hashing is much of the cost here.
        let mut by_id: HashMap<&str, Vec<i64>> = HashMap::with_capacity(candidates.len());
        let mut by_email: HashMap<Cow<str>, Vec<&str>> = HashMap::with_capacity(candidates.len());
        for (source_id, _, d) in &candidates {
            by_id
                .entry(d.member.employee_id())
                .or_default()
                .push(*source_id);
            if d.member.active() {
                by_email
                    .entry(lowercase(d.member.email()))
                    .or_default()
                    .push(d.member.employee_id());
            }
        }
        let mut ambiguous: HashSet<String> = HashSet::new();
        let mut rows = Vec::new();
        for (_, _, d) in &candidates {
            let (employee_id, email) = (d.member.employee_id(), d.member.email());
            if let Some(ids) = by_id.get(employee_id).filter(|ids| ids.len() > 1) {
                let list: Vec<String> = ids.iter().map(i64::to_string).collect();
                rows.push(RecordError {
                    employee_id: Some(employee_id.to_string()),
                    email: Some(email.to_string()),
                    field: Some("employeeId".into()),
                    severity: Severity::Error,
                    message: format!(
                        "Employee ID {} is shared by {} Freshteam records (ids {}); none of them was applied: give each employee a unique Employee ID",
                        employee_id,
                        ids.len(),
                        list.join(", ")
                    ),
                });
                ambiguous.insert(employee_id.to_string());
                continue;
            }
            if let Some(ids) = by_email
                .get(&lowercase(email))
                .filter(|ids| d.member.active() && ids.len() > 1)
            {
                let others: Vec<&str> = ids.iter().copied().filter(|i| *i != employee_id).collect();
                rows.push(RecordError {
                    employee_id: Some(employee_id.to_string()),
                    email: Some(email.to_string()),
                    field: Some("email".into()),
                    severity: Severity::Error,
                    message: format!(
                        "e-mail {} is shared with Employee ID {}; none of them was applied: give each employee their own e-mail",
                        email,
                        others.join(", ")
                    ),
                });
                ambiguous.insert(employee_id.to_string());
            }
        }
        drop(by_id);
        drop(by_email);
        out.errors.extend(rows);
        candidates.retain(|(_, _, d)| !ambiguous.contains(d.member.employee_id()));
        out.members = candidates.into_iter().map(|(_, _, d)| d).collect();
        out.members.shrink_to_fit();
        let mut ambiguous: Vec<String> = ambiguous.into_iter().collect();
        ambiguous.sort();
        out.ambiguous_ids = ambiguous;
        out
    }
}

/// An attribute taken from another employee's record: (target, their Freshteam id,
/// request index of the field, default).
type PendingValue = (Attr, Option<i64>, usize, Option<String>);

/// A [`PendingValue`] of the candidate at `at`.
struct Pending {
    at: usize,
    attr: Attr,
    person: Option<i64>,
    slot: usize,
    default: Option<String>,
}

/// The request indices [`Extract::Person`] paths read from other employees' records.
fn person_slots(mapping: &CompiledMapping) -> Vec<usize> {
    let mut slots: Vec<usize> = mapping
        .extras
        .iter()
        .filter_map(|x| match x.extract {
            Extract::Person(_, slot) => Some(slot),
            _ => None,
        })
        .collect();
    slots.sort_unstable();
    slots.dedup();
    slots
}

/// Sets the attributes that come from another employee's record, now that every record
/// has been seen. Someone named whose record was not read (an incremental run reads only
/// the changed) leaves the attribute unknown: not compared this run.
fn resolve_persons(
    candidates: &mut [(i64, Option<i64>, PackedDesired)],
    pending: Vec<Pending>,
    persons: &HashMap<i64, Vec<Option<String>>>,
    slots: &[usize],
) {
    for p in pending {
        let d = &mut candidates[p.at].2;
        let value = match p.person {
            None => None,
            Some(id) => match persons.get(&id) {
                Some(values) => slots
                    .iter()
                    .position(|s| *s == p.slot)
                    .and_then(|i| values[i].clone()),
                None => {
                    mark_unknown(d, p.attr);
                    continue;
                }
            },
        };
        let mut member = d.member.unpack();
        member.set(p.attr, value.or(p.default));
        d.member = PackedMember::new(&member, [None, None], false);
    }
}

/// `attr` of `d` is not known this run: not compared.
fn mark_unknown(d: &mut PackedDesired, attr: Attr) {
    let mut unknown = d.unknown.to_vec();
    unknown.push(attr);
    d.unknown = unknown.into_boxed_slice();
}

/// A custom field's value: a dropdown (`{id, value}`) gives its `value`.
fn dropdown_value(text: &str) -> Option<String> {
    if !text.starts_with('{') {
        return Some(text.to_string());
    }
    match serde_json::from_str::<serde_json::Value>(text)
        .ok()?
        .get("value")?
    {
        serde_json::Value::String(s) => Some(s.clone()).filter(|s| !s.trim().is_empty()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// `text.to_lowercase()`, without an allocation when it is lower case already (e-mail
/// addresses usually are).
pub(crate) fn lowercase(text: &str) -> Cow<'_, str> {
    if text
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
    {
        Cow::Owned(text.to_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

/// A pragmatic address check: what a SCIM service and a mail relay will accept.
pub fn check_email(email: &str) -> Result<(), &'static str> {
    if email.len() > 254 {
        return Err("longer than 254 characters");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains white space");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err("has no @");
    };
    if domain.contains('@') {
        return Err("has more than one @");
    }
    if local.is_empty() || local.len() > 64 {
        return Err("the part before @ is empty or too long");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("the part before @ has a misplaced dot");
    }
    if domain.is_empty() || !domain.contains('.') {
        return Err("the domain has no dot");
    }
    let labels_ok = domain.split('.').all(|l| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    if !labels_ok {
        return Err("the domain is not a valid host name");
    }
    Ok(())
}
