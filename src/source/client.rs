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
//!   populations are read, only fewer of them.
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
use super::project::{lookup_names, project, record_id, PackedValues};
use super::{
    validate_subdomain, AccountInfo, EmployeeRecord, EmployeeSource, LookupKind, Population,
    RecordSink, SourceError, SourceRequest, SourceSnapshot, SourceStats,
};
use crate::egress::{self, Egress};
use crate::http_policy::{self as retry, Budget, RateHeaders};
use crate::progress::{NoProgress, ProgressSink};
use crate::secret::{truncate_chars, SecretString};

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

/// What kind of call a request is, for the read's tally.
#[derive(Clone, Copy, Debug)]
enum Call {
    List(Population),
    Detail,
    Lookup,
}

/// The request counts and 429 waiting time of one read (`fetch` or `authorize`).
#[derive(Default)]
struct ReadTally {
    list: AtomicU32,
    list_by_population: [AtomicU32; 5],
    detail: AtomicU32,
    lookup: AtomicU32,
    throttled: AtomicU32,
    retries: AtomicU32,
    throttle_wait: Mutex<Duration>,
}

impl ReadTally {
    fn sent(&self, call: Call) {
        let counter = match call {
            Call::List(population) => {
                let i = Population::ALL
                    .iter()
                    .position(|p| *p == population)
                    .expect("every population is in ALL");
                self.list_by_population[i].fetch_add(1, Ordering::Relaxed);
                &self.list
            }
            Call::Detail => &self.detail,
            Call::Lookup => &self.lookup,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn stats(&self) -> SourceStats {
        SourceStats {
            list_requests: self.list.load(Ordering::Relaxed),
            list_by_population: std::array::from_fn(|i| {
                self.list_by_population[i].load(Ordering::Relaxed)
            }),
            detail_requests: self.detail.load(Ordering::Relaxed),
            lookup_requests: self.lookup.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

/// A parsed 2xx answer.
struct Response {
    body: Value,
    total_objects: Option<u64>,
    total_pages: Option<u64>,
    /// `rel="next"`, already moved onto the configured origin.
    next: Option<Url>,
}

/// Why an attempt failed in a way worth retrying.
enum Problem {
    Connect(String),
    Other(String),
    /// Not worth retrying (a body over the size cap).
    Fatal(SourceError),
}

impl Problem {
    fn detail(&self) -> String {
        match self {
            Problem::Connect(d) | Problem::Other(d) => d.clone(),
            Problem::Fatal(e) => e.to_string(),
        }
    }
}

enum Attempt {
    Done(Response),
    Throttled,
    Retry(Problem),
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

    /// GET with retries and rate limiting; 2xx bodies come back parsed.
    async fn get(&self, tally: &ReadTally, url: &Url, call: Call) -> Result<Response, SourceError> {
        let path = shown_path(url);
        let attempts = self.config.max_attempts.max(1);
        let mut failures = 0u32;
        loop {
            match self.attempt(tally, url, &path, call, failures + 1).await? {
                Attempt::Done(response) => return Ok(response),
                Attempt::Throttled => {}
                Attempt::Retry(problem) => {
                    failures += 1;
                    if failures >= attempts {
                        return Err(match problem {
                            Problem::Connect(detail) => SourceError::Unreachable {
                                host: self.config.host.clone(),
                                detail: format!(
                                    "{detail} ({attempts} attempts); check the subdomain (and baseUrl, if set) and that the cluster can reach it"
                                ),
                            },
                            Problem::Other(detail) => SourceError::RetriesExhausted {
                                path,
                                attempts,
                                detail,
                            },
                            Problem::Fatal(e) => e,
                        });
                    }
                    tally.retries.fetch_add(1, Ordering::Relaxed);
                    let wait =
                        retry::backoff(self.config.backoff_base, self.config.backoff_max, failures);
                    debug!(
                        path = %path,
                        attempt = failures,
                        wait_ms = wait.as_millis() as u64,
                        problem = %problem.detail(),
                        "Freshteam request failed, retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One attempt: waits for the rate limiter, sends, reads. The limiter slot is held
    /// until the body is read and released before any backoff.
    async fn attempt(
        &self,
        tally: &ReadTally,
        url: &Url,
        path: &str,
        call: Call,
        attempt: u32,
    ) -> Result<Attempt, SourceError> {
        let permit = self.limiter.acquire().await;
        tally.sent(call);
        debug!(path = %path, attempt, "Freshteam request");
        let sent = self
            .http
            .get(url.clone())
            .bearer_auth(self.config.api_key.expose().trim())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return self.transport_problem(&e).map(Attempt::Retry),
        };
        let status = response.status();
        let rate = RateHeaders::parse(response.headers());
        debug!(
            path = %path,
            status = status.as_u16(),
            attempt,
            ratelimit_total = rate.total,
            ratelimit_remaining = rate.remaining,
            "Freshteam response"
        );

        let verdict = retry::classify(status.as_u16());
        if verdict == retry::Verdict::Throttled {
            let retry_after = retry::retry_after(response.headers(), SystemTime::now());
            drop(response);
            let added = permit.throttled_with(retry::Hint::of(retry_after, rate.reset));
            tally.throttled.fetch_add(1, Ordering::Relaxed);
            debug!(
                path = %path,
                retry_after_s = retry_after.map(|d| d.as_secs()),
                added_wait_ms = added.as_millis() as u64,
                "Freshteam rate limit reached, waiting"
            );
            self.charge_throttle(tally, added, retry_after)?;
            return Ok(Attempt::Throttled);
        }
        permit.observe(rate);

        if status.is_success() {
            return match self.read(response).await {
                Ok(r) => Ok(Attempt::Done(r)),
                Err(Problem::Fatal(e)) => Err(e),
                Err(p) => Ok(Attempt::Retry(p)),
            };
        }
        if verdict == retry::Verdict::Retry {
            let detail = self.error_detail(response).await;
            return Ok(Attempt::Retry(Problem::Other(format!(
                "HTTP {status}{detail}"
            ))));
        }
        Err(self.rejection(status, path, response).await)
    }

    /// Counts a 429 wait against the read's budget; past it the run stops rather than
    /// wait indefinitely.
    fn charge_throttle(
        &self,
        tally: &ReadTally,
        added: Duration,
        retry_after: Option<Duration>,
    ) -> Result<(), SourceError> {
        let mut waited = tally.throttle_wait.lock().expect("throttle budget lock");
        *waited += added;
        if *waited <= self.config.max_throttle_wait {
            return Ok(());
        }
        let detail = match retry_after {
            Some(d) if d >= retry::MAX_RETRY_AFTER => {
                "it asked to wait a day or more before the next call".to_string()
            }
            Some(d) if d > self.config.max_throttle_wait => {
                format!("it asked to wait {}s before the next call", d.as_secs())
            }
            _ => format!(
                "{} throttled calls; {}s of waiting needed so far",
                tally.throttled.load(Ordering::Relaxed),
                waited.as_secs()
            ),
        };
        Err(SourceError::RateLimited {
            host: self.config.host.clone(),
            limit_secs: self.config.max_throttle_wait.as_secs(),
            detail,
        })
    }

    fn transport_problem(&self, e: &reqwest::Error) -> Result<Problem, SourceError> {
        if let Some(refused) = egress::refusal(e) {
            return Err(SourceError::Unreachable {
                host: self.config.host.clone(),
                detail: refused.to_string(),
            });
        }
        if e.is_builder() {
            return Err(SourceError::Config(format!(
                "cannot build a request to Freshteam: {}",
                self.redact(&error_chain(e))
            )));
        }
        Ok(if e.is_timeout() {
            Problem::Other(format!(
                "no answer within {:?} (request timeout)",
                self.config.request_timeout
            ))
        } else if e.is_connect() {
            Problem::Connect(self.redact(&error_chain(e)))
        } else {
            Problem::Other(self.redact(&error_chain(e)))
        })
    }

    /// Reads and parses a 2xx body. A body cut short or not JSON is worth retrying: it
    /// is what a dropped connection or an overloaded proxy looks like.
    async fn read(&self, response: reqwest::Response) -> Result<Response, Problem> {
        let url = response.url().clone();
        let headers = response.headers();
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let total_objects = number("total-objects");
        let total_pages = number("total-pages");
        let next = next_link(headers, &url).map(|n| self.onto_our_origin(n, &url));
        let limit = self.config.egress.max_body_bytes;
        let bytes = egress::read_body(response, limit).await.map_err(|e| {
            let e = match e {
                egress::BodyError::TooLarge { .. } => {
                    return Problem::Fatal(SourceError::BadResponse {
                        path: shown_path(&url),
                        detail: e.describe(),
                    })
                }
                egress::BodyError::Read(e) => e,
            };
            Problem::Other(if e.is_timeout() {
                format!(
                    "no complete answer within {:?} (request timeout)",
                    self.config.request_timeout
                )
            } else {
                format!(
                    "the answer was cut short: {}",
                    self.redact(&error_chain(&e))
                )
            })
        })?;
        let body = serde_json::from_slice(&bytes).map_err(|e| {
            Problem::Other(format!(
                "the answer is not valid JSON ({} bytes): {e}",
                bytes.len()
            ))
        })?;
        Ok(Response {
            body,
            total_objects,
            total_pages,
            next,
        })
    }

    /// The API key only ever goes to the configured origin. A `next` link naming
    /// another one (a proxy that doesn't rewrite links, http behind TLS termination)
    /// is read as "the same resource, with this query".
    fn onto_our_origin(&self, next: Url, request_url: &Url) -> Url {
        if next.origin() == self.config.api_root.origin() {
            return next;
        }
        let mut rebased = request_url.clone();
        rebased.set_query(next.query());
        debug!(
            link_host = next.host_str().unwrap_or(""),
            "next link names another origin; keeping the configured one"
        );
        rebased
    }

    /// `: code: message` from a Freshteam error body, or nothing.
    async fn error_detail(&self, response: reqwest::Response) -> String {
        let limit = self.config.egress.max_body_bytes.min(64 << 10);
        let body = egress::read_body(response, limit).await.unwrap_or_default();
        let text = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| describe_errors(&v))
            .unwrap_or_default();
        if text.is_empty() {
            text
        } else {
            // Redacted before it is cut short, so no part of the key survives the cut.
            format!(": {}", truncate_chars(&self.redact(&text), 500))
        }
    }

    async fn rejection(
        &self,
        status: StatusCode,
        path: &str,
        response: reqwest::Response,
    ) -> SourceError {
        let host = self.config.host.clone();
        if status.is_redirection() {
            let to = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| response.url().join(l).ok())
                .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")))
                .unwrap_or_else(|| "another address".into());
            return SourceError::Rejected {
                host: host.clone(),
                path: path.to_string(),
                status: status.as_u16(),
                detail: format!(
                    "it redirects to {to}, and the API key is only sent to {host}; point baseUrl at the address the API answers on"
                ),
            };
        }
        let detail = self.error_detail(response).await;
        debug!(path = %path, status = status.as_u16(), detail = %detail, "Freshteam refused the request");
        match status {
            StatusCode::UNAUTHORIZED => SourceError::InvalidCredentials { host },
            StatusCode::FORBIDDEN => SourceError::Forbidden { host },
            StatusCode::NOT_FOUND => SourceError::UnknownAccount {
                host,
                path: path.to_string(),
            },
            _ => SourceError::Rejected {
                host,
                path: path.to_string(),
                status: status.as_u16(),
                detail: match detail.strip_prefix(": ") {
                    Some(d) => d.to_string(),
                    None => status
                        .canonical_reason()
                        .unwrap_or("no explanation given")
                        .to_string(),
                },
            },
        }
    }

    /// Reads every list page of one population into `records` (deduplicated by id),
    /// only those changed since the date `since` when given. Returns the last
    /// `total-objects` the server sent.
    async fn list_pass(
        &self,
        tally: &ReadTally,
        pass: Pass,
        since: Option<&str>,
        fields: &[String],
        progress: &dyn ProgressSink,
        records: &mut Records,
    ) -> Result<Option<u64>, SourceError> {
        let first = match pass {
            Pass::Unfiltered => self.first_page(),
            Pass::Population(p) => self.first_page_of(p.filter(), since),
        };
        let call = Call::List(pass.population());
        let merge = |url: &Url, body: Value, records: &mut Records| {
            merge_page(url, body, fields, pass.population(), records)
        };
        let page1 = self.get(tally, &first, call).await?;
        let mut total_objects = page1.total_objects;
        if let (Some(t), Population::Active) = (total_objects, pass.population()) {
            progress.set_total(t);
        }
        let total_pages = page1.total_pages;
        let mut visited = HashSet::from([first.clone()]);
        merge(&first, page1.body, records)?;
        let mut done = 1u64;
        let mut next = page1.next;
        let what = pass.describe();
        let report = |done: u64| {
            let every = total_pages.map_or(10, |t| t.div_ceil(10).max(1));
            if done == 1 || done.is_multiple_of(every) || Some(done) == total_pages {
                progress.phase(&match total_pages {
                    Some(t) => format!("Reading Freshteam {what} (page {done} of {t})"),
                    None => format!("Reading Freshteam {what} (page {done})"),
                });
            }
        };
        report(done);

        // With the page count known, the pages after the first are fetched at once by
        // setting `page` on the next link; the link chain takes over after the last.
        // Only when the link really numbers pages from 1 and the count is plausible
        // (no more pages than records): otherwise the chain is the safer guide.
        if let (Some(pages), Some(template)) = (total_pages, next.clone()) {
            let plausible = pages
                <= total_objects
                    .map_or(100_000, |t| t.max(1))
                    .min(MAX_LIST_PAGES);
            if pages > 2 && plausible && page_number(&template) == Some(2) {
                let mut fetched = stream::iter(2..=pages)
                    .map(|page| {
                        let url = with_page(&template, page);
                        async move {
                            let response = self.get(tally, &url, call).await;
                            (page, url, response)
                        }
                    })
                    .buffer_unordered(self.concurrency());
                next = None;
                while let Some((page, url, response)) = fetched.next().await {
                    let response = response?;
                    total_objects = response.total_objects.or(total_objects);
                    merge(&url, response.body, records)?;
                    visited.insert(url);
                    if page == pages {
                        next = response.next;
                    }
                    done += 1;
                    report(done);
                }
            }
        }

        while let Some(url) = next.take() {
            check_next(&mut visited, done, &url).map_err(|e| SourceError::BadResponse {
                path: shown_path(&url),
                detail: e.to_string(),
            })?;
            let response = self.get(tally, &url, call).await?;
            total_objects = response.total_objects.or(total_objects);
            let count = merge(&url, response.body, records)?;
            done += 1;
            report(done);
            // An empty page ends the list even if it links on: nothing suggests more.
            if count > 0 {
                next = response.next;
            }
        }
        Ok(total_objects)
    }

    /// One population, read whole: re-read once when fewer records arrived than
    /// announced.
    async fn read_population(
        &self,
        tally: &ReadTally,
        population: Population,
        since: Option<&str>,
        fields: &[String],
        progress: &dyn ProgressSink,
    ) -> Result<Records, SourceError> {
        let pass = Pass::Population(population);
        let mut records = Records::new();
        let total = self
            .list_pass(tally, pass, since, fields, progress, &mut records)
            .await?;
        // Fewer records than announced: pages shifted under a deletion while they were
        // read, and someone may have been skipped. A missed employee would look like a
        // leaver, so the list is read once more (records merge by id).
        if let Some(total) = total.filter(|t| (records.len() as u64) < *t) {
            debug!(
                population = population.name(),
                announced = total,
                read = records.len(),
                "fewer employees than announced, reading the list again"
            );
            let total = self
                .list_pass(tally, pass, since, fields, progress, &mut records)
                .await?;
            if let Some(total) = total.filter(|t| (records.len() as u64) < *t) {
                progress.warn(&format!(
                    "Freshteam announced {total} {} but listed {}; the directory may have changed during the run",
                    pass.describe(),
                    records.len()
                ));
            }
        }
        let ignored = records.values().filter(|r| r.contradicted).count();
        if ignored > 0 {
            progress.warn(&format!(
                "{ignored} record(s) listed under {} say otherwise in their own fields: Freshteam seems to ignore that filter; each record's own status, terminated, deleted and draft fields were used",
                filter_text(population.filter())
            ));
        }
        Ok(records)
    }

    async fn read_employees(
        &self,
        tally: &ReadTally,
        request: &SourceRequest,
        progress: &dyn ProgressSink,
    ) -> Result<Records, SourceError> {
        let fields = &request.fields;
        let since = request.updated_since_param();
        let since = since.as_deref();
        let passes = Population::ALL
            .map(|population| self.read_population(tally, population, since, fields, progress));
        let mut records = Records::new();
        for pass in futures::future::try_join_all(passes).await? {
            for (id, found) in pass {
                match records.get_mut(&id) {
                    Some(have) if have.population >= found.population => {}
                    Some(have) => *have = found,
                    None => {
                        records.insert(id, found);
                    }
                }
            }
        }
        if request.needs_detail {
            self.read_details(tally, fields, progress, &mut records)
                .await?;
        }
        Ok(records)
    }

    /// `GET /employees/{id}` for every record; a detail value wins over the list's,
    /// the list's stays where the detail has none.
    async fn read_details(
        &self,
        tally: &ReadTally,
        fields: &[String],
        progress: &dyn ProgressSink,
        records: &mut Records,
    ) -> Result<(), SourceError> {
        // Drafts are never provisioned: their details are not needed.
        let ids: Vec<i64> = records
            .iter()
            .filter(|(_, r)| r.population != Population::Draft)
            .map(|(id, _)| *id)
            .collect();
        let total = ids.len();
        let every = total.div_ceil(10).max(1);
        progress.phase(&format!(
            "Reading Freshteam employee details (0 of {total})"
        ));
        let mut details = stream::iter(ids)
            .map(|id| async move {
                let url = self.endpoint(&["employees", &id.to_string()]);
                match self.get(tally, &url, Call::Detail).await {
                    Ok(r) if r.body.is_object() => Ok((id, Some(project(&r.body, fields)))),
                    Ok(_) => Err(SourceError::BadResponse {
                        path: shown_path(&url),
                        detail: "expected one employee as a JSON object".into(),
                    }),
                    // Deleted since the list was read.
                    Err(SourceError::UnknownAccount { .. }) => Ok((id, None)),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(self.concurrency());
        let mut done = 0usize;
        let mut vanished = Vec::new();
        while let Some(detail) = details.next().await {
            let (id, values) = detail?;
            match values {
                Some(values) => {
                    let found = records.get_mut(&id).expect("ids come from records");
                    let mut slots = found.values.unpack();
                    for (slot, value) in slots.iter_mut().zip(values) {
                        if value.is_some() {
                            *slot = value;
                        }
                    }
                    found.values = PackedValues::new(&slots);
                }
                None => vanished.push(id),
            }
            done += 1;
            if done.is_multiple_of(every) || done == total {
                progress.phase(&format!(
                    "Reading Freshteam employee details ({done} of {total})"
                ));
            }
        }
        if !vanished.is_empty() {
            // Kept with their list fields: treating them as gone is the next run's call.
            vanished.sort_unstable();
            let shown: Vec<String> = vanished.iter().take(10).map(i64::to_string).collect();
            let more = if vanished.len() > 10 { ", …" } else { "" };
            progress.warn(&format!(
                "{} Freshteam employee(s) disappeared while the run read them (404 on their details; ids {}{more}); only the fields the list carries are used for them",
                vanished.len(),
                shown.join(", ")
            ));
        }
        Ok(())
    }

    async fn read_lookups(
        &self,
        tally: &ReadTally,
        kinds: &[LookupKind],
    ) -> Result<HashMap<LookupKind, HashMap<i64, String>>, SourceError> {
        let kinds: BTreeSet<LookupKind> = kinds.iter().copied().collect();
        stream::iter(kinds)
            .map(|kind| async move {
                let url = self.endpoint(&[kind.path()]);
                let response = self.get(tally, &url, Call::Lookup).await?;
                let names =
                    lookup_names(&response.body).ok_or_else(|| SourceError::BadResponse {
                        path: shown_path(&url),
                        detail: "expected a JSON array of {id, name} objects".into(),
                    })?;
                Ok((kind, names))
            })
            .buffer_unordered(self.concurrency())
            .try_collect()
            .await
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
        let (records, lookups) = tokio::try_join!(
            self.read_employees(&tally, request, progress),
            self.read_lookups(&tally, &request.lookups)
        )?;
        sink.lookups(lookups);
        // Unpacked one at a time: the records are never all held as plain values.
        for found in records.into_iter().map(employee) {
            sink.record(found);
        }
        Ok(tally.stats())
    }
}

/// [`EmployeeSource::fetch`] is [`EmployeeSource::fetch_each`] into a snapshot: one read path.
impl RecordSink for SourceSnapshot {
    fn lookups(&mut self, lookups: HashMap<LookupKind, HashMap<i64, String>>) {
        self.lookups = lookups;
    }

    fn record(&mut self, record: EmployeeRecord) {
        self.employees.push(record);
    }
}

fn employee((id, found): (i64, Found)) -> EmployeeRecord {
    EmployeeRecord {
        id,
        values: found.values.unpack(),
        population: found.population,
    }
}

/// Records of a list read, by Freshteam id.
type Records = BTreeMap<i64, Found>;

/// One record as a pass found it.
struct Found {
    values: PackedValues,
    population: Population,
    /// The record's own fields contradict the pass's filter.
    contradicted: bool,
}

/// One list read: a population's filter, or the bare list (only to count employees).
#[derive(Clone, Copy)]
enum Pass {
    Unfiltered,
    Population(Population),
}

impl Pass {
    fn population(self) -> Population {
        match self {
            Pass::Unfiltered => Population::Active,
            Pass::Population(p) => p,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Pass::Unfiltered | Pass::Population(Population::Active) => "employees",
            Pass::Population(Population::Inactive) => "inactive employees",
            Pass::Population(Population::Terminated) => "terminated employees",
            Pass::Population(Population::Deleted) => "deleted employees",
            Pass::Population(Population::Draft) => "draft profiles",
        }
    }
}

fn filter_text(filter: &[(&str, &str)]) -> String {
    filter
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A boolean field of a raw record: JSON `true`/`false` or their text; `None` when
/// absent or anything else.
fn flag(record: &Value, field: &str) -> Option<bool> {
    match record.get(field)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The population a record's own fields put it in, when they say anything.
fn own_population(record: &Value) -> Population {
    let status = record
        .get("status")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase());
    if flag(record, "deleted") == Some(true) {
        Population::Deleted
    } else if flag(record, "terminated") == Some(true) {
        Population::Terminated
    } else if status.as_deref() == Some("inactive") {
        Population::Inactive
    } else if flag(record, "draft") == Some(true) {
        Population::Draft
    } else {
        Population::Active
    }
}

/// True when the record's own fields say it does not match the pass's filter.
fn contradicts(population: Population, record: &Value) -> bool {
    population.filter().iter().any(|(field, wanted)| {
        if *field == "status" {
            record
                .get("status")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.trim().eq_ignore_ascii_case(wanted))
        } else {
            flag(record, field).is_some_and(|b| b.to_string() != *wanted)
        }
    })
}

/// Projects one list page into `records`, keeping the first copy of a record seen
/// twice. Returns the number of records on the page.
fn merge_page(
    url: &Url,
    body: Value,
    fields: &[String],
    pass: Population,
    records: &mut Records,
) -> Result<usize, SourceError> {
    let Value::Array(items) = body else {
        return Err(SourceError::BadResponse {
            path: shown_path(url),
            detail: format!("expected a JSON array of employees, got {}", kind_of(&body)),
        });
    };
    let count = items.len();
    for item in items {
        // Skipping a record would make that employee look like a leaver: fail instead.
        let id = record_id(&item).ok_or_else(|| SourceError::BadResponse {
            path: shown_path(url),
            detail: "an employee record has no numeric id".into(),
        })?;
        records.entry(id).or_insert_with(|| {
            let contradicted = contradicts(pass, &item);
            let claimed = if contradicted {
                Population::Active
            } else {
                pass
            };
            Found {
                values: PackedValues::new(&project(&item, fields)),
                population: own_population(&item).max(claimed),
                contradicted: contradicted && pass != Population::Active,
            }
        });
    }
    Ok(count)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `code: message (field f)` for each entry of `{"errors": [...]}`, or a top-level
/// `code` / `message`.
fn describe_errors(body: &Value) -> Option<String> {
    let one = |e: &Value| {
        let s = |k: &str| e.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let mut out = match (s("code"), s("message")) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(x), None) | (None, Some(x)) => x.to_string(),
            (None, None) => return None,
        };
        if let Some(f) = s("field") {
            out.push_str(&format!(" (field {f})"));
        }
        Some(out)
    };
    let text = match body.get("errors") {
        Some(Value::Array(errors)) => errors.iter().filter_map(one).collect::<Vec<_>>().join("; "),
        _ => one(body).unwrap_or_default(),
    };
    (!text.is_empty()).then_some(text)
}

/// Path and query, for messages and logs (never carries the key: that is a header).
fn shown_path(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

fn page_number(url: &Url) -> Option<u64> {
    url.query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
}

/// `url` with its `page` parameter set to `page`, other parameters kept in place.
fn with_page(url: &Url, page: u64) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut out = url.clone();
    {
        let mut query = out.query_pairs_mut();
        query.clear();
        let mut set = false;
        for (k, v) in &pairs {
            if k == "page" {
                if !set {
                    query.append_pair("page", &page.to_string());
                    set = true;
                }
            } else {
                query.append_pair(k, v);
            }
        }
        if !set {
            query.append_pair("page", &page.to_string());
        }
    }
    out
}

/// What went wrong under a reqwest error: its own message names the URL, the causes
/// say what actually failed (DNS, refused, TLS, reset).
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests;
