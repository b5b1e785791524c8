//! Property tests through the public API:
//!
//! - manifests (structured mutations of a valid one, character-level mutations, garbage):
//!   parsing and validation never panic, and every rejection names the file or the
//!   `spec.` field;
//! - schedules and time zones: arbitrary text never panics, a rejection quotes it;
//! - mapping + planning on small random populations: the plan never exceeds the leaver
//!   threshold without approval, never touches an account the integration does not
//!   manage, never asks for a write the destination would refuse as a `userName` clash,
//!   applying it yields the desired state, and planning again yields nothing.
//!
//! Case counts are moderate so that the file runs in a few seconds in a debug build.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{TimeZone, Utc};
use freshteam_operator::api::{LeaversSpec, MappingSpec, WhenRemoved};
use freshteam_operator::destination::{DestinationMember, UpdateOp, WriteOp};
use freshteam_operator::manifest;
use freshteam_operator::mapping::{map_records, CompiledMapping, MappedSource};
use freshteam_operator::member::{Attr, Member};
use freshteam_operator::plan::{plan, plan_with_ledger, Plan, PlanOptions, PlanScope, WriteKind};
use freshteam_operator::schedule::{parse_time_zone, Schedule};
use freshteam_operator::source::{EmployeeRecord, LookupKind, Population, SourceSnapshot};
use freshteam_operator::validate::{validate_spec, EndpointPolicy};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use yaml_serde::{Mapping, Value};

const FILE: &str = "m.yaml";

/// `cases` per property; failures are reported with their minimal input, not persisted
/// into the source tree.
fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------- manifests

const SECRETS: &str = r#"apiVersion: v1
kind: Secret
metadata: {name: freshteam-acme, namespace: hr}
stringData: {apiKey: "ft-key-123"}
---
apiVersion: v1
kind: Secret
metadata: {name: members-scim, namespace: hr}
data: {token: c2NpbS10b2tlbg==}
---
"#;

const VALID: &str = r#"apiVersion: v1
kind: Secret
metadata: {name: freshteam-acme, namespace: hr}
stringData: {apiKey: "ft-key-123"}
---
apiVersion: v1
kind: Secret
metadata: {name: members-scim, namespace: hr}
data: {token: c2NpbS10b2tlbg==}
---
apiVersion: freshteam.provisioning.dev/v1alpha1
kind: FreshteamIntegration
metadata: {name: acme, namespace: hr}
spec:
  published: true
  schedule: "0 3 * * 1-5"
  timeZone: Europe/London
  source:
    subdomain: acme
    baseUrl: http://127.0.0.1:8081/api
    apiKeySecretRef: {name: freshteam-acme, key: apiKey}
  destination:
    scim:
      url: https://members.example.com/scim/v2
      tokenSecretRef: {name: members-scim, key: token}
  mapping:
    employeeId: employee_id
    email: official_email
    firstName: first_name
    lastName: last_name
    jobTitle: designation
    department: department
    manager: reporting_to
  leavers: {statuses: [inactive]}
  welcomeEmail: {enabled: true, loginUrl: "https://rewards.example.com/activate"}
  notifications: {recipients: ["hr-admin@acme.example"]}
  safety: {maxLeaversPercent: 20}
  history: {successfulRunsLimit: 10, failedRunsLimit: 5}
"#;

/// Text that looks like what a person might type, plus anything at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z_./ -]{0,24}",
        2 => "[ -~]{0,40}",
        1 => any::<String>(),
        1 => Just(String::new()),
        1 => "[\\p{Cyrillic}\\p{Han}\\t\\n\\r\\u{0}\\u{feff}]{1,6}",
    ]
}

/// A YAML value of any type (what a wrong type looks like in a manifest).
fn yaml_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|f| Value::Number(f.into())),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Sequence),
            prop::collection::vec(("[a-zA-Z]{1,8}", inner), 0..3).prop_map(|kv| {
                Value::Mapping(kv.into_iter().map(|(k, v)| (Value::String(k), v)).collect())
            }),
        ]
    })
}

fn string_or_garbage(valid: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(valid).prop_map(|s| Value::String(s.to_string())),
        3 => text().prop_map(Value::String),
        1 => yaml_value(),
    ]
}

