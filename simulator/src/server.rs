//! The HTTP side: the `/api` protocol (auth, rate limit, faults, pagination) and the
//! `/_sim` admin routes.
//!
//! Every decision about a request (status, quota, faults, body) is made in one short
//! critical section when it arrives; the only awaits are the configured delays, taken
//! after the lock is released.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::data::{lookup, Directory, ListQuery, LIST_FIELDS};
use super::{Faults, ListMode, RequestRecord, SimConfig, SimError};

/// `x-ratelimit-total` reported when no limit is configured.
pub(crate) const UNLIMITED_TOTAL: u32 = 1000;

/// Filters the list endpoint understands.
const FILTERS: &[&str] = &[
    "status",
    "terminated",
    "deleted",
    "draft",
    "employee_id",
    "official_email",
    "department_id",
    "branch_id",
];

/// The simulated account, behind the handle's mutex.
pub(crate) struct State {
    pub api_key: String,
    pub forbidden_keys: Vec<String>,
    pub page_size: usize,
    pub retry_after: bool,
    pub list_mode: ListMode,
    pub directory: Directory,
    pub faults: Faults,
    /// API requests since the faults were last set (drives `fail_every`, `stall_every`).
    pub fault_requests: u64,
    /// Employee-list responses since the faults were last set (drives `truncate_every`).
    pub list_responses: u64,
    pub limit: Option<u32>,
    pub window: Duration,
    /// When the current window series began, and the index of its first window, so
    /// window indices keep increasing across `set_rate_limit`.
    pub window_origin: Instant,
    pub window_base: u64,
    pub window_index: u64,
    pub used: u32,
    pub log: Vec<RequestRecord>,
}

impl State {
    pub(crate) fn new(config: &SimConfig, directory: Directory, now: Instant) -> Self {
        State {
            api_key: config.api_key.clone(),
            forbidden_keys: config.forbidden_keys.clone(),
            page_size: config.page_size.max(1),
            retry_after: config.retry_after,
            list_mode: config.list_mode,
            directory,
            faults: Faults {
                fail_every: config.fail_every,
                latency: config.latency,
                ..Faults::default()
            },
            fault_requests: 0,
            list_responses: 0,
            limit: config.rate_limit,
            window: nonzero(config.window),
            window_origin: now,
            window_base: 0,
            window_index: 0,
            used: 0,
            log: Vec::new(),
        }
    }

    pub(crate) fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
        self.fault_requests = 0;
        self.list_responses = 0;
    }

    pub(crate) fn set_rate_limit(&mut self, limit: Option<u32>, window: Duration, now: Instant) {
        self.roll_window(now);
        self.limit = limit;
        self.window = nonzero(window);
        self.window_base = self.window_index + 1;
        self.window_index = self.window_base;
        self.window_origin = now;
        self.used = 0;
    }

    /// Moves to the window `now` falls in, refilling the quota when it changed.
    fn roll_window(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_origin);
        let index = self.window_base + (elapsed.as_nanos() / self.window.as_nanos()) as u64;
        if index != self.window_index {
            self.window_index = index;
            self.used = 0;
        }
    }

    /// When the current window ends.
    fn window_end(&self) -> Instant {
        let n = (self.window_index - self.window_base + 1) as u32;
        self.window_origin + self.window * n
    }

    fn rate_headers(&self) -> [(&'static str, String); 3] {
        let (total, remaining) = match self.limit {
            Some(limit) => (limit, limit.saturating_sub(self.used)),
            // Unlimited: never suggest that the client should slow down.
            None => (UNLIMITED_TOTAL, UNLIMITED_TOTAL - 1),
        };
        [
            ("x-ratelimit-total", total.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-used-currentrequest", "1".to_string()),
        ]
    }
}

fn nonzero(window: Duration) -> Duration {
    window.max(Duration::from_millis(1))
}

/// State shared by the handle and the server.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub started: Instant,
    /// The bound address, for `link` URLs when a request has no Host header.
    pub addr: std::net::SocketAddr,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the simulator down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the server will answer, decided under the lock.
struct Prepared {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
    delay: Duration,
}

fn error_body(code: &str, message: &str, field: Option<&str>) -> Bytes {
    let mut error = json!({ "code": code, "message": message });
    if let Some(field) = field {
        error["field"] = json!(field);
    }
    Bytes::from(json!({ "errors": [error] }).to_string())
}

/// A protocol error: status plus the JSON error body.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_value",
            message: message.into(),
            field: Some(field),
        }
    }

    fn not_found() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "The requested resource was not found",
        )
    }
}

