//! Persist: the ledger again after the writes, with the accounts this run created and,
//! when the run went through, the cursor moved on; then the convergence notes.

use super::apply::Written;
use super::prepare::Prepared;
use crate::api::{RecordError, Severity};
use crate::sync::{mode, ImportJob};

/// Saved once the plan's sets are gone: at a first import of 100,000 this save is the
/// run's peak. Only a run that went through moves the cursor on: anything less reads
/// again from where the last one that did started. A save that fails is a warning row.
pub(super) async fn persist(job: &ImportJob<'_>, prepared: &Prepared, written: &mut Written) {
    save_ledger(job, prepared, written).await;
    save_notes(job, written).await;
}

/// The notes as the writes left them; a save that fails is a warning row.
async fn save_notes(job: &ImportJob<'_>, written: &mut Written) {
    let (Some(store), Some(notes)) = (job.stores.notes, &written.convergence) else {
        return;
    };
    if let Err(e) = store.save_notes(notes).await {
        tracing::warn!(error = %e, "could not save the convergence notes");
        written.report.push(RecordError {
            severity: Severity::Warning,
            message: format!("convergence notes could not be saved ({e}): the next run may write unkept values again"),
            ..RecordError::default()
        });
    }
}

async fn save_ledger(job: &ImportJob<'_>, prepared: &Prepared, written: &mut Written) {
    let (Some(store), Some(mut keep)) = (job.stores.ledger, written.recorded.take()) else {
        return;
    };
    let mut changed = false;
    for c in &written.created {
        changed |= keep.set_account(&c.employee_id, Some(&c.id));
    }
    if let (Some(policy), Some(choice), true) =
        (&job.options.mode, &prepared.choice, written.went_through)
    {
        let next = mode::next_cursor(policy, choice, prepared.cursor.as_ref(), prepared.started);
        changed |= keep.cursor.as_ref() != Some(&next);
        keep.cursor = Some(next);
    }
    if !changed {
        return;
    }
    if let Err(e) = store.save_ledger(&keep).await {
        tracing::warn!(state = %store.ledger_location(), error = %e, "could not save the ledger after the writes");
        written.report.push(RecordError {
            severity: Severity::Warning,
            message: format!("the ledger could not be saved after the writes ({}): {e}; the next run reads again from the previous cursor", store.ledger_location()),
            ..RecordError::default()
        });
    }
}
