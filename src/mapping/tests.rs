use std::collections::HashMap;

use super::*;
use crate::api::AttributeMapping;
use crate::source::{EmployeeRecord, SourceSnapshot};

fn spec() -> MappingSpec {
    MappingSpec::default()
}

fn compile(m: &MappingSpec) -> CompiledMapping {
    CompiledMapping::compile(m, &LeaversSpec::default()).unwrap()
}

/// Builds a snapshot from records given as field → value pairs.
/// The population the client would put a record in, from its own fields.
fn population_of(fields: &[(&str, &str)]) -> crate::source::Population {
    use crate::source::Population;
    let get = |k: &str| fields.iter().find(|(f, _)| *f == k).map(|(_, v)| *v);
    if get("deleted") == Some("true") {
        Population::Deleted
    } else if get("terminated") == Some("true") {
        Population::Terminated
    } else if get("status") == Some("inactive") {
        Population::Inactive
    } else if get("draft") == Some("true") {
        Population::Draft
    } else {
        Population::Active
    }
}

fn snapshot(mapping: &CompiledMapping, records: &[(i64, &[(&str, &str)])]) -> SourceSnapshot {
    let employees = records
        .iter()
        .map(|(id, fields)| EmployeeRecord {
            id: *id,
            population: population_of(fields),
            values: mapping
                .request
                .fields
                .iter()
                .map(|f| {
                    fields
                        .iter()
                        .find(|(k, _)| k == f)
                        .map(|(_, v)| v.to_string())
                })
                .collect(),
        })
        .collect();
    let mut departments = HashMap::new();
    departments.insert(7, "Engineering".to_string());
    let mut lookups = HashMap::new();
    lookups.insert(LookupKind::Departments, departments);
    SourceSnapshot {
        employees,
        lookup_fields: Default::default(),
        lookups,
        stats: Default::default(),
    }
}

fn ada() -> Vec<(&'static str, &'static str)> {
    vec![
        ("employee_id", "E-1"),
        ("official_email", "ada@acme.example"),
        ("first_name", "Ada"),
        ("last_name", "Lovelace"),
        ("designation", "Engineer"),
        ("department_id", "7"),
        ("status", "active"),
    ]
}

#[test]
fn default_mapping_requests_list_fields_and_the_department_lookup_only() {
    let m = compile(&spec());
    assert!(!m.request.needs_detail);
    assert_eq!(m.request.lookups, vec![LookupKind::Departments]);
    for f in [
        "employee_id",
        "status",
        "official_email",
        "first_name",
        "last_name",
        "designation",
        "department_id",
    ] {
        assert!(m.request.fields.iter().any(|x| x == f), "{f} requested");
    }
    assert!(!m.request.fields.iter().any(|x| x == "department"));
}

#[test]
fn custom_and_personal_fields_need_the_detail_call() {
    let mut s = spec();
    s.employee_number = Some("custom_field_values.payroll_no".into());
    assert!(compile(&s).request.needs_detail);
    let mut s = spec();
    s.email = Some("personal_email".into());
    assert!(compile(&s).request.needs_detail);
}

#[test]
fn mapping_without_email_is_rejected_naming_the_field() {
    for email in [None, Some(""), Some("  ")] {
        let mut s = spec();
        s.email = email.map(str::to_string);
        let e = CompiledMapping::compile(&s, &LeaversSpec::default()).unwrap_err();
        assert_eq!(e.field, "spec.mapping.email");
        assert!(e.message.contains("required"), "{e}");
    }
}

#[test]
fn unknown_freshteam_field_is_rejected_naming_the_member_field() {
    let mut s = spec();
    s.job_title = Some("desgination".into());
    let e = CompiledMapping::compile(&s, &LeaversSpec::default()).unwrap_err();
    assert_eq!(e.field, "spec.mapping.jobTitle");
    assert!(e.message.contains("no employee field 'desgination'"), "{e}");
    let mut s = spec();
    s.employee_id = "".into();
    assert_eq!(
        CompiledMapping::compile(&s, &LeaversSpec::default())
            .unwrap_err()
            .field,
        "spec.mapping.employeeId"
    );
    let mut s = spec();
    s.manager = Some("first_name".into());
    assert_eq!(
        CompiledMapping::compile(&s, &LeaversSpec::default())
            .unwrap_err()
            .field,
        "spec.mapping.manager"
    );
}

