//! What the destination refuses: the profile's checks before planning, and the memory of
//! writes the service refused (HTTP 400).

use super::*;
use crate::api::ScimProfile;
use crate::ledger::Ledger;
use crate::state::MemoryStore;

/// Answers 400 `invalidValue` to any write giving a first name with a digit, as Reward
/// Gateway does, or the name "Nobody" (a rule of its own); other writes go to the fake.
#[derive(Default)]
struct Refusing;

/// A [`FakeDirectory`] that refuses as [`Refusing`] says.
type RefusingDirectory = Hooked<Refusing>;

fn refuses(op: &WriteOp) -> bool {
    let digit = |v: &str| v == "Nobody" || v.chars().any(|c| c.is_ascii_digit());
    match op {
        WriteOp::Create { member } => member.first_name.as_deref().is_some_and(digit),
        WriteOp::Update(UpdateOp { changes, .. }) => changes
            .iter()
            .any(|c| matches!(c, Change::Set(Attr::FirstName, v) if digit(v))),
    }
}

#[async_trait]
impl ApplyHook for Refusing {
    async fn apply(
        &self,
        inner: &FakeDirectory,
        ops: &[WriteOp],
        on_done: &(dyn for<'o> Fn(usize, &'o WriteOutcome) + Send + Sync),
    ) -> Vec<WriteOutcome> {
        let mut out = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let outcome = if refuses(op) {
                *inner.writes.lock().unwrap() += 1;
                WriteOutcome::Failed {
                    field: None,
                    message: "could not create the member: the destination answered 400 invalidValue: name.givenName has a digit".into(),
                    refused: Some("400 invalidValue: name.givenName has a digit".into()),
                }
            } else {
                inner
                    .apply(std::slice::from_ref(op), &|_, _| {})
                    .await
                    .remove(0)
            };
            on_done(i, &outcome);
            out.push(outcome);
        }
        out
    }
}

fn named(id: i64, first: &str) -> (i64, HashMap<&'static str, String>) {
    let mut e = employee(
        id,
        &format!("E-{id}"),
        &format!("e{id}@acme.example"),
        "active",
    );
    e.1.insert("first_name", first.to_string());
    e
}

async fn run_with(
    source: &FakeSource,
    dest: &dyn MemberDirectory,
    ledger: &MemoryStore<Ledger>,
    options: &ImportOptions,
) -> ImportOutcome {
    run_import(&ImportJob {
        mapping: &mapping(false),
        source,
        destination: dest,
        options,
        stores: Stores {
            outbox: None,
            ledger: Some(ledger),
            notes: None,
        },
        progress: &ProgressCounter::default(),
        clock: &fixed_clock(),
    })
    .await
}

fn rows_of<'a>(out: &'a ImportOutcome, employee_id: &str) -> Vec<&'a RecordError> {
    out.report
        .iter()
        .filter(|r| r.employee_id.as_deref() == Some(employee_id))
        .collect()
}

#[tokio::test]
async fn the_reward_gateway_profile_makes_refused_names_error_rows_without_a_request() {
    let dest = FakeDirectory::default();
    let ledger = MemoryStore::new();
    let mut source = FakeSource {
        employees: vec![named(1, "Ada"), named(2, "Bob"), named(3, "Cleo")],
        fail: None,
    };
    let options = ImportOptions {
        profile: ScimProfile::RewardGateway,
        ..opts(false)
    };
    let first = run_with(&source, &dest, &ledger, &options).await;
    assert_eq!(first.status.summary.created, 3);

    // E-2 is renamed to a name Reward Gateway refuses, E-4 joins with one.
    source.employees[1] = named(2, "R2-D2");
    source.employees.push(named(4, "C-3PO"));
    source.employees.push(named(5, "Dana"));
    let writes = *dest.writes.lock().unwrap();
    for dry_run in [true, false] {
        let options = ImportOptions {
            dry_run,
            ..options.clone()
        };
        let out = run_with(&source, &dest, &ledger, &options).await;
        let s = &out.status.summary;
        assert_eq!(
            (s.created, s.updated, s.leavers, s.errors),
            (1, 0, 0, 2),
            "dry run {dry_run}: {:?}",
            out.report
        );
        assert_eq!(out.status.phase, ImportPhase::PartiallySucceeded);
        for (id, name) in [("E-2", "R2-D2"), ("E-4", "C-3PO")] {
            let rows = rows_of(&out, id);
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!(rows[0].severity, Severity::Error);
            assert_eq!(rows[0].field.as_deref(), Some("firstName"));
            assert!(
                rows[0].message.starts_with(&format!(
                    "Reward Gateway refuses first names with characters other than letters, spaces, hyphens, dots and apostrophes: \"{name}\" has "
                )),
                "{}",
                rows[0].message
            );
        }
    }
    // One create (E-5); nothing for the refused; E-2 kept its old name and stays active.
    assert_eq!(*dest.writes.lock().unwrap(), writes + 1);
    let members = dest.members.lock().unwrap();
    let e2 = members
        .iter()
        .find(|m| m.member.employee_id == "E-2")
        .unwrap();
    assert_eq!(e2.member.first_name.as_deref(), Some("Bob"));
    assert!(e2.member.active, "a refused member is never a leaver");
    assert!(!members.iter().any(|m| m.member.employee_id == "E-4"));
}

