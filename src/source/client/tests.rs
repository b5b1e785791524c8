//! The client against small in-process Freshteam stand-ins.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response as Reply;
use axum::Router;
use serde_json::json;
use tokio::time::Instant;

use super::*;

const KEY: &str = "ft-test-key-7f3a9c";

#[derive(Clone, Copy, Debug)]
enum Fault {
    Status(u16),
    Sleep(Duration),
    /// 200 with a JSON text that stops half-way.
    BadJson,
    /// 200 whose body stream breaks off.
    CutShort,
    TooMany(Option<&'static str>),
}

type FaultFn = Box<dyn Fn(usize, &str) -> Option<Fault> + Send + Sync>;

struct Hit {
    at: Instant,
    path: String,
    status: u16,
    window: u64,
}

/// A Freshteam account: paged employees, details, lookups, optional faults and a
/// fixed-window rate limit. Every request is logged with its arrival time.
struct Fake {
    employees: Vec<Value>,
    page_size: usize,
    send_total_pages: bool,
    /// `Some(n)` overrides the announced `total-objects`; `None` with `send_total` off
    /// sends none.
    announced_total: Option<u64>,
    send_total: bool,
    relative_links: bool,
    /// Links naming another host, as a proxy might leave them.
    foreign_links: bool,
    /// Each page after the first starts this many records early.
    overlap: usize,
    list_omits: Vec<&'static str>,
    detail_omits: Vec<&'static str>,
    /// Ids whose detail answers 404 (deleted after the list was read).
    gone: Vec<i64>,
    delay: Duration,
    /// Calls per window and window length.
    window: Option<(u32, Duration)>,
    fault: FaultFn,
    start: Instant,
    log: Mutex<Vec<Hit>>,
    window_count: Mutex<(u64, u32)>,
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl Fake {
    fn new(count: usize, page_size: usize) -> Self {
        Fake {
            employees: (0..count).map(employee).collect(),
            page_size,
            send_total_pages: true,
            announced_total: None,
            send_total: true,
            relative_links: false,
            foreign_links: false,
            overlap: 0,
            list_omits: vec!["personal_email", "custom_field_values"],
            detail_omits: vec!["designation"],
            gone: Vec::new(),
            delay: Duration::ZERO,
            window: None,
            fault: Box::new(|_, _| None),
            start: Instant::now(),
            log: Mutex::new(Vec::new()),
            window_count: Mutex::new((0, 0)),
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    fn hits(&self, prefix: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path.starts_with(prefix))
            .count()
    }

    /// Requests of the current-staff list (not of a leaver or draft pass).
    fn current_paths(&self) -> Vec<String> {
        self.paths()
            .into_iter()
            .filter(|p| p.starts_with("/api/employees?") && is_current(p))
            .collect()
    }

    fn paths(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.path.clone())
            .collect()
    }
}

/// Page 1 of the current-staff list, as the client asks for it.
const CURRENT: &str = "/api/employees?status=active&terminated=false&deleted=false&page=1";

/// Not a leaver or draft pass.
fn is_current(path: &str) -> bool {
    ![
        "status=inactive",
        "terminated=true",
        "deleted=true",
        "draft=true",
    ]
    .iter()
    .any(|f| path.contains(f))
}

/// A fault for the first `faults.len()` requests to `path`, in order.
fn on_path(path: &'static str, faults: Vec<Fault>) -> FaultFn {
    let seen = AtomicUsize::new(0);
    Box::new(move |_, p| {
        if p != path {
            return None;
        }
        let n = seen.fetch_add(1, Ordering::SeqCst);
        faults.get(n).copied()
    })
}

fn employee(i: usize) -> Value {
    let id = 1000 + i as i64;
    let custom = if i.is_multiple_of(2) {
        json!({"tshirt_size": "M", "desk": i})
    } else {
        json!([{"name": "tshirt_size", "value": "L"}, {"label": "desk", "value": i}])
    };
    json!({
        "id": id,
        "employee_id": format!("E{i:03}"),
        "first_name": format!("First{i}"),
        "last_name": null,
        "official_email": format!("e{i}@example.com"),
        "personal_email": format!("p{i}@example.net"),
        "status": "active",
        "terminated": false,
        "department_id": i % 3 + 1,
        "designation": "Engineer",
        "custom_field_values": custom,
        // Employee i last changed on day i of 2026.
        "updated_at": (chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
            + chrono::Duration::days(i as i64))
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc()
            .to_rfc3339(),
    })
}

struct LiveGuard<'a>(&'a AtomicUsize);
impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn error_body(status: u16, code: &str, message: &str) -> Reply {
    Reply::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"errors": [{"code": code, "message": message}]}).to_string(),
        ))
        .unwrap()
}

