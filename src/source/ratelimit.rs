//! One rate limiter per client, shared by every request it makes.
//!
//! Freshteam counts calls per account per minute and says how many are left on every
//! response (`x-ratelimit-remaining`). The limiter:
//! - caps requests in flight at the configured concurrency and at what the account has
//!   left (divided by the cost of a call, `x-ratelimit-used-currentrequest`);
//! - with nothing left, lets a single probe through at a time, so a window costs at
//!   most one throttled call; before the first answer (nothing known yet) it lets one
//!   request through too, so that passes starting together learn the budget first;
//! - after a 429, holds every request until `Retry-After` (or a backoff) has passed.
//!
//! Responses can arrive out of order, so a `remaining` value is only taken as-is from a
//! request launched after the value we hold was learnt; an older request may only
//! lower it. Otherwise a stale "49 left" could overwrite a fresh "0 left".

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::retry::throttle_backoff;

/// Shortest wait after a 429, so that `Retry-After: 0` (or a date in the past) can't
/// turn into a tight loop.
const MIN_THROTTLE_WAIT: Duration = Duration::from_secs(1);

pub(crate) struct RateLimiter {
    concurrency: usize,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    in_flight: usize,
    blocked_until: Option<Instant>,
    /// Calls the account has left in the current window, when known.
    remaining: Option<u64>,
    /// An answer has been seen (with or without rate-limit headers).
    answered: bool,
    /// Bumped whenever `remaining` changes.
    remaining_version: u64,
    /// Cost of one call as last reported.
    cost: u64,
    /// Bumped on every 429 that starts a new wait.
    throttle_epoch: u64,
    /// 429s in a row without `Retry-After`, for the backoff.
    throttle_streak: u32,
    /// First come, first served: the next ticket to hand out and the one being served,
    /// so that several integrations sharing an account's limiter get their turns in
    /// order instead of whoever wakes first.
    next_ticket: u64,
    serving: u64,
    /// Tickets whose waiter gave up before its turn.
    abandoned: std::collections::BTreeSet<u64>,
}

impl State {
    fn advance(&mut self) {
        self.serving += 1;
        while self.abandoned.remove(&self.serving) {
            self.serving += 1;
        }
    }
}

/// A place in the queue; gives it up when dropped before its turn.
struct Ticket<'a> {
    limiter: &'a RateLimiter,
    number: u64,
    served: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.served {
            return;
        }
        let mut s = self.limiter.state.lock().expect("rate limiter lock");
        if s.serving == self.number {
            s.advance();
        } else {
            s.abandoned.insert(self.number);
        }
        drop(s);
        self.limiter.notify();
    }
}

/// Rate-limit headers of one response.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RateHeaders {
    pub total: Option<u64>,
    pub remaining: Option<u64>,
    pub cost: Option<u64>,
}

impl RateHeaders {
    pub(crate) fn parse(headers: &http::HeaderMap) -> Self {
        let num = |name: &str| {
            crate::egress::header_text(headers, name).and_then(|v| v.trim().parse::<u64>().ok())
        };
        RateHeaders {
            total: num("x-ratelimit-total"),
            remaining: num("x-ratelimit-remaining"),
            cost: num("x-ratelimit-used-currentrequest"),
        }
    }
}

/// The right to send one request. Dropping it (however the request ended) frees the
/// slot and wakes whoever waits.
pub(crate) struct Permit<'a> {
    limiter: &'a RateLimiter,
    remaining_version: u64,
    throttle_epoch: u64,
}

impl RateLimiter {
    pub(crate) fn new(concurrency: usize) -> Self {
        RateLimiter {
            concurrency: concurrency.max(1),
            state: Mutex::new(State {
                cost: 1,
                ..State::default()
            }),
            changed: Notify::new(),
        }
    }

