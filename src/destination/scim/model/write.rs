//! What the client writes: user bodies for POST and PUT, PATCH operations in each form.

use super::*;

pub(super) fn set_opt(obj: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        obj.insert(key.to_string(), Value::String(v.to_string()));
    }
}

/// The body of `POST /Users` for a new member.
#[cfg(test)]
pub(crate) fn create_body(member: &Member) -> Value {
    create_body_for(member, true)
}

/// [`create_body`], without `emails` for a service that does not keep them.
pub(crate) fn create_body_for(member: &Member, emails: bool) -> Value {
    let mut user = Map::new();
    let enterprise = {
        let mut ext = Map::new();
        set_opt(&mut ext, "department", member.department.as_deref());
        set_opt(
            &mut ext,
            "employeeNumber",
            member.employee_number.as_deref(),
        );
        if let Some(m) = member.manager.as_deref().filter(|m| !m.is_empty()) {
            ext.insert("manager".into(), json!({ "value": m }));
        }
        ext
    };
    let mut schemas = vec![json!(USER_SCHEMA)];
    if !enterprise.is_empty() {
        schemas.push(json!(ENTERPRISE_SCHEMA));
    }
    user.insert("schemas".into(), Value::Array(schemas));
    user.insert("externalId".into(), json!(member.employee_id));
    user.insert("userName".into(), json!(member.email));
    if emails {
        user.insert(
            "emails".into(),
            json!([{ "value": member.email, "type": "work", "primary": true }]),
        );
    }
    let mut name = Map::new();
    set_opt(&mut name, "givenName", member.first_name.as_deref());
    set_opt(&mut name, "familyName", member.last_name.as_deref());
    if !name.is_empty() {
        user.insert("name".into(), Value::Object(name));
    }
    set_opt(&mut user, "displayName", member.display_name.as_deref());
    set_opt(&mut user, "title", member.job_title.as_deref());
    if !enterprise.is_empty() {
        user.insert(ENTERPRISE_SCHEMA.into(), Value::Object(enterprise));
    }
    for (target, value) in &member.extra {
        if let Some(p) = target_path(target) {
            p.write(&mut user, Some(value));
        }
    }
    user.insert("active".into(), json!(member.active));
    Value::Object(user)
}

/// Where an attribute lives: in the core schema (`path` within the User) or in the
/// enterprise extension.
pub(super) enum Location {
    Core(&'static [&'static str]),
    Enterprise(&'static str),
    /// A target of `spec.mapping.attributes[]`.
    Target(TargetPath),
}

/// An extra target, parsed (it was checked when the mapping was compiled).
pub(crate) fn target_path(target: &str) -> Option<TargetPath> {
    TargetPath::parse(target).ok()
}

pub(super) fn location(attr: Attr) -> Location {
    match attr {
        Attr::Email => Location::Core(&["userName"]),
        Attr::FirstName => Location::Core(&["name", "givenName"]),
        Attr::LastName => Location::Core(&["name", "familyName"]),
        Attr::DisplayName => Location::Core(&["displayName"]),
        Attr::JobTitle => Location::Core(&["title"]),
        Attr::Department => Location::Enterprise("department"),
        Attr::EmployeeNumber => Location::Enterprise("employeeNumber"),
        Attr::Manager => Location::Enterprise("manager"),
        Attr::Extra(t) => match target_path(t) {
            Some(p) => Location::Target(p),
            None => Location::Core(&[]),
        },
    }
}

/// The PATCH path of an attribute.
pub(crate) fn patch_path(attr: Attr) -> String {
    match location(attr) {
        Location::Core(parts) => parts.join("."),
        Location::Enterprise(name) => format!("{ENTERPRISE_SCHEMA}:{name}"),
        Location::Target(p) => p.patch_path(),
    }
}

pub(super) fn attr_value(attr: Attr, value: &str) -> Value {
    if attr == Attr::Manager {
        json!({ "value": value })
    } else {
        json!(value)
    }
}

