//! CEL over `employee` (cel-rust): `spec.mapping.attributes[].expression` and
//! `spec.scope.filter`, compiled and type-probed once per run, evaluated per record.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

pub(super) use cel::objects::Value;
use cel::objects::{Key, Map};
pub(super) use cel::Context;
use cel::{ExecutionError, Program};

/// The names of Freshteam fields an expression reads (`employee.<field>`), and for a
/// relation the fields of the looked-up record (`employee.branch.city`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Reads {
    pub(super) fields: Vec<String>,
    pub(super) relation_fields: Vec<(String, String)>,
    /// `employee` is used otherwise than as `employee.<field>` (`employee["x"]`, a
    /// macro over it): every list field is given.
    pub(super) whole: bool,
}

/// A compiled expression.
#[derive(Clone)]
pub(super) struct Cel {
    pub(super) source: String,
    program: Arc<Program>,
    pub(super) reads: Reads,
}

impl fmt::Debug for Cel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for Cel {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl Eq for Cel {}

/// What an expression must produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Want {
    /// A value written as text (string, number, bool; null = empty).
    Text,
    /// A bool (a scope filter).
    Bool,
}

/// Why an expression is refused or failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum CelError {
    #[error("CEL syntax error: {0}")]
    Syntax(String),
    #[error("CEL type error: {0}")]
    Type(String),
    #[error("{0}")]
    Runtime(String),
}

impl Cel {
    /// Parses `source` and evaluates it once against an employee whose every field is
    /// set, so that type errors (`employee.first_name + 1`, a filter that is not a
    /// bool, an unknown function or variable) are found before any record is read.
    pub(super) fn compile(source: &str, want: Want) -> Result<Cel, CelError> {
        let program = Program::compile(source).map_err(|e| {
            CelError::Syntax(e.to_string().lines().take(3).collect::<Vec<_>>().join(" "))
        })?;
        let cel = Cel {
            source: source.to_string(),
            reads: reads(source),
            program: Arc::new(program),
        };
        let refs = cel.program.references();
        for var in refs.variables() {
            if var != "employee" {
                return Err(CelError::Type(format!(
                    "undeclared reference to '{var}': an expression sees only `employee`"
                )));
            }
        }
        match cel.eval(&probe_employee(&cel.reads), want) {
            // Data-dependent (a missing key, a division by zero): per record.
            Ok(_) | Err(CelError::Runtime(_)) => Ok(cel),
            Err(e) => Err(e),
        }
    }

    /// Evaluates against one employee: `Ok(None)` for null or an empty string.
    pub(super) fn eval(&self, employee: &Value, want: Want) -> Result<Option<String>, CelError> {
        self.eval_in(&context(employee), want)
    }

    /// [`Cel::eval`] in a [`context`] made once for a record's expressions.
    pub(super) fn eval_in(
        &self,
        ctx: &Context<'_>,
        want: Want,
    ) -> Result<Option<String>, CelError> {
        let value = self.program.execute(ctx).map_err(|e| classify(&e))?;
        match (want, value) {
            (Want::Bool, Value::Bool(b)) => Ok(Some(b.to_string())),
            (Want::Bool, other) => Err(CelError::Type(format!(
                "a scope filter must be a bool (true: in scope), not {}",
                other.type_of()
            ))),
            (Want::Text, Value::String(s)) => Ok(Some(s.to_string()).filter(|s| !s.is_empty())),
            (Want::Text, Value::Null) => Ok(None),
            (Want::Text, Value::Int(n)) => Ok(Some(n.to_string())),
            (Want::Text, Value::UInt(n)) => Ok(Some(n.to_string())),
            (Want::Text, Value::Float(n)) => Ok(Some(n.to_string())),
            (Want::Text, Value::Bool(b)) => Ok(Some(b.to_string())),
            (Want::Text, Value::Timestamp(t)) => Ok(Some(t.to_rfc3339())),
            (Want::Text, other) => Err(CelError::Type(format!(
                "an attribute's expression must produce a string, number or bool, not {}",
                other.type_of()
            ))),
        }
    }
}

