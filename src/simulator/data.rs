//! The simulated account's data: generated employees, lookups and employee fields.
//!
//! Generated employees are not stored: a record is a number, and its fields are derived
//! from `(seed, number)` whenever a page or a detail call needs them. Only employees a
//! test has changed or added are kept as JSON. That keeps 100,000 employees at a few
//! megabytes and makes the data deterministic per seed.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration as Days, NaiveDate, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::SimError;

/// Fields the list endpoint returns; the detail endpoint returns these and more. The
/// same list the mapping uses to decide when detail calls are needed.
pub(crate) use crate::source::LIST_FIELDS;

/// Fields only on `GET /api/employees/{id}`.
pub(crate) const DETAIL_ONLY_FIELDS: &[&str] = &[
    "personal_email",
    "date_of_birth",
    "gender",
    "phone_numbers",
    "role_ids",
    "custom_field_values",
];

/// First numeric Freshteam id; employee number `n` (from 1) gets `ID_BASE + n`.
pub(crate) const ID_BASE: i64 = 1000;

const EMAIL_DOMAIN: &str = "acme.example";

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Alan",
    "Amara",
    "Anil",
    "Beatriz",
    "Bjørn",
    "Carlos",
    "Chen",
    "Chloé",
    "Dara",
    "David",
    "Elena",
    "Emeka",
    "Fatima",
    "François",
    "Grace",
    "Hana",
    "Hiroshi",
    "Ines",
    "Ivan",
    "Jamal",
    "Jana",
    "José",
    "Julia",
    "Kai",
    "Karin",
    "Lars",
    "Leila",
    "Li",
    "Lucas",
    "Maria",
    "Mateo",
    "Mei",
    "Miguel",
    "Nadia",
    "Noah",
    "Olga",
    "Omar",
    "Priya",
    "Rafael",
    "Rosa",
    "Sam",
    "Sara",
    "Siddharth",
    "Sofia",
    "Tariq",
    "Thomas",
    "Uma",
    "Viktor",
    "Wei",
    "Yara",
    "Yusuf",
    "Zoë",
    "Łukasz",
];

const LAST_NAMES: &[&str] = &[
    "Adeyemi",
    "Alvarez",
    "Andersen",
    "Becker",
    "Bianchi",
    "Chen",
    "Costa",
    "Dubois",
    "Eriksson",
    "Fernández",
    "Fischer",
    "García",
    "Gupta",
    "Hansen",
    "Hernandez",
    "Ivanova",
    "Jensen",
    "Kim",
    "Kowalski",
    "Kumar",
    "Larsen",
    "Lee",
    "Martin",
    "Müller",
    "Nakamura",
    "Nguyen",
    "Novak",
    "O'Brien",
    "Okafor",
    "Patel",
    "Pereira",
    "Petrov",
    "Rossi",
    "Santos",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Tanaka",
    "Van der Berg",
    "Wang",
    "Weber",
    "Williams",
    "Yamamoto",
    "Zhang",
];

const MIDDLE_NAMES: &[&str] = &["Anne", "James", "Marie", "Lee", "Rose", "Kumar", "Jo"];

const DESIGNATIONS: &[&str] = &[
    "Software Engineer",
    "Senior Software Engineer",
    "Staff Engineer",
    "Engineering Manager",
    "Product Manager",
    "Product Designer",
    "Data Analyst",
    "Account Executive",
    "Sales Development Representative",
    "Marketing Specialist",
    "Customer Success Manager",
    "Support Engineer",
    "Accountant",
    "Financial Analyst",
    "HR Business Partner",
    "Recruiter",
    "Legal Counsel",
    "Operations Coordinator",
    "IT Administrator",
    "Research Scientist",
];

const DEPARTMENTS: &[(i64, &str)] = &[
    (101, "Engineering"),
    (102, "Product"),
    (103, "Design"),
    (104, "Sales"),
    (105, "Marketing"),
    (106, "Customer Success"),
    (107, "Finance"),
    (108, "People"),
    (109, "Legal"),
    (110, "Operations"),
    (111, "IT"),
    (112, "Research"),
];

