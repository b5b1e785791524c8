//! Against a partial SCIM service (`tests/peers/partial.py`: 500 to attribute-path
//! PATCHes, `title` and the enterprise extension silently dropped while announced):
//! the real `sync` binary converges.

mod support;

use serde_json::json;
use support::peers::PeerStats;
use support::sync_env::{employee_id, Env, Run, API_KEY};
use support::{Peer, ScimServer};

/// The starter: a SCIM service that keeps only part of what it is sent.
#[tokio::test]
async fn the_partial_service_starts_and_drops_the_title() {
    support::require_peers!(PythonPeers);
    let server = ScimServer::start_peer(Peer::Partial);
    assert!(server.url.ends_with("/v2"), "{}", server.url);
    let created = server
        .create_raw_user(json!({"userName": "a@example.com", "title": "Boss"}))
        .await;
    assert!(created.get("title").is_none(), "{created}");
}

fn writes(stats: &PeerStats) -> u64 {
    ["POST", "PUT", "PATCH", "DELETE"]
        .iter()
        .map(|m| stats.totals.method(m))
        .sum()
}

/// PATCHes the service answered 500.
fn patch_500s(stats: &PeerStats) -> u64 {
    stats.endpoint("/Users/{id}").status(500)
}

async fn sync(env: &Env, state: &str) -> Run {
    let file = env.write("acme.yaml", &env.manifest(API_KEY, Env::default_mapping()));
    let run = env
        .sync_file(&file, &["--output", "json", "--state-file", state])
        .await;
    assert!(matches!(run.code, 0 | 3), "{}\n{}", run.stdout, run.stderr);
    run
}

/// The partial service: the second run writes nothing (what the service keeps
/// was learnt from its answers to the first run's creates), a rename is applied although
/// the value-path PATCH fails with 500, and the run after that starts with the form that
/// worked (no PATCH answered 500).
#[tokio::test(flavor = "multi_thread")]
async fn a_partial_service_converges_and_the_working_patch_form_is_remembered() {
    support::require_peers!(PythonPeers);
    const N: usize = 20;
    let env = Env::start_on(N, Peer::Partial).await;
    let state = env.dir.path().join("state.json");
    let state = state.to_str().unwrap();

    let first = sync(&env, state).await;
    assert_eq!(first.summary()["created"], N as u64, "{}", first.stdout);
    assert_eq!(env.scim.users().await.len(), N);

    env.scim.reset_stats().await;
    let second = sync(&env, state).await;
    let stats = env.scim.stats().await;
    eprintln!("second run against the partial service: {stats:?}");
    assert_eq!(
        second.api_calls()["destinationWrites"],
        0,
        "{}",
        second.stdout
    );
    assert_eq!(writes(&stats), 0, "the second run wrote: {stats:?}");

    // A rename: applied, whatever form the service takes.
    env.sim
        .update_employee(&employee_id(3), json!({"last_name": "Renamed"}))
        .unwrap();
    env.scim.reset_stats().await;
    let renamed = sync(&env, state).await;
    let stats = env.scim.stats().await;
    eprintln!("rename against the partial service: {stats:?}");
    assert_eq!(renamed.summary()["updated"], 1, "{}", renamed.stdout);
    assert_eq!(renamed.summary()["errors"], 0, "{}", renamed.stdout);
    assert_eq!(
        env.user(&employee_id(3)).await["name"]["familyName"],
        "Renamed"
    );

    // The next run starts with the form that worked.
    env.sim
        .update_employee(&employee_id(4), json!({"last_name": "Again"}))
        .unwrap();
    env.scim.reset_stats().await;
    let next = sync(&env, state).await;
    let stats = env.scim.stats().await;
    assert_eq!(next.summary()["updated"], 1, "{}", next.stdout);
    assert_eq!(
        patch_500s(&stats),
        0,
        "the failing form was tried again: {stats:?}"
    );
    assert_eq!(
        env.user(&employee_id(4)).await["name"]["familyName"],
        "Again"
    );
    assert_eq!(writes(&stats), 1, "{stats:?}");
}
