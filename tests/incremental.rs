//! Incremental runs and full reconciliations through the real `sync` binary, against the
//! project's Freshteam simulator (which honours `updated_since`) and a real scim2-server.

mod support;

use std::time::Duration;

use freshteam_simulator::Faults;
use serde_json::{json, Value};
use support::sync_env::{employee_id, Env, Run, API_KEY};

const EMPLOYEES: usize = 60;

async fn auto(env: &Env) -> Run {
    let state = env.dir.path().join("state.json");
    let run = env
        .sync(&["--state-file", state.to_str().unwrap(), "--mode", "auto"])
        .await;
    assert!(matches!(run.code, 0 | 3), "{}\n{}", run.stdout, run.stderr);
    run
}

fn mode(run: &Run) -> (String, String) {
    let status = &run.json()["status"];
    (
        status["mode"].as_str().unwrap_or_default().to_string(),
        status["modeReason"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn calls(run: &Run, field: &str) -> u64 {
    run.api_calls()[field].as_u64().unwrap_or(0)
}

fn cursor(env: &Env) -> Value {
    let text = std::fs::read_to_string(env.dir.path().join("state.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["ledger"]["cursor"].clone()
}

/// The `updated_since` values the simulator was asked for since it was last cleared.
fn updated_since_asked(env: &Env) -> Vec<String> {
    let mut seen: Vec<String> = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.path == "/api/employees")
        .filter_map(|r| {
            r.query
                .split('&')
                .find_map(|kv| kv.strip_prefix("updated_since="))
                .map(str::to_string)
        })
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_between_two_incremental_runs_is_applied_by_the_second_reading_only_it() {
    support::require_peers!(Scim2Server);
    let env = Env::start(EMPLOYEES).await;
    let first = auto(&env).await;
    assert_eq!(first.summary()["created"], EMPLOYEES as u64);
    let (kind, why) = mode(&first);
    assert_eq!(kind, "Full");
    assert!(why.contains("first run"), "{why}");
    assert!(
        cursor(&env)["since"].is_string(),
        "no cursor after a full run"
    );

    env.sim
        .update_employee(&employee_id(3), json!({"designation": "Chief Tea Officer"}))
        .unwrap();
    env.sim.clear_requests();
    let second = auto(&env).await;
    assert_eq!(mode(&second).0, "Incremental", "{}", second.stdout);
    assert_eq!(second.summary()["updated"], 1, "{}", second.stdout);
    assert_eq!(
        env.user(&employee_id(3)).await["title"],
        "Chief Tea Officer"
    );
    // One page per population pass instead of every page of every pass, and only the
    // changed employee's account looked up instead of the whole list.
    assert!(
        calls(&second, "freshteamList") * 2 <= calls(&first, "freshteamList"),
        "incremental {} vs full {} list pages",
        calls(&second, "freshteamList"),
        calls(&first, "freshteamList")
    );
    assert_eq!(calls(&first, "destinationLookups"), 0);
    assert!(
        calls(&second, "destinationLookups") >= 1,
        "{}",
        second.stdout
    );
    // Every pass asked for changes since a date, a day before the cursor at most.
    let asked = updated_since_asked(&env);
    assert_eq!(asked.len(), 1, "{asked:?}");
    let since = cursor(&env)["since"].as_str().unwrap().to_string();
    assert!(
        asked[0].as_str() < &since[..10],
        "{asked:?} vs cursor {since}"
    );

    // The overlap reads the same change again: it is unchanged now, nothing is written.
    let third = auto(&env).await;
    assert_eq!(mode(&third).0, "Incremental");
    assert_eq!(calls(&third, "destinationWrites"), 0, "{}", third.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_updated_since_cannot_see_waits_for_the_next_full_reconciliation() {
    support::require_peers!(Scim2Server);
    let env = Env::start(EMPLOYEES).await;
    auto(&env).await;
    // A change Freshteam does not date (updated_at kept), and a hand edit in the
    // destination: neither is visible to an incremental run.
    let before = env.sim.employee(&employee_id(4)).unwrap();
    env.sim
        .update_employee(
            &employee_id(4),
            json!({"designation": "Quiet Change", "updated_at": before["updated_at"]}),
        )
        .unwrap();
    let drifted = env.user(&employee_id(7)).await;
    env.scim
        .patch_raw_user(
            drifted["id"].as_str().unwrap(),
            json!([{"op": "replace", "path": "title", "value": "Edited By Hand"}]),
        )
        .await;
    let incremental = auto(&env).await;
    assert_eq!(mode(&incremental).0, "Incremental");
    assert_eq!(
        incremental.summary()["updated"],
        0,
        "{}",
        incremental.stdout
    );
    assert_ne!(env.user(&employee_id(4)).await["title"], "Quiet Change");

    let state = env.dir.path().join("state.json");
    let full = env
        .sync(&["--state-file", state.to_str().unwrap(), "--mode", "full"])
        .await;
    assert_eq!(full.code, 0, "{}", full.stderr);
    assert_eq!(mode(&full).0, "Full");
    assert_eq!(full.summary()["updated"], 2, "{}", full.stdout);
    assert_eq!(env.user(&employee_id(4)).await["title"], "Quiet Change");
    assert_ne!(env.user(&employee_id(7)).await["title"], "Edited By Hand");

    // A spec change makes the next run full by itself.
    let file = env.write(
        "acme.yaml",
        &env.manifest(
            API_KEY,
            &format!(
                "{}    employeeNumber: employee_id\n",
                Env::default_mapping()
            ),
        ),
    );
    let changed = env
        .sync_file(
            &file,
            &[
                "--output",
                "json",
                "--state-file",
                state.to_str().unwrap(),
                "--mode",
                "auto",
            ],
        )
        .await;
    let (kind, why) = mode(&changed);
    assert_eq!(kind, "Full", "{}", changed.stdout);
    assert!(why.contains("spec changed"), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn leavers_and_hires_between_incremental_runs_are_seen_by_the_next() {
    support::require_peers!(Scim2Server);
    let env = Env::start(EMPLOYEES).await;
    auto(&env).await;
    let quiet = auto(&env).await;
    assert_eq!(mode(&quiet).0, "Incremental");
    assert_eq!(calls(&quiet, "destinationWrites"), 0);

    env.sim
        .update_employee(&employee_id(5), json!({"terminated": true}))
        .unwrap();
    env.sim
        .update_employee(&employee_id(6), json!({"status": "inactive"}))
        .unwrap();
    env.sim
        .add_employee(json!({
            "employee_id": "E-NEW", "first_name": "Nia", "last_name": "New",
            "official_email": "nia.new@acme.example", "status": "active",
            "draft": false, "terminated": false, "deleted": false
        }))
        .unwrap();
    let next = auto(&env).await;
    assert_eq!(mode(&next).0, "Incremental", "{}", next.stdout);
    assert_eq!(next.summary()["leavers"], 2, "{}", next.stdout);
    assert_eq!(next.summary()["created"], 1, "{}", next.stdout);
    assert_eq!(env.user(&employee_id(5)).await["active"], false);
    assert_eq!(env.user(&employee_id(6)).await["active"], false);
    assert_eq!(env.user("E-NEW").await["active"], true);
    // Everyone else is untouched and still active.
    let active = env
        .scim
        .users()
        .await
        .iter()
        .filter(|u| u["active"] == true)
        .count();
    assert_eq!(active, EMPLOYEES - 2 + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cursor_survives_a_crash_and_a_failed_run_with_no_gap() {
    support::require_peers!(Scim2Server);
    let env = Env::start(EMPLOYEES).await;
    auto(&env).await;
    let after_first = cursor(&env);

    env.sim
        .update_employee(&employee_id(8), json!({"designation": "Before The Crash"}))
        .unwrap();
    // Killed mid-run: every Freshteam answer is slow, the process dies while reading.
    env.sim.set_faults(Faults {
        latency: Duration::from_millis(400),
        ..Faults::default()
    });
    let state = env.dir.path().join("state.json");
    let file = env.default_file();
    let mut child = env.spawn_sync(
        &file,
        &["--state-file", state.to_str().unwrap(), "--mode", "auto"],
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(child.try_wait().unwrap().is_none(), "the run ended early");
    child.kill().await.unwrap();
    assert_eq!(cursor(&env), after_first, "a killed run moved the cursor");

    // A run that fails (Freshteam answers 404 to everything) leaves it too.
    env.sim.set_faults(Faults {
        unknown_account: true,
        ..Faults::default()
    });
    let failed = env
        .sync(&["--state-file", state.to_str().unwrap(), "--mode", "auto"])
        .await;
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    assert_eq!(cursor(&env), after_first, "a failed run moved the cursor");

    env.sim.set_faults(Faults::default());
    let next = auto(&env).await;
    assert_eq!(mode(&next).0, "Incremental");
    assert_eq!(next.summary()["updated"], 1, "{}", next.stdout);
    assert_eq!(env.user(&employee_id(8)).await["title"], "Before The Crash");
    assert!(cursor(&env)["since"].as_str() > after_first["since"].as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_due_full_reconciliation_makes_an_auto_run_full_but_not_an_incremental_one() {
    support::require_peers!(Scim2Server);
    let env = Env::start(EMPLOYEES).await;
    auto(&env).await;
    // The last full reconciliation eight days back: the default weekly one is due.
    let path = env.dir.path().join("state.json");
    let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let long_ago = (chrono::Utc::now() - chrono::Duration::days(8))
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    state["ledger"]["cursor"]["lastFull"] = json!(long_ago);
    std::fs::write(&path, state.to_string()).unwrap();
    env.sim
        .update_employee(&employee_id(5), json!({"designation": "Due Check"}))
        .unwrap();

    let asked = env
        .sync(&[
            "--state-file",
            path.to_str().unwrap(),
            "--mode",
            "incremental",
        ])
        .await;
    assert_eq!(asked.code, 0, "{}", asked.stderr);
    assert_eq!(mode(&asked).0, "Incremental", "{}", asked.stdout);
    assert_eq!(asked.summary()["updated"], 1, "{}", asked.stdout);
    assert_eq!(
        cursor(&env)["lastFull"],
        json!(long_ago),
        "an incremental run moved lastFull"
    );

    let due = auto(&env).await;
    let (kind, why) = mode(&due);
    assert_eq!(kind, "Full", "{}", due.stdout);
    assert!(
        why.contains("full reconciliation scheduled 'weekly' was due"),
        "{why}"
    );
    assert_ne!(cursor(&env)["lastFull"], json!(long_ago));
    // Done: the next one continues incrementally.
    assert_eq!(mode(&auto(&env).await).0, "Incremental");
}

/// An incremental run reads only the changed employees, and the managers they name by
/// detail: a changed employee keeps their manager link when the title alone changes, and
/// moves to a new manager who did not change.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_employees_unchanged_manager_is_kept_by_an_incremental_run() {
    support::require_peers!(Scim2Server);
    let env = Env::start(EMPLOYEES).await;
    let mapping = format!("{}    manager: reporting_to\n", Env::default_mapping());
    let file = env.write("managed.yaml", &env.manifest(API_KEY, &mapping));
    let state = env.dir.path().join("state.json");
    let args = [
        "--output",
        "json",
        "--state-file",
        state.to_str().unwrap(),
        "--mode",
        "auto",
    ];
    let first = env.sync_file(&file, &args).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let id = employee_id(5);
    assert!(env.sim.employee(&id).unwrap()["reporting_to_id"].is_number());
    let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let before = env.user(&id).await;
    assert!(
        before[enterprise]["manager"]["value"].is_string(),
        "{before}"
    );
    env.sim
        .update_employee(&id, json!({"designation": "Head of Rewards"}))
        .unwrap();

    let second = env.sync_file(&file, &args).await;
    assert_eq!(mode(&second).0, "Incremental", "{}", second.stdout);
    assert_eq!(second.summary()["updated"], 1, "{}", second.stdout);
    let after = env.user(&id).await;
    assert_eq!(after["title"], "Head of Rewards");
    assert_eq!(
        after[enterprise]["manager"]["value"], before[enterprise]["manager"]["value"],
        "an incremental run cleared the manager of a changed employee"
    );

    // A new manager who did not change themselves: read by one detail call.
    let new_manager = env.sim.employee(&employee_id(9)).unwrap();
    env.sim
        .update_employee(&id, json!({"reporting_to_id": new_manager["id"]}))
        .unwrap();
    env.sim.clear_requests();
    let third = env.sync_file(&file, &args).await;
    assert_eq!(mode(&third).0, "Incremental", "{}", third.stdout);
    assert_eq!(third.summary()["updated"], 1, "{}", third.stdout);
    let details = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/employees/"))
        .count();
    assert_eq!(details, 1, "one detail call for the new manager");
    assert_eq!(
        env.user(&id).await[enterprise]["manager"]["value"],
        env.user(&employee_id(9)).await["id"]
    );
}
