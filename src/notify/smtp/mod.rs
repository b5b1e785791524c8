//! SMTP transport: settings from `--smtp-url` / `SMTP_URL`, a small connection pool, a
//! shared send-rate limit and retries with jittered backoff.
//!
//! The SMTP transaction is driven step by step (lettre's connection API) rather than
//! through lettre's one-call transport, because exactly-once invitations need to know
//! *where* a failure happened: anything before the message content is on the wire means
//! nothing was accepted (safe to retry), while a connection lost after the content was
//! sent and before the relay's reply may have delivered it ([`MailError::Uncertain`],
//! never retried).

mod mailer;
mod settings;
mod transaction;

pub use mailer::{SmtpMailer, SmtpStats};
pub use settings::{SmtpConfigError, SmtpSecurity, SmtpSettings};

#[cfg(test)]
mod tests;
