//! `scripts/demo` as a new user runs it, against the transcript in README.md: every
//! line of the README's transcript must appear in the demo's output, in order, once run
//! names (which carry the time) are normalised.

mod support;

use std::process::Command;

use support::free_port;

const START: &str = "<!-- demo-transcript:start -->";
const END: &str = "<!-- demo-transcript:end -->";

/// `acme-20261201-084500` and `acme-20261201-084500-2` → `acme-<time>`.
fn normalise(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("acme-") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 5..];
        let stamp: String = tail.chars().take(15).collect();
        let is_stamp = stamp.len() == 15
            && stamp
                .chars()
                .enumerate()
                .all(|(k, c)| if k == 8 { c == '-' } else { c.is_ascii_digit() });
        if is_stamp {
            out.push_str("acme-<time>");
            let mut after = &tail[15..];
            if let Some(n) = after.strip_prefix('-') {
                let digits = n.chars().take_while(|c| c.is_ascii_digit()).count();
                if digits > 0 {
                    after = &n[digits..];
                }
            }
            rest = after;
        } else {
            out.push_str("acme-");
            rest = tail;
        }
    }
    out.push_str(rest);
    out.trim_end().to_string()
}

fn readme_transcript() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme.find(START).expect("README has the demo transcript");
    let end = readme.find(END).expect("README closes the demo transcript");
    readme[start + START.len()..end]
        .lines()
        .filter(|l| !l.starts_with("```") && !l.trim().is_empty() && l.trim() != "…")
        .map(normalise)
        .collect()
}

#[test]
fn normalise_replaces_run_names_only() {
    assert_eq!(
        normalise("ImportRun acme-20261201-084500-2 (dry run)"),
        "ImportRun acme-<time> (dry run)"
    );
    assert_eq!(
        normalise("nora.new@acme.example acme-1"),
        "nora.new@acme.example acme-1"
    );
}

#[test]
fn the_demo_prints_what_the_readme_shows() {
    // Built by `cargo test --workspace` (scripts/test); scripts/demo installs the peers.
    support::require_peers!(SimulatorBinary);
    let out = tempfile::tempdir().unwrap();
    let demo_out = out.path().join("demo-out");
    let run = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo"))
        .env(
            "FRESHTEAM_OPERATOR_BIN",
            env!("CARGO_BIN_EXE_freshteam-operator"),
        )
        .env("FRESHTEAM_SIMULATOR_BIN", support::simulator_binary())
        .env("DEMO_OUT", &demo_out)
        .env("DEMO_SIM_PORT", free_port().to_string())
        .env("DEMO_SCIM_PORT", free_port().to_string())
        .env("DEMO_SMTP_PORT", free_port().to_string())
        .env_remove("SMTP_URL")
        .env_remove("MAIL_FROM")
        .output()
        .expect("run scripts/demo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let printed: Vec<String> = stdout.lines().map(normalise).collect();

    let expected = readme_transcript();
    assert!(expected.len() > 20, "the README transcript is too short");
    let mut at = 0;
    for line in &expected {
        match printed[at..].iter().position(|p| p == line) {
            Some(k) => at += k + 1,
            None => panic!(
                "README transcript line not printed by the demo (in order):\n  {line}\n\ndemo output:\n{stdout}"
            ),
        }
    }
    // The e-mails people receive are part of the demo.
    assert!(stdout.contains("e-mail to the owner hr-admin@acme.example"));
    assert!(stdout.contains("login link: https://rewards.example.com/activate"));
}
