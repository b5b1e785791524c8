//! The custom resources: the contract users write in YAML and read with kubectl.

// The schema derive emits items under the types' spans that `unreachable_pub` misreads
// as unreachable; every type here is public API (re-exported below).
#[allow(unreachable_pub)]
pub mod import_run;
#[allow(unreachable_pub)]
pub mod integration;
#[allow(unreachable_pub)]
pub mod integration_state;

pub use import_run::*;
pub use integration::*;
pub use integration_state::*;

use kube::CustomResourceExt;

/// Label on every ImportRun naming its integration.
pub const INTEGRATION_LABEL: &str = "freshteam.provisioning.dev/integration";

/// API group of the resources.
pub const GROUP: &str = "freshteam.provisioning.dev";
/// Annotation whose new value starts an import now.
pub const IMPORT_REQUESTED_AT: &str = "freshteam.provisioning.dev/import-requested-at";
/// Annotation naming the Blocked run whose leavers are approved.
/// A new value makes the next run a full reconciliation (see `spec.fullReconcile`).
pub const FULL_RECONCILE_REQUESTED_AT: &str =
    "freshteam.provisioning.dev/full-reconcile-requested-at";
pub const APPROVE_LEAVERS: &str = "freshteam.provisioning.dev/approve-leavers";

/// The CRDs as one multi-document YAML stream, exactly as checked in under `crds/`.
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in [
        FreshteamIntegration::crd(),
        ImportRun::crd(),
        IntegrationState::crd(),
    ] {
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(&crd).expect("a CRD always serialises"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cel_rule_rejects_a_mapping_without_email() {
        let ok = serde_json::json!({"employeeId": "employee_id", "email": "official_email"});
        assert!(MappingSpec::validate_cel(&ok, None).is_ok());
        for bad in [
            serde_json::json!({"employeeId": "employee_id"}),
            serde_json::json!({"employeeId": "employee_id", "email": ""}),
        ] {
            let e = MappingSpec::validate_cel(&bad, None).unwrap_err();
            assert!(
                format!("{e:?}").contains("mapping.email is required"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn the_state_crd_stays_out_of_users_way() {
        // No short name and no category: `kubectl get all` and habits like `kubectl get
        // fti,ir` do not show it; only its full name does.
        let crd = IntegrationState::crd();
        assert_eq!(crd.spec.names.short_names, None);
        assert_eq!(crd.spec.names.categories, None);
        assert_eq!(crd.spec.names.plural, "integrationstates");
        assert_eq!(crd.spec.scope, "Namespaced");
    }

    #[test]
    fn crds_carry_short_names_columns_status_and_the_cel_rule() {
        let yaml = crds_yaml();
        for needle in [
            "- fti",
            "- ir",
            "name: Published",
            "name: Authorized",
            "name: Last import",
            "name: Next",
            "status: {}",
            "rule: has(self.email) && self.email != ''",
            "name: Entries",
            "x-kubernetes-preserve-unknown-fields: true",
        ] {
            assert!(yaml.contains(needle), "missing {needle}");
        }
    }
}