/// `(id, name, department id)`: a sub-department belongs to one department.
const SUB_DEPARTMENTS: &[(i64, &str, i64)] = &[
    (201, "Platform", 101),
    (202, "Mobile", 101),
    (203, "Data", 101),
    (204, "Growth", 102),
    (205, "Core Product", 102),
    (206, "Enterprise Sales", 104),
    (207, "SMB Sales", 104),
    (208, "Brand", 105),
    (209, "Demand Generation", 105),
    (210, "Support", 106),
    (211, "Onboarding", 106),
    (212, "Accounting", 107),
    (213, "FP&A", 107),
    (214, "Recruiting", 108),
    (215, "People Operations", 108),
    (216, "Facilities", 110),
    (217, "Helpdesk", 111),
];

/// `(id, name, city, country code, time zone, main office)`.
const BRANCHES: &[(i64, &str, &str, &str, &str, bool)] = &[
    (301, "Berlin HQ", "Berlin", "DE", "Europe/Berlin", true),
    (302, "London", "London", "GB", "Europe/London", false),
    (303, "New York", "New York", "US", "America/New_York", false),
    (304, "Bengaluru", "Bengaluru", "IN", "Asia/Kolkata", false),
    (
        305,
        "São Paulo",
        "São Paulo",
        "BR",
        "America/Sao_Paulo",
        false,
    ),
    (306, "Sydney", "Sydney", "AU", "Australia/Sydney", false),
];

const BUSINESS_UNITS: &[(i64, &str)] = &[
    (401, "Acme Core"),
    (402, "Acme Labs"),
    (403, "Acme Services"),
    (404, "Acme Retail"),
];

const TEAMS: &[(i64, &str)] = &[
    (501, "Atlas"),
    (502, "Borealis"),
    (503, "Comet"),
    (504, "Delta"),
    (505, "Ember"),
    (506, "Fjord"),
    (507, "Granite"),
    (508, "Harbor"),
    (509, "Iris"),
    (510, "Juniper"),
    (511, "Kestrel"),
    (512, "Lumen"),
    (513, "Meridian"),
    (514, "Nimbus"),
    (515, "Orbit"),
    (516, "Pioneer"),
];

const ROLES: &[(i64, &str, &str)] = &[
    (601, "Employee", "Default role for every employee"),
    (602, "Manager", "Sees and approves for direct reports"),
    (603, "HR Admin", "Manages employee records"),
    (604, "Account Admin", "Full access, including API settings"),
    (605, "Recruiter", "Manages hiring"),
];

const TSHIRT_SIZES: &[&str] = &["XS", "S", "M", "L", "XL", "XXL"];

/// Direct reports per manager in the generated org chart.
const SPAN_OF_CONTROL: u64 = 6;

/// Days from `EPOCH` over which joining dates are spread, and the "today" of the data.
/// Every generated `updated_at` falls on or before that day, long before any simulator
/// starts, so an incremental read (`updated_since`) of an untouched account is empty.
const JOINING_SPREAD_DAYS: u64 = 4500;
const DATA_END_DAYS: u64 = 5172; // 2026-03-01

/// Later than any generated `updated_at` (the day after the data's "today").
pub(crate) fn after_generated_changes() -> DateTime<Utc> {
    (epoch() + Days::days(DATA_END_DAYS as i64 + 1))
        .and_hms_opt(0, 0, 0)
        .expect("valid time")
        .and_utc()
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2012, 1, 2).expect("valid date")
}

/// SplitMix64: a tiny, well-mixed hash so each field of each employee is an
/// independent function of the seed, stable across crate versions.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Lower-case ASCII form of a name for an email local part (`Zoë O'Brien` → `zoe`,
/// `obrien`).
fn ascii_slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        let c = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ł' => 'l',
            'ñ' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            c => c,
        };
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        }
    }
    out
}

