//! Reducing Freshteam JSON to what a run asked for, as soon as a page is parsed.

use std::collections::HashMap;

use serde_json::Value;

/// Freshteam's own id of a record: a JSON number or a numeric string.
pub(crate) fn record_id(record: &Value) -> Option<i64> {
    as_id(record.get("id")?)
}

fn as_id(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A record's requested values in one allocation (plus their offsets): a run holds
/// every record until the last list page is in.
#[derive(Debug, Default)]
pub(crate) struct PackedValues {
    text: Box<str>,
    /// End of each value in `text`; [`ABSENT`] set for `None`.
    ends: Box<[u32]>,
}

const ABSENT: u32 = 1 << 31;

impl PackedValues {
    pub(crate) fn new(values: &[Option<String>]) -> Self {
        let mut text = String::with_capacity(values.iter().flatten().map(String::len).sum());
        let ends = values
            .iter()
            .map(|v| {
                if let Some(v) = v {
                    text.push_str(v);
                }
                let end = u32::try_from(text.len())
                    .ok()
                    .filter(|e| *e < ABSENT)
                    .expect("a record's values fit in 2 GiB");
                if v.is_some() {
                    end
                } else {
                    end | ABSENT
                }
            })
            .collect();
        PackedValues {
            text: text.into_boxed_str(),
            ends,
        }
    }

    pub(crate) fn unpack(&self) -> Vec<Option<String>> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let stop = (end & !ABSENT) as usize;
                let v = (end & ABSENT == 0).then(|| self.text[start..stop].to_string());
                start = stop;
                v
            })
            .collect()
    }
}

/// The requested fields of one record, in request order.
pub(crate) fn project(record: &Value, fields: &[String]) -> Vec<Option<String>> {
    fields
        .iter()
        .map(|f| resolve(record, f).and_then(text))
        .collect()
}

/// Finds a possibly dotted path. An exact key wins over splitting at a dot (custom field
/// names may contain dots); an array on the way is searched for the element whose
/// `name`, `field_name` or `label` is the rest of the path, and that element's `value`
/// is taken (the list shape of `custom_field_values`).
fn resolve<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    if let Some(found) = obj.get(path) {
        return Some(found);
    }
    let (head, rest) = path.split_once('.')?;
    match obj.get(head)? {
        child @ Value::Object(_) => resolve(child, rest),
        Value::Array(items) => {
            let named = |key: &str, exact: bool| {
                items.iter().find(|item| {
                    item.get(key).and_then(Value::as_str).is_some_and(|n| {
                        if exact {
                            n == rest
                        } else {
                            n.trim().eq_ignore_ascii_case(rest)
                        }
                    })
                })
            };
            let item = ["name", "field_name", "label"]
                .iter()
                .find_map(|k| named(k, true))
                .or_else(|| {
                    ["name", "field_name", "label"]
                        .iter()
                        .find_map(|k| named(k, false))
                })?;
            item.get("value")
        }
        _ => None,
    }
}

/// Strings as-is, numbers and booleans as their text, null as absent, arrays and
/// objects as compact JSON.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(_) | Value::Object(_) => Some(v.to_string()),
    }
}

/// `id → name` from a lookup endpoint's array; entries without an id or a name are
/// skipped. `None` when the body is not an array.
pub(crate) fn lookup_names(body: &Value) -> Option<HashMap<i64, String>> {
    by_id(body, |item| {
        let name = item.get("name")?.as_str()?.trim();
        (!name.is_empty()).then(|| name.to_string())
    })
}

/// `id → field` (a possibly dotted path, as text) from a lookup endpoint's array;
/// entries without an id or the field are skipped. `None` when the body is not an array.
pub(crate) fn lookup_field(body: &Value, field: &str) -> Option<HashMap<i64, String>> {
    by_id(body, |item| {
        resolve(item, field)
            .and_then(text)
            .filter(|v| !v.trim().is_empty())
    })
}

/// `id → value(item)` for the items of a lookup endpoint's array that have both.
fn by_id(body: &Value, value: impl Fn(&Value) -> Option<String>) -> Option<HashMap<i64, String>> {
    let items = body.as_array()?;
    Some(
        items
            .iter()
            .filter_map(|item| Some((as_id(item.get("id")?)?, value(item)?)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn projects_scalars_as_text() {
        let rec = json!({
            "id": 7, "employee_id": "E7", "terminated": false, "department_id": 12,
            "score": 1.5, "middle_name": null, "tags": ["a", "b"], "address": {"city": "Oslo"}
        });
        let got = project(
            &rec,
            &fields(&[
                "employee_id",
                "terminated",
                "department_id",
                "score",
                "middle_name",
                "absent",
                "tags",
                "address",
                "address.city",
            ]),
        );
        assert_eq!(
            got,
            vec![
                Some("E7".into()),
                Some("false".into()),
                Some("12".into()),
                Some("1.5".into()),
                None,
                None,
                Some(r#"["a","b"]"#.into()),
                Some(r#"{"city":"Oslo"}"#.into()),
                Some("Oslo".into()),
            ]
        );
        assert_eq!(record_id(&rec), Some(7));
        assert_eq!(record_id(&json!({"id": " 8 "})), Some(8));
        assert_eq!(record_id(&json!({"id": null})), None);
    }

    #[test]
    fn custom_fields_as_object_or_list() {
        let f = fields(&[
            "custom_field_values.tshirt_size",
            "custom_field_values.badge",
            "custom_field_values.remote",
            "custom_field_values.cost.center",
            "custom_field_values.missing",
        ]);
        let as_object = json!({"id": 1, "custom_field_values": {
            "tshirt_size": "M", "badge": 42, "remote": true, "cost.center": "CC-1"
        }});
        let as_list = json!({"id": 1, "custom_field_values": [
            {"name": "tshirt_size", "value": "M"},
            {"field_name": "badge", "value": 42},
            {"label": "Remote", "value": true},
            {"name": "cost.center", "value": "CC-1"},
            {"name": "missing"}
        ]});
        let want = vec![
            Some("M".to_string()),
            Some("42".into()),
            Some("true".into()),
            Some("CC-1".into()),
            None,
        ];
        assert_eq!(project(&as_object, &f), want);
        assert_eq!(project(&as_list, &f), want);
        assert_eq!(
            project(&json!({"id": 1, "custom_field_values": null}), &f),
            vec![None; 5]
        );
    }

    #[test]
    fn lookup_accepts_numeric_and_string_ids() {
        let body = json!([
            {"id": 1, "name": "Engineering"},
            {"id": "2", "name": "Sales"},
            {"id": 3},
            {"id": 4, "name": null},
            {"id": 5, "name": "  "},
            {"name": "no id"}
        ]);
        let names = lookup_names(&body).unwrap();
        assert_eq!(names.len(), 2);
        assert_eq!(names[&1], "Engineering");
        assert_eq!(names[&2], "Sales");
        assert!(lookup_names(&json!({"departments": []})).is_none());
    }
}