#[test]
fn leaver_statuses_cannot_include_active() {
    let l = LeaversSpec {
        statuses: vec!["inactive".into(), "Active".into()],
        ..LeaversSpec::default()
    };
    let e = CompiledMapping::compile(&spec(), &l).unwrap_err();
    assert_eq!(e.field, "spec.leavers.statuses");
}

#[test]
fn maps_a_record_with_lookup_and_derived_display_name() {
    let m = compile(&spec());
    let out = map_records(&snapshot(&m, &[(1, &ada())]), &m);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.records, 1);
    let member = &out.members[0].member;
    assert_eq!(
        member,
        &Member {
            employee_id: "E-1".into(),
            email: "ada@acme.example".into(),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            display_name: Some("Ada Lovelace".into()),
            job_title: Some("Engineer".into()),
            department: Some("Engineering".into()),
            employee_number: None,
            manager: None,
            extra: Vec::new(),
            active: true,
        }
    );
    assert!(m.managed.contains(Attr::DisplayName));
    assert!(!m.managed.contains(Attr::EmployeeNumber));
}

#[test]
fn unknown_department_id_leaves_the_department_empty() {
    let m = compile(&spec());
    let mut rec = ada();
    rec.retain(|(k, _)| *k != "department_id");
    rec.push(("department_id", "99"));
    let out = map_records(&snapshot(&m, &[(1, &rec)]), &m);
    assert_eq!(out.members[0].member.department, None);
}

#[test]
fn values_are_trimmed_and_blank_is_absent() {
    let m = compile(&spec());
    let rec = [
        ("employee_id", "  E-1 "),
        ("official_email", " ada@acme.example "),
        ("first_name", "  "),
        ("status", "active"),
    ];
    let out = map_records(&snapshot(&m, &[(1, &rec)]), &m);
    let member = &out.members[0].member;
    assert_eq!(member.employee_id, "E-1");
    assert_eq!(member.email, "ada@acme.example");
    assert_eq!(member.first_name, None);
    assert_eq!(member.display_name, None);
}

#[test]
fn leaver_statuses_are_configurable_and_case_insensitive() {
    let m = CompiledMapping::compile(
        &spec(),
        &LeaversSpec {
            statuses: vec!["inactive".into(), "on_notice".into()],
            ..LeaversSpec::default()
        },
    )
    .unwrap();
    let mut a = ada();
    a.retain(|(k, _)| *k != "status");
    let mut inactive = a.clone();
    inactive.push(("status", "INACTIVE"));
    let mut notice = a.clone();
    notice.push(("status", "on_notice"));
    notice.retain(|(k, _)| *k != "employee_id" && *k != "official_email");
    notice.push(("employee_id", "E-2"));
    notice.push(("official_email", "b@acme.example"));
    let out = map_records(&snapshot(&m, &[(1, &inactive), (2, &notice)]), &m);
    assert!(out.members.iter().all(|d| !d.member.active));
}

#[test]
fn missing_employee_id_is_an_error_row_not_a_failure() {
    let m = compile(&spec());
    let mut rec = ada();
    rec.retain(|(k, _)| *k != "employee_id");
    let mut other = ada();
    other[0] = ("employee_id", "E-2");
    other[1] = ("official_email", "b@acme.example");
    let out = map_records(&snapshot(&m, &[(1, &rec), (2, &other)]), &m);
    assert_eq!(out.members.len(), 1);
    assert_eq!(out.errors.len(), 1);
    let e = &out.errors[0];
    assert_eq!(e.employee_id, None);
    assert_eq!(e.email.as_deref(), Some("ada@acme.example"));
    assert_eq!(e.field.as_deref(), Some("employeeId"));
    assert!(e.message.starts_with("no Employee ID"), "{}", e.message);
}

#[test]
fn missing_and_invalid_email_are_error_rows() {
    let m = compile(&spec());
    let mut none = ada();
    none.retain(|(k, _)| *k != "official_email");
    let mut bad = ada();
    bad[0] = ("employee_id", "E-2");
    bad[1] = ("official_email", "ada.acme.example");
    let out = map_records(&snapshot(&m, &[(1, &none), (2, &bad)]), &m);
    assert!(out.members.is_empty());
    assert_eq!(out.errors.len(), 2);
    assert!(out.errors[0]
        .message
        .starts_with("no e-mail: official_email is empty"));
    assert_eq!(out.errors[1].employee_id.as_deref(), Some("E-2"));
    assert!(out.errors[1]
        .message
        .contains("invalid e-mail 'ada.acme.example'"));
    assert!(out
        .errors
        .iter()
        .all(|e| e.field.as_deref() == Some("email")));
}

