//! `--smtp-url` / `SMTP_URL` and `--mail-from` / `MAIL_FROM`, parsed and checked.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::Mailbox;
use percent_encoding::percent_decode_str;

use crate::secret::SecretString;

/// Messages per second when the URL sets no `rate`: far below the throttling thresholds
/// of common relays (Microsoft 365: 30/min per mailbox is the strictest well-known one,
/// see `rate=`), and 10,000 invitations still go out in under 17 minutes.
pub(crate) const DEFAULT_RATE_PER_SECOND: f64 = 10.0;
/// Messages that may go out back to back before the rate applies.
pub(crate) const DEFAULT_BURST: u32 = 5;
/// Concurrent SMTP connections; relays commonly allow only a few per client.
pub(crate) const DEFAULT_POOL_SIZE: u32 = 2;
/// Limit for connecting (TCP, greeting, TLS, authentication) and for each SMTP step.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per message for failures that are safe to retry.
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// First retry delay; doubles per attempt, with jitter, up to [`DEFAULT_RETRY_MAX`].
pub(crate) const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(2);
pub(crate) const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(30);
pub(super) const URL_FLAG: &str = "--smtp-url/SMTP_URL";
pub(super) const FROM_FLAG: &str = "--mail-from/MAIL_FROM";

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
    pub fn parse(url: &str, from: &str) -> Result<SmtpSettings, SmtpConfigError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(SmtpConfigError::EmptyUrl);
        }
        let parsed = url::Url::parse(url).map_err(SmtpConfigError::NotAUrl)?;
        let mut security = match parsed.scheme() {
            "smtp" => SmtpSecurity::Plain,
            "smtps" => SmtpSecurity::ImplicitTls,
            other => return Err(SmtpConfigError::Scheme(other.into())),
        };
        let host = match parsed.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(h) => h.to_string(),
            None => return Err(SmtpConfigError::NoHost),
        };
        if host.is_empty() {
            return Err(SmtpConfigError::NoHost);
        }
        if !matches!(parsed.path(), "" | "/") {
            return Err(SmtpConfigError::Path(parsed.path().into()));
        }
        if parsed.fragment().is_some() {
            return Err(SmtpConfigError::Fragment);
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
                        return Err(SmtpConfigError::TlsWithSmtps);
                    }
                    security = match value.as_ref() {
                        "required" => SmtpSecurity::StartTlsRequired,
                        "opportunistic" => SmtpSecurity::StartTlsOpportunistic,
                        "none" => {
                            settings.cleartext_login = true;
                            SmtpSecurity::Plain
                        }
                        _ => return Err(SmtpConfigError::Tls),
                    };
                }
                "rate" => {
                    settings.rate_per_second = value
                        .parse::<f64>()
                        .ok()
                        .filter(|r| r.is_finite() && *r > 0.0)
                        .ok_or(SmtpConfigError::Rate)?;
                }
                "burst" => {
                    settings.burst =
                        positive(&value).ok_or(SmtpConfigError::NotPositive("burst"))?;
                }
                "pool" => {
                    settings.pool_size =
                        positive(&value).ok_or(SmtpConfigError::NotPositive("pool"))?;
                }
                "helo" => {
                    let name = value.trim();
                    if name.is_empty() || name.contains(char::is_whitespace) {
                        return Err(SmtpConfigError::Helo);
                    }
                    settings.hello_name = Some(name.to_string());
                }
                other => return Err(SmtpConfigError::UnknownParameter(other.into())),
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
            (false, None) => return Err(SmtpConfigError::NoPassword),
            (true, Some(_)) => return Err(SmtpConfigError::NoUser),
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
    pub fn check_login_transport(&self) -> Result<(), SmtpConfigError> {
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
        Err(SmtpConfigError::CleartextLogin(self.host.clone()))
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

fn decode(raw: &str, what: &'static str) -> Result<String, SmtpConfigError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| SmtpConfigError::NotUtf8(what))
}

fn parse_from(from: &str) -> Result<String, SmtpConfigError> {
    let from = from.trim();
    if from.is_empty() {
        return Err(SmtpConfigError::NoFrom);
    }
    Mailbox::from_str(from)
        .map(|m| m.to_string())
        .map_err(|e| SmtpConfigError::BadFrom {
            from: from.into(),
            reason: e.to_string(),
        })
}

/// Why the SMTP settings cannot be used; names the flag, never the password (nor the
/// URL, which may hold it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("{URL_FLAG} is empty")]
    EmptyUrl,
    #[error("{URL_FLAG} is not a valid URL ({0}); expected e.g. smtp://relay:25, smtp://user:password@relay:587?tls=required or smtps://user:password@relay")]
    NotAUrl(url::ParseError),
    #[error("{URL_FLAG}: unsupported scheme '{0}' (use smtp:// or smtps://)")]
    Scheme(String),
    #[error("{URL_FLAG} has no host")]
    NoHost,
    #[error("{URL_FLAG}: unexpected path '{0}' (only scheme, credentials, host, port and query are used)")]
    Path(String),
    #[error("{URL_FLAG}: unexpected '#' fragment")]
    Fragment,
    #[error("{URL_FLAG}: tls= applies to smtp:// only (smtps:// is always TLS)")]
    TlsWithSmtps,
    #[error("{URL_FLAG}: tls must be required, opportunistic or none")]
    Tls,
    #[error("{URL_FLAG}: rate must be a positive number of messages per second")]
    Rate,
    #[error("{URL_FLAG}: {0} must be a positive integer")]
    NotPositive(&'static str),
    #[error("{URL_FLAG}: helo must be a host name")]
    Helo,
    #[error("{URL_FLAG}: unknown query parameter '{0}' (known: tls, rate, burst, pool, helo)")]
    UnknownParameter(String),
    #[error("{URL_FLAG}: the {0} is not valid UTF-8 once percent-decoded")]
    NotUtf8(&'static str),
    #[error("{URL_FLAG} has a user name but no password (smtp://user:password@host)")]
    NoPassword,
    #[error("{URL_FLAG} has a password but no user name (smtp://user:password@host)")]
    NoUser,
    #[error("{URL_FLAG}: a user name and password would go to {0} without TLS; use smtps://, or smtp://…?tls=required (STARTTLS), or write ?tls=none to send them in the clear on purpose")]
    CleartextLogin(String),
    #[error("{FROM_FLAG} is required to send e-mail (e.g. rewards@acme.example)")]
    NoFrom,
    #[error("{FROM_FLAG}: '{from}' is not a valid e-mail address ({reason})")]
    BadFrom { from: String, reason: String },
    #[error("{URL_FLAG}: TLS setup failed: {0}")]
    TlsSetup(String),
}
