//! Employees derived from `(seed, number)`, and the account's fixed lookups.

use chrono::{DateTime, Duration as Days, NaiveDate, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::{DETAIL_ONLY_FIELDS, ID_BASE, LIST_FIELDS};

const EMAIL_DOMAIN: &str = "acme.example";

pub(super) const FIRST_NAMES: &[&str] = &[
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

pub(super) const LAST_NAMES: &[&str] = &[
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

pub(super) const DESIGNATIONS: &[&str] = &[
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

/// `/api/levels`: each employee's `level_id` (detail record).
const LEVELS: &[(i64, &str)] = &[
    (701, "L1 Associate"),
    (702, "L2 Professional"),
    (703, "L3 Senior"),
    (704, "L4 Lead"),
    (705, "L5 Director"),
];

/// The `work_location` dropdown custom field's choices (`{id, value}` in the record).
const WORK_LOCATIONS: &[(i64, &str)] = &[(801, "Office"), (802, "Hybrid"), (803, "Remote")];

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
        let level = self.pick(n, 41, LEVELS).0;
        let (location_id, location) = *self.pick(n, 42, WORK_LOCATIONS);
        m.insert("personal_email".into(), json!(personal_email));
        m.insert("date_of_birth".into(), json!(birth));
        m.insert("gender".into(), gender);
        m.insert("phone_numbers".into(), Value::Array(phones));
        m.insert("role_ids".into(), json!(roles));
        m.insert("level_id".into(), json!(level));
        m.insert(
            "custom_field_values".into(),
            json!({
                "tshirt_size": tshirt,
                "cost_center": cost_center,
                "work_location": { "id": location_id, "value": location },
            }),
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
        "levels" => LEVELS
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
        | "team_id" | "reporting_to_id" | "level_id" => "number",
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
        json!({
            "id": 903, "name": "work_location", "label": "Work location", "type": "custom",
            "field_type": "dropdown", "mandatory": false,
            "choices": WORK_LOCATIONS.iter().map(|(_, v)| v).collect::<Vec<_>>(),
        }),
    ];
    standard.chain(custom).collect()
}
