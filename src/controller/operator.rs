//! `freshteam-operator run`: the controller process. Thin wiring of what the rest of the
//! module implements and tests: leader election, the watches, probes and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{controller, reflector, watcher, Controller, WatchStreamExt};
use kube::{Api, Client, ResourceExt};

use super::leader::LeaderLease;
use super::runner::mark_interrupted;
use super::shard::ShardSelector;
use super::{error_policy, reconcile, Context, OperatorConfig, DEFAULT_AUTHORIZATIONS_PER_SECOND};
use crate::api::{FreshteamIntegration, ImportRun};
use crate::clock::SystemClock;
use crate::connect::HttpConnector;
use crate::egress::Egress;
use crate::notify::Mail;
use crate::secret::SecretString;
use crate::telemetry::{init_logging, serve, Health, LogFormat, Metrics};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Watch only these namespaces (comma-separated; default: all namespaces). With a
    /// list, every watch is namespaced, so RBAC Roles in those namespaces are enough.
    #[arg(long, env = "WATCH_NAMESPACE", value_delimiter = ',')]
    pub namespace: Vec<String>,
    /// Imports running at once across all integrations.
    #[arg(long, default_value_t = 2)]
    pub max_concurrent_imports: usize,
    /// Serve only the integrations matching this label selector, e.g.
    /// `sharding.freshteam.provisioning.dev/key=s1`; the default shard uses
    /// `sharding.freshteam.provisioning.dev/key notin (s1,s2)`. Each shard needs its own
    /// --lease-name.
    #[arg(long, env = "SHARD_SELECTOR")]
    pub shard_selector: Option<String>,
    /// Imports at once against one Freshteam account (they share its quota).
    #[arg(long, default_value_t = 2)]
    pub max_imports_per_account: usize,
    /// Imports at once against one destination host.
    #[arg(long, default_value_t = 2)]
    pub max_imports_per_destination: usize,
    /// Requests per window to each endpoint of a SCIM destination whose spec sets no
    /// `rateLimit`, from the first request: `180/15m` (Reward Gateway's published
    /// limit). Unset: paced only by what the service's rate-limit headers say.
    #[arg(long, env = "DEFAULT_RATE_LIMIT")]
    pub default_rate_limit: Option<crate::http_policy::Pace>,
    /// Accept spec.source.baseUrl and plain-http SCIM URLs (simulators, proxies). Off by
    /// default: in a shared cluster these would let any tenant make the operator call
    /// arbitrary addresses.
    #[arg(long)]
    pub allow_custom_endpoints: bool,
    /// Log format.
    #[arg(long, value_enum, env = "LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Name of the coordination.k8s.io Lease used for leader election.
    #[arg(long, default_value = "freshteam-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (normally the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a leader's Lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
    /// SMTP server for invitations and summaries (smtp://, smtp://…?tls=required,
    /// smtps://). Without one, e-mails are skipped with a warning.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// SMTP user name, when not in the URL (e.g. from a Secret through the environment).
    #[arg(long, env = "SMTP_USERNAME")]
    pub smtp_username: Option<String>,
    /// SMTP password, when not in the URL (from a Secret through the environment).
    #[arg(long, env = "SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<String>,
    /// Sender address of e-mails.
    #[arg(long, env = "MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Directory with invitation templates (a mounted ConfigMap): invitation.subject,
    /// invitation.txt, invitation.html. `--templates` as on `sync`; `--templates-dir` is
    /// the old name, still accepted.
    #[arg(
        long = "templates",
        alias = "templates-dir",
        value_name = "DIR",
        env = "TEMPLATES_DIR"
    )]
    pub templates_dir: Option<std::path::PathBuf>,
    /// How long SIGTERM waits for running imports before recording them as Interrupted.
    #[arg(long, default_value_t = 25)]
    pub shutdown_grace_seconds: u64,
    /// Authorizations against Freshteam per second across all integrations; the others
    /// wait their turn (`Authorized=Unknown`, reason `AwaitingAuthorization`).
    #[arg(long, default_value_t = DEFAULT_AUTHORIZATIONS_PER_SECOND, value_parser = positive_rate)]
    pub authorizations_per_second: f64,
}

/// A `--authorizations-per-second` that is not a finite number above zero.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a rate above zero (e.g. 10 or 0.5)")]
struct NotARate(String);

fn positive_rate(s: &str) -> Result<f64, NotARate> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(NotARate(s.to_string())),
    }
}

