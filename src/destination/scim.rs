//! SCIM 2.0 client (RFC 7643/7644).

use std::time::Duration;

use async_trait::async_trait;
use url::Url;

use super::{
    DestinationError, DestinationMember, DestinationStats, MemberDirectory, WriteOp, WriteOutcome,
};
use crate::secret::SecretString;

/// Whether to use `/Bulk` when the service announces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BulkMode {
    #[default]
    Auto,
    Off,
}

/// How to reach the SCIM service.
#[derive(Clone, Debug)]
pub struct ScimConfig {
    /// Base URL, e.g. `https://members.example.com/scim/v2` (no trailing slash needed).
    pub base_url: Url,
    pub token: SecretString,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub request_timeout: Duration,
    pub bulk: BulkMode,
}

impl ScimConfig {
    pub fn new(url: &str, token: SecretString) -> Result<Self, DestinationError> {
        let base_url = Url::parse(url.trim_end_matches('/'))
            .map_err(|e| DestinationError::Config(format!("'{url}' is not a URL: {e}")))?;
        Ok(ScimConfig {
            base_url,
            token,
            concurrency: 8,
            request_timeout: Duration::from_secs(30),
            bulk: BulkMode::Auto,
        })
    }
}

/// The SCIM client.
pub struct ScimClient {
    #[allow(dead_code)]
    config: ScimConfig,
}

impl ScimClient {
    /// Reads `/ServiceProviderConfig` to learn what the service supports.
    pub async fn connect(config: ScimConfig) -> Result<Self, DestinationError> {
        Ok(ScimClient { config })
    }
}

#[async_trait]
impl MemberDirectory for ScimClient {
    async fn list_members(&self) -> Result<Vec<DestinationMember>, DestinationError> {
        todo!("SCIM client")
    }
    async fn apply(
        &self,
        _ops: &[WriteOp],
        _on_done: &(dyn for<'a> Fn(usize, &'a WriteOutcome) + Send + Sync),
    ) -> Vec<WriteOutcome> {
        todo!("SCIM client")
    }
    fn stats(&self) -> DestinationStats {
        DestinationStats::default()
    }
}
