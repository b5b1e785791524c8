//! Convergence memory: values a run wrote that the destination did not keep as written.
//!
//! A service may normalise a value (case, whitespace) or drop it while answering 2xx.
//! Rewriting it every run would never converge, so each successful write leaves a note
//! (member, field, hash of the value written). When the next run still finds the field
//! different and the source value is the same, the change is held back and reported as
//! a warning instead; a new source value (another hash) is written again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::destination::WriteOp;
use crate::member::{Attr, Change};

/// Notes kept at most; past this a run keeps the first ones (by Employee ID) and the
/// others are simply written again next run. Bounds the state at about 0.5 MB.
pub(crate) const MAX_NOTES: usize = 10_000;

/// Employee ID → member field (`spec.mapping` name) → hash of the value written.
///
/// Serialised as that map; each further section is one more key of it, starting with
/// `@` (`@refusals`), so that states written before a section existed read as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvergenceNotes {
    #[serde(flatten)]
    notes: BTreeMap<String, BTreeMap<String, String>>,
    /// Writes the destination refused (see [`Refusals`]).
    #[serde(
        default,
        rename = "@refusals",
        skip_serializing_if = "Refusals::is_empty"
    )]
    refusals: Refusals,
}

/// 64-bit FNV-1a: stable across builds and platforms (unlike std's hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The attribute and value hash of a change to an attribute (`None` for `Active`).
fn note_of(change: &Change) -> Option<(Attr, String)> {
    let (attr, text) = match change {
        Change::Set(attr, value) => (*attr, format!("set\0{value}")),
        Change::Clear(attr) => (*attr, "clear".to_string()),
        Change::Active(_) => return None,
    };
    Some((attr, format!("{:016x}", fnv1a(text.as_bytes()))))
}

impl ConvergenceNotes {
    pub fn len(&self) -> usize {
        self.notes.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.notes.is_empty() && self.refusals.is_empty()
    }

    /// The writes the destination refused (their own section).
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    pub fn refusals_mut(&mut self) -> &mut Refusals {
        &mut self.refusals
    }

    /// Removes from `changes` the ones this member had written before with the same
    /// value (the destination did not keep them), and returns their fields.
    pub fn hold_back(&self, employee_id: &str, changes: &mut Vec<Change>) -> Vec<Attr> {
        let Some(noted) = self.notes.get(employee_id) else {
            return Vec::new();
        };
        let mut held = Vec::new();
        changes.retain(|c| match note_of(c) {
            Some((attr, hash)) if noted.get(attr.field_name()) == Some(&hash) => {
                held.push(attr);
                false
            }
            _ => true,
        });
        held
    }

    /// Notes `changes` as written to this member (the attribute ones).
    pub fn record(&mut self, employee_id: &str, changes: &[Change]) {
        if self.len() >= MAX_NOTES {
            return;
        }
        for (attr, hash) in changes.iter().filter_map(note_of) {
            self.notes
                .entry(employee_id.to_string())
                .or_default()
                .insert(attr.field_name().to_string(), hash);
        }
    }

    /// Carries the notes of `held` fields from `previous` (still not kept, still held).
    pub fn carry(&mut self, previous: &ConvergenceNotes, employee_id: &str, held: &[Attr]) {
        let Some(noted) = previous.notes.get(employee_id) else {
            return;
        };
        for attr in held {
            if let Some(hash) = noted.get(attr.field_name()) {
                self.notes
                    .entry(employee_id.to_string())
                    .or_default()
                    .insert(attr.field_name().to_string(), hash.clone());
            }
        }
    }
}

// ---- refusals ----------------------------------------------------------------------

/// Refusals kept at most (a refused member is rare; past this, the others are simply
/// sent again next run). Each is under 400 bytes: the section stays under 0.4 MB, in
/// one state object.
pub(crate) const MAX_REFUSALS: usize = 1_000;
/// Longest service detail kept, in characters.
const MAX_DETAIL: usize = 300;

/// A write the destination refused (HTTP 400): the hash of what was sent, the day, and
/// the service's answer (`400 invalidValue: …`). While the same write would be sent
/// again (same hash) it is not: the values must change in Freshteam first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub hash: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub detail: String,
}

