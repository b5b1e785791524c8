//! Delays between attempts.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;

/// Delay before retry number `failures` (1-based) of a failed request: `base` doubling
/// up to `max` (backon's exponential schedule), with equal jitter (half fixed, half
/// random) so concurrent requests that failed together don't come back together, yet
/// every retry still waits a little.
pub(crate) fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let step = failures.saturating_sub(1).min(30) as usize;
    let cap = ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(max)
        .without_max_times()
        .build()
        .nth(step)
        .unwrap_or(max)
        .min(max);
    let half = cap / 2;
    let jitter_ms = half.as_millis().min(u64::MAX as u128) as u64;
    half + Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
}

/// Delay before probing again after a 429 that said nothing of when to come back: 2 s
/// doubling, capped at a minute (the length of Freshteam's window).
pub(crate) fn throttle_backoff(streak: u32) -> Duration {
    Duration::from_secs(2u64 << streak.min(5)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for failures in 1..40 {
            let cap = (base * 2u32.pow(failures.min(10) - 1)).min(max);
            let d = backoff(base, max, failures);
            assert!(d >= cap / 2 && d <= cap, "{failures}: {d:?} vs {cap:?}");
        }
        assert_eq!(throttle_backoff(0), Duration::from_secs(2));
        assert_eq!(throttle_backoff(1), Duration::from_secs(4));
        assert_eq!(throttle_backoff(9), Duration::from_secs(60));
    }
}
