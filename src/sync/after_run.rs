//! The e-mail side of a finished run, shared by `sync` and the controller: pending
//! invitations, then the owner's summary. Outages are warnings, never a failed import.

use super::{report_csv, ImportOutcome};
use crate::api::{FreshteamIntegrationSpec, RecordError, Severity};
use crate::notify::{
    deliver_pending, discard_pending, send_summary, summary_mail, DeliveryContext, Mail, Outbox,
    RunSummary,
};
use crate::state::Store;

/// The run the e-mails are about.
pub struct RunInfo<'a> {
    pub integration: &'a str,
    pub run_name: &'a str,
    pub spec: &'a FreshteamIntegrationSpec,
    pub dry_run: bool,
    /// Where the run's full report is kept, named in the summary when its attachment
    /// had to be cut.
    pub report_location: Option<String>,
}

/// Sends what a finished run owes: the pending invitations (through `outbox`) and the
/// summary to `spec.notifications.recipients`. Updates the outcome's counts and warning
/// rows, and returns the warnings for stderr or an Event. Dry runs send nothing.
pub async fn notify_after_run(
    mail: &Mail,
    outbox: Option<&dyn Store<Outbox>>,
    run: &RunInfo<'_>,
    outcome: &mut ImportOutcome,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if run.dry_run {
        return warnings;
    }
    // Without SMTP, one warning says what would have been sent.
    let mut unsent_invitations = 0;
    let mut unsent_summary = false;
    if let Some(store) = outbox {
        if !run.spec.welcome_email.enabled {
            // Switched off: what was pending must not go out later.
            if let Err(e) = discard_pending(store).await {
                warnings.push(format!("invitation outbox: {e}"));
            }
        } else if let Some(transport) = &mail.transport {
            let ctx = DeliveryContext {
                integration: run.integration.to_string(),
                login_url: run.spec.welcome_email.login_url.clone(),
                message_id_domain: mail.message_id_domain.clone(),
                ..DeliveryContext::default()
            };
            let report = deliver_pending(
                store,
                transport.as_ref(),
                &mail.templates,
                &ctx,
                outcome.member_ids.as_ref(),
            )
            .await;
            outcome.status.summary.invitations_sent += report.sent;
            outcome.add_warnings(report.rows());
            warnings.extend(report.warnings.iter().cloned());
        } else {
            unsent_invitations = store.load().await.map(|o| o.pending()).unwrap_or(0);
        }
    }

    let recipients = &run.spec.notifications.recipients;
    if !recipients.is_empty() {
        let csv = report_csv(&outcome.report, &outcome.changes);
        let summary = RunSummary {
            integration: run.integration,
            run_name: run.run_name,
            status: &outcome.status,
            dry_run: run.dry_run,
            report_csv: Some(&csv),
            blocked_leavers: outcome.blocked_leavers,
            changes: &outcome.changes,
            report_location: run.report_location.as_deref(),
        };
        // Built either way, so that "not sent" counts only a summary that was owed.
        if let Some(message) = summary_mail(&summary, recipients) {
            match &mail.transport {
                Some(transport) => {
                    for w in send_summary(transport.as_ref(), &message).await {
                        add_warning(outcome, &w);
                        warnings.push(w);
                    }
                }
                None => unsent_summary = true,
            }
        }
    }
    if let Some(w) = unsent_mail_warning(unsent_invitations, unsent_summary) {
        add_warning(outcome, &w);
        warnings.push(w);
    }
    warnings
}

/// "3 invitations and 1 summary not sent: no SMTP configured (…)"; `None` when nothing
/// was owed. Pending invitations stay in the outbox for the first run that has SMTP.
pub fn unsent_mail_warning(invitations: usize, summary: bool) -> Option<String> {
    let mut parts = Vec::new();
    if invitations > 0 {
        let s = if invitations == 1 { "" } else { "s" };
        parts.push(format!("{invitations} invitation{s}"));
    }
    if summary {
        parts.push("1 summary".to_string());
    }
    if parts.is_empty() {
        return None;
    }
    let mut w = format!(
        "{} not sent: no SMTP configured (--smtp-url / SMTP_URL)",
        parts.join(" and ")
    );
    if invitations > 0 {
        w.push_str("; pending invitations are sent by the first run that has one");
    }
    Some(w)
}

fn add_warning(outcome: &mut ImportOutcome, message: &str) {
    outcome.add_warnings([RecordError {
        employee_id: None,
        email: None,
        field: None,
        severity: Severity::Warning,
        message: message.to_string(),
    }]);
}
