//! Targets of `spec.mapping.attributes[]`: SCIM attribute paths beyond the nine fixed
//! member fields, parsed once and read from or written into a SCIM User as JSON.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use serde_json::{json, Map, Value};

/// The core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The enterprise User extension.
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Core User attributes (RFC 7643 §4.1) a mapping may name, with their sub-attributes
/// (empty: a single string).
const CORE: &[(&str, &[&str])] = &[
    (
        "name",
        &[
            "formatted",
            "middleName",
            "honorificPrefix",
            "honorificSuffix",
        ],
    ),
    ("nickName", &[]),
    ("profileUrl", &[]),
    ("userType", &[]),
    ("preferredLanguage", &[]),
    ("locale", &[]),
    ("timezone", &[]),
    ("phoneNumbers", &["value", "display"]),
    ("ims", &["value", "display"]),
    ("photos", &["value", "display"]),
    (
        "addresses",
        &[
            "formatted",
            "streetAddress",
            "locality",
            "region",
            "postalCode",
            "country",
        ],
    ),
    ("entitlements", &["value", "display"]),
    ("roles", &["value", "display"]),
];

/// Multi-valued core attributes: named with a `[type eq "…"]` filter.
const MULTI: &[&str] = &[
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
];

/// Enterprise extension attributes a mapping may name.
const ENTERPRISE: &[&str] = &["costCenter", "organization", "division"];

/// Attributes written by the fixed mapping fields or by the operator itself, with the
/// `spec.mapping` field that writes them.
const FIXED: &[(&str, &str)] = &[
    ("userName", "email"),
    ("emails", "email"),
    ("externalId", "employeeId"),
    ("active", "the leaver rule"),
    ("name.givenName", "firstName"),
    ("name.familyName", "lastName"),
    ("displayName", "displayName"),
    ("title", "jobTitle"),
    ("id", "the service"),
    ("meta", "the service"),
    ("schemas", "the operator"),
    ("groups", "the service"),
    ("password", "nobody: passwords are never written"),
];
const FIXED_ENTERPRISE: &[(&str, &str)] = &[
    ("department", "department"),
    ("employeeNumber", "employeeNumber"),
    ("manager", "manager"),
];

/// A parsed target: `[schema:]attribute[[type eq "t"]][.sub]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetPath {
    /// The extension's URN; `None` for the core schema.
    pub schema: Option<String>,
    pub attribute: String,
    /// The `type` a multi-valued attribute's entry is picked by.
    pub kind: Option<String>,
    pub sub: Option<String>,
}

/// Why a target cannot be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("'{0}' is not a SCIM attribute path: write `attribute`, `attribute.sub`, `attribute[type eq \"work\"].sub` or an extension's URN followed by `:attribute`")]
    Syntax(String),
    #[error("'{target}' is written by {by}; map it there instead")]
    Fixed { target: String, by: String },
    #[error("the core User schema has no attribute '{0}' (RFC 7643 §4.1); an extension attribute is named with its URN, e.g. {ENTERPRISE_SCHEMA}:costCenter")]
    UnknownCore(String),
    #[error("the enterprise extension has no attribute '{0}' (it has costCenter, organization, division, department, employeeNumber, manager)")]
    UnknownEnterprise(String),
    #[error("'{0}' is multi-valued: name one entry and its sub-attribute, e.g. {0}[type eq \"work\"].value")]
    NeedsFilter(String),
    #[error("'{attribute}' has no sub-attribute '{sub}'")]
    UnknownSub { attribute: String, sub: String },
}