async fn handle(State(fake): State<Arc<Fake>>, req: Request) -> Reply {
    let now = Instant::now();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let live = fake.live.fetch_add(1, Ordering::SeqCst) + 1;
    fake.peak.fetch_max(live, Ordering::SeqCst);
    let _live = LiveGuard(&fake.live);
    let index = {
        let mut log = fake.log.lock().unwrap();
        log.push(Hit {
            at: now,
            path: path.clone(),
            status: 0,
            window: 0,
        });
        log.len() - 1
    };
    let (parts, _) = req.into_parts();
    let reply = serve(&fake, &parts, index, &path, now).await;
    let window = fake.window.map_or(0, |(_, len)| {
        (now - fake.start).as_millis() as u64 / len.as_millis() as u64
    });
    let mut log = fake.log.lock().unwrap();
    log[index].status = reply.status().as_u16();
    log[index].window = window;
    reply
}

async fn serve(
    fake: &Fake,
    req: &http::request::Parts,
    index: usize,
    path: &str,
    now: Instant,
) -> Reply {
    let auth = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {KEY}")) {
        // A careless server echoing what it got: the client must not repeat it.
        return error_body(
            401,
            "invalid_credentials",
            &format!("bad header {}", auth.unwrap_or("")),
        );
    }
    if req.headers.get("accept").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return error_body(406, "not_acceptable", "send Accept: application/json");
    }
    let (limit, remaining) = match fake.window {
        None => (1000, 999),
        Some((limit, len)) => {
            let window = (now - fake.start).as_millis() as u64 / len.as_millis() as u64;
            let mut state = fake.window_count.lock().unwrap();
            if state.0 != window {
                *state = (window, 0);
            }
            if state.1 >= limit {
                return Reply::builder()
                    .status(429)
                    .header("retry-after", "1")
                    .header("x-ratelimit-total", limit)
                    .header("x-ratelimit-remaining", 0)
                    .header("x-ratelimit-used-currentrequest", 1)
                    .body(Body::empty())
                    .unwrap();
            }
            state.1 += 1;
            (limit, limit - state.1)
        }
    };
    match (fake.fault)(index, path) {
        None => {}
        Some(Fault::Status(s)) => return error_body(s, "server_error", "try later"),
        Some(Fault::Sleep(d)) => tokio::time::sleep(d).await,
        Some(Fault::BadJson) => {
            return Reply::builder()
                .header("content-type", "application/json")
                .body(Body::from(r#"[{"id": 1000, "employee_id": "E0"#))
                .unwrap()
        }
        Some(Fault::CutShort) => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from_static(br#"[{"id": 1000,"#)),
                Err(std::io::Error::other("connection dropped")),
            ];
            return Reply::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(stream::iter(chunks)))
                .unwrap();
        }
        Some(Fault::TooMany(retry_after)) => {
            let mut r = Reply::builder().status(429);
            if let Some(ra) = retry_after {
                r = r.header("retry-after", ra);
            }
            return r.body(Body::empty()).unwrap();
        }
    }
    tokio::time::sleep(fake.delay).await;

    let host = req
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let rest = req.uri.path().strip_prefix("/api/").unwrap_or("");
    let mut reply = Reply::builder()
        .header("content-type", "application/json")
        .header("x-ratelimit-total", limit)
        .header("x-ratelimit-remaining", remaining)
        .header("x-ratelimit-used-currentrequest", 1);
    let omit = |e: &Value, keys: &[&str]| {
        let mut e = e.clone();
        for k in keys {
            e.as_object_mut().unwrap().remove(*k);
        }
        e
    };
    let body = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["employees"] => {
            let page: usize = req
                .uri
                .query()
                .and_then(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "page")
                        .and_then(|(_, v)| v.parse().ok())
                })
                .unwrap_or(1);
            // `updated_since=YYYY-MM-DD`: employees changed from that day on, in every
            // pass; kept on the next links like the other filters.
            let since = req.uri.query().and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "updated_since")
                    .map(|(_, v)| v.into_owned())
            });
            let pool: Vec<&Value> = fake
                .employees
                .iter()
                .filter(|e| {
                    since.as_deref().is_none_or(|day| {
                        e["updated_at"].as_str().is_some_and(|at| at[..10] >= *day)
                    })
                })
                .collect();
            let since_pair = since
                .as_deref()
                .map(|d| format!("&updated_since={d}"))
                .unwrap_or_default();
            // Leaver and draft passes get the employees their filter selects, plainly
            // paged; the list quirks below are the current-staff list's.
            let filters: Vec<(String, String)> = req
                .uri
                .query()
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .filter(|(k, _)| {
                            ["status", "terminated", "deleted", "draft"].contains(&k.as_ref())
                        })
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let current =
                filters.is_empty() || filters.iter().any(|(k, v)| k == "status" && v == "active");
            if !current {
                let selected: Vec<Value> = pool
                    .iter()
                    .copied()
                    .filter(|e| {
                        filters.iter().all(|(k, v)| {
                            let have = match e.get(k) {
                                Some(Value::String(s)) => s.clone(),
                                Some(Value::Bool(b)) => b.to_string(),
                                _ if k == "status" => "active".to_string(),
                                _ => "false".to_string(),
                            };
                            v.split(',').any(|w| w == have)
                        })
                    })
                    .cloned()
                    .collect();
                let pages = selected.len().div_ceil(fake.page_size).max(1);
                let from = ((page - 1) * fake.page_size).min(selected.len());
                let to = (page * fake.page_size).min(selected.len());
                reply = reply
                    .header("total-objects", selected.len())
                    .header("total-pages", pages);
                if page < pages {
                    let q = url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(filters.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                        .extend_pairs(since.iter().map(|d| ("updated_since", d.as_str())))
                        .append_pair("page", &(page + 1).to_string())
                        .finish();
                    reply = reply.header(
                        "link",
                        format!("<http://{host}/api/employees?{q}>; rel=\"next\""),
                    );
                }
                return reply
                    .body(Body::from(
                        Value::Array(selected[from..to].to_vec()).to_string(),
                    ))
                    .unwrap();
            }
            let n = pool.len();
            let pages = n.div_ceil(fake.page_size).max(1);
            let from = ((page - 1) * fake.page_size)
                .saturating_sub(if page > 1 { fake.overlap } else { 0 })
                .min(n);
            let to = (page * fake.page_size).min(n);
            if fake.send_total {
                let total = fake.announced_total.unwrap_or(n as u64);
                reply = reply.header("total-objects", total);
            }
            if fake.send_total_pages {
                reply = reply.header("total-pages", pages);
            }
            let link = |p: usize| {
                if fake.foreign_links {
                    format!("http://elsewhere.invalid/api/employees?page={p}{since_pair}")
                } else if fake.relative_links {
                    format!("employees?page={p}{since_pair}")
                } else {
                    format!("http://{host}/api/employees?page={p}{since_pair}")
                }
            };
            let mut links = vec![format!("<{}>; rel=\"first\"", link(1))];
            if page > 1 {
                links.push(format!("<{}> ;rel=prev", link(page - 1)));
            }
            if page < pages {
                links.push(format!("<{}>;  rel=\"next\"", link(page + 1)));
            }
            links.push(format!("<{}>; rel=\"last\"", link(pages)));
            reply = reply.header("link", links.join(", "));
            Value::Array(
                pool[from..to.max(from)]
                    .iter()
                    .map(|e| omit(e, &fake.list_omits))
                    .collect(),
            )
        }
        ["employees", id] if fake.gone.iter().any(|g| g.to_string() == *id) => {
            return error_body(404, "not_found", "no such employee");
        }
        ["employees", id] => match fake
            .employees
            .iter()
            .find(|e| e["id"].as_i64().map(|n| n.to_string()).as_deref() == Some(*id))
        {
            Some(e) => omit(e, &fake.detail_omits),
            None => return error_body(404, "not_found", "no such employee"),
        },
        ["departments"] => json!([
            {"id": 1, "name": "Engineering"},
            {"id": "2", "name": "Sales"},
            {"id": 3},
        ]),
        ["branches"] => json!([{"id": 7, "name": "Oslo", "main_office": true}]),
        ["bad_request"] => {
            return error_body(400, "invalid_value", &format!("nope, {KEY}"));
        }
        _ => return error_body(404, "not_found", "unknown path"),
    };
    reply.body(Body::from(body.to_string())).unwrap()
}

