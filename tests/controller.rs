//! The reconciler against an in-process Kubernetes API (kube-fake-client), the project's
//! Freshteam simulator and a real SCIM 2.0 server, with an injectable clock.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use freshteam_operator::api::INTEGRATION_LABEL;
use freshteam_operator::api::*;
use freshteam_operator::clock::Clock;
use freshteam_operator::connect::HttpConnector;
use freshteam_operator::controller::runner::mark_interrupted;
use freshteam_operator::controller::shard::{ShardSelector, SHARD_LABEL};
use freshteam_operator::controller::{reconcile, Context, OperatorConfig};
use freshteam_operator::notify::{Mail, SmtpMailer, SmtpSettings};
use freshteam_simulator::{SimConfig, Simulator};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use support::smtp::SmtpServer;
use support::{Peer, ScimServer, TestClock};

const NS: &str = "hr";
const API_KEY: &str = "ft-ctrl-5d1e";

struct Harness {
    client: Client,
    ctx: Arc<Context>,
    clock: Arc<TestClock>,
    sim: Simulator,
    scim: ScimServer,
}

impl Harness {
    async fn new(
        employees: usize,
        allow_custom_endpoints: bool,
        edit: impl FnOnce(&mut FreshteamIntegrationSpec),
    ) -> Self {
        Self::with_mail(employees, allow_custom_endpoints, Mail::default(), edit).await
    }

    async fn with_mail(
        employees: usize,
        allow_custom_endpoints: bool,
        mail: Mail,
        edit: impl FnOnce(&mut FreshteamIntegrationSpec),
    ) -> Self {
        Self::on_peer(
            employees,
            allow_custom_endpoints,
            mail,
            Peer::Scim2Server,
            edit,
        )
        .await
    }

    async fn on_peer(
        employees: usize,
        allow_custom_endpoints: bool,
        mail: Mail,
        peer: Peer,
        edit: impl FnOnce(&mut FreshteamIntegrationSpec),
    ) -> Self {
        let sim = Simulator::start(SimConfig {
            employees,
            page_size: 9,
            api_key: API_KEY.into(),
            inactive_percent: 0.0,
            ..SimConfig::default()
        })
        .unwrap();
        let scim = ScimServer::start_peer(peer);
        let fti = support::integration(NS, "acme")
            .reading(&sim.base_url())
            .writing_to(&scim.url)
            .spec(edit)
            .build();
        let client = kube_fake_client::ClientBuilder::new()
            .with_resource::<FreshteamIntegration>()
            .with_status_subresource::<FreshteamIntegration>()
            .with_resource::<ImportRun>()
            .with_status_subresource::<ImportRun>()
            .with_resource::<IntegrationState>()
            .with_object(support::secret(NS, "freshteam-acme", "apiKey", API_KEY))
            .with_object(support::secret(NS, "members-scim", "token", &scim.token))
            .with_object(fti)
            .build()
            .await
            .expect("fake API");
        let clock = TestClock::at(Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap());
        let ctx = Arc::new(
            Context::new(
                client.clone(),
                clock.clone(),
                OperatorConfig {
                    allow_custom_endpoints,
                    max_concurrent_imports: 2,
                    progress_interval: Duration::from_millis(20),
                    ..OperatorConfig::default()
                },
                Arc::new(HttpConnector::default()),
                Some(Reporter {
                    controller: "freshteam-operator".into(),
                    instance: None,
                }),
                None,
            )
            .with_mail(mail),
        );
        Harness {
            client,
            ctx,
            clock,
            sim,
            scim,
        }
    }

    fn integrations(&self) -> Api<FreshteamIntegration> {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn fti(&self) -> FreshteamIntegration {
        self.integrations().get("acme").await.unwrap()
    }

    async fn status(&self) -> FreshteamIntegrationStatus {
        self.fti().await.status.unwrap_or_default()
    }

    /// One reconcile, then waits for any run it started.
    async fn reconcile(&self) {
        let fti = self.fti().await;
        reconcile(Arc::new(fti), self.ctx.clone())
            .await
            .expect("reconcile");
        self.ctx.wait_idle().await;
    }

    async fn runs(&self) -> Vec<ImportRun> {
        let api: Api<ImportRun> = Api::namespaced(self.client.clone(), NS);
        let mut runs = api.list(&ListParams::default()).await.unwrap().items;
        runs.sort_by_key(|r| r.name_any());
        runs
    }

    async fn edit(&self, patch: serde_json::Value) {
        self.integrations()
            .patch("acme", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    async fn publish(&self) {
        self.edit(json!({"metadata": {"generation": 2}, "spec": {"published": true}}))
            .await;
    }

    async fn annotate(&self, key: &str, value: &str) {
        self.edit(json!({"metadata": {"annotations": {key: value}}}))
            .await;
    }

    fn condition(status: &FreshteamIntegrationStatus, t: &str) -> (String, String, String) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap_or_else(|| panic!("no {t} condition"));
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }
}

fn phase(r: &ImportRun) -> ImportPhase {
    r.status.as_ref().unwrap().phase
}

#[tokio::test(flavor = "multi_thread")]
async fn unpublished_computes_a_preview_and_writes_nothing() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(20, true, |_| {}).await;
    h.reconcile().await;
    let runs = h.runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].spec.trigger, ImportTrigger::Preview);
    assert!(runs[0].spec.dry_run);
    assert_eq!(phase(&runs[0]), ImportPhase::Succeeded);
    assert_eq!(
        runs[0].labels().get(INTEGRATION_LABEL).map(String::as_str),
        Some("acme")
    );
    assert!(
        h.scim.users().await.is_empty(),
        "a preview wrote to the destination"
    );

    let status = h.status().await;
    let preview = status.preview.clone().unwrap();
    assert_eq!(preview.would_create, Some(20));
    assert_eq!(preview.phase, Some(ImportPhase::Succeeded));
    assert_eq!(preview.run_name, runs[0].name_any());
    let (s, reason, msg) = Harness::condition(&status, "Authorized");
    assert_eq!((s.as_str(), reason.as_str()), ("True", "Connected"));
    assert_eq!(msg, "Connected to 127.0.0.1 (20 employees)");
    assert_eq!(Harness::condition(&status, "Published").0, "False");
    assert_eq!(Harness::condition(&status, "Ready").0, "True");
    assert_eq!(status.next_import_time, None);

    // Same generation: no second preview.
    h.reconcile().await;
    assert_eq!(h.runs().await.len(), 1);

    // Publishing starts the schedule.
    h.publish().await;
    h.reconcile().await;
    let status = h.status().await;
    assert_eq!(Harness::condition(&status, "Published").0, "True");
    assert_eq!(
        status.next_import_time.as_deref(),
        Some("2026-07-02T03:00:00Z")
    );
    assert_eq!(h.runs().await.len(), 1);
}

/// Apply field managers of an object.
fn apply_managers(meta: &kube::api::ObjectMeta) -> Vec<String> {
    let mut managers: Vec<String> = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.operation.as_deref() == Some("Apply"))
        .filter_map(|e| e.manager.clone())
        .collect();
    managers.sort();
    managers
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_applies_its_status_under_its_own_field_managers() {
    let h = Harness::new(5, true, |_| {}).await;
    h.reconcile().await;
    let runs = h.runs().await;
    assert_eq!(phase(&runs[0]), ImportPhase::Succeeded);
    assert_eq!(
        apply_managers(&runs[0].metadata),
        ["freshteam-operator-run"]
    );
    let fti = h.fti().await;
    assert_eq!(
        apply_managers(&fti.metadata),
        ["freshteam-operator-last-import"]
    );
    assert_eq!(
        fti.status.unwrap().last_import.unwrap().run_name,
        runs[0].name_any()
    );
}

