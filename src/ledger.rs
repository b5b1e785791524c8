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

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

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

/// The members an integration manages, by Employee ID (SCIM `externalId`), with how each
/// came to be managed and, where known, its destination id.
///
/// Kept as one sorted list of compact rows rather than maps: at 100,000 members it is
/// about a third of the memory two `BTreeMap<String, _>`s took, and every run holds it.
/// The state file keeps its form: `{"members": {id: "c"|"a"}, "accounts": {id: scim id},
/// "cursor": …}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Sorted by Employee ID, one row each.
    rows: Vec<Row>,
    /// Where the next incremental run starts; none before the first successful run.
    pub cursor: Option<ImportCursor>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    id: Box<str>,
    account: AccountId,
    origin: Origin,
}

/// A destination id, packed when it is a UUID in one of its two usual spellings (16
/// bytes instead of a 48-byte allocation) and kept as text otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AccountId {
    None,
    /// `2819c2237f764d8e8a0a3ab1c0a3f2e1` (scim2-server's form).
    Hex([u8; 16]),
    /// `2819c223-7f76-4d8e-8a0a-3ab1c0a3f2e1`.
    Dashed([u8; 16]),
    Text(Box<str>),
}

impl AccountId {
    fn new(id: Option<&str>) -> AccountId {
        let Some(id) = id.filter(|i| !i.is_empty()) else {
            return AccountId::None;
        };
        let b = id.as_bytes();
        let packed = match b.len() {
            32 => parse_hex(b).map(AccountId::Hex),
            36 if [8, 13, 18, 23].iter().all(|&i| b[i] == b'-') => {
                let hex: Vec<u8> = b.iter().copied().filter(|c| *c != b'-').collect();
                (hex.len() == 32)
                    .then(|| parse_hex(&hex))
                    .flatten()
                    .map(AccountId::Dashed)
            }
            _ => None,
        };
        // Packed only when it spells back the same: ids are compared as text.
        match packed {
            Some(a) if a.text().as_deref() == Some(id) => a,
            _ => AccountId::Text(id.into()),
        }
    }

    fn text(&self) -> Option<Cow<'_, str>> {
        // One allocation per id: runs spell every member's id when they compare and save.
        fn spell(bytes: &[u8; 16], dashed: bool) -> String {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            let mut out = String::with_capacity(36);
            for (i, b) in bytes.iter().enumerate() {
                if dashed && matches!(i, 4 | 6 | 8 | 10) {
                    out.push('-');
                }
                out.push(DIGITS[usize::from(b >> 4)] as char);
                out.push(DIGITS[usize::from(b & 15)] as char);
            }
            out
        }
        match self {
            AccountId::None => None,
            AccountId::Hex(b) => Some(Cow::Owned(spell(b, false))),
            AccountId::Dashed(b) => Some(Cow::Owned(spell(b, true))),
            AccountId::Text(t) => Some(Cow::Borrowed(t)),
        }
    }
}

