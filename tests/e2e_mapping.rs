//! `spec.mapping.attributes[]` and `spec.scope` through the operator: the real
//! `freshteam-operator run` on a real control plane (tests/support/e2e.rs), the Freshteam
//! simulator and `scim2-server`. The API server refuses two sources for one target; the
//! controller refuses a CEL type error with `MappingValid=False`; the preview counts the
//! scope and shows mapped members; the published import writes the attributes and never
//! creates a contractor.
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
    env.annotate("acme", "first").await;
    eventually(Duration::from_secs(120), "the first import", || async {
        env.runs_of("acme").await.iter().any(|r| {
            r.spec.trigger != freshteam_operator::api::ImportTrigger::Preview
                && r.status.as_ref().is_some_and(|s| s.phase.is_final())
        })
    })
    .await;
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
}
