//! Entry points for the fuzz targets in `fuzz/`: every parser that reads what a peer or a
//! user wrote, fed arbitrary bytes. Each must return (an error is fine), never panic.
//! Also run over the checked-in corpus by a unit test, so they cannot rot.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use url::Url;

use crate::destination::scim::model::{
    id_from_location, BulkResponse, ListPage, ScimErrorBody, WireServiceProviderConfig, WireUser,
};
use crate::http_policy::retry_after;
use crate::http_policy::RateHeaders;
use crate::source::link::{next_link, parse as parse_link};
use crate::source::project::{lookup_names, project, record_id};
use crate::validate::{validate_integration, EndpointPolicy};

/// Splits input into header lines and a body at the first empty line.
fn head_and_body(data: &[u8]) -> (HeaderMap, &[u8]) {
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or((&data[..0], data), |i| (&data[..i], &data[i + 2..]));
    let mut headers = HeaderMap::new();
    for line in split.0.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            headers.append(name, value);
        }
    }
    (headers, split.1)
}

/// A Freshteam answer: `link`, `retry-after`, rate and count headers, a JSON body read as
/// a list page, a detail and a lookup.
pub fn freshteam_response(data: &[u8]) {
    let (headers, body) = head_and_body(data);
    let base = Url::parse("https://acme.freshteam.com/api/employees?page=2").expect("valid");
    let _ = next_link(&headers, &base);
    for v in headers.get_all(http::header::LINK) {
        if let Ok(text) = v.to_str() {
            let _ = parse_link(text);
        }
    }
    let _ = retry_after(&headers, std::time::SystemTime::UNIX_EPOCH);
    let _ = retry_after(&headers, std::time::SystemTime::now());
    let _ = RateHeaders::parse(&headers);
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let fields: Vec<String> = [
        "employee_id",
        "official_email",
        "status",
        "department_id",
        "custom_field_values.tshirt",
        "reporting_to_id",
    ]
    .map(String::from)
    .to_vec();
    if let Value::Array(items) = &value {
        for item in items {
            let _ = record_id(item);
            let _ = project(item, &fields);
        }
    }
    let _ = project(&value, &fields);
    let _ = lookup_names(&value);
}

/// A SCIM answer read as every kind the client expects.
pub fn scim_response(data: &[u8]) {
    if let Ok(page) = serde_json::from_slice::<ListPage>(data) {
        for user in page.resources {
            let _ = user.into_destination(None);
        }
    }
    if let Ok(user) = serde_json::from_slice::<WireUser>(data) {
        let _ = user.into_destination(Some("W/\"1\"".into()));
    }
    if let Ok(bulk) = serde_json::from_slice::<BulkResponse>(data) {
        for op in &bulk.operations {
            let _ = (op.status_code(), op.error(), op.resource_id());
        }
    }
    let _ = ScimErrorBody::parse(data);
    let _ = serde_json::from_slice::<WireServiceProviderConfig>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = id_from_location(text);
    }
}

/// A `sync --file` manifest: parsed, then validated (mapping, schedule, endpoints, name).
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = crate::manifest::parse(text, "fuzz.yaml") {
        let name = m.integration.metadata.name.clone().unwrap_or_default();
        for policy in [EndpointPolicy::LoopbackOnly, EndpointPolicy::Deny] {
            let _ = validate_integration(&name, &m.integration.spec, policy);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every corpus file through its entry point (what the CI fuzz step starts from).
    #[test]
    fn the_corpus_runs_clean() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut seen = 0;
        for (target, entry) in [
            ("freshteam_response", super::freshteam_response as fn(&[u8])),
            ("scim_response", super::scim_response),
            ("manifest", super::manifest),
        ] {
            for file in std::fs::read_dir(root.join(target)).expect(target) {
                entry(&std::fs::read(file.unwrap().path()).unwrap());
                seen += 1;
            }
        }
        assert!(seen >= 9, "{seen} corpus files");
    }
}
