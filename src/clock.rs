//! Time, injectable so that schedules and run timestamps can be tested.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that tests set and move by hand: the one test clock of the unit tests and
/// the integration tests.
#[derive(Debug)]
pub struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    /// Standing at `t`.
    pub fn new(t: DateTime<Utc>) -> TestClock {
        TestClock(Mutex::new(t))
    }
    /// Standing at `t`, shared (as the controller and the plugin take a clock).
    pub fn at(t: DateTime<Utc>) -> Arc<TestClock> {
        Arc::new(TestClock::new(t))
    }
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = t;
    }
    pub fn advance(&self, secs: i64) {
        *self.0.lock().expect("clock lock") += chrono::Duration::seconds(secs);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

/// RFC 3339 with whole seconds, as Kubernetes writes times.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
