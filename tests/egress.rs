//! Hostile peers: redirects elsewhere, names resolving to internal addresses, a 50 MB
//! body, a Freshteam `link` loop and an absurd `Retry-After`. Each ends in a clear error
//! (or a clear `Failed` run of the real `sync` binary), never a panic or a hang.
//!
//! Every server here listens on 127.0.0.1. Names that "resolve" to 10.0.0.1 or
//! 169.254.169.254 do so through a fixed resolver answer, and are refused before any
//! connection is made: no traffic goes to a non-loopback address.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use freshteam_operator::destination::{DestinationError, ScimClient, ScimConfig};
use freshteam_operator::egress::{Egress, MAX_BODY_BYTES};
use freshteam_operator::progress::NoProgress;
use freshteam_operator::secret::SecretString;
use freshteam_operator::source::{
    EmployeeSource, FreshteamClient, FreshteamConfig, SourceError, SourceRequest,
};
use futures::stream;

const KEY: &str = "ft-egress-key-4b7e21";
const TOKEN: &str = "scim-egress-token-93aa";

type Handler = Arc<dyn Fn(&str, &str) -> Response + Send + Sync>;

struct Peer {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Peer {
    /// A server on 127.0.0.1 answering every request with `handler(host, path?query)`.
    async fn start(handler: impl Fn(&str, &str) -> Response + Send + Sync + 'static) -> Peer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let state: (Handler, Arc<AtomicUsize>) = (Arc::new(handler), hits.clone());
        let app = Router::new()
            .fallback(
                |State((handler, hits)): State<(Handler, Arc<AtomicUsize>)>, req: Request| async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let host = req
                        .headers()
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let path = req
                        .uri()
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    handler(&host, &path)
                },
            )
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Peer { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn redirect(to: &str) -> Response {
    Response::builder()
        .status(302)
        .header("location", to)
        .body(Body::empty())
        .unwrap()
}

fn json(body: &str) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// `size` bytes of a JSON string, streamed without a `content-length`.
fn huge_body(size: usize) -> Response {
    const CHUNK: usize = 64 << 10;
    let chunks = (0..size.div_ceil(CHUNK)).map(|i| {
        let mut c = vec![b'x'; CHUNK];
        if i == 0 {
            c[0] = b'"';
        }
        Ok::<_, std::io::Error>(Bytes::from(c))
    });
    Response::builder()
        .header("content-type", "application/scim+json")
        .body(Body::from_stream(stream::iter(chunks)))
        .unwrap()
}

fn scim_config(url: &str, egress: Egress) -> ScimConfig {
    let mut c = ScimConfig::new(url, SecretString::new(TOKEN)).unwrap();
    c.request_timeout = Duration::from_secs(20);
    c.max_attempts = 3;
    c.backoff_base = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(10);
    c.egress = egress;
    c
}

fn freshteam_config(base: &str, egress: Egress) -> FreshteamConfig {
    let mut c = FreshteamConfig::new("acme", Some(base), SecretString::new(KEY)).unwrap();
    c.request_timeout = Duration::from_secs(20);
    c.max_attempts = 3;
    c.backoff_base = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(10);
    c.egress = egress;
    c
}

fn employees_request() -> SourceRequest {
    SourceRequest {
        fields: vec!["employee_id".into()],
        ..SourceRequest::default()
    }
}

/// A client of `source` under the default egress policy.
fn client_of(source: &Peer) -> FreshteamClient {
    FreshteamClient::new(freshteam_config(&source.url("/api"), Egress::default())).unwrap()
}

/// The error the employee read ends in.
async fn read_error(client: &FreshteamClient) -> SourceError {
    client
        .fetch(&employees_request(), &NoProgress)
        .await
        .unwrap_err()
}

async fn scim_error(config: ScimConfig) -> String {
    match ScimClient::connect(config).await {
        Ok(_) => panic!("connected"),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains(TOKEN), "{text}");
            text
        }
    }
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_refused_and_reported() {
    let elsewhere = Peer::start(|_, _| json("{}")).await;
    let target = elsewhere.url("/scim/v2/ServiceProviderConfig");
    let scim = Peer::start(move |_, _| redirect(&target)).await;
    let e = scim_error(scim_config(&scim.url("/scim/v2"), Egress::default())).await;
    let expected = format!(
        "refused a redirect from http://127.0.0.1:{} to http://127.0.0.1:{}",
        scim.port, elsewhere.port
    );
    assert!(e.contains(&expected), "{e}");
    assert_eq!(elsewhere.hits(), 0, "the redirect was followed");
    assert_eq!(scim.hits(), 1, "a refusal is not retried");

    // To https (another scheme is another origin) and to another host name.
    let port = Arc::new(std::sync::OnceLock::<u16>::new());
    let p = port.clone();
    let scim = Peer::start(move |_, path| {
        let port = p.get().copied().unwrap_or(0);
        if path.contains("ServiceProviderConfig") {
            redirect(&format!("https://127.0.0.1:{port}/scim/v2/x"))
        } else {
            redirect(&format!("http://localhost:{port}/scim/v2/x"))
        }
    })
    .await;
    port.set(scim.port).unwrap();
    let e = scim_error(scim_config(&scim.url("/scim/v2"), Egress::default())).await;
    assert!(
        e.contains(&format!("to https://127.0.0.1:{}", scim.port)),
        "{e}"
    );

    // Freshteam: the same refusal, with the key never sent on.
    let source = Peer::start(move |_, _| redirect("http://localhost:9/api/employees")).await;
    let e = client_of(&source).authorize().await.unwrap_err();
    assert!(
        matches!(&e, SourceError::Unreachable { detail, .. } if detail.contains(&format!("refused a redirect from http://127.0.0.1:{} to http://localhost:9", source.port))),
        "{e}"
    );
    assert_eq!(source.hits(), 1);
}

#[tokio::test]
async fn a_redirect_within_the_origin_is_followed() {
    let port = Arc::new(std::sync::OnceLock::<u16>::new());
    let p = port.clone();
    let scim = Peer::start(move |_, path| match path {
        "/old/ServiceProviderConfig" => redirect(&format!(
            "http://127.0.0.1:{}/scim/v2/ServiceProviderConfig",
            p.get().unwrap()
        )),
        p if p.starts_with("/scim/v2/ServiceProviderConfig") => Response::builder()
            .status(404)
            .body(Body::empty())
            .unwrap(),
        _ => json(
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0,"startIndex":1,"itemsPerPage":0,"Resources":[]}"#,
        ),
    })
    .await;
    port.set(scim.port).unwrap();
    let connected = ScimClient::connect(scim_config(&scim.url("/old"), Egress::default())).await;
    // The list goes to /old/Users (no redirect there): the point is the config was read.
    assert!(connected.is_ok(), "{:?}", connected.err());
}

#[tokio::test]
async fn names_resolving_to_internal_addresses_are_refused_without_the_flag() {
    for ip in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "fd00:ec2::254"] {
        let addr: IpAddr = ip.parse().unwrap();
        let strict = Egress::operator(false).with_fixed_dns("members.example.test", vec![addr]);
        let e = scim_error(scim_config("https://members.example.test/scim/v2", strict)).await;
        assert!(
            e.contains(&format!(
                "refused to connect to members.example.test: it resolves to {ip}"
            )) && e.contains("--allow-custom-endpoints"),
            "{ip}: {e}"
        );

        let strict = Egress::operator(false).with_fixed_dns("acme.example.test", vec![addr]);
        let client =
            FreshteamClient::new(freshteam_config("https://acme.example.test/api", strict))
                .unwrap();
        let started = Instant::now();
        let e = client.authorize().await.unwrap_err();
        assert!(
            matches!(&e, SourceError::Unreachable { detail, .. } if detail.contains(&format!("resolves to {ip}"))),
            "{ip}: {e}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "retried: {e}");
    }

    // IP literals never reach a resolver: refused before a client exists.
    let e = match ScimClient::connect(scim_config(
        "https://169.254.169.254/latest",
        Egress::operator(false),
    ))
    .await
    {
        Err(DestinationError::Config(m)) => m,
        other => panic!("{:?}", other.err()),
    };
    assert!(
        e.contains("169.254.169.254 (cloud metadata address)"),
        "{e}"
    );
    let e = FreshteamClient::new(freshteam_config(
        "https://10.0.0.1/api",
        Egress::operator(false),
    ))
    .err()
    .expect("refused");
    assert!(e.to_string().contains("10.0.0.1 (private address)"), "{e}");
}

#[tokio::test]
async fn the_fixed_resolver_is_really_used_and_the_flag_lets_loopback_through() {
    // With --allow-custom-endpoints the same name, resolving to a local peer, works: so
    // the refusals above come from the rule, not from a lookup that failed.
    let scim = Peer::start(|_, path| {
        if path.contains("ServiceProviderConfig") {
            Response::builder().status(404).body(Body::empty()).unwrap()
        } else {
            json(r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0,"startIndex":1,"itemsPerPage":0,"Resources":[]}"#)
        }
    })
    .await;
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let url = format!("http://members.example.test:{}/scim/v2", scim.port);
    let allowed = Egress::operator(true).with_fixed_dns("members.example.test", vec![loopback]);
    assert!(ScimClient::connect(scim_config(&url, allowed))
        .await
        .is_ok());
    let hits = scim.hits();
    assert!(hits >= 2, "{hits}");
    let strict = Egress::operator(false).with_fixed_dns("members.example.test", vec![loopback]);
    assert!(ScimClient::connect(scim_config(&url, strict))
        .await
        .is_err());
    assert_eq!(scim.hits(), hits, "the strict client connected");
}

#[tokio::test]
async fn a_50_mb_scim_body_is_cut_off_at_the_cap() {
    let scim = Peer::start(|_, _| huge_body(50 << 20)).await;
    let started = Instant::now();
    let e = scim_error(scim_config(&scim.url("/scim/v2"), Egress::default())).await;
    assert!(
        e.contains("GET /scim/v2/ServiceProviderConfig: the answer is larger than the 16 MiB limit on one response body"),
        "{e}"
    );
    assert_eq!(scim.hits(), 1, "a body over the cap is not fetched again");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(MAX_BODY_BYTES, 16 << 20);

    // Announced up front: refused before reading.
    let scim = Peer::start(|_, _| {
        Response::builder()
            .header("content-length", (50u64 << 20).to_string())
            .body(Body::from(vec![b' '; 50 << 20]))
            .unwrap()
    })
    .await;
    let e = scim_error(scim_config(&scim.url("/scim/v2"), Egress::default())).await;
    assert!(e.contains("larger than the 16 MiB limit"), "{e}");
}

#[tokio::test]
async fn a_50_mb_freshteam_page_fails_without_retrying() {
    let source = Peer::start(|_, _| huge_body(50 << 20)).await;
    let e = read_error(&client_of(&source)).await;
    assert!(
        matches!(&e, SourceError::BadResponse { detail, .. } if detail.contains("larger than the 16 MiB limit")),
        "{e}"
    );
    // Never retried: at most one request per population pass.
    assert!((1..=PASSES).contains(&source.hits()), "{}", source.hits());
}

/// The list reads one Freshteam run makes, one per population (current staff, inactive,
/// terminated, deleted, draft), all answered by the same test server here.
const PASSES: usize = 5;

fn page(host: &str, n: usize, next: usize) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .header(
            "link",
            format!("<http://{host}/api/employees?page={next}>; rel=\"next\""),
        )
        .body(Body::from(format!(
            r#"[{{"id": {n}, "employee_id": "E-{n}"}}]"#
        )))
        .unwrap()
}

