//! The shared test support's own checks: when a test that needs a peer skips, and when
//! it fails instead.

mod support;

use support::require::{act, decide, Decision, Needs, INSTALL, REQUIRED_VAR};

fn missing() -> Vec<String> {
    vec!["scim2-server (/nowhere/.venv/bin/scim2-server)".to_string()]
}

#[test]
fn a_missing_peer_skips_the_test_naming_it_and_the_install_command() {
    let Decision::Skip(line) = decide("scim_client::creates", &missing(), INSTALL, false) else {
        panic!("not a skip");
    };
    assert!(line.contains("scim_client::creates"), "{line}");
    assert!(
        line.contains("scim2-server (/nowhere/.venv/bin/scim2-server)"),
        "{line}"
    );
    assert!(
        line.contains(INSTALL) && line.contains(REQUIRED_VAR),
        "{line}"
    );
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(act(Decision::Skip(line)));
}

#[test]
fn installed_peers_run_the_test_required_or_not() {
    assert_eq!(decide("t", &[], INSTALL, false), Decision::Run);
    assert_eq!(decide("t", &[], INSTALL, true), Decision::Run);
    assert!(!act(Decision::Run));
}

#[test]
#[should_panic(
    expected = "scim_client::creates: scim2-server (/nowhere/.venv/bin/scim2-server) not installed, and FRESHTEAM_PEERS_REQUIRED is set: run scripts/setup-peers"
)]
fn a_missing_peer_fails_the_test_when_peers_are_required() {
    let decision = decide("scim_client::creates", &missing(), INSTALL, true);
    assert!(matches!(decision, Decision::Fail(_)));
    act(decision);
}

/// On this machine (where the tests run), each need is either installed or named with
/// the path that is missing.
#[test]
fn every_need_is_installed_or_names_its_path() {
    for need in [
        Needs::Scim2Server,
        Needs::PythonPeers,
        Needs::Scimmy,
        Needs::Aiosmtpd,
        Needs::SimulatorBinary,
    ] {
        if let Some(what) = need.missing() {
            assert!(what.contains('/'), "{need:?}: {what}");
        }
    }
}

/// The e2e suites' integration, from the shared builder, is the JSON they wrote by hand.
#[test]
fn the_builders_user_json_is_what_the_e2e_suites_applied() {
    let built = support::integration("e2e-x", "good")
        .reading("http://127.0.0.1:1/api")
        .writing_to("http://127.0.0.1:2/v2")
        .labels(&[("freshteam.provisioning.dev/shard", "s1")])
        .spec(|s| {
            s.published = true;
            s.schedule = "weekly".into();
            // These three only (the default mapping also maps the title and department).
            s.mapping = serde_json::from_value(serde_json::json!({
                "email": "official_email", "firstName": "first_name", "lastName": "last_name",
            }))
            .unwrap();
            s.welcome_email.enabled = true;
            s.welcome_email.login_url = Some("https://rewards.example.com/activate".into());
        })
        .user_json();
    let by_hand = serde_json::json!({
        "apiVersion": "freshteam.provisioning.dev/v1alpha1",
        "kind": "FreshteamIntegration",
        "metadata": {"name": "good", "namespace": "e2e-x", "labels": {"freshteam.provisioning.dev/shard": "s1"}},
        "spec": {
            "published": true,
            "schedule": "weekly",
            "source": {
                "subdomain": "acme",
                "baseUrl": "http://127.0.0.1:1/api",
                "apiKeySecretRef": {"name": "freshteam-acme", "key": "apiKey"},
            },
            "destination": {"scim": {
                "url": "http://127.0.0.1:2/v2",
                "tokenSecretRef": {"name": "members-scim", "key": "token"},
            }},
            "mapping": {"email": "official_email", "firstName": "first_name", "lastName": "last_name"},
            "welcomeEmail": {"enabled": true, "loginUrl": "https://rewards.example.com/activate"},
        },
    });
    assert_eq!(built, by_hand);
    // Unpublished and unlabelled: `published: false` and empty labels, as written.
    let plain = support::integration("e2e-x", "plain").user_json();
    assert_eq!(plain["spec"]["published"], false);
    assert_eq!(plain["metadata"]["labels"], serde_json::json!({}));
    assert!(plain["spec"].get("welcomeEmail").is_none());
}

/// What the API server reads from the user JSON is the typed integration the builder
/// holds (no field lost or changed between the forms).
#[test]
fn the_builders_user_json_reads_back_as_its_typed_integration() {
    let builder = support::integration("ns", "acme")
        .reading("http://sim/api")
        .labels(&[("a", "b")])
        .spec(|s| {
            s.mapping.email = Some("official_email".into());
            s.welcome_email.enabled = true;
        });
    let read: freshteam_operator::api::FreshteamIntegration =
        serde_json::from_value(builder.user_json()).unwrap();
    let typed = builder.build();
    assert_eq!(read.spec, typed.spec);
    assert_eq!(read.metadata.labels, typed.metadata.labels);
    assert_eq!(read.metadata.name, typed.metadata.name);
}

/// The `sync --file` form is, byte for byte, the document `sync_env` wrote by hand
/// (tests edit it as text).
#[test]
fn the_builders_sync_file_is_the_document_sync_env_wrote() {
    let text = support::integration("hr", "acme")
        .reading("http://127.0.0.1:1/api")
        .writing_to("http://127.0.0.1:2/v2")
        .sync_file(
            "the-key",
            "the-token",
            "  mapping:\n    email: official_email\n",
        );
    let by_hand = r#"apiVersion: v1
kind: Secret
metadata: {name: freshteam-acme, namespace: hr}
stringData: {apiKey: "the-key"}
---
apiVersion: v1
kind: Secret
metadata: {name: members-scim, namespace: hr}
stringData: {token: "the-token"}
---
apiVersion: freshteam.provisioning.dev/v1alpha1
kind: FreshteamIntegration
metadata: {name: acme, namespace: hr}
spec:
  source:
    subdomain: acme
    baseUrl: http://127.0.0.1:1/api
    apiKeySecretRef: {name: freshteam-acme, key: apiKey}
  destination:
    scim:
      url: http://127.0.0.1:2/v2
      tokenSecretRef: {name: members-scim, key: token}
  mapping:
    email: official_email
"#;
    assert_eq!(text, by_hand);
}

/// The simulator's binary is built by cargo, not installed by scripts/setup-peers: its
/// skip line says so.
#[test]
fn a_missing_simulator_binary_names_the_cargo_command() {
    assert_eq!(
        Needs::SimulatorBinary.install(),
        "cargo build -p freshteam-simulator"
    );
    assert_eq!(Needs::Scim2Server.install(), INSTALL);
    let missing = ["freshteam-simulator (/t/debug/freshteam-simulator)".to_string()];
    let Decision::Skip(line) = decide("demo::x", &missing, Needs::SimulatorBinary.install(), false)
    else {
        panic!("not a skip");
    };
    assert!(
        line.contains("run cargo build -p freshteam-simulator"),
        "{line}"
    );
}
