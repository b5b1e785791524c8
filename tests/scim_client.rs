//! The SCIM client against a real `scim2-server` (one per test).

mod support;

use std::sync::Mutex;

use freshteam_operator::destination::{
    BulkLimits, BulkMode, Capabilities, DestinationError, DestinationMember, Keeps,
    MemberDirectory, ScimClient, ScimConfig, UpdateOp, WriteOp, WriteOutcome,
};
use freshteam_operator::member::{Attr, AttrSet, Change, Member};
use freshteam_operator::secret::SecretString;
use serde_json::json;
use support::fault_front::{read_request, Fault, Front};
use support::{Peer, ScimServer, ENTERPRISE};

async fn connect(server: &ScimServer) -> ScimClient {
    ScimClient::connect(server.config())
        .await
        .expect("connects")
}

async fn connect_with(config: ScimConfig) -> ScimClient {
    ScimClient::connect(config).await.expect("connects")
}

fn member(employee_id: &str, email: &str) -> Member {
    Member {
        employee_id: employee_id.into(),
        email: email.into(),
        active: true,
        ..Member::default()
    }
}

fn full_member(employee_id: &str, email: &str) -> Member {
    Member {
        first_name: Some("Ada".into()),
        last_name: Some("Lovelace".into()),
        display_name: Some("Ada Lovelace".into()),
        job_title: Some("Analyst".into()),
        department: Some("Engines".into()),
        employee_number: Some(format!("N-{employee_id}")),
        ..member(employee_id, email)
    }
}

fn all_attrs() -> AttrSet {
    Attr::ALL.into_iter().collect()
}

/// Applies ops and checks `on_done` saw every op exactly once, with the returned outcome.
async fn apply(client: &ScimClient, ops: &[WriteOp]) -> Vec<WriteOutcome> {
    let seen = Mutex::new(Vec::new());
    let outcomes = client
        .apply(ops, &|i, o: &WriteOutcome| {
            seen.lock().unwrap().push((i, o.clone()))
        })
        .await;
    assert_eq!(outcomes.len(), ops.len());
    let mut seen = seen.into_inner().unwrap();
    seen.sort_by_key(|(i, _)| *i);
    let expected: Vec<_> = outcomes.iter().cloned().enumerate().collect();
    assert_eq!(
        seen, expected,
        "on_done must report each op once, as returned"
    );
    outcomes
}

fn created_id(outcome: &WriteOutcome) -> String {
    match outcome {
        WriteOutcome::Created { id, .. } => id.clone(),
        other => panic!("expected Created, got {other:?}"),
    }
}

async fn create_all(client: &ScimClient, members: Vec<Member>) -> Vec<String> {
    let ops: Vec<_> = members
        .into_iter()
        .map(|member| WriteOp::Create { member })
        .collect();
    apply(client, &ops).await.iter().map(created_id).collect()
}

async fn listed(client: &ScimClient, employee_id: &str) -> DestinationMember {
    client
        .list_members()
        .await
        .expect("lists")
        .into_iter()
        .find(|m| m.member.employee_id == employee_id)
        .unwrap_or_else(|| panic!("{employee_id} listed"))
}

/// An update op as the planner builds it: `changes` against `current`, towards `desired`.
fn update(
    current: &DestinationMember,
    changes: Vec<Change>,
    desired: Member,
    managed: AttrSet,
) -> WriteOp {
    WriteOp::Update(UpdateOp {
        id: current.id.clone(),
        version: current.version.clone(),
        has_work_email: current.has_work_email,
        changes,
        desired,
        managed,
    })
}

/// A client whose capabilities are what the server announced, adjusted by `f`.
async fn connect_adjusted(server: &ScimServer, f: fn(&Capabilities) -> Capabilities) -> ScimClient {
    let client = connect(server).await;
    let caps = f(client.capabilities());
    client.with_capabilities(caps)
}

fn no_bulk(caps: &Capabilities) -> Capabilities {
    Capabilities {
        bulk: None,
        ..caps.clone()
    }
}

#[tokio::test]
async fn connect_reads_the_service_provider_config() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    let client = connect(&server).await;
    assert_eq!(
        client.capabilities(),
        &Capabilities {
            patch: true,
            bulk: Some(BulkLimits {
                max_operations: 1000,
                max_payload_size: 1_048_576
            }),
            filter: true,
            filter_max_results: Some(1000),
            etag: true,
        }
    );
    // The config itself, /Schemas, /ResourceTypes (a rejected token shows on any of them,
    // or on the run's first read of /Users: no request is spent on the token alone).
    assert_eq!(client.stats().reads, 3);
    assert_eq!(client.stats().writes, 0);
    // scim2-server keeps every attribute the operator writes, the extension included.
    assert_eq!(client.keeps(), Keeps::everything());
}

#[tokio::test]
async fn discovery_on_scimmy_finds_the_core_schema_without_the_extension() {
    support::require_peers!(Scimmy);
    let server = ScimServer::start_peer(Peer::Scimmy);
    let client = connect(&server).await;
    assert!(client.capabilities().patch);
    assert!(!client.capabilities().etag);
    assert_eq!(client.capabilities().filter_max_results, Some(200));
    let kept: Vec<Attr> = client.keeps().attrs.iter().collect();
    assert_eq!(
        kept,
        vec![
            Attr::Email,
            Attr::FirstName,
            Attr::LastName,
            Attr::DisplayName,
            Attr::JobTitle
        ]
    );
    assert!(client.keeps().emails);
}

#[tokio::test]
async fn wrong_token_is_unauthorized_and_never_shown() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    let secret = "wrong-token-7f3a9c";
    let config = ScimConfig::new(&server.url, SecretString::new(secret)).unwrap();
    let err = match ScimClient::connect(config).await {
        Err(e) => e,
        Ok(_) => panic!("a wrong token must not connect"),
    };
    assert!(
        matches!(err, DestinationError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("bearer token"), "{shown}");
}

