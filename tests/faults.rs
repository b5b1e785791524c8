//! Fault injection, end to end: the real `sync` binary against the Freshteam simulator
//! (server-side fault switches) and a real `scim2-server` behind a fault-injecting TCP
//! front.
//!
//! Covered elsewhere, not repeated here:
//! - a Freshteam request that stalls past the client's timeout (30 s, not settable from
//!   a manifest): `source::client` tests `a_timeout_is_retried`;
//! - Freshteam 5xx on every 4th call and a 3-per-window rate limit through `sync`:
//!   `tests/sync_cli.rs`;
//! - SCIM 503s and a lost answer to a single POST, 409 and 412 inside and outside
//!   `/Bulk`: `tests/scim_client.rs`.

mod support;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use freshteam_operator::simulator::{Faults, SimConfig};
use serde_json::{json, Value};
use support::sync_env::{employee_id, Env, PAGE};
use support::ScimServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

// ---------------------------------------------------------------- a SCIM fault front

/// What the front does to one write request (POST, PATCH, PUT, DELETE).
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// 503 without passing the request on.
    Unavailable,
    /// Passes the request on, then closes the connection without the answer: the write
    /// happened, the client cannot know.
    LoseAnswer,
}

#[derive(Default)]
struct FrontState {
    /// Faults for the next write requests, in order.
    script: Mutex<VecDeque<Fault>>,
    /// Write requests seen so far.
    writes: AtomicUsize,
    /// Writes with an index at or past this are held until [`Front::release`].
    hold_from: AtomicUsize,
    held: AtomicUsize,
    in_flight: AtomicUsize,
    changed: Notify,
}

/// A TCP front for `scim2-server` (HTTP/1.0: one request per connection). Reads pass
/// through; writes can be failed, have their answer lost, or be held back.
struct Front {
    url: String,
    state: Arc<FrontState>,
    gate: watch::Sender<bool>,
}

impl Front {
    async fn start(server: &ScimServer) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v2", listener.local_addr().unwrap());
        let state = Arc::new(FrontState {
            hold_from: AtomicUsize::new(usize::MAX),
            ..FrontState::default()
        });
        let (gate, open) = watch::channel(true);
        let (shared, port) = (state.clone(), server.port);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (state, mut open) = (shared.clone(), open.clone());
                tokio::spawn(async move {
                    state.in_flight.fetch_add(1, Ordering::SeqCst);
                    serve(inbound, port, &state, &mut open).await;
                    state.in_flight.fetch_sub(1, Ordering::SeqCst);
                    state.changed.notify_waiters();
                });
            }
        });
        Front { url, state, gate }
    }

    fn script(&self, faults: &[Fault]) {
        self.state.script.lock().unwrap().extend(faults);
    }

    /// Holds every write from the `n`-th (0-based) on.
    fn hold_writes_from(&self, n: usize) {
        let _ = self.gate.send(false);
        self.state.hold_from.store(n, Ordering::SeqCst);
    }

    fn release(&self) {
        self.state.hold_from.store(usize::MAX, Ordering::SeqCst);
        let _ = self.gate.send(true);
    }

    fn writes(&self) -> usize {
        self.state.writes.load(Ordering::SeqCst)
    }

    async fn wait_until(&self, what: &str, f: impl Fn(&FrontState) -> bool) {
        let wait = async {
            loop {
                let changed = self.state.changed.notified();
                if f(&self.state) {
                    return;
                }
                // Notify is edge-triggered: poll as well, cheaply.
                let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    }

    async fn wait_held(&self, n: usize) {
        self.wait_until("writes are held", |s| s.held.load(Ordering::SeqCst) >= n)
            .await
    }

    /// Waits until no request is passing through.
    async fn wait_idle(&self) {
        self.wait_until("the front is idle", |s| {
            s.in_flight.load(Ordering::SeqCst) == 0
        })
        .await
    }
}

async fn serve(
    mut inbound: TcpStream,
    port: u16,
    state: &FrontState,
    open: &mut watch::Receiver<bool>,
) {
    let Some(request) = read_request(&mut inbound).await else {
        return;
    };
    let method = request.split(|b| *b == b' ').next().unwrap_or_default();
    let mut fault = None;
    if matches!(method, b"POST" | b"PATCH" | b"PUT" | b"DELETE") {
        let index = state.writes.fetch_add(1, Ordering::SeqCst);
        fault = state.script.lock().unwrap().pop_front();
        if index >= state.hold_from.load(Ordering::SeqCst) {
            state.held.fetch_add(1, Ordering::SeqCst);
            state.changed.notify_waiters();
            let _ = open.wait_for(|open| *open).await;
            state.held.fetch_sub(1, Ordering::SeqCst);
        }
    }
    if let Some(Fault::Unavailable) = fault {
        let _ = inbound
            .write_all(
                b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n",
            )
            .await;
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    if outbound.write_all(&request).await.is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = outbound.read_to_end(&mut answer).await;
    if fault.is_none() {
        // The client may be gone (killed): the write happened all the same.
        let _ = inbound.write_all(&answer).await;
    }
}

/// Reads one HTTP request (head and `Content-Length` body).
async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf);
        }
    }
}

