//! The destination request budget against the Reward Gateway-shaped peer
//! (`tests/peers/reward_gateway.py`: a fixed window per endpoint, announced in
//! `X-Rate-Limit-*`, 429 without `Retry-After` past it), its limit scaled down so that a
//! test takes seconds: through the real `sync` binary, and two integrations of one
//! process sharing one budget.

mod support;

use std::time::{Duration, Instant};

use freshteam_operator::destination::{MemberDirectory, ScimClient, WriteOp, WriteOutcome};
use freshteam_operator::member::Member;
use support::sync_env::Env;
use support::Peer;

const LIMIT: u32 = 40;
const WINDOW: Duration = Duration::from_secs(2);

fn rate_limited() -> Peer {
    Peer::RewardGateway {
        limit: LIMIT,
        window: WINDOW,
    }
}

/// A first import of 200 employees with no `rateLimit` in the spec: the client learns
/// the budget from the headers, every member is created, few requests meet a 429 and
/// the run takes little longer than the limit allows at best.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_import_paced_by_the_announced_budget() {
    support::require_peers!(PythonPeers);
    let env = Env::start_on(200, rate_limited()).await;
    let started = Instant::now();
    let run = env.sync(&[]).await;
    let wall = started.elapsed();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let summary = run.summary();
    let stats = env.scim.stats().await;
    let floor = stats.floor(LIMIT, WINDOW);
    eprintln!(
        "200 employees, {LIMIT} requests / {WINDOW:?} per endpoint: created {}, errors {}; \
         {} requests, {} answered 429 ({:.1} %); wall {:.1} s, floor {:.1} s ({:.2}x); per endpoint {:?}",
        summary["created"],
        summary["errors"],
        stats.totals.requests,
        stats.totals.throttled,
        100.0 * stats.throttled_share(),
        wall.as_secs_f64(),
        floor.as_secs_f64(),
        wall.as_secs_f64() / floor.as_secs_f64(),
        stats
            .endpoints
            .iter()
            .map(|(e, s)| (e.as_str(), s.requests, s.throttled))
            .collect::<Vec<_>>(),
    );
    assert_eq!(summary["created"], 200, "{}", run.stdout);
    assert_eq!(env.scim.users().await.len(), 200);
    assert!(stats.throttled_share() <= 0.05, "{stats:?}");
    assert!(
        wall.as_secs_f64() <= 1.5 * floor.as_secs_f64(),
        "{wall:?} against a floor of {floor:?}"
    );
}

/// A run that cannot finish within `spec.runDeadline` ends `Failed`, naming the
/// deadline, soon after it; it said while it ran that it waited for the rate limit; what
/// it created stays.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_past_its_deadline_fails_and_keeps_what_it_wrote() {
    support::require_peers!(PythonPeers);
    let env = Env::start_on(
        30,
        Peer::RewardGateway {
            limit: 10,
            window: Duration::from_secs(60),
        },
    )
    .await;
    let file = env.write(
        "acme.yaml",
        &env.manifest(
            support::sync_env::API_KEY,
            &format!("{}  runDeadline: 3s\n", Env::default_mapping()),
        ),
    );
    let started = Instant::now();
    let run = env.sync_file(&file, &["--output", "json"]).await;
    let took = started.elapsed();
    eprintln!(
        "deadline 3s: the run ended after {:.1} s",
        took.as_secs_f64()
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let status = &run.json()["status"];
    assert_eq!(status["phase"], "Failed", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with("the run did not finish within its deadline of 3s: "),
        "{message}"
    );
    assert!(
        message.ends_with("what was written stays, the next run continues"),
        "{message}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(
        run.stderr
            .contains("waiting for the destination's rate limit (/Users) until "),
        "{}",
        run.stderr
    );
    let kept = env.scim.users().await.len();
    assert!(kept > 0 && kept < 30, "{kept} members kept");
}

fn member(i: usize, who: &str) -> Member {
    Member {
        employee_id: format!("{who}-{i:04}"),
        email: format!("{who}.{i}@example.com"),
        first_name: Some("Ada".into()),
        last_name: Some("Lovelace".into()),
        active: true,
        ..Member::default()
    }
}