fn date_string(days: u64) -> String {
    (epoch() + Days::days(days as i64))
        .format("%Y-%m-%d")
        .to_string()
}

fn timestamp_string(days: u64, second_of_day: u64, millis: u64) -> String {
    let at = (epoch() + Days::days(days as i64))
        .and_hms_milli_opt(
            (second_of_day / 3600) as u32,
            (second_of_day / 60 % 60) as u32,
            (second_of_day % 60) as u32,
            millis as u32,
        )
        .expect("valid time")
        .and_utc();
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Derives employee number `n` (from 1) of an account from its seed.
#[derive(Clone, Debug)]
pub(crate) struct Generator {
    seed: u64,
    /// Share of inactive (terminated) employees, in basis points.
    inactive_bp: u64,
}

impl Generator {
    pub(crate) fn new(seed: u64, inactive_percent: f64) -> Self {
        let inactive_bp = (inactive_percent.clamp(0.0, 100.0) * 100.0).round() as u64;
        Generator { seed, inactive_bp }
    }

    fn hash(&self, n: u64, salt: u64) -> u64 {
        splitmix(self.seed ^ splitmix(n.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ salt))
    }

    fn below(&self, n: u64, salt: u64, bound: u64) -> u64 {
        self.hash(n, salt) % bound
    }

    fn pick<'a, T>(&self, n: u64, salt: u64, items: &'a [T]) -> &'a T {
        &items[self.below(n, salt, items.len() as u64) as usize]
    }

    /// Percent chance, deterministic per employee and field.
    fn chance(&self, n: u64, salt: u64, percent: u64) -> bool {
        self.below(n, salt, 100) < percent
    }

    pub(crate) fn employee_id(n: u64) -> String {
        format!("E-{n:05}")
    }

    /// The list subset of employee `n`.
    pub(crate) fn list_record(&self, n: u64) -> Map<String, Value> {
        let first = *self.pick(n, 1, FIRST_NAMES);
        let last = *self.pick(n, 2, LAST_NAMES);
        let middle = self
            .chance(n, 3, 25)
            .then(|| *self.pick(n, 4, MIDDLE_NAMES));
        let inactive = n > 1 && self.below(n, 5, 10_000) < self.inactive_bp;
        let joining = self.below(n, 6, JOINING_SPREAD_DAYS);
        let termination =
            inactive.then(|| joining + 30 + self.below(n, 7, DATA_END_DAYS - joining - 30));
        let created = joining.saturating_sub(self.below(n, 8, 45));
        let updated = match termination {
            Some(t) => t + self.below(n, 9, DATA_END_DAYS - t + 1),
            None => joining + self.below(n, 9, DATA_END_DAYS - joining + 1),
        };
        let department = self.pick(n, 10, DEPARTMENTS).0;
        let subs: Vec<i64> = SUB_DEPARTMENTS
            .iter()
            .filter(|s| s.2 == department)
            .map(|s| s.0)
            .collect();
        let sub_department = (!subs.is_empty() && self.chance(n, 11, 70))
            .then(|| subs[self.below(n, 12, subs.len() as u64) as usize]);
        let team = self.chance(n, 13, 75).then(|| self.pick(n, 14, TEAMS).0);
        let employee_type = match self.below(n, 15, 100) {
            0..80 => "full_time",
            80..88 => "part_time",
            88..96 => "contractor",
            _ => "intern",
        };
        let designation = if n == 1 {
            "Chief Executive Officer"
        } else {
            *self.pick(n, 16, DESIGNATIONS)
        };
        // A k-ary org chart: every manager is earlier in the list than their reports.
        let reporting_to = (n > 1).then(|| ID_BASE + ((n - 2) / SPAN_OF_CONTROL + 1) as i64);
        let email = format!(
            "{}.{}.{n}@{EMAIL_DOMAIN}",
            ascii_slug(first),
            ascii_slug(last)
        );

        let mut m = Map::new();
        m.insert("id".into(), json!(ID_BASE + n as i64));
        m.insert("employee_id".into(), json!(Self::employee_id(n)));
        m.insert("first_name".into(), json!(first));
        m.insert("middle_name".into(), json!(middle));
        m.insert("last_name".into(), json!(last));
        m.insert("official_email".into(), json!(email));
        m.insert(
            "status".into(),
            json!(if inactive { "inactive" } else { "active" }),
        );
        m.insert("terminated".into(), json!(inactive));
        m.insert(
            "termination_date".into(),
            json!(termination.map(date_string)),
        );
        m.insert("deleted".into(), json!(false));
        m.insert("draft".into(), json!(false));
        m.insert("employee_type".into(), json!(employee_type));
        m.insert("designation".into(), json!(designation));
        m.insert("department_id".into(), json!(department));
        m.insert("sub_department_id".into(), json!(sub_department));
        m.insert(
            "business_unit_id".into(),
            json!(self.pick(n, 17, BUSINESS_UNITS).0),
        );
        m.insert("branch_id".into(), json!(self.pick(n, 18, BRANCHES).0));
        m.insert("team_id".into(), json!(team));
        m.insert("reporting_to_id".into(), json!(reporting_to));
        m.insert("joining_date".into(), json!(date_string(joining)));
        m.insert(
            "created_at".into(),
            json!(timestamp_string(
                created,
                self.below(n, 19, 86_400),
                self.below(n, 20, 1000)
            )),
        );
        m.insert(
            "updated_at".into(),
            json!(timestamp_string(
                updated,
                self.below(n, 21, 86_400),
                self.below(n, 22, 1000)
            )),
        );
        m
    }

    /// Every field of employee `n`, as `GET /api/employees/{id}` returns it.
    pub(crate) fn detail_record(&self, n: u64) -> Map<String, Value> {
        let mut m = self.list_record(n);
        let first = ascii_slug(m["first_name"].as_str().unwrap_or_default());
        let last = ascii_slug(m["last_name"].as_str().unwrap_or_default());
        let personal_email = self
            .chance(n, 30, 70)
            .then(|| format!("{first}{last}{n}@mail.example"));
        let birth = self.chance(n, 31, 90).then(|| {
            let d = NaiveDate::from_ymd_opt(1960, 1, 1).expect("valid date")
                + Days::days(self.below(n, 32, 43 * 365) as i64);
            d.format("%Y-%m-%d").to_string()
        });
        let gender = match self.below(n, 33, 100) {
            0..46 => json!("female"),
            46..92 => json!("male"),
            92..96 => json!("non_binary"),
            _ => Value::Null,
        };
        let mut phones = Vec::new();
        if self.chance(n, 34, 80) {
            phones.push(json!({
                "name": "mobile",
                "number": format!("+1-555-{:04}-{:04}", self.below(n, 35, 10_000), n % 10_000),
            }));
        }
        if self.chance(n, 36, 30) {
            phones.push(json!({
                "name": "work",
                "number": format!("+1-555-0100-{:04}", n % 10_000),
            }));
        }
        let is_manager = n == 1 || self.chance(n, 37, 15);
        let mut roles = vec![ROLES[0].0];
        if is_manager {
            roles.push(ROLES[1].0);
        }
        let tshirt = self
            .chance(n, 38, 85)
            .then(|| *self.pick(n, 39, TSHIRT_SIZES));
        let cost_center = format!("CC-{}", 10 + self.below(n, 40, 31));
        m.insert("personal_email".into(), json!(personal_email));
        m.insert("date_of_birth".into(), json!(birth));
        m.insert("gender".into(), gender);
        m.insert("phone_numbers".into(), Value::Array(phones));
        m.insert("role_ids".into(), json!(roles));
        m.insert(
            "custom_field_values".into(),
            json!({ "tshirt_size": tshirt, "cost_center": cost_center }),
        );
        m
    }
}

