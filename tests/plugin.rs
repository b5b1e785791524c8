//! The kubectl plugin's commands against an in-process Kubernetes API (kube-fake-client):
//! the exact text they print and their exit codes. `import-now` is followed while a test
//! task plays the operator, either scripted or the real reconciler with the Freshteam
//! simulator and a real SCIM 2.0 server.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use freshteam_operator::api::*;
use freshteam_operator::connect::HttpConnector;
use freshteam_operator::controller::decide::StartRun;
use freshteam_operator::controller::runner::new_run;
use freshteam_operator::controller::{reconcile, Context, OperatorConfig};
use freshteam_operator::plugin::{FollowView, HistoryFormat, ImportNowOptions, Output, Plugin};
use freshteam_simulator::{SimConfig, Simulator};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use support::{ScimServer, TestClock};

const NS: &str = "hr";
/// How long a test waits for the follower to show something, polling every `POLL`.
const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(10);

fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap()
}

/// Records what `import-now` shows, so tests (and the scripted operator) can see it.
#[derive(Default)]
struct Recorder {
    lines: Mutex<Vec<String>>,
    progress: Mutex<Vec<(u64, u64)>>,
}

impl FollowView for Recorder {
    fn note(&self, text: &str) {
        self.lines.lock().unwrap().push(format!("note: {text}"));
    }
    fn phase(&self, text: &str) {
        self.lines.lock().unwrap().push(text.to_string());
    }
    fn progress(&self, processed: u64, total: u64) {
        self.progress.lock().unwrap().push((processed, total));
    }
    fn finish(&self) {
        self.lines.lock().unwrap().push("finish".into());
    }
}

impl Recorder {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
    fn saw_line(&self, line: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l == line)
    }
    fn saw_progress(&self, p: (u64, u64)) -> bool {
        self.progress.lock().unwrap().contains(&p)
    }
}

/// An integration as `kubectl apply` would have it: published, on the London clock,
/// created a month before the tests' noon.
fn integration(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> FreshteamIntegration {
    support::integration(NS, name)
        .spec(|s| {
            s.published = true;
            s.time_zone = Some("Europe/London".into());
        })
        .json(|v| {
            v["metadata"]["creationTimestamp"] = json!("2026-06-01T09:00:00Z");
            v["spec"]["mapping"] = json!({"employeeId": "employee_id", "email": "official_email"});
        })
        .json(edit)
        .build()
}

fn run(
    name: &str,
    integration: &str,
    trigger: &str,
    created: &str,
    status: serde_json::Value,
) -> ImportRun {
    serde_json::from_value(json!({
        "apiVersion": "freshteam.provisioning.dev/v1alpha1",
        "kind": "ImportRun",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": created,
                     "labels": {"freshteam.provisioning.dev/integration": integration}},
        "spec": {"integration": integration, "trigger": trigger, "dryRun": false},
        "status": status
    }))
    .expect("an ImportRun")
}

fn report_configmap(name: &str, csv: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "errors.csv".to_string(),
            csv.to_string(),
        )])),
        ..ConfigMap::default()
    }
}

const REPORT_CSV: &str = "severity,employee_id,email,field,message\n\
error,E-00002,broken,email,\"invalid e-mail 'broken' in official_email: has no @\"\n\
warning,E-00007,dana@acme.example,manager,\"manager E-09999 is not a member, left unset\"\n";

