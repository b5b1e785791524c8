//! A protocol-faithful Freshteam API simulator for tests, benchmarks and the demo.
//!
//! It answers like `https://{subdomain}.freshteam.com/api` (see
//! `docs/freshteam-api.md`): bearer-key auth, a fixed-window rate limit with the
//! `x-ratelimit-*` headers and `Retry-After`, paginated employees with `total-objects`,
//! `total-pages` and an RFC 8288 `link` header, a richer detail endpoint and the lookup
//! endpoints. Faults (503s, stalls, truncated bodies, an unknown account) can be switched
//! on at run time, and every API request is logged so tests can check how a client
//! behaved, e.g. that it waited for a throttled window to reopen.
//!
//! Who the list returns follows Freshworks' description of `GET /api/employees` ("List
//! of active employees from directory") by default ([`ListMode::Documented`]): without
//! a `status`, `terminated`, `deleted` or `draft` filter it holds current staff only
//! (active, not terminated, not deleted, not a draft); with any of them, exactly the
//! employees those filters select (`status` takes `active`, `inactive` or both,
//! comma-separated). [`ListMode::Permissive`] lists everyone when unfiltered, the other
//! way a real account might behave; an import must be right against both.
//!
//! `updated_since` keeps the employees whose `updated_at` is at or after it and
//! combines with every other filter and with paging. It takes a date `YYYY-MM-DD`
//! (from 00:00 UTC that day; Freshteam documents "a date") or, as the simulator's own
//! extension, an RFC 3339 timestamp; anything else answers 400 `invalid_value` naming
//! the field `updated_since` (the simulator's choice: what Freshteam answers is not
//! documented). Generated employees all changed long before the simulator started
//! (their `updated_at` is at the latest 2026-03-01), so an incremental read of an
//! untouched account lists nobody.
//!
//! Admin routes for scripts (no auth, not rate limited, not logged):
//! `GET`/`DELETE /_sim/requests`, `GET`/`POST /_sim/employees`,
//! `GET`/`PATCH /_sim/employees/{employee_id}` (a patch moves `updated_at` to now
//! unless it sets `updated_at` itself: setting the old value makes a change that
//! `updated_since` cannot see), `DELETE /_sim/employees/{employee_id}`
//! (removes the employee for good, as Freshteam's "Delete Forever": in no list any
//! more), `POST /_sim/touch` (`{"count": n, "field": "designation" | "first_name" |
//! "last_name", "population": "all" | "current"}`, field and population optional:
//! edits that field of `n` employees (of current staff only, with `current`) spread
//! evenly over the directory, moving their `updated_at` to now, in one call; answers
//! `{"field", "employee_ids"}`), `GET`/`PUT /_sim/faults`
//! (`{"fail_every", "unknown_account", "truncate_every", "stall_every", "stall_ms",
//! "latency_ms"}`, missing keys reset to their defaults), `PUT /_sim/rate_limit`
//! (`{"limit": n | null, "window_ms": ms}`) and `PUT /_sim/list_mode`
//! (`{"mode": "documented" | "permissive"}`).
//!
//! The simulator is its own crate and binary (`freshteam-simulator`, the same flags as
//! the operator's former `simulate` subcommand) so that the operator's release binary
//! and image do not carry it. It stands alone, with no dependency on the operator: it
//! models Freshteam's API, so the Freshteam facts it needs (which fields the list
//! endpoint returns, [`LIST_FIELDS`]) are its own, written from `docs/freshteam-api.md`.
//! That keeps it a faithful second opinion on the API instead of an echo of the client,
//! lets it build in parallel with the operator, and leaves no dependency cycle: the
//! operator's integration tests, benchmarks and the demo use it (a dev-dependency), and
//! the operator's test `tests/source_simulator.rs` checks that both lists of list
//! fields agree.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use freshteam_simulator::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig { employees: 120, ..SimConfig::default() })?;
//! // Point the client at sim.base_url() with the key "sim-api-key".
//! assert_eq!(sim.count("/api/employees"), 0);
//! # Ok(()) }
//! ```

mod cli;
mod data;
mod server;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use cli::{run, SimulateArgs};
pub use data::LIST_FIELDS;

use data::{Directory, Generator};
use server::{Shared, State};

/// Who the unfiltered employee list returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListMode {
    /// As documented: current staff only; leavers and drafts only through filters.
    #[default]
    Documented,
    /// Everyone, leavers and drafts included.
    Permissive,
}