#[tokio::test]
async fn unreachable_service_is_reported_as_such() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = ScimConfig::new(
        &format!("http://127.0.0.1:{port}/v2"),
        SecretString::new("t"),
    )
    .unwrap();
    config.max_attempts = 2;
    config.backoff_base = std::time::Duration::from_millis(10);
    let err = ScimClient::connect(config)
        .await
        .err()
        .expect("no server there");
    assert!(
        matches!(err, DestinationError::Unreachable { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn create_then_list_round_trips_every_mapped_attribute() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    let client = connect(&server).await;
    let manager_id = create_all(&client, vec![member("M1", "boss@example.com")]).await[0].clone();

    let leaver = Member {
        manager: Some(manager_id.clone()),
        active: false,
        ..full_member("E1", "ada@example.com")
    };
    let minimal = member("E2", "min@example.com");
    let ids = create_all(&client, vec![leaver.clone(), minimal.clone()]).await;

    let members = client.list_members().await.unwrap();
    assert_eq!(members.len(), 3);
    for (id, want) in ids.iter().zip([&leaver, &minimal]) {
        let got = members.iter().find(|m| &m.id == id).expect("listed");
        assert_eq!(&got.member, want);
        assert!(got.has_work_email);
        assert!(got.version.is_some());
    }

    // What the service holds, as another SCIM client would see it.
    let raw = server.user(&ids[0]).await.unwrap();
    assert_eq!(raw["userName"], "ada@example.com");
    assert_eq!(
        raw["emails"],
        json!([{"value": "ada@example.com", "type": "work", "primary": true}])
    );
    assert_eq!(raw["active"], false);
    assert_eq!(raw[ENTERPRISE]["manager"]["value"], manager_id.as_str());
    assert_eq!(raw[ENTERPRISE]["employeeNumber"], "N-E1");
    let raw_minimal = server.user(&ids[1]).await.unwrap();
    assert!(raw_minimal.get(ENTERPRISE).is_none(), "{raw_minimal}");
    assert!(!raw_minimal["schemas"].to_string().contains(ENTERPRISE));
}

#[tokio::test]
async fn list_pages_through_more_users_than_one_page() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    for i in 0..22 {
        server
            .create_raw_user(
                json!({"userName": format!("u{i}@example.com"), "externalId": format!("E{i}")}),
            )
            .await;
    }
    // An account without externalId is listed too (and never managed).
    server
        .create_raw_user(json!({"userName": "admin@example.com"}))
        .await;
    let expected: std::collections::BTreeSet<String> = server
        .users()
        .await
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(expected.len(), 23);

    // A small page from the configuration, several pages in flight.
    let mut config = server.config();
    config.page_size = 5;
    config.concurrency = 3;
    let client = connect_with(config).await;
    let before = client.stats().reads;
    let members = client.list_members().await.unwrap();
    let ids: std::collections::BTreeSet<String> = members.iter().map(|m| m.id.clone()).collect();
    assert_eq!(members.len(), 23, "no user twice");
    assert_eq!(ids, expected);
    assert_eq!(client.stats().reads - before, 5, "ceil(23 / 5) pages");
    let admin = members
        .iter()
        .find(|m| m.member.email == "admin@example.com")
        .unwrap();
    assert_eq!(admin.member.employee_id, "");
    assert!(!admin.has_work_email);

    // A small page from the service's filter.maxResults.
    let client = connect(&server).await;
    let caps = Capabilities {
        filter_max_results: Some(4),
        ..client.capabilities().clone()
    };
    let client = client.with_capabilities(caps);
    let before = client.stats().reads;
    let members = client.list_members().await.unwrap();
    assert_eq!(members.len(), 23);
    assert_eq!(client.stats().reads - before, 6, "ceil(23 / 4) pages");
}

#[tokio::test]
async fn patch_changes_only_the_given_attributes() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    let client = connect_adjusted(&server, no_bulk).await;
    let original = full_member("E1", "ada@example.com");
    let id = create_all(&client, vec![original.clone()]).await[0].clone();
    let before = server.user(&id).await.unwrap();
    let current = listed(&client, "E1").await;

    let desired = Member {
        job_title: Some("Chief Analyst".into()),
        department: Some("Research".into()),
        ..original.clone()
    };
    let op = update(
        &current,
        vec![
            Change::Set(Attr::JobTitle, "Chief Analyst".into()),
            Change::Set(Attr::Department, "Research".into()),
        ],
        desired.clone(),
        all_attrs(),
    );
    let writes = client.stats().writes;
    assert_eq!(apply(&client, &[op]).await, vec![WriteOutcome::Updated]);
    assert_eq!(client.stats().writes - writes, 1, "one PATCH");

    let after = server.user(&id).await.unwrap();
    assert_eq!(after["title"], "Chief Analyst");
    assert_eq!(after[ENTERPRISE]["department"], "Research");
    for unchanged in [
        "userName",
        "name",
        "displayName",
        "emails",
        "externalId",
        "active",
    ] {
        assert_eq!(after[unchanged], before[unchanged], "{unchanged}");
    }
    assert_eq!(after[ENTERPRISE]["employeeNumber"], "N-E1");
    assert_ne!(after["meta"]["version"], before["meta"]["version"]);
    assert_eq!(listed(&client, "E1").await.member, desired);
}

