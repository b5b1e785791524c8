//! The run registry: the runs under way in this process (one per integration), their stop
//! signals, and admission (import slots per Freshteam account, per destination host and
//! across the operator, with the count of runs waiting for one).
//!
//! The reconciler asks it whether a run is under way, starts runs through it and asks it
//! to stop them; a run acquires its slots from it before it starts importing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::OperatorConfig;
use crate::api::FreshteamIntegrationSpec;
use crate::connect::account_key;
use crate::sync::StopSignal;
use crate::telemetry::{Metrics, RunningImport};

/// How many imports may run at once, overall and per key.
#[derive(Clone, Copy, Debug)]
struct Limits {
    per_account: usize,
    per_destination: usize,
}

/// Runs under way and the slots they hold, by integration key (`namespace/name`).
pub struct RunRegistry {
    limits: Limits,
    /// Import slots across the operator.
    slots: Arc<Semaphore>,
    /// Import slots per Freshteam account and per destination host.
    keyed_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Runs waiting for a slot.
    waiting: AtomicUsize,
    active: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Stop signals of the runs under way.
    stops: Mutex<HashMap<String, StopSignal>>,
}

/// The permits a run holds until it has recorded its outcome (dropped in this order).
pub struct Slots {
    _running: Option<RunningImport>,
    _global: Result<OwnedSemaphorePermit, AcquireError>,
    _destination: Result<OwnedSemaphorePermit, AcquireError>,
    _account: Result<OwnedSemaphorePermit, AcquireError>,
}

impl RunRegistry {
    pub fn new(config: &OperatorConfig) -> Self {
        RunRegistry {
            limits: Limits {
                per_account: config.max_imports_per_account,
                per_destination: config.max_imports_per_destination,
            },
            slots: Arc::new(Semaphore::new(config.max_concurrent_imports.max(1))),
            keyed_slots: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            active: Mutex::new(HashMap::new()),
            stops: Mutex::new(HashMap::new()),
        }
    }

    /// The import-slot semaphore for `key` (an account or a destination), created with
    /// `permits` on first use.
    fn slot(&self, key: &str, permits: usize) -> Arc<Semaphore> {
        self.keyed_slots
            .lock()
            .expect("slots lock")
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(permits.max(1))))
            .clone()
    }

    /// Admission: the run's Freshteam account slot and destination slot first, the global
    /// slot last (a run waiting for a busy account must not hold a slot that another
    /// tenant's run could use), counted in the queue depth while it waits.
    pub async fn admit(&self, spec: &FreshteamIntegrationSpec, metrics: Option<&Metrics>) -> Slots {
        let waiting = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(m) = metrics {
            m.set_queue_depth(waiting);
        }
        let account = self
            .slot(
                &format!("freshteam {}", account_key(spec)),
                self.limits.per_account,
            )
            .acquire_owned()
            .await;
        let destination_host = url::Url::parse(&spec.destination.scim.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let destination = self
            .slot(
                &format!("destination {destination_host}"),
                self.limits.per_destination,
            )
            .acquire_owned()
            .await;
        let global = self.slots.clone().acquire_owned().await;
        let waiting = self.waiting.fetch_sub(1, Ordering::Relaxed) - 1;
        if let Some(m) = metrics {
            m.set_queue_depth(waiting);
        }
        Slots {
            _running: metrics.map(|m| m.running_import()),
            _global: global,
            _destination: destination,
            _account: account,
        }
    }

    /// True while a run of the integration `namespace/name` is under way.
    pub fn is_running(&self, key: &str) -> bool {
        let mut active = self.active.lock().expect("active runs lock");
        active.retain(|_, h| !h.is_finished());
        active.contains_key(key)
    }

    /// A fresh stop signal for the run of `key` about to start.
    pub(crate) fn stop_signal(&self, key: &str) -> StopSignal {
        let signal = StopSignal::default();
        self.stops
            .lock()
            .expect("stop signals lock")
            .insert(key.to_string(), signal.clone());
        signal
    }

    pub(crate) fn forget_stop_signal(&self, key: &str, signal: &StopSignal) {
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

    /// Starts the run of `key` in the background.
    pub(crate) fn start(&self, key: &str, run: impl Future<Output = ()> + Send + 'static) {
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
}
