//! Against hostile SCIM lists (`tests/peers/hostile.py`): the real `sync` binary ends
//! each in a failed run, fast, with bounded memory.

mod support;

use support::{HostileList, Peer, ScimServer};

/// The starter: each mode serves a list.
#[tokio::test]
async fn the_hostile_service_starts_in_each_mode() {
    for mode in [
        HostileList::HugeTotal,
        HostileList::Endless,
        HostileList::Trickle,
    ] {
        let server = ScimServer::start_peer(Peer::Hostile(mode));
        let page = reqwest::Client::new()
            .get(format!("{}/Users?startIndex=1&count=10", server.url))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        assert!(
            page["totalResults"].as_u64().unwrap() > 10,
            "{mode:?}: {page}"
        );
        assert_eq!(server.requests_served().await, 1, "{mode:?}");
    }
}
