//! The state file (the CLI's `--state-file`): every kind of an integration's state in
//! one JSON file, one section each.

use std::borrow::Cow;
use std::fmt::{self, Display};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::Serialize;
use serde_json::value::RawValue;

use super::{Kind, Outbox, StateError, Store};
use crate::api::StateKind;

/// The file's sections, in the order they are written.
const SECTIONS: [StateKind; 3] = [
    StateKind::Invitations,
    StateKind::Ledger,
    StateKind::Convergence,
];

/// Every kind of state as one JSON file: `{"invitations": {…}, "ledger": {"members":
/// {…}}, "convergence": {…}}` (see [`StateKind::name`]). A file holding only an outbox
/// (the earlier format) is read as such.
///
/// A save replaces its own section and copies the others through as their JSON text,
/// unparsed: no save parses the ledger of 100,000 members but the ledger's own. It
/// writes a temporary file in the same directory and renames it over the old one, so a
/// reader sees the old or the new content, whole. That is safe against the process
/// crashing or being killed at any point (the kernel keeps written data). Without
/// [`StateFile::with_fsync`] a power loss or kernel crash may lose the latest saves;
/// with it each save is flushed to disk (file and directory) before it returns.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
    fsync: bool,
}

/// A section as read: its text, or only that it is there (a save that replaces it).
enum Section {
    Text(Box<RawValue>),
    Skipped,
}

/// The file's sections, by [`SECTIONS`] index.
#[derive(Default)]
struct Sections([Option<Section>; 3]);

fn index(kind: StateKind) -> usize {
    SECTIONS
        .iter()
        .position(|k| *k == kind)
        .expect("every kind has a section")
}

impl Sections {
    fn text(&self, kind: StateKind) -> Option<&RawValue> {
        match &self.0[index(kind)] {
            Some(Section::Text(t)) => Some(t),
            _ => None,
        }
    }
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateFile {
            path: path.into(),
            fsync: false,
        }
    }

    /// Flush every save to stable storage (survives power loss; slower).
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self) -> String {
        self.path.display().to_string()
    }

    fn invalid(&self, e: impl Display) -> StateError {
        StateError::parse(
            self.file(),
            format!("not a valid state file ({e}); move it aside to start afresh (the ledger of managed members and the pending invitations in it are then forgotten)"),
        )
    }

    /// The sections; those `keep` says no to only as [`Section::Skipped`].
    async fn read(&self, keep: impl Fn(StateKind) -> bool) -> Result<Sections, StateError> {
        let path = self.path.clone();
        let bytes = tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateError::read(path.display().to_string(), e)),
        })
        .await
        .map_err(|e| StateError::read(self.file(), format!("reading the state file: {e}")))??;
        let Some(bytes) = bytes else {
            return Ok(Sections::default());
        };
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let (sections, earlier) = Reader(&keep)
            .deserialize(&mut de)
            .and_then(|read| de.end().map(|()| read))
            .map_err(|e| self.invalid(e))?;
        if !earlier {
            return Ok(sections);
        }
        // The earlier format: the outbox itself, the whole file.
        let text = String::from_utf8(bytes).map_err(|e| StateError::parse(self.file(), e))?;
        let whole = RawValue::from_string(text).map_err(|e| self.invalid(e))?;
        let mut sections = Sections::default();
        sections.0[index(StateKind::Invitations)] = Some(Section::Text(whole));
        Ok(sections)
    }

    fn parse<K: Kind>(&self, sections: &Sections) -> Result<K, StateError> {
        match sections.text(K::KIND) {
            Some(t) => serde_json::from_str(t.get()).map_err(|e| self.invalid(e)),
            None => Ok(K::default()),
        }
    }
}

