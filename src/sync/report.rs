//! The run's error report: every error and warning row, as CSV.

use crate::api::RecordError;

/// Rows kept inline in `ImportRun.status.errors`.
pub const MAX_INLINE_ERRORS: usize = 50;

/// The full report as CSV (`severity,employee_id,email,field,message`), header included.
pub fn errors_csv(rows: &[RecordError]) -> String {
    rows_csv(rows.iter())
}

fn rows_csv<'a>(rows: impl Iterator<Item = &'a RecordError>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["severity", "employee_id", "email", "field", "message"])
        .expect("writing to memory");
    for r in rows {
        w.write_record([
            r.severity.as_str(),
            &neutralise(r.employee_id.as_deref().unwrap_or("")),
            &neutralise(r.email.as_deref().unwrap_or("")),
            &neutralise(r.field.as_deref().unwrap_or("")),
            &neutralise(r.message.as_str()),
        ])
        .expect("writing to memory");
    }
    String::from_utf8(w.into_inner().expect("writing to memory")).expect("CSV of UTF-8 is UTF-8")
}

/// A cell a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab, carriage
/// return first) gets a leading `'`: the report carries text from Freshteam and the
/// destination, which anyone with a profile can fill.
fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// The run's full report: error and warning rows, then one row per change.
pub fn report_csv(report: &[RecordError], changes: &[RecordError]) -> String {
    // Written from both lists as they are: a copy of every row would double the
    // report's memory at the end of a large run.
    rows_csv(report.iter().chain(changes))
}

/// The full report as CSV parts of at most `max_bytes` each (a row longer than that
/// gets a part of its own), each with the header row: nothing is dropped, however
/// large the run.
pub fn report_parts(
    report: &[RecordError],
    changes: &[RecordError],
    max_bytes: usize,
) -> Vec<String> {
    let header = errors_csv(&[]);
    let mut parts = Vec::new();
    let mut current = header.clone();
    for row in report.iter().chain(changes) {
        let line = errors_csv(std::slice::from_ref(row));
        let line = &line[header.len()..];
        if current.len() > header.len() && current.len() + line.len() > max_bytes {
            parts.push(std::mem::replace(&mut current, header.clone()));
        }
        current.push_str(line);
    }
    parts.push(current);
    parts
}

/// The ConfigMap of part `index` (from 0) of a report stored as `base`.
pub fn report_part_name(base: &str, index: usize) -> String {
    if index == 0 {
        base.to_string()
    } else {
        format!("{base}-{}", index + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Severity;

    #[test]
    fn quotes_what_needs_quoting() {
        let rows = vec![RecordError {
            employee_id: Some("E-1".into()),
            email: None,
            field: Some("email".into()),
            severity: Severity::Error,
            message: "invalid e-mail 'a,b' in official_email: has no @".into(),
        }];
        let csv = errors_csv(&rows);
        assert_eq!(
            csv,
            "severity,employee_id,email,field,message\nerror,E-1,,email,\"invalid e-mail 'a,b' in official_email: has no @\"\n"
        );
    }

    #[test]
    fn cells_a_spreadsheet_would_run_are_neutralised() {
        let row = |id: &str, message: &str| RecordError {
            employee_id: Some(id.into()),
            email: Some("@SUM(A1)".into()),
            field: None,
            severity: Severity::Error,
            message: message.into(),
        };
        let csv = errors_csv(&[
            row("=HYPERLINK(\"http://x\")", "+1 in cell"),
            row("-2", "\tcmd"),
            row("E-3", "plain, untouched"),
        ]);
        let mut lines = csv.lines().skip(1);
        assert_eq!(
            lines.next(),
            Some("error,\"'=HYPERLINK(\"\"http://x\"\")\",'@SUM(A1),,'+1 in cell")
        );
        assert_eq!(lines.next(), Some("error,'-2,'@SUM(A1),,'\tcmd"));
        assert_eq!(
            lines.next(),
            Some("error,E-3,'@SUM(A1),,\"plain, untouched\"")
        );
    }
}
