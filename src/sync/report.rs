//! The run's error report: every error and warning row, as CSV.

use crate::api::RecordError;

/// Rows kept inline in `ImportRun.status.errors`.
pub const MAX_INLINE_ERRORS: usize = 50;

/// The full report as CSV (`severity,employee_id,email,field,message`), header included.
pub fn errors_csv(rows: &[RecordError]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["severity", "employee_id", "email", "field", "message"])
        .expect("writing to memory");
    for r in rows {
        w.write_record([
            r.severity.as_str(),
            r.employee_id.as_deref().unwrap_or(""),
            r.email.as_deref().unwrap_or(""),
            r.field.as_deref().unwrap_or(""),
            r.message.as_str(),
        ])
        .expect("writing to memory");
    }
    String::from_utf8(w.into_inner().expect("writing to memory")).expect("CSV of UTF-8 is UTF-8")
}

/// The run's full report: error and warning rows, then one row per change.
pub fn report_csv(report: &[RecordError], changes: &[RecordError]) -> String {
    if changes.is_empty() {
        return errors_csv(report);
    }
    let rows: Vec<RecordError> = report.iter().chain(changes).cloned().collect();
    errors_csv(&rows)
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

    #[test]
    fn quotes_what_needs_quoting() {
        let rows = vec![RecordError {
            employee_id: Some("E-1".into()),
            email: None,
            field: Some("email".into()),
            severity: "error".into(),
            message: "invalid e-mail 'a,b' in official_email: has no @".into(),
        }];
        let csv = errors_csv(&rows);
        assert_eq!(
            csv,
            "severity,employee_id,email,field,message\nerror,E-1,,email,\"invalid e-mail 'a,b' in official_email: has no @\"\n"
        );
    }
}
