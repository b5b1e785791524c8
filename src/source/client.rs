//! HTTP client for the Freshteam API (see shared freshteam-api.md).

use std::time::Duration;

use async_trait::async_trait;
use url::Url;

use super::{
    validate_subdomain, AccountInfo, EmployeeSource, SourceError, SourceRequest, SourceSnapshot,
};
use crate::progress::ProgressSink;
use crate::secret::SecretString;

/// How to reach one Freshteam account.
#[derive(Clone, Debug)]
pub struct FreshteamConfig {
    /// API root, `https://{subdomain}.freshteam.com/api` unless overridden.
    pub api_root: Url,
    /// Host named in messages (`acme.freshteam.com`).
    pub host: String,
    pub api_key: SecretString,
    /// List pages / detail calls in flight at once.
    pub concurrency: usize,
    pub request_timeout: Duration,
    /// Attempts per request for 5xx, timeouts and connection errors.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Total time a run may spend waiting on 429s before it fails.
    pub max_throttle_wait: Duration,
}

impl FreshteamConfig {
    /// Validates the subdomain (and the optional API root) and applies defaults.
    pub fn new(
        subdomain: &str,
        base_url: Option<&str>,
        api_key: SecretString,
    ) -> Result<Self, SourceError> {
        validate_subdomain(subdomain).map_err(SourceError::Config)?;
        let (api_root, host) = match base_url {
            Some(b) => {
                let url = Url::parse(b.trim_end_matches('/'))
                    .map_err(|e| SourceError::Config(format!("baseUrl '{b}' is not a URL: {e}")))?;
                let host = url.host_str().unwrap_or("").to_string();
                (url, host)
            }
            None => {
                let host = format!("{subdomain}.freshteam.com");
                (
                    Url::parse(&format!("https://{host}/api"))
                        .expect("valid label makes a valid URL"),
                    host,
                )
            }
        };
        Ok(FreshteamConfig {
            api_root,
            host,
            api_key,
            concurrency: 4,
            request_timeout: Duration::from_secs(30),
            max_attempts: 6,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            max_throttle_wait: Duration::from_secs(15 * 60),
        })
    }
}

/// The Freshteam API client.
pub struct FreshteamClient {
    #[allow(dead_code)]
    config: FreshteamConfig,
}

impl FreshteamClient {
    pub fn new(config: FreshteamConfig) -> Result<Self, SourceError> {
        Ok(FreshteamClient { config })
    }
}

#[async_trait]
impl EmployeeSource for FreshteamClient {
    async fn authorize(&self) -> Result<AccountInfo, SourceError> {
        todo!("Freshteam client")
    }
    async fn fetch(
        &self,
        _request: &SourceRequest,
        _progress: &dyn ProgressSink,
    ) -> Result<SourceSnapshot, SourceError> {
        todo!("Freshteam client")
    }
}
