use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use super::data::{Directory, Generator};
use super::*;

const KEY: &str = "sim-api-key";

fn sim_with(config: SimConfig) -> Simulator {
    Simulator::start(config).expect("simulator starts")
}

fn sim(employees: usize, page_size: usize) -> Simulator {
    sim_with(SimConfig {
        employees,
        page_size,
        ..SimConfig::default()
    })
}

fn url(sim: &Simulator, path_and_query: &str) -> String {
    format!("http://{}{path_and_query}", sim.addr())
}

async fn get_with(sim: &Simulator, path_and_query: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url(sim, path_and_query));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("request reaches the simulator")
}

async fn get(sim: &Simulator, path_and_query: &str) -> reqwest::Response {
    get_with(sim, path_and_query, Some(KEY)).await
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

/// Asserts the Freshteam error shape and returns the error code.
async fn error_code(response: reqwest::Response) -> (u16, String, Option<String>) {
    let status = response.status().as_u16();
    let v = body(response).await;
    let errors = v["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 1, "{v}");
    assert!(errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()));
    (
        status,
        errors[0]["code"].as_str().expect("code").to_string(),
        errors[0]
            .get("field")
            .and_then(Value::as_str)
            .map(str::to_string),
    )
}

fn assert_rate_headers(response: &reqwest::Response) {
    for name in [
        "x-ratelimit-total",
        "x-ratelimit-remaining",
        "x-ratelimit-used-currentrequest",
    ] {
        let value = header(response, name).unwrap_or_else(|| panic!("{name} missing"));
        value.parse::<u32>().expect("numeric rate-limit header");
    }
    assert_eq!(
        header(response, "x-ratelimit-used-currentrequest").as_deref(),
        Some("1")
    );
}

/// The `rel="next"` target of a `link` header, if any.
fn next_link(response: &reqwest::Response) -> Option<String> {
    let link = header(response, "link")?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

fn ids(page: &Value) -> Vec<i64> {
    page.as_array()
        .expect("page is an array")
        .iter()
        .map(|e| e["id"].as_i64().expect("numeric id"))
        .collect()
}

// ---- pagination ----

#[tokio::test]
async fn pages_carry_totals_and_a_next_link_until_the_last() {
    let sim = sim(60, 25);
    let first = get(&sim, "/api/employees?page=1").await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "total-objects").as_deref(), Some("60"));
    assert_eq!(header(&first, "total-pages").as_deref(), Some("3"));
    assert_eq!(
        header(&first, "link"),
        Some(format!(
            "<http://{}/api/employees?page=2>; rel=\"next\"",
            sim.addr()
        ))
    );
    assert_rate_headers(&first);

    // Follow the links the way a client should, without knowing the page size.
    let mut seen = Vec::new();
    let mut next = Some(url(&sim, "/api/employees"));
    let mut sizes = Vec::new();
    while let Some(target) = next {
        let response = reqwest::Client::new()
            .get(&target)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        next = next_link(&response);
        if next.is_none() {
            assert!(header(&response, "link").is_none(), "last page has no link");
        }
        let page = body(response).await;
        sizes.push(page.as_array().unwrap().len());
        seen.extend(ids(&page));
    }
    assert_eq!(sizes, vec![25, 25, 10]);
    assert_eq!(seen, (1001..=1060).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_page_past_the_end_is_empty_and_page_zero_is_rejected() {
    let sim = sim(60, 25);
    let past = get(&sim, "/api/employees?page=4").await;
    assert_eq!(past.status(), 200);
    assert_eq!(header(&past, "total-objects").as_deref(), Some("60"));
    assert!(next_link(&past).is_none());
    assert_eq!(body(past).await, json!([]));

    let (status, code, field) = error_code(get(&sim, "/api/employees?page=0").await).await;
    assert_eq!(
        (status, code.as_str(), field.as_deref()),
        (400, "invalid_value", Some("page"))
    );
}

#[tokio::test]
async fn the_next_link_uses_the_request_host_and_keeps_filters() {
    let sim = sim(80, 10);
    let response = reqwest::Client::new()
        .get(url(&sim, "/api/employees?status=active&page=1"))
        .header("host", "acme.freshteam.test:8443")
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        next_link(&response).as_deref(),
        Some("http://acme.freshteam.test:8443/api/employees?status=active&page=2")
    );
}

#[tokio::test]
async fn an_empty_account_has_zero_pages() {
    let sim = sim(0, 25);
    let response = get(&sim, "/api/employees").await;
    assert_eq!(header(&response, "total-objects").as_deref(), Some("0"));
    assert_eq!(header(&response, "total-pages").as_deref(), Some("0"));
    assert!(header(&response, "link").is_none());
    assert_eq!(body(response).await, json!([]));
}

// ---- filters and order ----

#[tokio::test]
async fn list_filters_select_matching_employees() {
    let sim = sim_with(SimConfig {
        employees: 400,
        page_size: 1000,
        inactive_percent: 10.0,
        ..SimConfig::default()
    });
    let all = sim.employees();
    let inactive = all.iter().filter(|e| e["status"] == "inactive").count();
    assert!(inactive > 0);

    let response = get(&sim, "/api/employees?status=inactive").await;
    assert_eq!(
        header(&response, "total-objects"),
        Some(inactive.to_string())
    );
    let page = body(response).await;
    assert_eq!(page.as_array().unwrap().len(), inactive);
    assert!(page
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["status"] == "inactive"));

    let terminated = body(get(&sim, "/api/employees?terminated=true").await).await;
    assert_eq!(terminated.as_array().unwrap().len(), inactive);

    let one = body(get(&sim, "/api/employees?employee_id=E-00007").await).await;
    assert_eq!(ids(&one), vec![1007]);

    let email = all[9]["official_email"].as_str().unwrap().to_uppercase();
    let by_email = body(get(&sim, &format!("/api/employees?official_email={email}")).await).await;
    assert_eq!(ids(&by_email), vec![1010]);

    let dept = body(get(&sim, "/api/employees?department_id=101&branch_id=302").await).await;
    let expected = all
        .iter()
        .filter(|e| e["department_id"] == 101 && e["branch_id"] == 302)
        .count();
    assert_eq!(dept.as_array().unwrap().len(), expected);
    assert!(expected > 0);

    let none = body(get(&sim, "/api/employees?deleted=true").await).await;
    assert_eq!(none, json!([]));

    let (status, code, field) = error_code(get(&sim, "/api/employees?status=gone").await).await;
    assert_eq!(
        (status, code.as_str(), field.as_deref()),
        (400, "invalid_value", Some("status"))
    );
    let (status, _, field) = error_code(get(&sim, "/api/employees?branch_id=x").await).await;
    assert_eq!((status, field.as_deref()), (400, Some("branch_id")));
}

