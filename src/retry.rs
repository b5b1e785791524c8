//! Backoff delays and `Retry-After` parsing, shared by the Freshteam and SCIM clients.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};
use http::header::{HeaderMap, DATE, RETRY_AFTER};
use rand::Rng;

use crate::egress::header_text;

/// Delay before retry number `failures` (1-based) of a failed request: `base` doubling
/// up to `max`, with equal jitter (half fixed, half random) so concurrent requests that
/// failed together don't come back together, yet every retry still waits a little.
pub(crate) fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let cap = base.saturating_mul(1u32 << exp).min(max);
    let half = cap / 2;
    let jitter_ms = half.as_millis().min(u64::MAX as u128) as u64;
    half + Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
}

/// Delay before probing again after a 429 without `Retry-After`: 2 s doubling, capped
/// at a minute (the length of Freshteam's window).
pub(crate) fn throttle_backoff(streak: u32) -> Duration {
    Duration::from_secs(2u64 << streak.min(5)).min(Duration::from_secs(60))
}

/// Longest `Retry-After` taken as given; longer asks are this long (and past any run's
/// throttle budget, so the run fails with a message instead of sleeping for years).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// `Retry-After` as delay-seconds or an HTTP-date, at most [`MAX_RETRY_AFTER`]. A date is measured against the
/// response's own `Date` header when there is one, so a skewed local clock doesn't
/// shorten the wait.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = header_text(headers, RETRY_AFTER.as_str())?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "very long": saturate, then cap.
        let secs = value.parse().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = http_date(value)?;
    let reference = header_text(headers, DATE.as_str())
        .and_then(http_date)
        .unwrap_or_else(|| DateTime::<Utc>::from(now));
    Some(
        (at - reference)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// IMF-fixdate, plus the two obsolete forms RFC 9110 still asks recipients to accept.
fn http_date(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc2822(s) {
        return Some(d.with_timezone(&Utc));
    }
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(http::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37Z
        assert_eq!(
            retry_after(&headers(&[(RETRY_AFTER, "7")]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(
                &headers(&[(RETRY_AFTER, "Sun, 06 Nov 1994 08:50:07 GMT")]),
                now
            ),
            Some(Duration::from_secs(30))
        );
        // The server's Date header is the reference, not the local clock.
        assert_eq!(
            retry_after(
                &headers(&[
                    (RETRY_AFTER, "Sunday, 06-Nov-94 08:50:07 GMT"),
                    (DATE, "Sun, 06 Nov 1994 08:50:00 GMT"),
                ]),
                now
            ),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(&[(RETRY_AFTER, "Sun Nov  6 08:49:47 1994")]), now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(
                &headers(&[(RETRY_AFTER, "Sun, 06 Nov 1994 08:00:00 GMT")]),
                now
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[(RETRY_AFTER, "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[(RETRY_AFTER, "-1")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
        // More digits than a u64 holds, or a date centuries away: capped, no panic.
        assert_eq!(
            retry_after(&headers(&[(RETRY_AFTER, "99999999999999999999")]), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(
                &headers(&[(RETRY_AFTER, "Fri, 31 Dec 9999 23:59:59 GMT")]),
                now
            ),
            Some(MAX_RETRY_AFTER)
        );
    }

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
