//! Memory and CPU of the real `freshteam-operator run` serving many integrations, against
//! a real Kubernetes API server (etcd + kube-apiserver) and the Freshteam simulator (the
//! `freshteam-simulator` crate, in this process).
//!
//!     cargo bench --bench reconcile_scale -- 1000 5000 10000
//!
//! The control plane is the e2e suite's (`tests/cluster/start.sh`, or the script named by
//! `FRESHTEAM_CP_START`); the operator runs as its admin. For each size it creates the missing
//! integrations (published, weekly, 50 namespaces, one Secret each), starts a fresh
//! operator, waits until every integration is `Authorized`, and prints RSS after
//! settling, peak RSS, CPU to settle and idle CPU over 60 s. Integrations created for a
//! smaller size stay, so each larger size is also a restart over already-authorized ones.
//!
//! Environment: `BENCH_IDLE_SECONDS` (60), `BENCH_AUTH_RATE` (authorizations per second
//! given to the operator, 200), `BENCH_OPERATOR_ARGS` (more flags), `BENCH_HEAP_PROFILE`
//! (with `--features dhat-heap`: the operator writes its live heap by allocation site once
//! settled, as `target/reconcile-scale/dhat-heap-<N>.json`). Logs of every process are
//! in `target/reconcile-scale/`.

#[path = "../tests/support/net.rs"]
mod net;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use freshteam_operator::api::*;
use freshteam_simulator::{SimConfig, Simulator};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::ByteString;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use net::free_port;

const NAMESPACES: usize = 50;
const API_KEY: &str = "bench-api-key";

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(what: &'static str, cmd: &mut Command, log: &Path) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let child = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
    Proc(child)
}

