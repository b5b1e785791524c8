//! Exactly-once invitations: an outbox of invitation intents, persisted before members are
//! created and before each SMTP transaction.
//!
//! Each entry, keyed by Employee ID, moves through
//! `Intended` → `Sending` → `Sent`, or ends as `Failed` (refused by the relay) or
//! `Uncertain` (interrupted while being sent). The protocol (see [`deliver_pending`]):
//!
//! 1. [`record_intents`] before the members are created (persisted);
//! 2. [`confirm`] the members that were created (and, optionally, [`forget`] creates that
//!    definitely did not happen);
//! 3. [`deliver_pending`] after the run, in batches: persist a batch of deliverable
//!    `Intended` entries as `Sending`, send them, and persist their results together with
//!    the next batch's `Sending`. A batch holds at most [`DELIVERY_BATCH_MAX`] messages
//!    and lasts at most [`DELIVERY_BATCH_TIME`]; the first is one message, each next one
//!    at most twice the last and sized to what the relay took in that time, so saves
//!    stay few at any pace.
//!
//! Why it is never twice: a message is only sent while its entry is durably `Sending`,
//! and an entry found `Sending` at the start of a delivery (a crash between the save that
//! marked its batch and the one that recorded it) is never sent again — it is reported
//! as "may not have been delivered" instead. So a crash leaves at most one batch in
//! doubt: at most [`DELIVERY_BATCH_MAX`] invitations, and no more than the relay takes
//! in about [`DELIVERY_BATCH_TIME`]. A delivery that stops by itself (relay down, a
//! failed save) puts the batch's unsent entries back to `Intended` before its last save.
//! Failures that are definitely non-deliveries (relay unreachable, 4xx, or a broken
//! connection before the content was sent) put the entry back to `Intended`, so it is
//! sent on a later run. Nothing is lost by a crash before the `Sending` save: the entry is
//! still `Intended`. `Sent` entries are kept (see [`OutboxLimits`]) so that a member who is
//! somehow created again is not invited twice.
//!
//! The price of "never twice" is that a message interrupted after its content reached
//! the relay (a crash, or a connection lost before the relay's reply) is not retried; such
//! entries become `Uncertain` and are reported as warning rows. In practice the relay
//! usually did accept them.
//!
//! If [`record_intents`] fails (the store is unwritable), invitations for that run can't be
//! guaranteed. Failing the import over it would break "e-mail never fails an import", so
//! the suggested handling is: warn, create the members, and deliver their invitations
//! through a [`MemoryOutboxStore`] (at most once, like the CLI without a state file).
//!
//! One delivery at a time per outbox: the operator runs one import per integration at a
//! time, the CLI documents one process per `--state-file`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::templates::{InvitationVars, Templates};
use super::{MailError, MailTransport, OutgoingMail};
use crate::api::RecordError;
use crate::ledger::{Ledger, LedgerStore};

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

impl OutboxEntry {
    /// Moves to a final state, keeping only what a finished entry needs (small outboxes).
    fn finish(&mut self, state: EntryState) {
        debug_assert!(state.is_done());
        self.state = state;
        self.first_name = None;
        self.confirmed = false;
        self.generation = 0;
        self.since = now_secs();
    }
}

impl EntryState {
    fn is_done(self) -> bool {
        matches!(
            self,
            EntryState::Sent | EntryState::Uncertain | EntryState::Failed
        )
    }
}

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

/// A member about to be created who should be invited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvitationIntent {
    pub employee_id: String,
    pub email: String,
    pub first_name: Option<String>,
}

/// Invitations sent per outbox save, at most (see [`OutboxLimits::batch_max`]).
pub const DELIVERY_BATCH_MAX: usize = 100;
/// A delivery batch's length in time, at most (see [`OutboxLimits::batch_time`]).
pub const DELIVERY_BATCH_TIME: Duration = Duration::from_secs(2);

