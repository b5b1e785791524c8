use std::collections::{HashMap, VecDeque};

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::deliver::prune;
use super::*;
use crate::notify::templates::Templates;
use crate::notify::{MailError, MailTransport, OutgoingMail};
use crate::state::{MemoryStore, StateFile};

/// Records messages; answers from a per-address script, then `default`.
#[derive(Default)]
struct Fake {
    sent: Mutex<Vec<OutgoingMail>>,
    attempts: Mutex<Vec<String>>,
    script: Mutex<HashMap<String, VecDeque<MailError>>>,
    default: Mutex<Option<MailError>>,
}

impl Fake {
    fn failing(e: MailError) -> Fake {
        let f = Fake::default();
        *f.default.lock().unwrap() = Some(e);
        f
    }
    fn answer(&self, email: &str, e: MailError) {
        self.script
            .lock()
            .unwrap()
            .entry(email.to_string())
            .or_default()
            .push_back(e);
    }
    fn heal(&self) {
        *self.default.lock().unwrap() = None;
    }
    fn sent_to(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.to.join(","))
            .collect()
    }
    fn attempts(&self) -> usize {
        self.attempts.lock().unwrap().len()
    }
}

#[async_trait]
impl MailTransport for Fake {
    async fn send(&self, message: OutgoingMail) -> Result<(), MailError> {
        let to = message.to.join(",");
        self.attempts.lock().unwrap().push(to.clone());
        if let Some(e) = self
            .script
            .lock()
            .unwrap()
            .get_mut(&to)
            .and_then(|q| q.pop_front())
        {
            return Err(e);
        }
        if let Some(e) = self.default.lock().unwrap().clone() {
            return Err(e);
        }
        self.sent.lock().unwrap().push(message);
        Ok(())
    }
}

fn intent(n: u32) -> InvitationIntent {
    InvitationIntent {
        employee_id: format!("E{n}"),
        email: format!("p{n}@acme.example"),
        first_name: Some(format!("Person{n}")),
    }
}

fn ids(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|n| format!("E{n}")).collect()
}

fn set(ids: &[String]) -> HashSet<String> {
    ids.iter().cloned().collect()
}

fn ctx() -> DeliveryContext {
    DeliveryContext::new("acme", Some("https://rewards.example.com/activate".into()))
}

async fn deliver(
    store: &dyn Store<Outbox>,
    fake: &Fake,
    existing: Option<&HashSet<String>>,
) -> DeliveryReport {
    deliver_pending(store, fake, &Templates::default(), &ctx(), existing).await
}

/// Records and confirms `n` created members.
async fn created(store: &dyn Store<Outbox>, n: u32) -> Vec<String> {
    let intents: Vec<_> = (1..=n).map(intent).collect();
    record_intents(store, &intents).await.unwrap();
    let ids = ids(1..=n);
    confirm(store, &ids).await.unwrap();
    ids
}

#[tokio::test]
async fn each_created_member_gets_one_invitation_and_a_rerun_sends_nothing() {
    let store = MemoryStore::new();
    let ids = created(&store, 3).await;
    let fake = Fake::default();
    let saves_before = store.saves();
    let report = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!((report.sent, report.pending, report.uncertain), (3, 0, 0));
    assert!(
        report.failed.is_empty() && report.warnings.is_empty(),
        "{report:?}"
    );
    // A first batch of one (it measures the relay), then the other two in one batch (its
    // `Sending` save carries the first one's outcome), and one save at the end.
    assert_eq!(store.saves() - saves_before, 3);
    let sent = fake.sent.lock().unwrap().clone();
    assert_eq!(
        fake.sent_to(),
        ["p1@acme.example", "p2@acme.example", "p3@acme.example"]
    );
    assert!(sent[0].text.starts_with("Hello Person1,"));
    assert!(sent[0]
        .text
        .contains("https://rewards.example.com/activate"));
    assert_eq!(
        sent[0].message_id.as_deref(),
        Some("<invitation.acme.E1@freshteam.provisioning.dev>")
    );
    let outbox = store.snapshot();
    assert!(outbox
        .entries
        .values()
        .all(|e| e.state == EntryState::Sent && e.first_name.is_none()));

    let again = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!((again.sent, again.pending), (0, 0));
    // Recording the same members again (re-created by hand) does not invite them again.
    record_intents(&store, &[intent(1)]).await.unwrap();
    confirm(&store, &ids[..1]).await.unwrap();
    let again = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!(again.sent, 0);
    assert_eq!(fake.sent_to().len(), 3);
}

