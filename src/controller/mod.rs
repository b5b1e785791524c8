//! The Kubernetes controller: FreshteamIntegrations reconciled into scheduled imports
//! with ImportRun history.

pub(crate) mod authorization_queue;
pub(crate) mod conditions;
pub mod decide;
pub(crate) mod history;
pub mod leader;
pub(crate) mod operator;
pub mod reconcile;
pub mod registry;
pub mod runner;
pub mod shard;
pub(crate) mod status;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};

use crate::api::FreshteamIntegration;
use crate::clock::Clock;
use crate::connect::Connector;

pub use reconcile::{error_policy, reconcile};

/// Default of `--authorizations-per-second`: a restart that has to authorize 10,000
/// integrations spreads them over about 17 minutes.
pub const DEFAULT_AUTHORIZATIONS_PER_SECOND: f64 = 10.0;

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Accept `spec.source.baseUrl` and plain-http SCIM URLs.
    pub allow_custom_endpoints: bool,
    /// Imports running at once across all integrations.
    pub max_concurrent_imports: usize,
    /// How often a running import's progress is written to its ImportRun.
    pub progress_interval: Duration,
    /// Imports at once against one Freshteam account (they share its quota).
    pub max_imports_per_account: usize,
    /// Imports at once against one destination host.
    pub max_imports_per_destination: usize,
    /// Authorizations against Freshteam per second across the operator.
    pub authorizations_per_second: f64,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            allow_custom_endpoints: false,
            max_concurrent_imports: 2,
            progress_interval: Duration::from_secs(2),
            max_imports_per_account: 2,
            max_imports_per_destination: 2,
            authorizations_per_second: DEFAULT_AUTHORIZATIONS_PER_SECOND,
        }
    }
}

/// What every reconcile and every run shares.
pub struct Context {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    pub config: OperatorConfig,
    pub connector: Arc<dyn Connector>,
    pub recorder: Option<Recorder>,
    pub metrics: Option<crate::telemetry::Metrics>,
    /// E-mail: invitations and summaries (no transport: skipped with a warning).
    pub mail: crate::notify::Mail,
    /// The integrations this operator serves (`--shard-selector`); `None`: all.
    pub shard: Option<shard::ShardSelector>,
    /// The runs under way, their stop signals, and admission.
    pub runs: registry::RunRegistry,
    /// Turns to authorize, under one rate for the whole operator.
    pub authorizations: authorization_queue::AuthorizationQueue,
    /// Users' on-demand ImportRuns waiting to start, as the watch saw them.
    pub on_demand: runner::PendingOnDemand,
}

impl Context {
    pub fn new(
        client: Client,
        clock: Arc<dyn Clock>,
        config: OperatorConfig,
        connector: Arc<dyn Connector>,
        reporter: Option<Reporter>,
        metrics: Option<crate::telemetry::Metrics>,
    ) -> Self {
        Context {
            recorder: reporter.map(|r| Recorder::new(client.clone(), r)),
            runs: registry::RunRegistry::new(&config),
            authorizations: authorization_queue::AuthorizationQueue::new(
                config.authorizations_per_second,
            ),
            client,
            clock,
            config,
            connector,
            metrics,
            mail: crate::notify::Mail::default(),
            shard: None,
            on_demand: runner::PendingOnDemand::default(),
        }
    }

    /// Sets how e-mail is sent.
    pub fn with_mail(mut self, mail: crate::notify::Mail) -> Self {
        self.mail = mail;
        self
    }

    /// Serves only the integrations matching `selector`.
    pub fn with_shard(mut self, selector: Option<shard::ShardSelector>) -> Self {
        self.shard = selector;
        self
    }

    /// True when this operator serves the integration.
    pub fn in_shard(&self, fti: &FreshteamIntegration) -> bool {
        self.shard.as_ref().is_none_or(|s| s.matches(fti.labels()))
    }

    /// Waits until no run is under way (tests, and shutdown).
    pub async fn wait_idle(&self) {
        self.runs.wait_idle().await
    }

    /// Publishes an Event on the integration (best effort: a failed Event never fails a
    /// reconcile).
    async fn event(
        &self,
        fti: &FreshteamIntegration,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &fti.object_ref(&())).await {
            tracing::debug!(error = %e, "could not publish an Event");
        }
    }
}