fn parse_hex(text: &[u8]) -> Option<[u8; 16]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 16];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
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
    fn find(&self, id: &str) -> Result<usize, usize> {
        self.rows.binary_search_by(|r| (*r.id).cmp(id))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.find(id).is_ok()
    }

    /// How the member came to be managed; none when it is not.
    pub fn origin(&self, id: &str) -> Option<Origin> {
        self.find(id).ok().map(|i| self.rows[i].origin)
    }

    /// The member's destination id, where known.
    pub fn account(&self, id: &str) -> Option<String> {
        let row = &self.rows[self.find(id).ok()?];
        row.account.text().map(Cow::into_owned)
    }

    /// Adds one member (kept as it is when already there); `true` when it was new.
    /// For many at once, [`Ledger::add_missing`].
    pub fn insert(&mut self, id: &str, origin: Origin) -> bool {
        match self.find(id) {
            Ok(_) => false,
            Err(at) => {
                self.rows.insert(
                    at,
                    Row {
                        id: id.into(),
                        account: AccountId::None,
                        origin,
                    },
                );
                true
            }
        }
    }

    /// Adds the members not there yet, in one pass; `true` when any was new.
    pub fn add_missing<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a str>,
        origin: Origin,
    ) -> bool {
        let known = self.rows.len();
        for id in ids {
            if self.rows[..known]
                .binary_search_by(|r| (*r.id).cmp(id))
                .is_err()
            {
                self.rows.push(Row {
                    id: id.into(),
                    account: AccountId::None,
                    origin,
                });
            }
        }
        self.settle();
        self.rows.len() != known
    }

    /// Sorted again after rows were pushed; of two rows for one id the first stays.
    fn settle(&mut self) {
        if !self.rows.is_sorted_by(|a, b| a.id < b.id) {
            self.rows.sort_by(|a, b| a.id.cmp(&b.id));
            self.rows.dedup_by(|later, first| later.id == first.id);
        }
    }

    /// Keeps the members `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.rows.retain(|r| keep(&r.id));
    }

    /// Records (or forgets, with `None`) a member's destination id; `true` when that
    /// changed anything. A member not in the ledger is left out.
    pub fn set_account(&mut self, id: &str, account: Option<&str>) -> bool {
        let Ok(i) = self.find(id) else {
            return false;
        };
        let row = &mut self.rows[i];
        let account = account.filter(|a| !a.is_empty());
        if row.account.text().as_deref() == account {
            return false;
        }
        row.account = AccountId::new(account);
        true
    }

    /// Sets each member's destination id to what `account` gives (`Some(None)`: none
    /// known; `None`: left as it is); `true` when any changed.
    pub fn update_accounts<'a>(
        &mut self,
        mut account: impl FnMut(&str) -> Option<Option<&'a str>>,
    ) -> bool {
        let mut changed = false;
        for row in &mut self.rows {
            let Some(known) = account(&row.id) else {
                continue;
            };
            let known = known.filter(|a| !a.is_empty());
            if row.account.text().as_deref() != known {
                row.account = AccountId::new(known);
                changed = true;
            }
        }
        changed
    }

    /// Every member: Employee ID, origin and destination id where known, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, LedgerEntry)> + '_ {
        self.rows.iter().map(|r| {
            (
                &*r.id,
                LedgerEntry {
                    origin: r.origin,
                    account: r.account.text().map(Cow::into_owned),
                },
            )
        })
    }

    /// The Employee IDs in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.rows.iter().map(|r| &*r.id)
    }

    /// Employee ID → origin (the ledger's first form).
    pub fn origins(&self) -> BTreeMap<String, Origin> {
        self.rows
            .iter()
            .map(|r| (r.id.to_string(), r.origin))
            .collect()
    }

    /// The entries as the cluster stores them.
    pub fn entries(&self) -> BTreeMap<String, LedgerEntry> {
        self.iter().map(|(id, e)| (id.to_string(), e)).collect()
    }

    /// The ledger of stored entries (and a cursor).
    pub fn from_entries(
        entries: BTreeMap<String, LedgerEntry>,
        cursor: Option<ImportCursor>,
    ) -> Ledger {
        // A BTreeMap iterates in order: the rows come sorted.
        let rows = entries
            .into_iter()
            .map(|(id, e)| Row {
                id: id.into(),
                account: AccountId::new(e.account.as_deref()),
                origin: e.origin,
            })
            .collect();
        Ledger { rows, cursor }
    }
}

/// The Employee IDs an integration manages, as [`crate::plan`] asks about them.
pub trait ManagedIds {
    fn manages(&self, id: &str) -> bool;
    /// The destination id recorded for a managed member, where one is known: an account
    /// that is gone from the destination although the ledger recorded it vanished (closed
    /// down, deleted by hand).
    fn account_of(&self, id: &str) -> Option<String> {
        let _ = id;
        None
    }
}

impl ManagedIds for Ledger {
    fn manages(&self, id: &str) -> bool {
        self.contains(id)
    }
    fn account_of(&self, id: &str) -> Option<String> {
        self.account(id)
    }
}

impl ManagedIds for HashSet<String> {
    fn manages(&self, id: &str) -> bool {
        self.contains(id)
    }
}

