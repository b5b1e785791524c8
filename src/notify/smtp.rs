//! SMTP transport: settings from `--smtp-url` / `SMTP_URL`, a small connection pool, a
//! shared send-rate limit and retries with jittered backoff.
//!
//! The SMTP transaction is driven step by step (lettre's connection API) rather than
//! through lettre's one-call transport, because exactly-once invitations need to know
//! *where* a failure happened: anything before the message content is on the wire means
//! nothing was accepted (safe to retry), while a connection lost after the content was
//! sent and before the relay's reply may have delivered it ([`MailError::Uncertain`],
//! never retried).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment as MimeAttachment, Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::Error as SmtpError;
use percent_encoding::percent_decode_str;
use tokio::sync::Semaphore;
use tokio::time::{timeout, Instant};

use super::{MailError, MailTransport, OutgoingMail};
use crate::secret::SecretString;

/// Messages per second when the URL sets no `rate`: far below the throttling thresholds
/// of common relays (Microsoft 365: 30/min per mailbox is the strictest well-known one,
/// see `rate=`), and 10,000 invitations still go out in under 17 minutes.
pub const DEFAULT_RATE_PER_SECOND: f64 = 10.0;
/// Messages that may go out back to back before the rate applies.
pub const DEFAULT_BURST: u32 = 5;
/// Concurrent SMTP connections; relays commonly allow only a few per client.
pub const DEFAULT_POOL_SIZE: u32 = 2;
/// Limit for connecting (TCP, greeting, TLS, authentication) and for each SMTP step.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per message for failures that are safe to retry.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// First retry delay; doubles per attempt, with jitter, up to [`DEFAULT_RETRY_MAX`].
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(2);
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(30);
/// Pooled connections idle longer than this are closed rather than reused (relays close
/// idle sessions after a minute or so).
const IDLE_LIMIT: Duration = Duration::from_secs(50);

const URL_FLAG: &str = "--smtp-url/SMTP_URL";
const FROM_FLAG: &str = "--mail-from/MAIL_FROM";

/// How the connection to the relay is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://host` — no TLS (a relay on localhost or inside the cluster).
    Plain,
    /// `smtp://host?tls=opportunistic` — STARTTLS when the relay offers it.
    StartTlsOpportunistic,
    /// `smtp://host?tls=required` — STARTTLS, and refuse to send without it.
    StartTlsRequired,
    /// `smtps://host` — TLS from the first byte (RFC 8314).
    ImplicitTls,
}

impl SmtpSecurity {
    /// Port when the URL names none: 25 (relay) for plain and opportunistic, 587
    /// (submission) for `tls=required`, 465 (submissions) for `smtps://`.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Plain | SmtpSecurity::StartTlsOpportunistic => 25,
            SmtpSecurity::StartTlsRequired => 587,
            SmtpSecurity::ImplicitTls => 465,
        }
    }
}

/// Where and how to send e-mail. `Debug` and [`SmtpSettings::redacted`] never show the
/// password.
#[derive(Clone, Debug, PartialEq)]
pub struct SmtpSettings {
    pub security: SmtpSecurity,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// The sender (`MAIL_FROM`), a valid mailbox such as `Rewards <rewards@acme.example>`.
    pub from: String,
    /// Sustained messages per second, shared by everything sent through one mailer
    /// (URL query `rate=`).
    pub rate_per_second: f64,
    /// Messages that may be sent back to back before the rate applies (`burst=`).
    pub burst: u32,
    /// Maximum concurrent connections (`pool=`).
    pub pool_size: u32,
    /// The name announced in `EHLO` (`helo=`); default: this machine's host name. Strict
    /// relays want a fully qualified name, which a pod's host name is not.
    pub hello_name: Option<String>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// `tls=none` was written out: credentials may cross the network in the clear.
    pub cleartext_login: bool,
}

