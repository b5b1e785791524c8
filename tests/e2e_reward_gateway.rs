//! Reward Gateway as it really is, through the operator: the real `freshteam-operator run`
//! (started as the chart runs it, through the harness in tests/support/e2e.rs) on a real
//! control plane, against the Reward Gateway-shaped peer (`tests/peers/reward_gateway.py`:
//! a fixed window per endpoint announced in `X-Rate-Limit-*`, 429 without `Retry-After`,
//! no `/Bulk`, pages of at most 100, Reward Gateway's member validation), with the limit
//! scaled down so that an import of hundreds takes seconds.
//!
//! Without the control-plane binaries the suite skips, loudly, unless
//! FRESHTEAM_E2E_REQUIRED is set (CI sets it).

#[path = "support/e2e.rs"]
mod harness;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use freshteam_operator::api::{ImportPhase, ImportRun, FULL_RECONCILE_REQUESTED_AT};
use harness::*;
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};
use support::sync_env::employee_id;
use support::{wait_until, Peer};

/// The scaled-down limit: 120 requests per endpoint per 4-second window (the peer, like
/// Reward Gateway, announces the reset in whole seconds).
const LIMIT: u32 = 120;
const WINDOW: Duration = Duration::from_secs(4);
/// Invitations as fast as the sink takes them: the mailer's own pace is not under test.
fn fast_mail(env: &Env) -> String {
    format!("--smtp-url={}?rate=2000&burst=50", env.smtp.url())
}

/// Names Reward Gateway refuses, with the member field each breaks.
const REFUSED: [(usize, &str, &str, &str); 3] = [
    (7, "first_name", "R2-D2", "firstName"),
    (8, "last_name", "<b>Smith</b>", "lastName"),
    (
        9,
        "first_name",
        "Maximilianmaximilianmaximilianmaximilianmaximilian1",
        "firstName",
    ),
];

/// The manifest with the Reward Gateway profile and, optionally, another simulator.
fn manifest(env: &Env, name: &str, published: bool, source: Option<&str>) -> Value {
    let mut m = env.manifest(name, published, &[]);
    m["spec"]["destination"]["scim"]["profile"] = json!("RewardGateway");
    if let Some(url) = source {
        m["spec"]["source"]["baseUrl"] = json!(url);
    }
    m
}

async fn publish(env: &Env, name: &str) {
    env.integrations()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"published": true}})),
        )
        .await
        .unwrap();
}

/// Asks for a run of `name` and waits for its end.
async fn run_once(env: &Env, name: &str, request: &str, timeout: Duration) -> ImportRun {
    let before = env.runs_of(name).await.len();
    env.annotate(name, request).await;
    eventually(Duration::from_secs(30), "the requested run", || async {
        env.runs_of(name).await.len() > before
    })
    .await;
    env.wait_run_done(name, timeout).await
}

fn seconds(run: &ImportRun) -> f64 {
    let s = run.status.as_ref().expect("a status");
    let at = |t: &Option<String>| {
        chrono::DateTime::parse_from_rfc3339(t.as_deref().expect("a time")).expect("RFC 3339")
    };
    (at(&s.completion_time) - at(&s.start_time)).as_seconds_f64()
}

/// Employees a first import creates: current staff with an e-mail address.
async fn current_staff(sim: &Simulator) -> usize {
    sim.employees()
        .await
        .into_iter()
        .filter(|e| e["status"] == "active" && e["terminated"] == false && e["deleted"] == false)
        .filter(|e| e["official_email"].as_str().is_some_and(|m| !m.is_empty()))
        .count()
}

fn invitations(env: &Env) -> HashMap<String, usize> {
    let mut per = HashMap::new();
    for m in env.smtp.messages() {
        for to in &m.to {
            *per.entry(to.to_lowercase()).or_insert(0) += 1;
        }
    }
    per
}