#[test]
fn shared_employee_id_rejects_every_record_with_it() {
    let m = compile(&spec());
    let a = ada();
    let mut b = ada();
    b[1] = ("official_email", "twin@acme.example");
    let mut c = ada();
    c[0] = ("employee_id", "E-3");
    c[1] = ("official_email", "c@acme.example");
    let out = map_records(&snapshot(&m, &[(1, &a), (2, &b), (3, &c)]), &m);
    assert_eq!(out.members.len(), 1);
    assert_eq!(out.members[0].member.employee_id, "E-3");
    assert_eq!(out.errors.len(), 2);
    assert!(out
        .errors
        .iter()
        .all(|e| e.employee_id.as_deref() == Some("E-1")));
    assert!(out.errors[0]
        .message
        .contains("shared by 2 Freshteam records (ids 1, 2)"));
    assert_eq!(out.ambiguous_ids, vec!["E-1".to_string()]);
}

#[test]
fn shared_email_between_active_employees_rejects_both() {
    let m = compile(&spec());
    let a = ada();
    let mut b = ada();
    b[0] = ("employee_id", "E-2");
    b[1] = ("official_email", "ADA@acme.example");
    let out = map_records(&snapshot(&m, &[(1, &a), (2, &b)]), &m);
    assert!(out.members.is_empty());
    assert_eq!(out.errors.len(), 2);
    assert!(out.errors[0]
        .message
        .contains("shared with Employee ID E-2"));
    assert_eq!(
        out.ambiguous_ids,
        vec!["E-1".to_string(), "E-2".to_string()]
    );
}

#[test]
fn a_rehire_may_share_the_email_of_their_inactive_record() {
    let m = compile(&spec());
    let mut old = ada();
    old[6] = ("status", "inactive");
    let mut new = ada();
    new[0] = ("employee_id", "E-9");
    let out = map_records(&snapshot(&m, &[(1, &old), (2, &new)]), &m);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.members.len(), 2);
}

#[test]
fn manager_resolves_to_the_managers_employee_id() {
    let mut s = spec();
    s.manager = Some("reporting_to".into());
    let m = compile(&s);
    let boss = [
        ("employee_id", "E-1"),
        ("official_email", "boss@acme.example"),
        ("status", "active"),
    ];
    let report = [
        ("employee_id", "E-2"),
        ("official_email", "dev@acme.example"),
        ("status", "active"),
        ("reporting_to_id", "100"),
    ];
    let orphan = [
        ("employee_id", "E-3"),
        ("official_email", "o@acme.example"),
        ("status", "active"),
        ("reporting_to_id", "999"),
    ];
    let out = map_records(
        &snapshot(&m, &[(100, &boss), (101, &report), (102, &orphan)]),
        &m,
    );
    let by: HashMap<_, _> = out
        .members
        .iter()
        .map(|d| (d.member.employee_id.as_str(), d.manager_employee_id.clone()))
        .collect();
    assert_eq!(by["E-1"], None);
    assert_eq!(by["E-2"].as_deref(), Some("E-1"));
    assert_eq!(by["E-3"], None);
}

#[test]
fn email_check() {
    for ok in [
        "a@b.co",
        "first.last+tag@sub.example.org",
        "o'neil@acme.example",
    ] {
        assert!(check_email(ok).is_ok(), "{ok}");
    }
    for bad in [
        "", "a", "a@b", "@b.co", "a@@b.co", "a@b@c.co", "a b@c.co", "a@b..co", ".a@b.co",
        "a.@b.co", "a@-b.co",
    ] {
        assert!(check_email(bad).is_err(), "{bad}");
    }
}

fn attribute(target: &str, source: (&str, &str), default: Option<&str>) -> AttributeMapping {
    let mut a = AttributeMapping {
        target: target.into(),
        default: default.map(str::to_string),
        ..AttributeMapping::default()
    };
    match source.0 {
        "from" => a.from = Some(source.1.into()),
        "value" => a.value = Some(source.1.into()),
        _ => a.expression = Some(source.1.into()),
    }
    a
}