/// How the simulated account starts out.
#[derive(Clone)]
pub struct SimConfig {
    /// Generated employees (numbered 1..=n: id `1000 + n`, Employee ID `E-0000n`).
    pub employees: usize,
    /// Employees per list page. The server's choice: clients must not assume it.
    pub page_size: usize,
    /// The key that authenticates (`Authorization: Bearer <key>`).
    pub api_key: String,
    /// Keys that authenticate but whose role lacks API access (403 `forbidden`).
    pub forbidden_keys: Vec<String>,
    /// Seed for the generated data; the same seed gives the same employees.
    pub seed: u64,
    /// Requests per window; `None` = unlimited (headers still sent, total 1000).
    pub rate_limit: Option<u32>,
    /// Length of the fixed rate-limit window (Freshteam: one minute).
    pub window: Duration,
    /// Send `Retry-After` with 429s.
    pub retry_after: bool,
    /// Share of inactive (terminated) generated employees, in percent.
    pub inactive_percent: f64,
    /// Added to every API response.
    pub latency: Duration,
    /// Every Nth API request gets a 503 (see [`Faults::fail_every`]).
    pub fail_every: Option<u32>,
    /// Who the unfiltered list returns.
    pub list_mode: ListMode,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            employees: 50,
            page_size: 25,
            api_key: "sim-api-key".to_string(),
            forbidden_keys: Vec::new(),
            seed: 42,
            rate_limit: None,
            window: Duration::from_secs(60),
            retry_after: true,
            inactive_percent: 3.0,
            latency: Duration::ZERO,
            fail_every: None,
            list_mode: ListMode::Documented,
        }
    }
}

/// Keys are never printed, not even the simulator's.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("employees", &self.employees)
            .field("page_size", &self.page_size)
            .field("api_key", &"[redacted]")
            .field(
                "forbidden_keys",
                &format!("[{} redacted]", self.forbidden_keys.len()),
            )
            .field("seed", &self.seed)
            .field("rate_limit", &self.rate_limit)
            .field("window", &self.window)
            .field("retry_after", &self.retry_after)
            .field("inactive_percent", &self.inactive_percent)
            .field("latency", &self.latency)
            .field("fail_every", &self.fail_every)
            .field("list_mode", &self.list_mode)
            .finish()
    }
}

/// Faults injected into `/api` requests; replace them with [`Simulator::set_faults`].
/// Counters for the `*_every` switches restart whenever faults are set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Every Nth API request (of any kind) gets 503 `service_unavailable`.
    pub fail_every: Option<u32>,
    /// Every request gets 404 `not_found`, as for an unknown subdomain.
    pub unknown_account: bool,
    /// Every Nth employees-list response is cut off mid-JSON, still with status 200.
    pub truncate_every: Option<u32>,
    /// Every Nth API request is held for `stall_for` before it is answered.
    pub stall_every: Option<u32>,
    /// How long a stalled request is held (default 30 s, past a client's timeout).
    pub stall_for: Duration,
    /// Added to every API response.
    pub latency: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            fail_every: None,
            unknown_account: false,
            truncate_every: None,
            stall_every: None,
            stall_for: Duration::from_secs(30),
            latency: Duration::ZERO,
        }
    }
}

/// One `/api` request as the server saw it on arrival.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Path without the query, e.g. `/api/employees`.
    pub path: String,
    /// Raw query string without `?` (empty when none).
    pub query: String,
    pub status: u16,
    /// Arrival time since the server started.
    pub at: Duration,
    /// Answered 429.
    pub throttled: bool,
    /// Held by the `stall_every` fault.
    pub stalled: bool,
    /// Body cut off by the `truncate_every` fault.
    pub truncated: bool,
    /// Index of the rate-limit window it arrived in (increasing, also across
    /// [`Simulator::set_rate_limit`]).
    pub window: u64,
    /// For a 429: when its window reopens, since the server started.
    pub reopens_at: Option<Duration>,
}

impl RequestRecord {
    fn to_json(&self) -> Value {
        json!({
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "at_ms": self.at.as_secs_f64() * 1000.0,
            "throttled": self.throttled,
            "stalled": self.stalled,
            "truncated": self.truncated,
            "window": self.window,
            "reopens_at_ms": self.reopens_at.map(|d| d.as_secs_f64() * 1000.0),
        })
    }
}

/// Why a change to the simulated employees was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("no employee with Employee ID '{0}'")]
    UnknownEmployee(String),
    #[error("an employee with id {0} already exists")]
    DuplicateId(i64),
    #[error("{0}")]
    Invalid(String),
}

