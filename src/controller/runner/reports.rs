//! The run's report in ConfigMaps it owns.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Resource, ResourceExt};

use crate::api::{ErrorReportRef, ImportRun};
use crate::controller::Context;
use crate::sync::report_part_name;

/// Bytes of CSV per report ConfigMap: a report larger than that is split over
/// `<run>-errors`, `<run>-errors-2`, … (each under the 1 MiB object limit).
pub const REPORT_PART_BYTES: usize = 900 * 1024;

/// Why the report could not be stored.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReportError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// A ConfigMap of the report's name exists and another object owns it.
    #[error("ConfigMap {0} already exists and is not this run's report")]
    Taken(String),
}

pub(super) async fn store_report(
    ctx: &Context,
    runs: &Api<ImportRun>,
    ns: &str,
    run: &str,
    parts: &[String],
) -> Result<ErrorReportRef, ReportError> {
    let owner = runs.get(run).await?.controller_owner_ref(&());
    let run_uid = owner.as_ref().map(|o| o.uid.clone());
    let name = format!("{run}-errors");
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    for (i, csv) in parts.iter().enumerate() {
        let part_name = report_part_name(&name, i);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(part_name.clone()),
                namespace: Some(ns.to_string()),
                owner_references: owner.clone().map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("errors.csv".to_string(), csv.clone())])),
            ..ConfigMap::default()
        };
        // Created once and never replaced (the operator may not update ConfigMaps): a
        // part already there counts only if this run owns it.
        match cms.create(&PostParams::default(), &cm).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = cms.get(&part_name).await?;
                let ours = existing
                    .owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == run_uid.as_ref());
                if !ours {
                    return Err(ReportError::Taken(part_name));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ErrorReportRef {
        config_map_name: name,
        key: "errors.csv".into(),
        parts: (parts.len() > 1).then_some(parts.len() as u32),
    })
}
