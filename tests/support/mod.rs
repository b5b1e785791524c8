//! Test harness shared by integration tests: a real `scim2-server` per test, plus
//! helpers that look at (and plant data in) that server without going through the
//! client under test.
//!
//! Each test file uses a subset of this module, hence the `dead_code` allowances.

#![allow(dead_code)]

pub mod controlplane;
pub mod fault_front;
mod integration;
mod net;
pub mod peers;
pub mod require;
pub mod smtp;
pub mod sync_env;

// Not every test file builds integrations.
#[allow(unused_imports)]
pub use integration::{integration, IntegrationBuilder};
pub use net::free_port;
// Not every test file needs peers.
#[allow(unused_imports)]
pub(crate) use require::require_peers;

/// The `freshteam-simulator` binary (the simulator's own crate), found next to this test
/// executable's target dir as `assert_cmd::cargo_bin` finds binaries: `target/debug/`
/// above `target/debug/deps/`. `cargo test --workspace` (`scripts/test`) builds it before
/// any test runs; a plain `cargo test` of this package does not, and then this says how.
pub fn simulator_binary() -> PathBuf {
    let binary = simulator_binary_path();
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p freshteam-simulator` (or run the tests \
         with `cargo test --workspace`, as scripts/test does)",
        binary.display()
    );
    binary
}

/// Where [`simulator_binary`] is, whether or not it is built.
pub fn simulator_binary_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().expect("the test executable's folder");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("the profile folder above deps/");
    }
    dir.join(format!(
        "freshteam-simulator{}",
        std::env::consts::EXE_SUFFIX
    ))
}

/// Calls `check` every `every` until it returns `Some`, for at most `timeout`: the one
/// polling loop of the tests, for work that happens in the background.
pub async fn wait_until<T, Fut>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Fut,
) -> Option<T>
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use freshteam_operator::destination::ScimConfig;
use freshteam_operator::secret::SecretString;
use serde_json::{json, Value};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A `scim2-server` child process, empty at start, killed on drop.
pub struct ScimServer {
    /// SCIM base URL, e.g. `http://127.0.0.1:PORT/v2`.
    pub url: String,
    pub token: String,
    pub port: u16,
    pub peer: Peer,
    child: Child,
    log: tempfile::NamedTempFile,
    http: reqwest::Client,
}

/// Where the server binary is: `SCIM2_SERVER`, else the project's `.venv`.
pub fn scim2_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SCIM2_SERVER") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/scim2-server")
}

/// One blocking HTTP/1.0 GET (no runtime needed): the status code.
fn probe(port: u16, path: &str, token: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 16];
    let n = stream.read(&mut head).ok()?;
    std::str::from_utf8(&head[..n])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Which SCIM service implementation a test talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `scim2-server` (PyPI): bulk, ETags, filters, the enterprise extension.
    Scim2Server,
    /// SCIMMY with its Express routers (npm), as documented, Users in memory: core
    /// schema only (the enterprise extension is dropped), no ETags, pages of 200.
    Scimmy,
    /// `tests/peers/reward_gateway.py`: scim2-server shaped like Reward Gateway (base
    /// URL with a programme prefix, `limit` requests per `window` per endpoint, 429s,
    /// no `/Bulk`, pages of 100, its member validation); admin calls in [`peers`].
    RewardGateway { limit: u32, window: Duration },
    /// `tests/peers/partial.py`: 500 to attribute-path PATCHes, drops `title` and the
    /// enterprise extension while announcing them.
    Partial,
    /// `tests/peers/hostile.py`: a list that is not what it says.
    Hostile(HostileList),
}

/// The hostile peer's list (see `tests/peers/hostile.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileList {
    /// `totalResults` 10^12, full pages.
    HugeTotal,
    /// Full pages of new users forever, no `totalResults`.
    Endless,
    /// Full pages of new users forever, `totalResults` always one page ahead.
    Growing,
    /// One user per page whatever `count` asks, never ending.
    Trickle,
}

/// The SCIMMY peer's script (`scripts/setup-peers` installs its packages).
pub fn scimmy_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/scimmy-peer/server.mjs")
}

impl ScimServer {
    /// Starts a `scim2-server` on a free port with a fresh bearer token and waits until
    /// it answers that token.
    pub fn start() -> ScimServer {
        Self::start_peer(Peer::Scim2Server)
    }

