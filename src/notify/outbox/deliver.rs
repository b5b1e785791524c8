//! Step 3 of the protocol: sending the pending invitations in batches.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::{
    now_secs, DeliveryContext, DeliveryReport, EntryState, Outbox, OutboxEntry, OutboxLimits,
};
use crate::api::{RecordError, Severity};
use crate::notify::templates::{InvitationVars, Templates};
use crate::notify::{MailError, MailTransport, OutgoingMail};
use crate::state::Store;

/// Step 3: sends every pending invitation whose member exists, exactly once.
///
/// `existing_employee_ids`: the Employee IDs of the destination's members after this run
/// (those listed at the start plus those created), or `None` when unknown (the listing
/// failed): then only confirmed intents are sent and the others kept.
///
/// - An entry found `Sending` (a crash mid-send) becomes `Uncertain` and a warning row;
///   it is not sent again.
/// - An unconfirmed intent whose member does not exist is dropped if it was recorded
///   before this run (the create never happened; a new create records it again; one for
///   a member's later account is kept as `Failed`, so its rounds keep counting), and
///   kept if it was recorded during this run (the create's answer may have been lost;
///   the next run's listing decides).
/// - Relay unavailable: stop, everything not sent stays pending. 4xx: stays pending.
///   5xx: a warning row; given up when the relay accepts other invitations (or after
///   `max_refusals` refusals), else kept for a later run (the relay may be misconfigured).
///
/// Never fails: problems are warnings in the report.
pub async fn deliver_pending(
    store: &dyn Store<Outbox>,
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
    settle_interrupted(&mut outbox, &mut report);
    let queue = deliverable(&mut outbox, existing_employee_ids);
    let mut delivery = Delivery {
        transport,
        templates,
        ctx,
        outbox,
        report,
        transient_streak: 0,
        refused: Vec::new(),
        stopped: None,
    };
    delivery.send_batches(store, queue).await;
    delivery.settle_refusals();
    delivery.finish(store).await
}

/// Entries found `Sending` were interrupted mid-send: never sent again.
fn settle_interrupted(outbox: &mut Outbox, report: &mut DeliveryReport) {
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
}

/// The `Intended` entries to send now; drops unconfirmed intents of earlier runs whose
/// member does not exist.
fn deliverable(
    outbox: &mut Outbox,
    existing_employee_ids: Option<&HashSet<String>>,
) -> VecDeque<String> {
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
            (false, Some(false)) if e.generation >= generation => true,
            // A later account's invitation whose create never happened: kept as finished,
            // so that the next new account's invitation gets a Message-ID of its own.
            (false, Some(false)) if e.round > 0 => {
                e.finish(EntryState::Failed);
                e.last_error = Some("the new account was not created".into());
                true
            }
            (false, Some(false)) => false,
            (false, None) => true,
        }
    });
    deliver.into()
}

/// One delivery in progress: the outbox being updated and what has happened so far.
struct Delivery<'a> {
    transport: &'a dyn MailTransport,
    templates: &'a Templates,
    ctx: &'a DeliveryContext,
    outbox: Outbox,
    report: DeliveryReport,
    transient_streak: usize,
    /// Refused in a row since the relay last accepted one.
    refused: Vec<String>,
    /// Why delivery stopped early, if it did.
    stopped: Option<String>,
}

