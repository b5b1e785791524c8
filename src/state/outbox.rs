//! The invitation outbox as it is stored: its value types (the protocol that moves its
//! entries is `notify`'s outbox, which re-exports them).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Kind, StateMeta};
use crate::api::StateKind;

/// The outbox as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outbox {
    /// Completed deliveries. Tells intents recorded during the current run (which may
    /// belong to a create whose answer was lost) from older ones.
    #[serde(default)]
    pub generation: u64,
    /// Employee ID → entry.
    #[serde(default)]
    pub entries: BTreeMap<String, OutboxEntry>,
}

impl Outbox {
    /// Invitations waiting to be sent.
    pub fn pending(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.state == EntryState::Intended)
            .count()
    }
}

/// One member's invitation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    pub email: String,
    /// Kept until sent (for the greeting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    pub state: EntryState,
    /// The member was created (reported by the engine).
    #[serde(default, skip_serializing_if = "is_false")]
    pub confirmed: bool,
    /// `Outbox::generation` when the intent was recorded.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub generation: u64,
    /// Times the relay refused this invitation for good (5xx).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refusals: u32,
    /// The destination id of the account this invitation is for, once its create was
    /// confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// How many accounts of this member were invited before (0 for the first): a new
    /// account's invitation gets a Message-ID of its own.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub round: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the state last changed (seconds since the Unix epoch).
    pub since: u64,
}

fn is_false(b: &bool) -> bool {
    !b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// Where an invitation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EntryState {
    /// To be sent once the member exists.
    Intended,
    /// Being sent right now; found at the start of a delivery it means a crash.
    Sending,
    /// Accepted by the relay.
    Sent,
    /// Interrupted while being sent: may or may not have arrived; never sent again.
    Uncertain,
    /// Refused by the relay for good; not retried.
    Failed,
}

/// The cluster keeps the generation as metadata (`{"generation": g}`), the entries by
/// Employee ID.
impl Kind for Outbox {
    const KIND: StateKind = StateKind::Invitations;
    type Entry = OutboxEntry;

    fn meta(&self) -> StateMeta {
        StateMeta {
            generation: Some(self.generation),
            ..StateMeta::default()
        }
    }
    fn entries(&self) -> Result<Cow<'_, BTreeMap<String, OutboxEntry>>, serde_json::Error> {
        Ok(Cow::Borrowed(&self.entries))
    }
    fn join(
        meta: StateMeta,
        entries: BTreeMap<String, OutboxEntry>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Outbox {
            generation: meta.generation.unwrap_or(0),
            entries,
        })
    }
}