/// CEL's standard functions, the helpers, and `employee`.
pub(super) fn context(employee: &Value) -> Context<'static> {
    let mut ctx = Context::default();
    ctx.add_function("formatDate", format_date);
    ctx.add_variable_from_value("employee", employee.clone());
    ctx
}

fn classify(e: &ExecutionError) -> CelError {
    use ExecutionError as E;
    match e {
        E::NoSuchOverload
        | E::UnexpectedType { .. }
        | E::UnsupportedBinaryOperator(..)
        | E::UnsupportedUnaryOperator(..)
        | E::ValuesNotComparable(..)
        | E::UndeclaredReference(_)
        | E::UnsupportedTargetType { .. }
        | E::NotSupportedAsMethod { .. }
        | E::InvalidArgumentCount { .. } => CelError::Type(e.to_string()),
        other => CelError::Runtime(other.to_string()),
    }
}

impl CelError {
    /// The message for a manifest error or a record's error row.
    pub(super) fn message(&self) -> String {
        match self {
            CelError::Runtime(m) => format!("CEL evaluation failed: {m}"),
            other => other.to_string(),
        }
    }
}

/// `formatDate("2019-08-08", "%d %B %Y")`: a Freshteam date (or RFC 3339 time) in a
/// strftime format.
fn format_date(date: Arc<String>, format: Arc<String>) -> Result<Value, ExecutionError> {
    let d = date.trim();
    let parsed = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(d).map(|t| t.date_naive()))
        .map_err(|e| ExecutionError::function_error("formatDate", format!("'{d}': {e}")))?;
    let mut out = String::new();
    use std::fmt::Write;
    write!(out, "{}", parsed.format(&format))
        .map_err(|_| ExecutionError::function_error("formatDate", "invalid format"))?;
    Ok(Value::String(Arc::new(out)))
}

/// Fields an expression names after `employee.` (a text scan: CEL has no other way to
/// reach the record).
fn reads(source: &str) -> Reads {
    let mut out = Reads::default();
    let ident = |s: &str| -> usize {
        s.char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
            .map_or(s.len(), |(i, _)| i)
    };
    let mut rest = source;
    while let Some(at) = rest.find("employee.") {
        let before_ok = at == 0
            || !rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        let after = &rest[at + "employee.".len()..];
        let n = ident(after);
        if before_ok && n > 0 {
            let field = after[..n].to_string();
            let tail = &after[n..];
            if let Some(sub) = tail.strip_prefix('.') {
                let m = ident(sub);
                if m > 0 {
                    let pair = (field.clone(), sub[..m].to_string());
                    if !out.relation_fields.contains(&pair) {
                        out.relation_fields.push(pair);
                    }
                }
            }
            if !out.fields.contains(&field) {
                out.fields.push(field);
            }
        }
        rest = &after[n..];
    }
    let words = source
        .match_indices("employee")
        .filter(|(at, _)| {
            let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
            !source[..*at].chars().last().is_some_and(word)
                && !source[at + "employee".len()..]
                    .chars()
                    .next()
                    .is_some_and(word)
        })
        .count();
    out.whole = words > source.matches("employee.").count();
    out
}

fn key(s: &str) -> Key {
    Key::String(Arc::new(s.to_string()))
}

/// A CEL map from names and values.
pub(super) fn map(entries: impl IntoIterator<Item = (String, Value)>) -> Value {
    let map: HashMap<Key, Value> = entries.into_iter().map(|(k, v)| (key(&k), v)).collect();
    Value::Map(Map { map: Arc::new(map) })
}

/// A text value as CEL sees it: `true`/`false` of the boolean fields as bools, JSON
/// objects (a dropdown custom field, `custom_field_values`) as maps, else a string.
pub(super) fn text_value(field: &str, text: Option<&str>) -> Value {
    let Some(text) = text else {
        return Value::Null;
    };
    if matches!(field, "terminated" | "deleted" | "draft") {
        if let Ok(b) = text.parse::<bool>() {
            return Value::Bool(b);
        }
    }
    if text.starts_with('{') || text.starts_with('[') {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
            return json_value(&json);
        }
    }
    Value::String(Arc::new(text.to_string()))
}

