//! Leavers and the operator's state objects end to end: the real `freshteam-operator run`
//! (started as the chart runs it, through the harness in tests/support/e2e.rs) against a
//! real control plane, the simulator in its documented mode (the unfiltered list holds
//! current staff only), scim2-server and aiosmtpd.
//!
//! Without the control-plane binaries the suite skips, loudly, unless
//! FRESHTEAM_E2E_REQUIRED is set (CI sets it).

#[path = "support/e2e.rs"]
mod harness;
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use freshteam_operator::api::{
    ImportMode, ImportPhase, ImportRun, IntegrationState, FULL_RECONCILE_REQUESTED_AT,
    IMPORT_REQUESTED_AT,
};
use harness::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use support::sync_env::employee_id;

const MIB: usize = 1024 * 1024;

/// Asks for one more run of `name` and waits for its end.
async fn run_once(env: &Env, name: &str, request: &str, timeout: Duration) -> ImportRun {
    run_on(env, name, IMPORT_REQUESTED_AT, request, timeout).await
}

/// A run started by the annotation `key`.
async fn run_on(env: &Env, name: &str, key: &str, request: &str, timeout: Duration) -> ImportRun {
    let before = env.runs_of(name).await.len();
    env.annotate_with(name, key, request).await;
    eventually(Duration::from_secs(30), "the requested run", || async {
        env.runs_of(name).await.len() > before
    })
    .await;
    let run = env.wait_run_done(name, timeout).await;
    assert_eq!(
        run.status.as_ref().map(|s| s.phase),
        Some(ImportPhase::Succeeded),
        "{:?}\n{}",
        run.status,
        env.logs()
    );
    run
}

/// The run's whole report (`status.errorReport`, every part), as the parts stored.
async fn report_parts(env: &Env, run: &ImportRun) -> Vec<(String, String)> {
    let status = run.status.as_ref().expect("a status");
    let Some(report) = &status.error_report else {
        return Vec::new();
    };
    let cms: Api<ConfigMap> = Api::namespaced(env.admin.clone(), &env.ns);
    let parts = report.parts.unwrap_or(1) as usize;
    let mut out = Vec::new();
    for i in 0..parts {
        let name = if i == 0 {
            report.config_map_name.clone()
        } else {
            format!("{}-{}", report.config_map_name, i + 1)
        };
        let cm = cms
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("report part {name}: {e}"));
        let csv = cm.data.unwrap_or_default()[&report.key].clone();
        out.push((name, csv));
    }
    out
}

