//! The ledger: which destination members an integration manages.
//!
//! A member is managed when the integration created it, or adopted it (an existing
//! account whose `externalId` matched one of its employees when first seen). The
//! ledger is what tells a member whose employee was removed from Freshteam for good
//! ("Delete Forever": in no list any more) from an account the integration never
//! managed: the first is a leaver, the second is never touched.
//!
//! A run records the ledger before it creates anyone (the members it is about to
//! create are in it already), so a crash between a create and a save loses no one; an
//! id whose account never came to be is dropped on the next run.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a member came to be managed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// Created by the integration.
    #[serde(rename = "c")]
    Created,
    /// An existing account adopted when its externalId first matched an employee.
    #[serde(rename = "a")]
    Adopted,
}

/// Employee ID (SCIM `externalId`) → how the member came to be managed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    #[serde(default)]
    pub members: BTreeMap<String, Origin>,
    /// Employee ID → the member's destination id (SCIM `id`), where known: an
    /// incremental run reads these accounts by id instead of searching for them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accounts: BTreeMap<String, String>,
    /// Where the next incremental run starts; none before the first successful run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<ImportCursor>,
}

/// What an incremental run continues from. Advanced only by a run that succeeded, so a
/// crash or a failed run leaves it where it was: the next run reads again from there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportCursor {
    /// Start of the last successful run (taken before its first read).
    pub since: DateTime<Utc>,
    /// Start of the last successful full reconciliation.
    pub last_full: DateTime<Utc>,
    /// Fingerprint of the spec that run worked from: a different one needs a full run.
    pub spec: String,
}

/// One member's entry as the cluster stores it: `"c"` / `"a"`, or with the destination
/// id, `"c:2819c223-…"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub origin: Origin,
    pub account: Option<String>,
}

impl Serialize for LedgerEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tag = match self.origin {
            Origin::Created => "c",
            Origin::Adopted => "a",
        };
        match &self.account {
            Some(id) => s.serialize_str(&format!("{tag}:{id}")),
            None => s.serialize_str(tag),
        }
    }
}

impl<'de> Deserialize<'de> for LedgerEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let (tag, account) = match text.split_once(':') {
            Some((tag, id)) => (tag, Some(id.to_string()).filter(|i| !i.is_empty())),
            None => (text.as_str(), None),
        };
        let origin = match tag {
            "c" => Origin::Created,
            "a" => Origin::Adopted,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "'{other}' is not a ledger origin (c or a)"
                )))
            }
        };
        Ok(LedgerEntry { origin, account })
    }
}

impl Ledger {
    /// The entries as the cluster stores them.
    pub fn entries(&self) -> BTreeMap<String, LedgerEntry> {
        self.members
            .iter()
            .map(|(id, origin)| {
                (
                    id.clone(),
                    LedgerEntry {
                        origin: *origin,
                        account: self.accounts.get(id).cloned(),
                    },
                )
            })
            .collect()
    }

    /// The ledger of stored entries (and a cursor).
    pub fn from_entries(
        entries: BTreeMap<String, LedgerEntry>,
        cursor: Option<ImportCursor>,
    ) -> Ledger {
        let mut ledger = Ledger {
            cursor,
            ..Ledger::default()
        };
        for (id, e) in entries {
            if let Some(account) = e.account {
                ledger.accounts.insert(id.clone(), account);
            }
            ledger.members.insert(id, e.origin);
        }
        ledger
    }

    pub fn ids(&self) -> HashSet<String> {
        self.members.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.members.contains_key(id)
    }
}

/// Why a store of an integration's state (its ledger, its invitation outbox) failed.
/// `location` names where the state lives (a file, an object) so that the message
/// points at what to look at.
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

/// Persistence of the ledger. `save` may be split over several objects, but each
/// member's entry is either the old or the new one after a crash, and an `Err` means
/// the new ledger may not be recorded.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    async fn load_ledger(&self) -> Result<Ledger, StateError>;
    async fn save_ledger(&self, ledger: &Ledger) -> Result<(), StateError>;
    /// Where the ledger lives, for messages (`--state-file x.json`, `IntegrationState …`).
    fn ledger_location(&self) -> String;
}

/// The ledger in memory (tests).
#[derive(Debug, Default)]
pub struct MemoryLedgerStore {
    ledger: Mutex<Ledger>,
    /// Makes every save fail with this message (to test the failure path).
    pub fail_saves: Mutex<Option<String>>,
}

impl MemoryLedgerStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> Ledger {
        self.ledger.lock().expect("ledger lock").clone()
    }
}

#[async_trait]
impl LedgerStore for MemoryLedgerStore {
    async fn load_ledger(&self) -> Result<Ledger, StateError> {
        Ok(self.snapshot())
    }
    async fn save_ledger(&self, ledger: &Ledger) -> Result<(), StateError> {
        if let Some(e) = self.fail_saves.lock().expect("ledger lock").clone() {
            return Err(StateError::write(self.ledger_location(), e));
        }
        *self.ledger.lock().expect("ledger lock") = ledger.clone();
        Ok(())
    }
    fn ledger_location(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_the_old_form_and_carry_the_account_id() {
        let old: BTreeMap<String, LedgerEntry> =
            serde_json::from_str(r#"{"E1":"c","E2":"a:2819c223-7f76"}"#).unwrap();
        let ledger = Ledger::from_entries(old, None);
        assert_eq!(ledger.members["E1"], Origin::Created);
        assert_eq!(ledger.accounts.get("E1"), None);
        assert_eq!(ledger.accounts["E2"], "2819c223-7f76");
        assert_eq!(
            serde_json::to_string(&ledger.entries()).unwrap(),
            r#"{"E1":"c","E2":"a:2819c223-7f76"}"#
        );
        let bad: Result<BTreeMap<String, LedgerEntry>, _> = serde_json::from_str(r#"{"E1":"x"}"#);
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("'x' is not a ledger origin"));
    }
}
