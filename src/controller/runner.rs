//! One ImportRun from creation to its final phase: Pending → Running → outcome, with
//! progress patched while it runs, the error report in a ConfigMap owned by the run, the
//! integration's `lastImport`, Events, and history pruning.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{AcquireError, OwnedSemaphorePermit};
use tracing::Instrument;

use super::decide::StartRun;
use super::history::{runs_to_prune, RunEntry};
use super::state::{ClusterConvergenceStore, ClusterLedgerStore, ClusterOutboxStore};
use super::Context;
use crate::api::INTEGRATION_LABEL;
use crate::api::{
    ErrorReportRef, FreshteamIntegration, FreshteamIntegrationSpec, ImportPhase, ImportRun,
    ImportRunSpec, ImportRunStatus, ImportTrigger, LastImport, Preview, Severity,
};
use crate::clock::rfc3339;
use crate::connect::account_key;
use crate::destination::{ConvergenceNotes, MemberDirectory};
use crate::ledger::LedgerStore;
use crate::mapping::CompiledMapping;
use crate::notify::OutboxStore;
use crate::secret::SecretString;
use crate::source::EmployeeSource;
use crate::sync::mode::ModePolicy;
use crate::sync::{
    notify_after_run, report_part_name, report_parts, run_import, ImportJob, ImportOptions,
    ImportOutcome, ProgressCounter, RunInfo, StopSignal,
};
use crate::telemetry::RunningImport;

/// The ImportRun object for a run about to start (phase Pending).
pub fn new_run(fti: &FreshteamIntegration, name: &str, start: &StartRun) -> ImportRun {
    let integration = fti.name_any();
    let mut labels = BTreeMap::new();
    labels.insert(INTEGRATION_LABEL.to_string(), integration.clone());
    ImportRun {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: fti.namespace(),
            labels: Some(labels),
            owner_references: fti.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: ImportRunSpec {
            integration,
            trigger: start.trigger,
            dry_run: start.dry_run,
        },
        status: Some(ImportRunStatus::default()),
    }
}

/// Whether `run` belongs to `fti`: it names the integration and, when the integration
/// has a uid, is owned by it (a same-named integration deleted and re-created is another).
fn is_own_run(fti: &FreshteamIntegration, run: &ImportRun) -> bool {
    run.spec.integration == fti.name_any()
        && fti.metadata.uid.as_ref().is_none_or(|uid| {
            run.owner_references()
                .iter()
                .any(|o| &o.uid == uid && o.kind == "FreshteamIntegration")
        })
}

/// Creates the ImportRun; a name already taken (two runs in one second) gets a suffix.
pub async fn create_run(
    api: &Api<ImportRun>,
    mut run: ImportRun,
) -> Result<ImportRun, kube::Error> {
    let base = run.name_any();
    for attempt in 0..5 {
        if attempt > 0 {
            run.metadata.name = Some(format!("{base}-{attempt}"));
        }
        match api.create(&PostParams::default(), &run).await {
            Ok(created) => return Ok(created),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(kube::Error::Api(
        kube::core::Status::failure(
            &format!("ImportRun names {base}-* are taken"),
            "AlreadyExists",
        )
        .with_code(409)
        .boxed(),
    ))
}

async fn patch_run_status(
    api: &Api<ImportRun>,
    name: &str,
    status: serde_json::Value,
) -> Result<(), kube::Error> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map(|_| ())
}

/// Everything a run needs, resolved by the reconciler before the run starts.
pub struct RunRequest {
    pub integration: Arc<FreshteamIntegration>,
    pub run_name: String,
    pub start: StartRun,
    pub mapping: CompiledMapping,
    /// What decides whether the run is full or incremental.
    pub mode: ModePolicy,
    pub api_key: SecretString,
    pub token: SecretString,
}

/// Runs an import to its end: acquire its slots, run it, record what it did. Never panics
/// on a Kubernetes error: it logs and leaves the run for the next start-up to mark
/// `Interrupted`.
///
/// The span is a root (the run outlives the reconcile that started it) and names the run
/// only: neither its spec nor its credentials are recorded.
#[tracing::instrument(
    name = "import_run",
    parent = None,
    skip_all,
    fields(
        namespace = req.integration.metadata.namespace.as_deref().unwrap_or_default(),
        integration = %req.integration.name_any(),
        run = %req.run_name,
        trigger = ?req.start.trigger,
    )
)]
pub async fn execute(ctx: Arc<Context>, req: RunRequest) {
    let run = Run::new(ctx, req);
    run.record_preview_start().await;
    let _slots = acquire(&run.ctx, &run.req.integration.spec).await;
    let started = run.record_start().await;
    let outcome = run.import(started).await;
    run.record(started, outcome).await;
}

