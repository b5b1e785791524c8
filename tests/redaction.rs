//! No secret in any output of `sync`, with every log level on (`RUST_LOG=trace`: the
//! operator's own logs and those of reqwest, hyper, rustls and lettre): stdout (the
//! ImportRun), stderr (logs, progress, warnings), the CSV error report, the invitation
//! state file and the e-mails sent. Runs that succeed, partially succeed and fail, with
//! an SMTP login that works and one that is refused.
//!
//! The controller's ImportRun status, ConfigMaps and Events are checked in
//! `tests/controller.rs`.

mod support;

use std::path::Path;

use base64::Engine;
use freshteam_simulator::Faults;
use serde_json::json;
use support::smtp::SmtpServer;
use support::sync_env::{employee_id, Env, Run, API_KEY, WRONG_KEY};

const SMTP_USER: &str = "mailer";
const SMTP_PASSWORD: &str = "smtp-pw-3e5d7a91";
const WRONG_SMTP_PASSWORD: &str = "smtp-pw-wrong-0b2c";
const WRONG_TOKEN: &str = "scim-token-wrong-6f4a";

/// Every form a secret could take on the way out: as is, and as SMTP AUTH PLAIN / LOGIN
/// and HTTP Basic put it on the wire (base64).
fn forms(secrets: &[&str]) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut out = Vec::new();
    for s in secrets {
        out.push(s.to_string());
        out.push(b64(s));
        out.push(b64(&format!("\0{SMTP_USER}\0{s}")));
        out.push(b64(&format!("{SMTP_USER}:{s}")));
    }
    out
}

fn assert_clean(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "{what} shows a secret ({s}):\n{}",
            text.chars().take(4000).collect::<String>()
        );
    }
}

struct Check<'a> {
    env: &'a Env,
    smtp: &'a SmtpServer,
    secrets: Vec<String>,
}

impl Check<'_> {
    async fn run(&self, manifest: &str, smtp_password: &str, report: &Path) -> Run {
        let file = self.env.write("acme.yaml", manifest);
        let url = format!(
            "smtp://{SMTP_USER}:{smtp_password}@127.0.0.1:{}",
            self.smtp.port
        );
        let state = self.env.dir.path().join("state.json");
        let run = self
            .env
            .sync_file_with(
                &file,
                &[
                    "--output",
                    "json",
                    "--error-report",
                    report.to_str().unwrap(),
                    "--mail-from",
                    "rewards@acme.example",
                    "--state-file",
                    state.to_str().unwrap(),
                ],
                // The URL through the environment, as a Deployment would pass it.
                &[("RUST_LOG", "trace"), ("SMTP_URL", url.as_str())],
            )
            .await;
        // Proof that every level was on: trace lines from the HTTP stack.
        assert!(
            run.stderr.lines().any(|l| l.contains("TRACE")),
            "no trace output:\n{}",
            run.stderr.chars().take(2000).collect::<String>()
        );
        assert_clean("stdout", &run.stdout, &self.secrets);
        assert_clean("stderr", &run.stderr, &self.secrets);
        let csv = std::fs::read_to_string(report).unwrap_or_default();
        assert_clean("the error report", &csv, &self.secrets);
        let state = std::fs::read_to_string(&state).unwrap_or_default();
        assert_clean("the state file", &state, &self.secrets);
        run
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_any_output_at_any_log_level() {
    support::require_peers!(Scim2Server, Aiosmtpd);
    let env = Env::start(6).await;
    let smtp = SmtpServer::start_scripted(Some(&format!("{SMTP_USER}:{SMTP_PASSWORD}")));
    let check = Check {
        env: &env,
        smtp: &smtp,
        secrets: forms(&[
            API_KEY,
            WRONG_KEY,
            &env.scim.token,
            WRONG_TOKEN,
            SMTP_PASSWORD,
            WRONG_SMTP_PASSWORD,
        ]),
    };
    let spec = format!(
        "{}  welcomeEmail: {{enabled: true, loginUrl: \"https://rewards.example.com/activate\"}}\n  notifications: {{recipients: [\"hr-admin@acme.example\"]}}\n",
        Env::default_mapping()
    );
    let good = env.manifest(API_KEY, &spec);
    let report = env.dir.path().join("errors.csv");

    // Succeeds: members created, invitations and the summary sent after an SMTP login.
    let run = check.run(&good, SMTP_PASSWORD, &report).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary()["invitationsSent"], 6);

    // Partially succeeds: a bad record, so the report has rows.
    env.sim
        .update_employee(&employee_id(2), json!({"official_email": "not-an-address"}))
        .unwrap();
    env.sim
        .add_employee(json!({"employee_id": "E-NEW", "official_email": "new@acme.example", "status": "active"}))
        .unwrap();
    let run = check.run(&good, SMTP_PASSWORD, &report).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(std::fs::read_to_string(&report).unwrap().lines().count() > 1);

    // Fails: Freshteam answers 503 to everything (the key goes out on every attempt).
    env.sim.set_faults(Faults {
        fail_every: Some(1),
        ..Faults::default()
    });
    let run = check.run(&good, SMTP_PASSWORD, &report).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    env.sim.set_faults(Faults::default());

    // Fails: a wrong API key, with a refused SMTP login on top.
    let run = check
        .run(
            &env.manifest(WRONG_KEY, &spec),
            WRONG_SMTP_PASSWORD,
            &report,
        )
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.contains("rejected the API key"),
        "{}",
        run.stdout
    );

    // Fails: a wrong SCIM token.
    let wrong_token = good.replace(
        &format!("token: \"{}\"", env.scim.token),
        &format!("token: \"{WRONG_TOKEN}\""),
    );
    let run = check.run(&wrong_token, SMTP_PASSWORD, &report).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.contains("rejected the bearer token"),
        "{}",
        run.stdout
    );

    // The e-mails themselves.
    let mails = smtp.messages();
    assert!(mails.len() >= 8, "{} e-mails", mails.len());
    for m in &mails {
        let mut text = format!(
            "{} {} {} {:?}",
            m.subject,
            m.text.as_deref().unwrap_or_default(),
            m.html.as_deref().unwrap_or_default(),
            m.to
        );
        for (_, content) in &m.attachments {
            text.push_str(&String::from_utf8_lossy(content));
        }
        assert_clean("an e-mail", &text, &check.secrets);
    }
}