    /// Starts `peer` on a free port with a fresh bearer token.
    pub fn start_peer(peer: Peer) -> ScimServer {
        let launch = peers::launch(peer);
        let (binary, prefix): (PathBuf, Vec<String>) = match (&launch, peer) {
            (Some(l), _) => (l.program.clone(), l.args.clone()),
            (None, Peer::Scimmy) => (
                PathBuf::from("node"),
                vec![scimmy_script().display().to_string()],
            ),
            (None, _) => (scim2_server_binary(), Vec::new()),
        };
        let missing = match (&launch, peer) {
            (Some(l), _) => !l.installed,
            (None, Peer::Scimmy) => !scimmy_script()
                .with_file_name("node_modules")
                .join("scimmy")
                .exists(),
            (None, _) => !binary.exists(),
        };
        if missing {
            panic!(
                "{peer:?} is not installed: run `scripts/setup-peers` (it creates .venv and \
                 installs scripts/scimmy-peer), or set SCIM2_SERVER to the scim2-server binary"
            );
        }
        let base = launch.as_ref().map_or("/v2", |l| l.base.as_str());
        let probe_path = launch
            .as_ref()
            .map_or("/v2/Users?count=1", |l| l.probe.as_str());
        let token = format!("test-token-{:016x}", rand::random::<u64>());
        let mut last_log = String::new();
        // The free port can be taken by someone else before the server binds it: retry.
        for _ in 0..5 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("temp file");
            let child = Command::new(&binary)
                .args(&prefix)
                .args(["--port", &port.to_string(), "--bearer-token", &token])
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("log file"))
                .stderr(log.reopen().expect("log file"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut server = ScimServer {
                url: format!("http://127.0.0.1:{port}{base}"),
                token: token.clone(),
                port,
                peer,
                child,
                log,
                http: reqwest::Client::new(),
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = server.child.try_wait() {
                    break;
                }
                // An answer to this token proves it is this server, not another test's.
                if probe(port, probe_path, &token) == Some(200) {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            last_log = std::fs::read_to_string(server.log.path()).unwrap_or_default();
        }
        panic!("{peer:?} did not start; its last output:\n{last_log}");
    }

    /// A client configuration for this server.
    pub fn config(&self) -> ScimConfig {
        ScimConfig::new(&self.url, SecretString::new(self.token.clone())).expect("valid URL")
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    async fn json(resp: reqwest::Response, what: &str) -> Value {
        let status = resp.status();
        let body = resp.text().await.expect("response body");
        assert!(status.is_success(), "{what}: {status} {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"))
    }

    /// Every User, as raw JSON (from the Reward Gateway-shaped peer through its admin
    /// call, so that looking spends none of its budget).
    pub async fn users(&self) -> Vec<Value> {
        if matches!(self.peer, Peer::RewardGateway { .. }) {
            return self.admin_users().await;
        }
        let mut users = Vec::new();
        loop {
            let resp = self
                .request(
                    reqwest::Method::GET,
                    &format!("/Users?startIndex={}&count=1000", users.len() + 1),
                )
                .send()
                .await
                .expect("list users");
            let page = Self::json(resp, "list users").await;
            let resources = page["Resources"].as_array().cloned().unwrap_or_default();
            if resources.is_empty() {
                return users;
            }
            users.extend(resources);
            // SCIMMY answers a startIndex past the end with the whole list again.
            if page["totalResults"]
                .as_u64()
                .is_some_and(|t| users.len() as u64 >= t)
            {
                return users;
            }
        }
    }

    /// One User by id (`None` when absent).
    pub async fn user(&self, id: &str) -> Option<Value> {
        if matches!(self.peer, Peer::RewardGateway { .. }) {
            let users = self.admin_users().await;
            return users.into_iter().find(|u| u["id"] == id);
        }
        let resp = self
            .request(reqwest::Method::GET, &format!("/Users/{id}"))
            .send()
            .await
            .expect("get user");
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        Some(Self::json(resp, "get user").await)
    }

    /// The User with this `externalId`, if exactly one has it.
    pub async fn user_by_external_id(&self, external_id: &str) -> Option<Value> {
        if matches!(self.peer, Peer::RewardGateway { .. }) {
            let mut found: Vec<Value> = (self.admin_users().await.into_iter())
                .filter(|u| u["externalId"] == external_id)
                .collect();
            assert!(
                found.len() <= 1,
                "several users with externalId {external_id}"
            );
            return found.pop();
        }
        let resp = self
            .request(reqwest::Method::GET, "/Users")
            .query(&[("filter", format!("externalId eq \"{external_id}\""))])
            .send()
            .await
            .expect("filter users");
        let page = Self::json(resp, "filter users").await;
        let mut found = page["Resources"].as_array().cloned().unwrap_or_default();
        assert!(
            found.len() <= 1,
            "several users with externalId {external_id}"
        );
        found.pop()
    }

    /// Creates a User as given (schemas default to the core one): an account the
    /// operator did not make. Returns the created resource.
    pub async fn create_raw_user(&self, mut user: Value) -> Value {
        if user.get("schemas").is_none() {
            user["schemas"] = json!([USER_SCHEMA]);
        }
        let resp = self
            .request(reqwest::Method::POST, "/Users")
            .header("Content-Type", "application/scim+json")
            .body(user.to_string())
            .send()
            .await
            .expect("create user");
        Self::json(resp, "create user").await
    }

    /// Applies PATCH operations directly (a change made behind the client's back).
    pub async fn patch_raw_user(&self, id: &str, operations: Value) {
        let resp = self
            .request(reqwest::Method::PATCH, &format!("/Users/{id}"))
            .header("Content-Type", "application/scim+json")
            .body(json!({ "schemas": [PATCH_SCHEMA], "Operations": operations }).to_string())
            .send()
            .await
            .expect("patch user");
        let status = resp.status();
        assert!(
            status.is_success(),
            "patch user: {status} {}",
            resp.text().await.unwrap_or_default()
        );
    }

    pub async fn delete_user(&self, id: &str) {
        let resp = self
            .request(reqwest::Method::DELETE, &format!("/Users/{id}"))
            .send()
            .await
            .expect("delete user");
        assert!(resp.status().is_success(), "delete user: {}", resp.status());
    }
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test clock (one for the unit and the integration tests).
#[allow(unused_imports)]
pub use freshteam_operator::clock::TestClock;

/// A Secret in `namespace` with one key.
pub fn secret(
    namespace: &str,
    name: &str,
    key: &str,
    value: &str,
) -> k8s_openapi::api::core::v1::Secret {
    k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        data: Some(std::collections::BTreeMap::from([(
            key.to_string(),
            k8s_openapi::ByteString(value.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}
