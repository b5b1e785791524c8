//! Invitations and import summaries through a real SMTP server (`aiosmtpd` from PyPI),
//! read back from its Maildir.

mod support;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshteam_operator::api::{ImportPhase, ImportRunStatus, ImportSummary, RecordError, Severity};
use freshteam_operator::notify::summary::send_summary;
use freshteam_operator::notify::{
    confirm, deliver_pending, record_intents, summary_mail, DeliveryContext, DeliveryReport,
    EntryState, InvitationIntent, MailError, MailTransport, Outbox, OutgoingMail, RunSummary,
    SmtpMailer, SmtpSettings, Templates,
};
use freshteam_operator::state::{MemoryStore, StateFile, Store};
use freshteam_operator::sync::errors_csv;
use support::smtp::{free_port, ParsedMail, SmtpServer};

const FROM: &str = "Acme Rewards <rewards@acme.example>";
const LOGIN_URL: &str = "https://rewards.example.com/activate?org=acme&src=invite";
const PASSWORD: &str = "s3cr3t-pass";

/// A mailer with quick retries and the given rate.
fn mailer(url: &str, rate: f64, burst: u32) -> SmtpMailer {
    let mut s = SmtpSettings::parse(url, FROM).expect("SMTP settings");
    s.rate_per_second = rate;
    s.burst = burst;
    s.max_attempts = 3;
    s.retry_base = Duration::from_millis(20);
    s.retry_max = Duration::from_millis(100);
    s.timeout = Duration::from_secs(5);
    SmtpMailer::new(s).expect("mailer")
}

fn ctx() -> DeliveryContext {
    DeliveryContext::new("acme", Some(LOGIN_URL.to_string()))
}

fn member(n: usize) -> InvitationIntent {
    InvitationIntent {
        employee_id: format!("E{n:05}"),
        email: format!("member{n:05}@acme.example"),
        first_name: Some(format!("Member{n}")),
    }
}

/// Records and confirms invitations for `intents`, as the engine does around the
/// creates. Returns their Employee IDs.
async fn created(store: &dyn Store<Outbox>, intents: &[InvitationIntent]) -> HashSet<String> {
    record_intents(store, intents)
        .await
        .expect("record intents");
    let ids: Vec<String> = intents.iter().map(|i| i.employee_id.clone()).collect();
    confirm(store, &ids).await.expect("confirm");
    ids.into_iter().collect()
}

async fn deliver(
    store: &dyn Store<Outbox>,
    transport: &dyn MailTransport,
    existing: &HashSet<String>,
) -> DeliveryReport {
    deliver_pending(
        store,
        transport,
        &Templates::default(),
        &ctx(),
        Some(existing),
    )
    .await
}

