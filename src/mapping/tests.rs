use std::collections::HashMap;

use super::*;
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