#[async_trait]
impl<K: Kind> Store<K> for StateFile {
    async fn load(&self) -> Result<K, StateError> {
        // The ledger's load reads the outbox too: a broken outbox must not go unnoticed
        // while nothing else reads it (welcome e-mail off).
        let checked = |k: StateKind| {
            k == K::KIND || (K::KIND == StateKind::Ledger && k == StateKind::Invitations)
        };
        let sections = self.read(checked).await?;
        if K::KIND == StateKind::Ledger {
            let _: Outbox = self.parse(&sections)?;
        }
        self.parse(&sections)
    }

    /// A value with nothing to keep is not written while the file has no section for it.
    async fn save(&self, value: &K) -> Result<(), StateError> {
        let sections = self.read(|k| k != K::KIND).await?;
        if value.is_blank() && sections.0[index(K::KIND)].is_none() {
            return Ok(());
        }
        // Serialised straight into the file, on this thread since the parts are
        // borrowed: at 100,000 members a copy of the text would be a good part of the
        // run's memory. Only the CLI keeps a state file; nothing else waits on it.
        write_atomically(&self.path, self.fsync, |file| {
            serde_json::to_writer(
                file,
                &Replaced {
                    sections: &sections,
                    value,
                },
            )
            .map_err(std::io::Error::other)
        })
    }

    fn location(&self) -> String {
        format!("--state-file {}", self.path.display())
    }
}

/// The file with one section replaced by `value`, the others as they were.
struct Replaced<'a, K> {
    sections: &'a Sections,
    value: &'a K,
}

impl<K: Kind> Serialize for Replaced<'_, K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for kind in SECTIONS {
            if kind == K::KIND {
                map.serialize_entry(kind.name(), self.value)?;
            } else if let Some(text) = self.sections.text(kind) {
                map.serialize_entry(kind.name(), text)?;
            }
        }
        map.end()
    }
}

/// Reads the top level: the sections `keep` wants as text, the others skipped; and
/// whether the file is of the earlier format (an outbox: `entries`, `generation`).
struct Reader<'a, F>(&'a F);

impl<'de, F: Fn(StateKind) -> bool> DeserializeSeed<'de> for Reader<'_, F> {
    type Value = (Sections, bool);
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: Fn(StateKind) -> bool> Visitor<'de> for Reader<'_, F> {
    type Value = (Sections, bool);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of state sections")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut sections = Sections::default();
        let mut earlier = false;
        while let Some(key) = m.next_key::<Cow<'de, str>>()? {
            let kind = SECTIONS.iter().find(|k| k.name() == key.as_ref());
            match kind {
                Some(&kind) if (self.0)(kind) => {
                    let text: Option<Box<RawValue>> = m.next_value()?;
                    sections.0[index(kind)] = text.map(Section::Text);
                }
                Some(&kind) => {
                    let there = m.next_value::<Option<IgnoredAny>>()?.is_some();
                    sections.0[index(kind)] = there.then_some(Section::Skipped);
                }
                None if matches!(key.as_ref(), "entries" | "generation") => {
                    earlier |= m.next_value::<Option<IgnoredAny>>()?.is_some();
                }
                None => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((sections, earlier))
    }
}

