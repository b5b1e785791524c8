//! The throttle every request to one service (or one endpoint of it) waits on together.
//!
//! What the budget knows comes from three places: a configured pace (`requests` per
//! `window`, counted from the first request: before any answer said anything), the
//! rate-limit headers of each answer (how many requests are left, when the window ends),
//! and 429s. The budget:
//! - caps requests in flight at the configured concurrency and at what the service has
//!   left (divided by the cost of a call when it says one);
//! - before the first answer (nothing known yet) lets one request through, so that
//!   requests starting together learn the budget first;
//! - with nothing left: holds every request until the window ends when the service said
//!   when, then lets a single probe through, so a window costs at most one throttled
//!   call;
//! - after a 429, holds every request until `Retry-After` (or the window's reset, or a
//!   backoff) has passed;
//! - serves waiters first come, first served, so several integrations sharing it get
//!   their turns in order; only the first in line sleeps on the clock, and its sleep is
//!   what the budget counts as time spent waiting.
//!
//! Answers can arrive out of order, so a `remaining` value is only taken as-is from a
//! request launched after the value we hold was learnt; an older request may only
//! lower it. Otherwise a stale "49 left" could overwrite a fresh "0 left".

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::backoff::throttle_backoff;
use super::registry::Counters;
use super::{Pace, RateHeaders};

/// Shortest wait after a 429, so that `Retry-After: 0` (or a date in the past) can't
/// turn into a tight loop.
const MIN_THROTTLE_WAIT: Duration = Duration::from_secs(1);
/// Shortest wait after a 429 whose rate-limit headers say the window ends now (a reset
/// rounded down to whole seconds).
const MIN_RESET_WAIT: Duration = Duration::from_millis(250);

pub(crate) struct Budget {
    concurrency: usize,
    state: Mutex<State>,
    changed: Notify,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct State {
    in_flight: usize,
    blocked_until: Option<Instant>,
    /// Calls the service has left in the current window, when known.
    remaining: Option<u64>,
    /// When the service's current window ends, when it said.
    window_ends: Option<Instant>,
    /// An answer has been seen (with or without rate-limit headers).
    answered: bool,
    /// Bumped whenever `remaining` changes.
    remaining_version: u64,
    /// Cost of one call as last reported.
    cost: u64,
    /// Bumped on every 429 that starts a new wait.
    throttle_epoch: u64,
    /// 429s in a row without any hint of when to come back, for the backoff.
    throttle_streak: u32,
    /// The configured pace, and its current window: start and requests sent in it.
    pace: Option<Pace>,
    pace_start: Option<Instant>,
    pace_sent: u32,
    /// First come, first served: the next ticket to hand out and the one being served.
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

    /// Until when the next request must wait, if it must.
    fn held_until(&self, now: Instant) -> Option<Instant> {
        let after_429 = self.blocked_until.filter(|t| *t > now);
        let window = self
            .window_ends
            .filter(|t| *t > now && self.remaining == Some(0));
        let pace = self.pace.and_then(|p| {
            let ends = self.pace_start? + p.window;
            (self.pace_sent >= p.requests && ends > now).then_some(ends)
        });
        [after_429, window, pace].into_iter().flatten().max()
    }

    /// Requests that may be in flight at once now.
    fn cap(&self, concurrency: usize) -> usize {
        match self.remaining {
            None if self.answered => concurrency,
            // Nothing learnt yet: one request finds out.
            None => 1,
            // Nothing left: one probe, to learn when the window reopens.
            Some(r) => ((r / self.cost.max(1)) as usize).clamp(1, concurrency),
        }
    }

    /// Counts a request against the configured pace.
    fn pace_one(&mut self, now: Instant) {
        let Some(p) = self.pace else { return };
        if self.pace_start.is_none_or(|s| now >= s + p.window) {
            self.pace_start = Some(now);
            self.pace_sent = 0;
        }
        self.pace_sent += 1;
    }
}

/// A place in the queue; gives it up when dropped before its turn.
struct Ticket<'a> {
    budget: &'a Budget,
    number: u64,
    served: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.served {
            return;
        }
        let mut s = self.budget.lock();
        if s.serving == self.number {
            s.advance();
        } else {
            s.abandoned.insert(self.number);
        }
        drop(s);
        self.budget.notify();
    }
}

/// The right to send one request. Dropping it (however the request ended) frees the
/// slot and wakes whoever waits.
pub(crate) struct Permit<'a> {
    budget: &'a Budget,
    remaining_version: u64,
    throttle_epoch: u64,
}

/// How a 429 said when to come back.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Hint {
    /// `Retry-After`.
    RetryAfter(Duration),
    /// The rate-limit window's reset.
    Reset(Duration),
    None,
}

