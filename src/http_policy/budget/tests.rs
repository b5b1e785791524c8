use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[tokio::test]
async fn an_enormous_retry_after_holds_the_limiter_without_panicking() {
    let limiter = Budget::new(2);
    let added = limiter.acquire().await.throttled(Some(Duration::MAX));
    assert!(
        added >= Duration::from_secs(364 * 24 * 60 * 60),
        "{added:?}"
    );
    // The lock is not poisoned: the next caller waits instead of panicking.
    let next = tokio::time::timeout(Duration::from_millis(20), limiter.acquire()).await;
    assert!(next.is_err(), "still held by the 429");
}

#[tokio::test]
async fn turns_are_first_come_first_served_and_a_waiter_that_leaves_frees_its_turn() {
    let limiter = Arc::new(Budget::new(1));
    let first = limiter.acquire().await;
    let order = Arc::new(Mutex::new(Vec::new()));
    // A waiter that gives up must not block the queue.
    let quitter = {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_millis(20), limiter.acquire()).await;
        })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut waiters = Vec::new();
    for i in 0..5 {
        let (limiter, order) = (limiter.clone(), order.clone());
        waiters.push(tokio::spawn(async move {
            let p = limiter.acquire().await;
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(2)).await;
            drop(p);
        }));
        // Arrival order is the order of the spawns.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    quitter.await.unwrap();
    drop(first);
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("queue stuck")
            .unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
}

fn rate(remaining: u64) -> RateHeaders {
    RateHeaders {
        total: Some(10),
        remaining: Some(remaining),
        cost: Some(1),
        ..RateHeaders::default()
    }
}

#[tokio::test]
async fn before_the_first_answer_one_request_learns_the_budget() {
    let limiter = Budget::new(4);
    let first = limiter.acquire().await;
    let second = tokio::time::timeout(Duration::from_millis(50), limiter.acquire()).await;
    assert!(
        second.is_err(),
        "a second request went out before any answer"
    );
    first.observe(rate(3));
    drop(first);
    let a = limiter.acquire().await;
    let b = limiter.acquire().await;
    let c = limiter.acquire().await;
    drop((a, b, c));
}