async fn start(fake: Fake) -> (Arc<Fake>, FreshteamConfig) {
    let fake = Arc::new(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(handle).with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, config(&format!("http://{addr}/api")))
}

fn config(base: &str) -> FreshteamConfig {
    let mut c = FreshteamConfig::new("acme", Some(base), SecretString::new(KEY)).unwrap();
    c.concurrency = 4;
    c.request_timeout = Duration::from_secs(5);
    c.max_attempts = 4;
    c.backoff_base = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(20);
    c.max_throttle_wait = Duration::from_secs(30);
    c
}

fn request(fields: &[&str]) -> SourceRequest {
    SourceRequest {
        fields: fields.iter().map(|s| s.to_string()).collect(),
        ..SourceRequest::default()
    }
}

#[derive(Default)]
struct Recorder {
    phases: Mutex<Vec<String>>,
    totals: Mutex<Vec<u64>>,
    warnings: Mutex<Vec<String>>,
}

impl ProgressSink for Recorder {
    fn phase(&self, message: &str) {
        self.phases.lock().unwrap().push(message.to_string());
    }
    fn set_total(&self, total: u64) {
        self.totals.lock().unwrap().push(total);
    }
    fn warn(&self, message: &str) {
        self.warnings.lock().unwrap().push(message.to_string());
    }
}

