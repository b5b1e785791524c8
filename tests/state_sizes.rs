//! The operator's state objects (ledger, invitation outbox) stay under the API server's
//! 1 MiB object limit at scale: measured against kube-fake-client.

use std::time::Instant;

use freshteam_operator::controller::state::{ConfigMapLedgerStore, ConfigMapOutboxStore};
use freshteam_operator::ledger::{Ledger, LedgerStore, Origin};
use freshteam_operator::notify::{EntryState, Outbox, OutboxEntry, OutboxStore};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

const MIB: usize = 1024 * 1024;

async fn client() -> kube::Client {
    kube_fake_client::ClientBuilder::new()
        .build()
        .await
        .expect("fake API")
}

/// Bytes of every stored object (its whole JSON, metadata included).
async fn stored_sizes(api: &Api<ConfigMap>, base: &str, n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for j in 0..n {
        let name = if j == 0 {
            base.to_string()
        } else {
            format!("{base}-{j}")
        };
        if let Some(cm) = api.get_opt(&name).await.unwrap() {
            out.push(serde_json::to_vec(&cm).unwrap().len());
        }
    }
    out
}

#[tokio::test]
async fn a_ledger_of_100000_members_fits_and_reads_back_whole() {
    let client = client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "hr");
    let store = ConfigMapLedgerStore::new(api.clone(), "acme", None);
    let mut ledger = Ledger::default();
    for i in 0..100_000 {
        let origin = if i % 10 == 0 {
            Origin::Adopted
        } else {
            Origin::Created
        };
        ledger.members.insert(format!("E-{i:06}"), origin);
    }
    let started = Instant::now();
    store.save_ledger(&ledger).await.unwrap();
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

    let fresh = ConfigMapLedgerStore::new(api.clone(), "acme", None);
    assert_eq!(fresh.load_ledger().await.unwrap(), ledger);
    // One member more rewrites one object, and the ledger still reads back whole.
    ledger.members.insert("E-NEW".into(), Origin::Created);
    fresh.save_ledger(&ledger).await.unwrap();
    let again = ConfigMapLedgerStore::new(api, "acme", None);
    assert_eq!(again.load_ledger().await.unwrap(), ledger);
}

#[tokio::test]
async fn an_outbox_of_20000_intents_fits_and_sending_rewrites_small_objects() {
    let client = client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "hr");
    let store = ConfigMapOutboxStore::new(api.clone(), "acme", None);
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
    let fresh = ConfigMapOutboxStore::new(api, "acme", None);
    assert_eq!(fresh.load().await.unwrap(), outbox);
}
