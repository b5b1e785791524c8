//! The Kubernetes controller: FreshteamIntegrations reconciled into scheduled imports
//! with ImportRun history.

pub(crate) mod authorization_queue;
pub(crate) mod conditions;
pub mod decide;
pub(crate) mod history;
pub mod leader;
pub(crate) mod operator;
pub mod reconcile;
pub mod runner;
pub mod shard;
pub mod state;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

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
    /// Import slots per Freshteam account and per destination host.
    keyed_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    pub slots: Arc<Semaphore>,
    /// Runs waiting for a slot.
    pub waiting: AtomicUsize,
    /// Turns to authorize, under one rate for the whole operator.
    pub authorizations: authorization_queue::AuthorizationQueue,
    active: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Stop signals of the runs under way, by integration key.
    stops: Mutex<HashMap<String, crate::sync::StopSignal>>,
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
            slots: Arc::new(Semaphore::new(config.max_concurrent_imports.max(1))),
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
            keyed_slots: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            active: Mutex::new(HashMap::new()),
            stops: Mutex::new(HashMap::new()),
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

    /// The import-slot semaphore for `key` (an account or a destination), created with
    /// `permits` on first use.
    pub fn slot(&self, key: &str, permits: usize) -> Arc<Semaphore> {
        self.keyed_slots
            .lock()
            .expect("slots lock")
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(permits.max(1))))
            .clone()
    }

    /// True while a run of the integration `namespace/name` is under way.
    pub fn is_running(&self, key: &str) -> bool {
        let mut active = self.active.lock().expect("active runs lock");
        active.retain(|_, h| !h.is_finished());
        active.contains_key(key)
    }

    /// A fresh stop signal for the run of `key` about to start.
    pub(crate) fn stop_signal(&self, key: &str) -> crate::sync::StopSignal {
        let signal = crate::sync::StopSignal::default();
        self.stops
            .lock()
            .expect("stop signals lock")
            .insert(key.to_string(), signal.clone());
        signal
    }

    pub(crate) fn forget_stop_signal(&self, key: &str, signal: &crate::sync::StopSignal) {
        let mut stops = self.stops.lock().expect("stop signals lock");
        if stops.get(key).is_some_and(|s| s.same(signal)) {
            stops.remove(key);
        }
    }

    /// Asks the run of `namespace/name`, if one is under way, to stop at its next safe
    /// point. Returns whether there was one.
    pub fn stop_run(&self, key: &str, reason: &str) -> bool {
        let signal = self
            .stops
            .lock()
            .expect("stop signals lock")
            .get(key)
            .cloned();
        match signal {
            Some(s) if self.is_running(key) => {
                tracing::info!(integration = %key, %reason, "stopping the running import");
                s.stop(reason);
                true
            }
            _ => false,
        }
    }

    fn start(&self, key: &str, run: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(run);
        self.active
            .lock()
            .expect("active runs lock")
            .insert(key.to_string(), handle);
    }

    /// Waits until no run is under way (tests, and shutdown).
    pub async fn wait_idle(&self) {
        loop {
            let handles: Vec<JoinHandle<()>> = {
                let mut active = self.active.lock().expect("active runs lock");
                active.drain().map(|(_, h)| h).collect()
            };
            if handles.is_empty() {
                return;
            }
            for h in handles {
                let _ = h.await;
            }
        }
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
