//! On-demand ImportRuns: created by a user (`trigger: OnDemand`, `employeeIds`, no
//! status), run once by the operator for those employees only.
//!
//! What marks a run taken is its status: a user's run has none (the API server drops a
//! status sent on create), and the operator takes it by writing `phase: Pending` to its
//! status in one patch that carries the run's `resourceVersion`, so of two processes
//! that see it (a leader hand-over, a shard moving) one wins and the other gets 409. A
//! taken run is never picked up again: a restart mid-run finds it `Pending` or `Running`
//! and marks it `Interrupted` like any other ([`super::mark_interrupted`]), while a run
//! nobody took yet is left for the operator to start. A taken run its creator left
//! without the integration as controller or without the integration label is adopted
//! (as a ReplicaSet adopts a Pod): both are added, so it goes with the integration and
//! counts against the history limits like the runs the operator creates.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::objects::apply_run_status;
use crate::api::{FreshteamIntegration, ImportPhase, ImportRun, ImportTrigger, INTEGRATION_LABEL};
use crate::clock::rfc3339;
use crate::controller::status::RunProgress;

/// The most employees one on-demand run may name.
pub const MAX_ON_DEMAND_EMPLOYEES: usize = 100;

/// A user's on-demand run waiting to be started: nobody took it yet (no status).
pub fn is_waiting(run: &ImportRun) -> bool {
    run.spec.trigger == ImportTrigger::OnDemand && run.status.is_none()
}

/// The on-demand runs waiting, per integration (`namespace/name`), as the ImportRun
/// watch saw them; the reconciler of that integration takes them one at a time.
#[derive(Default)]
pub struct PendingOnDemand(Mutex<HashMap<String, BTreeSet<String>>>);

impl PendingOnDemand {
    /// Notes a run the watch saw (a waiting one is remembered, any other forgotten) and
    /// names the integration to reconcile for it.
    pub fn note(&self, run: &ImportRun) -> Option<ObjectRef<FreshteamIntegration>> {
        let ns = run.namespace()?;
        let key = format!("{ns}/{}", run.spec.integration);
        let mut pending = self.0.lock().expect("pending lock");
        if is_waiting(run) {
            pending.entry(key).or_default().insert(run.name_any());
        } else if let Some(names) = pending.get_mut(&key) {
            names.remove(&run.name_any());
            if names.is_empty() {
                pending.remove(&key);
            }
        }
        Some(ObjectRef::new(&run.spec.integration).within(&ns))
    }

    /// Whether a run of the integration `key` waits.
    pub fn has(&self, key: &str) -> bool {
        self.0.lock().expect("pending lock").contains_key(key)
    }

    /// The oldest-named waiting run of the integration `key`, taken off the list.
    pub fn next(&self, key: &str) -> Option<String> {
        let mut pending = self.0.lock().expect("pending lock");
        let names = pending.get_mut(key)?;
        let name = names.pop_first();
        if names.is_empty() {
            pending.remove(key);
        }
        name
    }
}

/// Why an on-demand run cannot start, naming the field; none: it can.
pub(crate) fn refusal(run: &ImportRun, fti: &FreshteamIntegration) -> Option<String> {
    let ids = &run.spec.employee_ids;
    if ids.is_empty() {
        return Some("spec.employeeIds is empty: name the Employee IDs to import".into());
    }
    if ids.len() > MAX_ON_DEMAND_EMPLOYEES {
        return Some(format!(
            "spec.employeeIds names {} employees, at most {MAX_ON_DEMAND_EMPLOYEES}: run a full import for more",
            ids.len()
        ));
    }
    if ids.iter().any(|id| id.trim().is_empty()) {
        return Some("spec.employeeIds has an empty Employee ID".into());
    }
    if !fti.spec.published && !run.spec.dry_run {
        return Some(format!(
            "{} is unpublished (spec.published: false): an on-demand run of it must be a dry run (spec.dryRun: true)",
            fti.name_any()
        ));
    }
    None
}