impl SmtpSettings {
    /// Parses `--smtp-url` / `SMTP_URL` and `--mail-from` / `MAIL_FROM`.
    ///
    /// `smtp://[user:password@]host[:port][?tls=required|opportunistic|none]`,
    /// `smtps://[user:password@]host[:port]`; optional `rate=<messages per second>`,
    /// `burst=<n>`, `pool=<connections>`, `helo=<host name>`. User and password are percent-decoded. Errors
    /// name the flag and never repeat the password (nor the URL, which holds it).
    pub fn parse(url: &str, from: &str) -> Result<SmtpSettings, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err(format!("{URL_FLAG} is empty"));
        }
        let parsed = url::Url::parse(url).map_err(|e| {
            format!("{URL_FLAG} is not a valid URL ({e}); expected e.g. smtp://relay:25, smtp://user:password@relay:587?tls=required or smtps://user:password@relay")
        })?;
        let mut security = match parsed.scheme() {
            "smtp" => SmtpSecurity::Plain,
            "smtps" => SmtpSecurity::ImplicitTls,
            other => {
                return Err(format!(
                    "{URL_FLAG}: unsupported scheme '{other}' (use smtp:// or smtps://)"
                ))
            }
        };
        let host = match parsed.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(h) => h.to_string(),
            None => return Err(format!("{URL_FLAG} has no host")),
        };
        if host.is_empty() {
            return Err(format!("{URL_FLAG} has no host"));
        }
        if !matches!(parsed.path(), "" | "/") {
            return Err(format!(
                "{URL_FLAG}: unexpected path '{}' (only scheme, credentials, host, port and query are used)",
                parsed.path()
            ));
        }
        if parsed.fragment().is_some() {
            return Err(format!("{URL_FLAG}: unexpected '#' fragment"));
        }

        let mut settings = SmtpSettings {
            security,
            host,
            port: 0,
            username: None,
            password: None,
            from: parse_from(from)?,
            rate_per_second: DEFAULT_RATE_PER_SECOND,
            burst: DEFAULT_BURST,
            pool_size: DEFAULT_POOL_SIZE,
            hello_name: None,
            timeout: DEFAULT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_base: DEFAULT_RETRY_BASE,
            retry_max: DEFAULT_RETRY_MAX,
            cleartext_login: false,
        };

        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "tls" => {
                    if security == SmtpSecurity::ImplicitTls {
                        return Err(format!(
                            "{URL_FLAG}: tls= applies to smtp:// only (smtps:// is always TLS)"
                        ));
                    }
                    security = match value.as_ref() {
                        "required" => SmtpSecurity::StartTlsRequired,
                        "opportunistic" => SmtpSecurity::StartTlsOpportunistic,
                        "none" => {
                            settings.cleartext_login = true;
                            SmtpSecurity::Plain
                        }
                        _ => {
                            return Err(format!(
                                "{URL_FLAG}: tls must be required, opportunistic or none"
                            ))
                        }
                    };
                }
                "rate" => {
                    settings.rate_per_second = value
                        .parse::<f64>()
                        .ok()
                        .filter(|r| r.is_finite() && *r > 0.0)
                        .ok_or_else(|| {
                            format!(
                                "{URL_FLAG}: rate must be a positive number of messages per second"
                            )
                        })?;
                }
                "burst" => {
                    settings.burst = positive(&value)
                        .ok_or_else(|| format!("{URL_FLAG}: burst must be a positive integer"))?;
                }
                "pool" => {
                    settings.pool_size = positive(&value)
                        .ok_or_else(|| format!("{URL_FLAG}: pool must be a positive integer"))?;
                }
                "helo" => {
                    let name = value.trim();
                    if name.is_empty() || name.contains(char::is_whitespace) {
                        return Err(format!("{URL_FLAG}: helo must be a host name"));
                    }
                    settings.hello_name = Some(name.to_string());
                }
                other => {
                    return Err(format!(
                        "{URL_FLAG}: unknown query parameter '{other}' (known: tls, rate, burst, pool, helo)"
                    ))
                }
            }
        }
        settings.security = security;
        settings.port = parsed.port().unwrap_or(security.default_port());

        let user = decode(parsed.username(), "user name")?;
        let password = match parsed.password() {
            Some(p) => Some(decode(p, "password")?),
            None => None,
        };
        match (user.is_empty(), password) {
            (true, None) => {}
            (false, Some(p)) => {
                settings.username = Some(user);
                settings.password = Some(SecretString::new(p));
            }
            (false, None) => {
                return Err(format!(
                    "{URL_FLAG} has a user name but no password (smtp://user:password@host)"
                ))
            }
            (true, Some(_)) => {
                return Err(format!(
                    "{URL_FLAG} has a password but no user name (smtp://user:password@host)"
                ))
            }
        }
        Ok(settings)
    }

    /// Sets the credentials from elsewhere (a Kubernetes Secret), replacing the URL's.
    pub fn with_credentials(mut self, username: impl Into<String>, password: SecretString) -> Self {
        self.username = Some(username.into());
        self.password = Some(password);
        self
    }

    /// A login over a connection that may be plain text (no TLS, or STARTTLS an attacker
    /// can strip) goes only to a loopback relay, unless `tls=none` says so on purpose.
    pub fn check_login_transport(&self) -> Result<(), String> {
        let cleartext = matches!(
            self.security,
            SmtpSecurity::Plain | SmtpSecurity::StartTlsOpportunistic
        );
        let loopback = self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if self.username.is_none() || !cleartext || loopback || self.cleartext_login {
            return Ok(());
        }
        Err(format!(
            "{URL_FLAG}: a user name and password would go to {} without TLS; use smtps://, or smtp://…?tls=required (STARTTLS), or write ?tls=none to send them in the clear on purpose",
            self.host
        ))
    }

    /// The URL with the password masked, e.g. `smtps://user:***@host:465`.
    pub fn redacted(&self) -> String {
        let scheme = match self.security {
            SmtpSecurity::ImplicitTls => "smtps",
            _ => "smtp",
        };
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (Some(u), None) => format!("{u}@"),
            _ => String::new(),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let query = match self.security {
            SmtpSecurity::StartTlsRequired => "?tls=required",
            SmtpSecurity::StartTlsOpportunistic => "?tls=opportunistic",
            _ => "",
        };
        format!("{scheme}://{auth}{host}:{}{query}", self.port)
    }
}

