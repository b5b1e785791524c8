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
//! still `Intended`. `Sent` entries are kept (see [`OutboxLimits`]) so that a create replayed
//! after a lost answer or a crash is not invited twice. A member whose account vanished
//! from the destination (closed down, deleted by hand) and who is created again gets one
//! invitation for the new account ([`record_intents_for_new_accounts`]); entries
//! remember the account they were for.
//!
//! The price of "never twice" is that a message interrupted after its content reached
//! the relay (a crash, or a connection lost before the relay's reply) is not retried; such
//! entries become `Uncertain` and are reported as warning rows. In practice the relay
//! usually did accept them.
//!
//! If [`record_intents`] fails (the store is unwritable), invitations for that run can't be
//! guaranteed. Failing the import over it would break "e-mail never fails an import", so
//! the suggested handling is: warn, create the members, and deliver their invitations
//! through a [`MemoryStore`](crate::state::MemoryStore) (at most once, like the CLI
//! without a state file).
//!
//! One delivery at a time per outbox: the operator runs one import per integration at a
//! time, the CLI documents one process per `--state-file`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api::{RecordError, Severity};
use crate::state::{StateError, Store};

mod deliver;

/// The outbox as stored is the state module's (its stores keep it: the state file, the
/// cluster, memory); the protocol that moves its entries is here.
pub use crate::state::outbox::{EntryState, Outbox, OutboxEntry};
pub use deliver::{deliver_pending, invitation_message_id, invitation_message_id_of};

impl OutboxEntry {
    /// Moves to a final state, keeping only what a finished entry needs (small outboxes).
    pub(super) fn finish(&mut self, state: EntryState) {
        debug_assert!(state.is_done());
        self.state = state;
        self.first_name = None;
        self.confirmed = false;
        self.generation = 0;
        self.since = now_secs();
    }
}

impl EntryState {
    pub(super) fn is_done(self) -> bool {
        matches!(
            self,
            EntryState::Sent | EntryState::Uncertain | EntryState::Failed
        )
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
    /// A year and 20,000 finished entries: long enough that a replayed create is not
    /// invited again. A finished entry is about 80 bytes of JSON (so
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
            severity: Severity::Warning,
            message: w.clone(),
        }));
        rows
    }
}

pub(super) fn now_secs() -> u64 {
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
    store: &dyn Store<Outbox>,
    intents: &[InvitationIntent],
) -> Result<(), StateError> {
    record(store, intents, false).await
}

/// [`record_intents`] as the engine calls it: each intent is for a new account. The
/// engine plans a create only when no account holds the employee's externalId, so an
/// entry already finished (sent, in doubt, refused) was for an account that is gone
/// (closed down after a leaver, deleted by hand): it starts over for the new account, as
/// a new round with a Message-ID of its own (a new account needs a new password). A
/// retry or a crash replays at most the recording of the same round: a pending entry is
/// only refreshed, and once the new account exists no create is planned for it, so no
/// account is invited twice.
pub async fn record_intents_for_new_accounts(
    store: &dyn Store<Outbox>,
    intents: &[InvitationIntent],
) -> Result<(), StateError> {
    record(store, intents, true).await
}

async fn record(
    store: &dyn Store<Outbox>,
    intents: &[InvitationIntent],
    new_accounts: bool,
) -> Result<(), StateError> {
    if intents.is_empty() {
        return Ok(());
    }
    let mut outbox = store.load().await?;
    let now = now_secs();
    let generation = outbox.generation;
    for intent in intents {
        let fresh = |round| OutboxEntry {
            email: intent.email.clone(),
            first_name: intent.first_name.clone(),
            state: EntryState::Intended,
            confirmed: false,
            generation,
            refusals: 0,
            last_error: None,
            account: None,
            round,
            since: now,
        };
        match outbox.entries.get_mut(&intent.employee_id) {
            Some(e) if e.state == EntryState::Intended => {
                e.email = intent.email.clone();
                e.first_name = intent.first_name.clone();
                e.confirmed = false;
                e.generation = generation;
                e.since = now;
            }
            Some(e) if new_accounts && e.state.is_done() => *e = fresh(e.round + 1),
            Some(_) => {}
            None => {
                outbox.entries.insert(intent.employee_id.clone(), fresh(0));
            }
        }
    }
    store.save(&outbox).await
}

/// Step 2: marks the members the run created, so their invitations are sent even if the
/// destination's member list is not known to [`deliver_pending`].
pub async fn confirm(store: &dyn Store<Outbox>, created_ids: &[String]) -> Result<(), StateError> {
    update_intended(store, created_ids, |outbox, id| {
        if let Some(e) = outbox.entries.get_mut(id) {
            e.confirmed = true;
            return true;
        }
        false
    })
    .await
}

/// Step 2, with the accounts: [`confirm`], recording which account each invitation is
/// for (Employee ID, destination id).
pub async fn confirm_accounts(
    store: &dyn Store<Outbox>,
    created: &[(String, String)],
) -> Result<(), StateError> {
    let accounts: BTreeMap<&str, &str> = created
        .iter()
        .map(|(e, a)| (e.as_str(), a.as_str()))
        .collect();
    let ids: Vec<String> = created.iter().map(|(e, _)| e.clone()).collect();
    update_intended(store, &ids, |outbox, id| {
        if let Some(e) = outbox.entries.get_mut(id) {
            e.confirmed = true;
            e.account = accounts.get(id).map(|a| a.to_string());
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
pub async fn forget(store: &dyn Store<Outbox>, failed_ids: &[String]) -> Result<(), StateError> {
    update_intended(store, failed_ids, |outbox, id| {
        outbox.entries.remove(id).is_some()
    })
    .await
}

/// Drops every pending invitation (welcome e-mail switched off). Returns how many.
pub async fn discard_pending(store: &dyn Store<Outbox>) -> Result<u32, StateError> {
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
    store: &dyn Store<Outbox>,
    ids: &[String],
    mut change: impl FnMut(&mut Outbox, &str) -> bool,
) -> Result<(), StateError> {
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

#[cfg(test)]
mod tests;
