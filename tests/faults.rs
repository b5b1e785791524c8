//! Fault injection, end to end: the real `sync` binary against the Freshteam simulator
//! (server-side fault switches) and a real `scim2-server` behind a fault-injecting TCP
//! front.
//!
//! Covered elsewhere, not repeated here:
//! - a Freshteam request that stalls past the client's timeout (30 s, not settable from
//!   a manifest): `source::client` tests `a_timeout_is_retried`;
//! - Freshteam 5xx on every 4th call and a 3-per-window rate limit through `sync`:
//!   `tests/sync_cli.rs`;
//! - SCIM 503s and a lost answer to a single POST, 409 and 412 inside and outside
//!   `/Bulk`: `tests/scim_client.rs`.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use freshteam_simulator::{Faults, SimConfig};
use serde_json::{json, Value};
use support::fault_front::{Fault, Front};
use support::sync_env::{employee_id, Env, PAGE};
use support::ScimServer;

// ---------------------------------------------------------------- helpers

/// Users per externalId (accounts without one under "").
async fn members_per_employee(scim: &ScimServer) -> HashMap<String, usize> {
    let mut per = HashMap::new();
    for u in scim.users().await {
        let id = u["externalId"].as_str().unwrap_or_default().to_string();
        *per.entry(id).or_insert(0) += 1;
    }
    per
}

/// Every active employee of the simulator has exactly one member, and no one else has.
async fn assert_one_member_per_employee(env: &Env) {
    let per = members_per_employee(&env.scim).await;
    let active: Vec<String> = env
        .sim
        .employees()
        .iter()
        .filter(|e| e["status"] == "active")
        .map(|e| e["employee_id"].as_str().unwrap().to_string())
        .collect();
    for id in &active {
        assert_eq!(per.get(id), Some(&1), "{id} has {:?} members", per.get(id));
    }
    assert_eq!(
        per.values().sum::<usize>(),
        active.len(),
        "members beyond the employees: {per:?}"
    );
}

fn u64_at(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number at {key} in {v}"))
}

