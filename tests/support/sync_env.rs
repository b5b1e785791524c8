//! The real `freshteam-operator sync` binary against the project's Freshteam simulator
//! and a real `scim2-server`: one environment per test.

#![allow(dead_code)]

use std::path::PathBuf;

use freshteam_simulator::{SimConfig, Simulator};
use serde_json::Value;

use super::{Peer, ScimServer};

pub const API_KEY: &str = "ft-live-9c1f2e7d";
/// A key the simulator refuses (also checked never to show).
pub const WRONG_KEY: &str = "wrong-key-51b0";
/// An odd page size, so that pages never line up with round numbers.
pub const PAGE: usize = 7;

/// A finished `sync`.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
    pub fn summary(&self) -> Value {
        self.json()["status"]["summary"].clone()
    }
    pub fn api_calls(&self) -> Value {
        self.json()["status"]["apiCalls"].clone()
    }
}

pub struct Env {
    pub sim: Simulator,
    pub scim: ScimServer,
    pub dir: tempfile::TempDir,
    /// The SCIM URL written into manifests: the server's, or a fault front's.
    pub scim_url: String,
}

impl Env {
    /// `employees` active employees, page size [`PAGE`].
    pub async fn start(employees: usize) -> Env {
        Self::with(SimConfig {
            employees,
            page_size: PAGE,
            inactive_percent: 0.0,
            ..SimConfig::default()
        })
        .await
    }

    /// `employees` active employees, page size [`PAGE`], against `peer`.
    pub async fn start_on(employees: usize, peer: Peer) -> Env {
        Self::with_peer(
            SimConfig {
                employees,
                page_size: PAGE,
                inactive_percent: 0.0,
                ..SimConfig::default()
            },
            peer,
        )
        .await
    }

    /// A simulator as configured (the API key is always [`API_KEY`]).
    pub async fn with(config: SimConfig) -> Env {
        Self::with_peer(config, Peer::Scim2Server).await
    }

    /// [`Env::with`] against `peer`.
    pub async fn with_peer(config: SimConfig, peer: Peer) -> Env {
        let sim = Simulator::start(SimConfig {
            api_key: API_KEY.into(),
            ..config
        })
        .expect("start the simulator");
        let scim = ScimServer::start_peer(peer);
        Env {
            sim,
            scim_url: scim.url.clone(),
            scim,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `acme` in `hr` reading the simulator and writing to [`Env::scim_url`], with its
    /// Secrets, as a `sync --file` document (the shared builder's file form), then
    /// `spec_extra`.
    pub fn manifest(&self, api_key: &str, spec_extra: &str) -> String {
        crate::support::integration("hr", "acme")
            .reading(&self.sim.base_url())
            .writing_to(&self.scim_url)
            .sync_file(api_key, &self.scim.token, spec_extra)
    }

    /// [`Env::manifest`] with `scim_extra` (lines indented for `destination.scim`, e.g.
    /// `"      profile: RewardGateway\n"`) added to the SCIM destination.
    pub fn manifest_scim(&self, api_key: &str, scim_extra: &str, spec_extra: &str) -> String {
        let token_ref = "      tokenSecretRef: {name: members-scim, key: token}\n";
        self.manifest(api_key, spec_extra).replacen(
            token_ref,
            &format!("{token_ref}{scim_extra}"),
            1,
        )
    }

    pub fn default_mapping() -> &'static str {
        "  mapping:\n    email: official_email\n    firstName: first_name\n    lastName: last_name\n    jobTitle: designation\n    department: department\n"
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn command(&self, file: &PathBuf, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_freshteam-operator"));
        c.arg("sync").arg("--file").arg(file).args(args);
        c
    }

    /// Runs `sync` and checks that neither stream shows a key or token.
    pub async fn sync_file(&self, file: &PathBuf, args: &[&str]) -> Run {
        self.sync_file_with(file, args, &[]).await
    }

    /// [`Env::sync_file`] with extra environment variables.
    pub async fn sync_file_with(
        &self,
        file: &PathBuf,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Run {
        let out = self
            .command(file, args)
            .envs(vars.iter().copied())
            .output()
            .await
            .expect("run freshteam-operator sync");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        for secret in [API_KEY, WRONG_KEY, self.scim.token.as_str()] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "a secret leaked into the output:\n{}\n{}",
                run.stdout,
                run.stderr
            );
        }
        run
    }

    /// Starts `sync` without waiting (output discarded).
    pub fn spawn_sync(&self, file: &PathBuf, args: &[&str]) -> tokio::process::Child {
        self.command(file, args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn freshteam-operator sync")
    }

    /// Starts `sync` without waiting, its output piped (read it with
    /// `wait_with_output`).
    pub fn spawn_sync_piped(&self, file: &PathBuf, args: &[&str]) -> tokio::process::Child {
        self.command(file, args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn freshteam-operator sync")
    }

    /// The manifest with the default mapping, written to `acme.yaml`.
    pub fn default_file(&self) -> PathBuf {
        self.write(
            "acme.yaml",
            &self.manifest(API_KEY, Self::default_mapping()),
        )
    }

    /// `sync --output json` with the default mapping.
    pub async fn sync(&self, args: &[&str]) -> Run {
        let file = self.default_file();
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        self.sync_file(&file, &all).await
    }

    /// (externalId, meta.version) of every User, sorted.
    pub async fn versions(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .scim
            .users()
            .await
            .iter()
            .map(|u| {
                (
                    u["externalId"].as_str().unwrap_or_default().to_string(),
                    u["meta"]["version"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }

    pub async fn user(&self, employee_id: &str) -> Value {
        self.scim
            .user_by_external_id(employee_id)
            .await
            .unwrap_or_else(|| panic!("no member {employee_id}"))
    }
}

/// The simulator's Employee ID of its n-th generated employee.
pub fn employee_id(n: usize) -> String {
    format!("E-{n:05}")
}
