//! Writing one member on its own: create, update (PATCH in the finest form the service
//! takes, else GET + PUT; a stale version is re-read and re-planned once), and the
//! [`WriteOutcome`] each answer comes to.

use std::sync::atomic::Ordering;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tracing::{debug, warn};

use super::model::{self, ListPage, PatchForm, ScimErrorBody, WireUser};
use super::transport::{CallKind, Response};
use super::ScimClient;
use crate::destination::{DestinationMember, UpdateOp, WriteOp, WriteOutcome};
use crate::member::replan_update;
use crate::member::{Attr, AttrSet, Change, Member, MemberFields};

const DELETED_MESSAGE: &str = "member was deleted in the destination during the run";

/// How updates are sent, from the smallest change to the whole resource. The form that
/// works with a service is remembered in the convergence notes, per destination, so a
/// later run starts with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(super) enum WriteForm {
    ValuePaths = 0,
    WholeAttributes = 1,
    Put = 2,
}

impl WriteForm {
    fn from_u8(n: u8) -> Self {
        match n {
            0 => WriteForm::ValuePaths,
            1 => WriteForm::WholeAttributes,
            _ => WriteForm::Put,
        }
    }
    fn simpler(self) -> Self {
        Self::from_u8(self as u8 + 1)
    }
    /// The name kept in the convergence notes.
    pub(super) fn name(self) -> &'static str {
        match self {
            WriteForm::ValuePaths => "valuePaths",
            WriteForm::WholeAttributes => "wholeAttributes",
            WriteForm::Put => "put",
        }
    }
    pub(super) fn from_name(name: &str) -> Option<Self> {
        [
            WriteForm::ValuePaths,
            WriteForm::WholeAttributes,
            WriteForm::Put,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }
    pub(super) fn patch(self) -> Option<PatchForm> {
        match self {
            WriteForm::ValuePaths => Some(PatchForm::ValuePaths),
            WriteForm::WholeAttributes => Some(PatchForm::WholeAttributes),
            WriteForm::Put => None,
        }
    }
}

/// A remembered form is tried again from the finest one after this long (seconds): a
/// service may have been fixed, or a passing outage may have taught the wrong lesson.
pub(super) const REPROBE_AFTER: u64 = 30 * 24 * 3600;

/// The convergence note of a form learnt at `since` (seconds since the Unix epoch):
/// `wholeAttributes 1764972000`.
pub(super) fn form_note(form: WriteForm, since: u64) -> String {
    format!("{} {since}", form.name())
}

/// The form a note remembers, unless it is older than [`REPROBE_AFTER`] at `now`.
pub(super) fn remembered(note: &str, now: u64) -> Option<WriteForm> {
    let (name, since) = note.split_once(' ')?;
    let since: u64 = since.parse().ok()?;
    (now.saturating_sub(since) < REPROBE_AFTER)
        .then(|| WriteForm::from_name(name))
        .flatten()
}

/// One attempt at an update.
enum Step {
    Done,
    /// The service refused the form of the request (value paths, PATCH itself): try a
    /// simpler form; holds the refusal in case there is none.
    FormRefused(WriteOutcome),
    /// 412: the version went stale; holds the member when it was just read.
    Stale(Option<Box<DestinationMember>>),
    Finished(WriteOutcome),
}

/// An op a bulk response left for an individual request.
pub(super) enum FollowUp {
    /// Send it again on its own; `maybe_applied` when an earlier try may have worked.
    Retry { maybe_applied: bool },
    /// 412 inside the bulk: re-read, re-plan, retry once.
    Stale,
}

fn failed(field: Option<&str>, message: impl Into<String>) -> WriteOutcome {
    WriteOutcome::Failed {
        field: field.map(str::to_string),
        message: message.into(),
        refused: None,
    }
}

pub(super) fn uniqueness_failure(email: &str) -> WriteOutcome {
    failed(
        Some("email"),
        format!("{email} is already used by another account in the destination (409 uniqueness)"),
    )
}

