//! Durations as the spec spells them (`15m`, `2s`, `1h30m`, `900s`) and a request pace
//! (`180/15m`).

use std::fmt;
use std::time::Duration;

/// Why a duration such as `15m` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("'{0}': missing unit after the last number (s, m, h)")]
    MissingUnit(String),
    #[error("'{0}' is not a duration such as 30s, 15m or 1h30m")]
    NotADuration(String),
    #[error("'{0}': number too large")]
    TooLarge(String),
    #[error("'{text}': unknown unit '{unit}' (use ms, s, m, h or d)")]
    UnknownUnit { text: String, unit: String },
}

/// Why a rate limit such as `180/15m` could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaceError {
    #[error("a rate limit needs at least 1 request per window")]
    NoRequests,
    #[error("a rate limit's window must be longer than zero")]
    EmptyWindow,
    #[error("'{0}' is not a rate limit such as 180/15m")]
    NotAPace(String),
    #[error("'{text}': '{requests}' is not a number of requests")]
    Requests { text: String, requests: String },
    #[error(transparent)]
    Window(#[from] DurationError),
}

/// Parses `30s`, `15m`, `1h30m`, `500ms`, `1d`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| DurationError::MissingUnit(s.into()))?;
        if digits == 0 {
            return Err(DurationError::NotADuration(s.into()));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::TooLarge(s.into()))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            other => {
                return Err(DurationError::UnknownUnit {
                    text: s.into(),
                    unit: other.into(),
                })
            }
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A duration the way a person would write it: `24h`, `15m`, `1h30m`, `2s`, `250ms`.
pub fn show_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 && d < Duration::from_secs(60) {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// At most `requests` requests per `window`, counted from the first request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    pub requests: u32,
    pub window: Duration,
}

impl Pace {
    pub fn new(requests: u32, window: Duration) -> Result<Self, PaceError> {
        if requests == 0 {
            return Err(PaceError::NoRequests);
        }
        if window.is_zero() {
            return Err(PaceError::EmptyWindow);
        }
        Ok(Pace { requests, window })
    }

    /// Whether this pace allows fewer requests per second than `other`.
    pub fn stricter_than(&self, other: &Pace) -> bool {
        // requests / window < other.requests / other.window, without division.
        (self.requests as u128) * other.window.as_nanos()
            < (other.requests as u128) * self.window.as_nanos()
    }
}

impl std::str::FromStr for Pace {
    type Err = PaceError;

    /// `180/15m`: requests, a slash, the window.
    fn from_str(s: &str) -> Result<Self, PaceError> {
        let (n, window) = s
            .split_once('/')
            .ok_or_else(|| PaceError::NotAPace(s.into()))?;
        let requests = n.trim().parse().map_err(|_| PaceError::Requests {
            text: s.into(),
            requests: n.into(),
        })?;
        Pace::new(requests, parse_duration(window)?)
    }
}

impl fmt::Display for Pace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.requests, show_duration(self.window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_paces_read_and_show() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("900"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(show_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(show_duration(Duration::from_secs(900)), "15m");
        assert_eq!(show_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(show_duration(Duration::from_millis(300)), "300ms");

        let pace: Pace = "180/15m".parse().unwrap();
        assert_eq!(pace, Pace::new(180, Duration::from_secs(900)).unwrap());
        assert_eq!(pace.to_string(), "180/15m");
        assert!("0/15m".parse::<Pace>().is_err());
        assert!("180/0s".parse::<Pace>().is_err());
        assert!("180".parse::<Pace>().is_err());
        let fast: Pace = "40/2s".parse().unwrap();
        assert!(pace.stricter_than(&fast));
        assert!(!fast.stricter_than(&pace));
    }
}
