mod refusals;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};

use super::stages::{creation_depth, next_ledger, WRITE_BATCH};
use super::*;
use crate::api::Severity;
use crate::api::{LeaversSpec, MappingSpec};
use crate::clock::TestClock;
use crate::destination::{
    Accounts, DestinationMember, DestinationStats, MemberDirectory, WriteOp, WriteOutcome,
};
use crate::destination::{DestinationError, UpdateOp};
use crate::ledger::{Ledger, ManagedIds};
use crate::mapping::{CompiledMapping, DesiredSet};
use crate::member::Member;
use crate::member::{Attr, AttrSet, Change, MemberFields};
use crate::notify::Outbox;
use crate::plan::{plan_sets, PlanOptions, PlanScope};
use crate::source::{
    AccountInfo, EmployeeRecord, LookupKind, SourceError, SourceRequest, SourceSnapshot,
};
use crate::source::{EmployeeSource, SourceStats};
use crate::state::{MemoryStore, Store};

/// The runs' clock: 2026-11-24 03:00 UTC.
fn fixed_clock() -> TestClock {
    TestClock::new(Utc.with_ymd_and_hms(2026, 11, 24, 3, 0, 0).unwrap())
}

/// Employees as field maps; answers with exactly the requested fields.
struct FakeSource {
    employees: Vec<(i64, HashMap<&'static str, String>)>,
    fail: Option<SourceError>,
}

#[async_trait]
impl EmployeeSource for FakeSource {
    async fn authorize(&self) -> Result<AccountInfo, SourceError> {
        unreachable!()
    }
    async fn fetch(
        &self,
        request: &SourceRequest,
        _: &dyn ProgressSink,
    ) -> Result<SourceSnapshot, SourceError> {
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        let employees = self
            .employees
            .iter()
            .map(|(id, f)| EmployeeRecord {
                id: *id,
                population: match f.get("status").map(String::as_str) {
                    Some("inactive") => crate::source::Population::Inactive,
                    _ => crate::source::Population::Active,
                },
                values: request
                    .fields
                    .iter()
                    .map(|k| f.get(k.as_str()).cloned())
                    .collect(),
            })
            .collect();
        let mut lookups = HashMap::new();
        lookups.insert(
            LookupKind::Departments,
            HashMap::from([(1, "Engineering".to_string())]),
        );
        Ok(SourceSnapshot {
            employees,
            lookup_fields: Default::default(),
            lookups,
            stats: SourceStats {
                list_requests: 1,
                lookup_requests: 1,
                ..SourceStats::default()
            },
        })
    }
}

/// A destination in memory; fails writes for e-mails listed in `reject`.
#[derive(Default)]
struct FakeDirectory {
    members: Mutex<Vec<DestinationMember>>,
    reject: Vec<String>,
    writes: Mutex<u32>,
    /// Fields it answers 2xx for but does not store.
    drops: Vec<Attr>,
    /// What it announces it keeps (`None`: everything).
    kept: Option<AttrSet>,
}

#[async_trait]
impl MemberDirectory for FakeDirectory {
    async fn list_members(&self) -> Result<Vec<DestinationMember>, DestinationError> {
        Ok(self.members.lock().unwrap().clone())
    }
    async fn apply(
        &self,
        ops: &[WriteOp],
        on_done: &(dyn for<'o> Fn(usize, &'o WriteOutcome) + Send + Sync),
    ) -> Vec<WriteOutcome> {
        let mut out = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            *self.writes.lock().unwrap() += 1;
            let outcome = if self.reject.iter().any(|r| r == op.email()) {
                WriteOutcome::Failed {
                    field: Some("email".into()),
                    message: "409 uniqueness".into(),
                    refused: None,
                }
            } else {
                let mut members = self.members.lock().unwrap();
                match op {
                    WriteOp::Create { member } => {
                        let id = format!("id-{}", members.len());
                        let mut kept = member.clone();
                        let mut unkept = Vec::new();
                        for a in &self.drops {
                            if let Some(v) = kept.field(*a).map(str::to_string) {
                                unkept.push(Change::Set(*a, v));
                                kept.set(*a, None);
                            }
                        }
                        members.push(DestinationMember {
                            id: id.clone(),
                            version: None,
                            member: kept,
                            has_work_email: true,
                        });
                        WriteOutcome::Created { id, unkept }
                    }
                    WriteOp::Update(UpdateOp { id, changes, .. }) => {
                        let m = members.iter_mut().find(|m| &m.id == id).unwrap();
                        for c in changes {
                            let dropped = matches!(c, Change::Set(a, _) | Change::Clear(a) if self.drops.contains(a));
                            if !dropped {
                                c.apply_to(&mut m.member);
                            }
                        }
                        WriteOutcome::Updated
                    }
                }
            };
            on_done(i, &outcome);
            out.push(outcome);
        }
        out
    }
    fn keeps(&self) -> AttrSet {
        self.kept.unwrap_or_else(|| Attr::ALL.into_iter().collect())
    }
    fn stats(&self) -> DestinationStats {
        DestinationStats {
            reads: 1,
            writes: *self.writes.lock().unwrap(),
            ..DestinationStats::default()
        }
    }
}