impl Delivery<'_> {
    fn stop_after(&self) -> usize {
        self.ctx.limits.stop_after_consecutive_failures.max(1) as usize
    }

    async fn send_batches(&mut self, store: &dyn Store<Outbox>, mut queue: VecDeque<String>) {
        // The first batch is one message: it measures the relay's pace for the next ones.
        let mut batch_size = 1usize;
        while !queue.is_empty() {
            let batch: Vec<String> = queue.drain(..batch_size.min(queue.len())).collect();
            let now = now_secs();
            for id in &batch {
                let entry = self.outbox.entries.get_mut(id).expect("deliverable entry");
                entry.state = EntryState::Sending;
                entry.since = now;
            }
            // One save marks the whole batch `Sending` and records the previous batch's outcomes.
            if let Err(e) = store.save(&self.outbox).await {
                back_to_intended(&mut self.outbox, &batch);
                self.stopped = Some(format!(
                    "invitations stopped: the invitation outbox could not be saved: {e}"
                ));
                break;
            }
            let started = Instant::now();
            let attempted = self.send_batch(&batch, &mut queue, started).await;
            if self.stopped.is_some() {
                break;
            }
            batch_size = next_batch_size(attempted, started.elapsed(), &self.ctx.limits);
        }
    }

    /// Sends a batch already saved as `Sending` until it is done, its time is up (the rest
    /// goes back to the front of `queue`) or delivery stops. Returns how many were tried.
    async fn send_batch(
        &mut self,
        batch: &[String],
        queue: &mut VecDeque<String>,
        started: Instant,
    ) -> usize {
        let mut attempted = 0usize;
        for (i, id) in batch.iter().enumerate() {
            if i > 0 && started.elapsed() >= self.ctx.limits.batch_time {
                // Time to record what was sent; the rest starts the next batch.
                back_to_intended(&mut self.outbox, &batch[i..]);
                for rest in batch[i..].iter().rev() {
                    queue.push_front(rest.clone());
                }
                break;
            }
            attempted += 1;
            self.send(id).await;
            if self.stopped.is_some() {
                back_to_intended(&mut self.outbox, &batch[i + 1..]);
                break;
            }
        }
        attempted
    }

    /// Sends one invitation and records its outcome on the entry.
    async fn send(&mut self, id: &str) {
        let stop_after = self.stop_after();
        let entry = self.outbox.entries.get_mut(id).expect("entry");
        let mail = invitation_mail(self.templates, self.ctx, id, entry);
        let result = self.transport.send(mail).await;
        entry.since = now_secs();
        match result {
            Ok(()) => {
                entry.finish(EntryState::Sent);
                entry.last_error = None;
                self.report.sent += 1;
                self.transient_streak = 0;
                // The relay accepts invitations: the refusals were about their recipients.
                for r in self.refused.drain(..) {
                    give_up(&mut self.outbox, &r, &mut self.report);
                }
            }
            Err(MailError::Uncertain(m)) => {
                entry.finish(EntryState::Uncertain);
                self.report.uncertain += 1;
                let message = format!("the invitation may not have been delivered ({m}); it is not sent again so that nobody receives it twice");
                entry.last_error = Some(m);
                self.report.failed.push(row(id, entry, message));
            }
            Err(MailError::Permanent(m)) => {
                entry.state = EntryState::Intended;
                entry.refusals += 1;
                entry.last_error = Some(m.clone());
                self.refused.push(id.to_string());
                if self.refused.len() >= stop_after {
                    self.stopped = Some(format!(
                        "the mail relay refused {} invitations in a row (last: {m}); delivery stopped for this run",
                        self.refused.len()
                    ));
                }
            }
            Err(MailError::Transient(m)) => {
                entry.state = EntryState::Intended;
                entry.last_error = Some(m.clone());
                self.transient_streak += 1;
                if self.transient_streak >= stop_after {
                    self.stopped = Some(format!(
                        "the mail relay deferred {} invitations in a row (last: {m}); delivery stopped for this run",
                        self.transient_streak
                    ));
                }
            }
            Err(e @ MailError::Unavailable(_)) => {
                entry.state = EntryState::Intended;
                entry.last_error = Some(e.to_string());
                self.stopped = Some(format!("invitations not sent: {e}"));
            }
        }
    }

    /// Refusals not followed by an accepted invitation may be the relay's fault: keep them
    /// pending for a later run, up to `max_refusals`.
    fn settle_refusals(&mut self) {
        let relay_accepts = self.report.sent > 0 && self.stopped.is_none();
        let max_refusals = self.ctx.limits.max_refusals;
        for id in std::mem::take(&mut self.refused) {
            let e = &self.outbox.entries[&id];
            if relay_accepts || e.refusals >= max_refusals {
                give_up(&mut self.outbox, &id, &mut self.report);
            } else {
                let message = format!(
                    "the mail relay refused the invitation ({}); it will be tried again on the next run (refusal {} of {})",
                    e.last_error.as_deref().unwrap_or(""),
                    e.refusals,
                    max_refusals
                );
                self.report.failed.push(row(&id, e, message));
            }
        }
    }

    /// The last save, and the report's pending count and closing warning.
    async fn finish(mut self, store: &dyn Store<Outbox>) -> DeliveryReport {
        let mut report = self.report;
        self.outbox.generation += 1;
        prune(&mut self.outbox, now_secs(), &self.ctx.limits);
        if let Err(e) = store.save(&self.outbox).await {
            report.warnings.push(format!(
                "the invitation outbox could not be saved after delivery: {e}; the invitations of the last batch will be reported as possibly undelivered on the next run"
            ));
        }

        report.pending = self.outbox.pending() as u32;
        let pending_note = match report.pending {
            0 => None,
            1 => Some("1 invitation is pending and will be sent on the next run".to_string()),
            n => Some(format!(
                "{n} invitations are pending and will be sent on the next run"
            )),
        };
        match (self.stopped, pending_note) {
            (Some(s), Some(p)) => report.warnings.push(format!("{s}; {p}")),
            (Some(s), None) => report.warnings.push(s),
            (None, Some(p)) => report.warnings.push(p),
            (None, None) => {}
        }
        report
    }
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
        severity: Severity::Warning,
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
        message_id: Some(invitation_message_id_of(ctx, employee_id, entry.round)),
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

/// [`invitation_message_id`] of a member's `round`-th account (0: the first, whose
/// Message-ID is the plain one): an account created again after the first vanished gets
/// an invitation of its own, which a mailbox must not take for a copy of the first.
pub fn invitation_message_id_of(ctx: &DeliveryContext, employee_id: &str, round: u32) -> String {
    let id = invitation_message_id(ctx, employee_id);
    match round {
        0 => id,
        n => id.replacen('@', &format!(".{n}@"), 1),
    }
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

pub(super) fn prune(outbox: &mut Outbox, now: u64, limits: &OutboxLimits) {
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
