//! What a run records: its status, the integration's `lastImport` and preview, Events
//! and metrics.

use super::objects::apply_run_status;
use super::reports::store_report;
use super::{prune, Run, REPORT_PART_BYTES};
use chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;

use crate::api::{ImportPhase, ImportRunStatus, ImportTrigger, LastImport, Preview};
use crate::controller::status::{
    apply_status, LastImportStatus, PreviewPatch, RunProgress, LAST_IMPORT_MANAGER,
};
use crate::sync::{notify_after_run, report_parts, ImportOutcome, RunInfo};

impl Run {
    /// From now on the integration's preview describes this run; no older counts stay
    /// beside it.
    pub(super) async fn record_preview_start(&self) {
        if self.req.start.trigger != ImportTrigger::Preview {
            return;
        }
        let preview = Preview {
            run_name: self.name().to_string(),
            phase: Some(ImportPhase::Running),
            generation: Some(self.fti().metadata.generation.unwrap_or(0)),
            ..Preview::default()
        };
        self.patch_preview(&PreviewPatch::new(preview), "the preview's start")
            .await;
    }

    /// Merges `patch` (the preview, see [`crate::controller::status`]) into the
    /// integration's status; a failure is logged (the next reconcile or run writes it
    /// again).
    async fn patch_preview(&self, patch: &PreviewPatch<Preview>, what: &str) {
        if let Err(e) = self
            .integrations
            .patch_status(
                &self.integration,
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            tracing::warn!(integration = %self.integration, error = %e, "could not record {what}");
        }
    }

    /// The run is `Running` from now: an Event, then its start time and progress at
    /// zero (in that order, so that whoever sees the run Running also finds its Event,
    /// even when this replica dies at once).
    pub(super) async fn record_start(&self) -> DateTime<Utc> {
        let started = self.ctx.clock.now();
        self.ctx
            .event(
                self.fti(),
                EventType::Normal,
                "ImportStarted",
                format!(
                    "ImportRun {} started ({:?})",
                    self.name(),
                    self.req.start.trigger
                ),
            )
            .await;
        let _ = apply_run_status(&self.runs, self.name(), &RunProgress::started(started)).await;
        started
    }

    /// Record: the e-mails, the report and the run's status, the
    /// integration's `lastImport` (and preview), the outcome's Event and metrics, then
    /// history pruning.
    pub(super) async fn record(&self, started: DateTime<Utc>, mut outcome: ImportOutcome) {
        self.notify(&mut outcome).await;
        let status = self.record_run_status(&outcome).await;
        self.record_last_import(&status, &outcome).await;
        self.announce(&status, &outcome, started).await;
        prune(&self.runs, self.fti()).await;
    }

    /// The owners' e-mail (and invitations), with an Event for each that was not sent.
    async fn notify(&self, outcome: &mut ImportOutcome) {
        let (fti, name) = (self.fti(), self.name());
        let info = RunInfo {
            integration: &self.integration,
            run_name: name,
            spec: &fti.spec,
            dry_run: self.req.start.dry_run,
            report_location: Some(format!(
                "in ConfigMap {name}-errors (kubectl freshteam errors {name})"
            )),
        };
        if outcome.status.summary.warnings > 0 && outcome.held_back.is_some() {
            // Members held back because their state could not be recorded say so here too.
            if let Some(m) = outcome.status.message.as_deref() {
                self.ctx
                    .event(fti, EventType::Warning, "MembersNotCreated", m.to_string())
                    .await;
            }
        }
        for w in notify_after_run(&self.ctx.mail, Some(&self.outbox), &info, outcome).await {
            tracing::warn!(warning = %w, "e-mail not sent");
            self.ctx
                .event(fti, EventType::Warning, "EmailNotSent", w)
                .await;
        }
    }

    /// The report in ConfigMaps owned by the run, then the run's final status.
    async fn record_run_status(&self, outcome: &ImportOutcome) -> ImportRunStatus {
        let name = self.name();
        let mut status = outcome.status.clone();
        if !outcome.report.is_empty() || !outcome.changes.is_empty() {
            let parts = report_parts(&outcome.report, &outcome.changes, REPORT_PART_BYTES);
            match store_report(&self.ctx, &self.runs, &self.ns, name, &parts).await {
                Ok(report) => status.error_report = Some(report),
                Err(e) => {
                    tracing::warn!(run = %name, error = %e, "could not store the run's report");
                    let note = format!("the run's full report could not be stored: {e}");
                    self.ctx
                        .event(
                            self.fti(),
                            EventType::Warning,
                            "ReportNotStored",
                            note.clone(),
                        )
                        .await;
                    let message = status.message.get_or_insert_with(String::new);
                    if !message.is_empty() {
                        message.push_str("; ");
                    }
                    message.push_str(&note);
                }
            }
        }
        if let Err(e) = apply_run_status(&self.runs, name, &status).await {
            tracing::warn!(run = %name, error = %e, "could not record the run's outcome");
        }
        status
    }

