//! The end-to-end harness shared by the e2e suites (tests/e2e.rs, tests/e2e_leavers.rs):
//! a real control plane (etcd, kube-apiserver, kube-controller-manager built by
//! tests/cluster/build.sh) with the CRDs from crds/ and the chart's RBAC rendered with the
//! Helm SDK, the real `freshteam-operator run` as the chart runs it, the
//! `freshteam-operator simulate` Freshteam simulator, scim2-server and aiosmtpd.
//!
//! One control plane serves a whole suite (one per test binary); its tests take turns
//! (they share the operator's identity and the chart's Leases), each in its own namespace.
//! Without the control-plane binaries a suite skips, loudly, unless FRESHTEAM_E2E_REQUIRED
//! is set (CI sets it): then it builds them or fails.
//!
//! Included by each suite with `#[path = "support/e2e.rs"] mod harness;` beside
//! `mod support; mod support_smtp;`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::controlplane::ControlPlane;
use crate::support::ScimServer;
use crate::support_smtp::SmtpServer;
use freshteam_operator::api::{FreshteamIntegration, ImportPhase, ImportRun, IMPORT_REQUESTED_AT};
use freshteam_operator::controller::INTEGRATION_LABEL;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use tokio::sync::{Mutex, OnceCell};

pub const RELEASE: &str = "fto";
pub const OPERATOR_NS: &str = "freshteam-system";
pub const FULLNAME: &str = "fto-freshteam-operator";
pub const LEASE_SECONDS: u64 = 6;
pub const API_KEY: &str = "ft-e2e-7c1a";
pub const SHARD_LABEL: &str = "sharding.freshteam.provisioning.dev/key";

pub struct Cluster {
    pub cp: ControlPlane,
    /// The chart's manifests as rendered (Deployments give the operator's arguments).
    pub chart: Vec<Value>,
}

