//! End to end against a real control plane (etcd, kube-apiserver, kube-controller-manager
//! built by tests/cluster/build.sh): the CRDs from crds/, the chart's RBAC rendered with the
//! Helm SDK, the real `freshteam-operator run` and `kubectl-freshteam` binaries, the
//! `freshteam-operator simulate` Freshteam simulator, scim2-server and aiosmtpd.
//!
//! One control plane serves the whole suite; the tests take turns (they share the
//! operator's identity and the chart's Leases), each in its own namespace. By default the
//! operator runs with the chart's shared-cluster RBAC (`watch.scope: namespaces` listing
//! the test's namespace: Roles there, nothing cluster-wide); a test may ask for
//! `watch.scope: cluster` (the ClusterRole) instead.
//! Without the control-plane binaries the suite skips, loudly, unless
//! FRESHTEAM_E2E_REQUIRED is set (CI sets it): then it builds them or fails.

mod support;
mod support_smtp;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use freshteam_operator::api::{FreshteamIntegration, ImportPhase, ImportRun, IMPORT_REQUESTED_AT};
use freshteam_operator::api::{IntegrationState, StateKind};
use freshteam_operator::controller::INTEGRATION_LABEL;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use support::controlplane::{render_chart, ControlPlane};
use support::ScimServer;
use support_smtp::SmtpServer;
use tokio::sync::{Mutex, OnceCell};

const RELEASE: &str = "fto";
const OPERATOR_NS: &str = "freshteam-system";
const FULLNAME: &str = "fto-freshteam-operator";
const LEASE_SECONDS: u64 = 6;
const API_KEY: &str = "ft-e2e-7c1a";
const SHARD_LABEL: &str = "sharding.freshteam.provisioning.dev/key";

struct Cluster {
    cp: ControlPlane,
    /// The chart's manifests as rendered for `watch.scope: cluster`.
    chart: Vec<Value>,
}

/// Where the operator's rights come from, as the chart renders them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// `watch.scope: namespaces` listing the test's namespace: a Role and RoleBinding
    /// there, no ClusterRole; `WATCH_NAMESPACE` from the rendered Deployment. The default.
    Namespaces,
    /// `watch.scope: cluster`: the chart's ClusterRole and ClusterRoleBinding, every
    /// namespace watched.
    Cluster,
}

static CLUSTER: OnceCell<Option<Cluster>> = OnceCell::const_new();
/// The tests take turns: they share the operator identity and the chart's Leases.
static TURN: Mutex<()> = Mutex::const_new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The chart rendered with the Helm SDK for `watch`: two shards (default and s1), short
/// Leases.
fn chart_for(watch: Value) -> Vec<Value> {
    let values = json!({
        "watch": watch,
        "sharding": {"shards": ["s1"]},
        "leaderElection": {"leaseSeconds": LEASE_SECONDS},
        "operator": {"shutdownGraceSeconds": 1},
    });
    render_chart(RELEASE, OPERATOR_NS, &values)
}

