//! The owner's summary after an import: counts, first errors, the run's name, and the
//! full report as `errors.csv`.

use super::{Attachment, MailError, MailTransport, OutgoingMail};
use crate::api::{ImportPhase, ImportRunStatus};

/// Errors and warnings quoted in the body (the attachment has them all).
pub const SUMMARY_ERRORS: usize = 10;
/// Leavers listed in the body, each with its reason.
pub const SUMMARY_LEAVERS: usize = 50;
/// The attachment is cut (at a row) past this size; the body says where the full
/// report is.
pub const MAX_ATTACHMENT_BYTES: usize = 2 * 1024 * 1024;

/// One finished run, as the summary describes it.
#[derive(Clone, Copy, Debug)]
pub struct RunSummary<'a> {
    /// The integration's name (starts the subject).
    pub integration: &'a str,
    /// The ImportRun's name.
    pub run_name: &'a str,
    /// The run's final status, with `invitationsSent` and the delivery warnings applied.
    pub status: &'a ImportRunStatus,
    pub dry_run: bool,
    /// The run's full report (`crate::sync::report_csv`).
    pub report_csv: Option<&'a str>,
    /// For a `Blocked` run: the leavers awaiting approval.
    pub blocked_leavers: u32,
    /// The run's change rows (`crate::sync::ImportOutcome::changes`): leavers are listed
    /// with their reasons.
    pub changes: &'a [crate::api::RecordError],
    /// Where the full report is kept (a ConfigMap, a file), for a cut attachment.
    pub report_location: Option<&'a str>,
}

/// The summary for `recipients`, or `None` when there is nobody to tell or nothing to
/// tell: the run neither wrote nor would have written anything and did not fail, stop or
/// get blocked.
pub fn summary_mail(run: &RunSummary<'_>, recipients: &[String]) -> Option<OutgoingMail> {
    let recipients: Vec<String> = recipients
        .iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    let s = &run.status.summary;
    let phase = run.status.phase;
    let writes = s.created + s.updated + s.reactivated + s.leavers;
    let notable = writes > 0
        || matches!(
            phase,
            ImportPhase::Failed | ImportPhase::Blocked | ImportPhase::Interrupted
        );
    if recipients.is_empty() || !notable {
        return None;
    }

    let findings = s.errors + s.warnings + run.changes.len() as u32;
    let mut cut = None;
    let attachments = match run.report_csv {
        Some(csv) if findings > 0 => {
            let (content, kept) = bounded(csv, MAX_ATTACHMENT_BYTES);
            if kept.is_some() {
                cut = kept;
            }
            vec![Attachment {
                filename: "errors.csv".into(),
                content_type: "text/csv; charset=utf-8".into(),
                content: content.as_bytes().to_vec(),
            }]
        }
        _ => Vec::new(),
    };
    let mut text = body(run, !attachments.is_empty());
    if let Some((kept, total)) = cut {
        text.push_str(&format!(
            "The attachment is cut to its first {kept} of {total} rows to stay small; the full report is {}.\n",
            run.report_location
                .unwrap_or("kept with the run (kubectl freshteam errors <run>)")
        ));
    }
    Some(OutgoingMail {
        to: recipients,
        subject: subject(run),
        text,
        html: None,
        attachments,
        message_id: None,
    })
}

/// Sends the summary, one copy per recipient, so that one refused address does not keep
/// it from the others. Returns warnings (empty when every copy was accepted).
pub async fn send_summary(transport: &dyn MailTransport, mail: &OutgoingMail) -> Vec<String> {
    let mut warnings = Vec::new();
    for to in &mail.to {
        let copy = OutgoingMail {
            to: vec![to.clone()],
            ..mail.clone()
        };
        match transport.send(copy).await {
            Ok(()) => {}
            Err(e @ MailError::Unavailable(_)) => {
                warnings.push(format!("the import summary was not sent: {e}"));
                break;
            }
            Err(e) => warnings.push(format!("the import summary to {to} was not sent: {e}")),
        }
    }
    warnings
}

fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn subject(run: &RunSummary<'_>) -> String {
    let s = &run.status.summary;
    let name = run.integration;
    match run.status.phase {
        ImportPhase::Failed => return format!("{name}: import failed"),
        ImportPhase::Interrupted => return format!("{name}: import interrupted"),
        ImportPhase::Blocked => {
            return if run.blocked_leavers > 0 {
                format!(
                    "{name}: blocked, {} await approval",
                    plural(run.blocked_leavers, "leaver", "leavers")
                )
            } else {
                format!("{name}: blocked, leavers await approval")
            }
        }
        _ => {}
    }
    let mut parts = Vec::new();
    for (n, one, many) in [
        (s.created, "created", "created"),
        (s.updated, "updated", "updated"),
        (s.reactivated, "re-activated", "re-activated"),
        (s.leavers, "leaver", "leavers"),
        (s.errors, "error", "errors"),
    ] {
        if n > 0 {
            parts.push(plural(n, one, many));
        }
    }
    let text = if parts.is_empty() {
        "no changes".to_string()
    } else {
        parts.join(", ")
    };
    if run.dry_run {
        format!("{name}: dry run, would be {text}")
    } else {
        format!("{name}: {text}")
    }
}