/// One lookup endpoint's body, or `None` for a path that is not a lookup.
pub(crate) fn lookup(path: &str) -> Option<Value> {
    let body = match path {
        "departments" => DEPARTMENTS
            .iter()
            .map(|(id, name)| json!({ "id": id, "name": name, "deleted": false }))
            .collect(),
        "sub_departments" => SUB_DEPARTMENTS
            .iter()
            .map(|(id, name, dept)| {
                json!({ "id": id, "name": name, "department_id": dept, "deleted": false })
            })
            .collect(),
        "branches" => BRANCHES
            .iter()
            .map(|(id, name, city, country, tz, main)| {
                json!({
                    "id": id, "name": name, "city": city, "country_code": country,
                    "time_zone": tz, "main_office": main, "deleted": false,
                })
            })
            .collect(),
        "business_units" => BUSINESS_UNITS
            .iter()
            .map(|(id, name)| json!({ "id": id, "name": name, "deleted": false }))
            .collect(),
        "teams" => TEAMS
            .iter()
            .map(|(id, name)| json!({ "id": id, "name": name, "deleted": false }))
            .collect(),
        "roles" => ROLES
            .iter()
            .map(|(id, name, description)| {
                json!({ "id": id, "name": name, "description": description })
            })
            .collect(),
        "employee_fields" => employee_fields(),
        _ => return None,
    };
    Some(Value::Array(body))
}

