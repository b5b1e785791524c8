use std::time::Duration;

use tokio::time::Instant;

use super::mailer::RateLimiter;
use super::settings::{DEFAULT_BURST, DEFAULT_POOL_SIZE, DEFAULT_RATE_PER_SECOND};
use super::transaction::data_payload;
use super::*;
use crate::secret::SecretString;

const FROM: &str = "Rewards <rewards@acme.example>";

fn parse(url: &str) -> SmtpSettings {
    SmtpSettings::parse(url, FROM).unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[test]
fn schemes_and_default_ports() {
    let s = parse("smtp://relay.example");
    assert_eq!((s.security, s.port), (SmtpSecurity::Plain, 25));
    let s = parse("smtp://relay.example?tls=required");
    assert_eq!((s.security, s.port), (SmtpSecurity::StartTlsRequired, 587));
    let s = parse("smtp://relay.example?tls=opportunistic");
    assert_eq!(
        (s.security, s.port),
        (SmtpSecurity::StartTlsOpportunistic, 25)
    );
    let s = parse("smtps://relay.example");
    assert_eq!((s.security, s.port), (SmtpSecurity::ImplicitTls, 465));
    let s = parse("smtp://127.0.0.1:2525");
    assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 2525));
    let s = parse("smtp://[::1]:2525");
    assert_eq!(s.host, "::1");
    assert_eq!(s.redacted(), "smtp://[::1]:2525");
    assert_eq!(s.from, "Rewards <rewards@acme.example>");
    assert_eq!(s.rate_per_second, DEFAULT_RATE_PER_SECOND);
    assert_eq!(s.burst, DEFAULT_BURST);
    assert_eq!(s.pool_size, DEFAULT_POOL_SIZE);
}

#[test]
fn a_login_in_the_clear_goes_only_to_loopback_or_on_purpose() {
    let mailer = |url: &str| SmtpMailer::new(parse(url)).map(|_| ());
    for refused in [
        "smtp://u:pw-1234@relay.example",
        "smtp://u:pw-1234@relay.example?tls=opportunistic",
    ] {
        let e = mailer(refused).unwrap_err().to_string();
        assert!(
            e.contains("would go to relay.example without TLS") && !e.contains("pw-1234"),
            "{refused}: {e}"
        );
    }
    for accepted in [
        "smtp://u:pw@127.0.0.1:2525",
        "smtp://u:pw@localhost:2525",
        "smtp://u:pw@[::1]:2525",
        "smtp://u:pw@relay.example?tls=required",
        "smtps://u:pw@relay.example",
        "smtp://u:pw@relay.example?tls=none",
        "smtp://relay.example",
    ] {
        assert_eq!(mailer(accepted), Ok(()), "{accepted}");
    }
    // Credentials from a Secret count the same as the URL's.
    let s = parse("smtp://relay.example").with_credentials("u", SecretString::new("pw"));
    assert!(SmtpMailer::new(s).is_err());
}

#[test]
fn credentials_are_percent_decoded_and_redacted() {
    let s = parse("smtps://mailer%40acme.example:p%40ss%2Fw0rd@smtp.acme.example");
    assert_eq!(s.username.as_deref(), Some("mailer@acme.example"));
    assert_eq!(s.password.as_ref().unwrap().expose(), "p@ss/w0rd");
    assert_eq!(
        s.redacted(),
        "smtps://mailer@acme.example:***@smtp.acme.example:465"
    );
    assert_eq!(s.to_string(), s.redacted());
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("p@ss/w0rd") && !debug.contains("p%40ss"),
        "{debug}"
    );
    let s =
        parse("smtp://u:pw@relay:587?tls=required&rate=2.5&burst=3&pool=1&helo=op.acme.example");
    assert_eq!(s.redacted(), "smtp://u:***@relay:587?tls=required");
    assert_eq!((s.rate_per_second, s.burst, s.pool_size), (2.5, 3, 1));
    assert_eq!(s.hello_name.as_deref(), Some("op.acme.example"));
    let s = s.with_credentials("other", SecretString::new("from-secret"));
    assert_eq!(s.redacted(), "smtp://other:***@relay:587?tls=required");
}

#[test]
fn errors_name_the_flag_and_never_the_password() {
    let secret = "s3cr3t-pass";
    let cases = [
        format!("http://user:{secret}@relay"),
        format!("smtp://user:{secret}@relay/path"),
        format!("smtp://user:{secret}@relay?tls=maybe"),
        format!("smtps://user:{secret}@relay?tls=required"),
        format!("smtp://user:{secret}@relay?password={secret}"),
        format!("smtp://user:{secret}@relay?rate=0"),
        format!("smtp://user:{secret}@relay:99999"),
        format!("smtp://:{secret}@relay"),
        format!("smtp://user:{secret}@"),
        format!("smtp://user:{secret}@relay#frag"),
        format!("user:{secret}@relay"),
        "smtp://user@relay".to_string(),
        String::new(),
    ];
    for url in cases {
        let err = SmtpSettings::parse(&url, FROM).expect_err(&url).to_string();
        assert!(err.contains("--smtp-url/SMTP_URL"), "{url}: {err}");
        assert!(!err.contains(secret), "{url}: {err}");
    }
    let err = SmtpSettings::parse("smtp://relay", "not an address")
        .unwrap_err()
        .to_string();
    assert!(err.contains("--mail-from/MAIL_FROM"), "{err}");
    let err = SmtpSettings::parse("smtp://relay", " ")
        .unwrap_err()
        .to_string();
    assert!(err.contains("--mail-from/MAIL_FROM"), "{err}");
}

#[tokio::test]
async fn the_rate_limiter_allows_a_burst_then_the_rate() {
    let limiter = RateLimiter::new(100.0, 5);
    let start = Instant::now();
    for _ in 0..5 {
        limiter.acquire().await;
    }
    assert!(start.elapsed() < Duration::from_millis(5));
    for _ in 0..20 {
        limiter.acquire().await;
    }
    // 20 messages after the burst at 100/s.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(199) && elapsed < Duration::from_millis(400),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn concurrent_senders_share_the_rate() {
    let limiter = std::sync::Arc::new(RateLimiter::new(200.0, 1));
    let start = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let l = limiter.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    l.acquire().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // 40 messages: 1 free, 39 at 200/s.
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(194), "{elapsed:?}");
}

#[test]
fn the_content_is_dot_stuffed_and_terminated() {
    let p = data_payload(b".top\r\nmid.dle\r\n.\r\n..x\r\nend").unwrap();
    assert_eq!(p.0, "..top\r\nmid.dle\r\n..\r\n...x\r\nend\r\n.\r\n");
    assert!(data_payload(&[0xff, b'a']).is_none());
}

#[test]
fn backoff_grows_with_jitter_and_is_capped() {
    let mut s = parse("smtp://relay");
    s.retry_base = Duration::from_secs(1);
    s.retry_max = Duration::from_secs(5);
    let m = SmtpMailer::new(s).unwrap();
    for _ in 0..50 {
        let d1 = m.backoff(1);
        assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
        let d3 = m.backoff(3);
        assert!(d3 >= Duration::from_secs(2) && d3 <= Duration::from_secs(4));
        assert!(m.backoff(30) <= Duration::from_secs(5));
    }
}
