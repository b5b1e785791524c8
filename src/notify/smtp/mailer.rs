//! The mailer: composing, a small connection pool, a shared send-rate limit and retries.

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
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::Error as SmtpError;
use tokio::sync::Semaphore;
use tokio::time::{timeout, Instant};

use super::settings::{SmtpConfigError, SmtpSecurity, SmtpSettings};
use crate::notify::{MailError, MailTransport, OutgoingMail};
use crate::secret::scrub_optional;

/// Pooled connections idle longer than this are closed rather than reused (relays close
/// idle sessions after a minute or so).
const IDLE_LIMIT: Duration = Duration::from_secs(50);

/// A token bucket: `burst` messages at once, then `rate` per second. Shared by every task
/// sending through one [`SmtpMailer`].
pub(super) struct RateLimiter {
    rate: f64,
    burst: f64,
    /// (tokens, when they were counted). Tokens go negative: each waiter reserves its
    /// slot, so concurrent senders queue fairly instead of racing.
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub(super) fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    pub(super) async fn acquire(&self) {
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
pub(super) struct Failure {
    pub(super) error: MailError,
    pub(super) retry: bool,
}

/// Sends mail over SMTP with pooled connections, a shared rate limit and retries. Share
/// one mailer (behind an `Arc`) between everything that sends, so the rate limit holds
/// across concurrent senders.
pub struct SmtpMailer {
    pub(super) settings: SmtpSettings,
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
    pub fn new(settings: SmtpSettings) -> Result<SmtpMailer, SmtpConfigError> {
        let from = Mailbox::from_str(&settings.from).map_err(|e| SmtpConfigError::BadFrom {
            from: settings.from.clone(),
            reason: e.to_string(),
        })?;
        let tls = match settings.security {
            SmtpSecurity::Plain => None,
            _ => Some(
                TlsParameters::new(settings.host.clone())
                    .map_err(|e| SmtpConfigError::TlsSetup(e.to_string()))?,
            ),
        };
        if !(settings.rate_per_second.is_finite() && settings.rate_per_second > 0.0) {
            return Err(SmtpConfigError::Rate);
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
    pub(super) fn scrub(&self, text: String) -> String {
        scrub_optional(self.settings.password.as_ref(), &text)
    }

    pub(super) fn relay(&self) -> String {
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

    /// The one backoff of every client (`crate::http_policy`): doubling from the base up
    /// to the maximum, between half and all of it, so that retries of several senders do
    /// not arrive in lockstep.
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        crate::http_policy::backoff(self.settings.retry_base, self.settings.retry_max, attempt)
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