fn employee_fields() -> Vec<Value> {
    let field_type = |name: &str| match name {
        "id" | "department_id" | "sub_department_id" | "business_unit_id" | "branch_id"
        | "team_id" | "reporting_to_id" => "number",
        "terminated" | "deleted" => "boolean",
        "termination_date" | "joining_date" | "date_of_birth" => "date",
        "created_at" | "updated_at" => "date_time",
        "status" | "employee_type" | "gender" => "dropdown",
        "phone_numbers" | "role_ids" => "array",
        "custom_field_values" => "object",
        _ => "text",
    };
    let label = |name: &str| {
        let mut s = name.replace('_', " ");
        if let Some(first) = s.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        s
    };
    let standard = LIST_FIELDS
        .iter()
        .chain(DETAIL_ONLY_FIELDS)
        .enumerate()
        .map(|(i, name)| {
            json!({
                "id": i + 1,
                "name": name,
                "label": label(name),
                "type": "standard",
                "field_type": field_type(name),
                "mandatory": matches!(*name, "first_name" | "last_name" | "official_email"),
            })
        });
    let custom = [
        json!({
            "id": 901, "name": "tshirt_size", "label": "T-shirt size", "type": "custom",
            "field_type": "dropdown", "mandatory": false, "choices": TSHIRT_SIZES,
        }),
        json!({
            "id": 902, "name": "cost_center", "label": "Cost center", "type": "custom",
            "field_type": "text", "mandatory": false,
        }),
    ];
    standard.chain(custom).collect()
}

/// One employee: a generated number, or a record a test changed or added.
#[derive(Clone, Debug)]
enum Record {
    Generated(u32),
    Stored(Box<Map<String, Value>>),
}

/// A list request's filters and order, as parsed from the query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ListQuery {
    /// `(field, value)` pairs that must all match.
    pub filters: Vec<(&'static str, String)>,
    /// `updated_since`: only employees whose `updated_at` is at or after it.
    pub updated_since: Option<DateTime<Utc>>,
    /// Field to order by and whether descending; `None` keeps id order.
    pub sort: Option<(String, bool)>,
}

impl ListQuery {
    fn cache_key(&self) -> String {
        let mut filters: Vec<String> = self
            .filters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        filters.sort();
        let since = self.updated_since.map(|t| t.timestamp_micros());
        format!("{filters:?}|{since:?}|{:?}", self.sort)
    }