fn employee(id: i64, eid: &str, email: &str, status: &str) -> (i64, HashMap<&'static str, String>) {
    let mut f = HashMap::new();
    f.insert("employee_id", eid.to_string());
    f.insert("official_email", email.to_string());
    f.insert("first_name", format!("Name{id}"));
    f.insert("last_name", "Surname".to_string());
    f.insert("department_id", "1".to_string());
    f.insert("status", status.to_string());
    (id, f)
}

fn mapping(manager: bool) -> CompiledMapping {
    let mut m = MappingSpec::default();
    if manager {
        m.manager = Some("reporting_to".into());
    }
    CompiledMapping::compile(&m, &LeaversSpec::default()).unwrap()
}

fn opts(dry_run: bool) -> ImportOptions {
    ImportOptions {
        dry_run,
        max_leavers_percent: 20,
        approved_leavers: None,
        ..ImportOptions::default()
    }
}

async fn run(source: &FakeSource, dest: &dyn MemberDirectory, o: &ImportOptions) -> ImportOutcome {
    let counter = ProgressCounter::default();
    let out = run_import(&ImportJob {
        mapping: &mapping(false),
        source,
        destination: dest,
        options: o,
        stores: Stores::default(),
        progress: &counter,
        clock: &fixed_clock(),
    })
    .await;
    assert_eq!(counter.snapshot().percent, 100, "progress reaches 100%");
    out
}

#[tokio::test]
async fn first_import_creates_then_second_is_a_no_op() {
    let source = FakeSource {
        employees: vec![
            employee(1, "E-1", "a@acme.example", "active"),
            employee(2, "E-2", "b@acme.example", "active"),
            employee(3, "E-3", "c@acme.example", "inactive"),
        ],
        fail: None,
    };
    let dest = FakeDirectory::default();
    let first = run(&source, &dest, &opts(false)).await;
    assert_eq!(first.status.phase, ImportPhase::Succeeded);
    assert_eq!(first.status.summary.created, 2);
    assert_eq!(first.status.summary.skipped, 1);
    assert_eq!(first.created.len(), 2);
    assert_eq!(
        first.status.message.as_deref(),
        Some("2 created, 1 skipped")
    );
    assert_eq!(
        first.status.start_time.as_deref(),
        Some("2026-11-24T03:00:00Z")
    );
    let writes = *dest.writes.lock().unwrap();

    let second = run(&source, &dest, &opts(false)).await;
    assert_eq!(
        *dest.writes.lock().unwrap(),
        writes,
        "no write on the second run"
    );
    assert_eq!(second.status.summary.unchanged, 2);
    assert!(second.created.is_empty());
}

#[tokio::test]
async fn dry_run_counts_but_writes_nothing() {
    let source = FakeSource {
        employees: vec![employee(1, "E-1", "a@acme.example", "active")],
        fail: None,
    };
    let dest = FakeDirectory::default();
    let out = run(&source, &dest, &opts(true)).await;
    assert_eq!(out.status.summary.created, 1);
    assert_eq!(*dest.writes.lock().unwrap(), 0);
    assert!(dest.members.lock().unwrap().is_empty());
    assert!(out
        .status
        .message
        .unwrap()
        .starts_with("dry run, nothing written: would be 1 created"));
}

#[tokio::test]
async fn a_failed_write_is_an_error_row_and_the_rest_go_through() {
    let source = FakeSource {
        employees: vec![
            employee(1, "E-1", "taken@acme.example", "active"),
            employee(2, "E-2", "b@acme.example", "active"),
            employee(3, "", "nobody@acme.example", "active"),
        ],
        fail: None,
    };
    let dest = FakeDirectory {
        reject: vec!["taken@acme.example".into()],
        ..FakeDirectory::default()
    };
    let out = run(&source, &dest, &opts(false)).await;
    assert_eq!(out.status.phase, ImportPhase::PartiallySucceeded);
    assert_eq!(out.status.summary.created, 1);
    assert_eq!(out.status.summary.errors, 2);
    assert_eq!(out.report.len(), 2);
    assert!(out
        .report
        .iter()
        .any(|r| r.employee_id.as_deref() == Some("E-1") && r.message == "409 uniqueness"));
    let csv = errors_csv(&out.report);
    assert_eq!(csv.lines().count(), 3);
}

#[tokio::test]
async fn unusable_source_fails_the_run_with_its_reason() {
    let source = FakeSource {
        employees: vec![],
        fail: Some(SourceError::InvalidCredentials {
            host: "acme.freshteam.com".into(),
        }),
    };
    let dest = FakeDirectory::default();
    let counter = ProgressCounter::default();
    let out = run_import(&ImportJob {
        mapping: &mapping(false),
        source: &source,
        destination: &dest,
        options: &opts(false),
        stores: Stores::default(),
        progress: &counter,
        clock: &fixed_clock(),
    })
    .await;
    assert_eq!(out.status.phase, ImportPhase::Failed);
    assert!(out
        .status
        .message
        .unwrap()
        .contains("rejected the API key for acme.freshteam.com"));
    assert!(out.status.completion_time.is_some());
}

