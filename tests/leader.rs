//! Leader election over a Lease: of two standbys that saw the same expired Lease only one
//! leads, and a leader whose renewals hang stops leading within its renew deadline.

use std::time::{Duration, Instant};

use freshteam_operator::controller::leader::{LeaderLease, Standing};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

const NS: &str = "operators";
const LEASE: &str = "freshteam-operator";

async fn fake() -> Client {
    kube_fake_client::ClientBuilder::new()
        .with_resource::<Lease>()
        .build()
        .await
        .expect("fake API")
}

/// A Lease last renewed by `holder` long ago.
async fn expired_lease(client: &Client, holder: &str) {
    let long_ago = MicroTime(
        k8s_openapi::jiff::Timestamp::now()
            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(3600))
            .unwrap(),
    );
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(LEASE.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(0),
            renew_time: Some(long_ago.clone()),
            acquire_time: Some(long_ago),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }),
    };
    Api::<Lease>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();
}

fn replica(client: &Client, identity: &str) -> LeaderLease {
    LeaderLease::new(client.clone(), NS, LEASE, identity, Duration::from_secs(6))
}

#[tokio::test]
async fn of_two_standbys_that_saw_the_same_expired_lease_only_one_leads() {
    let client = fake().await;
    expired_lease(&client, "old-leader").await;
    let a = replica(&client, "a");
    let b = replica(&client, "b");
    // Both read the expired Lease before either writes it.
    let seen_by_a = a.observe().await.unwrap();
    let seen_by_b = b.observe().await.unwrap();
    assert_eq!(a.claim(&seen_by_a).await.unwrap(), Standing::Leading);
    assert!(
        matches!(b.claim(&seen_by_b).await.unwrap(), Standing::HeldBy(_)),
        "b won with a stale read"
    );
    let lease = Api::<Lease>::namespaced(client.clone(), NS)
        .get(LEASE)
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_transitions, Some(4));
    // b, looking again, sees a's fresh Lease and stands by.
    assert_eq!(
        b.try_acquire_or_renew().await.unwrap(),
        Standing::HeldBy("a".into())
    );
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Standing::Leading);
}

#[tokio::test]
async fn the_first_replica_creates_the_lease_and_a_second_create_loses() {
    let client = fake().await;
    let a = replica(&client, "a");
    let b = replica(&client, "b");
    let seen_by_a = a.observe().await.unwrap();
    let seen_by_b = b.observe().await.unwrap();
    assert_eq!(a.claim(&seen_by_a).await.unwrap(), Standing::Leading);
    assert!(matches!(
        b.claim(&seen_by_b).await.unwrap(),
        Standing::HeldBy(_)
    ));
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let client = fake().await;
    let a = replica(&client, "a");
    let b = replica(&client, "b");
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Standing::Leading);
    assert_eq!(
        b.try_acquire_or_renew().await.unwrap(),
        Standing::HeldBy("a".into())
    );
    a.release().await.unwrap();
    assert_eq!(b.try_acquire_or_renew().await.unwrap(), Standing::Leading);
}

/// An API server that accepts connections and never answers.
fn black_hole() -> (std::net::TcpListener, Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = kube::Config::new(url.parse().unwrap());
    config.read_timeout = None;
    config.write_timeout = None;
    (listener, Client::try_from(config).unwrap())
}

#[tokio::test]
async fn a_leader_whose_renewals_hang_stops_leading_within_its_deadline() {
    let (_listener, client) = black_hole();
    let leader = replica(&client, "a");
    let started = Instant::now();
    let why = tokio::time::timeout(Duration::from_secs(20), leader.hold())
        .await
        .expect("hold() returned");
    let took = started.elapsed();
    assert!(
        took <= leader.renew_deadline() + leader.call_timeout + Duration::from_secs(1),
        "kept leading for {took:?} without a renewal ({why})"
    );
    assert!(
        took < leader.ttl,
        "still leading when the Lease expired: {took:?}"
    );
    assert!(why.contains("not renewed"), "{why}");
}
