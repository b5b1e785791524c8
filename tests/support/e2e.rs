//! The end-to-end harness shared by the e2e suites (tests/e2e.rs, tests/e2e_leavers.rs):
//! a real control plane (etcd, kube-apiserver, kube-controller-manager built by
//! tests/cluster/build.sh) with the CRDs from crds/ and the chart's RBAC rendered with the
//! Helm SDK, the real `freshteam-operator run` as the chart runs it, the
//! `freshteam-simulator` Freshteam simulator, scim2-server and aiosmtpd.
//!
//! One control plane serves a whole suite (one per test binary); its tests take turns
//! (they share the operator's identity and the chart's Leases), each in its own namespace.
//! Without the control-plane binaries a suite skips, loudly, unless FRESHTEAM_E2E_REQUIRED
//! is set (CI sets it): then it builds them or fails. Without the test peers likewise,
//! unless FRESHTEAM_PEERS_REQUIRED is set (`support::require`).
//!
//! By default the operator runs with the chart's shared-cluster RBAC (`watch.scope:
//! namespaces` listing the test's namespace: Roles there, nothing cluster-wide); a test may
//! ask for `watch.scope: cluster` (the ClusterRole) instead with `Env::with_scope`.
//!
//! Included by each suite with `#[path = "support/e2e.rs"] mod harness;` beside
//! `mod support;`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::support::controlplane::{render_chart, ControlPlane};
use crate::support::smtp::SmtpServer;
use crate::support::{wait_until, Peer, ScimServer};

use freshteam_operator::api::IntegrationState;
use freshteam_operator::api::INTEGRATION_LABEL;
use freshteam_operator::api::{FreshteamIntegration, ImportPhase, ImportRun, IMPORT_REQUESTED_AT};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
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
    /// The chart's manifests as rendered for `watch.scope: cluster`.
    pub chart: Vec<Value>,
}

/// Where the operator's rights come from, as the chart renders them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `watch.scope: namespaces` listing the test's namespace: a Role and RoleBinding
    /// there, no ClusterRole; `WATCH_NAMESPACE` from the rendered Deployment. The default.
    Namespaces,
    /// `watch.scope: cluster`: the chart's ClusterRole and ClusterRoleBinding, every
    /// namespace watched.
    Cluster,
}

pub static CLUSTER: OnceCell<Option<Cluster>> = OnceCell::const_new();
/// The tests take turns: they share the operator identity and the chart's Leases.
pub static TURN: Mutex<()> = Mutex::const_new(());

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The chart rendered with the Helm SDK for `watch`: two shards (default and s1), short
/// Leases.
pub fn chart_for(watch: Value) -> Vec<Value> {
    let values = json!({
        "watch": watch,
        "sharding": {"shards": ["s1"]},
        "leaderElection": {"leaseSeconds": LEASE_SECONDS},
        "operator": {"shutdownGraceSeconds": 1},
    });
    render_chart(RELEASE, OPERATOR_NS, &values)
}

/// The operator's cluster-wide grant in a rendering: its ClusterRole and binding.
pub fn cluster_grant(chart: &[Value]) -> Vec<&Value> {
    chart
        .iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("ClusterRole" | "ClusterRoleBinding")
            )
        })
        .filter(|d| d["metadata"]["name"] == FULLNAME)
        .collect()
}

pub async fn setup() -> Option<Cluster> {
    // scim2-server, aiosmtpd and the Helm SDK (which renders the chart) are all in .venv;
    // the simulator's binary is built by `cargo test --workspace`.
    if crate::support::require::skip(&[
        crate::support::require::Needs::Scim2Server,
        crate::support::require::Needs::Aiosmtpd,
        crate::support::require::Needs::SimulatorBinary,
    ]) {
        return None;
    }
    let cp = ControlPlane::start(&format!("system:serviceaccount:{OPERATOR_NS}:{FULLNAME}"))?;
    let admin = cp.admin().await;
    // The CRDs as checked in, applied as a user would.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let text =
        std::fs::read_to_string(root().join("crds/freshteam.provisioning.dev.yaml")).unwrap();
    for doc in yaml_serde::Deserializer::from_str(&text) {
        let crd: CustomResourceDefinition = serde::Deserialize::deserialize(doc).expect("a CRD");
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("the server accepts the CRD");
    }
    for name in [
        "freshteamintegrations.freshteam.provisioning.dev",
        "importruns.freshteam.provisioning.dev",
        "integrationstates.freshteam.provisioning.dev",
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
    // The chart's identity, its Lease rights and the users' aggregated roles: what every
    // scope renders alike. The operator's own rules come with each test's scope.
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": OPERATOR_NS}})).unwrap(),
        )
        .await
        .unwrap();
    let chart = chart_for(json!({"scope": "cluster"}));
    let operators = cluster_grant(&chart);
    let common: Vec<&Value> = chart.iter().filter(|d| !operators.contains(d)).collect();
    cp.grant(&common).await;
    Some(Cluster { cp, chart })
}

pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let every = Duration::from_millis(100);
    let held = wait_until(timeout, every, || {
        let check = f();
        async move { check.await.then_some(()) }
    });
    if held.await.is_none() {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

pub use crate::support::free_port;

/// A `freshteam-simulator` process (the simulator's own binary).
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
        let child = tokio::process::Command::new(crate::support::simulator_binary())
            .args(["--port", &port.to_string()])
            .args(["--employees", &employees.to_string()])
            .args(["--page-size", &page_size.to_string()])
            .args(["--latency-ms", &latency_ms.to_string()])
            .env("SIM_API_KEY", API_KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("freshteam-simulator");
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

    /// The Employee IDs of current employees (active, neither terminated nor deleted).
    pub async fn current_ids(&self) -> Vec<String> {
        self.employees()
            .await
            .into_iter()
            .filter(|e| {
                e["status"] == "active" && e["terminated"] == false && e["deleted"] == false
            })
            .filter_map(|e| e["employee_id"].as_str().map(str::to_string))
            .collect()
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

    /// The log's JSON lines (the chart's format), each a flattened event with its
    /// `span`; other lines are left out.
    pub fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
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
    pub scope: Scope,
    /// The chart as rendered for this test's scope (Deployments give the operator's
    /// arguments and environment).
    pub chart: Vec<Value>,
    /// Namespaces the operator does not serve, made by the test.
    pub outside: Vec<String>,
    pub sim: Simulator,
    pub scim: ScimServer,
    pub smtp: SmtpServer,
    pub operators: Vec<Operator>,
    pub _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Env {
    /// A test in namespace `e2e-<name>`, the operator with the chart's namespaced RBAC.
    /// `None`: the suite is skipped (said why).
    pub async fn new(name: &str, employees: usize, latency_ms: u64) -> Option<Env> {
        Self::with_options(name, employees, latency_ms, 3, Scope::Namespaces).await
    }

    /// With the simulator's page size given.
    pub async fn new_with(
        name: &str,
        employees: usize,
        latency_ms: u64,
        page_size: usize,
    ) -> Option<Env> {
        Self::with_options(name, employees, latency_ms, page_size, Scope::Namespaces).await
    }

    /// With the operator's rights from `scope`.
    pub async fn with_scope(
        name: &str,
        employees: usize,
        latency_ms: u64,
        scope: Scope,
    ) -> Option<Env> {
        Self::with_options(name, employees, latency_ms, 3, scope).await
    }

    pub async fn with_options(
        name: &str,
        employees: usize,
        latency_ms: u64,
        page_size: usize,
        scope: Scope,
    ) -> Option<Env> {
        Self::open(
            name,
            employees,
            latency_ms,
            page_size,
            scope,
            Peer::Scim2Server,
        )
        .await
    }

    /// With `peer` as the destination (the namespaced RBAC, no latency).
    pub async fn with_peer(
        name: &str,
        employees: usize,
        page_size: usize,
        peer: Peer,
    ) -> Option<Env> {
        Self::open(name, employees, 0, page_size, Scope::Namespaces, peer).await
    }

    async fn open(
        name: &str,
        employees: usize,
        latency_ms: u64,
        page_size: usize,
        scope: Scope,
        peer: Peer,
    ) -> Option<Env> {
        let turn = TURN.lock().await;
        let cluster = CLUSTER.get_or_init(setup).await.as_ref()?;
        let admin = cluster.cp.admin().await;
        let ns = format!("e2e-{name}");
        // Rendered while the peers start (the Helm SDK takes most of a second).
        let rendering = {
            let watch = json!({"scope": "namespaces", "namespaces": [ns]});
            std::thread::spawn(move || (scope == Scope::Namespaces).then(|| chart_for(watch)))
        };
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
        let scim = ScimServer::start_peer(peer);
        let smtp = SmtpServer::start();
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
        for s in [
            crate::support::secret(&ns, "freshteam-acme", "apiKey", API_KEY),
            crate::support::secret(&ns, "members-scim", "token", &scim.token),
        ] {
            secrets.create(&PostParams::default(), &s).await.unwrap();
        }
        // The operator's rights: its scope's and no more (a cluster-wide grant an earlier
        // test left behind is taken back).
        let grant = cluster_grant(&cluster.chart);
        let chart = match rendering.join().expect("the chart renders") {
            Some(chart) => {
                cluster.cp.revoke(&grant).await;
                let roles: Vec<&Value> = chart
                    .iter()
                    .filter(|d| matches!(d["kind"].as_str(), Some("Role" | "RoleBinding")))
                    .filter(|d| d["metadata"]["namespace"] == ns.as_str())
                    .collect();
                assert_eq!(roles.len(), 2, "the chart's Role and RoleBinding in {ns}");
                cluster.cp.grant(&roles).await;
                chart
            }
            None => {
                cluster.cp.grant(&grant).await;
                cluster.chart.clone()
            }
        };
        Some(Env {
            cluster,
            admin,
            ns,
            scope,
            chart,
            outside: Vec::new(),
            sim,
            scim,
            smtp,
            operators: Vec::new(),
            _turn: turn,
        })
    }

    /// The rendered Deployment's container for a shard ("default" or "s1").
    pub fn chart_container(&self, shard: &str) -> &Value {
        let name = format!("{FULLNAME}-{shard}");
        let deployment = self
            .chart
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("the chart renders no Deployment {name}"));
        &deployment["spec"]["template"]["spec"]["containers"][0]
    }

    /// The rendered Deployment's arguments for a shard.
    pub fn chart_args(&self, shard: &str) -> Vec<String> {
        self.chart_container(shard)["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    }

    /// The namespaces the rendered Deployment watches (`WATCH_NAMESPACE`), if it limits them.
    pub fn chart_watch_namespace(&self, shard: &str) -> Option<String> {
        self.chart_env(shard, "WATCH_NAMESPACE")
    }

    /// A literal environment variable of the rendered Deployment.
    pub fn chart_env(&self, shard: &str, name: &str) -> Option<String> {
        self.chart_container(shard)["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().expect("a literal value").to_string())
    }

    /// Makes a namespace the operator does not serve, with Secrets like the test's own.
    pub async fn namespace_outside(&mut self, suffix: &str) -> String {
        let ns = format!("{}-{suffix}", self.ns);
        Api::<Namespace>::all(self.admin.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
        let secrets: Api<Secret> = Api::namespaced(self.admin.clone(), &ns);
        for s in [
            crate::support::secret(&ns, "freshteam-acme", "apiKey", API_KEY),
            crate::support::secret(&ns, "members-scim", "token", &self.scim.token),
        ] {
            secrets.create(&PostParams::default(), &s).await.unwrap();
        }
        self.outside.push(ns.clone());
        ns
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
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_freshteam-operator"));
        match self.chart_watch_namespace(shard) {
            Some(watched) => command.env("WATCH_NAMESPACE", watched),
            None => command.env_remove("WATCH_NAMESPACE"),
        };
        // The chart's log format (JSON by default), at the chart's level.
        let log_format = self
            .chart_env(shard, "LOG_FORMAT")
            .expect("the chart sets LOG_FORMAT");
        let child = command
            .args(&args)
            .env("KUBECONFIG", &self.cluster.cp.operator_kubeconfig)
            .env("LOG_FORMAT", log_format)
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

    pub fn states(&self) -> Api<IntegrationState> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    pub fn runs_api(&self) -> Api<ImportRun> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    /// The test's integration as a user applies it (the shared builder's JSON form):
    /// weekly, e-mail and names mapped, invitations on.
    pub fn manifest(&self, name: &str, published: bool, labels: &[(&str, &str)]) -> Value {
        crate::support::integration(&self.ns, name)
            .reading(&self.sim.url)
            .writing_to(&self.scim.url)
            .labels(labels)
            .spec(|s| {
                s.published = published;
                s.schedule = "weekly".into();
                // These three only (the default mapping also maps the title and department).
                s.mapping = serde_json::from_value(serde_json::json!({
                    "email": "official_email", "firstName": "first_name", "lastName": "last_name",
                }))
                .unwrap();
                s.welcome_email.enabled = true;
                s.welcome_email.login_url = Some("https://rewards.example.com/activate".into());
            })
            .user_json()
    }

    /// Creates the manifest as sent (no client-side defaults or checks), in its namespace.
    pub async fn apply(&self, manifest: Value) -> Result<DynamicObject, kube::Error> {
        let ar = ApiResource::erase::<FreshteamIntegration>(&());
        let ns = manifest["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&self.ns);
        let api: Api<DynamicObject> = Api::namespaced_with(self.admin.clone(), ns, &ar);
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
        self.annotate_with(name, IMPORT_REQUESTED_AT, value).await;
    }

    pub async fn annotate_with(&self, name: &str, key: &str, value: &str) {
        self.integrations()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
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
        let every = Duration::from_millis(100);
        let held = wait_until(timeout, every, || async {
            let c = self.condition(name, type_).await;
            c.is_some_and(|c| c.0 == status).then_some(())
        });
        if held.await.is_some() {
            return;
        }
        panic!(
            "{name}: {type_} is not {status} after {timeout:?}: {:?}\n{}",
            self.condition(name, type_).await,
            self.logs()
        );
    }

    /// Waits for the run handling request `value` of `name` to reach a final phase.
    pub async fn wait_run_done(&self, name: &str, timeout: Duration) -> ImportRun {
        let every = Duration::from_millis(100);
        let done = wait_until(timeout, every, || async {
            let runs = self.runs_of(name).await;
            let last = runs.last()?;
            last.status.as_ref()?.phase.is_final().then(|| last.clone())
        });
        if let Some(run) = done.await {
            return run;
        }
        panic!("{name}: no finished run after {timeout:?}\n{}", self.logs());
    }

    pub async fn wait_phase(&self, run: &str, phase: ImportPhase, timeout: Duration) {
        let every = Duration::from_millis(50);
        let held = wait_until(timeout, every, || async {
            let r = self.runs_api().get(run).await.ok()?;
            r.status.is_some_and(|s| s.phase == phase).then_some(())
        });
        if held.await.is_some() {
            return;
        }
        panic!(
            "run {run} is not {phase:?} after {timeout:?}: {:?}\n{}",
            self.runs_api().get(run).await.ok().and_then(|r| r.status),
            self.logs()
        );
    }

    /// The first run of `name` once it is Running.
    pub async fn wait_running(&self, name: &str) -> String {
        let (timeout, every) = (Duration::from_secs(60), Duration::from_millis(50));
        let running = wait_until(timeout, every, || async {
            let runs = self.runs_of(name).await;
            let running = |r: &&ImportRun| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.phase == ImportPhase::Running)
            };
            runs.iter().find(running).map(|r| r.name_any())
        });
        if let Some(run) = running.await {
            return run;
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
        let every = Duration::from_millis(100);
        let held = wait_until(timeout, every, || async {
            (self.lease_holder(lease).await.as_deref() == Some(identity)).then_some(())
        });
        if held.await.is_some() {
            return;
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

    /// `kubectl` (built beside the control plane) as the admin; its stdout, or a panic
    /// with its stderr.
    pub async fn kubectl(&self, args: &[&str]) -> String {
        let bin = std::process::Command::new(root().join("tests/cluster/build.sh"))
            .arg("--cached")
            .output()
            .expect("tests/cluster/build.sh --cached");
        let dir = String::from_utf8_lossy(&bin.stdout).trim().to_string();
        let out = tokio::process::Command::new(PathBuf::from(dir).join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.cluster.cp.admin_kubeconfig)
            .args(args)
            .output()
            .await
            .expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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
        if self.scope == Scope::Cluster {
            self.cluster
                .cp
                .revoke(&cluster_grant(&self.cluster.chart))
                .await;
        }
        for ns in std::iter::once(&self.ns).chain(&self.outside) {
            let _ = Api::<Namespace>::all(self.admin.clone())
                .delete(ns, &DeleteParams::default())
                .await;
        }
    }
}

pub fn message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}
