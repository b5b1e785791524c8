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
/// others are simply written again next run. A note is about 50 bytes of state: this
/// bounds the notes at about 5 MB, and covers a first import of 50,000 members to a
/// service that drops two of their attributes (each create that loses one leaves a note).
pub(crate) const MAX_NOTES: usize = 100_000;

/// Employee ID → member field (`spec.mapping` name) → hash of the value written; and,
/// in sections of their own, what the run learnt about each destination.
///
/// Stored as one map: the member notes by Employee ID, and each section under a key
/// starting with `@` (`@writeForm`: destination URL → the update form that works there).
/// Every value is a map of strings, so the cluster's sharded store keeps sections like
/// notes. Notes written before there were sections read as they are; a section a build
/// does not know is skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvergenceNotes {
    notes: BTreeMap<String, BTreeMap<String, String>>,
    /// How many notes `notes` holds (kept as they change: counting them per note
    /// recorded would cost a pass over every member).
    count: usize,
    /// Destination URL → the update form that works there (see `WriteForm` in the SCIM
    /// client): a later run starts with it instead of failing with finer ones first.
    write_forms: BTreeMap<String, String>,
}

/// The key of the write-form section.
const WRITE_FORM_KEY: &str = "@writeForm";

impl Serialize for ConvergenceNotes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (id, fields) in &self.notes {
            map.serialize_entry(id, fields)?;
        }
        if !self.write_forms.is_empty() {
            map.serialize_entry(WRITE_FORM_KEY, &self.write_forms)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ConvergenceNotes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};
        struct Notes;
        impl<'de> Visitor<'de> for Notes {
            type Value = ConvergenceNotes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of convergence notes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = ConvergenceNotes::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == WRITE_FORM_KEY {
                        out.write_forms = map.next_value()?;
                    } else if key.starts_with('@') {
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        let fields: BTreeMap<String, String> = map.next_value()?;
                        out.count += fields.len();
                        out.notes.insert(key, fields);
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Notes)
    }
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
        self.count
    }

    /// Nothing noted at all (no member notes, no section).
    pub fn is_empty(&self) -> bool {
        self.notes.is_empty() && self.write_forms.is_empty()
    }

    /// Whether any member has a note.
    pub fn has_member_notes(&self) -> bool {
        !self.notes.is_empty()
    }

    /// These notes without the member notes: what a run carries on whatever it writes.
    pub fn sections(&self) -> ConvergenceNotes {
        ConvergenceNotes {
            notes: BTreeMap::new(),
            count: 0,
            ..self.clone()
        }
    }

    /// The update form found working at this destination (its base URL), if one was.
    pub fn write_form(&self, destination: &str) -> Option<&str> {
        self.write_forms.get(destination).map(String::as_str)
    }

    /// Records (or, `None`, forgets) the update form that works at this destination.
    pub fn set_write_form(&mut self, destination: &str, form: Option<&str>) {
        match form {
            Some(f) => {
                self.write_forms
                    .insert(destination.to_string(), f.to_string());
            }
            None => {
                self.write_forms.remove(destination);
            }
        }
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
        if self.count >= MAX_NOTES {
            return;
        }
        for (attr, hash) in changes.iter().filter_map(note_of) {
            self.note(employee_id, attr.field_name(), hash);
        }
    }

    fn note(&mut self, employee_id: &str, field: &str, hash: String) {
        let fields = self.notes.entry(employee_id.to_string()).or_default();
        if fields.insert(field.to_string(), hash).is_none() {
            self.count += 1;
        }
    }

    /// Carries the notes of `held` fields from `previous` (still not kept, still held).
    pub fn carry(&mut self, previous: &ConvergenceNotes, employee_id: &str, held: &[Attr]) {
        let Some(noted) = previous.notes.get(employee_id) else {
            return;
        };
        for attr in held {
            if let Some(hash) = noted.get(attr.field_name()) {
                self.note(employee_id, attr.field_name(), hash.clone());
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
    fn the_write_form_section_sits_beside_the_notes_and_old_files_still_read() {
        // A state written before there were sections: a plain map of notes.
        let old = serde_json::json!({"E1": {"jobTitle": "00ff"}});
        let notes: ConvergenceNotes = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes.write_form("https://x/scim/v2"), None);
        assert_eq!(serde_json::to_value(&notes).unwrap(), old);

        let mut notes = notes;
        notes.set_write_form("https://x/scim/v2", Some("wholeAttributes"));
        let json = serde_json::to_value(&notes).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "E1": {"jobTitle": "00ff"},
                "@writeForm": {"https://x/scim/v2": "wholeAttributes"}
            })
        );
        // Every value is a map of strings (the cluster store's shape).
        let _: BTreeMap<String, BTreeMap<String, String>> =
            serde_json::from_value(json.clone()).unwrap();
        let back: ConvergenceNotes = serde_json::from_value(json).unwrap();
        assert_eq!(back, notes);
        assert_eq!(back.len(), 1, "a section is not a member's note");
        // A section carried on without the member notes; an unknown section is skipped.
        assert_eq!(
            back.sections().write_form("https://x/scim/v2"),
            Some("wholeAttributes")
        );
        assert!(!back.sections().has_member_notes());
        let later: ConvergenceNotes =
            serde_json::from_value(serde_json::json!({"@other": {"a": "b"}})).unwrap();
        assert!(later.is_empty());
    }

    #[test]
    fn notes_are_counted_as_they_change_and_capped() {
        let mut notes = ConvergenceNotes::default();
        let title = |v: &str| [Change::Set(Attr::JobTitle, v.into())];
        notes.record("E1", &title("a"));
        notes.record("E1", &title("b")); // replaces the first
        notes.record("E1", &[Change::Clear(Attr::Department)]);
        assert_eq!(notes.len(), 2);
        let back: ConvergenceNotes =
            serde_json::from_value(serde_json::to_value(&notes).unwrap()).unwrap();
        assert_eq!(back.len(), 2);
        for i in 0..MAX_NOTES + 10 {
            notes.record(&format!("M{i}"), &title("x"));
        }
        assert_eq!(notes.len(), MAX_NOTES);
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
