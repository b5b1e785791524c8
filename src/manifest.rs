//! Reading a manifests file for `sync`: one `FreshteamIntegration` and the Secrets it
//! refers to, as multi-document YAML. Every rejection names the file and the field.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;

use crate::api::{FreshteamIntegration, SecretKeyRef};
use crate::secret::SecretString;

/// Something wrong with the file; the message names the file and the field or Secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

/// The parsed file.
#[derive(Debug, Clone)]
pub struct Manifests {
    pub integration: FreshteamIntegration,
    /// Secrets by name: key → value (trimmed of surrounding white space).
    pub secrets: BTreeMap<String, Secret>,
    /// The file, as named in messages.
    pub file: String,
}

/// A Secret from the file.
#[derive(Debug, Clone)]
pub struct Secret {
    pub namespace: Option<String>,
    pub data: BTreeMap<String, SecretString>,
}

const API_VERSION: &str = "freshteam.provisioning.dev/v1alpha1";

/// Reads and parses a manifests file.
pub fn load(path: &Path) -> Result<Manifests, ManifestError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ManifestError(format!("{file}: cannot read the file: {e}")))?;
    parse(&text, &file)
}

/// Parses the text of a manifests file named `file` in messages.
pub fn parse(text: &str, file: &str) -> Result<Manifests, ManifestError> {
    let mut integrations = Vec::new();
    let mut secrets = BTreeMap::new();
    for (n, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let doc_no = n + 1;
        let value = yaml_serde::Value::deserialize(doc).map_err(|e| {
            ManifestError(format!("{file}: document {doc_no} is not valid YAML: {e}"))
        })?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        match kind {
            "FreshteamIntegration" => integrations.push(parse_integration(value, file, doc_no)?),
            "Secret" => {
                let (name, secret) = parse_secret(&value, file, doc_no)?;
                if secrets.insert(name.clone(), secret).is_some() {
                    return Err(ManifestError(format!(
                        "{file}: Secret '{name}' appears twice"
                    )));
                }
            }
            "" => {
                return Err(ManifestError(format!(
                "{file}: document {doc_no} has no kind (expected FreshteamIntegration or Secret)"
            )))
            }
            // Namespaces, kustomizations and the like may sit in the same file.
            _ => {}
        }
    }
    let integration = match integrations.len() {
        1 => integrations.remove(0),
        0 => {
            return Err(ManifestError(format!(
                "{file}: holds no FreshteamIntegration"
            )))
        }
        n => {
            let names: Vec<String> = integrations
                .iter()
                .map(|i| i.metadata.name.clone().unwrap_or_default())
                .collect();
            return Err(ManifestError(format!(
                "{file}: holds {n} FreshteamIntegrations ({}); sync imports one at a time",
                names.join(", ")
            )));
        }
    };
    Ok(Manifests {
        integration,
        secrets,
        file: file.to_string(),
    })
}

fn parse_integration(
    value: yaml_serde::Value,
    file: &str,
    doc_no: usize,
) -> Result<FreshteamIntegration, ManifestError> {
    let api_version = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if api_version != API_VERSION {
        return Err(ManifestError(format!(
            "{file}: document {doc_no}: apiVersion is '{api_version}', expected {API_VERSION}"
        )));
    }
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    let parsed = serde_ignored::deserialize(de, |path| {
        let p = path.to_string();
        // Kubernetes adds these on the way back; they are not the user's mistakes.
        if !(p.starts_with("metadata")
            || p.starts_with("status")
            || p == "apiVersion"
            || p == "kind")
        {
            unknown.push(p);
        }
    });
    let integration: FreshteamIntegration = parsed.map_err(|e| {
        let path = track.path().to_string();
        ManifestError(format!("{file}: FreshteamIntegration {path}: {e}"))
    })?;
    let name = integration.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(ManifestError(format!(
            "{file}: document {doc_no}: FreshteamIntegration metadata.name is required"
        )));
    }
    if let Some(field) = unknown.first() {
        return Err(ManifestError(format!(
            "{file}: FreshteamIntegration {name}: {field}: unknown field (check the spelling against `kubectl explain freshteamintegration.spec`)"
        )));
    }
    Ok(integration)
}