#[tokio::test]
async fn too_many_leavers_block_and_approval_applies_them() {
    let mut employees: Vec<_> = (1..=4)
        .map(|i| {
            employee(
                i,
                &format!("E-{i}"),
                &format!("p{i}@acme.example"),
                "active",
            )
        })
        .collect();
    let source = FakeSource {
        employees: employees.clone(),
        fail: None,
    };
    let dest = FakeDirectory::default();
    run(&source, &dest, &opts(false)).await;
    employees[0].1.insert("status", "inactive".into());
    let source = FakeSource {
        employees,
        fail: None,
    };
    let blocked = run(&source, &dest, &opts(false)).await;
    assert_eq!(blocked.status.phase, ImportPhase::Blocked);
    assert_eq!(blocked.status.summary.leavers, 0);
    assert_eq!(blocked.blocked_leavers, 1);
    assert!(dest.members.lock().unwrap().iter().all(|m| m.member.active));
    let mut approved = opts(false);
    approved.approved_leavers = Some(1);
    let applied = run(&source, &dest, &approved).await;
    assert_eq!(applied.status.phase, ImportPhase::Succeeded);
    assert_eq!(applied.status.summary.leavers, 1);
}

#[test]
fn creation_depth_follows_the_reporting_line_and_survives_cycles() {
    let managers = HashMap::from([("c", "b"), ("b", "a"), ("x", "y"), ("y", "x")]);
    let creating = HashSet::from(["a", "b", "c", "x", "y"]);
    assert_eq!(creation_depth("a", &managers, &creating), 0);
    assert_eq!(creation_depth("b", &managers, &creating), 1);
    assert_eq!(creation_depth("c", &managers, &creating), 2);
    assert!(creation_depth("x", &managers, &creating) <= 2);
    let only_c = HashSet::from(["c"]);
    assert_eq!(creation_depth("c", &managers, &only_c), 0);
}

#[tokio::test]
async fn a_manager_cycle_still_creates_everyone_and_links_in_a_follow_up() {
    let mut a = employee(20, "E-20", "a@acme.example", "active");
    a.1.insert("reporting_to_id", "21".into());
    let mut b = employee(21, "E-21", "b@acme.example", "active");
    b.1.insert("reporting_to_id", "20".into());
    let source = FakeSource {
        employees: vec![a, b],
        fail: None,
    };
    let dest = FakeDirectory::default();
    let counter = ProgressCounter::default();
    let out = run_import(&ImportJob {
        mapping: &mapping(true),
        source: &source,
        destination: &dest,
        options: &opts(false),
        stores: Stores::default(),
        progress: &counter,
        clock: &fixed_clock(),
    })
    .await;
    assert_eq!(out.status.summary.created, 2);
    let members = dest.members.lock().unwrap().clone();
    assert!(
        members.iter().all(|m| m.member.manager.is_some()),
        "{members:?}"
    );
}

#[tokio::test]
async fn managers_created_in_the_same_run_are_linked_in_that_run() {
    let mut boss = employee(10, "E-10", "boss@acme.example", "active");
    boss.1.remove("department_id");
    let mut dev = employee(11, "E-11", "dev@acme.example", "active");
    dev.1.insert("reporting_to_id", "10".into());
    let source = FakeSource {
        employees: vec![dev, boss],
        fail: None,
    };
    let dest = FakeDirectory::default();
    let counter = ProgressCounter::default();
    let first = run_import(&ImportJob {
        mapping: &mapping(true),
        source: &source,
        destination: &dest,
        options: &opts(false),
        stores: Stores::default(),
        progress: &counter,
        clock: &fixed_clock(),
    })
    .await;
    assert_eq!(first.status.summary.created, 2);
    assert_eq!(
        *dest.writes.lock().unwrap(),
        2,
        "the manager went first; no extra patch"
    );
    let members = dest.members.lock().unwrap().clone();
    let boss_id = members
        .iter()
        .find(|m| m.member.employee_id == "E-10")
        .unwrap()
        .id
        .clone();
    let dev_m: &Member = &members
        .iter()
        .find(|m| m.member.employee_id == "E-11")
        .unwrap()
        .member;
    assert_eq!(dev_m.manager.as_deref(), Some(boss_id.as_str()));
    let writes = *dest.writes.lock().unwrap();
    let second = run_import(&ImportJob {
        mapping: &mapping(true),
        source: &source,
        destination: &dest,
        options: &opts(false),
        stores: Stores::default(),
        progress: &counter,
        clock: &fixed_clock(),
    })
    .await;
    assert_eq!(second.status.summary.unchanged, 2);
    assert_eq!(*dest.writes.lock().unwrap(), writes);
}