/// A successful employees-list request, parsed.
struct ListRequest {
    page: usize,
    query: ListQuery,
}

/// The `'static` name of a filter parameter.
fn static_name(key: &str) -> &'static str {
    FILTERS
        .iter()
        .find(|f| **f == key)
        .copied()
        .expect("only called with a filter name")
}

/// The filters that select a population; without any of them, the documented list is
/// current staff only.
const POPULATION_FILTERS: &[&str] = &["status", "terminated", "deleted", "draft"];

fn parse_list_request(raw_query: &str, mode: ListMode) -> Result<ListRequest, ApiError> {
    let mut page = 1;
    let mut query = ListQuery::default();
    let mut sort_field = None;
    let mut descending = false;
    for (key, value) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "page" => {
                page = value
                    .parse::<usize>()
                    .ok()
                    .filter(|p| *p >= 1)
                    .ok_or_else(|| ApiError::invalid("page", "page must be a number from 1"))?;
            }
            "status" => {
                let v = value.to_ascii_lowercase();
                let ok = v
                    .split(',')
                    .all(|s| matches!(s.trim(), "active" | "inactive"));
                if !ok {
                    return Err(ApiError::invalid(
                        "status",
                        "status must be active, inactive or both, comma-separated",
                    ));
                }
                query.filters.push(("status", v));
            }
            k @ ("terminated" | "deleted" | "draft") => {
                let field = static_name(k);
                let v = value.to_ascii_lowercase();
                if v != "true" && v != "false" {
                    return Err(ApiError::invalid(
                        field,
                        format!("{k} must be true or false"),
                    ));
                }
                query.filters.push((field, v));
            }
            k @ ("department_id" | "branch_id") => {
                let field = static_name(k);
                let n: i64 = value
                    .parse()
                    .map_err(|_| ApiError::invalid(field, format!("{k} must be a number")))?;
                query.filters.push((field, n.to_string()));
            }
            k @ ("employee_id" | "official_email") => {
                query.filters.push((static_name(k), value));
            }
            "updated_since" => {
                let since = parse_updated_since(&value).ok_or_else(|| {
                    ApiError::invalid(
                        "updated_since",
                        format!("updated_since must be a date (YYYY-MM-DD) or an RFC 3339 timestamp, not '{value}'"),
                    )
                })?;
                // Given twice, both must hold.
                query.updated_since = query.updated_since.max(Some(since));
            }
            "sort" => {
                if !LIST_FIELDS.contains(&value.as_str()) {
                    return Err(ApiError::invalid(
                        "sort",
                        format!("cannot sort by '{value}'"),
                    ));
                }
                sort_field = Some(value);
            }
            "sort_type" => match value.to_ascii_lowercase().as_str() {
                "asc" => descending = false,
                "desc" => descending = true,
                _ => {
                    return Err(ApiError::invalid(
                        "sort_type",
                        "sort_type must be asc or desc",
                    ))
                }
            },
            // Unknown parameters are ignored, as most APIs do.
            _ => {}
        }
    }
    let selects = query
        .filters
        .iter()
        .any(|(f, _)| POPULATION_FILTERS.contains(f));
    if mode == ListMode::Documented && !selects {
        query.filters.extend(ListQuery::current_staff_filters());
    }
    if let Some(field) = sort_field {
        query.sort = Some((field, descending));
    } else if descending {
        query.sort = Some(("id".to_string(), true));
    }
    Ok(ListRequest { page, query })
}

