//! Where the outbox lives: a JSON state file (shared with the leaver ledger) or memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Outbox;
use crate::ledger::{Ledger, LedgerStore, StateError};

/// Persistence of the outbox. `save` must be atomic: after a crash, `load` returns either
/// the previous or the new outbox, never a mixture.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    async fn load(&self) -> Result<Outbox, StateError>;
    async fn save(&self, outbox: &Outbox) -> Result<(), StateError>;
}

/// The outbox as a JSON file (the CLI's `--state-file`), beside the integration's
/// ledger of managed members: `{"invitations": {…}, "ledger": {"members": {…}}}`. A
/// file holding only an outbox (the earlier format) is read as such.
///
/// `save` writes a temporary file in the same directory and renames it over the old one,
/// so a reader sees the old or the new content, whole. That is safe against the process
/// crashing or being killed at any point (the kernel keeps written data). Without
/// [`FileOutboxStore::with_fsync`] a power loss or kernel crash may lose the latest saves;
/// with it each save is flushed to disk (file and directory) before it returns.
#[derive(Clone, Debug)]
pub struct FileOutboxStore {
    path: PathBuf,
    fsync: bool,
}

impl FileOutboxStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileOutboxStore {
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
}

/// The state file's parts (the outbox, the ledger, the convergence notes), each kept as
/// its JSON text: a save replaces one and copies the others through unparsed, so that
/// no save parses the ledger of 100,000 members but the ledger's own.
/// `L`: the ledger's text, or [`IgnoredAny`] when a save replaces it anyway.
struct RawState<L = Box<RawValue>> {
    invitations: Option<Box<RawValue>>,
    ledger: Option<L>,
    convergence: Option<Box<RawValue>>,
}

impl<L> Default for RawState<L> {
    fn default() -> Self {
        RawState {
            invitations: None,
            ledger: None,
            convergence: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(bound = "L: Deserialize<'de>")]
struct RawParts<L> {
    #[serde(default)]
    invitations: Option<Box<RawValue>>,
    #[serde(default = "Option::default")]
    ledger: Option<L>,
    #[serde(default)]
    convergence: Option<Box<RawValue>>,
    /// The earlier format: the outbox itself at the top level.
    #[serde(default)]
    entries: Option<IgnoredAny>,
    #[serde(default)]
    generation: Option<IgnoredAny>,
}

#[derive(Serialize)]
struct StateOut<'a, I: Serialize + ?Sized, L: Serialize + ?Sized, C: Serialize + ?Sized> {
    #[serde(skip_serializing_if = "Option::is_none")]
    invitations: Option<&'a I>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ledger: Option<&'a L>,
    #[serde(skip_serializing_if = "Option::is_none")]
    convergence: Option<&'a C>,
}

impl FileOutboxStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn invalid(&self, e: serde_json::Error) -> StateError {
        StateError::parse(
            self.location(),
            format!("not a valid state file ({e}); move it aside to start afresh (the ledger of managed members and the pending invitations in it are then forgotten)"),
        )
    }

