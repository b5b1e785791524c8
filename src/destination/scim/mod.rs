//! SCIM 2.0 client (RFC 7643/7644).
//!
//! One client serves one run: [`ScimClient::connect`] learns what the service supports
//! from `/ServiceProviderConfig`, [`MemberDirectory::list_members`] reads every User once,
//! and [`MemberDirectory::apply`] writes through `/Bulk` when announced, else one request
//! per member, PATCH when supported, else GET + PUT. Every write carries `If-Match` when
//! the service does ETags; a stale version (412) is re-read, re-planned and retried once.

mod discovery;
mod lookup;
pub(crate) mod model;
mod pacer;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::{self, FuturesUnordered, StreamExt};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tracing::{debug, warn};
use url::Url;

use super::{
    DestinationError, DestinationMember, DestinationStats, MemberDirectory, MemberKeys, WriteOp,
    WriteOutcome,
};
use crate::egress::{self, BodyError, Egress};
use crate::member::replan_update;
use crate::member::{AttrSet, Change, Member};
use crate::secret::SecretString;
pub use discovery::{scim_name, Keeps};
use model::{
    BulkResponse, ListPage, PatchForm, ScimErrorBody, WireServiceProviderConfig, WireUser,
    BULK_REQUEST_SCHEMA,
};
use pacer::Pacer;

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
    /// Attempts per request for 5xx, 429, timeouts and connection errors.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Redirects, addresses and body sizes (see `egress.rs`).
    pub egress: Egress,
    /// A list longer than this many users, or than `max_list_pages` requests, stops the
    /// run with an error (a service whose list never ends).
    pub max_listed_users: usize,
    pub max_list_pages: usize,
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
            max_attempts: 4,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            egress: Egress::default(),
            max_listed_users: MAX_LISTED_USERS,
            max_list_pages: MAX_LIST_PAGES,
        })
    }
}

fn check_scheme(url: &Url) -> Result<(), DestinationError> {
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(()),
        _ => Err(DestinationError::Config(format!(
            "'{url}' is not an http(s) URL"
        ))),
    }
}

/// Largest list page the client asks for, whatever the service allows: bounds the
/// memory of one response.
const MAX_PAGE: usize = 1000;
/// Most users one list reads, and most list requests: a service whose list never ends
/// (or ignores `startIndex`) stops the run with an error at these.
pub const MAX_LISTED_USERS: usize = 2_000_000;
pub const MAX_LIST_PAGES: usize = 250_000;
/// Longest `Retry-After` honoured on a 429/503 before retrying anyway.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest server `detail` quoted in a message.
const MAX_DETAIL: usize = 400;

const DELETED_MESSAGE: &str = "member was deleted in the destination during the run";

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

    fn from_wire(spc: WireServiceProviderConfig) -> Self {
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

/// The SCIM client.
pub struct ScimClient {
    config: ScimConfig,
    http: reqwest::Client,
    caps: Capabilities,
    /// Bounds requests in flight across everything the client does at once.
    permits: Semaphore,
    reads: AtomicU32,
    writes: AtomicU32,
    bulk_requests: AtomicU32,
    bulk_operations: AtomicU32,
    /// What `/Schemas` and `/ResourceTypes` say the service keeps.
    keeps: Keeps,
    /// The update form that works with this service, learnt during the run: a
    /// [`WriteForm`] as u8; only ever moves to a simpler form.
    form: AtomicU8,
    /// 429 and 5xx answers seen (the list's pacer backs off on them).
    throttled: AtomicU32,
    /// What looking members up by key has learnt about the service's filters.
    lookup: lookup::LookupState,
}

/// How updates are sent, from the smallest change to the whole resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum WriteForm {
    ValuePaths = 0,
    WholeAttributes = 1,
    Put = 2,
}

impl WriteForm {
    fn from_u8(n: u8) -> Self {
        match n {
            0 => WriteForm::ValuePaths,
            1 => WriteForm::WholeAttributes,
            _ => WriteForm::Put,
        }
    }
    fn simpler(self) -> Self {
        Self::from_u8(self as u8 + 1)
    }
    fn patch(self) -> Option<PatchForm> {
        match self {
            WriteForm::ValuePaths => Some(PatchForm::ValuePaths),
            WriteForm::WholeAttributes => Some(PatchForm::WholeAttributes),
            WriteForm::Put => None,
        }
    }
}

/// What the client counts as one call, for [`DestinationStats`].
#[derive(Clone, Copy)]
enum CallKind {
    Read,
    Write,
    Bulk { operations: u32 },
}

/// A response, read whole.
struct Response {
    status: StatusCode,
    etag: Option<String>,
    location: Option<String>,
    body: Vec<u8>,
    /// More than one attempt was sent: an earlier one may have been applied.
    retried: bool,
}

impl Response {
    fn error(&self) -> ScimErrorBody {
        ScimErrorBody::parse(&self.body)
    }
}

/// An op's index and its serialized bulk operation.
type BulkItem = (usize, Vec<u8>);

/// One attempt at an update.
enum Step {
    Done,
    /// The service refused the form of the request (value paths, PATCH itself): try a
    /// simpler form; holds the refusal in case there is none.
    FormRefused(WriteOutcome),
    /// 412: the version went stale; holds the member when it was just read.
    Stale(Option<Box<DestinationMember>>),
    Finished(WriteOutcome),
}

/// An op a bulk response left for an individual request.
enum FollowUp {
    /// Send it again on its own; `maybe_applied` when an earlier try may have worked.
    Retry { maybe_applied: bool },
    /// 412 inside the bulk: re-read, re-plan, retry once.
    Stale,
}

fn failed(field: Option<&str>, message: impl Into<String>) -> WriteOutcome {
    WriteOutcome::Failed {
        field: field.map(str::to_string),
        message: message.into(),
    }
}