#[tokio::test]
async fn email_update_sets_user_name_and_the_work_email() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    let client = connect_adjusted(&server, no_bulk).await;

    // Has a work e-mail: its value is replaced, no second entry appears.
    let with_work = create_all(&client, vec![member("E1", "old@example.com")]).await[0].clone();
    // Has only a home e-mail: a primary work entry is added beside it.
    let raw = server
        .create_raw_user(json!({
            "userName": "other@example.com", "externalId": "E2",
            "emails": [{"value": "home@example.net", "type": "home", "primary": true}],
        }))
        .await;
    let without_work = raw["id"].as_str().unwrap().to_string();

    let e1 = listed(&client, "E1").await;
    let e2 = listed(&client, "E2").await;
    assert!(e1.has_work_email);
    assert!(!e2.has_work_email);
    let email = AttrSet::from_iter([Attr::Email]);
    let ops = [
        update(
            &e1,
            vec![Change::Set(Attr::Email, "new@example.com".into())],
            member("E1", "new@example.com"),
            email,
        ),
        update(
            &e2,
            vec![Change::Set(Attr::Email, "new2@example.com".into())],
            member("E2", "new2@example.com"),
            email,
        ),
    ];
    assert_eq!(
        apply(&client, &ops).await,
        vec![WriteOutcome::Updated, WriteOutcome::Updated]
    );

    let u1 = server.user(&with_work).await.unwrap();
    assert_eq!(u1["userName"], "new@example.com");
    assert_eq!(
        u1["emails"],
        json!([{"value": "new@example.com", "type": "work", "primary": true}])
    );
    let u2 = server.user(&without_work).await.unwrap();
    assert_eq!(u2["userName"], "new2@example.com");
    let emails = u2["emails"].as_array().unwrap();
    assert_eq!(emails.len(), 2, "{u2}");
    assert!(emails
        .iter()
        .any(|e| e["type"] == "home" && e["value"] == "home@example.net"));
    assert!(emails
        .iter()
        .any(|e| e["type"] == "work" && e["value"] == "new2@example.com" && e["primary"] == true));
    assert!(listed(&client, "E2").await.has_work_email);
}

#[tokio::test]
async fn clear_removes_the_attribute() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    let client = connect(&server).await;
    let original = full_member("E1", "ada@example.com");
    let id = create_all(&client, vec![original.clone()]).await[0].clone();
    let current = listed(&client, "E1").await;
    let desired = Member {
        job_title: None,
        department: None,
        ..original
    };
    let op = update(
        &current,
        vec![
            Change::Clear(Attr::JobTitle),
            Change::Clear(Attr::Department),
        ],
        desired.clone(),
        all_attrs(),
    );
    assert_eq!(apply(&client, &[op]).await, vec![WriteOutcome::Updated]);
    let raw = server.user(&id).await.unwrap();
    assert!(raw.get("title").is_none(), "{raw}");
    assert!(raw[ENTERPRISE].get("department").is_none(), "{raw}");
    assert_eq!(raw[ENTERPRISE]["employeeNumber"], "N-E1");
    assert_eq!(listed(&client, "E1").await.member, desired);
}

#[tokio::test]
async fn uniqueness_conflict_fails_only_that_op() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    server
        .create_raw_user(json!({"userName": "taken@example.com"}))
        .await;
    let mut config = server.config();
    config.bulk = BulkMode::Off;
    let client = connect_with(config).await;
    create_all(&client, vec![member("E9", "e9@example.com")]).await;
    let e9 = listed(&client, "E9").await;

    let ops = [
        WriteOp::Create {
            member: member("E1", "one@example.com"),
        },
        // userName is compared case-insensitively.
        WriteOp::Create {
            member: member("E2", "Taken@Example.com"),
        },
        update(
            &e9,
            vec![Change::Set(Attr::Email, "taken@example.com".into())],
            member("E9", "taken@example.com"),
            AttrSet::from_iter([Attr::Email]),
        ),
        WriteOp::Create {
            member: member("E3", "three@example.com"),
        },
    ];
    let outcomes = apply(&client, &ops).await;
    assert!(matches!(outcomes[0], WriteOutcome::Created { .. }));
    assert_eq!(
        outcomes[1],
        WriteOutcome::Failed {
            field: Some("email".into()),
            message: "Taken@Example.com is already used by another account in the destination (409 uniqueness)".into(),
            refused: None,
        }
    );
    assert_eq!(
        outcomes[2],
        WriteOutcome::Failed {
            field: Some("email".into()),
            message: "taken@example.com is already used by another account in the destination (409 uniqueness)".into(),
            refused: None,
        }
    );
    assert!(matches!(outcomes[3], WriteOutcome::Created { .. }));
    assert!(server.user_by_external_id("E2").await.is_none());
    assert_eq!(
        server.user_by_external_id("E9").await.unwrap()["userName"],
        "e9@example.com"
    );
    assert_eq!(client.stats().bulk_requests, 0);
}

#[tokio::test]
async fn stale_version_is_reread_and_retried() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    let client = connect_adjusted(&server, no_bulk).await;
    let original = full_member("E1", "ada@example.com");
    let id = create_all(&client, vec![original.clone()]).await[0].clone();
    let stale = listed(&client, "E1").await;

    // Someone else edits the member after the list: the listed version is stale.
    server
        .patch_raw_user(
            &id,
            json!([{"op": "replace", "path": "nickName", "value": "Countess"}]),
        )
        .await;
    let desired = Member {
        department: Some("Research".into()),
        ..original.clone()
    };
    let op = update(
        &stale,
        vec![Change::Set(Attr::Department, "Research".into())],
        desired.clone(),
        all_attrs(),
    );
    let (reads, writes) = (client.stats().reads, client.stats().writes);
    assert_eq!(apply(&client, &[op]).await, vec![WriteOutcome::Updated]);
    assert_eq!(client.stats().writes - writes, 2, "412, then the retry");
    assert_eq!(client.stats().reads - reads, 1, "one re-read");
    let raw = server.user(&id).await.unwrap();
    assert_eq!(raw[ENTERPRISE]["department"], "Research");
    assert_eq!(raw["nickName"], "Countess", "the other edit is kept");

    // The other edit already made the change: after the re-read nothing is left to do.
    let stale = listed(&client, "E1").await;
    server
        .patch_raw_user(
            &id,
            json!([{"op": "replace", "path": "title", "value": "Chief Analyst"}]),
        )
        .await;
    let op = update(
        &stale,
        vec![Change::Set(Attr::JobTitle, "Chief Analyst".into())],
        Member {
            job_title: Some("Chief Analyst".into()),
            ..desired
        },
        all_attrs(),
    );
    let writes = client.stats().writes;
    assert_eq!(apply(&client, &[op]).await, vec![WriteOutcome::Updated]);
    assert_eq!(
        client.stats().writes - writes,
        1,
        "no write after the re-read"
    );
}