fn parse_secret(
    value: &yaml_serde::Value,
    file: &str,
    doc_no: usize,
) -> Result<(String, Secret), ManifestError> {
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ManifestError(format!(
                "{file}: document {doc_no}: Secret without metadata.name"
            ))
        })?
        .to_string();
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(|n| n.as_str())
        .map(str::to_string);
    let mut data = BTreeMap::new();
    if let Some(map) = value.get("data").and_then(|d| d.as_mapping()) {
        for (k, v) in map {
            let key = k.as_str().unwrap_or_default().to_string();
            let encoded = v.as_str().unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| {
                    ManifestError(format!(
                        "{file}: Secret '{name}' data.{key} is not valid base64"
                    ))
                })?;
            let text = String::from_utf8(bytes).map_err(|_| {
                ManifestError(format!(
                    "{file}: Secret '{name}' data.{key} is not UTF-8 text"
                ))
            })?;
            data.insert(key, SecretString::new(text.trim()));
        }
    }
    // stringData wins over data, as the API server merges them.
    if let Some(map) = value.get("stringData").and_then(|d| d.as_mapping()) {
        for (k, v) in map {
            let key = k.as_str().unwrap_or_default().to_string();
            let text = match v {
                yaml_serde::Value::String(s) => s.clone(),
                yaml_serde::Value::Number(n) => n.to_string(),
                _ => {
                    return Err(ManifestError(format!(
                        "{file}: Secret '{name}' stringData.{key} must be a string"
                    )))
                }
            };
            data.insert(key, SecretString::new(text.trim()));
        }
    }
    Ok((name, Secret { namespace, data }))
}

