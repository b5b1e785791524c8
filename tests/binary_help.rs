//! The release binary's command line: the operator's commands, and no Freshteam
//! simulator (it is its own crate and binary, `freshteam-simulator`).

use std::process::Command;

#[test]
fn help_lists_the_operator_commands_and_no_simulator() {
    let out = Command::new(env!("CARGO_BIN_EXE_freshteam-operator"))
        .arg("--help")
        .output()
        .expect("run freshteam-operator --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for command in ["run", "crds", "sync"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} missing from:\n{help}"
        );
    }
    assert!(!help.contains("simulate"), "{help}");
    assert!(!help.to_lowercase().contains("simulator"), "{help}");
    let refused = Command::new(env!("CARGO_BIN_EXE_freshteam-operator"))
        .arg("simulate")
        .output()
        .unwrap();
    assert!(!refused.status.success());
}
