//! E-mail: member invitations, sent exactly once through an [`outbox`], and the owner's
//! import [`summary`], over SMTP ([`smtp`]) with overridable [`templates`].
//!
//! Nothing here ever fails an import: every function reports problems as warnings (or
//! as a `Result` the caller turns into one), and pending invitations stay pending.
//!
//! How a run uses it (never for dry runs or previews):
//!
//! 1. before the creates, when `welcomeEmail.enabled`: [`record_intents`] for every
//!    planned create (Employee ID, e-mail, first name);
//! 2. after the creates: [`confirm`] with the Employee IDs of the members created;
//! 3. [`deliver_pending`] with the Employee IDs in the destination after the run (listed
//!    at the start plus created); the run adds its [`DeliveryReport`] to its outcome
//!    (`invitationsSent`, warning rows, pending count: `sync::notify_after_run`);
//! 4. [`summary_mail`] from the final status, sent with [`send_summary`]; its warnings
//!    belong on stderr or in an Event (the run's status is written by then).

pub(crate) mod mail;
pub(crate) mod outbox;
pub(crate) mod smtp;
pub mod summary;
pub(crate) mod templates;

use async_trait::async_trait;

pub use mail::{Mail, MailSetupError};
pub use outbox::{
    confirm, confirm_accounts, deliver_pending, discard_pending, forget, invitation_message_id,
    invitation_message_id_of, record_intents, record_intents_for_new_accounts, DeliveryContext,
    DeliveryReport, EntryState, InvitationIntent, Outbox, OutboxEntry, OutboxLimits,
    DELIVERY_BATCH_MAX, DELIVERY_BATCH_TIME,
};
pub use smtp::{SmtpConfigError, SmtpMailer, SmtpSecurity, SmtpSettings, SmtpStats};
pub use summary::{send_summary, summary_mail, RunSummary};
pub use templates::{InvitationVars, RenderedMail, Templates};

/// One message, ready to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutgoingMail {
    /// Recipients (`a@example.com` or `Name <a@example.com>`).
    pub to: Vec<String>,
    pub subject: String,
    /// The plain-text body (always present).
    pub text: String,
    /// An HTML alternative of the same content.
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// A fixed `Message-ID` (`<…@…>`), so that a copy the relay may have accepted before a
    /// lost connection can be recognised as the same message by mail clients.
    pub message_id: Option<String>,
}

/// A file attached to a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    /// e.g. `text/csv; charset=utf-8`.
    pub content_type: String,
    pub content: Vec<u8>,
}

/// Why a message was not (or may not have been) delivered. Messages never contain the SMTP
/// password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// The relay could not be used at all (connection refused or timed out, TLS or
    /// authentication failure, sender refused): nothing was sent, try again later.
    #[error("SMTP relay unavailable: {0}")]
    Unavailable(String),
    /// The relay answered 4xx for this message: nothing was accepted, try again later.
    #[error("SMTP relay temporarily refused the message: {0}")]
    Transient(String),
    /// The connection broke or timed out after the message content was transmitted and
    /// before the relay confirmed it: it may or may not have been delivered. Sending it
    /// again could deliver it twice.
    #[error("the SMTP connection was lost after the message was transmitted (it may have been delivered): {0}")]
    Uncertain(String),
    /// The relay answered 5xx for this message or recipient (or the address is invalid):
    /// sending it again will not help.
    #[error("SMTP relay refused the message: {0}")]
    Permanent(String),
}

/// Something that delivers mail: [`SmtpMailer`] in production, a recorder in tests.
#[async_trait]
pub trait MailTransport: Send + Sync {
    async fn send(&self, message: OutgoingMail) -> Result<(), MailError>;
}
