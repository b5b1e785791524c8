//! The import as named stages, each handing the next what it made:
//!
//! [`prepare`] (the ledger, full or incremental) → [`read`] (Freshteam and the
//! destination) → [`plan`] (what to write, what to hold back) → [`commit`] (the ledger and
//! the invitation intents, recorded before any write) → [`apply`] (the writes, or a dry
//! run's count) → [`persist`] (the ledger after the writes, the cursor) → [`conclude`]
//! (the run's status).
//!
//! A stage that ends the run early (failed, interrupted) returns a [`RunEnd`]; [`import`]
//! turns it into the outcome, in one place.

mod apply;
mod commit;
mod conclude;
mod links;
mod persist;
mod plan;
mod prepare;
pub(super) mod read;
mod rows;
mod writes;

#[cfg(test)]
pub(super) use commit::next_ledger;
#[cfg(test)]
pub(super) use writes::{creation_depth, WRITE_BATCH};

use chrono::{DateTime, Utc};

use super::{api_calls, ImportJob, ImportOutcome};
use crate::api::{ImportMode, ImportPhase};
use crate::clock::rfc3339;
use crate::source::SourceStats;

/// Runs the stages; the run's deadline and waits are the caller's
/// ([`super::deadline::within`]).
pub(super) async fn import(job: &ImportJob<'_>) -> ImportOutcome {
    let mut outcome = ImportOutcome::default();
    outcome.status.phase = ImportPhase::Running;
    let started = job.clock.now();
    outcome.status.start_time = Some(rfc3339(started));
    match run(job, started, &mut outcome).await {
        Ok(()) => outcome,
        Err(end) => end.into_outcome(outcome, job),
    }
}

async fn run(
    job: &ImportJob<'_>,
    started: DateTime<Utc>,
    outcome: &mut ImportOutcome,
) -> Result<(), RunEnd> {
    let mut prepared = prepare::prepare(job, started).await?;
    let only = job.options.only.as_deref();
    if only.is_some() {
        prepared.choice = None; // an on-demand run leaves the incremental cursor as it was
    }
    let reason = prepared.choice.as_ref().map(|c| c.reason.clone());
    outcome.status.mode = Some(only.map_or(prepared.mode(), |_| ImportMode::OnDemand));
    outcome.status.mode_reason = only.map(super::only::reason).or(reason);
    tracing::info!(
        mode = ?outcome.status.mode.unwrap_or_default(),
        reason = outcome.status.mode_reason.as_deref().unwrap_or_default(),
        dry_run = job.options.dry_run,
        "import run started"
    );

    let read = read::read(job, &prepared).await?;
    let source_calls = read.stats.clone();
    let total = read.desired.records as u64;

    // The plan owns the desired members and the accounts; the write stages consume it
    // and free them before the ledger is saved after the writes (the run's peak). An
    // on-demand run, like an incremental one, sees only some: nobody else is removed.
    let partial = prepared.since().or(only.map(|_| started));
    let mut planned = plan::plan(job, read, partial, prepared.ledger.as_ref());
    outcome.unsupported_targets = std::mem::take(&mut planned.unsupported_targets);
    outcome.mapped = std::mem::take(&mut planned.mapped);
    let steps = only.map(|ids| {
        let report = &mut planned.counts.report;
        super::only::explain(
            ids,
            planned.sets.view(),
            &planned.plan,
            prepared.ledger.as_ref(),
            report,
        )
    });
    let mut written = if job.options.dry_run {
        apply::dry_run(job, planned)
    } else {
        if let Some(reason) = job.options.stop.reason() {
            return Err(RunEnd::interrupted(reason, "before any write").with_calls(source_calls));
        }
        let committed = commit::commit(job, &mut planned, prepared.ledger.take()).await;
        apply::apply(job, planned, committed).await
    };

    persist::persist(job, &prepared, &mut written).await;
    conclude::conclude(job, written, &source_calls, total, outcome);
    if let Some(steps) = steps {
        super::only::finish(job, steps, outcome);
    }
    Ok(())
}

/// A run ended before it got through: the one way a stage ends it early.
pub(super) struct RunEnd {
    kind: EndKind,
    /// The Freshteam calls made before it, when the run got that far: the outcome then
    /// reports its API calls (both sides'); otherwise it reports none.
    source_calls: Option<SourceStats>,
}

enum EndKind {
    /// `Failed`, saying why.
    Failed(String),
    /// `Interrupted` on request, before anything was written: the stop's reason and
    /// where the run was (`while reading; nothing was written`).
    Interrupted { reason: String, when: &'static str },
}

impl RunEnd {
    pub(super) fn failed(message: String) -> Self {
        RunEnd {
            kind: EndKind::Failed(message),
            source_calls: None,
        }
    }

    pub(super) fn interrupted(reason: String, when: &'static str) -> Self {
        RunEnd {
            kind: EndKind::Interrupted { reason, when },
            source_calls: None,
        }
    }

    pub(super) fn with_calls(mut self, source: SourceStats) -> Self {
        self.source_calls = Some(source);
        self
    }

    /// The run's outcome: what it counted so far (its mode, its API calls) stays.
    fn into_outcome(self, mut outcome: ImportOutcome, job: &ImportJob<'_>) -> ImportOutcome {
        if let Some(source) = &self.source_calls {
            outcome.status.api_calls = Some(api_calls(source, &job.destination.stats()));
        }
        match self.kind {
            EndKind::Failed(message) => outcome.into_failed(job.clock.now(), message),
            EndKind::Interrupted { reason, when } => {
                outcome.status.phase = ImportPhase::Interrupted;
                outcome.status.message = Some(format!("Interrupted: {reason}; stopped {when}"));
                outcome.status.completion_time = Some(rfc3339(job.clock.now()));
                outcome
            }
        }
    }
}
