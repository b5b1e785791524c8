//! Convergence memory: values a run wrote that the destination did not keep as written.
//!
//! A service may normalise a value (case, whitespace) or drop it while answering 2xx.
//! Rewriting it every run would never converge, so each successful write leaves a note
//! (member, field, hash of the value written). When the next run still finds the field
//! different and the source value is the same, the change is held back and reported as
//! a warning instead; a new source value (another hash) is written again.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::StateKind;
use crate::destination::{UpdateOp, WriteOp};
use crate::member::{Attr, Change};
use crate::state::{self, StateMeta};

/// Notes kept at most; past this a run keeps the first ones (by Employee ID) and the
/// others are simply written again next run. A note is about 50 bytes of state: this
/// bounds the notes at about 5 MB, and covers a first import of 50,000 members to a
/// service that drops two of their attributes (each create that loses one leaves a note).
pub(crate) const MAX_NOTES: usize = 100_000;

/// Employee ID → member field (`spec.mapping` name) → hash of the value written; and,
/// in sections of their own, what the run learnt about each destination.
///
/// Stored as one map: the member notes by Employee ID, and each section under a key
/// starting with `@` (`@writeForm`: destination URL → the update form that works there;
/// `@refusals`: Employee ID → the write the destination refused; `@discovery`:
/// destination URL → what its discovery documents said, and when). Every value is a map of
/// strings, so the cluster's sharded store keeps sections like notes. Notes written before
/// there were sections read as they are; a section a build does not know is skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvergenceNotes {
    notes: BTreeMap<String, BTreeMap<String, String>>,
    /// How many notes `notes` holds (kept as they change: counting them per note
    /// recorded would cost a pass over every member).
    count: usize,
    /// Destination URL → the update form that works there (see `WriteForm` in the SCIM
    /// client): a later run starts with it instead of failing with finer ones first.
    write_forms: BTreeMap<String, String>,
    /// Writes the destination refused (see [`Refusals`]).
    refusals: Refusals,
    /// Destination URL → what its discovery documents (`/ServiceProviderConfig`,
    /// `/Schemas`, `/ResourceTypes`) said and when, in the destination's own compact
    /// form: a run while it is fresh connects without reading them again.
    discovery: BTreeMap<String, String>,
}