const COST: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter";

#[test]
fn attributes_take_custom_fields_dropdowns_lookup_fields_constants_and_defaults() {
    let mut m = spec();
    m.attributes = vec![
        attribute(COST, ("from", "custom_field_values.cost_center"), None),
        attribute(
            "addresses[type eq \"work\"].region",
            ("from", "custom_field_values.work_location"),
            None,
        ),
        attribute(
            "addresses[type eq \"work\"].locality",
            ("from", "department.city"),
            Some("Nowhere"),
        ),
        attribute("userType", ("value", "Employee"), None),
        attribute("nickName", ("from", "middle_name"), Some("none")),
    ];
    let c = compile(&m);
    assert!(
        c.request.needs_detail,
        "custom fields are in the detail record"
    );
    assert_eq!(
        c.request.lookup_fields,
        vec![(LookupKind::Departments, "city".to_string())]
    );
    let mut fields = ada();
    fields.push(("custom_field_values.cost_center", "CC-7"));
    fields.push((
        "custom_field_values.work_location",
        r#"{"id":801,"value":"Office"}"#,
    ));
    let mut snap = snapshot(&c, &[(1, &fields)]);
    snap.lookup_fields.insert(
        (LookupKind::Departments, "city".into()),
        HashMap::from([(7, "Oslo".to_string())]),
    );
    let mapped = map_records(&snap, &c);
    assert!(mapped.errors.is_empty(), "{:?}", mapped.errors);
    let member = &mapped.members[0].member;
    let get = |t: &str| member.get(Attr::Extra(crate::member::target::intern(t)));
    assert_eq!(get(COST), Some("CC-7"));
    assert_eq!(get("addresses[type eq \"work\"].region"), Some("Office"));
    assert_eq!(get("addresses[type eq \"work\"].locality"), Some("Oslo"));
    assert_eq!(get("userType"), Some("Employee"));
    assert_eq!(
        get("nickName"),
        Some("none"),
        "the default for an empty field"
    );

    // Without the looked-up field the default is written.
    snap.lookup_fields.clear();
    let mapped = map_records(&snap, &c);
    assert_eq!(
        mapped.members[0]
            .member
            .get(Attr::Extra(crate::member::target::intern(
                "addresses[type eq \"work\"].locality"
            ))),
        Some("Nowhere")
    );
}

#[test]
fn bad_attributes_name_their_path() {
    let refused = |a: Vec<AttributeMapping>| {
        let mut m = spec();
        m.attributes = a;
        CompiledMapping::compile(&m, &LeaversSpec::default()).unwrap_err()
    };
    let e = refused(vec![attribute("costCentre", ("value", "x"), None)]);
    assert_eq!(e.field, "spec.mapping.attributes[0].target");
    let mut two = attribute("nickName", ("value", "x"), None);
    two.expression = Some("employee.first_name".into());
    let e = refused(vec![two]);
    assert_eq!(e.field, "spec.mapping.attributes[0]");
    assert!(
        e.message.contains("has value and expression"),
        "{}",
        e.message
    );
    let e = refused(vec![
        attribute("nickName", ("value", "x"), None),
        attribute("NICKNAME", ("value", "y"), None),
    ]);
    assert_eq!(e.field, "spec.mapping.attributes[1].target");
    let e = refused(vec![attribute(
        "nickName",
        ("from", "reporting_to.shoe_size"),
        None,
    )]);
    assert_eq!(e.field, "spec.mapping.attributes[0].from");
    let e = refused(vec![attribute(
        "nickName",
        ("expression", "employee.shoe_size"),
        None,
    )]);
    assert_eq!(e.field, "spec.mapping.attributes[0].expression");
    assert!(e.message.contains("'shoe_size'"), "{}", e.message);
}

