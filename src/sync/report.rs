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