/// An unpublished integration's preview lists the names Reward Gateway refuses without a
/// request spent on them; published, the first import of 500 creates and invites every
/// valid member once within the budget (≤ 5 % answered 429, ≤ 1.5× the floor the limit
/// sets); a second run writes nothing.
#[tokio::test]
async fn a_first_import_of_500_spends_the_budget_and_refusals_show_in_the_preview() {
    let peer = Peer::RewardGateway {
        limit: LIMIT,
        window: WINDOW,
    };
    let Some(mut env) = Env::with_peer("rg-first", 500, 100, peer).await else {
        return;
    };
    for (n, field, value, _) in REFUSED {
        env.sim
            .update_employee(&employee_id(n), json!({ field: value }))
            .await;
    }
    let mail = fast_mail(&env);
    env.start_operator("default", "default-0", &[&mail]);
    env.apply(manifest(&env, "acme", false, None))
        .await
        .unwrap();

    eventually(Duration::from_secs(120), "acme's preview", || async {
        env.fti("acme")
            .await
            .status
            .and_then(|s| s.preview)
            .is_some_and(|p| p.computed_at.is_some())
    })
    .await;
    let preview = env.fti("acme").await.status.unwrap().preview.unwrap();
    let valid = current_staff(&env.sim).await - REFUSED.len();
    assert_eq!(
        (preview.would_create, preview.errors),
        (Some(valid as u32), Some(3)),
        "{preview:?}"
    );
    let preview_run = env.runs_api().get(&preview.run_name).await.unwrap();
    let rows = preview_run.status.unwrap().errors;
    for (n, _, value, member_field) in REFUSED {
        let row = rows
            .iter()
            .find(|r| r.employee_id.as_deref() == Some(employee_id(n).as_str()))
            .unwrap_or_else(|| panic!("no preview row for {}: {rows:?}", employee_id(n)));
        assert_eq!(row.field.as_deref(), Some(member_field), "{row:?}");
        assert!(
            row.message.contains("Reward Gateway") && row.message.contains(value),
            "{row:?}"
        );
    }
    assert!(env.scim.users().await.is_empty(), "a preview wrote members");
    env.scim.reset_stats().await;

    publish(&env, "acme").await;
    let first = run_once(&env, "acme", "first", Duration::from_secs(300)).await;
    let status = first.status.clone().unwrap();
    let stats = env.scim.stats().await;
    let took = seconds(&first);
    let floor = stats.floor(LIMIT, WINDOW).as_secs_f64();
    eprintln!(
        "first import of {valid} through the operator: {took:.1} s, floor {floor:.1} s, \
         {} requests, {} answered 429 ({:.2} %); per endpoint {:?}",
        stats.totals.requests,
        stats.totals.throttled,
        100.0 * stats.throttled_share(),
        stats
            .endpoints
            .iter()
            .map(|(k, v)| (k.clone(), v.requests, v.throttled))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        (status.phase, status.summary.created, status.summary.errors),
        (ImportPhase::PartiallySucceeded, valid as u32, 3),
        "{status:?}"
    );
    assert_eq!(
        stats.totals.status(400),
        0,
        "a request was spent on a refused name"
    );
    assert!(
        stats.throttled_share() <= 0.05,
        "{} of {} requests answered 429",
        stats.totals.throttled,
        stats.totals.requests
    );
    assert!(
        took <= 1.5 * floor,
        "{took:.1} s against a floor of {floor:.1} s"
    );
    env.smtp.wait_for(valid, Duration::from_secs(60));
    let invited = invitations(&env);
    assert_eq!(invited.len(), valid, "each valid member invited");
    assert!(
        invited.values().all(|n| *n == 1),
        "invited twice: {invited:?}"
    );

    env.scim.reset_stats().await;
    let again = run_once(&env, "acme", "again", Duration::from_secs(120)).await;
    let stats = env.scim.stats().await;
    let writes: u64 = ["POST", "PATCH", "PUT", "DELETE"]
        .iter()
        .map(|m| stats.totals.method(m))
        .sum();
    assert_eq!(writes, 0, "the second run wrote: {stats:?}");
    assert_eq!(again.status.unwrap().summary.invitations_sent, 0);

    // A leaver whose account Reward Gateway closed down comes back, and an account is
    // deleted by hand: each gets a new account and a new invitation.
    let (returner, deleted) = (employee_id(20), employee_id(21));
    env.sim
        .update_employee(&returner, json!({"status": "inactive"}))
        .await;
    let left = run_once(&env, "acme", "leaver", Duration::from_secs(120)).await;
    assert_eq!(left.status.unwrap().summary.leavers, 1);
    assert_eq!(env.scim.close_down().await, 1);
    assert!(env.scim.delete_by_hand(&deleted).await);
    env.sim
        .update_employee(&returner, json!({"status": "active"}))
        .await;
    let mails = env.smtp.count();
    // An incremental run sees the returner (changed in Freshteam); the hand-deleted
    // account of an unchanged employee is seen by a full reconciliation: ask for one.
    let before = env.runs_of("acme").await.len();
    env.annotate_with("acme", FULL_RECONCILE_REQUESTED_AT, "back")
        .await;
    eventually(Duration::from_secs(30), "the full run", || async {
        env.runs_of("acme").await.len() > before
    })
    .await;
    let back = env.wait_run_done("acme", Duration::from_secs(120)).await;
    let status = back.status.clone().unwrap();
    assert_eq!(
        (status.summary.created, status.summary.invitations_sent),
        (2, 2),
        "{status:?}"
    );
    for id in [&returner, &deleted] {
        let account = env.scim.user_by_external_id(id).await;
        assert_eq!(
            account.as_ref().map(|a| a["active"].clone()),
            Some(json!(true)),
            "{id}: {account:?}"
        );
    }
    env.smtp.wait_for(mails + 2, Duration::from_secs(30));
    env.finish().await;
}

