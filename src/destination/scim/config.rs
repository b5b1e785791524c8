//! How the client is set up: the operator's [`ScimConfig`] and what the service
//! announces it supports ([`Capabilities`]).

use std::time::Duration;

use url::Url;

use super::model::WireServiceProviderConfig;
use crate::destination::DestinationError;
use crate::egress::Egress;
use crate::http_policy::{self, Pace};
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
    /// Requests in flight at once (list pages, writes, bulk requests together).
    pub concurrency: usize,
    pub request_timeout: Duration,
    pub bulk: BulkMode,
    /// Users asked for per list page; the service's `filter.maxResults` and 1000 cap it.
    pub page_size: usize,
    /// Attempts per request for 5xx, timeouts and connection errors (a 429 uses none:
    /// it waits for the budget).
    pub max_attempts: u32,
    /// Requests per window for each endpoint of the service, from the first request
    /// (`spec.destination.scim.rateLimit`, else the operator's default); what the
    /// service's rate-limit headers say paces on top.
    pub rate_limit: Option<Pace>,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Redirects, addresses and body sizes (see `egress.rs`).
    pub egress: Egress,
    /// A list longer than this many users, or than `max_list_pages` requests, stops the
    /// run with an error (a service whose list never ends).
    pub max_listed_users: usize,
    pub max_list_pages: usize,
    /// Targets of `spec.mapping.attributes[]` (interned, see
    /// [`crate::member::target::intern`]): read from every User and written when mapped.
    pub extras: &'static [&'static str],
}

impl ScimConfig {
    pub fn new(url: &str, token: SecretString) -> Result<Self, DestinationError> {
        let base_url = Url::parse(url.trim_end_matches('/'))
            .map_err(|e| DestinationError::Config(format!("'{url}' is not a URL: {e}")))?;
        check_scheme(&base_url)?;
        Ok(ScimConfig {
            base_url,
            token,
            concurrency: 8,
            request_timeout: Duration::from_secs(30),
            bulk: BulkMode::Auto,
            page_size: MAX_PAGE,
            max_attempts: http_policy::FAILURE_ATTEMPTS,
            rate_limit: None,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            egress: Egress::default(),
            max_listed_users: MAX_LISTED_USERS,
            max_list_pages: MAX_LIST_PAGES,
            extras: &[],
        })
    }
}

pub(super) fn check_scheme(url: &Url) -> Result<(), DestinationError> {
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(()),
        _ => Err(DestinationError::Config(format!(
            "'{url}' is not an http(s) URL"
        ))),
    }
}

/// Largest list page the client asks for, whatever the service allows: bounds the
/// memory of one response.
pub(super) const MAX_PAGE: usize = 1000;
/// Most users one list reads, and most list requests: a service whose list never ends
/// (or ignores `startIndex`) stops the run with an error at these. A `totalResults`
/// above `MAX_LISTED_USERS` stops the run at the first page. 50,000 requests read
/// 2,000,000 members at 40 or more a page (Reward Gateway pages 100); a list that
/// announces its total is held to fewer still (see `list.rs`).
pub(crate) const MAX_LISTED_USERS: usize = 2_000_000;
pub(crate) const MAX_LIST_PAGES: usize = 50_000;
/// Most users a list without `totalResults` reads (RFC 7644 requires the total: a
/// legitimate list of 2,000,000 announces it). Such a list ends at its first short page;
/// one that never does is stopped here, its accounts held in about 80 MB.
pub(crate) const MAX_LISTED_WITHOUT_TOTAL: usize = 200_000;

/// `/Bulk` limits the service announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkLimits {
    pub max_operations: usize,
    /// Bytes of one request body.
    pub max_payload_size: usize,
}

/// What the service supports, from `/ServiceProviderConfig`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub patch: bool,
    /// `None`: no `/Bulk`.
    pub bulk: Option<BulkLimits>,
    pub filter: bool,
    /// `filter.maxResults`: the most resources one list page returns.
    pub filter_max_results: Option<usize>,
    pub etag: bool,
}

impl Capabilities {
    /// What is assumed of a service that publishes no configuration: nothing optional
    /// (PUT for updates, no bulk, no If-Match).
    pub fn minimal() -> Self {
        Capabilities {
            patch: false,
            bulk: None,
            filter: false,
            filter_max_results: None,
            etag: false,
        }
    }

    pub(super) fn from_wire(spc: WireServiceProviderConfig) -> Self {
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let bulk = spc.bulk.filter(|b| b.supported).and_then(|b| {
            let max_operations = to_usize(b.max_operations.unwrap_or(0));
            // A service that announces bulk but no limits gets a conservative default.
            let max_payload_size = to_usize(b.max_payload_size.unwrap_or(1 << 20));
            (max_operations > 0 && max_payload_size > 0).then_some(BulkLimits {
                max_operations,
                max_payload_size,
            })
        });
        let filter = spc.filter.unwrap_or_default();
        Capabilities {
            patch: spc.patch.is_some_and(|p| p.supported),
            bulk,
            filter: filter.supported,
            filter_max_results: filter.max_results.filter(|n| *n > 0).map(to_usize),
            etag: spc.etag.is_some_and(|e| e.supported),
        }
    }
}
