//! Every manifest under examples/ is one a user can apply as it is: the YAML parses, and
//! each FreshteamIntegration passes what the API server checks (the CRD's structural
//! schema: types, required fields, no unknown fields; its CEL rules) and what the operator
//! checks (strict parsing, `validate_spec`, the Secrets it names). The Helm chart ships
//! exactly the CRDs of crds/.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use freshteam_operator::manifest;
use freshteam_operator::validate::{validate_spec, EndpointPolicy};
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn root() -> PathBuf {
    PathBuf::from(ROOT)
}

fn rel(path: &Path) -> String {
    path.strip_prefix(ROOT)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The YAML files under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The non-empty documents of a YAML file, as JSON values (what the API server receives).
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut docs = Vec::new();
    for (n, doc) in yaml_serde::Deserializer::from_str(&text).enumerate() {
        let value: yaml_serde::Value = serde::Deserialize::deserialize(doc)
            .unwrap_or_else(|e| panic!("{} document {}: {e}", rel(path), n + 1));
        if value.is_null() {
            continue;
        }
        let json: Value = serde_json::to_value(&value)
            .unwrap_or_else(|e| panic!("{} document {}: {e}", rel(path), n + 1));
        docs.push(json);
    }
    docs
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

/// openAPIV3Schema of each CRD in crds/, by kind.
fn crd_schemas() -> BTreeMap<String, Value> {
    documents(&root().join("crds/freshteam.provisioning.dev.yaml"))
        .into_iter()
        .map(|crd| {
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
            let versions = crd["spec"]["versions"].as_array().unwrap();
            assert_eq!(versions.len(), 1, "{kind}: one version expected");
            let schema = versions[0]["schema"]["openAPIV3Schema"].clone();
            assert!(schema.is_object(), "{kind}: no openAPIV3Schema");
            (kind, schema)
        })
        .collect()
}

/// The structural OpenAPI schema as the JSON Schema the API server effectively applies:
/// `nullable` admits null, and an object with declared properties rejects (in fact
/// prunes, with a warning under kubectl's strict validation) any other field.
fn as_json_schema(openapi: &Value) -> Value {
    fn walk(v: &Value) -> Value {
        let Value::Object(map) = v else {
            return v.clone();
        };
        let mut out = serde_json::Map::new();
        for (k, val) in map {
            match k.as_str() {
                "properties" => {
                    let props = val
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(p, s)| (p.clone(), walk(s)))
                        .collect();
                    out.insert(k.clone(), Value::Object(props));
                }
                "items" | "additionalProperties" => {
                    out.insert(k.clone(), walk(val));
                }
                "nullable" | "x-kubernetes-validations" => {}
                _ => {
                    out.insert(k.clone(), val.clone());
                }
            }
        }
        if map.get("nullable") == Some(&Value::Bool(true)) {
            if let Some(t) = map.get("type") {
                out.insert("type".into(), json!([t, "null"]));
            }
        }
        let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if map.contains_key("properties") && !map.contains_key("additionalProperties") && !preserves
        {
            out.insert("additionalProperties".into(), Value::Bool(false));
        }
        Value::Object(out)
    }
    let mut schema = walk(openapi);
    // The API server handles these itself; the generated schema does not list them.
    let props = schema["properties"].as_object_mut().unwrap();
    props.insert("apiVersion".into(), json!({"type": "string"}));
    props.insert("kind".into(), json!({"type": "string"}));
    props.insert("metadata".into(), json!({"type": "object"}));
    schema["$schema"] = json!("http://json-schema.org/draft-07/schema#");
    schema
}

/// What the API server would reject in `obj`: schema violations, then CEL rule failures.
fn api_server_errors(schemas: &BTreeMap<String, Value>, obj: &Value) -> Vec<String> {
    let openapi = &schemas[kind(obj)];
    let validator = jsonschema::draft7::new(&as_json_schema(openapi)).expect("schema compiles");
    let mut errors: Vec<String> = validator
        .iter_errors(obj)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        if let Err(cel) = kube::core::cel::Validator::new().validate(openapi, obj, None) {
            errors.extend(cel.iter().map(|e| format!("CEL {e}")));
        }
    }
    errors
}

