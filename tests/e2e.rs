//! End to end against a real control plane (etcd, kube-apiserver, kube-controller-manager
//! built by tests/cluster/build.sh): the CRDs from crds/, the chart's RBAC rendered with the
//! Helm SDK, the real `freshteam-operator run` and `kubectl-freshteam` binaries, the
//! `freshteam-simulator` Freshteam simulator, scim2-server and aiosmtpd.
//!
//! The harness is tests/support/e2e.rs: one control plane serves the whole suite; the
//! tests take turns, each in its own namespace, the operator under the chart's namespaced
//! RBAC unless a test asks for the cluster scope; without the control-plane binaries the
//! suite skips, loudly, unless FRESHTEAM_E2E_REQUIRED is set (CI sets it).

#[path = "support/e2e.rs"]
mod harness;
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use freshteam_operator::api::{FreshteamIntegration, ImportPhase, ImportRun};
use freshteam_operator::api::{IntegrationState, StateKind};
use harness::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

#[tokio::test]
async fn the_server_applies_the_crds_and_refuses_bad_manifests_with_a_clear_message() {
    let Some(env) = Env::new("admission", 3, 0).await else {
        return;
    };
    env.apply(env.manifest("good", false, &[]))
        .await
        .expect("a valid integration is accepted");

    let mut no_email = env.manifest("no-email", false, &[]);
    no_email["spec"]["mapping"] = json!({"firstName": "first_name"});
    let e = message(env.apply(no_email).await.unwrap_err());
    assert!(e.starts_with("422 Invalid"), "{e}");
    assert!(
        e.contains("spec.mapping: Invalid value")
            && e.contains("mapping.email is required: every member needs an e-mail address"),
        "{e}"
    );

    let mut bad_subdomain = env.manifest("bad-subdomain", false, &[]);
    bad_subdomain["spec"]["source"]["subdomain"] = json!("Acme_Corp");
    let e = message(env.apply(bad_subdomain).await.unwrap_err());
    assert!(
        e.contains("spec.source.subdomain")
            && e.contains("subdomain must be a DNS label such as 'acme'"),
        "{e}"
    );

    let mut not_a_bool = env.manifest("not-a-bool", false, &[]);
    not_a_bool["spec"]["published"] = json!("yes");
    let e = message(env.apply(not_a_bool).await.unwrap_err());
    assert!(
        e.contains("spec.published") && e.contains("must be of type boolean"),
        "{e}"
    );
    env.finish().await;
}