fn number_or_garbage() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (0u64..=120).prop_map(|n| Value::Number(n.into())),
        2 => any::<i64>().prop_map(|n| Value::Number(n.into())),
        1 => yaml_value(),
    ]
}

const SCHEDULES: &[&str] = &[
    "hourly",
    "daily",
    "weekly",
    "0 3 * * *",
    "*/15 8-18 * * 1-5",
    "0 0 31 2 *",
    "0 0 29 2 *",
    "59 23 31 12 *",
    "0 3 * * MON",
    "0 3 L * *",
];
const ZONES: &[&str] = &[
    "UTC",
    "Europe/London",
    "America/New_York",
    "Asia/Kathmandu",
    "Etc/GMT+12",
    "Pacific/Chatham",
];
const FIELDS: &[&str] = &[
    "employee_id",
    "official_email",
    "personal_email",
    "first_name",
    "last_name",
    "designation",
    "department",
    "branch",
    "team",
    "reporting_to",
    "department_id",
    "custom_field_values.payroll",
    "custom_field_values.",
];
const URLS: &[&str] = &[
    "https://members.example.com/scim/v2",
    "http://127.0.0.1:8080/v2",
    "http://localhost/api",
    "http://[::1]:9/api",
    "http://10.0.0.1/api",
    "https://user:pw@example.com/scim",
    "ftp://example.com",
    "not a url",
];