/// Whether an update gives the member a new e-mail (the only unique value it writes).
pub(super) fn changes_email(changes: &[Change]) -> bool {
    changes
        .iter()
        .any(|c| matches!(c, Change::Set(crate::member::Attr::Email, _)))
}

/// Whether `changes` set a sub-attribute of a multi-valued entry picked by a filter
/// (`addresses[type eq "work"].locality`).
fn sets_a_filtered_entry(changes: &[Change]) -> bool {
    changes.iter().any(|c| match c {
        Change::Set(Attr::Extra(t), _) => model::target_path(t).is_some_and(|p| p.kind.is_some()),
        _ => false,
    })
}

/// A create as the changes it writes: every attribute it gives a value.
pub(super) fn created_changes(member: &Member) -> Vec<Change> {
    Attr::ALL
        .into_iter()
        .chain(member.extra.iter().map(|(t, _)| Attr::Extra(t)))
        .filter_map(|a| {
            let v = member.field(a).filter(|v| !v.is_empty())?;
            Some(Change::Set(a, v.to_string()))
        })
        .collect()
}

/// What a write's answer shows the service did not keep: the `written` changes whose
/// attribute came back with another value (compared as a run compares: exactly). Nothing
/// when the answer is not the resource (no body, or no `userName`: some services answer
/// with the id alone).
pub(super) fn not_kept(body: &[u8], written: &[Change]) -> Vec<Change> {
    let Ok(user) = serde_json::from_slice::<WireUser>(body) else {
        return Vec::new();
    };
    if user.user_name.is_none() {
        return Vec::new();
    }
    let extras: Vec<&'static str> = written
        .iter()
        .filter_map(|c| match c {
            Change::Set(Attr::Extra(t), _) | Change::Clear(Attr::Extra(t)) => Some(*t),
            _ => None,
        })
        .collect();
    let returned = user.into_destination_with(None, &extras).member;
    let have = |a: Attr| returned.field(a).filter(|v| !v.is_empty());
    written
        .iter()
        .filter(|c| match c {
            Change::Set(a, v) => have(*a) != Some(v.as_str()),
            Change::Clear(a) => have(*a).is_some(),
            Change::Active(_) => false,
        })
        .cloned()
        .collect()
}

impl ScimClient {
    pub(super) fn reset_form(&self) {
        let form = if self.caps.patch {
            WriteForm::ValuePaths
        } else {
            WriteForm::Put
        };
        self.form.store(form as u8, Ordering::Relaxed);
    }

    /// Starts from the form an earlier run found working (never a finer one than the
    /// service's capabilities allow).
    pub(super) fn start_with_form(&self, form: WriteForm) {
        self.form.fetch_max(form as u8, Ordering::Relaxed);
    }

    /// The form to remember for the next run: `None` when it is the finest the
    /// capabilities allow (nothing learnt).
    pub(super) fn learnt_form(&self) -> Option<WriteForm> {
        let first = if self.caps.patch {
            WriteForm::ValuePaths
        } else {
            WriteForm::Put
        };
        let now = self.current_form();
        (now > first).then_some(now)
    }

    pub(super) fn current_form(&self) -> WriteForm {
        WriteForm::from_u8(self.form.load(Ordering::Relaxed))
    }

    /// The message of a write the service refused.
    fn refusal(&self, what: &str, resp: &Response) -> WriteOutcome {
        self.refused(what, resp.status.as_u16(), resp.error())
    }

    /// The outcome of a write the service refused, quoting its `scimType` and `detail`.
    pub(super) fn refused(&self, what: &str, status: u16, err: ScimErrorBody) -> WriteOutcome {
        if matches!(status, 401 | 403) {
            return failed(
                None,
                format!("{what}: the SCIM service rejected the bearer token ({status})"),
            );
        }
        let kind = err.scim_type.map(|t| format!(" {t}")).unwrap_or_default();
        let detail = err
            .detail
            .map(|d| format!(": {}", self.redact(&d)))
            .unwrap_or_default();
        let answer = format!("{status}{kind}{detail}");
        let mut outcome = failed(None, format!("{what}: the destination answered {answer}"));
        // A 400 refuses the member's values: the same write would be refused again.
        if let WriteOutcome::Failed { refused, .. } = &mut outcome {
            *refused = (status == 400).then_some(answer);
        }
        outcome
    }

