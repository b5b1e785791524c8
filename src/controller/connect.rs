//! Builds the source and destination clients of an integration from its spec and the
//! credentials in its Secrets. Behind a trait so tests can count or refuse connections.

use async_trait::async_trait;

use crate::api::FreshteamIntegrationSpec;
use crate::destination::{MemberDirectory, ScimClient, ScimConfig};
use crate::secret::SecretString;
use crate::source::{EmployeeSource, FreshteamClient, FreshteamConfig};

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

/// The real HTTP clients.
pub struct HttpConnector;

#[async_trait]
impl Connector for HttpConnector {
    async fn source(
        &self,
        spec: &FreshteamIntegrationSpec,
        api_key: SecretString,
    ) -> Result<Box<dyn EmployeeSource>, String> {
        let config = FreshteamConfig::new(
            &spec.source.subdomain,
            spec.source.base_url.as_deref(),
            api_key,
        )
        .map_err(|e| e.to_string())?;
        Ok(Box::new(
            FreshteamClient::new(config).map_err(|e| e.to_string())?,
        ))
    }

    async fn destination(
        &self,
        spec: &FreshteamIntegrationSpec,
        token: SecretString,
    ) -> Result<Box<dyn MemberDirectory>, String> {
        let config =
            ScimConfig::new(&spec.destination.scim.url, token).map_err(|e| e.to_string())?;
        Ok(Box::new(
            ScimClient::connect(config)
                .await
                .map_err(|e| e.to_string())?,
        ))
    }
}