/// `updated_since`: a date `YYYY-MM-DD` (from 00:00 UTC that day) or an RFC 3339
/// timestamp. Freshteam documents a date; the timestamp form is the simulator's
/// extension. A `+` sent unencoded in the offset arrives as a space and is read as `+`.
fn parse_updated_since(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Some(day.and_hms_opt(0, 0, 0)?.and_utc());
    }
    DateTime::parse_from_rfc3339(&value.replace(' ', "+"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The absolute URL of another page of the same list, from the request's own Host.
fn page_url(host: &str, path: &str, raw_query: &str, page: usize) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    let mut replaced = false;
    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        if k == "page" {
            if !replaced {
                out.append_pair("page", &page.to_string());
                replaced = true;
            }
        } else {
            out.append_pair(&k, &v);
        }
    }
    if !replaced {
        out.append_pair("page", &page.to_string());
    }
    format!("http://{host}{path}?{}", out.finish())
}

/// The host the client addressed: HTTP/2's `:authority`, else the Host header, else
/// the bound address.
fn request_host(uri: &Uri, headers: &HeaderMap, bound: std::net::SocketAddr) -> String {
    uri.authority()
        .map(|a| a.to_string())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| bound.to_string())
}

fn bearer_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

fn to_json_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("JSON values serialise"))
}

/// Answers one `/api` request: decides under the lock, then waits out any delay.
async fn api(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if uri.path().starts_with("/_sim") {
        return (
            StatusCode::NOT_FOUND,
            error_body("not_found", "no such admin route", None),
        )
            .into_response();
    }
    let prepared = decide(&shared, &method, &uri, &headers);
    if !prepared.delay.is_zero() {
        tokio::time::sleep(prepared.delay).await;
    }
    let mut response = Response::new(Body::from(prepared.body));
    *response.status_mut() = prepared.status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    for (name, value) in prepared.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            h.insert(name, value);
        }
    }
    response
}

/// Whether an "every Nth" fault fires on the `count`th event (counted from 1).
fn fires(every: Option<u32>, count: u64) -> bool {
    every.is_some_and(|n| n > 0 && count.is_multiple_of(u64::from(n)))
}

fn decide(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap) -> Prepared {
    let mut state = shared.lock();
    let now = Instant::now();
    state.roll_window(now);
    state.fault_requests += 1;
    let faults = state.faults.clone();

    let mut delay = faults.latency;
    let stalled = fires(faults.stall_every, state.fault_requests);
    if stalled {
        delay += faults.stall_for;
    }

    let host = request_host(uri, headers, shared.addr);
    let path = uri.path().to_string();
    let raw_query = uri.query().unwrap_or("").to_string();
    let mut record = RequestRecord {
        method: method.to_string(),
        path: path.clone(),
        query: raw_query.clone(),
        status: 0,
        at: now.saturating_duration_since(shared.started),
        throttled: false,
        stalled,
        truncated: false,
        window: state.window_index,
        reopens_at: None,
    };

    let mut extra: Vec<(&'static str, String)> = Vec::new();
    let outcome: Result<Bytes, ApiError> = (|| {
        if faults.unknown_account {
            return Err(ApiError::not_found());
        }
        if fires(faults.fail_every, state.fault_requests) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "The service is temporarily unavailable, please retry",
            ));
        }
        match bearer_key(headers) {
            Some(key) if key == state.api_key => {}
            Some(key) if state.forbidden_keys.iter().any(|k| k == key) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "You are not authorized to perform this action",
                ));
            }
            _ => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_credentials",
                    "Invalid or missing API key",
                ));
            }
        }
        if let Some(limit) = state.limit {
            if state.used >= limit {
                let end = state.window_end();
                record.throttled = true;
                record.reopens_at = Some(end.saturating_duration_since(shared.started));
                if state.retry_after {
                    let wait = end.saturating_duration_since(now);
                    let secs = wait.as_nanos().div_ceil(1_000_000_000).max(1);
                    extra.push(("retry-after", secs.to_string()));
                }
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "Rate limit exceeded, retry after the window resets",
                ));
            }
        }
        // Throttled and unauthenticated calls do not consume the account's quota.
        state.used += 1;
        route(
            &mut state,
            method,
            &path,
            &raw_query,
            &host,
            &mut extra,
            &mut record,
        )
    })();

    let (status, body) = match outcome {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => (e.status, error_body(e.code, &e.message, e.field)),
    };
    record.status = status.as_u16();
    let mut headers_out: Vec<(&'static str, String)> = state.rate_headers().to_vec();
    headers_out.extend(extra);
    state.log.push(record);
    Prepared {
        status,
        headers: headers_out,
        body,
        delay,
    }
}

