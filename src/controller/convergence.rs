//! An integration's convergence notes (see [`crate::destination::convergence`]), kept in a
//! ConfigMap it owns, `<integration>-convergence`, key `notes.json`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;

use crate::destination::ConvergenceNotes;

const KEY: &str = "notes.json";

fn name(integration: &str) -> String {
    format!("{integration}-convergence")
}

/// The notes, or none when there are none yet or they cannot be read (the run then
/// writes what it would write without them: nothing is lost but a write).
pub async fn load(api: &Api<ConfigMap>, integration: &str) -> ConvergenceNotes {
    let name = name(integration);
    match api.get_opt(&name).await {
        Ok(Some(cm)) => cm
            .data
            .as_ref()
            .and_then(|d| d.get(KEY))
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default(),
        Ok(None) => ConvergenceNotes::default(),
        Err(e) => {
            tracing::warn!(config_map = %name, error = %e, "cannot read the convergence notes");
            ConvergenceNotes::default()
        }
    }
}

/// Replaces the notes (creates the ConfigMap on first use).
pub async fn save(
    api: &Api<ConfigMap>,
    integration: &str,
    owner: Option<OwnerReference>,
    notes: &ConvergenceNotes,
) -> Result<(), String> {
    let name = name(integration);
    let json = serde_json::to_string(notes).map_err(|e| e.to_string())?;
    let current = api
        .get_opt(&name)
        .await
        .map_err(|e| format!("ConfigMap {name}: {e}"))?;
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            resource_version: current
                .as_ref()
                .and_then(|c| c.metadata.resource_version.clone()),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(KEY.to_string(), json)])),
        ..ConfigMap::default()
    };
    match current {
        None if notes.is_empty() => return Ok(()),
        None => api.create(&PostParams::default(), &cm).await,
        Some(_) => api.replace(&name, &PostParams::default(), &cm).await,
    }
    .map(|_| ())
    .map_err(|e| format!("ConfigMap {name}: {e}"))
}
