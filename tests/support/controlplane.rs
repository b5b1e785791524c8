//! A real control plane for end-to-end tests, started and stopped like controller-runtime's
//! envtest: `tests/cluster/start.sh` (etcd, kube-apiserver with RBAC and token identities,
//! kube-controller-manager for garbage collection) on free loopback ports; and the Helm
//! chart's manifests rendered with the Helm SDK, whose RBAC objects the tests apply to it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::{Api, ResourceExt};
use serde_json::Value;

/// Set to make a missing control plane a failure instead of a skip (CI sets it).
pub const REQUIRED_VAR: &str = "FRESHTEAM_E2E_REQUIRED";

pub struct ControlPlane {
    pub dir: PathBuf,
    pub server: String,
    pub ca_file: PathBuf,
    pub admin_token: String,
    pub operator_token: String,
    /// The user name the operator's token authenticates as.
    pub operator_user: String,
    pub admin_kubeconfig: PathBuf,
    pub operator_kubeconfig: PathBuf,
}

/// The chart (charts/freshteam-operator) rendered by `tests/cluster/render_chart.py` for a
/// release in `namespace` with `values`: its manifests, NOTES.txt left out.
pub fn render_chart(release: &str, namespace: &str, values: &Value) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/cluster/render_chart.py"))
        .args([release, namespace, &values.to_string()])
        .output()
        .expect("run tests/cluster/render_chart.py (scripts/setup-peers makes .venv)");
    assert!(
        out.status.success(),
        "render_chart.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("rendered JSON")
}

/// The API resource of a rendered RBAC manifest (or ServiceAccount), `None` for other kinds.
fn rbac_resource(doc: &Value) -> Option<ApiResource> {
    fn erase<K: kube::Resource<DynamicType = ()>>() -> ApiResource {
        ApiResource::erase::<K>(&())
    }
    Some(match doc["kind"].as_str()? {
        "ServiceAccount" => erase::<ServiceAccount>(),
        "ClusterRole" => erase::<ClusterRole>(),
        "ClusterRoleBinding" => erase::<ClusterRoleBinding>(),
        "Role" => erase::<Role>(),
        "RoleBinding" => erase::<RoleBinding>(),
        _ => return None,
    })
}

fn dynamic_api(client: &kube::Client, ar: &ApiResource, doc: &Value) -> Api<DynamicObject> {
    match doc["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

fn cluster_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cluster")
        .join(name)
}

/// Where `build.sh` caches the binaries, when they are there.
fn cached_binaries() -> Option<PathBuf> {
    let out = Command::new(cluster_script("build.sh"))
        .arg("--cached")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

impl ControlPlane {
    /// Starts a control plane whose operator identity is `operator_user`. `None` (after
    /// saying why, loudly) when the binaries are not built and [`REQUIRED_VAR`] is unset;
    /// with it set, builds them if needed and panics on any failure.
    pub fn start(operator_user: &str) -> Option<ControlPlane> {
        let required = std::env::var_os(REQUIRED_VAR).is_some_and(|v| !v.is_empty());
        if !required && cached_binaries().is_none() {
            // Straight to stderr: the test harness captures eprintln! of passing tests.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: the e2e tests need a real control plane, and its binaries are \
                 not built. Build them with tests/cluster/build.sh (Go, several minutes the \
                 first time), or set {REQUIRED_VAR}=1 to build them and fail instead of \
                 skipping. ***\n"
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("freshteam-controlplane.")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        let out = Command::new(cluster_script("start.sh"))
            .arg(&dir)
            .env("FRESHTEAM_CP_OPERATOR_USER", operator_user)
            // Stops by itself when the test process ends, however it ends.
            .env("FRESHTEAM_CP_OWNER_PID", std::process::id().to_string())
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run tests/cluster/start.sh");
        assert!(
            out.status.success(),
            "tests/cluster/start.sh failed (logs in {})",
            dir.display()
        );
        let env: HashMap<String, String> = std::fs::read_to_string(dir.join("env"))
            .expect("start.sh writes env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = |k: &str| {
            env.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("env has no {k}"))
        };
        Some(ControlPlane {
            server: get("SERVER"),
            ca_file: get("CA_FILE").into(),
            admin_token: get("ADMIN_TOKEN"),
            operator_token: get("OPERATOR_TOKEN"),
            operator_user: get("OPERATOR_USER"),
            admin_kubeconfig: get("ADMIN_KUBECONFIG").into(),
            operator_kubeconfig: get("OPERATOR_KUBECONFIG").into(),
            dir,
        })
    }

    /// A client for a kubeconfig this control plane wrote.
    pub async fn client(&self, kubeconfig: &Path) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .expect("kubeconfig");
        kube::Client::try_from(config).expect("a client")
    }

    pub async fn admin(&self) -> kube::Client {
        self.client(&self.admin_kubeconfig).await
    }

    pub async fn operator(&self) -> kube::Client {
        self.client(&self.operator_kubeconfig).await
    }

    /// Creates, as the admin, the ServiceAccounts and RBAC objects among rendered manifests
    /// (other kinds are left out) exactly as rendered; one that exists already is kept.
    pub async fn grant(&self, docs: &[&Value]) {
        let admin = self.admin().await;
        for doc in docs {
            let Some(ar) = rbac_resource(doc) else {
                continue;
            };
            let obj: DynamicObject = serde_json::from_value((*doc).clone()).expect("a manifest");
            match dynamic_api(&admin, &ar, doc)
                .create(&PostParams::default(), &obj)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => panic!("create {} {}: {e}", ar.kind, obj.name_any()),
            }
        }
    }

    /// Deletes, as the admin, the RBAC objects among rendered manifests (those absent are
    /// fine): what [`ControlPlane::grant`] granted is taken back.
    pub async fn revoke(&self, docs: &[&Value]) {
        let admin = self.admin().await;
        for doc in docs {
            let Some(ar) = rbac_resource(doc) else {
                continue;
            };
            let name = doc["metadata"]["name"].as_str().expect("a named manifest");
            match dynamic_api(&admin, &ar, doc)
                .delete(name, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => panic!("delete {} {name}: {e}", ar.kind),
            }
        }
    }

    /// The control plane's own logs (for a failing test's message).
    pub fn log_tail(&self, process: &str, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{process}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn stop(&self) {
        let _ = Command::new(cluster_script("start.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}
