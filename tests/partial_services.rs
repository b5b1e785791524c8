//! Against a partial SCIM service (`tests/peers/partial.py`: 500 to attribute-path
//! PATCHes, attributes silently dropped): the real `sync` binary converges.

mod support;

use support::{Peer, ScimServer};

/// The starter: a SCIM service that keeps only part of what it is sent.
#[tokio::test]
async fn the_partial_service_starts_and_drops_the_title() {
    let server = ScimServer::start_peer(Peer::Partial);
    assert!(server.url.ends_with("/v2"), "{}", server.url);
    let created = server
        .create_raw_user(serde_json::json!({"userName": "a@example.com", "title": "Boss"}))
        .await;
    assert!(created.get("title").is_none(), "{created}");
}