impl TargetPath {
    /// Parses and checks a target against RFC 7643's User and enterprise schemas; other
    /// extensions are checked against the service's `/Schemas` at run time.
    pub fn parse(target: &str) -> Result<TargetPath, TargetError> {
        let target = target.trim();
        let syntax = || TargetError::Syntax(target.to_string());
        let urn = target
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
        let (schema, rest) = if urn && target.len() > 4 {
            let head = target.split('[').next().unwrap_or(target);
            let colon = head.rfind(':').ok_or_else(syntax)?;
            (Some(target[..colon].to_string()), &target[colon + 1..])
        } else {
            (None, target)
        };
        let (attribute, kind, sub) = match rest.split_once('[') {
            Some((attr, filtered)) => {
                let (filter, after) = filtered.split_once(']').ok_or_else(syntax)?;
                let kind = parse_type_filter(filter).ok_or_else(syntax)?;
                let sub = match after {
                    "" => None,
                    s => Some(s.strip_prefix('.').ok_or_else(syntax)?.to_string()),
                };
                (attr.to_string(), Some(kind), sub)
            }
            None => match rest.split_once('.') {
                Some((a, s)) => (a.to_string(), None, Some(s.to_string())),
                None => (rest.to_string(), None, None),
            },
        };
        let ident = |s: &str| {
            !s.is_empty()
                && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !ident(&attribute) || sub.as_deref().is_some_and(|s| !ident(s)) {
            return Err(syntax());
        }
        let path = TargetPath {
            schema,
            attribute,
            kind,
            sub,
        };
        path.check(target)?;
        Ok(path)
    }

    fn check(&self, target: &str) -> Result<(), TargetError> {
        let core = match self.schema.as_deref() {
            None => true,
            Some(s) if s.eq_ignore_ascii_case(USER_SCHEMA) => true,
            Some(s) if s.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) => {
                if let Some((_, by)) = FIXED_ENTERPRISE
                    .iter()
                    .find(|(a, _)| a.eq_ignore_ascii_case(&self.attribute))
                {
                    return Err(fixed(target, by));
                }
                if !ENTERPRISE
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(&self.attribute))
                    || self.sub.is_some()
                    || self.kind.is_some()
                {
                    return Err(TargetError::UnknownEnterprise(self.dotted()));
                }
                false
            }
            Some(_) => false,
        };
        if !core {
            return Ok(());
        }
        let dotted = self.dotted();
        if let Some((_, by)) = FIXED.iter().find(|(a, _)| {
            a.eq_ignore_ascii_case(&dotted) || a.eq_ignore_ascii_case(&self.attribute)
        }) {
            return Err(fixed(target, by));
        }
        let Some((name, subs)) = CORE
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(&self.attribute))
        else {
            return Err(TargetError::UnknownCore(self.attribute.clone()));
        };
        let multi = MULTI.contains(name);
        if multi && self.kind.is_none() {
            return Err(TargetError::NeedsFilter(name.to_string()));
        }
        if !multi && self.kind.is_some() {
            return Err(TargetError::Syntax(target.to_string()));
        }
        match self.sub.as_deref() {
            None if subs.is_empty() || multi => Ok(()),
            Some(s) if subs.iter().any(|x| x.eq_ignore_ascii_case(s)) => Ok(()),
            None => Err(TargetError::UnknownSub {
                attribute: name.to_string(),
                sub: String::new(),
            }),
            Some(s) => Err(TargetError::UnknownSub {
                attribute: name.to_string(),
                sub: s.to_string(),
            }),
        }
    }

    /// `attribute.sub` without schema or filter: the name `/Schemas` describes.
    pub fn dotted(&self) -> String {
        match &self.sub {
            Some(s) => format!("{}.{s}", self.attribute),
            None => self.attribute.clone(),
        }
    }

    /// The extension the attribute lives in, when not the core schema.
    pub fn extension(&self) -> Option<&str> {
        self.schema
            .as_deref()
            .filter(|s| !s.eq_ignore_ascii_case(USER_SCHEMA))
    }

    /// The PATCH path (RFC 7644 §3.5.2): the target as written, in canonical form.
    pub fn patch_path(&self) -> String {
        let mut p = String::new();
        if let Some(s) = self.extension() {
            p.push_str(s);
            p.push(':');
        }
        p.push_str(&self.attribute);
        if let Some(k) = &self.kind {
            p.push_str(&format!("[type eq \"{k}\"]"));
        }
        if let Some(s) = &self.sub {
            p.push('.');
            p.push_str(s);
        }
        p
    }

    /// The value a User holds at this path, as text.
    pub fn read(&self, user: &Map<String, Value>) -> Option<String> {
        let container = match self.extension() {
            Some(s) => get_ci(user, s)?.as_object()?,
            None => user,
        };
        let v = get_ci(container, &self.attribute)?;
        let leaf = match &self.kind {
            Some(kind) => {
                let entry = v.as_array()?.iter().find(|e| has_type(e, kind))?;
                get_ci(entry.as_object()?, self.sub.as_deref().unwrap_or("value"))?
            }
            None => match &self.sub {
                Some(s) => get_ci(v.as_object()?, s)?,
                None => v,
            },
        };
        match leaf {
            Value::String(s) => Some(s.clone()).filter(|s| !s.is_empty()),
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            other => Some(other.to_string()),
        }
    }

    /// Sets (or with `None` removes) the value at this path in a User, adding or
    /// dropping the extension's schema URN and the multi-valued entry as needed.
    pub fn write(&self, user: &mut Map<String, Value>, value: Option<&str>) {
        match self.extension() {
            Some(schema) => {
                let key = user
                    .keys()
                    .find(|k| k.eq_ignore_ascii_case(schema))
                    .cloned()
                    .unwrap_or_else(|| schema.to_string());
                let ext = user.entry(key.clone()).or_insert_with(|| json!({}));
                if !ext.is_object() {
                    *ext = json!({});
                }
                let obj = ext.as_object_mut().expect("made an object above");
                self.write_in(obj, value);
                let empty = obj.is_empty();
                if empty {
                    user.remove(&key);
                }
                set_schema(user, schema, !empty);
            }
            None => self.write_in(user, value),
        }
    }

    fn write_in(&self, container: &mut Map<String, Value>, value: Option<&str>) {
        let key = container
            .keys()
            .find(|k| k.eq_ignore_ascii_case(&self.attribute))
            .cloned()
            .unwrap_or_else(|| self.attribute.clone());
        match (&self.kind, &self.sub) {
            (None, None) => {
                match value {
                    Some(v) => container.insert(key, json!(v)),
                    None => container.remove(&key),
                };
            }
            (None, Some(sub)) => {
                let parent = container.entry(key.clone()).or_insert_with(|| json!({}));
                if !parent.is_object() {
                    *parent = json!({});
                }
                let obj = parent.as_object_mut().expect("made an object above");
                match value {
                    Some(v) => obj.insert(sub.clone(), json!(v)),
                    None => obj.remove(sub),
                };
                if obj.is_empty() {
                    container.remove(&key);
                }
            }
            (Some(kind), sub) => {
                let sub = sub.clone().unwrap_or_else(|| "value".into());
                let list = container.entry(key.clone()).or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                let items = list.as_array_mut().expect("made an array above");
                let at = items.iter().position(|e| has_type(e, kind));
                match (at, value) {
                    (Some(i), Some(v)) => {
                        items[i][&sub] = json!(v);
                    }
                    (None, Some(v)) => items.push(json!({ "type": kind, (sub): v })),
                    (Some(i), None) => {
                        if let Some(entry) = items[i].as_object_mut() {
                            entry.remove(&sub);
                            let only_type = entry.keys().all(|k| k == "type" || k == "primary");
                            if only_type {
                                items.remove(i);
                            }
                        }
                    }
                    (None, None) => {}
                }
                if items.is_empty() {
                    container.remove(&key);
                }
            }
        }
    }
}

