//! The real `sync` binary through a member's life (first import, idle re-runs, hire,
//! rename, leaver, returner) against two SCIM implementations: `scim2-server` (full
//! featured) and SCIMMY (npm) with its defaults (core schema only, no ETags, pages of
//! 200; it drops the enterprise extension and refuses its PATCH paths).

mod support;

use serde_json::{json, Value};
use support::sync_env::{employee_id, Env, Run, API_KEY};
use support::Peer;

fn ok(run: &Run) -> Value {
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    run.json()
}

fn rows(run: &Value, severity: &str) -> Vec<Value> {
    run["status"]["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["severity"] == severity)
        .collect()
}

/// (created, updated, leavers, reactivated, errors, SCIM writes + bulk requests)
fn counts(run: &Value) -> (u64, u64, u64, u64, u64, u64) {
    let s = &run["status"]["summary"];
    let c = &run["status"]["apiCalls"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    (
        n(&s["created"]),
        n(&s["updated"]),
        n(&s["leavers"]),
        n(&s["reactivated"]),
        n(&s["errors"]),
        n(&c["destinationWrites"]) + n(&c["destinationBulk"]),
    )
}

async fn lifecycle(peer: Peer) {
    const N: usize = 25;
    let env = Env::start_on(N, peer).await;
    let file = env.write("acme.yaml", &env.manifest(API_KEY, Env::default_mapping()));
    let state = env.dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let args = ["--output", "json", "--state-file", state];

    let first = ok(&env.sync_file(&file, &args).await);
    assert_eq!(first["status"]["summary"]["created"], N as u64);
    assert_eq!(first["status"]["summary"]["errors"], 0);
    assert_eq!(env.scim.users().await.len(), N);
    // The unsupported targets are named once, in one warning row.
    let unsupported: Vec<Value> = rows(&first, "warning")
        .into_iter()
        .filter(|r| r["message"].as_str().unwrap().contains("does not keep"))
        .collect();
    match peer {
        Peer::Scim2Server => assert!(unsupported.is_empty(), "{unsupported:?}"),
        _ => {
            // SCIMMY, the only other peer compared here.
            assert_eq!(unsupported.len(), 1, "{unsupported:?}");
            assert_eq!(unsupported[0]["field"], "department");
            let message = unsupported[0]["message"].as_str().unwrap();
            assert!(message.contains("department (SCIM enterprise department)"));
            assert!(!message.contains("jobTitle"), "title is kept: {message}");
        }
    }

    for n in [2, 3] {
        let again = ok(&env.sync_file(&file, &args).await);
        assert_eq!(
            counts(&again),
            (0, 0, 0, 0, 0, 0),
            "run {n} on {peer:?} wrote something: {again}"
        );
        assert_eq!(again["status"]["summary"]["unchanged"], N as u64);
        assert!(rows(&again, "error").is_empty());
    }

    // A hire, a rename and a leaver in one run.
    env.sim
        .add_employee(json!({
            "employee_id": "E-NEW", "first_name": "Nora", "last_name": "New",
            "official_email": "nora.new@acme.example", "status": "active", "designation": "Analyst"
        }))
        .unwrap();
    env.sim
        .update_employee(&employee_id(2), json!({"last_name": "Renamed"}))
        .unwrap();
    env.sim
        .update_employee(
            &employee_id(5),
            json!({"status": "inactive", "terminated": true}),
        )
        .unwrap();
    let delta = ok(&env.sync_file(&file, &args).await);
    let (created, updated, leavers, _, errors, _) = counts(&delta);
    assert_eq!(
        (created, updated, leavers, errors),
        (1, 1, 1, 0),
        "{peer:?}: {delta}"
    );
    assert_eq!(env.user("E-NEW").await["name"]["givenName"], "Nora");
    assert_eq!(
        env.user(&employee_id(2)).await["name"]["familyName"],
        "Renamed"
    );
    assert_eq!(env.user(&employee_id(5)).await["active"], false);
    let idle = ok(&env.sync_file(&file, &args).await);
    assert_eq!(counts(&idle), (0, 0, 0, 0, 0, 0), "{peer:?}: {idle}");

    // The returner.
    env.sim
        .update_employee(
            &employee_id(5),
            json!({"status": "active", "terminated": false}),
        )
        .unwrap();
    let back = ok(&env.sync_file(&file, &args).await);
    assert_eq!(counts(&back).3, 1, "{peer:?}: {back}");
    assert_eq!(env.user(&employee_id(5)).await["active"], true);
    assert_eq!(env.scim.users().await.len(), N + 1, "no member duplicated");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_members_life_on_scim2_server() {
    support::require_peers!(Scim2Server);
    lifecycle(Peer::Scim2Server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_members_life_on_scimmy() {
    support::require_peers!(Scimmy);
    lifecycle(Peer::Scimmy).await;
}