/// The permits a run holds until it has recorded its outcome (dropped in this order).
struct Slots {
    _running: Option<RunningImport>,
    _global: Result<OwnedSemaphorePermit, AcquireError>,
    _destination: Result<OwnedSemaphorePermit, AcquireError>,
    _account: Result<OwnedSemaphorePermit, AcquireError>,
}

/// Acquire: the run's Freshteam account slot and destination slot first, the global slot
/// last (a run waiting for a busy account must not hold a slot that another tenant's run
/// could use), counted in the queue depth while it waits.
async fn acquire(ctx: &Context, spec: &FreshteamIntegrationSpec) -> Slots {
    let waiting = ctx.waiting.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(m) = &ctx.metrics {
        m.set_queue_depth(waiting);
    }
    let account = ctx
        .slot(
            &format!("freshteam {}", account_key(spec)),
            ctx.config.max_imports_per_account,
        )
        .acquire_owned()
        .await;
    let destination_host = url::Url::parse(&spec.destination.scim.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let destination = ctx
        .slot(
            &format!("destination {destination_host}"),
            ctx.config.max_imports_per_destination,
        )
        .acquire_owned()
        .await;
    let global = ctx.slots.clone().acquire_owned().await;
    let waiting = ctx.waiting.fetch_sub(1, Ordering::Relaxed) - 1;
    if let Some(m) = &ctx.metrics {
        m.set_queue_depth(waiting);
    }
    Slots {
        _running: ctx.metrics.as_ref().map(|m| m.running_import()),
        _global: global,
        _destination: destination,
        _account: account,
    }
}

/// The source and destination clients of a run, or why the run fails. The one place a
/// run calls the connector.
async fn connect(
    ctx: &Context,
    req: &RunRequest,
    notes: &ConvergenceNotes,
) -> Result<(Box<dyn EmployeeSource>, Box<dyn MemberDirectory>), String> {
    let fti = &req.integration;
    match (
        ctx.connector.source(&fti.spec, req.api_key.clone()).await,
        ctx.connector
            .destination(&fti.spec, req.token.clone(), notes)
            .await,
    ) {
        (Ok(source), Ok(destination)) => Ok((source, destination)),
        (Err(e), _) => Err(format!("Freshteam: {}", e.reason())),
        (_, Err(e)) => Err(format!("destination: {}", e.reason())),
    }
}

/// One run under way: its request, and the objects and stores it reads and writes.
struct Run {
    ctx: Arc<Context>,
    req: RunRequest,
    ns: String,
    integration: String,
    runs: Api<ImportRun>,
    integrations: Api<FreshteamIntegration>,
    outbox: ClusterOutboxStore,
    ledger: ClusterLedgerStore,
    notes: ClusterConvergenceStore,
}

impl Run {
    fn new(ctx: Arc<Context>, req: RunRequest) -> Self {
        let fti = &req.integration;
        let ns = fti.namespace().unwrap_or_default();
        let integration = fti.name_any();
        let owner = fti.controller_owner_ref(&());
        let client = &ctx.client;
        Run {
            runs: Api::namespaced(client.clone(), &ns),
            integrations: Api::namespaced(client.clone(), &ns),
            outbox: ClusterOutboxStore::new(client.clone(), &ns, &integration, owner.clone()),
            ledger: ClusterLedgerStore::new(client.clone(), &ns, &integration, owner.clone()),
            notes: ClusterConvergenceStore::new(client.clone(), &ns, &integration, owner),
            ns,
            integration,
            ctx,
            req,
        }
    }

    fn fti(&self) -> &FreshteamIntegration {
        &self.req.integration
    }

    fn name(&self) -> &str {
        &self.req.run_name
    }

    /// From now on the integration's preview describes this run; no older counts stay
    /// beside it.
    async fn record_preview_start(&self) {
        if self.req.start.trigger != ImportTrigger::Preview {
            return;
        }
        let preview = Preview {
            run_name: self.name().to_string(),
            phase: Some(ImportPhase::Running),
            generation: Some(self.fti().metadata.generation.unwrap_or(0)),
            ..Preview::default()
        };
        let patch = json!({ "status": { "preview": preview } });
        self.patch_integration_status(&patch, "the preview's start")
            .await;
    }

    /// Merges `patch` into the integration's status; a failure is logged (the next
    /// reconcile or run writes it again).
    async fn patch_integration_status(&self, patch: &serde_json::Value, what: &str) {
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
    async fn record_start(&self) -> DateTime<Utc> {
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
        let _ = patch_run_status(
            &self.runs,
            self.name(),
            json!({"phase": "Running", "startTime": rfc3339(started), "progress": {"processed": 0, "total": 0, "percent": 0}}),
        )
        .await;
        started
    }

    /// The leavers an approval releases: the count held back by this integration's own
    /// Blocked run it names. An approval naming another integration's run (same
    /// namespace) must not release its count here.
    async fn approved_leavers(&self) -> Option<u32> {
        let blocked = self.req.start.approval.as_ref()?;
        match self.runs.get_opt(blocked).await {
            Ok(Some(r)) if is_own_run(self.fti(), &r) => r
                .status
                .as_ref()
                .filter(|s| s.phase == ImportPhase::Blocked)
                .and_then(|s| s.leavers_awaiting_approval),
            _ => None,
        }
    }

    /// Run: connects, then imports through the one import path, with progress patched
    /// and the integration watched (deleted, suspended: the run is asked to stop) on
    /// every tick.
    async fn import(&self, started: DateTime<Utc>) -> ImportOutcome {
        let (ctx, req) = (&self.ctx, &self.req);
        let key = format!("{}/{}", self.ns, self.integration);
        let stop = ctx.stop_signal(&key);
        let progress = Arc::new(ProgressCounter::default());
        let ticker = spawn_progress_ticker(
            ctx.clone(),
            self.runs.clone(),
            self.name().to_string(),
            progress.clone(),
            Watched {
                integration: req.integration.clone(),
                stop: stop.clone(),
            },
        );
        // What earlier runs learnt about the destination spares requests when connecting.
        let notes = self.notes.load().await;
        // Connecting reads the destination too (its budget may make it wait): a stop
        // ends it at once, and a wait shows like one during the run.
        let connected = crate::progress::forward_waits(progress.as_ref(), async {
            tokio::select! {
                connected = connect(ctx, req, &notes) => Ok(connected),
                reason = stop.stopped() => Err(reason),
            }
        })
        .await;
        let outcome = match connected {
            Ok(Ok((source, destination))) => {
                let clients = (source.as_ref(), destination.as_ref());
                self.run_with(clients, notes, &stop, &progress).await
            }
            Ok(Err(message)) => ImportOutcome::failed(started, ctx.clock.now(), message),
            Err(reason) => {
                let mut outcome = ImportOutcome::failed(
                    started,
                    ctx.clock.now(),
                    format!("Interrupted: {reason}; stopped while connecting; nothing was written"),
                );
                outcome.status.phase = ImportPhase::Interrupted;
                outcome
            }
        };
        ticker.abort();
        ctx.forget_stop_signal(&key, &stop);
        outcome
    }

    /// The import itself, once both clients are connected.
    async fn run_with(
        &self,
        (source, destination): (&dyn EmployeeSource, &dyn MemberDirectory),
        notes: ConvergenceNotes,
        stop: &StopSignal,
        progress: &ProgressCounter,
    ) -> ImportOutcome {
        let (ctx, req, fti) = (&self.ctx, &self.req, self.fti());
        let options = ImportOptions {
            dry_run: req.start.dry_run,
            max_leavers_percent: fti.spec.safety.max_leavers_percent,
            approved_leavers: self.approved_leavers().await,
            profile: fti.spec.destination.scim.profile,
            stop: stop.clone(),
            convergence: notes,
            when_removed: fti.spec.leavers.when_removed,
            mode: Some(req.mode.clone()),
            deadline: Some(
                crate::connect::run_deadline(&fti.spec)
                    .unwrap_or(std::time::Duration::from_secs(24 * 60 * 60)),
            ),
        };
        let invitations = (fti.spec.welcome_email.enabled && !req.start.dry_run)
            .then_some(&self.outbox as &dyn OutboxStore);
        run_import(&ImportJob {
            mapping: &req.mapping,
            source,
            destination,
            options: &options,
            stores: crate::sync::Stores {
                outbox: invitations,
                ledger: Some(&self.ledger as &dyn LedgerStore),
            },
            progress,
            clock: ctx.clock.as_ref(),
        })
        .await
    }

    /// Record: the convergence notes, the e-mails, the report and the run's status, the
    /// integration's `lastImport` (and preview), the outcome's Event and metrics, then
    /// history pruning.
    async fn record(&self, started: DateTime<Utc>, mut outcome: ImportOutcome) {
        self.save_notes(&mut outcome).await;
        self.notify(&mut outcome).await;
        let status = self.record_run_status(&outcome).await;
        self.record_last_import(&status, &outcome).await;
        self.announce(&status, &outcome, started).await;
        prune(&self.runs, self.fti()).await;
    }

    async fn save_notes(&self, outcome: &mut ImportOutcome) {
        let Some(written) = &outcome.convergence else {
            return;
        };
        if let Err(e) = self.notes.save(written).await {
            outcome.add_warnings([crate::api::RecordError {
                severity: Severity::Warning,
                message: format!("convergence notes could not be saved ({e}): the next run may write unkept values again"),
                ..crate::api::RecordError::default()
            }]);
        }
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
        if outcome.status.summary.warnings > 0 {
            // Members held back because their state could not be recorded say so here too.
            if let Some(m) = outcome
                .status
                .message
                .as_deref()
                .filter(|m| m.contains("not created:"))
            {
                self.ctx
                    .event(fti, EventType::Warning, "MembersNotCreated", m.to_string())
                    .await;
            }
        }
        for w in notify_after_run(&self.ctx.mail, Some(&self.outbox), &info, outcome).await {
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
        if let Err(e) = patch_run_status(
            &self.runs,
            name,
            serde_json::to_value(&status).expect("status serialises"),
        )
        .await
        {
            tracing::warn!(run = %name, error = %e, "could not record the run's outcome");
        }
        status
    }

    /// The integration's view of the run: `lastImport`, and `preview` for a preview.
    async fn record_last_import(&self, status: &ImportRunStatus, outcome: &ImportOutcome) {
        let name = self.name();
        let last = LastImport {
            run_name: name.to_string(),
            phase: status.phase,
            start_time: status.start_time.clone(),
            completion_time: status.completion_time.clone(),
            summary: status.summary.clone(),
            unsupported_mapping_targets: (status.phase != ImportPhase::Failed)
                .then(|| outcome.unsupported_targets.clone()),
        };
        let mut patch = json!({ "status": { "lastImport": last } });
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
            };
            patch["status"]["preview"] = serde_json::to_value(preview).expect("preview serialises");
        }
        self.patch_integration_status(&patch, "lastImport").await;
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
        if let Some(metrics) = &self.ctx.metrics {
            let elapsed = (self.ctx.clock.now() - started)
                .to_std()
                .unwrap_or_default();
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

/// The integration a run belongs to, checked on every progress tick: once it is deleted
/// (or re-created under the same name) or suspended, the run is asked to stop.
struct Watched {
    integration: Arc<FreshteamIntegration>,
    stop: crate::sync::StopSignal,
}

impl Watched {
    async fn check(&self, ctx: &Context) {
        let fti = &self.integration;
        let api: Api<FreshteamIntegration> =
            Api::namespaced(ctx.client.clone(), &fti.namespace().unwrap_or_default());
        let reason = match api.get_opt(&fti.name_any()).await {
            Ok(None) => Some("the integration was deleted"),
            Ok(Some(now)) if now.metadata.uid != fti.metadata.uid => {
                Some("the integration was deleted (and re-created)")
            }
            Ok(Some(now)) if now.metadata.deletion_timestamp.is_some() => {
                Some("the integration is being deleted")
            }
            Ok(Some(now)) if now.spec.suspend => Some("spec.suspend was set to true"),
            // An API hiccup is no reason to stop.
            _ => None,
        };
        if let Some(reason) = reason {
            self.stop.stop(reason);
        }
    }
}

fn spawn_progress_ticker(
    ctx: Arc<Context>,
    runs: Api<ImportRun>,
    name: String,
    progress: Arc<ProgressCounter>,
    watched: Watched,
) -> tokio::task::JoinHandle<()> {
    // In the run's span: what it logs belongs to the run.
    tokio::spawn(
        async move {
            let (mut last, mut last_wait) = (None, None);
            loop {
                tokio::time::sleep(ctx.config.progress_interval).await;
                let now = progress.snapshot();
                if last.as_ref() != Some(&now) {
                    let _ = patch_run_status(&runs, &name, json!({ "progress": now })).await;
                    last = Some(now);
                }
                // While the run waits for the destination's rate limit, its message says
                // so and until when; cleared when it resumes.
                let wait = progress.waiting();
                if wait != last_wait {
                    let _ = patch_run_status(&runs, &name, json!({ "message": wait })).await;
                    last_wait = wait;
                }
                watched.check(&ctx).await;
            }
        }
        .in_current_span(),
    )
}

/// Bytes of CSV per report ConfigMap: a report larger than that is split over
/// `<run>-errors`, `<run>-errors-2`, … (each under the 1 MiB object limit).
pub const REPORT_PART_BYTES: usize = 900 * 1024;

async fn store_report(
    ctx: &Context,
    runs: &Api<ImportRun>,
    ns: &str,
    run: &str,
    parts: &[String],
) -> Result<ErrorReportRef, String> {
    let owner = runs
        .get(run)
        .await
        .map_err(|e| e.to_string())?
        .controller_owner_ref(&());
    let run_uid = owner.as_ref().map(|o| o.uid.clone());
    let name = format!("{run}-errors");
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    for (i, csv) in parts.iter().enumerate() {
        let part_name = report_part_name(&name, i);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(part_name.clone()),
                namespace: Some(ns.to_string()),
                owner_references: owner.clone().map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("errors.csv".to_string(), csv.clone())])),
            ..ConfigMap::default()
        };
        // Created once and never replaced (the operator may not update ConfigMaps): a
        // part already there counts only if this run owns it.
        match cms.create(&PostParams::default(), &cm).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = cms.get(&part_name).await.map_err(|e| e.to_string())?;
                let ours = existing
                    .owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == run_uid.as_ref());
                if !ours {
                    return Err(format!(
                        "ConfigMap {part_name} already exists and is not this run's report"
                    ));
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(ErrorReportRef {
        config_map_name: name,
        key: "errors.csv".into(),
        parts: (parts.len() > 1).then_some(parts.len() as u32),
    })
}

/// Deletes runs beyond the history limits (their report ConfigMaps go with them through
/// the owner reference).
pub async fn prune(runs: &Api<ImportRun>, fti: &FreshteamIntegration) {
    let selector = format!("{INTEGRATION_LABEL}={}", fti.name_any());
    let Ok(list) = runs.list(&ListParams::default().labels(&selector)).await else {
        return;
    };
    let entries: Vec<RunEntry> = list
        .items
        .iter()
        .map(|r| RunEntry {
            name: r.name_any(),
            phase: r.status.as_ref().map(|s| s.phase).unwrap_or_default(),
            created: r
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .or_else(|| r.status.as_ref().and_then(|s| s.start_time.clone()))
                .unwrap_or_else(|| r.name_any()),
        })
        .collect();
    for name in runs_to_prune(&entries, &fti.spec.history) {
        if let Err(e) = runs.delete(&name, &DeleteParams::background()).await {
            tracing::warn!(run = %name, error = %e, "could not prune an ImportRun");
        }
    }
}

/// Marks runs left `Pending`/`Running` by a process that died as `Interrupted`. Called
/// by a new leader before it starts any run, so none of these can still be running.
pub async fn mark_interrupted(ctx: &Context, runs: &Api<ImportRun>) -> Result<u32, kube::Error> {
    let mut n = 0;
    for r in runs.list(&ListParams::default()).await?.items {
        let phase = r.status.as_ref().map(|s| s.phase).unwrap_or_default();
        if phase.is_final() {
            continue;
        }
        let ns = r.namespace().unwrap_or_default();
        let name = r.name_any();
        let integrations: Api<FreshteamIntegration> = Api::namespaced(ctx.client.clone(), &ns);
        let owner = integrations.get_opt(&r.spec.integration).await?;
        if owner.as_ref().is_some_and(|f| !ctx.in_shard(f)) {
            // Another shard's run: its own leader deals with it.
            continue;
        }
        let api: Api<ImportRun> = Api::namespaced(ctx.client.clone(), &ns);
        let now = rfc3339(ctx.clock.now());
        patch_run_status(
            &api,
            &name,
            json!({"phase": "Interrupted", "completionTime": now,
                   "message": "the operator stopped during this run; the next run converges"}),
        )
        .await?;
        let integrations: Api<FreshteamIntegration> = Api::namespaced(ctx.client.clone(), &ns);
        if let Ok(Some(fti)) = integrations.get_opt(&r.spec.integration).await {
            let last = fti.status.as_ref().and_then(|s| s.last_import.as_ref());
            let mut patch = json!({});
            // The interrupted run is the last import unless a later one was recorded.
            let started = r.status.as_ref().and_then(|s| s.start_time.clone());
            if last.is_none_or(|l| l.run_name == name || l.start_time < started) {
                let interrupted = LastImport {
                    run_name: name.clone(),
                    phase: ImportPhase::Interrupted,
                    start_time: started,
                    completion_time: Some(now.clone()),
                    summary: r
                        .status
                        .as_ref()
                        .map(|s| s.summary.clone())
                        .unwrap_or_default(),
                    // Keeps what the previous import found out about the destination.
                    unsupported_mapping_targets: last
                        .and_then(|l| l.unsupported_mapping_targets.clone()),
                };
                patch["lastImport"] = serde_json::to_value(interrupted).expect("serialises");
            }
            let preview = fti.status.as_ref().and_then(|s| s.preview.as_ref());
            if preview.is_some_and(|p| p.run_name == name) {
                // Not a finished preview: the next reconcile computes it again.
                patch["preview"] = json!({"phase": "Interrupted"});
            }
            if patch != json!({}) {
                let _ = integrations
                    .patch_status(
                        &r.spec.integration,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "status": patch })),
                    )
                    .await;
            }
        }
        n += 1;
    }
    Ok(n)
}
