//! Status writes: who writes which field, and how.
//!
//! Every status field has one writer. Writers that own whole objects write them by
//! server-side apply (`Patch::Apply`, forced), each under its own field manager, with a
//! typed (partial) status:
//!
//! | object                | status field                                   | writer          | field manager                    | how         |
//! |-----------------------|------------------------------------------------|-----------------|----------------------------------|-------------|
//! | ImportRun             | every field (`phase` … `apiCalls`)             | the run (and, for a run a dead process left, the leader marking it `Interrupted`) | [`RUN_MANAGER`] | apply |
//! | FreshteamIntegration  | `lastImport`                                   | the run (and the leader marking a run `Interrupted`) | [`LAST_IMPORT_MANAGER`] | apply |
//! | FreshteamIntegration  | `preview`                                      | the run (and the leader marking a run `Interrupted`) | —              | merge patch |
//! | FreshteamIntegration  | `observedGeneration`, `conditions`, `nextImportTime`, `lastScheduleTime`, `lastHandled*`, `authorizedFor` | the reconciler | — | merge patch of the changed fields |
//!
//! Two writers stay on merge patches, for reasons apply cannot serve here:
//! - The reconciler writes only the fields it changed: a reconcile of a stale cached copy
//!   must not put back an older `lastHandledImportRequest` (which would start a second
//!   run). Apply sends the manager's whole set of fields every time, stale ones included.
//! - The preview clears the counts of an older generation when its run starts; apply
//!   clears a field by leaving it out, which the in-process API of the tests
//!   (kube-fake-client 0.3 applies an apply patch as a JSON merge patch, and its
//!   interceptors cannot store an object) does not do, and an explicit `null` in an apply
//!   patch is stored as `null` by a real API server.
//!   The reconciler's clearing of `nextImportTime` and `authorizedFor` meets the same
//!   limit of the test API.
//!
//! Apply removes a field its manager stops sending: the run's writes therefore always
//! carry every field it has written so far ([`RunProgress`] while it runs, the whole
//! [`ImportRunStatus`](crate::api::ImportRunStatus) at the end).

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::{FreshteamIntegrationStatus, ImportPhase, Progress};

/// Field manager of an ImportRun's status.
pub(crate) const RUN_MANAGER: &str = "freshteam-operator-run";
/// Field manager of an integration's `status.lastImport`.
pub(crate) const LAST_IMPORT_MANAGER: &str = "freshteam-operator-last-import";

/// An apply patch of `status`: the object's kind and version, and the fields the manager
/// owns.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a, S: Serialize> {
    api_version: &'a str,
    kind: &'a str,
    status: &'a S,
}

/// Applies `status` (the whole set of fields `manager` owns) to `name`'s status, taking
/// them over from any other manager.
pub(crate) async fn apply_status<K, S>(
    api: &Api<K>,
    name: &str,
    manager: &str,
    status: &S,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + std::fmt::Debug,
{
    let body = StatusApply {
        api_version: &K::api_version(&()),
        kind: &K::kind(&()),
        status,
    };
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
}

/// An ImportRun's status before its outcome: what the run has written so far.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunProgress {
    pub phase: ImportPhase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// While the run waits for a rate limit: until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl RunProgress {
    /// A run `Running` from `started`, its progress at zero.
    pub(crate) fn started(started: chrono::DateTime<chrono::Utc>) -> Self {
        RunProgress {
            phase: ImportPhase::Running,
            start_time: Some(crate::clock::rfc3339(started)),
            progress: Some(Progress::default()),
            ..RunProgress::default()
        }
    }
}

/// An integration's `status.lastImport`, as [`LAST_IMPORT_MANAGER`] applies it.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LastImportStatus<'a> {
    pub last_import: &'a crate::api::LastImport,
}

/// The merge patch of an integration's `status.preview`: the whole [`Preview`] (its
/// `None` counts serialise as `null`, clearing an older generation's), or only its phase.
///
/// [`Preview`]: crate::api::Preview
#[derive(Serialize, Debug)]
pub(crate) struct PreviewPatch<P: Serialize> {
    status: PreviewOnly<P>,
}

