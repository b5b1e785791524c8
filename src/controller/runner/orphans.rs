//! Runs a process that died left unfinished, marked `Interrupted`.

use super::objects::apply_run_status;
use crate::controller::status::{
    apply_status, LastImportStatus, PreviewPatch, PreviewPhase, RunProgress, LAST_IMPORT_MANAGER,
};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::api::{FreshteamIntegration, ImportPhase, ImportRun, LastImport};
use crate::clock::rfc3339;
use crate::controller::Context;

/// Marks runs left `Pending`/`Running` by a process that died as `Interrupted`. Called
/// by a new leader before it starts any run, so none of these can still be running.
pub async fn mark_interrupted(ctx: &Context, runs: &Api<ImportRun>) -> Result<u32, kube::Error> {
    let mut n = 0;
    for r in runs.list(&ListParams::default()).await?.items {
        let phase = r.status.as_ref().map(|s| s.phase).unwrap_or_default();
        // A user's on-demand run nobody took yet is not interrupted: it waits to start.
        if phase.is_final() || super::is_waiting(&r) {
            continue;
        }
        let ns = r.namespace().unwrap_or_default();
        let name = r.name_any();
        let integrations: Api<FreshteamIntegration> = Api::namespaced(ctx.client.clone(), &ns);
        let owner = integrations.get_opt(&r.spec.integration).await?;
        if owner.as_ref().is_some_and(|f| !ctx.in_shard(f)) {
            // Another shard's run: its own leader deals with it.
            continue;
        }
        let api: Api<ImportRun> = Api::namespaced(ctx.client.clone(), &ns);
        let now = rfc3339(ctx.clock.now());
        let status = RunProgress {
            phase: ImportPhase::Interrupted,
            start_time: r.status.as_ref().and_then(|s| s.start_time.clone()),
            completion_time: Some(now.clone()),
            progress: r.status.as_ref().and_then(|s| s.progress.clone()),
            message: Some("the operator stopped during this run; the next run converges".into()),
        };
        apply_run_status(&api, &name, &status).await?;
        let integrations: Api<FreshteamIntegration> = Api::namespaced(ctx.client.clone(), &ns);
        if let Ok(Some(fti)) = integrations.get_opt(&r.spec.integration).await {
            record_interrupted(&integrations, &fti, &r, now).await;
        }
        n += 1;
    }
    Ok(n)
}

/// The integration's view of a run marked `Interrupted`: its `lastImport` (unless a later
/// run was recorded) and its preview (when the run computed it).
async fn record_interrupted(
    integrations: &Api<FreshteamIntegration>,
    fti: &FreshteamIntegration,
    r: &ImportRun,
    now: String,
) {
    let name = r.name_any();
    let last = fti.status.as_ref().and_then(|s| s.last_import.as_ref());
    // The interrupted run is the last import unless a later one was recorded.
    let started = r.status.as_ref().and_then(|s| s.start_time.clone());
    if last.is_none_or(|l| l.run_name == name || l.start_time < started) {
        let interrupted = LastImport {
            run_name: name.clone(),
            phase: ImportPhase::Interrupted,
            start_time: started,
            completion_time: Some(now.clone()),
            summary: r
                .status
                .as_ref()
                .map(|s| s.summary.clone())
                .unwrap_or_default(),
            // Keeps what the previous import found out about the destination.
            unsupported_mapping_targets: last.and_then(|l| l.unsupported_mapping_targets.clone()),
        };
        let status = LastImportStatus {
            last_import: &interrupted,
        };
        let _ = apply_status(
            integrations,
            &r.spec.integration,
            LAST_IMPORT_MANAGER,
            &status,
        )
        .await;
    }
    let preview = fti.status.as_ref().and_then(|s| s.preview.as_ref());
    if preview.is_some_and(|p| p.run_name == name) {
        // Not a finished preview: the next reconcile computes it again (a merge patch:
        // see crate::controller::status).
        let patch = PreviewPatch::new(PreviewPhase {
            phase: ImportPhase::Interrupted,
        });
        let _ = integrations
            .patch_status(
                &r.spec.integration,
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await;
    }
}