impl fmt::Display for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn positive(value: &str) -> Option<u32> {
    value.parse::<u32>().ok().filter(|n| *n > 0)
}

fn decode(raw: &str, what: &str) -> Result<String, String> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("{URL_FLAG}: the {what} is not valid UTF-8 once percent-decoded"))
}

fn parse_from(from: &str) -> Result<String, String> {
    let from = from.trim();
    if from.is_empty() {
        return Err(format!(
            "{FROM_FLAG} is required to send e-mail (e.g. rewards@acme.example)"
        ));
    }
    Mailbox::from_str(from)
        .map(|m| m.to_string())
        .map_err(|e| format!("{FROM_FLAG}: '{from}' is not a valid e-mail address ({e})"))
}

/// A token bucket: `burst` messages at once, then `rate` per second. Shared by every task
/// sending through one [`SmtpMailer`].
struct RateLimiter {
    rate: f64,
    burst: f64,
    /// (tokens, when they were counted). Tokens go negative: each waiter reserves its
    /// slot, so concurrent senders queue fairly instead of racing.
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    async fn acquire(&self) {
        let wait = {
            let mut state = self.state.lock().expect("rate limiter lock");
            let now = Instant::now();
            let refilled = state.0 + now.duration_since(state.1).as_secs_f64() * self.rate;
            let tokens = refilled.min(self.burst) - 1.0;
            *state = (tokens, now);
            if tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-tokens / self.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Counters of one mailer, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmtpStats {
    /// Messages accepted by the relay.
    pub sent: u64,
    /// SMTP transactions attempted (including retries).
    pub attempts: u64,
    /// Attempts repeated after a retryable failure.
    pub retries: u64,
    /// Connections opened.
    pub connections: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    connections: AtomicU64,
}

/// A failed attempt and whether repeating it is useful and safe.
struct Failure {
    error: MailError,
    retry: bool,
}

/// Sends mail over SMTP with pooled connections, a shared rate limit and retries. Share
/// one mailer (behind an `Arc`) between everything that sends, so the rate limit holds
/// across concurrent senders.
pub struct SmtpMailer {
    settings: SmtpSettings,
    from: Mailbox,
    tls: Option<TlsParameters>,
    hello: ClientId,
    limiter: RateLimiter,
    slots: Semaphore,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    counters: Counters,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("relay", &self.settings.redacted())
            .field("from", &self.settings.from)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    pub fn new(settings: SmtpSettings) -> Result<SmtpMailer, String> {
        let from = Mailbox::from_str(&settings.from)
            .map_err(|e| format!("{FROM_FLAG}: not a valid e-mail address ({e})"))?;
        let tls = match settings.security {
            SmtpSecurity::Plain => None,
            _ => Some(
                TlsParameters::new(settings.host.clone())
                    .map_err(|e| format!("{URL_FLAG}: TLS setup failed: {e}"))?,
            ),
        };
        if !(settings.rate_per_second.is_finite() && settings.rate_per_second > 0.0) {
            return Err(format!("{URL_FLAG}: rate must be a positive number"));
        }
        settings.check_login_transport()?;
        Ok(SmtpMailer {
            limiter: RateLimiter::new(settings.rate_per_second, settings.burst),
            slots: Semaphore::new(settings.pool_size.max(1) as usize),
            idle: Mutex::new(Vec::new()),
            counters: Counters::default(),
            hello: settings
                .hello_name
                .clone()
                .map(ClientId::Domain)
                .unwrap_or_default(),
            from,
            tls,
            settings,
        })
    }

    pub fn settings(&self) -> &SmtpSettings {
        &self.settings
    }

    pub fn stats(&self) -> SmtpStats {
        SmtpStats {
            sent: self.counters.sent.load(Ordering::Relaxed),
            attempts: self.counters.attempts.load(Ordering::Relaxed),
            retries: self.counters.retries.load(Ordering::Relaxed),
            connections: self.counters.connections.load(Ordering::Relaxed),
        }
    }

    /// Closes pooled connections politely (`QUIT`). Dropping the mailer also closes
    /// them, without the `QUIT`.
    pub async fn close(&self) {
        let idle: Vec<_> = std::mem::take(&mut *self.idle.lock().expect("pool lock"));
        for (mut conn, _) in idle {
            let _ = timeout(Duration::from_secs(2), conn.quit()).await;
        }
    }

    /// Masks the password should a relay ever echo it.
    fn scrub(&self, text: String) -> String {
        match &self.settings.password {
            Some(p) => p.scrub(&text),
            _ => text,
        }
    }

    fn relay(&self) -> String {
        format!("{}:{}", self.settings.host, self.settings.port)
    }

    fn compose(&self, mail: &OutgoingMail) -> Result<Message, MailError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(mail.subject.replace(['\r', '\n'], " "))
            .date_now()
            .message_id(mail.message_id.clone())
            // RFC 3834: keeps out-of-office replies and autoresponders away.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_string(),
            ));
        if mail.to.is_empty() {
            return Err(MailError::Permanent("the message has no recipient".into()));
        }
        for to in &mail.to {
            let mailbox = Mailbox::from_str(to.trim()).map_err(|e| {
                MailError::Permanent(format!("invalid recipient address '{to}': {e}"))
            })?;
            builder = builder.to(mailbox);
        }
        let content = match &mail.html {
            Some(html) => Content::Multi(MultiPart::alternative_plain_html(
                mail.text.clone(),
                html.clone(),
            )),
            None => Content::Single(SinglePart::plain(mail.text.clone())),
        };
        let built = if mail.attachments.is_empty() {
            match content {
                Content::Multi(m) => builder.multipart(m),
                Content::Single(s) => builder.singlepart(s),
            }
        } else {
            let mut mixed = match content {
                Content::Multi(m) => MultiPart::mixed().multipart(m),
                Content::Single(s) => MultiPart::mixed().singlepart(s),
            };
            for a in &mail.attachments {
                let content_type = ContentType::parse(&a.content_type).unwrap_or_else(|_| {
                    ContentType::parse("application/octet-stream").expect("valid")
                });
                // Base64 always: a report's bare-LF rows would otherwise travel as one
                // "line" past SMTP's 998-character limit, and relays refuse the message.
                let body = lettre::message::Body::new_with_encoding(
                    a.content.clone(),
                    lettre::message::header::ContentTransferEncoding::Base64,
                )
                .map_err(|_| MailError::Permanent("the attachment could not be encoded".into()))?;
                mixed = mixed
                    .singlepart(MimeAttachment::new(a.filename.clone()).body(body, content_type));
            }
            builder.multipart(mixed)
        };
        built.map_err(|e| MailError::Permanent(format!("the message could not be composed: {e}")))
    }

