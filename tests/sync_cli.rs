//! The real `freshteam-operator sync` binary against the project's Freshteam simulator
//! and a real SCIM 2.0 server (`scim2-server` from PyPI).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use freshteam_simulator::Faults;
use serde_json::{json, Value};
use support::smtp::SmtpServer;
use support::sync_env::{employee_id, Env, API_KEY, PAGE};

#[tokio::test(flavor = "multi_thread")]
async fn first_import_then_an_identical_run_writes_nothing() {
    support::require_peers!(Scim2Server);
    let env = Env::start(40).await;
    let first = env.sync(&[]).await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let run = first.json();
    assert_eq!(run["kind"], "ImportRun");
    assert_eq!(run["status"]["phase"], "Succeeded");
    assert_eq!(run["status"]["summary"]["created"], 40);
    assert_eq!(run["status"]["progress"]["percent"], 100);
    let users = env.scim.users().await;
    assert_eq!(users.len(), 40);

    // Every mapped attribute arrived, from the list and the department lookup.
    let sim_emp = env
        .sim
        .employees()
        .into_iter()
        .find(|e| e["employee_id"] == employee_id(3))
        .unwrap();
    let u = env.user(&employee_id(3)).await;
    assert_eq!(u["userName"], sim_emp["official_email"]);
    assert_eq!(u["name"]["givenName"], sim_emp["first_name"]);
    assert_eq!(u["name"]["familyName"], sim_emp["last_name"]);
    assert_eq!(u["title"], sim_emp["designation"]);
    assert!(
        u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"].is_string()
    );
    assert_eq!(u["active"], true);

    let before = env.versions().await;
    env.sim.clear_requests();
    let second = env.sync(&[]).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let s = second.summary();
    assert_eq!(
        (
            s["created"].as_u64(),
            s["updated"].as_u64(),
            s["unchanged"].as_u64()
        ),
        (Some(0), Some(0), Some(40))
    );
    assert_eq!(
        env.versions().await,
        before,
        "the second run changed a member's meta.version"
    );

    // Exactly ⌈40/7⌉ pages of current staff and one (empty) page per leaver and draft
    // pass, one lookup, no detail call; only reads on SCIM.
    let list_pages = env
        .sim
        .requests()
        .iter()
        .filter(|r| r.path == "/api/employees")
        .count();
    assert_eq!(list_pages, 40usize.div_ceil(PAGE) + 4);
    assert_eq!(env.sim.count("/api/employees/"), 0);
    assert_eq!(env.sim.count("/api/departments"), 1);
    assert_eq!(env.sim.requests().len(), 40usize.div_ceil(PAGE) + 4 + 1);
    let calls = &second.json()["status"]["apiCalls"];
    assert_eq!(calls["destinationWrites"], 0);
    assert_eq!(calls["freshteamList"], 40usize.div_ceil(PAGE) as u64 + 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delta_hires_updates_marks_leavers_and_reactivates() {
    support::require_peers!(Scim2Server);
    let env = Env::start(30).await;
    assert_eq!(env.sync(&[]).await.code, 0);

    env.sim
        .add_employee(json!({
            "employee_id": "E-NEW", "first_name": "Nora", "last_name": "New",
            "official_email": "nora.new@acme.example", "status": "active", "designation": "Analyst"
        }))
        .unwrap();
    env.sim
        .update_employee(&employee_id(2), json!({"designation": "Head of Rewards"}))
        .unwrap();
    env.sim
        .update_employee(
            &employee_id(5),
            json!({"status": "inactive", "terminated": true}),
        )
        .unwrap();
    let before_untouched = env.user(&employee_id(9)).await;

    let delta = env.sync(&[]).await;
    assert_eq!(delta.code, 0, "{}", delta.stderr);
    let s = delta.summary();
    assert_eq!(s["created"], 1);
    assert_eq!(s["updated"], 1);
    assert_eq!(s["leavers"], 1);
    assert_eq!(s["unchanged"], 28);
    assert_eq!(env.user("E-NEW").await["name"]["givenName"], "Nora");
    assert_eq!(env.user(&employee_id(2)).await["title"], "Head of Rewards");
    assert_eq!(env.user(&employee_id(5)).await["active"], false);
    assert_eq!(
        env.user(&employee_id(9)).await["meta"]["version"],
        before_untouched["meta"]["version"]
    );

    env.sim
        .update_employee(
            &employee_id(5),
            json!({"status": "active", "terminated": false}),
        )
        .unwrap();
    let back = env.sync(&[]).await;
    assert_eq!(back.summary()["reactivated"], 1);
    assert_eq!(env.user(&employee_id(5)).await["active"], true);
    assert_eq!(env.scim.users().await.len(), 31, "no member duplicated");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_records_are_error_rows_and_the_rest_go_through() {
    support::require_peers!(Scim2Server);
    let env = Env::start(20).await;
    env.sim
        .update_employee(&employee_id(1), json!({"employee_id": null}))
        .unwrap();
    env.sim
        .update_employee(&employee_id(2), json!({"official_email": "not-an-address"}))
        .unwrap();
    env.sim
        .update_employee(&employee_id(4), json!({"employee_id": employee_id(3)}))
        .unwrap();
    let report = env.dir.path().join("errors.csv");
    let run = env
        .sync(&["--error-report", report.to_str().unwrap()])
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let v = run.json();
    assert_eq!(v["status"]["phase"], "PartiallySucceeded");
    assert_eq!(v["status"]["summary"]["errors"], 4);
    assert_eq!(v["status"]["summary"]["created"], 16);
    let errors = v["status"]["errors"].as_array().unwrap();
    let msg = |f: &dyn Fn(&Value) -> bool| errors.iter().filter(|e| f(e)).count();
    assert_eq!(
        msg(&|e| e["message"].as_str().unwrap().starts_with("no Employee ID")),
        1
    );
    assert_eq!(
        msg(&|e| e["employeeId"] == employee_id(2) && e["field"] == "email"),
        1
    );
    assert_eq!(
        msg(&|e| e["employeeId"] == employee_id(3) && e["field"] == "employeeId"),
        2
    );
    assert!(
        env.scim
            .user_by_external_id(&employee_id(3))
            .await
            .is_none(),
        "an ambiguous identity was applied"
    );
    let csv = std::fs::read_to_string(report).unwrap();
    assert!(
        !csv.contains(API_KEY) && !csv.contains(&env.scim.token),
        "a secret leaked into the report"
    );
    // Header, 4 error rows, then one change row per member created.
    let changes = csv.lines().filter(|l| l.starts_with("change,")).count();
    assert_eq!(csv.lines().count() - changes, 5, "{csv}");
    assert_eq!(changes, 16, "{csv}");
    assert!(csv.starts_with("severity,employee_id,email,field,message\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_writes_nothing_and_counts_what_would_happen() {
    support::require_peers!(Scim2Server);
    let env = Env::start(12).await;
    let run = env.sync(&["--dry-run"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["spec"]["dryRun"], true);
    assert_eq!(run.summary()["created"], 12);
    assert!(env.scim.users().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_input_exits_2_naming_the_field_and_touches_nothing() {
    support::require_peers!(Scim2Server);
    let env = Env::start(5).await;
    let m = Env::default_mapping();
    let cases: Vec<(String, &str)> = vec![
        (
            env.manifest(API_KEY, m).replace(
                "name: members-scim, key: token",
                "name: scim-gone, key: token",
            ),
            "spec.destination.scim.tokenSecretRef: Secret 'scim-gone' is not in",
        ),
        (
            env.manifest(API_KEY, m).replace(
                "name: freshteam-acme, key: apiKey",
                "name: freshteam-acme, key: api_key",
            ),
            "spec.source.apiKeySecretRef: Secret 'freshteam-acme' has no key 'api_key'",
        ),
        (
            env.manifest(API_KEY, "  mapping:\n    firstName: first_name\n"),
            "spec.mapping.email: is required",
        ),
        (
            env.manifest(API_KEY, m)
                .replace("subdomain: acme", "subdomain: acme.evil.example/x"),
            "spec.source.subdomain: 'acme.evil.example/x' is not a Freshteam subdomain",
        ),
        (
            format!("{}  schedule: fortnightly\n", env.manifest(API_KEY, m)),
            "spec.schedule: 'fortnightly' is not a schedule",
        ),
        (
            format!("{}  schedule: \"0 25 * * *\"\n", env.manifest(API_KEY, m)),
            "spec.schedule: '0 25 * * *' is not a valid cron expression",
        ),
        (
            format!("{}  timeZone: Europe/Londn\n", env.manifest(API_KEY, m)),
            "spec.timeZone: 'Europe/Londn' is not an IANA time zone",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = env.write(&format!("bad{i}.yaml"), text);
        let run = env.sync_file(&file, &[]).await;
        assert_eq!(run.code, 2, "case {i}: {}", run.stderr);
        assert!(
            run.stderr.contains(expected),
            "case {i}: expected {expected:?} in\n{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "case {i}");
    }
    assert!(
        env.sim.requests().is_empty(),
        "Freshteam was called for invalid input"
    );
    assert!(env.scim.users().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_api_key_fails_with_a_credentials_message() {
    support::require_peers!(Scim2Server);
    let env = Env::start(5).await;
    let file = env.write(
        "k.yaml",
        &env.manifest("wrong-key-51b0", Env::default_mapping()),
    );
    let run = env.sync_file(&file, &["--output", "json"]).await;
    assert_eq!(run.code, 1);
    let v = run.json();
    assert_eq!(v["status"]["phase"], "Failed");
    let message = v["status"]["message"].as_str().unwrap();
    assert!(message.contains("rejected the API key"), "{message}");
    assert!(message.contains("401 invalid_credentials"), "{message}");
    // With stdout piped to a file or jq, the person at the terminal still reads why.
    assert!(
        run.stderr.lines().any(|l| l == format!("error: {message}")),
        "the reason is not on stderr:\n{}",
        run.stderr
    );
    assert!(env.scim.users().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_smtp_one_warning_names_what_was_not_sent() {
    support::require_peers!(Scim2Server);
    let env = Env::start(3).await;
    let spec = format!(
        "{}  welcomeEmail: {{enabled: true, loginUrl: \"https://rewards.example.com/activate\"}}\n  notifications: {{recipients: [\"hr-admin@acme.example\"]}}\n",
        Env::default_mapping()
    );
    let file = env.write("m.yaml", &env.manifest(API_KEY, &spec));
    let state = env.dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let run = env
        .sync_file_with(
            &file,
            &["--output", "json", "--state-file", state],
            &[("SMTP_URL", ""), ("MAIL_FROM", "")],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary()["created"], 3);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("not sent"))
        .collect();
    assert_eq!(
        warnings,
        ["warning: 3 invitations and 1 summary not sent: no SMTP configured (--smtp-url / SMTP_URL); pending invitations are sent by the first run that has one"],
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("Sending e-mail"), "{}", run.stderr);

    // Nothing changed: no summary is owed, and the three invitations are still pending.
    let again = env
        .sync_file_with(
            &file,
            &["--output", "json", "--state-file", state],
            &[("SMTP_URL", ""), ("MAIL_FROM", "")],
        )
        .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.lines().any(|l| l
            == "warning: 3 invitations not sent: no SMTP configured (--smtp-url / SMTP_URL); pending invitations are sent by the first run that has one"),
        "{}",
        again.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_scim_token_fails_without_showing_it() {
    support::require_peers!(Scim2Server, Aiosmtpd);
    let env = Env::start(5).await;
    let text = env.manifest(API_KEY, Env::default_mapping()).replace(
        &format!("token: \"{}\"", env.scim.token),
        "token: \"wrong-key-51b0\"",
    );
    let text = format!("{text}  notifications: {{recipients: [\"hr-admin@acme.example\"]}}\n");
    let file = env.write("t.yaml", &text);
    let smtp = SmtpServer::start();
    let run = env
        .sync_file(
            &file,
            &[
                "--output",
                "json",
                "--smtp-url",
                &smtp.url(),
                "--mail-from",
                "rewards@acme.example",
            ],
        )
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    // A run that could not start still tells its owners.
    let mails = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(mails[0].subject, "acme: import failed");
    let message = run.json()["status"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("rejected the bearer token"), "{message}");
    assert!(env.scim.users().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn freshteam_5xx_on_every_4th_call_is_survived() {
    support::require_peers!(Scim2Server);
    let env = Env::start(60).await;
    env.sim.set_faults(Faults {
        fail_every: Some(4),
        ..Faults::default()
    });
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary()["created"], 60);
    assert!(
        run.json()["status"]["apiCalls"]["freshteamRetries"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        env.sim
            .requests()
            .iter()
            .filter(|r| r.status == 503)
            .count()
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_429_and_retry_after_are_honoured() {
    support::require_peers!(Scim2Server);
    let env = Env::start(60).await;
    // 9 pages + 1 lookup against 3 requests per 1-second window.
    env.sim.set_rate_limit(Some(3), Duration::from_secs(1));
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary()["created"], 60);
    let throttled = env.sim.throttled_calls_per_window();
    assert!(!throttled.is_empty(), "the quota was never reached");
    for (window, n) in &throttled {
        assert!(
            *n <= 1,
            "{n} calls in window {window} after it was exhausted"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_off_writes_one_request_per_member() {
    support::require_peers!(Scim2Server);
    let env = Env::start(15).await;
    let run = env.sync(&["--bulk", "off"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let calls = &run.json()["status"]["apiCalls"];
    assert_eq!(calls["destinationBulk"], 0);
    assert_eq!(calls["destinationWrites"], 15);
    assert_eq!(env.scim.users().await.len(), 15);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_requests_carry_as_many_writes_as_the_service_allows() {
    support::require_peers!(Scim2Server);
    // scim2-server announces /Bulk maxOperations 1000: the creates travel 1,000 a request.
    let env = Env::start(2100).await;
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let created = run.summary()["created"].as_u64().unwrap();
    assert!(created > 2000, "{created} created");
    let calls = &run.json()["status"]["apiCalls"];
    assert_eq!(calls["destinationBulk"], created.div_ceil(1000));
    assert_eq!(env.scim.users().await.len() as u64, created);
}

#[tokio::test(flavor = "multi_thread")]
async fn text_output_is_a_readable_summary() {
    support::require_peers!(Scim2Server);
    let env = Env::start(8).await;
    let file = env.write("t.yaml", &env.manifest(API_KEY, Env::default_mapping()));
    let run = env.sync_file(&file, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("ImportRun acme-"), "{}", run.stdout);
    assert!(run.stdout.contains("Phase:     Succeeded"));
    assert!(run.stdout.contains("8 created, 0 updated"));
}

const MAIL_SPEC: &str = "  welcomeEmail: {enabled: true, loginUrl: \"https://rewards.example.com/activate\"}\n  notifications: {recipients: [\"hr-admin@acme.example\"]}\n";

fn mail_manifest(env: &Env, welcome: bool) -> String {
    let spec = format!("{}{}", Env::default_mapping(), MAIL_SPEC);
    let spec = if welcome {
        spec
    } else {
        spec.replace("enabled: true", "enabled: false")
    };
    env.manifest(API_KEY, &spec)
}

fn invitations(smtp: &SmtpServer) -> HashMap<String, usize> {
    let mut per = HashMap::new();
    for m in smtp.messages() {
        if m.to.iter().any(|t| t.contains("hr-admin@")) {
            continue;
        }
        for t in &m.to {
            *per.entry(t.clone()).or_insert(0) += 1;
        }
    }
    per
}

#[tokio::test(flavor = "multi_thread")]
async fn invitations_go_out_once_and_the_owner_gets_a_summary() {
    support::require_peers!(Scim2Server, Aiosmtpd);
    let env = Env::start(12).await;
    let smtp = SmtpServer::start();
    let file = env.write("mail.yaml", &mail_manifest(&env, true));
    let state = env.dir.path().join("state.json");
    let relay = smtp.url();
    let args = mail_args(&relay, &state);
    let first = env.sync_file(&file, &args).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.summary()["invitationsSent"], 12);
    let messages = smtp.wait_for(13, Duration::from_secs(10));
    assert_eq!(messages.len(), 13);
    let per = invitations(&smtp);
    assert_eq!(per.len(), 12);
    assert!(per.values().all(|n| *n == 1));
    let sample = env
        .sim
        .employees()
        .into_iter()
        .find(|e| e["employee_id"] == employee_id(4))
        .unwrap();
    let invite = messages
        .iter()
        .find(|m| {
            m.to.iter()
                .any(|t| t.contains(sample["official_email"].as_str().unwrap()))
        })
        .expect("an invitation for E-00004");
    assert!(invite.from.contains("rewards@acme.example"));
    let text = invite.text.clone().unwrap();
    assert!(
        text.contains(sample["first_name"].as_str().unwrap()),
        "{text}"
    );
    assert!(
        text.contains("https://rewards.example.com/activate"),
        "{text}"
    );
    assert!(invite
        .html
        .as_deref()
        .unwrap_or("")
        .contains("https://rewards.example.com/activate"));
    let summary = messages
        .iter()
        .find(|m| m.to.iter().any(|t| t.contains("hr-admin@")))
        .unwrap();
    assert!(
        summary.subject.starts_with("acme: 12 created"),
        "{}",
        summary.subject
    );

    // The same import again: nothing written, nothing sent.
    let second = env.sync_file(&file, &args).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.summary()["invitationsSent"], 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.count(), 13);
}

#[tokio::test(flavor = "multi_thread")]
async fn welcome_off_sends_no_invitation_but_the_summary_with_errors_attached() {
    support::require_peers!(Scim2Server, Aiosmtpd);
    let env = Env::start(6).await;
    env.sim
        .update_employee(&employee_id(3), json!({"official_email": "nope"}))
        .unwrap();
    let smtp = SmtpServer::start();
    let file = env.write("mail.yaml", &mail_manifest(&env, false));
    let run = env
        .sync_file(
            &file,
            &[
                "--output",
                "json",
                "--smtp-url",
                &smtp.url(),
                "--mail-from",
                "rewards@acme.example",
            ],
        )
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let messages = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(messages.len(), 1);
    assert!(messages[0].to[0].contains("hr-admin@acme.example"));
    assert!(
        messages[0].subject.contains("5 created") && messages[0].subject.contains("1 error"),
        "{}",
        messages[0].subject
    );
    let (name, csv) = &messages[0].attachments[0];
    assert_eq!(name, "errors.csv");
    let csv = String::from_utf8_lossy(csv);
    assert!(
        csv.lines()
            .any(|l| l.contains("E-00003") && l.contains("invalid e-mail 'nope'")),
        "{csv}"
    );
    assert!(invitations(&smtp).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_down_leaves_invitations_pending_and_the_next_run_sends_them_once() {
    support::require_peers!(Scim2Server, Aiosmtpd);
    let env = Env::start(8).await;
    let port = support::smtp::free_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let file = env.write("mail.yaml", &mail_manifest(&env, true));
    let state = env.dir.path().join("state.json");
    let args = mail_args(&url, &state);
    let down = env.sync_file(&file, &args).await;
    assert_eq!(
        down.code, 0,
        "an SMTP outage failed the import: {}",
        down.stderr
    );
    assert_eq!(down.summary()["created"], 8);
    assert_eq!(down.summary()["invitationsSent"], 0);
    assert!(down.summary()["warnings"].as_u64().unwrap() > 0);
    assert!(down.stderr.contains("warning"), "{}", down.stderr);

    let smtp = SmtpServer::start_on(port);
    let up = env.sync_file(&file, &args).await;
    assert_eq!(up.code, 0, "{}", up.stderr);
    assert_eq!(up.summary()["invitationsSent"], 8);
    let again = env.sync_file(&file, &args).await;
    assert_eq!(again.summary()["invitationsSent"], 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let per = invitations(&smtp);
    assert_eq!(per.len(), 8);
    assert!(per.values().all(|n| *n == 1), "{per:?}");
}

/// `sync` arguments for a run that sends through `relay` and keeps its outbox in `state`.
fn mail_args<'a>(relay: &'a str, state: &'a std::path::Path) -> Vec<&'a str> {
    vec![
        "--output",
        "json",
        "--smtp-url",
        relay,
        "--mail-from",
        "rewards@acme.example",
        "--state-file",
        state.to_str().unwrap(),
    ]
}

/// `sync` sending through `relay` with its outbox in `state`, left running.
fn spawn_mailing(
    env: &Env,
    file: &std::path::PathBuf,
    relay: &str,
    state: &std::path::Path,
) -> tokio::process::Child {
    env.spawn_sync(file, &mail_args(relay, state))
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_sending_then_rerun_invites_everyone_exactly_once() {
    support::require_peers!(Scim2Server, Aiosmtpd);
    let env = Env::start(60).await;
    let smtp = SmtpServer::start();
    let file = env.write("mail.yaml", &mail_manifest(&env, true));
    let state = env.dir.path().join("state.json");
    let slow = format!("{}?rate=15&burst=1", smtp.url());
    let mut child = spawn_mailing(&env, &file, &slow, &state);
    smtp.wait_for(10, Duration::from_secs(30));
    child.kill().await.expect("SIGKILL sync");
    let sent_before = smtp.count();
    assert!(sent_before < 61, "the run finished before it was killed");

    let rerun = env.sync_file(&file, &mail_args(&smtp.url(), &state)).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_eq!(
        env.scim.users().await.len(),
        60,
        "members lost or duplicated"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per = invitations(&smtp);
    assert!(
        per.values().all(|n| *n == 1),
        "someone got two invitations: {per:?}"
    );
    let in_doubt = rerun.json()["status"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .unwrap_or("")
                .contains("may not have been delivered")
        })
        .count();
    // The batch in flight at the kill is in doubt: at most what the relay takes in
    // DELIVERY_BATCH_TIME (2 s at 15 a second).
    eprintln!("killed at 15 a second: {in_doubt} in doubt");
    assert!(in_doubt <= 30, "{in_doubt} in doubt");
    // Nobody lost: each member got one invitation or is reported in doubt (a message
    // in doubt may still have reached the relay before the kill).
    assert!(per.len() <= 60, "{} recipients", per.len());
    assert!(
        per.len() + in_doubt >= 60,
        "invitations lost: {} sent, {in_doubt} in doubt",
        per.len()
    );
}

/// A fast relay: a kill mid-delivery leaves at most one batch (DELIVERY_BATCH_MAX
/// invitations) in doubt, nobody invited twice, nobody lost unreported.
#[tokio::test(flavor = "multi_thread")]
async fn killed_while_sending_to_a_fast_relay_leaves_at_most_one_batch_in_doubt() {
    support::require_peers!(Scim2Server, Aiosmtpd);
    let members = 400;
    let env = Env::start(members).await;
    let smtp = SmtpServer::start();
    let file = env.write("mail.yaml", &mail_manifest(&env, true));
    let state = env.dir.path().join("state.json");
    let paced = format!("{}?rate=100&burst=1", smtp.url());
    let mut child = spawn_mailing(&env, &file, &paced, &state);
    smtp.wait_for(250, Duration::from_secs(60));
    child.kill().await.expect("SIGKILL sync");
    assert!(
        smtp.count() < members,
        "the run finished before it was killed"
    );

    let report = env.dir.path().join("report.csv");
    let relay = smtp.url();
    let mut args = mail_args(&relay, &state);
    args.extend(["--error-report", report.to_str().unwrap()]);
    let rerun = env.sync_file(&file, &args).await;
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per = invitations(&smtp);
    assert!(per.values().all(|n| *n == 1), "someone got two invitations");
    // The full report: status.errors keeps only the first rows.
    let in_doubt = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .filter(|l| l.contains("may not have been delivered"))
        .count();
    eprintln!(
        "killed mid-delivery: {} invited once, {in_doubt} in doubt",
        per.len()
    );
    assert!(
        in_doubt <= freshteam_operator::notify::DELIVERY_BATCH_MAX,
        "{in_doubt} in doubt"
    );
    assert!(
        per.len() + in_doubt >= members,
        "invitations lost: {} sent, {in_doubt} in doubt",
        per.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_smtp_password_never_shows() {
    support::require_peers!(Scim2Server, Aiosmtpd);
    let env = Env::start(3).await;
    let smtp = SmtpServer::start();
    let url = format!("smtp://mailer:s3cr3t-pw-77@127.0.0.1:{}", smtp.port);
    let file = env.write("mail.yaml", &mail_manifest(&env, true));
    let state = env.dir.path().join("state.json");
    let run = env.sync_file(&file, &mail_args(&url, &state)).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.summary()["warnings"].as_u64().unwrap() > 0,
        "a refused login is a warning"
    );
    for text in [
        &run.stdout,
        &run.stderr,
        &std::fs::read_to_string(&state).unwrap_or_default(),
    ] {
        assert!(
            !text.contains("s3cr3t-pw-77"),
            "the SMTP password leaked:\n{text}"
        );
    }
    // Invalid SMTP settings are invalid input.
    let bad = env
        .sync_file(&file, &["--smtp-url", "gopher://x:s3cr3t-pw-77@host"])
        .await;
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("--mail-from") || bad.stderr.contains("SMTP_URL"),
        "{}",
        bad.stderr
    );
    assert!(!bad.stderr.contains("s3cr3t-pw-77"));
}

/// Against a Freshteam that lists current staff only (as documented): every kind of
/// leaver ends inactive with its reason, a draft gets no account, a returner comes
/// back, a hand-made account is untouched and a re-run writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn leavers_of_every_kind_through_the_state_file_in_documented_mode() {
    support::require_peers!(Scim2Server);
    let env = Env::start(12).await;
    let state = env.dir.path().join("state.json");
    let state_arg = state.to_str().unwrap();
    let stranger = env
        .scim
        .create_raw_user(serde_json::json!({
            "userName": "someone@elsewhere.example",
            "externalId": "HAND-MADE",
            "active": true
        }))
        .await;
    let first = env.sync(&["--state-file", state_arg]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.summary()["created"], 12);

    // Four people leave, one of them for good; a draft hire appears.
    let id = employee_id;
    env.sim
        .update_employee(&id(2), serde_json::json!({"status": "inactive"}))
        .unwrap();
    env.sim
        .update_employee(&id(3), serde_json::json!({"terminated": true}))
        .unwrap();
    env.sim
        .update_employee(&id(4), serde_json::json!({"deleted": true}))
        .unwrap();
    assert!(env.sim.remove_employee(&id(5)));
    env.sim
        .add_employee(serde_json::json!({
            "employee_id": "E-DRAFT", "first_name": "Dana", "official_email": "dana@acme.example",
            "status": "active", "draft": true, "terminated": false, "deleted": false
        }))
        .unwrap();
    // A generous threshold: 4 of 12 leave.
    let file = env.write(
        "acme.yaml",
        &env.manifest(
            API_KEY,
            &format!(
                "{}  safety: {{maxLeaversPercent: 50}}\n",
                Env::default_mapping()
            ),
        ),
    );
    let report = env.dir.path().join("report.csv");
    let second = env
        .sync_file(
            &file,
            &[
                "--output",
                "json",
                "--state-file",
                state_arg,
                "--error-report",
                report.to_str().unwrap(),
            ],
        )
        .await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.summary()["leavers"], 4, "{}", second.stdout);
    assert_eq!(second.summary()["created"], 0, "the draft got an account");
    for n in 2..=5 {
        assert_eq!(env.user(&id(n)).await["active"], false, "{}", id(n));
    }
    assert!(env.scim.user_by_external_id("E-DRAFT").await.is_none());
    let csv = std::fs::read_to_string(&report).unwrap();
    for (n, reason) in [
        (2, "inactive"),
        (3, "terminated"),
        (4, "deleted"),
        (5, "removed from Freshteam"),
    ] {
        let row = csv
            .lines()
            .find(|l| l.contains(&id(n)) && l.contains("leaver"))
            .unwrap_or_else(|| panic!("no leaver row for {}:\n{csv}", id(n)));
        assert!(
            row.contains(&format!("marked as leaver ({reason})")),
            "{row}"
        );
    }
    let untouched = env
        .scim
        .user(stranger["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(untouched["meta"]["version"], stranger["meta"]["version"]);
    assert_eq!(untouched["active"], true);

    // A re-run writes nothing.
    let third = env
        .sync_file(&file, &["--output", "json", "--state-file", state_arg])
        .await;
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(
        third.api_calls()["destinationWrites"],
        0,
        "{}",
        third.stdout
    );

    // The inactive one returns.
    env.sim
        .update_employee(&id(2), serde_json::json!({"status": "active"}))
        .unwrap();
    let fourth = env
        .sync_file(&file, &["--output", "json", "--state-file", state_arg])
        .await;
    assert_eq!(fourth.summary()["reactivated"], 1, "{}", fourth.stdout);
    assert_eq!(env.user(&id(2)).await["active"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_state_file_sync_warns_that_removed_employees_go_unseen() {
    support::require_peers!(Scim2Server);
    let env = Env::start(3).await;
    let run = env.sync(&[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "no --state-file: employees removed from Freshteam for good cannot be detected"
        ),
        "{}",
        run.stderr
    );
}