#[tokio::test]
async fn a_refused_write_is_not_sent_again_until_the_values_change() {
    let dest = RefusingDirectory::default();
    let ledger = MemoryStore::new();
    let mut source = FakeSource {
        employees: vec![named(1, "Ada"), named(2, "R2-D2")],
        fail: None,
    };
    let mut options = opts(false);
    let first = run_with(&source, &dest, &ledger, &options).await;
    assert_eq!(first.status.summary.created, 1);
    assert_eq!(first.status.summary.errors, 1);
    assert!(rows_of(&first, "E-2")[0]
        .message
        .ends_with("400 invalidValue: name.givenName has a digit"));
    let writes = *dest.inner.writes.lock().unwrap();
    assert_eq!(writes, 2);

    // The next runs, with the notes kept: no request for E-2, one error row saying why.
    options.convergence = first.convergence.clone().unwrap();
    for _ in 0..2 {
        let again = run_with(&source, &dest, &ledger, &options).await;
        assert_eq!(*dest.inner.writes.lock().unwrap(), writes, "not sent again");
        assert_eq!(again.status.phase, ImportPhase::PartiallySucceeded);
        let rows = rows_of(&again, "E-2");
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].message,
            "refused by the destination on 2026-11-24: 400 invalidValue: name.givenName has a digit; not sent again until it changes in Freshteam"
        );
        options.convergence = again.convergence.clone().unwrap();
        assert_eq!(options.convergence.refusals().len(), 1, "still remembered");
    }
    // A dry run shows it too and keeps the notes.
    let dry = run_with(
        &source,
        &dest,
        &ledger,
        &ImportOptions {
            dry_run: true,
            ..options.clone()
        },
    )
    .await;
    assert_eq!(rows_of(&dry, "E-2").len(), 1);
    assert!(dry.convergence.is_none());

    // Changed in Freshteam (still refused): tried again, and remembered again.
    source.employees[1] = named(2, "R2-D3");
    let changed = run_with(&source, &dest, &ledger, &options).await;
    assert_eq!(*dest.inner.writes.lock().unwrap(), writes + 1);
    assert!(rows_of(&changed, "E-2")[0]
        .message
        .contains("the destination answered 400"));
    options.convergence = changed.convergence.clone().unwrap();

    // Changed to a name the destination takes: created; the refusal is forgotten.
    source.employees[1] = named(2, "Artoo");
    let fixed = run_with(&source, &dest, &ledger, &options).await;
    assert_eq!(fixed.status.summary.created, 1);
    assert_eq!(fixed.status.phase, ImportPhase::Succeeded);
    assert!(fixed.convergence.unwrap().refusals().is_empty());
}

/// A run that may keep an incremental cursor (in the ledger).
fn with_cursor(options: ImportOptions) -> ImportOptions {
    ImportOptions {
        mode: Some(mode::ModePolicy {
            requested: mode::RequestedMode::Auto,
            full_schedule: crate::schedule::Schedule::parse("weekly").unwrap(),
            time_zone: chrono_tz::UTC,
            fingerprint: "f".into(),
        }),
        ..options
    }
}

#[tokio::test]
async fn members_refused_for_their_values_do_not_hold_the_cursor_back() {
    let mut source_profile = FakeSource {
        employees: vec![named(1, "Ada"), named(2, "Nobody"), named(3, "Cleo")],
        fail: None,
    };
    source_profile.employees[2]
        .1
        .insert("last_name", "O<Brien".into());
    // One refused by the profile, one by the service; both error rows.
    let dest = RefusingDirectory::default();
    let ledger = MemoryStore::new();
    let options = with_cursor(ImportOptions {
        profile: ScimProfile::RewardGateway,
        ..opts(false)
    });
    let out = run_with(&source_profile, &dest, &ledger, &options).await;
    assert_eq!(out.status.summary.errors, 2, "{:?}", out.report);
    assert!(
        ledger.snapshot().cursor.is_some(),
        "refusals keep the cursor moving"
    );

    // Any other failure still holds it back.
    let dest = FakeDirectory {
        reject: vec!["e1@acme.example".into()],
        ..FakeDirectory::default()
    };
    let ledger = MemoryStore::new();
    let out = run_with(&source_profile, &dest, &ledger, &options).await;
    assert_eq!(out.status.summary.errors, 2);
    assert!(
        ledger.snapshot().cursor.is_none(),
        "a 409 is not a refusal of values"
    );
}
