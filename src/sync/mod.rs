//! The sync engine: reads the source, maps, plans against the destination, applies the
//! plan and reports the run as an `ImportRunStatus`. The import itself is a pipeline of
//! named stages ([`stages`]); this module holds what it is given ([`ImportJob`]) and what
//! it gives back ([`ImportOutcome`]).

pub(crate) mod after_run;
mod deadline;
mod incremental;
mod job;
pub(crate) mod mode;
mod only;
mod profile;
mod refusals;
pub(crate) mod report;
mod sets;
mod stages;
pub(crate) mod stop;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Mutex;

use crate::api::{
    ApiCalls, ImportPhase, ImportRunStatus, ImportSummary, Progress, RecordError, WhenRemoved,
};
use crate::clock::rfc3339;
use crate::destination::{ConvergenceNotes, DestinationStats};
use crate::progress::ProgressSink;
use crate::source::SourceStats;

pub use after_run::{notify_after_run, unsent_mail_warning, RunInfo};
pub use job::{ImportJob, Stores};
pub use only::describe_steps;
pub use report::{errors_csv, report_csv, report_part_name, report_parts, MAX_INLINE_ERRORS};
pub use stop::StopSignal;

use sets::Sets;

/// How one run behaves.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Write nothing; count what would have happened.
    pub dry_run: bool,
    /// `safety.maxLeaversPercent`.
    pub max_leavers_percent: u32,
    /// Leavers approved for this run, if any.
    pub approved_leavers: Option<u32>,
    /// `spec.leavers.whenRemoved`.
    pub when_removed: WhenRemoved,
    /// `spec.destination.scim.profile`: members it refuses are error rows, never sent.
    pub profile: crate::api::ScimProfile,
    /// Asks the run to stop at its next safe point (the run ends `Interrupted`).
    pub stop: StopSignal,
    /// Values earlier runs wrote that the destination did not keep (from the state).
    pub convergence: ConvergenceNotes,
    /// Full or incremental, decided from the ledger's cursor; none: always full, and no
    /// cursor is kept.
    pub mode: Option<mode::ModePolicy>,
    /// `spec.runDeadline`: a run still going this long after it started is stopped and
    /// ends `Failed`; none: no deadline.
    pub deadline: Option<std::time::Duration>,
    /// An on-demand run: only these Employee IDs are read, written or marked as leavers,
    /// and `status.members` explains each (see `only.rs`); none: every employee.
    pub only: Option<Vec<String>>,
}

fn api_calls(source: &SourceStats, dest: &DestinationStats) -> ApiCalls {
    ApiCalls {
        freshteam_list: source.list_requests,
        freshteam_detail: source.detail_requests,
        freshteam_lookups: source.lookup_requests,
        freshteam_throttled: source.throttled,
        freshteam_retries: source.retries,
        destination_reads: dest.reads,
        destination_writes: dest.writes + dest.bulk_operations,
        destination_bulk: dest.bulk_requests,
        destination_lookups: dest.lookup_requests,
    }
}

/// Employees in and out of `spec.scope` (when a filter is set) and the first few mapped
/// members, values as they would be written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MappedPreview {
    pub in_scope: Option<u32>,
    pub out_of_scope: Option<u32>,
    pub sample: Vec<crate::api::PreviewMember>,
}

/// Everything a run produced.
#[derive(Clone, Debug, Default)]
pub struct ImportOutcome {
    pub status: ImportRunStatus,
    /// Every error and warning row (the status keeps the first 50).
    pub report: Vec<RecordError>,
    /// One row per change the run made (or, dry, would make): severity `change`, field
    /// `created` / `updated` / `leaver` / `reactivated`, the message saying what.
    pub changes: Vec<RecordError>,
    /// Employee IDs of members created by this run (for invitations).
    pub created: Vec<CreatedMember>,
    /// Leavers a `Blocked` run held back.
    pub blocked_leavers: u32,
    /// Employee IDs with a member in the destination after the run (`None` when the
    /// destination could not be read).
    pub member_ids: Option<HashSet<String>>,
    /// The convergence notes to keep for the next run; `None`: keep the previous ones
    /// (a dry run, or a run that never got to write).
    pub convergence: Option<ConvergenceNotes>,
    /// Mapping targets (`spec.mapping` field names) the destination does not keep.
    pub unsupported_targets: Vec<String>,
    /// What the mapping made of the source, for `status.preview`.
    pub mapped: MappedPreview,
    /// New members were held back (their state could not be recorded): how many and why,
    /// as the status message says it.
    pub held_back: Option<String>,
}

