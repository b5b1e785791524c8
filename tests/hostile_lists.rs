//! Against hostile SCIM lists (`tests/peers/hostile.py`): the real `sync` binary ends
//! each in a failed run with a clear message, within 2 minutes on loopback, its memory
//! bounded.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::sync_env::Env;
use support::{HostileList, Peer, ScimServer};

/// The starter: each mode serves a list.
#[tokio::test]
async fn the_hostile_service_starts_in_each_mode() {
    for mode in [
        HostileList::HugeTotal,
        HostileList::Endless,
        HostileList::Growing,
        HostileList::Trickle,
    ] {
        let server = ScimServer::start_peer(Peer::Hostile(mode));
        let page = reqwest::Client::new()
            .get(format!("{}/Users?startIndex=1&count=10", server.url))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let total = page["totalResults"].as_u64();
        assert!(total.is_none_or(|t| t > 10), "{mode:?}: {page}");
        assert_eq!(server.requests_served().await, 1, "{mode:?}");
    }
}

/// The most a run may take, and the most memory it may hold, against a hostile list.
const DEADLINE: Duration = Duration::from_secs(120);
const PEAK_RSS_KB: u64 = 200 * 1024;

/// Peak resident memory of a running process (`VmHWM`), in kB.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `sync` against `mode`: its ImportRun, wall time and peak memory (kB).
async fn against(mode: HostileList) -> (Value, Duration, u64, u64) {
    let env = Env::start_on(5, Peer::Hostile(mode)).await;
    let file = env.default_file();
    let start = Instant::now();
    let child = env.spawn_sync_piped(&file, &["--output", "json"]);
    let pid = child.id().expect("a running sync");
    let waiting = tokio::spawn(child.wait_with_output());
    let mut peak = 0;
    while !waiting.is_finished() {
        if let Some(kb) = peak_rss_kb(pid) {
            peak = peak.max(kb);
        }
        assert!(
            start.elapsed() <= DEADLINE + Duration::from_secs(10),
            "{mode:?}: still running after {:?} ({} requests, peak {} MB)",
            start.elapsed(),
            env.scim.requests_served().await,
            peak / 1024
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = start.elapsed();
    let out = waiting.await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let run: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{mode:?}: no ImportRun ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let requests = env.scim.requests_served().await;
    eprintln!(
        "{mode:?}: {took:?}, {requests} requests, peak RSS {} MB: {}",
        peak / 1024,
        run["status"]["message"]
    );
    (run, took, peak, requests)
}

/// Within the deadline and the memory bound.
fn bounded(mode: HostileList, took: Duration, peak: u64) {
    assert!(took <= DEADLINE, "{mode:?}: ended only after {took:?}");
    assert!(peak <= PEAK_RSS_KB, "{mode:?}: peak RSS {} MB", peak / 1024);
}

/// A failed run within the bounds: its message.
fn check(mode: HostileList, run: &Value, took: Duration, peak: u64) -> String {
    assert_eq!(run["status"]["phase"], "Failed", "{mode:?}: {run}");
    bounded(mode, took, peak);
    run["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `totalResults` 10^12: the run fails at once, naming the number.
#[tokio::test(flavor = "multi_thread")]
async fn a_list_claiming_a_trillion_users_fails_at_once_naming_the_number() {
    let (run, took, peak, requests) = against(HostileList::HugeTotal).await;
    let message = check(HostileList::HugeTotal, &run, took, peak);
    assert!(message.contains("1000000000000"), "{message}");
    assert!(took <= Duration::from_secs(10), "not at once: {took:?}");
    assert!(requests <= 10, "{requests} requests before giving up");
}

/// Full pages of new users for ever, and no total: stopped with a clear message.
#[tokio::test(flavor = "multi_thread")]
async fn a_list_that_never_ends_fails_with_a_clear_message() {
    let (run, took, peak, _) = against(HostileList::Endless).await;
    let message = check(HostileList::Endless, &run, took, peak);
    assert!(message.to_lowercase().contains("list"), "{message}");
}

/// Full pages of new users for ever, the total always a page ahead: the run ends within
/// the bounds, whether it fails or keeps to what the first page announced (two pages).
#[tokio::test(flavor = "multi_thread")]
async fn a_list_that_grows_as_it_is_read_ends_within_the_bounds() {
    let (run, took, peak, _) = against(HostileList::Growing).await;
    bounded(HostileList::Growing, took, peak);
    let phase = run["status"]["phase"].as_str().unwrap_or_default();
    assert!(
        matches!(phase, "Failed" | "Succeeded" | "PartiallySucceeded"),
        "{phase}: {run}"
    );
}

/// One user per page whatever is asked, never finishing: stopped with a clear message.
#[tokio::test(flavor = "multi_thread")]
async fn a_list_that_trickles_one_user_per_page_fails_with_a_clear_message() {
    let (run, took, peak, _) = against(HostileList::Trickle).await;
    let message = check(HostileList::Trickle, &run, took, peak);
    assert!(message.to_lowercase().contains("list"), "{message}");
}