#[test]
fn the_scope_deactivates_or_ignores_and_a_failing_filter_is_the_records_error() {
    let scoped = |when: WhenOutOfScope, filter: &str| {
        compile(&spec())
            .with_scope(Some(&ScopeSpec {
                filter: Some(filter.into()),
                when_out_of_scope: when,
            }))
            .unwrap()
    };
    let mut contractor = ada();
    contractor.push(("employee_type", "contractor"));
    let filter = r#"employee.employee_type != "contractor""#;

    let c = scoped(WhenOutOfScope::Deactivate, filter);
    let mapped = map_records(&snapshot(&c, &[(1, &contractor)]), &c);
    assert_eq!(mapped.out_of_scope, 1);
    assert_eq!(
        mapped.members[0].leaver_reason,
        Some(LeaverReason::OutOfScope)
    );
    assert!(!mapped.members[0].member.active);

    let c = scoped(WhenOutOfScope::Ignore, filter);
    let mapped = map_records(&snapshot(&c, &[(1, &contractor)]), &c);
    assert!(mapped.members.is_empty());
    assert_eq!(mapped.drafts, vec!["E-1".to_string()], "left as it is");

    // A leaver by status stays one under Ignore.
    let mut terminated = contractor.clone();
    terminated.push(("terminated", "true"));
    let mapped = map_records(&snapshot(&c, &[(1, &terminated)]), &c);
    assert_eq!(
        mapped.members[0].leaver_reason,
        Some(LeaverReason::Terminated)
    );

    let c = scoped(
        WhenOutOfScope::Deactivate,
        "employee.employee_type.size() > 3",
    );
    let mapped = map_records(&snapshot(&c, &[(1, &ada())]), &c);
    assert!(mapped.members.is_empty());
    assert_eq!(mapped.errors[0].field.as_deref(), Some("scope"));
    assert!(
        mapped.errors[0].message.starts_with("spec.scope.filter: "),
        "{}",
        mapped.errors[0].message
    );
}

#[test]
fn a_persons_field_comes_from_their_record_and_is_unknown_when_it_was_not_read() {
    let mut m = spec();
    m.attributes = vec![
        attribute("nickName", ("from", "reporting_to.first_name"), None),
        attribute(
            "entitlements[type eq \"manager\"].value",
            ("from", "reporting_to"),
            Some("nobody"),
        ),
    ];
    let c = compile(&m);
    let nick = Attr::Extra(crate::member::target::intern("nickName"));
    let boss = Attr::Extra(crate::member::target::intern(
        "entitlements[type eq \"manager\"].value",
    ));
    let mut grace = vec![
        ("employee_id", "E-2"),
        ("official_email", "grace@acme.example"),
        ("first_name", "Grace"),
        ("status", "active"),
    ];
    let mut ada = ada();
    ada.push(("reporting_to_id", "2"));
    // The manager comes after the report: resolved once every record is seen.
    let mapped = map_records(&snapshot(&c, &[(1, &ada), (2, &grace)]), &c);
    let first = &mapped.members[0].member;
    assert_eq!(first.get(nick), Some("Grace"));
    assert_eq!(first.get(boss), Some("E-2"));
    // No manager: the default.
    assert_eq!(mapped.members[1].member.get(boss), Some("nobody"));
    assert_eq!(mapped.members[1].member.get(nick), None);

    // The manager's record not read (an incremental run): unknown, never compared.
    let snap = snapshot(&c, &[(1, &ada)]);
    let mut mapper = Mapper::new(&c, snap.lookups.clone());
    for rec in &snap.employees {
        mapper.add(rec);
    }
    let set = mapper.finish();
    assert_eq!(set.members[0].unknown.as_ref(), &[nick, boss]);
    grace.clear();
}

#[test]
fn the_request_names_the_people_whose_records_the_mapping_reads() {
    assert!(compile(&spec()).request.people.is_empty());
    let mut s = spec();
    s.manager = Some("reporting_to".into());
    s.attributes = vec![
        attribute("nickName", ("from", "reporting_to.first_name"), None),
        attribute("userType", ("from", "hr_incharge"), None),
    ];
    assert_eq!(
        compile(&s).request.people,
        vec!["reporting_to_id".to_string(), "hr_incharge_id".to_string()]
    );
    // An expression over the whole record reads reporting_to_id, but nobody's record.
    let mut s = spec();
    s.attributes = vec![attribute(
        "nickName",
        ("expression", "string(employee)"),
        None,
    )];
    let c = compile(&s);
    assert!(c.request.fields.iter().any(|f| f == "reporting_to_id"));
    assert!(c.request.people.is_empty(), "{:?}", c.request);
}