/// An API holding `acme` (published, with status), a few runs in different states, a
/// report ConfigMap, and a run of another integration.
async fn populated() -> Client {
    let acme = integration("acme", |v| {
        v["status"] = json!({
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Ready",
                 "message": "next import at 2026-07-02T02:00:00Z",
                 "lastTransitionTime": "2026-07-01T09:00:00Z"},
                {"type": "Authorized", "status": "True", "reason": "Connected",
                 "message": "Connected to acme.freshteam.com (1,204 employees)",
                 "lastTransitionTime": "2026-06-01T09:00:30Z"},
                {"type": "Importing", "status": "True", "reason": "ImportRunning",
                 "message": "ImportRun acme-20260701-115500 is in progress",
                 "lastTransitionTime": "2026-07-01T11:55:00Z"}
            ],
            "lastImport": {"runName": "acme-20260701-090001", "phase": "PartiallySucceeded",
                           "startTime": "2026-07-01T09:00:01Z",
                           "completionTime": "2026-07-01T09:02:06Z",
                           "summary": {"created": 0, "updated": 2, "leavers": 0, "errors": 1}},
            "nextImportTime": "2026-07-02T02:00:00Z"
        })
    });
    let runs = [
        run(
            "acme-20260701-030000",
            "acme",
            "Scheduled",
            "2026-07-01T03:00:00Z",
            json!({"phase": "Succeeded", "startTime": "2026-07-01T03:00:00Z",
                   "completionTime": "2026-07-01T03:00:42Z",
                   "summary": {"created": 12, "updated": 3, "leavers": 1, "errors": 0}}),
        ),
        run(
            "acme-20260701-090001",
            "acme",
            "Manual",
            "2026-07-01T09:00:01Z",
            json!({"phase": "PartiallySucceeded", "startTime": "2026-07-01T09:00:01Z",
                   "completionTime": "2026-07-01T09:02:06Z",
                   "summary": {"created": 0, "updated": 2, "leavers": 0, "errors": 1, "warnings": 1},
                   "errors": [{"employeeId": "E-00002", "email": "broken", "field": "email",
                               "severity": "error",
                               "message": "invalid e-mail 'broken' in official_email: has no @"}],
                   "errorReport": {"configMapName": "acme-20260701-090001-errors",
                                   "key": "errors.csv"}}),
        ),
        run(
            "acme-20260701-115500",
            "acme",
            "Manual",
            "2026-07-01T11:55:00Z",
            json!({"phase": "Running", "startTime": "2026-07-01T11:55:00Z",
                   "progress": {"processed": 600, "total": 1204, "percent": 49}}),
        ),
        run(
            "acme-20260630-030000",
            "acme",
            "Scheduled",
            "2026-06-30T03:00:00Z",
            json!({"phase": "Blocked", "startTime": "2026-06-30T03:00:00Z",
                   "completionTime": "2026-06-30T03:20:30Z",
                   "summary": {"created": 1, "updated": 0, "leavers": 0, "errors": 0},
                   "leaversAwaitingApproval": 300}),
        ),
        run(
            "acme-20260701-120000",
            "acme",
            "Manual",
            "2026-07-01T12:00:00Z",
            json!({"phase": "Pending"}),
        ),
        run(
            "acme-20260629-030000",
            "acme",
            "Scheduled",
            "2026-06-29T03:00:00Z",
            json!({"phase": "Succeeded", "startTime": "2026-06-29T03:00:00Z",
                   "completionTime": "2026-06-29T03:00:09Z",
                   "summary": {"created": 0, "updated": 0, "leavers": 0, "errors": 0}}),
        ),
        run(
            "globex-20260701-030000",
            "globex",
            "Scheduled",
            "2026-07-01T03:30:00Z",
            json!({"phase": "Failed"}),
        ),
    ];
    let mut builder = kube_fake_client::ClientBuilder::new()
        .with_resource::<FreshteamIntegration>()
        .with_status_subresource::<FreshteamIntegration>()
        .with_resource::<ImportRun>()
        .with_status_subresource::<ImportRun>()
        .with_object(acme)
        .with_object(integration("globex", |_| {}))
        .with_object(report_configmap("acme-20260701-090001-errors", REPORT_CSV));
    for r in runs {
        builder = builder.with_object(r);
    }
    builder.build().await.expect("fake API")
}

fn plugin(client: Client) -> Plugin {
    Plugin::new(client, NS).with_clock(TestClock::at(noon()))
}

fn out(code: u8, stdout: &str, stderr: &str) -> Output {
    Output {
        code,
        stdout: stdout.into(),
        stderr: stderr.into(),
    }
}

// ------------------------------------------------------------------ history

#[tokio::test]
async fn history_is_a_table_of_the_integrations_runs_newest_first() {
    let p = plugin(populated().await);
    assert_eq!(
        p.history("acme", HistoryFormat::Table).await,
        out(
            0,
            "\
NAME                   TRIGGER     PHASE                STARTED                DURATION   CREATED   UPDATED   LEAVERS   ERRORS
acme-20260701-120000   Manual      Pending              -                      -          0         0         0         0
acme-20260701-115500   Manual      Running              2026-07-01T11:55:00Z   5m         0         0         0         0
acme-20260701-090001   Manual      PartiallySucceeded   2026-07-01T09:00:01Z   2m5s       0         2         0         1
acme-20260701-030000   Scheduled   Succeeded            2026-07-01T03:00:00Z   42s        12        3         1         0
acme-20260630-030000   Scheduled   Blocked              2026-06-30T03:00:00Z   20m        1         0         0         0
acme-20260629-030000   Scheduled   Succeeded            2026-06-29T03:00:00Z   9s         0         0         0         0
",
            ""
        )
    );
}

