//! The `/Bulk` path: ops packed into requests within the announced limits, each
//! answer matched back to its op, and what a bulk leaves open sent on its own.

use std::collections::HashMap;

use futures::stream::{self, StreamExt};
use reqwest::Method;
use serde_json::json;
use tracing::warn;

use super::config::{BulkLimits, BulkMode};
use super::model::{self, BulkResponse, PatchForm, BULK_REQUEST_SCHEMA};
use super::transport::CallKind;
use super::write::{
    changes_email, created_changes, not_kept, uniqueness_failure, FollowUp, WriteForm,
};
use super::ScimClient;
use crate::destination::{UpdateOp, WriteOp, WriteOutcome};
use crate::member::{Attr, Change};

/// The attribute a change is to (none for `Active`).
fn attr_of(change: &Change) -> Option<Attr> {
    match change {
        Change::Set(a, _) | Change::Clear(a) => Some(*a),
        Change::Active(_) => None,
    }
}

/// An op's index and its serialized bulk operation.
type BulkItem = (usize, Vec<u8>);

/// Work for [`MemberDirectory::apply`]: one op on its own, or one bulk request.
enum Unit {
    Single(usize),
    Chunk(Vec<BulkItem>),
}

impl Unit {
    fn first_index(&self) -> usize {
        match self {
            Unit::Single(i) => *i,
            Unit::Chunk(items) => items.first().map_or(usize::MAX, |(i, _)| *i),
        }
    }
}

impl ScimClient {
    /// The `/Bulk` limits when writes go in bulk.
    pub(super) fn bulk_limits(&self) -> Option<BulkLimits> {
        match (self.config.bulk, self.caps.bulk) {
            (BulkMode::Auto, Some(limits)) => Some(limits),
            _ => None,
        }
    }

    fn bulk_id(index: usize) -> String {
        format!("op-{index}")
    }

    /// The bulk operation for an op, serialized (its size decides the chunks).
    fn bulk_operation(&self, index: usize, op: &WriteOp) -> Vec<u8> {
        let value = match op {
            WriteOp::Create { member } => json!({
                "method": "POST",
                "path": "/Users",
                "bulkId": Self::bulk_id(index),
                "data": self.create_body(member),
            }),
            WriteOp::Update(update) => {
                let UpdateOp {
                    id,
                    version,
                    has_work_email,
                    changes,
                    desired,
                    managed,
                } = update;
                let form = self.current_form().patch().unwrap_or(PatchForm::ValuePaths);
                let data = model::patch_body_as(
                    form,
                    changes,
                    *has_work_email,
                    desired,
                    *managed,
                    self.keeps.emails,
                )
                .unwrap_or_else(|| model::patch_body(changes, *has_work_email));
                let mut v = json!({
                    "method": "PATCH",
                    "path": format!("/Users/{id}"),
                    "bulkId": Self::bulk_id(index),
                    "data": data,
                });
                if let Some(version) = self.if_match(version.as_deref()) {
                    v["version"] = json!(version);
                }
                v
            }
        };
        serde_json::to_vec(&value).expect("JSON")
    }

    fn bulk_envelope() -> (Vec<u8>, &'static [u8]) {
        let head = format!("{{\"schemas\":[\"{BULK_REQUEST_SCHEMA}\"],\"Operations\":[");
        (head.into_bytes(), b"]}")
    }

    /// Splits ops into bulk requests within `maxOperations` and `maxPayloadSize`. Ops
    /// too large for any bulk request come back separately.
    fn chunk(&self, limits: BulkLimits, items: Vec<BulkItem>) -> (Vec<Vec<BulkItem>>, Vec<usize>) {
        let (head, tail) = Self::bulk_envelope();
        let envelope = head.len() + tail.len();
        let mut chunks = Vec::new();
        let mut alone = Vec::new();
        let mut current: Vec<BulkItem> = Vec::new();
        let mut size = envelope;
        for (index, bytes) in items {
            if envelope + bytes.len() > limits.max_payload_size {
                alone.push(index);
                continue;
            }
            let extra = bytes.len() + usize::from(!current.is_empty());
            if current.len() >= limits.max_operations || size + extra > limits.max_payload_size {
                chunks.push(std::mem::take(&mut current));
                size = envelope;
            }
            size += bytes.len() + usize::from(!current.is_empty());
            current.push((index, bytes));
        }
        if !current.is_empty() {
            chunks.push(current);
        }
        (chunks, alone)
    }

    /// Sends one bulk request and settles each of its ops; ops the response leaves open
    /// go out individually.
    async fn run_chunk(
        &self,
        ops: &[WriteOp],
        chunk: Vec<BulkItem>,
        on_done: &(dyn Fn(usize, &WriteOutcome) + Send + Sync),
    ) -> Vec<(usize, WriteOutcome)> {
        let (head, tail) = Self::bulk_envelope();
        let mut body = head;
        for (n, (_, bytes)) in chunk.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(bytes);
        }
        body.extend_from_slice(tail);
        let indices: Vec<usize> = chunk.into_iter().map(|(i, _)| i).collect();
        let url = self.url(&["Bulk"]);
        let kind = CallKind::Bulk {
            operations: indices.len() as u32,
        };
        let resp = self.send(Method::POST, url, Some(&body), None, kind).await;
        drop(body);

