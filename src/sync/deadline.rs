//! `spec.runDeadline`: a run still going then is stopped like any stop request (reads
//! dropped, writes stopped where they are) and ends `Failed`, saying so.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{ImportJob, ImportOutcome};
use crate::api::ImportPhase;
use crate::http_policy::show_duration;
use crate::progress::forward_waits;

/// Runs `run` (the job's import) with its waits passed on to the job's progress and,
/// with a deadline, a watchdog that stops it there; a run the deadline stopped ends
/// [`past`] it.
pub(super) async fn within(
    job: &ImportJob<'_>,
    run: impl Future<Output = ImportOutcome>,
) -> ImportOutcome {
    let Some(limit) = job.options.deadline else {
        return forward_waits(job.progress, run).await;
    };
    let reason = reason(limit);
    // Whether the deadline is what stopped the run (another stop may have come first).
    let past_deadline = AtomicBool::new(false);
    let watchdog = async {
        tokio::time::sleep(limit).await;
        let first = job.options.stop.stop(reason.clone());
        past_deadline.store(first, Ordering::Relaxed);
        std::future::pending::<ImportOutcome>().await
    };
    let outcome = forward_waits(job.progress, async {
        tokio::select! {
            outcome = run => outcome,
            never = watchdog => never,
        }
    })
    .await;
    if past_deadline.load(Ordering::Relaxed) {
        past(outcome, &reason)
    } else {
        outcome
    }
}

/// The stop reason the deadline gives; the run's message starts with it.
pub(super) fn reason(limit: Duration) -> String {
    format!(
        "the run did not finish within its deadline of {}",
        show_duration(limit)
    )
}

/// The run stopped by its deadline, `Failed`: its message says where it stopped, that
/// what it wrote stays and that the next run continues.
pub(super) fn past(mut outcome: ImportOutcome, reason: &str) -> ImportOutcome {
    let said = outcome.status.message.take().unwrap_or_default();
    let detail = said
        .strip_prefix("Interrupted: ")
        .unwrap_or(&said)
        .strip_prefix(reason)
        .unwrap_or(&said)
        .trim_start_matches([';', ' ']);
    outcome.status.phase = ImportPhase::Failed;
    outcome.status.message = Some(if detail.is_empty() {
        format!("{reason}; what was written stays, the next run continues")
    } else {
        format!("{reason}: {detail}; what was written stays, the next run continues")
    });
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_past_its_deadline_fails_saying_where_it_stopped() {
        let reason = reason(Duration::from_secs(24 * 3600));
        let mut outcome = ImportOutcome::default();
        outcome.status.phase = ImportPhase::Interrupted;
        outcome.status.message = Some(format!(
            "Interrupted: {reason}; stopped after 3 of 10 writes, the next run applies the rest (3 created)"
        ));
        let failed = past(outcome, &reason);
        assert_eq!(failed.status.phase, ImportPhase::Failed);
        assert_eq!(
            failed.status.message.as_deref(),
            Some("the run did not finish within its deadline of 24h: stopped after 3 of 10 writes, the next run applies the rest (3 created); what was written stays, the next run continues")
        );
    }
}