fn route(
    state: &mut State,
    method: &Method,
    path: &str,
    raw_query: &str,
    host: &str,
    extra: &mut Vec<(&'static str, String)>,
    record: &mut RequestRecord,
) -> Result<Bytes, ApiError> {
    let Some(rest) = path.strip_prefix("/api/") else {
        return Err(ApiError::not_found());
    };
    let rest = rest.trim_end_matches('/');
    let lookup_body = lookup(rest);
    let known = rest == "employees" || rest.starts_with("employees/") || lookup_body.is_some();
    if !known {
        return Err(ApiError::not_found());
    }
    if method != Method::GET {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not supported on {path}"),
        ));
    }
    if rest == "employees" {
        let request = parse_list_request(raw_query, state.list_mode)?;
        let page_size = state.page_size;
        let (total, rows) = state
            .directory
            .page(&request.query, request.page, page_size);
        let pages = total.div_ceil(page_size);
        extra.push(("total-objects", total.to_string()));
        extra.push(("total-pages", pages.to_string()));
        if request.page < pages {
            let next = page_url(host, path, raw_query, request.page + 1);
            extra.push(("link", format!("<{next}>; rel=\"next\"")));
        }
        let mut body = to_json_bytes(&Value::Array(rows));
        state.list_responses += 1;
        let truncate_every = state.faults.truncate_every;
        if fires(truncate_every, state.list_responses) {
            // Cut mid-document: the status is 200 and the length matches, but the JSON
            // is unfinished, as when a proxy drops a response.
            body = body.slice(..(body.len() / 2).max(1));
            record.truncated = true;
        }
        return Ok(body);
    }
    if let Some(id) = rest.strip_prefix("employees/") {
        let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
        return state
            .directory
            .detail(id)
            .map(|v| to_json_bytes(&v))
            .ok_or_else(ApiError::not_found);
    }
    Ok(to_json_bytes(&lookup_body.expect("checked above")))
}

// ---- admin routes ----------------------------------------------------------------

/// The JSON shape of [`Faults`] on `PUT /_sim/faults` (durations in milliseconds).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FaultsBody {
    pub fail_every: Option<u32>,
    pub unknown_account: bool,
    pub truncate_every: Option<u32>,
    pub stall_every: Option<u32>,
    pub stall_ms: Option<u64>,
    pub latency_ms: u64,
}

impl From<FaultsBody> for Faults {
    fn from(b: FaultsBody) -> Self {
        Faults {
            fail_every: b.fail_every,
            unknown_account: b.unknown_account,
            truncate_every: b.truncate_every,
            stall_every: b.stall_every,
            stall_for: b
                .stall_ms
                .map_or(Faults::default().stall_for, Duration::from_millis),
            latency: Duration::from_millis(b.latency_ms),
        }
    }
}

