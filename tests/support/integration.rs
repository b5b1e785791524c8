//! The one FreshteamIntegration builder of the tests: Freshteam account `acme` with the
//! `freshteam-acme` and `members-scim` Secrets and a daily schedule; each test changes
//! what it is about, as a typed spec or as the JSON a user would write.

use freshteam_operator::api::{
    DestinationSpec, FreshteamIntegration, FreshteamIntegrationSpec, MappingSpec,
    ScimDestinationSpec, SecretKeyRef, SourceSpec,
};
use serde_json::Value;

pub struct IntegrationBuilder {
    fti: FreshteamIntegration,
}

/// `name` in `namespace` at generation 1, unpublished, reading acme.freshteam.com and
/// writing to `https://members.example.com/scim/v2` with the default mapping.
pub fn integration(namespace: &str, name: &str) -> IntegrationBuilder {
    let spec = FreshteamIntegrationSpec {
        source: SourceSpec {
            subdomain: "acme".into(),
            api_key_secret_ref: SecretKeyRef {
                name: "freshteam-acme".into(),
                key: "apiKey".into(),
            },
            base_url: None,
        },
        destination: DestinationSpec {
            scim: ScimDestinationSpec {
                url: "https://members.example.com/scim/v2".into(),
                token_secret_ref: SecretKeyRef {
                    name: "members-scim".into(),
                    key: "token".into(),
                },
                ..ScimDestinationSpec::default()
            },
        },
        schedule: "daily".into(),
        mapping: MappingSpec::default(),
        ..FreshteamIntegrationSpec::default()
    };
    let mut fti = FreshteamIntegration::new(name, spec);
    fti.metadata.namespace = Some(namespace.into());
    fti.metadata.generation = Some(1);
    IntegrationBuilder { fti }
}

impl IntegrationBuilder {
    /// Reads Freshteam at `base_url` (the simulator).
    pub fn reading(mut self, base_url: &str) -> Self {
        self.fti.spec.source.base_url = Some(base_url.to_string());
        self
    }

    /// Writes to the SCIM service at `url`.
    pub fn writing_to(mut self, url: &str) -> Self {
        self.fti.spec.destination.scim.url = url.to_string();
        self
    }

    /// Labels of the integration (none: no `labels` at all).
    pub fn labels(mut self, labels: &[(&str, &str)]) -> Self {
        if !labels.is_empty() {
            self.fti.metadata.labels = Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
        }
        self
    }

    /// Changes the typed spec.
    pub fn spec(mut self, edit: impl FnOnce(&mut FreshteamIntegrationSpec)) -> Self {
        edit(&mut self.fti.spec);
        self
    }

    /// Changes the object as JSON: metadata, status, or fields as a user writes them.
    pub fn json(self, edit: impl FnOnce(&mut Value)) -> Self {
        let mut v = serde_json::to_value(&self.fti).expect("an integration serialises");
        edit(&mut v);
        IntegrationBuilder {
            fti: serde_json::from_value(v).expect("an integration"),
        }
    }

    pub fn build(self) -> FreshteamIntegration {
        self.fti
    }
}
