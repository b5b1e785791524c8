//! What the client reads: users, list pages, errors, the service provider config and
//! bulk answers, deserialized straight from the response bytes.

use super::*;

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
    /// Every other attribute, for the targets of `spec.mapping.attributes[]`.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireName {
    #[serde(rename = "givenName", default)]
    pub given_name: Option<String>,
    #[serde(rename = "familyName", default)]
    pub family_name: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
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
    pub(super) fn is_members(&self, user_name: Option<&str>) -> bool {
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
    #[serde(flatten)]
    pub rest: Map<String, Value>,
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

pub(super) fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

impl WireUser {
    /// `etag_header` wins over `meta.version` when present (they should agree).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn into_destination(self, etag_header: Option<String>) -> DestinationMember {
        self.into_destination_with(etag_header, &[])
    }

    /// The values of the mapped `extras` this User holds.
    fn extras(&self, extras: &[&'static str]) -> Vec<(&'static str, String)> {
        extras
            .iter()
            .filter_map(|t| {
                let path = target_path(t)?;
                let container = match (path.extension(), &path.sub) {
                    (Some(s), _) if s.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) => {
                        &self.enterprise.as_ref()?.rest
                    }
                    (None, Some(_)) if path.attribute == "name" && path.kind.is_none() => {
                        let sub = path.sub.as_deref()?;
                        let v = self.name.as_ref()?.rest.get(sub)?.as_str()?;
                        return Some((*t, v.to_string())).filter(|(_, v)| !v.is_empty());
                    }
                    _ => &self.rest,
                };
                let bare = TargetPath {
                    schema: None,
                    ..path.clone()
                };
                let value = if path
                    .extension()
                    .is_some_and(|s| !s.eq_ignore_ascii_case(ENTERPRISE_SCHEMA))
                {
                    path.read(container)
                } else {
                    bare.read(container)
                };
                Some((*t, value?))
            })
            .collect()
    }

    /// [`WireUser::into_destination`], reading the mapped `extras` too.
    pub(crate) fn into_destination_with(
        self,
        etag_header: Option<String>,
        extras: &[&'static str],
    ) -> DestinationMember {
        let extra = self.extras(extras);
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
                extra,
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

pub(super) fn lenient_count<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
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