fn employee_ids(snapshot: &SourceSnapshot) -> Vec<i64> {
    snapshot.employees.iter().map(|e| e.id).collect()
}

fn all_ids(n: usize) -> Vec<i64> {
    (0..n as i64).map(|i| 1000 + i).collect()
}

#[tokio::test]
async fn walks_the_link_chain_when_the_page_count_is_unknown() {
    // 19 records, 3 a page: seven pages, the last one short; relative links.
    let mut fake = Fake::new(19, 3);
    fake.send_total_pages = false;
    fake.relative_links = true;
    let (fake, mut config) = start(fake).await;
    // A key pasted with a trailing line break still works.
    config.api_key = SecretString::new(format!("{KEY}\n"));
    let client = FreshteamClient::new(config).unwrap();
    let progress = Recorder::default();
    let snap = client
        .fetch(&request(&["employee_id", "department_id"]), &progress)
        .await
        .unwrap();
    assert_eq!(employee_ids(&snap), all_ids(19));
    assert_eq!(
        snap.employees[4].values,
        vec![Some("E004".into()), Some("2".into())]
    );
    let expected: Vec<String> = std::iter::once(CURRENT.to_string())
        .chain((2..=7).map(|p| format!("/api/employees?page={p}")))
        .collect();
    assert_eq!(fake.current_paths(), expected);
    // Seven pages of current staff, one (empty) page per leaver and draft pass.
    assert_eq!(snap.stats.list_requests, 11);
    assert_eq!(snap.stats.list_by_population, [7, 1, 1, 1, 1]);
    assert_eq!(snap.stats.detail_requests, 0);
    assert_eq!(*progress.totals.lock().unwrap(), vec![19]);
    assert!(progress.phases.lock().unwrap()[0].contains("page 1"));
}

#[tokio::test]
async fn fetches_remaining_pages_concurrently_once_the_page_count_is_known() {
    let mut fake = Fake::new(19, 3);
    fake.delay = Duration::from_millis(60);
    let (fake, config) = start(fake).await;
    let client = FreshteamClient::new(config).unwrap();
    let progress = Recorder::default();
    let snap = client
        .fetch(&request(&["employee_id"]), &progress)
        .await
        .unwrap();
    assert_eq!(employee_ids(&snap), all_ids(19));
    assert_eq!(snap.stats.list_requests, 7 + 4);
    assert_eq!(fake.current_paths()[0], CURRENT);
    let peak = fake.peak.load(Ordering::SeqCst);
    assert!((2..=4).contains(&peak), "peak in flight {peak}");
    let phases = progress.phases.lock().unwrap();
    assert!(
        phases.iter().any(|p| p.contains("page 7 of 7")),
        "{phases:?}"
    );
}

#[tokio::test]
async fn overlapping_pages_are_deduplicated() {
    let mut fake = Fake::new(10, 4);
    fake.overlap = 1;
    let (fake, config) = start(fake).await;
    let client = FreshteamClient::new(config).unwrap();
    let snap = client
        .fetch(&request(&["employee_id"]), &NoProgress)
        .await
        .unwrap();
    assert_eq!(employee_ids(&snap), all_ids(10));
    assert_eq!(fake.current_paths().len(), 3);
}

#[tokio::test]
async fn fewer_records_than_announced_are_read_again_then_reported() {
    let mut fake = Fake::new(5, 2);
    fake.announced_total = Some(6);
    let (fake, config) = start(fake).await;
    let client = FreshteamClient::new(config).unwrap();
    let progress = Recorder::default();
    let snap = client
        .fetch(&request(&["employee_id"]), &progress)
        .await
        .unwrap();
    assert_eq!(snap.employees.len(), 5);
    assert_eq!(fake.current_paths().len(), 6);
    let warnings = progress.warnings.lock().unwrap();
    assert!(warnings[0].contains("announced 6"), "{warnings:?}");
}

