//! The state file keeps the convergence notes beside the outbox and the ledger.

use async_trait::async_trait;

use crate::destination::{ConvergenceNotes, NotesStore};
use crate::ledger::StateError;
use crate::notify::FileOutboxStore;

#[async_trait]
impl NotesStore for FileOutboxStore {
    /// None when the file has none yet.
    async fn load_notes(&self) -> Result<ConvergenceNotes, StateError> {
        FileOutboxStore::load_notes(self).await
    }

    /// Written atomically (a temporary file renamed over it); a file without notes is
    /// left alone while there are none to keep.
    async fn save_notes(&self, notes: &ConvergenceNotes) -> Result<(), StateError> {
        FileOutboxStore::save_notes(self, notes, notes.is_empty()).await
    }
}