/// What a test does instead of the fake's own `apply`.
#[async_trait]
trait ApplyHook: Send + Sync {
    async fn apply(
        &self,
        inner: &FakeDirectory,
        ops: &[WriteOp],
        on_done: &(dyn for<'o> Fn(usize, &'o WriteOutcome) + Send + Sync),
    ) -> Vec<WriteOutcome>;
    /// What the destination announces as its `/Bulk` `maxOperations`.
    fn writes_per_request(&self) -> Option<usize> {
        None
    }
}

/// A [`FakeDirectory`] whose writes go through `hook`; it lists and counts as the fake.
#[derive(Default)]
struct Hooked<H> {
    inner: FakeDirectory,
    hook: H,
}

impl<H> Hooked<H> {
    fn new(hook: H) -> Self {
        Hooked {
            inner: FakeDirectory::default(),
            hook,
        }
    }
}

#[async_trait]
impl<H: ApplyHook> MemberDirectory for Hooked<H> {
    async fn list_members(&self) -> Result<Vec<DestinationMember>, DestinationError> {
        self.inner.list_members().await
    }
    async fn apply(
        &self,
        ops: &[WriteOp],
        on_done: &(dyn for<'o> Fn(usize, &'o WriteOutcome) + Send + Sync),
    ) -> Vec<WriteOutcome> {
        self.hook.apply(&self.inner, ops, on_done).await
    }
    fn stats(&self) -> DestinationStats {
        self.inner.stats()
    }
    fn writes_per_request(&self) -> Option<usize> {
        self.hook.writes_per_request()
    }
}

/// Asks the run to stop as soon as its first write batch is done.
struct StopsAfterFirstBatch {
    stop: StopSignal,
    /// What it announces as its `/Bulk` `maxOperations`.
    per_request: Option<usize>,
    /// Ops of each `apply` call.
    batches: std::sync::Mutex<Vec<usize>>,
}

impl StopsAfterFirstBatch {
    fn new(stop: &StopSignal, per_request: Option<usize>) -> Hooked<Self> {
        Hooked::new(StopsAfterFirstBatch {
            stop: stop.clone(),
            per_request,
            batches: Default::default(),
        })
    }
}

#[async_trait]
impl ApplyHook for StopsAfterFirstBatch {
    async fn apply(
        &self,
        inner: &FakeDirectory,
        ops: &[WriteOp],
        on_done: &(dyn for<'o> Fn(usize, &'o WriteOutcome) + Send + Sync),
    ) -> Vec<WriteOutcome> {
        self.batches.lock().unwrap().push(ops.len());
        let out = inner.apply(ops, on_done).await;
        self.stop.stop("spec.suspend was set to true");
        out
    }
    fn writes_per_request(&self) -> Option<usize> {
        self.per_request
    }
}

#[tokio::test]
async fn a_stop_between_write_batches_keeps_the_outbox_consistent_and_the_next_run_finishes() {
    let emails: Vec<String> = (1..=1200).map(|i| format!("e{i}@acme.example")).collect();
    let ids: Vec<String> = (1..=1200).map(|i| format!("E-{i}")).collect();
    let source = FakeSource {
        employees: (0..1200)
            .map(|i| employee(i as i64 + 1, &ids[i], &emails[i], "active"))
            .collect(),
        fail: None,
    };
    let stop = StopSignal::default();
    let dest = StopsAfterFirstBatch::new(&stop, None);
    let outbox = MemoryStore::<Outbox>::new();
    let options = ImportOptions {
        stop,
        ..opts(false)
    };
    let counter = ProgressCounter::default();
    let out = run_import(&ImportJob {
        mapping: &mapping(false),
        source: &source,
        destination: &dest,
        options: &options,
        stores: Stores {
            outbox: Some(&outbox),
            ledger: None,
            notes: None,
        },
        progress: &counter,
        clock: &fixed_clock(),
    })
    .await;
    assert_eq!(out.status.phase, ImportPhase::Interrupted);
    assert_eq!(out.status.summary.created, WRITE_BATCH as u32);
    let message = out.status.message.clone().unwrap();
    assert!(
        message.starts_with(
            "Interrupted: spec.suspend was set to true; stopped after 500 of 1200 writes"
        ),
        "{message}"
    );
    assert_eq!(*dest.inner.writes.lock().unwrap(), 500);
    // Every create had its intent first; exactly the members created are confirmed.
    let saved = outbox.snapshot();
    assert_eq!(saved.entries.len(), 1200);
    assert_eq!(saved.entries.values().filter(|e| e.confirmed).count(), 500);

    // The next run, not stopped, creates the rest and nothing twice.
    let next = run(&source, &dest.inner, &opts(false)).await;
    assert_eq!(next.status.phase, ImportPhase::Succeeded);
    assert_eq!(next.status.summary.created, 700);
    assert_eq!(dest.inner.members.lock().unwrap().len(), 1200);
}