/// Reconciles at once. Each holds a connection to the API server while it talks to it
/// (HTTP/1.1): unbounded, settling thousands of integrations opens thousands of them.
const CONCURRENT_RECONCILES: u16 = 16;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format, "info");
    let mail = mail_setup(&args)?;
    let shard = args
        .shard_selector
        .as_deref()
        .map(ShardSelector::parse)
        .transpose()?;
    let client = Client::try_default().await?;
    let metrics = Metrics::new();
    let health = Health::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(wait_for_signal(stop_tx));

    let server_stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let addr = args.metrics_addr;
    let server_health = health.clone();
    let server_metrics = metrics.clone();
    tokio::spawn(async move {
        if let Err(e) = serve(addr, server_metrics, server_health, server_stop).await {
            tracing::error!(error = %e, %addr, "metrics server stopped");
        }
    });

    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("freshteam-operator-{}", std::process::id()));
    let ttl = Duration::from_secs(args.lease_seconds.max(5));
    let lease = Arc::new(LeaderLease::new(
        client.clone(),
        &args.lease_namespace,
        &args.lease_name,
        &identity,
        ttl,
    ));
    health.set_ready(true, "standing by for the leader Lease");
    if !lease.acquire(&mut stop_rx.clone()).await {
        return Ok(());
    }
    tracing::info!(%identity, lease = %args.lease_name, "became leader");

    // Keep the Lease; losing it (or not renewing it in time) means another replica may
    // start runs, so stop at once. Renewing starts now: marking orphans may take a while.
    let renew = {
        let lease = lease.clone();
        tokio::spawn(async move {
            let why = lease.hold().await;
            tracing::error!(reason = %why, "lost the leader Lease; exiting");
            std::process::exit(1);
        })
    };

    let ctx = Arc::new(context(
        &args,
        client.clone(),
        &identity,
        Some(metrics.clone()),
        mail,
        shard.clone(),
    ));
    // One scope per watched namespace (`None`: the whole cluster).
    let scopes: Vec<Option<String>> = {
        let listed: Vec<Option<String>> = args
            .namespace
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(|n| Some(n.to_string()))
            .collect();
        if listed.is_empty() {
            vec![None]
        } else {
            listed
        }
    };
    let runs_in = |scope: &Option<String>| -> Api<ImportRun> {
        match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    };
    for scope in &scopes {
        let interrupted = mark_interrupted(&ctx, &runs_in(scope)).await?;
        if interrupted > 0 {
            tracing::warn!(
                count = interrupted,
                namespace = scope.as_deref().unwrap_or("*"),
                "marked runs of a previous leader as Interrupted"
            );
        }
    }

    futures::future::join_all(scopes.iter().map(|scope| {
        control(
            ctx.clone(),
            client.clone(),
            scope.as_deref(),
            shard.as_ref(),
            stop_rx.clone(),
        )
    }))
    .await;

    // SIGTERM: no new work; let running imports reach their end, or record them.
    health.set_ready(false, "shutting down");
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    if tokio::time::timeout(grace, ctx.wait_idle()).await.is_err() {
        let mut n = 0;
        for scope in &scopes {
            n += mark_interrupted(&ctx, &runs_in(scope)).await.unwrap_or(0);
        }
        tracing::warn!(
            count = n,
            "imports did not finish within the grace period; marked Interrupted"
        );
    }
    renew.abort();
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "could not release the leader Lease");
    }
    Ok(())
}

/// The controller of one scope: a namespace, or the whole cluster (`None`).
async fn control(
    ctx: Arc<Context>,
    client: Client,
    namespace: Option<&str>,
    shard: Option<&ShardSelector>,
    stop_rx: tokio::sync::watch::Receiver<bool>,
) {
    // Secrets as metadata only: a change of version is all that matters here; the
    // reconciler reads the referenced ones itself.
    type SecretMeta = PartialObjectMeta<Secret>;
    let (integrations, runs, secrets): (
        Api<FreshteamIntegration>,
        Api<ImportRun>,
        Api<SecretMeta>,
    ) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    // The shard's selector goes to the API server: other shards' integrations never
    // reach this process, and one relabelled away is seen as deleted here.
    let mut watch = watcher::Config::default();
    if let Some(s) = shard {
        watch = watch.labels(&s.text);
    }
    // The cache keeps what reconciling reads: not the managed fields (a tree of every
    // field's owner, several KB per object) nor kubectl's copy of the last applied spec.
    let (store, writer) = reflector::store();
    let integration_events = reflector(
        writer,
        watcher(integrations, watch).modify(|fti: &mut FreshteamIntegration| {
            fti.managed_fields_mut().clear();
            fti.annotations_mut().remove(LAST_APPLIED);
        }),
    )
    .applied_objects();
    let controller = Controller::for_stream(integration_events, store)
        .with_config(controller::Config::default().concurrency(CONCURRENT_RECONCILES));
    let store = controller.store();
    let mut stop = stop_rx.clone();
    let seen = ctx.clone();
    controller
        // Every run names its integration: the operator's own, and users' on-demand runs
        // waiting to be started.
        .watches(runs, watcher::Config::default(), move |run: ImportRun| {
            seen.on_demand.note(&run)
        })
        .watches(
            secrets,
            watcher::Config::default(),
            move |secret: SecretMeta| {
                // A changed API key or token re-authorizes the integrations that use it.
                let ns = secret.namespace();
                let name = secret.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|f| {
                        f.namespace() == ns
                            && (f.spec.source.api_key_secret_ref.name == name
                                || f.spec.destination.scim.token_secret_ref.name == name)
                    })
                    .map(|f| ObjectRef::from_obj(&*f))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile");
            }
        })
        .await;
}