#[tokio::test]
async fn update_of_a_deleted_member_fails_with_the_reason() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    let client = connect(&server).await;
    let id = create_all(&client, vec![member("E1", "ada@example.com")]).await[0].clone();
    let current = listed(&client, "E1").await;
    server.delete_user(&id).await;
    let op = update(
        &current,
        vec![Change::Active(false)],
        Member {
            active: false,
            ..member("E1", "ada@example.com")
        },
        all_attrs(),
    );
    for client in [connect_adjusted(&server, no_bulk).await, client] {
        assert_eq!(
            apply(&client, std::slice::from_ref(&op)).await,
            vec![WriteOutcome::Failed {
                field: None,
                message: "member was deleted in the destination during the run".into(),
                refused: None,
            }]
        );
    }
}

#[tokio::test]
async fn put_path_keeps_what_it_does_not_manage() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    let client = connect_adjusted(&server, |c| Capabilities {
        patch: false,
        bulk: None,
        ..c.clone()
    })
    .await;
    let raw = server
        .create_raw_user(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "userName": "ada@example.com", "externalId": "E1",
            "nickName": "Countess", "title": "Analyst",
            "phoneNumbers": [{"value": "+44 20 7946 0000", "type": "work"}],
            "emails": [{"value": "home@example.net", "type": "home", "primary": true}],
            ENTERPRISE: {"costCenter": "CC-7", "department": "Engines"},
        }))
        .await;
    let id = raw["id"].as_str().unwrap().to_string();
    let current = listed(&client, "E1").await;
    let desired = Member {
        job_title: Some("Chief Analyst".into()),
        department: None,
        active: false,
        ..member("E1", "ada.l@example.com")
    };
    let op = update(
        &current,
        vec![
            Change::Set(Attr::Email, "ada.l@example.com".into()),
            Change::Set(Attr::JobTitle, "Chief Analyst".into()),
            Change::Clear(Attr::Department),
            Change::Active(false),
        ],
        desired,
        AttrSet::from_iter([Attr::Email, Attr::JobTitle, Attr::Department]),
    );
    assert_eq!(apply(&client, &[op]).await, vec![WriteOutcome::Updated]);

    let after = server.user(&id).await.unwrap();
    assert_eq!(after["userName"], "ada.l@example.com");
    assert_eq!(after["title"], "Chief Analyst");
    assert_eq!(after["active"], false);
    assert_eq!(after["nickName"], "Countess");
    assert_eq!(after["phoneNumbers"], raw["phoneNumbers"]);
    assert_eq!(after[ENTERPRISE]["costCenter"], "CC-7");
    assert!(after[ENTERPRISE].get("department").is_none(), "{after}");
    let emails = after["emails"].as_array().unwrap();
    assert!(emails.iter().any(|e| e["value"] == "home@example.net"));
    assert!(emails
        .iter()
        .any(|e| e["type"] == "work" && e["value"] == "ada.l@example.com" && e["primary"] == true));
    assert_eq!(client.stats().bulk_requests, 0);

    // A stale version on the PUT path: the GET shows the change, the update is re-planned.
    let stale = listed(&client, "E1").await;
    server
        .patch_raw_user(
            &id,
            json!([{"op": "replace", "path": "displayName", "value": "Ada"}]),
        )
        .await;
    let op = update(
        &stale,
        vec![Change::Active(true)],
        Member {
            active: true,
            ..member("E1", "ada.l@example.com")
        },
        AttrSet::from_iter([Attr::Email]),
    );
    assert_eq!(apply(&client, &[op]).await, vec![WriteOutcome::Updated]);
    let after = server.user(&id).await.unwrap();
    assert_eq!(after["active"], true);
    assert_eq!(after["displayName"], "Ada");
}