/// How long finished entries are kept, how delivery is batched, and when it gives up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxLimits {
    /// `Sent`, `Uncertain` and `Failed` entries older than this are removed.
    pub keep_done_for: Duration,
    /// At most this many finished entries are kept (the oldest go first).
    pub max_done: usize,
    /// Stop the run's delivery after this many consecutive 4xx or 5xx answers (the
    /// relay is throttling or refusing us); the rest stays pending.
    pub stop_after_consecutive_failures: u32,
    /// A refused (5xx) invitation is given up once refused this many times while the
    /// relay was not shown to accept other invitations.
    pub max_refusals: u32,
    /// Invitations marked `Sending` by one save, at most: a crash during a batch leaves
    /// its messages in doubt (reported, never re-sent), so this bounds them.
    pub batch_max: usize,
    /// A batch is also cut after this long, and the next one sized to what the relay
    /// took in this time, so a slow relay's batches stay small.
    pub batch_time: Duration,
}

impl Default for OutboxLimits {
    /// A year and 20,000 finished entries: long enough that a member deleted by hand and
    /// re-created is not invited again. A finished entry is about 80 bytes of JSON (so
    /// 20,000 are about 1.6 MB); a store with a size limit (a ConfigMap holds 1 MiB)
    /// should lower `max_done`.
    fn default() -> Self {
        OutboxLimits {
            keep_done_for: Duration::from_secs(366 * 24 * 3600),
            max_done: 20_000,
            stop_after_consecutive_failures: 3,
            max_refusals: 3,
            batch_max: DELIVERY_BATCH_MAX,
            batch_time: DELIVERY_BATCH_TIME,
        }
    }
}

/// What an invitation says and how it is identified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryContext {
    /// The integration's name (`{{integration}}`, and part of the Message-ID).
    pub integration: String,
    /// `spec.welcomeEmail.loginUrl`.
    pub login_url: Option<String>,
    /// Domain of the invitations' fixed Message-IDs; the sender's domain is a good choice.
    /// Default `freshteam.provisioning.dev`.
    pub message_id_domain: Option<String>,
    pub limits: OutboxLimits,
}

impl DeliveryContext {
    pub fn new(integration: impl Into<String>, login_url: Option<String>) -> Self {
        DeliveryContext {
            integration: integration.into(),
            login_url,
            ..Self::default()
        }
    }
}

/// The outcome of one delivery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Invitations accepted by the relay.
    pub sent: u32,
    /// Invitations still waiting (for the relay, or for their member to exist).
    pub pending: u32,
    /// Invitations that may not have been delivered (interrupted while being sent).
    pub uncertain: u32,
    /// One warning row per recipient: refused, given up, or possibly not delivered.
    pub failed: Vec<RecordError>,
    /// Run-level warnings (relay unavailable, outbox unreadable, pending count).
    pub warnings: Vec<String>,
}

