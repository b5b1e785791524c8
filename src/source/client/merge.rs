//! Merging the pages of every population pass into one record per employee.

use super::*;

pub(super) fn employee((id, found): (i64, Found)) -> EmployeeRecord {
    EmployeeRecord {
        id,
        values: found.values.unpack(),
        population: found.population,
    }
}

/// Records of a list read, by Freshteam id.
pub(super) type Records = BTreeMap<i64, Found>;

/// One record as a pass found it.
pub(super) struct Found {
    pub(super) values: PackedValues,
    pub(super) population: Population,
    /// The record's own fields contradict the pass's filter.
    pub(super) contradicted: bool,
}

/// One list read: a population's filter, or the bare list (only to count employees).
#[derive(Clone, Copy)]
pub(super) enum Pass {
    Unfiltered,
    Population(Population),
}

impl Pass {
    pub(super) fn population(self) -> Population {
        match self {
            Pass::Unfiltered => Population::Active,
            Pass::Population(p) => p,
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Pass::Unfiltered | Pass::Population(Population::Active) => "employees",
            Pass::Population(Population::Inactive) => "inactive employees",
            Pass::Population(Population::Terminated) => "terminated employees",
            Pass::Population(Population::Deleted) => "deleted employees",
            Pass::Population(Population::Draft) => "draft profiles",
        }
    }
}

pub(super) fn filter_text(filter: &[(&str, &str)]) -> String {
    filter
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A boolean field of a raw record: JSON `true`/`false` or their text; `None` when
/// absent or anything else.
pub(super) fn flag(record: &Value, field: &str) -> Option<bool> {
    match record.get(field)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The population a record's own fields put it in, when they say anything.
pub(super) fn own_population(record: &Value) -> Population {
    let status = record
        .get("status")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase());
    if flag(record, "deleted") == Some(true) {
        Population::Deleted
    } else if flag(record, "terminated") == Some(true) {
        Population::Terminated
    } else if status.as_deref() == Some("inactive") {
        Population::Inactive
    } else if flag(record, "draft") == Some(true) {
        Population::Draft
    } else {
        Population::Active
    }
}

/// True when the record's own fields say it does not match the pass's filter.
pub(super) fn contradicts(population: Population, record: &Value) -> bool {
    population.filter().iter().any(|(field, wanted)| {
        if *field == "status" {
            record
                .get("status")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.trim().eq_ignore_ascii_case(wanted))
        } else {
            flag(record, field).is_some_and(|b| b.to_string() != *wanted)
        }
    })
}

/// Projects one list page into `records`, keeping the first copy of a record seen
/// twice. Returns the number of records on the page.
pub(super) fn merge_page(
    url: &Url,
    body: Value,
    fields: &[String],
    pass: Population,
    records: &mut Records,
) -> Result<usize, SourceError> {
    let Value::Array(items) = body else {
        return Err(SourceError::BadResponse {
            path: shown_path(url),
            detail: format!("expected a JSON array of employees, got {}", kind_of(&body)),
        });
    };
    let count = items.len();
    for item in items {
        // Skipping a record would make that employee look like a leaver: fail instead.
        let id = record_id(&item).ok_or_else(|| SourceError::BadResponse {
            path: shown_path(url),
            detail: "an employee record has no numeric id".into(),
        })?;
        records.entry(id).or_insert_with(|| {
            let contradicted = contradicts(pass, &item);
            let claimed = if contradicted {
                Population::Active
            } else {
                pass
            };
            Found {
                values: PackedValues::new(&project(&item, fields)),
                population: own_population(&item).max(claimed),
                contradicted: contradicted && pass != Population::Active,
            }
        });
    }
    Ok(count)
}

pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