#[tokio::test]
async fn history_as_json_and_yaml_lists_the_same_runs() {
    let p = plugin(populated().await);
    let json_out = p.history("acme", HistoryFormat::Json).await;
    assert_eq!(json_out.code, 0);
    let list: serde_json::Value = serde_json::from_str(&json_out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "acme-20260701-120000",
            "acme-20260701-115500",
            "acme-20260701-090001",
            "acme-20260701-030000",
            "acme-20260630-030000",
            "acme-20260629-030000"
        ]
    );
    assert_eq!(list["items"][2]["status"]["summary"]["errors"], 1);

    let yaml_out = p.history("acme", HistoryFormat::Yaml).await;
    let from_yaml: serde_json::Value = yaml_serde::from_str(&yaml_out.stdout).unwrap();
    assert_eq!(from_yaml, list);
}

#[tokio::test]
async fn history_of_an_integration_without_runs_says_so() {
    let client = kube_fake_client::ClientBuilder::new()
        .with_resource::<FreshteamIntegration>()
        .with_resource::<ImportRun>()
        .with_object(integration("acme", |_| {}))
        .build()
        .await
        .unwrap();
    assert_eq!(
        plugin(client).history("acme", HistoryFormat::Table).await,
        out(0, "", "No ImportRuns found for acme in namespace hr.\n")
    );
}

#[tokio::test]
async fn an_unknown_integration_is_exit_2_for_every_command() {
    let p = plugin(populated().await);
    let expected = out(
        2,
        "",
        "error: freshteamintegration \"initech\" not found in namespace \"hr\"\n",
    );
    assert_eq!(p.history("initech", HistoryFormat::Table).await, expected);
    assert_eq!(p.status("initech").await, expected);
    assert_eq!(p.preview("initech").await, expected);
    let view = Recorder::default();
    assert_eq!(
        p.import_now("initech", &ImportNowOptions::default(), &view)
            .await,
        expected
    );
    // Another namespace does not see hr's integrations.
    let elsewhere = Plugin::new(populated().await, "default");
    assert_eq!(
        elsewhere.status("acme").await.stderr,
        "error: freshteamintegration \"acme\" not found in namespace \"default\"\n"
    );
}

// ------------------------------------------------------------------ errors

#[tokio::test]
async fn errors_writes_the_report_csv_to_a_file() {
    let p = plugin(populated().await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.csv");
    let result = p.errors("acme-20260701-090001", Some(&file)).await;
    assert_eq!(
        result,
        out(
            0,
            // The first rows on the terminal too (all of them, in a report this short).
            REPORT_CSV,
            &format!(
                "2 rows of ImportRun acme-20260701-090001's report written to {}\n",
                file.display()
            )
        )
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), REPORT_CSV);
}

#[tokio::test]
async fn errors_without_a_file_prints_the_csv_on_stdout() {
    let p = plugin(populated().await);
    assert_eq!(
        p.errors("acme-20260701-090001", None).await,
        out(0, REPORT_CSV, "")
    );
}

