//! History: runs beyond the limits deleted.

use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};

use crate::api::INTEGRATION_LABEL;
use crate::api::{FreshteamIntegration, ImportRun};
use crate::controller::history::{runs_to_prune, RunEntry};

/// Deletes runs beyond the history limits (their report ConfigMaps go with them through
/// the owner reference).
pub async fn prune(runs: &Api<ImportRun>, fti: &FreshteamIntegration) {
    let selector = format!("{INTEGRATION_LABEL}={}", fti.name_any());
    let Ok(list) = runs.list(&ListParams::default().labels(&selector)).await else {
        return;
    };
    let entries: Vec<RunEntry> = list
        .items
        .iter()
        .map(|r| RunEntry {
            name: r.name_any(),
            phase: r.status.as_ref().map(|s| s.phase).unwrap_or_default(),
            created: r
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .or_else(|| r.status.as_ref().and_then(|s| s.start_time.clone()))
                .unwrap_or_else(|| r.name_any()),
        })
        .collect();
    for name in runs_to_prune(&entries, &fti.spec.history) {
        if let Err(e) = runs.delete(&name, &DeleteParams::background()).await {
            tracing::warn!(run = %name, error = %e, "could not prune an ImportRun");
        }
    }
}
