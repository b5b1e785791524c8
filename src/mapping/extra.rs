//! `spec.mapping.attributes[]` and `spec.scope`: compiled with the rest of the mapping,
//! evaluated per record.

use std::collections::HashMap;

use super::cel::{self, Cel, CelError, Want};
use super::{check_plain_field, value, Extract, MappingError, CUSTOM_PREFIX, DETAIL_FIELDS};
use crate::api::{AttributeMapping, ScopeSpec, WhenOutOfScope};
use crate::member::target::{intern, TargetPath};
use crate::member::{Attr, AttrSet};
use crate::source::{EmployeeRecord, LookupFields, LookupKind, SourceRequest, LIST_FIELDS};

pub(super) use super::RELATIONS;

/// Relations to another employee: name, the field holding their Freshteam id. A path
/// `reporting_to.<field>` takes that field of the manager's record (`reporting_to` alone:
/// their Employee ID).
pub(super) const PEOPLE: &[(&str, &str)] = &[
    ("reporting_to", "reporting_to_id"),
    ("hr_incharge", "hr_incharge_id"),
];

/// The most `spec.mapping.attributes[]` entries.
pub const MAX_ATTRIBUTES: usize = 50;

/// One compiled `spec.mapping.attributes[i]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ExtraAttr {
    pub attr: Attr,
    pub extract: Extract,
    pub default: Option<String>,
    /// `spec.mapping.attributes[i]`.
    pub path: String,
}

/// A relation an expression reads: `employee.<name>` is a map of the looked-up record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CelRelation {
    name: &'static str,
    kind: LookupKind,
    id: usize,
    fields: Vec<String>,
}

/// What expressions (attributes and the scope filter) read of each record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct CelInput {
    pub fields: Vec<(String, usize)>,
    pub relations: Vec<CelRelation>,
    pub used: bool,
}

/// `spec.scope`, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Scope {
    pub filter: Cel,
    pub when_out: WhenOutOfScope,
}

fn index(request: &mut SourceRequest, name: &str) -> usize {
    match request.fields.iter().position(|f| f == name) {
        Some(i) => i,
        None => {
            request.fields.push(name.to_string());
            request.fields.len() - 1
        }
    }
}

/// `id_field` names another employee whose record the mapping reads.
pub(super) fn add_person(request: &mut SourceRequest, id_field: &str) {
    if !request.people.iter().any(|p| p == id_field) {
        request.people.push(id_field.to_string());
    }
}

fn add_lookup(request: &mut SourceRequest, kind: LookupKind) {
    if !request.lookups.contains(&kind) {
        request.lookups.push(kind);
    }
}

fn err(field: String, message: impl Into<String>) -> MappingError {
    MappingError {
        field,
        message: message.into(),
    }
}

/// Compiles `spec.mapping.attributes[]`: each target once, each with exactly one source.
pub(super) fn compile_attributes(
    attributes: &[AttributeMapping],
    request: &mut SourceRequest,
    managed: &mut AttrSet,
    input: &mut CelInput,
) -> Result<Vec<ExtraAttr>, MappingError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(err(
            "spec.mapping.attributes".into(),
            format!(
                "has {} entries; at most {MAX_ATTRIBUTES} are allowed",
                attributes.len()
            ),
        ));
    }
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, a) in attributes.iter().enumerate() {
        let path = format!("spec.mapping.attributes[{i}]");
        let parsed = TargetPath::parse(&a.target)
            .map_err(|e| err(format!("{path}.target"), e.to_string()))?;
        let canonical = parsed.patch_path();
        if let Some(first) = seen.insert(canonical.to_lowercase(), i) {
            return Err(err(
                format!("{path}.target"),
                format!("'{canonical}' is already filled by spec.mapping.attributes[{first}]: one source per target"),
            ));
        }
        let sources: Vec<&str> = [
            a.from.as_ref().map(|_| "from"),
            a.value.as_ref().map(|_| "value"),
            a.expression.as_ref().map(|_| "expression"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if sources.len() != 1 {
            return Err(err(
                path,
                format!(
                    "needs exactly one of from, value or expression for '{canonical}', has {}",
                    if sources.is_empty() {
                        "none".to_string()
                    } else {
                        sources.join(" and ")
                    }
                ),
            ));
        }
        let extract = if let Some(from) = &a.from {
            compile_from(from.trim(), &format!("{path}.from"), request)?
        } else if let Some(value) = &a.value {
            Extract::Constant(value.clone())
        } else {
            let source = a.expression.as_deref().unwrap_or_default();
            let field = format!("{path}.expression");
            let cel =
                Cel::compile(source, Want::Text).map_err(|e| err(field.clone(), e.message()))?;
            add_cel_input(&cel, &field, request, input)?;
            Extract::Expression(cel)
        };
        let attr = Attr::Extra(intern(&canonical));
        managed.insert(attr);
        out.push(ExtraAttr {
            attr,
            extract,
            default: a.default.clone().filter(|d| !d.is_empty()),
            path,
        });
    }
    Ok(out)
}

/// A `from` path: a field, `custom_field_values.<name>`, or `<relation>[.<field>]`.
fn compile_from(
    from: &str,
    field: &str,
    request: &mut SourceRequest,
) -> Result<Extract, MappingError> {
    let (head, rest) = match from.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (from, None),
    };
    if let Some((_, kind, id_field)) = RELATIONS.iter().find(|(n, _, _)| *n == head) {
        add_lookup(request, *kind);
        if !LIST_FIELDS.contains(id_field) {
            request.needs_detail = true;
        }
        let id = index(request, id_field);
        return Ok(match rest {
            None | Some("name") => Extract::Lookup(*kind, id),
            Some(f) => {
                let pair = (*kind, f.to_string());
                if !request.lookup_fields.contains(&pair) {
                    request.lookup_fields.push(pair);
                }
                Extract::LookupField(*kind, id, f.to_string())
            }
        });
    }
    if let Some((_, id_field)) = PEOPLE.iter().find(|(n, _)| *n == head) {
        if !LIST_FIELDS.contains(id_field) {
            request.needs_detail = true;
        }
        let id = index(request, id_field);
        add_person(request, id_field);
        let of = rest.unwrap_or("employee_id");
        check_plain_field(field, of)?;
        if !LIST_FIELDS.contains(&of) {
            request.needs_detail = true;
        }
        return Ok(Extract::Person(id, index(request, of)));
    }
    check_plain_field(field, from)?;
    if !LIST_FIELDS.contains(&from) {
        request.needs_detail = true;
    }
    let i = index(request, from);
    Ok(if from.starts_with(CUSTOM_PREFIX) {
        Extract::Custom(i)
    } else {
        Extract::Value(i)
    })
}

