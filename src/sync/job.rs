//! What one import is given: the mapping, both clients, how the run behaves, where its
//! state lives, where its progress goes and what time it is.

use crate::clock::Clock;
use crate::destination::{MemberDirectory, NotesStore};
use crate::ledger::LedgerStore;
use crate::mapping::CompiledMapping;
use crate::notify::OutboxStore;
use crate::progress::ProgressSink;
use crate::source::EmployeeSource;

use super::ImportOptions;

/// One import, ready to run ([`super::run_import`]).
#[derive(Clone, Copy)]
pub struct ImportJob<'a> {
    pub mapping: &'a CompiledMapping,
    pub source: &'a dyn EmployeeSource,
    pub destination: &'a dyn MemberDirectory,
    pub options: &'a ImportOptions,
    pub stores: Stores<'a>,
    pub progress: &'a dyn ProgressSink,
    pub clock: &'a dyn Clock,
}

/// Where the run's state lives; none: the run keeps none of that kind.
#[derive(Clone, Copy, Default)]
pub struct Stores<'a> {
    /// The invitation outbox: an intent is recorded for each member before it is created.
    pub outbox: Option<&'a dyn OutboxStore>,
    /// The ledger of managed members and the incremental cursor.
    pub ledger: Option<&'a dyn LedgerStore>,
    /// The convergence notes, saved after the writes (they are read before the run:
    /// connecting to the destination already uses them).
    pub notes: Option<&'a dyn NotesStore>,
}
