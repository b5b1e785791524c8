use super::*;
use http::{HeaderName, HeaderValue};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// 1994-11-06 08:49:37Z.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)
}

fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

#[test]
fn retry_after_seconds_and_dates() {
    let now = now();
    let ra = |v: &str| retry_after(&headers(&[("retry-after", v)]), now);
    assert_eq!(ra("7"), secs(7));
    assert_eq!(ra("Sun, 06 Nov 1994 08:50:07 GMT"), secs(30));
    // The server's Date header is the reference, not the local clock.
    assert_eq!(
        retry_after(
            &headers(&[
                ("retry-after", "Sunday, 06-Nov-94 08:50:07 GMT"),
                ("date", "Sun, 06 Nov 1994 08:50:00 GMT"),
            ]),
            now
        ),
        secs(7)
    );
    assert_eq!(ra("Sun Nov  6 08:49:47 1994"), secs(10));
    assert_eq!(ra("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
    assert_eq!(ra("soon"), None);
    assert_eq!(ra("-1"), None);
    assert_eq!(retry_after(&HeaderMap::new(), now), None);
    // More digits than a u64 holds, or a date centuries away: capped, no panic.
    assert_eq!(ra("99999999999999999999"), Some(MAX_RETRY_AFTER));
    assert_eq!(ra("Fri, 31 Dec 9999 23:59:59 GMT"), Some(MAX_RETRY_AFTER));
}

#[test]
fn reward_gateway_spelling() {
    let rate = RateHeaders::parse_at(
        &headers(&[
            ("X-Rate-Limit-Limit", "180"),
            ("X-Rate-Limit-Remaining", "17"),
            ("X-Rate-Limit-Reset", "412"),
        ]),
        now(),
    );
    assert_eq!(rate.total, Some(180));
    assert_eq!(rate.remaining, Some(17));
    assert_eq!(rate.reset, secs(412));
}

#[test]
fn x_ratelimit_spelling_with_freshteam_cost_and_a_unix_reset() {
    let rate = RateHeaders::parse_at(
        &headers(&[
            ("x-ratelimit-total", "50"),
            ("x-ratelimit-remaining", "49"),
            ("x-ratelimit-used-currentrequest", "1"),
        ]),
        now(),
    );
    assert_eq!(
        rate,
        RateHeaders {
            total: Some(50),
            remaining: Some(49),
            cost: Some(1),
            reset: None,
            window: None,
        }
    );
    // GitHub's spelling: the reset is a Unix time.
    let rate = RateHeaders::parse_at(
        &headers(&[
            ("X-RateLimit-Limit", "5000"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "1700000060"),
        ]),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    assert_eq!((rate.total, rate.remaining), (Some(5000), Some(0)));
    assert_eq!(rate.reset, secs(60));
    // A Unix time already past is no wait at all.
    let rate = RateHeaders::parse_at(
        &headers(&[("X-RateLimit-Reset", "1000000001")]),
        SystemTime::now(),
    );
    assert_eq!(rate.reset, Some(Duration::ZERO));
}

#[test]
fn ietf_spelling_and_an_http_date_reset() {
    let rate = RateHeaders::parse_at(
        &headers(&[
            ("RateLimit-Limit", "100"),
            ("RateLimit-Remaining", "50"),
            ("RateLimit-Reset", "30"),
            ("RateLimit-Policy", "100;w=60"),
        ]),
        now(),
    );
    assert_eq!(rate.total, Some(100));
    assert_eq!(rate.remaining, Some(50));
    assert_eq!(rate.reset, secs(30));
    assert_eq!(rate.window, secs(60));
    let rate = RateHeaders::parse_at(
        &headers(&[("RateLimit-Reset", "Sun, 06 Nov 1994 08:50:07 GMT")]),
        now(),
    );
    assert_eq!(rate.reset, secs(30));
}

#[test]
fn structured_ratelimit_fields() {
    let rate = RateHeaders::parse_at(
        &headers(&[
            ("RateLimit", "\"default\";r=12;t=40"),
            ("RateLimit-Policy", "\"default\";q=100;w=60"),
        ]),
        now(),
    );
    assert_eq!(rate.remaining, Some(12));
    assert_eq!(rate.reset, secs(40));
    assert_eq!(rate.total, Some(100));
    assert_eq!(rate.window, secs(60));
    // The older combined draft.
    let rate = RateHeaders::parse_at(
        &headers(&[("RateLimit", "limit=100, remaining=3, reset=9")]),
        now(),
    );
    assert_eq!(
        (rate.total, rate.remaining, rate.reset),
        (Some(100), Some(3), secs(9))
    );
}

#[test]
fn nothing_announced_and_nonsense_is_nothing() {
    assert_eq!(
        RateHeaders::parse_at(&HeaderMap::new(), now()),
        RateHeaders::default()
    );
    let rate = RateHeaders::parse_at(
        &headers(&[
            ("X-Rate-Limit-Remaining", "lots"),
            ("X-Rate-Limit-Reset", "-5"),
        ]),
        now(),
    );
    assert_eq!(rate, RateHeaders::default());
}
