//! Through the real `sync` binary: accounts that vanish from the destination are created
//! again and invited again (against the Reward Gateway-shaped service, which closes down
//! leavers' accounts and deletes accounts by hand), and a partial service (500 to
//! attribute-path PATCHes, attributes dropped silently) converges in one run.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::smtp::SmtpServer;
use support::sync_env::{employee_id, Env, API_KEY};
use support::Peer;

const MAIL: &str = "  welcomeEmail: {enabled: true, loginUrl: \"https://rewards.example.com/activate\"}\n  safety: {maxLeaversPercent: 50}\n";

fn args<'a>(relay: &'a str, state: &'a str, mode: &'a str, report: &'a str) -> Vec<&'a str> {
    vec![
        "--error-report",
        report,
        "--output",
        "json",
        "--smtp-url",
        relay,
        "--mail-from",
        "rewards@acme.example",
        "--state-file",
        state,
        "--mode",
        mode,
    ]
}

/// Invitations per recipient.
fn invitations(smtp: &SmtpServer) -> HashMap<String, usize> {
    let mut per = HashMap::new();
    for m in smtp.messages() {
        for t in &m.to {
            *per.entry(t.clone()).or_insert(0) += 1;
        }
    }
    per
}

fn email_of(env: &Env, n: usize) -> String {
    env.sim.employee(&employee_id(n)).unwrap()["official_email"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The rows of a run's report (`--error-report`) about one employee.
fn report_rows(report: &str, employee: &str) -> Vec<String> {
    std::fs::read_to_string(report)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("{employee},")))
        .map(str::to_string)
        .collect()
}

const CREATED_AGAIN: &str = "account missing in the destination: created again";

#[tokio::test(flavor = "multi_thread")]
async fn a_returner_after_close_down_and_a_hand_deleted_account_get_new_accounts_and_invitations() {
    support::require_peers!(PythonPeers, Aiosmtpd);
    let env = Env::start_on(
        6,
        Peer::RewardGateway {
            limit: 1000,
            window: Duration::from_secs(60),
        },
    )
    .await;
    let smtp = SmtpServer::start();
    let relay = smtp.url();
    let state = env.dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let report = env.dir.path().join("report.csv");
    let report = report.to_str().unwrap();
    let file = env.write(
        "acme.yaml",
        &env.manifest(API_KEY, &format!("{}{MAIL}", Env::default_mapping())),
    );
    let first = env
        .sync_file(&file, &args(&relay, state, "full", report))
        .await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.summary()["created"], 6, "{}", first.stdout);
    smtp.wait_for(6, Duration::from_secs(10));
    // R1 leaves, is closed down and forgotten by a full run before returning; R2 leaves,
    // is closed down and returns before any run notices; D is deleted by hand.
    let (r1, r2, d) = (2, 4, 3);
    let first_ids: Vec<Value> = account_ids(&env, &[r1, r2, d]).await;
    let set_status = |n: usize, status: &str| {
        env.sim
            .update_employee(&employee_id(n), json!({ "status": status }))
            .unwrap();
    };
    let run = |mode: &'static str| {
        let (env, file, relay) = (&env, &file, &relay);
        async move {
            let run = env.sync_file(file, &args(relay, state, mode, report)).await;
            assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
            run
        }
    };
    set_status(r1, "inactive");
    assert_eq!(run("auto").await.summary()["leavers"], 1);
    assert_eq!(env.scim.close_down().await, 1);
    assert!(env.scim.delete_by_hand(&employee_id(d)).await);

    // A full reconciliation: D's account is created again; R1's is gone and R1 is a
    // leaver: forgotten, nothing deactivated.
    let full = run("full").await;
    assert_eq!(full.summary()["created"], 1, "{}", full.stdout);
    assert_eq!(full.summary()["leavers"], 0, "{}", full.stdout);
    let rows = report_rows(report, &employee_id(d));
    assert!(rows.iter().any(|r| r.contains(CREATED_AGAIN)), "{rows:?}");

    set_status(r2, "inactive");
    assert_eq!(run("auto").await.summary()["leavers"], 1);
    assert_eq!(env.scim.close_down().await, 1);
    set_status(r1, "active");
    set_status(r2, "active");
    // An incremental run reads both returners (changed): R2's ledger entry names the
    // vanished account, R1 is simply new again; both get accounts.
    let back = run("auto").await;
    assert_eq!(
        back.json()["status"]["mode"],
        "Incremental",
        "{}",
        back.stdout
    );
    assert_eq!(back.summary()["created"], 2, "{}", back.stdout);
    let rows = report_rows(report, &employee_id(r2));
    assert!(rows.iter().any(|r| r.contains(CREATED_AGAIN)), "{rows:?}");
    let now_ids = account_ids(&env, &[r1, r2, d]).await;
    for (before, after) in first_ids.iter().zip(&now_ids) {
        assert_ne!(before, after);
    }
    smtp.wait_for(9, Duration::from_secs(10));

    // Once more: nothing written, nobody invited again.
    let quiet = run("full").await;
    assert_eq!(quiet.summary()["created"], 0, "{}", quiet.stdout);
    assert_eq!(quiet.summary()["updated"], 0, "{}", quiet.stdout);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let per = invitations(&smtp);
    for n in 1..=6 {
        let want = if [r1, r2, d].contains(&n) { 2 } else { 1 };
        assert_eq!(per.get(&email_of(&env, n)), Some(&want), "E-{n}: {per:?}");
    }
}

