use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;

use super::metrics::trigger_label;
use super::server::{bind, serve_listener};
use super::*;
use crate::api::{ApiCalls, ImportPhase, ImportRunStatus, ImportSummary, ImportTrigger};
use crate::sync::ImportOutcome;

// ---------------------------------------------------------------------------------------
// A strict reader of the OpenMetrics text format, enough to check what we expose.

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    /// family name → type
    types: HashMap<String, String>,
    helps: HashMap<String, String>,
    units: HashMap<String, String>,
    samples: Vec<Sample>,
}

fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "gauge" => &[""],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        other => panic!("unexpected metric type {other}"),
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name {name:?} in {s:?}"
        );
        assert_eq!(chars.next(), Some('"'), "label value not quoted in {s:?}");
        let mut value = String::new();
        loop {
            match chars.next().expect("unterminated label value") {
                '"' => break,
                '\\' => match chars.next().expect("dangling escape") {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("bad escape \\{c} in {s:?}"),
                },
                c => value.push(c),
            }
        }
        assert!(
            labels.insert(name, value).is_none(),
            "duplicate label in {s:?}"
        );
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(c) => panic!("unexpected {c:?} after label value in {s:?}"),
        }
    }
    labels
}

/// Parses an exposition, panicking on anything OpenMetrics does not allow that this
/// exposition could plausibly get wrong.
fn parse(text: &str) -> Exposition {
    assert!(text.ends_with("# EOF\n"), "exposition must end with # EOF");
    let body = &text[..text.len() - "# EOF\n".len()];
    assert!(
        !body.contains("# EOF"),
        "# EOF must appear once, at the end"
    );
    let mut exp = Exposition::default();
    for line in body.lines() {
        assert!(!line.is_empty(), "blank lines are not allowed");
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, family, arg) = (
                parts.next().unwrap(),
                parts.next().expect("descriptor without a name"),
                parts.next().expect("descriptor without a value"),
            );
            let map = match keyword {
                "TYPE" => &mut exp.types,
                "HELP" => &mut exp.helps,
                "UNIT" => &mut exp.units,
                other => panic!("unknown descriptor {other}"),
            };
            assert!(
                map.insert(family.to_string(), arg.to_string()).is_none(),
                "{keyword} repeated for {family}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample without a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                parse_labels(rest.strip_suffix('}').expect("unclosed label set")),
            ),
            None => (series, BTreeMap::new()),
        };
        let family = exp
            .types
            .iter()
            .find(|(family, kind)| {
                suffixes(kind)
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(family.as_str()))
            })
            .unwrap_or_else(|| panic!("sample {name} belongs to no declared family"));
        assert!(exp.helps.contains_key(family.0), "{} has no HELP", family.0);
        exp.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    for (family, unit) in &exp.units {
        assert!(
            family.ends_with(&format!("_{unit}")),
            "{family} must end with its unit {unit}"
        );
    }
    exp
}

