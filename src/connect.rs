//! Builds the source and destination clients of an integration from its spec and its
//! credentials: the one client factory of the command line and the controller. Where
//! the credentials come from (manifests, Kubernetes Secrets) is the caller's business.
//! Behind a trait so tests can count or refuse connections.

use std::collections::HashMap;
use std::sync::Mutex;

use std::time::Duration;

use async_trait::async_trait;

use crate::api::{FreshteamIntegrationSpec, DEFAULT_RUN_DEADLINE};
use crate::destination::scim::BulkMode;
use crate::destination::{ConvergenceNotes, MemberDirectory, ScimClient, ScimConfig};
use crate::egress::Egress;
use crate::http_policy::{parse_duration, Pace, PaceError};
use crate::secret::SecretString;
use crate::source::{AccountLimiter, EmployeeSource, FreshteamClient, FreshteamConfig};

/// Why a client could not be had. The variant tells bad input (the command line's
/// INVALID_INPUT) from a service that could not be used (a failed run).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The spec cannot make a client; `field` names where (`spec.source`,
    /// `spec.destination.scim.url`). Spec validation catches these before a run.
    #[error("{field}: {reason}")]
    Config { field: &'static str, reason: String },
    /// The client could not be built from the credentials, or the service could not be
    /// reached or refused the first requests; `service` is `Freshteam` or `destination`.
    #[error("{service}: {reason}")]
    Unavailable {
        service: &'static str,
        reason: String,
    },
}

impl ConnectError {
    /// What went wrong, without the field or service it concerns.
    pub fn reason(&self) -> &str {
        match self {
            ConnectError::Config { reason, .. } | ConnectError::Unavailable { reason, .. } => {
                reason
            }
        }
    }
}

#[async_trait]
pub trait Connector: Send + Sync {
    async fn source(
        &self,
        spec: &FreshteamIntegrationSpec,
        api_key: SecretString,
    ) -> Result<Box<dyn EmployeeSource>, ConnectError>;
    /// `notes`: the integration's convergence notes, where what an earlier run learnt
    /// about the destination (its discovery documents) spares requests.
    async fn destination(
        &self,
        spec: &FreshteamIntegrationSpec,
        token: SecretString,
        notes: &ConvergenceNotes,
    ) -> Result<Box<dyn MemberDirectory>, ConnectError>;
}

/// The real HTTP clients. Integrations on one Freshteam account share one rate
/// limiter, so together they stay within the account's quota instead of fighting over it.
/// `default()` lets the clients reach public and loopback addresses (the command line,
/// tests against local peers); the operator builds it with [`HttpConnector::new`] and
/// its own policy.
#[derive(Default)]
pub struct HttpConnector {
    accounts: Mutex<HashMap<String, AccountLimiter>>,
    egress: Egress,
    bulk: BulkMode,
    default_rate_limit: Option<Pace>,
}

impl HttpConnector {
    pub fn new(egress: Egress) -> Self {
        HttpConnector {
            egress,
            ..HttpConnector::default()
        }
    }

    /// Whether SCIM clients use /Bulk when the service announces it (`sync --bulk`).
    pub fn with_bulk(mut self, bulk: BulkMode) -> Self {
        self.bulk = bulk;
        self
    }

    /// The pace of destinations whose spec sets no `rateLimit` (`--default-rate-limit`).
    pub fn with_default_rate_limit(mut self, pace: Option<Pace>) -> Self {
        self.default_rate_limit = pace;
        self
    }
}

/// `spec.destination.scim.rateLimit` as a pace, if set.
pub(crate) fn rate_limit(spec: &FreshteamIntegrationSpec) -> Result<Option<Pace>, ConnectError> {
    let Some(r) = &spec.destination.scim.rate_limit else {
        return Ok(None);
    };
    let invalid = |reason: PaceError| ConnectError::Config {
        field: "spec.destination.scim.rateLimit",
        reason: reason.to_string(),
    };
    let window = parse_duration(&r.window).map_err(|e| invalid(e.into()))?;
    Pace::new(r.requests, window).map(Some).map_err(invalid)
}

