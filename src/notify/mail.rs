//! How a process sends e-mail: the transport (none without SMTP), the templates and the
//! invitations' Message-ID domain, built from the command line.

use std::path::Path;
use std::sync::Arc;

use super::templates::TemplateError;
use super::{MailTransport, SmtpConfigError, SmtpMailer, SmtpSettings, Templates};
use crate::secret::SecretString;

/// Why the e-mail setup on the command line cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    #[error("{flag} {dir}: {source}")]
    Templates {
        flag: String,
        dir: String,
        source: Box<TemplateError>,
    },
    #[error("--mail-from / MAIL_FROM is required with --smtp-url")]
    NoSender,
    #[error(transparent)]
    Smtp(#[from] SmtpConfigError),
}

/// How a process sends e-mail. `transport: None` means no SMTP server is configured.
#[derive(Clone, Default)]
pub struct Mail {
    pub transport: Option<Arc<dyn MailTransport>>,
    pub templates: Templates,
    /// Domain of the invitations' fixed Message-IDs (the sender's domain).
    pub message_id_domain: Option<String>,
}

impl Mail {
    /// Builds the e-mail setup from the command line: `smtp_url` (`--smtp-url` /
    /// `SMTP_URL`; none: e-mails are skipped), `from` (`--mail-from` / `MAIL_FROM`),
    /// optional credentials kept out of the URL, and an optional templates directory
    /// (`templates_flag` names the flag in messages). Errors never carry the password.
    pub fn configure(
        smtp_url: Option<&str>,
        from: Option<&str>,
        credentials: Option<(String, SecretString)>,
        templates_dir: Option<&Path>,
        templates_flag: &str,
    ) -> Result<Mail, MailSetupError> {
        let templates = match templates_dir {
            Some(dir) => Templates::load_dir(dir).map_err(|source| MailSetupError::Templates {
                flag: templates_flag.into(),
                dir: dir.display().to_string(),
                source: Box::new(source),
            })?,
            None => Templates::default(),
        };
        let Some(url) = smtp_url.filter(|u| !u.trim().is_empty()) else {
            return Ok(Mail {
                templates,
                ..Mail::default()
            });
        };
        let from = from.ok_or(MailSetupError::NoSender)?;
        let mut settings = SmtpSettings::parse(url, from)?;
        if let Some((user, password)) = credentials {
            settings = settings.with_credentials(user, password);
        }
        let message_id_domain = from
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('>').to_string());
        Ok(Mail {
            transport: Some(Arc::new(SmtpMailer::new(settings)?)),
            templates,
            message_id_domain,
        })
    }
}
