//! What a service supports, from `/ServiceProviderConfig`, and what it keeps, from
//! `/Schemas` and `/ResourceTypes` (RFC 7643 §6, §7). Either of the last two may be
//! missing or partial: what cannot be learnt is assumed kept, as before discovery.
//! What they yielded is kept in the convergence notes for a day ([`discovery_note`]), so
//! most runs connect without reading them.

use chrono::{DateTime, Utc};
use reqwest::{Method, Url};
use serde::Deserialize;
use tracing::{debug, warn};

use super::config::{BulkLimits, Capabilities};
use super::model::{WireServiceProviderConfig, ENTERPRISE_SCHEMA, USER_SCHEMA};
use super::transport::{CallKind, Response};
use super::ScimClient;
use crate::destination::DestinationError;
use crate::member::target::{intern, intern_list, TargetPath};
use crate::member::{Attr, AttrSet};

/// The User attributes a service keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keeps {
    /// Member fields the service stores and lets a client write.
    pub attrs: AttrSet,
    /// The `emails` attribute (else only `userName` carries the e-mail).
    pub emails: bool,
    /// Targets of `spec.mapping.attributes[]` the service's schemas do not keep (every
    /// other mapped target is assumed kept).
    pub unkept: &'static [&'static str],
}

impl Keeps {
    /// Everything: a service that describes nothing is taken at its word for all.
    pub fn everything() -> Self {
        Keeps {
            attrs: Attr::ALL.into_iter().collect(),
            emails: true,
            unkept: &[],
        }
    }

    /// The member fields kept, with the mapped `extras` not in [`Keeps::unkept`].
    pub fn with_extras(&self, extras: &[&'static str]) -> AttrSet {
        let mut attrs = self.attrs;
        for t in extras.iter().filter(|t| !self.unkept.contains(t)) {
            attrs.insert(Attr::Extra(t));
        }
        attrs
    }
}

/// The mapped `extras` that `schemas` (when published) do not describe as writable.
pub(super) fn unkept_extras(
    schemas: Option<&[WireSchema]>,
    extras: &[&'static str],
) -> &'static [&'static str] {
    let Some(all) = schemas else {
        return &[];
    };
    let schema = |id: &str| all.iter().find(|s| s.id.eq_ignore_ascii_case(id));
    let unkept: Vec<&'static str> = extras
        .iter()
        .copied()
        .filter(|t| {
            let Ok(path) = TargetPath::parse(t) else {
                return true;
            };
            let id = path.extension().unwrap_or(USER_SCHEMA);
            let mut names = vec![path.attribute.as_str()];
            names.extend(path.sub.as_deref());
            // An extension the service does not describe at all keeps nothing; one it
            // does not list while listing none is unknown: assumed kept.
            match schema(id) {
                Some(s) => !keeps(Some(s), &names),
                None => path.extension().is_some() || schema(USER_SCHEMA).is_some(),
            }
        })
        .collect();
    intern_list(&unkept)
}

#[derive(Debug, Deserialize)]
pub(super) struct WireSchema {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub attributes: Vec<WireAttribute>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireAttribute {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mutability: Option<String>,
    #[serde(rename = "subAttributes", default)]
    pub sub_attributes: Vec<WireAttribute>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireResourceType {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(rename = "schemaExtensions", default)]
    pub schema_extensions: Vec<WireSchemaExtension>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireSchemaExtension {
    #[serde(default)]
    pub schema: String,
}

/// A `ListResponse` or, as some services answer, a bare array.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Listed<T> {
    List {
        #[serde(rename = "Resources", alias = "resources")]
        resources: Vec<T>,
    },
    Array(Vec<T>),
}

impl<T> Listed<T> {
    pub(super) fn into_vec(self) -> Vec<T> {
        match self {
            Listed::List { resources } => resources,
            Listed::Array(v) => v,
        }
    }
}

fn find<'a>(attrs: &'a [WireAttribute], name: &str) -> Option<&'a WireAttribute> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

fn writable(a: &WireAttribute) -> bool {
    !a.mutability
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("readOnly"))
}