/// Two integrations of one operator against the same service share its budget: both
/// finish, together with at most 5 % of requests answered 429.
#[tokio::test]
async fn two_integrations_against_one_service_share_one_budget() {
    let peer = Peer::RewardGateway {
        limit: 80,
        window: WINDOW,
    };
    let Some(mut env) = Env::with_peer("rg-shared", 150, 50, peer).await else {
        return;
    };
    let other = Simulator::start_with(150, 0, 50).await;
    // The second directory's people are other people: a different e-mail domain.
    for n in 1..=150 {
        other
            .update_employee(
                &employee_id(n),
                json!({"employee_id": format!("B-{n:05}"),
                       "official_email": format!("b{n}@beta.example")}),
            )
            .await;
    }
    let mail = fast_mail(&env);
    env.start_operator("default", "default-0", &[&mail]);
    env.apply(manifest(&env, "alpha", true, None))
        .await
        .unwrap();
    env.apply(manifest(&env, "beta", true, Some(&other.url)))
        .await
        .unwrap();
    for name in ["alpha", "beta"] {
        env.wait_condition(name, "Authorized", "True", Duration::from_secs(60))
            .await;
    }
    env.scim.reset_stats().await;
    env.annotate("alpha", "together").await;
    env.annotate("beta", "together").await;
    let (a, b) = tokio::join!(
        env.wait_run_done("alpha", Duration::from_secs(300)),
        env.wait_run_done("beta", Duration::from_secs(300))
    );
    let stats = env.scim.stats().await;
    eprintln!(
        "two integrations, one budget: {} requests, {} answered 429 ({:.2} %), {:.1} s and {:.1} s",
        stats.totals.requests,
        stats.totals.throttled,
        100.0 * stats.throttled_share(),
        seconds(&a),
        seconds(&b)
    );
    let expected = [
        current_staff(&env.sim).await as u32,
        current_staff(&other).await as u32,
    ];
    for (run, expected) in [&a, &b].into_iter().zip(expected) {
        let s = run.status.as_ref().unwrap();
        assert_eq!(
            (s.phase, s.summary.created),
            (ImportPhase::Succeeded, expected),
            "{s:?}\n{}",
            env.logs()
        );
    }
    assert!(
        stats.throttled_share() <= 0.05,
        "{} of {} requests answered 429",
        stats.totals.throttled,
        stats.totals.requests
    );
    env.finish().await;
}

