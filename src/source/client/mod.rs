//! HTTP client for the Freshteam API (the facts it relies on: `docs/freshteam-api.md`;
//! the requests a run makes: `docs/freshteam-requests.md`).
//!
//! - Employees: one pass per [`Population`], each with its own explicit filter (the
//!   unfiltered list is documented as current staff only, so leavers must be asked
//!   for), all passes at once within the shared rate limiter. Per pass: page 1, then
//!   the `link` header's `rel="next"`; when page 1 announces `total-pages`, the other
//!   pages go out concurrently with `page` set on the next link, and the chain is still
//!   followed past the last one. Records are projected to the requested fields as each
//!   page is parsed, deduplicated by id, and a record seen in several passes belongs to
//!   the strongest population (deleted > terminated > inactive > draft > active). A
//!   record's own `status` / `terminated` / `deleted` / `draft` fields win over a
//!   pass that they contradict (a server that ignores a filter).
//! - An incremental read ([`SourceRequest::updated_since`]) adds
//!   `updated_since=<YYYY-MM-DD>` to every pass; nothing else changes, so the same
//!   populations are read, only fewer of them. The people the changed employees name
//!   ([`SourceRequest::people`]: their managers when the manager is mapped) who did not
//!   change are read by detail, one call each, so that the records can name them
//!   ([`RecordSink::referenced`]).
//! - Details (`/employees/{id}`) only when the request needs them; lookups one call each.
//! - Every request passes the account's budget (`crate::http_policy`); 5xx, timeouts, connection
//!   errors and unreadable 2xx bodies are retried with jittered backoff, 429s wait
//!   without using up attempts.
//! - The API key is trimmed and only ever sent as a header to the configured origin;
//!   text from outside is scrubbed of it before it reaches an error or a log line.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::{stream, StreamExt, TryStreamExt};
use http::header::{HeaderMap, HeaderValue, ACCEPT, LOCATION};
use http::StatusCode;
use serde_json::Value;
use tracing::debug;
use url::Url;

use super::link::{check_next, next_link, MAX_LIST_PAGES};
use super::project::{lookup_field, lookup_names, project, record_id, PackedValues};
use super::{
    validate_subdomain, AccountInfo, EmployeeRecord, EmployeeSource, LookupFields, LookupKind,
    Population, RecordSink, SourceError, SourceRequest, SourceSnapshot, SourceStats,
};
use crate::egress::{self, Egress};
use crate::http_policy::{self as retry, Budget, RateHeaders};
use crate::progress::{NoProgress, ProgressSink};
use crate::secret::{truncate_chars, SecretString};

mod merge;
mod named;
mod paging;
mod request;

use merge::*;
#[cfg(test)]
use paging::{page_number, with_page};
use request::*;

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
    /// Redirects, addresses and body sizes (see `egress.rs`).
    pub egress: Egress,
}

impl FreshteamConfig {
    /// Validates the subdomain (and the optional API root) and applies defaults.
    pub fn new(
        subdomain: &str,
        base_url: Option<&str>,
        api_key: SecretString,
    ) -> Result<Self, SourceError> {
        validate_subdomain(subdomain).map_err(|e| SourceError::Config(e.to_string()))?;
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
            egress: Egress::default(),
        })
    }
}

/// One Freshteam account's rate limiter, to share between the clients of several
/// integrations on that account.
#[derive(Clone)]
pub struct AccountLimiter(Arc<Budget>);

impl AccountLimiter {
    /// `concurrency`: requests in flight at once across all the account's clients.
    pub fn new(concurrency: usize) -> Self {
        AccountLimiter(Arc::new(Budget::new(concurrency)))
    }
}

/// The Freshteam API client. One per account: its rate limiter is shared by every
/// request it makes, including concurrent runs.
pub struct FreshteamClient {
    config: FreshteamConfig,
    http: reqwest::Client,
    limiter: Arc<Budget>,
}

impl FreshteamClient {
    /// A client that shares `account`'s rate limiter with every other client of the
    /// same Freshteam account, so that integrations on one account share its quota.
    pub fn with_account(
        config: FreshteamConfig,
        account: &AccountLimiter,
    ) -> Result<Self, SourceError> {
        let mut client = Self::new(config)?;
        client.limiter = account.0.clone();
        Ok(client)
    }