    /// Opens a connection: TCP (or TLS), greeting, EHLO, STARTTLS, AUTH. Nothing of any
    /// message has been sent yet, so every failure here is [`MailError::Unavailable`].
    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let s = &self.settings;
        let unavailable = |what: &str, e: SmtpError| {
            // 4xx and network trouble may pass; a refused login, a TLS failure or a
            // missing capability will not.
            let retry = e.is_transient() || (e.status().is_none() && !e.is_tls() && !e.is_client());
            Failure {
                error: MailError::Unavailable(self.scrub(format!("{what} {}: {e}", self.relay()))),
                retry,
            }
        };
        let open = async {
            let implicit = match s.security {
                SmtpSecurity::ImplicitTls => self.tls.clone(),
                _ => None,
            };
            let mut conn = AsyncSmtpConnection::connect_tokio1(
                (s.host.as_str(), s.port),
                Some(s.timeout),
                &self.hello,
                implicit,
                None,
            )
            .await
            .map_err(|e| unavailable("connecting to", e))?;
            self.counters.connections.fetch_add(1, Ordering::Relaxed);
            let starttls = match s.security {
                SmtpSecurity::StartTlsRequired => {
                    if !conn.can_starttls() {
                        return Err(Failure {
                            error: MailError::Unavailable(format!(
                                "{} does not offer STARTTLS, which tls=required demands",
                                self.relay()
                            )),
                            retry: false,
                        });
                    }
                    true
                }
                SmtpSecurity::StartTlsOpportunistic => conn.can_starttls(),
                _ => false,
            };
            if starttls {
                let params = self.tls.clone().expect("TLS parameters for STARTTLS");
                conn.starttls(params, &self.hello)
                    .await
                    .map_err(|e| unavailable("STARTTLS with", e))?;
            }
            if let (Some(user), Some(password)) = (&s.username, &s.password) {
                let credentials = Credentials::new(user.clone(), password.expose().to_string());
                conn.auth(DEFAULT_MECHANISMS, &credentials)
                    .await
                    .map_err(|e| unavailable("authenticating with", e))?;
            }
            Ok(conn)
        };
        match timeout(s.timeout, open).await {
            Ok(result) => result,
            Err(_) => Err(Failure {
                error: MailError::Unavailable(format!(
                    "no answer from {} within {}s",
                    self.relay(),
                    s.timeout.as_secs()
                )),
                retry: true,
            }),
        }
    }

    /// A pooled connection that still answers `NOOP`, or a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, Failure> {
        loop {
            let parked = self.idle.lock().expect("pool lock").pop();
            let Some((mut conn, since)) = parked else {
                break;
            };
            if since.elapsed() < IDLE_LIMIT
                && !conn.has_broken()
                && timeout(self.settings.timeout, conn.test_connected())
                    .await
                    .unwrap_or(false)
            {
                return Ok(conn);
            }
            drop(conn);
        }
        self.connect().await
    }

    /// One SMTP transaction on a pooled connection.
    async fn attempt(&self, envelope: &Envelope, content: &[u8]) -> Result<(), Failure> {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the pool semaphore is never closed");
        let mut conn = self.checkout().await?;
        match self.transact(&mut conn, envelope, content).await {
            Ok(()) => {
                self.idle
                    .lock()
                    .expect("pool lock")
                    .push((conn, Instant::now()));
                Ok(())
            }
            Err(f) => {
                // The session may be mid-transaction: start the next one afresh.
                let _ = timeout(Duration::from_secs(2), conn.abort()).await;
                Err(f)
            }
        }
    }

    async fn transact(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        content: &[u8],
    ) -> Result<(), Failure> {
        let step_timeout = self.settings.timeout;
        let mut params = Vec::new();
        let non_ascii = envelope
            .to()
            .iter()
            .chain(envelope.from())
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(Failure {
                    error: MailError::Permanent(
                        "the address is not ASCII and the relay does not support SMTPUTF8".into(),
                    ),
                    retry: false,
                });
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !content.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }

        // Before the content is transmitted nothing can have been accepted: every failure
        // up to `DATA` is definite.
        let before = |stage: Stage, r: Result<Result<_, SmtpError>, _>| -> Result<(), Failure> {
            let e = match r {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(Failure {
                        error: MailError::Transient(format!(
                            "no reply from {} to {} within {}s",
                            self.relay(),
                            stage.command(),
                            step_timeout.as_secs()
                        )),
                        retry: true,
                    })
                }
            };
            let text = self.scrub(format!("{} {}: {e}", stage.command(), self.relay()));
            Err(if e.is_transient() {
                Failure {
                    error: MailError::Transient(text),
                    retry: true,
                }
            } else if e.is_permanent() {
                Failure {
                    error: match stage {
                        // A refused sender refuses every message: a relay problem.
                        Stage::Sender => MailError::Unavailable(format!(
                            "{text} (check {FROM_FLAG} and the relay's sender policy)"
                        )),
                        _ => MailError::Permanent(text),
                    },
                    retry: false,
                }
            } else {
                // The connection broke before the content was sent.
                Failure {
                    error: MailError::Transient(text),
                    retry: true,
                }
            })
        };

        before(
            Stage::Sender,
            timeout(
                step_timeout,
                conn.command(Mail::new(envelope.from().cloned(), params)),
            )
            .await,
        )?;
        for to in envelope.to() {
            before(
                Stage::Recipient,
                timeout(step_timeout, conn.command(Rcpt::new(to.clone(), vec![]))).await,
            )?;
        }
        before(Stage::Data, timeout(step_timeout, conn.command(Data)).await)?;

        let sent = match data_payload(content) {
            Some(payload) => timeout(step_timeout, conn.command(payload)).await,
            None => timeout(step_timeout, conn.message(content)).await,
        };
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_transient() => Err(Failure {
                error: MailError::Transient(self.scrub(format!("end of DATA: {e}"))),
                retry: true,
            }),
            Ok(Err(e)) if e.is_permanent() => Err(Failure {
                error: MailError::Permanent(self.scrub(format!("end of DATA: {e}"))),
                retry: false,
            }),
            Ok(Err(e)) => Err(Failure {
                error: MailError::Uncertain(self.scrub(format!("end of DATA: {e}"))),
                retry: false,
            }),
            Err(_) => Err(Failure {
                error: MailError::Uncertain(format!(
                    "no reply from {} after the message content within {}s",
                    self.relay(),
                    step_timeout.as_secs()
                )),
                retry: false,
            }),
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .settings
            .retry_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let ceiling = exp.min(self.settings.retry_max);
        // Full jitter between half and all of the delay, so that retries of several
        // senders do not arrive in lockstep.
        ceiling.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }
}