pub static CLUSTER: OnceCell<Option<Cluster>> = OnceCell::const_new();
/// The tests take turns: they share the operator identity and the chart's Leases.
pub static TURN: Mutex<()> = Mutex::const_new(());

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The chart rendered with the Helm SDK: two shards (default and s1), short Leases.
pub fn render_chart() -> Vec<Value> {
    let values = json!({
        "sharding": {"shards": ["s1"]},
        "leaderElection": {"leaseSeconds": LEASE_SECONDS},
        "operator": {"shutdownGraceSeconds": 1},
    });
    let out = std::process::Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/cluster/render_chart.py"))
        .args([RELEASE, OPERATOR_NS, &values.to_string()])
        .output()
        .expect("run tests/cluster/render_chart.py (scripts/setup-peers makes .venv)");
    assert!(
        out.status.success(),
        "render_chart.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("rendered JSON")
}

pub fn erase<K: kube::Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

/// Creates a rendered manifest as it is.
pub async fn create(client: &Client, ar: ApiResource, ns: Option<&str>, doc: &Value) {
    let obj: DynamicObject = serde_json::from_value(doc.clone()).expect("a manifest");
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {} {}: {e}", ar.kind, obj.name_any()));
}

pub async fn setup() -> Option<Cluster> {
    let cp = ControlPlane::start(&format!("system:serviceaccount:{OPERATOR_NS}:{FULLNAME}"))?;
    let admin = cp.admin().await;
    // The CRDs as checked in, applied as a user would.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let text =
        std::fs::read_to_string(root().join("crds/freshteam.provisioning.dev.yaml")).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let crd: CustomResourceDefinition = serde::Deserialize::deserialize(doc).expect("a CRD");
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("the server accepts the CRD");
    }
    for name in [
        "freshteamintegrations.freshteam.provisioning.dev",
        "importruns.freshteam.provisioning.dev",
    ] {
        eventually(
            Duration::from_secs(30),
            "the CRD to be established",
            || async {
                crds.get(name).await.ok().is_some_and(|c| {
                    c.status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
            },
        )
        .await;
    }
    // The chart's identity and RBAC, nothing else.
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": OPERATOR_NS}})).unwrap(),
        )
        .await
        .unwrap();
    let chart = render_chart();
    for doc in &chart {
        let ns = doc["metadata"]["namespace"].as_str();
        match doc["kind"].as_str().unwrap() {
            "ServiceAccount" => create(&admin, erase::<ServiceAccount>(), ns, doc).await,
            "ClusterRole" => create(&admin, erase::<ClusterRole>(), None, doc).await,
            "ClusterRoleBinding" => create(&admin, erase::<ClusterRoleBinding>(), None, doc).await,
            "Role" => create(&admin, erase::<Role>(), ns, doc).await,
            "RoleBinding" => create(&admin, erase::<RoleBinding>(), ns, doc).await,
            _ => {}
        }
    }
    Some(Cluster { cp, chart })
}

pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `freshteam-operator simulate` process.
pub struct Simulator {
    pub child: tokio::process::Child,
    pub url: String,
}

impl Simulator {
    pub async fn start(employees: usize, latency_ms: u64) -> Simulator {
        Self::start_with(employees, latency_ms, 3).await
    }

    /// In its documented mode (the unfiltered list is current staff only).
    pub async fn start_with(employees: usize, latency_ms: u64, page_size: usize) -> Simulator {
        let port = free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_freshteam-operator"))
            .args(["simulate", "--port", &port.to_string()])
            .args(["--employees", &employees.to_string()])
            .args(["--page-size", &page_size.to_string()])
            .args(["--latency-ms", &latency_ms.to_string()])
            .env("SIM_API_KEY", API_KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("freshteam-operator simulate");
        let url = format!("http://127.0.0.1:{port}/api");
        eventually(Duration::from_secs(10), "the simulator", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        Simulator { child, url }
    }

    /// A call to the simulator's `/_sim` admin routes; the answer's status and body.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let base = self.url.trim_end_matches("/api");
        let mut req = reqwest::Client::new().request(method, format!("{base}/_sim/{path}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the simulator's admin route");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Changes fields of one employee (by Employee ID).
    pub async fn update_employee(&self, employee_id: &str, fields: Value) {
        let (status, body) = self
            .admin(
                reqwest::Method::PATCH,
                &format!("employees/{employee_id}"),
                Some(fields),
            )
            .await;
        assert_eq!(status, 200, "PATCH {employee_id}: {body}");
    }

    /// Every employee as the simulator holds them (leavers and drafts included).
    pub async fn employees(&self) -> Vec<Value> {
        let (status, body) = self.admin(reqwest::Method::GET, "employees", None).await;
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().unwrap_or_default()
    }
}

/// A `freshteam-operator run` process with the arguments of one of the chart's
/// Deployments, as the chart's ServiceAccount.
pub struct Operator {
    pub child: tokio::process::Child,
    pub identity: String,
    pub log: PathBuf,
}

impl Operator {
    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

pub struct Env {
    pub cluster: &'static Cluster,
    pub admin: Client,
    pub ns: String,
    pub sim: Simulator,
    pub scim: ScimServer,
    pub smtp: SmtpServer,
    pub operators: Vec<Operator>,
    pub _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Env {
    /// `None`: the suite is skipped (said why).
    pub async fn new(name: &str, employees: usize, latency_ms: u64) -> Option<Env> {
        Self::new_with(name, employees, latency_ms, 3).await
    }

    /// With the simulator's page size given.
    pub async fn new_with(
        name: &str,
        employees: usize,
        latency_ms: u64,
        page_size: usize,
    ) -> Option<Env> {
        let turn = TURN.lock().await;
        let cluster = CLUSTER.get_or_init(setup).await.as_ref()?;
        let admin = cluster.cp.admin().await;
        let ns = format!("e2e-{name}");
        Api::<Namespace>::all(admin.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
        // Leases of earlier tests' operators.
        let leases: Api<Lease> = Api::namespaced(admin.clone(), OPERATOR_NS);
        for l in leases.list(&ListParams::default()).await.unwrap() {
            let _ = leases.delete(&l.name_any(), &DeleteParams::default()).await;
        }
        let sim = Simulator::start_with(employees, latency_ms, page_size).await;
        let scim = ScimServer::start();
        let smtp = SmtpServer::start();
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
        for s in [
            crate::support::secret(&ns, "freshteam-acme", "apiKey", API_KEY),
            crate::support::secret(&ns, "members-scim", "token", &scim.token),
        ] {
            secrets.create(&PostParams::default(), &s).await.unwrap();
        }
        Some(Env {
            cluster,
            admin,
            ns,
            sim,
            scim,
            smtp,
            operators: Vec::new(),
            _turn: turn,
        })
    }

    /// The rendered Deployment's arguments for a shard ("default" or "s1").
    pub fn chart_args(&self, shard: &str) -> Vec<String> {
        let name = format!("{FULLNAME}-{shard}");
        let deployment = self
            .cluster
            .chart
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("the chart renders no Deployment {name}"));
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    }

    /// Starts a replica of a shard, as the chart runs it; `extra` replaces or adds flags.
    pub fn start_operator(&mut self, shard: &str, identity: &str, extra: &[&str]) -> usize {
        let mut args: Vec<String> = self
            .chart_args(shard)
            .into_iter()
            .filter(|a| !a.starts_with("--metrics-addr"))
            .filter(|a| {
                !extra
                    .iter()
                    .any(|e| a.split('=').next() == e.split('=').next())
            })
            .collect();
        args.push(format!("--metrics-addr=127.0.0.1:{}", free_port()));
        // What the chart's Deployment gets from the downward API and its values.
        args.push(format!("--identity={identity}"));
        args.push(format!("--lease-namespace={OPERATOR_NS}"));
        args.push(format!("--namespace={}", self.ns));
        args.push("--allow-custom-endpoints".into());
        for default in [
            format!("--smtp-url={}", self.smtp.url()),
            "--mail-from=rewards@example.com".into(),
        ] {
            let flag = default.split('=').next().unwrap_or_default().to_string();
            if !extra
                .iter()
                .any(|e| e.split('=').next() == Some(flag.as_str()))
            {
                args.push(default);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = self
            .cluster
            .cp
            .dir
            .join(format!("operator-{}-{identity}.log", self.ns));
        let file = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_freshteam-operator"))
            .args(&args)
            .env("KUBECONFIG", &self.cluster.cp.operator_kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("freshteam-operator run");
        self.operators.push(Operator {
            child,
            identity: identity.into(),
            log,
        });
        self.operators.len() - 1
    }

    pub fn logs(&self) -> String {
        self.operators
            .iter()
            .map(|o| format!("--- {} ---\n{}", o.identity, o.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn integrations(&self) -> Api<FreshteamIntegration> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    pub fn runs_api(&self) -> Api<ImportRun> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    pub fn manifest(&self, name: &str, published: bool, labels: &[(&str, &str)]) -> Value {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        json!({
            "apiVersion": "freshteam.provisioning.dev/v1alpha1",
            "kind": "FreshteamIntegration",
            "metadata": {"name": name, "namespace": self.ns, "labels": labels},
            "spec": {
                "published": published,
                "schedule": "weekly",
                "source": {
                    "subdomain": "acme",
                    "baseUrl": self.sim.url,
                    "apiKeySecretRef": {"name": "freshteam-acme", "key": "apiKey"},
                },
                "destination": {"scim": {
                    "url": self.scim.url,
                    "tokenSecretRef": {"name": "members-scim", "key": "token"},
                }},
                "mapping": {"email": "official_email", "firstName": "first_name", "lastName": "last_name"},
                "welcomeEmail": {"enabled": true, "loginUrl": "https://rewards.example.com/activate"},
            },
        })
    }

    /// Creates the manifest as sent (no client-side defaults or checks).
    pub async fn apply(&self, manifest: Value) -> Result<DynamicObject, kube::Error> {
        let ar = ApiResource::erase::<FreshteamIntegration>(&());
        let api: Api<DynamicObject> = Api::namespaced_with(self.admin.clone(), &self.ns, &ar);
        api.create(
            &PostParams::default(),
            &serde_json::from_value(manifest).unwrap(),
        )
        .await
    }

    pub async fn fti(&self, name: &str) -> FreshteamIntegration {
        self.integrations().get(name).await.unwrap()
    }

    pub async fn runs_of(&self, integration: &str) -> Vec<ImportRun> {
        let mut runs = self
            .runs_api()
            .list(&ListParams::default().labels(&format!("{INTEGRATION_LABEL}={integration}")))
            .await
            .unwrap()
            .items;
        runs.sort_by_key(|r| r.metadata.creation_timestamp.clone().map(|t| t.0));
        runs
    }

    pub async fn annotate(&self, name: &str, value: &str) {
        self.integrations()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {IMPORT_REQUESTED_AT: value}}})),
            )
            .await
            .unwrap();
    }

    pub async fn condition(&self, name: &str, type_: &str) -> Option<(String, String, String)> {
        let fti = self.integrations().get(name).await.ok()?;
        fti.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status, c.reason, c.message))
    }

    pub async fn wait_condition(&self, name: &str, type_: &str, status: &str, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self
                .condition(name, type_)
                .await
                .is_some_and(|c| c.0 == status)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{name}: {type_} is not {status} after {timeout:?}: {:?}\n{}",
            self.condition(name, type_).await,
            self.logs()
        );
    }

    /// Waits for the run handling request `value` of `name` to reach a final phase.
    pub async fn wait_run_done(&self, name: &str, timeout: Duration) -> ImportRun {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let runs = self.runs_of(name).await;
            if let Some(r) = runs.last() {
                if r.status.as_ref().is_some_and(|s| s.phase.is_final()) {
                    return r.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name}: no finished run after {timeout:?}\n{}", self.logs());
    }

    pub async fn wait_phase(&self, run: &str, phase: ImportPhase, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(r) = self.runs_api().get(run).await {
                if r.status.as_ref().is_some_and(|s| s.phase == phase) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "run {run} is not {phase:?} after {timeout:?}: {:?}\n{}",
            self.runs_api().get(run).await.ok().and_then(|r| r.status),
            self.logs()
        );
    }

    /// The first run of `name` once it is Running.
    pub async fn wait_running(&self, name: &str) -> String {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            let runs = self.runs_of(name).await;
            if let Some(r) = runs.iter().find(|r| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.phase == ImportPhase::Running)
            }) {
                return r.name_any();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name}: no run started\n{}", self.logs());
    }

    pub async fn lease_holder(&self, lease: &str) -> Option<String> {
        Api::<Lease>::namespaced(self.admin.clone(), OPERATOR_NS)
            .get_opt(lease)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
    }

    pub async fn wait_leader(&self, lease: &str, identity: &str, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.lease_holder(lease).await.as_deref() == Some(identity) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{identity} does not hold {lease} after {timeout:?} (holder {:?})\n{}",
            self.lease_holder(lease).await,
            self.logs()
        );
    }

    /// The reporting instances of the integration's Events with `reason`.
    pub async fn reporters(&self, name: &str, reason: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.admin.clone(), &self.ns);
        events
            .list(&ListParams::default().fields(&format!("regarding.name={name}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter_map(|e| e.reporting_instance)
            .collect()
    }

    pub async fn kubectl_freshteam(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-freshteam"))
            .args(args)
            .args(["-n", &self.ns])
            .arg("--kubeconfig")
            .arg(&self.cluster.cp.admin_kubeconfig)
            .output()
            .await
            .expect("kubectl-freshteam")
    }

    pub async fn finish(mut self) {
        for o in &mut self.operators {
            let _ = o.child.start_kill();
        }
        let _ = self.sim.child.start_kill();
        let _ = Api::<Namespace>::all(self.admin.clone())
            .delete(&self.ns, &DeleteParams::default())
            .await;
    }
}

pub fn message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}