/// The reconcile context `run` serves with: every flag that shapes what it touches.
pub(crate) fn context(
    args: &RunArgs,
    client: Client,
    identity: &str,
    metrics: Option<Metrics>,
    mail: Mail,
    shard: Option<ShardSelector>,
) -> Context {
    Context::new(
        client,
        Arc::new(SystemClock),
        OperatorConfig {
            allow_custom_endpoints: args.allow_custom_endpoints,
            max_concurrent_imports: args.max_concurrent_imports,
            max_imports_per_account: args.max_imports_per_account,
            max_imports_per_destination: args.max_imports_per_destination,
            authorizations_per_second: args.authorizations_per_second,
            ..OperatorConfig::default()
        },
        Arc::new(
            HttpConnector::new(Egress::operator(args.allow_custom_endpoints))
                .with_default_rate_limit(args.default_rate_limit),
        ),
        Some(Reporter {
            controller: "freshteam-operator".into(),
            instance: Some(identity.to_string()),
        }),
        metrics,
    )
    .with_mail(mail)
    .with_shard(shard)
}

fn mail_setup(args: &RunArgs) -> anyhow::Result<Mail> {
    let credentials = match (&args.smtp_username, &args.smtp_password) {
        (Some(user), Some(password)) => Some((user.clone(), SecretString::new(password.clone()))),
        _ => None,
    };
    let mail = Mail::configure(
        args.smtp_url.as_deref(),
        args.mail_from.as_deref(),
        credentials,
        args.templates_dir.as_deref(),
        "--templates",
    )?;
    if mail.transport.is_none() {
        tracing::warn!("no SMTP server configured (--smtp-url / SMTP_URL): invitations and summaries are skipped");
    }
    Ok(mail)
}

async fn wait_for_signal(stop: tokio::sync::watch::Sender<bool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    let _ = stop.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::shard::SHARD_LABEL;
    use clap::Parser;
    use std::collections::BTreeMap;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[tokio::test]
    async fn the_context_carries_the_shard_and_the_import_limits() {
        let cli = Cli::parse_from([
            "run",
            "--shard-selector",
            "sharding.freshteam.provisioning.dev/key=s1",
            "--max-imports-per-account",
            "1",
            "--max-imports-per-destination",
            "3",
        ]);
        let shard = ShardSelector::parse(cli.run.shard_selector.as_deref().unwrap()).unwrap();
        let client = kube_fake_client::ClientBuilder::new()
            .build()
            .await
            .unwrap();
        let ctx = context(&cli.run, client, "r1", None, Mail::default(), Some(shard));
        assert_eq!(ctx.config.max_imports_per_account, 1);
        assert_eq!(ctx.config.max_imports_per_destination, 3);
        let mut fti = crate::api::FreshteamIntegration::new("a", serde_json::from_value(
            serde_json::json!({"source": {"subdomain": "acme", "apiKeySecretRef": {"name": "k", "key": "k"}},
                "destination": {"scim": {"url": "https://m.example/scim/v2", "tokenSecretRef": {"name": "t", "key": "t"}}},
                "mapping": {"email": "official_email"}})).unwrap());
        fti.metadata.labels = Some(BTreeMap::from([(
            SHARD_LABEL.to_string(),
            "s2".to_string(),
        )]));
        assert!(
            !ctx.in_shard(&fti),
            "another shard's integration is not ours"
        );
        fti.metadata.labels = Some(BTreeMap::from([(
            SHARD_LABEL.to_string(),
            "s1".to_string(),
        )]));
        assert!(ctx.in_shard(&fti));
    }

    #[test]
    fn templates_has_the_same_flag_as_on_sync_and_keeps_its_old_name() {
        for flag in ["--templates", "--templates-dir"] {
            let cli = Cli::parse_from(["run", flag, "/etc/templates"]);
            let dir = cli.run.templates_dir.as_deref();
            assert_eq!(dir, Some(std::path::Path::new("/etc/templates")), "{flag}");
        }
    }
}