#[tokio::test]
async fn bulk_sends_creates_and_patches_in_chunks() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    server
        .create_raw_user(json!({"userName": "taken@example.com"}))
        .await;
    let client = connect(&server).await;
    let caps = Capabilities {
        bulk: Some(BulkLimits {
            max_operations: 3,
            max_payload_size: 1 << 20,
        }),
        ..client.capabilities().clone()
    };
    let client = client.with_capabilities(caps);
    let existing_ids = create_all(
        &client,
        vec![
            full_member("X1", "x1@example.com"),
            full_member("X2", "x2@example.com"),
            full_member("X3", "x3@example.com"),
        ],
    )
    .await;
    assert_eq!(client.stats().bulk_requests, 1);
    let x: Vec<DestinationMember> = {
        let all = client.list_members().await.unwrap();
        ["X1", "X2", "X3"]
            .iter()
            .map(|e| {
                all.iter()
                    .find(|m| m.member.employee_id == *e)
                    .unwrap()
                    .clone()
            })
            .collect()
    };
    // X3 changes behind the client's back: its PATCH inside the bulk gets a 412.
    server
        .patch_raw_user(
            &existing_ids[2],
            json!([{"op": "replace", "path": "nickName", "value": "n"}]),
        )
        .await;

    let retitle = |m: &DestinationMember, title: &str| {
        update(
            m,
            vec![Change::Set(Attr::JobTitle, title.into())],
            Member {
                job_title: Some(title.into()),
                ..m.member.clone()
            },
            all_attrs(),
        )
    };
    let ops = vec![
        WriteOp::Create {
            member: full_member("N1", "n1@example.com"),
        },
        WriteOp::Create {
            member: full_member("N2", "n2@example.com"),
        },
        WriteOp::Create {
            member: member("N3", "taken@example.com"),
        },
        WriteOp::Create {
            member: member("N4", "n4@example.com"),
        },
        retitle(&x[0], "T1"),
        retitle(&x[1], "T2"),
        retitle(&x[2], "T3"),
        update(
            &x[0],
            vec![Change::Active(false)],
            Member {
                active: false,
                ..x[0].member.clone()
            },
            all_attrs(),
        ),
    ];
    let before = client.stats();
    let outcomes = apply(&client, &ops).await;
    let after = client.stats();

    for (i, employee_id) in [(0, "N1"), (1, "N2"), (3, "N4")] {
        let id = created_id(&outcomes[i]);
        let raw = server.user_by_external_id(employee_id).await.unwrap();
        assert_eq!(raw["id"], id.as_str(), "{employee_id}");
    }
    assert_eq!(
        outcomes[2],
        WriteOutcome::Failed {
            field: Some("email".into()),
            message: "taken@example.com is already used by another account in the destination (409 uniqueness)".into(),
            refused: None,
        }
    );
    // The same member twice (ops 4 and 7): the first PATCH makes the second one's
    // version stale, and the re-read + retry applies it.
    assert_eq!(outcomes[4..], vec![WriteOutcome::Updated; 4]);
    for (id, title) in existing_ids.iter().zip(["T1", "T2", "T3"]) {
        assert_eq!(server.user(id).await.unwrap()["title"], title);
    }
    assert_eq!(
        server.user(&existing_ids[0]).await.unwrap()["active"],
        false
    );
    assert_eq!(
        server.user(&existing_ids[2]).await.unwrap()["nickName"],
        "n"
    );

    assert_eq!(
        after.bulk_requests - before.bulk_requests,
        3,
        "8 ops, 3 per request"
    );
    assert_eq!(after.bulk_operations - before.bulk_operations, 8);
    // The retries after a 412 go one by one, each after a re-read.
    assert_eq!(
        after.writes - before.writes,
        2,
        "two PATCHes retried on their own"
    );
    assert_eq!(after.reads - before.reads, 2, "each after a re-read");
}

#[tokio::test]
async fn bulk_respects_the_payload_size() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    let client = connect(&server).await;
    let caps = Capabilities {
        bulk: Some(BulkLimits {
            max_operations: 1000,
            max_payload_size: 1100,
        }),
        ..client.capabilities().clone()
    };
    let client = client.with_capabilities(caps);
    let sized = |i: usize, len: usize| Member {
        display_name: Some("x".repeat(len)),
        ..member(&format!("E{i}"), &format!("e{i}@example.com"))
    };
    // Each op is ~260 bytes + its display name, the envelope ~80: two 100-byte ones fit
    // in 1100 bytes, a 600-byte one only alone, a 1000-byte one in no bulk request.
    let members = vec![sized(0, 100), sized(1, 100), sized(2, 600), sized(3, 1000)];
    let ops: Vec<_> = members
        .iter()
        .cloned()
        .map(|member| WriteOp::Create { member })
        .collect();
    let outcomes = apply(&client, &ops).await;
    for (outcome, m) in outcomes.iter().zip(&members) {
        let id = created_id(outcome);
        let raw = server.user(&id).await.unwrap();
        assert_eq!(raw["displayName"], m.display_name.as_deref().unwrap());
    }
    let stats = client.stats();
    assert_eq!(stats.bulk_requests, 2);
    assert_eq!(stats.bulk_operations, 3);
    assert_eq!(stats.writes, 1, "the oversized op goes on its own");
}

#[tokio::test]
async fn many_individual_writes_run_concurrently_and_report_in_order() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    let mut config = server.config();
    config.bulk = BulkMode::Off;
    config.concurrency = 4;
    let client = connect_with(config).await;
    let members: Vec<Member> = (0..20)
        .map(|i| member(&format!("E{i}"), &format!("e{i}@example.com")))
        .collect();
    let ids = create_all(&client, members).await;
    for (i, id) in ids.iter().enumerate() {
        let raw = server.user(id).await.unwrap();
        assert_eq!(raw["externalId"], format!("E{i}"));
    }
    assert_eq!(client.stats().writes, 20);
}

#[tokio::test]
async fn a_refused_bulk_request_falls_back_to_individual_writes() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    let client = connect(&server).await;
    // Announce more than the server takes: it refuses the whole request (413).
    let caps = Capabilities {
        bulk: Some(BulkLimits {
            max_operations: 1000,
            max_payload_size: 4 << 20,
        }),
        ..client.capabilities().clone()
    };
    let client = client.with_capabilities(caps);
    let members: Vec<Member> = (0..110)
        .map(|i| Member {
            display_name: Some(format!("{i} {}", "x".repeat(10_000))),
            ..member(&format!("E{i}"), &format!("e{i}@example.com"))
        })
        .collect();
    let ids = create_all(&client, members).await;
    assert_eq!(server.users().await.len(), 110);
    for (i, id) in ids.iter().enumerate().step_by(27) {
        assert_eq!(
            server.user(id).await.unwrap()["externalId"],
            format!("E{i}")
        );
    }
    let stats = client.stats();
    assert_eq!(stats.bulk_requests, 1);
    assert_eq!(stats.writes, 110);
}