impl Exposition {
    /// The value of the sample with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut found = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want);
        let first = found.next()?;
        assert!(found.next().is_none(), "{name}{want:?} exposed twice");
        Some(first.value)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }

    /// A histogram bucket, matching `le` numerically (the encoder writes `120.0`).
    fn bucket(&self, name: &str, labels: &[(&str, &str)], le: f64) -> f64 {
        let matches: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == format!("{name}_bucket")
                    && s.labels.len() == labels.len() + 1
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                    && s.labels.get("le").map(|v| match v.as_str() {
                        "+Inf" => f64::INFINITY,
                        v => v.parse::<f64>().expect("numeric le"),
                    }) == Some(le)
            })
            .collect();
        assert_eq!(matches.len(), 1, "bucket le={le} of {name} {labels:?}");
        matches[0].value
    }

    /// Every sample of a name, to check for series that must not exist.
    fn series(&self, name: &str) -> Vec<&BTreeMap<String, String>> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| &s.labels)
            .collect()
    }

    fn has_family(&self, family: &str, kind: &str) -> bool {
        self.types.get(family).map(String::as_str) == Some(kind)
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures: statuses shaped like the ones `run_import` produces.

fn status(
    phase: ImportPhase,
    summary: ImportSummary,
    api_calls: Option<ApiCalls>,
    completion: &str,
) -> ImportRunStatus {
    ImportRunStatus {
        phase,
        start_time: Some("2025-03-04T03:00:00Z".to_string()),
        completion_time: Some(completion.to_string()),
        summary,
        api_calls,
        message: Some(format!("{phase}")),
        ..ImportRunStatus::default()
    }
}

fn epoch(t: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp() as f64
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(metrics: Metrics, health: Health) -> Server {
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert_ne!(addr.port(), 0, "bind reports the real port");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_listener(listener, metrics, health, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn scrape(&self) -> Exposition {
        let resp = reqwest::get(self.url("/metrics")).await.unwrap();
        assert_eq!(resp.status(), 200);
        parse(&resp.text().await.unwrap())
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops on shutdown")
            .unwrap()
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn scrape_reports_every_family_with_values_and_labels() {
    let metrics = Metrics::new();
    let server = Server::start(metrics.clone(), Health::new()).await;

    // acme/staff: a scheduled success, a manual partial success, then a scheduled failure.
    let ok_at = "2025-03-04T03:01:35Z";
    metrics.record_run(
        "acme",
        "staff",
        ImportTrigger::Scheduled,
        &status(
            ImportPhase::Succeeded,
            ImportSummary {
                created: 12,
                updated: 30,
                unchanged: 1150,
                leavers: 3,
                reactivated: 1,
                invitations_sent: 12,
                ..ImportSummary::default()
            },
            Some(ApiCalls {
                freshteam_list: 13,
                freshteam_detail: 0,
                freshteam_lookups: 3,
                freshteam_throttled: 2,
                freshteam_retries: 1,
                destination_reads: 12,
                destination_writes: 46,
                destination_bulk: 1,
                destination_lookups: 0,
            }),
            ok_at,
        ),
        Duration::from_secs(95),
    );
    let partial_at = "2025-03-04T10:15:20Z";
    metrics.record_run(
        "acme",
        "staff",
        ImportTrigger::Manual,
        &status(
            ImportPhase::PartiallySucceeded,
            ImportSummary {
                created: 1,
                updated: 2,
                unchanged: 1190,
                errors: 4,
                warnings: 1,
                ..ImportSummary::default()
            },
            Some(ApiCalls {
                freshteam_list: 13,
                freshteam_lookups: 3,
                destination_reads: 12,
                destination_writes: 3,
                ..ApiCalls::default()
            }),
            partial_at,
        ),
        Duration::from_millis(20_500),
    );
    metrics.record_run(
        "acme",
        "staff",
        ImportTrigger::Scheduled,
        &status(
            ImportPhase::Failed,
            ImportSummary::default(),
            Some(ApiCalls {
                freshteam_list: 1,
                freshteam_retries: 3,
                ..ApiCalls::default()
            }),
            "2025-03-05T03:00:02Z",
        ),
        Duration::from_secs(2),
    );

    // beta/payroll: blocked on leavers.
    metrics.record_outcome(
        "beta",
        "payroll",
        ImportTrigger::Scheduled,
        &ImportOutcome {
            status: status(
                ImportPhase::Blocked,
                ImportSummary {
                    unchanged: 700,
                    ..ImportSummary::default()
                },
                Some(ApiCalls {
                    freshteam_list: 8,
                    freshteam_throttled: 1,
                    destination_reads: 8,
                    ..ApiCalls::default()
                }),
                "2025-03-04T03:00:40Z",
            ),
            blocked_leavers: 250,
            ..ImportOutcome::default()
        },
        Duration::from_secs(40),
    );

    // gamma/draft: a preview of an unpublished integration.
    metrics.record_run(
        "gamma",
        "draft",
        ImportTrigger::Preview,
        &status(
            ImportPhase::Succeeded,
            ImportSummary {
                created: 500,
                ..ImportSummary::default()
            },
            Some(ApiCalls {
                freshteam_list: 5,
                destination_reads: 1,
                ..ApiCalls::default()
            }),
            "2025-03-04T09:00:07Z",
        ),
        Duration::from_secs(7),
    );

    metrics.reconcile("acme", "staff");
    metrics.reconcile("acme", "staff");
    metrics.reconcile("beta", "payroll");
    metrics.reconcile_error("acme", "staff", "SecretNotFound");
    metrics.reconcile_error("acme", "staff", "SecretNotFound");
    metrics.reconcile_error("beta", "payroll", "Unauthorized");
    metrics.set_authorized("acme", "staff", true);
    metrics.set_authorized("beta", "payroll", false);
    metrics.import_started();
    metrics.import_started();
    metrics.import_started();
    metrics.import_finished();
    metrics.set_queue_depth(4);

    let m = server.scrape().await;

    for (family, kind) in [
        ("freshteam_imports", "counter"),
        ("freshteam_import_duration_seconds", "histogram"),
        ("freshteam_members_changed", "counter"),
        ("freshteam_api_requests", "counter"),
        ("freshteam_api_throttled", "counter"),
        ("freshteam_api_retries", "counter"),
        ("freshteam_reconcile_errors", "counter"),
        ("freshteam_reconciliations", "counter"),
        ("freshteam_imports_running", "gauge"),
        ("freshteam_import_queue_depth", "gauge"),
        (
            "freshteam_last_successful_import_timestamp_seconds",
            "gauge",
        ),
        ("freshteam_leavers_awaiting_approval", "gauge"),
        ("freshteam_authorized", "gauge"),
    ] {
        assert!(m.has_family(family, kind), "{family} should be a {kind}");
    }
    assert_eq!(m.units["freshteam_import_duration_seconds"], "seconds");

    // imports_total
    let imports = |ns, name, phase, trigger| {
        m.get(
            "freshteam_imports_total",
            &[
                ("namespace", ns),
                ("integration", name),
                ("phase", phase),
                ("trigger", trigger),
            ],
        )
    };
    assert_eq!(imports("acme", "staff", "Succeeded", "Scheduled"), 1.0);
    assert_eq!(
        imports("acme", "staff", "PartiallySucceeded", "Manual"),
        1.0
    );
    assert_eq!(imports("acme", "staff", "Failed", "Scheduled"), 1.0);
    assert_eq!(imports("beta", "payroll", "Blocked", "Scheduled"), 1.0);
    assert_eq!(imports("gamma", "draft", "Succeeded", "Preview"), 1.0);
    assert_eq!(m.series("freshteam_imports_total").len(), 5);

    // import_duration_seconds: acme scheduled saw 95 s and 2 s.
    let h = "freshteam_import_duration_seconds";
    let acme_sched = [
        ("namespace", "acme"),
        ("integration", "staff"),
        ("trigger", "Scheduled"),
    ];
    assert_eq!(m.get(&format!("{h}_count"), &acme_sched), 2.0);
    assert_eq!(m.get(&format!("{h}_sum"), &acme_sched), 97.0);
    assert_eq!(m.bucket(h, &acme_sched, 1.0), 0.0);
    assert_eq!(m.bucket(h, &acme_sched, 2.5), 1.0);
    assert_eq!(m.bucket(h, &acme_sched, 60.0), 1.0);
    assert_eq!(m.bucket(h, &acme_sched, 120.0), 2.0);
    assert_eq!(m.bucket(h, &acme_sched, 3600.0), 2.0);
    assert_eq!(m.bucket(h, &acme_sched, f64::INFINITY), 2.0);
    let acme_manual = [
        ("namespace", "acme"),
        ("integration", "staff"),
        ("trigger", "Manual"),
    ];
    assert_eq!(m.get(&format!("{h}_sum"), &acme_manual), 20.5);
    assert_eq!(m.bucket(h, &acme_manual, 10.0), 0.0);
    assert_eq!(m.bucket(h, &acme_manual, 30.0), 1.0);
    let preview = [
        ("namespace", "gamma"),
        ("integration", "draft"),
        ("trigger", "Preview"),
    ];
    assert_eq!(m.get(&format!("{h}_count"), &preview), 1.0);

    // members_changed_total: summed over acme's runs; previews change nothing.
    let changed = |ns, name, kind| {
        m.value(
            "freshteam_members_changed_total",
            &[("namespace", ns), ("integration", name), ("kind", kind)],
        )
    };
    assert_eq!(changed("acme", "staff", "created"), Some(13.0));
    assert_eq!(changed("acme", "staff", "updated"), Some(32.0));
    assert_eq!(changed("acme", "staff", "reactivated"), Some(1.0));
    assert_eq!(changed("acme", "staff", "leaver"), Some(3.0));
    assert_eq!(changed("acme", "staff", "error"), Some(4.0));
    assert_eq!(changed("beta", "payroll", "leaver"), Some(0.0));
    assert_eq!(changed("gamma", "draft", "created"), None);
    let kinds: Vec<&str> = m
        .series("freshteam_members_changed_total")
        .iter()
        .map(|l| l["kind"].as_str())
        .collect();
    assert!(kinds
        .iter()
        .all(|k| ["created", "updated", "reactivated", "leaver", "error"].contains(k)));

    // api_requests_total: summed over every run, previews included (they are real calls).
    let api = |system, kind| {
        m.get(
            "freshteam_api_requests_total",
            &[("system", system), ("kind", kind)],
        )
    };
    assert_eq!(api("freshteam", "list"), (13 + 13 + 1 + 8 + 5) as f64);
    assert_eq!(api("freshteam", "detail"), 0.0);
    assert_eq!(api("freshteam", "lookup"), 6.0);
    assert_eq!(api("destination", "read"), (12 + 12 + 8 + 1) as f64);
    assert_eq!(api("destination", "write"), 49.0);
    assert_eq!(api("destination", "bulk"), 1.0);
    assert_eq!(m.series("freshteam_api_requests_total").len(), 6);
    assert_eq!(
        m.get("freshteam_api_throttled_total", &[("system", "freshteam")]),
        3.0
    );
    assert_eq!(
        m.get("freshteam_api_retries_total", &[("system", "freshteam")]),
        4.0
    );

    // reconciliations
    let acme = [("namespace", "acme"), ("integration", "staff")];
    let beta = [("namespace", "beta"), ("integration", "payroll")];
    assert_eq!(m.get("freshteam_reconciliations_total", &acme), 2.0);
    assert_eq!(m.get("freshteam_reconciliations_total", &beta), 1.0);
    assert_eq!(
        m.get(
            "freshteam_reconcile_errors_total",
            &[
                ("namespace", "acme"),
                ("integration", "staff"),
                ("reason", "SecretNotFound")
            ]
        ),
        2.0
    );
    assert_eq!(
        m.get(
            "freshteam_reconcile_errors_total",
            &[
                ("namespace", "beta"),
                ("integration", "payroll"),
                ("reason", "Unauthorized")
            ]
        ),
        1.0
    );

    // gauges
    assert_eq!(m.get("freshteam_imports_running", &[]), 2.0);
    assert_eq!(m.get("freshteam_import_queue_depth", &[]), 4.0);
    // The failed run after the partial success does not move the timestamp.
    assert_eq!(
        m.get("freshteam_last_successful_import_timestamp_seconds", &acme),
        epoch(partial_at)
    );
    assert!(epoch(partial_at) > epoch(ok_at));
    // Blocked and preview runs are not successful imports.
    assert_eq!(
        m.series("freshteam_last_successful_import_timestamp_seconds")
            .len(),
        1
    );
    assert_eq!(m.get("freshteam_leavers_awaiting_approval", &beta), 250.0);
    assert_eq!(m.get("freshteam_leavers_awaiting_approval", &acme), 0.0);
    assert_eq!(m.get("freshteam_authorized", &acme), 1.0);
    assert_eq!(m.get("freshteam_authorized", &beta), 0.0);

    // Labels carry only the expected names.
    for s in &m.samples {
        for label in s.labels.keys() {
            assert!(
                [
                    "namespace",
                    "integration",
                    "phase",
                    "trigger",
                    "kind",
                    "system",
                    "reason",
                    "host",
                    "le"
                ]
                .contains(&label.as_str()),
                "unexpected label {label} on {}",
                s.name
            );
        }
    }

    server.stop().await;
}

#[tokio::test]
async fn metrics_endpoint_serves_openmetrics() {
    let metrics = Metrics::new();
    let server = Server::start(metrics.clone(), Health::new()).await;
    let resp = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()[reqwest::header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = resp.text().await.unwrap();
    assert!(body.ends_with("# EOF\n"));
    // Even before anything happened, the process-wide gauges are there at 0.
    let m = parse(&body);
    assert_eq!(m.get("freshteam_imports_running", &[]), 0.0);
    assert_eq!(m.get("freshteam_import_queue_depth", &[]), 0.0);
    assert_eq!(body, metrics.encode());

    let resp = reqwest::get(server.url("/nope")).await.unwrap();
    assert_eq!(resp.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn healthz_is_ok_and_readyz_follows_health() {
    let health = Health::new();
    let server = Server::start(Metrics::new(), health.clone()).await;

    let resp = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");

    let resp = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.text().await.unwrap(), "starting");

    health.set_ready(false, "waiting for the CRDs\nto be installed");
    let resp = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.text().await.unwrap(),
        "waiting for the CRDs to be installed"
    );

    health.set_ready(true, "standing by for the leader lease");
    assert!(health.readiness().is_ok());
    let resp = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");

    health.set_ready(false, "shutting down");
    let resp = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(resp.status(), 503);
    // /healthz does not depend on readiness.
    let resp = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(resp.status(), 200);

    server.stop().await;
}

#[tokio::test]
async fn serve_binds_and_returns_on_shutdown() {
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        serve(
            "127.0.0.1:0".parse().unwrap(),
            Metrics::new(),
            Health::new(),
            async {},
        ),
    )
    .await
    .expect("serve returns once shutdown completes");
    result.unwrap();
}

#[tokio::test]
async fn serve_reports_a_port_in_use() {
    let (_held, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let err = serve(addr, Metrics::new(), Health::new(), async {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

#[test]
fn forget_drops_only_that_integrations_series() {
    let metrics = Metrics::new();
    let run = status(
        ImportPhase::Succeeded,
        ImportSummary {
            created: 2,
            ..ImportSummary::default()
        },
        Some(ApiCalls {
            freshteam_list: 1,
            ..ApiCalls::default()
        }),
        "2025-03-04T03:00:00Z",
    );
    for name in ["old", "kept"] {
        for trigger in [ImportTrigger::Scheduled, ImportTrigger::Manual] {
            metrics.record_run("acme", name, trigger, &run, Duration::from_secs(3));
        }
        metrics.reconcile("acme", name);
        metrics.reconcile_error("acme", name, "Unauthorized");
        metrics.reconcile_error("acme", name, "SecretNotFound");
        metrics.set_authorized("acme", name, true);
        metrics.set_leavers_awaiting_approval("acme", name, 9);
    }
    metrics.forget("acme", "old");

    let m = parse(&metrics.encode());
    let mentions_old = m
        .samples
        .iter()
        .filter(|s| s.labels.get("integration").map(String::as_str) == Some("old"))
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>();
    assert!(mentions_old.is_empty(), "left behind: {mentions_old:?}");
    let kept = [("namespace", "acme"), ("integration", "kept")];
    assert_eq!(m.get("freshteam_reconciliations_total", &kept), 1.0);
    assert_eq!(m.get("freshteam_authorized", &kept), 1.0);
    assert_eq!(m.get("freshteam_leavers_awaiting_approval", &kept), 9.0);
    assert_eq!(
        m.get(
            "freshteam_members_changed_total",
            &[
                ("namespace", "acme"),
                ("integration", "kept"),
                ("kind", "created")
            ]
        ),
        4.0
    );
    // Process-wide totals keep what the forgotten integration contributed.
    assert_eq!(
        m.get(
            "freshteam_api_requests_total",
            &[("system", "freshteam"), ("kind", "list")]
        ),
        4.0
    );
    // Forgetting again, or an integration never seen, is harmless.
    metrics.forget("acme", "old");
    metrics.forget("nowhere", "never");
    parse(&metrics.encode());
}

#[test]
fn successful_run_clears_leavers_awaiting_approval() {
    let metrics = Metrics::new();
    let blocked = ImportOutcome {
        status: status(
            ImportPhase::Blocked,
            ImportSummary::default(),
            None,
            "2025-03-04T03:00:00Z",
        ),
        blocked_leavers: 31,
        ..ImportOutcome::default()
    };
    metrics.record_outcome(
        "acme",
        "staff",
        ImportTrigger::Scheduled,
        &blocked,
        Duration::from_secs(5),
    );
    let labels = [("namespace", "acme"), ("integration", "staff")];
    let awaiting =
        |m: &Metrics| parse(&m.encode()).get("freshteam_leavers_awaiting_approval", &labels);
    assert_eq!(awaiting(&metrics), 31.0);

    // A failed retry does not say anything about the held-back leavers.
    metrics.record_run(
        "acme",
        "staff",
        ImportTrigger::Scheduled,
        &status(
            ImportPhase::Failed,
            ImportSummary::default(),
            None,
            "2025-03-04T04:00:00Z",
        ),
        Duration::from_secs(1),
    );
    assert_eq!(awaiting(&metrics), 31.0);

    // The approved run applies them.
    metrics.record_run(
        "acme",
        "staff",
        ImportTrigger::Manual,
        &status(
            ImportPhase::Succeeded,
            ImportSummary {
                leavers: 31,
                ..ImportSummary::default()
            },
            None,
            "2025-03-04T05:00:00Z",
        ),
        Duration::from_secs(9),
    );
    assert_eq!(awaiting(&metrics), 0.0);
    // No api_calls in the status: no request series invented.
    assert!(parse(&metrics.encode())
        .series("freshteam_api_requests_total")
        .is_empty());
}

#[test]
fn last_success_without_completion_time_uses_now() {
    let metrics = Metrics::new();
    let mut run = status(ImportPhase::Succeeded, ImportSummary::default(), None, "");
    run.completion_time = None;
    let before = chrono::Utc::now().timestamp() as f64;
    metrics.record_run(
        "acme",
        "staff",
        ImportTrigger::Scheduled,
        &run,
        Duration::ZERO,
    );
    let after = chrono::Utc::now().timestamp() as f64 + 1.0;
    let at = parse(&metrics.encode()).get(
        "freshteam_last_successful_import_timestamp_seconds",
        &[("namespace", "acme"), ("integration", "staff")],
    );
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
}

#[test]
fn running_import_guard_counts_until_dropped() {
    let metrics = Metrics::new();
    let running = |m: &Metrics| parse(&m.encode()).get("freshteam_imports_running", &[]);
    let a = metrics.running_import();
    let b = metrics.clone().running_import();
    assert_eq!(running(&metrics), 2.0);
    drop(a);
    assert_eq!(running(&metrics), 1.0);
    // A run that panics still releases its count.
    let m2 = metrics.clone();
    let _ = std::thread::spawn(move || {
        let _guard = m2.running_import();
        panic!("import blew up");
    })
    .join();
    assert_eq!(running(&metrics), 1.0);
    drop(b);
    assert_eq!(running(&metrics), 0.0);

    metrics.set_queue_depth(3);
    metrics.set_queue_depth(0);
    assert_eq!(
        parse(&metrics.encode()).get("freshteam_import_queue_depth", &[]),
        0.0
    );
}

#[test]
fn every_phase_and_trigger_is_a_label_value() {
    let metrics = Metrics::new();
    let phases = [
        ImportPhase::Pending,
        ImportPhase::Running,
        ImportPhase::Succeeded,
        ImportPhase::PartiallySucceeded,
        ImportPhase::Failed,
        ImportPhase::Interrupted,
        ImportPhase::Blocked,
    ];
    for phase in phases {
        let run = status(
            phase,
            ImportSummary::default(),
            None,
            "2025-03-04T03:00:00Z",
        );
        metrics.record_run(
            "ns",
            "i",
            ImportTrigger::Manual,
            &run,
            Duration::from_secs(1),
        );
    }
    let m = parse(&metrics.encode());
    for phase in phases {
        assert_eq!(
            m.get(
                "freshteam_imports_total",
                &[
                    ("namespace", "ns"),
                    ("integration", "i"),
                    ("phase", phase.as_str()),
                    ("trigger", "Manual")
                ]
            ),
            1.0
        );
    }
    // `forget` knows every combination it may have created.
    metrics.forget("ns", "i");
    assert!(parse(&metrics.encode())
        .series("freshteam_imports_total")
        .is_empty());
    assert_eq!(trigger_label(ImportTrigger::Preview), "Preview");
}

#[test]
fn log_format_parses_from_the_command_line() {
    use clap::ValueEnum;
    assert_eq!(LogFormat::from_str("json", true), Ok(LogFormat::Json));
    assert_eq!(LogFormat::from_str("text", true), Ok(LogFormat::Text));
    assert_eq!(LogFormat::default(), LogFormat::Text);
}

/// Collects what a subscriber writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn log_with(format: LogFormat, level: &str) -> String {
    let out = Captured::default();
    let writer = out.clone();
    let sub = super::subscriber(
        format,
        tracing_subscriber::EnvFilter::new(level),
        move || writer.clone(),
        false,
    );
    tracing::subscriber::with_default(sub, || {
        tracing::info!(namespace = "acme", integration = "staff", "import finished");
        tracing::debug!("not shown at info");
    });
    out.text()
}

#[test]
fn json_logs_are_one_object_per_line_with_fields_at_the_top() {
    let text = log_with(LogFormat::Json, "info");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["message"], "import finished");
    assert_eq!(v["namespace"], "acme");
    assert_eq!(v["integration"], "staff");
    assert!(v["timestamp"].is_string());

    let debug = log_with(LogFormat::Json, "debug");
    assert_eq!(debug.lines().count(), 2);
}

#[test]
fn text_logs_have_no_colour_codes_off_a_terminal() {
    let text = log_with(LogFormat::Text, "info");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("import finished"));
    assert!(text.contains("integration=\"staff\"") || text.contains("integration=staff"));
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

#[tokio::test]
async fn destination_requests_throttles_and_waits_are_reported_per_host() {
    let budget = crate::http_policy::budgets().budget(
        "metrics.example",
        "https://metrics.example/scim/v2",
        "/Users",
        4,
        None,
    );
    drop(budget.acquire().await);
    budget
        .acquire()
        .await
        .throttled_with(crate::http_policy::Hint::Reset(
            std::time::Duration::from_millis(300),
        ));
    // The next request waits for the window the 429 announced.
    drop(budget.acquire().await);
    let text = Metrics::new().encode();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{host=\"metrics.example\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert_eq!(line("freshteam_destination_requests_total"), 3.0);
    assert_eq!(line("freshteam_destination_throttled_total"), 1.0);
    let waited = line("freshteam_destination_budget_wait_seconds_total");
    assert!((0.2..5.0).contains(&waited), "{waited}");
}
