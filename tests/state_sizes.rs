//! The operator's state objects (ledger, invitation outbox) stay under the API server's
//! 1 MiB object limit at scale, and state an earlier version kept in ConfigMaps moves into
//! them once, whole: against kube-fake-client.

use std::time::Instant;

use std::collections::BTreeMap;

use freshteam_operator::api::{IntegrationState, StateKind};
use freshteam_operator::destination::ConvergenceNotes;
use freshteam_operator::ledger::{Ledger, Origin};
use freshteam_operator::notify::{EntryState, Outbox, OutboxEntry};
use freshteam_operator::state::{object_of, ClusterStore, Store};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

const MIB: usize = 1024 * 1024;

async fn client() -> Client {
    kube_fake_client::ClientBuilder::new()
        .with_resource::<IntegrationState>()
        .build()
        .await
        .expect("fake API")
}

/// Bytes of every stored object (its whole JSON, metadata included).
async fn stored_sizes(api: &Api<IntegrationState>, base: &str, n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for j in 0..n {
        let name = if j == 0 {
            base.to_string()
        } else {
            format!("{base}-{j}")
        };
        if let Some(obj) = api.get_opt(&name).await.unwrap() {
            out.push(serde_json::to_vec(&obj).unwrap().len());
        }
    }
    out
}

#[tokio::test]
async fn a_ledger_of_100000_members_fits_and_reads_back_whole() {
    let client = client().await;
    let api: Api<IntegrationState> = Api::namespaced(client.clone(), "hr");
    let store = ClusterStore::<Ledger>::new(client.clone(), "hr", "acme", None);
    let mut ledger = Ledger::default();
    for i in 0..100_000 {
        let origin = if i % 10 == 0 {
            Origin::Adopted
        } else {
            Origin::Created
        };
        ledger.insert(&format!("E-{i:06}"), origin);
    }
    let started = Instant::now();
    store.save(&ledger).await.unwrap();
    let saved_in = started.elapsed();
    let sizes = stored_sizes(&api, "acme-ledger", 64).await;
    println!(
        "ledger of 100,000: {} objects, largest {} bytes, total {} bytes, saved in {saved_in:?}",
        sizes.len(),
        sizes.iter().max().unwrap(),
        sizes.iter().sum::<usize>()
    );
    assert!(sizes.iter().all(|s| *s < MIB), "{sizes:?}");
    assert!(sizes.len() > 1, "100,000 members need more than one object");

    let fresh = ClusterStore::<Ledger>::new(client.clone(), "hr", "acme", None);
    assert_eq!(fresh.load().await.unwrap(), ledger);
    // One member more rewrites one object, and the ledger still reads back whole.
    ledger.insert("E-NEW", Origin::Created);
    fresh.save(&ledger).await.unwrap();
    let again = ClusterStore::<Ledger>::new(client, "hr", "acme", None);
    assert_eq!(again.load().await.unwrap(), ledger);
}

#[tokio::test]
async fn an_outbox_of_20000_intents_fits_and_sending_rewrites_small_objects() {
    let client = client().await;
    let api: Api<IntegrationState> = Api::namespaced(client.clone(), "hr");
    let store = ClusterStore::<Outbox>::new(client.clone(), "hr", "acme", None);
    let mut outbox = Outbox::default();
    for i in 0..20_000 {
        outbox.entries.insert(
            format!("E-{i:06}"),
            OutboxEntry {
                email: format!("firstname.lastname.{i}@acme.example"),
                first_name: Some("Firstname".into()),
                state: EntryState::Intended,
                confirmed: true,
                generation: 0,
                refusals: 0,
                last_error: None,
                account: None,
                round: 0,
                since: 1_780_000_000,
            },
        );
    }
    store.save(&outbox).await.unwrap();
    let sizes = stored_sizes(&api, "acme-invitations", 64).await;
    println!(
        "outbox of 20,000 intents: {} objects, largest {} bytes, total {} bytes",
        sizes.len(),
        sizes.iter().max().unwrap(),
        sizes.iter().sum::<usize>()
    );
    assert!(sizes.iter().all(|s| *s < MIB), "{sizes:?}");

    // One invitation sent: one entry changes, one small object is written.
    let e = outbox.entries.get_mut("E-000007").unwrap();
    e.state = EntryState::Sent;
    let started = Instant::now();
    store.save(&outbox).await.unwrap();
    println!("one send saved in {:?}", started.elapsed());
    let written = store.object_sizes();
    assert!(
        written.iter().all(|s| *s < 300 * 1024),
        "objects kept small: {written:?}"
    );
    let fresh = ClusterStore::<Outbox>::new(client, "hr", "acme", None);
    assert_eq!(fresh.load().await.unwrap(), outbox);
}

fn intent(i: usize, state: EntryState) -> OutboxEntry {
    OutboxEntry {
        email: format!("member.{i}@acme.example"),
        first_name: Some("Member".into()),
        state,
        confirmed: true,
        generation: 3,
        refusals: 0,
        last_error: None,
        account: None,
        round: 0,
        since: 1_780_000_000,
    }
}

