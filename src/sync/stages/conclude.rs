//! Conclude: the run's status from what the stages made.

use super::apply::Written;
use crate::api::{ImportPhase, Progress, Severity};
use crate::clock::rfc3339;
use crate::source::SourceStats;
use crate::sync::{api_calls, describe, ImportJob, ImportOutcome, MAX_INLINE_ERRORS};

/// Fills the outcome: phase, message, counts, rows, API calls, completion time.
pub(super) fn conclude(
    job: &ImportJob<'_>,
    written: Written,
    source_calls: &SourceStats,
    total: u64,
    outcome: &mut ImportOutcome,
) {
    let Written {
        mut summary,
        report,
        changes,
        created,
        convergence,
        stopped,
        blocked,
        held_back,
        member_ids,
        ..
    } = written;
    summary.errors = report
        .iter()
        .filter(|r| r.severity == Severity::Error)
        .count() as u32;
    summary.warnings = report
        .iter()
        .filter(|r| r.severity == Severity::Warning)
        .count() as u32;
    outcome.changes = changes;
    outcome.convergence = convergence;
    outcome.member_ids = member_ids;
    outcome.created = created;
    outcome.blocked_leavers = blocked.as_ref().map_or(0, |b| b.leavers);
    outcome.status.leavers_awaiting_approval = blocked.as_ref().map(|b| b.leavers);
    outcome.status.api_calls = Some(api_calls(source_calls, &job.destination.stats()));

    let status = &mut outcome.status;
    status.phase = if stopped.is_some() {
        ImportPhase::Interrupted
    } else if blocked.is_some() {
        ImportPhase::Blocked
    } else if summary.errors > 0 {
        ImportPhase::PartiallySucceeded
    } else {
        ImportPhase::Succeeded
    };
    let mut message = match (&stopped, &blocked) {
        (Some(why), _) => format!("Interrupted: {why} ({})", describe(&summary, false)),
        (None, Some(b)) => b.message(),
        (None, None) => describe(&summary, job.options.dry_run),
    };
    if let Some(held) = &held_back {
        message.push_str("; ");
        message.push_str(held);
    }
    status.message = Some(message);
    status.progress = Some(Progress::new(total, total));
    status.summary = summary;
    status.errors = report.iter().take(MAX_INLINE_ERRORS).cloned().collect();
    status.completion_time = Some(rfc3339(job.clock.now()));
    outcome.report = report;
    outcome.held_back = held_back;
}