#[tokio::test]
async fn the_operator_with_the_charts_rbac_imports_follows_watches_and_cannot_write_secrets() {
    let Some(mut env) = Env::new("rbac", 12, 0).await else {
        return;
    };
    // A tenant the operator does not serve (not in watch.namespaces).
    let outside = env.namespace_outside("outside").await;
    let mut elsewhere = env.manifest("acme", true, &[]);
    elsewhere["metadata"]["namespace"] = json!(outside);
    env.apply(elsewhere).await.unwrap();
    env.start_operator("default", "default-0", &[]);
    env.wait_leader(FULLNAME, "default-0", Duration::from_secs(30))
        .await;
    env.apply(env.manifest("acme", true, &[])).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(30))
        .await;
    let (_, reason, msg) = env.condition("acme", "Authorized").await.unwrap();
    assert_eq!(
        (reason.as_str(), msg.as_str()),
        ("Connected", "Connected to 127.0.0.1 (12 employees)")
    );

    // An unpublished integration: a preview per generation, each with its own counts
    // (the destination is empty: all 12 would be created).
    env.apply(env.manifest("beta", false, &[])).await.unwrap();
    for generation in 1..=3 {
        if generation > 1 {
            env.integrations()
                .patch(
                    "beta",
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"spec": {"safety": {"maxLeaversPercent": 10 + generation}}}),
                    ),
                )
                .await
                .unwrap();
        }
        eventually(Duration::from_secs(60), "beta's preview", || async {
            env.fti("beta")
                .await
                .status
                .and_then(|s| s.preview)
                .is_some_and(|p| p.generation == Some(generation) && p.computed_at.is_some())
        })
        .await;
        let preview = env.fti("beta").await.status.unwrap().preview.unwrap();
        assert_eq!(
            (preview.would_create, preview.phase),
            (Some(12), Some(ImportPhase::Succeeded)),
            "generation {generation}: {preview:?}"
        );
    }
    assert_eq!(
        env.runs_of("beta").await.len(),
        3,
        "one preview per generation"
    );
    assert!(env.scim.users().await.is_empty(), "a preview wrote members");

    // import-now: requests a run and follows it to its end.
    let out = env
        .kubectl_freshteam(&["import-now", "acme", "--timeout", "90s"])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "import-now: {:?}\n{stdout}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        env.logs()
    );
    assert!(stdout.contains("Succeeded"), "{stdout}");
    let runs = env.runs_of("acme").await;
    assert_eq!(runs.len(), 1, "one run per request");
    assert_eq!(runs[0].status.as_ref().unwrap().summary.created, 12);
    assert_eq!(env.scim.users().await.len(), 12);
    assert_eq!(env.smtp.wait_for(12, Duration::from_secs(20)).len(), 12);
    // The state, under the Role alone: IntegrationStates the integration owns.
    for (name, kind) in [
        ("acme-ledger", StateKind::Ledger),
        ("acme-invitations", StateKind::Invitations),
    ] {
        let state = env
            .states()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", env.logs()));
        assert_eq!((state.spec.state, state.spec.entry_count), (kind, 12));
        assert_eq!(state.owner_references()[0].name, "acme");
    }

    // The annotation: exactly one run more, however many reconciles follow.
    env.annotate("acme", "second").await;
    eventually(Duration::from_secs(30), "the annotated run", || async {
        env.runs_of("acme").await.len() == 2
    })
    .await;
    let run = env.wait_run_done("acme", Duration::from_secs(60)).await;
    assert_eq!(run.status.unwrap().phase, ImportPhase::Succeeded);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.runs_of("acme").await.len(), 2);
    assert_eq!(
        env.fti("acme")
            .await
            .status
            .unwrap()
            .last_handled_import_request
            .as_deref(),
        Some("second")
    );

    // The operator's log (the chart's JSON lines): each run's start and end under the
    // run's span, the end with its counts and requests.
    let logs = env.operators[0].log_lines();
    let said = |message: &str, run: &str| {
        logs.iter()
            .find(|l| l["message"] == message && l["span"]["run"] == run)
            .cloned()
            .unwrap_or_else(|| panic!("no '{message}' line for {run}\n{}", env.logs()))
    };
    let first = runs[0].name_any();
    let started = said("import run started", &first);
    assert_eq!(
        (&started["span"]["integration"], &started["span"]["trigger"]),
        (&json!("acme"), &json!("Manual")),
        "{started}"
    );
    assert_eq!(started["mode"], "Full", "{started}");
    let ended = said("import run finished", &first);
    assert_eq!(
        (&ended["phase"], &ended["created"], &ended["errors"]),
        (&json!("Succeeded"), &json!(12), &json!(0)),
        "{ended}"
    );
    assert!(ended["freshteam_requests"].as_u64() >= Some(1), "{ended}");
    assert!(ended["destination_requests"].as_u64() >= Some(1), "{ended}");
    assert!(ended["duration_secs"].is_f64(), "{ended}");

    // Editing the referenced Secret re-authorizes at once (its watch, not the 5-minute retry).
    let secrets: Api<Secret> = Api::namespaced(env.admin.clone(), &env.ns);
    secrets
        .replace(
            "freshteam-acme",
            &PostParams::default(),
            &support::secret(&env.ns, "freshteam-acme", "apiKey", "revoked-key"),
        )
        .await
        .unwrap();
    env.wait_condition("acme", "Authorized", "False", Duration::from_secs(20))
        .await;
    assert_eq!(
        env.condition("acme", "Authorized").await.unwrap().1,
        "InvalidCredentials"
    );
    secrets
        .replace(
            "freshteam-acme",
            &PostParams::default(),
            &support::secret(&env.ns, "freshteam-acme", "apiKey", API_KEY),
        )
        .await
        .unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(20))
        .await;
    // Access lost and regained, each said once in the log; no credential anywhere in it.
    let logs = env.operators[0].log_lines();
    let authorization: Vec<(&str, &str)> = logs
        .iter()
        .filter(|l| l["span"]["integration"] == "acme")
        .filter(|l| l["message"] == "authorized" || l["message"] == "not authorized")
        .map(|l| {
            let said = |k: &str| l[k].as_str().unwrap_or_default();
            (said("message"), said("reason"))
        })
        .collect();
    assert_eq!(
        authorization,
        [
            ("authorized", "Connected"),
            ("not authorized", "InvalidCredentials"),
            ("authorized", "Connected")
        ],
        "{}",
        env.logs()
    );
    let text = std::fs::read_to_string(&env.operators[0].log).unwrap();
    for secret in [API_KEY, "revoked-key", env.scim.token.as_str()] {
        assert!(!text.contains(secret), "the operator's log shows {secret}");
    }

    // What the chart does not grant is refused by the server.
    let as_operator: Api<Secret> = Api::namespaced(env.cluster.cp.operator().await, &env.ns);
    let e = as_operator
        .replace(
            "members-scim",
            &PostParams::default(),
            &support::secret(&env.ns, "members-scim", "token", "stolen"),
        )
        .await
        .unwrap_err();
    let e = message(e);
    assert!(e.starts_with("403 Forbidden"), "{e}");
    assert!(e.contains("cannot update resource \"secrets\""), "{e}");
    let e = message(
        as_operator
            .delete("members-scim", &DeleteParams::default())
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    assert!(e.starts_with("403 Forbidden"), "{e}");
    // ConfigMaps are created (run reports), never updated.
    let operator = env.cluster.cp.operator().await;
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "acme-ledger"}})).unwrap();
    let e = message(
        Api::<ConfigMap>::namespaced(operator.clone(), &env.ns)
            .replace("acme-ledger", &PostParams::default(), &cm)
            .await
            .unwrap_err(),
    );
    assert!(e.contains("cannot update resource \"configmaps\""), "{e}");

    // Outside the listed namespaces: nothing is reachable, nothing cluster-wide either,
    // and the integration there was never touched.
    for e in [
        Api::<Secret>::namespaced(operator.clone(), &outside)
            .list(&ListParams::default())
            .await
            .map(|_| ())
            .unwrap_err(),
        Api::<IntegrationState>::namespaced(operator.clone(), &outside)
            .get("acme-ledger")
            .await
            .map(|_| ())
            .unwrap_err(),
        Api::<FreshteamIntegration>::namespaced(operator.clone(), &outside)
            .list(&ListParams::default())
            .await
            .map(|_| ())
            .unwrap_err(),
        Api::<FreshteamIntegration>::all(operator.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        let e = message(e);
        assert!(e.starts_with("403 Forbidden"), "{e}");
    }
    let ignored = Api::<FreshteamIntegration>::namespaced(env.admin.clone(), &outside)
        .get("acme")
        .await
        .unwrap();
    assert_eq!(ignored.status, None, "the operator served {outside}");
    let runs = Api::<ImportRun>::namespaced(env.admin.clone(), &outside)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(runs.items.is_empty(), "a run in {outside}");
    env.finish().await;
}