impl DeliveryReport {
    /// Every warning as a report row: the per-recipient rows, then the run-level ones.
    pub fn rows(&self) -> Vec<RecordError> {
        let mut rows = self.failed.clone();
        rows.extend(self.warnings.iter().map(|w| RecordError {
            employee_id: None,
            email: None,
            field: Some("invitation".into()),
            severity: "warning".into(),
            message: w.clone(),
        }));
        rows
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Step 1: records invitations for members about to be created, and persists them. Call
/// before creating the members; if it fails, the invitations can't be guaranteed (the
/// module docs suggest what to do). Entries already sent, in doubt or refused
/// are left alone (never twice); pending ones are refreshed.
pub async fn record_intents(
    store: &dyn OutboxStore,
    intents: &[InvitationIntent],
) -> Result<(), String> {
    if intents.is_empty() {
        return Ok(());
    }
    let mut outbox = store.load().await?;
    let now = now_secs();
    let generation = outbox.generation;
    for intent in intents {
        match outbox.entries.get_mut(&intent.employee_id) {
            Some(e) if e.state == EntryState::Intended => {
                e.email = intent.email.clone();
                e.first_name = intent.first_name.clone();
                e.confirmed = false;
                e.generation = generation;
                e.since = now;
            }
            Some(_) => {}
            None => {
                outbox.entries.insert(
                    intent.employee_id.clone(),
                    OutboxEntry {
                        email: intent.email.clone(),
                        first_name: intent.first_name.clone(),
                        state: EntryState::Intended,
                        confirmed: false,
                        generation,
                        refusals: 0,
                        last_error: None,
                        since: now,
                    },
                );
            }
        }
    }
    store.save(&outbox).await
}

/// Step 2: marks the members the run created, so their invitations are sent even if the
/// destination's member list is not known to [`deliver_pending`].
pub async fn confirm(store: &dyn OutboxStore, created_ids: &[String]) -> Result<(), String> {
    update_intended(store, created_ids, |outbox, id| {
        if let Some(e) = outbox.entries.get_mut(id) {
            e.confirmed = true;
            return true;
        }
        false
    })
    .await
}

/// Step 2 (optional): drops the intents of creates that definitely did not happen (the
/// destination refused them). Not needed for correctness — [`deliver_pending`] drops
/// intents whose member does not exist on the run after — and not to be used for a
/// create whose answer was lost (it may have happened).
pub async fn forget(store: &dyn OutboxStore, failed_ids: &[String]) -> Result<(), String> {
    update_intended(store, failed_ids, |outbox, id| {
        outbox.entries.remove(id).is_some()
    })
    .await
}

/// Drops every pending invitation (welcome e-mail switched off). Returns how many.
pub async fn discard_pending(store: &dyn OutboxStore) -> Result<u32, String> {
    let mut outbox = store.load().await?;
    let before = outbox.entries.len();
    outbox
        .entries
        .retain(|_, e| e.state != EntryState::Intended);
    let dropped = (before - outbox.entries.len()) as u32;
    if dropped > 0 {
        store.save(&outbox).await?;
    }
    Ok(dropped)
}

async fn update_intended(
    store: &dyn OutboxStore,
    ids: &[String],
    mut change: impl FnMut(&mut Outbox, &str) -> bool,
) -> Result<(), String> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut outbox = store.load().await?;
    let mut changed = false;
    for id in ids {
        let intended = outbox
            .entries
            .get(id)
            .is_some_and(|e| e.state == EntryState::Intended);
        if intended {
            changed |= change(&mut outbox, id);
        }
    }
    if changed {
        store.save(&outbox).await?;
    }
    Ok(())
}

/// Step 3: sends every pending invitation whose member exists, exactly once.
///
/// `existing_employee_ids`: the Employee IDs of the destination's members after this run
/// (those listed at the start plus those created), or `None` when unknown (the listing
/// failed): then only confirmed intents are sent and the others kept.
///
/// - An entry found `Sending` (a crash mid-send) becomes `Uncertain` and a warning row;
///   it is not sent again.
/// - An unconfirmed intent whose member does not exist is dropped if it was recorded
///   before this run (the create never happened; a new create records it again), and
///   kept if it was recorded during this run (the create's answer may have been lost;
///   the next run's listing decides).
/// - Relay unavailable: stop, everything not sent stays pending. 4xx: stays pending.
///   5xx: a warning row; given up when the relay accepts other invitations (or after
///   `max_refusals` refusals), else kept for a later run (the relay may be misconfigured).
///
/// Never fails: problems are warnings in the report.
pub async fn deliver_pending(
    store: &dyn OutboxStore,
    transport: &dyn MailTransport,
    templates: &Templates,
    ctx: &DeliveryContext,
    existing_employee_ids: Option<&HashSet<String>>,
) -> DeliveryReport {
    let mut report = DeliveryReport::default();
    let mut outbox = match store.load().await {
        Ok(o) => o,
        Err(e) => {
            report.warnings.push(format!(
                "invitations not sent: the invitation outbox could not be read: {e}"
            ));
            return report;
        }
    };

    for (id, e) in outbox.entries.iter_mut() {
        if e.state == EntryState::Sending {
            e.finish(EntryState::Uncertain);
            report.uncertain += 1;
            report.failed.push(row(
                id,
                e,
                "the invitation may not have been delivered: the previous run stopped while sending it; it is not sent again so that nobody receives it twice".into(),
            ));
        }
    }

    let generation = outbox.generation;
    let mut deliver = Vec::new();
    outbox.entries.retain(|id, e| {
        if e.state != EntryState::Intended {
            return true;
        }
        let exists = existing_employee_ids.map(|ids| ids.contains(id));
        match (e.confirmed, exists) {
            (true, _) | (false, Some(true)) => {
                deliver.push(id.clone());
                true
            }
            (false, Some(false)) => e.generation >= generation,
            (false, None) => true,
        }
    });

    let stop_after = ctx.limits.stop_after_consecutive_failures.max(1) as usize;
    let mut transient_streak = 0usize;
    let mut refused: Vec<String> = Vec::new();
    let mut stopped: Option<String> = None;
    let mut queue: VecDeque<String> = deliver.into();
    // The first batch is one message: it measures the relay's pace for the next ones.
    let mut batch_size = 1usize;
    'batches: while !queue.is_empty() {
        let batch: Vec<String> = queue.drain(..batch_size.min(queue.len())).collect();
        let now = now_secs();
        for id in &batch {
            let entry = outbox.entries.get_mut(id).expect("deliverable entry");
            entry.state = EntryState::Sending;
            entry.since = now;
        }
        // One save marks the whole batch `Sending` and records the previous batch's outcomes.
        if let Err(e) = store.save(&outbox).await {
            back_to_intended(&mut outbox, &batch);
            stopped = Some(format!(
                "invitations stopped: the invitation outbox could not be saved: {e}"
            ));
            break;
        }
        let started = std::time::Instant::now();
        let mut attempted = 0usize;
        for (i, id) in batch.iter().enumerate() {
            if i > 0 && started.elapsed() >= ctx.limits.batch_time {
                // Time to record what was sent; the rest starts the next batch.
                back_to_intended(&mut outbox, &batch[i..]);
                for rest in batch[i..].iter().rev() {
                    queue.push_front(rest.clone());
                }
                break;
            }
            attempted += 1;
            let entry = outbox.entries.get_mut(id).expect("entry");
            let mail = invitation_mail(templates, ctx, id, entry);
            let result = transport.send(mail).await;
            entry.since = now_secs();
            match result {
                Ok(()) => {
                    entry.finish(EntryState::Sent);
                    entry.last_error = None;
                    report.sent += 1;
                    transient_streak = 0;
                    // The relay accepts invitations: the refusals were about their recipients.
                    for r in refused.drain(..) {
                        give_up(&mut outbox, &r, &mut report);
                    }
                }
                Err(MailError::Uncertain(m)) => {
                    entry.finish(EntryState::Uncertain);
                    report.uncertain += 1;
                    let message = format!("the invitation may not have been delivered ({m}); it is not sent again so that nobody receives it twice");
                    entry.last_error = Some(m);
                    report.failed.push(row(id, entry, message));
                }
                Err(MailError::Permanent(m)) => {
                    entry.state = EntryState::Intended;
                    entry.refusals += 1;
                    entry.last_error = Some(m.clone());
                    refused.push(id.clone());
                    if refused.len() >= stop_after {
                        stopped = Some(format!(
                            "the mail relay refused {} invitations in a row (last: {m}); delivery stopped for this run",
                            refused.len()
                        ));
                    }
                }
                Err(MailError::Transient(m)) => {
                    entry.state = EntryState::Intended;
                    entry.last_error = Some(m.clone());
                    transient_streak += 1;
                    if transient_streak >= stop_after {
                        stopped = Some(format!(
                            "the mail relay deferred {transient_streak} invitations in a row (last: {m}); delivery stopped for this run"
                        ));
                    }
                }
                Err(e @ MailError::Unavailable(_)) => {
                    entry.state = EntryState::Intended;
                    entry.last_error = Some(e.to_string());
                    stopped = Some(format!("invitations not sent: {e}"));
                }
            }
            if stopped.is_some() {
                back_to_intended(&mut outbox, &batch[i + 1..]);
                break 'batches;
            }
        }
        batch_size = next_batch_size(attempted, started.elapsed(), &ctx.limits);
    }

