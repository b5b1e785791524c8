//! `freshteam-operator sync --only`: the real binary imports the named employees alone,
//! against the project's Freshteam simulator and a real SCIM 2.0 server.

mod support;

use serde_json::{json, Value};
use support::sync_env::{employee_id, Env};

/// The `status.members` entry of `id` in a JSON run.
fn steps<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["status"]["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no status.members in {run}"))
        .iter()
        .find(|m| m["employeeId"] == id)
        .unwrap_or_else(|| panic!("no steps for {id} in {run}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_named_employee_is_read_and_written_and_each_step_is_said() {
    support::require_peers!(Scim2Server);
    let env = Env::start(30).await;
    let state = env.dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let first = env.sync(&["--state-file", state]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);

    // Two employees change, one leaves.
    let (first_id, second_id, leaver_id) = (employee_id(2), employee_id(3), employee_id(5));
    let old_title = env.user(&first_id).await["title"].clone();
    env.sim
        .update_employee(&first_id, json!({"designation": "Head of Rewards"}))
        .unwrap();
    env.sim
        .update_employee(&second_id, json!({"designation": "Chief Listener"}))
        .unwrap();
    env.sim
        .update_employee(&leaver_id, json!({"terminated": true}))
        .unwrap();
    let account = env.user(&first_id).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    // A dry run, as text: the steps, the new value and the account; nothing written.
    let before = env.versions().await;
    let text_file = env.default_file();
    let dry = env
        .sync_file(
            &text_file,
            &["--only", &first_id, "--dry-run", "--state-file", state],
        )
        .await;
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    for line in [
        format!("Employee {first_id}"),
        "Freshteam:   found (active), in scope".to_string(),
        format!("Account:     {account} (matched by ledger)"),
        "Action:      update".to_string(),
        format!(
            "jobTitle: {} → Head of Rewards",
            old_title.as_str().unwrap()
        ),
    ] {
        assert!(
            dry.stdout.contains(&line),
            "no '{line}' in:\n{}",
            dry.stdout
        );
    }
    assert_eq!(env.versions().await, before, "a dry run wrote");

    // The run itself: only the first is read, written and explained.
    env.sim.clear_requests();
    let run = env
        .sync(&["--only", &first_id, "--state-file", state])
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let json = run.json();
    assert_eq!(json["spec"]["trigger"], "OnDemand");
    assert_eq!(json["spec"]["employeeIds"], json!([first_id]));
    assert_eq!(json["status"]["mode"], "OnDemand");
    let s = json["status"]["summary"].clone();
    assert_eq!(
        (s["updated"].as_u64(), s["leavers"].as_u64()),
        (Some(1), Some(0))
    );
    let m = steps(&json, &first_id);
    assert_eq!(m["found"], true);
    assert_eq!(m["population"], "active");
    assert_eq!(m["inScope"], true);
    assert_eq!(m["values"]["jobTitle"], "Head of Rewards");
    assert_eq!(m["account"], json!({"id": account, "by": "ledger"}));
    assert_eq!(m["action"], "update");
    assert_eq!(
        m["changes"],
        json!([{"field": "jobTitle", "old": old_title, "new": "Head of Rewards"}])
    );
    assert!(m["result"].as_str().unwrap().starts_with("done: "), "{m}");
    // Freshteam was asked for that employee alone, in every population.
    let lists: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/employees")
        .collect();
    assert_eq!(lists.len(), 5, "{lists:?}");
    for r in &lists {
        assert!(
            r.query.contains(&format!("employee_id={first_id}")),
            "read beyond the named employee: {}",
            r.query
        );
    }
    // At the destination: the first changed; the second and the leaver untouched.
    assert_eq!(env.user(&first_id).await["title"], "Head of Rewards");
    assert_ne!(env.user(&second_id).await["title"], "Chief Listener");
    assert_eq!(env.user(&leaver_id).await["active"], true);
    let after = env.versions().await;
    let changed: Vec<_> = after
        .iter()
        .filter(|v| !before.contains(v))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(changed, vec![first_id.clone()]);

    // The leaver, named, is deactivated (with the reason), and nobody else.
    let leaver = env
        .sync(&["--only", &leaver_id, "--state-file", state])
        .await;
    assert_eq!(leaver.code, 0, "{}", leaver.stderr);
    let m = steps(&leaver.json(), &leaver_id).clone();
    assert_eq!(
        (m["population"].as_str(), m["action"].as_str()),
        (Some("terminated"), Some("leaver"))
    );
    assert_eq!(env.user(&leaver_id).await["active"], false);
    assert_ne!(env.user(&second_id).await["title"], "Chief Listener");

    // An unknown ID is that member's error: a non-zero exit naming it, nothing written.
    let before = env.versions().await;
    let unknown = env
        .sync(&["--only", "E-99999", "--state-file", state])
        .await;
    assert_ne!(unknown.code, 0, "{}", unknown.stdout);
    assert_eq!(unknown.code, 3, "{}", unknown.stderr);
    let json = unknown.json();
    let m = steps(&json, "E-99999");
    assert_eq!(m["found"], false);
    assert!(m["error"].as_str().unwrap().contains("E-99999"), "{m}");
    assert_eq!(json["status"]["errors"][0]["employeeId"], "E-99999");
    assert_eq!(env.versions().await, before);
    let text = env
        .sync_file(&text_file, &["--only", "E-99999", "--state-file", state])
        .await;
    assert_eq!(text.code, 3);
    assert!(
        text.stdout
            .contains("Employee E-99999\n    Freshteam:   not found"),
        "{}",
        text.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_employees_manager_is_read_to_name_them_and_stays_as_it_is() {
    support::require_peers!(Scim2Server);
    let env = Env::start(20).await;
    let mapping = format!("{}    manager: reporting_to\n", Env::default_mapping());
    let file = env.write(
        "managed.yaml",
        &env.manifest(support::sync_env::API_KEY, &mapping),
    );
    let state = env.dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let first = env
        .sync_file(&file, &["--output", "json", "--state-file", state])
        .await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    // An employee with a manager, whose title changes.
    let employee = env
        .sim
        .employees()
        .into_iter()
        .find(|e| e["reporting_to_id"].is_number() && e["status"] == "active")
        .expect("an employee with a manager");
    let id = employee["employee_id"].as_str().unwrap().to_string();
    let manager = env
        .sim
        .employees()
        .into_iter()
        .find(|m| m["id"] == employee["reporting_to_id"])
        .unwrap()["employee_id"]
        .as_str()
        .unwrap()
        .to_string();
    env.sim
        .update_employee(&id, json!({"designation": "Head of Rewards"}))
        .unwrap();
    let before = env.user(&id).await;

    let run = env
        .sync_file(
            &file,
            &["--output", "json", "--only", &id, "--state-file", state],
        )
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let json = run.json();
    let m = steps(&json, &id);
    assert_eq!(m["values"]["manager"], manager.as_str(), "{m}");
    // The title alone changes: the manager is known, not cleared.
    assert_eq!(
        m["changes"],
        json!([{"field": "jobTitle", "old": before["title"], "new": "Head of Rewards"}])
    );
    let after = env.user(&id).await;
    let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    assert_eq!(after[enterprise]["manager"], before[enterprise]["manager"]);
    assert_eq!(after["title"], "Head of Rewards");
}

/// `--only` asks `spec.scope` like a full run: a named contractor is out of scope. Under
/// `Deactivate` a managed one becomes a leaver "out of scope"; under `Ignore` it is left
/// as it is; each step says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_named_employee_out_of_scope_is_said_and_handled_as_the_scope_says() {
    support::require_peers!(Scim2Server);
    let env = Env::start(30).await;
    let state = env.dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let first = env.sync(&["--state-file", state]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    // A member who becomes a contractor.
    let id = employee_id(4);
    env.sim
        .update_employee(&id, json!({"employee_type": "contractor"}))
        .unwrap();
    let scoped = |when: &str| {
        format!(
            "{}  scope:\n    filter: 'employee.employee_type != \"contractor\"'\n    whenOutOfScope: {when}\n",
            Env::default_mapping()
        )
    };

    let ignore = env.write(
        "ignore.yaml",
        &env.manifest(support::sync_env::API_KEY, &scoped("Ignore")),
    );
    let run = env
        .sync_file(
            &ignore,
            &["--output", "json", "--only", &id, "--state-file", state],
        )
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let json = run.json();
    let m = steps(&json, &id);
    assert_eq!(
        (&m["found"], &m["inScope"]),
        (&json!(true), &json!(false)),
        "{m}"
    );
    assert_eq!(m["action"], "skip", "{m}");
    assert_eq!(
        env.user(&id).await["active"],
        true,
        "Ignore left the member alone"
    );

    let deactivate = env.write(
        "deactivate.yaml",
        &env.manifest(support::sync_env::API_KEY, &scoped("Deactivate")),
    );
    let run = env
        .sync_file(&deactivate, &["--only", &id, "--state-file", state])
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("out of scope"), "{}", run.stdout);
    assert_eq!(
        env.user(&id).await["active"],
        false,
        "Deactivate made a leaver"
    );
}

/// A named employee's mapped values and a create's changes include the
/// `spec.mapping.attributes[]` targets, as the change rows name them.
#[tokio::test(flavor = "multi_thread")]
async fn a_named_employees_steps_show_the_mapped_attributes() {
    support::require_peers!(Scim2Server);
    let env = Env::start(5).await;
    let organization = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization";
    let mapping = format!(
        "{}    attributes:\n    - target: {organization}\n      value: Acme Ltd\n",
        Env::default_mapping()
    );
    let file = env.write(
        "org.yaml",
        &env.manifest(support::sync_env::API_KEY, &mapping),
    );
    let id = employee_id(2);
    let run = env
        .sync_file(&file, &["--output", "json", "--only", &id])
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let json = run.json();
    let m = steps(&json, &id);
    assert_eq!(m["action"], "create", "{m}");
    assert_eq!(m["values"][organization], "Acme Ltd", "{m}");
    assert!(
        m["changes"]
            .as_array()
            .unwrap()
            .contains(&json!({"field": organization, "new": "Acme Ltd"})),
        "{m}"
    );
    let text = env.sync_file(&file, &["--only", &id, "--dry-run"]).await;
    assert!(
        text.stdout.contains(&format!("{organization}=Acme Ltd")),
        "{}",
        text.stdout
    );
}