#[tokio::test]
async fn write_batches_follow_the_bulk_size_the_destination_announces() {
    let source = FakeSource {
        employees: (1..=2500)
            .map(|i| {
                employee(
                    i,
                    &format!("E-{i}"),
                    &format!("e{i}@acme.example"),
                    "active",
                )
            })
            .collect(),
        fail: None,
    };
    // Never asked to stop: the batches alone are observed.
    async fn batches(source: &FakeSource, per_request: Option<usize>) -> Vec<usize> {
        let dest = StopsAfterFirstBatch::new(&StopSignal::default(), per_request);
        let out = run(source, &dest, &opts(false)).await;
        assert_eq!(out.status.summary.created, 2500);
        dest.hook.batches.into_inner().unwrap()
    }
    // No bulk: stop checks every 500 writes.
    assert_eq!(batches(&source, None).await, vec![500; 5]);
    // /Bulk of 1,000 (scim2-server): one batch per bulk request, not two.
    assert_eq!(batches(&source, Some(1000)).await, vec![1000, 1000, 500]);
    // A tiny bulk size still checks no more often than every 500 writes...
    assert_eq!(batches(&source, Some(10)).await, vec![500; 5]);
    // ...and a huge one at least every 5,000.
    let source_big = (1..=12_000)
        .map(|i| {
            employee(
                i,
                &format!("E-{i}"),
                &format!("e{i}@acme.example"),
                "active",
            )
        })
        .collect();
    let source = FakeSource {
        employees: source_big,
        fail: None,
    };
    let dest = StopsAfterFirstBatch::new(&StopSignal::default(), Some(1_000_000));
    run(&source, &dest, &opts(false)).await;
    assert_eq!(
        dest.hook.batches.into_inner().unwrap(),
        vec![5000, 5000, 2000]
    );
}

#[tokio::test]
async fn a_run_asked_to_stop_before_it_starts_reads_and_writes_nothing() {
    let source = FakeSource {
        employees: vec![employee(1, "E-1", "a@acme.example", "active")],
        fail: None,
    };
    let dest = FakeDirectory::default();
    let options = ImportOptions {
        stop: StopSignal::default(),
        ..opts(false)
    };
    options.stop.stop("the Secret freshteam-acme was deleted");
    let counter = ProgressCounter::default();
    let out = run_import(&ImportJob {
        mapping: &mapping(false),
        source: &source,
        destination: &dest,
        options: &options,
        stores: Stores::default(),
        progress: &counter,
        clock: &fixed_clock(),
    })
    .await;
    assert_eq!(out.status.phase, ImportPhase::Interrupted);
    assert_eq!(
        out.status.message.as_deref(),
        Some("Interrupted: the Secret freshteam-acme was deleted; stopped while reading Freshteam; nothing was written")
    );
    assert_eq!(*dest.writes.lock().unwrap(), 0);
}

fn existing(
    eid: &str,
    email: &str,
    first: &str,
    last: &str,
    department: &str,
) -> DestinationMember {
    DestinationMember {
        id: format!("id-{eid}"),
        version: None,
        member: Member {
            employee_id: eid.into(),
            email: email.into(),
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            department: Some(department.into()),
            active: true,
            ..Member::default()
        },
        has_work_email: true,
    }
}

#[tokio::test]
async fn an_unkept_value_is_written_once_then_held_back_until_the_source_changes() {
    let mut source = FakeSource {
        employees: vec![employee(1, "E-1", "a@acme.example", "active")],
        fail: None,
    };
    let dest = FakeDirectory {
        members: Mutex::new(vec![existing(
            "E-1",
            "a@acme.example",
            "Name1",
            "Old",
            "Engineering",
        )]),
        drops: vec![Attr::LastName],
        ..FakeDirectory::default()
    };
    let first = run(&source, &dest, &opts(false)).await;
    assert_eq!(first.status.summary.updated, 1);
    assert_eq!(*dest.writes.lock().unwrap(), 1);
    assert!(first.report.is_empty());
    let notes = first.convergence.expect("notes after a writing run");
    // lastName and the display name made of it were written.
    assert_eq!(notes.len(), 2);

    // The service still holds "Old": not written again, one warning instead, and the
    // note is carried on for as long as the source says the same.
    let mut options = ImportOptions {
        convergence: notes,
        ..opts(false)
    };
    for _ in 0..2 {
        let again = run(&source, &dest, &options).await;
        assert_eq!(*dest.writes.lock().unwrap(), 1, "no rewrite");
        assert_eq!(again.status.summary.updated, 0);
        assert_eq!(again.status.summary.unchanged, 1);
        assert_eq!(again.status.phase, ImportPhase::Succeeded);
        let warnings: Vec<_> = again
            .report
            .iter()
            .filter(|r| r.severity == Severity::Warning)
            .collect();
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].field.as_deref(), Some("lastName"));
        assert_eq!(warnings[0].employee_id.as_deref(), Some("E-1"));
        options.convergence = again.convergence.unwrap();
        assert_eq!(options.convergence.len(), 1);
    }

    // A new source value is written.
    source.employees[0].1.insert("last_name", "Newer".into());
    let changed = run(&source, &dest, &options).await;
    assert_eq!(changed.status.summary.updated, 1);
    assert_eq!(*dest.writes.lock().unwrap(), 2);
    assert!(changed.report.is_empty());
}