impl ImportOutcome {
    /// A run that failed before it could import anything: started at `start`, ended at
    /// `end` because of `message`.
    pub fn failed(
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
        message: String,
    ) -> Self {
        let mut outcome = ImportOutcome::default();
        outcome.status.start_time = Some(rfc3339(start));
        outcome.into_failed(end, message)
    }

    /// This run, ended at `end` as `Failed` because of `message`; what it counted so far
    /// (its mode, its API calls) stays.
    pub fn into_failed(mut self, end: chrono::DateTime<chrono::Utc>, message: String) -> Self {
        self.status.phase = ImportPhase::Failed;
        self.status.message = Some(message);
        self.status.completion_time = Some(rfc3339(end));
        self
    }

    /// Adds warning rows to the report, the summary's warnings count and the inline
    /// rows of the status.
    pub fn add_warnings(&mut self, rows: impl IntoIterator<Item = RecordError>) {
        let before = self.report.len();
        self.report.extend(rows);
        self.status.summary.warnings += (self.report.len() - before) as u32;
        self.status.errors = self
            .report
            .iter()
            .take(MAX_INLINE_ERRORS)
            .cloned()
            .collect();
    }
}

/// A member this run created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedMember {
    pub id: String,
    pub employee_id: String,
    pub email: String,
    pub first_name: Option<String>,
    /// The manager's destination id the member was created with.
    pub manager: Option<String>,
}

/// Runs one import end to end. Never panics on bad data: record problems become report
/// rows, an unusable source or destination makes the run `Failed`.
///
/// With an outbox ([`Stores::outbox`]), an invitation intent is recorded durably for every
/// member before it is created and confirmed after, so that
/// [`crate::notify::deliver_pending`] can send each invitation exactly once, even across
/// a crash.
///
/// With a ledger of managed members ([`Stores::ledger`]), it is saved before any member is
/// created (with the members about to be created in it). When it cannot be saved, or the
/// invitation intents cannot be recorded, no member is created in this run and the report
/// says why. Without one, members are managed when their externalId is among this run's
/// employees, and an employee removed from Freshteam for good cannot be detected.
///
/// While it runs, a wait for the destination's rate limit is passed on to the job's
/// `progress` ([`ProgressSink::waiting`]); past `options.deadline` the run is stopped like
/// any stop request and ends `Failed`, naming the deadline.
pub async fn run_import(job: &ImportJob<'_>) -> ImportOutcome {
    deadline::within(job, stages::import(job)).await
}

/// One line on the outcome: `12 created, 3 updated, 1 leaver, 2 errors`.
pub fn describe(s: &ImportSummary, dry_run: bool) -> String {
    let mut parts = Vec::new();
    let mut add = |n: u32, one: &str, many: &str| {
        if n > 0 {
            parts.push(format!("{n} {}", if n == 1 { one } else { many }));
        }
    };
    add(s.created, "created", "created");
    add(s.updated, "updated", "updated");
    add(s.reactivated, "re-activated", "re-activated");
    add(s.leavers, "leaver", "leavers");
    add(s.unchanged, "unchanged", "unchanged");
    add(s.skipped, "skipped", "skipped");
    add(s.errors, "error", "errors");
    add(s.warnings, "warning", "warnings");
    let text = if parts.is_empty() {
        "no employees".to_string()
    } else {
        parts.join(", ")
    };
    if dry_run {
        format!("dry run, nothing written: would be {text}")
    } else {
        text
    }
}

/// A `ProgressSink` that records the latest counts (the controller patches these into
/// `ImportRun.status.progress`).
#[derive(Default)]
pub struct ProgressCounter {
    inner: Mutex<(u64, u64)>,
    waiting: Mutex<Option<String>>,
}

impl ProgressCounter {
    pub fn snapshot(&self) -> Progress {
        let (processed, total) = *self.inner.lock().expect("progress lock");
        Progress::new(processed, total)
    }

    /// What the run waits for now, if anything ("waiting for the destination's rate
    /// limit (/Users) until …").
    pub fn waiting(&self) -> Option<String> {
        self.waiting.lock().expect("progress lock").clone()
    }
}

impl ProgressSink for ProgressCounter {
    fn set_total(&self, total: u64) {
        self.inner.lock().expect("progress lock").1 = total;
    }
    fn advance(&self, n: u64) {
        self.inner.lock().expect("progress lock").0 += n;
    }
    fn waiting(&self, wait: Option<&crate::progress::Wait>) {
        *self.waiting.lock().expect("progress lock") = wait.map(crate::progress::Wait::message);
    }
}
