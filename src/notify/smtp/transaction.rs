//! One SMTP transaction, step by step, so that a failure says whether the relay may
//! have accepted the message.

use std::fmt;

use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::Error as SmtpError;
use tokio::time::timeout;

use super::mailer::{Failure, SmtpMailer};
use super::settings::FROM_FLAG;
use crate::notify::MailError;

impl SmtpMailer {
    pub(super) async fn transact(
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
}

/// The message content, dot-stuffed and terminated, sent as one write. lettre's
/// `message()` writes the content and the terminating `.` separately; the second small
/// write then waits for the first one's ACK (Nagle), which the peer delays by up to 40 ms:
/// that alone capped sending at about 20 messages per second.
pub(super) struct DataPayload(pub(super) String);

impl fmt::Display for DataPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `None` if the content is not UTF-8 (lettre's own encoding always produces UTF-8).
pub(super) fn data_payload(content: &[u8]) -> Option<DataPayload> {
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
