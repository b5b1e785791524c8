//! Where the outbox lives: a JSON state file (shared with the leaver ledger) or memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Outbox;
use crate::ledger::{Ledger, LedgerStore};

/// Persistence of the outbox. `save` must be atomic: after a crash, `load` returns either
/// the previous or the new outbox, never a mixture.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    async fn load(&self) -> Result<Outbox, String>;
    async fn save(&self, outbox: &Outbox) -> Result<(), String>;
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

/// The whole state file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct StateFile {
    #[serde(default)]
    invitations: Outbox,
    #[serde(default)]
    ledger: Ledger,
}

impl FileOutboxStore {
    async fn read_state(&self) -> Result<StateFile, String> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => {
                let bad = |e: serde_json::Error| {
                    format!(
                        "{}: not a valid state file ({e}); move it aside to start afresh (the ledger of managed members and the pending invitations in it are then forgotten)",
                        path.display()
                    )
                };
                let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(bad)?;
                let legacy = value.get("entries").is_some() || value.get("generation").is_some();
                if legacy {
                    Ok(StateFile {
                        invitations: serde_json::from_value(value).map_err(bad)?,
                        ledger: Ledger::default(),
                    })
                } else {
                    serde_json::from_value(value).map_err(bad)
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        })
        .await
        .map_err(|e| format!("reading the state file: {e}"))?
    }

    async fn write_state(&self, state: &StateFile) -> Result<(), String> {
        let bytes = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        let path = self.path.clone();
        let fsync = self.fsync;
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes, fsync))
            .await
            .map_err(|e| format!("writing the state file: {e}"))?
    }
}

#[async_trait]
impl OutboxStore for FileOutboxStore {
    async fn load(&self) -> Result<Outbox, String> {
        Ok(self.read_state().await?.invitations)
    }

    async fn save(&self, outbox: &Outbox) -> Result<(), String> {
        let mut state = self.read_state().await?;
        state.invitations = outbox.clone();
        self.write_state(&state).await
    }
}

#[async_trait]
impl LedgerStore for FileOutboxStore {
    async fn load_ledger(&self) -> Result<Ledger, String> {
        Ok(self.read_state().await?.ledger)
    }

    async fn save_ledger(&self, ledger: &Ledger) -> Result<(), String> {
        let mut state = self.read_state().await?;
        state.ledger = ledger.clone();
        self.write_state(&state).await
    }

    fn ledger_location(&self) -> String {
        format!("--state-file {}", self.path.display())
    }
}

fn write_atomically(path: &Path, bytes: &[u8], fsync: bool) -> Result<(), String> {
    use std::io::Write;
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file path", path.display()))?
        .to_string_lossy();
    // Same directory, so the rename stays within one file system and is atomic.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
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
    async fn load(&self) -> Result<Outbox, String> {
        Ok(self.snapshot())
    }
    async fn save(&self, outbox: &Outbox) -> Result<(), String> {
        *self.outbox.lock().expect("outbox lock") = outbox.clone();
        self.saves.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
