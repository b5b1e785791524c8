//! Text helpers shared by the plugin's commands: kubectl-style tables, ages and
//! durations, and the `--timeout` parser.

use chrono::{DateTime, Utc};

/// Left-aligned columns separated by three spaces, as kubectl prints them; trailing
/// blanks are trimmed so that output compares cleanly in tests and diffs.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A duration as kubectl shows ages (`45s`, `5m3s`, `2h10m`, `3d4h`), the same
/// thresholds as `k8s.io/apimachinery/pkg/util/duration.HumanDuration`.
pub(crate) fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Parses an RFC 3339 time as the API writes it.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `--timeout` values as kubectl takes them (`30m`, `90s`, `1h30m`, `500ms`; a bare number
/// is seconds): the spec's durations, parsed once.
pub(crate) use crate::http_policy::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tables_align_and_trim() {
        let t = table(
            &["NAME", "PHASE", "ERRORS"],
            &[
                vec!["acme-1".into(), "Succeeded".into(), "0".into()],
                vec!["acme-22".into(), "".into(), "12".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME      PHASE       ERRORS\n\
             acme-1    Succeeded   0\n\
             acme-22               12\n"
        );
    }

    #[test]
    fn durations_read_like_kubectl() {
        let d = |s: i64| human_duration(chrono::Duration::seconds(s));
        assert_eq!(d(0), "0s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(303), "5m3s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(3 * 3600 + 600), "3h10m");
        assert_eq!(d(30 * 3600), "30h");
        assert_eq!(d(3 * 86400 + 4 * 3600), "3d4h");
        assert_eq!(d(40 * 86400), "40d");
        assert_eq!(d(-5), "<invalid>");
    }

    #[test]
    fn timeouts_parse_go_style() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("5x")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("10").is_ok());
        assert!(parse_duration("").is_err());
    }
}