fn uniqueness_failure(email: &str) -> WriteOutcome {
    failed(
        Some("email"),
        format!("{email} is already used by another account in the destination (409 uniqueness)"),
    )
}

/// Whether an update gives the member a new e-mail (the only unique value it writes).
fn changes_email(changes: &[Change]) -> bool {
    changes
        .iter()
        .any(|c| matches!(c, Change::Set(crate::member::Attr::Email, _)))
}

fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After` (seconds or an HTTP-date), at most [`MAX_RETRY_AFTER`].
fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    crate::retry::retry_after(headers, std::time::SystemTime::now()).map(|d| d.min(MAX_RETRY_AFTER))
}

/// A transport error's root cause, without the noise of every layer.
fn describe_transport(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {}s", timeout.as_secs_f32());
    }
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    if e.is_connect() {
        format!("connection failed: {root}")
    } else {
        format!("request failed: {root}")
    }
}

impl ScimClient {
    /// Reads `/ServiceProviderConfig` to learn what the service supports, and checks the
    /// token with a one-user list (that config is public on many services).
    pub async fn connect(config: ScimConfig) -> Result<Self, DestinationError> {
        check_scheme(&config.base_url)?;
        config
            .egress
            .check_url(&config.base_url)
            .map_err(|r| DestinationError::Config(r.to_string()))?;
        let http = config
            .egress
            .client_builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("freshteam-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DestinationError::Config(format!("cannot build an HTTP client: {e}")))?;
        let mut client = ScimClient {
            permits: Semaphore::new(config.concurrency.max(1)),
            config,
            http,
            caps: Capabilities::minimal(),
            reads: AtomicU32::new(0),
            writes: AtomicU32::new(0),
            bulk_requests: AtomicU32::new(0),
            bulk_operations: AtomicU32::new(0),
            keeps: Keeps::everything(),
            form: AtomicU8::new(WriteForm::ValuePaths as u8),
            throttled: AtomicU32::new(0),
            lookup: lookup::LookupState::default(),
        };
        client.caps = client.read_capabilities().await?;
        debug!(capabilities = ?client.caps, "SCIM service provider config");
        client.fetch_page(1, 1).await?;
        client.keeps = client.read_keeps().await?;
        debug!(keeps = ?client.keeps, "SCIM schemas");
        client.reset_form();
        Ok(client)
    }

    /// Replaces what `/ServiceProviderConfig` announced, e.g. to exercise the PUT or the
    /// one-request-per-member paths against a service that supports more.
    pub fn with_capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self.reset_form();
        self
    }

    /// Replaces what discovery found the service keeps.
    pub fn with_keeps(mut self, keeps: Keeps) -> Self {
        self.keeps = keeps;
        self
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// What `/Schemas` and `/ResourceTypes` say the service keeps.
    pub fn keeps(&self) -> Keeps {
        self.keeps
    }

    fn reset_form(&self) {
        let form = if self.caps.patch {
            WriteForm::ValuePaths
        } else {
            WriteForm::Put
        };
        self.form.store(form as u8, Ordering::Relaxed);
    }

    fn current_form(&self) -> WriteForm {
        WriteForm::from_u8(self.form.load(Ordering::Relaxed))
    }

    /// A discovery document, or `None` when the service has none it will show (any
    /// refusal but a rejected token, or a body that is not one).
    async fn discover<T: serde::de::DeserializeOwned>(
        &self,
        segment: &str,
    ) -> Result<Option<Vec<T>>, DestinationError> {
        let url = self.url(&[segment]);
        let resp = self
            .send_checked(Method::GET, url.clone(), None, None, CallKind::Read)
            .await?;
        if matches!(resp.status.as_u16(), 401 | 403) {
            return Err(DestinationError::Unauthorized {
                url: self.service(),
                status: resp.status.as_u16(),
            });
        }
        if !resp.status.is_success() {
            debug!(%url, status = resp.status.as_u16(), "no discovery document");
            return Ok(None);
        }
        match serde_json::from_slice::<discovery::Listed<T>>(&resp.body) {
            Ok(listed) => Ok(Some(listed.into_vec())),
            Err(e) => {
                warn!(%url, error = %e, "unreadable discovery document; assuming the service keeps every attribute it does not describe");
                Ok(None)
            }
        }
    }

    async fn read_keeps(&self) -> Result<Keeps, DestinationError> {
        let schemas = self.discover::<discovery::WireSchema>("Schemas").await?;
        let types = self
            .discover::<discovery::WireResourceType>("ResourceTypes")
            .await?;
        Ok(discovery::derive(schemas.as_deref(), types.as_deref()))
    }

    /// Reads one member (`None` when it does not exist).
    pub async fn get_member(
        &self,
        id: &str,
    ) -> Result<Option<DestinationMember>, DestinationError> {
        let url = self.url(&["Users", id]);
        let resp = self
            .send_checked(Method::GET, url.clone(), None, None, CallKind::Read)
            .await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.expect_success(&url, resp)?;
        let user: WireUser =
            serde_json::from_slice(&resp.body).map_err(|e| self.bad_response(&url, e))?;
        Ok(Some(user.into_destination(resp.etag)))
    }

    async fn read_capabilities(&self) -> Result<Capabilities, DestinationError> {
        let url = self.url(&["ServiceProviderConfig"]);
        let resp = self
            .send_checked(Method::GET, url.clone(), None, None, CallKind::Read)
            .await?;
        if matches!(resp.status.as_u16(), 401 | 403) {
            return Err(DestinationError::Unauthorized {
                url: self.service(),
                status: resp.status.as_u16(),
            });
        }
        let spc = match resp.status.is_success() {
            true => serde_json::from_slice::<WireServiceProviderConfig>(&resp.body).ok(),
            false => None,
        };
        match spc {
            Some(spc) => Ok(Capabilities::from_wire(spc)),
            None => {
                warn!(%url, status = resp.status.as_u16(), "the SCIM service publishes no readable ServiceProviderConfig; using PUT, no bulk, no ETags");
                Ok(Capabilities::minimal())
            }
        }
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.config.base_url.clone();
        url.path_segments_mut()
            .expect("checked to be an http(s) URL")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// The URL as named in messages: the base URL, never a query.
    fn service(&self) -> String {
        self.config.base_url.to_string()
    }

    /// Removes the token from text that came from elsewhere (a server's detail).
    fn redact(&self, text: &str) -> String {
        crate::secret::scrub_within(&self.config.token, text, MAX_DETAIL)
    }

    fn endless(&self, detail: String) -> DestinationError {
        DestinationError::BadResponse {
            url: self.url(&["Users"]).to_string(),
            detail,
        }
    }

    fn bad_response(&self, url: &Url, e: serde_json::Error) -> DestinationError {
        DestinationError::BadResponse {
            url: url.to_string(),
            detail: e.to_string(),
        }
    }

    /// Sends a request, retrying transient failures (5xx, 429, timeouts, connection
    /// errors) with jittered exponential backoff. Any final HTTP status is returned;
    /// `Err` holds the last transport failure.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&[u8]>,
        if_match: Option<&str>,
        kind: CallKind,
    ) -> Result<Response, String> {
        let attempts = self.config.max_attempts.max(1);
        let timeout = match kind {
            // A bulk request carries many writes: give it time in proportion.
            CallKind::Bulk { operations } => self
                .config
                .request_timeout
                .saturating_mul(1 + operations / 100)
                .min(Duration::from_secs(600)),
            _ => self.config.request_timeout,
        };
        for attempt in 1..=attempts {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .timeout(timeout)
                .bearer_auth(self.config.token.expose())
                .header(header::ACCEPT, "application/scim+json, application/json");
            if let Some(body) = body {
                req = req
                    .header(header::CONTENT_TYPE, "application/scim+json")
                    .body(body.to_vec());
            }
            if let Some(v) = if_match {
                req = req.header(header::IF_MATCH, v);
            }
            let result = {
                let _permit = self.permits.acquire().await.expect("never closed");
                match kind {
                    CallKind::Read => self.reads.fetch_add(1, Ordering::Relaxed),
                    CallKind::Write => self.writes.fetch_add(1, Ordering::Relaxed),
                    CallKind::Bulk { operations } => {
                        self.bulk_operations
                            .fetch_add(operations, Ordering::Relaxed);
                        self.bulk_requests.fetch_add(1, Ordering::Relaxed)
                    }
                };
                let started = std::time::Instant::now();
                let result = match req.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        let headers = resp.headers().clone();
                        egress::read_body(resp, self.config.egress.max_body_bytes)
                            .await
                            .map(|b| (status, headers, b))
                    }
                    Err(e) => Err(BodyError::Read(e)),
                };
                debug!(
                    %method, %url, attempt,
                    status = result.as_ref().ok().map(|r| r.0.as_u16()),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "SCIM request"
                );
                result
            };
            let last = attempt == attempts;
            match result {
                Ok((status, headers, body)) => {
                    if is_transient(status) {
                        self.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    if is_transient(status) && !last {
                        let wait = retry_after(&headers).unwrap_or_else(|| self.backoff(attempt));
                        debug!(%method, %url, status = status.as_u16(), wait_ms = wait.as_millis() as u64, "retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let header_str = |name: header::HeaderName| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    return Ok(Response {
                        status,
                        etag: header_str(header::ETAG),
                        location: header_str(header::LOCATION),
                        body,
                        retried: attempt > 1,
                    });
                }
                // Not worth retrying: the same answer would come again.
                Err(e @ BodyError::TooLarge { .. }) => {
                    return Err(format!("{method} {}: {}", url.path(), e.describe()));
                }
                Err(BodyError::Read(e)) => {
                    if let Some(refused) = egress::refusal(&e) {
                        return Err(refused.to_string());
                    }
                    let detail = self.redact(&describe_transport(&e, timeout));
                    if last {
                        return Err(detail);
                    }
                    debug!(%method, %url, error = %detail, "retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    fn backoff(&self, attempt: u32) -> Duration {
        crate::retry::backoff(self.config.backoff_base, self.config.backoff_max, attempt)
    }

    /// [`Self::send`] for reads that must succeed: a transport failure is `Unreachable`.
    async fn send_checked(
        &self,
        method: Method,
        url: Url,
        body: Option<&[u8]>,
        if_match: Option<&str>,
        kind: CallKind,
    ) -> Result<Response, DestinationError> {
        self.send(method, url, body, if_match, kind)
            .await
            .map_err(|detail| DestinationError::Unreachable {
                url: self.service(),
                detail,
            })
    }

    fn expect_success(&self, url: &Url, resp: Response) -> Result<Response, DestinationError> {
        match resp.status.as_u16() {
            200..=299 => Ok(resp),
            401 | 403 => Err(DestinationError::Unauthorized {
                url: self.service(),
                status: resp.status.as_u16(),
            }),
            status => Err(DestinationError::Status {
                url: url.to_string(),
                status,
                detail: self.redact(
                    resp.error()
                        .detail
                        .as_deref()
                        .unwrap_or_else(|| resp.status.canonical_reason().unwrap_or("")),
                ),
            }),
        }
    }

    /// The message of a write the service refused.
    fn refusal(&self, what: &str, resp: &Response) -> WriteOutcome {
        self.refused(what, resp.status.as_u16(), resp.error())
    }

    /// The outcome of a write the service refused, quoting its `scimType` and `detail`.
    fn refused(&self, what: &str, status: u16, err: ScimErrorBody) -> WriteOutcome {
        if matches!(status, 401 | 403) {
            return failed(
                None,
                format!("{what}: the SCIM service rejected the bearer token ({status})"),
            );
        }
        let kind = err.scim_type.map(|t| format!(" {t}")).unwrap_or_default();
        let detail = err
            .detail
            .map(|d| format!(": {}", self.redact(&d)))
            .unwrap_or_default();
        failed(
            None,
            format!("{what}: the destination answered {status}{kind}{detail}"),
        )
    }

    async fn fetch_page(&self, start: usize, count: usize) -> Result<ListPage, DestinationError> {
        let mut url = self.url(&["Users"]);
        url.query_pairs_mut()
            .append_pair("startIndex", &start.to_string())
            .append_pair("count", &count.to_string());
        let resp = self
            .send_checked(Method::GET, url.clone(), None, None, CallKind::Read)
            .await?;
        let resp = self.expect_success(&url, resp)?;
        serde_json::from_slice(&resp.body).map_err(|e| self.bad_response(&url, e))
    }

    /// Pages through `[start, start + count)` one request at a time, for the range a
    /// short page left out (a service may return fewer than asked).
    async fn fetch_range(
        &self,
        mut start: usize,
        mut count: usize,
        out: &(dyn Fn(Vec<DestinationMember>) + Send + Sync),
    ) -> Result<usize, DestinationError> {
        let mut listed = 0;
        while count > 0 {
            let page = self.fetch_page(start, count).await?;
            let n = page.resources.len();
            if n == 0 {
                break;
            }
            out(convert(page.resources));
            listed += n;
            start += n;
            count = count.saturating_sub(n);
        }
        Ok(listed)
    }

    // ---- writes ----

    async fn create(&self, member: &Member, maybe_applied: bool) -> WriteOutcome {
        let body =
            serde_json::to_vec(&model::create_body_for(member, self.keeps.emails)).expect("JSON");
        let url = self.url(&["Users"]);
        let resp = match self
            .send(Method::POST, url, Some(&body), None, CallKind::Write)
            .await
        {
            Ok(r) => r,
            Err(detail) => return failed(None, format!("could not create the member: {detail}")),
        };
        match resp.status.as_u16() {
            200 | 201 => {
                let id = serde_json::from_slice::<Value>(&resp.body)
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
                    .or_else(|| resp.location.as_deref().and_then(model::id_from_location));
                match id {
                    Some(id) => WriteOutcome::Created { id },
                    None => failed(
                        None,
                        "the destination created the member but returned no id",
                    ),
                }
            }
            409 => {
                self.create_conflict(member, maybe_applied || resp.retried)
                    .await
            }
            _ => self.refusal("could not create the member", &resp),
        }
    }

    /// A 409 on a create that may already have gone through once (a retried request or
    /// a bulk that failed as a whole): when the account holding the e-mail is this very
    /// member, the create did happen.
    async fn create_conflict(&self, member: &Member, maybe_applied: bool) -> WriteOutcome {
        if !maybe_applied || !self.caps.filter || member.employee_id.is_empty() {
            return uniqueness_failure(&member.email);
        }
        let escaped = member
            .employee_id
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        let mut url = self.url(&["Users"]);
        url.query_pairs_mut()
            .append_pair("filter", &format!("externalId eq \"{escaped}\""));
        let found = match self
            .send(Method::GET, url, None, None, CallKind::Read)
            .await
        {
            Ok(r) if r.status.is_success() => serde_json::from_slice::<ListPage>(&r.body).ok(),
            _ => None,
        };
        let mine = found.into_iter().flat_map(|p| p.resources).find(|u| {
            u.external_id.as_deref() == Some(member.employee_id.as_str())
                && u.user_name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&member.email))
        });
        match mine {
            Some(user) => WriteOutcome::Created { id: user.id },
            None => uniqueness_failure(&member.email),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        id: &str,
        version: Option<&str>,
        has_work_email: bool,
        planned: &[Change],
        desired: &Member,
        managed: AttrSet,
        already_stale: bool,
    ) -> WriteOutcome {
        let mut changes = planned.to_vec();
        let mut version = version.map(str::to_string);
        let mut has_work_email = has_work_email;
        let mut stale = already_stale;
        let mut fresh: Option<DestinationMember> = None;
        let mut retried = false;
        loop {
            if stale {
                let current = match fresh.take() {
                    Some(c) => c,
                    None => match self.get_member(id).await {
                        Ok(Some(c)) => c,
                        Ok(None) => return failed(None, DELETED_MESSAGE),
                        Err(e) => {
                            return failed(
                                None,
                                format!(
                                    "could not re-read the member after a version conflict: {e}"
                                ),
                            )
                        }
                    },
                };
                changes = replan_update(&current.member, planned, desired, managed);
                version = current.version;
                has_work_email = current.has_work_email;
                retried = true;
            }
            if changes.is_empty() {
                return WriteOutcome::Updated;
            }
            let step = self
                .write_once(
                    id,
                    &changes,
                    has_work_email,
                    version.as_deref(),
                    desired,
                    managed,
                )
                .await;
            match step {
                Step::Done => return WriteOutcome::Updated,
                Step::Finished(outcome) | Step::FormRefused(outcome) => return outcome,
                Step::Stale(_) if retried => {
                    return failed(
                        None,
                        "the member changed in the destination again while it was being updated (412 Precondition Failed twice); the next run retries",
                    )
                }
                Step::Stale(current) => {
                    stale = true;
                    fresh = current.map(|c| *c);
                }
            }
        }
    }

    fn if_match<'a>(&self, version: Option<&'a str>) -> Option<&'a str> {
        version.filter(|_| self.caps.etag)
    }

    fn write_status(&self, resp: &Response, changes: &[Change], desired: &Member) -> Step {
        match resp.status.as_u16() {
            200..=299 => Step::Done,
            412 => Step::Stale(None),
            404 => Step::Finished(failed(None, DELETED_MESSAGE)),
            409 if changes_email(changes) => Step::Finished(uniqueness_failure(&desired.email)),
            _ => Step::Finished(self.refusal("could not update the member", resp)),
        }
    }

    /// One update in the simplest form the service has shown it takes, falling back to
    /// simpler forms when it refuses one; a form that worked after a refusal is kept for
    /// the rest of the run.
    async fn write_once(
        &self,
        id: &str,
        changes: &[Change],
        has_work_email: bool,
        version: Option<&str>,
        desired: &Member,
        managed: AttrSet,
    ) -> Step {
        let mut form = self.current_form();
        let mut refused = false;
        loop {
            let step = match form.patch() {
                Some(patch_form) => match model::patch_body_as(
                    patch_form,
                    changes,
                    has_work_email,
                    desired,
                    managed,
                    self.keeps.emails,
                ) {
                    Some(body) => self.patch_once(id, &body, changes, version, desired).await,
                    // This form cannot say it without losing data: the next one can.
                    None => {
                        form = form.simpler();
                        continue;
                    }
                },
                None => self.put_once(id, changes, version, desired).await,
            };
            match step {
                Step::FormRefused(_) if form < WriteForm::Put => {
                    debug!(
                        ?form,
                        "the SCIM service refused this update form; trying a simpler one"
                    );
                    refused = true;
                    form = form.simpler();
                }
                Step::Done => {
                    if refused && self.form.fetch_max(form as u8, Ordering::Relaxed) < form as u8 {
                        warn!(?form, "the SCIM service refuses finer updates; using this form for the rest of the run");
                    }
                    return Step::Done;
                }
                other => return other,
            }
        }
    }

    async fn patch_once(
        &self,
        id: &str,
        body: &Value,
        changes: &[Change],
        version: Option<&str>,
        desired: &Member,
    ) -> Step {
        let body = serde_json::to_vec(body).expect("JSON");
        let url = self.url(&["Users", id]);
        let resp = match self
            .send(
                Method::PATCH,
                url,
                Some(&body),
                self.if_match(version),
                CallKind::Write,
            )
            .await
        {
            Ok(resp) => resp,
            Err(detail) => {
                return Step::Finished(failed(
                    None,
                    format!("could not update the member: {detail}"),
                ))
            }
        };
        let form_refused = match resp.status.as_u16() {
            405 | 501 => true,
            400 => resp.error().scim_type.as_deref().is_some_and(|t| {
                ["invalidPath", "noTarget", "invalidSyntax"]
                    .iter()
                    .any(|k| t.eq_ignore_ascii_case(k))
            }),
            // A 404 names the member or the path: a member that still reads is there.
            404 => matches!(self.get_member(id).await, Ok(Some(_))),
            _ => false,
        };
        if form_refused {
            return Step::FormRefused(self.refusal("could not update the member", &resp));
        }
        self.write_status(&resp, changes, desired)
    }

    /// Without PATCH: read the whole resource, change what is managed, write it back.
    async fn put_once(
        &self,
        id: &str,
        changes: &[Change],
        version: Option<&str>,
        desired: &Member,
    ) -> Step {
        let url = self.url(&["Users", id]);
        let resp = match self
            .send(Method::GET, url.clone(), None, None, CallKind::Read)
            .await
        {
            Ok(r) => r,
            Err(detail) => {
                return Step::Finished(failed(None, format!("could not read the member: {detail}")))
            }
        };
        if resp.status == StatusCode::NOT_FOUND {
            return Step::Finished(failed(None, DELETED_MESSAGE));
        }
        if !resp.status.is_success() {
            return Step::Finished(self.refusal("could not read the member", &resp));
        }
        let mut resource: Value = match serde_json::from_slice(&resp.body) {
            Ok(v) => v,
            Err(e) => {
                return Step::Finished(failed(
                    None,
                    format!("could not read the member: unreadable response: {e}"),
                ))
            }
        };
        let current = match serde_json::from_value::<WireUser>(resource.clone()) {
            Ok(u) => u.into_destination(resp.etag),
            Err(e) => {
                return Step::Finished(failed(
                    None,
                    format!("could not read the member: unreadable response: {e}"),
                ))
            }
        };
        // Changed since the list: the planned changes are against an old state.
        if self.caps.etag
            && version.is_some()
            && current.version.is_some()
            && current.version.as_deref() != version
        {
            return Step::Stale(Some(Box::new(current)));
        }
        model::apply_changes_to_resource(&mut resource, changes);
        let body = serde_json::to_vec(&resource).expect("JSON");
        match self
            .send(
                Method::PUT,
                url,
                Some(&body),
                self.if_match(current.version.as_deref()),
                CallKind::Write,
            )
            .await
        {
            Ok(resp) => self.write_status(&resp, changes, desired),
            Err(detail) => Step::Finished(failed(
                None,
                format!("could not update the member: {detail}"),
            )),
        }
    }

    async fn run_single(&self, op: &WriteOp, follow_up: Option<FollowUp>) -> WriteOutcome {
        match op {
            WriteOp::Create { member } => {
                let maybe_applied = matches!(
                    follow_up,
                    Some(FollowUp::Retry {
                        maybe_applied: true
                    })
                );
                self.create(member, maybe_applied).await
            }
            WriteOp::Update {
                id,
                version,
                has_work_email,
                changes,
                desired,
                managed,
            } => {
                self.update(
                    id,
                    version.as_deref(),
                    *has_work_email,
                    changes,
                    desired,
                    *managed,
                    matches!(follow_up, Some(FollowUp::Stale)),
                )
                .await
            }
        }
    }

    // ---- bulk ----

    fn bulk_id(index: usize) -> String {
        format!("op-{index}")
    }

    /// The bulk operation for an op, serialized (its size decides the chunks).
    fn bulk_operation(&self, index: usize, op: &WriteOp) -> Vec<u8> {
        let value = match op {
            WriteOp::Create { member } => json!({
                "method": "POST",
                "path": "/Users",
                "bulkId": Self::bulk_id(index),
                "data": model::create_body_for(member, self.keeps.emails),
            }),
            WriteOp::Update {
                id,
                version,
                has_work_email,
                changes,
                desired,
                managed,
            } => {
                let form = self.current_form().patch().unwrap_or(PatchForm::ValuePaths);
                let data = model::patch_body_as(
                    form,
                    changes,
                    *has_work_email,
                    desired,
                    *managed,
                    self.keeps.emails,
                )
                .unwrap_or_else(|| model::patch_body(changes, *has_work_email));
                let mut v = json!({
                    "method": "PATCH",
                    "path": format!("/Users/{id}"),
                    "bulkId": Self::bulk_id(index),
                    "data": data,
                });
                if let Some(version) = self.if_match(version.as_deref()) {
                    v["version"] = json!(version);
                }
                v
            }
        };
        serde_json::to_vec(&value).expect("JSON")
    }

    fn bulk_envelope() -> (Vec<u8>, &'static [u8]) {
        let head = format!("{{\"schemas\":[\"{BULK_REQUEST_SCHEMA}\"],\"Operations\":[");
        (head.into_bytes(), b"]}")
    }

    /// Splits ops into bulk requests within `maxOperations` and `maxPayloadSize`. Ops
    /// too large for any bulk request come back separately.
    fn chunk(&self, limits: BulkLimits, items: Vec<BulkItem>) -> (Vec<Vec<BulkItem>>, Vec<usize>) {
        let (head, tail) = Self::bulk_envelope();
        let envelope = head.len() + tail.len();
        let mut chunks = Vec::new();
        let mut alone = Vec::new();
        let mut current: Vec<BulkItem> = Vec::new();
        let mut size = envelope;
        for (index, bytes) in items {
            if envelope + bytes.len() > limits.max_payload_size {
                alone.push(index);
                continue;
            }
            let extra = bytes.len() + usize::from(!current.is_empty());
            if current.len() >= limits.max_operations || size + extra > limits.max_payload_size {
                chunks.push(std::mem::take(&mut current));
                size = envelope;
            }
            size += bytes.len() + usize::from(!current.is_empty());
            current.push((index, bytes));
        }
        if !current.is_empty() {
            chunks.push(current);
        }
        (chunks, alone)
    }

    /// Sends one bulk request and settles each of its ops; ops the response leaves open
    /// go out individually.
    async fn run_chunk(
        &self,
        ops: &[WriteOp],
        chunk: Vec<BulkItem>,
        on_done: &(dyn Fn(usize, &WriteOutcome) + Send + Sync),
    ) -> Vec<(usize, WriteOutcome)> {
        let (head, tail) = Self::bulk_envelope();
        let mut body = head;
        for (n, (_, bytes)) in chunk.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(bytes);
        }
        body.extend_from_slice(tail);
        let indices: Vec<usize> = chunk.into_iter().map(|(i, _)| i).collect();
        let url = self.url(&["Bulk"]);
        let kind = CallKind::Bulk {
            operations: indices.len() as u32,
        };
        let resp = self.send(Method::POST, url, Some(&body), None, kind).await;
        drop(body);

        let parsed = match &resp {
            Ok(r) if r.status.is_success() => serde_json::from_slice::<BulkResponse>(&r.body).ok(),
            _ => None,
        };
        let mut done = Vec::with_capacity(indices.len());
        let mut follow_ups = Vec::new();
        match parsed {
            None => {
                match &resp {
                    Ok(r) => warn!(
                        status = r.status.as_u16(),
                        ops = indices.len(),
                        "bulk request failed; sending its operations one by one"
                    ),
                    Err(e) => {
                        warn!(error = %e, ops = indices.len(), "bulk request failed; sending its operations one by one")
                    }
                }
                follow_ups.extend(indices.iter().map(|&i| {
                    (
                        i,
                        FollowUp::Retry {
                            maybe_applied: true,
                        },
                    )
                }));
            }
            Some(bulk) => {
                let retried = resp.as_ref().is_ok_and(|r| r.retried);
                let mut by_bulk_id: HashMap<String, model::BulkResponseOp> = HashMap::new();
                let mut unnamed = Vec::new();
                for op in bulk.operations {
                    match op.bulk_id.clone() {
                        Some(id) => {
                            by_bulk_id.insert(id, op);
                        }
                        None => unnamed.push(op),
                    }
                }
                // RFC 7644 only requires bulkId on POST answers: other answers are
                // matched by position when nothing carries a bulkId, else by location.
                let positional = by_bulk_id.is_empty() && unnamed.len() == indices.len();
                let mut in_order = Vec::new();
                let mut by_location = HashMap::new();
                if positional {
                    in_order = unnamed;
                } else {
                    by_location = unnamed
                        .into_iter()
                        .filter_map(|op| op.resource_id().map(|id| (id, op)))
                        .collect();
                }
                let mut in_order = in_order.into_iter();
                for &i in &indices {
                    let answer = if positional {
                        in_order.next()
                    } else {
                        by_bulk_id
                            .remove(&Self::bulk_id(i))
                            .or_else(|| match &ops[i] {
                                WriteOp::Update { id, .. } => by_location.remove(id),
                                WriteOp::Create { .. } => None,
                            })
                    };
                    match answer {
                        None => follow_ups.push((
                            i,
                            FollowUp::Retry {
                                maybe_applied: true,
                            },
                        )),
                        Some(answer) => match self.settle_bulk_op(&ops[i], &answer, retried) {
                            Ok(outcome) => done.push((i, outcome)),
                            Err(f) => follow_ups.push((i, f)),
                        },
                    }
                }
            }
        }
        for (i, outcome) in &done {
            on_done(*i, outcome);
        }
        let mut rest: Vec<(usize, WriteOutcome)> = stream::iter(follow_ups)
            .map(|(i, f)| async move {
                let outcome = self.run_single(&ops[i], Some(f)).await;
                on_done(i, &outcome);
                (i, outcome)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        done.append(&mut rest);
        done
    }

    /// One bulk answer → the op's outcome, or what to do next on its own.
    fn settle_bulk_op(
        &self,
        op: &WriteOp,
        answer: &model::BulkResponseOp,
        request_retried: bool,
    ) -> Result<WriteOutcome, FollowUp> {
        let Some(status) = answer.status_code() else {
            return Err(FollowUp::Retry {
                maybe_applied: true,
            });
        };
        match (op, status) {
            (WriteOp::Create { .. }, 200..=299) => match answer.resource_id() {
                Some(id) => Ok(WriteOutcome::Created { id }),
                None => Err(FollowUp::Retry {
                    maybe_applied: true,
                }),
            },
            (WriteOp::Update { .. }, 200..=299) => Ok(WriteOutcome::Updated),
            (_, 429 | 500..=599) => Err(FollowUp::Retry {
                maybe_applied: true,
            }),
            (WriteOp::Create { .. }, 409) if request_retried => Err(FollowUp::Retry {
                maybe_applied: true,
            }),
            (WriteOp::Create { .. }, 409) => Ok(uniqueness_failure(op.email())),
            (WriteOp::Update { changes, .. }, 409) if changes_email(changes) => {
                Ok(uniqueness_failure(op.email()))
            }
            (WriteOp::Update { .. }, 412) => Err(FollowUp::Stale),
            // Refused paths (or a path-level 404) get the individual fallbacks.
            (WriteOp::Update { .. }, 400 | 404 | 405)
                if status != 400
                    || answer.error().scim_type.as_deref().is_some_and(|t| {
                        ["invalidPath", "noTarget", "invalidSyntax"]
                            .iter()
                            .any(|k| t.eq_ignore_ascii_case(k))
                    }) =>
            {
                Err(FollowUp::Retry {
                    maybe_applied: false,
                })
            }
            (WriteOp::Create { .. }, _) => {
                Ok(self.refused("could not create the member", status, answer.error()))
            }
            (WriteOp::Update { .. }, _) => {
                Ok(self.refused("could not update the member", status, answer.error()))
            }
        }
    }
}

fn convert(users: Vec<WireUser>) -> Vec<DestinationMember> {
    users
        .into_iter()
        .map(|u| u.into_destination(None))
        .collect()
}

/// Work for [`MemberDirectory::apply`]: one op on its own, or one bulk request.
enum Unit {
    Single(usize),
    Chunk(Vec<BulkItem>),
}

impl Unit {
    fn first_index(&self) -> usize {
        match self {
            Unit::Single(i) => *i,
            Unit::Chunk(items) => items.first().map_or(usize::MAX, |(i, _)| *i),
        }
    }
}

impl ScimClient {
    /// The `/Bulk` limits when writes go in bulk.
    fn bulk_limits(&self) -> Option<BulkLimits> {
        match (self.config.bulk, self.caps.bulk) {
            (BulkMode::Auto, Some(limits)) => Some(limits),
            _ => None,
        }
    }
}

#[async_trait]
impl MemberDirectory for ScimClient {
    fn writes_per_request(&self) -> Option<usize> {
        self.bulk_limits().map(|l| l.max_operations)
    }

    async fn list_members(&self) -> Result<Vec<DestinationMember>, DestinationError> {
        let listed = std::sync::Mutex::new(Vec::new());
        self.list_pages(&|page| listed.lock().expect("list lock").extend(page))
            .await?;
        let mut members = listed.into_inner().expect("list lock");
        // A member created or deleted while paging shifts the pages: keep one of each.
        let duplicates: HashSet<usize> = {
            let mut seen = HashSet::with_capacity(members.len());
            (0..members.len())
                .filter(|&i| !seen.insert(members[i].id.as_str()))
                .collect()
        };
        if !duplicates.is_empty() {
            let mut i = 0;
            members.retain(|_| {
                i += 1;
                !duplicates.contains(&(i - 1))
            });
        }
        Ok(members)
    }

    async fn list_pages(
        &self,
        out: &(dyn Fn(Vec<DestinationMember>) + Send + Sync),
    ) -> Result<(), DestinationError> {
        let started = Instant::now();
        let count = self
            .config
            .page_size
            .min(self.caps.filter_max_results.unwrap_or(MAX_PAGE))
            .clamp(1, MAX_PAGE);
        let first = self.fetch_page(1, count).await?;
        let total = first
            .total_results
            .map(|t| usize::try_from(t).unwrap_or(usize::MAX));
        let first_id = first.resources.first().map(|u| u.id.clone());
        // Converted and handed over page by page: no page is held once read.
        let step = first.resources.len();
        let mut listed = step;
        out(convert(first.resources));
        // The service may cap pages below what was asked: step by what it returns.
        let mut pages = 1usize;
        let mut window = 1;
        if step > 0 {
            // Without a total the list ends at its first short or empty page.
            let end = total.unwrap_or(usize::MAX);
            let mut pacer = Pacer::new(
                self.config.concurrency,
                Instant::now(),
                self.throttled.load(Ordering::Relaxed),
            );
            let mut next = step.saturating_add(1);
            let mut ended = false;
            let mut in_flight = FuturesUnordered::new();
            loop {
                while !ended && next <= end && in_flight.len() < pacer.window() {
                    if pages >= self.config.max_list_pages {
                        return Err(self.endless(format!(
                            "the user list did not end after {} pages, the most the operator reads",
                            self.config.max_list_pages
                        )));
                    }
                    let start = next;
                    next = next.saturating_add(step);
                    pages += 1;
                    in_flight.push(async move { (start, self.fetch_page(start, step).await) });
                }
                window = window.max(pacer.window());
                let Some((start, page)) = in_flight.next().await else {
                    break;
                };
                let page = page?;
                // Pages not yet requested, when the service said its total.
                let remaining = total.map(|t| match t.checked_sub(next) {
                    Some(rest) => rest / step + 1,
                    None => 0,
                });
                pacer.page_done(
                    Instant::now(),
                    self.throttled.load(Ordering::Relaxed),
                    remaining,
                );
                let n = page.resources.len();
                if n == 0 {
                    ended = true; // the end, or members went away while listing
                    continue;
                }
                if page.resources.first().map(|u| &u.id) == first_id.as_ref() {
                    return Err(self.endless(format!(
                        "the page at startIndex {start} repeats the first page: the service ignores startIndex"
                    )));
                }
                listed += n;
                out(convert(page.resources));
                let expected = match total {
                    Some(total) => step.min(total.saturating_add(1).saturating_sub(start)),
                    None => step,
                };
                if n < expected {
                    match total {
                        Some(_) => listed += self.fetch_range(start + n, expected - n, out).await?,
                        None => ended = true,
                    }
                }
                if listed > self.config.max_listed_users {
                    return Err(self.endless(format!(
                        "the service listed more than {} users, the most the operator reads",
                        self.config.max_listed_users
                    )));
                }
            }
        }
        debug!(
            members = listed,
            pages,
            window,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "listed SCIM users"
        );
        Ok(())
    }

    async fn find_members(
        &self,
        keys: &MemberKeys,
    ) -> Result<Option<Vec<DestinationMember>>, DestinationError> {
        self.find_by_filter(keys).await
    }

    async fn get_members(
        &self,
        ids: &[String],
    ) -> Result<Option<Vec<DestinationMember>>, DestinationError> {
        self.get_by_ids(ids).await.map(Some)
    }

    async fn apply(
        &self,
        ops: &[WriteOp],
        on_done: &(dyn for<'o> Fn(usize, &'o WriteOutcome) + Send + Sync),
    ) -> Vec<WriteOutcome> {
        let bulk = self.bulk_limits();
        let mut units = Vec::new();
        let mut bulk_items = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            // Without PATCH an update needs a GET first: it can't ride in a bulk.
            let bulkable = bulk.is_some()
                && match op {
                    WriteOp::Create { .. } => true,
                    WriteOp::Update { changes, .. } => {
                        self.caps.patch
                            && self.current_form() < WriteForm::Put
                            && !changes.is_empty()
                    }
                };
            if bulkable {
                bulk_items.push((i, self.bulk_operation(i, op)));
            } else {
                units.push(Unit::Single(i));
            }
        }
        if let Some(limits) = bulk {
            let (chunks, alone) = self.chunk(limits, bulk_items);
            units.extend(alone.into_iter().map(Unit::Single));
            units.extend(chunks.into_iter().map(Unit::Chunk));
        }
        // Roughly the plan's order (creates first), though units overlap in time.
        units.sort_by_key(Unit::first_index);

        let mut results: Vec<Option<WriteOutcome>> = vec![None; ops.len()];
        let mut finished = stream::iter(units)
            .map(|unit| async move {
                match unit {
                    Unit::Single(i) => {
                        let outcome = self.run_single(&ops[i], None).await;
                        on_done(i, &outcome);
                        vec![(i, outcome)]
                    }
                    Unit::Chunk(chunk) => self.run_chunk(ops, chunk, on_done).await,
                }
            })
            .buffer_unordered(self.config.concurrency.max(1));
        while let Some(batch) = finished.next().await {
            for (i, outcome) in batch {
                results[i] = Some(outcome);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every op is settled exactly once"))
            .collect()
    }

    fn keeps(&self) -> AttrSet {
        self.keeps.attrs
    }

    fn target_name(&self, attr: crate::member::Attr) -> String {
        format!("{attr} (SCIM {})", scim_name(attr))
    }

    fn stats(&self) -> DestinationStats {
        DestinationStats {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            bulk_requests: self.bulk_requests.load(Ordering::Relaxed),
            bulk_operations: self.bulk_operations.load(Ordering::Relaxed),
            lookup_requests: self.lookup.requests.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    fn headers(value: &str) -> header::HeaderMap {
        let mut h = header::HeaderMap::new();
        h.insert(header::RETRY_AFTER, value.parse().unwrap());
        h
    }

    #[test]
    fn retry_after_takes_seconds_and_dates_and_caps_both() {
        assert_eq!(retry_after(&headers("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers("99999999999999999999")),
            Some(MAX_RETRY_AFTER)
        );
        let date = |secs: i64| {
            (chrono::Utc::now() + chrono::Duration::seconds(secs))
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string()
        };
        let soon = date(31);
        let wait = retry_after(&headers(&soon)).unwrap();
        assert!(
            (Duration::from_secs(29)..=Duration::from_secs(31)).contains(&wait),
            "{wait:?}"
        );
        let late = date(3600);
        assert_eq!(retry_after(&headers(&late)), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&headers("soon")), None);
    }
}