/// The real control plane, started by the e2e suite's script (`tests/cluster/start.sh`,
/// which builds it from the Go modules on first use); stopped when dropped.
struct ControlPlane {
    script: PathBuf,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl ControlPlane {
    fn start(dir: &Path) -> ControlPlane {
        let script = std::env::var_os("FRESHTEAM_CP_START")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/start.sh")
            });
        assert!(
            script.exists(),
            "{} not found (set FRESHTEAM_CP_START to the control plane's start script)",
            script.display()
        );
        let dir = dir.join("cluster");
        let out = Command::new(&script)
            .arg(&dir)
            .env("FRESHTEAM_CP_OWNER_PID", std::process::id().to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("start the control plane");
        assert!(out.status.success(), "the control plane did not start");
        let kubeconfig = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        ControlPlane {
            script,
            dir,
            kubeconfig,
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

async fn client(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    Client::try_from(config).unwrap()
}

async fn wait_ready(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ok = client.apiserver_version().await.is_ok()
            && Api::<Namespace>::all(client.clone())
                .get_opt("default")
                .await
                .ok()
                .flatten()
                .is_some();
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the API server did not get ready"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [
        FreshteamIntegration::crd(),
        ImportRun::crd(),
        IntegrationState::crd(),
    ] {
        let name = crd.name_any();
        if crds.get_opt(&name).await.unwrap().is_none() {
            crds.create(&PostParams::default(), &crd).await.unwrap();
        }
    }
    // Established, and served: a list answers.
    let integrations: Api<FreshteamIntegration> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while integrations
        .list(&ListParams::default().limit(1))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the CRDs were not served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for i in 0..NAMESPACES {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(format!("tenant-{i}")),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let _ = namespaces.create(&PostParams::default(), &ns).await;
    }
}

fn namespace_of(i: usize) -> String {
    format!("tenant-{}", i % NAMESPACES)
}

/// Creates integrations `from..to` and their Secrets.
async fn create_integrations(client: &Client, sim_url: &str, from: usize, to: usize) {
    futures::stream::iter(from..to)
        .map(|i| {
            let client = client.clone();
            let sim_url = sim_url.to_string();
            async move {
                let ns = namespace_of(i);
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("ft-{i}")),
                        ..ObjectMeta::default()
                    },
                    data: Some(BTreeMap::from([
                        (
                            "apiKey".to_string(),
                            ByteString(API_KEY.as_bytes().to_vec()),
                        ),
                        ("token".to_string(), ByteString(b"scim-token".to_vec())),
                    ])),
                    ..Secret::default()
                };
                Api::<Secret>::namespaced(client.clone(), &ns)
                    .create(&PostParams::default(), &secret)
                    .await?;
                let spec = FreshteamIntegrationSpec {
                    published: true,
                    schedule: "weekly".into(),
                    source: SourceSpec {
                        subdomain: format!("acme{i}"),
                        api_key_secret_ref: SecretKeyRef {
                            name: format!("ft-{i}"),
                            key: "apiKey".into(),
                        },
                        base_url: Some(sim_url),
                    },
                    destination: DestinationSpec {
                        scim: ScimDestinationSpec {
                            url: "https://members.example.com/scim/v2".into(),
                            token_secret_ref: SecretKeyRef {
                                name: format!("ft-{i}"),
                                key: "token".into(),
                            },
                            ..ScimDestinationSpec::default()
                        },
                    },
                    mapping: MappingSpec::default(),
                    ..FreshteamIntegrationSpec::default()
                };
                let fti = FreshteamIntegration::new(&format!("integration-{i}"), spec);
                Api::<FreshteamIntegration>::namespaced(client, &ns)
                    .create(&PostParams::default(), &fti)
                    .await?;
                Ok::<_, kube::Error>(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("create integrations");
}

/// Integrations whose `Authorized` condition is `True`, and how many exist.
async fn authorized(client: &Client) -> (usize, usize) {
    let api: Api<FreshteamIntegration> = Api::all(client.clone());
    let (mut yes, mut all) = (0, 0);
    let mut params = ListParams::default().limit(2000);
    loop {
        let page = api.list(&params).await.unwrap();
        for f in &page.items {
            all += 1;
            let ok = f.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Authorized" && c.status == "True")
            });
            yes += usize::from(ok);
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => return (yes, all),
        }
    }
}

/// (VmRSS, VmHWM) of a process in MB.
fn memory_mb(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Authorization requests the simulator answered, and the most in any one second.
async fn authorizations(sim: &str) -> (usize, usize) {
    let log: Vec<serde_json::Value> = reqwest::get(format!("{sim}/_sim/requests"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &log {
        if r["path"] == "/api/employees" {
            let at = r["at_ms"].as_f64().unwrap_or(0.0) as u64 / 1000;
            *per_second.entry(at).or_default() += 1;
        }
    }
    (
        per_second.values().sum(),
        per_second.values().copied().max().unwrap_or(0),
    )
}

struct Row {
    n: usize,
    new: usize,
    authorizations: usize,
    busiest_second: usize,
    settle_s: f64,
    cpu_settle: f64,
    rss_settled: f64,
    peak: f64,
    idle_cpu: f64,
    rss_idle: f64,
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    client: &Client,
    binary: &Path,
    kubeconfig: &Path,
    sim: &str,
    dir: &Path,
    n: usize,
    existing: usize,
    idle: Duration,
) -> Row {
    let t = Instant::now();
    create_integrations(client, &format!("{sim}/api"), existing, n).await;
    eprintln!(
        "[{n}] created {} integrations and Secrets in {:.1} s",
        n - existing,
        t.elapsed().as_secs_f64()
    );
    reqwest::Client::new()
        .delete(format!("{sim}/_sim/requests"))
        .send()
        .await
        .unwrap();
    let rate = std::env::var("BENCH_AUTH_RATE").unwrap_or_else(|_| "200".into());
    let extra = std::env::var("BENCH_OPERATOR_ARGS").unwrap_or_default();
    let metrics_port = free_port();
    let mut cmd = Command::new(binary);
    cmd.arg("run")
        .arg("--allow-custom-endpoints")
        .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
        .arg(format!("--authorizations-per-second={rate}"))
        .arg(format!("--lease-name=bench-{n}"))
        .args(extra.split_whitespace())
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn")
        .current_dir(dir);
    let operator = spawn("operator", &mut cmd, &dir.join(format!("operator-{n}.log")));
    let pid = operator.0.id();
    let start = Instant::now();

    // Settled: every integration Authorized, and the process quiet for two seconds.
    let mut last_cpu = cpu_seconds(pid);
    let mut all_at = None;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu = cpu_seconds(pid);
        let (yes, all) = authorized(client).await;
        if yes == all && all >= n {
            all_at.get_or_insert(start.elapsed());
            if cpu - last_cpu < 0.02 {
                break;
            }
        } else {
            all_at = None;
        }
        last_cpu = cpu;
        assert!(
            start.elapsed() < Duration::from_secs(3600),
            "[{n}] not settled after an hour: {yes}/{all} authorized"
        );
        if start.elapsed().as_secs() % 20 < 2 {
            eprintln!(
                "[{n}] {yes}/{all} authorized after {:.0} s, operator CPU {cpu:.2} s, RSS {:.1} MB",
                start.elapsed().as_secs_f64(),
                memory_mb(pid).0
            );
        }
    }
    let settle_s = all_at.unwrap().as_secs_f64();
    let cpu_settle = cpu_seconds(pid);
    let (rss_settled, _) = memory_mb(pid);
    let (authorizations, busiest_second) = authorizations(sim).await;
    if std::env::var_os("BENCH_HEAP_PROFILE").is_some() {
        // A `--features dhat-heap` build writes the live heap now, by allocation site.
        let _ = Command::new("kill")
            .args(["-USR1", &pid.to_string()])
            .status();
    }

    tokio::time::sleep(idle).await;
    let idle_cpu = cpu_seconds(pid) - cpu_settle;
    let (rss_idle, peak) = memory_mb(pid);
    // SIGTERM: a graceful stop (and the heap profile, with --features dhat-heap).
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let mut operator = operator;
    let deadline = Instant::now() + Duration::from_secs(60);
    while operator.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = dir.join("dhat-heap.json");
    if profile.exists() {
        let kept = dir.join(format!("dhat-heap-{n}.json"));
        let _ = std::fs::rename(&profile, &kept);
        eprintln!("[{n}] heap profile: {}", kept.display());
    }
    Row {
        n,
        new: n - existing,
        authorizations,
        busiest_second,
        settle_s,
        cpu_settle,
        rss_settled,
        peak,
        idle_cpu,
        rss_idle,
    }
}

fn main() {
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![1000, 5000, 10000];
    }
    sizes.sort_unstable();
    let idle = Duration::from_secs(
        std::env::var("BENCH_IDLE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_freshteam-operator"));
    // Logs, etcd's data and heap profiles; emptied at the start of each run.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/reconcile-scale");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.as_path();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let cp = ControlPlane::start(dir);
    let kubeconfig = cp.kubeconfig.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The Freshteam simulator (its own crate), served by this process's runtime.
    let simulator = {
        let _enter = rt.enter();
        Simulator::start(SimConfig {
            employees: 50,
            api_key: API_KEY.into(),
            ..SimConfig::default()
        })
        .expect("start the Freshteam simulator")
    };
    let sim = format!("http://{}", simulator.addr());
    let rows = rt.block_on(async {
        let client = client(&kubeconfig).await;
        wait_ready(&client).await;
        install_crds(&client).await;
        let mut rows = Vec::new();
        let mut existing = 0;
        for &n in &sizes {
            rows.push(measure(&client, &binary, &kubeconfig, &sim, dir, n, existing, idle).await);
            existing = n;
        }
        rows
    });

    println!(
        "\nfreshteam-operator run, real kube-apiserver + etcd, Freshteam simulator; idle window {} s",
        idle.as_secs()
    );
    println!("| integrations | new | authorizations (busiest second) | settle s | CPU to settle s | RSS settled MB | peak RSS MB | idle CPU s | RSS after idle MB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} ({}) | {:.1} | {:.2} | {:.1} | {:.1} | {:.3} | {:.1} |",
            r.n,
            r.new,
            r.authorizations,
            r.busiest_second,
            r.settle_s,
            r.cpu_settle,
            r.rss_settled,
            r.peak,
            r.idle_cpu,
            r.rss_idle
        );
    }
}
