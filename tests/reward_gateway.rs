//! Against a SCIM service shaped like Reward Gateway (`tests/peers/reward_gateway.py`):
//! the real `sync` binary with its request budget, its refusals and its vanished
//! accounts. The limit is scaled down (120 requests per 4-second window per endpoint
//! instead of 180 per 15 minutes) so that a 500-member import takes seconds; the peer
//! announces the reset in whole seconds, as Reward Gateway does, so windows much
//! shorter than that would mostly measure rounding.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::peers::{PeerStats, PROGRAMME};
use support::smtp::SmtpServer;
use support::sync_env::{employee_id, Env, Run, API_KEY};
use support::{Peer, ScimServer};

const SPC: &str = "/ServiceProviderConfig";
const LIMIT: u32 = 120;
const WINDOW: Duration = Duration::from_secs(4);
const PROFILE: &str = "      profile: RewardGateway\n";
const MAIL_SPEC: &str = "  welcomeEmail: {enabled: true, loginUrl: \"https://rewards.example.com/activate\"}\n  notifications: {recipients: [\"hr-admin@acme.example\"]}\n";

fn reward_gateway(limit: u32, window: Duration) -> Peer {
    Peer::RewardGateway { limit, window }
}

/// One integration against the peer, with welcome e-mail, a state file and a report.
struct Setup {
    env: Env,
    smtp: SmtpServer,
    file: PathBuf,
    state: PathBuf,
    report: PathBuf,
}

impl Setup {
    async fn new(employees: usize, peer: Peer, profile: bool) -> Setup {
        let env = Env::start_on(employees, peer).await;
        let smtp = SmtpServer::start();
        let spec = format!("{}{MAIL_SPEC}", Env::default_mapping());
        let scim = if profile { PROFILE } else { "" };
        let file = env.write("rg.yaml", &env.manifest_scim(API_KEY, scim, &spec));
        let state = env.dir.path().join("state.json");
        let report = env.dir.path().join("report.csv");
        Setup {
            env,
            smtp,
            file,
            state,
            report,
        }
    }

    fn scim(&self) -> &ScimServer {
        &self.env.scim
    }