#[tokio::test]
async fn projects_custom_fields_and_reads_details_only_when_needed() {
    let fields = [
        "employee_id",
        "terminated",
        "personal_email",
        "designation",
        "custom_field_values.tshirt_size",
        "custom_field_values.desk",
        "last_name",
    ];
    let (fake, config) = start(Fake::new(4, 3)).await;
    let client = FreshteamClient::new(config).unwrap();

    let snap = client.fetch(&request(&fields), &NoProgress).await.unwrap();
    assert_eq!(fake.hits("/api/employees/"), 0);
    assert_eq!(snap.stats.detail_requests, 0);
    assert_eq!(
        snap.employees[0].values,
        vec![
            Some("E000".into()),
            Some("false".into()),
            None,
            Some("Engineer".into()),
            None,
            None,
            None
        ]
    );

    let mut with_detail = request(&fields);
    with_detail.needs_detail = true;
    let snap = client.fetch(&with_detail, &NoProgress).await.unwrap();
    assert_eq!(fake.hits("/api/employees/"), 4);
    assert_eq!(snap.stats.detail_requests, 4);
    // Object-shaped custom fields (even index) and list-shaped ones (odd index); the
    // detail lacks `designation`, so the list's value stays.
    assert_eq!(
        snap.employees[0].values,
        vec![
            Some("E000".into()),
            Some("false".into()),
            Some("p0@example.net".into()),
            Some("Engineer".into()),
            Some("M".into()),
            Some("0".into()),
            None
        ]
    );
    assert_eq!(snap.employees[3].values[4], Some("L".into()));
    assert_eq!(snap.employees[3].values[5], Some("3".into()));
}

#[tokio::test]
async fn an_employee_deleted_before_its_detail_keeps_its_list_fields() {
    let mut fake = Fake::new(3, 5);
    fake.gone = vec![1001];
    let (_fake, config) = start(fake).await;
    let client = FreshteamClient::new(config).unwrap();
    let mut req = request(&["employee_id", "personal_email"]);
    req.needs_detail = true;
    let progress = Recorder::default();
    let snap = client.fetch(&req, &progress).await.unwrap();
    assert_eq!(employee_ids(&snap), all_ids(3));
    assert_eq!(snap.employees[1].values, vec![Some("E001".into()), None]);
    assert_eq!(snap.employees[2].values[1], Some("p2@example.net".into()));
    let warnings = progress.warnings.lock().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("1001"), "{warnings:?}");
}

#[tokio::test]
async fn one_call_per_lookup() {
    let (fake, config) = start(Fake::new(2, 5)).await;
    let client = FreshteamClient::new(config).unwrap();
    let mut req = request(&["department_id"]);
    req.lookups = vec![
        LookupKind::Departments,
        LookupKind::Branches,
        LookupKind::Departments,
    ];
    let snap = client.fetch(&req, &NoProgress).await.unwrap();
    assert_eq!(fake.hits("/api/departments"), 1);
    assert_eq!(fake.hits("/api/branches"), 1);
    assert_eq!(snap.stats.lookup_requests, 2);
    let departments = &snap.lookups[&LookupKind::Departments];
    assert_eq!(departments.len(), 2);
    assert_eq!(departments[&2], "Sales");
    assert_eq!(snap.lookups[&LookupKind::Branches][&7], "Oslo");
}

#[tokio::test]
async fn an_incremental_read_asks_every_pass_for_the_changed_day_only() {
    // Employee i changed on day i of 2026 at noon; 3 a page. From 1 February (day 31):
    // E031..E039, of whom E035 is terminated and E036 inactive; E005 was deleted in
    // January and does not come back.
    let mut fake = Fake::new(40, 3);
    fake.employees[35]["terminated"] = json!(true);
    fake.employees[36]["status"] = json!("inactive");
    fake.employees[5]["deleted"] = json!(true);
    let (fake, config) = start(fake).await;
    let client = FreshteamClient::new(config).unwrap();
    let mut req = request(&["employee_id", "custom_field_values.desk"]);
    req.needs_detail = true;
    req.lookups = vec![LookupKind::Departments];
    // 23:30 UTC on 1 February (01:30 on the 2nd at +02:00): the date asked for is the
    // UTC one, and its whole day comes back (E031 changed at noon, before the instant).
    req.updated_since = Some(
        chrono::DateTime::parse_from_rfc3339("2026-02-02T01:30:00+02:00")
            .unwrap()
            .with_timezone(&chrono::Utc),
    );
    assert_eq!(req.updated_since_param().as_deref(), Some("2026-02-01"));
    let snap = client.fetch(&req, &NoProgress).await.unwrap();

    assert_eq!(employee_ids(&snap), (1031..=1039).collect::<Vec<_>>());
    let population = |id: i64| {
        snap.employees
            .iter()
            .find(|e| e.id == id)
            .unwrap()
            .population
    };
    assert_eq!(population(1035), Population::Terminated);
    assert_eq!(population(1036), Population::Inactive);
    assert_eq!(population(1031), Population::Active);
    // Every list request of every pass, later pages included, carries the date.
    let lists: Vec<String> = fake
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("/api/employees?"))
        .collect();
    assert_eq!(lists.len(), 7, "{lists:?}");
    for path in &lists {
        assert!(path.contains("updated_since=2026-02-01"), "{path}");
    }
    for filter in [
        "status=active&terminated=false&deleted=false&updated_since=2026-02-01&page=1",
        "status=inactive&updated_since=2026-02-01&page=1",
        "terminated=true&updated_since=2026-02-01&page=1",
        "deleted=true&updated_since=2026-02-01&page=1",
        "draft=true&updated_since=2026-02-01&page=1",
    ] {
        assert!(
            lists.contains(&format!("/api/employees?{filter}")),
            "{filter} not among {lists:?}"
        );
    }
    // Nine changed records, three a page in the current-staff pass (which also lists
    // the two leavers), one page for each other pass; details only for those listed,
    // lookups as always.
    assert_eq!(snap.stats.list_by_population, [3, 1, 1, 1, 1]);
    assert_eq!(snap.stats.list_requests, 7);
    assert_eq!(snap.stats.detail_requests, 9);
    assert_eq!(fake.hits("/api/employees/"), 9);
    assert_eq!(snap.stats.lookup_requests, 1);
    assert_eq!(snap.employees[0].values[1], Some("31".into()));

    // Without it, the same client reads everyone: 14 pages of current staff.
    let full = client
        .fetch(&request(&["employee_id"]), &NoProgress)
        .await
        .unwrap();
    assert_eq!(full.employees.len(), 40);
    assert_eq!(full.stats.list_by_population, [14, 1, 1, 1, 1]);
}