/// One field of the spec to set (or remove), by path, and what to put there.
#[derive(Clone, Debug)]
enum Edit {
    Set(Vec<&'static str>, Value),
    Remove(Vec<&'static str>),
}

fn edit() -> impl Strategy<Value = Edit> {
    let set = |path: &[&'static str], v: BoxedStrategy<Value>| {
        let path = path.to_vec();
        v.prop_map(move |v| Edit::Set(path.clone(), v)).boxed()
    };
    let mapping_fields = prop::sample::select(vec![
        "employeeId",
        "email",
        "firstName",
        "lastName",
        "displayName",
        "jobTitle",
        "department",
        "employeeNumber",
        "manager",
    ]);
    let removable = prop::sample::select(vec![
        vec!["schedule"],
        vec!["timeZone"],
        vec!["source", "subdomain"],
        vec!["source", "baseUrl"],
        vec!["source", "apiKeySecretRef"],
        vec!["source", "apiKeySecretRef", "key"],
        vec!["destination", "scim", "url"],
        vec!["mapping", "email"],
        vec!["mapping", "employeeId"],
        vec!["mapping"],
        vec!["leavers", "statuses"],
        vec!["safety"],
    ]);
    prop_oneof![
        set(&["schedule"], string_or_garbage(SCHEDULES).boxed()),
        set(&["timeZone"], string_or_garbage(ZONES).boxed()),
        set(
            &["source", "subdomain"],
            string_or_garbage(&["acme", "a", "a-b", "-a", "a-", "Acme", "acme.evil/x"]).boxed()
        ),
        set(&["source", "baseUrl"], string_or_garbage(URLS).boxed()),
        set(
            &["destination", "scim", "url"],
            string_or_garbage(URLS).boxed()
        ),
        set(
            &["source", "apiKeySecretRef", "name"],
            string_or_garbage(&["freshteam-acme", "members-scim", "nope", " "]).boxed()
        ),
        set(
            &["destination", "scim", "tokenSecretRef", "key"],
            string_or_garbage(&["token", "apiKey", ""]).boxed()
        ),
        (mapping_fields, string_or_garbage(FIELDS))
            .prop_map(|(f, v)| Edit::Set(vec!["mapping", f], v)),
        set(
            &["leavers", "statuses"],
            prop_oneof![
                prop::collection::vec(
                    string_or_garbage(&["inactive", "active", "terminated", " "]),
                    0..4
                )
                .prop_map(Value::Sequence),
                yaml_value(),
            ]
            .boxed()
        ),
        set(
            &["safety", "maxLeaversPercent"],
            number_or_garbage().boxed()
        ),
        set(
            &["history", "successfulRunsLimit"],
            number_or_garbage().boxed()
        ),
        set(&["history", "failedRunsLimit"], number_or_garbage().boxed()),
        set(&["published"], yaml_value().boxed()),
        set(
            &["notifications", "recipients"],
            prop::collection::vec(
                string_or_garbage(&["hr@acme.example", "x", "a@b", "a b@c.d"]),
                0..3
            )
            .prop_map(Value::Sequence)
            .boxed()
        ),
        set(
            &["welcomeEmail", "loginUrl"],
            string_or_garbage(URLS).boxed()
        ),
        // Unknown fields, anywhere.
        set(&["schedul"], yaml_value().boxed()),
        set(&["mapping", "emial"], yaml_value().boxed()),
        set(&["source", "apiKey"], yaml_value().boxed()),
        removable.prop_map(Edit::Remove),
    ]
}

fn apply_edit(spec: &mut Value, edit: &Edit) {
    let (path, value) = match edit {
        Edit::Set(p, v) => (p, Some(v)),
        Edit::Remove(p) => (p, None),
    };
    let mut node = spec;
    for (i, key) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        if !node.is_mapping() {
            // A parent was replaced by a non-map earlier: make it a map again.
            *node = Value::Mapping(Mapping::new());
        }
        let map = node.as_mapping_mut().expect("a mapping");
        let key = Value::String(key.to_string());
        if last {
            match value {
                Some(v) => {
                    map.insert(key, v.clone());
                }
                None => {
                    map.remove(&key);
                }
            }
            return;
        }
        node = map
            .entry(key)
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
}

fn valid_integration() -> Value {
    let doc = VALID.split("---\n").nth(2).expect("the integration");
    yaml_serde::from_str(doc).expect("valid YAML")
}

/// Parses, validates and resolves the Secrets the way `sync` does; checks every
/// rejection names the file or a field. Never expected to panic. Returns the parse
/// error, if any.
fn check_manifest(text: &str) -> Result<Option<String>, TestCaseError> {
    let m = match manifest::parse(text, FILE) {
        Ok(m) => m,
        Err(e) => {
            prop_assert!(
                e.0.starts_with(&format!("{FILE}: ")),
                "a parse error that does not name the file: {e}"
            );
            return Ok(Some(e.0));
        }
    };
    let spec = &m.integration.spec;
    for (field, r) in [
        (
            "spec.source.apiKeySecretRef",
            &spec.source.api_key_secret_ref,
        ),
        (
            "spec.destination.scim.tokenSecretRef",
            &spec.destination.scim.token_secret_ref,
        ),
    ] {
        if let Err(e) = m.secret(field, r) {
            prop_assert!(e.0.starts_with(&format!("{field}: ")), "{e}");
        }
    }
    for policy in [
        EndpointPolicy::LoopbackOnly,
        EndpointPolicy::Deny,
        EndpointPolicy::Allow,
    ] {
        match validate_spec(spec, policy) {
            Ok(v) => {
                // A valid schedule can be asked for its slots (the controller does).
                let at = Utc.with_ymd_and_hms(2026, 2, 27, 23, 59, 0).unwrap();
                let _ = v.schedule.next_after(v.time_zone, at);
                let _ = v.schedule.previous_at_or_before(v.time_zone, at);
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty(), "rejected without a reason");
                for e in &errors {
                    prop_assert!(
                        e.field.starts_with("spec.") && !e.message.trim().is_empty(),
                        "a rejection that does not name a spec field: {e}"
                    );
                }
            }
        }
    }
    Ok(None)
}

/// Why a structured edit was rejected must name the edited field (or its parent).
fn names_the_edit(message: &str, edit: &Edit) -> bool {
    let path = match edit {
        Edit::Set(p, _) | Edit::Remove(p) => p,
    };
    // `spec.mapping` for `spec.mapping.email`, `spec.source` for a missing subdomain, …
    let named =
        (1..=path.len()).any(|n| message.contains(&format!("spec.{}", path[..n].join("."))));
    // … or the parent and the field: "spec: missing field `mapping`".
    let parent = ["spec"]
        .iter()
        .chain(&path[..path.len() - 1])
        .copied()
        .collect::<Vec<_>>()
        .join(".");
    let last = path.last().copied().unwrap_or_default();
    named || (message.contains(&format!("{parent}: ")) && message.contains(&format!("`{last}`")))
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn edited_manifests_never_panic_and_name_the_field(
        edits in prop::collection::vec(edit(), 1..4)
    ) {
        let mut integration = valid_integration();
        let spec = integration.get_mut("spec").expect("a spec");
        for e in &edits {
            apply_edit(spec, e);
        }
        let text = format!(
            "{SECRETS}{}",
            yaml_serde::to_string(&integration).expect("YAML")
        );
        if let Some(message) = check_manifest(&text)? {
            prop_assert!(
                edits.iter().any(|e| names_the_edit(&message, e)),
                "{message}\nedits: {edits:?}"
            );
        }
        // And the same with the spec validated: each rejected field is one that was
        // edited (the untouched rest of a valid manifest never is).
        if let Ok(m) = manifest::parse(&text, FILE) {
            if let Err(errors) = validate_spec(&m.integration.spec, EndpointPolicy::LoopbackOnly) {
                for e in errors {
                    let s = e.to_string();
                    prop_assert!(
                        edits.iter().any(|x| names_the_edit(&s, x)),
                        "{s}\nedits: {edits:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn mutated_text_never_panics(
        cuts in prop::collection::vec(
            (any::<prop::sample::Index>(), 0usize..6, "[-:{}\\[\\]#&*!|>'\"%@`,?\\n\\t a-z0-9]{0,4}"),
            1..6
        )
    ) {
        let mut text: Vec<char> = VALID.chars().collect();
        for (at, remove, insert) in &cuts {
            let at = at.index(text.len() + 1);
            let end = (at + remove).min(text.len());
            text.splice(at..end, insert.chars());
        }
        let text: String = text.into_iter().collect();
        let _ = check_manifest(&text)?;
    }

    #[test]
    fn garbage_never_panics(text in prop_oneof![
        any::<String>(),
        "[-:{}\\[\\]#&*!|>'\"%@`,?\\n\\t a-zA-Z0-9]{0,200}",
        prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        let _ = check_manifest(&text)?;
        let with_kind = format!("apiVersion: freshteam.provisioning.dev/v1alpha1\nkind: FreshteamIntegration\n{text}");
        let _ = check_manifest(&with_kind)?;
    }
}

// ---------------------------------------------------------------- schedules, zones

fn cron_token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("*".to_string()),
        4 => (0u32..13).prop_map(|n| n.to_string()),
        1 => (0u32..80).prop_map(|n| n.to_string()),
        1 => (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a}-{b}")),
        1 => (0u32..70).prop_map(|n| format!("*/{n}")),
        1 => (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a},{b}")),
        1 => prop::sample::select(vec![
            "MON", "sun", "JAN", "dec", "L", "W", "5L", "1#3", "?", "15W", "LW", "-", "/", ",",
            "", "0-", "*/", "7", "8", "-1", "99999999999999999999",
        ])
        .prop_map(str::to_string),
        1 => "[ -~]{1,5}",
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn schedules_never_panic_and_rejections_quote_the_input(
        text in prop_oneof![
            3 => prop::collection::vec(cron_token(), 5).prop_map(|t| t.join(" ")),
            1 => prop::collection::vec(cron_token(), 0..8).prop_map(|t| t.join(" ")),
            1 => any::<String>(),
        ]
    ) {
        match Schedule::parse(&text) {
            Ok(s) => {
                let at = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
                for tz in [chrono_tz::UTC, chrono_tz::Europe::London, chrono_tz::Pacific::Chatham] {
                    let _ = s.next_after(tz, at);
                    let _ = s.previous_at_or_before(tz, at);
                }
            }
            // Blank text has nothing to quote: the message says it is empty.
            Err(e) if text.trim().is_empty() => prop_assert!(e.to_string().starts_with("is empty"), "{e}"),
            Err(e) => prop_assert!(e.to_string().contains(&format!("'{text}'")), "{e}"),
        }
    }

    #[test]
    fn time_zones_never_panic_and_rejections_quote_the_input(
        text in prop_oneof![
            "[A-Za-z_/+0-9-]{0,30}",
            any::<String>(),
            prop::sample::select(ZONES).prop_map(|z| format!(" {z}\n")),
        ]
    ) {
        match parse_time_zone(Some(&text)) {
            Ok(_) => {}
            Err(e) => prop_assert!(e.to_string().contains(&format!("'{}'", text.trim())), "{e}"),
        }
    }

    #[test]
    fn mapping_rejections_name_a_mapping_or_leavers_field(
        fields in prop::collection::vec(prop::option::of(prop_oneof![
            prop::sample::select(FIELDS).prop_map(str::to_string),
            text(),
        ]), 9),
        statuses in prop::collection::vec(text(), 0..3),
    ) {
        let mapping = MappingSpec {
            employee_id: fields[0].clone().unwrap_or_default(),
            email: fields[1].clone(),
            first_name: fields[2].clone(),
            last_name: fields[3].clone(),
            display_name: fields[4].clone(),
            job_title: fields[5].clone(),
            department: fields[6].clone(),
            employee_number: fields[7].clone(),
            manager: fields[8].clone(),
            attributes: Vec::new(),
        };
        if let Err(e) = CompiledMapping::compile(&mapping, &LeaversSpec {
            statuses,
            ..LeaversSpec::default()
        }) {
            prop_assert!(
                e.field.starts_with("spec.mapping.") || e.field == "spec.leavers.statuses",
                "{e}"
            );
        }
    }
}

// ---------------------------------------------------------------- planning

/// One Freshteam employee, before it is laid out as the mapping asks.
#[derive(Clone, Debug)]
struct Employee {
    employee_id: Option<&'static str>,
    /// `None`: the employee's own address (from the Employee ID); else a shared one.
    email: Option<&'static str>,
    first_name: Option<&'static str>,
    title: Option<&'static str>,
    department_id: Option<&'static str>,
    status: &'static str,
    /// Index of the manager among the generated employees.
    manager: Option<usize>,
}

// Few identities and addresses, so that clashes and duplicates are common.
const IDS: &[&str] = &["E1", "E2", "E3", "E4", "E5", "E6", "E7", "E8"];
const EMAILS: &[&str] = &[
    "E1@ACME.example",
    "e2@acme.example",
    "ada@acme.example",
    "ADA@acme.example",
    "admin@acme.example",
    "e7@acme.example",
    "grace@acme.example",
    "not-an-address",
    "",
];

fn employee() -> impl Strategy<Value = Employee> {
    (
        prop_oneof![9 => prop::sample::select(IDS).prop_map(Some), 1 => Just(None)],
        prop_oneof![4 => Just(None), 1 => prop::sample::select(EMAILS).prop_map(Some)],
        prop::option::of(prop::sample::select(vec!["Ada", "Grace", ""])),
        prop::option::of(prop::sample::select(vec!["Dev", "Ops", "Lead"])),
        prop::option::of(prop::sample::select(vec!["1", "2", "99", "x"])),
        prop::sample::select(vec!["active", "active", "inactive", "Inactive"]),
        prop::option::of(0usize..12),
    )
        .prop_map(
            |(employee_id, email, first_name, title, department_id, status, manager)| Employee {
                employee_id,
                email,
                first_name,
                title,
                department_id,
                status,
                manager,
            },
        )
}

/// An account in the destination before the run.
#[derive(Clone, Debug)]
struct Account {
    external_id: &'static str,
    /// `None`: the address that goes with the externalId.
    email: Option<&'static str>,
    first_name: Option<&'static str>,
    title: Option<&'static str>,
    department: Option<&'static str>,
    active: bool,
}

fn account() -> impl Strategy<Value = Account> {
    (
        // "" and X*: accounts the integration does not manage.
        prop::sample::select(vec!["E1", "E2", "E3", "E4", "E5", "E6", "", "X1", "X2"]),
        prop_oneof![3 => Just(None), 1 => prop::sample::select(&EMAILS[..7]).prop_map(Some)],
        prop::option::of(prop::sample::select(vec!["Ada", "Grace"])),
        prop::option::of(prop::sample::select(vec!["Dev", "Ops", "Lead"])),
        prop::option::of(prop::sample::select(vec!["Engineering", "People"])),
        any::<bool>(),
    )
        .prop_map(
            |(external_id, email, first_name, title, department, active)| Account {
                external_id,
                email,
                first_name,
                title,
                department,
                active,
            },
        )
}

fn mapping_spec(with_manager: bool, with_department: bool) -> MappingSpec {
    MappingSpec {
        email: Some("official_email".into()),
        first_name: Some("first_name".into()),
        last_name: None,
        job_title: Some("designation".into()),
        department: with_department.then(|| "department".into()),
        manager: with_manager.then(|| "reporting_to".into()),
        ..MappingSpec::default()
    }
}

fn snapshot(mapping: &CompiledMapping, employees: &[Employee]) -> SourceSnapshot {
    let records = employees
        .iter()
        .enumerate()
        .map(|(i, e)| EmployeeRecord {
            id: 1000 + i as i64,
            values: mapping
                .request
                .fields
                .iter()
                .map(|f| match f.as_str() {
                    "employee_id" => e.employee_id.map(str::to_string),
                    "official_email" => Some(e.email.map_or_else(
                        || own_email(e.employee_id.unwrap_or("nobody")),
                        str::to_string,
                    )),
                    "first_name" => e.first_name.map(str::to_string),
                    "designation" => e.title.map(str::to_string),
                    "department_id" => e.department_id.map(str::to_string),
                    "status" => Some(e.status.to_string()),
                    "reporting_to_id" => e
                        .manager
                        .filter(|m| *m < employees.len())
                        .map(|m| (1000 + m).to_string()),
                    other => panic!("not generated: {other}"),
                })
                .collect(),
            population: if e.status == "inactive" {
                Population::Inactive
            } else {
                Population::Active
            },
        })
        .collect();
    SourceSnapshot {
        employees: records,
        lookups: HashMap::from([(
            LookupKind::Departments,
            HashMap::from([(1, "Engineering".to_string()), (2, "People".to_string())]),
        )]),
        ..SourceSnapshot::default()
    }
}

fn own_email(employee_id: &str) -> String {
    format!("{}@acme.example", employee_id.to_lowercase())
}

fn destination(accounts: &[Account]) -> Vec<DestinationMember> {
    // A SCIM service keeps userName unique (case-insensitively): drop what it would not
    // hold.
    let mut taken = HashSet::new();
    accounts
        .iter()
        .map(|a| {
            let email = a.email.map_or_else(
                || {
                    own_email(if a.external_id.is_empty() {
                        "admin"
                    } else {
                        a.external_id
                    })
                },
                str::to_string,
            );
            (a, email)
        })
        .filter(|(_, email)| taken.insert(email.to_lowercase()))
        .enumerate()
        .map(|(i, (a, email))| DestinationMember {
            id: format!("acct-{i}"),
            version: Some(format!("W/\"{i}\"")),
            member: Member {
                employee_id: a.external_id.to_string(),
                email,
                first_name: a.first_name.map(str::to_string),
                job_title: a.title.map(str::to_string),
                department: a.department.map(str::to_string),
                display_name: a.first_name.map(str::to_string),
                active: a.active,
                ..Member::default()
            },
            has_work_email: true,
        })
        .collect()
}

/// Applies a plan the way a SCIM service would, refusing a clashing `userName`.
fn apply(
    current: &mut Vec<DestinationMember>,
    p: &Plan,
    next_id: &mut usize,
) -> Result<(), TestCaseError> {
    for w in &p.writes {
        let (id, email) = match &w.op {
            WriteOp::Create { member } => {
                *next_id += 1;
                current.push(DestinationMember {
                    id: format!("new-{next_id}"),
                    version: None,
                    member: member.clone(),
                    has_work_email: true,
                });
                (format!("new-{next_id}"), member.email.clone())
            }
            WriteOp::Update(UpdateOp { id, changes, .. }) => {
                let m = current
                    .iter_mut()
                    .find(|m| &m.id == id)
                    .ok_or_else(|| TestCaseError::fail(format!("update of an unknown id {id}")))?;
                for c in changes {
                    c.apply_to(&mut m.member);
                }
                (id.clone(), m.member.email.clone())
            }
        };
        if let Some(other) = current
            .iter()
            .find(|m| m.id != id && m.member.email.eq_ignore_ascii_case(&email))
        {
            return Err(TestCaseError::fail(format!(
                "{:?} would get 409: {email} is held by {}",
                w.op, other.id
            )));
        }
    }
    Ok(())
}

fn plan_options(mapping: &CompiledMapping, max: u32, approved: Option<u32>) -> PlanOptions {
    PlanOptions {
        managed: mapping.managed,
        max_leavers_percent: max,
        approved_leavers: approved,
        when_removed: WhenRemoved::Deactivate,
        scope: PlanScope::Everyone,
    }
}

/// Accounts the integration must leave alone: no source identity, an ambiguous one, or
/// one that several destination accounts share.
fn untouchable(
    mapped: &MappedSource,
    current: &[DestinationMember],
) -> BTreeMap<String, DestinationMember> {
    let source: HashSet<&str> = mapped
        .members
        .iter()
        .map(|d| d.member.employee_id.as_str())
        .collect();
    let ambiguous: HashSet<&str> = mapped.ambiguous_ids.iter().map(String::as_str).collect();
    let mut per_external: HashMap<&str, usize> = HashMap::new();
    for m in current {
        *per_external
            .entry(m.member.employee_id.as_str())
            .or_default() += 1;
    }
    current
        .iter()
        .filter(|m| {
            let e = m.member.employee_id.as_str();
            !source.contains(e) || ambiguous.contains(e) || per_external[e] > 1
        })
        .map(|m| (m.id.clone(), m.clone()))
        .collect()
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn planning_respects_the_threshold_strangers_and_converges(
        employees in prop::collection::vec(employee(), 0..12),
        accounts in prop::collection::vec(account(), 0..9),
        with_manager in any::<bool>(),
        with_department in any::<bool>(),
        max_percent in 0u32..=100,
        approved in prop::option::of(0u32..4),
    ) {
        let mapping = CompiledMapping::compile(
            &mapping_spec(with_manager, with_department),
            &LeaversSpec::default(),
        )
        .unwrap();
        let mapped = map_records(&snapshot(&mapping, &employees), &mapping);
        let mut current = destination(&accounts);
        let keep = untouchable(&mapped, &current);
        let mut next_id = 0;

        // 1. The threshold, with whatever approval there is.
        let options = plan_options(&mapping, max_percent, approved);
        let first = plan(&mapped, &current, &options);
        let leavers = first.count(WriteKind::Leaver);
        match &first.blocked {
            Some(b) => {
                prop_assert_eq!(leavers, 0, "a blocked plan deactivates");
                prop_assert!(b.leavers as u64 * 100 > max_percent as u64 * first.active_managed as u64);
                prop_assert!(approved.is_none_or(|a| b.leavers > a));
            }
            None => prop_assert!(
                leavers as u64 * 100 <= max_percent as u64 * first.active_managed as u64
                    || approved.is_some_and(|a| leavers <= a),
                "{} leavers of {} active managed at {}% without approval", leavers, first.active_managed, max_percent
            ),
        }
        for w in &first.writes {
            if let WriteOp::Update(UpdateOp { id, .. }) = &w.op {
                prop_assert!(!keep.contains_key(id), "a write to an unmanaged account: {:?}", w.op);
            }
        }
        apply(&mut current, &first, &mut next_id)?;

        // 2. With every leaver approved: apply, then nothing but manager links is left,
        //    then nothing at all.
        let approved_all = plan_options(&mapping, max_percent, Some(u32::MAX));
        let second = plan(&mapped, &current, &approved_all);
        prop_assert!(second.blocked.is_none());
        apply(&mut current, &second, &mut next_id)?;
        let third = plan(&mapped, &current, &approved_all);
        for w in &third.writes {
            let only_manager = matches!(&w.op, WriteOp::Update(UpdateOp { changes, .. })
                if changes.iter().all(|c| matches!(c,
                    freshteam_operator::member::Change::Set(Attr::Manager, _)
                    | freshteam_operator::member::Change::Clear(Attr::Manager))));
            prop_assert!(
                with_manager && w.kind == WriteKind::Update && only_manager,
                "not converged after one approved apply: {:?}", w
            );
        }
        apply(&mut current, &third, &mut next_id)?;
        let fourth = plan(&mapped, &current, &approved_all);
        prop_assert!(fourth.writes.is_empty(), "planning again yields {:?}", fourth.writes);

        // 3. Strangers are exactly as they were.
        for (id, before) in &keep {
            let after = current.iter().find(|m| &m.id == id);
            prop_assert_eq!(Some(before), after, "an unmanaged account changed");
        }

        // 4. The desired state holds for every member without an error row.
        let errored: HashSet<&str> = fourth
            .errors
            .iter()
            .filter_map(|e| e.employee_id.as_deref())
            .collect();
        for d in &mapped.members {
            let id = d.member.employee_id.as_str();
            if errored.contains(id) {
                continue;
            }
            let holders: Vec<&DestinationMember> =
                current.iter().filter(|m| m.member.employee_id == id).collect();
            if !d.member.active {
                prop_assert!(holders.iter().all(|m| !m.member.active), "{} is still active", id);
                continue;
            }
            prop_assert_eq!(holders.len(), 1, "{} has {} members", id, holders.len());
            let m = &holders[0].member;
            prop_assert!(m.active);
            for attr in mapping.managed.iter().filter(|a| *a != Attr::Manager) {
                let want = d.member.get(attr).filter(|v| !v.is_empty());
                let have = m.get(attr).filter(|v| !v.is_empty());
                prop_assert_eq!(want, have, "{} {}", id, attr);
            }
            if let Some(manager) = &d.manager_employee_id {
                let bosses: Vec<&DestinationMember> = current
                    .iter()
                    .filter(|b| &b.member.employee_id == manager)
                    .collect();
                if let [boss] = bosses.as_slice() {
                    prop_assert_eq!(m.manager.as_deref(), Some(boss.id.as_str()), "{}'s manager", id);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// With a ledger: nothing outside the ledger (or adopted by matching an employee) is
    /// ever written, a removed ledger member is the only kind of leaver without an
    /// employee, and leavers never pass the threshold of active managed members without
    /// approval.
    #[test]
    fn with_a_ledger_nothing_outside_it_is_written_and_the_threshold_holds(
        employees in prop::collection::vec(employee(), 0..12),
        accounts in prop::collection::vec(account(), 0..9),
        ledger in prop::collection::btree_set(
            prop::sample::select(vec!["E1", "E2", "E3", "E4", "E5", "E6", "X1", "X2"]), 0..8),
        max_percent in 0u32..=100,
        approved in prop::option::of(0u32..4),
    ) {
        let mapping = CompiledMapping::compile(&mapping_spec(false, false), &LeaversSpec::default()).unwrap();
        let mapped = map_records(&snapshot(&mapping, &employees), &mapping);
        let current = destination(&accounts);
        let ledger: HashSet<String> = ledger.into_iter().map(String::from).collect();
        let source: HashSet<&str> = mapped
            .members
            .iter()
            .map(|d| d.member.employee_id.as_str())
            .chain(mapped.ambiguous_ids.iter().map(String::as_str))
            .collect();
        let options = plan_options(&mapping, max_percent, approved);
        let p = plan_with_ledger(&mapped, &current, Some(&ledger), &options);
        let by_id: HashMap<&str, &DestinationMember> =
            current.iter().map(|m| (m.id.as_str(), m)).collect();
        for w in &p.writes {
            if let WriteOp::Update(UpdateOp { id, .. }) = &w.op {
                let ext = by_id[id.as_str()].member.employee_id.as_str();
                prop_assert!(
                    ledger.contains(ext) || source.contains(ext),
                    "wrote {} outside the ledger: {:?}", ext, w.op
                );
                if !source.contains(ext) {
                    prop_assert_eq!(w.kind, WriteKind::Leaver);
                }
            }
        }
        let leavers = p.count(WriteKind::Leaver);
        prop_assert!(
            leavers as u64 * 100 <= max_percent as u64 * p.active_managed as u64
                || approved.is_some_and(|a| leavers <= a),
            "{} leavers of {} active managed at {}%", leavers, p.active_managed, max_percent
        );
    }
}
