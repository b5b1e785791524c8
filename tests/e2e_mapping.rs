//! `spec.mapping.attributes[]` and `spec.scope` through the operator: the real
//! `freshteam-operator run` on a real control plane (tests/support/e2e.rs), the Freshteam
//! simulator and `scim2-server`. The API server refuses two sources for one target; the
//! controller refuses a CEL type error with `MappingValid=False`; the preview counts the
//! scope and shows mapped members; the published import writes the attributes and never
//! creates a contractor; a member who becomes a contractor is a leaver; a run with
//! nothing changed writes nothing; an attribute added to the mapping reaches every
//! active member on the next run.
//!
//! Without the control-plane binaries the suite skips, loudly, unless
//! FRESHTEAM_E2E_REQUIRED is set (CI sets it).

#[path = "support/e2e.rs"]
mod harness;
mod support;

use std::time::Duration;

use harness::*;
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};

const COST_CENTER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter";

fn attributes(nick: Value) -> Value {
    json!([
        {"target": COST_CENTER, "from": "custom_field_values.cost_center"},
        {"target": "addresses[type eq \"work\"].locality", "from": "branch.city"},
        nick,
    ])
}

fn manifest(env: &Env, nick: Value) -> Value {
    let mut m = env.manifest("acme", false, &[]);
    m["spec"]["mapping"]["attributes"] = attributes(nick);
    m["spec"]["scope"] = json!({"filter": "employee.employee_type != \"contractor\""});
    m
}