/// The body of a `PATCH /Users/{id}` making `changes`.
pub(crate) fn patch_body(changes: &[Change], has_work_email: bool) -> Value {
    let mut ops = Vec::with_capacity(changes.len() + 1);
    for change in changes {
        match change {
            Change::Set(Attr::Email, email) => {
                ops.push(json!({ "op": "replace", "path": "userName", "value": email }));
                if has_work_email {
                    ops.push(
                        json!({ "op": "replace", "path": WORK_EMAIL_VALUE_PATH, "value": email }),
                    );
                } else {
                    ops.push(json!({
                        "op": "add",
                        "path": "emails",
                        "value": [{ "value": email, "type": "work", "primary": true }],
                    }));
                }
            }
            Change::Set(attr, value) => ops.push(json!({
                "op": "replace",
                "path": patch_path(*attr),
                "value": attr_value(*attr, value),
            })),
            // userName is required: clearing the e-mail only drops the work entry.
            Change::Clear(Attr::Email) => {
                if has_work_email {
                    ops.push(json!({ "op": "remove", "path": "emails[type eq \"work\"]" }));
                }
            }
            Change::Clear(attr) => ops.push(json!({ "op": "remove", "path": patch_path(*attr) })),
            Change::Active(active) => {
                ops.push(json!({ "op": "replace", "path": "active", "value": active }))
            }
        }
    }
    json!({ "schemas": [PATCH_SCHEMA], "Operations": ops })
}

/// How a PATCH names what it changes. Services that refuse value paths
/// (`emails[type eq "work"].value`, `name.familyName`) often take whole attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PatchForm {
    /// Sub-attribute and value-filter paths: the smallest change.
    ValuePaths,
    /// Top-level attributes replaced whole: `emails` as a list, `name` as an object.
    WholeAttributes,
}

/// The body of a PATCH making `changes` in `form`; `None` when that form cannot express
/// them without losing data (a caller then uses PUT). `emails`: the service keeps the
/// `emails` attribute (else only `userName` carries the e-mail).
pub(crate) fn patch_body_as(
    form: PatchForm,
    changes: &[Change],
    has_work_email: bool,
    desired: &Member,
    managed: crate::member::AttrSet,
    emails: bool,
) -> Option<Value> {
    let changes: Vec<Change> = changes
        .iter()
        .filter(|c| emails || !matches!(c, Change::Clear(Attr::Email)))
        .cloned()
        .collect();
    if form == PatchForm::ValuePaths {
        let mut body = patch_body(&changes, has_work_email);
        if !emails {
            if let Some(ops) = body["Operations"].as_array_mut() {
                ops.retain(|op| op["path"].as_str().is_none_or(|p| !p.starts_with("emails")));
            }
        }
        return Some(body);
    }
    let mut ops = Vec::with_capacity(changes.len() + 1);
    let mut name_done = false;
    for change in &changes {
        match change {
            Change::Set(Attr::Email, email) => {
                ops.push(json!({ "op": "replace", "path": "userName", "value": email }));
                if emails {
                    ops.push(json!({
                        "op": "replace",
                        "path": "emails",
                        "value": [{ "value": email, "type": "work", "primary": true }],
                    }));
                }
            }
            // Dropping one entry of a list needs the list: PUT.
            Change::Clear(Attr::Email) => return None,
            Change::Set(Attr::FirstName | Attr::LastName, _)
            | Change::Clear(Attr::FirstName | Attr::LastName) => {
                // The object replaces both names: only when both are the mapping's.
                if !(managed.contains(Attr::FirstName) && managed.contains(Attr::LastName)) {
                    return None;
                }
                if name_done {
                    continue;
                }
                name_done = true;
                let mut name = Map::new();
                set_opt(&mut name, "givenName", desired.first_name.as_deref());
                set_opt(&mut name, "familyName", desired.last_name.as_deref());
                ops.push(if name.is_empty() {
                    json!({ "op": "remove", "path": "name" })
                } else {
                    json!({ "op": "replace", "path": "name", "value": name })
                });
            }
            // A sub-attribute or an entry of a list is replaced whole only by PUT.
            Change::Set(Attr::Extra(t), _) | Change::Clear(Attr::Extra(t))
                if target_path(t).is_none_or(|p| p.sub.is_some() || p.kind.is_some()) =>
            {
                return None
            }
            Change::Set(attr, value) => ops.push(json!({
                "op": "replace",
                "path": patch_path(*attr),
                "value": attr_value(*attr, value),
            })),
            Change::Clear(attr) => ops.push(json!({ "op": "remove", "path": patch_path(*attr) })),
            Change::Active(active) => {
                ops.push(json!({ "op": "replace", "path": "active", "value": active }))
            }
        }
    }
    Some(json!({ "schemas": [PATCH_SCHEMA], "Operations": ops }))
}

