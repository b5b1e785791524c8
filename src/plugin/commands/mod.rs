//! The plugin's commands. Each takes a `kube::Client` (a real one, or an in-process fake
//! in tests) and returns an [`Output`]: the text for stdout and stderr and the exit code,
//! which the binary prints and returns.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::format::{human_duration, parse_time};
use crate::api::INTEGRATION_LABEL;
use crate::api::{FreshteamIntegration, ImportRun, ImportRunStatus, ImportSummary};
use crate::clock::{Clock, SystemClock};
use crate::exit;

mod errors;
mod history;
mod import_now;
mod member;
mod preview;
mod provision;
mod status;

pub use history::HistoryFormat;
pub use import_now::ImportNowOptions;

/// What a command prints and how the process exits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn ok(stdout: impl Into<String>) -> Self {
        Output {
            code: exit::SUCCEEDED,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    fn with_stderr(mut self, stderr: impl Into<String>) -> Self {
        self.stderr = stderr.into();
        self
    }
}

/// Why a command stopped early.
enum Fail {
    /// Bad input: an unknown integration or run (exit 2).
    Usage(String),
    /// Anything else: the API refused, a run never ended in time (exit 1).
    Failed(String),
}

impl From<Fail> for Output {
    fn from(f: Fail) -> Self {
        let (code, message) = match f {
            Fail::Usage(m) => (exit::INVALID_INPUT, m),
            Fail::Failed(m) => (exit::FAILED, m),
        };
        Output {
            code,
            stdout: String::new(),
            stderr: format!("error: {message}\n"),
        }
    }
}

/// The commands, bound to one client and namespace.
pub struct Plugin {
    client: Client,
    namespace: String,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
}

impl Plugin {
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Plugin {
            client,
            namespace: namespace.into(),
            clock: Arc::new(SystemClock),
            poll_interval: Duration::from_secs(1),
        }
    }

    /// The clock behind the request annotation's value, ages and running durations.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How often `import-now` reads the run while following it.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn integrations(&self) -> Api<FreshteamIntegration> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn runs(&self) -> Api<ImportRun> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn integration(&self, name: &str) -> Result<FreshteamIntegration, Fail> {
        match self.integrations().get_opt(name).await {
            Ok(Some(fti)) => Ok(fti),
            Ok(None) => Err(Fail::Usage(format!(
                "freshteamintegration \"{name}\" not found in namespace \"{}\"",
                self.namespace
            ))),
            Err(e) => Err(Fail::Failed(format!(
                "cannot read freshteamintegration \"{name}\": {e}"
            ))),
        }
    }

    /// The integration's runs, newest first: those labelled with it (the operator's, and
    /// `provision`'s), and those a user created naming it without the label.
    async fn runs_of(&self, name: &str) -> Result<Vec<ImportRun>, Fail> {
        let mut runs = self
            .runs()
            .list(&ListParams::default())
            .await
            .map_err(|e| Fail::Failed(format!("cannot list the importruns of {name}: {e}")))?
            .items;
        runs.retain(|r| {
            r.labels().get(INTEGRATION_LABEL).map(String::as_str) == Some(name)
                || (r.spec.integration == name && !r.labels().contains_key(INTEGRATION_LABEL))
        });
        runs.sort_by_cached_key(|r| std::cmp::Reverse((created(r), r.name_any())));
        Ok(runs)
    }

    fn ns_flag(&self) -> String {
        format!("-n {}", self.namespace)
    }
}

/// "3 created, 0 updated, 1 leaver, 2 errors": the counts a user checks first.
fn counts(s: &ImportSummary) -> String {
    let plural = |n: u32, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{} created, {} updated, {}, {}",
        s.created,
        s.updated,
        plural(s.leavers, "leaver", "leavers"),
        plural(s.errors, "error", "errors")
    )
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn to_chrono(t: &Time) -> Option<DateTime<Utc>> {
    parse_time(&t.0.to_string())
}

/// When a run was created: its creationTimestamp, else its start time.
fn created(r: &ImportRun) -> Option<DateTime<Utc>> {
    r.metadata
        .creation_timestamp
        .as_ref()
        .and_then(to_chrono)
        .or_else(|| {
            r.status
                .as_ref()
                .and_then(|s| s.start_time.as_deref())
                .and_then(parse_time)
        })
}

fn age(t: &Time, now: DateTime<Utc>) -> String {
    to_chrono(t)
        .map(|t| human_duration(now - t))
        .unwrap_or_else(|| "-".into())
}

/// End minus start; a run still going counts up to now.
fn run_duration(st: &ImportRunStatus, now: DateTime<Utc>) -> String {
    let Some(start) = st.start_time.as_deref().and_then(parse_time) else {
        return "-".into();
    };
    let end = match st.completion_time.as_deref().and_then(parse_time) {
        Some(end) => end,
        None if !st.phase.is_final() => now,
        None => return "-".into(),
    };
    human_duration(end - start)
}

fn show_timeout(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        human_duration(chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
    }
}

/// Data rows of a CSV with a header line.
fn csv_rows(csv: &str) -> usize {
    csv::Reader::from_reader(csv.as_bytes())
        .records()
        .filter(|r| r.is_ok())
        .count()
}