/// The operator's cluster-wide grant in a rendering: its ClusterRole and binding.
fn cluster_grant(chart: &[Value]) -> Vec<&Value> {
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

async fn setup() -> Option<Cluster> {
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

async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `freshteam-operator simulate` process.
struct Simulator {
    child: tokio::process::Child,
    url: String,
}

impl Simulator {
    async fn start(employees: usize, latency_ms: u64) -> Simulator {
        let port = free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_freshteam-operator"))
            .args(["simulate", "--port", &port.to_string()])
            .args(["--employees", &employees.to_string(), "--page-size", "3"])
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
}

/// A `freshteam-operator run` process with the arguments of one of the chart's
/// Deployments, as the chart's ServiceAccount.
struct Operator {
    child: tokio::process::Child,
    identity: String,
    log: PathBuf,
}

impl Operator {
    fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

struct Env {
    cluster: &'static Cluster,
    admin: Client,
    ns: String,
    scope: Scope,
    /// The chart as rendered for this test's scope (Deployments give the operator's
    /// arguments and environment).
    chart: Vec<Value>,
    /// Namespaces the operator does not serve, made by the test.
    outside: Vec<String>,
    sim: Simulator,
    scim: ScimServer,
    smtp: SmtpServer,
    operators: Vec<Operator>,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Env {
    /// A test in namespace `e2e-<name>`, the operator with the chart's namespaced RBAC.
    /// `None`: the suite is skipped (said why).
    async fn new(name: &str, employees: usize, latency_ms: u64) -> Option<Env> {
        Self::with_scope(name, employees, latency_ms, Scope::Namespaces).await
    }

    async fn with_scope(
        name: &str,
        employees: usize,
        latency_ms: u64,
        scope: Scope,
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
        let sim = Simulator::start(employees, latency_ms).await;
        let scim = ScimServer::start();
        let smtp = SmtpServer::start();
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
        for s in [
            support::secret(&ns, "freshteam-acme", "apiKey", API_KEY),
            support::secret(&ns, "members-scim", "token", &scim.token),
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
    fn chart_container(&self, shard: &str) -> &Value {
        let name = format!("{FULLNAME}-{shard}");
        let deployment = self
            .chart
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("the chart renders no Deployment {name}"));
        &deployment["spec"]["template"]["spec"]["containers"][0]
    }

    /// The rendered Deployment's arguments for a shard.
    fn chart_args(&self, shard: &str) -> Vec<String> {
        self.chart_container(shard)["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    }

    /// The namespaces the rendered Deployment watches (`WATCH_NAMESPACE`), if it limits them.
    fn chart_watch_namespace(&self, shard: &str) -> Option<String> {
        self.chart_container(shard)["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == "WATCH_NAMESPACE")
            .map(|e| e["value"].as_str().expect("a literal value").to_string())
    }

    /// Makes a namespace the operator does not serve, with Secrets like the test's own.
    async fn namespace_outside(&mut self, suffix: &str) -> String {
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
            support::secret(&ns, "freshteam-acme", "apiKey", API_KEY),
            support::secret(&ns, "members-scim", "token", &self.scim.token),
        ] {
            secrets.create(&PostParams::default(), &s).await.unwrap();
        }
        self.outside.push(ns.clone());
        ns
    }

    /// Starts a replica of a shard, as the chart runs it; `extra` replaces or adds flags.
    fn start_operator(&mut self, shard: &str, identity: &str, extra: &[&str]) -> usize {
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
        args.push(format!("--smtp-url={}", self.smtp.url()));
        args.push("--mail-from=rewards@example.com".into());
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
        let child = command
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

    fn logs(&self) -> String {
        self.operators
            .iter()
            .map(|o| format!("--- {} ---\n{}", o.identity, o.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn integrations(&self) -> Api<FreshteamIntegration> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    fn states(&self) -> Api<IntegrationState> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    fn runs_api(&self) -> Api<ImportRun> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    fn manifest(&self, name: &str, published: bool, labels: &[(&str, &str)]) -> Value {
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

    /// Creates the manifest as sent (no client-side defaults or checks), in its namespace.
    async fn apply(&self, manifest: Value) -> Result<DynamicObject, kube::Error> {
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

    async fn fti(&self, name: &str) -> FreshteamIntegration {
        self.integrations().get(name).await.unwrap()
    }

    async fn runs_of(&self, integration: &str) -> Vec<ImportRun> {
        let mut runs = self
            .runs_api()
            .list(&ListParams::default().labels(&format!("{INTEGRATION_LABEL}={integration}")))
            .await
            .unwrap()
            .items;
        runs.sort_by_key(|r| r.metadata.creation_timestamp.clone().map(|t| t.0));
        runs
    }

    async fn annotate(&self, name: &str, value: &str) {
        self.integrations()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {IMPORT_REQUESTED_AT: value}}})),
            )
            .await
            .unwrap();
    }

    async fn condition(&self, name: &str, type_: &str) -> Option<(String, String, String)> {
        let fti = self.integrations().get(name).await.ok()?;
        fti.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status, c.reason, c.message))
    }

    async fn wait_condition(&self, name: &str, type_: &str, status: &str, timeout: Duration) {
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
    async fn wait_run_done(&self, name: &str, timeout: Duration) -> ImportRun {
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

    async fn wait_phase(&self, run: &str, phase: ImportPhase, timeout: Duration) {
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
    async fn wait_running(&self, name: &str) -> String {
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

    async fn lease_holder(&self, lease: &str) -> Option<String> {
        Api::<Lease>::namespaced(self.admin.clone(), OPERATOR_NS)
            .get_opt(lease)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
    }

    async fn wait_leader(&self, lease: &str, identity: &str, timeout: Duration) {
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
    async fn reporters(&self, name: &str, reason: &str) -> Vec<String> {
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

    async fn kubectl_freshteam(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-freshteam"))
            .args(args)
            .args(["-n", &self.ns])
            .arg("--kubeconfig")
            .arg(&self.cluster.cp.admin_kubeconfig)
            .output()
            .await
            .expect("kubectl-freshteam")
    }

    async fn finish(mut self) {
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

fn message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn the_server_applies_the_crds_and_refuses_bad_manifests_with_a_clear_message() {
    let Some(env) = Env::new("admission", 3, 0).await else {
        return;
    };
    env.apply(env.manifest("good", false, &[]))
        .await
        .expect("a valid integration is accepted");

    let mut no_email = env.manifest("no-email", false, &[]);
    no_email["spec"]["mapping"] = json!({"firstName": "first_name"});
    let e = message(env.apply(no_email).await.unwrap_err());
    assert!(e.starts_with("422 Invalid"), "{e}");
    assert!(
        e.contains("spec.mapping: Invalid value")
            && e.contains("mapping.email is required: every member needs an e-mail address"),
        "{e}"
    );

    let mut bad_subdomain = env.manifest("bad-subdomain", false, &[]);
    bad_subdomain["spec"]["source"]["subdomain"] = json!("Acme_Corp");
    let e = message(env.apply(bad_subdomain).await.unwrap_err());
    assert!(
        e.contains("spec.source.subdomain")
            && e.contains("subdomain must be a DNS label such as 'acme'"),
        "{e}"
    );

    let mut not_a_bool = env.manifest("not-a-bool", false, &[]);
    not_a_bool["spec"]["published"] = json!("yes");
    let e = message(env.apply(not_a_bool).await.unwrap_err());
    assert!(
        e.contains("spec.published") && e.contains("must be of type boolean"),
        "{e}"
    );
    env.finish().await;
}

#[tokio::test]
async fn the_operator_with_the_charts_rbac_imports_follows_watches_and_cannot_write_secrets() {
    let Some(mut env) = Env::new("rbac", 12, 0).await else {
        return;
    };
    // A tenant the operator does not serve (not in watch.namespaces).
    let outside = env.namespace_outside("outside").await;
    let mut elsewhere = env.manifest("acme", true, &[]);
    elsewhere["metadata"]["namespace"] = json!(outside);
    env.apply(elsewhere).await.unwrap();
    env.start_operator("default", "default-0", &[]);
    env.wait_leader(FULLNAME, "default-0", Duration::from_secs(30))
        .await;
    env.apply(env.manifest("acme", true, &[])).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(30))
        .await;
    let (_, reason, msg) = env.condition("acme", "Authorized").await.unwrap();
    assert_eq!(
        (reason.as_str(), msg.as_str()),
        ("Connected", "Connected to 127.0.0.1 (12 employees)")
    );

    // An unpublished integration: a preview per generation, each with its own counts
    // (the destination is empty: all 12 would be created).
    env.apply(env.manifest("beta", false, &[])).await.unwrap();
    for generation in 1..=3 {
        if generation > 1 {
            env.integrations()
                .patch(
                    "beta",
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"spec": {"safety": {"maxLeaversPercent": 10 + generation}}}),
                    ),
                )
                .await
                .unwrap();
        }
        eventually(Duration::from_secs(60), "beta's preview", || async {
            env.fti("beta")
                .await
                .status
                .and_then(|s| s.preview)
                .is_some_and(|p| p.generation == Some(generation) && p.computed_at.is_some())
        })
        .await;
        let preview = env.fti("beta").await.status.unwrap().preview.unwrap();
        assert_eq!(
            (preview.would_create, preview.phase),
            (Some(12), Some(ImportPhase::Succeeded)),
            "generation {generation}: {preview:?}"
        );
    }
    assert_eq!(
        env.runs_of("beta").await.len(),
        3,
        "one preview per generation"
    );
    assert!(env.scim.users().await.is_empty(), "a preview wrote members");

    // import-now: requests a run and follows it to its end.
    let out = env
        .kubectl_freshteam(&["import-now", "acme", "--timeout", "90s"])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "import-now: {:?}\n{stdout}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        env.logs()
    );
    assert!(stdout.contains("Succeeded"), "{stdout}");
    let runs = env.runs_of("acme").await;
    assert_eq!(runs.len(), 1, "one run per request");
    assert_eq!(runs[0].status.as_ref().unwrap().summary.created, 12);
    assert_eq!(env.scim.users().await.len(), 12);
    assert_eq!(env.smtp.wait_for(12, Duration::from_secs(20)).len(), 12);
    // The state, under the Role alone: IntegrationStates the integration owns.
    for (name, kind) in [
        ("acme-ledger", StateKind::Ledger),
        ("acme-invitations", StateKind::Invitations),
    ] {
        let state = env
            .states()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", env.logs()));
        assert_eq!((state.spec.state, state.spec.entry_count), (kind, 12));
        assert_eq!(state.owner_references()[0].name, "acme");
    }

    // The annotation: exactly one run more, however many reconciles follow.
    env.annotate("acme", "second").await;
    eventually(Duration::from_secs(30), "the annotated run", || async {
        env.runs_of("acme").await.len() == 2
    })
    .await;
    let run = env.wait_run_done("acme", Duration::from_secs(60)).await;
    assert_eq!(run.status.unwrap().phase, ImportPhase::Succeeded);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.runs_of("acme").await.len(), 2);
    assert_eq!(
        env.fti("acme")
            .await
            .status
            .unwrap()
            .last_handled_import_request
            .as_deref(),
        Some("second")
    );

    // Editing the referenced Secret re-authorizes at once (its watch, not the 5-minute retry).
    let secrets: Api<Secret> = Api::namespaced(env.admin.clone(), &env.ns);
    secrets
        .replace(
            "freshteam-acme",
            &PostParams::default(),
            &support::secret(&env.ns, "freshteam-acme", "apiKey", "revoked-key"),
        )
        .await
        .unwrap();
    env.wait_condition("acme", "Authorized", "False", Duration::from_secs(20))
        .await;
    assert_eq!(
        env.condition("acme", "Authorized").await.unwrap().1,
        "InvalidCredentials"
    );
    secrets
        .replace(
            "freshteam-acme",
            &PostParams::default(),
            &support::secret(&env.ns, "freshteam-acme", "apiKey", API_KEY),
        )
        .await
        .unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(20))
        .await;

    // What the chart does not grant is refused by the server.
    let as_operator: Api<Secret> = Api::namespaced(env.cluster.cp.operator().await, &env.ns);
    let e = as_operator
        .replace(
            "members-scim",
            &PostParams::default(),
            &support::secret(&env.ns, "members-scim", "token", "stolen"),
        )
        .await
        .unwrap_err();
    let e = message(e);
    assert!(e.starts_with("403 Forbidden"), "{e}");
    assert!(e.contains("cannot update resource \"secrets\""), "{e}");
    let e = message(
        as_operator
            .delete("members-scim", &DeleteParams::default())
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    assert!(e.starts_with("403 Forbidden"), "{e}");
    // ConfigMaps are created (run reports), never updated.
    let operator = env.cluster.cp.operator().await;
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "acme-ledger"}})).unwrap();
    let e = message(
        Api::<ConfigMap>::namespaced(operator.clone(), &env.ns)
            .replace("acme-ledger", &PostParams::default(), &cm)
            .await
            .unwrap_err(),
    );
    assert!(e.contains("cannot update resource \"configmaps\""), "{e}");

    // Outside the listed namespaces: nothing is reachable, nothing cluster-wide either,
    // and the integration there was never touched.
    for e in [
        Api::<Secret>::namespaced(operator.clone(), &outside)
            .list(&ListParams::default())
            .await
            .map(|_| ())
            .unwrap_err(),
        Api::<IntegrationState>::namespaced(operator.clone(), &outside)
            .get("acme-ledger")
            .await
            .map(|_| ())
            .unwrap_err(),
        Api::<FreshteamIntegration>::namespaced(operator.clone(), &outside)
            .list(&ListParams::default())
            .await
            .map(|_| ())
            .unwrap_err(),
        Api::<FreshteamIntegration>::all(operator.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        let e = message(e);
        assert!(e.starts_with("403 Forbidden"), "{e}");
    }
    let ignored = Api::<FreshteamIntegration>::namespaced(env.admin.clone(), &outside)
        .get("acme")
        .await
        .unwrap();
    assert_eq!(ignored.status, None, "the operator served {outside}");
    let runs = Api::<ImportRun>::namespaced(env.admin.clone(), &outside)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(runs.items.is_empty(), "a run in {outside}");
    env.finish().await;
}

#[tokio::test]
async fn two_replicas_one_leads_and_a_killed_leader_hands_over_within_the_lease() {
    let Some(mut env) = Env::new("replicas", 30, 150).await else {
        return;
    };
    let first = env.start_operator("default", "replica-a", &[]);
    env.wait_leader(FULLNAME, "replica-a", Duration::from_secs(30))
        .await;
    env.start_operator("default", "replica-b", &[]);
    env.apply(env.manifest("acme", true, &[])).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(30))
        .await;
    env.annotate("acme", "first").await;
    let orphan = env.wait_running("acme").await;
    assert_eq!(
        env.lease_holder(FULLNAME).await.as_deref(),
        Some("replica-a")
    );

    env.operators[first].signal("KILL");
    let killed = Instant::now();
    env.wait_leader(
        FULLNAME,
        "replica-b",
        Duration::from_secs(LEASE_SECONDS * 3),
    )
    .await;
    let handover = killed.elapsed();
    assert!(
        handover <= Duration::from_secs(LEASE_SECONDS + 3),
        "hand-over took {handover:?} with a {LEASE_SECONDS}s Lease"
    );
    eprintln!("hand-over after the leader was killed: {handover:?}");
    env.wait_phase(&orphan, ImportPhase::Interrupted, Duration::from_secs(20))
        .await;
    // The new leader does not run the handled request again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.runs_of("acme").await.len(),
        1,
        "a run was started twice"
    );

    env.annotate("acme", "after-failover").await;
    eventually(Duration::from_secs(30), "the next run", || async {
        env.runs_of("acme").await.len() == 2
    })
    .await;
    let next = env.wait_run_done("acme", Duration::from_secs(90)).await;
    assert_eq!(next.status.unwrap().phase, ImportPhase::Succeeded);
    let users = env.scim.users().await;
    let ids: HashSet<&str> = users
        .iter()
        .filter_map(|u| u["externalId"].as_str())
        .collect();
    assert_eq!(
        (users.len(), ids.len()),
        (30, 30),
        "converged, no duplicates"
    );
    assert_eq!(
        env.reporters("acme", "ImportStarted").await,
        vec!["replica-a".to_string(), "replica-b".to_string()],
        "each run started once, by the leader of its time"
    );
    env.finish().await;
}

#[tokio::test]
async fn two_shards_each_reconcile_their_own_and_a_moved_integration_runs_once() {
    let Some(mut env) = Env::new("shards", 30, 300).await else {
        return;
    };
    env.start_operator("s1", "s1-0", &[]);
    env.wait_leader(&format!("{FULLNAME}-s1"), "s1-0", Duration::from_secs(30))
        .await;
    env.apply(env.manifest("unlabelled", true, &[]))
        .await
        .unwrap();
    env.apply(env.manifest("labelled", true, &[(SHARD_LABEL, "s1")]))
        .await
        .unwrap();
    env.wait_condition("labelled", "Authorized", "True", Duration::from_secs(30))
        .await;
    env.annotate("labelled", "go").await;
    let running = env.wait_running("labelled").await;
    assert!(
        env.fti("unlabelled").await.status.is_none(),
        "shard s1 touched the default shard's integration"
    );

    // Starting the default shard (which marks its own shard's orphans Interrupted before
    // it reconciles anything) leaves s1's running import alone.
    env.start_operator("default", "default-0", &[]);
    let mut seen = Vec::new();
    let mut default_ready_during_the_run = false;
    let start = Instant::now();
    loop {
        let phase = env
            .runs_api()
            .get(&running)
            .await
            .unwrap()
            .status
            .unwrap()
            .phase;
        if seen.last() != Some(&phase) {
            seen.push(phase);
        }
        let ready = env
            .condition("unlabelled", "Authorized")
            .await
            .is_some_and(|c| c.0 == "True");
        default_ready_during_the_run |= ready && phase == ImportPhase::Running;
        if (phase.is_final() && ready) || start.elapsed() > Duration::from_secs(90) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen,
        vec![ImportPhase::Running, ImportPhase::Succeeded],
        "the other shard touched the running import\n{}",
        env.logs()
    );
    assert!(
        default_ready_during_the_run,
        "the import ended before the default shard started: {seen:?}"
    );

    // Moving the label moves the integration: one run per request, by its new shard.
    env.integrations()
        .patch(
            "unlabelled",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {SHARD_LABEL: "s1"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.annotate("unlabelled", "moved").await;
    let run = env
        .wait_run_done("unlabelled", Duration::from_secs(90))
        .await;
    assert_eq!(run.status.unwrap().phase, ImportPhase::Succeeded);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.runs_of("unlabelled").await.len(), 1);
    assert_eq!(
        env.reporters("unlabelled", "ImportStarted").await,
        vec!["s1-0"]
    );
    assert_eq!(
        env.reporters("labelled", "ImportStarted").await,
        vec!["s1-0"]
    );
    env.finish().await;
}

#[tokio::test]
async fn one_import_at_a_time_per_freshteam_account_with_max_imports_per_account_1() {
    // The chart's cluster-scope RBAC (a ClusterRole, every namespace watched).
    let Some(mut env) = Env::with_scope("limits", 15, 100, Scope::Cluster).await else {
        return;
    };
    assert_eq!(env.chart_watch_namespace("default"), None);
    env.start_operator("default", "default-0", &["--max-imports-per-account=1"]);
    for name in ["one", "two"] {
        env.apply(env.manifest(name, true, &[])).await.unwrap();
    }
    for name in ["one", "two"] {
        env.wait_condition(name, "Authorized", "True", Duration::from_secs(30))
            .await;
    }
    env.annotate("one", "now").await;
    env.annotate("two", "now").await;
    let start = Instant::now();
    let mut finished = 0;
    while start.elapsed() < Duration::from_secs(120) && finished < 2 {
        let runs = env
            .runs_api()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let phases: Vec<ImportPhase> = runs
            .iter()
            .map(|r| r.status.as_ref().map(|s| s.phase).unwrap_or_default())
            .collect();
        let running = phases
            .iter()
            .filter(|p| **p == ImportPhase::Running)
            .count();
        assert!(
            running <= 1,
            "two imports of one account at once: {phases:?}"
        );
        finished = phases
            .iter()
            .filter(|p| **p == ImportPhase::Succeeded)
            .count();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(finished, 2, "{}", env.logs());
    // The second integration adopted the first one's members: both ledgers hold all 15.
    for name in ["one-ledger", "two-ledger"] {
        let state = env.states().get(name).await.unwrap();
        assert_eq!(state.spec.entry_count, 15, "{name}");
    }
    env.finish().await;
}

#[tokio::test]
async fn deleting_the_integration_garbage_collects_its_runs_reports_and_state() {
    let Some(mut env) = Env::new("gc", 6, 0).await else {
        return;
    };
    env.start_operator("default", "default-0", &[]);
    // Every record is an error row (first names are no e-mail addresses): a report.
    let mut manifest = env.manifest("acme", true, &[]);
    manifest["spec"]["mapping"]["email"] = json!("first_name");
    env.apply(manifest).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(30))
        .await;
    env.annotate("acme", "now").await;
    let run = env.wait_run_done("acme", Duration::from_secs(60)).await;
    // Another that imports everyone: a ledger and an outbox.
    env.apply(env.manifest("beta", true, &[])).await.unwrap();
    env.wait_condition("beta", "Authorized", "True", Duration::from_secs(30))
        .await;
    env.annotate("beta", "now").await;
    let beta = env.wait_run_done("beta", Duration::from_secs(60)).await;
    assert_eq!(beta.status.unwrap().summary.created, 6, "{}", env.logs());
    let states = env.states().list(&ListParams::default()).await.unwrap();
    for state in &states {
        assert_eq!(state.owner_references()[0].name, state.spec.integration);
    }
    let names: Vec<String> = states.iter().map(|s| s.name_any()).collect();
    for name in ["beta-ledger", "beta-invitations"] {
        assert!(names.iter().any(|n| n == name), "{names:?}");
    }
    let report = run
        .status
        .as_ref()
        .and_then(|s| s.error_report.clone())
        .unwrap_or_else(|| panic!("no report: {:?}", run.status));
    let configmaps: Api<ConfigMap> = Api::namespaced(env.admin.clone(), &env.ns);
    assert!(configmaps
        .get(&report.config_map_name)
        .await
        .unwrap()
        .data
        .unwrap()["errors.csv"]
        .contains("email"));

    for name in ["acme", "beta"] {
        env.integrations()
            .delete(name, &DeleteParams::background())
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(60), "garbage collection", || async {
        env.runs_api()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
            && env
                .states()
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
            && configmaps
                .get_opt(&report.config_map_name)
                .await
                .unwrap()
                .is_none()
    })
    .await;
    env.finish().await;
}

#[tokio::test]
async fn sigterm_during_an_import_records_it_as_interrupted_and_releases_the_lease() {
    let Some(mut env) = Env::new("sigterm", 30, 150).await else {
        return;
    };
    let op = env.start_operator("default", "default-0", &[]);
    env.wait_leader(FULLNAME, "default-0", Duration::from_secs(30))
        .await;
    env.apply(env.manifest("acme", true, &[])).await.unwrap();
    env.wait_condition("acme", "Authorized", "True", Duration::from_secs(30))
        .await;
    env.annotate("acme", "now").await;
    let run = env.wait_running("acme").await;
    env.operators[op].signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), env.operators[op].child.wait())
        .await
        .expect("the operator exits after its grace period")
        .unwrap();
    assert!(status.success(), "{status:?}\n{}", env.logs());
    let r = env.runs_api().get(&run).await.unwrap();
    assert_eq!(
        r.status.as_ref().map(|s| s.phase),
        Some(ImportPhase::Interrupted),
        "{}",
        env.logs()
    );
    assert_eq!(
        env.fti("acme")
            .await
            .status
            .unwrap()
            .last_import
            .unwrap()
            .phase,
        ImportPhase::Interrupted
    );
    assert_eq!(
        env.lease_holder(FULLNAME).await,
        None,
        "the Lease was not released"
    );
    env.finish().await;
}