/// `csv` cut after the last whole row that fits in `max` bytes, with `(rows kept, rows)`
/// when it was cut. Rows are records as the CSV reader sees them (a quoted line break
/// stays inside its row).
fn bounded(csv: &str, max: usize) -> (&str, Option<(usize, usize)>) {
    if csv.len() <= max {
        return (csv, None);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(csv.as_bytes());
    let mut end = 0usize;
    let mut kept = 0usize;
    let mut total = 0usize;
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).unwrap_or(false) {
        total += 1;
        let at = reader.position().byte() as usize;
        if at <= max {
            end = at;
            kept += 1;
        }
    }
    if end == 0 {
        end = csv.find('\n').map_or(0, |i| i + 1);
    }
    (&csv[..end], Some((kept, total)))
}

fn body(run: &RunSummary<'_>, attached: bool) -> String {
    let status = run.status;
    let s = &status.summary;
    let mut out = format!(
        "Import {} of integration {}: {}{}.\n",
        run.run_name,
        run.integration,
        status.phase,
        if run.dry_run {
            " (dry run: nothing was written; the counts are what would have happened)"
        } else {
            ""
        }
    );
    if let Some(m) = status.message.as_deref().filter(|m| !m.is_empty()) {
        out.push_str(&format!("\n{m}\n"));
    }
    if run.status.phase == ImportPhase::Blocked && run.blocked_leavers > 0 {
        out.push_str(&format!(
            "\nTo apply the leavers, annotate the integration with freshteam.provisioning.dev/approve-leavers: \"{}\".\n",
            run.run_name
        ));
    }
    out.push('\n');
    let leavers_label = if run.dry_run {
        "Would be marked as leavers"
    } else {
        "Marked as leavers"
    };
    let rows = [
        ("Created", s.created),
        ("Updated", s.updated),
        ("Re-activated", s.reactivated),
        (leavers_label, s.leavers),
        ("Unchanged", s.unchanged),
        ("Skipped", s.skipped),
        ("Errors", s.errors),
        ("Warnings", s.warnings),
        ("Invitations sent", s.invitations_sent),
    ];
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
    for (label, n) in rows {
        out.push_str(&format!("{:<width$} {n:>6}\n", format!("{label}:")));
    }

    let total = (s.errors + s.warnings) as usize;
    if total > 0 && !status.errors.is_empty() {
        let shown = status.errors.len().min(SUMMARY_ERRORS);
        out.push_str(&format!(
            "\nFirst errors and warnings ({shown} of {total}):\n"
        ));
        for e in status.errors.iter().take(SUMMARY_ERRORS) {
            let mut line = format!("- {}", e.severity);
            if let Some(id) = &e.employee_id {
                line.push_str(&format!(" {id}"));
            }
            if let Some(email) = &e.email {
                line.push_str(&format!(" <{email}>"));
            }
            if let Some(field) = &e.field {
                line.push_str(&format!(" [{field}]"));
            }
            line.push_str(&format!(": {}\n", e.message));
            out.push_str(&line);
        }
        if total > shown {
            out.push_str(&format!("… and {} more.\n", total - shown));
        }
    }
    let leavers: Vec<_> = run
        .changes
        .iter()
        .filter(|c| c.field.as_deref() == Some("leaver"))
        .collect();
    if !leavers.is_empty() {
        let shown = leavers.len().min(SUMMARY_LEAVERS);
        out.push_str(&format!(
            "\n{leavers_label} ({shown} of {}):\n",
            leavers.len()
        ));
        for c in leavers.iter().take(SUMMARY_LEAVERS) {
            out.push_str(&format!(
                "- {} <{}>: {}\n",
                c.employee_id.as_deref().unwrap_or("-"),
                c.email.as_deref().unwrap_or("-"),
                c.message
            ));
        }
        if leavers.len() > shown {
            out.push_str(&format!(
                "… and {} more (see the report).\n",
                leavers.len() - shown
            ));
        }
    }
    if attached {
        out.push_str(
            "\nThe full report (errors, warnings and every change) is attached as errors.csv.\n",
        );
    }
    if let (Some(start), Some(end)) = (&status.start_time, &status.completion_time) {
        out.push_str(&format!("\nStarted {start}, finished {end}.\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ImportSummary, RecordError, Severity};

    fn status(phase: ImportPhase, summary: ImportSummary) -> ImportRunStatus {
        ImportRunStatus {
            phase,
            summary,
            ..ImportRunStatus::default()
        }
    }

    fn run<'a>(status: &'a ImportRunStatus, dry_run: bool, csv: Option<&'a str>) -> RunSummary<'a> {
        RunSummary {
            integration: "acme",
            run_name: "acme-20260101-0300",
            status,
            dry_run,
            report_csv: csv,
            blocked_leavers: 0,
            changes: &[],
            report_location: None,
        }
    }

    fn to() -> Vec<String> {
        vec!["hr-admin@acme.example".into()]
    }

    #[test]
    fn the_subject_names_the_integration_and_the_outcome() {
        let st = status(
            ImportPhase::PartiallySucceeded,
            ImportSummary {
                created: 12,
                updated: 3,
                leavers: 1,
                unchanged: 1000,
                errors: 2,
                ..ImportSummary::default()
            },
        );
        let m = summary_mail(&run(&st, false, Some("csv")), &to()).unwrap();
        assert_eq!(m.subject, "acme: 12 created, 3 updated, 1 leaver, 2 errors");
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].filename, "errors.csv");

        let m = summary_mail(&run(&st, true, None), &to()).unwrap();
        assert_eq!(
            m.subject,
            "acme: dry run, would be 12 created, 3 updated, 1 leaver, 2 errors"
        );
        assert!(m.attachments.is_empty());

        let st = status(ImportPhase::Failed, ImportSummary::default());
        let m = summary_mail(&run(&st, false, None), &to()).unwrap();
        assert_eq!(m.subject, "acme: import failed");

        let st = status(ImportPhase::Blocked, ImportSummary::default());
        let mut r = run(&st, false, None);
        r.blocked_leavers = 30;
        let m = summary_mail(&r, &to()).unwrap();
        assert_eq!(m.subject, "acme: blocked, 30 leavers await approval");
        assert!(m.text.contains("approve-leavers: \"acme-20260101-0300\""));
    }

    #[test]
    fn nothing_to_tell_means_no_mail() {
        let quiet = status(
            ImportPhase::Succeeded,
            ImportSummary {
                unchanged: 50,
                ..ImportSummary::default()
            },
        );
        assert_eq!(summary_mail(&run(&quiet, false, None), &to()), None);
        let busy = status(
            ImportPhase::Succeeded,
            ImportSummary {
                updated: 1,
                ..ImportSummary::default()
            },
        );
        assert_eq!(summary_mail(&run(&busy, false, None), &[]), None);
        assert_eq!(
            summary_mail(&run(&busy, false, None), &[" ".to_string()]),
            None
        );
        let m = summary_mail(&run(&busy, false, Some("csv")), &to()).unwrap();
        assert!(m.attachments.is_empty(), "no errors or warnings, no CSV");
    }

    #[test]
    fn the_body_gives_counts_first_errors_and_the_run_name() {
        let errors: Vec<RecordError> = (0..12)
            .map(|i| RecordError {
                employee_id: Some(format!("E-{i}")),
                email: Some(format!("p{i}@acme.example")),
                field: Some("email".into()),
                severity: Severity::Error,
                message: format!("problem {i}"),
            })
            .collect();
        let mut st = status(
            ImportPhase::PartiallySucceeded,
            ImportSummary {
                created: 2,
                errors: 12,
                warnings: 3,
                invitations_sent: 2,
                ..ImportSummary::default()
            },
        );
        st.errors = errors;
        st.message = Some("2 created, 12 errors, 3 warnings".into());
        let m = summary_mail(&run(&st, false, Some("x")), &to()).unwrap();
        assert!(m
            .text
            .starts_with("Import acme-20260101-0300 of integration acme: PartiallySucceeded.\n"));
        let line = |label: &str| m.text.lines().find(|l| l.starts_with(label)).unwrap();
        assert!(line("Created:").ends_with(" 2"), "{}", m.text);
        assert!(line("Errors:").ends_with(" 12"), "{}", m.text);
        assert!(line("Invitations sent:").ends_with(" 2"), "{}", m.text);
        assert!(m.text.contains("First errors and warnings (10 of 15):"));
        assert!(m
            .text
            .contains("- error E-0 <p0@acme.example> [email]: problem 0\n"));
        assert!(m.text.contains("- error E-9 "));
        assert!(!m.text.contains("E-10"));
        assert!(m.text.contains("… and 5 more."));
        assert!(m.text.contains("attached as errors.csv"));
    }
}
