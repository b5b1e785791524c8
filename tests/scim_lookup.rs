//! Looking members up by key (`find_members`, what an incremental run reads) against
//! both SCIM peers: `scim2-server` (RFC filters) and SCIMMY (npm), whose filter
//! compares `userName` with case and cannot parse an escaped quote.

mod support;

use freshteam_operator::destination::{
    Capabilities, DestinationMember, MemberDirectory, MemberKeys, ScimClient, ScimConfig,
};
use serde_json::json;
use support::{Peer, ScimServer};

const N: usize = 120;

fn external_id(i: usize) -> String {
    format!("E-{i:04}")
}

/// Mixed case, as Freshteam may send it.
fn user_name(i: usize) -> String {
    format!("Member.{i}@Acme.example")
}

fn keys(
    ids: impl IntoIterator<Item = String>,
    names: impl IntoIterator<Item = String>,
) -> MemberKeys {
    MemberKeys {
        external_ids: ids.into_iter().collect(),
        user_names: names.into_iter().collect(),
    }
}

/// `N` managed-looking accounts, one without an externalId and one whose externalId
/// holds a quote and a backslash.
async fn seeded(peer: Peer) -> ScimServer {
    let server = ScimServer::start_peer(peer);
    let mut users: Vec<serde_json::Value> = (0..N)
        .map(|i| json!({"userName": user_name(i), "externalId": external_id(i), "active": true}))
        .collect();
    users.push(json!({"userName": "Stranger@Acme.example", "active": true}));
    users.push(json!({"userName": "quoted@acme.example", "externalId": r#"E"q\x"#}));
    for user in users {
        server.create_raw_user(user).await;
    }
    server
}

async fn connect(config: ScimConfig) -> ScimClient {
    ScimClient::connect(config).await.expect("connects")
}

/// Looks `keys` up and returns the result and the lookup requests it took (which are
/// also reads).
async fn find(client: &ScimClient, keys: &MemberKeys) -> (Option<Vec<DestinationMember>>, u32) {
    let before = client.stats();
    let found = client.find_members(keys).await.expect("lookup works");
    let after = client.stats();
    let lookups = after.lookup_requests - before.lookup_requests;
    assert_eq!(after.reads - before.reads, lookups, "lookups are reads");
    assert_eq!(after.writes, before.writes);
    (found, lookups)
}

fn external_ids(members: &[DestinationMember]) -> Vec<String> {
    let mut ids: Vec<String> = members
        .iter()
        .map(|m| m.member.employee_id.clone())
        .collect();
    ids.sort();
    ids
}

async fn lookups(peer: Peer) {
    let server = seeded(peer).await;
    let client = connect(server.config()).await;
    let listed = client.list_members().await.unwrap();
    assert_eq!(listed.len(), N + 2);

    // Nothing to look up: no request.
    assert_eq!(
        find(&client, &MemberKeys::default()).await,
        (Some(vec![]), 0)
    );

    // By externalId: 60 that exist and one that does not, two requests of at most 50
    // clauses. Each member parsed exactly as the full list parses it.
    let wanted = keys((0..60).map(external_id).chain(["E-9999".to_string()]), []);
    let (found, requests) = find(&client, &wanted).await;
    let found = found.expect("both peers filter by externalId");
    assert_eq!(requests, 2);
    assert_eq!(
        external_ids(&found),
        (0..60).map(external_id).collect::<Vec<_>>()
    );
    for member in &found {
        let same = listed.iter().find(|l| l.id == member.id).unwrap();
        assert_eq!(member, same);
    }
    // externalId is case-exact: another case matches nothing.
    let (found, requests) = find(&client, &keys(["e-0001".to_string()], [])).await;
    assert_eq!((found, requests), (Some(vec![]), 1));

    // More keys than one batch: 200 externalIds (120 exist): ceil(200 / 50) requests.
    let many = keys((0..200).map(external_id), []);
    let (found, requests) = find(&client, &many).await;
    assert_eq!(found.unwrap().len(), N);
    assert_eq!(requests, 4);

    // A batch answered over several pages (20 a page): every page is read.
    let mut small_pages = server.config();
    small_pages.page_size = 20;
    let paged = connect(small_pages).await;
    let (found, requests) = find(&paged, &keys((0..50).map(external_id), [])).await;
    assert_eq!(found.unwrap().len(), 50);
    assert_eq!(requests, 3, "50 matches, 20 a page");

    // By userName in another case, mixed with an externalId of the same account, a
    // stranger and a key matching nothing.
    let mixed = keys(
        ["E-0003".to_string()],
        [
            "MEMBER.3@acme.EXAMPLE".to_string(),
            "stranger@acme.example".to_string(),
            "nobody@acme.example".to_string(),
        ],
    );
    let (found, requests) = find(&client, &mixed).await;
    match peer {
        Peer::Scim2Server => {
            let found = found.expect("scim2-server ignores the case of userName");
            let mut names: Vec<&str> = found.iter().map(|m| m.member.email.as_str()).collect();
            names.sort();
            assert_eq!(
                names,
                ["Member.3@Acme.example", "Stranger@Acme.example"],
                "each once"
            );
            // Two to learn how userName compares (a sample, the sample in swapped
            // case), one for the four clauses.
            assert_eq!(requests, 3);
            let (_, again) = find(&client, &mixed).await;
            assert_eq!(again, 1, "learnt once per client");
        }
        _ => {
            // SCIMMY, the only other peer compared here.
            // SCIMMY compares userName with case: an e-mail lookup could miss an
            // account, so the caller is told to list everyone.
            assert_eq!(found, None);
            assert_eq!(requests, 2);
            assert_eq!(find(&client, &mixed).await, (None, 0), "learnt once");
            // Lookups by externalId alone still work there.
            let (found, _) = find(&client, &keys(["E-0003".to_string()], [])).await;
            assert_eq!(found.unwrap().len(), 1);
        }
    }

    // A key with a quote and a backslash, escaped in the filter.
    let quoted = keys(["E-0001".to_string(), r#"E"q\x"#.to_string()], []);
    let fresh = connect(server.config()).await;
    let (found, requests) = find(&fresh, &quoted).await;
    match peer {
        Peer::Scim2Server => {
            assert_eq!(external_ids(&found.unwrap()), ["E\"q\\x", "E-0001"]);
            assert_eq!(requests, 1);
        }
        _ => {
            // SCIMMY, the only other peer compared here.
            // SCIMMY refuses the escaped quote (400 invalidFilter): the or-filter is
            // retried one clause per request, and the clause it cannot parse leaves
            // no way to look that key up.
            assert_eq!(found, None);
            assert_eq!(requests, 3);
            // One clause per request for the rest of the run.
            let (found, requests) = find(&fresh, &keys((0..3).map(external_id), [])).await;
            assert_eq!(found.unwrap().len(), 3);
            assert_eq!(requests, 3);
        }
    }

    // A service that announces no filtering: no lookup, no request.
    let no_filter = connect(server.config())
        .await
        .with_capabilities(Capabilities {
            filter: false,
            ..client.capabilities().clone()
        });
    assert_eq!(find(&no_filter, &many).await, (None, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn members_are_looked_up_by_key_on_scim2_server() {
    support::require_peers!(Scim2Server);
    lookups(Peer::Scim2Server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn members_are_looked_up_by_key_on_scimmy() {
    support::require_peers!(Scimmy);
    lookups(Peer::Scimmy).await;
}

/// A SCIM service that announces filtering but does not do it: it answers every list
/// with all its users (`ignore`), or refuses every filter with 400 invalidFilter.
async fn misfiltering(ignore: bool) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::extract::{Query, State};
    use axum::response::IntoResponse;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let hits = Arc::new(AtomicUsize::new(0));
    let users = move |State(hits): State<Arc<AtomicUsize>>,
                      Query(q): Query<HashMap<String, String>>| async move {
        if q.contains_key("filter") {
            hits.fetch_add(1, Ordering::SeqCst);
            if !ignore {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(json!({"status": "400", "scimType": "invalidFilter", "detail": "no filters here"})),
                )
                    .into_response();
            }
        }
        let all: Vec<_> = (0..3)
            .map(|i| json!({"id": format!("u{i}"), "userName": user_name(i), "externalId": external_id(i)}))
            .collect();
        axum::Json(json!({"totalResults": 3, "Resources": all})).into_response()
    };
    let config = || async {
        axum::Json(
            json!({"filter": {"supported": true, "maxResults": 100}, "patch": {"supported": true}}),
        )
    };
    let app = axum::Router::new()
        .route("/v2/Users", axum::routing::get(users))
        .route("/v2/ServiceProviderConfig", axum::routing::get(config))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v2", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

#[tokio::test]
async fn a_service_that_ignores_or_refuses_filters_is_not_trusted_with_lookups() {
    for ignore in [true, false] {
        let (url, hits) = misfiltering(ignore).await;
        let config = ScimConfig::new(
            &url,
            freshteam_operator::secret::SecretString::new("token".to_string()),
        )
        .unwrap();
        let client = connect(config).await;
        assert!(client.capabilities().filter);
        // Ignoring: the answer holds accounts no key asked for. Refusing: the
        // or-filter, then its first clause alone.
        let (found, requests) = find(
            &client,
            &keys(["E-0001".to_string(), "E-7".to_string()], []),
        )
        .await;
        assert_eq!(found, None, "ignore: {ignore}");
        assert_eq!(requests, if ignore { 1 } else { 2 }, "ignore: {ignore}");
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            requests as usize
        );
    }
}
