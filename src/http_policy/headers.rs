//! What an answer's headers say about when to come back: `Retry-After`, and the
//! rate-limit headers in the spellings services use:
//! - `X-Rate-Limit-{Limit,Remaining,Reset}` (Reward Gateway), `X-RateLimit-*` (and
//!   Freshteam's `x-ratelimit-total` / `x-ratelimit-used-currentrequest`);
//! - IETF `RateLimit-{Limit,Remaining,Reset}` with `RateLimit-Policy` (`100;w=60`);
//! - the structured `RateLimit: "default";r=50;t=30` (and the older
//!   `RateLimit: limit=100, remaining=50, reset=30`) with `RateLimit-Policy:
//!   "default";q=100;w=60`.
//!
//! A reset may be a number of seconds until the window ends, a Unix time (a number past
//! [`UNIX_TIME_FLOOR`]), or an HTTP date; all three come out as a wait from now.

use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, DATE, RETRY_AFTER};

use crate::egress::header_text;

/// Longest wait taken as given; longer asks are this long (a run's deadline ends a run
/// that cannot wait that long).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// A reset larger than this is a Unix time (2001-09-09), not a number of seconds: no
/// window lasts 30 years.
pub(crate) const UNIX_TIME_FLOOR: f64 = 1_000_000_000.0;

/// `Retry-After` as delay-seconds or an HTTP-date, at most [`MAX_RETRY_AFTER`]. A date is
/// measured against the response's own `Date` header when there is one, so a skewed
/// local clock doesn't shorten the wait.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = header_text(headers, RETRY_AFTER.as_str())?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "very long": saturate, then cap.
        let secs = value.parse().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    until_date(value, headers, now)
}

/// The time from the answer's `Date` (else `now`) until the HTTP date `value`.
fn until_date(value: &str, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    let reference = header_text(headers, DATE.as_str())
        .and_then(|d| httpdate::parse_http_date(d.trim()).ok())
        .unwrap_or(now);
    Some(
        at.duration_since(reference)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// Rate-limit headers of one answer, whatever their spelling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RateHeaders {
    /// Requests allowed per window.
    pub total: Option<u64>,
    /// Requests left in the current window.
    pub remaining: Option<u64>,
    /// What this request cost (Freshteam: `x-ratelimit-used-currentrequest`).
    pub cost: Option<u64>,
    /// Time until the current window ends.
    pub reset: Option<Duration>,
    /// The window's length (`RateLimit-Policy`'s `w`).
    pub window: Option<Duration>,
}

/// Header prefixes, most specific first.
const PREFIXES: [&str; 3] = ["x-rate-limit-", "x-ratelimit-", "ratelimit-"];

impl RateHeaders {
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        Self::parse_at(headers, SystemTime::now())
    }

    pub(crate) fn parse_at(headers: &HeaderMap, now: SystemTime) -> Self {
        let text = |suffixes: &[&str]| {
            PREFIXES.iter().find_map(|p| {
                suffixes
                    .iter()
                    .find_map(|s| header_text(headers, &format!("{p}{s}")))
            })
        };
        let num = |suffixes: &[&str]| text(suffixes).and_then(|v| v.trim().parse::<u64>().ok());
        let mut rate = RateHeaders {
            total: num(&["limit", "total"]),
            remaining: num(&["remaining"]),
            cost: num(&["used-currentrequest"]),
            reset: text(&["reset"]).and_then(|v| reset(v, headers, now)),
            window: None,
        };
        if let Some(v) = header_text(headers, "ratelimit") {
            let p = params(v);
            rate.remaining = rate.remaining.or(p.number(&["r", "remaining"]));
            rate.total = rate.total.or(p.number(&["limit"]));
            rate.reset = rate.reset.or(p.seconds(&["t", "reset"]));
        }
        if let Some(v) = header_text(headers, "ratelimit-policy") {
            let p = params(v);
            rate.total = rate.total.or(p.number(&["q"])).or(p.leading);
            rate.window = p.seconds(&["w"]);
        }
        rate
    }
}

/// A reset value: seconds, a Unix time, or an HTTP date.
fn reset(value: &str, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => {
            if n > UNIX_TIME_FLOOR {
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(n);
                Some(
                    at.duration_since(now)
                        .unwrap_or(Duration::ZERO)
                        .min(MAX_RETRY_AFTER),
                )
            } else {
                Some(Duration::from_secs_f64(n).min(MAX_RETRY_AFTER))
            }
        }
        Ok(_) => None,
        Err(_) => until_date(v, headers, now),
    }
}

/// The parameters of a structured rate-limit field: `"default";r=50;t=30`,
/// `limit=100, remaining=50, reset=30`, `100;w=60`.
struct Params<'a> {
    pairs: Vec<(&'a str, &'a str)>,
    /// A bare leading number (`100;w=60`).
    leading: Option<u64>,
}

fn params(v: &str) -> Params<'_> {
    let mut pairs = Vec::new();
    let mut leading = None;
    // Only the first item of a list: the policy that applies first.
    for (i, part) in v.split([';', ',']).map(str::trim).enumerate() {
        match part.split_once('=') {
            Some((k, val)) => pairs.push((k.trim(), val.trim())),
            None if i == 0 => leading = part.parse().ok(),
            None => {}
        }
    }
    Params { pairs, leading }
}

impl Params<'_> {
    fn get(&self, keys: &[&str]) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| keys.iter().any(|key| k.eq_ignore_ascii_case(key)))
            .map(|(_, v)| v.trim_matches('"'))
    }

    fn number(&self, keys: &[&str]) -> Option<u64> {
        self.get(keys).and_then(|v| v.parse().ok())
    }

    fn seconds(&self, keys: &[&str]) -> Option<Duration> {
        self.number(keys)
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
    }
}

#[cfg(test)]
mod tests;