/// The message content, dot-stuffed and terminated, sent as one write. lettre's
/// `message()` writes the content and the terminating `.` separately; the second small
/// write then waits for the first one's ACK (Nagle), which the peer delays by up to 40 ms:
/// that alone capped sending at about 20 messages per second.
struct DataPayload(String);

impl fmt::Display for DataPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `None` if the content is not UTF-8 (lettre's own encoding always produces UTF-8).
fn data_payload(content: &[u8]) -> Option<DataPayload> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 64 + 8);
    let mut line_start = true;
    let mut after_cr = false;
    for &b in content {
        // RFC 5321 4.5.2: a line starting with "." gets another one.
        if b == b'.' && line_start {
            out.push(b'.');
        }
        out.push(b);
        line_start = after_cr && b == b'\n';
        after_cr = b == b'\r';
    }
    out.extend_from_slice(b"\r\n.\r\n");
    String::from_utf8(out).ok().map(DataPayload)
}

#[derive(Clone, Copy)]
enum Stage {
    Sender,
    Recipient,
    Data,
}

impl Stage {
    fn command(self) -> &'static str {
        match self {
            Stage::Sender => "MAIL FROM at",
            Stage::Recipient => "RCPT TO at",
            Stage::Data => "DATA at",
        }
    }
}