fn json_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or_default())),
        J::String(s) => Value::String(Arc::new(s.clone())),
        J::Array(items) => Value::List(Arc::new(items.iter().map(json_value).collect())),
        J::Object(o) => map(o.iter().map(|(k, v)| (k.clone(), json_value(v)))),
    }
}

/// An employee whose every field the expression reads is a plausible string (a date for
/// `*_date`, a bool for the boolean fields, a record for a relation).
fn probe_employee(reads: &Reads) -> Value {
    let mut entries: Vec<(String, Value)> = Vec::new();
    for field in &reads.fields {
        let subs = reads
            .relation_fields
            .iter()
            .filter(|(r, _)| r == field)
            .map(|(_, f)| f);
        let relation = super::extra::RELATIONS.iter().any(|(n, _, _)| n == field);
        let value = if field == "custom_field_values" {
            map(Vec::new())
        } else if relation {
            let mut entries: Vec<(String, Value)> =
                subs.map(|f| (f.clone(), probe_text(f))).collect();
            entries.push(("id".into(), Value::Int(1)));
            entries.push(("name".into(), probe_text("name")));
            map(entries)
        } else {
            probe_text(field)
        };
        entries.push((field.clone(), value));
    }
    map(entries)
}

fn probe_text(field: &str) -> Value {
    if matches!(field, "terminated" | "deleted" | "draft") {
        return Value::Bool(false);
    }
    let text = if field.ends_with("_date") || field.ends_with("_at") {
        "2020-01-01"
    } else {
        "x"
    };
    Value::String(Arc::new(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn employee(pairs: &[(&str, &str)]) -> Value {
        map(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), text_value(k, Some(v)))))
    }

    #[test]
    fn evaluates_over_the_employee() {
        let c = Cel::compile(
            r#"employee.first_name + " " + employee.last_name"#,
            Want::Text,
        )
        .unwrap();
        assert_eq!(c.reads.fields, vec!["first_name", "last_name"]);
        assert!(!c.reads.whole);
        let whole = Cel::compile(r#"employee["first_name"]"#, Want::Text).unwrap();
        assert!(whole.reads.whole);
        let e = employee(&[("first_name", "Ada"), ("last_name", "Lovelace")]);
        assert_eq!(
            c.eval(&e, Want::Text).unwrap().as_deref(),
            Some("Ada Lovelace")
        );
        let f = Cel::compile(r#"employee.employee_type != "contractor""#, Want::Bool).unwrap();
        let contractor = employee(&[("employee_type", "contractor")]);
        assert_eq!(
            f.eval(&contractor, Want::Bool).unwrap().as_deref(),
            Some("false")
        );
        let d = Cel::compile(
            r#"formatDate(employee.joining_date, "%d/%m/%Y")"#,
            Want::Text,
        )
        .unwrap();
        let e = employee(&[("joining_date", "2019-08-08")]);
        assert_eq!(
            d.eval(&e, Want::Text).unwrap().as_deref(),
            Some("08/08/2019")
        );
        let b = Cel::compile("employee.branch.city", Want::Text).unwrap();
        assert_eq!(
            b.reads.relation_fields,
            vec![("branch".into(), "city".into())]
        );
    }

    #[test]
    fn syntax_and_type_errors_are_found_before_any_record() {
        assert!(matches!(
            Cel::compile("employee.first_name +", Want::Text),
            Err(CelError::Syntax(_))
        ));
        let e = Cel::compile("employee.first_name + 1", Want::Text).unwrap_err();
        assert!(matches!(e, CelError::Type(_)), "{e:?}");
        assert!(
            e.message().starts_with("CEL type error: "),
            "{}",
            e.message()
        );
        assert!(matches!(
            Cel::compile("employee.first_name", Want::Bool),
            Err(CelError::Type(_))
        ));
        assert!(matches!(
            Cel::compile("manager.name", Want::Text),
            Err(CelError::Type(_))
        ));
        // A missing custom field is data, not a type error: it fails per record.
        let c = Cel::compile("employee.custom_field_values.badge", Want::Text).unwrap();
        let e = map(vec![("custom_field_values".to_string(), map(Vec::new()))]);
        assert!(matches!(c.eval(&e, Want::Text), Err(CelError::Runtime(_))));
    }
}