#[tokio::test]
async fn two_replicas_one_leads_and_a_killed_leader_hands_over_within_the_lease() {
    let Some(mut env) = Env::new("replicas", 30, 150).await else {
        return;
    };
    let first = env.start_operator("default", "replica-a", &[]);
    env.wait_leader(FULLNAME, "replica-a", Duration::from_secs(30))
        .await;
    env.start_operator("default", "replica-b", &[]);
    env.apply(env.manifest("acme", true, &[])).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(30))
        .await;
    env.annotate("acme", "first").await;
    let orphan = env.wait_running("acme").await;
    assert_eq!(
        env.lease_holder(FULLNAME).await.as_deref(),
        Some("replica-a")
    );

    env.operators[first].signal("KILL");
    let killed = Instant::now();
    env.wait_leader(
        FULLNAME,
        "replica-b",
        Duration::from_secs(LEASE_SECONDS * 3),
    )
    .await;
    let handover = killed.elapsed();
    assert!(
        handover <= Duration::from_secs(LEASE_SECONDS + 3),
        "hand-over took {handover:?} with a {LEASE_SECONDS}s Lease"
    );
    eprintln!("hand-over after the leader was killed: {handover:?}");
    env.wait_phase(&orphan, ImportPhase::Interrupted, Duration::from_secs(20))
        .await;
    // The new leader does not run the handled request again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.runs_of("acme").await.len(),
        1,
        "a run was started twice"
    );

    env.annotate("acme", "after-failover").await;
    eventually(Duration::from_secs(30), "the next run", || async {
        env.runs_of("acme").await.len() == 2
    })
    .await;
    let next = env.wait_run_done("acme", Duration::from_secs(90)).await;
    assert_eq!(next.status.unwrap().phase, ImportPhase::Succeeded);
    let users = env.scim.users().await;
    let ids: HashSet<&str> = users
        .iter()
        .filter_map(|u| u["externalId"].as_str())
        .collect();
    assert_eq!(
        (users.len(), ids.len()),
        (30, 30),
        "converged, no duplicates"
    );
    assert_eq!(
        env.reporters("acme", "ImportStarted").await,
        vec!["replica-a".to_string(), "replica-b".to_string()],
        "each run started once, by the leader of its time"
    );
    env.finish().await;
}

