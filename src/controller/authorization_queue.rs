//! One operator-wide rate for authorizations, so settling thousands of integrations
//! (a restart after a restore, a mass edit) does not send them all to Freshteam at once.
//!
//! Each integration that needs to authorize asks for a turn. A turn is either now (within
//! the rate, with a burst of one second's worth) or a moment in the future that stays
//! reserved for that integration: the reconciler records that it is waiting and comes
//! back then, and reconciles before that moment get the same answer.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// When an integration may authorize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    Now,
    At(DateTime<Utc>),
}

pub struct AuthorizationQueue {
    per_second: f64,
    interval: Duration,
    /// How far ahead of the schedule a request may be and still go at once.
    burst: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The moment the next request would conform if there were no burst.
    next: Option<DateTime<Utc>>,
    /// Integration key → its reserved turn.
    reserved: HashMap<String, DateTime<Utc>>,
    last_pruned: Option<DateTime<Utc>>,
}

/// A reservation not claimed this long after its moment belongs to an integration that
/// no longer needs it (deleted, suspended, its Secret gone).
const STALE_AFTER: Duration = Duration::minutes(10);

impl AuthorizationQueue {
    /// `per_second` authorizations per second across the operator; at least one per hour.
    pub fn new(per_second: f64) -> Self {
        let per_second = if per_second.is_finite() {
            per_second.max(1.0 / 3600.0)
        } else {
            1.0
        };
        let interval = Duration::microseconds((1_000_000.0 / per_second).round() as i64);
        let burst_count = per_second.floor().max(1.0) as i32;
        AuthorizationQueue {
            per_second,
            interval,
            burst: interval * (burst_count - 1),
            state: Mutex::new(State::default()),
        }
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// The turn of integration `key` at `now`. A reserved turn that has come is used up.
    pub fn turn(&self, key: &str, now: DateTime<Utc>) -> Turn {
        let mut s = self.state.lock().expect("authorization queue lock");
        if let Some(at) = s.reserved.get(key).copied() {
            if at <= now {
                s.reserved.remove(key);
                return Turn::Now;
            }
            return Turn::At(at);
        }
        if s.last_pruned.is_none_or(|t| now - t > Duration::minutes(1)) {
            s.reserved.retain(|_, at| now - *at < STALE_AFTER);
            s.last_pruned = Some(now);
        }
        let next = s.next.map_or(now, |n| n.max(now));
        let slot = (next - self.burst).max(now);
        s.next = Some(next + self.interval);
        if slot <= now {
            Turn::Now
        } else {
            s.reserved.insert(key.to_string(), slot);
            Turn::At(slot)
        }
    }

    /// Integrations holding a reserved turn.
    pub fn waiting(&self) -> usize {
        self.state
            .lock()
            .expect("authorization queue lock")
            .reserved
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn a_burst_within_one_second_goes_at_once_the_rest_is_spread() {
        let q = AuthorizationQueue::new(5.0);
        let now = t0();
        let turns: Vec<Turn> = (0..12).map(|i| q.turn(&format!("ns/i{i}"), now)).collect();
        assert!(turns[..5].iter().all(|t| *t == Turn::Now), "{turns:?}");
        // Then one every 200 ms.
        let at = |ms| Turn::At(now + Duration::milliseconds(ms));
        assert_eq!(turns[5], at(200));
        assert_eq!(turns[6], at(400));
        assert_eq!(turns[11], at(1400));
        assert_eq!(q.waiting(), 7);
    }

    #[test]
    fn a_reserved_turn_is_kept_until_it_comes_then_used_once() {
        let q = AuthorizationQueue::new(1.0);
        let now = t0();
        assert_eq!(q.turn("ns/a", now), Turn::Now);
        let Turn::At(at) = q.turn("ns/b", now) else {
            panic!("b has to wait");
        };
        assert_eq!(at, now + Duration::seconds(1));
        // Coming back early: the same turn, not a later one.
        assert_eq!(
            q.turn("ns/b", now + Duration::milliseconds(500)),
            Turn::At(at)
        );
        assert_eq!(q.turn("ns/b", at), Turn::Now);
        assert_eq!(q.waiting(), 0);
        // Used up: the next authorization of b asks for a new turn.
        assert_eq!(q.turn("ns/b", at), Turn::At(at + Duration::seconds(1)));
    }

    #[test]
    fn the_rate_holds_over_time() {
        let q = AuthorizationQueue::new(10.0);
        let now = t0();
        let mut last = now;
        for i in 0..1000 {
            if let Turn::At(at) = q.turn(&format!("ns/i{i}"), now) {
                last = last.max(at);
            }
        }
        // 10 at once, then 990 more at 10 per second.
        assert_eq!(last, now + Duration::milliseconds(99_000));
    }

    #[test]
    fn idle_time_refills_the_burst_but_never_saves_up_more() {
        let q = AuthorizationQueue::new(2.0);
        let now = t0();
        for i in 0..2 {
            assert_eq!(q.turn(&format!("ns/a{i}"), now), Turn::Now);
        }
        let later = now + Duration::hours(1);
        let turns: Vec<Turn> = (0..3).map(|i| q.turn(&format!("ns/b{i}"), later)).collect();
        assert_eq!(
            turns,
            vec![
                Turn::Now,
                Turn::Now,
                Turn::At(later + Duration::milliseconds(500))
            ]
        );
    }

    #[test]
    fn unclaimed_reservations_are_dropped_after_a_while() {
        let q = AuthorizationQueue::new(1.0);
        let now = t0();
        q.turn("ns/a", now);
        assert!(matches!(q.turn("ns/gone", now), Turn::At(_)));
        assert_eq!(q.waiting(), 1);
        q.turn("ns/c", now + Duration::minutes(20));
        assert_eq!(q.waiting(), 0);
    }
}