async fn create(client: &ScimClient, who: &str, n: usize) -> usize {
    let ops: Vec<WriteOp> = (0..n)
        .map(|i| WriteOp::Create {
            member: member(i, who),
        })
        .collect();
    client
        .apply(&ops, &|_, _| {})
        .await
        .iter()
        .filter(|o| matches!(o, WriteOutcome::Created { .. }))
        .count()
}

/// Two integrations of one process writing to the same service at once share its
/// budget (one client IP): together they stay within it.
#[tokio::test(flavor = "multi_thread")]
async fn two_integrations_share_one_budget() {
    support::require_peers!(PythonPeers);
    let server = support::ScimServer::start_peer(rate_limited());
    let a = ScimClient::connect(server.config()).await.unwrap();
    let b = ScimClient::connect(server.config()).await.unwrap();
    let started = Instant::now();
    let (made_a, made_b) = tokio::join!(create(&a, "a", 100), create(&b, "b", 100));
    let wall = started.elapsed();
    let stats = server.stats().await;
    let floor = stats.floor(LIMIT, WINDOW);
    eprintln!(
        "two integrations, 100 creates each: {} requests, {} answered 429 ({:.1} %); wall {:.1} s, floor {:.1} s",
        stats.totals.requests,
        stats.totals.throttled,
        100.0 * stats.throttled_share(),
        wall.as_secs_f64(),
        floor.as_secs_f64(),
    );
    assert_eq!((made_a, made_b), (100, 100));
    assert!(stats.throttled_share() <= 0.05, "{stats:?}");
    assert!(
        wall.as_secs_f64() <= 1.5 * floor.as_secs_f64(),
        "{wall:?} / {floor:?}"
    );
}

/// Another client of the same address has spent the window: `sync` meets a 429, waits
/// for the window the headers announce and sends again; every member is created, none
/// becomes an error row.
#[tokio::test(flavor = "multi_thread")]
async fn a_429_waits_for_the_window_and_never_becomes_an_error_row() {
    support::require_peers!(PythonPeers);
    let env = Env::start_on(
        12,
        Peer::RewardGateway {
            limit: 5,
            window: Duration::from_secs(2),
        },
    )
    .await;
    let http = reqwest::Client::new();
    for _ in 0..5 {
        http.get(format!("{}/Users?count=1", env.scim.url))
            .bearer_auth(&env.scim.token)
            .send()
            .await
            .unwrap();
    }
    env.scim.reset_stats().await;
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let summary = run.summary();
    assert_eq!(summary["created"], 12, "{}", run.stdout);
    assert_eq!(summary["errors"], 0, "{}", run.stdout);
    let users = env.scim.stats().await.endpoint("/Users");
    eprintln!(
        "a spent window: /Users {} requests, {} answered 429",
        users.requests, users.throttled
    );
    assert!(users.throttled >= 1, "{users:?}");
    assert!(
        run.stderr
            .contains("waiting for the destination's rate limit (/Users) until "),
        "{}",
        run.stderr
    );
}

/// `spec.destination.scim.rateLimit` paces from the first request, against a service
/// that announces no limit at all.
#[tokio::test(flavor = "multi_thread")]
async fn a_configured_rate_limit_paces_a_service_that_announces_none() {
    support::require_peers!(Scim2Server);
    let env = Env::start(30).await;
    let token_line = "      tokenSecretRef: {name: members-scim, key: token}\n";
    let manifest = env
        .manifest(support::sync_env::API_KEY, Env::default_mapping())
        .replace(
            token_line,
            &format!("{token_line}      rateLimit: {{requests: 10, window: 1s}}\n"),
        );
    assert!(manifest.contains("rateLimit"), "{manifest}");
    let file = env.write("acme.yaml", &manifest);
    let started = Instant::now();
    let run = env
        .sync_file(&file, &["--output", "json", "--bulk", "off"])
        .await;
    let wall = started.elapsed();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.summary()["created"], 30);
    // One list page and 30 creates on /Users: 31 requests, 4 windows.
    eprintln!(
        "rateLimit 10/1s, 31 requests on /Users: {:.1} s",
        wall.as_secs_f64()
    );
    assert!(wall >= Duration::from_secs(3), "{wall:?}");
}