/// Whether `path` (one or two names) is a writable attribute of `schema`. A schema
/// without a sub-attribute list is taken to keep every sub-attribute.
fn keeps(schema: Option<&WireSchema>, path: &[&str]) -> bool {
    let Some(schema) = schema else {
        return true;
    };
    let Some(top) = find(&schema.attributes, path[0]) else {
        return false;
    };
    if !writable(top) {
        return false;
    }
    match path.get(1) {
        None => true,
        Some(_) if top.sub_attributes.is_empty() => true,
        Some(sub) => find(&top.sub_attributes, sub).is_some_and(writable),
    }
}

/// Derives what the service keeps. `schemas`/`types`: `None` when the endpoint was
/// missing or unreadable.
pub(super) fn derive(schemas: Option<&[WireSchema]>, types: Option<&[WireResourceType]>) -> Keeps {
    let schema = |id: &str| schemas.and_then(|s| s.iter().find(|s| s.id.eq_ignore_ascii_case(id)));
    // A schema list without the User schema says nothing about Users.
    let user = schema(USER_SCHEMA);
    let enterprise_schema = user.and(schema(ENTERPRISE_SCHEMA));
    let user_type = types.and_then(|t| {
        t.iter().find(|t| {
            t.schema
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(USER_SCHEMA))
                || t.name.as_deref() == Some("User")
        })
    });
    let enterprise = match user_type {
        Some(t) => t
            .schema_extensions
            .iter()
            .any(|e| e.schema.eq_ignore_ascii_case(ENTERPRISE_SCHEMA)),
        None => user.is_none() || enterprise_schema.is_some(),
    };
    let mut attrs = AttrSet::default();
    for attr in Attr::ALL {
        let kept = match attr {
            // userName is required of every service.
            Attr::Email => true,
            Attr::FirstName => keeps(user, &["name", "givenName"]),
            Attr::LastName => keeps(user, &["name", "familyName"]),
            Attr::DisplayName => keeps(user, &["displayName"]),
            Attr::JobTitle => keeps(user, &["title"]),
            Attr::Department => enterprise && keeps(enterprise_schema, &["department"]),
            Attr::EmployeeNumber => enterprise && keeps(enterprise_schema, &["employeeNumber"]),
            Attr::Manager => enterprise && keeps(enterprise_schema, &["manager"]),
            Attr::Extra(_) => true,
        };
        if kept {
            attrs.insert(attr);
        }
    }
    Keeps {
        attrs,
        emails: keeps(user, &["emails"]),
        unkept: &[],
    }
}

/// How long what discovery yielded is used before the documents are read again: a
/// service that changes what it supports is seen within a day, and a run spends no
/// request on them in between.
pub(super) const DISCOVERY_FRESH_FOR: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// What discovery yielded, as one text for the convergence notes: the time learnt, then
/// the capabilities (`patch`, `etag`, `filter`, `maxResults=N`, `bulk=OPS/BYTES`) and
/// what the service keeps (`keeps=field,…`, `emails`), e.g.
/// `2026-12-05T22:40:00Z patch filter maxResults=100 keeps=email,firstName emails`.
pub(super) fn discovery_note(caps: &Capabilities, keeps: Keeps, at: DateTime<Utc>) -> String {
    let mut parts = vec![at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)];
    let flags = [
        (caps.patch, "patch"),
        (caps.etag, "etag"),
        (caps.filter, "filter"),
    ];
    parts.extend(flags.iter().filter(|f| f.0).map(|f| f.1.to_string()));
    if let Some(n) = caps.filter_max_results {
        parts.push(format!("maxResults={n}"));
    }
    if let Some(b) = caps.bulk {
        parts.push(format!("bulk={}/{}", b.max_operations, b.max_payload_size));
    }
    let kept: Vec<&str> = keeps.attrs.iter().map(Attr::field_name).collect();
    parts.push(format!("keeps={}", kept.join(",")));
    if keeps.emails {
        parts.push("emails".into());
    }
    if !keeps.unkept.is_empty() {
        let encoded: Vec<String> = keeps
            .unkept
            .iter()
            .map(|t| url::form_urlencoded::byte_serialize(t.as_bytes()).collect())
            .collect();
        parts.push(format!("unkept={}", encoded.join(",")));
    }
    parts.join(" ")
}