#[tokio::test]
async fn sort_and_sort_type_order_the_list() {
    let sim = sim(40, 100);
    let page = body(get(&sim, "/api/employees?sort=first_name&sort_type=desc").await).await;
    let names: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["first_name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(names, sorted);
    assert_ne!(ids(&page), (1001..=1040).collect::<Vec<_>>());

    let desc = body(get(&sim, "/api/employees?sort_type=desc").await).await;
    assert_eq!(ids(&desc), (1001..=1040).rev().collect::<Vec<_>>());
    let (status, _, field) = error_code(get(&sim, "/api/employees?sort=salary").await).await;
    assert_eq!((status, field.as_deref()), (400, Some("sort")));
}

// ---- auth ----

#[tokio::test]
async fn missing_or_wrong_keys_get_401_and_forbidden_keys_403() {
    let sim = sim_with(SimConfig {
        forbidden_keys: vec!["no-api-role".into()],
        ..SimConfig::default()
    });
    for key in [None, Some("wrong-key"), Some("")] {
        let response = get_with(&sim, "/api/employees", key).await;
        assert_rate_headers(&response);
        let (status, code, field) = error_code(response).await;
        assert_eq!(
            (status, code.as_str(), field),
            (401, "invalid_credentials", None)
        );
    }
    let basic = reqwest::Client::new()
        .get(url(&sim, "/api/employees"))
        .header("authorization", format!("Basic {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);

    let (status, code, field) =
        error_code(get_with(&sim, "/api/departments", Some("no-api-role")).await).await;
    assert_eq!((status, code.as_str(), field), (403, "forbidden", None));

    assert_eq!(get(&sim, "/api/employees").await.status(), 200);
}

#[tokio::test]
async fn rejected_keys_do_not_use_the_quota() {
    let sim = sim_with(SimConfig {
        rate_limit: Some(2),
        ..SimConfig::default()
    });
    for _ in 0..3 {
        assert_eq!(
            get_with(&sim, "/api/employees", Some("bad")).await.status(),
            401
        );
    }
    let first = get(&sim, "/api/employees").await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        header(&first, "x-ratelimit-remaining").as_deref(),
        Some("1")
    );
    assert_eq!(get(&sim, "/api/employees").await.status(), 200);
    assert_eq!(get(&sim, "/api/employees").await.status(), 429);
}

// ---- detail and lookups ----

#[tokio::test]
async fn the_detail_is_richer_than_the_list() {
    let sim = sim(30, 25);
    let page = body(get(&sim, "/api/employees").await).await;
    let listed = page[4].as_object().unwrap().clone();
    for key in data::LIST_FIELDS {
        assert!(listed.contains_key(*key), "list lacks {key}");
    }
    for key in data::DETAIL_ONLY_FIELDS {
        assert!(!listed.contains_key(*key), "list carries {key}");
    }

    let id = listed["id"].as_i64().unwrap();
    let response = get(&sim, &format!("/api/employees/{id}")).await;
    assert_eq!(response.status(), 200);
    let detail = body(response).await;
    for (key, value) in &listed {
        assert_eq!(&detail[key], value, "{key} differs between list and detail");
    }
    assert!(detail.as_object().unwrap().contains_key("personal_email"));
    assert!(detail.as_object().unwrap().contains_key("date_of_birth"));
    assert!(detail.as_object().unwrap().contains_key("gender"));
    assert!(detail["phone_numbers"].is_array());
    let custom = detail["custom_field_values"].as_object().unwrap();
    assert!(custom.contains_key("tshirt_size"));
    assert!(custom["cost_center"].as_str().unwrap().starts_with("CC-"));
    // A dropdown custom field is an object {id, value}, as Freshteam sends it.
    assert!(custom["work_location"]["id"].is_i64());
    assert!(custom["work_location"]["value"].is_string());
    assert!(detail["level_id"].is_i64());

    for missing in ["/api/employees/999999", "/api/employees/abc"] {
        let (status, code, _) = error_code(get(&sim, missing).await).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{missing}");
    }
}

#[tokio::test]
async fn lookups_name_every_id_the_employees_use() {
    let sim = sim(300, 25);
    let mut lookups = BTreeMap::new();
    for path in [
        "departments",
        "sub_departments",
        "branches",
        "business_units",
        "teams",
        "roles",
        "levels",
    ] {
        let response = get(&sim, &format!("/api/{path}")).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_rate_headers(&response);
        let rows = body(response).await;
        let by_id: BTreeMap<i64, Value> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert!(r["name"].as_str().is_some_and(|n| !n.is_empty()));
                (r["id"].as_i64().unwrap(), r.clone())
            })
            .collect();
        assert!(!by_id.is_empty(), "{path}");
        lookups.insert(path, by_id);
    }

    let employees = sim.employees();
    let ids: HashSet<i64> = employees
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    for e in &employees {
        let has = |lookup: &str, field: &str| {
            lookups[lookup].contains_key(&e[field].as_i64().unwrap_or_else(|| panic!("{field}")))
        };
        assert!(has("departments", "department_id"));
        assert!(has("branches", "branch_id"));
        assert!(has("business_units", "business_unit_id"));
        if !e["team_id"].is_null() {
            assert!(has("teams", "team_id"));
        }
        if let Some(sub) = e["sub_department_id"].as_i64() {
            assert_eq!(
                lookups["sub_departments"][&sub]["department_id"], e["department_id"],
                "a sub-department belongs to the employee's department"
            );
        }
        for role in e["role_ids"].as_array().unwrap() {
            assert!(lookups["roles"].contains_key(&role.as_i64().unwrap()));
        }
        match e["reporting_to_id"].as_i64() {
            Some(manager) => {
                assert!(ids.contains(&manager));
                assert!(manager < e["id"].as_i64().unwrap(), "managers come earlier");
            }
            None => assert_eq!(e["id"], 1001, "only the first employee has no manager"),
        }
    }

    let fields = body(get(&sim, "/api/employee_fields").await).await;
    let kind = |name: &str| {
        fields
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| f["type"].as_str().unwrap().to_string())
    };
    assert_eq!(kind("official_email").as_deref(), Some("standard"));
    assert_eq!(kind("employee_id").as_deref(), Some("standard"));
    for custom in employees[0]["custom_field_values"]
        .as_object()
        .unwrap()
        .keys()
    {
        assert_eq!(kind(custom).as_deref(), Some("custom"), "{custom}");
    }

    let (status, code, _) = error_code(get(&sim, "/api/payroll").await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let post = reqwest::Client::new()
        .post(url(&sim, "/api/employees"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
}

#[test]
fn generated_employees_are_plausible() {
    let directory = Directory::new(Generator::new(3, 3.0), 5000);
    let all = directory.all();
    let mut emails = HashSet::new();
    let mut inactive = 0;
    for (i, e) in all.iter().enumerate() {
        let n = i + 1;
        assert_eq!(e["id"], 1000 + n as i64);
        assert_eq!(e["employee_id"], format!("E-{n:05}"));
        let email = e["official_email"].as_str().unwrap();
        assert!(
            email
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"@.".contains(&b)),
            "{email}"
        );
        assert!(emails.insert(email.to_string()), "duplicate {email}");
        assert_eq!(e["deleted"], false);
        let terminated = e["terminated"].as_bool().unwrap();
        assert_eq!(terminated, e["status"] == "inactive");
        assert_eq!(terminated, !e["termination_date"].is_null());
        if terminated {
            inactive += 1;
            assert!(e["termination_date"].as_str() > e["joining_date"].as_str());
        }
        assert!(e["created_at"].as_str() <= e["updated_at"].as_str());
        // Changed long before any simulator starts: an incremental read finds nobody.
        let updated = chrono::DateTime::parse_from_rfc3339(e["updated_at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert!(
            updated < super::data::after_generated_changes(),
            "{updated}"
        );
        assert!(updated < chrono::Utc::now() - chrono::Duration::days(2));
    }
    // 3 % of 5000 is 150; allow sampling noise.
    assert!((90..=220).contains(&inactive), "{inactive} inactive");
    let middle = all.iter().filter(|e| e["middle_name"].is_null()).count();
    assert!(
        middle > 2500 && middle < 5000,
        "middle_name is often, not always, null"
    );
}

#[test]
fn the_same_seed_gives_the_same_employees() {
    let a = Directory::new(Generator::new(7, 3.0), 500).all();
    let b = Directory::new(Generator::new(7, 3.0), 500).all();
    let c = Directory::new(Generator::new(8, 3.0), 500).all();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[tokio::test]
async fn two_simulators_with_one_seed_serve_identical_pages() {
    let config = SimConfig {
        employees: 70,
        seed: 99,
        ..SimConfig::default()
    };
    let a = sim_with(config.clone());
    let b = sim_with(config);
    for path in ["/api/employees?page=2", "/api/employees/1033"] {
        let x = get(&a, path).await.bytes().await.unwrap();
        let y = get(&b, path).await.bytes().await.unwrap();
        assert_eq!(x, y, "{path}");
    }
}

// ---- rate limit ----

#[tokio::test]
async fn over_the_limit_gets_429_with_retry_after_until_the_window_reopens() {
    let sim = sim_with(SimConfig {
        rate_limit: Some(3),
        window: Duration::from_secs(1),
        ..SimConfig::default()
    });
    // A fresh window with a full quota starts now, so the burst below stays inside it.
    sim.set_rate_limit(Some(3), Duration::from_secs(1));
    for remaining in ["2", "1", "0"] {
        let response = get(&sim, "/api/employees").await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-total").as_deref(), Some("3"));
        assert_eq!(
            header(&response, "x-ratelimit-remaining").as_deref(),
            Some(remaining)
        );
    }
    let throttled = get(&sim, "/api/employees").await;
    assert_rate_headers(&throttled);
    assert_eq!(header(&throttled, "retry-after").as_deref(), Some("1"));
    assert_eq!(
        header(&throttled, "x-ratelimit-remaining").as_deref(),
        Some("0")
    );
    let (status, code, field) = error_code(throttled).await;
    assert_eq!(
        (status, code.as_str(), field),
        (429, "too_many_requests", None)
    );
    // Hammering does not help: every call gets 429 until the window reopens.
    assert_eq!(get(&sim, "/api/departments").await.status(), 429);

    tokio::time::sleep(Duration::from_millis(1050)).await;
    for _ in 0..3 {
        assert_eq!(get(&sim, "/api/employees").await.status(), 200);
    }
    assert_eq!(get(&sim, "/api/employees").await.status(), 429);

    let log = sim.requests();
    let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 200, 200, 200, 429]);
    let first_window = log[0].window;
    assert!(log[..5].iter().all(|r| r.window == first_window));
    assert!(log[5..].iter().all(|r| r.window == first_window + 1));
    let reopens = log[3].reopens_at.expect("429 records its reopen time");
    assert!(log[3].throttled && reopens > log[3].at);
    assert!(reopens - log[3].at <= Duration::from_secs(1));
    assert!(log[5].at >= reopens);
    assert_eq!(
        sim.throttled_calls_per_window(),
        BTreeMap::from([(first_window, 2), (first_window + 1, 1)])
    );
    // Only the second 429 came before its window reopened.
    let early = sim.requests_before_reopen();
    assert_eq!(early.len(), 1);
    assert_eq!(early[0], log[4]);
}

#[tokio::test]
async fn retry_after_rounds_up_to_whole_seconds() {
    let sim = sim_with(SimConfig {
        rate_limit: Some(1),
        window: Duration::from_millis(2500),
        ..SimConfig::default()
    });
    sim.set_rate_limit(Some(1), Duration::from_millis(2500));
    assert_eq!(get(&sim, "/api/teams").await.status(), 200);
    let throttled = get(&sim, "/api/teams").await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(header(&throttled, "retry-after").as_deref(), Some("3"));
}

#[tokio::test]
async fn retry_after_can_be_switched_off() {
    let sim = sim_with(SimConfig {
        rate_limit: Some(1),
        retry_after: false,
        ..SimConfig::default()
    });
    assert_eq!(get(&sim, "/api/employees").await.status(), 200);
    let throttled = get(&sim, "/api/employees").await;
    assert_eq!(throttled.status(), 429);
    assert!(header(&throttled, "retry-after").is_none());
    assert_rate_headers(&throttled);
}

#[tokio::test]
async fn unlimited_accounts_still_send_rate_headers() {
    let sim = sim(10, 5);
    for _ in 0..3 {
        let response = get(&sim, "/api/employees").await;
        assert_eq!(
            header(&response, "x-ratelimit-total").as_deref(),
            Some("1000")
        );
        assert_eq!(
            header(&response, "x-ratelimit-remaining").as_deref(),
            Some("999")
        );
        assert_rate_headers(&response);
    }
}

// ---- faults ----

#[tokio::test]
async fn fail_every_answers_every_nth_request_with_503() {
    let sim = sim_with(SimConfig {
        fail_every: Some(3),
        ..SimConfig::default()
    });
    let mut statuses = Vec::new();
    for path in ["/api/employees", "/api/teams", "/api/employees/1001"].repeat(2) {
        let response = get(&sim, path).await;
        statuses.push(response.status().as_u16());
        if response.status() == 503 {
            assert_rate_headers(&response);
            let (_, code, _) = error_code(response).await;
            assert_eq!(code, "service_unavailable");
        }
    }
    assert_eq!(statuses, [200, 200, 503, 200, 200, 503]);

    // Setting faults restarts the count; clearing them stops the failures.
    sim.set_faults(Faults {
        fail_every: Some(2),
        ..Faults::default()
    });
    assert_eq!(get(&sim, "/api/teams").await.status(), 200);
    assert_eq!(get(&sim, "/api/teams").await.status(), 503);
    sim.set_faults(Faults::default());
    for _ in 0..4 {
        assert_eq!(get(&sim, "/api/teams").await.status(), 200);
    }
}

#[tokio::test]
async fn an_unknown_account_answers_404_everywhere() {
    let sim = sim(10, 5);
    sim.set_faults(Faults {
        unknown_account: true,
        ..Faults::default()
    });
    for (path, key) in [
        ("/api/employees", Some(KEY)),
        ("/api/departments", Some(KEY)),
        ("/api/employees/1001", None),
    ] {
        let response = get_with(&sim, path, key).await;
        assert_rate_headers(&response);
        let (status, code, _) = error_code(response).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}");
    }
    sim.set_faults(Faults::default());
    assert_eq!(get(&sim, "/api/employees").await.status(), 200);
}