    // Refusals not followed by an accepted invitation may be the relay's fault: keep them
    // pending for a later run, up to `max_refusals`.
    let relay_accepts = report.sent > 0 && stopped.is_none();
    for id in refused {
        let e = &outbox.entries[&id];
        if relay_accepts || e.refusals >= ctx.limits.max_refusals {
            give_up(&mut outbox, &id, &mut report);
        } else {
            let message = format!(
                "the mail relay refused the invitation ({}); it will be tried again on the next run (refusal {} of {})",
                e.last_error.as_deref().unwrap_or(""),
                e.refusals,
                ctx.limits.max_refusals
            );
            report.failed.push(row(&id, e, message));
        }
    }

    outbox.generation += 1;
    prune(&mut outbox, now_secs(), &ctx.limits);
    if let Err(e) = store.save(&outbox).await {
        report.warnings.push(format!(
            "the invitation outbox could not be saved after delivery: {e}; the invitations of the last batch will be reported as possibly undelivered on the next run"
        ));
    }

    report.pending = outbox.pending() as u32;
    let pending_note = match report.pending {
        0 => None,
        1 => Some("1 invitation is pending and will be sent on the next run".to_string()),
        n => Some(format!(
            "{n} invitations are pending and will be sent on the next run"
        )),
    };
    match (stopped, pending_note) {
        (Some(s), Some(p)) => report.warnings.push(format!("{s}; {p}")),
        (Some(s), None) => report.warnings.push(s),
        (None, Some(p)) => report.warnings.push(p),
        (None, None) => {}
    }
    report
}