/// RFC 7386 JSON merge patch; for the scalar fields the example patches, kustomize's
/// strategic merge does the same.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn same_object(a: &Value, b: &Value) -> bool {
    kind(a) == kind(b)
        && a["metadata"]["name"] == b["metadata"]["name"]
        && a["metadata"]["namespace"] == b["metadata"]["namespace"]
}

/// A FreshteamIntegration as it reaches the cluster, with where it comes from.
struct Integration {
    origin: String,
    dir: PathBuf,
    object: Value,
}

/// Every integration the examples produce: each complete one, and each one with a patch of
/// its directory applied. A patch is an integration without `spec.source`; it must be
/// named in its directory's kustomization.yaml.
fn integrations() -> Vec<Integration> {
    let mut complete = Vec::new();
    let mut patches = Vec::new();
    for file in yaml_files(&root().join("examples")) {
        for doc in documents(&file) {
            if kind(&doc) != "FreshteamIntegration" {
                continue;
            }
            if doc["spec"].get("source").is_some() {
                complete.push((file.clone(), doc));
            } else {
                patches.push((file.clone(), doc));
            }
        }
    }
    let mut out: Vec<Integration> = complete
        .iter()
        .map(|(file, doc)| Integration {
            origin: rel(file),
            dir: file.parent().unwrap().to_path_buf(),
            object: doc.clone(),
        })
        .collect();
    for (file, patch) in &patches {
        let dir = file.parent().unwrap();
        let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml"))
            .unwrap_or_else(|_| panic!("{}: a patch without a kustomization.yaml", rel(file)));
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            kustomization.contains(&format!("path: {name}")),
            "{}: kustomization.yaml does not name this patch",
            rel(file)
        );
        let (base_file, base) = complete
            .iter()
            .find(|(f, d)| f.parent() == Some(dir) && same_object(d, patch))
            .unwrap_or_else(|| panic!("{}: no integration in its directory to patch", rel(file)));
        let mut object = base.clone();
        merge_patch(&mut object, patch);
        out.push(Integration {
            origin: format!("{} + {}", rel(base_file), rel(file)),
            dir: dir.to_path_buf(),
            object,
        });
    }
    out
}

/// The non-integration documents of a directory (Namespaces, Secrets, …).
fn companions(dir: &Path) -> Vec<Value> {
    yaml_files(dir)
        .iter()
        .filter(|f| f.parent() == Some(dir))
        .flat_map(|f| documents(f))
        .filter(|d| kind(d) != "FreshteamIntegration")
        .collect()
}

fn policy_for(dir: &Path) -> EndpointPolicy {
    if dir.ends_with("examples/local") {
        // sync-demo.yaml is for `freshteam-operator sync`, which takes custom endpoints on
        // loopback addresses only.
        EndpointPolicy::LoopbackOnly
    } else {
        // Everything else is for a cluster, where the operator's default refuses them.
        EndpointPolicy::Deny
    }
}

#[test]
fn every_yaml_document_under_examples_parses_and_names_its_kind() {
    let files = yaml_files(&root().join("examples"));
    assert!(files.len() >= 7, "examples are missing: {files:?}");
    for file in files {
        let docs = documents(&file);
        assert!(!docs.is_empty(), "{}: no document", rel(&file));
        for doc in docs {
            assert!(
                doc["apiVersion"].is_string() && !kind(&doc).is_empty(),
                "{}: a document without apiVersion and kind",
                rel(&file)
            );
        }
    }
}

#[test]
fn every_integration_passes_the_api_server_and_the_operator() {
    let schemas = crd_schemas();
    let all = integrations();
    assert!(
        all.len() >= 3,
        "expected the local, unpublished and published integrations"
    );
    for i in &all {
        let origin = &i.origin;
        let errors = api_server_errors(&schemas, &i.object);
        assert!(errors.is_empty(), "{origin}: {errors:#?}");

        // The operator's own reading: strict (unknown fields named), with the Secrets of
        // the same directory, as `sync` reads a file.
        let mut docs = companions(&i.dir);
        docs.push(i.object.clone());
        let text: String = docs
            .iter()
            .map(|d| format!("---\n{}", yaml_serde::to_string(d).unwrap()))
            .collect();
        let m = manifest::parse(&text, origin).unwrap_or_else(|e| panic!("{e}"));
        let spec = &m.integration.spec;
        if let Err(errors) = validate_spec(spec, policy_for(&i.dir)) {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!("{origin}: {errors:#?}");
        }
        m.secret(
            "spec.source.apiKeySecretRef",
            &spec.source.api_key_secret_ref,
        )
        .unwrap_or_else(|e| panic!("{origin}: {e}"));
        m.secret(
            "spec.destination.scim.tokenSecretRef",
            &spec.destination.scim.token_secret_ref,
        )
        .unwrap_or_else(|e| panic!("{origin}: {e}"));
    }
}