/// Kept as one text: `<hash> <date> <detail>` (the state's entries are texts).
impl Serialize for Refusal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{} {} {}", self.hash, self.date, self.detail))
    }
}

impl<'de> Deserialize<'de> for Refusal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut parts = text.splitn(3, ' ');
        let (Some(hash), Some(date)) = (parts.next(), parts.next()) else {
            return Err(serde::de::Error::custom(
                "a refusal is '<hash> <date> <detail>'",
            ));
        };
        Ok(Refusal {
            hash: hash.to_string(),
            date: date.to_string(),
            detail: parts.next().unwrap_or_default().to_string(),
        })
    }
}

/// Employee ID → the write the destination last refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Refusals(BTreeMap<String, Refusal>);

impl Refusals {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, employee_id: &str) -> Option<&Refusal> {
        self.0.get(employee_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Refusal)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// This member's refusal, when `write` is the write that was refused.
    pub fn same_write(&self, employee_id: &str, write: &WriteOp) -> Option<&Refusal> {
        self.get(employee_id)
            .filter(|r| r.hash == write_hash(write))
    }

    /// Records that the destination refused `write` on `date` with `detail`.
    pub fn record(&mut self, employee_id: &str, write: &WriteOp, date: &str, detail: &str) {
        if self.0.len() >= MAX_REFUSALS && !self.0.contains_key(employee_id) {
            return;
        }
        let detail: String = detail.chars().take(MAX_DETAIL).collect();
        self.0.insert(
            employee_id.to_string(),
            Refusal {
                hash: write_hash(write),
                date: date.to_string(),
                detail: detail.replace(['\n', '\r'], " "),
            },
        );
    }

    /// Keeps `refusal` (still standing) for the next run.
    pub fn carry(&mut self, employee_id: &str, refusal: &Refusal) {
        if self.0.len() < MAX_REFUSALS || self.0.contains_key(employee_id) {
            self.0.insert(employee_id.to_string(), refusal.clone());
        }
    }
}