/// What a note says, while it is fresh at `now`; `None` when it is old, from the future,
/// or not readable by this build (the documents are then read again).
pub(super) fn remembered_discovery(
    note: &str,
    now: DateTime<Utc>,
) -> Option<(Capabilities, Keeps)> {
    let mut parts = note.split(' ');
    let at = DateTime::parse_from_rfc3339(parts.next()?).ok()?;
    let age = now.signed_duration_since(at);
    if age < chrono::TimeDelta::zero() || age >= DISCOVERY_FRESH_FOR {
        return None;
    }
    let mut caps = Capabilities::minimal();
    let mut keeps = Keeps {
        attrs: AttrSet::default(),
        emails: false,
        unkept: &[],
    };
    let mut described = false;
    for part in parts {
        match part.split_once('=') {
            None if part == "patch" => caps.patch = true,
            None if part == "etag" => caps.etag = true,
            None if part == "filter" => caps.filter = true,
            None if part == "emails" => keeps.emails = true,
            Some(("maxResults", n)) => caps.filter_max_results = Some(n.parse().ok()?),
            Some(("bulk", limits)) => {
                let (ops, bytes) = limits.split_once('/')?;
                caps.bulk = Some(BulkLimits {
                    max_operations: ops.parse().ok()?,
                    max_payload_size: bytes.parse().ok()?,
                });
            }
            Some(("unkept", targets)) => {
                let list: Vec<&'static str> = targets
                    .split(',')
                    .map(|t| {
                        let text: String = url::form_urlencoded::parse(format!("t={t}").as_bytes())
                            .next()
                            .map(|(_, v)| v.into_owned())
                            .unwrap_or_default();
                        intern(&text)
                    })
                    .collect();
                keeps.unkept = intern_list(&list);
            }
            Some(("keeps", fields)) => {
                described = true;
                for name in fields.split(',').filter(|f| !f.is_empty()) {
                    keeps
                        .attrs
                        .insert(Attr::ALL.into_iter().find(|a| a.field_name() == name)?);
                }
            }
            _ => return None,
        }
    }
    described.then_some((caps, keeps))
}

/// The SCIM attribute a member field is written to, for messages.
pub(crate) fn scim_name(attr: Attr) -> &'static str {
    match attr {
        Attr::Email => "userName",
        Attr::FirstName => "name.givenName",
        Attr::LastName => "name.familyName",
        Attr::DisplayName => "displayName",
        Attr::JobTitle => "title",
        Attr::Department => "enterprise department",
        Attr::EmployeeNumber => "enterprise employeeNumber",
        Attr::Manager => "enterprise manager",
        Attr::Extra(target) => target,
    }
}

impl ScimClient {
    /// `GET /{segment}`: any answer but a rejected token, which is `Unauthorized`.
    async fn get_document(&self, segment: &str) -> Result<(Url, Response), DestinationError> {
        let url = self.url(&[segment]);
        let resp = self
            .send_checked(Method::GET, url.clone(), None, None, CallKind::Read)
            .await?;
        if matches!(resp.status.as_u16(), 401 | 403) {
            return Err(DestinationError::Unauthorized {
                url: self.service(),
                status: resp.status.as_u16(),
            });
        }
        Ok((url, resp))
    }

