//! An integration's state between runs: the leaver ledger, the invitation outbox and the
//! convergence notes, each kept by one generic [`Store`] with three backends.
//!
//! A kind of state is its value type, which implements [`Kind`]: [`Ledger`] (here),
//! [`Outbox`] (here too, see [`outbox`]) and `ConvergenceNotes` (in `destination`, where
//! its logic lives). A run takes `&dyn Store<Ledger>` and so on and never knows where the
//! state lives; the front ends only choose the backend:
//!
//! - [`StateFile`]: the CLI's `--state-file`, one JSON file with one section per kind
//!   (`{"invitations": …, "ledger": …, "convergence": …}`); a save replaces its own
//!   section and copies the others through unparsed.
//! - [`ClusterStore`]: the operator's `IntegrationState` objects, entries sharded over
//!   them ([`ShardedState`]) with typed metadata ([`StateMeta`]) beside them.
//! - [`MemoryStore`]: the CLI without a state file, and the tests' fake (saves counted,
//!   recorded, or made to fail).
//!
//! Why a kind is its value type rather than a marker type: `Store<Ledger>` says what is
//! stored and needs no second name; what the cluster needs of a kind (how its value
//! splits into metadata and entries, and back) sits on the value, beside its serde form,
//! which the state file uses as it is. The outbox's value types live here, below
//! `notify`, because the state file checks the outbox when it loads the ledger (a broken
//! outbox must not go unnoticed while e-mail is off); `notify` re-exports them.
//!
//! One error type, [`StateError`], names where the state lives in every message.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Display;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::StateKind;
use crate::ledger::{Ledger, LedgerEntry};

mod cluster;
mod file;
mod memory;
pub mod outbox;

pub use cluster::{
    bucket, object_of, ClusterStore, ShardedState, StateMeta, BUCKETS, OBJECT_MAX, OBJECT_TARGET,
    STATE_LABEL,
};
pub use file::StateFile;
pub use memory::MemoryStore;
pub use outbox::Outbox;

/// A kind of state an integration keeps: the value a run loads and saves.
///
/// The state file keeps the value in its serde form under [`StateKind::name`]; the
/// cluster keeps its entries (by Employee ID) sharded over objects of [`Kind::KIND`],
/// with its [`StateMeta`] in the first.
pub trait Kind: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Which state this is: the state file's section, the IntegrationState objects.
    const KIND: StateKind;
    /// One entry as the cluster stores it.
    type Entry: Serialize + DeserializeOwned + Clone + PartialEq + Send + Sync;

    /// The metadata kept beside the entries.
    fn meta(&self) -> StateMeta;
    /// The entries, by Employee ID (or section key).
    fn entries(&self) -> Result<Cow<'_, BTreeMap<String, Self::Entry>>, serde_json::Error>;
    /// The value of stored metadata and entries.
    fn join(
        meta: StateMeta,
        entries: BTreeMap<String, Self::Entry>,
    ) -> Result<Self, serde_json::Error>;
    /// Nothing worth keeping: the state file writes no section for it while it has none.
    fn is_blank(&self) -> bool {
        false
    }
}

/// Where one kind of an integration's state lives. `save` may be split over several
/// objects, but each entry is either its old or its new self after a crash, and an
/// `Err` means the new value may not be recorded.
#[async_trait]
pub trait Store<K: Kind>: Send + Sync {
    /// The state as last saved (the default when there is none yet).
    async fn load(&self) -> Result<K, StateError>;
    async fn save(&self, value: &K) -> Result<(), StateError>;
    /// Where the state lives, for messages (`--state-file x.json`, `IntegrationState …`).
    fn location(&self) -> String;
}

impl Kind for Ledger {
    const KIND: StateKind = StateKind::Ledger;
    type Entry = LedgerEntry;

    fn meta(&self) -> StateMeta {
        StateMeta {
            cursor: self.cursor.clone(),
            ..StateMeta::default()
        }
    }
    fn entries(&self) -> Result<Cow<'_, BTreeMap<String, LedgerEntry>>, serde_json::Error> {
        Ok(Cow::Owned(Ledger::entries(self)))
    }
    fn join(
        meta: StateMeta,
        entries: BTreeMap<String, LedgerEntry>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Ledger::from_entries(entries, meta.cursor))
    }
}

/// Why a store of an integration's state failed. `location` names where the state
/// lives (a file, an object) so that the message points at what to look at.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The state could not be read (file system, API server).
    #[error("{location}: {reason}")]
    Read { location: String, reason: String },
    /// What was read is not a state this version can use.
    #[error("{location}: {reason}")]
    Parse { location: String, reason: String },
    /// The state could not be written.
    #[error("{location}: {reason}")]
    Write { location: String, reason: String },
    /// Someone else saved in between (a stale version): nothing was overwritten.
    #[error("{location}: {reason}")]
    Conflict { location: String, reason: String },
    /// The state outgrew what its store can hold.
    #[error(
        "the {state} ({entries} entries) does not fit in {limit} (one would hold {size} bytes)"
    )]
    TooLarge {
        state: String,
        entries: usize,
        limit: String,
        size: usize,
    },
}

impl StateError {
    pub fn read(location: impl Into<String>, reason: impl Display) -> Self {
        StateError::Read {
            location: location.into(),
            reason: reason.to_string(),
        }
    }
    pub fn parse(location: impl Into<String>, reason: impl Display) -> Self {
        StateError::Parse {
            location: location.into(),
            reason: reason.to_string(),
        }
    }
    pub fn write(location: impl Into<String>, reason: impl Display) -> Self {
        StateError::Write {
            location: location.into(),
            reason: reason.to_string(),
        }
    }
    pub fn conflict(location: impl Into<String>, reason: impl Display) -> Self {
        StateError::Conflict {
            location: location.into(),
            reason: reason.to_string(),
        }
    }
}
