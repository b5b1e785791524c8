//! SCIM wire format: what the client reads (users, list pages, errors, the service
//! provider config) and what it writes (user bodies, PATCH operations).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::destination::DestinationMember;
use crate::member::{Attr, Change, Member};

pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const ENTERPRISE_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub(crate) const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub(crate) const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub(crate) const WORK_EMAIL_VALUE_PATH: &str = "emails[type eq \"work\"].value";

/// A User as far as the operator cares. Deserialized directly from the response bytes,
/// so a 100k-member list never exists as a `serde_json::Value` tree.
#[derive(Debug, Deserialize)]
pub(crate) struct WireUser {
    pub id: String,
    #[serde(rename = "externalId", default)]
    pub external_id: Option<String>,
    #[serde(rename = "userName", default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub name: Option<WireName>,
    #[serde(rename = "displayName", default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub active: Option<LenientBool>,
    #[serde(default)]
    pub emails: Option<Vec<WireEmail>>,
    #[serde(default)]
    pub meta: Option<WireMeta>,
    #[serde(
        rename = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        default
    )]
    pub enterprise: Option<WireEnterprise>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireName {
    #[serde(rename = "givenName", default)]
    pub given_name: Option<String>,
    #[serde(rename = "familyName", default)]
    pub family_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireEmail {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub primary: Option<LenientBool>,
}

impl WireEmail {
    /// The entry the operator writes the member's e-mail into: typed `work`, else (for
    /// services that drop `type`) the primary one or the one holding the userName.
    fn is_members(&self, user_name: Option<&str>) -> bool {
        if let Some(kind) = self.kind.as_deref() {
            return kind.eq_ignore_ascii_case("work");
        }
        self.primary.as_ref().is_some_and(LenientBool::value)
            || self
                .value
                .as_deref()
                .zip(user_name)
                .is_some_and(|(v, u)| v.eq_ignore_ascii_case(u))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireMeta {
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireEnterprise {
    #[serde(default)]
    pub department: Option<String>,
    #[serde(rename = "employeeNumber", default)]
    pub employee_number: Option<String>,
    #[serde(default)]
    pub manager: Option<WireManager>,
}

/// `manager` is a complex attribute (`{"value": id}`); some services send the id as a
/// plain string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum WireManager {
    Complex {
        #[serde(default)]
        value: Option<String>,
    },
    Plain(String),
}

/// Some services send booleans as strings (`"true"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum LenientBool {
    Bool(bool),
    Text(String),
}

impl LenientBool {
    fn value(&self) -> bool {
        match self {
            LenientBool::Bool(b) => *b,
            LenientBool::Text(s) => !s.eq_ignore_ascii_case("false"),
        }
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

impl WireUser {
    /// `etag_header` wins over `meta.version` when present (they should agree).
    pub(crate) fn into_destination(self, etag_header: Option<String>) -> DestinationMember {
        let user_name = self.user_name.as_deref();
        let has_work_email = self
            .emails
            .as_ref()
            .is_some_and(|emails| emails.iter().any(|e| e.is_members(user_name)));
        let (given, family) = match self.name {
            Some(n) => (n.given_name, n.family_name),
            None => (None, None),
        };
        let (department, employee_number, manager) = match self.enterprise {
            Some(e) => (
                e.department,
                e.employee_number,
                e.manager.and_then(|m| match m {
                    WireManager::Complex { value } => value,
                    WireManager::Plain(v) => Some(v),
                }),
            ),
            None => (None, None, None),
        };
        let version = etag_header
            .or_else(|| self.meta.and_then(|m| m.version))
            .filter(|v| !v.is_empty());
        DestinationMember {
            id: self.id,
            version,
            member: Member {
                employee_id: self.external_id.unwrap_or_default(),
                email: self.user_name.unwrap_or_default(),
                first_name: non_empty(given),
                last_name: non_empty(family),
                display_name: non_empty(self.display_name),
                job_title: non_empty(self.title),
                department: non_empty(department),
                employee_number: non_empty(employee_number),
                manager: non_empty(manager),
                active: self.active.as_ref().is_none_or(LenientBool::value),
            },
            has_work_email,
        }
    }
}

/// A `ListResponse` page.
#[derive(Debug, Deserialize)]
pub(crate) struct ListPage {
    /// Lenient: a negative or fractional count is treated as absent, a huge one saturates.
    #[serde(rename = "totalResults", default, deserialize_with = "lenient_count")]
    pub total_results: Option<u64>,
    #[serde(rename = "Resources", alias = "resources", default)]
    pub resources: Vec<WireUser>,
}

fn lenient_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f.min(u64::MAX as f64) as u64)
        }),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A SCIM error body (`status` is a string in RFC 7644, a number on some services).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ScimErrorBody {
    #[serde(rename = "scimType", default)]
    pub scim_type: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

impl ScimErrorBody {
    pub(crate) fn parse(body: &[u8]) -> ScimErrorBody {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// `/ServiceProviderConfig`, only the parts that change how the client writes.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireServiceProviderConfig {
    #[serde(default)]
    pub patch: Option<WireSupported>,
    #[serde(default)]
    pub bulk: Option<WireBulk>,
    #[serde(default)]
    pub filter: Option<WireFilter>,
    #[serde(default)]
    pub etag: Option<WireSupported>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireSupported {
    #[serde(default)]
    pub supported: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireBulk {
    #[serde(default)]
    pub supported: bool,
    #[serde(rename = "maxOperations", default)]
    pub max_operations: Option<u64>,
    #[serde(rename = "maxPayloadSize", default)]
    pub max_payload_size: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireFilter {
    #[serde(default)]
    pub supported: bool,
    #[serde(rename = "maxResults", default)]
    pub max_results: Option<u64>,
}

/// A `BulkResponse`.
#[derive(Debug, Deserialize)]
pub(crate) struct BulkResponse {
    #[serde(rename = "Operations", alias = "operations", default)]
    pub operations: Vec<BulkResponseOp>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BulkResponseOp {
    #[serde(rename = "bulkId", default)]
    pub bulk_id: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub status: Option<Value>,
    #[serde(default)]
    pub response: Option<Value>,
}

impl BulkResponseOp {
    /// RFC 7644 sends the status as a string ("201"); accept a number too.
    pub(crate) fn status_code(&self) -> Option<u16> {
        match self.status.as_ref()? {
            Value::String(s) => s.trim().get(..3).and_then(|c| c.parse().ok()),
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            _ => None,
        }
    }
    pub(crate) fn error(&self) -> ScimErrorBody {
        self.response
            .as_ref()
            .and_then(|r| serde_json::from_value(r.clone()).ok())
            .unwrap_or_default()
    }
    /// The created resource's id: the last segment of `location`, else `response.id`.
    pub(crate) fn resource_id(&self) -> Option<String> {
        self.location
            .as_deref()
            .and_then(id_from_location)
            .or_else(|| {
                self.response
                    .as_ref()
                    .and_then(|r| r.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
    }
}

pub(crate) fn id_from_location(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next()?;
    let id = path.trim_end_matches('/').rsplit('/').next()?;
    (!id.is_empty()).then(|| id.to_string())
}

fn set_opt(obj: &mut Map<String, Value>, key: &str, value: Option<&str>) {
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
    user.insert("active".into(), json!(member.active));
    Value::Object(user)
}

/// Where an attribute lives: in the core schema (`path` within the User) or in the
/// enterprise extension.
enum Location {
    Core(&'static [&'static str]),
    Enterprise(&'static str),
}

fn location(attr: Attr) -> Location {
    match attr {
        Attr::Email => Location::Core(&["userName"]),
        Attr::FirstName => Location::Core(&["name", "givenName"]),
        Attr::LastName => Location::Core(&["name", "familyName"]),
        Attr::DisplayName => Location::Core(&["displayName"]),
        Attr::JobTitle => Location::Core(&["title"]),
        Attr::Department => Location::Enterprise("department"),
        Attr::EmployeeNumber => Location::Enterprise("employeeNumber"),
        Attr::Manager => Location::Enterprise("manager"),
    }
}

/// The PATCH path of an attribute.
pub(crate) fn patch_path(attr: Attr) -> String {
    match location(attr) {
        Location::Core(parts) => parts.join("."),
        Location::Enterprise(name) => format!("{ENTERPRISE_SCHEMA}:{name}"),
    }
}

fn attr_value(attr: Attr, value: &str) -> Value {
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

fn set_attr(user: &mut Map<String, Value>, attr: Attr, value: Option<Value>) {
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
        Location::Core(_) => unreachable!("paths have one or two parts"),
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

fn set_schema(user: &mut Map<String, Value>, schema: &str, present: bool) {
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
fn members_entry(list: &[Value], user_name: Option<&str>) -> Option<usize> {
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
fn set_work_email(user: &mut Map<String, Value>, email: Option<&str>, old_user_name: Option<&str>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn full_member() -> Member {
        Member {
            employee_id: "E1".into(),
            email: "ada@example.com".into(),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            display_name: Some("Ada L".into()),
            job_title: Some("Engineer".into()),
            department: Some("R&D".into()),
            employee_number: Some("42".into()),
            manager: Some("mgr-id".into()),
            active: true,
        }
    }

    #[test]
    fn create_body_carries_every_mapped_attribute() {
        let body = create_body(&full_member());
        assert_eq!(body["schemas"], json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
        assert_eq!(body["userName"], "ada@example.com");
        assert_eq!(body["emails"][0]["type"], "work");
        assert_eq!(body["emails"][0]["primary"], true);
        assert_eq!(body["name"]["givenName"], "Ada");
        assert_eq!(body[ENTERPRISE_SCHEMA]["manager"]["value"], "mgr-id");
        assert_eq!(body["active"], true);
    }

    #[test]
    fn create_body_without_enterprise_attributes_names_only_the_core_schema() {
        let member = Member {
            employee_id: "E2".into(),
            email: "b@example.com".into(),
            active: true,
            ..Member::default()
        };
        let body = create_body(&member);
        assert_eq!(body["schemas"], json!([USER_SCHEMA]));
        assert!(body.get(ENTERPRISE_SCHEMA).is_none());
        assert!(body.get("name").is_none());
    }

    #[test]
    fn parses_a_user_with_defaults() {
        let user: WireUser = serde_json::from_value(json!({
            "id": "1", "userName": "x@example.com",
            "emails": [{"value": "y@example.com", "type": "home"}],
            "meta": {"version": "W/\"3\""},
            (ENTERPRISE_SCHEMA): {"manager": "m"},
        }))
        .unwrap();
        let d = user.into_destination(None);
        assert_eq!(d.member.employee_id, "");
        assert_eq!(d.member.email, "x@example.com");
        assert!(d.member.active, "absent active means active");
        assert!(!d.has_work_email);
        assert_eq!(d.version.as_deref(), Some("W/\"3\""));
        assert_eq!(d.member.manager.as_deref(), Some("m"));
    }

    #[test]
    fn patch_sets_both_user_name_and_work_email() {
        let body = patch_body(&[Change::Set(Attr::Email, "n@example.com".into())], true);
        let ops = body["Operations"].as_array().unwrap();
        assert_eq!(ops[0]["path"], "userName");
        assert_eq!(ops[1]["path"], WORK_EMAIL_VALUE_PATH);
        let body = patch_body(&[Change::Set(Attr::Email, "n@example.com".into())], false);
        assert_eq!(body["Operations"][1]["op"], "add");
        assert_eq!(body["Operations"][1]["value"][0]["type"], "work");
    }

    #[test]
    fn put_changes_keep_unmanaged_attributes() {
        let mut user = json!({
            "schemas": [USER_SCHEMA], "id": "1", "userName": "a@example.com",
            "nickName": "keep", "meta": {"version": "W/\"1\""},
            "emails": [{"value": "h@example.com", "type": "home", "primary": true}],
            "name": {"givenName": "A"},
        });
        apply_changes_to_resource(
            &mut user,
            &[
                Change::Set(Attr::Email, "b@example.com".into()),
                Change::Clear(Attr::FirstName),
                Change::Set(Attr::Department, "Ops".into()),
                Change::Active(false),
            ],
        );
        assert_eq!(user["nickName"], "keep");
        assert!(user.get("meta").is_none());
        assert!(user.get("name").is_none());
        assert_eq!(user["userName"], "b@example.com");
        assert_eq!(user["emails"][0]["primary"], false);
        assert_eq!(user["emails"][1]["value"], "b@example.com");
        assert_eq!(user[ENTERPRISE_SCHEMA]["department"], "Ops");
        assert_eq!(user["schemas"], json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
        assert_eq!(user["active"], false);
    }

    #[test]
    fn a_typeless_email_entry_is_matched_by_primary_or_value() {
        let user = |emails: Value| -> WireUser {
            serde_json::from_value(
                json!({"id": "1", "userName": "a@example.com", "emails": emails}),
            )
            .unwrap()
        };
        let by_primary = user(json!([{"value": "x@example.com", "primary": true}]));
        assert!(by_primary.into_destination(None).has_work_email);
        let by_value = user(json!([{"value": "A@example.com"}]));
        assert!(by_value.into_destination(None).has_work_email);
        let other = user(json!([{"value": "h@example.com", "type": "home", "primary": true}]));
        assert!(!other.into_destination(None).has_work_email);

        // PUT replaces that entry instead of adding a second one.
        let mut resource = json!({
            "userName": "a@example.com",
            "emails": [{"value": "a@example.com"}, {"value": "h@example.com", "type": "home"}],
        });
        apply_changes_to_resource(
            &mut resource,
            &[Change::Set(Attr::Email, "b@example.com".into())],
        );
        assert_eq!(
            resource["emails"],
            json!([{"value": "b@example.com"}, {"value": "h@example.com", "type": "home"}])
        );
    }

    #[test]
    fn whole_attribute_patch_replaces_name_and_emails() {
        let desired = Member {
            last_name: Some("Byron".into()),
            ..full_member()
        };
        let managed: crate::member::AttrSet = Attr::ALL.into_iter().collect();
        let changes = [
            Change::Set(Attr::LastName, "Byron".into()),
            Change::Set(Attr::Email, "n@example.com".into()),
        ];
        let body = patch_body_as(
            PatchForm::WholeAttributes,
            &changes,
            true,
            &desired,
            managed,
            true,
        )
        .unwrap();
        let ops = body["Operations"].as_array().unwrap();
        assert_eq!(
            ops[0],
            json!({"op": "replace", "path": "name", "value": {"givenName": "Ada", "familyName": "Byron"}})
        );
        assert_eq!(ops[2]["path"], "emails");
        assert_eq!(ops[2]["value"][0]["value"], "n@example.com");
        // Without both names in the mapping the object would wipe one: PUT instead.
        let only_last: crate::member::AttrSet = [Attr::Email, Attr::LastName].into_iter().collect();
        assert!(patch_body_as(
            PatchForm::WholeAttributes,
            &changes,
            true,
            &desired,
            only_last,
            true
        )
        .is_none());
        // A service without `emails` gets the userName alone.
        let body = patch_body_as(
            PatchForm::ValuePaths,
            &changes,
            true,
            &desired,
            managed,
            false,
        )
        .unwrap();
        assert!(body["Operations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|op| op["path"] != WORK_EMAIL_VALUE_PATH));
    }

    #[test]
    fn lenient_total_results() {
        let total = |v: &str| {
            serde_json::from_str::<ListPage>(&format!(
                r#"{{"totalResults": {v}, "Resources": []}}"#
            ))
            .unwrap()
            .total_results
        };
        assert_eq!(total("12"), Some(12));
        assert_eq!(total("1e12"), Some(1_000_000_000_000));
        assert_eq!(total("1e40"), Some(u64::MAX));
        assert_eq!(total("-3"), None);
        assert_eq!(total("\"7\""), Some(7));
        assert_eq!(total("null"), None);
    }

    #[test]
    fn bulk_status_and_location() {
        let op: BulkResponseOp = serde_json::from_value(json!({
            "status": "201", "location": "https://h/v2/Users/abc"
        }))
        .unwrap();
        assert_eq!(op.status_code(), Some(201));
        assert_eq!(op.resource_id().as_deref(), Some("abc"));
    }
}