/// The key of the write-form section.
const WRITE_FORM_KEY: &str = "@writeForm";
/// The key of the refusals section.
const REFUSALS_KEY: &str = "@refusals";
/// The key of the discovery section.
const DISCOVERY_KEY: &str = "@discovery";

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
        if !self.refusals.is_empty() {
            map.serialize_entry(REFUSALS_KEY, &self.refusals)?;
        }
        if !self.discovery.is_empty() {
            map.serialize_entry(DISCOVERY_KEY, &self.discovery)?;
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
                    } else if key == REFUSALS_KEY {
                        out.refusals = map.next_value()?;
                    } else if key == DISCOVERY_KEY {
                        out.discovery = map.next_value()?;
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
        self.notes.is_empty()
            && self.write_forms.is_empty()
            && self.refusals.is_empty()
            && self.discovery.is_empty()
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
        set_or_forget(&mut self.write_forms, destination, form);
    }

    /// What discovery at this destination (its base URL) yielded, and when, if noted.
    pub fn discovery(&self, destination: &str) -> Option<&str> {
        self.discovery.get(destination).map(String::as_str)
    }

    /// Records (or, `None`, forgets) what discovery at this destination yielded.
    pub fn set_discovery(&mut self, destination: &str, note: Option<&str>) {
        set_or_forget(&mut self.discovery, destination, note);
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
            // Mapped attributes, when any (a create without them hashes as before).
            for (target, value) in &member.extra {
                text.push('\0');
                text.push_str(target);
                text.push('=');
                text.push_str(value);
            }
            text.push_str(if member.active {
                "\0active"
            } else {
                "\0inactive"
            });
        }
        WriteOp::Update(UpdateOp { changes, .. }) => {
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

/// Sets `key` to `value` in a section keyed by destination, or forgets it (`None`).
fn set_or_forget(section: &mut BTreeMap<String, String>, key: &str, value: Option<&str>) {
    match value {
        Some(v) => {
            section.insert(key.to_string(), v.to_string());
        }
        None => {
            section.remove(key);
        }
    }
}

/// The notes are a kind of state (kept between runs in the state file or the cluster,
/// see [`crate::state`]; the import saves them after its writes). The cluster keeps
/// each member's notes, and each section, as one entry: a map of strings.
impl state::Kind for ConvergenceNotes {
    const KIND: StateKind = StateKind::Convergence;
    type Entry = BTreeMap<String, String>;

    fn meta(&self) -> StateMeta {
        StateMeta::default()
    }
    fn entries(&self) -> Result<Cow<'_, BTreeMap<String, Self::Entry>>, serde_json::Error> {
        serde_json::to_value(self)
            .and_then(serde_json::from_value)
            .map(Cow::Owned)
    }
    fn join(
        _: StateMeta,
        entries: BTreeMap<String, Self::Entry>,
    ) -> Result<Self, serde_json::Error> {
        serde_json::to_value(entries).and_then(serde_json::from_value)
    }
    /// None at all: a state file without notes is left alone.
    fn is_blank(&self) -> bool {
        ConvergenceNotes::is_empty(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_create_is_another_write_once_a_mapped_attribute_changes() {
        let cost = Attr::Extra(crate::member::target::intern("userType"));
        let mut member = crate::member::Member {
            employee_id: "E1".into(),
            email: "e1@acme.example".into(),
            active: true,
            ..Default::default()
        };
        let plain = write_hash(&WriteOp::Create {
            member: member.clone(),
        });
        member.set(cost, Some("Employee".into()));
        let with = write_hash(&WriteOp::Create {
            member: member.clone(),
        });
        member.set(cost, Some("Contractor".into()));
        let changed = write_hash(&WriteOp::Create { member });
        assert_ne!(plain, with);
        assert_ne!(with, changed);
    }

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
    fn the_discovery_section_round_trips_and_old_states_read_without_it() {
        let old = serde_json::json!({
            "E1": {"jobTitle": "00ff"},
            "@writeForm": {"https://x/scim/v2": "wholeAttributes 1"}
        });
        let notes: ConvergenceNotes = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(notes.discovery("https://x/scim/v2"), None);
        assert_eq!(
            serde_json::to_value(&notes).unwrap(),
            old,
            "no empty section"
        );

        let mut notes = notes;
        let note = "2026-12-05T22:40:00Z patch filter maxResults=100 keeps=email,firstName";
        notes.set_discovery("https://x/scim/v2", Some(note));
        let json = serde_json::to_value(&notes).unwrap();
        assert_eq!(
            json["@discovery"],
            serde_json::json!({"https://x/scim/v2": note})
        );
        // The cluster store's shape: every value a map of strings.
        let entries: BTreeMap<String, BTreeMap<String, String>> =
            serde_json::from_value(json).unwrap();
        let back: ConvergenceNotes =
            serde_json::from_value(serde_json::to_value(entries).unwrap()).unwrap();
        assert_eq!(back, notes);
        assert_eq!(back.len(), 1, "a section is not a member's note");
        assert_eq!(back.sections().discovery("https://x/scim/v2"), Some(note));
        assert_eq!(back.discovery("https://y/scim/v2"), None);

        let mut only = ConvergenceNotes::default();
        only.set_discovery("https://x/scim/v2", Some(note));
        assert!(!only.is_empty());
        only.set_discovery("https://x/scim/v2", None);
        assert!(only.is_empty());
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
        let update = WriteOp::Update(UpdateOp {
            id: "u1".into(),
            version: Some("W/1".into()),
            has_work_email: true,
            changes: vec![Change::Set(Attr::FirstName, "R2-D2".into())],
            desired: crate::member::Member::default(),
            managed: crate::member::AttrSet::default(),
        });
        refusals.record("E4", &update, "2026-12-05", "400 invalidValue");
        let mut later = update.clone();
        if let WriteOp::Update(UpdateOp { version, .. }) = &mut later {
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