/// Takes the waiting run `name` for `fti`: `phase: Pending` in its status, only if
/// nobody changed the run since it was read. `None`: gone, not waiting, or taken by
/// someone else.
pub(crate) async fn take(
    runs: &Api<ImportRun>,
    fti: &FreshteamIntegration,
    name: &str,
) -> Result<Option<ImportRun>, kube::Error> {
    let Some(run) = runs.get_opt(name).await? else {
        return Ok(None);
    };
    if !is_waiting(&run) || run.spec.integration != fti.name_any() {
        return Ok(None);
    }
    let patch = json!({
        "metadata": {"resourceVersion": run.resource_version()},
        "status": {"phase": ImportPhase::Pending},
    });
    match runs
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(taken) => Ok(Some(taken)),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Adopts the taken run `run` of `fti`: the integration label, and the integration as
/// controller when the run has none (other owners are kept), in one patch conditional
/// on the run's `resourceVersion`. Nothing is sent when both are there already.
pub(crate) async fn adopt(
    runs: &Api<ImportRun>,
    fti: &FreshteamIntegration,
    run: &ImportRun,
) -> Result<(), kube::Error> {
    let name = fti.name_any();
    let labelled = run.labels().get(INTEGRATION_LABEL) == Some(&name);
    let controlled = run
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true));
    if labelled && controlled {
        return Ok(());
    }
    let mut metadata = json!({
        "resourceVersion": run.resource_version(),
        "labels": {INTEGRATION_LABEL: name},
    });
    if let Some(owner) = fti.controller_owner_ref(&()).filter(|_| !controlled) {
        let mut owners = run.owner_references().to_vec();
        owners.push(owner);
        metadata["ownerReferences"] = json!(owners);
    }
    let patch = json!({ "metadata": metadata });
    runs.patch(
        &run.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

/// Ends a taken run that cannot start: `Failed`, saying why.
pub(crate) async fn refuse(
    runs: &Api<ImportRun>,
    name: &str,
    message: String,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), kube::Error> {
    let status = RunProgress {
        phase: ImportPhase::Failed,
        start_time: Some(rfc3339(now)),
        completion_time: Some(rfc3339(now)),
        progress: None,
        message: Some(message),
    };
    apply_run_status(runs, name, &status).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ImportRunSpec, ImportRunStatus};

    fn run(name: &str, trigger: ImportTrigger, status: Option<ImportPhase>) -> ImportRun {
        let mut run = ImportRun::new(
            name,
            ImportRunSpec {
                integration: "acme".into(),
                trigger,
                dry_run: false,
                employee_ids: vec!["E-1".into()],
            },
        );
        run.metadata.namespace = Some("hr".into());
        run.status = status.map(|phase| ImportRunStatus {
            phase,
            ..ImportRunStatus::default()
        });
        run
    }

    #[test]
    fn a_users_run_waits_until_taken_and_is_handed_out_once() {
        let pending = PendingOnDemand::default();
        let waiting = run("acme-b", ImportTrigger::OnDemand, None);
        let target = pending.note(&waiting).unwrap();
        assert_eq!(
            (target.name.as_str(), target.namespace.as_deref()),
            ("acme", Some("hr"))
        );
        pending.note(&run("acme-a", ImportTrigger::OnDemand, None));
        // The operator's own runs, and a taken one, never wait.
        pending.note(&run("acme-s", ImportTrigger::Scheduled, None));
        pending.note(&run(
            "acme-t",
            ImportTrigger::OnDemand,
            Some(ImportPhase::Pending),
        ));
        assert!(pending.has("hr/acme"));
        assert_eq!(pending.next("hr/acme").as_deref(), Some("acme-a"));
        // Seen taken: forgotten.
        pending.note(&run(
            "acme-b",
            ImportTrigger::OnDemand,
            Some(ImportPhase::Running),
        ));
        assert_eq!(pending.next("hr/acme"), None);
        assert!(!pending.has("hr/acme"));
    }

    #[test]
    fn a_run_that_cannot_start_says_which_field() {
        let mut fti = FreshteamIntegration::new("acme", Default::default());
        fti.spec.published = true;
        let mut r = run("acme-x", ImportTrigger::OnDemand, None);
        assert_eq!(refusal(&r, &fti), None);
        r.spec.employee_ids.clear();
        assert!(refusal(&r, &fti)
            .unwrap()
            .starts_with("spec.employeeIds is empty"));
        r.spec.employee_ids = (0..=MAX_ON_DEMAND_EMPLOYEES)
            .map(|i| format!("E-{i}"))
            .collect();
        assert!(refusal(&r, &fti).unwrap().contains("at most 100"));
        r.spec.employee_ids = vec![" ".into()];
        assert!(refusal(&r, &fti).unwrap().contains("empty Employee ID"));
        r.spec.employee_ids = vec!["E-1".into()];
        fti.spec.published = false;
        assert!(refusal(&r, &fti).unwrap().contains("spec.dryRun: true"));
        r.spec.dry_run = true;
        assert_eq!(refusal(&r, &fti), None);
    }
}