#[tokio::test]
async fn two_shards_each_reconcile_their_own_and_a_moved_integration_runs_once() {
    let Some(mut env) = Env::new("shards", 30, 300).await else {
        return;
    };
    env.start_operator("s1", "s1-0", &[]);
    env.wait_leader(&format!("{FULLNAME}-s1"), "s1-0", Duration::from_secs(30))
        .await;
    env.apply(env.manifest("unlabelled", true, &[]))
        .await
        .unwrap();
    env.apply(env.manifest("labelled", true, &[(SHARD_LABEL, "s1")]))
        .await
        .unwrap();
    env.wait_condition("labelled", "Authorized", "True", Duration::from_secs(30))
        .await;
    env.annotate("labelled", "go").await;
    let running = env.wait_running("labelled").await;
    assert!(
        env.fti("unlabelled").await.status.is_none(),
        "shard s1 touched the default shard's integration"
    );

    // Starting the default shard (which marks its own shard's orphans Interrupted before
    // it reconciles anything) leaves s1's running import alone.
    env.start_operator("default", "default-0", &[]);
    let mut seen = Vec::new();
    let mut default_ready_during_the_run = false;
    let start = Instant::now();
    loop {
        let phase = env
            .runs_api()
            .get(&running)
            .await
            .unwrap()
            .status
            .unwrap()
            .phase;
        if seen.last() != Some(&phase) {
            seen.push(phase);
        }
        let ready = env
            .condition("unlabelled", "Authorized")
            .await
            .is_some_and(|c| c.0 == "True");
        default_ready_during_the_run |= ready && phase == ImportPhase::Running;
        if (phase.is_final() && ready) || start.elapsed() > Duration::from_secs(90) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen,
        vec![ImportPhase::Running, ImportPhase::Succeeded],
        "the other shard touched the running import\n{}",
        env.logs()
    );
    assert!(
        default_ready_during_the_run,
        "the import ended before the default shard started: {seen:?}"
    );

    // Moving the label moves the integration: one run per request, by its new shard.
    env.integrations()
        .patch(
            "unlabelled",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {SHARD_LABEL: "s1"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.annotate("unlabelled", "moved").await;
    let run = env
        .wait_run_done("unlabelled", Duration::from_secs(90))
        .await;
    assert_eq!(run.status.unwrap().phase, ImportPhase::Succeeded);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.runs_of("unlabelled").await.len(), 1);
    assert_eq!(
        env.reporters("unlabelled", "ImportStarted").await,
        vec!["s1-0"]
    );
    assert_eq!(
        env.reporters("labelled", "ImportStarted").await,
        vec!["s1-0"]
    );
    env.finish().await;
}

#[tokio::test]
async fn one_import_at_a_time_per_freshteam_account_with_max_imports_per_account_1() {
    // The chart's cluster-scope RBAC (a ClusterRole, every namespace watched).
    let Some(mut env) = Env::with_scope("limits", 15, 100, Scope::Cluster).await else {
        return;
    };
    assert_eq!(env.chart_watch_namespace("default"), None);
    env.start_operator("default", "default-0", &["--max-imports-per-account=1"]);
    for name in ["one", "two"] {
        env.apply(env.manifest(name, true, &[])).await.unwrap();
    }
    for name in ["one", "two"] {
        env.wait_condition(name, "Authorized", "True", Duration::from_secs(30))
            .await;
    }
    env.annotate("one", "now").await;
    env.annotate("two", "now").await;
    let start = Instant::now();
    let mut finished = 0;
    while start.elapsed() < Duration::from_secs(120) && finished < 2 {
        let runs = env
            .runs_api()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let phases: Vec<ImportPhase> = runs
            .iter()
            .map(|r| r.status.as_ref().map(|s| s.phase).unwrap_or_default())
            .collect();
        let running = phases
            .iter()
            .filter(|p| **p == ImportPhase::Running)
            .count();
        assert!(
            running <= 1,
            "two imports of one account at once: {phases:?}"
        );
        finished = phases
            .iter()
            .filter(|p| **p == ImportPhase::Succeeded)
            .count();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(finished, 2, "{}", env.logs());
    // The second integration adopted the first one's members: both ledgers hold all 15.
    for name in ["one-ledger", "two-ledger"] {
        let state = env.states().get(name).await.unwrap();
        assert_eq!(state.spec.entry_count, 15, "{name}");
    }
    env.finish().await;
}

#[tokio::test]
async fn deleting_the_integration_garbage_collects_its_runs_reports_and_state() {
    let Some(mut env) = Env::new("gc", 6, 0).await else {
        return;
    };
    env.start_operator("default", "default-0", &[]);
    // Every record is an error row (first names are no e-mail addresses): a report.
    let mut manifest = env.manifest("acme", true, &[]);
    manifest["spec"]["mapping"]["email"] = json!("first_name");
    env.apply(manifest).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(30))
        .await;
    env.annotate("acme", "now").await;
    let run = env.wait_run_done("acme", Duration::from_secs(60)).await;
    // Another that imports everyone: a ledger and an outbox.
    env.apply(env.manifest("beta", true, &[])).await.unwrap();
    env.wait_condition("beta", "Authorized", "True", Duration::from_secs(30))
        .await;
    env.annotate("beta", "now").await;
    let beta = env.wait_run_done("beta", Duration::from_secs(60)).await;
    assert_eq!(beta.status.unwrap().summary.created, 6, "{}", env.logs());
    let states = env.states().list(&ListParams::default()).await.unwrap();
    for state in &states {
        assert_eq!(state.owner_references()[0].name, state.spec.integration);
    }
    let names: Vec<String> = states.iter().map(|s| s.name_any()).collect();
    for name in ["beta-ledger", "beta-invitations"] {
        assert!(names.iter().any(|n| n == name), "{names:?}");
    }
    let report = run
        .status
        .as_ref()
        .and_then(|s| s.error_report.clone())
        .unwrap_or_else(|| panic!("no report: {:?}", run.status));
    let configmaps: Api<ConfigMap> = Api::namespaced(env.admin.clone(), &env.ns);
    assert!(configmaps
        .get(&report.config_map_name)
        .await
        .unwrap()
        .data
        .unwrap()["errors.csv"]
        .contains("email"));

    for name in ["acme", "beta"] {
        env.integrations()
            .delete(name, &DeleteParams::background())
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(60), "garbage collection", || async {
        env.runs_api()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
            && env
                .states()
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
            && configmaps
                .get_opt(&report.config_map_name)
                .await
                .unwrap()
                .is_none()
    })
    .await;
    env.finish().await;
}

#[tokio::test]
async fn sigterm_during_an_import_records_it_as_interrupted_and_releases_the_lease() {
    let Some(mut env) = Env::new("sigterm", 30, 150).await else {
        return;
    };
    let op = env.start_operator("default", "default-0", &[]);
    env.wait_leader(FULLNAME, "default-0", Duration::from_secs(30))
        .await;
    env.apply(env.manifest("acme", true, &[])).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(30))
        .await;
    env.annotate("acme", "now").await;
    let run = env.wait_running("acme").await;
    env.operators[op].signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), env.operators[op].child.wait())
        .await
        .expect("the operator exits after its grace period")
        .unwrap();
    assert!(status.success(), "{status:?}\n{}", env.logs());
    let r = env.runs_api().get(&run).await.unwrap();
    assert_eq!(
        r.status.as_ref().map(|s| s.phase),
        Some(ImportPhase::Interrupted),
        "{}",
        env.logs()
    );
    assert_eq!(
        env.fti("acme")
            .await
            .status
            .unwrap()
            .last_import
            .unwrap()
            .phase,
        ImportPhase::Interrupted
    );
    assert_eq!(
        env.lease_holder(FULLNAME).await,
        None,
        "the Lease was not released"
    );
    env.finish().await;
}
