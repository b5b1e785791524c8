//! What the destination refuses: a 400 on one member is that member's error row with
//! the service's `scimType` and detail, on every write path (POST, PATCH, PUT, /Bulk);
//! and, through the real `sync`, `profile: RewardGateway` refuses names before any
//! request while the refusal memory keeps the service's own refusals from being sent
//! again.

mod support;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use freshteam_operator::destination::{
    Capabilities, MemberDirectory, ScimClient, ScimConfig, UpdateOp, WriteOp, WriteOutcome,
};
use freshteam_operator::member::{Attr, AttrSet, Change, Member};
use freshteam_operator::secret::SecretString;
use freshteam_simulator::SimConfig;
use serde_json::{json, Value};
use support::fault_front::read_request;
use support::sync_env::{employee_id, Env, API_KEY};

const REFUSAL: &str = "name.givenName: only letters, spaces, hyphens, dots and apostrophes";

/// A small SCIM service in memory that refuses, with 400 `invalidValue`, any write
/// giving a first name with a digit; with `/Bulk` (at most 10 operations) and PATCH.
#[derive(Default)]
struct Refusing {
    users: Mutex<Vec<Value>>,
    /// (method, path) of every write request.
    writes: Mutex<Vec<(String, String)>>,
}

/// Whether a body (a user, a PATCH, or a part of them) gives a first name with a digit.
fn digit_name(v: &Value) -> bool {
    let digit = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.chars().any(|c| c.is_ascii_digit()))
    };
    match v {
        Value::Object(o) => {
            o.get("givenName").is_some_and(digit)
                || (o
                    .get("path")
                    .and_then(Value::as_str)
                    .is_some_and(|p| p.ends_with("givenName"))
                    && o.get("value").is_some_and(digit))
                || o.values().any(digit_name)
        }
        Value::Array(a) => a.iter().any(digit_name),
        _ => false,
    }
}

fn scim(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/scim+json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn refusal() -> (u16, Value) {
    (
        400,
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": "400",
            "scimType": "invalidValue",
            "detail": REFUSAL,
        }),
    )
}

impl Refusing {
    async fn start() -> (Arc<Refusing>, String) {
        let state = Arc::new(Refusing::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v2", listener.local_addr().unwrap());
        let app = Router::new()
            .fallback(|State(s): State<Arc<Refusing>>, req: Request| async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let (status, answer) = s.answer(&method, &path, &body);
                scim(status, answer)
            })
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (state, url)
    }

    fn answer(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let path = path.strip_prefix("/v2").unwrap_or(path);
        if method != "GET" {
            self.writes
                .lock()
                .unwrap()
                .push((method.to_string(), path.to_string()));
        }
        match (method, path) {
            ("GET", "/ServiceProviderConfig") => (
                200,
                json!({
                    "patch": {"supported": true},
                    "bulk": {"supported": true, "maxOperations": 10, "maxPayloadSize": 1048576},
                    "filter": {"supported": false},
                    "etag": {"supported": false},
                }),
            ),
            ("GET", "/Users") => {
                let users = self.users.lock().unwrap().clone();
                (
                    200,
                    json!({"totalResults": users.len(), "startIndex": 1, "itemsPerPage": users.len(), "Resources": users}),
                )
            }
            ("POST", "/Bulk") => (200, self.bulk(body)),
            _ => self.one(method, path, body),
        }
    }

    /// One resource request: create, read, PATCH or PUT a user.
    fn one(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let mut users = self.users.lock().unwrap();
        let id = path.strip_prefix("/Users/");
        let at = id.and_then(|id| users.iter().position(|u| u["id"] == id));
        match (method, at) {
            ("POST", _) if path == "/Users" => {
                if digit_name(body) {
                    return refusal();
                }
                let mut user = body.clone();
                user["id"] = json!(format!("u{}", users.len() + 1));
                users.push(user.clone());
                (201, user)
            }
            ("GET", Some(i)) => (200, users[i].clone()),
            ("GET", None) if id == Some("u-odd") => refusal(),
            ("PATCH" | "PUT", Some(_)) if digit_name(body) => refusal(),
            ("PATCH", Some(i)) => {
                for op in body["Operations"].as_array().into_iter().flatten() {
                    if op["path"] == "title" {
                        users[i]["title"] = op["value"].clone();
                    }
                }
                (200, users[i].clone())
            }
            ("PUT", Some(i)) => {
                users[i] = body.clone();
                (200, body.clone())
            }
            _ => (404, json!({"status": "404", "detail": "no such resource"})),
        }
    }