#[test]
fn gitops_integrations_use_no_custom_endpoint() {
    for i in integrations().iter().filter(|i| i.dir.ends_with("gitops")) {
        let spec = &i.object["spec"];
        assert!(spec["source"].get("baseUrl").is_none(), "{}", i.origin);
        let url = spec["destination"]["scim"]["url"].as_str().unwrap();
        assert!(url.starts_with("https://"), "{}: {url}", i.origin);
    }
}

#[test]
fn gitops_set_is_unpublished_until_the_publish_patch() {
    let dir = root().join("examples/gitops");
    let base = &documents(&dir.join("integration-unpublished.yaml"))[0];
    let patch = &documents(&dir.join("integration-published.yaml"))[0];
    assert_eq!(base["spec"]["published"], json!(false));
    // The publish commit flips one field and nothing else.
    assert_eq!(patch["spec"], json!({"published": true}));

    let kustomization = &documents(&dir.join("kustomization.yaml"))[0];
    assert_eq!(kind(kustomization), "Kustomization");
    assert!(
        kustomization.get("patches").is_none(),
        "the set as committed must stay unpublished; publishing is the reviewed step"
    );
    let resources: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for r in &resources {
        assert!(
            dir.join(r).is_file(),
            "kustomization.yaml: {r} does not exist"
        );
    }
    // Every file of the set is either a resource or the publish patch.
    for file in yaml_files(&dir) {
        let name = rel(&file)
            .trim_start_matches("examples/gitops/")
            .to_string();
        assert!(
            resources.contains(&name.as_str())
                || name == "kustomization.yaml"
                || name == "integration-published.yaml",
            "{name} is not in kustomization.yaml"
        );
    }
}

#[test]
fn schema_check_rejects_what_the_api_server_would() {
    let schemas = crd_schemas();
    let good = documents(&root().join("examples/gitops/integration-unpublished.yaml"))[0].clone();
    assert!(api_server_errors(&schemas, &good).is_empty());

    let cases: [(&str, Value, &str); 6] = [
        (
            "an unknown field",
            json!({"spec": {"schedul": "daily"}}),
            "schedul",
        ),
        (
            "a wrong type",
            json!({"spec": {"safety": {"maxLeaversPercent": "lots"}}}),
            "maxLeaversPercent",
        ),
        (
            "a missing required field",
            json!({"spec": {"source": {"subdomain": null}}}),
            "subdomain",
        ),
        (
            "a string for a boolean",
            json!({"spec": {"published": "yes"}}),
            "published",
        ),
        (
            "a mapping without email (CEL)",
            json!({"spec": {"mapping": {"email": null}}}),
            "mapping.email is required",
        ),
        (
            "a subdomain that is not a DNS label (CEL)",
            json!({"spec": {"source": {"subdomain": "Acme_Corp"}}}),
            "DNS label",
        ),
    ];
    for (what, patch, needle) in cases {
        let mut bad = good.clone();
        merge_patch(&mut bad, &patch);
        let errors = api_server_errors(&schemas, &bad);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{what}: expected an error naming {needle:?}, got {errors:#?}"
        );
    }
}

#[test]
fn chart_crds_are_the_checked_in_crds() {
    let chart_crds = root().join("charts/freshteam-operator/crds");
    let files: Vec<String> = std::fs::read_dir(&chart_crds)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["freshteam.provisioning.dev.yaml"]);
    let chart = std::fs::read(chart_crds.join("freshteam.provisioning.dev.yaml")).unwrap();
    let top = std::fs::read(root().join("crds/freshteam.provisioning.dev.yaml")).unwrap();
    assert!(
        chart == top,
        "charts/freshteam-operator/crds/ differs from crds/: \
         cp crds/freshteam.provisioning.dev.yaml charts/freshteam-operator/crds/"
    );
}