    async fn create(&self, member: &Member, maybe_applied: bool) -> WriteOutcome {
        let body = serde_json::to_vec(&self.create_body(member)).expect("JSON");
        let url = self.url(&["Users"]);
        let resp = match self
            .send(Method::POST, url, Some(&body), None, CallKind::Write)
            .await
        {
            Ok(r) => r,
            Err(detail) => return failed(None, format!("could not create the member: {detail}")),
        };
        match resp.status.as_u16() {
            200 | 201 => {
                let id = serde_json::from_slice::<Value>(&resp.body)
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
                    .or_else(|| resp.location.as_deref().and_then(model::id_from_location));
                match id {
                    Some(id) => WriteOutcome::Created {
                        id,
                        unkept: not_kept(&resp.body, &created_changes(member)),
                    },
                    None => failed(
                        None,
                        "the destination created the member but returned no id",
                    ),
                }
            }
            409 => {
                self.create_conflict(member, maybe_applied || resp.retried)
                    .await
            }
            _ => self.refusal("could not create the member", &resp),
        }
    }

    /// A 409 on a create that may already have gone through once (a retried request or
    /// a bulk that failed as a whole): when the account holding the e-mail is this very
    /// member, the create did happen.
    async fn create_conflict(&self, member: &Member, maybe_applied: bool) -> WriteOutcome {
        if !maybe_applied || !self.caps.filter || member.employee_id.is_empty() {
            return uniqueness_failure(&member.email);
        }
        let escaped = member
            .employee_id
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        let mut url = self.url(&["Users"]);
        url.query_pairs_mut()
            .append_pair("filter", &format!("externalId eq \"{escaped}\""));
        let found = match self
            .send(Method::GET, url, None, None, CallKind::Read)
            .await
        {
            Ok(r) if r.status.is_success() => serde_json::from_slice::<ListPage>(&r.body).ok(),
            _ => None,
        };
        let mine = found.into_iter().flat_map(|p| p.resources).find(|u| {
            u.external_id.as_deref() == Some(member.employee_id.as_str())
                && u.user_name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&member.email))
        });
        match mine {
            Some(user) => WriteOutcome::Created {
                id: user.id,
                unkept: Vec::new(),
            },
            None => uniqueness_failure(&member.email),
        }
    }

    async fn update(&self, op: &UpdateOp, already_stale: bool) -> WriteOutcome {
        let UpdateOp {
            id,
            desired,
            managed,
            changes: planned,
            ..
        } = op;
        let (id, managed) = (id.as_str(), *managed);
        let mut changes = planned.clone();
        let mut version = op.version.clone();
        let mut has_work_email = op.has_work_email;
        let mut stale = already_stale;
        let mut fresh: Option<DestinationMember> = None;
        let mut retried = false;
        loop {
            if stale {
                let current = match fresh.take() {
                    Some(c) => c,
                    None => match self.get_member(id).await {
                        Ok(Some(c)) => c,
                        Ok(None) => return failed(None, DELETED_MESSAGE),
                        Err(e) => {
                            return failed(
                                None,
                                format!(
                                    "could not re-read the member after a version conflict: {e}"
                                ),
                            )
                        }
                    },
                };
                changes = replan_update(&current.member, planned, desired, managed);
                version = current.version;
                has_work_email = current.has_work_email;
                retried = true;
            }
            if changes.is_empty() {
                return WriteOutcome::Updated;
            }
            let step = self
                .write_once(
                    id,
                    &changes,
                    has_work_email,
                    version.as_deref(),
                    desired,
                    managed,
                )
                .await;
            match step {
                Step::Done => return WriteOutcome::Updated,
                Step::Finished(outcome) | Step::FormRefused(outcome) => return outcome,
                Step::Stale(_) if retried => {
                    return failed(
                        None,
                        "the member changed in the destination again while it was being updated (412 Precondition Failed twice); the next run retries",
                    )
                }
                Step::Stale(current) => {
                    stale = true;
                    fresh = current.map(|c| *c);
                }
            }
        }
    }

    pub(super) fn if_match<'a>(&self, version: Option<&'a str>) -> Option<&'a str> {
        version.filter(|_| self.caps.etag)
    }

    fn write_status(&self, resp: &Response, changes: &[Change], desired: &Member) -> Step {
        match resp.status.as_u16() {
            200..=299 => Step::Done,
            412 => Step::Stale(None),
            404 => Step::Finished(failed(None, DELETED_MESSAGE)),
            409 if changes_email(changes) => Step::Finished(uniqueness_failure(&desired.email)),
            _ => Step::Finished(self.refusal("could not update the member", resp)),
        }
    }

    /// One update in the simplest form the service has shown it takes, falling back to
    /// simpler forms when it refuses one; a form that worked after a refusal is kept for
    /// the rest of the run.
    async fn write_once(
        &self,
        id: &str,
        changes: &[Change],
        has_work_email: bool,
        version: Option<&str>,
        desired: &Member,
        managed: AttrSet,
    ) -> Step {
        let mut form = self.current_form();
        let mut refused = false;
        loop {
            let step = match form.patch() {
                Some(patch_form) => match model::patch_body_as(
                    patch_form,
                    changes,
                    has_work_email,
                    desired,
                    managed,
                    self.keeps.emails,
                ) {
                    Some(body) => self.patch_once(id, &body, changes, version, desired).await,
                    // This form cannot say it without losing data: the next one can.
                    None => {
                        form = form.simpler();
                        continue;
                    }
                },
                None => self.put_once(id, changes, version, desired).await,
            };
            match step {
                Step::FormRefused(_) if form < WriteForm::Put => {
                    debug!(
                        ?form,
                        "the SCIM service refused this update form; trying a simpler one"
                    );
                    refused = true;
                    form = form.simpler();
                }
                // A filter that matches no entry yet (a member's first work address) is
                // refused by some services whatever the form: that says nothing of the
                // service's other updates.
                Step::Done if refused && sets_a_filtered_entry(changes) => return Step::Done,
                Step::Done => {
                    if refused && self.form.fetch_max(form as u8, Ordering::Relaxed) < form as u8 {
                        warn!(?form, "the SCIM service refuses finer updates; using this form for the rest of the run");
                    }
                    return Step::Done;
                }
                other => return other,
            }
        }
    }

    async fn patch_once(
        &self,
        id: &str,
        body: &Value,
        changes: &[Change],
        version: Option<&str>,
        desired: &Member,
    ) -> Step {
        let body = serde_json::to_vec(body).expect("JSON");
        let url = self.url(&["Users", id]);
        let resp = match self
            .send(
                Method::PATCH,
                url,
                Some(&body),
                self.if_match(version),
                CallKind::Write,
            )
            .await
        {
            Ok(resp) => resp,
            Err(detail) => {
                return Step::Finished(failed(
                    None,
                    format!("could not update the member: {detail}"),
                ))
            }
        };
        let form_refused = match resp.status.as_u16() {
            405 | 501 => true,
            // A server error after the transport's retry: this form fails here (some
            // services answer 500 to attribute paths they cannot handle); a simpler one
            // may work, and a real outage fails the simpler ones too.
            500..=599 => true,
            400 => resp.error().scim_type.as_deref().is_some_and(|t| {
                ["invalidPath", "noTarget", "invalidSyntax"]
                    .iter()
                    .any(|k| t.eq_ignore_ascii_case(k))
            }),
            // A 404 names the member or the path: a member that still reads is there.
            404 => matches!(self.get_member(id).await, Ok(Some(_))),
            _ => false,
        };
        if form_refused {
            return Step::FormRefused(self.refusal("could not update the member", &resp));
        }
        self.write_status(&resp, changes, desired)
    }

    /// Without PATCH: read the whole resource, change what is managed, write it back.
    async fn put_once(
        &self,
        id: &str,
        changes: &[Change],
        version: Option<&str>,
        desired: &Member,
    ) -> Step {
        let url = self.url(&["Users", id]);
        let resp = match self
            .send(Method::GET, url.clone(), None, None, CallKind::Read)
            .await
        {
            Ok(r) => r,
            Err(detail) => {
                return Step::Finished(failed(None, format!("could not read the member: {detail}")))
            }
        };
        if resp.status == StatusCode::NOT_FOUND {
            return Step::Finished(failed(None, DELETED_MESSAGE));
        }
        if !resp.status.is_success() {
            // A read refused is not a refusal of the member's values.
            let mut outcome = self.refusal("could not read the member", &resp);
            if let WriteOutcome::Failed { refused, .. } = &mut outcome {
                *refused = None;
            }
            return Step::Finished(outcome);
        }
        let mut resource: Value = match serde_json::from_slice(&resp.body) {
            Ok(v) => v,
            Err(e) => {
                return Step::Finished(failed(
                    None,
                    format!("could not read the member: unreadable response: {e}"),
                ))
            }
        };
        let current = match serde_json::from_value::<WireUser>(resource.clone()) {
            Ok(u) => u.into_destination_with(resp.etag, self.config.extras),
            Err(e) => {
                return Step::Finished(failed(
                    None,
                    format!("could not read the member: unreadable response: {e}"),
                ))
            }
        };
        // Changed since the list: the planned changes are against an old state.
        if self.caps.etag
            && version.is_some()
            && current.version.is_some()
            && current.version.as_deref() != version
        {
            return Step::Stale(Some(Box::new(current)));
        }
        model::apply_changes_to_resource(&mut resource, changes);
        let body = serde_json::to_vec(&resource).expect("JSON");
        match self
            .send(
                Method::PUT,
                url,
                Some(&body),
                self.if_match(current.version.as_deref()),
                CallKind::Write,
            )
            .await
        {
            Ok(resp) => self.write_status(&resp, changes, desired),
            Err(detail) => Step::Finished(failed(
                None,
                format!("could not update the member: {detail}"),
            )),
        }
    }

    pub(super) async fn run_single(
        &self,
        op: &WriteOp,
        follow_up: Option<FollowUp>,
    ) -> WriteOutcome {
        match op {
            WriteOp::Create { member } => {
                let maybe_applied = matches!(
                    follow_up,
                    Some(FollowUp::Retry {
                        maybe_applied: true
                    })
                );
                self.create(member, maybe_applied).await
            }
            WriteOp::Update(update) => {
                let stale = matches!(follow_up, Some(FollowUp::Stale));
                self.update(update, stale).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_did_not_stick_is_read_from_the_returned_resource_only() {
        let written = vec![
            Change::Set(Attr::JobTitle, "Analyst".into()),
            Change::Set(Attr::LastName, "Byron".into()),
            Change::Clear(Attr::Department),
        ];
        let body = br#"{"id":"1","userName":"ada@x.org","name":{"familyName":"Byron"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Sales"}}"#;
        assert_eq!(
            not_kept(body, &written),
            vec![
                Change::Set(Attr::JobTitle, "Analyst".into()),
                Change::Clear(Attr::Department)
            ]
        );
        // An answer with the id alone, or none, says nothing.
        assert!(not_kept(br#"{"id":"1"}"#, &written).is_empty());
        assert!(not_kept(b"", &written).is_empty());
    }

    #[test]
    fn a_remembered_form_is_tried_again_once_a_month_old() {
        let note = form_note(WriteForm::WholeAttributes, 1_000);
        assert_eq!(note, "wholeAttributes 1000");
        assert_eq!(remembered(&note, 1_000), Some(WriteForm::WholeAttributes));
        assert_eq!(
            remembered(&note, 1_000 + REPROBE_AFTER - 1),
            Some(WriteForm::WholeAttributes)
        );
        assert_eq!(remembered(&note, 1_000 + REPROBE_AFTER), None);
        assert_eq!(remembered("put", 1_000), None);
        assert_eq!(remembered("sideways 1000", 1_000), None);
    }
}