#[tokio::test]
async fn transient_failures_are_retried_without_duplicating_members() {
    support::require_peers!(Scim2Server);
    let server = ScimServer::start();
    let front = Front::start(&server).await;
    let mut config = ScimConfig::new(&front.url, SecretString::new(server.token.clone())).unwrap();
    config.bulk = BulkMode::Off;
    config.backoff_base = std::time::Duration::from_millis(10);

    // Two attempts per request: a 503, then the config, /Schemas and /ResourceTypes.
    front.inject(&[Fault::Unavailable]);
    let client = connect_with(config).await;
    assert_eq!(client.stats().reads, 4);

    // The first POST is applied but its answer is lost; the retry meets the account it
    // made (409) and recognises it instead of reporting a clash or creating a twin.
    front.inject(&[Fault::LoseAnswer]);
    let outcomes = apply(
        &client,
        &[WriteOp::Create {
            member: member("E1", "ada@example.com"),
        }],
    )
    .await;
    let id = created_id(&outcomes[0]);
    let users = server.users().await;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["id"], id.as_str());
    assert_eq!(client.stats().writes, 2);

    // A 503 on a PATCH is retried too.
    let current = listed(&client, "E1").await;
    front.inject(&[Fault::Unavailable]);
    let op = update(
        &current,
        vec![Change::Set(Attr::JobTitle, "Analyst".into())],
        Member {
            job_title: Some("Analyst".into()),
            ..member("E1", "ada@example.com")
        },
        all_attrs(),
    );
    assert_eq!(apply(&client, &[op]).await, vec![WriteOutcome::Updated]);
    assert_eq!(server.user(&id).await.unwrap()["title"], "Analyst");
}

/// What a [`PartialFront`] refuses, as partial SCIM services do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Partial {
    /// PATCH paths with a value filter or a sub-attribute: 400 `invalidPath`.
    NoValuePaths,
    /// No PATCH at all: 501.
    NoPatch,
    /// PATCH paths with a value filter or a sub-attribute: 500 (every time); and
    /// `title` silently dropped from what is created (the answer shows it).
    ValuePathsFailAndDropsTitle,
}

/// A request with `title` taken out of its JSON body (Content-Length adjusted).
fn without_title(request: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(request).to_string();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return request.to_vec();
    };
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(body) else {
        return request.to_vec();
    };
    if let Some(o) = v.as_object_mut() {
        o.remove("title");
    }
    let body = v.to_string();
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length:") {
                format!("content-length: {}", body.len())
            } else {
                l.to_string()
            }
        })
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes()
}

/// A front for `scim2-server` that refuses what a partial service refuses and passes
/// the rest on; counts the refusals and the PATCH and PUT requests it saw.
struct PartialFront {
    url: String,
    seen: std::sync::Arc<Mutex<Vec<(String, bool)>>>,
}

impl PartialFront {
    async fn start(server: &ScimServer, partial: Partial) -> PartialFront {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v2", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (log, port) = (seen.clone(), server.port);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut inbound).await else {
                        return;
                    };
                    let text = String::from_utf8_lossy(&request).to_string();
                    let method = text.split(' ').next().unwrap_or_default().to_string();
                    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
                    let refused = method == "PATCH"
                        && match partial {
                            Partial::NoPatch => true,
                            Partial::NoValuePaths | Partial::ValuePathsFailAndDropsTitle => {
                                let v: serde_json::Value =
                                    serde_json::from_str(body).unwrap_or_default();
                                v["Operations"].as_array().into_iter().flatten().any(|op| {
                                    op["path"].as_str().is_some_and(|p| {
                                        !p.starts_with("urn:")
                                            && (p.contains('[') || p.contains('.'))
                                    })
                                })
                            }
                        };
                    if matches!(method.as_str(), "PATCH" | "PUT") {
                        log.lock().unwrap().push((method.clone(), refused));
                    }
                    if refused {
                        let (status, body) = match partial {
                            Partial::NoPatch => (
                                "501 Not Implemented",
                                json!({"status": "501", "detail": "PATCH is not supported"}),
                            ),
                            Partial::ValuePathsFailAndDropsTitle => (
                                "500 Internal Server Error",
                                json!({"status": "500", "detail": "unexpected error"}),
                            ),
                            Partial::NoValuePaths => (
                                "400 Bad Request",
                                json!({"status": "400", "scimType": "invalidPath", "detail": "unsupported path"}),
                            ),
                        };
                        let body = body.to_string();
                        let _ = inbound
                            .write_all(format!("HTTP/1.0 {status}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
                            .await;
                        return;
                    }
                    let request =
                        if method == "POST" && partial == Partial::ValuePathsFailAndDropsTitle {
                            without_title(&request)
                        } else {
                            request
                        };
                    let mut outbound = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .unwrap();
                    outbound.write_all(&request).await.unwrap();
                    let mut answer = Vec::new();
                    let _ = tokio::io::AsyncReadExt::read_to_end(&mut outbound, &mut answer).await;
                    let _ = inbound.write_all(&answer).await;
                });
            }
        });
        PartialFront { url, seen }
    }

    /// (method, refused) of every PATCH and PUT so far, then forgets them.
    fn take(&self) -> Vec<(String, bool)> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

