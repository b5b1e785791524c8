//! Prometheus metrics of the operator, exposed in the OpenMetrics text format.
//!
//! Family names and label names are a contract: dashboards and alert rules select on
//! them. Labels only ever carry namespace and integration names, destination hosts,
//! phases, triggers and fixed kinds, never anything read from a Secret or an employee
//! record.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::api::{ApiCalls, ImportPhase, ImportRunStatus, ImportTrigger};
use crate::sync::ImportOutcome;

/// Upper bounds (seconds) of the import duration histogram: a small directory imports in
/// seconds, a large one throttled by Freshteam's rate limit can take most of an hour.
pub(crate) const IMPORT_DURATION_BUCKETS: [f64; 12] = [
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

const ALL_PHASES: [ImportPhase; 7] = [
    ImportPhase::Pending,
    ImportPhase::Running,
    ImportPhase::Succeeded,
    ImportPhase::PartiallySucceeded,
    ImportPhase::Failed,
    ImportPhase::Interrupted,
    ImportPhase::Blocked,
];

const ALL_TRIGGERS: [ImportTrigger; 3] = [
    ImportTrigger::Scheduled,
    ImportTrigger::Manual,
    ImportTrigger::Preview,
];

const MEMBER_KINDS: [&str; 5] = ["created", "updated", "reactivated", "leaver", "error"];

/// The `trigger` label value of a run.
pub(crate) fn trigger_label(trigger: ImportTrigger) -> &'static str {
    match trigger {
        ImportTrigger::Scheduled => "Scheduled",
        ImportTrigger::Manual => "Manual",
        ImportTrigger::Preview => "Preview",
        ImportTrigger::OnDemand => "OnDemand",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntegrationLabels {
    namespace: String,
    integration: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ImportLabels {
    namespace: String,
    integration: String,
    phase: &'static str,
    trigger: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    namespace: String,
    integration: String,
    trigger: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    namespace: String,
    integration: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    system: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SystemLabels {
    system: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    namespace: String,
    integration: String,
    reason: String,
}

type DurationFamily = Family<DurationLabels, Histogram, fn() -> Histogram>;

struct Inner {
    registry: Registry,
    imports: Family<ImportLabels, Counter>,
    import_duration: DurationFamily,
    members_changed: Family<MemberLabels, Counter>,
    api_requests: Family<ApiLabels, Counter>,
    api_throttled: Family<SystemLabels, Counter>,
    api_retries: Family<SystemLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconciliations: Family<IntegrationLabels, Counter>,
    imports_running: Gauge,
    queue_depth: Gauge,
    last_success: Family<IntegrationLabels, Gauge<f64, AtomicU64>>,
    leavers_awaiting: Family<IntegrationLabels, Gauge>,
    authorized: Family<IntegrationLabels, Gauge>,
    /// Per destination host, read from the process's budgets (`crate::http_policy`) when
    /// the metrics are encoded.
    destination_requests: Family<HostLabels, Counter>,
    destination_throttled: Family<HostLabels, Counter>,
    destination_budget_wait: Family<HostLabels, Counter<f64, AtomicU64>>,
    /// Reasons seen per integration: `reason` is the one open-ended label, and a family
    /// cannot list its series, so `forget` needs this to find them.
    error_reasons: Mutex<HashMap<IntegrationLabels, BTreeSet<String>>>,
}

/// The operator's metrics. Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(IMPORT_DURATION_BUCKETS)
}

fn key(namespace: &str, integration: &str) -> IntegrationLabels {
    IntegrationLabels {
        namespace: namespace.to_string(),
        integration: integration.to_string(),
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("freshteam");

        let imports = Family::<ImportLabels, Counter>::default();
        registry.register(
            "imports",
            "Finished import runs, by integration, final phase and trigger",
            imports.clone(),
        );
        let import_duration: DurationFamily =
            Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "import_duration",
            "Wall-clock duration of finished import runs",
            Unit::Seconds,
            import_duration.clone(),
        );
        let members_changed = Family::<MemberLabels, Counter>::default();
        registry.register(
            "members_changed",
            "Members created, updated, reactivated or marked as leavers by imports, and records rejected (kind=error); preview runs are not counted",
            members_changed.clone(),
        );
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests made by imports: freshteam list pages, detail and lookup reads; destination reads, writes (including operations inside /Bulk requests) and /Bulk requests",
            api_requests.clone(),
        );
        let api_throttled = Family::<SystemLabels, Counter>::default();
        registry.register(
            "api_throttled",
            "Requests answered 429 Too Many Requests",
            api_throttled.clone(),
        );
        let api_retries = Family::<SystemLabels, Counter>::default();
        registry.register(
            "api_retries",
            "Requests repeated after a 5xx, a timeout or a connection error",
            api_retries.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciliations of an integration that ended in an error, by reason",
            reconcile_errors.clone(),
        );
        let reconciliations = Family::<IntegrationLabels, Counter>::default();
        registry.register(
            "reconciliations",
            "Reconciliations of an integration",
            reconciliations.clone(),
        );
        let imports_running = Gauge::default();
        registry.register(
            "imports_running",
            "Imports running now",
            imports_running.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "import_queue_depth",
            "Integrations waiting for an import slot",
            queue_depth.clone(),
        );
        let last_success = Family::<IntegrationLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "last_successful_import_timestamp",
            "Completion time (Unix seconds) of the integration's last Succeeded or PartiallySucceeded non-preview import",
            Unit::Seconds,
            last_success.clone(),
        );
        let leavers_awaiting = Family::<IntegrationLabels, Gauge>::default();
        registry.register(
            "leavers_awaiting_approval",
            "Leavers held back by safety.maxLeaversPercent until the Blocked run is approved",
            leavers_awaiting.clone(),
        );
        let authorized = Family::<IntegrationLabels, Gauge>::default();
        registry.register(
            "authorized",
            "1 when the integration's Freshteam API key was accepted, 0 otherwise",
            authorized.clone(),
        );
        let destination_requests = Family::<HostLabels, Counter>::default();
        registry.register(
            "destination_requests",
            "Requests sent to a SCIM destination host by every integration of the process (each attempt counts)",
            destination_requests.clone(),
        );
        let destination_throttled = Family::<HostLabels, Counter>::default();
        registry.register(
            "destination_throttled",
            "Requests a SCIM destination host answered 429 Too Many Requests (each is sent again once its budget reopens)",
            destination_throttled.clone(),
        );
        let destination_budget_wait = Family::<HostLabels, Counter<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "destination_budget_wait",
            "Time requests to a SCIM destination host spent waiting for its rate limit to reopen (the first request in line of each endpoint's budget)",
            Unit::Seconds,
            destination_budget_wait.clone(),
        );

        Metrics {
            inner: Arc::new(Inner {
                registry,
                imports,
                import_duration,
                members_changed,
                api_requests,
                api_throttled,
                api_retries,
                reconcile_errors,
                reconciliations,
                imports_running,
                queue_depth,
                last_success,
                leavers_awaiting,
                authorized,
                destination_requests,
                destination_throttled,
                destination_budget_wait,
                error_reasons: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Records a finished run: its phase and duration, the members it changed, the API
    /// requests it made and, for a successful non-preview run, the last-success time.
    ///
    /// A successful non-preview run also clears `leavers_awaiting_approval` (its plan was
    /// not blocked). The count of a `Blocked` run is not in the status; pass it with
    /// [`Metrics::set_leavers_awaiting_approval`], or use [`Metrics::record_outcome`].
    ///
    /// Preview runs (dry runs of unpublished integrations) change no member, so they add
    /// nothing to `members_changed` and never count as a successful import.
    pub fn record_run(
        &self,
        namespace: &str,
        integration: &str,
        trigger: ImportTrigger,
        status: &ImportRunStatus,
        duration: Duration,
    ) {
        let m = &self.inner;
        let trigger_str = trigger_label(trigger);
        m.imports
            .get_or_create(&ImportLabels {
                namespace: namespace.to_string(),
                integration: integration.to_string(),
                phase: status.phase.as_str(),
                trigger: trigger_str,
            })
            .inc();
        m.import_duration
            .get_or_create(&DurationLabels {
                namespace: namespace.to_string(),
                integration: integration.to_string(),
                trigger: trigger_str,
            })
            .observe(duration.as_secs_f64());

        if let Some(calls) = &status.api_calls {
            self.record_api_calls(calls);
        }

        if trigger == ImportTrigger::Preview {
            return;
        }
        let s = &status.summary;
        for (kind, n) in [
            ("created", s.created),
            ("updated", s.updated),
            ("reactivated", s.reactivated),
            ("leaver", s.leavers),
            ("error", s.errors),
        ] {
            // Touch every kind so a dashboard sees 0 rather than "no data".
            m.members_changed
                .get_or_create(&MemberLabels {
                    namespace: namespace.to_string(),
                    integration: integration.to_string(),
                    kind,
                })
                .inc_by(n as u64);
        }
        if status.phase.is_successful() {
            let at = status
                .completion_time
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis() as f64 / 1000.0)
                .unwrap_or_else(now_seconds);
            let k = key(namespace, integration);
            m.last_success.get_or_create(&k).set(at);
            m.leavers_awaiting.get_or_create(&k).set(0);
        }
    }

    /// [`Metrics::record_run`] for a run this process executed, plus the leavers a
    /// `Blocked` run held back.
    pub fn record_outcome(
        &self,
        namespace: &str,
        integration: &str,
        trigger: ImportTrigger,
        outcome: &ImportOutcome,
        duration: Duration,
    ) {
        self.record_run(namespace, integration, trigger, &outcome.status, duration);
        if outcome.status.phase == ImportPhase::Blocked && trigger != ImportTrigger::Preview {
            self.set_leavers_awaiting_approval(namespace, integration, outcome.blocked_leavers);
        }
    }

    fn record_api_calls(&self, c: &ApiCalls) {
        let m = &self.inner;
        for (system, kind, n) in [
            ("freshteam", "list", c.freshteam_list),
            ("freshteam", "detail", c.freshteam_detail),
            ("freshteam", "lookup", c.freshteam_lookups),
            ("destination", "read", c.destination_reads),
            ("destination", "write", c.destination_writes),
            ("destination", "bulk", c.destination_bulk),
        ] {
            m.api_requests
                .get_or_create(&ApiLabels { system, kind })
                .inc_by(n as u64);
        }
        // The destination client does not report throttling or retries yet, so only
        // Freshteam has these series; a permanent 0 for the destination would mislead.
        let freshteam = SystemLabels {
            system: "freshteam",
        };
        m.api_throttled
            .get_or_create(&freshteam)
            .inc_by(c.freshteam_throttled as u64);
        m.api_retries
            .get_or_create(&freshteam)
            .inc_by(c.freshteam_retries as u64);
    }

    /// Counts one reconciliation of an integration.
    pub fn reconcile(&self, namespace: &str, integration: &str) {
        self.inner
            .reconciliations
            .get_or_create(&key(namespace, integration))
            .inc();
    }

    /// Counts a failed reconciliation. `reason` must be a short, stable identifier
    /// (`Unauthorized`, `SecretNotFound`, `InvalidMapping`, ...), never an error message:
    /// each distinct value is a new time series, and messages may quote user data.
    pub fn reconcile_error(&self, namespace: &str, integration: &str, reason: &str) {
        let k = key(namespace, integration);
        self.inner
            .error_reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(k)
            .or_default()
            .insert(reason.to_string());
        self.inner
            .reconcile_errors
            .get_or_create(&ErrorLabels {
                namespace: namespace.to_string(),
                integration: integration.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Whether the integration's Freshteam API key is currently accepted.
    pub fn set_authorized(&self, namespace: &str, integration: &str, authorized: bool) {
        self.inner
            .authorized
            .get_or_create(&key(namespace, integration))
            .set(i64::from(authorized));
    }

    /// Leavers a `Blocked` run holds back until approved; 0 once approved or superseded.
    pub fn set_leavers_awaiting_approval(&self, namespace: &str, integration: &str, n: u32) {
        self.inner
            .leavers_awaiting
            .get_or_create(&key(namespace, integration))
            .set(i64::from(n));
    }

    pub fn import_started(&self) {
        self.inner.imports_running.inc();
    }

    pub fn import_finished(&self) {
        self.inner.imports_running.dec();
    }

    /// Counts an import as running until the returned guard is dropped, so a run that
    /// panics or is cancelled still leaves the gauge right.
    pub fn running_import(&self) -> RunningImport {
        self.import_started();
        RunningImport {
            metrics: self.clone(),
        }
    }

    /// Integrations waiting for an import slot.
    pub fn set_queue_depth(&self, n: usize) {
        self.inner
            .queue_depth
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Drops every series of a deleted integration, so it stops being scraped (and stops
    /// tripping "no recent successful import" alerts). Process-wide families
    /// (`api_*`, `imports_running`, `import_queue_depth`) keep their totals.
    pub fn forget(&self, namespace: &str, integration: &str) {
        let m = &self.inner;
        let k = key(namespace, integration);
        for trigger in ALL_TRIGGERS.map(trigger_label) {
            for phase in ALL_PHASES.map(ImportPhase::as_str) {
                m.imports.remove(&ImportLabels {
                    namespace: k.namespace.clone(),
                    integration: k.integration.clone(),
                    phase,
                    trigger,
                });
            }
            m.import_duration.remove(&DurationLabels {
                namespace: k.namespace.clone(),
                integration: k.integration.clone(),
                trigger,
            });
        }
        for kind in MEMBER_KINDS {
            m.members_changed.remove(&MemberLabels {
                namespace: k.namespace.clone(),
                integration: k.integration.clone(),
                kind,
            });
        }
        let reasons = m
            .error_reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&k)
            .unwrap_or_default();
        for reason in reasons {
            m.reconcile_errors.remove(&ErrorLabels {
                namespace: k.namespace.clone(),
                integration: k.integration.clone(),
                reason,
            });
        }
        m.reconciliations.remove(&k);
        m.last_success.remove(&k);
        m.leavers_awaiting.remove(&k);
        m.authorized.remove(&k);
    }

    /// The OpenMetrics text exposition, ending with `# EOF`.
    pub fn encode(&self) -> String {
        self.read_budgets();
        let mut out = String::new();
        // Writing into a String cannot fail; the error type is only fmt's.
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("encoding metrics into a String");
        out
    }
}

impl Metrics {
    /// Brings the destination families up to what the process's budgets counted.
    fn read_budgets(&self) {
        let m = &self.inner;
        for (host, counts) in crate::http_policy::budgets().counts() {
            let labels = HostLabels { host };
            let catch_up = |c: &Counter, to: u64| {
                let now = c.get();
                if to > now {
                    c.inc_by(to - now);
                }
            };
            catch_up(
                &m.destination_requests.get_or_create(&labels),
                counts.requests,
            );
            catch_up(
                &m.destination_throttled.get_or_create(&labels),
                counts.throttled,
            );
            let wait = m.destination_budget_wait.get_or_create(&labels);
            let now = wait.get();
            if counts.wait_seconds > now {
                wait.inc_by(counts.wait_seconds - now);
            }
        }
    }
}

/// An import counted in `freshteam_imports_running`; see [`Metrics::running_import`].
#[must_use = "the import stops counting as running when this is dropped"]
#[derive(Debug)]
pub struct RunningImport {
    metrics: Metrics,
}

impl Drop for RunningImport {
    fn drop(&mut self) {
        self.metrics.import_finished();
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
