//! The ImportRun object: built, created under a free name, its status patched.

use std::collections::BTreeMap;

use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Resource, ResourceExt};

use crate::api::INTEGRATION_LABEL;
use crate::api::{FreshteamIntegration, ImportRun, ImportRunSpec, ImportRunStatus};
use crate::controller::decide::StartRun;
use crate::controller::status::{apply_status, RUN_MANAGER};

/// The ImportRun object for a run about to start (phase Pending).
pub fn new_run(fti: &FreshteamIntegration, name: &str, start: &StartRun) -> ImportRun {
    let integration = fti.name_any();
    let mut labels = BTreeMap::new();
    labels.insert(INTEGRATION_LABEL.to_string(), integration.clone());
    ImportRun {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: fti.namespace(),
            labels: Some(labels),
            owner_references: fti.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: ImportRunSpec {
            integration,
            trigger: start.trigger,
            dry_run: start.dry_run,
            employee_ids: Vec::new(),
        },
        status: Some(ImportRunStatus::default()),
    }
}

/// Whether `run` belongs to `fti`: it names the integration and, when the integration
/// has a uid, is owned by it (a same-named integration deleted and re-created is another).
pub(super) fn is_own_run(fti: &FreshteamIntegration, run: &ImportRun) -> bool {
    run.spec.integration == fti.name_any()
        && fti.metadata.uid.as_ref().is_none_or(|uid| {
            run.owner_references()
                .iter()
                .any(|o| &o.uid == uid && o.kind == "FreshteamIntegration")
        })
}

/// Creates the ImportRun; a name already taken (two runs in one second) gets a suffix.
pub async fn create_run(
    api: &Api<ImportRun>,
    mut run: ImportRun,
) -> Result<ImportRun, kube::Error> {
    let base = run.name_any();
    for attempt in 0..5 {
        if attempt > 0 {
            run.metadata.name = Some(format!("{base}-{attempt}"));
        }
        match api.create(&PostParams::default(), &run).await {
            Ok(created) => return Ok(created),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(kube::Error::Api(
        kube::core::Status::failure(
            &format!("ImportRun names {base}-* are taken"),
            "AlreadyExists",
        )
        .with_code(409)
        .boxed(),
    ))
}

/// Applies the run's status: the whole of what the run has written so far (see
/// [`crate::controller::status`]).
pub(super) async fn apply_run_status(
    api: &Api<ImportRun>,
    name: &str,
    status: &(impl serde::Serialize + std::fmt::Debug),
) -> Result<(), kube::Error> {
    apply_status(api, name, RUN_MANAGER, status).await
}