    /// `sync` with e-mail, the state file and the full report: the run and its wall time.
    /// The relay takes 1,000 messages a second (the mailer's default is 10), so that the
    /// destination's budget, not the invitations' pace, sets the time of an import.
    async fn sync(&self, extra: &[&str]) -> (Run, Duration) {
        let relay = format!("{}?rate=1000&burst=100", self.smtp.url());
        let mut args = vec![
            "--output",
            "json",
            "--smtp-url",
            &relay,
            "--mail-from",
            "rewards@acme.example",
            "--state-file",
            self.state.to_str().unwrap(),
            "--error-report",
            self.report.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let start = Instant::now();
        let run = self.env.sync_file(&self.file, &args).await;
        (run, start.elapsed())
    }

    /// The report's rows (severity, employee id, field, message).
    fn report_rows(&self) -> Vec<[String; 4]> {
        let mut reader = csv::Reader::from_path(&self.report).expect("the report");
        reader
            .records()
            .map(|r| {
                let r = r.expect("a report row");
                [0, 1, 3, 4].map(|i| r.get(i).unwrap_or_default().to_string())
            })
            .collect()
    }

    /// Invitations per recipient (the owner's summaries left out).
    fn invitations(&self) -> HashMap<String, usize> {
        let mut per = HashMap::new();
        for m in self.smtp.messages() {
            if m.to.iter().any(|t| t.contains("hr-admin@")) {
                continue;
            }
            for t in &m.to {
                *per.entry(t.to_lowercase()).or_insert(0) += 1;
            }
        }
        per
    }
}

fn phase(run: &Run) -> String {
    run.json()["status"]["phase"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn rows_for(run: &Run, employee: &str) -> Vec<Value> {
    run.json()["status"]["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["employeeId"] == employee)
        .collect()
}

/// Writes the peer saw (any method but GET).
fn writes(stats: &PeerStats) -> u64 {
    ["POST", "PUT", "PATCH", "DELETE"]
        .iter()
        .map(|m| stats.totals.method(m))
        .sum()
}

/// Three employees whose names Reward Gateway refuses: (Employee ID, the mapping field,
/// a word the rule's description holds).
fn add_refused(env: &Env) -> Vec<(String, &'static str, &'static str)> {
    let long = "A".repeat(51);
    let people = [
        ("E-R1", "R2-D2", "Droid", "firstName", "letter"),
        ("E-R2", "Ada", "O<Brien", "lastName", "letter"),
        ("E-R3", long.as_str(), "Long", "firstName", "50"),
    ];
    people
        .iter()
        .map(|(id, first, last, field, rule)| {
            env.sim
                .add_employee(json!({
                    "employee_id": id, "first_name": first, "last_name": last,
                    "official_email": format!("{}@acme.example", id.to_lowercase()),
                    "status": "active", "designation": "Analyst"
                }))
                .unwrap();
            (id.to_string(), *field, *rule)
        })
        .collect()
}

/// The error row of a refused employee names the field and the rule.
fn assert_refusal_row(rows: &[Value], id: &str, field: &str, rule: &str) {
    let spellings: &[&str] = match field {
        "firstName" => &["firstName", "first name", "givenName", "first_name"],
        _ => &["lastName", "last name", "familyName", "last_name"],
    };
    let named = |r: &Value| {
        let message = r["message"].as_str().unwrap_or_default();
        r["field"] == field || spellings.iter().any(|s| message.contains(s))
    };
    let row = rows
        .iter()
        .find(|r| r["severity"] == "error" && named(r))
        .unwrap_or_else(|| panic!("no error row naming {field} for {id}: {rows:?}"));
    let message = row["message"].as_str().unwrap().to_lowercase();
    assert!(
        message.contains(rule),
        "{id}: the rule is not named: {message}"
    );
}

/// The starter: base URL with the programme prefix, the budget announced, admin calls
/// outside it.
#[tokio::test]
async fn the_service_starts_behind_its_programme_prefix() {
    support::require_peers!(PythonPeers, Aiosmtpd);
    let server = ScimServer::start_peer(reward_gateway(2, Duration::from_secs(30)));
    assert!(
        server.url.ends_with(&format!("/{PROGRAMME}/scim/v2")),
        "{}",
        server.url
    );
    let http = reqwest::Client::new();
    let get = || {
        http.get(format!("{}{SPC}", server.url))
            .bearer_auth(&server.token)
            .send()
    };
    let first = get().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-rate-limit-limit"], "2");
    assert_eq!(first.headers()["x-rate-limit-remaining"], "1");
    get().await.unwrap();
    let third = get().await.unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.headers().get("retry-after").is_none());
    let reset: u64 = third.headers()["x-rate-limit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&reset), "{reset}");
    // Looking at the users spends nothing.
    assert!(server.users().await.is_empty());
    let stats = server.stats().await;
    assert_eq!(stats.totals.requests, 3);
    assert_eq!(stats.endpoint(SPC).throttled, 1);
    server.reset_stats().await;
    assert_eq!(server.stats().await.totals.requests, 0);
    assert_eq!(server.close_down().await, 0);
    assert!(!server.delete_by_hand("E-00001").await);
}

/// The first import: 500 employees and three names Reward Gateway refuses,
/// welcome e-mail on, `profile: RewardGateway`. The preview lists the refused three;
/// the import creates and invites every valid member exactly once, spends no request on
/// the refused, meets few 429s and stays close to the floor the limit sets; a second
/// run writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_import_of_500_stays_within_the_budget_and_refuses_before_sending() {
    support::require_peers!(PythonPeers, Aiosmtpd);
    const N: usize = 500;
    let s = Setup::new(N, reward_gateway(LIMIT, WINDOW), true).await;
    let refused = add_refused(&s.env);

    // The preview lists them, and writes nothing.
    let (dry, _) = s.sync(&["--dry-run"]).await;
    assert!(matches!(dry.code, 0 | 3), "{}\n{}", dry.stdout, dry.stderr);
    for (id, field, rule) in &refused {
        assert_refusal_row(&rows_for(&dry, id), id, field, rule);
    }
    assert_eq!(dry.summary()["created"], N as u64, "{}", dry.stdout);
    let stats = s.scim().stats().await;
    assert_eq!(writes(&stats), 0, "the preview wrote: {stats:?}");
    s.scim().reset_stats().await;

    let (first, wall) = s.sync(&[]).await;
    let stats = s.scim().stats().await;
    let floor = stats.floor(LIMIT, WINDOW);
    eprintln!(
        "first import of {N}: {wall:?} (floor {floor:?}, SCIM requests over {:?}), {} requests, {} answered 429 ({:.1} %), per endpoint {:?}",
        stats.totals.span(),
        stats.totals.requests,
        stats.totals.throttled,
        100.0 * stats.throttled_share(),
        stats.endpoints
    );
    assert_eq!(first.code, 3, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(phase(&first), "PartiallySucceeded");
    assert_eq!(first.summary()["created"], N as u64, "{}", first.stdout);
    assert_eq!(first.summary()["errors"], refused.len() as u64);
    for (id, field, rule) in &refused {
        assert_refusal_row(&rows_for(&first, id), id, field, rule);
    }

    // Every valid member once; nobody refused.
    let users = s.scim().users().await;
    let ids: BTreeSet<String> = users
        .iter()
        .map(|u| u["externalId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(users.len(), N, "members missing or duplicated");
    assert_eq!(ids, (1..=N).map(employee_id).collect::<BTreeSet<_>>());

    // Invited exactly once each (the refused never).
    s.smtp.wait_for(N + 1, Duration::from_secs(60));
    let per = s.invitations();
    assert_eq!(per.len(), N, "invitations: {}", per.len());
    assert!(per.values().all(|n| *n == 1), "someone invited twice");
    assert!(refused
        .iter()
        .all(|(id, _, _)| !per.contains_key(&format!("{}@acme.example", id.to_lowercase()))));

    // The budget: no request on the refused, few 429s, close to the floor.
    assert_eq!(stats.totals.status(400), 0, "a refused member was sent");
    assert_eq!(stats.endpoint("/Users").status(201), N as u64);
    assert!(
        stats.throttled_share() <= 0.05,
        "{} of {} requests answered 429",
        stats.totals.throttled,
        stats.totals.requests
    );
    assert!(
        wall.as_secs_f64() <= 1.5 * floor.as_secs_f64(),
        "{wall:?} for a floor of {floor:?}"
    );

    // A second run writes nothing and invites nobody.
    s.scim().reset_stats().await;
    let (second, _) = s.sync(&[]).await;
    assert!(
        matches!(second.code, 0 | 3),
        "{}\n{}",
        second.stdout,
        second.stderr
    );
    let summary = second.summary();
    assert_eq!(
        (summary["created"].as_u64(), summary["updated"].as_u64()),
        (Some(0), Some(0))
    );
    let stats = s.scim().stats().await;
    assert_eq!(writes(&stats), 0, "the second run wrote: {stats:?}");
    assert!(stats.throttled_share() <= 0.05, "{stats:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.invitations(), per, "the second run invited someone");
}

/// Without the profile nothing is checked before sending: the service's 400 is that
/// member's error row with its detail, and the same refused value is not sent again
/// until it changes in Freshteam.
#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_is_a_row_with_the_services_detail_and_is_not_sent_again() {
    support::require_peers!(PythonPeers, Aiosmtpd);
    let s = Setup::new(20, reward_gateway(1000, Duration::from_secs(60)), false).await;
    s.env
        .sim
        .add_employee(json!({
            "employee_id": "E-R1", "first_name": "J0hn", "last_name": "Doe",
            "official_email": "e-r1@acme.example", "status": "active", "designation": "Analyst"
        }))
        .unwrap();

    let (first, _) = s.sync(&[]).await;
    assert_eq!(first.code, 3, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(first.summary()["created"], 20);
    let rows = rows_for(&first, "E-R1");
    let row = rows
        .iter()
        .find(|r| r["severity"] == "error")
        .unwrap_or_else(|| panic!("no error row for E-R1: {rows:?}"));
    let message = row["message"].as_str().unwrap();
    assert!(
        message.contains("name.givenName") && message.contains("letters"),
        "the service's detail is missing: {message}"
    );
    assert_eq!(s.scim().stats().await.endpoint("/Users").status(400), 1);

    // Not sent again while it is the same.
    s.scim().reset_stats().await;
    let (second, _) = s.sync(&[]).await;
    assert!(matches!(second.code, 0 | 3), "{}", second.stderr);
    assert!(
        !rows_for(&second, "E-R1").is_empty(),
        "the refusal is forgotten"
    );
    let stats = s.scim().stats().await;
    assert_eq!(
        stats.totals.status(400),
        0,
        "the refused value was sent again"
    );
    assert_eq!(writes(&stats), 0, "{stats:?}");

    // Corrected in Freshteam: sent, and created.
    s.env
        .sim
        .update_employee("E-R1", json!({"first_name": "John"}))
        .unwrap();
    let (third, _) = s.sync(&[]).await;
    assert_eq!(third.code, 0, "{}\n{}", third.stdout, third.stderr);
    assert_eq!(third.summary()["created"], 1);
    assert!(s.scim().user_by_external_id("E-R1").await.is_some());
}

/// A returner whose account was closed down after they left, and an employee whose
/// account was deleted by hand: both get a new account and a new invitation, with a
/// change row saying why; the run after that writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn closed_down_and_hand_deleted_accounts_are_created_again() {
    support::require_peers!(PythonPeers, Aiosmtpd);
    const N: usize = 30;
    let s = Setup::new(N, reward_gateway(LIMIT, WINDOW), false).await;
    let (returner, deleted) = (employee_id(5), employee_id(7));
    let (first, _) = s.sync(&[]).await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(first.summary()["created"], N as u64);
    s.smtp.wait_for(N + 1, Duration::from_secs(30));

    // One leaves; their account is closed down; another's is deleted by hand.
    s.env
        .sim
        .update_employee(&returner, json!({"status": "inactive", "terminated": true}))
        .unwrap();
    let (left, _) = s.sync(&[]).await;
    assert_eq!(left.code, 0, "{}\n{}", left.stdout, left.stderr);
    assert_eq!(left.summary()["leavers"], 1);
    assert_eq!(s.scim().close_down().await, 1);
    assert!(s.scim().delete_by_hand(&deleted).await);
    s.env
        .sim
        .update_employee(&returner, json!({"status": "active", "terminated": false}))
        .unwrap();

    let sent = s.smtp.count();
    let (again, _) = s.sync(&[]).await;
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(again.summary()["created"], 2, "{}", again.stdout);
    let users = s.scim().users().await;
    assert_eq!(users.len(), N, "members missing or duplicated");
    for id in [&returner, &deleted] {
        let user = s
            .scim()
            .user_by_external_id(id)
            .await
            .expect("a new account");
        assert_eq!(user["active"], true, "{id}");
        let changes: Vec<_> = s
            .report_rows()
            .into_iter()
            .filter(|[severity, employee, _, _]| severity == "change" && employee == id)
            .collect();
        assert!(
            changes.iter().any(|[.., message]| message
                .contains("account missing in the destination: created again")),
            "{id}: {changes:?}"
        );
    }
    // A new account needs a new password: a second invitation for each, nobody else.
    s.smtp.wait_for(sent + 2, Duration::from_secs(30));
    let per = s.invitations();
    let address = |id: &str| {
        s.env.sim.employee(id).unwrap()["official_email"]
            .as_str()
            .unwrap()
            .to_lowercase()
    };
    for id in [&returner, &deleted] {
        assert_eq!(per.get(&address(id)), Some(&2), "{id}: {per:?}");
    }
    assert_eq!(per.values().filter(|n| **n == 1).count(), N - 2, "{per:?}");

    s.scim().reset_stats().await;
    let (quiet, _) = s.sync(&[]).await;
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert_eq!(writes(&s.scim().stats().await), 0);
}

/// `spec.destination.scim.rateLimit` paces from the first request, before any
/// rate-limit header was seen: a limit below the client's concurrency is not overrun.
#[tokio::test(flavor = "multi_thread")]
async fn a_configured_rate_limit_paces_from_the_first_request() {
    support::require_peers!(PythonPeers, Aiosmtpd);
    const N: usize = 40;
    let s = Setup::new(N, reward_gateway(4, Duration::from_secs(1)), false).await;
    let file = s.env.write(
        "paced.yaml",
        &s.env.manifest_scim(
            API_KEY,
            "      rateLimit: {requests: 4, window: 1s}\n",
            Env::default_mapping(),
        ),
    );
    let run = s
        .env
        .sync_file(
            &file,
            &[
                "--output",
                "json",
                "--state-file",
                s.state.to_str().unwrap(),
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.summary()["created"], N as u64);
    let stats = s.scim().stats().await;
    eprintln!("paced by the spec: {stats:?}");
    assert!(
        stats.totals.throttled <= 2,
        "{} requests answered 429 of {}",
        stats.totals.throttled,
        stats.totals.requests
    );
}

/// A run stopped (SIGTERM) while it waits for the window ends `Interrupted` at once,
/// and what it did stays done.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_stopped_while_waiting_for_the_window_ends_interrupted_at_once() {
    support::require_peers!(PythonPeers, Aiosmtpd);
    let s = Setup::new(30, reward_gateway(5, Duration::from_secs(60)), false).await;
    let relay = s.smtp.url();
    let args = [
        "--output",
        "json",
        "--smtp-url",
        &relay,
        "--mail-from",
        "rewards@acme.example",
        "--state-file",
        s.state.to_str().unwrap(),
    ];
    let child = s.env.spawn_sync_piped(&s.file, &args);
    let pid = child.id().expect("a running sync");
    // The /Users budget is spent: the run now waits for a window a minute away.
    let spent = support::wait_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async { (s.scim().stats().await.endpoint("/Users").requests >= 5).then_some(()) },
    )
    .await;
    assert!(spent.is_some(), "the run never spent its /Users budget");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("sync still running 10 s after SIGTERM")
        .unwrap();
    let took = stopped.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(took <= Duration::from_secs(2), "stopped after {took:?}");
    let run: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no ImportRun on stdout ({e}): {stdout}\n{stderr}"));
    assert_eq!(run["status"]["phase"], "Interrupted", "{stdout}\n{stderr}");
    // What it did stays done: the members it created are there.
    let created = run["status"]["summary"]["created"].as_u64().unwrap_or(0);
    assert_eq!(s.scim().users().await.len() as u64, created);
}

/// The discovery documents, each on its own budget at Reward Gateway.
const DISCOVERY: [&str; 3] = [SPC, "/Schemas", "/ResourceTypes"];

fn discovery_requests(stats: &PeerStats) -> Vec<u64> {
    DISCOVERY
        .iter()
        .map(|e| stats.endpoint(e).requests)
        .collect()
}

/// What discovery yielded is kept in the state file's convergence notes: the first run
/// reads the three documents, the next ones (within a day) none; an entry a day old is
/// read again and replaced.
#[tokio::test(flavor = "multi_thread")]
async fn discovery_is_read_once_a_day_not_once_a_run() {
    support::require_peers!(PythonPeers, Aiosmtpd);
    let s = Setup::new(5, reward_gateway(1000, Duration::from_secs(60)), false).await;
    let (first, _) = s.sync(&[]).await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(discovery_requests(&s.scim().stats().await), [1, 1, 1]);
    let state: Value = serde_json::from_slice(&std::fs::read(&s.state).unwrap()).unwrap();
    let entries = state["convergence"]["@discovery"]
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let (url, note) = entries.iter().next().unwrap();
    assert_eq!(url, &s.scim().url);
    assert!(
        note.as_str().unwrap().contains("maxResults=100"),
        "what the service announced: {note}"
    );

    // Within the day: no request to any of them, and the run does its work.
    s.scim().reset_stats().await;
    s.env
        .sim
        .update_employee(&employee_id(1), json!({"designation": "Director"}))
        .unwrap();
    let (second, _) = s.sync(&[]).await;
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    assert_eq!(second.summary()["updated"], 1, "{}", second.stdout);
    let stats = s.scim().stats().await;
    assert_eq!(discovery_requests(&stats), [0, 0, 0], "{stats:?}");
    let state: Value = serde_json::from_slice(&std::fs::read(&s.state).unwrap()).unwrap();
    assert_eq!(
        &state["convergence"]["@discovery"][url.as_str()],
        note,
        "kept with its date"
    );

    // A rejected token, with the documents remembered: the run's first read of /Users
    // finds it, and the run fails saying so.
    let text = std::fs::read_to_string(&s.file).unwrap();
    let token = format!("token: \"{}\"", s.scim().token);
    assert!(text.contains(&token), "{text}");
    let wrong = s.env.write(
        "wrong.yaml",
        &text.replace(&token, "token: \"wrong-key-51b0\""),
    );
    let state = s.state.to_str().unwrap();
    let args = ["--output", "json", "--state-file", state];
    let refused = s.env.sync_file(&wrong, &args).await;
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    let message = refused.json()["status"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("rejected the bearer token"), "{message}");
    assert!(!message.contains("wrong-key-51b0"), "{message}");
    assert_eq!(discovery_requests(&s.scim().stats().await), [0, 0, 0]);

    // A day old: read again, and noted with a new date.
    let text = std::fs::read_to_string(&s.state).unwrap();
    let learnt = note.as_str().unwrap().split(' ').next().unwrap();
    std::fs::write(&s.state, text.replace(learnt, "2020-01-01T00:00:00Z")).unwrap();
    s.scim().reset_stats().await;
    let (third, _) = s.sync(&[]).await;
    assert_eq!(third.code, 0, "{}\n{}", third.stdout, third.stderr);
    assert_eq!(discovery_requests(&s.scim().stats().await), [1, 1, 1]);
    let state: Value = serde_json::from_slice(&std::fs::read(&s.state).unwrap()).unwrap();
    let renewed = state["convergence"]["@discovery"][url.as_str()]
        .as_str()
        .unwrap();
    assert!(!renewed.starts_with("2020-"), "{renewed}");
}