#[tokio::test]
async fn authorize_reads_the_count_or_counts() {
    let (fake, config) = start(Fake::new(7, 3)).await;
    let client = FreshteamClient::new(config).unwrap();
    let info = client.authorize().await.unwrap();
    assert_eq!(info.employees, 7);
    assert_eq!(info.host, "127.0.0.1");
    assert_eq!(fake.log.lock().unwrap().len(), 1);

    let mut fake = Fake::new(7, 3);
    fake.send_total = false;
    let (_fake, config) = start(fake).await;
    let info = FreshteamClient::new(config)
        .unwrap()
        .authorize()
        .await
        .unwrap();
    assert_eq!(info.employees, 7);
}

#[tokio::test]
async fn refusals_are_actionable_and_never_show_the_key() {
    let (_fake, config) = start(Fake::new(1, 1)).await;
    let base = config.api_root.to_string();
    let check = |e: &SourceError| {
        let text = format!("{e} {e:?}");
        assert!(!text.contains(KEY), "{text}");
    };

    let mut wrong = config.clone();
    wrong.api_key = SecretString::new("not-the-key");
    let e = FreshteamClient::new(wrong)
        .unwrap()
        .authorize()
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::InvalidCredentials { .. }), "{e:?}");
    assert!(e.to_string().contains("API Settings"));

    let e = FreshteamClient::new(config.clone())
        .unwrap()
        .authorize()
        .await;
    assert!(e.is_ok());

    let unknown = FreshteamConfig {
        api_root: Url::parse(&base.replace("/api", "/nope")).unwrap(),
        ..config.clone()
    };
    let e = FreshteamClient::new(unknown)
        .unwrap()
        .authorize()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SourceError::UnknownAccount { path, .. } if path == "/nope/employees?page=1"),
        "{e:?}"
    );
    check(&e);

    // 403 and 400 from the body, with the body's message kept but the key redacted.
    let mut fake = Fake::new(1, 1);
    fake.fault = Box::new(|_, path| {
        path.starts_with("/api/employees")
            .then_some(Fault::Status(403))
    });
    let (_f, forbidden) = start(fake).await;
    let e = FreshteamClient::new(forbidden)
        .unwrap()
        .authorize()
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::Forbidden { .. }), "{e:?}");
    assert!(e.to_string().contains("role"));
    check(&e);

    let client = FreshteamClient::new(config).unwrap();
    let tally = ReadTally::default();
    let e = client
        .get(&tally, &client.endpoint(&["bad_request"]), Call::Lookup)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&e, SourceError::Rejected { status: 400, detail, .. } if detail.contains("invalid_value: nope, [redacted]")),
        "{e:?}"
    );
    check(&e);
}