/// Messages per envelope recipient.
fn per_recipient(messages: &[ParsedMail]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in messages {
        for r in &m.rcpt_to {
            *counts.entry(r.clone()).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test]
async fn invitations_greet_by_first_name_carry_the_login_url_and_escape_html() {
    support::require_peers!(Aiosmtpd);
    let server = SmtpServer::start();
    let smtp = mailer(&server.url(), 1000.0, 50);
    let store = MemoryStore::<Outbox>::new();
    let intents = [
        InvitationIntent {
            employee_id: "E-1".into(),
            email: "zoe@acme.example".into(),
            first_name: Some("Zoë <b>".into()),
        },
        InvitationIntent {
            employee_id: "E-2".into(),
            email: "anon@acme.example".into(),
            first_name: None,
        },
    ];
    let ids = created(&store, &intents).await;
    let report = deliver(&store, &smtp, &ids).await;
    assert_eq!((report.sent, report.pending), (2, 0), "{report:?}");

    let messages = server.wait_for(2, Duration::from_secs(5));
    assert_eq!(messages.len(), 2);
    let zoe = messages
        .iter()
        .find(|m| m.to == ["zoe@acme.example"])
        .unwrap();
    assert_eq!(zoe.from, "rewards@acme.example");
    assert_eq!(zoe.rcpt_to, ["zoe@acme.example"]);
    assert_eq!(zoe.subject, "Your rewards account is ready");
    assert_eq!(
        zoe.message_id.as_deref(),
        Some("invitation.acme.E-1@freshteam.provisioning.dev")
    );
    let text = zoe.text.as_deref().unwrap();
    assert!(text.starts_with("Hello Zoë <b>,"), "{text}");
    assert!(text.contains(LOGIN_URL), "{text}");
    let html = zoe.html.as_deref().unwrap();
    assert!(html.contains("<p>Hello Zoë &lt;b&gt;,</p>"), "{html}");
    assert!(
        html.contains(r#"href="https://rewards.example.com/activate?org=acme&amp;src=invite""#),
        "{html}"
    );
    assert!(zoe.attachments.is_empty());
    assert_eq!(zoe.auto_submitted.as_deref(), Some("auto-generated"));

    let anon = messages
        .iter()
        .find(|m| m.to == ["anon@acme.example"])
        .unwrap();
    assert!(anon.text.as_deref().unwrap().starts_with("Hello,\n"));
    assert!(anon.html.as_deref().unwrap().contains("<p>Hello,</p>"));
}

#[tokio::test]
async fn each_member_gets_exactly_one_invitation_across_reruns() {
    support::require_peers!(Aiosmtpd);
    let server = SmtpServer::start();
    let smtp = mailer(&server.url(), 1000.0, 50);
    let store = MemoryStore::<Outbox>::new();
    let intents: Vec<_> = (1..=25).map(member).collect();
    let ids = created(&store, &intents).await;
    assert_eq!(deliver(&store, &smtp, &ids).await.sent, 25);
    let again = deliver(&store, &smtp, &ids).await;
    assert_eq!((again.sent, again.pending), (0, 0));
    // The engine records the same members again (say they were re-created by hand).
    created(&store, &intents).await;
    assert_eq!(deliver(&store, &smtp, &ids).await.sent, 0);

    let counts = per_recipient(&server.wait_for(25, Duration::from_secs(5)));
    assert_eq!(counts.len(), 25);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
}

#[tokio::test]
async fn smtp_down_keeps_invitations_pending_then_sends_them_once() {
    support::require_peers!(Aiosmtpd);
    let port = free_port();
    let smtp = mailer(&format!("smtp://127.0.0.1:{port}"), 1000.0, 50);
    let store = MemoryStore::<Outbox>::new();
    let intents: Vec<_> = (1..=5).map(member).collect();
    let ids = created(&store, &intents).await;

    let down = deliver(&store, &smtp, &ids).await;
    assert_eq!((down.sent, down.pending), (0, 5), "{down:?}");
    assert_eq!(down.warnings.len(), 1);
    let warning = &down.warnings[0];
    assert!(warning.contains("SMTP relay unavailable"), "{warning}");
    assert!(warning.contains(&format!("127.0.0.1:{port}")), "{warning}");
    assert!(
        warning.ends_with("5 invitations are pending and will be sent on the next run"),
        "{warning}"
    );
    assert!(down.failed.is_empty());
    assert!(store
        .snapshot()
        .entries
        .values()
        .all(|e| e.state == EntryState::Intended));

    let server = SmtpServer::start_on(port);
    let up = deliver(&store, &smtp, &ids).await;
    assert_eq!((up.sent, up.pending), (5, 0), "{up:?}");
    assert!(up.warnings.is_empty(), "{:?}", up.warnings);
    assert_eq!(deliver(&store, &smtp, &ids).await.sent, 0);
    let counts = per_recipient(&server.wait_for(5, Duration::from_secs(5)));
    assert_eq!(counts.len(), 5);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
}

#[tokio::test]
async fn the_summary_reaches_every_owner_with_the_full_report_attached() {
    support::require_peers!(Aiosmtpd);
    let server = SmtpServer::start();
    let smtp = mailer(&server.url(), 1000.0, 50);
    let report: Vec<RecordError> = (0..14)
        .map(|i| RecordError {
            employee_id: Some(format!("E-{i}")),
            email: Some(format!("p{i}@acme.example")),
            field: Some("email".into()),
            severity: if i < 12 {
                Severity::Error
            } else {
                Severity::Warning
            },
            message: format!("invalid e-mail 'a,{i}' in official_email"),
        })
        .collect();
    let status = ImportRunStatus {
        phase: ImportPhase::PartiallySucceeded,
        summary: ImportSummary {
            created: 12,
            updated: 3,
            leavers: 1,
            unchanged: 1188,
            errors: 12,
            warnings: 2,
            invitations_sent: 12,
            ..ImportSummary::default()
        },
        errors: report.clone(),
        message: Some("12 created, 3 updated, 1 leaver, 12 errors, 2 warnings".into()),
        ..ImportRunStatus::default()
    };
    let csv = errors_csv(&report);
    let run = RunSummary {
        integration: "acme",
        run_name: "acme-29412345",
        status: &status,
        dry_run: false,
        report_csv: Some(&csv),
        blocked_leavers: 0,
        changes: &[],
        report_location: None,
    };
    let owners = vec![
        "hr-admin@acme.example".to_string(),
        "it-ops@acme.example".to_string(),
    ];
    let mail = summary_mail(&run, &owners).expect("a summary");
    let warnings = send_summary(&smtp, &mail).await;
    assert!(warnings.is_empty(), "{warnings:?}");

    let messages = server.wait_for(2, Duration::from_secs(5));
    assert_eq!(messages.len(), 2);
    let mut got: Vec<String> = messages.iter().flat_map(|m| m.to.clone()).collect();
    got.sort();
    assert_eq!(got, owners);
    for m in &messages {
        assert_eq!(m.from, "rewards@acme.example");
        assert_eq!(
            m.subject,
            "acme: 12 created, 3 updated, 1 leaver, 12 errors"
        );
        let text = m.text.as_deref().unwrap();
        assert!(text.contains("Import acme-29412345 of integration acme: PartiallySucceeded."));
        assert!(
            text.contains("First errors and warnings (10 of 14):"),
            "{text}"
        );
        assert!(text.contains("- error E-0 <p0@acme.example> [email]: invalid e-mail 'a,0'"));
        assert_eq!(m.attachments.len(), 1);
        let (name, content) = &m.attachments[0];
        assert_eq!(name, "errors.csv");
        let mut rows = csv::Reader::from_reader(content.as_slice());
        let headers = rows.headers().unwrap().clone();
        assert_eq!(
            headers.iter().collect::<Vec<_>>(),
            ["severity", "employee_id", "email", "field", "message"]
        );
        let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 14);
        assert_eq!(
            rows[13].iter().collect::<Vec<_>>(),
            [
                "warning",
                "E-13",
                "p13@acme.example",
                "email",
                "invalid e-mail 'a,13' in official_email"
            ]
        );
    }
}

#[tokio::test]
async fn refusals_deferrals_and_lost_replies_from_a_real_server() {
    support::require_peers!(Aiosmtpd);
    let server = SmtpServer::start_scripted(None);
    let smtp = mailer(&server.url(), 1000.0, 50);
    let store = MemoryStore::<Outbox>::new();
    let person = |id: &str, email: &str| InvitationIntent {
        employee_id: id.into(),
        email: email.into(),
        first_name: None,
    };
    let intents = [
        person("E1", "reject-1@acme.example"),
        person("E2", "defer-2@acme.example"),
        person("E3", "drop-3@acme.example"),
        person("E4", "ok-4@acme.example"),
    ];
    let ids = created(&store, &intents).await;
    let report = deliver(&store, &smtp, &ids).await;
    assert_eq!(report.sent, 1, "{report:?}");
    assert_eq!(report.pending, 1, "the deferred one");
    assert_eq!(report.uncertain, 1, "the one whose reply was lost");
    let row = |id: &str| {
        report
            .failed
            .iter()
            .find(|r| r.employee_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no row for {id}: {report:?}"))
            .clone()
    };
    assert!(
        row("E1").message.contains("(550): 5.1.1 no such user"),
        "{:?}",
        row("E1")
    );
    assert!(row("E1").message.contains("not sent again"));
    assert_eq!(row("E1").email.as_deref(), Some("reject-1@acme.example"));
    assert!(
        row("E3").message.contains("may not have been delivered"),
        "{:?}",
        row("E3")
    );
    let entries = store.snapshot().entries;
    assert_eq!(entries["E1"].state, EntryState::Failed);
    assert_eq!(entries["E2"].state, EntryState::Intended);
    assert!(entries["E2"].last_error.as_deref().unwrap().contains("451"));
    assert_eq!(entries["E3"].state, EntryState::Uncertain);
    assert_eq!(entries["E4"].state, EntryState::Sent);
    // The relay kept the "lost" message: it is there once and is not sent again.
    deliver(&store, &smtp, &ids).await;
    let counts = per_recipient(&server.wait_for(2, Duration::from_secs(5)));
    assert_eq!(
        counts,
        HashMap::from([
            ("drop-3@acme.example".to_string(), 1),
            ("ok-4@acme.example".to_string(), 1)
        ])
    );
    let stats = smtp.stats();
    assert!(stats.retries >= 2, "the deferral was retried: {stats:?}");
}

#[tokio::test]
async fn authentication_works_and_the_password_never_shows() {
    support::require_peers!(Aiosmtpd);
    let server = SmtpServer::start_scripted(Some(&format!("mailer:{PASSWORD}")));
    let good = mailer(
        &format!("smtp://mailer:{PASSWORD}@127.0.0.1:{}", server.port),
        1000.0,
        50,
    );
    good.send(OutgoingMail {
        to: vec!["owner@acme.example".into()],
        subject: "hello".into(),
        text: "hi".into(),
        ..OutgoingMail::default()
    })
    .await
    .expect("authenticated send");
    assert_eq!(server.wait_for(1, Duration::from_secs(5)).len(), 1);

    let wrong = "wr0ng-s3cr3t";
    let bad = mailer(
        &format!("smtp://mailer:{wrong}@127.0.0.1:{}", server.port),
        1000.0,
        50,
    );
    let err = bad
        .send(OutgoingMail {
            to: vec!["owner@acme.example".into()],
            subject: "hello".into(),
            text: "hi".into(),
            ..OutgoingMail::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("authenticating"), "{err}");
    let store = MemoryStore::<Outbox>::new();
    let ids = created(&store, &[member(1)]).await;
    let report = deliver(&store, &bad, &ids).await;
    assert_eq!(report.pending, 1);
    let outputs = [
        err.to_string(),
        format!("{err:?}"),
        format!("{bad:?}"),
        format!("{:?}", bad.settings()),
        bad.settings().to_string(),
        format!("{report:?}"),
    ];
    for out in outputs {
        assert!(!out.contains(wrong) && !out.contains(PASSWORD), "{out}");
    }
}

#[tokio::test]
async fn no_smtp_password_in_any_output() {
    support::require_peers!(Aiosmtpd);
    let server = SmtpServer::start();
    let url = format!("smtp://user:{PASSWORD}@127.0.0.1:{}", server.port);
    let settings = SmtpSettings::parse(&url, FROM).unwrap();
    assert_eq!(
        settings.redacted(),
        format!("smtp://user:***@127.0.0.1:{}", server.port)
    );
    let smtp = mailer(&url, 1000.0, 50);
    // aiosmtpd offers no AUTH: the login fails before anything is sent.
    let err = smtp
        .send(OutgoingMail {
            to: vec!["owner@acme.example".into()],
            subject: "s".into(),
            text: "t".into(),
            ..OutgoingMail::default()
        })
        .await
        .unwrap_err();
    let store = MemoryStore::<Outbox>::new();
    let ids = created(&store, &[member(1)]).await;
    let report = deliver(&store, &smtp, &ids).await;
    assert_eq!(report.pending, 1);
    let down = mailer(
        &format!("smtp://user:{PASSWORD}@127.0.0.1:{}", free_port()),
        1000.0,
        50,
    );
    let down_err = down
        .send(OutgoingMail {
            to: vec!["owner@acme.example".into()],
            subject: "s".into(),
            text: "t".into(),
            ..OutgoingMail::default()
        })
        .await
        .unwrap_err();
    let bad_url = SmtpSettings::parse(&format!("{url}?tls=sometimes"), FROM).unwrap_err();
    let outputs = [
        err.to_string(),
        format!("{err:?}"),
        down_err.to_string(),
        format!("{down_err:?}"),
        format!("{smtp:?}"),
        format!("{settings:?}"),
        settings.to_string(),
        settings.redacted(),
        format!("{report:?}"),
        bad_url.to_string(),
        format!("{bad_url:?}"),
    ];
    for out in outputs {
        assert!(!out.contains(PASSWORD), "{out}");
    }
    assert_eq!(server.count(), 0);
}

const INVITATIONS: usize = 1000;
const RATE: f64 = 100.0;
const BURST: u32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_invitations_through_one_pooled_connection_within_the_rate() {
    support::require_peers!(Aiosmtpd);
    let server = SmtpServer::start();
    let smtp = mailer(&server.url(), RATE, BURST);
    let dir = tempfile::tempdir().unwrap();
    let store = StateFile::new(dir.path().join("invitations.json"));
    let intents: Vec<_> = (1..=INVITATIONS).map(member).collect();
    let ids = created(&store, &intents).await;

    let start = Instant::now();
    let report = deliver(&store, &smtp, &ids).await;
    let elapsed = start.elapsed();
    let stats = smtp.stats();
    eprintln!(
        "{INVITATIONS} invitations in {:.2} s ({:.1}/s; limit {RATE}/s, burst {BURST}); {} SMTP connection(s), {} attempts",
        elapsed.as_secs_f64(),
        INVITATIONS as f64 / elapsed.as_secs_f64(),
        stats.connections,
        stats.attempts
    );
    assert_eq!(report.sent as usize, INVITATIONS, "{report:?}");
    let floor = Duration::from_secs_f64((INVITATIONS as f64 - f64::from(BURST)) / RATE);
    assert!(
        elapsed >= floor,
        "{elapsed:?} < {floor:?}: the rate limit was not respected"
    );
    assert_eq!(stats.connections, 1, "one pooled connection: {stats:?}");

    let counts = per_recipient(&server.wait_for(INVITATIONS, Duration::from_secs(10)));
    assert_eq!(counts.len(), INVITATIONS);
    assert!(counts.values().all(|n| *n == 1));
}

const CRASH_MEMBERS: usize = 300;
const CHILD_ENV: &str = "FRESHTEAM_MAIL_CRASH_CHILD";

/// Child mode of `a_crash_mid_delivery_sends_nobody_two_invitations`: delivers the
/// invitations recorded in the state file until it is killed. Does nothing otherwise.
#[tokio::test]
async fn crash_child_delivers_invitations() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (state, url) = spec.split_once('|').expect("state|url");
    let smtp = mailer(url, 100.0, 1);
    let store = StateFile::new(state);
    let ids: HashSet<String> = (1..=CRASH_MEMBERS).map(|n| member(n).employee_id).collect();
    deliver(&store, &smtp, &ids).await;
}

#[tokio::test]
async fn a_crash_mid_delivery_sends_nobody_two_invitations() {
    support::require_peers!(Aiosmtpd);
    let server = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("invitations.json");
    let store = StateFile::new(&state);
    let intents: Vec<_> = (1..=CRASH_MEMBERS).map(member).collect();
    let ids = created(&store, &intents).await;

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child_delivers_invitations", "--exact", "--nocapture"])
        .env(CHILD_ENV, format!("{}|{}", state.display(), server.url()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child");
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.count() < 60 {
        assert!(Instant::now() < deadline, "the child sent nothing");
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL the child");
    child.wait().unwrap();
    let before_restart = server.count();
    assert!(before_restart < CRASH_MEMBERS, "killed mid-delivery");

    let smtp = mailer(&server.url(), 1000.0, 50);
    let report = deliver(&store, &smtp, &ids).await;
    eprintln!(
        "killed after {before_restart} messages; the next delivery sent {}, {} in doubt",
        report.sent, report.uncertain
    );
    // The batch in flight at the kill, at most.
    assert!(
        report.uncertain as usize <= freshteam_operator::notify::DELIVERY_BATCH_MAX,
        "{report:?}"
    );
    assert_eq!(report.pending, 0);
    let doubtful: HashSet<String> = report
        .failed
        .iter()
        .filter(|r| r.message.contains("may not have been delivered"))
        .filter_map(|r| r.email.clone())
        .collect();
    assert_eq!(doubtful.len() as u32, report.uncertain);

    let counts = per_recipient(&server.wait_for(
        CRASH_MEMBERS - report.uncertain as usize,
        Duration::from_secs(10),
    ));
    for m in &intents {
        let n = counts.get(&m.email).copied().unwrap_or(0);
        if doubtful.contains(&m.email) {
            assert!(n <= 1, "{} got {n} invitations", m.email);
        } else {
            assert_eq!(n, 1, "{} got {n} invitations", m.email);
        }
    }
    assert!(counts.values().all(|n| *n == 1), "nobody twice");
    assert_eq!(deliver(&store, &smtp, &ids).await.sent, 0);
}

#[tokio::test]
async fn shared_mailer_rate_holds_across_concurrent_senders() {
    support::require_peers!(Aiosmtpd);
    let server = SmtpServer::start();
    let smtp = Arc::new(mailer(&server.url(), 100.0, 1));
    let start = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let smtp = smtp.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    smtp.send(OutgoingMail {
                        to: vec![format!("t{t}-{i}@acme.example")],
                        subject: "s".into(),
                        text: "t".into(),
                        ..OutgoingMail::default()
                    })
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(390), "{elapsed:?}");
    assert_eq!(server.wait_for(40, Duration::from_secs(5)).len(), 40);
    assert!(smtp.stats().connections <= 2, "{:?}", smtp.stats());
    smtp.close().await;
}