#[tokio::test]
async fn truncate_every_cuts_every_nth_list_body() {
    let sim = sim(20, 5);
    sim.set_faults(Faults {
        truncate_every: Some(2),
        ..Faults::default()
    });
    let mut parsed = Vec::new();
    for page in 1..=4 {
        // Detail and lookup calls in between do not count towards the list fault.
        let detail = get(&sim, "/api/employees/1001").await;
        serde_json::from_slice::<Value>(&detail.bytes().await.unwrap()).expect("detail intact");
        let response = get(&sim, &format!("/api/employees?page={page}")).await;
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.unwrap();
        assert!(!bytes.is_empty());
        parsed.push(serde_json::from_slice::<Value>(&bytes).is_ok());
    }
    assert_eq!(parsed, [true, false, true, false]);
    let truncated: Vec<bool> = sim
        .requests()
        .iter()
        .filter(|r| r.path == "/api/employees")
        .map(|r| r.truncated)
        .collect();
    assert_eq!(truncated, [false, true, false, true]);
}

#[tokio::test]
async fn stall_every_holds_a_request_past_the_client_timeout() {
    let sim = sim(10, 5);
    sim.set_faults(Faults {
        stall_every: Some(2),
        stall_for: Duration::from_secs(5),
        ..Faults::default()
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let call = || {
        client
            .get(url(&sim, "/api/employees"))
            .bearer_auth(KEY)
            .send()
    };
    assert_eq!(call().await.unwrap().status(), 200);
    let err = call().await.expect_err("the stalled call times out");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(call().await.unwrap().status(), 200);
    let stalled: Vec<bool> = sim.requests().iter().map(|r| r.stalled).collect();
    assert_eq!(stalled, [false, true, false]);
}

#[tokio::test]
async fn latency_delays_every_response() {
    let sim = sim_with(SimConfig {
        latency: Duration::from_millis(150),
        ..SimConfig::default()
    });
    let started = Instant::now();
    assert_eq!(get(&sim, "/api/teams").await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    sim.set_faults(Faults::default());
    let started = Instant::now();
    assert_eq!(get(&sim, "/api/teams").await.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(150));
}

// ---- request log ----

#[tokio::test]
async fn the_request_log_records_every_api_call_but_no_admin_call() {
    let sim = sim(30, 10);
    get(&sim, "/api/employees?page=2").await;
    get(&sim, "/api/employees/1003").await;
    get(&sim, "/api/branches").await;
    get_with(&sim, "/api/branches", None).await;
    reqwest::get(url(&sim, "/_sim/faults")).await.unwrap();

    let log = sim.requests();
    let summary: Vec<(&str, &str, &str, u16)> = log
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.path.as_str(),
                r.query.as_str(),
                r.status,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("GET", "/api/employees", "page=2", 200),
            ("GET", "/api/employees/1003", "", 200),
            ("GET", "/api/branches", "", 200),
            ("GET", "/api/branches", "", 401),
        ]
    );
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(log.iter().all(|r| !r.throttled && r.reopens_at.is_none()));
    assert_eq!(sim.count("/api/employees"), 2);
    assert_eq!(sim.count("/api/employees/"), 1);
    assert_eq!(sim.count("/api/branches"), 2);

    let over_http = body(reqwest::get(url(&sim, "/_sim/requests")).await.unwrap()).await;
    assert_eq!(over_http.as_array().unwrap().len(), 4);
    assert_eq!(over_http[0]["query"], "page=2");
    assert_eq!(over_http[3]["status"], 401);

    sim.clear_requests();
    assert!(sim.requests().is_empty());
    get(&sim, "/api/teams").await;
    let deleted = reqwest::Client::new()
        .delete(url(&sim, "/_sim/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(sim.count("/api"), 0);
}

// ---- changing employees ----

#[tokio::test]
async fn employee_changes_show_on_the_next_list() {
    let sim = sim(12, 5);
    let before = sim.employee("E-00002").unwrap();
    let updated = sim
        .update_employee(
            "E-00002",
            json!({
                "first_name": "Renamed",
                "middle_name": null,
                "custom_field_values": { "tshirt_size": "XL" },
            }),
        )
        .unwrap();
    assert_eq!(updated["first_name"], "Renamed");
    assert_ne!(updated["updated_at"], before["updated_at"]);
    assert_eq!(
        updated["custom_field_values"]["cost_center"], before["custom_field_values"]["cost_center"],
        "nested objects merge"
    );

    let page = body(get(&sim, "/api/employees?page=1").await).await;
    let listed = &page[1];
    assert_eq!(listed["first_name"], "Renamed");
    assert!(listed.as_object().unwrap().contains_key("middle_name"));
    assert!(listed["middle_name"].is_null());
    assert!(!listed
        .as_object()
        .unwrap()
        .contains_key("custom_field_values"));
    let detail = body(get(&sim, "/api/employees/1002").await).await;
    assert_eq!(detail["custom_field_values"]["tshirt_size"], "XL");

    // Added without an id: the next one. Without employee_id: absent from the list.
    let added = sim
        .add_employee(json!({ "first_name": "Nomad", "status": "active" }))
        .unwrap();
    assert_eq!(added["id"], 1013);
    let last = get(&sim, "/api/employees?page=3").await;
    assert_eq!(header(&last, "total-objects").as_deref(), Some("13"));
    let last = body(last).await;
    assert_eq!(ids(&last), vec![1011, 1012, 1013]);
    let nomad = last[2].as_object().unwrap();
    assert_eq!(nomad["first_name"], "Nomad");
    assert!(!nomad.contains_key("employee_id"));
    assert_eq!(
        sim.add_employee(json!({ "id": 1005 })),
        Err(SimError::DuplicateId(1005))
    );
    assert!(matches!(
        sim.add_employee(json!([])),
        Err(SimError::Invalid(_))
    ));

    assert!(sim.remove_employee("E-00003"));
    assert!(!sim.remove_employee("E-00003"));
    assert_eq!(get(&sim, "/api/employees/1003").await.status(), 404);
    let first = body(get(&sim, "/api/employees").await).await;
    assert_eq!(ids(&first), vec![1001, 1002, 1004, 1005, 1006]);
    assert_eq!(sim.employees().len(), 12);
    assert_eq!(
        sim.update_employee("E-77777", json!({})),
        Err(SimError::UnknownEmployee("E-77777".into()))
    );
}

#[tokio::test]
async fn the_admin_api_changes_employees_faults_and_limits() {
    let sim = sim(8, 5);
    let client = reqwest::Client::new();
    let admin = |path: &str| url(&sim, &format!("/_sim{path}"));

    let patched = client
        .patch(admin("/employees/E-00001"))
        .json(&json!({ "designation": "Founder" }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let page = body(get(&sim, "/api/employees").await).await;
    assert_eq!(page[0]["designation"], "Founder");

    let created = client
        .post(admin("/employees"))
        .json(&json!({ "employee_id": "E-NEW", "first_name": "New" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(body(created).await["id"], 1009);
    let found = body(get(&sim, "/api/employees?employee_id=E-NEW").await).await;
    assert_eq!(ids(&found), vec![1009]);

    let gone = client
        .delete(admin("/employees/E-NEW"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    let again = client
        .delete(admin("/employees/E-NEW"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    assert_eq!(sim.employee_count(), 8);

    let faults = client
        .put(admin("/faults"))
        .json(&json!({ "fail_every": 1, "latency_ms": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status(), 200);
    assert_eq!(sim.faults().fail_every, Some(1));
    assert_eq!(sim.faults().latency, Duration::from_millis(5));
    assert_eq!(get(&sim, "/api/teams").await.status(), 503);
    let bad = client
        .put(admin("/faults"))
        .json(&json!({ "fail_evry": 1 }))
        .send()
        .await
        .unwrap();
    assert!(bad.status().is_client_error());
    client
        .put(admin("/faults"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(sim.faults(), Faults::default());

    let limited = client
        .put(admin("/rate_limit"))
        .json(&json!({ "limit": 1, "window_ms": 60000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 200);
    sim.clear_requests();
    assert_eq!(get(&sim, "/api/teams").await.status(), 200);
    assert_eq!(get(&sim, "/api/teams").await.status(), 429);
    // Admin calls are neither limited nor logged.
    for _ in 0..3 {
        let r = client
            .get(admin("/employees/E-00002"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(sim.requests().len(), 2);
}

// ---- scale, lifecycle, CLI ----

#[tokio::test]
async fn a_hundred_thousand_employees_stay_compact() {
    assert!(
        Directory::record_size() <= 16,
        "a generated employee is one word"
    );
    let sim = sim_with(SimConfig {
        employees: 100_000,
        // Everyone in the unfiltered list, leavers included.
        list_mode: ListMode::Permissive,
        ..SimConfig::default()
    });
    let last = get(&sim, "/api/employees?page=4000").await;
    assert_eq!(header(&last, "total-objects").as_deref(), Some("100000"));
    assert_eq!(header(&last, "total-pages").as_deref(), Some("4000"));
    assert!(next_link(&last).is_none());
    assert_eq!(
        ids(&body(last).await),
        (100_976..=101_000).collect::<Vec<_>>()
    );
    let one = body(get(&sim, "/api/employees?employee_id=E-99999").await).await;
    assert_eq!(ids(&one), vec![100_999]);
    let detail = body(get(&sim, "/api/employees/100500").await).await;
    assert_eq!(detail["employee_id"], "E-99500");
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let sim = sim(5, 5);
    let address = url(&sim, "/api/employees");
    assert_eq!(get(&sim, "/api/employees").await.status(), 200);
    drop(sim);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        match client.get(&address).bearer_auth(KEY).send().await {
            Err(e) if e.is_connect() => break,
            _ if Instant::now() > deadline => panic!("server still answering after drop"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    let err = Simulator::start(SimConfig::default()).expect_err("needs a runtime");
    assert!(err.to_string().contains("tokio runtime"));
}

#[tokio::test]
async fn base_url_is_the_api_root() {
    let sim = sim(3, 5);
    assert_eq!(
        sim.base_url(),
        format!("http://127.0.0.1:{}/api", sim.addr().port())
    );
    let response = reqwest::Client::new()
        .get(format!("{}/employees", sim.base_url()))
        .bearer_auth(sim.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&body(response).await), vec![1001, 1002, 1003]);
}

#[test]
fn keys_never_reach_debug_output() {
    let config = SimConfig {
        api_key: "top-secret-key".into(),
        forbidden_keys: vec!["other-secret".into()],
        ..SimConfig::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("top-secret-key") && !shown.contains("other-secret"));

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }
    let cli = Cli::parse_from(["x", "--api-key", "top-secret-key"]);
    assert!(!format!("{:?}", cli.args).contains("top-secret-key"));
}

#[test]
fn simulate_arguments_map_to_the_config() {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }
    let defaults = Cli::parse_from(["x"]).args;
    assert_eq!(defaults.port, 8081);
    let config = defaults.config();
    assert_eq!((config.employees, config.page_size), (50, 25));
    assert_eq!(config.rate_limit, None);
    assert_eq!(config.window, Duration::from_secs(60));

    let args = Cli::parse_from([
        "x",
        "--port",
        "9000",
        "--employees",
        "10",
        "--page-size",
        "4",
        "--seed",
        "5",
        "--rate-limit",
        "7",
        "--window-ms",
        "1500",
        "--fail-every",
        "9",
        "--latency-ms",
        "20",
    ])
    .args;
    let config = args.config();
    assert_eq!(args.port, 9000);
    assert_eq!(
        (config.employees, config.page_size, config.seed),
        (10, 4, 5)
    );
    assert_eq!(config.rate_limit, Some(7));
    assert_eq!(config.window, Duration::from_millis(1500));
    assert_eq!(config.fail_every, Some(9));
    assert_eq!(config.latency, Duration::from_millis(20));
}

fn mixed(mode: ListMode) -> Simulator {
    Simulator::one_of_each_kind(mode).expect("simulator starts")
}

async fn all_pages(sim: &Simulator, query: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let sep = if query.is_empty() { "" } else { "&" };
    for page in 1.. {
        let got = body(get(sim, &format!("/api/employees?{query}{sep}page={page}")).await).await;
        if got.as_array().unwrap().is_empty() {
            break;
        }
        out.extend(ids(&got));
    }
    out
}

#[tokio::test]
async fn the_documented_list_is_current_staff_and_filters_select_the_rest() {
    let sim = mixed(ListMode::Documented);
    assert_eq!(all_pages(&sim, "").await, vec![1001, 1002, 1003, 1004]);
    let listed = get(&sim, "/api/employees").await;
    assert_eq!(header(&listed, "total-objects").as_deref(), Some("4"));
    assert_eq!(all_pages(&sim, "status=inactive").await, vec![1005]);
    assert_eq!(all_pages(&sim, "terminated=true").await, vec![1006]);
    assert_eq!(all_pages(&sim, "deleted=true").await, vec![1007]);
    assert_eq!(all_pages(&sim, "draft=true").await, vec![1008]);
    // `status` takes a comma-separated list; alone it selects on status only.
    assert_eq!(
        all_pages(&sim, "status=active,inactive").await,
        (1001..=1008).collect::<Vec<_>>()
    );
    assert_eq!(
        all_pages(&sim, "status=active&terminated=false&deleted=false").await,
        vec![1001, 1002, 1003, 1004, 1008]
    );
    let (status, _, field) = error_code(get(&sim, "/api/employees?draft=maybe").await).await;
    assert_eq!((status, field.as_deref()), (400, Some("draft")));

    // Delete Forever: in no list any more.
    let client = reqwest::Client::new();
    let gone = client
        .delete(url(&sim, "/_sim/employees/E-00006"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert!(all_pages(&sim, "terminated=true").await.is_empty());
    assert!(!all_pages(&sim, "status=active,inactive")
        .await
        .contains(&1006));

    // The switch for an account that lists everyone.
    let switched = client
        .put(url(&sim, "/_sim/list_mode"))
        .json(&json!({"mode": "permissive"}))
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), 200);
    assert_eq!(
        all_pages(&sim, "").await,
        vec![1001, 1002, 1003, 1004, 1005, 1007, 1008]
    );
}

// ---- incremental reads ----

/// Every page of a list, following the `link` chain from page 1 (so a filter the
/// links dropped would show): the ids and the first page's `total-objects`.
async fn linked_pages(sim: &Simulator, query: &str) -> (Vec<i64>, u64) {
    let mut next = Some(url(sim, &format!("/api/employees?{query}")));
    let (mut out, mut total) = (Vec::new(), None);
    while let Some(at) = next.take() {
        let r = reqwest::Client::new()
            .get(&at)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{at}");
        total = total.or(header(&r, "total-objects").map(|t| t.parse().unwrap()));
        next = next_link(&r);
        if let Some(n) = &next {
            assert!(n.contains("updated_since="), "the filter stays on {n}");
        }
        out.extend(ids(&body(r).await));
    }
    (out, total.unwrap())
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

#[tokio::test]
async fn updated_since_keeps_changed_employees_under_every_filter() {
    let sim = sim_with(SimConfig {
        employees: 30,
        page_size: 4,
        inactive_percent: 0.0,
        ..SimConfig::default()
    });
    let since = |q: &str| format!("{q}&updated_since={}", today());
    // Untouched: nobody changed today, nor in the last two days, in any population.
    for q in [
        "status=active",
        "status=inactive",
        "terminated=true",
        "deleted=true",
        "draft=true",
    ] {
        assert_eq!(linked_pages(&sim, &since(q)).await, (vec![], 0), "{q}");
    }
    let two_days_ago = (chrono::Utc::now() - chrono::Duration::days(2)).format("%Y-%m-%d");
    let r = get(
        &sim,
        &format!("/api/employees?updated_since={two_days_ago}"),
    )
    .await;
    assert_eq!(header(&r, "total-objects").as_deref(), Some("0"));

    let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
    let old = sim.employee("E-00015").unwrap()["updated_at"].clone();
    for (id, patch) in [
        ("E-00003", json!({"designation": "Founder"})),
        ("E-00007", json!({"status": "inactive"})),
        ("E-00010", json!({"terminated": true})),
        ("E-00012", json!({"deleted": true})),
        // A change updated_since cannot see: updated_at kept at its old value.
        ("E-00015", json!({"first_name": "Quiet", "updated_at": old})),
    ] {
        sim.update_employee(id, patch).unwrap();
    }
    assert_eq!(sim.employee("E-00015").unwrap()["first_name"], "Quiet");
    // Unfiltered (documented: current staff) and each population, ANDed with the date.
    assert_eq!(linked_pages(&sim, &since("")).await, (vec![1003], 1));
    assert_eq!(
        linked_pages(&sim, &since("status=inactive")).await.0,
        vec![1007]
    );
    assert_eq!(
        linked_pages(&sim, &since("terminated=true")).await.0,
        vec![1010]
    );
    assert_eq!(
        linked_pages(&sim, &since("deleted=true")).await.0,
        vec![1012]
    );
    assert_eq!(
        linked_pages(&sim, &since("status=active,inactive")).await.0,
        vec![1003, 1007, 1010, 1012]
    );
    assert_eq!(
        linked_pages(&sim, &since("status=inactive&employee_id=E-00007"))
            .await
            .0,
        vec![1007]
    );
    // A timestamp: from that instant on (its own encoding, and a `+` sent unencoded).
    let at = before.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let encoded: String = url::form_urlencoded::byte_serialize(at.as_bytes()).collect();
    let q = format!("status=active,inactive&updated_since={encoded}");
    assert_eq!(linked_pages(&sim, &q).await.0, vec![1003, 1007, 1010, 1012]);
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let r = get(&sim, &format!("/api/employees?updated_since={later}")).await;
    assert_eq!(header(&r, "total-objects").as_deref(), Some("0"), "{later}");
    // The same filters without the date are another view, not a cached one.
    let r = get(&sim, "/api/employees?status=active,inactive").await;
    assert_eq!(header(&r, "total-objects").as_deref(), Some("30"));

    // Paged like any list; the next links keep the date.
    let touched = sim.touch_employees(9, "first_name").unwrap();
    assert_eq!(touched.len(), 9);
    // `status=active` alone selects on status: the terminated and deleted ones too.
    let mut expected: BTreeSet<i64> = touched
        .iter()
        .map(|id| 1000 + id[2..].parse::<i64>().unwrap())
        .collect();
    expected.extend([1003, 1010, 1012]);
    let (listed, total) = linked_pages(&sim, &since("status=active")).await;
    assert_eq!(listed, expected.iter().copied().collect::<Vec<_>>());
    assert_eq!(total, expected.len() as u64);
    assert!(total > 4, "more than one page of 4");

    // Delete Forever: gone from every list, incremental or not.
    assert!(sim.remove_employee("E-00007"));
    for q in ["status=inactive", "status=active,inactive"] {
        assert!(
            !linked_pages(&sim, &since(q)).await.0.contains(&1007),
            "{q}"
        );
    }

    for bad in ["yesterday", "2026-13-01", "2026-02-30", "1700000000"] {
        let r = get(&sim, &format!("/api/employees?updated_since={bad}")).await;
        assert_eq!(
            error_code(r).await,
            (
                400,
                "invalid_value".to_string(),
                Some("updated_since".to_string())
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn leaving_moves_updated_at_and_touch_changes_a_mapped_field() {
    let sim = sim(40, 10);
    let client = reqwest::Client::new();
    for (id, patch) in [
        ("E-00002", json!({"status": "inactive"})),
        ("E-00003", json!({"terminated": true})),
        ("E-00004", json!({"deleted": true})),
    ] {
        let before = sim.employee(id).unwrap()["updated_at"].clone();
        let r = client
            .patch(url(&sim, &format!("/_sim/employees/{id}")))
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let after = body(r).await["updated_at"].clone();
        assert_ne!(after, before, "{id}");
        assert!(after.as_str().unwrap().starts_with(&today()), "{after}");
    }

    let before: Vec<Value> = sim.employees();
    let r = client
        .post(url(&sim, "/_sim/touch"))
        .json(&json!({"count": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer = body(r).await;
    assert_eq!(answer["field"], "designation");
    // The middle of each quarter.
    assert_eq!(
        answer["employee_ids"],
        json!(["E-00006", "E-00016", "E-00026", "E-00036"])
    );
    let after = sim.employees();
    let changed: Vec<&str> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(_, a)| a["employee_id"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["E-00006", "E-00016", "E-00026", "E-00036"]);
    for n in [5usize, 15, 25, 35] {
        assert_ne!(after[n]["designation"], before[n]["designation"]);
        assert_eq!(after[n]["first_name"], before[n]["first_name"]);
        assert!(after[n]["updated_at"]
            .as_str()
            .unwrap()
            .starts_with(&today()));
    }
    // Touching again changes them again.
    let again = sim.touch_employees(4, "designation").unwrap();
    assert_eq!(again, ["E-00006", "E-00016", "E-00026", "E-00036"]);
    assert_ne!(sim.employees()[5]["designation"], after[5]["designation"]);

    // `population: current` picks current staff only.
    let all = sim.employees();
    let current = all
        .iter()
        .filter(|e| e["status"] == "active" && e["terminated"] != true && e["deleted"] != true)
        .count();
    assert!(current < all.len(), "the fixture has leavers");
    let r = client
        .post(url(&sim, "/_sim/touch"))
        .json(&json!({"count": current, "population": "current"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let touched = body(r).await["employee_ids"].as_array().unwrap().clone();
    assert_eq!(touched.len(), current);
    for id in &touched {
        let e = sim.employee(id.as_str().unwrap()).unwrap();
        assert!(e["status"] == "active" && e["terminated"] != true, "{e}");
    }

    for (bad, needle) in [
        (json!({"count": 41}), "count 41"),
        (
            json!({"count": current + 1, "population": "current"}),
            "current employees",
        ),
        (
            json!({"count": 2, "field": "email"}),
            "designation, first_name, last_name",
        ),
    ] {
        let r = client
            .post(url(&sim, "/_sim/touch"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let error = body(r).await["error"].as_str().unwrap().to_string();
        assert!(error.contains(needle), "{error}");
    }
}