#[tokio::test]
async fn the_operator_validates_previews_and_imports_attributes_within_the_scope() {
    let Some(mut env) = Env::new("mapping", 30, 0).await else {
        return;
    };
    env.start_operator("default", "default-0", &[]);

    // Two sources for one target: the API server refuses it, naming the rule.
    let two = json!({"target": "nickName", "value": "x", "from": "first_name"});
    let refused = env.apply(manifest(&env, two)).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("exactly one of from, value or expression"),
        "{refused}"
    );

    // A CEL type error passes the API server; the controller names the expression.
    let typed = json!({"target": "nickName", "expression": "employee.first_name + 1"});
    env.apply(manifest(&env, typed)).await.unwrap();
    env.wait_condition("acme", "MappingValid", "False", Duration::from_secs(60))
        .await;
    let (_, reason, message) = env.condition("acme", "MappingValid").await.unwrap();
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.contains("spec.mapping.attributes[2].expression")
            && message.contains("CEL type error"),
        "{message}"
    );

    // Fixed: the preview counts the scope and shows members as they would be written.
    let nick = json!({"target": "nickName", "expression": "employee.first_name + \"!\""});
    env.integrations()
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mapping": {"attributes": attributes(nick)}}})),
        )
        .await
        .unwrap();
    env.wait_condition("acme", "MappingValid", "True", Duration::from_secs(60))
        .await;
    eventually(Duration::from_secs(120), "acme's preview", || async {
        env.fti("acme")
            .await
            .status
            .and_then(|s| s.preview)
            .is_some_and(|p| p.computed_at.is_some() && p.in_scope.is_some())
    })
    .await;
    let preview = env.fti("acme").await.status.unwrap().preview.unwrap();
    let employees = env.sim.employees().await;
    let current: Vec<&Value> = employees
        .iter()
        .filter(|e| e["status"] == "active" && e["terminated"] == false && e["deleted"] == false)
        .collect();
    let contractors = current
        .iter()
        .filter(|e| e["employee_type"] == "contractor")
        .count();
    assert!(contractors > 0, "the population has contractors");
    let in_scope = current.len() - contractors;
    assert_eq!(preview.would_create, Some(in_scope as u32), "{preview:?}");
    assert!(
        preview.out_of_scope.unwrap_or(0) >= contractors as u32,
        "{preview:?}"
    );
    assert!(!preview.sample.is_empty(), "{preview:?}");
    for m in &preview.sample {
        let e = current
            .iter()
            .find(|e| e["employee_id"] == m.employee_id.as_str())
            .unwrap_or_else(|| panic!("{} is not current staff", m.employee_id));
        assert_ne!(e["employee_type"], "contractor");
        assert!(m.attributes[COST_CENTER].starts_with("CC-"), "{m:?}");
        assert_eq!(
            m.attributes["nickName"],
            format!("{}!", e["first_name"].as_str().unwrap())
        );
        assert_eq!(
            m.attributes["userName"],
            e["official_email"].as_str().unwrap()
        );
    }
    assert!(env.scim.users().await.is_empty(), "a preview wrote members");

    // Published: every in-scope employee gets the attributes, no contractor is created.
    env.integrations()
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"published": true}})),
        )
        .await
        .unwrap();
    let first = import(&env, "first", 1).await;
    assert_eq!(first.summary.created as usize, in_scope, "{first:?}");
    let users = env.scim.users().await;
    assert_eq!(users.len(), in_scope);
    for u in &users {
        let e = current
            .iter()
            .find(|e| e["employee_id"] == u["externalId"])
            .unwrap();
        assert_ne!(e["employee_type"], "contractor");
        assert!(
            u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["costCenter"]
                .as_str()
                .is_some_and(|c| c.starts_with("CC-")),
            "{u}"
        );
        assert!(u["addresses"][0]["locality"].is_string(), "{u}");
    }
    // A member who becomes a contractor leaves the scope: a leaver, and nobody else moves.
    let member = users[0]["externalId"].as_str().unwrap().to_string();
    env.sim
        .update_employee(&member, json!({"employee_type": "contractor"}))
        .await;
    let second = import(&env, "second", 2).await;
    assert_eq!(
        (
            second.summary.leavers,
            second.summary.created,
            second.summary.updated
        ),
        (1, 0, 0),
        "{second:?}"
    );
    let account = env
        .scim
        .users()
        .await
        .into_iter()
        .find(|u| u["externalId"] == member.as_str())
        .expect("the contractor's account stays");
    assert_eq!(account["active"], false, "{account}");

    // Nothing changed since: nothing is written.
    let third = import(&env, "third", 3).await;
    assert_eq!(
        third.api_calls.as_ref().map(|c| c.destination_writes),
        Some(0),
        "{third:?}"
    );

    // An attribute added to the mapping reaches every active member on the next run.
    let organization = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization";
    let mut more = attributes(json!({"target": "nickName", "from": "first_name"}));
    more.as_array_mut()
        .unwrap()
        .push(json!({"target": organization, "value": "Acme Ltd"}));
    env.integrations()
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mapping": {"attributes": more}}})),
        )
        .await
        .unwrap();
    let fourth = import(&env, "fourth", 4).await;
    assert!(
        fourth.summary.updated as usize >= in_scope - 1,
        "{fourth:?}"
    );
    for u in env
        .scim
        .users()
        .await
        .iter()
        .filter(|u| u["active"] != false)
    {
        assert_eq!(
            u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["organization"],
            "Acme Ltd",
            "{u}"
        );
    }
}

/// Requests an import (the annotation `value`) and waits for the `n`th import (not a
/// preview) to end; its status.
async fn import(env: &Env, value: &str, n: usize) -> freshteam_operator::api::ImportRunStatus {
    env.annotate("acme", value).await;
    let imports = || async {
        // In the order they started (a later run of the same second has a suffix).
        let mut runs: Vec<_> = env
            .runs_of("acme")
            .await
            .into_iter()
            .filter(|r| r.spec.trigger != freshteam_operator::api::ImportTrigger::Preview)
            .filter_map(|r| Some((r.status.clone()?, r.metadata.name?)))
            .filter(|(s, _)| s.phase.is_final())
            .map(|(s, name)| ((s.start_time.clone(), name), s))
            .collect();
        runs.sort_by(|a, b| a.0.cmp(&b.0));
        runs.into_iter().map(|(_, s)| s).collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(120), "the import", || async {
        imports().await.len() >= n
    })
    .await;
    imports().await.swap_remove(n - 1)
}
