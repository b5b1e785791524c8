//! Builds the source and destination clients of an integration from its spec and the
//! credentials in its Secrets. Behind a trait so tests can count or refuse connections.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::api::FreshteamIntegrationSpec;
use crate::destination::{MemberDirectory, ScimClient, ScimConfig};
use crate::egress::Egress;
use crate::secret::SecretString;
use crate::source::{AccountLimiter, EmployeeSource, FreshteamClient, FreshteamConfig};

#[async_trait]
pub trait Connector: Send + Sync {
    async fn source(
        &self,
        spec: &FreshteamIntegrationSpec,
        api_key: SecretString,
    ) -> Result<Box<dyn EmployeeSource>, String>;
    async fn destination(
        &self,
        spec: &FreshteamIntegrationSpec,
        token: SecretString,
    ) -> Result<Box<dyn MemberDirectory>, String>;
}

/// The real HTTP clients. Integrations on one Freshteam account share one rate
/// limiter, so together they stay within the account's quota instead of fighting over it.
/// `default()` lets the clients reach public and loopback addresses (tests against local
/// peers); the operator builds it with [`HttpConnector::new`] and its own policy.
#[derive(Default)]
pub struct HttpConnector {
    accounts: Mutex<HashMap<String, AccountLimiter>>,
    egress: Egress,
}

impl HttpConnector {
    pub fn new(egress: Egress) -> Self {
        HttpConnector {
            accounts: Mutex::default(),
            egress,
        }
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
    ) -> Result<Box<dyn EmployeeSource>, String> {
        let mut config = FreshteamConfig::new(
            &spec.source.subdomain,
            spec.source.base_url.as_deref(),
            api_key,
        )
        .map_err(|e| e.to_string())?;
        config.egress = self.egress.clone();
        let account = self
            .accounts
            .lock()
            .expect("accounts lock")
            .entry(account_key(spec))
            .or_insert_with(|| AccountLimiter::new(config.concurrency))
            .clone();
        Ok(Box::new(
            FreshteamClient::with_account(config, &account).map_err(|e| e.to_string())?,
        ))
    }

    async fn destination(
        &self,
        spec: &FreshteamIntegrationSpec,
        token: SecretString,
    ) -> Result<Box<dyn MemberDirectory>, String> {
        let mut config =
            ScimConfig::new(&spec.destination.scim.url, token).map_err(|e| e.to_string())?;
        config.egress = self.egress.clone();
        Ok(Box::new(
            ScimClient::connect(config)
                .await
                .map_err(|e| e.to_string())?,
        ))
    }
}
