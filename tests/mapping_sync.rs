//! `spec.mapping.attributes[]` and `spec.scope` through the real `sync` binary, against
//! the Freshteam simulator and a real `scim2-server` (which keeps the core and
//! enterprise attributes).

mod support;

use serde_json::{json, Value};
use support::sync_env::{Env, API_KEY};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The mapping under test: a custom field, a lookup, a constant, two expressions and a
/// default, with contractors out of scope.
fn rich_mapping(extra: &str) -> String {
    format!(
        r#"  mapping:
    email: official_email
    firstName: first_name
    lastName: last_name
    jobTitle: designation
    attributes:
    - target: {ENTERPRISE}:costCenter
      from: custom_field_values.cost_center
    - target: 'addresses[type eq "work"].locality'
      from: branch.city
    - target: {ENTERPRISE}:organization
      value: Acme Ltd
    - target: nickName
      expression: 'employee.first_name + " " + employee.last_name'
    - target: userType
      expression: 'employee.employee_type == "part_time" ? "Part-time" : "Employee"'
    - target: {ENTERPRISE}:division
      from: designation
      default: Unassigned
    - target: 'addresses[type eq "work"].region'
      from: custom_field_values.work_location
    - target: 'entitlements[type eq "level"].value'
      from: level
    - target: 'entitlements[type eq "manager"].value'
      from: reporting_to.first_name
{extra}  scope:
    filter: 'employee.employee_type != "contractor"'
"#
    )
}

async fn lookup(env: &Env, path: &str) -> Vec<Value> {
    reqwest::Client::new()
        .get(format!("{}/{path}", env.sim.base_url()))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap()
}

fn entitlement(user: &Value, kind: &str) -> Value {
    user["entitlements"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == kind))
        .map(|x| x["value"].clone())
        .unwrap_or(Value::Null)
}

fn manager_name(employees: &[Value], e: &Value) -> Value {
    employees
        .iter()
        .find(|m| m["id"] == e["reporting_to_id"])
        .map(|m| m["first_name"].clone())
        .unwrap_or(Value::Null)
}