    fn bulk(&self, body: &Value) -> Value {
        let ops = body["Operations"].as_array().cloned().unwrap_or_default();
        let answers: Vec<Value> = ops
            .iter()
            .map(|op| {
                let method = op["method"].as_str().unwrap_or_default();
                let path = op["path"].as_str().unwrap_or_default();
                let (status, answer) = self.one(method, path, &op["data"]);
                let mut a =
                    json!({"method": method, "bulkId": op["bulkId"], "status": status.to_string()});
                if status >= 400 {
                    a["response"] = answer;
                } else {
                    a["location"] = json!(format!(
                        "/v2/Users/{}",
                        answer["id"].as_str().unwrap_or_default()
                    ));
                }
                a
            })
            .collect();
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkResponse"], "Operations": answers})
    }
}

fn member(n: u32, first_name: &str) -> Member {
    Member {
        employee_id: format!("E{n}"),
        email: format!("m{n}@example.com"),
        first_name: Some(first_name.into()),
        active: true,
        ..Member::default()
    }
}

async fn client(url: &str, adjust: fn(&Capabilities) -> Capabilities) -> ScimClient {
    let config = ScimConfig::new(url, SecretString::new("t".to_string())).unwrap();
    let client = ScimClient::connect(config).await.expect("connects");
    let caps = adjust(client.capabilities());
    client.with_capabilities(caps)
}

fn creates(names: &[&str]) -> Vec<WriteOp> {
    names
        .iter()
        .enumerate()
        .map(|(n, name)| WriteOp::Create {
            member: member(n as u32 + 1, name),
        })
        .collect()
}

/// The outcome the service's 400 must come to.
fn refused_row(what: &str) -> WriteOutcome {
    WriteOutcome::Failed {
        field: None,
        message: format!(
            "could not {what} the member: the destination answered 400 invalidValue: {REFUSAL}"
        ),
        refused: Some(format!("400 invalidValue: {REFUSAL}")),
    }
}

fn rename(id: &str, n: u32, to: &str) -> WriteOp {
    WriteOp::Update(UpdateOp {
        id: id.into(),
        version: None,
        has_work_email: true,
        changes: vec![Change::Set(Attr::FirstName, to.into())],
        desired: member(n, to),
        managed: [Attr::Email, Attr::FirstName]
            .into_iter()
            .collect::<AttrSet>(),
    })
}

#[tokio::test]
async fn a_400_on_one_create_or_update_is_that_members_error_row_with_the_services_detail() {
    for (form, adjust) in [
        (
            "PATCH",
            (|c: &Capabilities| Capabilities {
                bulk: None,
                ..c.clone()
            }) as fn(&Capabilities) -> Capabilities,
        ),
        ("PUT", |c: &Capabilities| Capabilities {
            bulk: None,
            patch: false,
            ..c.clone()
        }),
    ] {
        let (service, url) = Refusing::start().await;
        let client = client(&url, adjust).await;
        let outcomes = client
            .apply(&creates(&["Ada", "R2-D2", "Cleo"]), &|_, _| {})
            .await;
        assert!(
            matches!(outcomes[0], WriteOutcome::Created { .. }),
            "{form}"
        );
        assert_eq!(outcomes[1], refused_row("create"), "{form}");
        assert!(
            matches!(outcomes[2], WriteOutcome::Created { .. }),
            "{form}"
        );

        let ops = [rename("u1", 1, "C-3PO"), rename("u2", 3, "Clio")];
        let outcomes = client.apply(&ops, &|_, _| {}).await;
        assert_eq!(outcomes[0], refused_row("update"), "{form}");
        assert_eq!(outcomes[1], WriteOutcome::Updated, "{form}");
        let methods: Vec<String> = service
            .writes
            .lock()
            .unwrap()
            .iter()
            .map(|w| w.0.clone())
            .collect();
        assert_eq!(
            methods,
            ["POST", "POST", "POST", form, form],
            "one request each, no retry"
        );
    }
}

