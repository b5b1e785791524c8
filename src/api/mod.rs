//! The custom resources: the contract users write in YAML and read with kubectl.

pub mod import_run;
pub mod integration;
pub mod validate;

pub use import_run::*;
pub use integration::*;

use kube::CustomResourceExt;

/// API group of both resources.
pub const GROUP: &str = "freshteam.provisioning.dev";
/// Annotation whose new value starts an import now.
pub const IMPORT_REQUESTED_AT: &str = "freshteam.provisioning.dev/import-requested-at";
/// Annotation naming the Blocked run whose leavers are approved.
pub const APPROVE_LEAVERS: &str = "freshteam.provisioning.dev/approve-leavers";

/// Both CRDs as one multi-document YAML stream, exactly as checked in under `crds/`.
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in [FreshteamIntegration::crd(), ImportRun::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("a CRD always serialises"));
    }
    out
}