        let parsed = match &resp {
            Ok(r) if r.status.is_success() => serde_json::from_slice::<BulkResponse>(&r.body).ok(),
            _ => None,
        };
        let mut done = Vec::with_capacity(indices.len());
        let mut follow_ups = Vec::new();
        // Whether the answers carried the resources written (what they kept).
        let mut resources = false;
        match parsed {
            None => {
                match &resp {
                    Ok(r) => warn!(
                        status = r.status.as_u16(),
                        ops = indices.len(),
                        "bulk request failed; sending its operations one by one"
                    ),
                    Err(e) => {
                        warn!(error = %e, ops = indices.len(), "bulk request failed; sending its operations one by one")
                    }
                }
                follow_ups.extend(indices.iter().map(|&i| {
                    (
                        i,
                        FollowUp::Retry {
                            maybe_applied: true,
                        },
                    )
                }));
            }
            Some(bulk) => {
                let retried = resp.as_ref().is_ok_and(|r| r.retried);
                resources = bulk.operations.iter().any(|op| {
                    op.response
                        .as_ref()
                        .is_some_and(|r| r.get("userName").is_some())
                });
                let mut by_bulk_id: HashMap<String, model::BulkResponseOp> = HashMap::new();
                let mut unnamed = Vec::new();
                for op in bulk.operations {
                    match op.bulk_id.clone() {
                        Some(id) => {
                            by_bulk_id.insert(id, op);
                        }
                        None => unnamed.push(op),
                    }
                }
                // RFC 7644 only requires bulkId on POST answers: other answers are
                // matched by position when nothing carries a bulkId, else by location.
                let positional = by_bulk_id.is_empty() && unnamed.len() == indices.len();
                let mut in_order = Vec::new();
                let mut by_location = HashMap::new();
                if positional {
                    in_order = unnamed;
                } else {
                    by_location = unnamed
                        .into_iter()
                        .filter_map(|op| op.resource_id().map(|id| (id, op)))
                        .collect();
                }
                let mut in_order = in_order.into_iter();
                for &i in &indices {
                    let answer = if positional {
                        in_order.next()
                    } else {
                        by_bulk_id
                            .remove(&Self::bulk_id(i))
                            .or_else(|| match &ops[i] {
                                WriteOp::Update(UpdateOp { id, .. }) => by_location.remove(id),
                                WriteOp::Create { .. } => None,
                            })
                    };
                    match answer {
                        None => follow_ups.push((
                            i,
                            FollowUp::Retry {
                                maybe_applied: true,
                            },
                        )),
                        Some(answer) => match self.settle_bulk_op(&ops[i], &answer, retried) {
                            Ok(outcome) => done.push((i, outcome)),
                            Err(f) => follow_ups.push((i, f)),
                        },
                    }
                }
            }
        }
        if !resources {
            self.learn_unkept(ops, &mut done).await;
        }
        for (i, outcome) in &done {
            on_done(*i, outcome);
        }
        let mut rest: Vec<(usize, WriteOutcome)> = stream::iter(follow_ups)
            .map(|(i, f)| async move {
                let outcome = self.run_single(&ops[i], Some(f)).await;
                on_done(i, &outcome);
                (i, outcome)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        done.append(&mut rest);
        done
    }

    /// A bulk answer that does not carry the resources says nothing of what the service
    /// kept: the first member a run creates over `/Bulk` is read back (one GET a run),
    /// and the attributes it did not keep are taken as not kept for every member the run
    /// creates over `/Bulk` (services that drop an attribute drop it for everyone; a note
    /// only holds back a value the next run would write again, so one too many costs
    /// nothing).
    async fn learn_unkept(&self, ops: &[WriteOp], done: &mut [(usize, WriteOutcome)]) {
        let attrs = match self.bulk_unkept.get() {
            Some(attrs) => attrs.clone(),
            None => {
                let Some(attrs) = self.sample_unkept(ops, done).await else {
                    return;
                };
                self.bulk_unkept.get_or_init(|| attrs).clone()
            }
        };
        if attrs.is_empty() {
            return;
        }
        for (i, outcome) in done.iter_mut() {
            if let (WriteOutcome::Created { unkept, .. }, WriteOp::Create { member }) =
                (outcome, &ops[*i])
            {
                *unkept = created_changes(member)
                    .into_iter()
                    .filter(|c| attr_of(c).is_some_and(|a| attrs.contains(&a)))
                    .collect();
            }
        }
    }

    /// The attributes one member this bulk request created came back without (read back
    /// with one GET); `None` when there is none to read or the read failed.
    async fn sample_unkept(
        &self,
        ops: &[WriteOp],
        done: &[(usize, WriteOutcome)],
    ) -> Option<Vec<Attr>> {
        let (id, member) = done.iter().find_map(|(i, o)| match (o, &ops[*i]) {
            (WriteOutcome::Created { id, .. }, WriteOp::Create { member }) => Some((id, member)),
            _ => None,
        })?;
        let url = self.url(&["Users", id]);
        let body = match self
            .send(Method::GET, url, None, None, CallKind::Read)
            .await
        {
            Ok(r) if r.status.is_success() => r.body,
            _ => return None,
        };
        let attrs = not_kept(&body, &created_changes(member))
            .iter()
            .filter_map(attr_of)
            .collect();
        Some(attrs)
    }

    /// One bulk answer → the op's outcome, or what to do next on its own.
    fn settle_bulk_op(
        &self,
        op: &WriteOp,
        answer: &model::BulkResponseOp,
        request_retried: bool,
    ) -> Result<WriteOutcome, FollowUp> {
        let Some(status) = answer.status_code() else {
            return Err(FollowUp::Retry {
                maybe_applied: true,
            });
        };
        match (op, status) {
            (WriteOp::Create { member }, 200..=299) => match answer.resource_id() {
                Some(id) => Ok(WriteOutcome::Created {
                    id,
                    unkept: answer.response.as_ref().map_or_else(Vec::new, |r| {
                        not_kept(
                            &serde_json::to_vec(r).unwrap_or_default(),
                            &created_changes(member),
                        )
                    }),
                }),
                None => Err(FollowUp::Retry {
                    maybe_applied: true,
                }),
            },
            (WriteOp::Update(UpdateOp { .. }), 200..=299) => Ok(WriteOutcome::Updated),
            (_, 429 | 500..=599) => Err(FollowUp::Retry {
                maybe_applied: true,
            }),
            (WriteOp::Create { .. }, 409) if request_retried => Err(FollowUp::Retry {
                maybe_applied: true,
            }),
            (WriteOp::Create { .. }, 409) => Ok(uniqueness_failure(op.email())),
            (WriteOp::Update(UpdateOp { changes, .. }), 409) if changes_email(changes) => {
                Ok(uniqueness_failure(op.email()))
            }
            (WriteOp::Update(UpdateOp { .. }), 412) => Err(FollowUp::Stale),
            // Refused paths (or a path-level 404) get the individual fallbacks.
            (WriteOp::Update(UpdateOp { .. }), 400 | 404 | 405)
                if status != 400
                    || answer.error().scim_type.as_deref().is_some_and(|t| {
                        ["invalidPath", "noTarget", "invalidSyntax"]
                            .iter()
                            .any(|k| t.eq_ignore_ascii_case(k))
                    }) =>
            {
                Err(FollowUp::Retry {
                    maybe_applied: false,
                })
            }
            (WriteOp::Create { .. }, _) => {
                Ok(self.refused("could not create the member", status, answer.error()))
            }
            (WriteOp::Update(UpdateOp { .. }), _) => {
                Ok(self.refused("could not update the member", status, answer.error()))
            }
        }
    }

    /// Writes every op, in bulk where it can ride in one, else on its own; `on_done`
    /// hears each outcome as it settles.
    pub(super) async fn write_all(
        &self,
        ops: &[WriteOp],
        on_done: &(dyn for<'o> Fn(usize, &'o WriteOutcome) + Send + Sync),
    ) -> Vec<WriteOutcome> {
        let bulk = self.bulk_limits();
        let mut units = Vec::new();
        let mut bulk_items = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            // Without PATCH an update needs a GET first: it can't ride in a bulk.
            let bulkable = bulk.is_some()
                && match op {
                    WriteOp::Create { .. } => true,
                    WriteOp::Update(UpdateOp { changes, .. }) => {
                        self.caps.patch
                            && self.current_form() < WriteForm::Put
                            && !changes.is_empty()
                    }
                };
            if bulkable {
                bulk_items.push((i, self.bulk_operation(i, op)));
            } else {
                units.push(Unit::Single(i));
            }
        }
        if let Some(limits) = bulk {
            let (chunks, alone) = self.chunk(limits, bulk_items);
            units.extend(alone.into_iter().map(Unit::Single));
            units.extend(chunks.into_iter().map(Unit::Chunk));
        }
        // Roughly the plan's order (creates first), though units overlap in time.
        units.sort_by_key(Unit::first_index);

        let mut results: Vec<Option<WriteOutcome>> = vec![None; ops.len()];
        let mut finished = stream::iter(units)
            .map(|unit| async move {
                match unit {
                    Unit::Single(i) => {
                        let outcome = self.run_single(&ops[i], None).await;
                        on_done(i, &outcome);
                        vec![(i, outcome)]
                    }
                    Unit::Chunk(chunk) => self.run_chunk(ops, chunk, on_done).await,
                }
            })
            .buffer_unordered(self.config.concurrency.max(1));
        while let Some(batch) = finished.next().await {
            for (i, outcome) in batch {
                results[i] = Some(outcome);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every op is settled exactly once"))
            .collect()
    }
}