#[derive(Serialize, Debug)]
struct PreviewOnly<P: Serialize> {
    preview: P,
}

impl<P: Serialize> PreviewPatch<P> {
    pub(crate) fn new(preview: P) -> Self {
        PreviewPatch {
            status: PreviewOnly { preview },
        }
    }
}

/// A preview's phase alone (the rest of it stays).
#[derive(Serialize, Debug)]
pub(crate) struct PreviewPhase {
    pub phase: ImportPhase,
}

#[derive(Serialize, Debug)]
pub(crate) struct StatusPatch {
    status: ReconcilerStatus,
}

/// The fields the reconciler owns, as its merge patch carries
/// them: only what this reconcile changed (one that read a stale copy, the cache lagging
/// behind the last write, must not put back an older `lastHandledImportRequest`); a
/// field cleared is `null`.
#[derive(Serialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReconcilerStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_generation: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conditions: Option<Vec<Condition>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_import_time: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_handled_import_request: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_handled_full_reconcile_request: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_handled_approval: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_schedule_time: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorized_for: Option<Option<String>>,
}

impl ReconcilerStatus {
    /// The merge patch of these changes.
    pub(crate) fn into_patch(self) -> StatusPatch {
        StatusPatch { status: self }
    }

    /// What changed from `before` to `after`, among the reconciler's fields.
    pub(crate) fn changes(
        before: &FreshteamIntegrationStatus,
        after: &FreshteamIntegrationStatus,
    ) -> Self {
        fn changed<T: PartialEq + Clone>(before: &T, after: &T) -> Option<T> {
            (before != after).then(|| after.clone())
        }
        // An empty list is left out of the serialised status, as before.
        let conditions = changed(&before.conditions, &after.conditions).filter(|c| !c.is_empty());
        ReconcilerStatus {
            observed_generation: changed(&before.observed_generation, &after.observed_generation),
            conditions,
            next_import_time: changed(&before.next_import_time, &after.next_import_time),
            last_handled_import_request: changed(
                &before.last_handled_import_request,
                &after.last_handled_import_request,
            ),
            last_handled_full_reconcile_request: changed(
                &before.last_handled_full_reconcile_request,
                &after.last_handled_full_reconcile_request,
            ),
            last_handled_approval: changed(
                &before.last_handled_approval,
                &after.last_handled_approval,
            ),
            last_schedule_time: changed(&before.last_schedule_time, &after.last_schedule_time),
            authorized_for: changed(&before.authorized_for, &after.authorized_for),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ImportRun;

    #[test]
    fn an_apply_patch_names_the_kind_and_only_the_fields_sent() {
        let status = RunProgress {
            phase: ImportPhase::Running,
            start_time: Some("2026-07-01T12:00:00Z".into()),
            progress: Some(Progress::default()),
            ..RunProgress::default()
        };
        let body = StatusApply {
            api_version: &ImportRun::api_version(&()),
            kind: &ImportRun::kind(&()),
            status: &status,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({
                "apiVersion": "freshteam.provisioning.dev/v1alpha1",
                "kind": "ImportRun",
                "status": {"phase": "Running", "startTime": "2026-07-01T12:00:00Z",
                           "progress": {"processed": 0, "total": 0, "percent": 0}}
            })
        );
    }

    #[test]
    fn the_reconciler_patches_what_changed_and_nulls_what_it_cleared() {
        let before = FreshteamIntegrationStatus {
            observed_generation: Some(1),
            next_import_time: Some("2026-07-02T03:00:00Z".into()),
            last_handled_import_request: Some("a".into()),
            authorized_for: Some("1/1/1".into()),
            ..FreshteamIntegrationStatus::default()
        };
        let after = FreshteamIntegrationStatus {
            observed_generation: Some(2),
            next_import_time: None,
            ..before.clone()
        };
        assert_eq!(
            serde_json::to_value(ReconcilerStatus::changes(&before, &after).into_patch()).unwrap(),
            serde_json::json!({"status": {"observedGeneration": 2, "nextImportTime": null}})
        );
    }
}
