//! The HTTP layer: sending a request through the service's budget, retrying as the one
//! HTTP policy says (`crate::http_policy`), and turning what came back into errors whose
//! text carries no token.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::{header, Method, StatusCode};
use tracing::debug;
use url::Url;

use super::model::ScimErrorBody;
use super::ScimClient;
use crate::destination::DestinationError;
use crate::egress::{self, BodyError};
use crate::http_policy::{self, Budget, Hint, Permit, RateHeaders, Verdict};
use crate::progress;

/// Longest server `detail` quoted in a message.
const MAX_DETAIL: usize = 400;

/// What the client counts as one call, for [`DestinationStats`].
#[derive(Clone, Copy)]
pub(super) enum CallKind {
    Read,
    Write,
    Bulk { operations: u32 },
}

/// Why no HTTP answer could be used; the text carries no token.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum TransportError {
    /// The answer was larger than the client reads: the same answer would come again.
    #[error("{0}")]
    TooLarge(String),
    /// The address is one the egress policy refuses.
    #[error("{0}")]
    Refused(String),
    /// No answer (timeout, connection failure), after every attempt.
    #[error("{0}")]
    NoAnswer(String),
}

/// A response, read whole.
pub(super) struct Response {
    pub(super) status: StatusCode,
    pub(super) etag: Option<String>,
    pub(super) location: Option<String>,
    pub(super) body: Vec<u8>,
    /// More than one attempt was sent: an earlier one may have been applied.
    pub(super) retried: bool,
}

impl Response {
    pub(super) fn error(&self) -> ScimErrorBody {
        ScimErrorBody::parse(&self.body)
    }
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
    pub(super) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.config.base_url.clone();
        url.path_segments_mut()
            .expect("checked to be an http(s) URL")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// The URL as named in messages: the base URL, never a query.
    pub(super) fn service(&self) -> String {
        self.config.base_url.to_string()
    }

    /// Removes the token from text that came from elsewhere (a server's detail).
    pub(super) fn redact(&self, text: &str) -> String {
        crate::secret::scrub_within(&self.config.token, text, MAX_DETAIL)
    }

    pub(super) fn endless(&self, detail: impl std::fmt::Display) -> DestinationError {
        DestinationError::BadResponse {
            url: self.url(&["Users"]).to_string(),
            detail: detail.to_string(),
        }
    }

    pub(super) fn bad_response(&self, url: &Url, e: serde_json::Error) -> DestinationError {
        DestinationError::BadResponse {
            url: url.to_string(),
            detail: e.to_string(),
        }
    }