#[tokio::test]
async fn an_intent_is_sent_when_its_member_exists_even_without_confirmation() {
    // A crash after the create and before `confirm`: the next run finds the member.
    let store = MemoryStore::new();
    record_intents(&store, &[intent(1)]).await.unwrap();
    let fake = Fake::default();
    let report = deliver(&store, &fake, Some(&set(&ids(1..=1)))).await;
    assert_eq!(report.sent, 1);
}

#[tokio::test]
async fn unconfirmed_intents_wait_one_run_for_their_member_then_go() {
    let store = MemoryStore::new();
    let fake = Fake::default();
    record_intents(&store, &[intent(1), intent(2)])
        .await
        .unwrap();
    // The create's answer was lost: recorded during this run, kept.
    let report = deliver(&store, &fake, Some(&HashSet::new())).await;
    assert_eq!((report.sent, report.pending), (0, 2));
    assert_eq!(
        report.warnings,
        ["2 invitations are pending and will be sent on the next run"]
    );
    // The next run lists E1 (it was created after all) but not E2 (never created).
    let report = deliver(&store, &fake, Some(&set(&ids(1..=1)))).await;
    assert_eq!((report.sent, report.pending), (1, 0));
    assert!(!store.snapshot().entries.contains_key("E2"));
    // Unknown destination: unconfirmed intents are kept whatever their age.
    record_intents(&store, &[intent(3)]).await.unwrap();
    deliver(&store, &fake, None).await;
    let report = deliver(&store, &fake, None).await;
    assert_eq!((report.sent, report.pending), (0, 1));
    assert_eq!(fake.sent_to(), ["p1@acme.example"]);
}

#[tokio::test]
async fn forget_drops_intents_and_discard_pending_clears_them() {
    let store = MemoryStore::new();
    record_intents(&store, &[intent(1), intent(2), intent(3)])
        .await
        .unwrap();
    forget(&store, &ids(1..=1)).await.unwrap();
    assert_eq!(store.snapshot().pending(), 2);
    assert_eq!(discard_pending(&store).await.unwrap(), 2);
    assert_eq!(store.snapshot().pending(), 0);
}

#[tokio::test]
async fn an_entry_found_sending_is_reported_and_never_sent_again() {
    let store = MemoryStore::new();
    let ids = created(&store, 2).await;
    let mut outbox = store.snapshot();
    outbox.entries.get_mut("E1").unwrap().state = EntryState::Sending;
    store.save(&outbox).await.unwrap();
    let fake = Fake::default();
    let report = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!((report.sent, report.uncertain), (1, 1));
    assert_eq!(report.failed.len(), 1);
    let row = &report.failed[0];
    assert_eq!(row.employee_id.as_deref(), Some("E1"));
    assert_eq!(row.email.as_deref(), Some("p1@acme.example"));
    assert_eq!(row.severity, Severity::Warning);
    assert!(
        row.message.contains("may not have been delivered"),
        "{}",
        row.message
    );
    assert_eq!(fake.sent_to(), ["p2@acme.example"]);
    assert_eq!(store.snapshot().entries["E1"].state, EntryState::Uncertain);
    let again = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!((again.sent, again.uncertain), (0, 0));
}

#[tokio::test]
async fn an_unavailable_relay_stops_delivery_and_keeps_everything_pending() {
    let store = MemoryStore::new();
    let ids = created(&store, 5).await;
    let fake = Fake::failing(MailError::Unavailable("connection refused".into()));
    let report = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!((report.sent, report.pending), (0, 5));
    assert_eq!(fake.attempts(), 1, "one attempt, not one per member");
    assert_eq!(report.warnings.len(), 1);
    assert!(report.warnings[0].contains("connection refused"));
    assert!(
        report.warnings[0].ends_with("5 invitations are pending and will be sent on the next run")
    );
    assert!(store
        .snapshot()
        .entries
        .values()
        .all(|e| e.state == EntryState::Intended));

    fake.heal();
    let report = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!((report.sent, report.pending), (5, 0));
    let again = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!(again.sent, 0);
    assert_eq!(fake.sent_to().len(), 5);
}

