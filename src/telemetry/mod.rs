//! Placeholder replaced by the telemetry module.
use std::time::Duration;

use crate::api::{ImportRunStatus, ImportTrigger};

#[derive(Clone, Default)]
pub struct Metrics;

impl Metrics {
    pub fn record_run(
        &self,
        _ns: &str,
        _i: &str,
        _t: ImportTrigger,
        _s: &ImportRunStatus,
        _d: Duration,
    ) {
    }
    pub fn reconcile(&self, _ns: &str, _i: &str) {}
    pub fn reconcile_error(&self, _ns: &str, _i: &str, _r: &str) {}
    pub fn set_authorized(&self, _ns: &str, _i: &str, _a: bool) {}
}