impl Hint {
    /// What a 429 said: its `Retry-After`, else its rate-limit window's reset.
    pub(crate) fn of(retry_after: Option<Duration>, reset: Option<Duration>) -> Self {
        match (retry_after, reset) {
            (Some(d), _) => Hint::RetryAfter(d),
            (None, Some(d)) => Hint::Reset(d),
            (None, None) => Hint::None,
        }
    }
}

impl Budget {
    pub(crate) fn new(concurrency: usize) -> Self {
        Self::with_counters(concurrency, None, Arc::default())
    }

    pub(super) fn with_counters(
        concurrency: usize,
        pace: Option<Pace>,
        counters: Arc<Counters>,
    ) -> Self {
        Budget {
            concurrency: concurrency.max(1),
            state: Mutex::new(State {
                cost: 1,
                pace,
                ..State::default()
            }),
            changed: Notify::new(),
            counters,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("budget lock")
    }

    /// Paces by `pace` from now on when it is stricter than the pace held (several
    /// integrations may configure one service differently: the strictest wins).
    pub(super) fn tighten(&self, pace: Pace) {
        let mut s = self.lock();
        if s.pace.is_none_or(|p| pace.stricter_than(&p)) {
            s.pace = Some(pace);
        }
    }

    /// Waits until a request may be sent.
    pub(crate) async fn acquire(&self) -> Permit<'_> {
        self.acquire_noting(&|_| {}).await
    }

    /// [`Self::acquire`]; `note` hears when the first in line starts waiting on the
    /// clock, and until when.
    pub(crate) async fn acquire_noting(&self, note: &(dyn Fn(Instant) + Sync)) -> Permit<'_> {
        let mut ticket = {
            let mut s = self.lock();
            let number = s.next_ticket;
            s.next_ticket += 1;
            Ticket {
                budget: self,
                number,
                served: false,
            }
        };
        loop {
            // Registered before the state is read so a release in between isn't missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let held = {
                let mut s = self.lock();
                let now = Instant::now();
                let first = s.serving == ticket.number;
                match s.held_until(now) {
                    Some(until) => Some((until, first)),
                    None => {
                        if first && s.in_flight < s.cap(self.concurrency) {
                            s.in_flight += 1;
                            s.advance();
                            s.pace_one(now);
                            ticket.served = true;
                            let permit = Permit {
                                budget: self,
                                remaining_version: s.remaining_version,
                                throttle_epoch: s.throttle_epoch,
                            };
                            drop(s);
                            self.counters.requests.fetch_add(1, Ordering::Relaxed);
                            // The next in line may fit too.
                            self.notify();
                            return permit;
                        }
                        None
                    }
                }
            };
            match held {
                Some((until, true)) => {
                    note(until);
                    let started = Instant::now();
                    tokio::time::sleep_until(until).await;
                    self.counters.add_wait(started.elapsed());
                }
                Some((until, false)) => tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = &mut changed => {}
                },
                None => changed.await,
            }
        }
    }

    fn notify(&self) {
        self.changed.notify_waiters();
    }
}

impl Permit<'_> {
    /// Records what a non-429 answer said about the budget.
    pub(crate) fn observe(&self, rate: RateHeaders) {
        let mut s = self.budget.lock();
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
                if let Some(reset) = rate.reset {
                    s.window_ends = Instant::now().checked_add(reset);
                }
            }
        }
        drop(s);
        self.budget.notify();
    }

    /// Records a 429 and holds every request of the budget until `retry_after` (or a
    /// backoff when the server gave none) has passed. Returns how much longer the
    /// budget is now held than it already was.
    #[cfg(test)]
    pub(crate) fn throttled(self, retry_after: Option<Duration>) -> Duration {
        self.throttled_with(match retry_after {
            Some(d) => Hint::RetryAfter(d),
            None => Hint::None,
        })
    }

    /// [`Self::throttled`] with whatever the 429 said of when to come back.
    pub(crate) fn throttled_with(self, hint: Hint) -> Duration {
        self.budget
            .counters
            .throttled
            .fetch_add(1, Ordering::Relaxed);
        let mut s = self.budget.lock();
        let now = Instant::now();
        s.answered = true;
        s.remaining = Some(0);
        s.remaining_version += 1;
        // A 429 for a request launched before the last 429 belongs to the same closed
        // window: it doesn't grow the backoff, though its own wait is still obeyed.
        let fresh = self.throttle_epoch == s.throttle_epoch;
        let wait = match hint {
            Hint::RetryAfter(d) => d.max(MIN_THROTTLE_WAIT),
            Hint::Reset(d) => d.max(MIN_RESET_WAIT),
            Hint::None if fresh => throttle_backoff(s.throttle_streak),
            Hint::None => Duration::ZERO,
        };
        if fresh {
            s.throttle_epoch += 1;
            if matches!(hint, Hint::None) {
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
        let mut s = self.budget.lock();
        s.in_flight -= 1;
        drop(s);
        self.budget.notify();
    }
}

#[cfg(test)]
mod tests;
