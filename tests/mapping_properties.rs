//! Property test of `spec.scope` through the public API (mapping, then the plan): for
//! random scopes and populations, no out-of-scope employee is ever created, a managed
//! member who is out of scope is a leaver "out of scope" (or, with `Ignore`, left
//! alone), and leavers never exceed the safety threshold without approval.

use freshteam_operator::api::{
    AttributeMapping, LeaversSpec, MappingSpec, ScopeSpec, WhenOutOfScope, WhenRemoved,
};
use freshteam_operator::destination::{DestinationMember, UpdateOp, WriteOp};
use freshteam_operator::mapping::{map_records, CompiledMapping};
use freshteam_operator::member::{LeaverReason, Member};
use freshteam_operator::plan::{plan, PlanOptions, PlanScope, WriteKind};
use freshteam_operator::source::{EmployeeRecord, Population, SourceSnapshot};
use proptest::prelude::*;
use proptest::test_runner::Config;

const TYPES: [&str; 4] = ["full_time", "part_time", "contractor", "intern"];
const NAMES: [&str; 3] = ["Ada", "Grace", "Alan"];

/// A filter and the same decision written in Rust.
type Filter = (&'static str, fn(&Employee) -> bool);

const FILTERS: [Filter; 6] = [
    (r#"employee.employee_type != "contractor""#, |e| {
        e.kind != "contractor"
    }),
    (r#"employee.employee_type == "full_time""#, |e| {
        e.kind == "full_time"
    }),
    (
        r#"employee.employee_type in ["full_time", "intern"]"#,
        |e| matches!(e.kind, "full_time" | "intern"),
    ),
    (r#"employee.first_name.startsWith("A")"#, |e| {
        e.first_name.starts_with('A')
    }),
    ("true", |_| true),
    ("false", |_| false),
];

#[derive(Clone, Debug)]
struct Employee {
    kind: &'static str,
    first_name: &'static str,
    inactive: bool,
    /// An account exists for this employee, active or not.
    account: Option<bool>,
}

fn employee() -> impl Strategy<Value = Employee> {
    (
        prop::sample::select(&TYPES[..]),
        prop::sample::select(&NAMES[..]),
        prop::bool::weighted(0.1),
        prop::option::of(prop::bool::weighted(0.9)),
    )
        .prop_map(|(kind, first_name, inactive, account)| Employee {
            kind,
            first_name,
            inactive,
            account,
        })
}

fn id(i: usize) -> String {
    format!("E{i}")
}

fn email(i: usize) -> String {
    format!("e{i}@acme.example")
}

fn snapshot(mapping: &CompiledMapping, employees: &[Employee]) -> SourceSnapshot {
    let employees = employees
        .iter()
        .enumerate()
        .map(|(i, e)| EmployeeRecord {
            id: 1000 + i as i64,
            values: mapping
                .request
                .fields
                .iter()
                .map(|f| match f.as_str() {
                    "employee_id" => Some(id(i)),
                    "official_email" => Some(email(i)),
                    "first_name" => Some(e.first_name.to_string()),
                    "employee_type" => Some(e.kind.to_string()),
                    "status" => Some(if e.inactive { "inactive" } else { "active" }.into()),
                    _ => None,
                })
                .collect(),
            population: if e.inactive {
                Population::Inactive
            } else {
                Population::Active
            },
        })
        .collect();
    SourceSnapshot {
        employees,
        ..SourceSnapshot::default()
    }
}

fn destination(employees: &[Employee]) -> Vec<DestinationMember> {
    employees
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let active = e.account?;
            Some(DestinationMember {
                id: format!("acct-{i}"),
                version: None,
                member: Member {
                    employee_id: id(i),
                    email: email(i),
                    first_name: Some(e.first_name.to_string()),
                    active,
                    ..Member::default()
                },
                has_work_email: true,
            })
        })
        .collect()
}