async fn rename_twice(partial: Partial) -> Vec<(String, bool)> {
    let server = ScimServer::start();
    let front = PartialFront::start(&server, partial).await;
    let mut config = ScimConfig::new(&front.url, SecretString::new(server.token.clone())).unwrap();
    config.bulk = BulkMode::Off;
    let client = connect_with(config).await;
    let ids = create_all(
        &client,
        vec![
            full_member("E1", "ada@example.com"),
            full_member("E2", "bob@example.com"),
        ],
    )
    .await;
    let mut seen = Vec::new();
    for (n, (employee, email)) in [("E1", "ada.byron@example.com"), ("E2", "bob.b@example.com")]
        .into_iter()
        .enumerate()
    {
        let current = listed(&client, employee).await;
        let desired = Member {
            last_name: Some("Byron".into()),
            email: email.into(),
            ..full_member(employee, email)
        };
        let op = update(
            &current,
            vec![
                Change::Set(Attr::LastName, "Byron".into()),
                Change::Set(Attr::Email, email.into()),
            ],
            desired,
            all_attrs(),
        );
        assert_eq!(
            apply(&client, &[op]).await,
            vec![WriteOutcome::Updated],
            "{partial:?}"
        );
        let user = server.user(&ids[n]).await.unwrap();
        assert_eq!(user["name"]["familyName"], "Byron", "{partial:?}");
        assert_eq!(
            user["name"]["givenName"], "Ada",
            "{partial:?}: the other name stays"
        );
        assert_eq!(user["userName"], email);
        let emails = user["emails"].as_array().unwrap();
        assert_eq!(emails.len(), 1, "{partial:?}: {emails:?}");
        assert_eq!(emails[0]["value"], email);
        assert_eq!(user[ENTERPRISE]["department"], "Engines");
        seen.push(front.take());
    }
    seen.concat()
}

#[tokio::test]
async fn refused_value_paths_fall_back_to_whole_attributes_once_per_run() {
    support::require_peers!(Scim2Server);
    let seen = rename_twice(Partial::NoValuePaths).await;
    // The first update learns (refused, then whole attributes); the second goes
    // straight to what worked.
    let patch = |refused| ("PATCH".to_string(), refused);
    assert_eq!(seen, vec![patch(true), patch(false), patch(false)]);
}

#[tokio::test]
async fn refused_patch_falls_back_to_put_once_per_run() {
    support::require_peers!(Scim2Server);
    let seen = rename_twice(Partial::NoPatch).await;
    let put = ("PUT".to_string(), false);
    assert_eq!(
        seen,
        vec![
            ("PATCH".into(), true),
            ("PATCH".into(), true),
            put.clone(),
            put
        ]
    );
}

#[tokio::test]
async fn a_server_error_on_value_paths_falls_back_and_the_next_run_starts_with_what_worked() {
    support::require_peers!(Scim2Server);
    use freshteam_operator::destination::ConvergenceNotes;
    let server = ScimServer::start();
    let front = PartialFront::start(&server, Partial::ValuePathsFailAndDropsTitle).await;
    let mut config = ScimConfig::new(&front.url, SecretString::new(server.token.clone())).unwrap();
    config.bulk = BulkMode::Off;
    let client = connect_with(config.clone()).await;
    // The create's answer shows what the service did not keep.
    let created = apply(
        &client,
        &[WriteOp::Create {
            member: full_member("E1", "ada@example.com"),
        }],
    )
    .await;
    let WriteOutcome::Created { id, unkept } = &created[0] else {
        panic!("{created:?}")
    };
    assert_eq!(unkept, &vec![Change::Set(Attr::JobTitle, "Analyst".into())]);

    let rename = |current: &DestinationMember, last: &str| {
        update(
            current,
            vec![Change::Set(Attr::LastName, last.into())],
            Member {
                last_name: Some(last.into()),
                ..full_member("E1", "ada@example.com")
            },
            all_attrs(),
        )
    };
    let current = listed(&client, "E1").await;
    assert_eq!(
        apply(&client, &[rename(&current, "Byron")]).await,
        vec![WriteOutcome::Updated]
    );
    assert_eq!(
        server.user(id).await.unwrap()["name"]["familyName"],
        "Byron"
    );
    let seen = front.take();
    assert!(
        seen.first().is_some_and(|(_, refused)| *refused),
        "{seen:?}"
    );
    assert_eq!(seen.last(), Some(&("PATCH".to_string(), false)), "{seen:?}");
    let mut notes = ConvergenceNotes::default();
    client.learnt(&mut notes);
    let note = notes.write_form(front.url.as_str()).unwrap().to_string();
    assert!(note.starts_with("wholeAttributes "), "{note}");

    // The next run (a new client) starts with the form that worked: no 500 first.
    let next = connect_with(config).await;
    next.remember(&notes);
    let current = listed(&next, "E1").await;
    assert_eq!(
        apply(&next, &[rename(&current, "King")]).await,
        vec![WriteOutcome::Updated]
    );
    assert_eq!(front.take(), vec![("PATCH".to_string(), false)]);
    assert_eq!(server.user(id).await.unwrap()["name"]["familyName"], "King");
    // Remembered as learnt, its date kept (it is tried again once a month old).
    let mut later = notes.clone();
    next.learnt(&mut later);
    assert_eq!(later.write_form(front.url.as_str()), Some(note.as_str()));
}

/// A scripted SCIM service with a hostile list: `users` members, announcing `total`
/// (raw JSON, `None`: absent), pages of at most `page` users; `ignore_start` answers
/// every page from the first user; `endless` makes up users past the end; `trickle`
/// answers one user a page after the first.
#[derive(Clone)]
struct HostileList {
    users: usize,
    total: Option<&'static str>,
    page: usize,
    ignore_start: bool,
    endless: bool,
    /// Pages after the first hold one user.
    trickle: bool,
    /// `totalResults` always one page beyond the page served (at least `total`).
    growing: bool,
}

impl Default for HostileList {
    fn default() -> Self {
        HostileList {
            users: 0,
            total: None,
            page: 10,
            ignore_start: false,
            endless: false,
            trickle: false,
            growing: false,
        }
    }
}

