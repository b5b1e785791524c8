//! Sending the plan's writes: in batches (a stop request is checked between two), creates
//! in waves down the reporting line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use crate::destination::{MemberDirectory, WriteOp, WriteOutcome};
use crate::plan::{PlanItem, WriteKind};
use crate::progress::ProgressSink;
use crate::sync::{CreatedMember, Sets, StopSignal};

/// Writes sent between two checks for a stop request; a destination that takes more in
/// one request (`/Bulk`) gets batches of that size, up to [`MAX_WRITE_BATCH`], so that a
/// batch is never split into more requests than its writes need.
pub(in crate::sync) const WRITE_BATCH: usize = 500;
const MAX_WRITE_BATCH: usize = 5_000;

/// What the writes did.
pub(super) struct Sent {
    /// Each item's outcome in plan order; `None` for the writes a stop request left
    /// unsent.
    pub results: Vec<Option<WriteOutcome>>,
    /// The members created, with their item's index.
    pub created: Vec<(usize, CreatedMember)>,
    /// The reason of a stop request that ended the writes early.
    pub stopped: Option<String>,
}

/// Applies the plan's writes, each made from its item only when its batch is sent.
/// Creates go in waves down the reporting line, so that a new member's manager, when
/// created in the same run, already has an id to point to.
pub(super) async fn apply_writes(
    destination: &dyn MemberDirectory,
    items: &[PlanItem],
    sets: Sets<'_>,
    managers: &HashMap<&str, &str>,
    progress: &dyn ProgressSink,
    stop: &StopSignal,
) -> Sent {
    let order = write_order(items, sets, managers);
    let creates = order.len().saturating_sub(1);
    let mut sent = Sent {
        results: (0..items.len()).map(|_| None).collect(),
        created: Vec::with_capacity(order[..creates].iter().map(Vec::len).sum()),
        stopped: None,
    };
    let mut created_ids: HashMap<&str, String> = HashMap::new();
    let batch = write_batch(destination);
    for idxs in order.iter().flat_map(|wave| wave.chunks(batch)) {
        if let Some(reason) = stop.reason() {
            sent.stopped = Some(reason);
            break;
        }
        let ops: Vec<WriteOp> = idxs
            .iter()
            .map(|&i| batch_op(sets.write(&items[i]).op, managers, &created_ids))
            .collect();
        let (outcomes, stopped) = send_batch(destination, &ops, progress, stop).await;
        if stopped.is_some() {
            sent.stopped = stopped;
        }
        for ((&i, r), op) in idxs.iter().zip(outcomes).zip(ops) {
            let Some(r) = r else { continue };
            if let (WriteOutcome::Created { id, .. }, WriteOp::Create { member }) = (&r, op) {
                created_ids.insert(sets.employee_id(&items[i]), id.clone());
                let made = CreatedMember {
                    id: id.clone(),
                    employee_id: member.employee_id,
                    email: member.email,
                    first_name: member.first_name,
                    manager: member.manager,
                };
                sent.created.push((i, made));
            }
            sent.results[i] = Some(r);
        }
    }
    if sent.stopped.is_none() {
        // Never answered for: a failure, not a write left for the next run.
        for r in sent.results.iter_mut().filter(|r| r.is_none()) {
            *r = Some(WriteOutcome::Failed {
                field: None,
                message: "the destination returned no outcome for this write".into(),
                refused: None,
            });
        }
    }
    sent
}

/// The items' indexes in the order they are sent: the creates in waves down the
/// reporting line (one list per depth), then every other write (the last list).
fn write_order(
    items: &[PlanItem],
    sets: Sets<'_>,
    managers: &HashMap<&str, &str>,
) -> Vec<Vec<usize>> {
    let creating: HashSet<&str> = items
        .iter()
        .filter(|w| w.kind == WriteKind::Create)
        .map(|w| sets.employee_id(w))
        .collect();
    let mut waves: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut rest = Vec::new();
    for (i, w) in items.iter().enumerate() {
        if w.kind == WriteKind::Create {
            let depth = creation_depth(sets.employee_id(w), managers, &creating);
            waves.entry(depth).or_default().push(i);
        } else {
            rest.push(i);
        }
    }
    waves.into_values().chain(std::iter::once(rest)).collect()
}

/// A create whose manager was created earlier in this run points to the new account.
fn batch_op(
    mut op: WriteOp,
    managers: &HashMap<&str, &str>,
    created_ids: &HashMap<&str, String>,
) -> WriteOp {
    if let WriteOp::Create { member } = &mut op {
        if member.manager.is_none() {
            member.manager = managers
                .get(member.employee_id.as_str())
                .and_then(|m| created_ids.get(*m))
                .cloned();
        }
    }
    op
}

/// Sends one batch. A stop while it goes (waiting for the destination's rate limit, say)
/// drops it at once: the writes that settled are kept, the rest is left unsent; the
/// stop's reason comes back with them.
async fn send_batch(
    destination: &dyn MemberDirectory,
    ops: &[WriteOp],
    progress: &dyn ProgressSink,
    stop: &StopSignal,
) -> (Vec<Option<WriteOutcome>>, Option<String>) {
    let settled = Mutex::new(vec![None; ops.len()]);
    let on_batch_done = |i: usize, outcome: &WriteOutcome| {
        progress.advance(1);
        settled.lock().expect("settled lock")[i] = Some(outcome.clone());
    };
    tokio::select! {
        outcomes = destination.apply(ops, &on_batch_done) => (outcomes.into_iter().map(Some).collect(), None),
        reason = stop.stopped() => (settled.into_inner().expect("settled lock"), Some(reason)),
    }
}

/// Writes per batch for this destination.
fn write_batch(destination: &dyn MemberDirectory) -> usize {
    destination
        .writes_per_request()
        .map_or(WRITE_BATCH, |n| n.clamp(WRITE_BATCH, MAX_WRITE_BATCH))
}

/// How many managers up the reporting line are also being created (0: none). A cycle
/// in the source data counts as depth 0 at the point it closes.
pub(in crate::sync) fn creation_depth(
    employee: &str,
    managers: &HashMap<&str, &str>,
    creating: &HashSet<&str>,
) -> usize {
    let mut depth = 0;
    let mut seen = HashSet::new();
    let mut cur = employee;
    while let Some(m) = managers.get(cur) {
        if !creating.contains(m) || !seen.insert(*m) || *m == employee {
            break;
        }
        depth += 1;
        cur = m;
    }
    depth
}
