//! The project's own SCIM test peers (`tests/peers/*.py`): how to start each, and the
//! admin calls of the Reward Gateway-shaped one (outside its request budget).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{scim2_server_binary, HostileList, Peer, ScimServer};

/// The programme GUID in the Reward Gateway-shaped peer's base URL.
pub const PROGRAMME: &str = "3f6c1b2a-9d4e-4c7a-8b1f-23e0d5a7c923";

/// A script in `tests/peers`.
pub fn peer_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// The Python of the project's `.venv` (beside `scim2-server`).
fn venv_python() -> PathBuf {
    scim2_server_binary().with_file_name("python")
}

/// How to start one of the Python peers.
pub(super) struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Below `http://127.0.0.1:PORT`: the SCIM base path.
    pub base: String,
    /// A GET that proves the server answers this token, without spending any budget.
    pub probe: String,
    /// Whether what the peer needs is installed.
    pub installed: bool,
}

pub(super) fn launch(peer: Peer) -> Option<Launch> {
    let python = venv_python();
    // The scim2-server based peers need the venv; the hostile one only Python.
    let with_scim2 = python.exists() && scim2_server_binary().exists();
    let launch = match peer {
        Peer::Scim2Server | Peer::Scimmy => return None,
        Peer::RewardGateway { limit, window } => Launch {
            program: python,
            args: vec![
                peer_script("reward_gateway.py").display().to_string(),
                "--limit".into(),
                limit.to_string(),
                "--window".into(),
                format!("{}", window.as_secs_f64()),
                "--programme".into(),
                PROGRAMME.into(),
            ],
            base: format!("/{PROGRAMME}/scim/v2"),
            probe: "/_admin/stats".into(),
            installed: with_scim2,
        },
        Peer::Partial => Launch {
            program: python,
            args: vec![peer_script("partial.py").display().to_string()],
            base: "/v2".into(),
            probe: "/_admin/stats".into(),
            installed: with_scim2,
        },
        Peer::Hostile(mode) => Launch {
            program: if python.exists() {
                python
            } else {
                PathBuf::from("python3")
            },
            args: vec![
                peer_script("hostile.py").display().to_string(),
                "--mode".into(),
                mode.flag().into(),
            ],
            base: "/v2".into(),
            probe: "/_admin/stats".into(),
            installed: true,
        },
    };
    Some(launch)
}

impl HostileList {
    fn flag(self) -> &'static str {
        match self {
            HostileList::HugeTotal => "huge-total",
            HostileList::Endless => "endless",
            HostileList::Growing => "growing",
            HostileList::Trickle => "trickle",
        }
    }
}

/// Requests one endpoint of the Reward Gateway-shaped peer received.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct EndpointStats {
    pub requests: u64,
    /// Answered 429.
    pub throttled: u64,
    /// Answers per status code (`"201"`, `"400"`, ...).
    #[serde(default)]
    pub statuses: BTreeMap<String, u64>,
    /// Requests per method.
    #[serde(default)]
    pub methods: BTreeMap<String, u64>,
    /// When the first and the last were answered, in seconds since the counts started
    /// (or were reset).
    #[serde(default)]
    pub first: f64,
    #[serde(default)]
    pub last: f64,
}

impl EndpointStats {
    pub fn status(&self, code: u16) -> u64 {
        self.statuses.get(&code.to_string()).copied().unwrap_or(0)
    }
    pub fn method(&self, method: &str) -> u64 {
        self.methods.get(method).copied().unwrap_or(0)
    }
    /// From the first request answered to the last.
    pub fn span(&self) -> Duration {
        Duration::from_secs_f64((self.last - self.first).max(0.0))
    }
}

/// `GET /_admin/stats`: per endpoint (`/Users`, `/Users/{id}`, ...) and in total.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PeerStats {
    pub endpoints: BTreeMap<String, EndpointStats>,
    pub totals: EndpointStats,
}

impl PeerStats {
    pub fn endpoint(&self, endpoint: &str) -> EndpointStats {
        self.endpoints.get(endpoint).cloned().unwrap_or_default()
    }

    /// The shortest time the budget allows for what was served: per endpoint, one
    /// window per `limit` requests answered within the budget (429s excluded), and
    /// endpoints counted in parallel (each has its own window).
    pub fn floor(&self, limit: u32, window: Duration) -> Duration {
        self.endpoints
            .values()
            .map(|e| {
                let served = e.requests - e.throttled;
                window * served.div_ceil(u64::from(limit)) as u32
            })
            .max()
            .unwrap_or_default()
    }

    /// Share of all requests answered 429.
    pub fn throttled_share(&self) -> f64 {
        if self.totals.requests == 0 {
            return 0.0;
        }
        self.totals.throttled as f64 / self.totals.requests as f64
    }
}

impl ScimServer {
    /// `http://127.0.0.1:PORT`: where the admin calls are.
    pub fn root(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn admin(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .request(method, format!("{}/_admin/{path}", self.root()))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("admin call");
        let status = resp.status().as_u16();
        let body = resp.text().await.expect("admin answer");
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// The request counts of the Reward Gateway-shaped or the partial peer (the
    /// hostile peer only counts: see [`ScimServer::requests_served`]).
    pub async fn stats(&self) -> PeerStats {
        let (status, body) = self.admin(reqwest::Method::GET, "stats").await;
        assert_eq!(status, 200, "stats: {body}");
        serde_json::from_value(body).expect("stats shape")
    }

    /// Every request the hostile peer answered (admin calls excluded).
    pub async fn requests_served(&self) -> u64 {
        let (status, body) = self.admin(reqwest::Method::GET, "stats").await;
        assert_eq!(status, 200, "stats: {body}");
        body["requests"]
            .as_u64()
            .or_else(|| body["totals"]["requests"].as_u64())
            .expect("a request count")
    }

    /// Forgets the counts so far.
    pub async fn reset_stats(&self) {
        let (status, body) = self.admin(reqwest::Method::POST, "reset-stats").await;
        assert_eq!(status, 200, "reset-stats: {body}");
    }

    /// Closes down every inactive account (deletes it, as Reward Gateway does 60 days
    /// after a leaver): how many.
    pub async fn close_down(&self) -> u64 {
        let (status, body) = self.admin(reqwest::Method::POST, "close-down").await;
        assert_eq!(status, 200, "close-down: {body}");
        body["deleted"].as_u64().expect("a count")
    }

    /// Deletes the account with this externalId, as an administrator would by hand:
    /// whether there was one.
    pub async fn delete_by_hand(&self, external_id: &str) -> bool {
        let path = format!("delete?externalId={external_id}");
        let (status, body) = self.admin(reqwest::Method::POST, &path).await;
        assert!(status == 200 || status == 404, "delete: {status} {body}");
        status == 200
    }

    /// Every user, read through the admin call (no budget spent).
    pub(super) async fn admin_users(&self) -> Vec<Value> {
        let (status, body) = self.admin(reqwest::Method::GET, "users").await;
        assert_eq!(status, 200, "users: {body}");
        body.as_array().cloned().expect("a list of users")
    }
}