/// A running simulator. Dropping it stops the server.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Starts on `127.0.0.1` with a free port, on the current tokio runtime.
    pub fn start(config: SimConfig) -> std::io::Result<Simulator> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// A small account with one employee of each kind, eight in all at three a page:
    /// E-00001..E-00004 current staff, E-00005 inactive, E-00006 terminated, E-00007
    /// deleted, E-00008 a draft (for checking how a client reads every population).
    pub fn one_of_each_kind(list_mode: ListMode) -> std::io::Result<Simulator> {
        let sim = Self::start(SimConfig {
            employees: 8,
            page_size: 3,
            inactive_percent: 0.0,
            list_mode,
            ..SimConfig::default()
        })?;
        for (id, patch) in [
            ("E-00005", json!({"status": "inactive"})),
            ("E-00006", json!({"terminated": true})),
            ("E-00007", json!({"deleted": true})),
            ("E-00008", json!({"draft": true})),
        ] {
            sim.update_employee(id, patch)
                .map_err(std::io::Error::other)?;
        }
        Ok(sim)
    }

    /// Starts on a given address (port 0 picks a free one).
    pub fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<Simulator> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            std::io::Error::other("the simulator must be started inside a tokio runtime")
        })?;
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // Enter explicitly so `from_std` registers with this runtime's reactor.
        let _guard = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener)?;

        let started = Instant::now();
        if chrono::Utc::now() < data::after_generated_changes() + chrono::Duration::days(2) {
            tracing::warn!("the system clock reads before March 2026: generated employees look recently changed to updated_since");
        }
        let directory = Directory::new(
            Generator::new(config.seed, config.inactive_percent),
            config.employees,
        );
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(&config, directory, started)),
            started,
            addr,
        });
        let app = server::router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = runtime.spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "Freshteam simulator stopped");
            }
        });
        Ok(Simulator {
            shared,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/api`: what `spec.source.baseUrl` takes.
    pub fn base_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The API key that authenticates.
    pub fn api_key(&self) -> String {
        self.shared.lock().api_key.clone()
    }

    /// Stops accepting connections and waits (up to 5 s) for open ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    // ---- request log ----

    /// Every `/api` request so far, in arrival order (admin calls are not logged).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().log.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }

    /// Requests whose path starts with `path_prefix` (`/api/employees` counts list and
    /// detail calls; `/api/employees/` only detail calls).
    pub fn count(&self, path_prefix: &str) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .count()
    }

    /// 429s per rate-limit window. A client that waits for the window after its first
    /// 429 has at most (its concurrency) per window.
    pub fn throttled_calls_per_window(&self) -> BTreeMap<u64, u32> {
        let mut out = BTreeMap::new();
        for r in self.shared.lock().log.iter().filter(|r| r.throttled) {
            *out.entry(r.window).or_insert(0) += 1;
        }
        out
    }

    /// Requests that arrived after a 429 but before that 429's window reopened: what a
    /// client that honours the rate limit does not send (apart from requests already in
    /// flight when the first 429 came back).
    pub fn requests_before_reopen(&self) -> Vec<RequestRecord> {
        let mut blocked_until: Option<Duration> = None;
        let mut early = Vec::new();
        for r in self.shared.lock().log.iter() {
            if blocked_until.is_some_and(|until| r.at < until) {
                early.push(r.clone());
            }
            if let Some(reopens) = r.reopens_at {
                blocked_until = Some(blocked_until.map_or(reopens, |u| u.max(reopens)));
            }
        }
        early
    }

    // ---- employees ----

    /// Every employee with all fields, in id order.
    pub fn employees(&self) -> Vec<Value> {
        self.shared.lock().directory.all()
    }

    /// The employee with that Employee ID, all fields.
    pub fn employee(&self, employee_id: &str) -> Option<Value> {
        self.shared.lock().directory.find(employee_id)
    }

    /// Number of employees.
    pub fn employee_count(&self) -> usize {
        self.shared.lock().directory.len()
    }

    /// Merges `patch` into the employee with that Employee ID and returns the new record.
    /// Nested objects (`custom_field_values`) merge key by key; `null` sets a field to
    /// null. `updated_at` moves to now unless the patch sets it.
    pub fn update_employee(&self, employee_id: &str, patch: Value) -> Result<Value, SimError> {
        self.shared.lock().directory.update(employee_id, &patch)
    }

    /// Adds an employee (a JSON object, stored as given). Without an `id` it gets one past
    /// the highest. Fields it lacks are absent from its responses.
    pub fn add_employee(&self, employee: Value) -> Result<Value, SimError> {
        self.shared.lock().directory.add(employee)
    }

    /// Edits `field` (`designation`, `first_name` or `last_name`) of `count` employees
    /// spread evenly over the directory and moves their `updated_at` to now, as
    /// `POST /_sim/touch` does. Returns their Employee IDs, in id order.
    pub fn touch_employees(&self, count: usize, field: &str) -> Result<Vec<String>, SimError> {
        self.shared.lock().directory.touch(count, field, false)
    }

    /// Removes the employee with that Employee ID for good ("Delete Forever": in no
    /// list any more); false when there was none.
    pub fn remove_employee(&self, employee_id: &str) -> bool {
        self.shared.lock().directory.remove(employee_id)
    }

    // ---- behaviour ----

    /// Replaces the faults and restarts their counters.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().set_faults(faults);
    }

    pub fn faults(&self) -> Faults {
        self.shared.lock().faults.clone()
    }

    /// Switches who the unfiltered list returns.
    pub fn set_list_mode(&self, mode: ListMode) {
        self.shared.lock().list_mode = mode;
    }

    /// Changes the limit and window; a fresh window with a full quota starts now.
    pub fn set_rate_limit(&self, limit: Option<u32>, window: Duration) {
        self.shared
            .lock()
            .set_rate_limit(limit, window, Instant::now());
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
