//! One ImportRun from creation to its final phase: Pending → Running → outcome, with
//! progress patched while it runs, the error report in a ConfigMap owned by the run, the
//! integration's `lastImport`, Events, and history pruning.
//!
//! By concern: [`objects`] (the ImportRun object), this file (the run itself: admission
//! through the [`RunRegistry`](super::registry::RunRegistry), connect, import), [`record`]
//! (its status, `lastImport`, Events), [`progress`] (the ticker), [`reports`] (report
//! ConfigMaps), [`prune`] (history), [`orphans`] (runs a dead process left).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kube::{Api, Resource, ResourceExt};

use crate::api::{FreshteamIntegration, ImportPhase, ImportRun};
use crate::connect::ConnectError;
use crate::controller::decide::StartRun;
use crate::controller::status::RunProgress;
use crate::controller::Context;
use crate::destination::{ConvergenceNotes, MemberDirectory};
use crate::ledger::Ledger;
use crate::mapping::CompiledMapping;
use crate::notify::Outbox;
use crate::secret::SecretString;
use crate::source::EmployeeSource;
use crate::state::{ClusterStore, Store};
use crate::sync::mode::ModePolicy;
use crate::sync::{
    run_import, ImportJob, ImportOptions, ImportOutcome, ProgressCounter, StopSignal,
};

mod objects;
mod on_demand;
mod orphans;
mod progress;
mod prune;
mod record;
mod reports;

use objects::is_own_run;
pub use objects::{create_run, new_run};
pub(crate) use on_demand::{adopt, refusal, refuse, take};
pub use on_demand::{is_waiting, PendingOnDemand, MAX_ON_DEMAND_EMPLOYEES};
pub use orphans::mark_interrupted;
use progress::{spawn_progress_ticker, Watched};
pub use prune::prune;
pub use reports::REPORT_PART_BYTES;

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
    /// An on-demand run: only these Employee IDs (`spec.employeeIds`).
    pub only: Option<Vec<String>>,
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
    let _slots = (run.ctx.runs)
        .admit(&run.req.integration.spec, run.ctx.metrics.as_ref())
        .await;
    let started = run.record_start().await;
    let outcome = run.import(started).await;
    run.record(started, outcome).await;
}

/// Why a run could not connect: which side, and the connector's error.
#[derive(Debug, thiserror::Error)]
enum NotConnected {
    #[error("Freshteam: {}", .0.reason())]
    Source(ConnectError),
    #[error("destination: {}", .0.reason())]
    Destination(ConnectError),
}

/// The source and destination clients of a run, or why the run fails. The one place a
/// run calls the connector.
async fn connect(
    ctx: &Context,
    req: &RunRequest,
    notes: &ConvergenceNotes,
) -> Result<(Box<dyn EmployeeSource>, Box<dyn MemberDirectory>), NotConnected> {
    let fti = &req.integration;
    match (
        ctx.connector.source(&fti.spec, req.api_key.clone()).await,
        ctx.connector
            .destination(&fti.spec, req.token.clone(), notes)
            .await,
    ) {
        (Ok(source), Ok(destination)) => Ok((source, destination)),
        (Err(e), _) => Err(NotConnected::Source(e)),
        (_, Err(e)) => Err(NotConnected::Destination(e)),
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
    outbox: ClusterStore<Outbox>,
    ledger: ClusterStore<Ledger>,
    notes: ClusterStore<ConvergenceNotes>,
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
            outbox: ClusterStore::new(client.clone(), &ns, &integration, owner.clone()),
            ledger: ClusterStore::new(client.clone(), &ns, &integration, owner.clone()),
            notes: ClusterStore::new(client.clone(), &ns, &integration, owner),
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
}

impl Run {
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
        let stop = ctx.runs.stop_signal(&key);
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
            RunProgress::started(started),
        );
        // What earlier runs learnt about the destination spares requests when connecting.
        let notes = self.load_notes().await;
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
            // The run's status carries the error's text: the one place it becomes one.
            Ok(Err(e)) => ImportOutcome::failed(started, ctx.clock.now(), e.to_string()),
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
        ticker.stop().await;
        ctx.runs.forget_stop_signal(&key, &stop);
        outcome
    }

    /// The notes earlier runs kept. Unreadable notes are not a reason to fail a run:
    /// without them it writes what it would write anyway (an unkept value once more)
    /// and saves new ones; the failure is logged here, the one place that decides.
    async fn load_notes(&self) -> ConvergenceNotes {
        self.notes.load().await.unwrap_or_else(|e| {
            tracing::warn!(state = %self.notes.name(), error = %e, "cannot read the convergence notes; the run starts without them");
            ConvergenceNotes::default()
        })
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
            only: req.only.clone(),
        };
        let invitations = (fti.spec.welcome_email.enabled && !req.start.dry_run)
            .then_some(&self.outbox as &dyn Store<Outbox>);
        run_import(&ImportJob {
            mapping: &req.mapping,
            source,
            destination,
            options: &options,
            stores: crate::sync::Stores {
                outbox: invitations,
                ledger: Some(&self.ledger as &dyn Store<Ledger>),
                notes: Some(&self.notes as &dyn Store<ConvergenceNotes>),
            },
            progress,
            clock: ctx.clock.as_ref(),
        })
        .await
    }
}