    /// Waits until a request may be sent.
    pub(crate) async fn acquire(&self) -> Permit<'_> {
        let mut ticket = {
            let mut s = self.state.lock().expect("rate limiter lock");
            let number = s.next_ticket;
            s.next_ticket += 1;
            Ticket {
                limiter: self,
                number,
                served: false,
            }
        };
        loop {
            // Registered before the state is read so a release in between isn't missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let blocked = {
                let mut s = self.state.lock().expect("rate limiter lock");
                let now = Instant::now();
                match s.blocked_until {
                    Some(until) if until > now => Some(until),
                    _ => {
                        let cap = match s.remaining {
                            None if s.answered => self.concurrency,
                            // Nothing learnt yet: one request finds out.
                            None => 1,
                            // Nothing left: one probe, to learn when the window reopens.
                            Some(r) => ((r / s.cost.max(1)) as usize).clamp(1, self.concurrency),
                        };
                        if s.serving == ticket.number && s.in_flight < cap {
                            s.in_flight += 1;
                            s.advance();
                            ticket.served = true;
                            let permit = Permit {
                                limiter: self,
                                remaining_version: s.remaining_version,
                                throttle_epoch: s.throttle_epoch,
                            };
                            drop(s);
                            // The next in line may fit too.
                            self.notify();
                            return permit;
                        }
                        None
                    }
                }
            };
            match blocked {
                Some(until) => tokio::time::sleep_until(until).await,
                None => changed.await,
            }
        }
    }

    fn notify(&self) {
        self.changed.notify_waiters();
    }
}

impl Permit<'_> {
    /// Records what a non-429 response said about the account's budget.
    pub(crate) fn observe(&self, rate: RateHeaders) {
        let mut s = self.limiter.state.lock().expect("rate limiter lock");
        s.answered = true;
        s.throttle_streak = 0;
        if let Some(cost) = rate.cost.filter(|c| *c > 0) {
            s.cost = cost;
        }
        if let Some(r) = rate.remaining {
            let fresh = self.remaining_version >= s.remaining_version;
            if fresh || s.remaining.is_none_or(|cur| r < cur) {
                s.remaining = Some(r);
                s.remaining_version += 1;
            }
        }
        drop(s);
        self.limiter.notify();
    }

    /// Records a 429 and holds every request of the client until `retry_after` (or a
    /// backoff when the server gave none) has passed. Returns how much longer the client
    /// is now held than it already was, for the run's throttle budget.
    pub(crate) fn throttled(self, retry_after: Option<Duration>) -> Duration {
        let mut s = self.limiter.state.lock().expect("rate limiter lock");
        let now = Instant::now();
        s.answered = true;
        s.remaining = Some(0);
        s.remaining_version += 1;
        // A 429 for a request launched before the last 429 belongs to the same closed
        // window: it doesn't grow the backoff, though its Retry-After is still obeyed.
        let fresh = self.throttle_epoch == s.throttle_epoch;
        let wait = match retry_after {
            Some(d) => d.max(MIN_THROTTLE_WAIT),
            None if fresh => throttle_backoff(s.throttle_streak),
            None => Duration::ZERO,
        };
        if fresh {
            s.throttle_epoch += 1;
            if retry_after.is_none() {
                s.throttle_streak += 1;
            }
        }
        let held_until = s.blocked_until.filter(|t| *t > now).unwrap_or(now);
        // Saturating: a peer's number must never overflow an Instant under this lock.
        let until = now
            .checked_add(wait)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 60 * 60));
        let added = until.saturating_duration_since(held_until);
        if until > held_until {
            s.blocked_until = Some(until);
        }
        drop(s);
        added
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.limiter.state.lock().expect("rate limiter lock");
        s.in_flight -= 1;
        drop(s);
        self.limiter.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn an_enormous_retry_after_holds_the_limiter_without_panicking() {
        let limiter = RateLimiter::new(2);
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
        let limiter = Arc::new(RateLimiter::new(1));
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
        }
    }

    #[tokio::test]
    async fn before_the_first_answer_one_request_learns_the_budget() {
        let limiter = RateLimiter::new(4);
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
        let limiter = Arc::new(RateLimiter::new(4));
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
        let limiter = RateLimiter::new(4);
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

    fn held_for(limiter: &RateLimiter) -> Duration {
        let until = limiter.state.lock().unwrap().blocked_until.unwrap();
        until.saturating_duration_since(Instant::now())
    }

    /// Lets the hold lapse without sleeping through it.
    fn lapse(limiter: &RateLimiter) {
        limiter.state.lock().unwrap().blocked_until = None;
    }

    #[tokio::test]
    async fn a_429_holds_everyone_and_stale_429s_add_nothing() {
        let limiter = RateLimiter::new(4);
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
}