#[tokio::test]
async fn targets_the_destination_does_not_keep_are_named_once_and_never_written() {
    let source = FakeSource {
        employees: vec![
            employee(1, "E-1", "a@acme.example", "active"),
            employee(2, "E-2", "b@acme.example", "active"),
        ],
        fail: None,
    };
    let kept: AttrSet = Attr::ALL
        .into_iter()
        .filter(|a| !matches!(a, Attr::Department | Attr::DisplayName))
        .collect();
    let dest = FakeDirectory {
        members: Mutex::new(vec![existing(
            "E-1",
            "a@acme.example",
            "Name1",
            "Surname",
            "Sales",
        )]),
        kept: Some(kept),
        ..FakeDirectory::default()
    };
    let out = run(&source, &dest, &opts(false)).await;
    assert_eq!(
        out.status.summary.unchanged, 1,
        "a different department is no drift"
    );
    assert_eq!(out.status.summary.created, 1);
    assert_eq!(out.unsupported_targets, ["displayName", "department"]);
    let rows: Vec<_> = out
        .report
        .iter()
        .filter(|r| r.message.contains("does not keep"))
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].severity, Severity::Warning);
    let created = dest
        .members
        .lock()
        .unwrap()
        .iter()
        .find(|m| m.member.employee_id == "E-2")
        .cloned()
        .unwrap();
    assert_eq!(created.member.department, None, "left out of the create");
    assert_eq!(created.member.display_name, None, "left out of the create");
}

#[test]
fn a_delivery_report_is_applied_to_the_run() {
    let mut outcome = ImportOutcome::default();
    outcome.status.summary.created = 3;
    let report = crate::notify::DeliveryReport {
        sent: 2,
        pending: 1,
        uncertain: 0,
        failed: vec![RecordError {
            employee_id: Some("E1".into()),
            email: Some("p1@acme.example".into()),
            field: Some("invitation".into()),
            severity: Severity::Warning,
            message: "refused".into(),
        }],
        warnings: vec!["1 invitation is pending and will be sent on the next run".into()],
    };
    // What notify_after_run does with a delivery.
    outcome.status.summary.invitations_sent += report.sent;
    outcome.add_warnings(report.rows());
    assert_eq!(outcome.status.summary.invitations_sent, 2);
    assert_eq!(outcome.status.summary.warnings, 2);
    assert_eq!(outcome.report.len(), 2);
    assert_eq!(outcome.status.errors.len(), 2);
    assert_eq!(outcome.report[1].employee_id, None);
    assert_eq!(outcome.report[1].field.as_deref(), Some("invitation"));
}

async fn run_with_state(
    source: &FakeSource,
    dest: &dyn MemberDirectory,
    ledger: &MemoryStore<Ledger>,
    outbox: &MemoryStore<Outbox>,
) -> ImportOutcome {
    run_import(&ImportJob {
        mapping: &mapping(false),
        source,
        destination: dest,
        options: &opts(false),
        stores: Stores {
            outbox: Some(outbox),
            ledger: Some(ledger),
            notes: None,
        },
        progress: &ProgressCounter::default(),
        clock: &fixed_clock(),
    })
    .await
}

#[tokio::test]
async fn a_vanished_account_is_created_again_and_invited_again_a_leavers_is_forgotten() {
    use crate::notify::EntryState;
    let mut source = FakeSource {
        employees: vec![
            employee(1, "E-1", "a@acme.example", "active"),
            employee(2, "E-2", "b@acme.example", "active"),
        ],
        fail: None,
    };
    let dest = FakeDirectory::default();
    let ledger = MemoryStore::new();
    let outbox = MemoryStore::<Outbox>::new();
    run_with_state(&source, &dest, &ledger, &outbox).await;
    let mut sent = outbox.load().await.unwrap();
    for e in sent.entries.values_mut() {
        e.state = EntryState::Sent; // as a delivery leaves them
    }
    outbox.save(&sent).await.unwrap();
    let first_id = ledger.snapshot().account("E-1").expect("id recorded");

    // E-1's account is deleted by hand; E-2 leaves and their account is closed down.
    source.employees[1] = employee(2, "E-2", "b@acme.example", "inactive");
    {
        let mut members = dest.members.lock().unwrap();
        members.clear();
        // An account the integration does not manage (and new ids from here on).
        members.push(DestinationMember {
            id: "unmanaged".into(),
            version: None,
            member: Member {
                email: "x@acme.example".into(),
                ..Member::default()
            },
            has_work_email: true,
        });
    }
    let out = run_with_state(&source, &dest, &ledger, &outbox).await;
    assert_eq!(out.status.summary.created, 1, "{:?}", out.status);
    assert_eq!(out.status.summary.leavers, 0, "nothing to deactivate");
    let row = out
        .changes
        .iter()
        .find(|c| c.employee_id.as_deref() == Some("E-1"));
    assert_eq!(
        row.map(|r| r.message.as_str()),
        Some("account missing in the destination: created again")
    );
    let now = ledger.snapshot();
    let new_id = now.account("E-1").expect("new id recorded");
    assert_ne!(new_id, first_id);
    assert!(!now.contains("E-2"), "the leaver's entry is dropped");
    let entry = &outbox.load().await.unwrap().entries["E-1"];
    assert_eq!(entry.state, EntryState::Intended, "a new invitation is due");
    assert_eq!(entry.account.as_deref(), Some(new_id.as_str()));

    // The next run changes nothing and owes no second invitation.
    let out = run_with_state(&source, &dest, &ledger, &outbox).await;
    assert_eq!(out.status.summary.created, 0);
    assert!(out.changes.is_empty(), "{:?}", out.changes);
}