fn write_atomically(
    path: &Path,
    fsync: bool,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), StateError> {
    let fail = |e: std::io::Error| StateError::write(path.display().to_string(), e);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| StateError::write(path.display().to_string(), "not a file path"))?
        .to_string_lossy();
    // Same directory, so the rename stays within one file system and is atomic.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        write(&mut file)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        if fsync {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&tmp, path)?;
        if fsync {
            std::fs::File::open(&dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ledger::{Ledger, LedgerEntry, Origin};
    use crate::state::StateMeta;

    /// Notes-like state (the notes themselves live above this layer).
    #[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
    struct Notes(BTreeMap<String, BTreeMap<String, String>>);

    impl Kind for Notes {
        const KIND: StateKind = StateKind::Convergence;
        type Entry = BTreeMap<String, String>;
        fn meta(&self) -> StateMeta {
            StateMeta::default()
        }
        fn entries(&self) -> Result<Cow<'_, BTreeMap<String, Self::Entry>>, serde_json::Error> {
            Ok(Cow::Borrowed(&self.0))
        }
        fn join(
            _: StateMeta,
            entries: BTreeMap<String, Self::Entry>,
        ) -> Result<Self, serde_json::Error> {
            Ok(Notes(entries))
        }
        fn is_blank(&self) -> bool {
            self.0.is_empty()
        }
    }

    fn ledger(ids: &[&str]) -> Ledger {
        let entries = ids
            .iter()
            .map(|id| {
                let entry = LedgerEntry {
                    origin: Origin::Created,
                    account: None,
                };
                (id.to_string(), entry)
            })
            .collect();
        Ledger::from_entries(entries, None)
    }

    #[tokio::test]
    async fn a_save_replaces_its_section_and_copies_the_others_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let file = StateFile::new(&path);
        assert_eq!(
            Store::<Ledger>::location(&file),
            format!("--state-file {}", path.display())
        );
        // Spacing and order inside a section are its own: copied, not re-written.
        std::fs::write(
            &path,
            r#"{"convergence": {"E1": {"jobTitle": "0f"}}, "ledger": {"members": {"E1": "c"}}, "invitations": {"generation": 2}, "other": 1}"#,
        )
        .unwrap();
        let loaded: Ledger = file.load().await.unwrap();
        assert_eq!(loaded, ledger(&["E1"]));
        file.save(&ledger(&["E1", "E2"])).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            r#"{"invitations":{"generation": 2},"ledger":{"members":{"E1":"c","E2":"c"}},"convergence":{"E1": {"jobTitle": "0f"}}}"#
        );
        let outbox: Outbox = file.load().await.unwrap();
        assert_eq!(outbox.generation, 2);
        file.save(&Outbox::default()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            r#"{"invitations":{"generation":0,"entries":{}},"ledger":{"members":{"E1":"c","E2":"c"}},"convergence":{"E1": {"jobTitle": "0f"}}}"#
        );
        let notes: Notes = file.load().await.unwrap();
        assert_eq!(notes.0["E1"]["jobTitle"], "0f");
    }

    #[tokio::test]
    async fn blank_notes_write_no_section_where_there_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let file = StateFile::new(&path);
        file.save(&Notes::default()).await.unwrap();
        assert!(!path.exists(), "nothing to keep, nothing written");
        let note = BTreeMap::from([("title".to_string(), "0f".to_string())]);
        file.save(&Notes(BTreeMap::from([("E1".to_string(), note)])))
            .await
            .unwrap();
        file.save(&Notes::default()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            r#"{"convergence":{}}"#,
            "notes there before are replaced, even by none"
        );
    }

    #[tokio::test]
    async fn a_file_of_the_earlier_format_is_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let file = StateFile::new(&path);
        let earlier = r#"{"generation":3,"entries":{}}"#;
        std::fs::write(&path, earlier).unwrap();
        let outbox: Outbox = file.load().await.unwrap();
        assert_eq!(outbox.generation, 3);
        let empty: Ledger = file.load().await.unwrap();
        assert!(empty.is_empty());
        file.save(&ledger(&["E1"])).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!(r#"{{"invitations":{earlier},"ledger":{{"members":{{"E1":"c"}}}}}}"#)
        );
    }

    #[tokio::test]
    async fn the_ledger_does_not_load_beside_a_broken_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let file = StateFile::new(&path);
        std::fs::write(
            &path,
            r#"{"invitations":{"entries":{"E1":5}},"ledger":{"members":{"E1":"c"}}}"#,
        )
        .unwrap();
        let err = Store::<Ledger>::load(&file).await.unwrap_err();
        assert!(matches!(err, StateError::Parse { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("state.json: not a valid state file"),
            "{err}"
        );
        // The notes do not need the outbox.
        assert_eq!(Store::<Notes>::load(&file).await.unwrap(), Notes::default());
        std::fs::write(&path, r#"{"ledger":{"members":{}}} x"#).unwrap();
        assert!(Store::<Notes>::load(&file).await.is_err(), "trailing text");
    }
}