#[tokio::test]
async fn in_flight_never_exceeds_concurrency_or_remaining() {
    let limiter = Arc::new(Budget::new(4));
    // 2 left: at most two requests at once.
    limiter.acquire().await.observe(rate(2));
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (limiter, live, peak) = (limiter.clone(), live.clone(), peak.clone());
            tokio::spawn(async move {
                let p = limiter.acquire().await;
                let n = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                live.fetch_sub(1, Ordering::SeqCst);
                p.observe(rate(2));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stale_remaining_cannot_raise_a_fresh_one() {
    let limiter = Budget::new(4);
    // A first answer without rate-limit headers: several requests may go at once.
    limiter.acquire().await.observe(RateHeaders::default());
    let old = limiter.acquire().await;
    let newer = limiter.acquire().await;
    newer.observe(rate(0));
    drop(newer);
    // `old` was launched before "0 left" was learnt: its "5 left" is stale.
    old.observe(rate(5));
    drop(old);
    assert_eq!(limiter.state.lock().unwrap().remaining, Some(0));
    // A request launched now is fresh and may raise it.
    let probe = limiter.acquire().await;
    probe.observe(rate(5));
    drop(probe);
    assert_eq!(limiter.state.lock().unwrap().remaining, Some(5));
}

fn held_for(limiter: &Budget) -> Duration {
    let until = limiter.state.lock().unwrap().blocked_until.unwrap();
    until.saturating_duration_since(Instant::now())
}

/// Lets the hold lapse without sleeping through it.
fn lapse(limiter: &Budget) {
    limiter.state.lock().unwrap().blocked_until = None;
}

#[tokio::test]
async fn a_429_holds_everyone_and_stale_429s_add_nothing() {
    let limiter = Budget::new(4);
    // A first answer without rate-limit headers: several requests may go at once.
    limiter.acquire().await.observe(RateHeaders::default());
    let a = limiter.acquire().await;
    let b = limiter.acquire().await;
    assert_eq!(
        a.throttled(Some(Duration::from_secs(3))),
        Duration::from_secs(3)
    );
    // Launched in the same window: no extra wait without Retry-After.
    assert_eq!(b.throttled(None), Duration::ZERO);
    assert!(held_for(&limiter) > Duration::from_millis(2900));
    // Held: nobody gets through.
    let waiting = tokio::time::timeout(Duration::from_millis(50), limiter.acquire()).await;
    assert!(waiting.is_err());

    // Fresh 429s without Retry-After back off 2 s, then 4 s.
    lapse(&limiter);
    let probe = limiter.acquire().await;
    assert_eq!(probe.throttled(None), Duration::from_secs(2));
    lapse(&limiter);
    let probe = limiter.acquire().await;
    assert_eq!(probe.throttled(None), Duration::from_secs(4));
    lapse(&limiter);
    // Nothing left: one probe at a time.
    let probe = limiter.acquire().await;
    let second = tokio::time::timeout(Duration::from_millis(50), limiter.acquire()).await;
    assert!(second.is_err());
    probe.observe(rate(9));
    drop(probe);
    assert_eq!(limiter.state.lock().unwrap().throttle_streak, 0);
    // Retry-After: 0 still waits a moment.
    assert_eq!(
        limiter.acquire().await.throttled(Some(Duration::ZERO)),
        MIN_THROTTLE_WAIT
    );
}

fn announced(remaining: u64, reset: Duration) -> RateHeaders {
    RateHeaders {
        total: Some(40),
        remaining: Some(remaining),
        reset: Some(reset),
        ..RateHeaders::default()
    }
}

#[tokio::test]
async fn a_configured_pace_holds_requests_from_the_first_one() {
    let pace = Pace::new(3, Duration::from_millis(300)).unwrap();
    let budget = Budget::with_counters(8, Some(pace), Arc::default());
    let start = Instant::now();
    // A first answer without headers: only the pace holds.
    budget.acquire().await.observe(RateHeaders::default());
    drop(budget.acquire().await);
    drop(budget.acquire().await);
    assert!(start.elapsed() < Duration::from_millis(200));
    // The fourth request waits for the next window.
    drop(budget.acquire().await);
    assert!(
        start.elapsed() >= Duration::from_millis(290),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn nothing_left_waits_for_the_announced_reset_and_says_until_when() {
    let budget = Budget::new(8);
    let start = Instant::now();
    budget
        .acquire()
        .await
        .observe(announced(0, Duration::from_millis(250)));
    let noted = Mutex::new(None);
    let permit = budget
        .acquire_noting(&|until| *noted.lock().unwrap() = Some(until))
        .await;
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(240), "{waited:?}");
    let until = noted.lock().unwrap().expect("the wait was noted");
    assert!(until >= start + Duration::from_millis(240));
    // After the window: one probe learns the new budget, then the rest go.
    let second = tokio::time::timeout(Duration::from_millis(30), budget.acquire()).await;
    assert!(second.is_err(), "only a probe after the window");
    permit.observe(announced(39, Duration::from_secs(2)));
    drop(permit);
    let (a, b, c) = (
        budget.acquire().await,
        budget.acquire().await,
        budget.acquire().await,
    );
    drop((a, b, c));
}

#[tokio::test]
async fn a_429_with_a_reset_waits_for_it_and_uses_no_backoff() {
    let budget = Budget::new(4);
    budget
        .acquire()
        .await
        .observe(announced(5, Duration::from_secs(2)));
    let added = budget
        .acquire()
        .await
        .throttled_with(Hint::Reset(Duration::from_millis(400)));
    assert_eq!(added, Duration::from_millis(400));
    assert_eq!(budget.state.lock().unwrap().throttle_streak, 0);
    // A reset of 0 (rounded down) still waits a moment.
    lapse(&budget);
    let added = budget
        .acquire()
        .await
        .throttled_with(Hint::Reset(Duration::ZERO));
    assert_eq!(added, MIN_RESET_WAIT);
}

#[tokio::test]
async fn a_waiter_dropped_mid_wait_leaves_at_once_and_frees_its_turn() {
    let budget = Arc::new(Budget::new(2));
    budget
        .acquire()
        .await
        .observe(announced(0, Duration::from_secs(3600)));
    let waiter = {
        let budget = budget.clone();
        tokio::spawn(async move { drop(budget.acquire().await) })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    // The hold lapses: the next in line is served, not stuck behind the gone waiter.
    budget.state.lock().unwrap().window_ends = None;
    let next = tokio::time::timeout(Duration::from_millis(200), budget.acquire()).await;
    assert!(next.is_ok());
}

#[tokio::test]
async fn the_strictest_pace_of_several_integrations_wins() {
    let budget = Budget::new(4);
    budget.tighten("40/2s".parse().unwrap());
    budget.tighten("180/15m".parse().unwrap());
    budget.tighten("100/1s".parse().unwrap());
    assert_eq!(
        budget.state.lock().unwrap().pace,
        Some("180/15m".parse().unwrap())
    );
}
