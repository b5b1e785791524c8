//! Convergence memory: values a run wrote that the destination did not keep as written.
//!
//! A service may normalise a value (case, whitespace) or drop it while answering 2xx.
//! Rewriting it every run would never converge, so each successful write leaves a note
//! (member, field, hash of the value written). When the next run still finds the field
//! different and the source value is the same, the change is held back and reported as
//! a warning instead; a new source value (another hash) is written again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::member::{Attr, Change};

/// Notes kept at most; past this a run keeps the first ones (by Employee ID) and the
/// others are simply written again next run. Bounds the state at about 0.5 MB.
pub(crate) const MAX_NOTES: usize = 10_000;

/// Employee ID → member field (`spec.mapping` name) → hash of the value written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConvergenceNotes {
    notes: BTreeMap<String, BTreeMap<String, String>>,
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
        self.notes.is_empty()
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
}