#[tokio::test]
async fn what_a_create_did_not_keep_is_learnt_from_its_answer_so_the_second_run_writes_nothing() {
    let source = FakeSource {
        employees: vec![
            employee(1, "E-1", "a@acme.example", "active"),
            employee(2, "E-2", "b@acme.example", "active"),
        ],
        fail: None,
    };
    let dest = FakeDirectory {
        drops: vec![Attr::Department],
        ..FakeDirectory::default()
    };
    let first = run(&source, &dest, &opts(false)).await;
    assert_eq!(first.status.summary.created, 2);
    let notes = first.convergence.expect("notes after a writing run");
    assert_eq!(notes.len(), 2, "one note per member: department");
    let options = ImportOptions {
        convergence: notes,
        ..opts(false)
    };
    let second = run(&source, &dest, &options).await;
    assert_eq!(
        *dest.writes.lock().unwrap(),
        2,
        "no write in the second run"
    );
    assert_eq!(second.status.summary.unchanged, 2);
    assert!(second
        .report
        .iter()
        .all(|r| r.severity == Severity::Warning && r.field.as_deref() == Some("department")));
}

/// Settles the first three writes of a batch, then waits for the destination's rate
/// limit for an hour.
struct WaitsForTheRateLimit;

#[async_trait]
impl ApplyHook for WaitsForTheRateLimit {
    async fn apply(
        &self,
        inner: &FakeDirectory,
        ops: &[WriteOp],
        on_done: &(dyn for<'o> Fn(usize, &'o WriteOutcome) + Send + Sync),
    ) -> Vec<WriteOutcome> {
        inner.apply(&ops[..3], on_done).await;
        let hour = std::time::SystemTime::now() + Duration::from_secs(3600);
        crate::progress::report_wait("/Users", Some(hour));
        std::future::pending().await
    }
}

fn twenty_employees() -> FakeSource {
    FakeSource {
        employees: (1..=20)
            .map(|i| {
                employee(
                    i,
                    &format!("E-{i}"),
                    &format!("e{i}@acme.example"),
                    "active",
                )
            })
            .collect(),
        fail: None,
    }
}

#[tokio::test]
async fn a_stop_while_waiting_for_the_rate_limit_interrupts_at_once_keeping_what_was_written() {
    let source = twenty_employees();
    let dest = Hooked::new(WaitsForTheRateLimit);
    let stop = StopSignal::default();
    let options = ImportOptions {
        stop: stop.clone(),
        ..opts(false)
    };
    let counter = ProgressCounter::default();
    let mapping = mapping(false);
    let job = ImportJob {
        mapping: &mapping,
        source: &source,
        destination: &dest,
        options: &options,
        stores: Stores::default(),
        progress: &counter,
        clock: &fixed_clock(),
    };
    let run = run_import(&job);
    let stopper = async {
        // The run says that it waits, and until when.
        while counter.waiting().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let message = counter.waiting().unwrap();
        assert!(
            message.starts_with("waiting for the destination's rate limit (/Users) until "),
            "{message}"
        );
        stop.stop("spec.suspend was set to true");
    };
    let started = std::time::Instant::now();
    let (out, ()) =
        tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(run, stopper) })
            .await
            .expect("the stop ends the wait at once");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(out.status.phase, ImportPhase::Interrupted);
    assert_eq!(out.status.summary.created, 3);
    let message = out.status.message.unwrap();
    assert!(
        message
            .starts_with("Interrupted: spec.suspend was set to true; stopped after 3 of 20 writes"),
        "{message}"
    );
    // The wait is over once the run is.
    assert_eq!(counter.waiting(), None);
}

/// Twenty creates against a destination that settles three, then waits for its rate
/// limit for an hour, under `options` with a deadline of 300 ms.
async fn run_past_a_300ms_deadline(options: &ImportOptions) -> ImportOutcome {
    let dest = Hooked::new(WaitsForTheRateLimit);
    let options = ImportOptions {
        deadline: Some(Duration::from_millis(300)),
        ..options.clone()
    };
    tokio::time::timeout(
        Duration::from_secs(5),
        run_import(&ImportJob {
            mapping: &mapping(false),
            source: &twenty_employees(),
            destination: &dest,
            options: &options,
            stores: Stores::default(),
            progress: &ProgressCounter::default(),
            clock: &fixed_clock(),
        }),
    )
    .await
    .expect("the deadline or a stop ends the run")
}