#[tokio::test]
async fn deferrals_stay_pending_and_a_run_of_them_stops_delivery() {
    let store = MemoryStore::new();
    let ids = created(&store, 2).await;
    let fake = Fake::default();
    fake.answer(
        "p1@acme.example",
        MailError::Transient("451 try later".into()),
    );
    let report = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!((report.sent, report.pending), (1, 1));
    let report = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!((report.sent, report.pending), (1, 0));
    assert_eq!(fake.sent_to(), ["p2@acme.example", "p1@acme.example"]);

    let store = MemoryStore::new();
    let ids = created(&store, 5).await;
    let fake = Fake::failing(MailError::Transient("421 too many messages".into()));
    let report = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!(fake.attempts(), 3);
    assert_eq!((report.sent, report.pending), (0, 5));
    assert!(
        report.warnings[0].contains("deferred 3 invitations in a row"),
        "{:?}",
        report.warnings
    );
}

#[tokio::test]
async fn a_refused_recipient_is_given_up_when_the_relay_accepts_others() {
    let store = MemoryStore::new();
    let ids = created(&store, 2).await;
    let fake = Fake::default();
    fake.answer(
        "p1@acme.example",
        MailError::Permanent("RCPT TO: 550 5.1.1 no such user".into()),
    );
    let report = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!((report.sent, report.pending), (1, 0));
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].employee_id.as_deref(), Some("E1"));
    assert!(report.failed[0].message.contains("550 5.1.1 no such user"));
    assert_eq!(store.snapshot().entries["E1"].state, EntryState::Failed);
    let again = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!((again.sent, again.failed.len()), (0, 0));
}

#[tokio::test]
async fn refusals_with_no_accepted_invitation_are_retried_on_later_runs_then_given_up() {
    let store = MemoryStore::new();
    let ids = created(&store, 5).await;
    let fake = Fake::failing(MailError::Permanent("550 5.7.1 not allowed".into()));
    for run in 1..=3u32 {
        let report = deliver(&store, &fake, Some(&set(&ids))).await;
        // Three refusals in a row stop the run: the relay itself seems to refuse.
        assert_eq!(fake.attempts(), 3 * run as usize);
        assert_eq!(report.failed.len(), 3);
        if run < 3 {
            assert_eq!(report.pending, 5);
            assert!(report.failed[0]
                .message
                .contains(&format!("refusal {run} of 3")));
        } else {
            assert_eq!(report.pending, 2);
            assert!(report.failed[0].message.contains("not sent again"));
        }
    }
}

#[tokio::test]
async fn an_uncertain_send_is_not_retried() {
    let store = MemoryStore::new();
    let ids = created(&store, 2).await;
    let fake = Fake::default();
    fake.answer(
        "p1@acme.example",
        MailError::Uncertain("connection reset".into()),
    );
    let report = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!((report.sent, report.uncertain, report.pending), (1, 1, 0));
    assert_eq!(store.snapshot().entries["E1"].state, EntryState::Uncertain);
    deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!(fake.attempts(), 2);
}

#[tokio::test]
async fn nothing_is_sent_unless_sending_was_saved_first() {
    let store = MemoryStore::new();
    store.fail_saves_after(3, "disk full"); // record + confirm + the first batch's `Sending`
    let ids = created(&store, 3).await;
    let fake = Fake::default();
    let report = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!(fake.sent_to(), ["p1@acme.example"]);
    assert_eq!(report.sent, 1);
    assert!(
        report.warnings.iter().any(|w| w.contains("disk full")),
        "{:?}",
        report.warnings
    );
    // As stored: E1 still `Sending` (its outcome was not saved), the second batch pending.
    let stored: Outbox = store.snapshot();
    assert_eq!(stored.entries["E1"].state, EntryState::Sending);
    assert_eq!(stored.entries["E2"].state, EntryState::Intended);
    assert_eq!(stored.entries["E3"].state, EntryState::Intended);
}

#[tokio::test]
async fn an_unreadable_outbox_sends_nothing_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, "{not json").unwrap();
    let store = StateFile::new(&path);
    let fake = Fake::default();
    let report = deliver(&store, &fake, None).await;
    assert_eq!(report.sent, 0);
    assert!(report.warnings[0].contains("state.json: not a valid state file"));
    assert!(record_intents(&store, &[intent(1)]).await.is_err());
}

