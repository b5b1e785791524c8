//! The account's employees as the API sees them: generated numbers and the records tests
//! changed or added, filtered, ordered and paged.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::generator::{after_generated_changes, Generator, DESIGNATIONS, FIRST_NAMES, LAST_NAMES};
use super::{ID_BASE, LIST_FIELDS};
use crate::SimError;

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

    /// The filters of the documented list: current staff ("List of active employees
    /// from directory").
    pub(crate) fn current_staff_filters() -> [(&'static str, String); 4] {
        [
            ("status", "active".to_string()),
            ("terminated", "false".to_string()),
            ("deleted", "false".to_string()),
            ("draft", "false".to_string()),
        ]
    }

    /// A record's list form passes the date and every filter.
    fn matches(&self, m: &Map<String, Value>) -> bool {
        self.changed_since(m)
            && self.filters.iter().all(|(field, wanted)| {
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
            })
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
                query.matches(&m).then_some((pos as u32, m))
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
    /// `current_only`: among current staff only (active, not terminated, deleted nor a
    /// draft), so that every edit is one an import applies.
    pub(crate) fn touch(
        &mut self,
        count: usize,
        field: &str,
        current_only: bool,
    ) -> Result<Vec<String>, SimError> {
        let Some((field, cycle)) = TOUCHABLE.iter().find(|(f, _)| *f == field) else {
            let names: Vec<&str> = TOUCHABLE.iter().map(|(f, _)| *f).collect();
            return Err(SimError::Invalid(format!(
                "field must be one of {}, not '{field}'",
                names.join(", ")
            )));
        };
        let current = ListQuery {
            filters: ListQuery::current_staff_filters().to_vec(),
            ..ListQuery::default()
        };
        let candidates: Vec<usize> = (0..self.records.len())
            .filter(|&pos| match &self.records[pos] {
                Record::Generated(_) => true,
                Record::Stored(m) => m.get("employee_id").is_some_and(Value::is_string),
            })
            .filter(|&pos| !current_only || current.matches(&self.list_map(&self.records[pos])))
            .collect();
        if count > candidates.len() {
            let which = if current_only {
                "current employees"
            } else {
                "employees"
            };
            return Err(SimError::Invalid(format!(
                "count {count} is more than the {} {which} with an Employee ID",
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