#[tokio::test]
async fn a_run_past_its_deadline_fails_naming_it() {
    let out = run_past_a_300ms_deadline(&opts(false)).await;
    assert_eq!(out.status.phase, ImportPhase::Failed);
    assert_eq!(out.status.summary.created, 3);
    assert_eq!(
        out.status.message.as_deref(),
        Some("the run did not finish within its deadline of 300ms: stopped after 3 of 20 writes, the next run applies the rest (3 created); what was written stays, the next run continues")
    );
}

/// A run stopped for another reason before its deadline stays `Interrupted` for that
/// reason, even when the deadline passes while it winds down.
#[tokio::test]
async fn a_stop_before_the_deadline_is_not_reported_as_the_deadline() {
    let options = opts(false);
    let stop = options.stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.stop("spec.suspend was set to true");
    });
    let out = run_past_a_300ms_deadline(&options).await;
    assert_eq!(out.status.phase, ImportPhase::Interrupted);
    let message = out.status.message.unwrap_or_default();
    assert!(
        message.starts_with("Interrupted: spec.suspend was set to true"),
        "{message}"
    );
}

#[test]
fn a_partial_run_drops_forgotten_members_and_keeps_a_vanished_id_until_the_new_one() {
    use crate::ledger::{Ledger, Origin};
    use crate::mapping::{DesiredMember, MappedSource};
    use crate::plan::Vanished;
    let member = |id: &str, active: bool| DesiredMember {
        member: Member {
            employee_id: id.into(),
            email: format!("{id}@acme.example"),
            active,
            ..Member::default()
        },
        manager_employee_id: None,
        leaver_reason: None,
    };
    let source = MappedSource {
        members: vec![member("BACK", true), member("GONE", false)],
        records: 2,
        ..MappedSource::default()
    };
    let desired = DesiredSet::from(&source);
    let current = Accounts::default();
    let mut ledger = Ledger::default();
    for id in ["BACK", "GONE", "OTHER"] {
        ledger.insert(id, Origin::Created);
        ledger.set_account(id, Some(&format!("old-{id}")));
    }
    let plan = plan_sets(
        &desired,
        &current,
        Some(&ledger as &dyn ManagedIds),
        &PlanOptions {
            managed: AttrSet::default(),
            max_leavers_percent: 100,
            approved_leavers: None,
            when_removed: WhenRemoved::Deactivate,
            scope: PlanScope::Changed { managed: 3 },
        },
    );
    assert_eq!(
        plan.vanished,
        Vanished {
            recreated: vec![("BACK".into(), "old-BACK".into())],
            forgotten: vec!["GONE".into()],
        }
    );
    let sets = Sets {
        desired: &desired,
        current: &current,
        vanished: &plan.vanished,
    };
    assert!(next_ledger(&mut ledger, sets, &plan, true));
    let ids: Vec<&str> = ledger.ids().collect();
    assert_eq!(
        ids,
        ["BACK", "OTHER"],
        "a partial run keeps those it did not read"
    );
    assert_eq!(ledger.account("BACK").as_deref(), Some("old-BACK"));
    // A full run keeps the vanished id too (until the new account is recorded).
    let mut full = Ledger::default();
    full.insert("BACK", Origin::Adopted);
    full.set_account("BACK", Some("old-BACK"));
    next_ledger(&mut full, sets, &plan, false);
    assert_eq!(full.account("BACK").as_deref(), Some("old-BACK"));
}

async fn run_keeping_notes(notes: &MemoryStore<ConvergenceNotes>) -> ImportOutcome {
    let source = FakeSource {
        employees: vec![employee(1, "E-1", "a@acme.example", "active")],
        fail: None,
    };
    run_import(&ImportJob {
        mapping: &mapping(false),
        source: &source,
        destination: &FakeDirectory::default(),
        options: &opts(false),
        stores: Stores {
            notes: Some(notes),
            ..Stores::default()
        },
        progress: &ProgressCounter::default(),
        clock: &fixed_clock(),
    })
    .await
}

#[tokio::test]
async fn the_import_saves_its_convergence_notes_and_a_failed_save_is_a_warning_row() {
    let kept = MemoryStore::new();
    let outcome = run_keeping_notes(&kept).await;
    assert_eq!(outcome.status.phase, ImportPhase::Succeeded);
    assert_eq!(Some(kept.snapshot()), outcome.convergence);
    assert!(kept.saves() > 0, "the notes were saved");

    let failing = MemoryStore::new();
    failing.fail_saves("disk full");
    let outcome = run_keeping_notes(&failing).await;
    assert_eq!(
        outcome.status.summary.created, 1,
        "the run itself went through"
    );
    assert_eq!(outcome.status.summary.warnings, 1);
    let row = outcome
        .report
        .iter()
        .find(|r| r.severity == Severity::Warning)
        .unwrap();
    assert!(
        row.message.contains("convergence notes could not be saved")
            && row.message.contains("disk full"),
        "{}",
        row.message
    );
}