    pub(super) async fn read_capabilities(&self) -> Result<Capabilities, DestinationError> {
        let (url, resp) = self.get_document("ServiceProviderConfig").await?;
        let spc = match resp.status.is_success() {
            true => serde_json::from_slice::<WireServiceProviderConfig>(&resp.body).ok(),
            false => None,
        };
        match spc {
            Some(spc) => Ok(Capabilities::from_wire(spc)),
            None => {
                warn!(%url, status = resp.status.as_u16(), "the SCIM service publishes no readable ServiceProviderConfig; using PUT, no bulk, no ETags");
                Ok(Capabilities::minimal())
            }
        }
    }

    /// A discovery document, or `None` when the service has none it will show (any
    /// refusal but a rejected token, or a body that is not one).
    async fn discover<T: serde::de::DeserializeOwned>(
        &self,
        segment: &str,
    ) -> Result<Option<Vec<T>>, DestinationError> {
        let (url, resp) = self.get_document(segment).await?;
        if !resp.status.is_success() {
            debug!(%url, status = resp.status.as_u16(), "no discovery document");
            return Ok(None);
        }
        match serde_json::from_slice::<Listed<T>>(&resp.body) {
            Ok(listed) => Ok(Some(listed.into_vec())),
            Err(e) => {
                warn!(%url, error = %e, "unreadable discovery document; assuming the service keeps every attribute it does not describe");
                Ok(None)
            }
        }
    }