    /// The integration's view of the run: `lastImport`, and `preview` for a preview.
    async fn record_last_import(&self, status: &ImportRunStatus, outcome: &ImportOutcome) {
        if self.req.start.trigger == ImportTrigger::OnDemand {
            // A few named employees are not the integration's import: the outcome stays
            // on the run.
            return;
        }
        let name = self.name();
        let last = LastImport {
            run_name: name.to_string(),
            phase: status.phase,
            start_time: status.start_time.clone(),
            completion_time: status.completion_time.clone(),
            summary: status.summary.clone(),
            unsupported_mapping_targets: match status.phase {
                // A failed run found nothing out: what the previous import did stays.
                ImportPhase::Failed => self.stored_unsupported_targets().await,
                _ => Some(outcome.unsupported_targets.clone()),
            },
        };
        let applied = apply_status(
            &self.integrations,
            &self.integration,
            LAST_IMPORT_MANAGER,
            &LastImportStatus { last_import: &last },
        )
        .await;
        if let Err(e) = applied {
            tracing::warn!(integration = %self.integration, error = %e, "could not record lastImport");
        }
        if self.req.start.trigger == ImportTrigger::Preview {
            // A failed preview is recorded too (without counts): this generation has had its
            // preview, and a broken destination does not start one on every reconcile.
            let s = &status.summary;
            let counted = status.phase != ImportPhase::Failed;
            let count = |n: u32| counted.then_some(n);
            let preview = Preview {
                run_name: name.to_string(),
                phase: Some(status.phase),
                computed_at: status.completion_time.clone(),
                generation: Some(self.fti().metadata.generation.unwrap_or(0)),
                would_create: count(s.created),
                would_update: count(s.updated),
                would_mark_as_leavers: count(
                    s.leavers + status.leavers_awaiting_approval.unwrap_or(0),
                ),
                would_reactivate: count(s.reactivated),
                errors: count(s.errors),
                in_scope: outcome.mapped.in_scope.filter(|_| counted),
                out_of_scope: outcome.mapped.out_of_scope.filter(|_| counted),
                sample: match counted {
                    true => outcome.mapped.sample.clone(),
                    false => Vec::new(),
                },
            };
            self.patch_preview(&PreviewPatch::new(preview), "the preview")
                .await;
        }
    }

    /// The integration's `lastImport.unsupportedMappingTargets` as stored now.
    async fn stored_unsupported_targets(&self) -> Option<Vec<String>> {
        let fti = self.integrations.get_opt(&self.integration).await.ok()??;
        fti.status?.last_import?.unsupported_mapping_targets
    }

    /// The outcome's Event and metrics.
    async fn announce(
        &self,
        status: &ImportRunStatus,
        outcome: &ImportOutcome,
        started: DateTime<Utc>,
    ) {
        let message = status.message.clone().unwrap_or_default();
        let (kind, reason) = match status.phase {
            ImportPhase::Succeeded => (EventType::Normal, "ImportSucceeded"),
            ImportPhase::PartiallySucceeded => (EventType::Warning, "ImportPartiallySucceeded"),
            ImportPhase::Blocked => (EventType::Warning, "ImportBlocked"),
            ImportPhase::Interrupted => (EventType::Warning, "ImportInterrupted"),
            _ => (EventType::Warning, "ImportFailed"),
        };
        self.ctx
            .event(
                self.fti(),
                kind,
                reason,
                format!("ImportRun {}: {message}", self.name()),
            )
            .await;
        let elapsed = (self.ctx.clock.now() - started)
            .to_std()
            .unwrap_or_default();
        log_end(status, elapsed);
        if let Some(metrics) = &self.ctx.metrics {
            metrics.record_outcome(
                &self.ns,
                &self.integration,
                self.req.start.trigger,
                outcome,
                elapsed,
            );
        }
    }
}

/// The run's end in the operator's log: its phase, counts, requests and duration (the
/// run's span names the integration, the run and its trigger).
fn log_end(status: &ImportRunStatus, elapsed: std::time::Duration) {
    let s = &status.summary;
    let calls = status.api_calls.clone().unwrap_or_default();
    let freshteam_requests =
        calls.freshteam_list + calls.freshteam_detail + calls.freshteam_lookups;
    let destination_requests = calls.destination_reads + calls.destination_writes;
    let message = status.message.as_deref().unwrap_or_default();
    let mode = status.mode.map(|m| format!("{m:?}")).unwrap_or_default();
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                phase = ?status.phase,
                %mode,
                created = s.created,
                updated = s.updated,
                unchanged = s.unchanged,
                leavers = s.leavers,
                reactivated = s.reactivated,
                skipped = s.skipped,
                errors = s.errors,
                warnings = s.warnings,
                invitations_sent = s.invitations_sent,
                freshteam_requests,
                destination_requests,
                duration_secs = elapsed.as_secs_f64(),
                outcome = %message,
                "import run finished"
            )
        };
    }
    match status.phase {
        ImportPhase::Succeeded => line!(info),
        _ => line!(warn),
    }
}
