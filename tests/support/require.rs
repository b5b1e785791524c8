//! Tests that need the project's test peers skip without them, loudly; CI requires them.
//!
//! The peers are what `scripts/setup-peers` installs: `.venv` (scim2-server, aiosmtpd,
//! the Python peers of `tests/peers`) and SCIMMY's packages in `scripts/scimmy-peer`. A
//! test that starts one begins with `support::require_peers!(Scim2Server, …)` naming
//! what it needs. When something is missing the test prints one line on stderr naming
//! it and the command that installs it, and returns (it passes, having checked nothing);
//! with [`REQUIRED_VAR`]`=1` (as `.ci/run` sets it) it fails instead, naming the peer.
//! The same as the e2e suites do for the control plane (`FRESHTEAM_E2E_REQUIRED`).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{scim2_server_binary, scimmy_script, simulator_binary_path};

/// Set to `1` (CI): a missing peer fails the test instead of skipping it.
pub const REQUIRED_VAR: &str = "FRESHTEAM_PEERS_REQUIRED";

/// What installs every peer.
pub const INSTALL: &str = "scripts/setup-peers";

/// A peer (or what it runs on) that `scripts/setup-peers` installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// `scim2-server` (PyPI) in `.venv`, or the binary `SCIM2_SERVER` names.
    Scim2Server,
    /// The Python SCIM peers of `tests/peers` (Reward Gateway-shaped, partial): the
    /// `.venv` Python beside `scim2-server`.
    PythonPeers,
    /// SCIMMY and its Express routers, in `scripts/scimmy-peer/node_modules`.
    Scimmy,
    /// `aiosmtpd` (PyPI) in `.venv`: the SMTP peer.
    Aiosmtpd,
    /// The `freshteam-simulator` binary (built by `cargo test --workspace`, which
    /// `scripts/test` runs, not by a plain `cargo test` of the operator).
    SimulatorBinary,
}

fn venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin")
}

impl Needs {
    /// What is missing for it, named with its path; `None` when installed.
    pub fn missing(self) -> Option<String> {
        let absent = |what: &str, path: PathBuf| {
            (!path.exists()).then(|| format!("{what} ({})", path.display()))
        };
        match self {
            Needs::Scim2Server => absent("scim2-server", scim2_server_binary()),
            Needs::PythonPeers => absent("scim2-server", scim2_server_binary()).or_else(|| {
                absent(
                    "the Python beside scim2-server",
                    scim2_server_binary().with_file_name("python"),
                )
            }),
            Needs::Scimmy => absent(
                "SCIMMY",
                scimmy_script()
                    .with_file_name("node_modules")
                    .join("scimmy"),
            ),
            Needs::Aiosmtpd => absent("aiosmtpd", venv().join("aiosmtpd"))
                .or_else(|| absent("the .venv Python", venv().join("python"))),
            Needs::SimulatorBinary => absent("freshteam-simulator", simulator_binary_path()),
        }
    }

    /// The command that installs it.
    pub fn install(self) -> &'static str {
        match self {
            Needs::SimulatorBinary => "cargo build -p freshteam-simulator",
            _ => INSTALL,
        }
    }
}

/// What a test does about its peers.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Run,
    /// Skip, printing this line.
    Skip(String),
    /// Fail with this message (peers required).
    Fail(String),
}

/// The decision for `test` given what is `missing`, the command that `install`s it and
/// whether peers are `required`.
pub fn decide(test: &str, missing: &[String], install: &str, required: bool) -> Decision {
    if missing.is_empty() {
        return Decision::Run;
    }
    let missing = missing.join(", ");
    if required {
        Decision::Fail(format!(
            "{test}: {missing} not installed, and {REQUIRED_VAR} is set: run {install}"
        ))
    } else {
        Decision::Skip(format!(
            "*** SKIPPED {test}: {missing} not installed: run {install} \
             (or set {REQUIRED_VAR}=1 to fail instead) ***"
        ))
    }
}

/// Whether peers are required ([`REQUIRED_VAR`] set and not empty or `0`).
pub fn required() -> bool {
    std::env::var(REQUIRED_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `true` when the calling test must return now: what it `needs` is missing and not
/// required (after saying so on stderr). Panics when it is missing and required.
pub fn skip(needs: &[Needs]) -> bool {
    let absent: Vec<Needs> = needs
        .iter()
        .copied()
        .filter(|n| n.missing().is_some())
        .collect();
    let missing: Vec<String> = absent.iter().filter_map(|n| n.missing()).collect();
    let mut install: Vec<&str> = absent.iter().map(|n| n.install()).collect();
    install.dedup();
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    act(decide(test, &missing, &install.join(" and "), required()))
}

/// Carries out a decision: `true` to skip (the line printed), a panic to fail.
pub fn act(decision: Decision) -> bool {
    match decision {
        Decision::Run => false,
        Decision::Skip(line) => {
            // Straight to stderr: the test harness captures eprintln! of passing tests.
            let _ = writeln!(std::io::stderr(), "{line}");
            true
        }
        Decision::Fail(message) => panic!("{message}"),
    }
}

/// At the top of a test that starts peers: returns from the test (after one line on
/// stderr) when one of them is not installed, unless `FRESHTEAM_PEERS_REQUIRED=1`.
///
/// ```ignore
/// support::require_peers!(Scim2Server, Aiosmtpd);
/// ```
#[allow(unused_macros)] // Not every test file needs peers.
macro_rules! require_peers {
    ($($need:ident),+ $(,)?) => {
        if $crate::support::require::skip(&[$($crate::support::require::Needs::$need),+]) {
            return;
        }
    };
}
pub(crate) use require_peers;
