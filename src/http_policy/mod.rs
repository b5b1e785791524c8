//! One HTTP policy for both clients (Freshteam and SCIM): how an answer is classified,
//! how long to back off, what the rate-limit headers say, and one throttle ("budget")
//! that every request to a service waits on together instead of each sleeping alone.
//!
//! - [`classify`]: done, retry (5xx but 501 and 505, 408, a timeout), throttled (429,
//!   with the wait the service asked for); anything else is the final answer.
//! - [`backoff`]: the jittered doubling delay between retries of a failed request.
//! - [`headers`]: `Retry-After` and the rate-limit headers in the spellings services use.
//! - [`Budget`]: the gate a request passes before it is sent; [`Budgets`]: the
//!   process-wide registry of destination budgets, keyed by service and endpoint.

mod backoff;
mod budget;
mod duration;
mod headers;
mod registry;

pub(crate) use backoff::backoff;
pub(crate) use budget::{Budget, Hint, Permit};
pub use duration::{parse_duration, show_duration, DurationError, Pace, PaceError};
pub(crate) use headers::{retry_after, RateHeaders, MAX_RETRY_AFTER};
pub use registry::{budgets, endpoint_of, BudgetCounts, Budgets};

/// Attempts a request gets when the service fails it (5xx, a timeout, a broken
/// connection): the first and one retry; the final answer goes back to the caller.
/// A 429 is not a failure: it waits for the budget and uses no attempt.
pub const FAILURE_ATTEMPTS: u32 = 2;

/// What to do with an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A final answer (2xx, 3xx, or a 4xx the caller reads).
    Done,
    /// The service failed this attempt (5xx, 408): worth another try.
    Retry,
    /// Too many requests: wait for the budget (`Retry-After`, else the window's reset,
    /// see [`Hint`]) and send again.
    Throttled,
}

/// Classifies an answer's status.
pub(crate) fn classify(status: u16) -> Verdict {
    match status {
        429 => Verdict::Throttled,
        // 501 and 505 say what the service never does: asking again changes nothing.
        408 | 500 | 502..=504 | 506..=599 => Verdict::Retry,
        _ => Verdict::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_done_retried_or_throttled() {
        assert_eq!(classify(200), Verdict::Done);
        assert_eq!(classify(400), Verdict::Done);
        assert_eq!(classify(404), Verdict::Done);
        assert_eq!(classify(500), Verdict::Retry);
        assert_eq!(classify(501), Verdict::Done);
        assert_eq!(classify(503), Verdict::Retry);
        assert_eq!(classify(505), Verdict::Done);
        assert_eq!(classify(408), Verdict::Retry);
        assert_eq!(classify(429), Verdict::Throttled);
    }
}
