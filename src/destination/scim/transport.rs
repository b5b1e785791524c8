//! The HTTP layer: sending a request within the client's limit, retrying transient
//! failures (backoff and `Retry-After` from `crate::retry`), and turning what came back
//! into errors whose text carries no token.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::{header, Method, StatusCode};
use tracing::debug;
use url::Url;

use super::model::ScimErrorBody;
use super::ScimClient;
use crate::destination::DestinationError;
use crate::egress::{self, BodyError};

/// Longest `Retry-After` honoured on a 429/503 before retrying anyway.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest server `detail` quoted in a message.
const MAX_DETAIL: usize = 400;

/// What the client counts as one call, for [`DestinationStats`].
#[derive(Clone, Copy)]
pub(super) enum CallKind {
    Read,
    Write,
    Bulk { operations: u32 },
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

    pub(super) fn endless(&self, detail: String) -> DestinationError {
        DestinationError::BadResponse {
            url: self.url(&["Users"]).to_string(),
            detail,
        }
    }

    pub(super) fn bad_response(&self, url: &Url, e: serde_json::Error) -> DestinationError {
        DestinationError::BadResponse {
            url: url.to_string(),
            detail: e.to_string(),
        }
    }

    /// Sends a request, retrying transient failures (5xx, 429, timeouts, connection
    /// errors) with jittered exponential backoff. Any final HTTP status is returned;
    /// `Err` holds the last transport failure.
    pub(super) async fn send(
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
            .map_err(|detail| DestinationError::Unreachable {
                url: self.service(),
                detail,
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

#[cfg(test)]
mod tests {
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