impl From<&Faults> for FaultsBody {
    fn from(f: &Faults) -> Self {
        FaultsBody {
            fail_every: f.fail_every,
            unknown_account: f.unknown_account,
            truncate_every: f.truncate_every,
            stall_every: f.stall_every,
            stall_ms: Some(f.stall_for.as_millis() as u64),
            latency_ms: f.latency.as_millis() as u64,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitBody {
    limit: Option<u32>,
    window_ms: u64,
}

fn admin_error(e: SimError) -> Response {
    let status = match e {
        SimError::UnknownEmployee(_) => StatusCode::NOT_FOUND,
        SimError::DuplicateId(_) => StatusCode::CONFLICT,
        SimError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    (status, Json(json!({ "error": e.to_string() }))).into_response()
}

async fn get_requests(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let log: Vec<Value> = shared
        .lock()
        .log
        .iter()
        .map(RequestRecord::to_json)
        .collect();
    Json(log).into_response()
}

async fn delete_requests(AxumState(shared): AxumState<Arc<Shared>>) -> StatusCode {
    shared.lock().log.clear();
    StatusCode::NO_CONTENT
}

async fn get_employees(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    Json(shared.lock().directory.all()).into_response()
}

async fn post_employee(
    AxumState(shared): AxumState<Arc<Shared>>,
    Json(body): Json<Value>,
) -> Response {
    match shared.lock().directory.add(body) {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => admin_error(e),
    }
}

async fn patch_employee(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(employee_id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    match shared.lock().directory.update(&employee_id, &body) {
        Ok(v) => Json(v).into_response(),
        Err(e) => admin_error(e),
    }
}

async fn get_employee(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(employee_id): Path<String>,
) -> Response {
    match shared.lock().directory.find(&employee_id) {
        Some(v) => Json(v).into_response(),
        None => admin_error(SimError::UnknownEmployee(employee_id)),
    }
}

async fn delete_employee(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(employee_id): Path<String>,
) -> Response {
    if shared.lock().directory.remove(&employee_id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        admin_error(SimError::UnknownEmployee(employee_id))
    }
}

/// `POST /_sim/touch`: edit `count` employees spread over the directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TouchBody {
    count: usize,
    #[serde(default = "default_touch_field")]
    field: String,
    /// `all` (the default) or `current`: current staff only.
    #[serde(default)]
    population: TouchPopulation,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TouchPopulation {
    #[default]
    All,
    Current,
}

fn default_touch_field() -> String {
    "designation".to_string()
}

async fn post_touch(
    AxumState(shared): AxumState<Arc<Shared>>,
    Json(body): Json<TouchBody>,
) -> Response {
    let current_only = body.population == TouchPopulation::Current;
    match shared
        .lock()
        .directory
        .touch(body.count, &body.field, current_only)
    {
        Ok(ids) => Json(json!({ "field": body.field, "employee_ids": ids })).into_response(),
        Err(e) => admin_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListModeBody {
    mode: ListMode,
}

async fn put_list_mode(
    AxumState(shared): AxumState<Arc<Shared>>,
    Json(body): Json<ListModeBody>,
) -> Response {
    let mut state = shared.lock();
    state.list_mode = body.mode;
    Json(json!({ "mode": state.list_mode })).into_response()
}

async fn get_faults(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    Json(FaultsBody::from(&shared.lock().faults)).into_response()
}

async fn put_faults(
    AxumState(shared): AxumState<Arc<Shared>>,
    Json(body): Json<FaultsBody>,
) -> Response {
    let mut state = shared.lock();
    state.set_faults(body.into());
    Json(FaultsBody::from(&state.faults)).into_response()
}

async fn put_rate_limit(
    AxumState(shared): AxumState<Arc<Shared>>,
    Json(body): Json<RateLimitBody>,
) -> Response {
    let mut state = shared.lock();
    state.set_rate_limit(
        body.limit,
        Duration::from_millis(body.window_ms),
        Instant::now(),
    );
    Json(json!({ "limit": state.limit, "window_ms": state.window.as_millis() as u64 }))
        .into_response()
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/requests", get(get_requests).delete(delete_requests))
        .route("/_sim/employees", get(get_employees).post(post_employee))
        .route(
            "/_sim/employees/{employee_id}",
            patch(patch_employee)
                .get(get_employee)
                .delete(delete_employee),
        )
        .route("/_sim/faults", put(put_faults).get(get_faults))
        .route("/_sim/rate_limit", put(put_rate_limit))
        .route("/_sim/list_mode", put(put_list_mode))
        .route("/_sim/touch", post(post_touch))
        .fallback(api)
        .with_state(shared)
}
