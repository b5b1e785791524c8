//! Sending one request: the account's budget, retries, and what a refusal says.

use super::*;

/// What kind of call a request is, for the read's tally.
#[derive(Clone, Copy, Debug)]
pub(super) enum Call {
    List(Population),
    Detail,
    Lookup,
}

/// The request counts and 429 waiting time of one read (`fetch` or `authorize`).
#[derive(Default)]
pub(super) struct ReadTally {
    pub(super) list: AtomicU32,
    pub(super) list_by_population: [AtomicU32; 5],
    pub(super) detail: AtomicU32,
    pub(super) lookup: AtomicU32,
    pub(super) throttled: AtomicU32,
    pub(super) retries: AtomicU32,
    pub(super) throttle_wait: Mutex<Duration>,
}

impl ReadTally {
    pub(super) fn sent(&self, call: Call) {
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

    pub(super) fn stats(&self) -> SourceStats {
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
pub(super) struct Response {
    pub(super) body: Value,
    pub(super) total_objects: Option<u64>,
    pub(super) total_pages: Option<u64>,
    /// `rel="next"`, already moved onto the configured origin.
    pub(super) next: Option<Url>,
}

/// Why an attempt failed in a way worth retrying.
pub(super) enum Problem {
    Connect(String),
    Other(String),
    /// Not worth retrying (a body over the size cap).
    Fatal(SourceError),
}

impl Problem {
    pub(super) fn detail(&self) -> String {
        match self {
            Problem::Connect(d) | Problem::Other(d) => d.clone(),
            Problem::Fatal(e) => e.to_string(),
        }
    }
}

pub(super) enum Attempt {
    Done(Response),
    Throttled,
    Retry(Problem),
}

impl FreshteamClient {
    /// GET with retries and rate limiting; 2xx bodies come back parsed.
    pub(super) async fn get(
        &self,
        tally: &ReadTally,
        url: &Url,
        call: Call,
    ) -> Result<Response, SourceError> {
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
    pub(super) async fn attempt(
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
    pub(super) fn charge_throttle(
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

    pub(super) fn transport_problem(&self, e: &reqwest::Error) -> Result<Problem, SourceError> {
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
    pub(super) async fn read(&self, response: reqwest::Response) -> Result<Response, Problem> {
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
    pub(super) fn onto_our_origin(&self, next: Url, request_url: &Url) -> Url {
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
    pub(super) async fn error_detail(&self, response: reqwest::Response) -> String {
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

    pub(super) async fn rejection(
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
}

/// `code: message (field f)` for each entry of `{"errors": [...]}`, or a top-level
/// `code` / `message`.
pub(super) fn describe_errors(body: &Value) -> Option<String> {
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
pub(super) fn shown_path(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// What went wrong under a reqwest error: its own message names the URL, the causes
/// say what actually failed (DNS, refused, TLS, reset).
pub(super) fn error_chain(e: &reqwest::Error) -> String {
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