#[tokio::test]
async fn server_errors_on_every_other_call_are_survived() {
    let mut fake = Fake::new(5, 2);
    fake.send_total_pages = false;
    // Every request fails once, then succeeds.
    let seen = Mutex::new(std::collections::HashSet::new());
    fake.fault = Box::new(move |_, p| {
        seen.lock()
            .unwrap()
            .insert(p.to_string())
            .then_some(Fault::Status(500))
    });
    let (fake, mut config) = start(fake).await;
    config.concurrency = 1;
    let client = FreshteamClient::new(config).unwrap();
    let mut req = request(&["employee_id", "personal_email"]);
    req.needs_detail = true;
    req.lookups = vec![LookupKind::Departments];
    let snap = client.fetch(&req, &NoProgress).await.unwrap();
    assert_eq!(employee_ids(&snap), all_ids(5));
    assert_eq!(snap.employees[2].values[1], Some("p2@example.net".into()));
    let log = fake.log.lock().unwrap();
    let failed = log.iter().filter(|h| h.status == 500).count() as u32;
    assert_eq!(failed, 13); // 3 + 4 list pages, 5 details, 1 lookup, each failed once
    assert_eq!(snap.stats.retries, failed);
    let s = &snap.stats;
    assert_eq!(
        (s.list_requests + s.detail_requests + s.lookup_requests) as usize,
        log.len()
    );
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let mut fake = Fake::new(3, 5);
    fake.fault = on_path(CURRENT, vec![Fault::Sleep(Duration::from_millis(600))]);
    let (fake, mut config) = start(fake).await;
    config.request_timeout = Duration::from_millis(200);
    let client = FreshteamClient::new(config).unwrap();
    let snap = client
        .fetch(&request(&["employee_id"]), &NoProgress)
        .await
        .unwrap();
    assert_eq!(snap.employees.len(), 3);
    assert_eq!(snap.stats.retries, 1);
    assert_eq!(fake.hits(CURRENT), 2);
}

#[tokio::test]
async fn truncated_and_unparseable_bodies_are_retried() {
    let mut fake = Fake::new(3, 5);
    fake.fault = on_path(CURRENT, vec![Fault::CutShort, Fault::BadJson]);
    let (fake, config) = start(fake).await;
    let client = FreshteamClient::new(config).unwrap();
    let snap = client
        .fetch(&request(&["employee_id"]), &NoProgress)
        .await
        .unwrap();
    assert_eq!(snap.employees.len(), 3);
    assert_eq!(snap.stats.retries, 2);
    assert_eq!(fake.hits(CURRENT), 3);
}