/// `spec.runDeadline`, or its default (24h).
pub(crate) fn run_deadline(spec: &FreshteamIntegrationSpec) -> Result<Duration, ConnectError> {
    let text = spec.run_deadline.as_deref().unwrap_or(DEFAULT_RUN_DEADLINE);
    let invalid = |reason: String| ConnectError::Config {
        field: "spec.runDeadline",
        reason,
    };
    match parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(invalid("must be longer than zero".into())),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// The key of a Freshteam account: its API root.
pub fn account_key(spec: &FreshteamIntegrationSpec) -> String {
    match &spec.source.base_url {
        Some(base) => base.trim_end_matches('/').to_string(),
        None => format!("https://{}.freshteam.com/api", spec.source.subdomain),
    }
}

#[async_trait]
impl Connector for HttpConnector {
    async fn source(
        &self,
        spec: &FreshteamIntegrationSpec,
        api_key: SecretString,
    ) -> Result<Box<dyn EmployeeSource>, ConnectError> {
        let mut config = FreshteamConfig::new(
            &spec.source.subdomain,
            spec.source.base_url.as_deref(),
            api_key,
        )
        .map_err(|e| ConnectError::Config {
            field: "spec.source",
            reason: e.to_string(),
        })?;
        config.egress = self.egress.clone();
        let account = self
            .accounts
            .lock()
            .expect("accounts lock")
            .entry(account_key(spec))
            .or_insert_with(|| AccountLimiter::new(config.concurrency))
            .clone();
        let client = FreshteamClient::with_account(config, &account).map_err(|e| {
            ConnectError::Unavailable {
                service: "Freshteam",
                reason: e.to_string(),
            }
        })?;
        Ok(Box::new(client))
    }

    async fn destination(
        &self,
        spec: &FreshteamIntegrationSpec,
        token: SecretString,
        notes: &ConvergenceNotes,
    ) -> Result<Box<dyn MemberDirectory>, ConnectError> {
        let mut config = ScimConfig::new(&spec.destination.scim.url, token).map_err(|e| {
            ConnectError::Config {
                field: "spec.destination.scim.url",
                reason: e.to_string(),
            }
        })?;
        config.egress = self.egress.clone();
        config.bulk = self.bulk;
        config.rate_limit = rate_limit(spec)?.or(self.default_rate_limit);
        config.extras = crate::member::target::interned_targets(
            spec.mapping.attributes.iter().map(|a| a.target.as_str()),
        );
        let client = ScimClient::connect_remembering(config, notes)
            .await
            .map_err(|e| ConnectError::Unavailable {
                service: "destination",
                reason: e.to_string(),
            })?;
        Ok(Box::new(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(subdomain: &str, scim_url: &str) -> FreshteamIntegrationSpec {
        serde_json::from_value(serde_json::json!({
            "source": {"subdomain": subdomain, "apiKeySecretRef": {"name": "k", "key": "k"}},
            "destination": {"scim": {"url": scim_url, "tokenSecretRef": {"name": "t", "key": "t"}}},
            "mapping": {"email": "official_email"}
        }))
        .unwrap()
    }

    fn key(text: &str) -> SecretString {
        SecretString::new(text)
    }

    #[tokio::test]
    async fn bad_configuration_names_the_field_and_a_failed_client_names_the_service() {
        let connector = HttpConnector::default();
        let e = connector
            .source(&spec("acme/x", "http://127.0.0.1:1"), key("k"))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                ConnectError::Config {
                    field: "spec.source",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("spec.source: "), "{e}");

        let e = connector
            .source(&spec("acme", "http://127.0.0.1:1"), key("  "))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                ConnectError::Unavailable {
                    service: "Freshteam",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("Freshteam: "), "{e}");
        assert!(e.reason().contains("API key is empty"), "{e}");

        let e = connector
            .destination(
                &spec("acme", "ftp://members.example"),
                key("t"),
                &ConvergenceNotes::default(),
            )
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                ConnectError::Config {
                    field: "spec.destination.scim.url",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn rate_limit_and_run_deadline_read_from_the_spec() {
        let mut s = spec("acme", "http://127.0.0.1:1");
        assert_eq!(rate_limit(&s), Ok(None));
        assert_eq!(run_deadline(&s), Ok(Duration::from_secs(24 * 3600)));
        s.destination.scim.rate_limit = Some(crate::api::RateLimitSpec {
            requests: 180,
            window: "15m".into(),
        });
        s.run_deadline = Some("90m".into());
        assert_eq!(rate_limit(&s), Ok(Some("180/15m".parse().unwrap())));
        assert_eq!(run_deadline(&s), Ok(Duration::from_secs(5400)));
        s.destination.scim.rate_limit.as_mut().unwrap().window = "soon".into();
        s.run_deadline = Some("0s".into());
        let e = rate_limit(&s).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("spec.destination.scim.rateLimit: "),
            "{e}"
        );
        let e = run_deadline(&s).unwrap_err();
        assert!(e.to_string().starts_with("spec.runDeadline: "), "{e}");
    }

    #[tokio::test]
    async fn a_destination_that_cannot_be_reached_is_unavailable() {
        // A port just freed: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = HttpConnector::default()
            .destination(
                &spec("acme", &format!("http://127.0.0.1:{port}/scim/v2")),
                key("t"),
                &ConvergenceNotes::default(),
            )
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                ConnectError::Unavailable {
                    service: "destination",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("destination: cannot reach"),
            "{e}"
        );
    }
}