proptest! {
    #![proptest_config(Config { cases: 400, failure_persistence: None, ..Config::default() })]

    #[test]
    fn out_of_scope_is_never_created_and_leavers_respect_the_threshold(
        employees in prop::collection::vec(employee(), 0..14),
        filter in 0usize..FILTERS.len(),
        ignore in any::<bool>(),
        max_percent in 0u32..=100,
    ) {
        let (source, decide) = FILTERS[filter];
        let when = if ignore { WhenOutOfScope::Ignore } else { WhenOutOfScope::Deactivate };
        let spec = MappingSpec {
            first_name: Some("first_name".into()),
            last_name: None,
            job_title: None,
            department: None,
            ..MappingSpec::default()
        };
        let scope = ScopeSpec { filter: Some(source.into()), when_out_of_scope: when };
        let mapping = CompiledMapping::compile(&spec, &LeaversSpec::default())
            .and_then(|m| m.with_scope(Some(&scope)))
            .unwrap();
        let mapped = map_records(&snapshot(&mapping, &employees), &mapping);
        let current = destination(&employees);
        let options = PlanOptions {
            managed: mapping.managed,
            max_leavers_percent: max_percent,
            approved_leavers: None,
            when_removed: WhenRemoved::Deactivate,
            scope: PlanScope::Everyone,
        };
        let p = plan(&mapped, &current, &options);
        let index = |employee_id: &str| -> usize { employee_id[1..].parse().unwrap() };

        for w in &p.writes {
            match &w.op {
                WriteOp::Create { member } => {
                    let e = &employees[index(&member.employee_id)];
                    prop_assert!(decide(e), "created out of scope: {:?} under {}", e, source);
                }
                WriteOp::Update(UpdateOp { id, .. }) => {
                    let i: usize = id["acct-".len()..].parse().unwrap();
                    let e = &employees[i];
                    if ignore && !decide(e) && !e.inactive {
                        prop_assert!(false, "Ignore wrote to an out-of-scope member: {:?}", w);
                    }
                    if w.kind == WriteKind::Leaver && !e.inactive {
                        prop_assert!(!decide(e), "an in-scope member is a leaver: {:?}", e);
                        prop_assert_eq!(w.leaver_reason, Some(LeaverReason::OutOfScope));
                    }
                }
            }
        }

        // The threshold: without approval, more leavers than it allows are blocked.
        let leavers = p.count(WriteKind::Leaver);
        prop_assert!(
            leavers as u64 * 100 <= max_percent as u64 * p.active_managed as u64,
            "{} leavers of {} active managed at {}%", leavers, p.active_managed, max_percent
        );
        // Every active managed member out of scope is accounted for (a leaver, or held
        // back by the threshold) when the scope deactivates.
        if !ignore {
            let expected = employees
                .iter()
                .filter(|e| e.account == Some(true) && (e.inactive || !decide(e)))
                .count() as u32;
            let held = p.blocked.as_ref().map_or(0, |b| b.leavers);
            prop_assert_eq!(leavers + held, expected);
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: 2000, failure_persistence: None, ..Config::default() })]

    /// Arbitrary targets, paths, expressions and filters never panic, and every refusal
    /// names the path in the manifest.
    #[test]
    fn any_attribute_or_filter_is_compiled_or_refused_naming_its_path(
        target in ".{0,30}",
        from in ".{0,20}",
        expression in "[a-z_.()\\[\\]\"'+ 0-9=!?:&|<>-]{0,40}",
        filter in "(employee\\.)?[a-z_.()\"'+ 0-9=!?:&|<>-]{0,30}",
        use_from in any::<bool>(),
    ) {
        let attribute = AttributeMapping {
            target,
            from: use_from.then(|| from.clone()),
            expression: (!use_from).then(|| format!("employee.{expression}")),
            ..AttributeMapping::default()
        };
        let spec = MappingSpec { attributes: vec![attribute], ..MappingSpec::default() };
        let scope = ScopeSpec { filter: Some(filter), ..ScopeSpec::default() };
        let compiled = CompiledMapping::compile(&spec, &LeaversSpec::default())
            .and_then(|m| m.with_scope(Some(&scope)));
        if let Err(e) = compiled {
            prop_assert!(
                e.field.starts_with("spec.mapping.attributes[0]") || e.field == "spec.scope.filter",
                "{:?}", e
            );
            prop_assert!(!e.message.is_empty());
        }
    }
}