fn fixed(target: &str, by: &str) -> TargetError {
    let by = if by.starts_with("the ") || by.starts_with("nobody") {
        by.to_string()
    } else {
        format!("spec.mapping.{by}")
    };
    TargetError::Fixed {
        target: target.to_string(),
        by,
    }
}

/// `type eq "work"` → `work`.
fn parse_type_filter(filter: &str) -> Option<String> {
    let mut words = filter.trim().splitn(3, ' ');
    let (attr, op, value) = (words.next()?, words.next()?, words.next()?.trim());
    if !attr.eq_ignore_ascii_case("type") || !op.eq_ignore_ascii_case("eq") {
        return None;
    }
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.is_empty() && !inner.contains('"')).then(|| inner.to_string())
}

fn has_type(entry: &Value, kind: &str) -> bool {
    entry
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case(kind))
}

fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Adds or removes `schema` in a User's `schemas`.
pub fn set_schema(user: &mut Map<String, Value>, schema: &str, present: bool) {
    let schemas = user
        .entry("schemas".to_string())
        .or_insert_with(|| json!([USER_SCHEMA]));
    if let Value::Array(list) = schemas {
        let has = list
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(schema)));
        if present && !has {
            list.push(json!(schema));
        } else if !present && has {
            list.retain(|s| !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(schema)));
        }
    }
}

