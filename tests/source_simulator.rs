//! The product's Freshteam client against the Freshteam simulator (`freshteam-simulator`):
//! the populations it reads in both list modes, and what an incremental read costs.

use std::collections::HashSet;

use freshteam_simulator::{ListMode, SimConfig, Simulator};

const KEY: &str = "sim-api-key";

fn sim_with(config: SimConfig) -> Simulator {
    Simulator::start(config).expect("simulator starts")
}

/// Eight employees, three a page: four current staff, then one inactive, one terminated,
/// one deleted and one draft.
fn mixed(mode: ListMode) -> Simulator {
    Simulator::one_of_each_kind(mode).expect("simulator starts")
}

/// The product's client for the simulator's account.
fn client_of(sim: &Simulator) -> freshteam_operator::source::FreshteamClient {
    use freshteam_operator::source::{FreshteamClient, FreshteamConfig};
    let key = freshteam_operator::secret::SecretString::new(KEY.to_string());
    let config = FreshteamConfig::new("acme", Some(&sim.base_url()), key).unwrap();
    FreshteamClient::new(config).unwrap()
}

/// The client reads the same populations whichever way the unfiltered list behaves.
#[tokio::test]
async fn the_client_reads_every_population_in_both_list_modes() {
    use freshteam_operator::source::{EmployeeSource, Population};
    for mode in [ListMode::Documented, ListMode::Permissive] {
        let sim = mixed(mode);
        let client = client_of(&sim);
        let request = freshteam_operator::source::SourceRequest {
            fields: vec!["employee_id".into()],
            ..Default::default()
        };
        let snap = client
            .fetch(&request, &freshteam_operator::progress::NoProgress)
            .await
            .unwrap();
        let got: Vec<(i64, Population)> = snap
            .employees
            .iter()
            .map(|e| (e.id, e.population))
            .collect();
        assert_eq!(
            got,
            vec![
                (1001, Population::Active),
                (1002, Population::Active),
                (1003, Population::Active),
                (1004, Population::Active),
                (1005, Population::Inactive),
                (1006, Population::Terminated),
                (1007, Population::Deleted),
                (1008, Population::Draft),
            ],
            "{mode:?}"
        );
        // One pass per population, each with its explicit filter (so the unfiltered
        // list's behaviour never matters): 2 pages of current staff (3 a page), one
        // page per leaver and draft pass.
        assert_eq!(snap.stats.list_by_population, [2, 1, 1, 1, 1], "{mode:?}");
        assert_eq!(snap.stats.list_requests, 6);
        let queries: HashSet<String> = sim
            .requests()
            .iter()
            .filter(|r| r.path == "/api/employees")
            .map(|r| r.query.clone())
            .collect();
        for q in [
            "status=active&terminated=false&deleted=false&page=1",
            "status=inactive&page=1",
            "terminated=true&page=1",
            "deleted=true&page=1",
            "draft=true&page=1",
        ] {
            assert!(queries.contains(q), "{mode:?}: {q} not among {queries:?}");
        }
    }
}

/// What an incremental read costs against a full one: 10,000 employees at 50 a page,
/// 1 % of them changed.
#[tokio::test]
async fn an_incremental_read_of_ten_thousand_lists_only_the_changed_hundred() {
    use freshteam_operator::source::{EmployeeSource, SourceRequest};
    let sim = sim_with(SimConfig {
        employees: 10_000,
        page_size: 50,
        ..SimConfig::default()
    });
    let client = client_of(&sim);
    let mut request = SourceRequest {
        fields: vec!["employee_id".into(), "designation".into()],
        updated_since: Some(chrono::Utc::now() - chrono::Duration::minutes(10)),
        ..Default::default()
    };
    let idle = client
        .fetch(&request, &freshteam_operator::progress::NoProgress)
        .await
        .unwrap();
    assert!(idle.employees.is_empty(), "nobody changed yet");
    assert_eq!(idle.stats.list_requests, 5, "one empty page per pass");

    let mut touched = sim.touch_employees(100, "designation").unwrap();
    let incremental = client
        .fetch(&request, &freshteam_operator::progress::NoProgress)
        .await
        .unwrap();
    let mut got: Vec<String> = incremental
        .employees
        .iter()
        .map(|e| e.values[0].clone().unwrap())
        .collect();
    got.sort();
    touched.sort();
    assert_eq!(got, touched);
    request.updated_since = None;
    let full = client
        .fetch(&request, &freshteam_operator::progress::NoProgress)
        .await
        .unwrap();
    assert_eq!(full.employees.len(), 10_000);
    // The touched hundred include a few leavers: at most 2 pages in any pass.
    assert!(incremental
        .stats
        .list_by_population
        .iter()
        .all(|p| (1..=2).contains(p)));
    assert!(incremental.stats.list_requests <= 7);
    assert!(full.stats.list_by_population[0] >= 190, "{:?}", full.stats);
    assert!(incremental.stats.list_requests * 10 <= full.stats.list_requests);
    eprintln!(
        "10,000 employees, 100 changed: incremental {} list requests {:?}, full {} {:?}",
        incremental.stats.list_requests,
        incremental.stats.list_by_population,
        full.stats.list_requests,
        full.stats.list_by_population
    );
}

/// The simulator's list endpoint returns exactly the fields the client reads from a list
/// page without detail calls: the two crates keep their own copy of this Freshteam fact.
#[test]
fn the_simulator_lists_the_fields_the_client_expects_from_a_list() {
    assert_eq!(
        freshteam_simulator::LIST_FIELDS,
        freshteam_operator::source::LIST_FIELDS
    );
}