// ---------------------------------------------------------------- helpers

/// Users per externalId (accounts without one under "").
async fn members_per_employee(scim: &ScimServer) -> HashMap<String, usize> {
    let mut per = HashMap::new();
    for u in scim.users().await {
        let id = u["externalId"].as_str().unwrap_or_default().to_string();
        *per.entry(id).or_insert(0) += 1;
    }
    per
}

/// Every active employee of the simulator has exactly one member, and no one else has.
async fn assert_one_member_per_employee(env: &Env) {
    let per = members_per_employee(&env.scim).await;
    let active: Vec<String> = env
        .sim
        .employees()
        .iter()
        .filter(|e| e["status"] == "active")
        .map(|e| e["employee_id"].as_str().unwrap().to_string())
        .collect();
    for id in &active {
        assert_eq!(per.get(id), Some(&1), "{id} has {:?} members", per.get(id));
    }
    assert_eq!(
        per.values().sum::<usize>(),
        active.len(),
        "members beyond the employees: {per:?}"
    );
}

fn u64_at(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number at {key} in {v}"))
}

/// The same import again makes no write at all.
async fn assert_converged(env: &Env, members: u64) {
    let again = env.sync(&[]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let s = again.summary();
    assert_eq!(
        (
            u64_at(&s, "created"),
            u64_at(&s, "updated"),
            u64_at(&s, "unchanged")
        ),
        (0, 0, members),
        "{s}"
    );
    assert_eq!(u64_at(&again.api_calls(), "destinationWrites"), 0);
}

// ---------------------------------------------------------------- Freshteam faults

/// List pages a run reads besides the current staff's: one (empty) page each for the
/// inactive, terminated, deleted and draft passes.
const LEAVER_PASSES: u64 = 4;

#[tokio::test(flavor = "multi_thread")]
async fn truncated_freshteam_pages_are_read_again() {
    let env = Env::start(60).await;
    env.sim.set_faults(Faults {
        truncate_every: Some(3),
        ..Faults::default()
    });
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary()["created"], 60);
    assert_eq!(run.summary()["errors"], 0);

    let log = env.sim.requests();
    let truncated = log.iter().filter(|r| r.truncated).count() as u64;
    let pages = 60usize.div_ceil(PAGE) as u64;
    assert!(truncated >= 2, "the fault never fired: {log:?}");
    let calls = run.api_calls();
    assert_eq!(u64_at(&calls, "freshteamRetries"), truncated);
    assert_eq!(
        u64_at(&calls, "freshteamList"),
        pages + LEAVER_PASSES + truncated
    );
    assert_one_member_per_employee(&env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_freshteam_answers_are_waited_for_not_retried() {
    let env = Env::start(60).await;
    env.sim.set_faults(Faults {
        stall_every: Some(4),
        stall_for: Duration::from_millis(1500),
        latency: Duration::from_millis(40),
        ..Faults::default()
    });
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary()["created"], 60);
    assert!(env.sim.requests().iter().filter(|r| r.stalled).count() >= 2);
    let calls = run.api_calls();
    assert_eq!(
        u64_at(&calls, "freshteamRetries"),
        0,
        "a slow answer is no failure"
    );
    assert_eq!(
        u64_at(&calls, "freshteamList"),
        60usize.div_ceil(PAGE) as u64 + LEAVER_PASSES
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_storm_is_waited_out_with_one_throttled_call_per_window() {
    // 14 pages, 4 leaver and draft passes and 1 lookup against 2 requests per 1-second
    // window.
    let n = 14 * PAGE;
    let env = Env::start(n).await;
    env.sim.set_rate_limit(Some(2), Duration::from_secs(1));
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary()["created"], n as u64);

    let throttled = env.sim.throttled_calls_per_window();
    assert!(!throttled.is_empty(), "the quota was never reached");
    for (window, calls) in &throttled {
        assert_eq!(*calls, 1, "{calls} throttled calls in window {window}");
    }
    let total: u32 = throttled.values().sum();
    let calls = run.api_calls();
    assert_eq!(u64_at(&calls, "freshteamThrottled"), total as u64);
    assert_eq!(
        u64_at(&calls, "freshteamRetries"),
        0,
        "429s are no failures"
    );
    assert_eq!(
        env.sim.requests().len(),
        15 + LEAVER_PASSES as usize + total as usize,
        "every throttled call is repeated once, nothing else"
    );
    let early = env.sim.requests_before_reopen();
    assert!(
        early.is_empty(),
        "sent while the window was known to be closed: {early:?}"
    );
    assert_one_member_per_employee(&env).await;
}

// ---------------------------------------------------------------- SCIM faults

#[tokio::test(flavor = "multi_thread")]
async fn a_user_name_clash_is_an_error_row_for_that_member_only() {
    let mut env = Env::start(12).await;
    let front = Front::start(&env.scim).await;
    env.scim_url = front.url.clone();
    let email = |n: usize| {
        env.sim.employee(&employee_id(n)).unwrap()["official_email"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (before, during) = (email(3), email(5));
    // An account the integration does not manage already holds E-00003's address …
    let planted = env
        .scim
        .create_raw_user(json!({"userName": before, "displayName": "Shared inbox"}))
        .await;
    // … and one takes E-00005's after the destination was read, before the writes: the
    // service answers 409.
    front.hold_writes_from(0);
    let plant_during_run = async {
        front.wait_held(1).await;
        let late = env
            .scim
            .create_raw_user(json!({"userName": during, "displayName": "Late arrival"}))
            .await;
        front.release();
        late
    };
    let (run, late) = tokio::join!(env.sync(&[]), plant_during_run);

    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let v = run.json();
    assert_eq!(v["status"]["phase"], "PartiallySucceeded");
    assert_eq!(v["status"]["summary"]["created"], 10);
    assert_eq!(v["status"]["summary"]["errors"], 2);
    let rows = v["status"]["errors"].as_array().unwrap();
    let row = |n: usize| {
        rows.iter()
            .find(|r| r["employeeId"] == employee_id(n))
            .unwrap_or_else(|| panic!("no error row for {}: {rows:?}", employee_id(n)))
    };
    assert_eq!(row(3)["field"], "email");
    let planned = row(3)["message"].as_str().unwrap();
    assert!(
        planned.contains(&format!(
            "does not manage (id {})",
            planted["id"].as_str().unwrap()
        )),
        "{planned}"
    );
    assert_eq!(row(5)["field"], "email");
    assert!(
        row(5)["message"].as_str().unwrap().contains("409"),
        "{}",
        row(5)
    );

    // The two accounts are as they were; everyone else has exactly one member.
    for account in [&planted, &late] {
        let now = env
            .scim
            .user(account["id"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(now["meta"]["version"], account["meta"]["version"]);
        assert!(now.get("externalId").is_none_or(Value::is_null));
    }
    let per = members_per_employee(&env.scim).await;
    assert_eq!(per.get(""), Some(&2));
    for n in (1..=12).filter(|n| ![3, 5].contains(n)) {
        assert_eq!(per.get(&employee_id(n)), Some(&1));
    }

    // The next run reports both clashes before writing anything.
    let again = env.sync(&[]).await;
    assert_eq!(again.code, 3, "{}", again.stderr);
    assert_eq!(again.summary()["errors"], 2);
    assert_eq!(again.summary()["unchanged"], 10);
    assert_eq!(u64_at(&again.api_calls(), "destinationWrites"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_503_and_a_lost_bulk_answer_are_retried_without_duplicates() {
    let mut env = Env::start(20).await;
    let front = Front::start(&env.scim).await;
    env.scim_url = front.url.clone();
    // The first /Bulk gets a 503; the second is applied but its answer never arrives.
    front.script(&[Fault::Unavailable, Fault::LoseAnswer]);
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.summary()["created"], 20);
    assert!(front.writes() >= 3, "{} writes", front.writes());
    assert_one_member_per_employee(&env).await;
    assert_converged(&env, 20).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_503_and_a_lost_answer_on_single_writes_are_retried_without_duplicates() {
    let mut env = Env::start(20).await;
    let front = Front::start(&env.scim).await;
    env.scim_url = front.url.clone();
    front.script(&[
        Fault::Unavailable,
        Fault::LoseAnswer,
        Fault::Unavailable,
        Fault::LoseAnswer,
    ]);
    let run = env.sync(&["--bulk", "off"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.summary()["created"], 20);
    assert_eq!(front.writes(), 24, "20 creates and 4 retries");
    assert_one_member_per_employee(&env).await;
    assert_converged(&env, 20).await;
}

// ---------------------------------------------------------------- a crash

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_the_writes_then_a_rerun_converges_without_duplicates() {
    let n = 150;
    let mut env = Env::start(n).await;
    let front = Front::start(&env.scim).await;
    env.scim_url = front.url.clone();
    let file = env.default_file();

    // Let 40 creates through, hold the rest, and kill `sync` while they hang.
    front.hold_writes_from(40);
    let mut child = env.spawn_sync(&file, &["--bulk", "off"]);
    front.wait_held(1).await;
    child.kill().await.expect("SIGKILL sync");
    // The held requests reach the server after all: applied, their answers lost.
    front.release();
    front.wait_idle().await;
    let before = env.scim.users().await.len();
    assert!(
        (40..n).contains(&before),
        "{before} members: the kill did not land during the writes"
    );

    let rerun = env.sync(&["--bulk", "off"]).await;
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    let s = rerun.summary();
    assert_eq!(u64_at(&s, "created") as usize, n - before, "{s}");
    assert_eq!(u64_at(&s, "unchanged") as usize, before, "{s}");
    assert_one_member_per_employee(&env).await;
    assert_converged(&env, n as u64).await;
}

// ---------------------------------------------------------------- a mixed population

#[tokio::test(flavor = "multi_thread")]
async fn all_faults_at_once_still_converge() {
    // Inactive employees too, so that leavers and skips go through the same faults.
    let env = Env::with(SimConfig {
        employees: 80,
        page_size: PAGE,
        inactive_percent: 10.0,
        ..SimConfig::default()
    })
    .await;
    env.sim.set_faults(Faults {
        fail_every: Some(5),
        truncate_every: Some(4),
        latency: Duration::from_millis(5),
        ..Faults::default()
    });
    env.sim.set_rate_limit(Some(6), Duration::from_secs(1));
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.summary();
    let active = env
        .sim
        .employees()
        .iter()
        .filter(|e| e["status"] == "active")
        .count() as u64;
    assert_eq!(u64_at(&s, "created"), active);
    assert_eq!(u64_at(&s, "skipped"), 80 - active);
    assert_one_member_per_employee(&env).await;

    env.sim.set_faults(Faults::default());
    env.sim.set_rate_limit(None, Duration::from_secs(60));
    assert_converged_with_skips(&env, active, 80 - active).await;
}

async fn assert_converged_with_skips(env: &Env, members: u64, skipped: u64) {
    let again = env.sync(&[]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let s = again.summary();
    assert_eq!(u64_at(&s, "unchanged"), members, "{s}");
    assert_eq!(u64_at(&s, "skipped"), skipped, "{s}");
    assert_eq!(u64_at(&again.api_calls(), "destinationWrites"), 0);
}

/// A kill between "members created" and the end of the run loses no one from the
/// ledger: the ledger is saved before the creates, and the next run adopts whatever
/// exists. An employee created before the kill and then removed from Freshteam for
/// good is found as a leaver.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_the_creates_keeps_everyone_in_the_ledger() {
    let n = 100;
    let mut env = Env::start(n).await;
    let front = Front::start(&env.scim).await;
    env.scim_url = front.url.clone();
    let file = env.default_file();
    let state = env.dir.path().join("state.json");
    let state_arg = state.to_str().unwrap().to_string();

    front.hold_writes_from(30);
    let mut child = env.spawn_sync(&file, &["--bulk", "off", "--state-file", &state_arg]);
    front.wait_held(1).await;
    child.kill().await.expect("SIGKILL sync");
    front.release();
    front.wait_idle().await;
    let before = env.scim.users().await.len();
    assert!(
        (30..n).contains(&before),
        "{before} members before the kill"
    );

    // One employee who got an account before the kill is deleted forever.
    let gone = employee_id(1);
    assert!(env.scim.user_by_external_id(&gone).await.is_some());
    assert!(env.sim.remove_employee(&gone));
    let rerun = env
        .sync(&["--bulk", "off", "--state-file", &state_arg])
        .await;
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    let s = rerun.summary();
    assert_eq!(u64_at(&s, "leavers"), 1, "{s}");
    assert_eq!(env.user(&gone).await["active"], false);
    assert_eq!(u64_at(&s, "created") as usize, n - before, "{s}");
    // One member per employee, the removed one's kept (inactive): no duplicates.
    let users = env.scim.users().await;
    let ids: std::collections::HashSet<&str> = users
        .iter()
        .filter_map(|u| u["externalId"].as_str())
        .collect();
    assert_eq!((users.len(), ids.len()), (n, n));
}