impl Serialize for Ledger {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Origins<'a>(&'a [Row]);
        impl Serialize for Origins<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|r| (&*r.id, r.origin)))
            }
        }
        struct Accounts<'a>(&'a [Row]);
        impl Serialize for Accounts<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(
                    self.0
                        .iter()
                        .filter_map(|r| Some((&*r.id, r.account.text()?))),
                )
            }
        }
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("members", &Origins(&self.rows))?;
        if self.rows.iter().any(|r| r.account != AccountId::None) {
            map.serialize_entry("accounts", &Accounts(&self.rows))?;
        }
        if let Some(cursor) = &self.cursor {
            map.serialize_entry("cursor", cursor)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Ledger {
    /// Read straight into rows: no map of 100,000 strings on the way.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
        use std::fmt;

        struct Members<'a>(&'a mut Vec<Row>);
        impl<'de> DeserializeSeed<'de> for Members<'_> {
            type Value = ();
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_map(self)
            }
        }
        impl<'de> Visitor<'de> for Members<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of Employee ID to origin")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
                while let Some((id, origin)) = m.next_entry::<Cow<'de, str>, Origin>()? {
                    self.0.push(Row {
                        id: id.as_ref().into(),
                        account: AccountId::None,
                        origin,
                    });
                }
                Ok(())
            }
        }
        /// Destination ids: set on the rows read already, kept for rows still to come.
        struct Accounts<'a>(&'a mut Vec<Row>, &'a mut Vec<(Box<str>, AccountId)>);
        impl<'de> DeserializeSeed<'de> for Accounts<'_> {
            type Value = ();
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_map(self)
            }
        }
        impl<'de> Visitor<'de> for Accounts<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of Employee ID to destination id")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
                while let Some((id, account)) = m.next_entry::<Cow<'de, str>, Cow<'de, str>>()? {
                    let account = AccountId::new(Some(&account));
                    match self.0.binary_search_by(|r| (*r.id).cmp(&id)) {
                        Ok(i) => self.0[i].account = account,
                        Err(_) => self.1.push((id.as_ref().into(), account)),
                    }
                }
                Ok(())
            }
        }
        struct LedgerVisitor;
        impl<'de> Visitor<'de> for LedgerVisitor {
            type Value = Ledger;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a ledger of managed members")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ledger, A::Error> {
                let mut ledger = Ledger::default();
                let mut early = Vec::new();
                while let Some(key) = m.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "members" => {
                            m.next_value_seed(Members(&mut ledger.rows))?;
                            ledger.settle();
                        }
                        "accounts" => m.next_value_seed(Accounts(&mut ledger.rows, &mut early))?,
                        "cursor" => ledger.cursor = m.next_value()?,
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                for (id, account) in early {
                    if let Ok(i) = ledger.find(&id) {
                        ledger.rows[i].account = account;
                    }
                }
                Ok(ledger)
            }
        }
        d.deserialize_map(LedgerVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_form_reads_and_writes_as_before() {
        let text = r#"{"members":{"E1":"c","E2":"a","E3":"c","E4":"c"},"accounts":{"E1":"2819c2237f764d8e8a0a3ab1c0a3f2e1","E2":"2819C223-7F76-4D8E-8A0A-3AB1C0A3F2E1","E3":"2819c223-7f76-4d8e-8a0a-3ab1c0a3f2e1","E4":"u-4"},"cursor":{"since":"2026-11-30T10:00:00Z","lastFull":"2026-11-29T10:00:00Z","spec":"f1"}}"#;
        let ledger: Ledger = serde_json::from_str(text).unwrap();
        assert_eq!(ledger.len(), 4);
        assert_eq!(ledger.origin("E2"), Some(Origin::Adopted));
        assert_eq!(
            ledger.account("E1").as_deref(),
            Some("2819c2237f764d8e8a0a3ab1c0a3f2e1")
        );
        // Upper case does not spell back from the packed form: kept as text.
        assert_eq!(
            ledger.account("E2").as_deref(),
            Some("2819C223-7F76-4D8E-8A0A-3AB1C0A3F2E1")
        );
        assert_eq!(
            ledger.account("E3").as_deref(),
            Some("2819c223-7f76-4d8e-8a0a-3ab1c0a3f2e1")
        );
        assert_eq!(ledger.account("E4").as_deref(), Some("u-4"));
        assert_eq!(serde_json::to_string(&ledger).unwrap(), text);
        // The first form (members only), and accounts written before the members.
        let old: Ledger = serde_json::from_str(r#"{"members":{"E2":"a","E1":"c"}}"#).unwrap();
        assert_eq!(old.ids().collect::<Vec<_>>(), ["E1", "E2"]);
        assert_eq!(old.cursor, None);
        let turned: Ledger =
            serde_json::from_str(r#"{"accounts":{"E1":"x"},"members":{"E1":"c"}}"#).unwrap();
        assert_eq!(turned.account("E1").as_deref(), Some("x"));
        let bad = serde_json::from_str::<Ledger>(r#"{"members":{"E1":"z"}}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn members_are_added_kept_and_given_accounts_in_order() {
        let mut ledger = Ledger::default();
        assert!(ledger.add_missing(["E3", "E1", "E3"], Origin::Created));
        assert!(ledger.insert("E2", Origin::Adopted));
        assert!(!ledger.insert("E1", Origin::Adopted), "kept as it was");
        assert!(!ledger.add_missing(["E1", "E2"], Origin::Adopted));
        assert_eq!(ledger.ids().collect::<Vec<_>>(), ["E1", "E2", "E3"]);
        assert_eq!(ledger.origin("E1"), Some(Origin::Created));
        assert!(ledger.set_account("E1", Some("a1")));
        assert!(!ledger.set_account("E1", Some("a1")));
        assert!(!ledger.set_account("E9", Some("a9")), "not in the ledger");
        let changed = ledger.update_accounts(|id| match id {
            "E1" => Some(None),
            "E2" => Some(Some("a2")),
            _ => None,
        });
        assert!(changed);
        assert_eq!(ledger.account("E1"), None);
        assert_eq!(ledger.account("E2").as_deref(), Some("a2"));
        ledger.retain(|id| id != "E2");
        assert_eq!(ledger.ids().collect::<Vec<_>>(), ["E1", "E3"]);
        assert!(!ledger.manages("E2"));
    }

    #[test]
    fn entries_keep_the_old_form_and_carry_the_account_id() {
        let old: BTreeMap<String, LedgerEntry> =
            serde_json::from_str(r#"{"E1":"c","E2":"a:2819c223-7f76"}"#).unwrap();
        let ledger = Ledger::from_entries(old, None);
        assert_eq!(ledger.origin("E1"), Some(Origin::Created));
        assert_eq!(ledger.account("E1"), None);
        assert_eq!(ledger.account("E2").as_deref(), Some("2819c223-7f76"));
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