/// A run waiting for the window says so in the ImportRun (what it waits for and until
/// when), and suspending the integration ends it `Interrupted` at once.
#[tokio::test]
async fn a_run_waiting_for_the_window_says_so_and_stops_at_once() {
    let peer = Peer::RewardGateway {
        limit: 20,
        window: Duration::from_secs(60),
    };
    let Some(mut env) = Env::with_peer("rg-wait", 80, 100, peer).await else {
        return;
    };
    let mail = fast_mail(&env);
    env.start_operator("default", "default-0", &[&mail]);
    env.apply(manifest(&env, "acme", true, None)).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(60))
        .await;
    env.annotate("acme", "wait-for-the-window").await;
    let run = env.wait_running("acme").await;
    let waiting = wait_until(
        Duration::from_secs(90),
        Duration::from_millis(100),
        || async {
            let r = env.runs_api().get(&run).await.ok()?;
            let message = r.status?.message?;
            (message.contains("waiting") && message.contains("until")).then_some(message)
        },
    )
    .await
    .unwrap_or_else(|| panic!("run {run} never said it waits\n{}", env.logs()));
    eprintln!("while waiting: {waiting}");
    let printed = env.kubectl(&["get", "importruns", "-n", &env.ns]).await;
    assert!(
        printed.contains("waiting"),
        "kubectl get importruns:\n{printed}"
    );

    let asked = std::time::Instant::now();
    env.integrations()
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    env.wait_phase(&run, ImportPhase::Interrupted, Duration::from_secs(10))
        .await;
    let stopped = asked.elapsed();
    eprintln!("interrupted {stopped:?} after the suspend");
    assert!(stopped < Duration::from_secs(5), "{stopped:?}");
    env.finish().await;
}

/// `freshteam-operator run --default-rate-limit` (the chart's `operator.defaultRateLimit`)
/// paces every integration from its first request, below what the service announces.
#[tokio::test]
async fn the_operators_default_rate_limit_paces_from_the_first_request() {
    let peer = Peer::RewardGateway {
        limit: 10_000,
        window: WINDOW,
    };
    let Some(mut env) = Env::with_peer("rg-default", 60, 100, peer).await else {
        return;
    };
    let mail = fast_mail(&env);
    env.start_operator(
        "default",
        "default-0",
        &[&mail, "--default-rate-limit=20/2s"],
    );
    env.apply(manifest(&env, "acme", true, None)).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(60))
        .await;
    env.scim.reset_stats().await;
    let run = run_once(&env, "acme", "paced", Duration::from_secs(120)).await;
    let status = run.status.clone().unwrap();
    let users = env.scim.stats().await.endpoint("/Users").requests;
    let took = seconds(&run);
    // 20 requests per 2 s from the first one: the first window at once, then one each 2 s.
    let floor = 2.0 * ((users as f64 / 20.0).ceil() - 1.0);
    eprintln!("--default-rate-limit=20/2s: {users} requests on /Users in {took:.1} s (floor {floor:.1} s)");
    assert_eq!(
        status.summary.created as usize,
        current_staff(&env.sim).await,
        "{status:?}"
    );
    assert!(users > 40, "{users} requests on /Users");
    // Start and completion times have whole seconds.
    assert!(
        took >= floor - 1.0,
        "{took:.1} s for {users} requests paced 20 per 2 s"
    );
    env.finish().await;
}