/// Every row of the run's report (headers dropped).
async fn report_rows(env: &Env, run: &ImportRun) -> Vec<String> {
    report_parts(env, run)
        .await
        .into_iter()
        .flat_map(|(_, csv)| csv.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// The integration's state objects (ledger, invitation outbox) and their sizes in bytes
/// as the API server returns them. The one place that knows what kind they are.
async fn state_objects(env: &Env, integration: &str) -> BTreeMap<String, usize> {
    let states: Api<IntegrationState> = Api::namespaced(env.admin.clone(), &env.ns);
    states
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|s| s.spec.integration == integration)
        .map(|s| (s.name_any(), serde_json::to_vec(&s).unwrap().len()))
        .collect()
}

/// Every kind of leaver ends inactive with its reason in the run's report, a draft gets
/// no account, a returner comes back, a hand-made account is untouched, a re-run writes
/// nothing: the ledger lives in the cluster.
#[tokio::test]
async fn leavers_of_every_kind_through_the_operator_with_the_ledger_in_the_cluster() {
    let Some(mut env) = Env::new("leavers", 12, 0).await else {
        return;
    };
    let current = env.sim.current_ids().await;
    let id = employee_id;
    for n in 2..=6 {
        assert!(current.contains(&id(n)), "{} is not current staff", id(n));
    }
    env.start_operator("default", "default-0", &[]);
    let mut manifest = env.manifest("acme", true, &[]);
    // 4 of 12 leave at once: above the default threshold.
    manifest["spec"]["safety"] = json!({"maxLeaversPercent": 50});
    env.apply(manifest).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(30))
        .await;

    let first = run_once(&env, "acme", "first", Duration::from_secs(60)).await;
    assert_eq!(
        first.status.as_ref().unwrap().summary.created as usize,
        current.len()
    );
    // The returner leaves first.
    env.sim
        .update_employee(&id(6), json!({"status": "inactive"}))
        .await;
    let second = run_once(&env, "acme", "second", Duration::from_secs(60)).await;
    assert_eq!(second.status.as_ref().unwrap().summary.leavers, 1);
    assert_eq!(
        second.status.as_ref().unwrap().mode,
        Some(ImportMode::Incremental)
    );
    assert_eq!(
        env.scim.user_by_external_id(&id(6)).await.unwrap()["active"],
        false
    );

    let stranger = env
        .scim
        .create_raw_user(json!({
            "userName": "someone@elsewhere.example",
            "externalId": "HAND-MADE",
            "active": true
        }))
        .await;
    env.sim
        .update_employee(&id(2), json!({"status": "inactive"}))
        .await;
    env.sim
        .update_employee(&id(3), json!({"terminated": true}))
        .await;
    env.sim
        .update_employee(&id(4), json!({"deleted": true}))
        .await;
    let (status, body) = env
        .sim
        .admin(
            reqwest::Method::DELETE,
            &format!("employees/{}", id(5)),
            None,
        )
        .await;
    assert_eq!(status, 204, "Delete Forever: {body}");
    let (status, body) = env
        .sim
        .admin(
            reqwest::Method::POST,
            "employees",
            Some(json!({
                "employee_id": "E-DRAFT", "first_name": "Dana",
                "official_email": "dana@acme.example", "status": "active",
                "draft": true, "terminated": false, "deleted": false
            })),
        )
        .await;
    assert_eq!(status, 201, "a draft hire: {body}");
    env.sim
        .update_employee(&id(6), json!({"status": "active"}))
        .await;

    // "Delete Forever" is in no list, so only a full reconciliation sees it: ask for one.
    let third = run_on(
        &env,
        "acme",
        FULL_RECONCILE_REQUESTED_AT,
        "third",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(third.status.as_ref().unwrap().mode, Some(ImportMode::Full));
    let summary = &third.status.as_ref().unwrap().summary;
    assert_eq!(
        (summary.leavers, summary.reactivated, summary.created),
        (4, 1, 0),
        "{summary:?}"
    );
    for n in 2..=5 {
        let user = env.scim.user_by_external_id(&id(n)).await.unwrap();
        assert_eq!(user["active"], false, "{}", id(n));
    }
    assert_eq!(
        env.scim.user_by_external_id(&id(6)).await.unwrap()["active"],
        true,
        "the returner"
    );
    assert!(env.scim.user_by_external_id("E-DRAFT").await.is_none());
    let untouched = env
        .scim
        .user(stranger["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(untouched["meta"]["version"], stranger["meta"]["version"]);
    assert_eq!(untouched["active"], true);
    let rows = report_rows(&env, &third).await;
    for (n, reason) in [
        (2, "inactive"),
        (3, "terminated"),
        (4, "deleted"),
        (5, "removed from Freshteam"),
    ] {
        let row = rows
            .iter()
            .find(|l| l.contains(&id(n)) && l.contains(",leaver,"))
            .unwrap_or_else(|| panic!("no leaver row for {}:\n{}", id(n), rows.join("\n")));
        assert!(
            row.contains(&format!("marked as leaver ({reason})")),
            "{row}"
        );
    }
    assert!(
        rows.iter()
            .any(|l| l.contains(&id(6)) && l.contains(",reactivated,")),
        "{}",
        rows.join("\n")
    );
    assert!(!rows.iter().any(|l| l.contains("HAND-MADE")));
    // The ledger is in the integration's state objects, in the cluster.
    let objects = state_objects(&env, "acme").await;
    assert!(
        objects.keys().any(|k| k.starts_with("acme-ledger")),
        "{objects:?}"
    );

    // A re-run writes nothing.
    let fourth = run_once(&env, "acme", "fourth", Duration::from_secs(60)).await;
    let calls = fourth.status.as_ref().unwrap().api_calls.clone().unwrap();
    assert_eq!(
        (calls.destination_writes, calls.destination_bulk),
        (0, 0),
        "{calls:?}"
    );
    assert_eq!(fourth.status.as_ref().unwrap().summary.leavers, 0);
    env.finish().await;
}

/// Members of the large first import (`FRESHTEAM_E2E_INVITATIONS`, default 2,000; the
/// acceptance size is 20,000: `scripts/invitations-at-scale`).
fn invitation_members() -> usize {
    std::env::var("FRESHTEAM_E2E_INVITATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

/// A first import with welcome e-mail on: every intent recorded, every invitation sent
/// once, every state object under 1 MiB, and the run's change report whole.
#[tokio::test]
async fn a_large_first_import_invites_everyone_once_within_object_limits() {
    let members = invitation_members();
    let Some(mut env) = Env::new_with("invitations", members, 0, 100).await else {
        return;
    };
    let current: HashSet<String> = env
        .sim
        .employees()
        .await
        .into_iter()
        .filter(|e| e["status"] == "active" && e["terminated"] == false && e["deleted"] == false)
        .filter_map(|e| e["official_email"].as_str().map(str::to_lowercase))
        .collect();
    let smtp_url = format!("--smtp-url={}?rate=2000&burst=50", env.smtp.url());
    env.start_operator("default", "default-0", &[&smtp_url]);
    env.apply(env.manifest("acme", true, &[])).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(60))
        .await;

    let started = Instant::now();
    let run = run_once(&env, "acme", "first", Duration::from_secs(900)).await;
    let took = started.elapsed();
    let status = run.status.clone().unwrap();
    assert_eq!(status.summary.created as usize, current.len(), "{status:?}");
    assert_eq!(
        status.summary.invitations_sent as usize,
        current.len(),
        "{:?}",
        status.errors
    );
    let messages = env.smtp.wait_for(current.len(), Duration::from_secs(60));
    let mut per: HashMap<String, usize> = HashMap::new();
    for m in &messages {
        for to in &m.to {
            *per.entry(to.to_lowercase()).or_default() += 1;
        }
    }
    let twice: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "invited more than once: {twice:?}");
    let missing: Vec<_> = current
        .iter()
        .filter(|e| !per.contains_key(e.as_str()))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "never invited (first 5): {missing:?}");

    let objects = state_objects(&env, "acme").await;
    let largest = objects.values().max().copied().unwrap_or(0);
    eprintln!(
        "first import of {members} with invitations: {took:?}; state objects {objects:?}; \
         largest {largest} bytes, total {} bytes",
        objects.values().sum::<usize>()
    );
    assert!(largest > 0 && largest < MIB, "{objects:?}");
    assert!(
        objects.keys().any(|k| k.starts_with("acme-invitations"))
            && objects.keys().any(|k| k.starts_with("acme-ledger")),
        "{objects:?}"
    );
    // Every member created is in the report, whatever its size.
    let parts = report_parts(&env, &run).await;
    for (name, csv) in &parts {
        assert!(csv.len() < MIB, "{name}: {} bytes", csv.len());
    }
    let created = report_rows(&env, &run)
        .await
        .iter()
        .filter(|l| l.contains(",created,"))
        .count();
    assert_eq!(created, current.len(), "parts {}", parts.len());

    // A re-run sends nothing more.
    let again = run_once(&env, "acme", "again", Duration::from_secs(600)).await;
    assert_eq!(again.status.unwrap().summary.invitations_sent, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.smtp.count(), messages.len());
    env.finish().await;
}

/// A report too large for one object is split over `<run>-errors`, `<run>-errors-2`, …
/// (`status.errorReport.parts`), each part a CSV with its header, none of it dropped.
#[tokio::test]
async fn a_report_larger_than_one_object_is_split_and_nothing_is_dropped() {
    // Every record is an error row (first names are no e-mail addresses): about 70
    // bytes each, so 16,000 of them need two parts of 900 KiB.
    let Some(mut env) = Env::new_with("report", 16_000, 0, 100).await else {
        return;
    };
    let employees: Vec<Value> = env.sim.employees().await;
    env.start_operator("default", "default-0", &[]);
    let mut manifest = env.manifest("acme", true, &[]);
    manifest["spec"]["mapping"]["email"] = json!("first_name");
    env.apply(manifest).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(60))
        .await;
    env.annotate("acme", "now").await;
    let run = env.wait_run_done("acme", Duration::from_secs(300)).await;
    let status = run.status.clone().unwrap();
    let report = status.error_report.clone().expect("a report");
    let parts = report_parts(&env, &run).await;
    eprintln!(
        "report of {} rows: parts of {:?} bytes",
        status.summary.errors,
        parts.iter().map(|(_, csv)| csv.len()).collect::<Vec<_>>()
    );
    assert!(parts.len() >= 2, "not split: {report:?}");
    assert_eq!(report.parts, Some(parts.len() as u32));
    let name = run.name_any();
    for (i, (part, csv)) in parts.iter().enumerate() {
        let expected = if i == 0 {
            format!("{name}-errors")
        } else {
            format!("{name}-errors-{}", i + 1)
        };
        assert_eq!(part, &expected);
        assert!(
            csv.starts_with("severity,employee_id,email,field,message\n"),
            "{part} has no header"
        );
        assert!(csv.len() < MIB, "{part}: {} bytes", csv.len());
    }
    let rows = report_rows(&env, &run).await;
    let reported: HashSet<&str> = rows
        .iter()
        .filter(|l| l.starts_with("error,"))
        .filter_map(|l| l.split(',').nth(1))
        .collect();
    let current: Vec<&str> = employees
        .iter()
        .filter(|e| e["status"] == "active" && e["terminated"] == false && e["deleted"] == false)
        .filter_map(|e| e["employee_id"].as_str())
        .collect();
    let dropped: Vec<&&str> = current
        .iter()
        .filter(|id| !reported.contains(**id))
        .take(5)
        .collect();
    assert!(dropped.is_empty(), "rows dropped (first 5): {dropped:?}");
    assert_eq!(
        status.summary.errors as usize,
        rows.iter().filter(|l| l.starts_with("error,")).count()
    );
    env.finish().await;
}