    fn is_identity(&self) -> bool {
        self.filters.is_empty() && self.updated_since.is_none() && self.sort.is_none()
    }

    /// A record changed at or after `updated_since`. One whose `updated_at` is absent
    /// or unreadable (only a record a test stored that way) is kept: nothing shows it
    /// unchanged.
    fn changed_since(&self, record: &Map<String, Value>) -> bool {
        let Some(since) = self.updated_since else {
            return true;
        };
        record
            .get("updated_at")
            .and_then(Value::as_str)
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .is_none_or(|at| at >= since)
    }
}

/// Member fields `touch` can change, each with the values it cycles through.
pub(crate) const TOUCHABLE: &[(&str, &[&str])] = &[
    ("designation", DESIGNATIONS),
    ("first_name", FIRST_NAMES),
    ("last_name", LAST_NAMES),
];

/// Filtered and ordered views are cached until the data changes, so paging through a
/// filtered list of 100,000 employees scans them once, not once per page.
const VIEW_CACHE_LIMIT: usize = 16;

/// The account's employees, in id order.
#[derive(Debug)]
pub(crate) struct Directory {
    generator: Generator,
    records: Vec<Record>,
    views: HashMap<String, Arc<Vec<u32>>>,
}

/// Text form a filter compares against (`true`, `1001`, `active`).
fn filter_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn compare_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let rank = |v: Option<&Value>| match v {
        None | Some(Value::Null) => 3,
        Some(Value::Number(_)) => 0,
        Some(Value::String(_)) => 1,
        Some(_) => 2,
    };
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// JSON merge of `patch` into `target`: objects merge key by key, anything else
/// (including `null`) replaces the value, so `null` leaves the key present with a null
/// value, as Freshteam sends unset fields.
fn merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match (target.get_mut(key), value) {
            (Some(Value::Object(existing)), Value::Object(inner)) => merge(existing, inner),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

impl Directory {
    pub(crate) fn new(generator: Generator, employees: usize) -> Self {
        let count = u32::try_from(employees).expect("at most u32::MAX employees");
        Directory {
            generator,
            records: (1..=count).map(Record::Generated).collect(),
            views: HashMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    fn id_of(record: &Record) -> i64 {
        match record {
            Record::Generated(n) => ID_BASE + i64::from(*n),
            Record::Stored(m) => m.get("id").and_then(Value::as_i64).unwrap_or(i64::MIN),
        }
    }

    fn employee_id_matches(record: &Record, employee_id: &str) -> bool {
        match record {
            Record::Generated(n) => Generator::employee_id(u64::from(*n)) == employee_id,
            Record::Stored(m) => m.get("employee_id").and_then(Value::as_str) == Some(employee_id),
        }
    }

    fn list_map(&self, record: &Record) -> Map<String, Value> {
        match record {
            Record::Generated(n) => self.generator.list_record(u64::from(*n)),
            Record::Stored(m) => LIST_FIELDS
                .iter()
                .filter_map(|k| m.get(*k).map(|v| (k.to_string(), v.clone())))
                .collect(),
        }
    }

    fn detail_map(&self, record: &Record) -> Map<String, Value> {
        match record {
            Record::Generated(n) => self.generator.detail_record(u64::from(*n)),
            Record::Stored(m) => (**m).clone(),
        }
    }

    fn changed(&mut self) {
        self.views.clear();
    }

    /// Positions of the employees a list query selects, in the order it asks for.
    fn view(&mut self, query: &ListQuery) -> Option<Arc<Vec<u32>>> {
        if query.is_identity() {
            return None;
        }
        let key = query.cache_key();
        if let Some(view) = self.views.get(&key) {
            return Some(view.clone());
        }
        // Generated records all changed before `after_generated_changes`: a later
        // `updated_since` skips them without deriving them.
        let untouched_too_old = query
            .updated_since
            .is_some_and(|since| since >= after_generated_changes());
        let mut rows: Vec<(u32, Map<String, Value>)> = self
            .records
            .iter()
            .enumerate()
            .filter_map(|(pos, record)| {
                if untouched_too_old && matches!(record, Record::Generated(_)) {
                    return None;
                }
                let m = self.list_map(record);
                let keep = query.changed_since(&m)
                    && query.filters.iter().all(|(field, wanted)| {
                        let have = m.get(*field).and_then(filter_text);
                        // A record without a flag is not terminated, deleted or a draft.
                        let have = match (have, *field) {
                            (Some(h), _) => h,
                            (None, "terminated" | "deleted" | "draft") => "false".to_string(),
                            (None, "status") => "active".to_string(),
                            (None, _) => return false,
                        };
                        match *field {
                            // `status` takes a comma-separated list.
                            "status" => wanted
                                .split(',')
                                .any(|w| have.eq_ignore_ascii_case(w.trim())),
                            "official_email" => have.eq_ignore_ascii_case(wanted),
                            _ => have == *wanted,
                        }
                    });
                keep.then_some((pos as u32, m))
            })
            .collect();
        if let Some((field, descending)) = &query.sort {
            // Stable: equal keys stay in id order, whichever the direction.
            rows.sort_by(|a, b| {
                let ord = compare_values(a.1.get(field), b.1.get(field));
                if *descending {
                    ord.reverse()
                } else {
                    ord
                }
            });
        }
        let view = Arc::new(rows.into_iter().map(|(pos, _)| pos).collect::<Vec<_>>());
        if self.views.len() >= VIEW_CACHE_LIMIT {
            self.views.clear();
        }
        self.views.insert(key, view.clone());
        Some(view)
    }

    /// The selected total and the list records of one page (`page` from 1).
    pub(crate) fn page(
        &mut self,
        query: &ListQuery,
        page: usize,
        page_size: usize,
    ) -> (usize, Vec<Value>) {
        let view = self.view(query);
        let total = view.as_ref().map_or(self.records.len(), |v| v.len());
        let start = (page - 1).saturating_mul(page_size);
        let end = start.saturating_add(page_size).min(total);
        let rows = (start..end)
            .map(|i| {
                let pos = view.as_ref().map_or(i, |v| v[i] as usize);
                Value::Object(self.list_map(&self.records[pos]))
            })
            .collect();
        (total, rows)
    }

    /// The full record for a Freshteam id.
    pub(crate) fn detail(&self, id: i64) -> Option<Value> {
        let pos = self.records.binary_search_by_key(&id, Self::id_of).ok()?;
        Some(Value::Object(self.detail_map(&self.records[pos])))
    }

    pub(crate) fn all(&self) -> Vec<Value> {
        self.records
            .iter()
            .map(|r| Value::Object(self.detail_map(r)))
            .collect()
    }

    pub(crate) fn find(&self, employee_id: &str) -> Option<Value> {
        self.records
            .iter()
            .find(|r| Self::employee_id_matches(r, employee_id))
            .map(|r| Value::Object(self.detail_map(r)))
    }

    fn position(&self, employee_id: &str) -> Result<usize, SimError> {
        self.records
            .iter()
            .position(|r| Self::employee_id_matches(r, employee_id))
            .ok_or_else(|| SimError::UnknownEmployee(employee_id.to_string()))
    }

    /// Merges `patch` into the employee with that Employee ID and returns the result.
    pub(crate) fn update(&mut self, employee_id: &str, patch: &Value) -> Result<Value, SimError> {
        let Value::Object(patch) = patch else {
            return Err(SimError::Invalid("a patch must be a JSON object".into()));
        };
        let pos = self.position(employee_id)?;
        let mut record = self.detail_map(&self.records[pos]);
        merge(&mut record, patch);
        if !patch.contains_key("updated_at") {
            // An edit in Freshteam moves updated_at; clients may rely on it for change
            // detection.
            record.insert(
                "updated_at".into(),
                json!(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
            );
        }
        let id = record
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| SimError::Invalid("`id` must stay an integer".into()))?;
        if id != Self::id_of(&self.records[pos])
            && self.records.iter().any(|r| Self::id_of(r) == id)
        {
            return Err(SimError::DuplicateId(id));
        }
        self.records[pos] = Record::Stored(Box::new(record.clone()));
        self.records.sort_by_key(Self::id_of);
        self.changed();
        Ok(Value::Object(record))
    }

    /// Adds an employee; without an `id` it gets one past the highest.
    pub(crate) fn add(&mut self, employee: Value) -> Result<Value, SimError> {
        let Value::Object(mut record) = employee else {
            return Err(SimError::Invalid(
                "an employee must be a JSON object".into(),
            ));
        };
        let id = match record.get("id") {
            None | Some(Value::Null) => {
                let next = self
                    .records
                    .last()
                    .map_or(ID_BASE + 1, |r| Self::id_of(r) + 1);
                record.insert("id".into(), json!(next));
                next
            }
            Some(v) => v
                .as_i64()
                .ok_or_else(|| SimError::Invalid("`id` must be an integer".into()))?,
        };
        let pos = match self.records.binary_search_by_key(&id, Self::id_of) {
            Ok(_) => return Err(SimError::DuplicateId(id)),
            Err(pos) => pos,
        };
        self.records
            .insert(pos, Record::Stored(Box::new(record.clone())));
        self.changed();
        Ok(Value::Object(record))
    }

    /// Edits `field` of `count` employees spread evenly over the directory (only
    /// those with an Employee ID), each to the next value of that field's cycle, and
    /// moves their `updated_at` to now, as an edit in Freshteam would. Returns their
    /// Employee IDs in id order.
    pub(crate) fn touch(&mut self, count: usize, field: &str) -> Result<Vec<String>, SimError> {
        let Some((field, cycle)) = TOUCHABLE.iter().find(|(f, _)| *f == field) else {
            let names: Vec<&str> = TOUCHABLE.iter().map(|(f, _)| *f).collect();
            return Err(SimError::Invalid(format!(
                "field must be one of {}, not '{field}'",
                names.join(", ")
            )));
        };
        let candidates: Vec<usize> = (0..self.records.len())
            .filter(|&pos| match &self.records[pos] {
                Record::Generated(_) => true,
                Record::Stored(m) => m.get("employee_id").is_some_and(Value::is_string),
            })
            .collect();
        if count > candidates.len() {
            return Err(SimError::Invalid(format!(
                "count {count} is more than the {} employees with an Employee ID",
                candidates.len()
            )));
        }
        let now = json!(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
        let mut touched = Vec::with_capacity(count);
        for i in 0..count {
            // The middle of each of `count` equal slices.
            let pos = candidates[(2 * i + 1) * candidates.len() / (2 * count)];
            let mut record = self.detail_map(&self.records[pos]);
            let current = record.get(*field).and_then(Value::as_str).unwrap_or("");
            let next = cycle
                .iter()
                .position(|v| *v == current)
                .map_or(cycle[0], |at| cycle[(at + 1) % cycle.len()]);
            record.insert(field.to_string(), json!(next));
            record.insert("updated_at".into(), now.clone());
            touched.push(
                record["employee_id"]
                    .as_str()
                    .expect("candidates have an Employee ID")
                    .to_string(),
            );
            self.records[pos] = Record::Stored(Box::new(record));
        }
        if count > 0 {
            self.changed();
        }
        Ok(touched)
    }

    pub(crate) fn remove(&mut self, employee_id: &str) -> bool {
        match self.position(employee_id) {
            Ok(pos) => {
                self.records.remove(pos);
                self.changed();
                true
            }
            Err(_) => false,
        }
    }

    #[cfg(test)]
    pub(crate) fn record_size() -> usize {
        std::mem::size_of::<Record>()
    }
}
