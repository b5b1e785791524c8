//! Against a SCIM service shaped like Reward Gateway (`tests/peers/reward_gateway.py`):
//! the real `sync` binary with its request budget, its refusals and its vanished
//! accounts.

mod support;

use std::time::Duration;

use support::peers::PROGRAMME;
use support::{Peer, ScimServer};

const SPC: &str = "/ServiceProviderConfig";

/// The starter: base URL with the programme prefix, the budget announced, admin calls
/// outside it.
#[tokio::test]
async fn the_service_starts_behind_its_programme_prefix() {
    let server = ScimServer::start_peer(Peer::RewardGateway {
        limit: 2,
        window: Duration::from_secs(30),
    });
    assert!(
        server.url.ends_with(&format!("/{PROGRAMME}/scim/v2")),
        "{}",
        server.url
    );
    let http = reqwest::Client::new();
    let get = || {
        http.get(format!("{}{SPC}", server.url))
            .bearer_auth(&server.token)
            .send()
    };
    let first = get().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-rate-limit-limit"], "2");
    assert_eq!(first.headers()["x-rate-limit-remaining"], "1");
    get().await.unwrap();
    let third = get().await.unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.headers().get("retry-after").is_none());
    let reset: u64 = third.headers()["x-rate-limit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&reset), "{reset}");
    // Looking at the users spends nothing.
    assert!(server.users().await.is_empty());
    let stats = server.stats().await;
    assert_eq!(stats.totals.requests, 3);
    assert_eq!(stats.endpoint(SPC).throttled, 1);
    server.reset_stats().await;
    assert_eq!(server.stats().await.totals.requests, 0);
    assert_eq!(server.close_down().await, 0);
    assert!(!server.delete_by_hand("E-00001").await);
}