/// The destination ids of these employees' accounts.
async fn account_ids(env: &Env, ns: &[usize]) -> Vec<Value> {
    let mut ids = Vec::new();
    for n in ns {
        ids.push(env.user(&employee_id(*n)).await["id"].clone());
    }
    ids
}

/// Against the partial service (`--bulk auto` or `off`): a first import, then a second
/// run that must write nothing; the environment and the state file, for more runs.
async fn import_twice(bulk: &'static str) -> (Env, String) {
    let env = Env::start_on(8, Peer::Partial).await;
    let state = env
        .dir
        .path()
        .join("state.json")
        .to_str()
        .unwrap()
        .to_string();
    let first = sync_partial(&env, &state, bulk).await;
    assert_eq!(first.summary()["created"], 8, "{}", first.stdout);
    // The service dropped title and department: what it answered (or, over /Bulk, one
    // member read back) said so, and the second run writes nothing (a warning each).
    let second = sync_partial(&env, &state, bulk).await;
    assert_eq!(writes(&second), Some(0), "{bulk}: {}", second.api_calls());
    assert_eq!(second.summary()["unchanged"], 8, "{}", second.stdout);
    (env, state)
}

async fn sync_partial(env: &Env, state: &str, bulk: &str) -> support::sync_env::Run {
    let run = env
        .sync(&["--state-file", state, "--mode", "full", "--bulk", bulk])
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    run
}

fn writes(run: &support::sync_env::Run) -> Option<u64> {
    run.api_calls()["destinationWrites"].as_u64()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_service_converges_in_one_run_over_bulk() {
    support::require_peers!(PythonPeers);
    import_twice("auto").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_service_converges_in_one_run_and_later_runs_start_with_the_form_that_works() {
    support::require_peers!(PythonPeers);
    let (env, state) = import_twice("off").await;
    let rename = |n: usize, last: &str| {
        env.sim
            .update_employee(&employee_id(n), json!({"last_name": last}))
            .unwrap();
    };
    // A rename: the attribute-path PATCH fails (500, retried), the whole attribute works.
    rename(2, "Byron");
    let third = sync_partial(&env, &state, "off").await;
    assert_eq!(third.summary()["updated"], 1, "{}", third.stdout);
    assert_eq!(
        env.user(&employee_id(2)).await["name"]["familyName"],
        "Byron"
    );
    assert!(
        writes(&third) > Some(1),
        "the 500 first: {}",
        third.api_calls()
    );

    // The next run starts with the form that worked: one write, no 500.
    rename(3, "King");
    let fourth = sync_partial(&env, &state, "off").await;
    assert_eq!(fourth.summary()["updated"], 1, "{}", fourth.stdout);
    assert_eq!(writes(&fourth), Some(1), "{}", fourth.api_calls());
    assert_eq!(
        env.user(&employee_id(3)).await["name"]["familyName"],
        "King"
    );
}
