//! The shared test support's own checks: when a test that needs a peer skips, and when
//! it fails instead.

mod support;

use support::require::{act, decide, Decision, Needs, INSTALL, REQUIRED_VAR};

fn missing() -> Vec<String> {
    vec!["scim2-server (/nowhere/.venv/bin/scim2-server)".to_string()]
}

#[test]
fn a_missing_peer_skips_the_test_naming_it_and_the_install_command() {
    let Decision::Skip(line) = decide("scim_client::creates", &missing(), false) else {
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
    assert_eq!(decide("t", &[], false), Decision::Run);
    assert_eq!(decide("t", &[], true), Decision::Run);
    assert!(!act(Decision::Run));
}

#[test]
#[should_panic(
    expected = "scim_client::creates: scim2-server (/nowhere/.venv/bin/scim2-server) not installed, and FRESHTEAM_PEERS_REQUIRED is set: run scripts/setup-peers"
)]
fn a_missing_peer_fails_the_test_when_peers_are_required() {
    let decision = decide("scim_client::creates", &missing(), true);
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
    ] {
        if let Some(what) = need.missing() {
            assert!(what.contains('/'), "{need:?}: {what}");
        }
    }
}