/// The hash of what a write sends: a create's member, an update's changes. Not the
/// destination's id or version: the same values refused again are the same write.
pub(crate) fn write_hash(write: &WriteOp) -> String {
    let mut text = String::new();
    match write {
        WriteOp::Create { member } => {
            text.push_str("create");
            for attr in Attr::ALL {
                text.push('\0');
                text.push_str(attr.field_name());
                match member.get(attr) {
                    Some(v) => {
                        text.push('=');
                        text.push_str(v);
                    }
                    None => text.push('\x01'),
                }
            }
            text.push_str(if member.active {
                "\0active"
            } else {
                "\0inactive"
            });
        }
        WriteOp::Update { changes, .. } => {
            text.push_str("update");
            for change in changes {
                text.push('\0');
                match change {
                    Change::Set(attr, v) => {
                        text.push_str(attr.field_name());
                        text.push('=');
                        text.push_str(v);
                    }
                    Change::Clear(attr) => {
                        text.push_str(attr.field_name());
                        text.push('\x01');
                    }
                    Change::Active(a) => text.push_str(if *a { "active" } else { "inactive" }),
                }
            }
        }
    }
    format!("{:016x}", fnv1a(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_back_only_while_the_source_value_is_the_same() {
        let mut notes = ConvergenceNotes::default();
        notes.record(
            "E1",
            &[
                Change::Set(Attr::JobTitle, "Engineer".into()),
                Change::Active(false),
            ],
        );
        assert_eq!(notes.len(), 1);

        let mut same = vec![
            Change::Set(Attr::JobTitle, "Engineer".into()),
            Change::Set(Attr::LastName, "Byron".into()),
        ];
        assert_eq!(notes.hold_back("E1", &mut same), vec![Attr::JobTitle]);
        assert_eq!(same, vec![Change::Set(Attr::LastName, "Byron".into())]);

        let mut changed = vec![Change::Set(Attr::JobTitle, "Lead".into())];
        assert!(notes.hold_back("E1", &mut changed).is_empty());
        assert_eq!(changed.len(), 1);

        let mut other = vec![Change::Set(Attr::JobTitle, "Engineer".into())];
        assert!(notes.hold_back("E2", &mut other).is_empty());
    }

    #[test]
    fn serialises_as_a_plain_map_and_hashes_stably() {
        let mut notes = ConvergenceNotes::default();
        notes.record("E1", &[Change::Clear(Attr::Department)]);
        let json = serde_json::to_value(&notes).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"E1": {"department": format!("{:016x}", fnv1a(b"clear"))}})
        );
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        let back: ConvergenceNotes = serde_json::from_value(json).unwrap();
        assert_eq!(back, notes);
    }

    fn create(first_name: &str) -> WriteOp {
        WriteOp::Create {
            member: crate::member::Member {
                employee_id: "E2".into(),
                email: "r2@example.com".into(),
                first_name: Some(first_name.into()),
                active: true,
                ..crate::member::Member::default()
            },
        }
    }

    #[test]
    fn a_refusal_stands_while_the_write_is_the_same() {
        let mut refusals = Refusals::default();
        refusals.record(
            "E2",
            &create("R2-D2"),
            "2026-12-05",
            "400 invalidValue: name.givenName\nhas digits",
        );
        let r = refusals.same_write("E2", &create("R2-D2")).unwrap();
        assert_eq!(r.date, "2026-12-05");
        assert_eq!(r.detail, "400 invalidValue: name.givenName has digits");
        assert!(refusals.same_write("E2", &create("Artoo")).is_none());
        assert!(refusals.same_write("E3", &create("R2-D2")).is_none());
        let update = WriteOp::Update {
            id: "u1".into(),
            version: Some("W/1".into()),
            has_work_email: true,
            changes: vec![Change::Set(Attr::FirstName, "R2-D2".into())],
            desired: crate::member::Member::default(),
            managed: crate::member::AttrSet::default(),
        };
        refusals.record("E4", &update, "2026-12-05", "400 invalidValue");
        let mut later = update.clone();
        if let WriteOp::Update { version, .. } = &mut later {
            *version = Some("W/2".into());
        }
        assert!(
            refusals.same_write("E4", &later).is_some(),
            "the version is not the write"
        );
    }

    #[test]
    fn refusals_are_a_section_of_their_own_and_old_states_read() {
        let old = serde_json::json!({"E1": {"jobTitle": "00000000000000aa"}});
        let notes: ConvergenceNotes = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(notes.len(), 1);
        assert!(notes.refusals().is_empty());
        assert_eq!(
            serde_json::to_value(&notes).unwrap(),
            old,
            "no section when empty"
        );

        let mut notes = notes;
        notes.refusals_mut().record(
            "E2",
            &create("R2-D2"),
            "2026-12-05",
            "400 invalidValue: bad name",
        );
        assert!(!notes.is_empty());
        let json = serde_json::to_value(&notes).unwrap();
        let hash = write_hash(&create("R2-D2"));
        assert_eq!(
            json,
            serde_json::json!({
                "E1": {"jobTitle": "00000000000000aa"},
                "@refusals": {"E2": format!("{hash} 2026-12-05 400 invalidValue: bad name")}
            })
        );
        // The controller keeps entries as Employee ID → text map: the section fits.
        let entries: BTreeMap<String, BTreeMap<String, String>> =
            serde_json::from_value(json.clone()).unwrap();
        let back: ConvergenceNotes =
            serde_json::from_value(serde_json::to_value(entries).unwrap()).unwrap();
        assert_eq!(back, notes);
        assert_eq!(back.len(), 1, "a refusal is not a note");
    }

    #[test]
    fn refusals_are_bounded() {
        let mut refusals = Refusals::default();
        for n in 0..MAX_REFUSALS + 5 {
            refusals.record(&format!("E{n}"), &create("X1"), "2026-12-05", "400");
        }
        assert_eq!(refusals.len(), MAX_REFUSALS);
        refusals.record("E0", &create("X2"), "2026-12-06", "400");
        assert_eq!(
            refusals.get("E0").unwrap().date,
            "2026-12-06",
            "a kept one is replaced"
        );
    }
}
