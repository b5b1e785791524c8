//! Reconcile cost of one operator serving many integrations, against the in-process API
//! (kube-fake-client). Prints reconcile latency, CPU time and resident memory.
//!
//!     cargo bench --bench reconcile_scale -- 1000 5000

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use freshteam_operator::api::*;
use freshteam_operator::clock::SystemClock;
use freshteam_operator::controller::connect::Connector;
use freshteam_operator::controller::{reconcile, Context, OperatorConfig};
use freshteam_operator::destination::MemberDirectory;
use freshteam_operator::progress::ProgressSink;
use freshteam_operator::secret::SecretString;
use freshteam_operator::source::{
    AccountInfo, EmployeeSource, SourceError, SourceRequest, SourceSnapshot,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ListParams, ObjectMeta};
use kube::Api;

/// Answers authorization at once, so only the controller's own work is measured.
struct InstantSource;

#[async_trait]
impl EmployeeSource for InstantSource {
    async fn authorize(&self) -> Result<AccountInfo, SourceError> {
        Ok(AccountInfo {
            host: "acme.freshteam.com".into(),
            employees: 1204,
        })
    }
    async fn fetch(
        &self,
        _: &SourceRequest,
        _: &dyn ProgressSink,
    ) -> Result<SourceSnapshot, SourceError> {
        Ok(SourceSnapshot::default())
    }
}

struct InstantConnector;

#[async_trait]
impl Connector for InstantConnector {
    async fn source(
        &self,
        _: &FreshteamIntegrationSpec,
        _: SecretString,
    ) -> Result<Box<dyn EmployeeSource>, String> {
        Ok(Box::new(InstantSource))
    }
    async fn destination(
        &self,
        _: &FreshteamIntegrationSpec,
        _: SecretString,
    ) -> Result<Box<dyn MemberDirectory>, String> {
        Err("not used".into())
    }
}

fn proc_status(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

async fn measure(n: usize) {
    let rss_before = proc_status("VmRSS:");
    let mut builder = kube_fake_client::ClientBuilder::new()
        .with_resource::<FreshteamIntegration>()
        .with_status_subresource::<FreshteamIntegration>()
        .with_resource::<ImportRun>()
        .with_status_subresource::<ImportRun>();
    for i in 0..n {
        let ns = format!("tenant-{}", i % 50);
        let mut spec = FreshteamIntegrationSpec {
            published: true,
            schedule: "daily".into(),
            source: SourceSpec {
                subdomain: format!("acme{i}"),
                api_key_secret_ref: SecretKeyRef {
                    name: format!("ft-{i}"),
                    key: "apiKey".into(),
                },
                base_url: None,
            },
            destination: DestinationSpec {
                scim: ScimDestinationSpec {
                    url: "https://members.example.com/scim/v2".into(),
                    token_secret_ref: SecretKeyRef {
                        name: format!("ft-{i}"),
                        key: "token".into(),
                    },
                },
            },
            mapping: MappingSpec::default(),
            ..FreshteamIntegrationSpec::default()
        };
        spec.time_zone = Some("Europe/London".into());
        let mut fti = FreshteamIntegration::new(&format!("integration-{i}"), spec);
        fti.metadata.namespace = Some(ns.clone());
        fti.metadata.generation = Some(1);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(format!("ft-{i}")),
                namespace: Some(ns),
                ..ObjectMeta::default()
            },
            data: Some(
                [("apiKey", "k"), ("token", "t")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        builder = builder.with_object(fti).with_object(secret);
    }
    let client = builder.build().await.expect("fake API");
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(SystemClock),
        OperatorConfig::default(),
        Arc::new(InstantConnector),
        None,
        None,
    ));
    let api: Api<FreshteamIntegration> = Api::all(client);
    for pass in ["first (authorize)", "steady"] {
        let items = api.list(&ListParams::default()).await.unwrap().items;
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let mut worst = 0f64;
        for fti in items {
            let t = Instant::now();
            reconcile(Arc::new(fti), ctx.clone())
                .await
                .expect("reconcile");
            worst = worst.max(t.elapsed().as_secs_f64());
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        println!(
            "{n:>6} integrations  {pass:<18} {:>8.3} ms/reconcile (max {:>6.2} ms)  cpu {:>6.2} s  rss {:>6.1} MB (+{:.1} MB for the API objects and caches)",
            wall * 1000.0 / n as f64,
            worst * 1000.0,
            cpu,
            proc_status("VmRSS:"),
            proc_status("VmRSS:") - rss_before
        );
        if pass == "steady" {
            // Each published integration is reconciled once per requeue (at its next
            // slot, at most hourly): the CPU that costs per hour is what idling costs.
            println!(
                "{n:>6} integrations  idle estimate: {:.4} CPU-seconds per hour of one reconcile per integration per hour ({:.5}% of a core)",
                cpu,
                cpu / 3600.0 * 100.0
            );
        }
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() { vec![1000] } else { sizes };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for n in sizes {
        rt.block_on(measure(n));
    }
}
