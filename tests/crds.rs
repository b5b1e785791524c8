//! The CRDs checked in under crds/ are exactly what the binary generates.

use std::process::Command;

#[test]
fn checked_in_crds_match_the_generated_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_freshteam-operator"))
        .arg("crds")
        .output()
        .expect("run freshteam-operator crds");
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/freshteam.provisioning.dev.yaml"
    );
    let checked_in = std::fs::read_to_string(path).unwrap();
    assert!(
        generated == checked_in,
        "crds/ is out of date: run `cargo run -- crds > crds/freshteam.provisioning.dev.yaml`"
    );
    assert!(
        generated.contains("kind: FreshteamIntegration") && generated.contains("kind: ImportRun")
    );
}
