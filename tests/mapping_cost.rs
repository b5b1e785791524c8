//! What a mapping that needs Freshteam's detail records costs, measured through the real
//! `sync` binary at 1,000 employees (pages of 50, as Freshteam's; 20 ms per answer): the
//! requests are asserted, the times printed (docs/freshteam-requests.md quotes them).

mod support;

use std::time::Instant;

use freshteam_simulator::SimConfig;
use support::sync_env::{Env, API_KEY};

const EMPLOYEES: usize = 1000;

async fn dry_run(env: &Env, name: &str, mapping: &str) -> (serde_json::Value, f64) {
    let file = env.write(name, &env.manifest(API_KEY, mapping));
    let started = Instant::now();
    let run = env
        .sync_file(&file, &["--output", "json", "--dry-run"])
        .await;
    let took = started.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    (run.api_calls(), took)
}

#[tokio::test(flavor = "multi_thread")]
async fn detail_records_cost_one_request_per_employee_and_only_when_mapped() {
    support::require_peers!(Scim2Server);
    let env = Env::with(SimConfig {
        employees: EMPLOYEES,
        page_size: 50,
        inactive_percent: 0.0,
        latency: std::time::Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await;
    let list_only = "  mapping:\n    email: official_email\n    firstName: first_name\n    attributes:\n    - target: 'addresses[type eq \"work\"].locality'\n      from: branch.city\n";
    let (calls, list_secs) = dry_run(&env, "list.yaml", list_only).await;
    assert_eq!(calls["freshteamDetail"], 0, "{calls}");
    assert_eq!(calls["freshteamLookups"], 1, "{calls}");
    let list_pages = calls["freshteamList"].as_u64().unwrap();
    assert_eq!(list_pages, (EMPLOYEES / 50) as u64 + 4, "{calls}");

    let custom = "  mapping:\n    email: official_email\n    firstName: first_name\n    attributes:\n    - target: urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter\n      from: custom_field_values.cost_center\n    - target: 'addresses[type eq \"work\"].locality'\n      from: branch.city\n";
    let (calls, detail_secs) = dry_run(&env, "custom.yaml", custom).await;
    assert_eq!(calls["freshteamDetail"], EMPLOYEES as u64, "{calls}");
    assert_eq!(calls["freshteamList"].as_u64(), Some(list_pages));
    assert_eq!(calls["freshteamLookups"], 1);
    eprintln!(
        "{EMPLOYEES} employees, 20 ms per answer: list fields only {list_pages} list + 1 lookup requests in {list_secs:.1} s; \
         with a custom field {list_pages} list + {EMPLOYEES} detail + 1 lookup requests in {detail_secs:.1} s"
    );
}