fn page_number(path: &str) -> usize {
    path.split("page=")
        .nth(1)
        .and_then(|p| p.split('&').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
}

#[tokio::test]
async fn a_freshteam_link_loop_fails_the_read() {
    // 1 → 2 → 3 → 2 → …
    let source = Peer::start(|host, path| {
        let n = page_number(path);
        page(host, n, if n == 3 { 2 } else { n + 1 })
    })
    .await;
    let e = read_error(&client_of(&source)).await;
    assert!(
        matches!(&e, SourceError::BadResponse { detail, .. } if detail.contains("after page 3 points back to a page already read")),
        "{e}"
    );
    // Each pass reads pages 1–3 at most before it sees the loop.
    assert!(
        (3..=3 * PASSES).contains(&source.hits()),
        "{}",
        source.hits()
    );
}

#[tokio::test]
async fn an_endless_link_chain_stops_at_the_page_cap() {
    // Every page links to a page never seen before, repeating the same employee.
    let source = Peer::start(|host, path| {
        let n = page_number(path);
        let mut r = page(host, 1, n + 1);
        *r.body_mut() = Body::from(r#"[{"id": 1, "employee_id": "E-1"}]"#);
        r
    })
    .await;
    let e = read_error(&client_of(&source)).await;
    assert!(
        matches!(&e, SourceError::BadResponse { detail, .. } if detail.contains("after 20000 pages")),
        "{e}"
    );
    // Every pass is bounded by the cap; the first to reach it ends the read.
    assert!(
        (20_000..=20_000 * PASSES).contains(&source.hits()),
        "{}",
        source.hits()
    );
}

#[tokio::test]
async fn an_overflowing_retry_after_fails_the_read_without_a_panic() {
    let source = Peer::start(|_, _| {
        Response::builder()
            .status(429)
            .header("retry-after", "99999999999999999999")
            .body(Body::empty())
            .unwrap()
    })
    .await;
    let client = client_of(&source);
    let started = Instant::now();
    let e = read_error(&client).await;
    assert!(
        matches!(&e, SourceError::RateLimited { detail, .. } if detail.contains("a day or more")),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // The limiter is still usable (its lock was not poisoned by a panic): the next call
    // waits for the window instead of aborting.
    let again = tokio::time::timeout(Duration::from_millis(200), client.authorize()).await;
    assert!(again.is_err(), "held by the 429, as asked");
}

fn empty_scim(_: &str, path: &str) -> Response {
    if path.contains("ServiceProviderConfig") {
        Response::builder().status(404).body(Body::empty()).unwrap()
    } else {
        json(
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0,"startIndex":1,"itemsPerPage":0,"Resources":[]}"#,
        )
    }
}

/// `freshteam-operator sync --output json` against the two peers: (exit code, ImportRun).
async fn sync_run(source: &Peer, scim: &Peer) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.yaml");
    std::fs::write(
        &file,
        format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: freshteam-acme}}
stringData: {{apiKey: "{KEY}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: members-scim}}
stringData: {{token: "{TOKEN}"}}
---
apiVersion: freshteam.provisioning.dev/v1alpha1
kind: FreshteamIntegration
metadata: {{name: acme}}
spec:
  source:
    subdomain: acme
    baseUrl: {base}
    apiKeySecretRef: {{name: freshteam-acme, key: apiKey}}
  destination:
    scim:
      url: {scim}
      tokenSecretRef: {{name: members-scim, key: token}}
  mapping: {{email: official_email}}
"#,
            base = source.url("/api"),
            scim = scim.url("/scim/v2"),
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_freshteam-operator"))
        .args(["sync", "--output", "json", "--dry-run", "--file"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    for secret in [KEY, TOKEN] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
    let run = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"));
    (out.status.code().unwrap_or(-1), run)
}

#[tokio::test]
async fn hostile_peers_end_in_a_clear_failed_sync_run() {
    let looping = Peer::start(|host, path| {
        let n = page_number(path);
        page(host, n, if n == 2 { 1 } else { n + 1 })
    })
    .await;
    let throttling = Peer::start(|_, _| {
        Response::builder()
            .status(429)
            .header("retry-after", "99999999999999999999")
            .body(Body::empty())
            .unwrap()
    })
    .await;
    let fine_scim = Peer::start(empty_scim).await;
    let huge_scim = Peer::start(|_, _| huge_body(50 << 20)).await;
    let fine_source = Peer::start(|host, _| page(host, 1, 1)).await;

    for (source, scim, expected) in [
        (&looping, &fine_scim, "points back to a page already read"),
        (&throttling, &fine_scim, "it asked to wait a day or more"),
        (&fine_source, &huge_scim, "larger than the 16 MiB limit"),
    ] {
        let (code, run) = sync_run(source, scim).await;
        assert_eq!(code, 1, "{run}");
        assert_eq!(run["status"]["phase"], "Failed", "{run}");
        let message = run["status"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{message}");
    }
}