/// Applies `changes` to a User read with GET, for a PUT. Attributes the operator does not
/// manage stay as they were; read-only `meta` is dropped.
pub(crate) fn apply_changes_to_resource(resource: &mut Value, changes: &[Change]) {
    let Some(user) = resource.as_object_mut() else {
        return;
    };
    user.remove("meta");
    let old_user_name = user
        .get("userName")
        .and_then(Value::as_str)
        .map(str::to_string);
    for change in changes {
        match change {
            Change::Set(Attr::Email, email) => {
                user.insert("userName".into(), json!(email));
                set_work_email(user, Some(email), old_user_name.as_deref());
            }
            Change::Clear(Attr::Email) => set_work_email(user, None, old_user_name.as_deref()),
            Change::Set(attr, value) => set_attr(user, *attr, Some(attr_value(*attr, value))),
            Change::Clear(attr) => set_attr(user, *attr, None),
            Change::Active(active) => {
                user.insert("active".into(), json!(active));
            }
        }
    }
}

pub(super) fn set_attr(user: &mut Map<String, Value>, attr: Attr, value: Option<Value>) {
    match location(attr) {
        Location::Core([key]) => {
            match value {
                Some(v) => user.insert(key.to_string(), v),
                None => user.remove(*key),
            };
        }
        Location::Core([parent, key]) => {
            let parent_obj = user
                .entry(parent.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !parent_obj.is_object() {
                *parent_obj = Value::Object(Map::new());
            }
            let obj = parent_obj.as_object_mut().expect("made an object above");
            match value {
                Some(v) => obj.insert(key.to_string(), v),
                None => obj.remove(*key),
            };
            if obj.is_empty() {
                user.remove(*parent);
            }
        }
        Location::Target(p) => p.write(user, value.as_ref().and_then(Value::as_str)),
        Location::Core(_) => {}
        Location::Enterprise(key) => {
            let ext = user
                .entry(ENTERPRISE_SCHEMA.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !ext.is_object() {
                *ext = Value::Object(Map::new());
            }
            let obj = ext.as_object_mut().expect("made an object above");
            match value {
                Some(v) => obj.insert(key.to_string(), v),
                None => obj.remove(key),
            };
            let empty = obj.is_empty();
            if empty {
                user.remove(ENTERPRISE_SCHEMA);
            }
            set_schema(user, ENTERPRISE_SCHEMA, !empty);
        }
    }
}

pub(super) fn set_schema(user: &mut Map<String, Value>, schema: &str, present: bool) {
    let schemas = user
        .entry("schemas".to_string())
        .or_insert_with(|| json!([USER_SCHEMA]));
    if let Value::Array(list) = schemas {
        let has = list.iter().any(|s| s.as_str() == Some(schema));
        if present && !has {
            list.push(json!(schema));
        } else if !present && has {
            list.retain(|s| s.as_str() != Some(schema));
        }
    }
}

/// The member's entry in `emails`, as [`WireEmail::is_members`] decides it.
pub(super) fn members_entry(list: &[Value], user_name: Option<&str>) -> Option<usize> {
    let wire = |e: &Value| serde_json::from_value::<WireEmail>(e.clone()).ok();
    list.iter()
        .position(|e| {
            e.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("work"))
        })
        .or_else(|| {
            list.iter()
                .position(|e| wire(e).is_some_and(|w| w.is_members(user_name)))
        })
}

/// Sets (or removes) the work e-mail; a new work entry becomes the primary one.
pub(super) fn set_work_email(
    user: &mut Map<String, Value>,
    email: Option<&str>,
    old_user_name: Option<&str>,
) {
    let emails = user
        .entry("emails".to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !emails.is_array() {
        *emails = Value::Array(Vec::new());
    }
    let list = emails.as_array_mut().expect("made an array above");
    let entry = members_entry(list, old_user_name);
    match email {
        Some(email) => {
            if let Some(i) = entry {
                list[i]["value"] = json!(email);
            } else {
                for e in list.iter_mut() {
                    if let Some(obj) = e.as_object_mut() {
                        obj.insert("primary".into(), json!(false));
                    }
                }
                list.push(json!({ "value": email, "type": "work", "primary": true }));
            }
        }
        None => {
            if let Some(i) = entry {
                list.remove(i);
            }
        }
    }
    if list.is_empty() {
        user.remove("emails");
    }
}
