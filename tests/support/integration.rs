//! The one FreshteamIntegration builder of the tests: Freshteam account `acme` with the
//! `freshteam-acme` and `members-scim` Secrets and a daily schedule; each test changes
//! what it is about, as a typed spec or as the JSON a user would write. It gives the
//! integration in the three forms the tests use: typed ([`IntegrationBuilder::build`],
//! the in-process controller and plugin tests), the JSON a user applies
//! ([`IntegrationBuilder::user_json`], the e2e suites) and a `sync --file` document with
//! its Secrets ([`IntegrationBuilder::sync_file`], `sync_env`).

use freshteam_operator::api::{
    DestinationSpec, FreshteamIntegration, FreshteamIntegrationSpec, MappingSpec,
    ScimDestinationSpec, SecretKeyRef, SourceSpec,
};
use serde_json::{json, Value};

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

    /// The integration as a user writes it for the API server: name, namespace and
    /// labels; in the spec `published`, the schedule, the source, the SCIM URL and token
    /// reference, the mapping's fields, and the welcome e-mail when enabled. Everything
    /// else is left out, for the API server's defaults.
    pub fn user_json(&self) -> Value {
        let fti = &self.fti;
        let spec = &fti.spec;
        let mut mapping = serde_json::to_value(&spec.mapping).expect("a mapping serialises");
        if spec.mapping.employee_id == MappingSpec::default().employee_id {
            mapping.as_object_mut().unwrap().remove("employeeId");
        }
        let mut out = json!({
            "apiVersion": "freshteam.provisioning.dev/v1alpha1",
            "kind": "FreshteamIntegration",
            "metadata": {
                "name": fti.metadata.name,
                "namespace": fti.metadata.namespace,
                "labels": fti.metadata.labels.clone().unwrap_or_default(),
            },
            "spec": {
                "published": spec.published,
                "schedule": spec.schedule,
                "source": spec.source,
                "destination": {"scim": {
                    "url": spec.destination.scim.url,
                    "tokenSecretRef": spec.destination.scim.token_secret_ref,
                }},
                "mapping": mapping,
            },
        });
        if spec.welcome_email.enabled {
            out["spec"]["welcomeEmail"] = json!(spec.welcome_email);
        }
        out
    }

    /// A `sync --file` document: the two Secrets (the Freshteam key `api_key`, the SCIM
    /// `token`) and the integration's name, namespace, source and SCIM destination, then
    /// `spec_extra` (lines indented for `spec`: the mapping and whatever a test adds), in
    /// the layout a user writes by hand (flow-style Secret references).
    pub fn sync_file(&self, api_key: &str, token: &str, spec_extra: &str) -> String {
        let fti = &self.fti;
        let ns = fti.metadata.namespace.as_deref().expect("a namespace");
        let name = fti.metadata.name.as_deref().expect("a name");
        let source = &fti.spec.source;
        let scim = &fti.spec.destination.scim;
        let (key_ref, token_ref) = (&source.api_key_secret_ref, &scim.token_secret_ref);
        let base = source
            .base_url
            .as_ref()
            .map(|b| format!("    baseUrl: {b}\n"))
            .unwrap_or_default();
        format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: {key_secret}, namespace: {ns}}}
stringData: {{{key_key}: "{api_key}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: {token_secret}, namespace: {ns}}}
stringData: {{{token_key}: "{token}"}}
---
apiVersion: freshteam.provisioning.dev/v1alpha1
kind: FreshteamIntegration
metadata: {{name: {name}, namespace: {ns}}}
spec:
  source:
    subdomain: {subdomain}
{base}    apiKeySecretRef: {{name: {key_secret}, key: {key_key}}}
  destination:
    scim:
      url: {url}
      tokenSecretRef: {{name: {token_secret}, key: {token_key}}}
{spec_extra}"#,
            key_secret = key_ref.name,
            key_key = key_ref.key,
            token_secret = token_ref.name,
            token_key = token_ref.key,
            subdomain = source.subdomain,
            url = scim.url,
        )
    }
}