#[tokio::test]
async fn errors_of_a_run_without_errors_writes_nothing() {
    let p = plugin(populated().await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.csv");
    assert_eq!(
        p.errors("acme-20260701-030000", Some(&file)).await,
        out(
            0,
            "",
            "ImportRun acme-20260701-030000 has no errors or warnings: nothing written\n"
        )
    );
    assert!(
        !file.exists(),
        "a file was created for a run without errors"
    );
}

#[tokio::test]
async fn errors_of_a_missing_run_is_exit_2_and_of_a_running_run_exit_1() {
    let p = plugin(populated().await);
    assert_eq!(
        p.errors("acme-nope", None).await,
        out(
            2,
            "",
            "error: importrun \"acme-nope\" not found in namespace \"hr\"\n"
        )
    );
    assert_eq!(
        p.errors("acme-20260701-115500", None).await,
        out(
            1,
            "",
            "error: ImportRun acme-20260701-115500 is Running: its report is stored when it ends\n"
        )
    );
}

#[tokio::test]
async fn errors_falls_back_to_the_inline_rows_when_the_report_was_not_stored() {
    let client = kube_fake_client::ClientBuilder::new()
        .with_resource::<ImportRun>()
        .with_object(run(
            "acme-x",
            "acme",
            "Manual",
            "2026-07-01T09:00:00Z",
            json!({"phase": "PartiallySucceeded",
                   "summary": {"errors": 1},
                   "errors": [{"employeeId": "E-1", "field": "email", "severity": "error",
                               "message": "no e-mail"}]}),
        ))
        .build()
        .await
        .unwrap();
    assert_eq!(
        plugin(client).errors("acme-x", None).await,
        out(
            0,
            "severity,employee_id,email,field,message\nerror,E-1,,email,no e-mail\n",
            "the full report of ImportRun acme-x was not stored; these are the 1 rows kept in its status\n"
        )
    );
}

// ------------------------------------------------------------------ status, preview

#[tokio::test]
async fn status_shows_conditions_last_and_next_import() {
    let p = plugin(populated().await);
    assert_eq!(
        p.status("acme").await,
        out(
            0,
            "\
Name:         acme
Namespace:    hr
Published:    true
Suspended:    false
Schedule:     daily (Europe/London)
Next import:  2026-07-02T02:00:00Z (in 14h)
Last import:  acme-20260701-090001 PartiallySucceeded: 0 created, 2 updated, 0 leavers, 1 error, ended 2026-07-01T09:02:06Z (177m ago)
Conditions:
  TYPE         STATUS   REASON          MESSAGE                                             AGE
  Ready        True     Ready           next import at 2026-07-02T02:00:00Z                 3h
  Authorized   True     Connected       Connected to acme.freshteam.com (1,204 employees)   30d
  Importing    True     ImportRunning   ImportRun acme-20260701-115500 is in progress       5m
",
            ""
        )
    );
}

#[tokio::test]
async fn status_of_a_new_integration_says_the_operator_has_not_seen_it() {
    let client = kube_fake_client::ClientBuilder::new()
        .with_resource::<FreshteamIntegration>()
        .with_object(integration("acme", |v| {
            v["spec"]["published"] = json!(false);
            v["spec"]["suspend"] = json!(true);
            v["metadata"]["generation"] = json!(2);
            v["status"] = json!({"observedGeneration": 1});
        }))
        .build()
        .await
        .unwrap();
    assert_eq!(
        plugin(client).status("acme").await.stdout,
        "\
Name:         acme
Namespace:    hr
Published:    false
Suspended:    true
Schedule:     daily (Europe/London)
Next import:  none (suspended)
Last import:  none
The status describes generation 1; the spec is at 2 (the operator has not caught up yet).
Conditions:   none yet (is the operator running?)
"
    );
}

#[tokio::test]
async fn preview_shows_what_an_import_would_do_and_how_to_publish() {
    let client = kube_fake_client::ClientBuilder::new()
        .with_resource::<FreshteamIntegration>()
        .with_object(integration("acme", |v| {
            v["spec"]["published"] = json!(false);
            v["metadata"]["generation"] = json!(3);
            v["status"] = json!({"preview": {
                "runName": "acme-20260701-100000", "computedAt": "2026-07-01T10:00:07Z",
                "generation": 2, "wouldCreate": 1180, "wouldUpdate": 0,
                "wouldMarkAsLeavers": 24, "wouldReactivate": 1, "errors": 3,
                "inScope": 1205, "outOfScope": 17,
                "sample": [
                    {"employeeId": "E-00001", "attributes": {"userName": "ada@acme.example",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter": "CC-101"}},
                    {"employeeId": "E-00002", "attributes": {"userName": "alan@acme.example"}}]}});
        }))
        .with_object(integration("globex", |v| {
            v["spec"]["published"] = json!(false);
        }))
        .build()
        .await
        .unwrap();
    let p = plugin(client);
    assert_eq!(
        p.preview("acme").await,
        out(
            0,
            "\
Preview of acme (ImportRun acme-20260701-100000, computed 2026-07-01T10:00:07Z)
  Would create:          1180
  Would update:          0
  Would mark as leavers: 24
  Would re-activate:     1
  Errors:                3
  In scope:              1205
  Out of scope:          17 (never created)
The first 2 mapped members, as they would be written:
  E-00001  urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter=CC-101, userName=ada@acme.example
  E-00002  userName=alan@acme.example
The rejected records: kubectl freshteam errors acme-20260701-100000 -n hr
The spec changed since (generation 2 → 3): a new preview is due.
acme is not published: nothing is written to the destination. To publish:
  kubectl patch fti acme -n hr --type merge -p '{\"spec\":{\"published\":true}}'
",
            ""
        )
    );
    assert_eq!(
        p.preview("globex").await,
        out(
            0,
            "\
No preview of globex yet.
The operator computes one when the spec changes; to compute one now:
  kubectl freshteam import-now globex -n hr
globex is not published: nothing is written to the destination. To publish:
  kubectl patch fti globex -n hr --type merge -p '{\"spec\":{\"published\":true}}'
",
            ""
        )
    );
}

#[tokio::test]
async fn preview_of_a_running_preview_shows_no_counts_and_how_to_follow_it() {
    let client = kube_fake_client::ClientBuilder::new()
        .with_resource::<FreshteamIntegration>()
        .with_object(integration("acme", |v| {
            v["spec"]["published"] = json!(false);
            v["metadata"]["generation"] = json!(4);
            v["status"] = json!({"preview": {
                "runName": "acme-20260701-110000", "generation": 4, "phase": "Running"}});
        }))
        .build()
        .await
        .unwrap();
    assert_eq!(
        plugin(client).preview("acme").await,
        out(
            0,
            "\
A preview of acme is running (ImportRun acme-20260701-110000): follow it with
  kubectl get importrun acme-20260701-110000 -n hr -w
acme is not published: nothing is written to the destination. To publish:
  kubectl patch fti acme -n hr --type merge -p '{\"spec\":{\"published\":true}}'
",
            ""
        )
    );
}

// ------------------------------------------------------------------ import-now, scripted

/// How the scripted operator ends the run.
struct Ending {
    phase: &'static str,
    summary: serde_json::Value,
    message: &'static str,
    extra: serde_json::Value,
}

/// Plays the operator for one request: waits for the annotation, creates the run,
/// reports Running with progress (waiting until the plugin has shown each step), then
/// the ending.
async fn scripted_operator(client: Client, view: Arc<Recorder>, ending: Ending) {
    let ftis: Api<FreshteamIntegration> = Api::namespaced(client.clone(), NS);
    let runs: Api<ImportRun> = Api::namespaced(client, NS);
    let fti = loop {
        let fti = ftis.get("acme").await.unwrap();
        if fti.annotations().contains_key(IMPORT_REQUESTED_AT) {
            break fti;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let start = StartRun {
        full_request: None,
        trigger: ImportTrigger::Manual,
        dry_run: false,
        request: fti.annotations().get(IMPORT_REQUESTED_AT).cloned(),
        approval: None,
        slot: None,
    };
    let name = "acme-20260701-120001";
    runs.create(&PostParams::default(), &new_run(&fti, name, &start))
        .await
        .unwrap();
    let status = |v: serde_json::Value| Patch::Merge(json!({ "status": v }));
    runs.patch_status(
        name,
        &PatchParams::default(),
        &status(
            json!({"phase": "Running", "startTime": "2026-07-01T12:00:01Z",
                       "progress": {"processed": 0, "total": 10, "percent": 0}}),
        ),
    )
    .await
    .unwrap();
    let shown = format!("ImportRun {name}: Running");
    support::wait_until(WAIT, POLL, || {
        std::future::ready(view.saw_line(&shown).then_some(()))
    })
    .await
    .expect("timed out waiting for the Running phase");
    runs.patch_status(
        name,
        &PatchParams::default(),
        &status(json!({"progress": {"processed": 6, "total": 10, "percent": 60}})),
    )
    .await
    .unwrap();
    support::wait_until(WAIT, POLL, || {
        std::future::ready(view.saw_progress((6, 10)).then_some(()))
    })
    .await
    .expect("timed out waiting for progress 6/10");
    let mut end = json!({"phase": ending.phase, "completionTime": "2026-07-01T12:00:09Z",
                         "progress": {"processed": 10, "total": 10, "percent": 100},
                         "summary": ending.summary, "message": ending.message});
    if let (Some(end), Some(extra)) = (end.as_object_mut(), ending.extra.as_object()) {
        end.extend(extra.clone());
    }
    runs.patch_status(name, &PatchParams::default(), &status(end))
        .await
        .unwrap();
}

async fn import_now_against_script(ending: Ending) -> (Output, Arc<Recorder>, Client) {
    let client = populated().await;
    let view = Arc::new(Recorder::default());
    let operator = tokio::spawn(scripted_operator(client.clone(), view.clone(), ending));
    let p = plugin(client.clone()).with_poll_interval(Duration::from_millis(10));
    let options = ImportNowOptions {
        timeout: Duration::from_secs(20),
        follow: true,
    };
    let output = p.import_now("acme", &options, view.as_ref()).await;
    operator.await.unwrap();
    (output, view, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_now_follows_a_successful_run_and_exits_0() {
    let (output, view, client) = import_now_against_script(Ending {
        phase: "Succeeded",
        summary: json!({"created": 4, "updated": 6, "leavers": 0, "errors": 0}),
        message: "4 created, 6 updated",
        extra: json!({}),
    })
    .await;
    assert_eq!(
        output,
        out(
            0,
            "ImportRun acme-20260701-120001 Succeeded: 4 created, 6 updated\n",
            ""
        )
    );
    assert_eq!(
        view.lines(),
        [
            "waiting for the operator to start an ImportRun for acme",
            "ImportRun acme-20260701-120001: Running",
            "ImportRun acme-20260701-120001: Succeeded",
            "finish"
        ]
    );
    assert!(view.saw_progress((10, 10)));
    // The request is the clock's time, set on the integration.
    let ftis: Api<FreshteamIntegration> = Api::namespaced(client, NS);
    assert_eq!(
        ftis.get("acme")
            .await
            .unwrap()
            .annotations()
            .get(IMPORT_REQUESTED_AT)
            .map(String::as_str),
        Some("2026-07-01T12:00:00Z")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_now_exits_3_when_records_were_rejected() {
    let (output, _, _) = import_now_against_script(Ending {
        phase: "PartiallySucceeded",
        summary: json!({"created": 9, "errors": 1}),
        message: "9 created, 1 error",
        extra: json!({"errorReport": {"configMapName": "acme-20260701-120001-errors",
                                      "key": "errors.csv"}}),
    })
    .await;
    assert_eq!(
        output,
        out(
            3,
            "ImportRun acme-20260701-120001 PartiallySucceeded: 9 created, 1 error\n",
            "the report: kubectl freshteam errors acme-20260701-120001 -n hr -o acme-20260701-120001-errors.csv\n"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_now_exits_1_on_a_blocked_run_and_says_how_to_approve() {
    let (output, _, _) = import_now_against_script(Ending {
        phase: "Blocked",
        summary: json!({"created": 0, "leavers": 0}),
        message: "4 of 10 managed members (40.0%) would be marked as leavers, above safety.maxLeaversPercent 20%: no member was deactivated; approve this run to apply them",
        extra: json!({"leaversAwaitingApproval": 4}),
    })
    .await;
    assert_eq!(
        output,
        out(
            1,
            "ImportRun acme-20260701-120001 Blocked: 0 created, 0 updated, 0 leavers, 0 errors - 4 of 10 managed members (40.0%) would be marked as leavers, above safety.maxLeaversPercent 20%: no member was deactivated; approve this run to apply them\n",
            "nothing was deactivated; to approve this run's leavers:\n  kubectl annotate fti acme -n hr --overwrite freshteam.provisioning.dev/approve-leavers=acme-20260701-120001\n"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_now_exits_1_on_a_failed_run() {
    let (output, _, _) = import_now_against_script(Ending {
        phase: "Failed",
        summary: json!({}),
        message: "Freshteam: 401 Unauthorized: the API key was refused",
        extra: json!({}),
    })
    .await;
    assert_eq!(output.code, 1);
    assert_eq!(
        output.stdout,
        "ImportRun acme-20260701-120001 Failed: 0 created, 0 updated, 0 leavers, 0 errors - Freshteam: 401 Unauthorized: the API key was refused\n"
    );
}

#[tokio::test]
async fn import_now_times_out_when_no_run_starts_and_says_why() {
    let client = populated().await;
    // The operator reports the integration not Ready: the plugin says so while waiting.
    let ftis: Api<FreshteamIntegration> = Api::namespaced(client.clone(), NS);
    ftis.patch_status(
        "globex",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "NotAuthorized",
             "message": "Freshteam refused the API key",
             "lastTransitionTime": "2026-07-01T11:00:00Z"}]}})),
    )
    .await
    .unwrap();
    let p = plugin(client).with_poll_interval(Duration::from_millis(20));
    let view = Recorder::default();
    let options = ImportNowOptions {
        timeout: Duration::from_millis(150),
        follow: true,
    };
    assert_eq!(
        p.import_now("globex", &options, &view).await,
        out(
            1,
            "",
            "error: timed out after 150ms: the operator started no ImportRun for globex (globex is not Ready (NotAuthorized): Freshteam refused the API key)\n"
        )
    );
    assert_eq!(
        view.lines(),
        [
            "waiting for the operator to start an ImportRun for globex",
            "note: globex is not Ready (NotAuthorized): Freshteam refused the API key",
            "finish"
        ],
        "the note is shown once"
    );
    // Without a status at all, the hint is to check the operator.
    let out_acme = p.import_now("acme", &options, &Recorder::default()).await;
    assert_eq!(out_acme.code, 1);
    assert_eq!(
        out_acme.stderr,
        "error: timed out after 150ms: the operator started no ImportRun for acme; is it running? See: kubectl freshteam status acme -n hr\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_now_times_out_on_a_run_that_does_not_end() {
    let client = populated().await;
    let view = Arc::new(Recorder::default());
    let operator = {
        let (client, view) = (client.clone(), view.clone());
        tokio::spawn(async move {
            let ftis: Api<FreshteamIntegration> = Api::namespaced(client.clone(), NS);
            let runs: Api<ImportRun> = Api::namespaced(client, NS);
            let fti = loop {
                let fti = ftis.get("acme").await.unwrap();
                if fti.annotations().contains_key(IMPORT_REQUESTED_AT) {
                    break fti;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            let start = StartRun {
                full_request: None,
                trigger: ImportTrigger::Manual,
                dry_run: false,
                request: None,
                approval: None,
                slot: None,
            };
            runs.create(&PostParams::default(), &new_run(&fti, "acme-stuck", &start))
                .await
                .unwrap();
            runs.patch_status(
                "acme-stuck",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running",
                    "progress": {"processed": 5, "total": 10, "percent": 50}}})),
            )
            .await
            .unwrap();
            support::wait_until(WAIT, POLL, || {
                std::future::ready(view.saw_progress((5, 10)).then_some(()))
            })
            .await
            .expect("timed out waiting for progress");
        })
    };
    let p = plugin(client).with_poll_interval(Duration::from_millis(20));
    let options = ImportNowOptions {
        timeout: Duration::from_secs(3),
        follow: true,
    };
    let output = p.import_now("acme", &options, view.as_ref()).await;
    operator.await.unwrap();
    assert_eq!(
        output,
        out(
            1,
            "",
            "error: timed out after 3s waiting for ImportRun acme-stuck to end (phase Running, 5/10 records); it goes on in the cluster: kubectl freshteam history acme -n hr\n"
        )
    );
}

#[tokio::test]
async fn import_now_without_follow_only_sets_the_annotation() {
    let client = populated().await;
    let clock = TestClock::at(noon());
    let p = Plugin::new(client.clone(), NS).with_clock(clock.clone());
    let options = ImportNowOptions {
        timeout: Duration::from_secs(1),
        follow: false,
    };
    assert_eq!(
        p.import_now("acme", &options, &Recorder::default()).await,
        out(
            0,
            "import of acme requested (freshteam.provisioning.dev/import-requested-at=2026-07-01T12:00:00Z)\n",
            "follow it with: kubectl freshteam history acme -n hr\n"
        )
    );
    // The same second again still makes a new value, so the operator sees a new request.
    let again = p.import_now("acme", &options, &Recorder::default()).await;
    assert!(
        again
            .stdout
            .contains("import-requested-at=2026-07-01T12:00:00.000Z"),
        "{again:?}"
    );
}

#[tokio::test]
async fn import_now_refuses_a_suspended_integration() {
    let client = kube_fake_client::ClientBuilder::new()
        .with_resource::<FreshteamIntegration>()
        .with_resource::<ImportRun>()
        .with_object(integration("acme", |v| v["spec"]["suspend"] = json!(true)))
        .build()
        .await
        .unwrap();
    let output = plugin(client.clone())
        .import_now("acme", &ImportNowOptions::default(), &Recorder::default())
        .await;
    assert_eq!(
        output,
        out(
            1,
            "",
            "error: acme is suspended (spec.suspend: true): the operator starts no import. Resume it with:\n  kubectl patch fti acme -n hr --type merge -p '{\"spec\":{\"suspend\":false}}'\n"
        )
    );
    let ftis: Api<FreshteamIntegration> = Api::namespaced(client, NS);
    assert!(ftis.get("acme").await.unwrap().annotations().is_empty());
}

// ------------------------------------------------------------------ import-now, real reconciler

/// The operator's reconciler, called in a loop as the controller would on changes.
fn spawn_reconciler(ctx: Arc<Context>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let ftis: Api<FreshteamIntegration> = Api::namespaced(ctx.client.clone(), NS);
        loop {
            if let Ok(fti) = ftis.get("acme").await {
                let _ = reconcile(Arc::new(fti), ctx.clone()).await;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_now_drives_the_real_operator_to_each_outcome() {
    support::require_peers!(Scim2Server);
    const API_KEY: &str = "ft-plugin-7c2a";
    let sim = Simulator::start(SimConfig {
        employees: 10,
        page_size: 4,
        api_key: API_KEY.into(),
        inactive_percent: 0.0,
        ..SimConfig::default()
    })
    .unwrap();
    let scim = ScimServer::start();
    let fti = integration("acme", |v| {
        v["spec"]["source"]["baseUrl"] = json!(sim.base_url());
        v["spec"]["destination"]["scim"]["url"] = json!(scim.url);
        v["spec"]["timeZone"] = json!("UTC");
    });
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
    let clock = TestClock::at(noon());
    let ctx = Arc::new(Context::new(
        client.clone(),
        clock.clone(),
        OperatorConfig {
            allow_custom_endpoints: true,
            max_concurrent_imports: 1,
            progress_interval: Duration::from_millis(10),
            ..OperatorConfig::default()
        },
        Arc::new(HttpConnector::default()),
        None,
        None,
    ));
    let reconciler = spawn_reconciler(ctx.clone());
    let p = Plugin::new(client.clone(), NS)
        .with_clock(clock.clone())
        .with_poll_interval(Duration::from_millis(20));
    let options = ImportNowOptions {
        timeout: Duration::from_secs(60),
        follow: true,
    };

    // 1. Every employee is new: Succeeded, exit 0.
    let view = Recorder::default();
    let first = p.import_now("acme", &options, &view).await;
    assert_eq!(
        first,
        out(
            0,
            "ImportRun acme-20260701-120000 Succeeded: 10 created\n",
            ""
        ),
        "{:?}",
        view.lines()
    );
    assert!(view.saw_line("ImportRun acme-20260701-120000: Succeeded"));
    assert_eq!(scim.users().await.len(), 10);

    // 2. A broken e-mail: PartiallySucceeded, exit 3, and `errors` writes the stored CSV.
    sim.update_employee("E-00002", json!({"official_email": "broken"}))
        .unwrap();
    clock.advance(60);
    let second = p.import_now("acme", &options, &Recorder::default()).await;
    assert_eq!(second.code, 3, "{second:?}");
    assert_eq!(
        second.stdout, "ImportRun acme-20260701-120100 PartiallySucceeded: 1 error\n",
        "{second:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("errors.csv");
    let written = p.errors("acme-20260701-120100", Some(&file)).await;
    assert_eq!(written.code, 0, "{written:?}");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let stored = cms
        .get("acme-20260701-120100-errors")
        .await
        .unwrap()
        .data
        .unwrap()["errors.csv"]
        .clone();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stored);
    assert!(
        stored.contains("E-00002") && stored.contains("broken"),
        "{stored}"
    );

    // 3. Four of ten leave at once: above the 20% safety limit, Blocked, exit 1.
    sim.update_employee("E-00002", json!({"official_email": "emp2@acme.example"}))
        .unwrap();
    for i in 3..=6 {
        sim.update_employee(&format!("E-{i:05}"), json!({"status": "inactive"}))
            .unwrap();
    }
    clock.advance(60);
    let third = p.import_now("acme", &options, &Recorder::default()).await;
    assert_eq!(third.code, 1, "{third:?}");
    assert!(
        third
            .stdout
            .starts_with("ImportRun acme-20260701-120200 Blocked: "),
        "{third:?}"
    );
    assert_eq!(
        third.stderr,
        "nothing was deactivated; to approve this run's leavers:\n  kubectl annotate fti acme -n hr --overwrite freshteam.provisioning.dev/approve-leavers=acme-20260701-120200\n"
    );

    // History shows all three, newest first.
    let history = p.history("acme", HistoryFormat::Table).await.stdout;
    let names: Vec<&str> = history
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "acme-20260701-120200",
            "acme-20260701-120100",
            "acme-20260701-120000"
        ]
    );
    reconciler.abort();
    ctx.wait_idle().await;
}