#[tokio::test]
async fn the_file_store_round_trips_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    for fsync in [false, true] {
        let store = StateFile::new(&path).with_fsync(fsync);
        assert_eq!(
            Store::<Outbox>::load(&store).await.unwrap(),
            Outbox::default()
        );
        record_intents(&store, &[intent(1), intent(2)])
            .await
            .unwrap();
        let loaded: Outbox = store.load().await.unwrap();
        assert_eq!(loaded.pending(), 2);
        assert_eq!(loaded.entries["E1"].first_name.as_deref(), Some("Person1"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["state.json"]);
        std::fs::remove_file(&path).unwrap();
    }
    let err = StateFile::new(dir.path().join("no/such/dir/state.json"))
        .save(&Outbox::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("state.json"), "{err}");
}

#[test]
fn finished_entries_are_pruned_by_age_then_count() {
    let entry = |state, since| OutboxEntry {
        email: "x@acme.example".into(),
        first_name: None,
        state,
        confirmed: true,
        generation: 0,
        refusals: 0,
        last_error: None,
        account: None,
        round: 0,
        since,
    };
    let mut outbox = Outbox::default();
    outbox
        .entries
        .insert("old".into(), entry(EntryState::Sent, 10));
    outbox
        .entries
        .insert("a".into(), entry(EntryState::Sent, 1_000));
    outbox
        .entries
        .insert("b".into(), entry(EntryState::Failed, 1_001));
    outbox
        .entries
        .insert("c".into(), entry(EntryState::Uncertain, 1_002));
    outbox
        .entries
        .insert("pending".into(), entry(EntryState::Intended, 1));
    let limits = OutboxLimits {
        keep_done_for: Duration::from_secs(500),
        max_done: 2,
        ..OutboxLimits::default()
    };
    prune(&mut outbox, 1_100, &limits);
    let left: Vec<_> = outbox.entries.keys().cloned().collect();
    assert_eq!(left, ["b", "c", "pending"]);
}

#[test]
fn message_ids_are_stable_and_well_formed() {
    let mut c = ctx();
    c.integration = "team/acme".into();
    c.message_id_domain = Some("acme.example".into());
    assert_eq!(
        invitation_message_id(&c, "E 17@x"),
        "<invitation.team=2Facme.E=2017=40x@acme.example>"
    );
}

/// How many entries each save left `Sending`.
fn sending_per_save(store: &MemoryStore<Outbox>) -> Vec<usize> {
    let sending = |o: &Outbox| {
        o.entries
            .values()
            .filter(|e| e.state == EntryState::Sending)
            .count()
    };
    store.saved().iter().map(sending).collect()
}

/// Answers after `delay`, like a relay with a pace.
struct Paced {
    inner: Fake,
    delay: Duration,
}

#[async_trait]
impl MailTransport for Paced {
    async fn send(&self, message: OutgoingMail) -> Result<(), MailError> {
        tokio::time::sleep(self.delay).await;
        self.inner.send(message).await
    }
}

#[tokio::test]
async fn a_fast_relay_gets_batches_of_at_most_the_batch_maximum() {
    let store = MemoryStore::recording();
    let ids = created(&store, 250).await;
    let fake = Fake::default();
    let report = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!(report.sent, 250);
    // record, confirm, then batches doubling up to 100, then the final save.
    let sending = sending_per_save(&store);
    assert_eq!(sending, [0, 0, 1, 2, 4, 8, 16, 32, 64, 100, 23, 0]);
    assert_eq!(fake.sent_to().len(), 250);
}

#[tokio::test]
async fn a_slow_relay_gets_batches_of_what_it_takes_in_the_batch_time() {
    let store = MemoryStore::recording();
    let ids = created(&store, 40).await;
    let paced = Paced {
        inner: Fake::default(),
        delay: Duration::from_millis(10),
    };
    let mut ctx = ctx();
    ctx.limits.batch_time = Duration::from_millis(100);
    let report = deliver_pending(
        &store,
        &paced,
        &Templates::default(),
        &ctx,
        Some(&set(&ids)),
    )
    .await;
    assert_eq!(report.sent, 40);
    let sending = sending_per_save(&store);
    let batches = &sending[2..sending.len() - 1];
    // At most 100 messages a second: at most 10 in 100 ms, and never all at once.
    assert!(batches.iter().all(|n| (1..=10).contains(n)), "{sending:?}");
    // A batch cut by time hands its unsent rest to the next one (counted again there).
    assert!(batches.iter().sum::<usize>() >= 40, "{sending:?}");
    assert!(batches.len() < 40, "one save per message: {sending:?}");
}