/// The same import again makes no write at all.
async fn assert_converged(env: &Env, members: u64) {
    let again = env.sync(&[]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let s = again.summary();
    assert_eq!(
        (
            u64_at(&s, "created"),
            u64_at(&s, "updated"),
            u64_at(&s, "unchanged")
        ),
        (0, 0, members),
        "{s}"
    );
    assert_eq!(u64_at(&again.api_calls(), "destinationWrites"), 0);
}

// ---------------------------------------------------------------- Freshteam faults

/// List pages a run reads besides the current staff's: one (empty) page each for the
/// inactive, terminated, deleted and draft passes.
const LEAVER_PASSES: u64 = 4;

#[tokio::test(flavor = "multi_thread")]
async fn truncated_freshteam_pages_are_read_again() {
    support::require_peers!(Scim2Server);
    let env = Env::start(60).await;
    env.sim.set_faults(Faults {
        truncate_every: Some(3),
        ..Faults::default()
    });
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary()["created"], 60);
    assert_eq!(run.summary()["errors"], 0);

    let log = env.sim.requests();
    let truncated = log.iter().filter(|r| r.truncated).count() as u64;
    let pages = 60usize.div_ceil(PAGE) as u64;
    assert!(truncated >= 2, "the fault never fired: {log:?}");
    let calls = run.api_calls();
    assert_eq!(u64_at(&calls, "freshteamRetries"), truncated);
    assert_eq!(
        u64_at(&calls, "freshteamList"),
        pages + LEAVER_PASSES + truncated
    );
    assert_one_member_per_employee(&env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_freshteam_answers_are_waited_for_not_retried() {
    support::require_peers!(Scim2Server);
    let env = Env::start(60).await;
    env.sim.set_faults(Faults {
        stall_every: Some(4),
        stall_for: Duration::from_millis(1500),
        latency: Duration::from_millis(40),
        ..Faults::default()
    });
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary()["created"], 60);
    assert!(env.sim.requests().iter().filter(|r| r.stalled).count() >= 2);
    let calls = run.api_calls();
    assert_eq!(
        u64_at(&calls, "freshteamRetries"),
        0,
        "a slow answer is no failure"
    );
    assert_eq!(
        u64_at(&calls, "freshteamList"),
        60usize.div_ceil(PAGE) as u64 + LEAVER_PASSES
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_storm_is_waited_out_with_one_throttled_call_per_window() {
    support::require_peers!(Scim2Server);
    // 14 pages, 4 leaver and draft passes and 1 lookup against 2 requests per 1-second
    // window.
    let n = 14 * PAGE;
    let env = Env::start(n).await;
    env.sim.set_rate_limit(Some(2), Duration::from_secs(1));
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary()["created"], n as u64);

    let throttled = env.sim.throttled_calls_per_window();
    assert!(!throttled.is_empty(), "the quota was never reached");
    for (window, calls) in &throttled {
        assert_eq!(*calls, 1, "{calls} throttled calls in window {window}");
    }
    let total: u32 = throttled.values().sum();
    let calls = run.api_calls();
    assert_eq!(u64_at(&calls, "freshteamThrottled"), total as u64);
    assert_eq!(
        u64_at(&calls, "freshteamRetries"),
        0,
        "429s are no failures"
    );
    assert_eq!(
        env.sim.requests().len(),
        15 + LEAVER_PASSES as usize + total as usize,
        "every throttled call is repeated once, nothing else"
    );
    let early = env.sim.requests_before_reopen();
    assert!(
        early.is_empty(),
        "sent while the window was known to be closed: {early:?}"
    );
    assert_one_member_per_employee(&env).await;
}

// ---------------------------------------------------------------- SCIM faults

#[tokio::test(flavor = "multi_thread")]
async fn a_user_name_clash_is_an_error_row_for_that_member_only() {
    support::require_peers!(Scim2Server);
    let mut env = Env::start(12).await;
    let front = Front::start(&env.scim).await;
    env.scim_url = front.url.clone();
    let email = |n: usize| {
        env.sim.employee(&employee_id(n)).unwrap()["official_email"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (before, during) = (email(3), email(5));
    // An account the integration does not manage already holds E-00003's address …
    let planted = env
        .scim
        .create_raw_user(json!({"userName": before, "displayName": "Shared inbox"}))
        .await;
    // … and one takes E-00005's after the destination was read, before the writes: the
    // service answers 409.
    front.hold_writes_from(0);
    let plant_during_run = async {
        front.wait_held(1).await;
        let late = env
            .scim
            .create_raw_user(json!({"userName": during, "displayName": "Late arrival"}))
            .await;
        front.release();
        late
    };
    let (run, late) = tokio::join!(env.sync(&[]), plant_during_run);

    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let v = run.json();
    assert_eq!(v["status"]["phase"], "PartiallySucceeded");
    assert_eq!(v["status"]["summary"]["created"], 10);
    assert_eq!(v["status"]["summary"]["errors"], 2);
    let rows = v["status"]["errors"].as_array().unwrap();
    let row = |n: usize| {
        rows.iter()
            .find(|r| r["employeeId"] == employee_id(n))
            .unwrap_or_else(|| panic!("no error row for {}: {rows:?}", employee_id(n)))
    };
    assert_eq!(row(3)["field"], "email");
    let planned = row(3)["message"].as_str().unwrap();
    assert!(
        planned.contains(&format!(
            "does not manage (id {})",
            planted["id"].as_str().unwrap()
        )),
        "{planned}"
    );
    assert_eq!(row(5)["field"], "email");
    assert!(
        row(5)["message"].as_str().unwrap().contains("409"),
        "{}",
        row(5)
    );

    // The two accounts are as they were; everyone else has exactly one member.
    for account in [&planted, &late] {
        let now = env
            .scim
            .user(account["id"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(now["meta"]["version"], account["meta"]["version"]);
        assert!(now.get("externalId").is_none_or(Value::is_null));
    }
    let per = members_per_employee(&env.scim).await;
    assert_eq!(per.get(""), Some(&2));
    for n in (1..=12).filter(|n| ![3, 5].contains(n)) {
        assert_eq!(per.get(&employee_id(n)), Some(&1));
    }

    // The next run reports both clashes before writing anything.
    let again = env.sync(&[]).await;
    assert_eq!(again.code, 3, "{}", again.stderr);
    assert_eq!(again.summary()["errors"], 2);
    assert_eq!(again.summary()["unchanged"], 10);
    assert_eq!(u64_at(&again.api_calls(), "destinationWrites"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_503_and_a_lost_bulk_answer_are_retried_without_duplicates() {
    support::require_peers!(Scim2Server);
    let mut env = Env::start(20).await;
    let front = Front::start(&env.scim).await;
    env.scim_url = front.url.clone();
    // The first /Bulk gets a 503; the second is applied but its answer never arrives.
    front.script_writes(&[Fault::Unavailable, Fault::LoseAnswer]);
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.summary()["created"], 20);
    assert!(front.writes() >= 3, "{} writes", front.writes());
    assert_one_member_per_employee(&env).await;
    assert_converged(&env, 20).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_503_and_a_lost_answer_on_single_writes_are_retried_without_duplicates() {
    support::require_peers!(Scim2Server);
    let mut env = Env::start(20).await;
    let front = Front::start(&env.scim).await;
    env.scim_url = front.url.clone();
    front.script_writes_once_each(&[
        Fault::Unavailable,
        Fault::LoseAnswer,
        Fault::Unavailable,
        Fault::LoseAnswer,
    ]);
    let run = env.sync(&["--bulk", "off"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.summary()["created"], 20);
    assert_eq!(front.writes(), 24, "20 creates and 4 retries");
    assert_one_member_per_employee(&env).await;
    assert_converged(&env, 20).await;
}

// ---------------------------------------------------------------- a crash

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_the_writes_then_a_rerun_converges_without_duplicates() {
    support::require_peers!(Scim2Server);
    let n = 150;
    let mut env = Env::start(n).await;
    let front = Front::start(&env.scim).await;
    env.scim_url = front.url.clone();
    let file = env.default_file();

    // Let 40 creates through, hold the rest, and kill `sync` while they hang.
    front.hold_writes_from(40);
    let mut child = env.spawn_sync(&file, &["--bulk", "off"]);
    front.wait_held(1).await;
    child.kill().await.expect("SIGKILL sync");
    // The held requests reach the server after all: applied, their answers lost.
    front.release();
    front.wait_idle().await;
    let before = env.scim.users().await.len();
    assert!(
        (40..n).contains(&before),
        "{before} members: the kill did not land during the writes"
    );

    let rerun = env.sync(&["--bulk", "off"]).await;
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    let s = rerun.summary();
    assert_eq!(u64_at(&s, "created") as usize, n - before, "{s}");
    assert_eq!(u64_at(&s, "unchanged") as usize, before, "{s}");
    assert_one_member_per_employee(&env).await;
    assert_converged(&env, n as u64).await;
}

// ---------------------------------------------------------------- a mixed population

#[tokio::test(flavor = "multi_thread")]
async fn all_faults_at_once_still_converge() {
    support::require_peers!(Scim2Server);
    // Inactive employees too, so that leavers and skips go through the same faults.
    let env = Env::with(SimConfig {
        employees: 80,
        page_size: PAGE,
        inactive_percent: 10.0,
        ..SimConfig::default()
    })
    .await;
    env.sim.set_faults(Faults {
        fail_every: Some(5),
        truncate_every: Some(4),
        latency: Duration::from_millis(5),
        ..Faults::default()
    });
    env.sim.set_rate_limit(Some(6), Duration::from_secs(1));
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.summary();
    let active = env
        .sim
        .employees()
        .iter()
        .filter(|e| e["status"] == "active")
        .count() as u64;
    assert_eq!(u64_at(&s, "created"), active);
    assert_eq!(u64_at(&s, "skipped"), 80 - active);
    assert_one_member_per_employee(&env).await;

    env.sim.set_faults(Faults::default());
    env.sim.set_rate_limit(None, Duration::from_secs(60));
    assert_converged_with_skips(&env, active, 80 - active).await;
}

async fn assert_converged_with_skips(env: &Env, members: u64, skipped: u64) {
    let again = env.sync(&[]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let s = again.summary();
    assert_eq!(u64_at(&s, "unchanged"), members, "{s}");
    assert_eq!(u64_at(&s, "skipped"), skipped, "{s}");
    assert_eq!(u64_at(&again.api_calls(), "destinationWrites"), 0);
}

/// A kill between "members created" and the end of the run loses no one from the
/// ledger: the ledger is saved before the creates, and the next run adopts whatever
/// exists. An employee created before the kill and then removed from Freshteam for
/// good is found as a leaver.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_the_creates_keeps_everyone_in_the_ledger() {
    support::require_peers!(Scim2Server);
    let n = 100;
    let mut env = Env::start(n).await;
    let front = Front::start(&env.scim).await;
    env.scim_url = front.url.clone();
    let file = env.default_file();
    let state = env.dir.path().join("state.json");
    let state_arg = state.to_str().unwrap().to_string();

    front.hold_writes_from(30);
    let mut child = env.spawn_sync(&file, &["--bulk", "off", "--state-file", &state_arg]);
    front.wait_held(1).await;
    child.kill().await.expect("SIGKILL sync");
    front.release();
    front.wait_idle().await;
    let before = env.scim.users().await.len();
    assert!(
        (30..n).contains(&before),
        "{before} members before the kill"
    );

    // One employee who got an account before the kill is deleted forever.
    let gone = employee_id(1);
    assert!(env.scim.user_by_external_id(&gone).await.is_some());
    assert!(env.sim.remove_employee(&gone));
    let rerun = env
        .sync(&["--bulk", "off", "--state-file", &state_arg])
        .await;
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    let s = rerun.summary();
    assert_eq!(u64_at(&s, "leavers"), 1, "{s}");
    assert_eq!(env.user(&gone).await["active"], false);
    assert_eq!(u64_at(&s, "created") as usize, n - before, "{s}");
    // One member per employee, the removed one's kept (inactive): no duplicates.
    let users = env.scim.users().await;
    let ids: std::collections::HashSet<&str> = users
        .iter()
        .filter_map(|u| u["externalId"].as_str())
        .collect();
    assert_eq!((users.len(), ids.len()), (n, n));
}