/// Adds what an expression reads to the request and to the record CEL sees.
fn add_cel_input(
    cel: &Cel,
    field: &str,
    request: &mut SourceRequest,
    input: &mut CelInput,
) -> Result<(), MappingError> {
    input.used = true;
    // The list fields it names (all of them when `employee` is used as a whole): a run
    // holds every record's requested fields until the last list page is in.
    let whole = cel.reads.whole;
    for f in LIST_FIELDS
        .iter()
        .filter(|f| whole || cel.reads.fields.iter().any(|n| n == *f))
    {
        if !input.fields.iter().any(|(n, _)| n == f) {
            let i = index(request, f);
            input.fields.push((f.to_string(), i));
        }
    }
    for name in &cel.reads.fields {
        let name = name.as_str();
        if input.fields.iter().any(|(f, _)| f == name) {
            continue;
        }
        if let Some((rel, kind, id_field)) = RELATIONS.iter().find(|(n, _, _)| *n == name) {
            add_lookup(request, *kind);
            if !LIST_FIELDS.contains(id_field) {
                request.needs_detail = true;
            }
            let id = index(request, id_field);
            if !input.relations.iter().any(|r| r.name == *rel) {
                input.relations.push(CelRelation {
                    name: rel,
                    kind: *kind,
                    id,
                    fields: Vec::new(),
                });
            }
            continue;
        }
        if name == "custom_field_values" || DETAIL_FIELDS.contains(&name) {
            request.needs_detail = true;
            let i = index(request, name);
            input.fields.push((name.to_string(), i));
            continue;
        }
        return Err(err(
            field.to_string(),
            format!("Freshteam has no employee field '{name}' (employee.{name}); fields are those of the employee record, custom_field_values, and the relations department, sub_department, branch, business_unit, team and level"),
        ));
    }
    for (rel, f) in &cel.reads.relation_fields {
        if let Some(r) = input.relations.iter_mut().find(|r| r.name == rel) {
            if f != "name" && f != "id" && !r.fields.contains(f) {
                r.fields.push(f.clone());
                let pair = (r.kind, f.clone());
                if !request.lookup_fields.contains(&pair) {
                    request.lookup_fields.push(pair);
                }
            }
        }
    }
    Ok(())
}

/// Compiles `spec.scope`.
pub(super) fn compile_scope(
    scope: Option<&ScopeSpec>,
    request: &mut SourceRequest,
    input: &mut CelInput,
) -> Result<Option<Scope>, MappingError> {
    let Some(spec) = scope else {
        return Ok(None);
    };
    let Some(source) = spec.filter.as_deref().filter(|f| !f.trim().is_empty()) else {
        return Ok(None);
    };
    let field = "spec.scope.filter".to_string();
    let filter = Cel::compile(source, Want::Bool).map_err(|e| err(field.clone(), e.message()))?;
    add_cel_input(&filter, &field, request, input)?;
    Ok(Some(Scope {
        filter,
        when_out: spec.when_out_of_scope,
    }))
}

/// The record as CEL sees it: its fields, relations as maps of the looked-up record.
pub(super) fn employee(
    input: &CelInput,
    rec: &EmployeeRecord,
    names: &HashMap<LookupKind, HashMap<i64, String>>,
    fields: &LookupFields,
) -> cel::Value {
    let mut entries: Vec<(String, cel::Value)> = input
        .fields
        .iter()
        .map(|(f, i)| (f.clone(), cel::text_value(f, value(rec, *i).as_deref())))
        .collect();
    for r in &input.relations {
        let id = value(rec, r.id).and_then(|v| v.parse::<i64>().ok());
        let related = id.and_then(|id| {
            let name = names.get(&r.kind)?.get(&id)?;
            let mut m = vec![
                ("id".to_string(), cel::Value::Int(id)),
                ("name".to_string(), cel::text_value("name", Some(name))),
            ];
            for f in &r.fields {
                let v = fields.get(&(r.kind, f.clone())).and_then(|by| by.get(&id));
                m.push((f.clone(), cel::text_value(f, v.map(String::as_str))));
            }
            Some(cel::map(m))
        });
        entries.push((r.name.to_string(), related.unwrap_or(cel::Value::Null)));
    }
    cel::map(entries)
}

/// Whether the scope keeps the record; a failing filter is the record's error.
pub(super) fn in_scope(scope: &Scope, employee: &cel::Context<'_>) -> Result<bool, CelError> {
    Ok(scope.filter.eval_in(employee, Want::Bool)?.as_deref() == Some("true"))
}