    pub fn new(config: FreshteamConfig) -> Result<Self, SourceError> {
        let root = &config.api_root;
        if root.cannot_be_a_base() || !matches!(root.scheme(), "http" | "https") {
            return Err(SourceError::Config(format!(
                "the Freshteam API root '{root}' must be an http(s) URL such as https://acme.freshteam.com/api"
            )));
        }
        if config.api_key.expose().trim().is_empty() {
            return Err(SourceError::Config(
                "the Freshteam API key is empty: put the key from Settings → API Settings into the Secret".into(),
            ));
        }
        if HeaderValue::from_str(&format!("Bearer {}", config.api_key.expose().trim())).is_err() {
            return Err(SourceError::Config(
                "the Freshteam API key contains characters that cannot go into an HTTP header (a line break inside it, or non-ASCII text): copy the key into the Secret again".into(),
            ));
        }
        if config.request_timeout.is_zero() {
            return Err(SourceError::Config(
                "the Freshteam request timeout must be longer than zero".into(),
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        config
            .egress
            .check_url(root)
            .map_err(|r| SourceError::Config(format!("baseUrl: {r}")))?;
        let http = config
            .egress
            .client_builder()
            .use_rustls_tls()
            .default_headers(headers)
            .user_agent(concat!("freshteam-operator/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| SourceError::Config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(FreshteamClient {
            limiter: Arc::new(Budget::new(config.concurrency)),
            config,
            http,
        })
    }

    fn concurrency(&self) -> usize {
        self.config.concurrency.max(1)
    }

    /// `{api_root}/{segments…}`.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.config.api_root.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .expect("checked in new: the API root can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    fn first_page(&self) -> Url {
        self.first_page_of(&[], None)
    }

    /// Page 1 of the list with `filter` (e.g. `deleted=true`), and only employees
    /// changed since the date `since` when given.
    fn first_page_of(&self, filter: &[(&str, &str)], since: Option<&str>) -> Url {
        let mut url = self.endpoint(&["employees"]);
        {
            let mut query = url.query_pairs_mut();
            for (k, v) in filter {
                query.append_pair(k, v);
            }
            if let Some(date) = since {
                query.append_pair("updated_since", date);
            }
            query.append_pair("page", "1");
        }
        url
    }

    /// Replaces the API key in text that came from outside (an error body, a library
    /// message) in case anything echoes it back.
    fn redact(&self, text: &str) -> String {
        self.config.api_key.scrub(text)
    }
}

#[async_trait]
impl EmployeeSource for FreshteamClient {
    async fn authorize(&self) -> Result<AccountInfo, SourceError> {
        let tally = ReadTally::default();
        let page1 = self
            .get(&tally, &self.first_page(), Call::List(Population::Active))
            .await?;
        let employees = match page1.total_objects {
            Some(total) => total,
            // No count announced: count by reading the ids.
            None => {
                let mut records = Records::new();
                self.list_pass(
                    &tally,
                    Pass::Unfiltered,
                    None,
                    &[],
                    &NoProgress,
                    &mut records,
                )
                .await?;
                records.len() as u64
            }
        };
        Ok(AccountInfo {
            host: self.config.host.clone(),
            employees,
        })
    }

    async fn fetch(
        &self,
        request: &SourceRequest,
        progress: &dyn ProgressSink,
    ) -> Result<SourceSnapshot, SourceError> {
        let mut snapshot = SourceSnapshot::default();
        snapshot.stats = self.fetch_each(request, progress, &mut snapshot).await?;
        Ok(snapshot)
    }

    async fn fetch_each(
        &self,
        request: &SourceRequest,
        progress: &dyn ProgressSink,
        sink: &mut dyn RecordSink,
    ) -> Result<SourceStats, SourceError> {
        let tally = ReadTally::default();
        let employees = async {
            let records = self.read_employees(&tally, request, progress).await?;
            let people = match request.updated_since {
                Some(_) => self.people_of(&tally, request, progress, &records).await?,
                None => Records::new(),
            };
            Ok((records, people))
        };
        self.with_lookups(&tally, request, employees, sink).await
    }

    async fn fetch_named(
        &self,
        ids: &[String],
        request: &SourceRequest,
        progress: &dyn ProgressSink,
        sink: &mut dyn RecordSink,
    ) -> Result<SourceStats, SourceError> {
        let tally = ReadTally::default();
        let employees = self.read_named(&tally, ids, request, progress);
        self.with_lookups(&tally, request, employees, sink).await
    }
}

impl FreshteamClient {
    /// Reads the request's lookups while `employees` reads the records, then hands both
    /// to `sink`.
    async fn with_lookups(
        &self,
        tally: &ReadTally,
        request: &SourceRequest,
        employees: impl std::future::Future<Output = Result<(Records, Records), SourceError>>,
        sink: &mut dyn RecordSink,
    ) -> Result<SourceStats, SourceError> {
        let ((records, people), lookups) = tokio::try_join!(
            employees,
            self.read_lookups(tally, &request.lookups, &request.lookup_fields)
        )?;
        deliver(records, people, lookups, sink);
        Ok(tally.stats())
    }
}

/// Hands a read's lookups to `sink`, then the people read only to name them, then its
/// records, unpacked one at a time: the records are never all held as plain values.
fn deliver(
    records: Records,
    people: Records,
    (names, fields): (
        HashMap<LookupKind, HashMap<i64, String>>,
        super::LookupFields,
    ),
    sink: &mut dyn RecordSink,
) {
    sink.lookups(names);
    sink.lookup_fields(fields);
    for found in people.into_iter().map(employee) {
        sink.referenced(found);
    }
    for found in records.into_iter().map(employee) {
        sink.record(found);
    }
}

/// [`EmployeeSource::fetch`] is [`EmployeeSource::fetch_each`] into a snapshot: one read path.
impl RecordSink for SourceSnapshot {
    fn lookups(&mut self, lookups: HashMap<LookupKind, HashMap<i64, String>>) {
        self.lookups = lookups;
    }

    fn lookup_fields(&mut self, fields: super::LookupFields) {
        self.lookup_fields = fields;
    }

    fn record(&mut self, record: EmployeeRecord) {
        self.employees.push(record);
    }
}

#[cfg(test)]
mod tests;