enum Content {
    Multi(MultiPart),
    Single(SinglePart),
}

#[async_trait]
impl MailTransport for SmtpMailer {
    async fn send(&self, message: OutgoingMail) -> Result<(), MailError> {
        let composed = self.compose(&message)?;
        let envelope = composed.envelope().clone();
        let content = composed.formatted();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.limiter.acquire().await;
            self.counters.attempts.fetch_add(1, Ordering::Relaxed);
            match self.attempt(&envelope, &content).await {
                Ok(()) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(f) if f.retry && attempt < self.settings.max_attempts => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(attempt, error = %f.error, "SMTP attempt failed, retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(f) => return Err(f.error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let e = mailer(refused).unwrap_err();
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
        let s = parse(
            "smtp://u:pw@relay:587?tls=required&rate=2.5&burst=3&pool=1&helo=op.acme.example",
        );
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
            let err = SmtpSettings::parse(&url, FROM).expect_err(&url);
            assert!(err.contains("--smtp-url/SMTP_URL"), "{url}: {err}");
            assert!(!err.contains(secret), "{url}: {err}");
        }
        let err = SmtpSettings::parse("smtp://relay", "not an address").unwrap_err();
        assert!(err.contains("--mail-from/MAIL_FROM"), "{err}");
        let err = SmtpSettings::parse("smtp://relay", " ").unwrap_err();
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
}