    async fn read_raw<L: serde::de::DeserializeOwned>(&self) -> Result<RawState<L>, StateError> {
        let path = self.path.clone();
        let bytes = tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateError::read(path.display().to_string(), e)),
        })
        .await
        .map_err(|e| StateError::read(self.location(), format!("reading the state file: {e}")))??;
        let Some(bytes) = bytes else {
            return Ok(RawState::default());
        };
        let parts: RawParts<L> = serde_json::from_slice(&bytes).map_err(|e| self.invalid(e))?;
        if parts.entries.is_some() || parts.generation.is_some() {
            let text =
                String::from_utf8(bytes).map_err(|e| StateError::parse(self.location(), e))?;
            let whole = RawValue::from_string(text).map_err(|e| self.invalid(e))?;
            return Ok(RawState {
                invitations: Some(whole),
                ..RawState::default()
            });
        }
        Ok(RawState {
            invitations: parts.invitations,
            ledger: parts.ledger,
            convergence: parts.convergence,
        })
    }

    fn parse<T: serde::de::DeserializeOwned + Default>(
        &self,
        raw: Option<Box<RawValue>>,
    ) -> Result<T, StateError> {
        match raw {
            Some(r) => serde_json::from_str(r.get()).map_err(|e| self.invalid(e)),
            None => Ok(T::default()),
        }
    }

    /// The convergence notes kept beside the outbox and the ledger (the default when the
    /// file has none).
    pub async fn load_notes<T: serde::de::DeserializeOwned + Default>(
        &self,
    ) -> Result<T, StateError> {
        let raw: RawState<IgnoredAny> = self.read_raw().await?;
        self.parse(raw.convergence)
    }

    /// Replaces the convergence notes, keeping the other parts as they are; a file
    /// without notes is left alone while there are none to keep.
    pub async fn save_notes<T: Serialize + Sync>(
        &self,
        notes: &T,
        empty: bool,
    ) -> Result<(), StateError> {
        let raw: RawState = self.read_raw().await?;
        if empty && raw.convergence.is_none() {
            return Ok(());
        }
        self.write_state(
            raw.invitations.as_deref(),
            raw.ledger.as_deref(),
            Some(notes),
        )
        .await
    }

    async fn write_state<I, L, C>(
        &self,
        invitations: Option<&I>,
        ledger: Option<&L>,
        convergence: Option<&C>,
    ) -> Result<(), StateError>
    where
        I: Serialize + Sync + ?Sized,
        L: Serialize + Sync + ?Sized,
        C: Serialize + Sync + ?Sized,
    {
        // Serialised straight into the file, on this thread since the parts are
        // borrowed: at 100,000 members a copy of the text would be a good part of the
        // run's memory. Only the CLI keeps a state file; nothing else waits on it.
        write_atomically(&self.path, self.fsync, |file| {
            serde_json::to_writer(
                file,
                &StateOut {
                    invitations,
                    ledger,
                    convergence,
                },
            )
            .map_err(std::io::Error::other)
        })
    }
}

#[async_trait]
impl OutboxStore for FileOutboxStore {
    async fn load(&self) -> Result<Outbox, StateError> {
        let raw: RawState<IgnoredAny> = self.read_raw().await?;
        self.parse(raw.invitations)
    }

    async fn save(&self, outbox: &Outbox) -> Result<(), StateError> {
        let raw: RawState = self.read_raw().await?;
        self.write_state(
            Some(outbox),
            raw.ledger.as_deref(),
            raw.convergence.as_deref(),
        )
        .await
    }
}

#[async_trait]
impl LedgerStore for FileOutboxStore {
    async fn load_ledger(&self) -> Result<Ledger, StateError> {
        let raw: RawState = self.read_raw().await?;
        // Checked even though unused here: a broken outbox must not go unnoticed.
        let _: Outbox = self.parse(raw.invitations)?;
        self.parse(raw.ledger)
    }

    async fn save_ledger(&self, ledger: &Ledger) -> Result<(), StateError> {
        let raw: RawState<IgnoredAny> = self.read_raw().await?;
        self.write_state(
            raw.invitations.as_deref(),
            Some(ledger),
            raw.convergence.as_deref(),
        )
        .await
    }

    fn ledger_location(&self) -> String {
        format!("--state-file {}", self.path.display())
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

/// The outbox in memory: the CLI without `--state-file` (at most once across processes)
/// and tests.
#[derive(Debug, Default)]
pub struct MemoryOutboxStore {
    outbox: Mutex<Outbox>,
    saves: AtomicU64,
}

impl MemoryOutboxStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The outbox as last saved.
    pub fn snapshot(&self) -> Outbox {
        self.outbox.lock().expect("outbox lock").clone()
    }

    /// Number of saves so far.
    pub fn saves(&self) -> u64 {
        self.saves.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl OutboxStore for MemoryOutboxStore {
    async fn load(&self) -> Result<Outbox, StateError> {
        Ok(self.snapshot())
    }
    async fn save(&self, outbox: &Outbox) -> Result<(), StateError> {
        *self.outbox.lock().expect("outbox lock") = outbox.clone();
        self.saves.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