#[tokio::test]
async fn a_400_to_the_read_before_a_put_is_an_error_row_but_no_refusal_of_values() {
    let (_service, url) = Refusing::start().await;
    let client = client(&url, |c| Capabilities {
        bulk: None,
        patch: false,
        ..c.clone()
    })
    .await;
    let outcomes = client.apply(&[rename("u-odd", 1, "Ada")], &|_, _| {}).await;
    assert_eq!(
        outcomes,
        [WriteOutcome::Failed {
            field: None,
            message: format!(
                "could not read the member: the destination answered 400 invalidValue: {REFUSAL}"
            ),
            refused: None,
        }]
    );
}

#[tokio::test]
async fn a_400_inside_a_bulk_is_that_operations_error_row() {
    let (service, url) = Refusing::start().await;
    let client = client(&url, |c| c.clone()).await;
    assert!(client.capabilities().bulk.is_some());
    let outcomes = client
        .apply(&creates(&["Ada", "R2-D2", "Cleo", "Dana"]), &|_, _| {})
        .await;
    assert!(matches!(outcomes[0], WriteOutcome::Created { .. }));
    assert_eq!(outcomes[1], refused_row("create"));
    assert!(matches!(outcomes[2], WriteOutcome::Created { .. }));
    assert!(matches!(outcomes[3], WriteOutcome::Created { .. }));
    assert_eq!(
        *service.writes.lock().unwrap(),
        [("POST".to_string(), "/Bulk".to_string())],
        "one bulk request, the refused operation not sent again on its own"
    );
    assert_eq!(client.stats().bulk_requests, 1);
}

// ---- through the real `sync` -------------------------------------------------------

const GUID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

/// A front for `scim2-server` under Reward Gateway's URL form
/// (`/{programme GUID}/scim/v2`), logging every write request (method, body).
struct PrefixFront {
    url: String,
    writes: Arc<Mutex<Vec<(String, String)>>>,
}

impl PrefixFront {
    async fn start(port: u16) -> PrefixFront {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/{GUID}/scim/v2", listener.local_addr().unwrap());
        let writes = Arc::new(Mutex::new(Vec::new()));
        let log = writes.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut inbound).await else {
                        return;
                    };
                    let text = String::from_utf8_lossy(&request).to_string();
                    let method = text.split(' ').next().unwrap_or_default().to_string();
                    if method != "GET" {
                        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
                        log.lock().unwrap().push((method, body.to_string()));
                    }
                    let prefix = format!(" /{GUID}/scim/v2");
                    let end = request.windows(2).position(|w| w == b"\r\n").unwrap();
                    let line =
                        String::from_utf8_lossy(&request[..end]).replacen(&prefix, " /v2", 1);
                    let mut outbound = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .unwrap();
                    outbound.write_all(line.as_bytes()).await.unwrap();
                    outbound.write_all(&request[end..]).await.unwrap();
                    let mut answer = Vec::new();
                    let _ = outbound.read_to_end(&mut answer).await;
                    let _ = inbound.write_all(&answer).await;
                });
            }
        });
        PrefixFront { url, writes }
    }

    fn writes(&self) -> Vec<(String, String)> {
        self.writes.lock().unwrap().clone()
    }
}

/// Ten employees against scim2-server behind Reward Gateway's URL form, three of them
/// with names Reward Gateway refuses.
async fn reward_gateway_env() -> (Env, PrefixFront) {
    let mut env = Env::with(SimConfig {
        employees: 10,
        page_size: 4,
        inactive_percent: 0.0,
        ..SimConfig::default()
    })
    .await;
    for (n, patch) in [
        (2, json!({"first_name": "R2-D2"})),
        (5, json!({"last_name": "<b>Smith</b>"})),
        (7, json!({"first_name": "Ann 😀"})),
    ] {
        env.sim.update_employee(&employee_id(n), patch).unwrap();
    }
    let front = PrefixFront::start(env.scim.port).await;
    env.scim_url = front.url.clone();
    (env, front)
}