impl Manifests {
    /// Resolves a Secret key reference from `field` (e.g. `spec.source.apiKeySecretRef`).
    pub fn secret(&self, field: &str, r: &SecretKeyRef) -> Result<SecretString, ManifestError> {
        let file = &self.file;
        let secret = self.secrets.get(&r.name).ok_or_else(|| {
            ManifestError(format!("{field}: Secret '{}' is not in {file}", r.name))
        })?;
        let ns = self.integration.metadata.namespace.as_deref();
        if let (Some(sns), Some(ins)) = (secret.namespace.as_deref(), ns) {
            if sns != ins {
                return Err(ManifestError(format!(
                    "{field}: Secret '{}' is in namespace '{sns}' but the integration is in '{ins}'; Secrets resolve in the integration's own namespace only",
                    r.name
                )));
            }
        }
        let value = secret.data.get(&r.key).ok_or_else(|| {
            let keys: Vec<&str> = secret.data.keys().map(String::as_str).collect();
            ManifestError(format!(
                "{field}: Secret '{}' has no key '{}' (its keys: {})",
                r.name,
                r.key,
                if keys.is_empty() {
                    "none".to_string()
                } else {
                    keys.join(", ")
                }
            ))
        })?;
        if value.expose().is_empty() {
            return Err(ManifestError(format!(
                "{field}: Secret '{}' key '{}' is empty",
                r.name, r.key
            )));
        }
        Ok(value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: freshteam-acme, namespace: hr}
stringData: {apiKey: "ft-key-123\n"}
---
apiVersion: v1
kind: Secret
metadata: {name: members-scim}
data: {token: c2NpbS10b2tlbg==}
---
apiVersion: freshteam.provisioning.dev/v1alpha1
kind: FreshteamIntegration
metadata: {name: acme, namespace: hr}
spec:
  schedule: daily
  source:
    subdomain: acme
    apiKeySecretRef: {name: freshteam-acme, key: apiKey}
  destination:
    scim:
      url: https://members.example.com/scim/v2
      tokenSecretRef: {name: members-scim, key: token}
  mapping:
    email: official_email
"#;

    #[test]
    fn reads_integration_and_secrets_from_data_and_string_data() {
        let m = parse(GOOD, "m.yaml").unwrap();
        assert_eq!(m.integration.metadata.name.as_deref(), Some("acme"));
        assert_eq!(m.integration.spec.mapping.employee_id, "employee_id");
        assert_eq!(m.integration.spec.history.successful_runs_limit, 10);
        let key = m
            .secret(
                "spec.source.apiKeySecretRef",
                &m.integration.spec.source.api_key_secret_ref,
            )
            .unwrap();
        assert_eq!(key.expose(), "ft-key-123");
        let token = m
            .secret(
                "spec.destination.scim.tokenSecretRef",
                &m.integration.spec.destination.scim.token_secret_ref,
            )
            .unwrap();
        assert_eq!(token.expose(), "scim-token");
    }

    #[test]
    fn missing_secret_and_key_name_the_field() {
        let m = parse(GOOD, "m.yaml").unwrap();
        let e = m
            .secret(
                "spec.source.apiKeySecretRef",
                &SecretKeyRef {
                    name: "nope".into(),
                    key: "apiKey".into(),
                },
            )
            .unwrap_err();
        assert_eq!(
            e.0,
            "spec.source.apiKeySecretRef: Secret 'nope' is not in m.yaml"
        );
        let e = m
            .secret(
                "spec.source.apiKeySecretRef",
                &SecretKeyRef {
                    name: "freshteam-acme".into(),
                    key: "key".into(),
                },
            )
            .unwrap_err();
        assert_eq!(e.0, "spec.source.apiKeySecretRef: Secret 'freshteam-acme' has no key 'key' (its keys: apiKey)");
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let typo = GOOD.replace("  schedule: daily", "  schedul: daily");
        let e = parse(&typo, "m.yaml").unwrap_err();
        assert!(e.0.contains("spec.schedul: unknown field"), "{e}");
        let bad = GOOD.replace("  schedule: daily", "  safety: {maxLeaversPercent: lots}");
        let e = parse(&bad, "m.yaml").unwrap_err();
        assert!(e.0.contains("spec.safety.maxLeaversPercent"), "{e}");
        let missing = GOOD.replace("    subdomain: acme\n", "");
        let e = parse(&missing, "m.yaml").unwrap_err();
        assert!(
            e.0.contains("spec.source") && e.0.contains("subdomain"),
            "{e}"
        );
    }

    #[test]
    fn one_integration_per_file() {
        let none = GOOD.split("---").take(2).collect::<Vec<_>>().join("---");
        assert_eq!(
            parse(&none, "m.yaml").unwrap_err().0,
            "m.yaml: holds no FreshteamIntegration"
        );
        let two = format!(
            "{GOOD}\n---\n{}",
            GOOD.split("---")
                .nth(2)
                .unwrap()
                .replace("name: acme", "name: beta")
        );
        assert!(parse(&two, "m.yaml")
            .unwrap_err()
            .0
            .contains("holds 2 FreshteamIntegrations (acme, beta)"));
    }

    #[test]
    fn secrets_resolve_in_the_integration_namespace_only() {
        let other = GOOD.replace(
            "metadata: {name: freshteam-acme, namespace: hr}",
            "metadata: {name: freshteam-acme, namespace: other}",
        );
        let m = parse(&other, "m.yaml").unwrap();
        let e = m
            .secret(
                "spec.source.apiKeySecretRef",
                &m.integration.spec.source.api_key_secret_ref,
            )
            .unwrap_err();
        assert!(
            e.0.contains("in namespace 'other' but the integration is in 'hr'"),
            "{e}"
        );
    }

    #[test]
    fn bad_base64_is_named() {
        let bad = GOOD.replace("c2NpbS10b2tlbg==", "\"@@@\"");
        assert_eq!(
            parse(&bad, "m.yaml").unwrap_err().0,
            "m.yaml: Secret 'members-scim' data.token is not valid base64"
        );
    }
}