    pub(super) async fn read_keeps(&self) -> Result<Keeps, DestinationError> {
        let schemas = self.discover::<WireSchema>("Schemas").await?;
        let types = self.discover::<WireResourceType>("ResourceTypes").await?;
        let mut keeps = derive(schemas.as_deref(), types.as_deref());
        keeps.unkept = unkept_extras(schemas.as_deref(), self.config.extras);
        Ok(keeps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas(v: serde_json::Value) -> Vec<WireSchema> {
        serde_json::from_value::<Listed<WireSchema>>(v)
            .unwrap()
            .into_vec()
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn mapped_targets_the_schemas_do_not_keep_are_named_and_remembered() {
        let s = schemas(json!([
            {"id": USER_SCHEMA, "attributes": [
                {"name": "userName"},
                {"name": "nickName"},
                {"name": "addresses", "subAttributes": [{"name": "locality"}]},
            ]},
            {"id": ENTERPRISE_SCHEMA, "attributes": [{"name": "costCenter", "mutability": "readOnly"}]},
        ]));
        let targets = [
            intern("nickName"),
            intern("addresses[type eq \"work\"].locality"),
            intern("addresses[type eq \"work\"].region"),
            intern(&format!("{ENTERPRISE_SCHEMA}:costCenter")),
            intern("urn:example:rewards:2.0:User:startDate"),
        ];
        let unkept = unkept_extras(Some(&s), &targets);
        assert_eq!(unkept, &targets[2..]);
        assert!(
            unkept_extras(None, &targets).is_empty(),
            "undescribed: kept"
        );

        let keeps = Keeps {
            unkept,
            ..Keeps::everything()
        };
        let kept = keeps.with_extras(&targets);
        assert!(kept.contains(Attr::Extra(targets[0])) && !kept.contains(Attr::Extra(targets[4])));
        let learnt = at("2026-12-05T22:40:00Z");
        let note = discovery_note(&Capabilities::minimal(), keeps, learnt);
        assert_eq!(
            remembered_discovery(&note, learnt).map(|r| r.1),
            Some(keeps)
        );
    }

    #[test]
    fn a_discovery_note_round_trips_while_fresh() {
        let caps = Capabilities {
            patch: true,
            bulk: Some(BulkLimits {
                max_operations: 1000,
                max_payload_size: 1_048_576,
            }),
            filter: true,
            filter_max_results: Some(100),
            etag: true,
        };
        let keeps = Keeps {
            attrs: [Attr::Email, Attr::FirstName, Attr::Department]
                .into_iter()
                .collect(),
            unkept: &[],
            emails: true,
        };
        let learnt = at("2026-12-05T22:40:00Z");
        let note = discovery_note(&caps, keeps, learnt);
        assert_eq!(
            note,
            "2026-12-05T22:40:00Z patch etag filter maxResults=100 bulk=1000/1048576 keeps=email,firstName,department emails"
        );
        assert_eq!(
            remembered_discovery(&note, at("2026-12-06T22:39:59Z")),
            Some((caps, keeps))
        );
        // Nothing optional, and a service that keeps everything.
        let minimal = discovery_note(&Capabilities::minimal(), Keeps::everything(), learnt);
        assert_eq!(
            remembered_discovery(&minimal, learnt),
            Some((Capabilities::minimal(), Keeps::everything()))
        );
    }

    #[test]
    fn a_discovery_note_is_read_again_once_a_day_old_or_unreadable() {
        let note = discovery_note(
            &Capabilities::minimal(),
            Keeps::everything(),
            at("2026-12-05T22:40:00Z"),
        );
        assert_eq!(
            remembered_discovery(&note, at("2026-12-06T22:40:00Z")),
            None
        );
        assert_eq!(
            remembered_discovery(&note, at("2026-12-05T22:00:00Z")),
            None,
            "learnt in the future: a clock went wrong"
        );
        let now = at("2026-12-05T23:00:00Z");
        for bad in [
            "",
            "yesterday keeps=email",
            "2026-12-05T22:40:00Z",
            "2026-12-05T22:40:00Z keeps=email,shoeSize",
            "2026-12-05T22:40:00Z keeps=email sorting",
            "2026-12-05T22:40:00Z bulk=10 keeps=email",
        ] {
            assert_eq!(remembered_discovery(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn nothing_published_means_everything_kept() {
        assert_eq!(derive(None, None), Keeps::everything());
    }

    #[test]
    fn core_only_service_without_the_extension() {
        let s = schemas(json!({"Resources": [{
            "id": USER_SCHEMA,
            "attributes": [
                {"name": "userName"},
                {"name": "name", "subAttributes": [{"name": "givenName"}, {"name": "familyName"}]},
                {"name": "emails", "subAttributes": [{"name": "value"}]},
                {"name": "displayName", "mutability": "readOnly"},
            ]
        }]}));
        let t: Vec<WireResourceType> =
            serde_json::from_value::<Listed<_>>(json!([{"name": "User", "schema": USER_SCHEMA}]))
                .unwrap()
                .into_vec();
        let k = derive(Some(&s), Some(&t));
        let kept: Vec<Attr> = k.attrs.iter().collect();
        assert_eq!(kept, vec![Attr::Email, Attr::FirstName, Attr::LastName]);
        assert!(k.emails);
    }

    #[test]
    fn extension_announced_by_resource_type_and_described_by_schema() {
        let s = schemas(json!([
            {"id": USER_SCHEMA, "attributes": [{"name": "title"}, {"name": "name"}]},
            {"id": ENTERPRISE_SCHEMA, "attributes": [{"name": "department"}]},
        ]));
        let t: Vec<WireResourceType> = serde_json::from_value::<Listed<_>>(json!({"Resources": [
            {"name": "User", "schema": USER_SCHEMA, "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA}]}
        ]}))
        .unwrap()
        .into_vec();
        let k = derive(Some(&s), Some(&t));
        assert!(k.attrs.contains(Attr::JobTitle));
        assert!(
            k.attrs.contains(Attr::FirstName),
            "name without sub-attributes"
        );
        assert!(k.attrs.contains(Attr::Department));
        assert!(!k.attrs.contains(Attr::EmployeeNumber));
        assert!(!k.emails);
        // Without /ResourceTypes the schema list alone decides.
        let k = derive(Some(&s), None);
        assert!(k.attrs.contains(Attr::Department));
    }
}