fn city_of(branches: &[Value], id: &Value) -> Value {
    branches
        .iter()
        .find(|b| &b["id"] == id)
        .map(|b| b["city"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn attributes_and_scope_reach_the_destination_and_converge() {
    support::require_peers!(Scim2Server);
    let env = Env::start(40).await;
    let file = env.write("acme.yaml", &env.manifest(API_KEY, &rich_mapping("")));
    let state = env.dir.path().join("state.json");
    let state = state.to_str().unwrap();
    // With a state file, runs are incremental until the spec changes.
    let json_out = ["--output", "json", "--state-file", state, "--mode", "auto"];
    let mode = |run: &support::sync_env::Run| run.json()["status"]["mode"].clone();

    let employees = env.sim.employees();
    let contractors: Vec<&Value> = employees
        .iter()
        .filter(|e| e["employee_type"] == "contractor")
        .collect();
    assert!(!contractors.is_empty(), "the population has contractors");
    let first = env.sync_file(&file, &json_out).await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(mode(&first), "Full");
    assert_eq!(
        first.summary()["created"].as_u64(),
        Some((40 - contractors.len()) as u64)
    );
    // Contractors are never created.
    let users = env.scim.users().await;
    for c in &contractors {
        assert!(
            !users.iter().any(|u| u["externalId"] == c["employee_id"]),
            "contractor {} was created",
            c["employee_id"]
        );
    }

    // Every mapped attribute arrived.
    let branches = lookup(&env, "branches").await;
    let levels = lookup(&env, "levels").await;
    let in_scope: Vec<&Value> = employees
        .iter()
        .filter(|e| e["employee_type"] != "contractor")
        .collect();
    for e in &in_scope {
        let id = e["employee_id"].as_str().unwrap();
        let detail = env.sim.employee(id).unwrap();
        let u = env.user(id).await;
        assert_eq!(
            u[ENTERPRISE]["costCenter"], detail["custom_field_values"]["cost_center"],
            "{id}"
        );
        let work = u["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["type"] == "work"))
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(
            work["locality"],
            city_of(&branches, &e["branch_id"]),
            "{id}"
        );
        assert_eq!(u[ENTERPRISE]["organization"], "Acme Ltd");
        assert_eq!(
            u["nickName"],
            json!(format!(
                "{} {}",
                e["first_name"].as_str().unwrap(),
                e["last_name"].as_str().unwrap()
            ))
        );
        let user_type = if e["employee_type"] == "part_time" {
            "Part-time"
        } else {
            "Employee"
        };
        assert_eq!(u["userType"], user_type, "{id}");
        assert_eq!(u[ENTERPRISE]["division"], e["designation"], "{id}");
        // A dropdown custom field gives its value; a level lookup its name.
        assert_eq!(
            work["region"], detail["custom_field_values"]["work_location"]["value"],
            "{id}"
        );
        let level = levels
            .iter()
            .find(|l| l["id"] == detail["level_id"])
            .map(|l| l["name"].clone())
            .unwrap();
        assert_eq!(
            u["entitlements"][0],
            json!({"type": "level", "value": level}),
            "{id}"
        );
    }

    // A second run writes nothing.
    let before = env.versions().await;
    let second = env.sync_file(&file, &json_out).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(mode(&second), "Incremental", "{}", second.stdout);
    assert_eq!(second.summary()["updated"], 0, "{}", second.stdout);
    assert_eq!(second.summary()["created"], 0);
    assert_eq!(second.api_calls()["destinationWrites"], 0);
    assert_eq!(env.versions().await, before);

    // One member becomes a contractor, another loses the designation and changes cost
    // centre: a leaver "out of scope", the default, a change row naming costCenter.
    let leaver = in_scope[1]["employee_id"].as_str().unwrap().to_string();
    let changed = in_scope[2]["employee_id"].as_str().unwrap().to_string();
    let old_cc = env.sim.employee(&changed).unwrap()["custom_field_values"]["cost_center"]
        .as_str()
        .unwrap()
        .to_string();
    env.sim
        .update_employee(&leaver, json!({"employee_type": "contractor"}))
        .unwrap();
    let old_branch = env.sim.employee(&changed).unwrap()["branch_id"].clone();
    let new_branch = branches
        .iter()
        .find(|b| {
            b["id"] != old_branch && city_of(&branches, &b["id"]) != city_of(&branches, &old_branch)
        })
        .unwrap()["id"]
        .clone();
    env.sim
        .update_employee(
            &changed,
            json!({
                "designation": null,
                "branch_id": new_branch,
                "custom_field_values": {"cost_center": "CC-999"},
            }),
        )
        .unwrap();
    let report = env.dir.path().join("third.csv");
    let report_arg = report.to_str().unwrap();
    let mut args = json_out.to_vec();
    args.extend(["--error-report", report_arg]);
    let third = env.sync_file(&file, &args).await;
    assert_eq!(third.code, 0, "{}\n{}", third.stdout, third.stderr);
    assert_eq!(mode(&third), "Incremental", "{}", third.stdout);
    assert_eq!(third.summary()["leavers"], 1, "{}", third.stdout);
    assert_eq!(third.summary()["updated"], 1, "{}", third.stdout);
    assert_eq!(env.user(&leaver).await["active"], false);
    let u = env.user(&changed).await;
    assert_eq!(u[ENTERPRISE]["division"], "Unassigned");
    assert_eq!(u[ENTERPRISE]["costCenter"], "CC-999");
    // The work address's locality follows the new branch (a filtered value path).
    let work = u["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == "work"))
        .cloned()
        .unwrap();
    assert_eq!(work["locality"], city_of(&branches, &new_branch), "{u}");
    // Its manager's record was not read by this incremental run: the manager's name
    // stays as it was, neither cleared nor rewritten.
    let e = employees
        .iter()
        .find(|e| e["employee_id"] == changed.as_str())
        .unwrap();
    assert_eq!(
        entitlement(&u, "manager"),
        manager_name(&employees, e),
        "{u}"
    );
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        text.contains("marked as leaver (out of scope)"),
        "no out-of-scope leaver row: {text}"
    );
    assert!(
        text.contains(&format!("costCenter: {old_cc} → CC-999")),
        "no costCenter change row: {text}"
    );

    // An attribute added to the mapping reaches every active member on the next run.
    let added = "    - target: preferredLanguage\n      value: en-GB\n";
    let file = env.write("acme.yaml", &env.manifest(API_KEY, &rich_mapping(added)));
    let fourth = env.sync_file(&file, &json_out).await;
    assert_eq!(fourth.code, 0, "{}\n{}", fourth.stdout, fourth.stderr);
    // The mapping changed: a full run, which writes the new attribute to everyone.
    assert_eq!(mode(&fourth), "Full", "{}", fourth.stdout);
    let active = in_scope.len() - 1;
    assert_eq!(fourth.summary()["updated"].as_u64(), Some(active as u64));
    for u in env.scim.users().await {
        if u["active"] == true {
            assert_eq!(u["preferredLanguage"], "en-GB", "{}", u["externalId"]);
        }
    }
}

/// `sync` on a manifest whose mapping has `attributes` (lines under `attributes:`):
/// exit code 2 and a message naming `field`, nothing read or written.
async fn refused(env: &Env, attributes: &str, scope: &str, field: &str, says: &str) {
    let mapping =
        format!("  mapping:\n    email: official_email\n    attributes:\n{attributes}{scope}");
    let file = env.write("bad.yaml", &env.manifest(API_KEY, &mapping));
    env.sim.clear_requests();
    let run = env.sync_file(&file, &["--output", "json"]).await;
    assert_eq!(
        run.code, 2,
        "{attributes}{scope}\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stderr.contains(field) && run.stderr.contains(says),
        "expected {field:?} and {says:?} in:\n{}",
        run.stderr
    );
    assert!(
        env.sim.requests().is_empty(),
        "a refused manifest read Freshteam"
    );
    assert!(env.scim.users().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_attributes_and_scopes_are_refused_naming_the_path() {
    support::require_peers!(Scim2Server);
    let env = Env::start(3).await;
    refused(
        &env,
        "    - target: costCentre\n      value: x\n",
        "",
        "spec.mapping.attributes[0].target",
        "no attribute 'costCentre'",
    )
    .await;
    refused(
        &env,
        "    - target: nickName\n      value: x\n      from: first_name\n",
        "",
        "spec.mapping.attributes[0]",
        "exactly one of from, value or expression",
    )
    .await;
    refused(
        &env,
        "    - target: nickName\n      value: x\n    - target: nickname\n      from: first_name\n",
        "",
        "spec.mapping.attributes[1].target",
        "one source per target",
    )
    .await;
    refused(
        &env,
        "    - target: nickName\n      expression: 'employee.first_name +'\n",
        "",
        "spec.mapping.attributes[0].expression",
        "CEL syntax error",
    )
    .await;
    refused(
        &env,
        "    - target: nickName\n      expression: 'employee.first_name + 1'\n",
        "",
        "spec.mapping.attributes[0].expression",
        "CEL type error",
    )
    .await;
    refused(
        &env,
        "    - target: nickName\n      value: x\n",
        "  scope:\n    filter: 'employee.employee_type'\n",
        "spec.scope.filter",
        "must be a bool",
    )
    .await;
    refused(
        &env,
        "    - target: nickName\n      from: shoe_size\n",
        "",
        "spec.mapping.attributes[0].from",
        "no employee field 'shoe_size'",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expression_failing_for_one_employee_is_its_error_row() {
    support::require_peers!(Scim2Server);
    let env = Env::start(6).await;
    let broken = support::sync_env::employee_id(4);
    env.sim
        .update_employee(
            &broken,
            json!({"custom_field_values": {"cost_center": null}}),
        )
        .unwrap();
    let mapping = "  mapping:\n    email: official_email\n    attributes:\n    - target: nickName\n      expression: 'employee.custom_field_values.cost_center + \"/\" + employee.first_name'\n";
    let file = env.write("acme.yaml", &env.manifest(API_KEY, mapping));
    let run = env.sync_file(&file, &["--output", "json"]).await;
    let v = run.json();
    assert_eq!(v["status"]["phase"], "PartiallySucceeded", "{}", run.stdout);
    assert_eq!(v["status"]["summary"]["created"], 5);
    assert_eq!(v["status"]["summary"]["errors"], 1);
    let row = &v["status"]["errors"][0];
    assert_eq!(row["employeeId"], broken.as_str());
    assert_eq!(row["field"], "nickName");
    let message = row["message"].as_str().unwrap();
    assert!(
        message.starts_with("spec.mapping.attributes[0].expression: CEL"),
        "{message}"
    );
    assert_eq!(env.scim.users().await.len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_extension_the_destination_does_not_announce_is_named_and_never_written() {
    support::require_peers!(Scim2Server);
    let env = Env::start(3).await;
    let target = "urn:example:params:scim:schemas:extension:rewards:2.0:User:startDate";
    let mapping = format!(
        "  mapping:\n    email: official_email\n    attributes:\n    - target: {target}\n      from: joining_date\n    - target: nickName\n      from: first_name\n"
    );
    let file = env.write("acme.yaml", &env.manifest(API_KEY, &mapping));
    let run = env.sync_file(&file, &["--output", "json"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let v = run.json();
    assert_eq!(v["status"]["summary"]["created"], 3);
    let warning = v["status"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["field"].as_str().is_some_and(|f| f.contains("startDate")))
        .unwrap_or_else(|| panic!("no warning naming the target: {}", run.stdout))
        .clone();
    assert!(
        warning["message"].as_str().unwrap().contains(target),
        "{warning}"
    );
    for u in env.scim.users().await {
        assert!(u.get(target).is_none(), "{u}");
        assert!(u["nickName"].is_string(), "{u}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_members_first_work_address_is_written_without_giving_up_finer_updates() {
    support::require_peers!(Scim2Server);
    let env = Env::start(3).await;
    let id = support::sync_env::employee_id(2);
    env.sim
        .update_employee(&id, json!({"branch_id": null}))
        .unwrap();
    let mapping = "  mapping:\n    email: official_email\n    firstName: first_name\n    attributes:\n    - target: 'addresses[type eq \"work\"].locality'\n      from: branch.city\n";
    let file = env.write("acme.yaml", &env.manifest(API_KEY, mapping));
    let state = env.dir.path().join("state.json");
    let args = [
        "--output",
        "json",
        "--state-file",
        state.to_str().unwrap(),
        "--mode",
        "full",
    ];
    let first = env.sync_file(&file, &args).await;
    assert_eq!(first.summary()["created"], 3, "{}", first.stdout);
    assert!(env.user(&id).await.get("addresses").is_none());

    // The branch is set: scim2-server refuses a replace whose filter matches no entry,
    // so this one update goes through GET + PUT ...
    env.sim
        .update_employee(&id, json!({"branch_id": 302}))
        .unwrap();
    let second = env.sync_file(&file, &args).await;
    assert_eq!(second.summary()["updated"], 1, "{}", second.stdout);
    let u = env.user(&id).await;
    assert_eq!(
        u["addresses"],
        json!([{"type": "work", "locality": "London"}]),
        "{u}"
    );
    let notes: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let forms = &notes["convergence"]["@writeForm"];
    assert!(
        forms.as_object().is_none_or(|f| f
            .values()
            .all(|v| !v.as_str().unwrap_or("").starts_with("put"))),
        "the service's update form was given up: {forms}"
    );

    // ... and the next rename is one PATCH.
    let other = support::sync_env::employee_id(3);
    env.sim
        .update_employee(&other, json!({"first_name": "Renamed"}))
        .unwrap();
    let third = env.sync_file(&file, &args).await;
    assert_eq!(third.summary()["updated"], 1, "{}", third.stdout);
    assert_eq!(
        third.api_calls()["destinationWrites"],
        1,
        "{}",
        third.stdout
    );
}