    /// Sends a request through the service's budget for its endpoint (shared by every
    /// integration of the process), retrying as [`crate::http_policy`] says: a 429 waits
    /// for the budget and is sent again without using an attempt, however long the run
    /// has; a 5xx, a timeout or a broken connection gets `max_attempts` attempts in all.
    /// Any final HTTP status is returned; `Err` holds the last transport failure.
    pub(super) async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&[u8]>,
        if_match: Option<&str>,
        kind: CallKind,
    ) -> Result<Response, TransportError> {
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
        let endpoint = http_policy::endpoint_of(self.config.base_url.path(), url.path());
        let budget = self.budget(&endpoint);
        let mut failures = 0u32;
        loop {
            let permit = self.wait_for(&budget, &endpoint).await;
            let req = self.request(&method, &url, body, if_match, timeout);
            let result = self.exchange(req, &method, &url, kind, failures + 1).await;
            let last = failures + 1 >= attempts;
            match result {
                Ok((status, headers, body)) => {
                    let rate = RateHeaders::parse(&headers);
                    let wait = http_policy::retry_after(&headers, SystemTime::now());
                    match http_policy::classify(status.as_u16()) {
                        Verdict::Throttled => {
                            self.throttled.fetch_add(1, Ordering::Relaxed);
                            let hint = Hint::of(wait, rate.reset);
                            permit.throttled_with(hint);
                            debug!(%method, %url, ?hint, "rate limited, waiting for the budget");
                            continue;
                        }
                        Verdict::Retry if !last => {
                            permit.observe(rate);
                            drop(permit);
                            self.throttled.fetch_add(1, Ordering::Relaxed);
                            failures += 1;
                            let wait = wait.unwrap_or_else(|| self.backoff(failures));
                            debug!(%method, %url, status = status.as_u16(), wait_ms = wait.as_millis() as u64, "retrying");
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        Verdict::Retry | Verdict::Done => permit.observe(rate),
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
                        retried: failures > 0,
                    });
                }
                // Not worth retrying: the same answer would come again.
                Err(e @ BodyError::TooLarge { .. }) => {
                    let detail = format!("{method} {}: {}", url.path(), e.describe());
                    return Err(TransportError::TooLarge(detail));
                }
                Err(BodyError::Read(e)) => {
                    drop(permit);
                    if let Some(refused) = egress::refusal(&e) {
                        return Err(TransportError::Refused(refused.to_string()));
                    }
                    let detail = self.redact(&describe_transport(&e, timeout));
                    if last {
                        return Err(TransportError::NoAnswer(detail));
                    }
                    failures += 1;
                    debug!(%method, %url, error = %detail, "retrying");
                    tokio::time::sleep(self.backoff(failures)).await;
                }
            }
        }
    }

    /// The process-wide budget of `endpoint` of this service.
    fn budget(&self, endpoint: &str) -> Arc<Budget> {
        let base = &self.config.base_url;
        http_policy::budgets().budget(
            base.host_str().unwrap_or(""),
            base.as_str(),
            endpoint,
            self.config.concurrency,
            self.config.rate_limit,
        )
    }

    /// Waits for the budget, telling the run while it does.
    async fn wait_for<'b>(&self, budget: &'b Budget, endpoint: &str) -> Permit<'b> {
        let waited = std::sync::atomic::AtomicBool::new(false);
        let note = |until: tokio::time::Instant| {
            waited.store(true, Ordering::Relaxed);
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            debug!(
                endpoint,
                wait_ms = left.as_millis() as u64,
                "waiting for the rate limit"
            );
            progress::report_wait(endpoint, Some(SystemTime::now() + left));
        };
        let permit = budget.acquire_noting(&note).await;
        if waited.load(Ordering::Relaxed) {
            progress::report_wait(endpoint, None);
        }
        permit
    }

    fn request(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&[u8]>,
        if_match: Option<&str>,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
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
        req
    }

    /// Sends one attempt within the client's concurrency and reads the answer whole.
    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
        method: &Method,
        url: &Url,
        kind: CallKind,
        attempt: u32,
    ) -> Result<(StatusCode, header::HeaderMap, Vec<u8>), BodyError> {
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
    }

    fn backoff(&self, attempt: u32) -> Duration {
        http_policy::backoff(self.config.backoff_base, self.config.backoff_max, attempt)
    }

    /// [`Self::send`] for reads that must succeed: no answer is `Unreachable`, an
    /// over-size one `BadResponse`.
    pub(super) async fn send_checked(
        &self,
        method: Method,
        url: Url,
        body: Option<&[u8]>,
        if_match: Option<&str>,
        kind: CallKind,
    ) -> Result<Response, DestinationError> {
        self.send(method, url, body, if_match, kind)
            .await
            .map_err(|e| match e {
                TransportError::TooLarge(detail) => DestinationError::BadResponse {
                    url: self.service(),
                    detail,
                },
                TransportError::Refused(detail) | TransportError::NoAnswer(detail) => {
                    DestinationError::Unreachable {
                        url: self.service(),
                        detail,
                    }
                }
            })
    }

    pub(super) fn expect_success(
        &self,
        url: &Url,
        resp: Response,
    ) -> Result<Response, DestinationError> {
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
}