async fn hostile_list(h: HostileList) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v2", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let h = h.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut inbound).await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let line = String::from_utf8_lossy(&request)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let target = line.split(' ').nth(1).unwrap_or_default().to_string();
                let query = |key: &str| -> usize {
                    target
                        .split(['?', '&'])
                        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1)
                };
                let (status, body) = if target.starts_with("/v2/Users") {
                    let start = if h.ignore_start {
                        1
                    } else {
                        query("startIndex")
                    };
                    let last = if h.endless { usize::MAX } else { h.users };
                    let n = query("count").min(h.page);
                    let n = if h.trickle && start > 1 { n.min(1) } else { n };
                    let users: Vec<String> = (start..=last)
                        .take(n)
                        .map(|i| format!(r#"{{"id":"u{i}","userName":"u{i}@example.com","externalId":"E{i}"}}"#))
                        .collect();
                    let total = h
                        .total
                        .map(|t| match h.growing {
                            true => {
                                let least: usize = t.parse().unwrap();
                                least.max(start - 1 + 2 * n).to_string()
                            }
                            false => t.to_string(),
                        })
                        .map(|t| format!(r#""totalResults":{t},"#))
                        .unwrap_or_default();
                    (
                        "200 OK",
                        format!(r#"{{{total}"Resources":[{}]}}"#, users.join(",")),
                    )
                } else {
                    ("404 Not Found", r#"{"status":"404"}"#.to_string())
                };
                let _ = inbound
                    .write_all(format!("HTTP/1.0 {status}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
                    .await;
            });
        }
    });
    (url, requests)
}

async fn list_hostile(h: HostileList) -> (Result<Vec<DestinationMember>, DestinationError>, usize) {
    let (url, requests) = hostile_list(h).await;
    let mut config = ScimConfig::new(&url, SecretString::new("t")).unwrap();
    config.max_listed_users = 500;
    config.max_list_pages = 100;
    let client = connect_with(config).await;
    let before = requests.load(std::sync::atomic::Ordering::Relaxed);
    let result = client.list_members().await;
    (
        result,
        requests.load(std::sync::atomic::Ordering::Relaxed) - before,
    )
}

#[tokio::test]
async fn a_total_above_the_cap_fails_at_the_first_page_naming_it() {
    for (total, named) in [
        ("1e12", "1000000000000"),
        ("1000000000000", "1000000000000"),
        (
            "340282366920938463463374607431768211456",
            "18446744073709551615",
        ),
        ("501", "501"),
    ] {
        let started = std::time::Instant::now();
        let (result, requests) = list_hostile(HostileList {
            users: 25,
            total: Some(total),
            page: 10,
            ..HostileList::default()
        })
        .await;
        let e = result.expect_err("over the cap").to_string();
        assert!(
            e.contains(&format!(
                "says it holds {named} users (totalResults), more than the 500"
            )),
            "{e}"
        );
        assert_eq!(requests, 1, "the first page only");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
    // A total that is no count at all is ignored: the list ends at its first short page.
    let (result, _) = list_hostile(HostileList {
        users: 25,
        total: Some("-5"),
        page: 10,
        ..HostileList::default()
    })
    .await;
    assert_eq!(result.expect("lists").len(), 25);
}

#[tokio::test]
async fn a_list_that_never_ends_stops_at_the_cap_with_a_clear_error() {
    let started = std::time::Instant::now();
    let (result, _) = list_hostile(HostileList {
        total: None,
        page: 10,
        endless: true,
        ..HostileList::default()
    })
    .await;
    let e = result.expect_err("an endless list is an error").to_string();
    assert!(
        e.contains("more than 500 users without a totalResults, the most the operator reads"),
        "{e}"
    );
    // Pages of one user when a thousand were asked: short pages, or the page cap.
    let (result, requests) = list_hostile(HostileList {
        total: None,
        page: 1,
        endless: true,
        ..HostileList::default()
    })
    .await;
    let e = result.expect_err("an endless list is an error").to_string();
    assert!(
        e.contains("did not end after 100 pages") || e.contains("far fewer users than asked"),
        "{e}"
    );
    assert!(requests <= 110, "{requests}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[tokio::test]
async fn a_list_whose_total_keeps_growing_stops_with_a_clear_error() {
    let (url, requests) = hostile_list(HostileList {
        total: Some("1000"),
        page: 10,
        endless: true,
        growing: true,
        ..HostileList::default()
    })
    .await;
    let mut config = ScimConfig::new(&url, SecretString::new("t")).unwrap();
    config.max_listed_users = 100_000;
    let client = connect_with(config).await;
    let started = std::time::Instant::now();
    let e = client
        .list_members()
        .await
        .expect_err("never ends")
        .to_string();
    assert!(
        e.contains("its totalResults grew from 1000 to")
            || e.contains("did not end after 226 pages, more than its 1000 users"),
        "{e}"
    );
    let requests = requests.load(std::sync::atomic::Ordering::Relaxed);
    assert!(requests < 260, "{requests}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test]
async fn pages_far_shorter_than_asked_while_more_are_claimed_stop_the_list() {
    let started = std::time::Instant::now();
    let (result, requests) = list_hostile(HostileList {
        users: 400,
        total: Some("400"),
        page: 10,
        trickle: true,
        ..HostileList::default()
    })
    .await;
    let e = result
        .expect_err("a trickling list is an error")
        .to_string();
    // Whichever bound comes first (the test's page cap is 100).
    assert!(
        e.contains("far fewer users than asked on 100 pages")
            || e.contains(
                "did not end after 100 pages, more than its 400 users (totalResults) take"
            ),
        "{e}"
    );
    assert!(requests <= 110, "{requests}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[tokio::test]
async fn a_service_ignoring_start_index_is_an_error_not_a_loop() {
    let (result, requests) = list_hostile(HostileList {
        users: 30,
        total: None,
        page: 10,
        ignore_start: true,
        ..HostileList::default()
    })
    .await;
    let e = result.expect_err("repeated pages are an error").to_string();
    assert!(e.contains("ignores startIndex"), "{e}");
    assert!(requests <= 10, "{requests}");
}