fn with_profile(env: &Env, profile: &str) -> std::path::PathBuf {
    let text = env.manifest(API_KEY, Env::default_mapping()).replace(
        "      tokenSecretRef:",
        &format!("      profile: {profile}\n      tokenSecretRef:"),
    );
    env.write("acme.yaml", &text)
}

#[tokio::test]
async fn reward_gateway_profile_lists_refused_names_in_the_dry_run_and_never_sends_them() {
    support::require_peers!(Scim2Server);
    let (env, front) = reward_gateway_env().await;
    let file = with_profile(&env, "RewardGateway");
    let state = env.dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let refused = [
        (
            employee_id(2),
            "firstName",
            "first names",
            "\"R2-D2\" has \"2\"",
        ),
        (
            employee_id(5),
            "lastName",
            "last names",
            "\"<b>Smith</b>\" has \"<\", \">\", \"/\"",
        ),
        (
            employee_id(7),
            "firstName",
            "first names",
            "\"Ann 😀\" has \"😀\"",
        ),
    ];

    let dry = env
        .sync_file(&file, &["--output", "json", "--dry-run", "--bulk", "off"])
        .await;
    assert_eq!(dry.code, 3, "{}", dry.stderr);
    assert_eq!(dry.summary()["created"], 7);
    assert_eq!(dry.summary()["errors"], 3);
    let rows = dry.json()["status"]["errors"].clone();
    for (id, field, what, has) in &refused {
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["employeeId"] == id.as_str())
            .unwrap_or_else(|| panic!("no row for {id}: {rows}"));
        assert_eq!(row["severity"], "error");
        assert_eq!(row["field"], *field);
        assert_eq!(
            row["message"],
            format!("Reward Gateway refuses {what} with characters other than letters, spaces, hyphens, dots and apostrophes: {has}")
        );
    }
    assert!(front.writes().is_empty(), "a dry run writes nothing");

    let real = env
        .sync_file(
            &file,
            &["--output", "json", "--bulk", "off", "--state-file", state],
        )
        .await;
    assert_eq!(real.code, 3, "{}", real.stderr);
    assert_eq!(real.summary()["created"], 7);
    assert_eq!(real.summary()["errors"], 3);
    let writes = front.writes();
    assert_eq!(
        writes.len(),
        7,
        "one POST per valid member, none for the refused"
    );
    assert_eq!(real.api_calls()["destinationWrites"], 7);
    for (_, body) in &writes {
        for name in ["R2-D2", "Smith</b>", "😀"] {
            assert!(!body.contains(name), "a refused name was sent: {body}");
        }
    }
    assert_eq!(env.scim.users().await.len(), 7);

    // The next run: nothing to write, the same three rows, still no request for them.
    let again = env
        .sync_file(
            &file,
            &["--output", "json", "--bulk", "off", "--state-file", state],
        )
        .await;
    assert_eq!(again.code, 3, "{}", again.stderr);
    assert_eq!(again.summary()["errors"], 3);
    assert_eq!(again.summary()["unchanged"], 7);
    assert_eq!(front.writes().len(), 7);
}

#[tokio::test]
async fn reward_gateway_profile_refuses_a_pasted_dashboard_url_with_what_it_should_be() {
    support::require_peers!(Scim2Server);
    let (mut env, _front) = reward_gateway_env().await;
    env.scim_url = format!("http://127.0.0.1:{}/{GUID}/scim/v2/Users", env.scim.port);
    let file = with_profile(&env, "RewardGateway");
    let run = env.sync_file(&file, &[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("spec.destination.scim.url: 'http://127.0.0.1:")
            && run
                .stderr
                .contains("ends in /Users: give the base URL, without /Users")
            && run.stderr.contains(
                "it should look like https://api.rewardgateway.net/{programme GUID}/scim/v2"
            ),
        "{}",
        run.stderr
    );
    // Generic checks neither the URL form nor the names.
    env.scim_url = env.scim.url.clone();
    let file = with_profile(&env, "Generic");
    let run = env
        .sync_file(&file, &["--dry-run", "--output", "json"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary()["created"], 10);
}