#[tokio::test]
async fn retries_run_out_with_the_path_and_last_problem() {
    let mut fake = Fake::new(3, 5);
    fake.fault = Box::new(|_, p| (p == CURRENT).then_some(Fault::Status(503)));
    let (fake, config) = start(fake).await;
    let client = FreshteamClient::new(config).unwrap();
    let e = client
        .fetch(&request(&["employee_id"]), &NoProgress)
        .await
        .unwrap_err();
    match &e {
        SourceError::RetriesExhausted {
            path,
            attempts,
            detail,
        } => {
            assert_eq!(path, CURRENT);
            assert_eq!(*attempts, 4);
            assert!(
                detail.contains("503") && detail.contains("try later"),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.hits(CURRENT), 4);
}

#[tokio::test]
async fn an_unreachable_host_says_so() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut config = config(&format!("http://{addr}/api"));
    config.max_attempts = 2;
    let e = FreshteamClient::new(config)
        .unwrap()
        .authorize()
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::Unreachable { .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains(KEY));
}

#[tokio::test]
async fn throttling_holds_every_request_until_the_window_reopens() {
    // 4 calls per 1 s window, 9 pages fetched 4 at a time.
    let mut fake = Fake::new(17, 2);
    fake.window = Some((4, Duration::from_secs(1)));
    fake.delay = Duration::from_millis(20);
    let (fake, config) = start(fake).await;
    let client = FreshteamClient::new(config).unwrap();
    let snap = client
        .fetch(&request(&["employee_id"]), &NoProgress)
        .await
        .unwrap();
    assert_eq!(employee_ids(&snap), all_ids(17));

    let log = fake.log.lock().unwrap();
    let throttled: Vec<&Hit> = log.iter().filter(|h| h.status == 429).collect();
    assert!(!throttled.is_empty());
    assert_eq!(snap.stats.throttled as usize, throttled.len());
    assert_eq!(snap.stats.retries, 0, "429s don't use up attempts");
    assert_eq!(snap.stats.list_requests as usize, 9 + 4 + throttled.len());
    for t in &throttled {
        let early: Vec<_> = log
            .iter()
            .filter(|h| h.at > t.at && h.at < t.at + Duration::from_secs(1))
            .map(|h| &h.path)
            .collect();
        assert!(
            early.is_empty(),
            "sent before Retry-After passed: {early:?}"
        );
        let same_window = throttled.iter().filter(|o| o.window == t.window).count();
        assert_eq!(same_window, 1, "one throttled call per window");
    }
    assert!(
        fake.peak.load(Ordering::SeqCst) >= 2,
        "pages went out together"
    );
}

#[tokio::test]
async fn a_retry_after_past_the_budget_fails_at_once() {
    let mut fake = Fake::new(3, 5);
    fake.fault = Box::new(|_, _| Some(Fault::TooMany(Some("120"))));
    let (fake, mut config) = start(fake).await;
    config.max_throttle_wait = Duration::from_secs(5);
    let started = Instant::now();
    let e = FreshteamClient::new(config)
        .unwrap()
        .fetch(&request(&["employee_id"]), &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SourceError::RateLimited { limit_secs: 5, detail, .. } if detail.contains("120s")),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // The passes that were in flight together each got their 429; none waited.
    let sent = fake.log.lock().unwrap().len();
    assert!((1..=5).contains(&sent), "{sent} requests");
}

#[tokio::test]
async fn links_to_another_origin_are_followed_on_ours() {
    let mut fake = Fake::new(7, 3);
    fake.foreign_links = true;
    fake.send_total_pages = false;
    let (fake, config) = start(fake).await;
    let snap = FreshteamClient::new(config)
        .unwrap()
        .fetch(&request(&["employee_id"]), &NoProgress)
        .await
        .unwrap();
    assert_eq!(employee_ids(&snap), all_ids(7));
    assert_eq!(fake.current_paths().len(), 3);
}

#[test]
fn page_parameter_is_replaced_in_place() {
    let url = Url::parse("https://a.example/api/employees?status=active&page=2&sort=id").unwrap();
    assert_eq!(page_number(&url), Some(2));
    assert_eq!(
        with_page(&url, 9).as_str(),
        "https://a.example/api/employees?status=active&page=9&sort=id"
    );
    let bare = Url::parse("https://a.example/api/employees?cursor=x").unwrap();
    assert_eq!(page_number(&bare), None);
    assert_eq!(
        with_page(&bare, 3).as_str(),
        "https://a.example/api/employees?cursor=x&page=3"
    );
}

#[test]
fn rejects_unusable_configuration() {
    let mut c = config("http://127.0.0.1:1/api");
    c.api_key = SecretString::new("  ");
    assert!(matches!(
        FreshteamClient::new(c),
        Err(SourceError::Config(_))
    ));
    let mut c = config("http://127.0.0.1:1/api");
    c.api_key = SecretString::new("abc\ndef");
    let e = FreshteamClient::new(c).err().unwrap();
    assert!(!e.to_string().contains("abc"));
    let c = FreshteamConfig {
        api_root: Url::parse("mailto:x@example.com").unwrap(),
        ..config("http://127.0.0.1:1/api")
    };
    assert!(matches!(
        FreshteamClient::new(c),
        Err(SourceError::Config(_))
    ));
}

#[test]
fn error_bodies_are_summarised() {
    let body = json!({"errors": [
        {"code": "invalid_value", "message": "must be a date", "field": "joining_date"},
        {"message": "second"}
    ]});
    assert_eq!(
        describe_errors(&body).unwrap(),
        "invalid_value: must be a date (field joining_date); second"
    );
    assert_eq!(
        describe_errors(&json!({"code": "not_found"})).unwrap(),
        "not_found"
    );
    assert_eq!(describe_errors(&json!({"errors": []})), None);
}

/// Runs in a child process of the test binary (see below), so that its trace-level
/// subscriber is the only one and sees every event, hyper's included.
async fn exercise_with_logging() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let mut fake = Fake::new(4, 3);
    fake.fault = Box::new(|i, _| match i {
        0 => Some(Fault::Status(500)),
        1 => Some(Fault::TooMany(Some("1"))),
        _ => None,
    });
    let (_fake, config) = start(fake).await;
    let mut wrong = config.clone();
    wrong.api_key = SecretString::new("another-secret-value");
    let client = FreshteamClient::new(config).unwrap();
    let mut req = request(&["employee_id"]);
    req.needs_detail = true;
    client.fetch(&req, &NoProgress).await.unwrap();
    let bad = client.endpoint(&["bad_request"]);
    assert!(client
        .get(&ReadTally::default(), &bad, Call::Lookup)
        .await
        .is_err());
    assert!(FreshteamClient::new(wrong)
        .unwrap()
        .authorize()
        .await
        .is_err());
}

const LOG_CHILD: &str = "FRESHTEAM_CLIENT_LOG_CHILD";

#[tokio::test]
async fn logs_at_every_level_never_carry_the_key() {
    if std::env::var_os(LOG_CHILD).is_some() {
        return exercise_with_logging().await;
    }
    // A process of its own: a subscriber set while other tests run in parallel threads
    // can miss events (tracing caches per-callsite interest globally).
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "source::client::tests::logs_at_every_level_never_carry_the_key",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LOG_CHILD, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for expected in [
        "1 passed",
        "TRACE hyper",
        "Freshteam response",
        "Freshteam request failed, retrying",
        "Freshteam rate limit reached, waiting",
        "Freshteam refused the request",
    ] {
        assert!(text.contains(expected), "no '{expected}' in:\n{text}");
    }
    assert!(!text.contains(KEY) && !text.contains("another-secret-value"));
}