/// Entries of a batch that were marked `Sending` but not sent.
fn back_to_intended(outbox: &mut Outbox, ids: &[String]) {
    for id in ids {
        if let Some(e) = outbox.entries.get_mut(id) {
            e.state = EntryState::Intended;
        }
    }
}

/// As many messages as the relay took in `batch_time` at the pace just measured, at most
/// twice the last batch (a pace measured on a few messages, or on a relay's burst, says
/// little) and between 1 and `batch_max`.
fn next_batch_size(attempted: usize, elapsed: Duration, limits: &OutboxLimits) -> usize {
    let max = limits.batch_max.max(1);
    if attempted == 0 {
        return 1;
    }
    let per_second = attempted as f64 / elapsed.as_secs_f64().max(1e-3);
    let paced = (per_second * limits.batch_time.as_secs_f64()).ceil();
    let paced = if paced.is_finite() {
        paced as usize
    } else {
        max
    };
    paced.min(attempted * 2).clamp(1, max)
}

fn give_up(outbox: &mut Outbox, id: &str, report: &mut DeliveryReport) {
    let e = outbox.entries.get_mut(id).expect("refused entry");
    e.finish(EntryState::Failed);
    let message = format!(
        "the mail relay refused the invitation: {}; it is not sent again",
        e.last_error.as_deref().unwrap_or("no reason given")
    );
    report.failed.push(row(id, e, message));
}

fn row(id: &str, e: &OutboxEntry, message: String) -> RecordError {
    RecordError {
        employee_id: Some(id.to_string()),
        email: Some(e.email.clone()),
        field: Some("invitation".into()),
        severity: "warning".into(),
        message,
    }
}

fn invitation_mail(
    templates: &Templates,
    ctx: &DeliveryContext,
    employee_id: &str,
    entry: &OutboxEntry,
) -> OutgoingMail {
    let rendered = templates.invitation(&InvitationVars {
        first_name: entry.first_name.clone(),
        email: entry.email.clone(),
        login_url: ctx.login_url.clone(),
        integration: ctx.integration.clone(),
    });
    OutgoingMail {
        to: vec![entry.email.clone()],
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
        attachments: Vec::new(),
        message_id: Some(invitation_message_id(ctx, employee_id)),
    }
}

/// The same for every attempt at one member's invitation, so that a copy delivered twice
/// despite everything (a relay that accepted but never said so) is recognisable.
pub fn invitation_message_id(ctx: &DeliveryContext, employee_id: &str) -> String {
    let domain = ctx
        .message_id_domain
        .as_deref()
        .unwrap_or("freshteam.provisioning.dev");
    format!(
        "<invitation.{}.{}@{domain}>",
        atom(&ctx.integration),
        atom(employee_id)
    )
}

/// Keeps `[A-Za-z0-9_-]`, writes anything else as `=XX` (valid in a Message-ID).
fn atom(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

fn prune(outbox: &mut Outbox, now: u64, limits: &OutboxLimits) {
    let oldest = now.saturating_sub(limits.keep_done_for.as_secs());
    outbox
        .entries
        .retain(|_, e| !(e.state.is_done() && e.since < oldest));
    let mut done: Vec<(u64, String)> = outbox
        .entries
        .iter()
        .filter(|(_, e)| e.state.is_done())
        .map(|(id, e)| (e.since, id.clone()))
        .collect();
    if done.len() > limits.max_done {
        done.sort();
        let excess = done.len() - limits.max_done;
        for (_, id) in done.into_iter().take(excess) {
            outbox.entries.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests;