fn pool() -> &'static Mutex<HashSet<&'static str>> {
    static POOL: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

/// One `'static` copy of each distinct target text: a target names an [`super::Attr`]
/// that stays `Copy`. Targets come from manifests; a process keeps the few it has seen.
pub fn intern(text: &str) -> &'static str {
    let mut pool = pool().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = pool.get(text) {
        return s;
    }
    let s: &'static str = Box::leak(text.to_string().into_boxed_str());
    pool.insert(s);
    s
}

/// The canonical, interned targets of `spec.mapping.attributes[]` that parse (the
/// mapping refuses the others).
pub fn interned_targets<'a>(targets: impl IntoIterator<Item = &'a str>) -> &'static [&'static str] {
    let list: Vec<&'static str> = targets
        .into_iter()
        .filter_map(|t| TargetPath::parse(t).ok())
        .map(|p| intern(&p.patch_path()))
        .collect();
    intern_list(&list)
}

/// One `'static` copy of each distinct list of targets (a mapping's).
pub fn intern_list(targets: &[&'static str]) -> &'static [&'static str] {
    static LISTS: OnceLock<Mutex<HashSet<&'static [&'static str]>>> = OnceLock::new();
    let mut lists = LISTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(l) = lists.get(targets) {
        return l;
    }
    let l: &'static [&'static str] = Box::leak(targets.to_vec().into_boxed_slice());
    lists.insert(l);
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_core_filtered_and_extension_targets() {
        let t = TargetPath::parse("addresses[type eq \"work\"].locality").unwrap();
        assert_eq!(t.kind.as_deref(), Some("work"));
        assert_eq!(t.sub.as_deref(), Some("locality"));
        assert_eq!(t.patch_path(), "addresses[type eq \"work\"].locality");
        let t = TargetPath::parse(&format!("{ENTERPRISE_SCHEMA}:costCenter")).unwrap();
        assert_eq!(t.extension(), Some(ENTERPRISE_SCHEMA));
        let t =
            TargetPath::parse("urn:example:params:scim:schemas:extension:rg:2.0:User:startDate")
                .unwrap();
        assert_eq!(t.attribute, "startDate");
        assert!(TargetPath::parse("nickName").is_ok());
        assert!(TargetPath::parse("name.middleName").is_ok());
    }

    #[test]
    fn refuses_unknown_fixed_and_unfiltered_targets() {
        assert!(matches!(
            TargetPath::parse("costCentre"),
            Err(TargetError::UnknownCore(_))
        ));
        assert!(matches!(
            TargetPath::parse("userName"),
            Err(TargetError::Fixed { .. })
        ));
        assert!(matches!(
            TargetPath::parse("name.givenName"),
            Err(TargetError::Fixed { .. })
        ));
        assert!(matches!(
            TargetPath::parse(&format!("{ENTERPRISE_SCHEMA}:manager")),
            Err(TargetError::Fixed { .. })
        ));
        assert!(matches!(
            TargetPath::parse("addresses"),
            Err(TargetError::NeedsFilter(_))
        ));
        assert!(matches!(
            TargetPath::parse("addresses[type eq work].locality"),
            Err(TargetError::Syntax(_))
        ));
        // Not a char boundary at 4 bytes: no panic, a syntax error.
        assert!(matches!(
            TargetPath::parse("bѨ¥{./{:-%"),
            Err(TargetError::Syntax(_))
        ));
    }

    #[test]
    fn writes_and_reads_back() {
        let mut user = Map::new();
        let work = TargetPath::parse("addresses[type eq \"work\"].locality").unwrap();
        let cost = TargetPath::parse(&format!("{ENTERPRISE_SCHEMA}:costCenter")).unwrap();
        work.write(&mut user, Some("Oslo"));
        cost.write(&mut user, Some("CC-1"));
        assert_eq!(work.read(&user).as_deref(), Some("Oslo"));
        assert_eq!(cost.read(&user).as_deref(), Some("CC-1"));
        assert_eq!(user["schemas"], json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
        work.write(&mut user, None);
        cost.write(&mut user, None);
        assert!(user.get("addresses").is_none());
        assert_eq!(user["schemas"], json!([USER_SCHEMA]));
    }
}