#[tokio::test]
async fn a_relay_going_down_mid_batch_leaves_the_rest_of_the_batch_pending() {
    let store = MemoryStore::new();
    let ids = created(&store, 5).await;
    let fake = Fake::default();
    fake.answer(
        "p3@acme.example",
        MailError::Unavailable("connection refused".into()),
    );
    let report = deliver(&store, &fake, Some(&set(&ids))).await;
    assert_eq!(report.sent, 2);
    assert_eq!(report.pending, 3);
    let stored = store.snapshot();
    for (id, state) in [
        ("E1", EntryState::Sent),
        ("E2", EntryState::Sent),
        ("E3", EntryState::Intended),
        ("E4", EntryState::Intended),
        ("E5", EntryState::Intended),
    ] {
        assert_eq!(stored.entries[id].state, state, "{id}");
    }
}

/// `E1` created (as the engine records it: a new account) as `acct`, and delivered.
async fn invited_as(store: &dyn Store<Outbox>, fake: &Fake, acct: &str) {
    record_intents_for_new_accounts(store, &[intent(1)])
        .await
        .unwrap();
    confirm_accounts(store, &[("E1".into(), acct.into())])
        .await
        .unwrap();
    deliver(store, fake, Some(&set(&ids(1..=1)))).await;
}

#[tokio::test]
async fn an_account_created_again_gets_one_new_invitation_with_its_own_message_id() {
    let store = MemoryStore::new();
    let fake = Fake::default();
    invited_as(&store, &fake, "A").await;
    let entry = &store.load().await.unwrap().entries["E1"];
    assert_eq!((entry.account.as_deref(), entry.round), (Some("A"), 0));
    // Account A vanished; B replaces it: one new invitation, with its own Message-ID.
    invited_as(&store, &fake, "B").await;
    // Delivering again sends nothing more.
    deliver(&store, &fake, Some(&set(&ids(1..=1)))).await;
    let sent = fake.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "{:?}", fake.sent_to());
    let message_ids: Vec<_> = sent.iter().map(|m| m.message_id.clone().unwrap()).collect();
    assert_eq!(message_ids[0], invitation_message_id(&ctx(), "E1"));
    assert_eq!(message_ids[1], invitation_message_id_of(&ctx(), "E1", 1));
    assert_ne!(message_ids[0], message_ids[1]);
    let entry = &store.load().await.unwrap().entries["E1"];
    assert_eq!((entry.account.as_deref(), entry.round), (Some("B"), 1));
    // The plain recording (not a new account) still never sends twice.
    record_intents(&store, &[intent(1)]).await.unwrap();
    deliver(&store, &fake, Some(&set(&ids(1..=1)))).await;
    assert_eq!(fake.sent_to().len(), 2);
}

#[tokio::test]
async fn a_new_accounts_invitation_is_recorded_once_across_a_crash_before_the_create() {
    let store = MemoryStore::new();
    let fake = Fake::default();
    invited_as(&store, &fake, "A").await;
    record_intents_for_new_accounts(&store, &[intent(1)])
        .await
        .unwrap();
    // Crash before the create; the next run records the same create again.
    invited_as(&store, &fake, "B").await;
    assert_eq!(fake.sent_to().len(), 2);
    assert_eq!(store.load().await.unwrap().entries["E1"].round, 1);
}

#[tokio::test]
async fn a_later_accounts_create_that_never_happened_keeps_the_rounds_counting() {
    let store = MemoryStore::new();
    let fake = Fake::default();
    invited_as(&store, &fake, "A").await;
    // A new account is planned but its create fails: the intent is dropped at a later
    // delivery, yet the round is kept.
    record_intents_for_new_accounts(&store, &[intent(1)])
        .await
        .unwrap();
    let nobody = HashSet::new();
    deliver(&store, &fake, Some(&nobody)).await; // the run that recorded it
    deliver(&store, &fake, Some(&nobody)).await; // a later one
    let entry = &store.load().await.unwrap().entries["E1"];
    assert_eq!((entry.state, entry.round), (EntryState::Failed, 1));
    invited_as(&store, &fake, "B").await;
    let sent = fake.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1].message_id.as_deref(),
        Some(invitation_message_id_of(&ctx(), "E1", 2).as_str())
    );
}
