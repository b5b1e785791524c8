//! Provision on demand end to end: a user's `OnDemand` ImportRun, `kubectl freshteam
//! provision` and `kubectl freshteam member`, with the real `freshteam-operator run` (as
//! the chart runs it, through tests/support/e2e.rs) against a real control plane, the
//! simulator, scim2-server and aiosmtpd.
//!
//! Without the control-plane binaries the suite skips, loudly, unless
//! FRESHTEAM_E2E_REQUIRED is set (CI sets it).

#[path = "support/e2e.rs"]
mod harness;
mod support;

use std::time::Duration;

use freshteam_operator::api::{
    ImportPhase, ImportRun, MatchedBy, MemberAction, IMPORT_REQUESTED_AT,
};
use harness::*;
use kube::api::{Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use support::sync_env::employee_id;

#[tokio::test]
async fn an_on_demand_run_provision_and_a_members_history() {
    let Some(mut env) = Env::new("ondemand", 16, 0).await else {
        return;
    };
    let current = env.sim.current_ids().await;
    let (jane, john) = (employee_id(2), employee_id(3));
    assert!(
        current.contains(&jane) && current.contains(&john),
        "{current:?}"
    );
    env.start_operator("default", "default-0", &[]);
    let mut manifest = env.manifest("acme", true, &[]);
    manifest["spec"]["mapping"]["jobTitle"] = json!("designation");
    env.apply(manifest).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(30))
        .await;
    env.annotate_with("acme", IMPORT_REQUESTED_AT, "first")
        .await;
    let first = env.wait_run_done("acme", Duration::from_secs(60)).await;
    assert_eq!(
        first
            .status
            .as_ref()
            .map(|s| (s.phase, s.summary.created as usize)),
        Some((ImportPhase::Succeeded, current.len()))
    );
    // A report longer than a screen: the first rows, how many more, where the file is.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("first.csv");
    let out = env
        .kubectl_freshteam(&["errors", &first.name_any(), "-o", file.to_str().unwrap()])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows = std::fs::read_to_string(&file).unwrap().lines().count() - 1;
    assert!(rows > 10, "{rows} rows");
    assert_eq!(stdout.lines().count(), 1 + 10 + 1, "{stdout}");
    assert!(
        stdout.starts_with("severity,employee_id,email,field,message\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(&format!(
            "… and {} more rows: the whole report is in {}\n",
            rows - 10,
            file.display()
        )),
        "{stdout}"
    );
    let john_before = env.scim.user_by_external_id(&john).await.unwrap();
    env.sim
        .update_employee(&jane, json!({"designation": "Head of Rewards"}))
        .await;
    env.sim
        .update_employee(&john, json!({"designation": "Chief Listener"}))
        .await;

    // A user's run, as kubectl creates it: no owner, no label, no status.
    let runs = env.runs_api();
    let asked: ImportRun = serde_json::from_value(json!({
        "apiVersion": "freshteam.provisioning.dev/v1alpha1",
        "kind": "ImportRun",
        "metadata": {"name": "acme-jane", "namespace": env.ns},
        "spec": {"integration": "acme", "trigger": "OnDemand", "employeeIds": [jane]},
    }))
    .unwrap();
    runs.create(&PostParams::default(), &asked).await.unwrap();
    env.wait_phase("acme-jane", ImportPhase::Succeeded, Duration::from_secs(60))
        .await;
    let done = runs.get("acme-jane").await.unwrap();
    // Adopted: it goes with the integration and counts against its history limits.
    let owner = &done
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default();
    assert!(
        owner.iter().any(|o| o.kind == "FreshteamIntegration"
            && o.name == "acme"
            && o.controller == Some(true)),
        "not owned by the integration: {owner:?}"
    );
    assert_eq!(
        done.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("freshteam.provisioning.dev/integration")),
        Some(&"acme".to_string())
    );
    let done = done.status.unwrap();
    assert_eq!(done.summary.updated, 1, "{done:?}");
    let jane_account = env.scim.user_by_external_id(&jane).await.unwrap();
    assert_eq!(jane_account["title"], "Head of Rewards");
    let [m] = &done.members[..] else {
        panic!("{:?}", done.members)
    };
    assert_eq!(m.employee_id, jane);
    assert_eq!(
        m.account.as_ref().map(|a| a.id.as_str()),
        jane_account["id"].as_str()
    );
    assert_eq!(m.changes[0].new.as_deref(), Some("Head of Rewards"));
    // Only its employee: John's account is as it was.
    assert_eq!(
        env.scim.user_by_external_id(&john).await.unwrap()["meta"],
        john_before["meta"]
    );
    // The operator's log: the on-demand run's start and end, under its span.
    let logs = env.operators[0].log_lines();
    let said = |message: &str| {
        logs.iter()
            .find(|l| l["message"] == message && l["span"]["run"] == "acme-jane")
            .cloned()
            .unwrap_or_else(|| panic!("no '{message}' line for acme-jane\n{}", env.logs()))
    };
    let started = said("import run started");
    assert_eq!(
        (&started["span"]["trigger"], &started["mode"]),
        (&json!("OnDemand"), &json!("OnDemand")),
        "{started}"
    );
    let ended = said("import run finished");
    assert_eq!(
        (&ended["phase"], &ended["updated"], &ended["created"]),
        (&json!("Succeeded"), &json!(1), &json!(0)),
        "{ended}"
    );
    let text = std::fs::read_to_string(&env.operators[0].log).unwrap();
    for secret in [API_KEY, env.scim.token.as_str()] {
        assert!(!text.contains(secret), "the operator's log shows {secret}");
    }

    // Not run again: the integration reconciled once more leaves the run as it ended.
    env.integrations()
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runs.get("acme-jane").await.unwrap().status.unwrap(), done);

    // `kubectl freshteam provision`: prints the steps, applies the change.
    let out = env
        .kubectl_freshteam(&["provision", "acme", &john, "--timeout", "90s"])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let john_account = env.scim.user_by_external_id(&john).await.unwrap();
    assert_eq!(john_account["title"], "Chief Listener");
    for line in [
        format!("Employee {john}"),
        "Freshteam:   found (active), in scope".to_string(),
        format!(
            "Account:     {} (matched by ledger)",
            john_account["id"].as_str().unwrap()
        ),
        "Action:      update".to_string(),
        format!(
            "jobTitle: {} → Chief Listener",
            john_before["title"].as_str().unwrap()
        ),
    ] {
        assert!(stdout.contains(&line), "no '{line}' in:\n{stdout}");
    }

    // Unpublished: an on-demand run must be a dry run; one that is not ends Failed at once.
    env.apply(env.manifest("beta", false, &[])).await.unwrap();
    env.wait_condition("beta", "Authorized", "True", Duration::from_secs(30))
        .await;
    let on_demand = |name: &str, dry_run: bool| -> ImportRun {
        serde_json::from_value(json!({
            "apiVersion": "freshteam.provisioning.dev/v1alpha1",
            "kind": "ImportRun",
            "metadata": {"name": name, "namespace": env.ns},
            "spec": {"integration": "beta", "trigger": "OnDemand", "employeeIds": [jane],
                     "dryRun": dry_run},
        }))
        .unwrap()
    };
    runs.create(&PostParams::default(), &on_demand("beta-write", false))
        .await
        .unwrap();
    env.wait_phase("beta-write", ImportPhase::Failed, Duration::from_secs(60))
        .await;
    let refused = runs.get("beta-write").await.unwrap().status.unwrap();
    assert!(
        refused
            .message
            .as_deref()
            .unwrap()
            .contains("spec.dryRun: true"),
        "{refused:?}"
    );
    runs.create(&PostParams::default(), &on_demand("beta-look", true))
        .await
        .unwrap();
    env.wait_phase("beta-look", ImportPhase::Succeeded, Duration::from_secs(60))
        .await;
    let looked = runs.get("beta-look").await.unwrap().status.unwrap();
    let [m] = &looked.members[..] else {
        panic!("{looked:?}")
    };
    // Jane's account holds what beta maps already: found, matched, nothing to write.
    assert_eq!((m.employee_id.as_str(), m.found), (jane.as_str(), true));
    assert_eq!(
        m.account.as_ref().map(|a| a.by),
        Some(MatchedBy::ExternalId)
    );
    assert_eq!(m.action, MemberAction::None, "{m:?}");

    // `kubectl freshteam member`: created first, the title change after.
    let out = env.kubectl_freshteam(&["member", "acme", &john]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let created = stdout.find("created: member created");
    let changed = stdout.find(&format!(
        "updated: jobTitle: {} → Chief Listener",
        john_before["title"].as_str().unwrap()
    ));
    assert!(
        created.is_some() && changed.is_some() && created < changed,
        "{stdout}"
    );
    assert!(stdout.contains("runs kept, the oldest"), "{stdout}");
    // A run a user created without the label is part of the history too.
    let out = env.kubectl_freshteam(&["member", "acme", &jane]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let by_hand = stdout
        .lines()
        .find(|l| l.contains("acme-jane"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(by_hand.ends_with("→ Head of Rewards"), "{stdout}");
    env.finish().await;
}
