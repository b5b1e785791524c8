//! What one import is given: the mapping, both clients, how the run behaves, where its
//! state lives, where its progress goes and what time it is.

use crate::clock::Clock;
use crate::destination::{ConvergenceNotes, MemberDirectory};
use crate::ledger::Ledger;
use crate::mapping::CompiledMapping;
use crate::notify::Outbox;
use crate::progress::ProgressSink;
use crate::source::EmployeeSource;
use crate::state::Store;

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

/// Where the run's state lives ([`crate::state`]: the front end chose the backend);
/// none: the run keeps none of that kind. The run loads and saves through them itself.
#[derive(Clone, Copy, Default)]
pub struct Stores<'a> {
    /// The invitation outbox: an intent is recorded for each member before it is created.
    pub outbox: Option<&'a dyn Store<Outbox>>,
    /// The ledger of managed members and the incremental cursor.
    pub ledger: Option<&'a dyn Store<Ledger>>,
    /// The convergence notes, saved after the writes (they are read before the run:
    /// connecting to the destination already uses them).
    pub notes: Option<&'a dyn Store<ConvergenceNotes>>,
}