fn config_map(name: &str, key: &str, json: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(key.to_string(), json)])),
        ..ConfigMap::default()
    }
}

/// Writes `entries` as the previous version did: `n` ConfigMaps, object 0 holding
/// `state.json` (`objects`, `meta`, its entries), object `j` `entries.json`.
async fn write_legacy<T: serde::Serialize>(
    api: &Api<ConfigMap>,
    base: &str,
    n: usize,
    meta: serde_json::Value,
    entries: &BTreeMap<String, T>,
) {
    let mut parts: Vec<BTreeMap<&String, &T>> = (0..n).map(|_| BTreeMap::new()).collect();
    for (k, v) in entries {
        parts[object_of(k, n)].insert(k, v);
    }
    for (j, part) in parts.iter().enumerate() {
        let cm = if j == 0 {
            let head = serde_json::json!({"objects": n, "meta": meta, "entries": part});
            config_map(base, "state.json", head.to_string())
        } else {
            let json = serde_json::to_string(part).unwrap();
            config_map(&format!("{base}-{j}"), "entries.json", json)
        };
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
}

#[tokio::test]
async fn state_kept_in_configmaps_by_an_earlier_version_moves_once_and_whole() {
    let client = client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "hr");
    let states: Api<IntegrationState> = Api::namespaced(client.clone(), "hr");
    // A ledger over 4 ConfigMaps, an outbox in the one-object `outbox.json` form of the
    // first versions, and convergence notes.
    let mut ledger = Ledger::default();
    for i in 0..5_000 {
        ledger.insert(&format!("E-{i:05}"), Origin::Created);
    }
    ledger.insert("E-ADOPTED", Origin::Adopted);
    write_legacy(
        &cms,
        "acme-ledger",
        4,
        serde_json::Value::Null,
        &ledger.origins(),
    )
    .await;
    let outbox = Outbox {
        generation: 3,
        entries: (0..40)
            .map(|i| {
                let state = if i < 30 {
                    EntryState::Sent
                } else {
                    EntryState::Intended
                };
                (format!("E-{i:05}"), intent(i, state))
            })
            .collect(),
    };
    let legacy_outbox = serde_json::json!({"generation": 3, "entries": outbox.entries});
    cms.create(
        &PostParams::default(),
        &config_map("acme-invitations", "outbox.json", legacy_outbox.to_string()),
    )
    .await
    .unwrap();
    let notes_json = serde_json::json!({"E-00001": {"department": "00000000deadbeef"}});
    let notes: ConvergenceNotes = serde_json::from_value(notes_json.clone()).unwrap();
    cms.create(
        &PostParams::default(),
        &config_map("acme-convergence", "notes.json", notes_json.to_string()),
    )
    .await
    .unwrap();

    // The first load returns the old state whole and writes it into IntegrationStates.
    let store = ClusterStore::<Ledger>::new(client.clone(), "hr", "acme", None);
    assert_eq!(store.load().await.unwrap(), ledger);
    assert_eq!(store.location(), "IntegrationState acme-ledger");
    let head = states.get("acme-ledger").await.expect("the ledger moved");
    assert_eq!(head.spec.state, StateKind::Ledger);
    let outboxes = ClusterStore::<Outbox>::new(client.clone(), "hr", "acme", None);
    assert_eq!(outboxes.load().await.unwrap(), outbox);
    let moved = states
        .get("acme-invitations")
        .await
        .expect("the outbox moved");
    assert_eq!(moved.spec.meta, serde_json::json!({"generation": 3}));
    assert_eq!(moved.spec.entry_count, 40);
    let convergence = ClusterStore::<ConvergenceNotes>::new(client.clone(), "hr", "acme", None);
    assert_eq!(convergence.load().await.unwrap(), notes);
    assert!(states.get_opt("acme-convergence").await.unwrap().is_some());

    // Once moved, the IntegrationStates are the state: what the old ConfigMaps say no
    // longer counts (they are left as they were, and go with the integration).
    cms.replace(
        "acme-ledger-1",
        &PostParams::default(),
        &config_map("acme-ledger-1", "entries.json", "{}".into()),
    )
    .await
    .unwrap();
    cms.delete("acme-invitations", &Default::default())
        .await
        .unwrap();
    let fresh = ClusterStore::<Ledger>::new(client.clone(), "hr", "acme", None);
    assert_eq!(fresh.load().await.unwrap(), ledger);
    let fresh = ClusterStore::<Outbox>::new(client.clone(), "hr", "acme", None);
    assert_eq!(fresh.load().await.unwrap(), outbox);
    assert!(cms.get_opt("acme-ledger").await.unwrap().is_some());

    // And they take new entries as before.
    ledger.insert("E-NEW", Origin::Created);
    fresh_ledger_save(&client, &ledger).await;
    let again = ClusterStore::<Ledger>::new(client, "hr", "acme", None);
    assert_eq!(again.load().await.unwrap(), ledger);
}

async fn fresh_ledger_save(client: &Client, ledger: &Ledger) {
    let store = ClusterStore::<Ledger>::new(client.clone(), "hr", "acme", None);
    store.load().await.unwrap();
    store.save(ledger).await.unwrap();
}