/// Polls the integration until `f` holds (the run works in the background).
async fn wait_status(h: &Harness, what: &str, f: impl Fn(&FreshteamIntegrationStatus) -> bool) {
    let held = support::wait_until(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async { f(&h.status().await).then_some(()) },
    );
    if held.await.is_some() {
        return;
    }
    panic!("timed out waiting for {what}: {:?}", h.status().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_preview_has_one_writer_and_never_shows_an_older_generations_counts() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(20, true, |_| {}).await;
    h.reconcile().await;
    assert_eq!(h.status().await.preview.unwrap().would_create, Some(20));

    // A spec change: generation 2 is previewed, slowly (slow enough that a loaded
    // machine still sees it running: at 150 ms it was sometimes over before the poll).
    h.sim.set_faults(freshteam_simulator::Faults {
        latency: Duration::from_millis(800),
        ..Default::default()
    });
    h.edit(json!({"metadata": {"generation": 2}, "spec": {"leavers": {"statuses": ["inactive", "terminated"]}}}))
        .await;
    reconcile(Arc::new(h.fti().await), h.ctx.clone())
        .await
        .expect("reconcile");
    wait_status(&h, "the running preview", |s| {
        s.preview.as_ref().and_then(|p| p.phase) == Some(ImportPhase::Running)
    })
    .await;
    // While it runs, generation 2 carries no counts (generation 1's 20 are not its).
    let running = h.status().await.preview.unwrap();
    assert_eq!(running.generation, Some(2));
    assert_eq!(
        (running.would_create, running.computed_at.as_deref()),
        (None, None),
        "{running:?}"
    );
    // What a watch cache holds while the run goes on.
    let stale = h.fti().await;
    h.ctx.wait_idle().await;
    let done = h.status().await.preview.unwrap();
    assert_eq!(
        (done.generation, done.would_create, done.phase),
        (Some(2), Some(20), Some(ImportPhase::Succeeded))
    );
    assert!(done.computed_at.is_some());

    // A reconcile of the stale copy (its Importing condition changes, so it writes
    // status) leaves the run's result alone and starts no second preview.
    h.sim.set_faults(Default::default());
    reconcile(Arc::new(stale), h.ctx.clone())
        .await
        .expect("reconcile");
    h.ctx.wait_idle().await;
    assert_eq!(h.status().await.preview.unwrap(), done);
    assert_eq!(h.runs().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_preview_is_recorded_without_counts_and_not_retried_in_a_loop() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(5, true, |_| {}).await;
    h.reconcile().await;
    // Generation 2 with a SCIM token the destination refuses: its preview fails.
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    secrets
        .replace(
            "members-scim",
            &PostParams::default(),
            &support::secret(NS, "members-scim", "token", "wrong-token"),
        )
        .await
        .unwrap();
    h.edit(json!({"metadata": {"generation": 2}, "spec": {"safety": {"maxLeaversPercent": 30}}}))
        .await;
    h.reconcile().await;
    let p = h.status().await.preview.unwrap();
    assert_eq!(
        (p.generation, p.phase),
        (Some(2), Some(ImportPhase::Failed))
    );
    assert_eq!(
        p.would_create, None,
        "a failed preview has no counts: {p:?}"
    );
    h.reconcile().await;
    assert_eq!(h.runs().await.len(), 2, "one preview per generation");
}

#[tokio::test(flavor = "multi_thread")]
async fn published_imports_at_the_schedule_and_records_last_import() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(15, true, |s| s.published = true).await;
    h.reconcile().await;
    assert!(
        h.runs().await.is_empty(),
        "publishing starts the schedule, not an import"
    );
    let status = h.status().await;
    assert_eq!(
        status.next_import_time.as_deref(),
        Some("2026-07-02T03:00:00Z")
    );

    h.clock
        .set(Utc.with_ymd_and_hms(2026, 7, 2, 3, 0, 0).unwrap());
    h.reconcile().await;
    let runs = h.runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].spec.trigger, ImportTrigger::Scheduled);
    let run_status = runs[0].status.clone().unwrap();
    assert_eq!(run_status.phase, ImportPhase::Succeeded);
    assert_eq!(run_status.summary.created, 15);
    assert_eq!(run_status.progress.unwrap().percent, 100);
    assert_eq!(h.scim.users().await.len(), 15);

    let status = h.status().await;
    let last = status.last_import.unwrap();
    assert_eq!(last.run_name, runs[0].name_any());
    assert_eq!(last.phase, ImportPhase::Succeeded);
    assert_eq!(last.summary.created, 15);
    assert_eq!(
        status.next_import_time.as_deref(),
        Some("2026-07-03T03:00:00Z")
    );

    // A later reconcile within the same slot starts nothing.
    h.clock.advance(60);
    h.reconcile().await;
    assert_eq!(h.runs().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_annotation_starts_exactly_one_manual_run() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(10, true, |s| s.published = true).await;
    h.reconcile().await;
    h.annotate(IMPORT_REQUESTED_AT, "2026-07-01T12:00:05Z")
        .await;
    h.reconcile().await;
    h.reconcile().await;
    h.reconcile().await;
    let runs = h.runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].spec.trigger, ImportTrigger::Manual);
    assert_eq!(phase(&runs[0]), ImportPhase::Succeeded);
    assert_eq!(
        h.status().await.last_handled_import_request.as_deref(),
        Some("2026-07-01T12:00:05Z")
    );
    // A new value: one more.
    h.clock.advance(5);
    h.annotate(IMPORT_REQUESTED_AT, "again").await;
    h.reconcile().await;
    assert_eq!(h.runs().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_secret_revokes_access_without_calling_freshteam() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(5, true, |_| {}).await;
    h.reconcile().await;
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    secrets
        .delete("freshteam-acme", &DeleteParams::default())
        .await
        .unwrap();
    h.sim.clear_requests();
    h.annotate(IMPORT_REQUESTED_AT, "now").await;
    h.reconcile().await;
    let status = h.status().await;
    let (s, reason, msg) = Harness::condition(&status, "Authorized");
    assert_eq!((s.as_str(), reason.as_str()), ("False", "SecretNotFound"));
    assert!(
        msg.contains("spec.source.apiKeySecretRef: Secret 'freshteam-acme' not found"),
        "{msg}"
    );
    assert!(
        h.sim.requests().is_empty(),
        "Freshteam was called without a Secret"
    );
    assert_eq!(h.runs().await.len(), 1, "only the earlier preview");
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_stops_calls_to_freshteam() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(5, true, |s| s.suspend = true).await;
    h.reconcile().await;
    let (s, reason, _) = Harness::condition(&h.status().await, "Authorized");
    assert_eq!((s.as_str(), reason.as_str()), ("False", "Suspended"));
    assert!(h.sim.requests().is_empty());
    assert!(h.runs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_is_reported_with_its_reason_and_an_event() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(5, true, |_| {}).await;
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    secrets
        .replace("freshteam-acme", &PostParams::default(), &{
            let mut s = support::secret(NS, "freshteam-acme", "apiKey", "wrong-key");
            s.metadata.resource_version = secrets
                .get("freshteam-acme")
                .await
                .unwrap()
                .resource_version();
            s
        })
        .await
        .unwrap();
    h.reconcile().await;
    let status = h.status().await;
    let (s, reason, msg) = Harness::condition(&status, "Authorized");
    assert_eq!(
        (s.as_str(), reason.as_str()),
        ("False", "InvalidCredentials")
    );
    assert!(!msg.contains("wrong-key"));
    assert!(h.runs().await.is_empty());
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(h.client.clone(), NS);
    let events = events.list(&ListParams::default()).await.unwrap().items;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("AuthorizationFailed")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn history_is_pruned_to_the_limits() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(4, true, |s| {
        s.published = true;
        s.history = HistorySpec {
            successful_runs_limit: 2,
            failed_runs_limit: 1,
        };
    })
    .await;
    h.reconcile().await;
    for i in 0..4 {
        h.clock.advance(1);
        h.annotate(IMPORT_REQUESTED_AT, &format!("req-{i}")).await;
        h.reconcile().await;
    }
    let runs = h.runs().await;
    assert_eq!(
        runs.len(),
        2,
        "{:?}",
        runs.iter().map(|r| r.name_any()).collect::<Vec<_>>()
    );
    assert!(runs.iter().all(|r| phase(r) == ImportPhase::Succeeded));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_run_applies_its_leavers_once_approved() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(10, true, |s| s.published = true).await;
    h.reconcile().await;
    h.annotate(IMPORT_REQUESTED_AT, "first").await;
    h.reconcile().await;
    assert_eq!(h.scim.users().await.len(), 10);

    for i in 1..=4 {
        h.sim
            .update_employee(&format!("E-{i:05}"), json!({"status": "inactive"}))
            .unwrap();
    }
    h.clock.advance(10);
    h.annotate(IMPORT_REQUESTED_AT, "second").await;
    h.reconcile().await;
    let blocked = h
        .runs()
        .await
        .into_iter()
        .find(|r| phase(r) == ImportPhase::Blocked)
        .expect("a Blocked run");
    let bs = blocked.status.clone().unwrap();
    assert_eq!(bs.leavers_awaiting_approval, Some(4));
    assert_eq!(bs.summary.leavers, 0);
    assert!(
        h.scim.users().await.iter().all(|u| u["active"] == true),
        "deactivated before approval"
    );
    assert_eq!(
        h.status().await.last_import.unwrap().phase,
        ImportPhase::Blocked
    );

    h.clock.advance(10);
    h.annotate(APPROVE_LEAVERS, &blocked.name_any()).await;
    h.reconcile().await;
    let last = h.status().await.last_import.unwrap();
    assert_eq!(last.phase, ImportPhase::Succeeded);
    assert_eq!(last.summary.leavers, 4);
    let inactive = h
        .scim
        .users()
        .await
        .iter()
        .filter(|u| u["active"] == false)
        .count();
    assert_eq!(inactive, 4);
    // The approval is handled once.
    h.clock.advance(10);
    h.reconcile().await;
    assert_eq!(h.runs().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn record_errors_go_to_a_report_configmap_owned_by_the_run() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(6, true, |s| s.published = true).await;
    h.sim
        .update_employee("E-00002", json!({"official_email": "broken"}))
        .unwrap();
    h.reconcile().await;
    h.annotate(IMPORT_REQUESTED_AT, "go").await;
    h.reconcile().await;
    let run = h.runs().await.pop().unwrap();
    let st = run.status.clone().unwrap();
    assert_eq!(st.phase, ImportPhase::PartiallySucceeded);
    assert_eq!(st.errors.len(), 1);
    let report = st.error_report.unwrap();
    assert_eq!(report.key, "errors.csv");
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), NS);
    let cm = cms.get(&report.config_map_name).await.unwrap();
    assert_eq!(cm.owner_references()[0].name, run.name_any());
    let csv = &cm.data.unwrap()["errors.csv"];
    assert!(
        csv.contains("E-00002") && csv.contains("invalid e-mail 'broken'"),
        "{csv}"
    );
    assert!(!csv.contains(API_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_configmap_the_run_does_not_own_is_never_overwritten() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(6, true, |s| s.published = true).await;
    h.sim
        .update_employee("E-00002", json!({"official_email": "broken"}))
        .unwrap();
    h.reconcile().await;
    // Someone's ConfigMap under the name the next run's report will take.
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), NS);
    let name = format!("acme-{}-errors", h.clock.now().format("%Y%m%d-%H%M%S"));
    let theirs: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": name, "namespace": NS}, "data": {"keep": "me"}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &theirs).await.unwrap();
    h.annotate(IMPORT_REQUESTED_AT, "go").await;
    h.reconcile().await;
    let run = h.runs().await.pop().unwrap();
    let st = run.status.unwrap();
    assert_eq!(st.error_report, None);
    let message = st.message.unwrap_or_default();
    assert!(
        message.contains(&format!(
            "the run's full report could not be stored: ConfigMap {name} already exists and is not this run's report"
        )),
        "{message}"
    );
    assert_eq!(
        cms.get(&name).await.unwrap().data.unwrap()["keep"],
        "me",
        "the ConfigMap was overwritten"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_orphaned_running_run_is_marked_interrupted() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(3, true, |s| s.published = true).await;
    let runs: Api<ImportRun> = Api::namespaced(h.client.clone(), NS);
    let mut orphan = ImportRun::new(
        "acme-orphan",
        ImportRunSpec {
            integration: "acme".into(),
            trigger: ImportTrigger::Scheduled,
            dry_run: false,
            employee_ids: Vec::new(),
        },
    );
    orphan.metadata.namespace = Some(NS.into());
    runs.create(&PostParams::default(), &orphan).await.unwrap();
    runs.patch_status(
        "acme-orphan",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "startTime": "2026-07-01T11:00:00Z"}})),
    )
    .await
    .unwrap();
    h.integrations()
        .patch_status(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"lastImport": {"runName": "acme-orphan", "phase": "Running"}}}),
            ),
        )
        .await
        .unwrap();

    let all: Api<ImportRun> = Api::all(h.client.clone());
    assert_eq!(mark_interrupted(&h.ctx, &all).await.unwrap(), 1);
    let r = runs.get("acme-orphan").await.unwrap();
    assert_eq!(phase(&r), ImportPhase::Interrupted);
    assert_eq!(
        h.status().await.last_import.unwrap().phase,
        ImportPhase::Interrupted
    );
    // The next run converges.
    h.reconcile().await;
    h.annotate(IMPORT_REQUESTED_AT, "after-crash").await;
    h.reconcile().await;
    assert_eq!(
        h.status().await.last_import.unwrap().phase,
        ImportPhase::Succeeded
    );
    assert_eq!(h.scim.users().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_cron_or_zone_is_a_condition_naming_the_field() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(3, true, |s| {
        s.schedule = "0 25 * * *".into();
        s.time_zone = Some("Mars/Base".into());
    })
    .await;
    h.reconcile().await;
    let status = h.status().await;
    let (s, reason, msg) = Harness::condition(&status, "MappingValid");
    assert_eq!((s.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(
        msg.contains("spec.schedule: '0 25 * * *' is not a valid cron expression"),
        "{msg}"
    );
    assert!(
        msg.contains("spec.timeZone: 'Mars/Base' is not an IANA time zone"),
        "{msg}"
    );
    assert_eq!(Harness::condition(&status, "Ready").0, "False");
    assert!(h.sim.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_endpoint_is_refused_without_the_flag() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(3, false, |_| {}).await;
    h.reconcile().await;
    let status = h.status().await;
    let (s, reason, msg) = Harness::condition(&status, "MappingValid");
    assert_eq!(
        (s.as_str(), reason.as_str()),
        ("False", "CustomEndpointRefused")
    );
    assert!(msg.contains("spec.source.baseUrl"), "{msg}");
    assert!(msg.contains("--allow-custom-endpoints"), "{msg}");
    assert!(h.sim.requests().is_empty(), "a refused endpoint was called");
    assert!(h.runs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reward_gateway_profile_lists_refused_names_in_the_preview_without_a_request() {
    support::require_peers!(Scim2Server, PythonPeers);
    let peer = Peer::RewardGateway {
        limit: 1000,
        window: Duration::from_secs(60),
    };
    let h = Harness::on_peer(6, true, Mail::default(), peer, |s| {
        s.destination.scim.profile = ScimProfile::RewardGateway;
        s.mapping.first_name = Some("first_name".into());
        s.mapping.last_name = Some("last_name".into());
    })
    .await;
    for (id, patch) in [
        ("E-00002", json!({"first_name": "R2-D2"})),
        ("E-00004", json!({"last_name": "O<Brien"})),
    ] {
        h.sim.update_employee(id, patch).unwrap();
    }
    h.reconcile().await;
    let preview = h.status().await.preview.unwrap();
    assert_eq!(preview.phase, Some(ImportPhase::PartiallySucceeded));
    assert_eq!((preview.would_create, preview.errors), (Some(4), Some(2)));
    let runs = h.runs().await;
    let rows = runs[0].status.as_ref().unwrap().errors.clone();
    let row = |id: &str| {
        rows.iter()
            .find(|r| r.employee_id.as_deref() == Some(id))
            .unwrap()
    };
    assert_eq!(row("E-00002").field.as_deref(), Some("firstName"));
    assert!(row("E-00002")
        .message
        .starts_with("Reward Gateway refuses first names with characters other than letters"));
    assert_eq!(row("E-00004").field.as_deref(), Some("lastName"));
    assert!(row("E-00004").message.ends_with("\"O<Brien\" has \"<\""));
    assert_eq!(h.scim.stats().await.totals.status(400), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reward_gateway_profile_names_a_scim_url_of_the_wrong_form() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(3, true, |s| {
        s.destination.scim.profile = ScimProfile::RewardGateway;
    })
    .await;
    h.reconcile().await;
    let status = h.status().await;
    let (s, reason, msg) = Harness::condition(&status, "MappingValid");
    assert_eq!((s.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(
        msg.starts_with("spec.destination.scim.url: 'http://127.0.0.1:")
            && msg.contains("/v2' has no /scim/v2 after the programme GUID; it should look like https://api.rewardgateway.net/{programme GUID}/scim/v2"),
        "{msg}"
    );
    assert!(h.sim.requests().is_empty());
    assert!(h.runs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_by_the_service_is_kept_in_the_integrations_state_and_not_sent_again() {
    support::require_peers!(Scim2Server, PythonPeers);
    let peer = Peer::RewardGateway {
        limit: 1000,
        window: Duration::from_secs(60),
    };
    let h = Harness::on_peer(4, true, Mail::default(), peer, |s| {
        s.published = true;
        s.mapping.first_name = Some("first_name".into());
    })
    .await;
    h.sim
        .update_employee("E-00003", json!({"first_name": "R2-D2"}))
        .unwrap();
    h.reconcile().await;
    for (n, request) in ["first", "second"].into_iter().enumerate() {
        h.clock.advance(5);
        h.annotate(IMPORT_REQUESTED_AT, request).await;
        h.reconcile().await;
        let runs = h.runs().await;
        let status = runs[n].status.clone().unwrap();
        assert_eq!(status.phase, ImportPhase::PartiallySucceeded, "{request}");
        let row = status
            .errors
            .iter()
            .find(|r| r.employee_id.as_deref() == Some("E-00003"))
            .unwrap();
        match n {
            0 => assert!(
                row.message
                    .contains("the destination answered 400 invalidValue"),
                "{}",
                row.message
            ),
            _ => assert!(
                row.message
                    .starts_with("refused by the destination on 2026-07-01: 400 invalidValue")
                    && row
                        .message
                        .ends_with("; not sent again until it changes in Freshteam"),
                "{}",
                row.message
            ),
        }
    }
    assert_eq!(
        h.scim.stats().await.totals.status(400),
        1,
        "the refused member was sent once"
    );
}

/// What the discovery documents said is kept in the integration's state: the second
/// run of the day connects without reading them.
#[tokio::test(flavor = "multi_thread")]
async fn the_discovery_documents_are_read_by_the_first_run_only() {
    support::require_peers!(Scim2Server, PythonPeers);
    let peer = Peer::RewardGateway {
        limit: 1000,
        window: Duration::from_secs(60),
    };
    let h = Harness::on_peer(4, true, Mail::default(), peer, |s| s.published = true).await;
    h.reconcile().await;
    let documents = ["/ServiceProviderConfig", "/Schemas", "/ResourceTypes"];
    for (n, request) in ["first", "second"].into_iter().enumerate() {
        h.scim.reset_stats().await;
        h.clock.advance(5);
        h.annotate(IMPORT_REQUESTED_AT, request).await;
        h.reconcile().await;
        let runs = h.runs().await;
        let status = runs[n].status.clone().unwrap();
        assert_eq!(
            status.phase,
            ImportPhase::Succeeded,
            "{request}: {status:?}"
        );
        let stats = h.scim.stats().await;
        let read: Vec<u64> = documents
            .iter()
            .map(|d| stats.endpoint(d).requests)
            .collect();
        let expected = if n == 0 { [1, 1, 1] } else { [0, 0, 0] };
        assert_eq!(read, expected, "{request} run: {stats:?}");
    }
}

/// E-mail through `smtp`, sent as rewards@acme.example.
fn mail_through(smtp: &SmtpServer) -> Mail {
    let settings = SmtpSettings::parse(&smtp.url(), "rewards@acme.example").unwrap();
    Mail {
        transport: Some(Arc::new(SmtpMailer::new(settings).unwrap())),
        ..Mail::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invitations_are_sent_once_through_the_outbox_in_the_integrations_state() {
    support::require_peers!(Scim2Server, Aiosmtpd);
    let smtp = SmtpServer::start();
    let h = Harness::with_mail(7, true, mail_through(&smtp), |s| {
        s.published = true;
        s.welcome_email.enabled = true;
        s.notifications.recipients = vec!["hr-admin@acme.example".into()];
    })
    .await;
    h.reconcile().await;
    h.annotate(IMPORT_REQUESTED_AT, "one").await;
    h.reconcile().await;
    let run = h.runs().await.pop().unwrap();
    assert_eq!(run.status.as_ref().unwrap().summary.invitations_sent, 7);
    let states: Api<IntegrationState> = Api::namespaced(h.client.clone(), NS);
    let outbox = states
        .get("acme-invitations")
        .await
        .expect("the outbox IntegrationState");
    assert_eq!(outbox.owner_references()[0].name, "acme");
    assert_eq!(outbox.spec.state, StateKind::Invitations);
    assert_eq!(
        smtp.wait_for(8, Duration::from_secs(10)).len(),
        8,
        "7 invitations and a summary"
    );

    h.clock.advance(5);
    h.annotate(IMPORT_REQUESTED_AT, "two").await;
    h.reconcile().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.count(), 8, "a second run sent e-mail again");
}

/// Rewrites the integration's state as the previous version kept it (ConfigMaps of the
/// same names, `state.json` in object 0) and removes its IntegrationStates.
async fn move_state_back_to_configmaps(client: &Client) -> Vec<String> {
    let states: Api<IntegrationState> = Api::namespaced(client.clone(), NS);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let mut moved = Vec::new();
    for s in states.list(&ListParams::default()).await.unwrap() {
        assert_eq!(s.spec.parts, Some(1), "small states fit in one object");
        let entries: serde_json::Value = serde_json::from_str(&s.spec.entries).unwrap();
        // Earlier versions kept no incremental cursor with the ledger.
        let mut meta = s.spec.meta.clone();
        if let Some(m) = meta.as_object_mut() {
            m.remove("cursor");
            if m.is_empty() {
                meta = serde_json::Value::Null;
            }
        }
        let head = json!({"objects": 1, "meta": meta, "entries": entries});
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(s.name_any()),
                owner_references: Some(s.owner_references().to_vec()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "state.json".to_string(),
                head.to_string(),
            )])),
            ..ConfigMap::default()
        };
        cms.create(&PostParams::default(), &cm).await.unwrap();
        states
            .delete(&s.name_any(), &DeleteParams::default())
            .await
            .unwrap();
        moved.push(s.name_any());
    }
    moved
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_moves_the_ledger_and_outbox_from_configmaps_and_loses_nobody() {
    support::require_peers!(Scim2Server, Aiosmtpd);
    let smtp = SmtpServer::start();
    let h = Harness::with_mail(7, true, mail_through(&smtp), |s| {
        s.published = true;
        s.welcome_email.enabled = true;
    })
    .await;
    h.reconcile().await;
    h.annotate(IMPORT_REQUESTED_AT, "one").await;
    h.reconcile().await;
    assert_eq!(smtp.wait_for(7, Duration::from_secs(10)).len(), 7);
    // The state as an earlier version left it: ledger and outbox in ConfigMaps.
    let moved = move_state_back_to_configmaps(&h.client).await;
    for name in ["acme-ledger", "acme-invitations"] {
        assert!(moved.iter().any(|m| m == name), "{moved:?}");
    }

    // Deleted for good in Freshteam: only the ledger knows this member was ours.
    assert!(h.sim.remove_employee("E-00003"));
    h.clock.advance(5);
    h.annotate(IMPORT_REQUESTED_AT, "two").await;
    h.reconcile().await;
    let run = h.runs().await.pop().unwrap();
    let summary = run.status.unwrap().summary;
    assert_eq!(
        (summary.leavers, summary.created, summary.invitations_sent),
        (1, 0, 0),
        "{summary:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.count(), 7, "the moved outbox sent an invitation again");
    let states: Api<IntegrationState> = Api::namespaced(h.client.clone(), NS);
    for name in ["acme-ledger", "acme-invitations"] {
        let s = states.get(name).await.expect("the state moved back");
        assert_eq!(s.owner_references()[0].name, "acme");
        assert_eq!(s.spec.entry_count, 7, "{name}");
    }
}

/// An integration reading the harness's simulator and writing to its SCIM server.
fn integration(
    name: &str,
    h: &Harness,
    labels: &[(&str, &str)],
    edit: impl FnOnce(&mut FreshteamIntegrationSpec),
) -> FreshteamIntegration {
    support::integration(NS, name)
        .reading(&h.sim.base_url())
        .writing_to(&h.scim.url)
        .labels(labels)
        .spec(edit)
        .build()
}

fn shard_context(h: &Harness, selector: &str, config: OperatorConfig) -> Arc<Context> {
    Arc::new(
        Context::new(
            h.client.clone(),
            h.clock.clone(),
            config,
            Arc::new(HttpConnector::default()),
            None,
            None,
        )
        .with_shard(Some(ShardSelector::parse(selector).unwrap())),
    )
}

async fn runs_of(h: &Harness, integration: &str) -> usize {
    h.runs()
        .await
        .iter()
        .filter(|r| r.spec.integration == integration)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_shards_reconcile_only_their_own_and_a_moved_integration_runs_once() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(4, true, |s| s.published = true).await;
    h.integrations()
        .create(
            &PostParams::default(),
            &integration("beta", &h, &[(SHARD_LABEL, "a")], |s| s.published = true),
        )
        .await
        .unwrap();
    let config = || OperatorConfig {
        allow_custom_endpoints: true,
        ..OperatorConfig::default()
    };
    let shard_a = shard_context(&h, &format!("{SHARD_LABEL}=a"), config());
    let default = shard_context(&h, &format!("{SHARD_LABEL} notin (a)"), config());
    let reconcile_all = |ctx: Arc<Context>| {
        let api = h.integrations();
        async move {
            for name in ["acme", "beta"] {
                let fti = api.get(name).await.unwrap();
                reconcile(Arc::new(fti), ctx.clone()).await.unwrap();
            }
            ctx.wait_idle().await;
        }
    };
    for (name, value) in [("acme", "req-1"), ("beta", "req-1")] {
        h.integrations()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {IMPORT_REQUESTED_AT: value}}})),
            )
            .await
            .unwrap();
    }
    // Shard a alone: only beta runs.
    reconcile_all(shard_a.clone()).await;
    assert_eq!(
        (runs_of(&h, "acme").await, runs_of(&h, "beta").await),
        (0, 1)
    );
    assert!(
        h.status().await.conditions.is_empty(),
        "shard a touched acme's status"
    );
    // The default shard: acme runs, beta is not touched again.
    reconcile_all(default.clone()).await;
    assert_eq!(
        (runs_of(&h, "acme").await, runs_of(&h, "beta").await),
        (1, 1)
    );

    // Move acme to shard a, with a new request: exactly one run, by its new shard.
    h.edit(json!({"metadata": {"labels": {SHARD_LABEL: "a"}, "annotations": {IMPORT_REQUESTED_AT: "req-2"}}})).await;
    h.clock.advance(5);
    reconcile_all(default.clone()).await;
    reconcile_all(shard_a.clone()).await;
    reconcile_all(default.clone()).await;
    reconcile_all(shard_a.clone()).await;
    assert_eq!(runs_of(&h, "acme").await, 2);
    assert_eq!(
        h.status().await.last_handled_import_request.as_deref(),
        Some("req-2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_still_going_on_the_old_shard_holds_back_the_new_one() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(3, true, |s| s.published = true).await;
    let runs: Api<ImportRun> = Api::namespaced(h.client.clone(), NS);
    let mut foreign = ImportRun::new(
        "acme-elsewhere",
        ImportRunSpec {
            integration: "acme".into(),
            trigger: ImportTrigger::Manual,
            dry_run: false,
            employee_ids: Vec::new(),
        },
    );
    foreign.metadata.namespace = Some(NS.into());
    foreign.metadata.labels = Some(BTreeMap::from([(
        INTEGRATION_LABEL.to_string(),
        "acme".to_string(),
    )]));
    runs.create(&PostParams::default(), &foreign).await.unwrap();
    runs.patch_status(
        "acme-elsewhere",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    h.reconcile().await;
    h.annotate(IMPORT_REQUESTED_AT, "now").await;
    h.reconcile().await;
    assert_eq!(
        h.runs().await.len(),
        1,
        "a second run started beside one still going"
    );
    runs.patch_status(
        "acme-elsewhere",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
    h.reconcile().await;
    assert_eq!(
        h.runs().await.len(),
        2,
        "the request waiting for that run was not honoured"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_integrations_share_one_accounts_quota_and_the_small_ones_finish_first() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(40, true, |_| {}).await;
    // 10 requests per half-second window for the whole account.
    h.sim.set_rate_limit(Some(10), Duration::from_millis(500));
    // The big one also needs a detail call per employee (a custom field).
    h.integrations()
        .create(
            &PostParams::default(),
            &integration("big", &h, &[], |s| {
                s.mapping.employee_number = Some("custom_field_values.cost_center".into())
            }),
        )
        .await
        .unwrap();
    for i in 0..9 {
        h.integrations()
            .create(
                &PostParams::default(),
                &integration(&format!("small-{i}"), &h, &[], |_| {}),
            )
            .await
            .unwrap();
    }
    let ctx = shard_context(
        &h,
        &format!("{SHARD_LABEL} notin (x)"),
        OperatorConfig {
            allow_custom_endpoints: true,
            max_concurrent_imports: 10,
            max_imports_per_account: 10,
            max_imports_per_destination: 10,
            progress_interval: Duration::from_millis(50),
            ..OperatorConfig::default()
        },
    );
    h.sim.clear_requests();
    let mut names = vec!["big".to_string()];
    names.extend((0..9).map(|i| format!("small-{i}")));
    // All ten start together, as after an operator restart.
    let starts = names.iter().map(|name| {
        let api = h.integrations();
        let ctx = ctx.clone();
        async move {
            let fti = api.get(name).await.unwrap();
            reconcile(Arc::new(fti), ctx).await.unwrap();
        }
    });
    futures::future::join_all(starts).await;
    // Record the order in which the previews finish.
    let mut finished: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while finished.len() < names.len() && std::time::Instant::now() < deadline {
        for r in h.runs().await {
            let done = r.status.as_ref().is_some_and(|s| s.phase.is_final());
            if done && !finished.contains(&r.spec.integration) {
                finished.push(r.spec.integration.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ctx.wait_idle().await;
    assert_eq!(finished.len(), 10, "{finished:?}");
    assert_eq!(
        finished.last().map(String::as_str),
        Some("big"),
        "{finished:?}"
    );
    for r in h.runs().await {
        assert_eq!(
            r.status.unwrap().phase,
            ImportPhase::Succeeded,
            "{}",
            r.spec.integration
        );
    }
    // One limiter for the account: at most one throttled probe per window.
    let throttled = h.sim.throttled_calls_per_window();
    for (window, n) in &throttled {
        assert!(
            *n <= 1,
            "{n} throttled calls in window {window}: the account's quota was fought over"
        );
    }
}

/// How a running import is stopped, and the reason its run must give.
enum StopBy {
    Suspend,
    SecretDeletion,
    IntegrationDeletion,
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_secret_or_integration_deletion_stops_a_slow_import_within_one_page() {
    support::require_peers!(Scim2Server);
    use freshteam_simulator::Faults;
    // 90 employees, 9 a page: 10 pages, each answered after `latency`.
    let latency = Duration::from_millis(1000);
    for (by, reason) in [
        (StopBy::Suspend, "spec.suspend was set to true"),
        (StopBy::SecretDeletion, "freshteam-acme"),
        (StopBy::IntegrationDeletion, "the integration was deleted"),
    ] {
        let h = Harness::new(90, true, |s| s.published = true).await;
        h.reconcile().await;
        let before: Vec<String> = h.runs().await.iter().map(|r| r.name_any()).collect();
        h.sim.set_faults(Faults {
            latency,
            ..Faults::default()
        });
        h.sim.clear_requests();
        h.annotate(IMPORT_REQUESTED_AT, "slow").await;
        reconcile(Arc::new(h.fti().await), h.ctx.clone())
            .await
            .unwrap();
        // Under way: page 1 answered, the next pages asked for.
        let waited = std::time::Instant::now();
        while h.sim.count("/api/employees") < 2 {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "the run never read"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let asked = std::time::Instant::now();
        match by {
            StopBy::Suspend => h.edit(json!({"spec": {"suspend": true}})).await,
            StopBy::SecretDeletion => {
                let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NS);
                secrets
                    .delete("freshteam-acme", &DeleteParams::default())
                    .await
                    .unwrap();
            }
            StopBy::IntegrationDeletion => {
                h.integrations()
                    .delete("acme", &DeleteParams::default())
                    .await
                    .unwrap();
            }
        }
        if !matches!(by, StopBy::IntegrationDeletion) {
            reconcile(Arc::new(h.fti().await), h.ctx.clone())
                .await
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), h.ctx.wait_idle())
            .await
            .expect("the run ended");
        let took = asked.elapsed();
        assert!(
            took < latency,
            "{reason}: took {took:?}, a page takes {latency:?}"
        );
        let pages = h.sim.count("/api/employees");
        assert!(pages < 10, "{reason}: all {pages} pages were read");
        tokio::time::sleep(latency * 2).await;
        assert_eq!(
            h.sim.count("/api/employees"),
            pages,
            "requests after the stop"
        );
        assert!(h.scim.users().await.is_empty(), "{reason}: wrote members");

        let runs: Api<ImportRun> = Api::namespaced(h.client.clone(), NS);
        let run = runs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|r| !before.contains(&r.name_any()));
        let run = match (run, &by) {
            (Some(run), _) => run,
            // Deleted with its owner (the fake API collects owned objects at once).
            (None, StopBy::IntegrationDeletion) => continue,
            (None, _) => panic!("{reason}: no new run besides {before:?}"),
        };
        let status = run.status.unwrap();
        assert_eq!(status.phase, ImportPhase::Interrupted, "{reason}");
        let message = status.message.unwrap_or_default();
        assert!(
            message.starts_with("Interrupted: ") && message.contains(reason),
            "{message}"
        );
        assert!(status.completion_time.is_some());
        if !matches!(by, StopBy::IntegrationDeletion) {
            let last = h.status().await.last_import.unwrap();
            assert_eq!(last.phase, ImportPhase::Interrupted);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_integration_name_too_long_for_a_label_is_named_precisely() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(3, true, |_| {}).await;
    let long = "a".repeat(64);
    let fti = integration(&long, &h, &[], |_| {});
    let created = h
        .integrations()
        .create(&PostParams::default(), &fti)
        .await
        .unwrap();
    reconcile(Arc::new(created), h.ctx.clone()).await.unwrap();
    h.ctx.wait_idle().await;
    let status = h.integrations().get(&long).await.unwrap().status.unwrap();
    let (s, reason, message) = Harness::condition(&status, "MappingValid");
    assert_eq!((s.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert_eq!(
        message,
        format!("metadata.name: '{long}' is 64 characters long; an integration name may have at most 63, because it labels every ImportRun (label values stop at 63)")
    );
    let runs: Api<ImportRun> = Api::namespaced(h.client.clone(), NS);
    assert!(runs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leaver_approval_counts_only_for_the_integrations_own_blocked_run() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(10, true, |s| s.published = true).await;
    h.reconcile().await;
    h.annotate(IMPORT_REQUESTED_AT, "first").await;
    h.reconcile().await;
    assert_eq!(h.scim.users().await.len(), 10);
    for i in 1..=4 {
        h.sim
            .update_employee(&format!("E-{i:05}"), json!({"status": "inactive"}))
            .unwrap();
    }

    // Another integration's Blocked run in the same namespace, approving 4 leavers.
    let runs: Api<ImportRun> = Api::namespaced(h.client.clone(), NS);
    let foreign = ImportRun::new(
        "other-20260701-1200",
        ImportRunSpec {
            integration: "other".into(),
            trigger: ImportTrigger::Manual,
            dry_run: false,
            employee_ids: Vec::new(),
        },
    );
    runs.create(&PostParams::default(), &foreign).await.unwrap();
    runs.patch_status(
        "other-20260701-1200",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Blocked", "leaversAwaitingApproval": 4}})),
    )
    .await
    .unwrap();

    h.clock.advance(10);
    h.annotate(APPROVE_LEAVERS, "other-20260701-1200").await;
    h.reconcile().await;
    let last = h.status().await.last_import.unwrap();
    assert_eq!(
        last.phase,
        ImportPhase::Blocked,
        "another integration's approval applied"
    );
    assert!(
        h.scim.users().await.iter().all(|u| u["active"] == true),
        "deactivated on a foreign approval"
    );

    // Its own Blocked run's approval still works.
    h.clock.advance(10);
    h.annotate(APPROVE_LEAVERS, &last.run_name).await;
    h.reconcile().await;
    let last = h.status().await.last_import.unwrap();
    assert_eq!(last.phase, ImportPhase::Succeeded);
    assert_eq!(last.summary.leavers, 4);
}
#[tokio::test(flavor = "multi_thread")]
async fn targets_the_destination_does_not_keep_show_as_a_condition() {
    support::require_peers!(Scim2Server, Scimmy);
    let condition = |status: &FreshteamIntegrationStatus| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "DestinationSupportsMapping")
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    for (peer, expected) in [
        (Peer::Scim2Server, None),
        (Peer::Scimmy, Some("department")),
    ] {
        let h = Harness::on_peer(5, true, Mail::default(), peer, |_| {}).await;
        h.reconcile().await; // the preview run
        assert_eq!(h.runs().await.len(), 1);
        h.reconcile().await;
        let status = h.status().await;
        let mapping_valid = status.conditions.iter().find(|c| c.type_ == "MappingValid");
        assert_eq!(mapping_valid.unwrap().status, "True");
        let (state, reason, message) = condition(&status).expect("set after a run");
        match expected {
            None => assert_eq!(
                (state.as_str(), reason.as_str()),
                ("True", "AllTargetsKept")
            ),
            Some(target) => {
                assert_eq!(
                    (state.as_str(), reason.as_str()),
                    ("False", "TargetsNotKept")
                );
                assert!(message.contains(target), "{message}");
                assert_eq!(
                    status.last_import.unwrap().unsupported_mapping_targets,
                    Some(vec![target.to_string()])
                );
            }
        }
    }
}

/// Authorization requests the simulator received (each authorization reads page 1).
fn authorization_requests(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path == "/api/employees")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn settling_many_integrations_spreads_their_authorizations_under_one_rate() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(5, true, |_| {}).await;
    let names: Vec<String> = (0..25).map(|i| format!("team-{i}")).collect();
    for name in &names {
        h.integrations()
            .create(
                &PostParams::default(),
                &integration(name, &h, &[], |s| {
                    s.published = true;
                    s.schedule = "weekly".into();
                }),
            )
            .await
            .unwrap();
    }
    let operator = |h: &Harness| {
        Arc::new(Context::new(
            h.client.clone(),
            h.clock.clone(),
            OperatorConfig {
                allow_custom_endpoints: true,
                authorizations_per_second: 10.0,
                ..OperatorConfig::default()
            },
            Arc::new(HttpConnector::default()),
            None,
            None,
        ))
    };
    let ctx = operator(&h);
    let reconcile_all = |ctx: Arc<Context>| {
        let api = h.integrations();
        let names = names.clone();
        async move {
            // All at once, as after a restart.
            futures::future::join_all(names.iter().map(|name| {
                let (api, ctx) = (api.clone(), ctx.clone());
                async move {
                    let fti = api.get(name).await.unwrap();
                    reconcile(Arc::new(fti), ctx).await.unwrap();
                }
            }))
            .await;
        }
    };
    let authorized = |s: &FreshteamIntegrationStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Authorized")
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
            .unwrap()
    };
    let statuses = || async {
        let mut out = Vec::new();
        for name in &names {
            out.push(h.integrations().get(name).await.unwrap().status.unwrap());
        }
        out
    };

    h.sim.clear_requests();
    reconcile_all(ctx.clone()).await;
    // One second's worth at once; the rest wait, and say so.
    assert_eq!(authorization_requests(&h.sim), 10);
    let now = statuses().await;
    let connected = now.iter().filter(|s| authorized(s).0 == "True").count();
    assert_eq!(connected, 10);
    let waiting: Vec<_> = now.iter().filter(|s| authorized(s).0 != "True").collect();
    assert_eq!(waiting.len(), 15);
    for s in &waiting {
        let (status, reason, message) = authorized(s);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("Unknown", "AwaitingAuthorization")
        );
        assert!(
            message.contains("at most 10 per second")
                && (message.contains("due at 2026-07-01T12:00:01Z")
                    || message.contains("due at 2026-07-01T12:00:02Z")),
            "{message}"
        );
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "AwaitingAuthorization")
        );
    }
    // Reconciled again before their turn (their own status write does that): no call,
    // no new turn, no status change.
    reconcile_all(ctx.clone()).await;
    assert_eq!(authorization_requests(&h.sim), 10);
    assert_eq!(statuses().await, now);

    // 100 ms apart: ten more per second.
    h.clock.advance(1);
    reconcile_all(ctx.clone()).await;
    assert_eq!(authorization_requests(&h.sim), 20);
    h.clock.advance(1);
    reconcile_all(ctx.clone()).await;
    assert_eq!(authorization_requests(&h.sim), 25);
    for s in statuses().await {
        let (status, reason, message) = authorized(&s);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "Connected"),
            "{message}"
        );
    }

    // A restart with nothing changed authorizes nobody again.
    reconcile_all(operator(&h)).await;
    assert_eq!(authorization_requests(&h.sim), 25);
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_between_full_reconciliations_are_incremental_and_the_annotation_asks_for_a_full_one()
{
    support::require_peers!(Scim2Server);
    let h = Harness::new(7, true, |s| s.published = true).await;
    h.reconcile().await;
    h.annotate(IMPORT_REQUESTED_AT, "one").await;
    h.reconcile().await;
    let first = h.runs().await.pop().unwrap().status.unwrap();
    assert_eq!(first.mode, Some(ImportMode::Full));
    assert!(
        first.mode_reason.as_deref().unwrap().contains("first run"),
        "{first:?}"
    );

    h.sim
        .update_employee("E-00002", json!({"designation": "Head of Kites"}))
        .unwrap();
    h.clock.advance(5);
    h.annotate(IMPORT_REQUESTED_AT, "two").await;
    h.reconcile().await;
    let second = h.runs().await.pop().unwrap().status.unwrap();
    assert_eq!(second.mode, Some(ImportMode::Incremental), "{second:?}");
    assert_eq!(second.summary.updated, 1, "{second:?}");
    let calls = second.api_calls.unwrap();
    assert!(calls.destination_lookups >= 1, "{calls:?}");

    h.clock.advance(5);
    h.annotate(FULL_RECONCILE_REQUESTED_AT, "now please").await;
    h.reconcile().await;
    let runs = h.runs().await;
    assert_eq!(runs.len(), 3, "the annotation started a run");
    let third = runs.last().unwrap().status.clone().unwrap();
    assert_eq!(third.mode, Some(ImportMode::Full), "{third:?}");
    assert_eq!(third.summary.unchanged, 7, "{third:?}");
    assert_eq!(
        h.status()
            .await
            .last_handled_full_reconcile_request
            .as_deref(),
        Some("now please")
    );
    // Handled once: the next reconcile starts nothing.
    h.reconcile().await;
    assert_eq!(h.runs().await.len(), 3);
}

/// Log output captured as JSON lines.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread: the logger set here is this thread's, and the runs run on it too.
#[tokio::test]
async fn two_imports_at_once_each_log_line_names_its_own_run_and_no_credential() {
    support::require_peers!(Scim2Server);
    // A second dispatcher alive for the whole test: while only one is registered, tracing
    // takes each log line's interest from the first thread to reach it, and another
    // test's thread (without a logger) would switch the line off for this one too.
    let _anchor = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let logs = Logs::default();
    let writer = logs.clone();
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .json()
            .with_env_filter("freshteam_operator=debug")
            .with_writer(move || writer.clone())
            .finish(),
    );
    let h = Harness::new(3, true, |_| {}).await;
    h.integrations()
        .create(
            &PostParams::default(),
            &integration("beta", &h, &[], |_| {}),
        )
        .await
        .unwrap();
    // Both unpublished: each reconcile starts a preview, and both run at once.
    for fti in h.integrations().list(&ListParams::default()).await.unwrap() {
        reconcile(Arc::new(fti), h.ctx.clone())
            .await
            .expect("reconcile");
    }
    h.ctx.wait_idle().await;
    let runs: BTreeMap<String, String> = h
        .runs()
        .await
        .iter()
        .map(|r| (r.spec.integration.clone(), r.name_any()))
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let mut runs_seen = BTreeMap::new();
    let mut reconciles_seen = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        if v["fields"]["message"] != "Freshteam request" {
            continue;
        }
        let span = &v["span"];
        let integration = span["integration"].as_str().unwrap_or_default().to_string();
        assert_eq!(span["namespace"], NS, "{line}");
        match span["name"].as_str() {
            Some("import_run") => {
                assert_eq!(span["run"], runs[&integration], "{line}");
                assert_eq!(span["trigger"], "Preview", "{line}");
                runs_seen.insert(integration, span["run"].clone());
            }
            // Authorizing, before the run.
            Some("reconcile") => reconciles_seen.push(integration),
            _ => panic!("a Freshteam request logged outside a reconcile and a run: {line}"),
        }
    }
    assert_eq!(runs_seen.len(), 2, "{text}");
    reconciles_seen.sort();
    reconciles_seen.dedup();
    assert_eq!(reconciles_seen, ["acme", "beta"], "{text}");
    assert!(!text.contains(API_KEY), "the API key is in the logs");
    assert!(
        !text.contains(&h.scim.token),
        "the SCIM token is in the logs"
    );
}

/// The JSON log lines written while `work` runs on this thread (the operator's format:
/// fields at the top level), at `info` as the chart sets it.
async fn logged<F: std::future::Future>(work: F) -> (F::Output, Vec<serde_json::Value>) {
    // See `two_imports_at_once_…`: a second dispatcher keeps other threads from switching
    // this thread's lines off.
    let _anchor = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let logs = Logs::default();
    let writer = logs.clone();
    let out = {
        let _logging = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_env_filter("info")
                .with_writer(move || writer.clone())
                .finish(),
        );
        work.await
    };
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    (out, lines)
}

// One thread: the logger set here is this thread's, and the run runs on it too.
#[tokio::test]
async fn a_scheduled_run_logs_its_start_and_its_end_with_counts_and_no_credential() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(15, true, |s| s.published = true).await;
    h.reconcile().await;
    h.clock
        .set(Utc.with_ymd_and_hms(2026, 7, 2, 3, 0, 0).unwrap());
    let ((), lines) = logged(async {
        h.reconcile().await;
        h.ctx.wait_idle().await;
    })
    .await;
    let run = h.runs().await.pop().expect("the scheduled run").name_any();
    let of_run: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "import_run" && l["span"]["run"] == run.as_str())
        .collect();
    let line = |message: &str| {
        of_run
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no '{message}' line: {lines:#?}"))
    };
    let started = line("import run started");
    assert_eq!(started["span"]["trigger"], "Scheduled", "{started}");
    assert_eq!(started["span"]["integration"], "acme", "{started}");
    assert_eq!(started["mode"], "Full", "{started}");
    let ended = line("import run finished");
    assert_eq!(
        (
            &ended["level"],
            &ended["phase"],
            &ended["created"],
            &ended["errors"]
        ),
        (&json!("INFO"), &json!("Succeeded"), &json!(15), &json!(0)),
        "{ended}"
    );
    assert!(ended["freshteam_requests"].as_u64() >= Some(1), "{ended}");
    assert!(ended["destination_requests"].as_u64() >= Some(1), "{ended}");
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains(API_KEY), "the API key is in the logs");
    assert!(
        !text.contains(&h.scim.token),
        "the SCIM token is in the logs"
    );
}

/// A run waiting for the destination's rate limit says so in its ImportRun (the Message
/// column), and a suspend while it waits ends it `Interrupted` at once, keeping what it
/// created.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_waiting_for_the_rate_limit_says_so_and_a_suspend_ends_it_at_once() {
    support::require_peers!(Scim2Server, PythonPeers);
    let h = Harness::on_peer(
        20,
        true,
        Mail::default(),
        Peer::RewardGateway {
            limit: 8,
            window: Duration::from_secs(60),
        },
        |s| s.published = true,
    )
    .await;
    h.reconcile().await;
    h.annotate(IMPORT_REQUESTED_AT, "now").await;
    reconcile(Arc::new(h.fti().await), h.ctx.clone())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let message = loop {
        let said = h
            .runs()
            .await
            .into_iter()
            .filter_map(|r| r.status)
            .find(|s| s.phase == ImportPhase::Running)
            .and_then(|s| s.message);
        if let Some(m) = said.filter(|m| m.starts_with("waiting for")) {
            break m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the run never said it waits"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        message.starts_with("waiting for the destination's rate limit (/Users) until 20"),
        "{message}"
    );
    let asked = std::time::Instant::now();
    h.edit(json!({"spec": {"suspend": true}})).await;
    reconcile(Arc::new(h.fti().await), h.ctx.clone())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), h.ctx.wait_idle())
        .await
        .expect("the run ended");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    let status = h.runs().await.pop().unwrap().status.unwrap();
    assert_eq!(status.phase, ImportPhase::Interrupted, "{status:?}");
    let created = h.scim.users().await.len();
    assert_eq!(status.summary.created as usize, created);
    assert!(created > 0 && created < 20, "{created}");
}

/// A user's on-demand run created while another run is under way waits for it, and the
/// reconcile that finds it waiting looks again soon (the end of the run under way may
/// reach no later event); the next reconcile takes and runs it.
#[tokio::test(flavor = "multi_thread")]
async fn an_on_demand_run_waiting_for_a_run_under_way_is_looked_at_again_soon() {
    support::require_peers!(Scim2Server);
    let h = Harness::new(20, true, |_| {}).await;
    h.reconcile().await;
    // A slow preview of generation 2 is under way.
    h.sim.set_faults(freshteam_simulator::Faults {
        latency: Duration::from_millis(800),
        ..Default::default()
    });
    h.edit(json!({"metadata": {"generation": 2}, "spec": {"leavers": {"statuses": ["inactive", "terminated"]}}}))
        .await;
    reconcile(Arc::new(h.fti().await), h.ctx.clone())
        .await
        .expect("reconcile");
    let runs: Api<ImportRun> = Api::namespaced(h.client.clone(), NS);
    let asked: ImportRun = serde_json::from_value(json!({
        "apiVersion": "freshteam.provisioning.dev/v1alpha1",
        "kind": "ImportRun",
        "metadata": {"name": "acme-jane", "namespace": NS},
        "spec": {"integration": "acme", "trigger": "OnDemand", "employeeIds": ["E-00002"],
                 "dryRun": true},
    }))
    .unwrap();
    let asked = runs.create(&PostParams::default(), &asked).await.unwrap();
    h.ctx.on_demand.note(&asked);

    let next = reconcile(Arc::new(h.fti().await), h.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        next,
        kube::runtime::controller::Action::requeue(
            freshteam_operator::controller::reconcile::ON_DEMAND_RECHECK
        )
    );
    assert!(runs.get("acme-jane").await.unwrap().status.is_none());

    h.ctx.wait_idle().await;
    h.sim.set_faults(Default::default());
    h.reconcile().await;
    let done = runs.get("acme-jane").await.unwrap();
    assert_eq!(phase(&done), ImportPhase::Succeeded, "{done:?}");
    assert!(!h.ctx.on_demand.has(&format!("{NS}/acme")));
}
