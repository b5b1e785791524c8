//! The process-wide registry of destination budgets: one [`Budget`] per service and
//! endpoint, shared by every integration of the process that talks to that service (one
//! operator pod is one client IP, and services such as Reward Gateway count requests per
//! endpoint per client IP), and per host the counts telemetry reports.
//!
//! Keying: a service is its origin and base path (`https://api.example.com/<programme>/scim/v2`);
//! an endpoint is the path below it with ids collapsed (`/Users`, `/Users/{id}`,
//! `/Schemas/{id}`). Budgets are always kept per endpoint: when the service counts per
//! endpoint that is exact, and when it counts for the whole service each endpoint's
//! budget still learns the shared `remaining` from its own answers (at worst one 429
//! per endpoint per window), whereas one budget fed by per-endpoint counters would mix
//! them and overshoot. A configured pace applies to each endpoint's budget.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::{Budget, Pace};

/// Counts of one host's budgets.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub(super) requests: AtomicU64,
    pub(super) throttled: AtomicU64,
    wait_micros: AtomicU64,
}

impl Counters {
    pub(super) fn add_wait(&self, d: Duration) {
        let micros = d.as_micros().min(u64::MAX as u128) as u64;
        self.wait_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// What one destination host's budgets counted since the process started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BudgetCounts {
    /// Requests let through.
    pub requests: u64,
    /// Requests the service answered 429.
    pub throttled: u64,
    /// Seconds the first request in line spent waiting for a budget to reopen.
    pub wait_seconds: f64,
}

/// Every destination budget of the process.
#[derive(Default)]
pub struct Budgets {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    budgets: HashMap<(String, String), Arc<Budget>>,
    hosts: BTreeMap<String, Arc<Counters>>,
}

/// The process's registry.
pub fn budgets() -> &'static Budgets {
    static BUDGETS: OnceLock<Budgets> = OnceLock::new();
    BUDGETS.get_or_init(Budgets::default)
}

impl Budgets {
    /// The budget of `endpoint` of `service` (on `host`), made on first use with
    /// `concurrency` and `pace`; a later, stricter pace tightens it.
    pub(crate) fn budget(
        &self,
        host: &str,
        service: &str,
        endpoint: &str,
        concurrency: usize,
        pace: Option<Pace>,
    ) -> Arc<Budget> {
        let mut inner = self.inner.lock().expect("budgets lock");
        let key = (service.to_string(), endpoint.to_string());
        if let Some(b) = inner.budgets.get(&key) {
            if let Some(p) = pace {
                b.tighten(p);
            }
            return b.clone();
        }
        let counters = inner.hosts.entry(host.to_string()).or_default().clone();
        let b = Arc::new(Budget::with_counters(concurrency, pace, counters));
        inner.budgets.insert(key, b.clone());
        b
    }

    /// Counts per destination host.
    pub fn counts(&self) -> Vec<(String, BudgetCounts)> {
        let inner = self.inner.lock().expect("budgets lock");
        inner
            .hosts
            .iter()
            .map(|(host, c)| {
                (
                    host.clone(),
                    BudgetCounts {
                        requests: c.requests.load(Ordering::Relaxed),
                        throttled: c.throttled.load(Ordering::Relaxed),
                        wait_seconds: c.wait_micros.load(Ordering::Relaxed) as f64 / 1e6,
                    },
                )
            })
            .collect()
    }
}

/// The endpoint of `path` below the service's base path: its first segment, and `{id}`
/// for anything after it (`/Users/2819c223` → `/Users/{id}`).
pub fn endpoint_of(base_path: &str, path: &str) -> String {
    let rest = path
        .strip_prefix(base_path.trim_end_matches('/'))
        .unwrap_or(path);
    let mut segments = rest.split('/').filter(|s| !s.is_empty());
    match (segments.next(), segments.next()) {
        (None, _) => "/".into(),
        (Some(first), None) => format!("/{first}"),
        (Some(first), Some(_)) => format!("/{first}/{{id}}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_collapse_ids_below_the_base_path() {
        let base = "/3f2c/scim/v2";
        assert_eq!(endpoint_of(base, "/3f2c/scim/v2/Users"), "/Users");
        assert_eq!(endpoint_of(base, "/3f2c/scim/v2/Users/"), "/Users");
        assert_eq!(
            endpoint_of(base, "/3f2c/scim/v2/Users/abc-1"),
            "/Users/{id}"
        );
        assert_eq!(
            endpoint_of(
                base,
                "/3f2c/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User"
            ),
            "/Schemas/{id}"
        );
        assert_eq!(
            endpoint_of(base, "/3f2c/scim/v2/ServiceProviderConfig"),
            "/ServiceProviderConfig"
        );
        assert_eq!(endpoint_of("/", "/Users"), "/Users");
    }

    #[tokio::test]
    async fn one_budget_per_service_and_endpoint_counted_per_host() {
        let budgets = Budgets::default();
        let pace: Pace = "10/1s".parse().unwrap();
        let a = budgets.budget("h", "http://h/a", "/Users", 4, Some(pace));
        let b = budgets.budget("h", "http://h/a", "/Users", 4, None);
        assert!(Arc::ptr_eq(&a, &b), "two integrations share one budget");
        let other = budgets.budget("h", "http://h/a", "/Users/{id}", 4, None);
        assert!(!Arc::ptr_eq(&a, &other));
        drop(a.acquire().await);
        drop(other.acquire().await);
        let counts = budgets.counts();
        assert_eq!(counts.len(), 1);
        assert_eq!(counts[0].0, "h");
        assert_eq!(counts[0].1.requests, 2);
    }
}
