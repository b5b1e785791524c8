//! Checks of a `FreshteamIntegrationSpec` beyond what the schema and CEL can see. Every
//! problem names the field in manifest terms (`spec.mapping.email`).

use std::fmt;
use std::net::IpAddr;

use chrono_tz::Tz;
use url::Url;

use crate::api::{FreshteamIntegrationSpec, ScimProfile};
use crate::egress::internal_range;
use crate::mapping::{check_email, CompiledMapping};
use crate::schedule::{parse_time_zone, Schedule};
use crate::source::validate_subdomain;

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
    /// The value is fine but the operator's endpoint policy refuses it: it would be
    /// accepted with `--allow-custom-endpoints` (the condition's reason says so).
    pub refused_by_policy: bool,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn err(field: impl Into<String>, message: impl std::fmt::Display) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.to_string(),
        refused_by_policy: false,
    }
}

fn endpoint_err(field: &str, e: EndpointError) -> FieldError {
    FieldError {
        refused_by_policy: e.refused_by_policy(),
        ..err(field, e)
    }
}

/// Why a URL in the spec is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("'{text}' is not a URL: {reason}")]
    NotAUrl {
        text: String,
        reason: url::ParseError,
    },
    #[error("'{0}' must be an http(s) URL with a host")]
    NotHttp(String),
    #[error("must not carry credentials: put them in the referenced Secret")]
    Credentials,
    #[error("'{text}' is a {range} address; sync reaches only public and loopback addresses")]
    InternalForSync { text: String, range: &'static str },
    #[error("'{text}' is a {range} address: the operator reaches only public addresses unless started with --allow-custom-endpoints")]
    Internal { text: String, range: &'static str },
    #[error("{what} is accepted by sync only on a loopback address (127.0.0.1, ::1, localhost); '{text}' is not")]
    NotLoopback { what: &'static str, text: String },
    #[error("{what} ('{text}') is refused: the operator accepts it only when started with --allow-custom-endpoints")]
    Custom { what: &'static str, text: String },
    /// Not Reward Gateway's SCIM URL form (`problem` says how), with the form it should have.
    #[error("'{text}'{problem}; it should look like {REWARD_GATEWAY_FORM}")]
    NotRewardGateway { text: String, problem: String },
}

impl EndpointError {
    /// Accepted when the operator runs with `--allow-custom-endpoints`.
    pub fn refused_by_policy(&self) -> bool {
        matches!(
            self,
            EndpointError::Internal { .. } | EndpointError::Custom { .. }
        )
    }
}

/// Which non-standard endpoints (`spec.source.baseUrl`, plain-http SCIM) are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointPolicy {
    /// Only on loopback addresses (the `sync` command: a local check).
    LoopbackOnly,
    /// Never (the controller's default: a shared cluster must not become an SSRF proxy).
    Deny,
    /// Always (the controller with `--allow-custom-endpoints`).
    Allow,
}

/// A spec that passed every check, with its parsed parts.
#[derive(Clone, Debug)]
pub struct ValidatedSpec {
    pub schedule: Schedule,
    /// `spec.fullReconcile.schedule`.
    pub full_reconcile: Schedule,
    pub time_zone: Tz,
    pub mapping: CompiledMapping,
}

/// Longest integration name: it is the value of the `freshteam.provisioning.dev/integration`
/// label on every ImportRun, and label values stop at 63 characters.
pub const MAX_INTEGRATION_NAME: usize = 63;

/// [`validate_spec`] plus the integration's own name (`metadata.name`).
pub fn validate_integration(
    name: &str,
    spec: &FreshteamIntegrationSpec,
    policy: EndpointPolicy,
) -> Result<ValidatedSpec, Vec<FieldError>> {
    let name_error = (name.len() > MAX_INTEGRATION_NAME).then(|| {
        err(
            "metadata.name",
            format!(
                "'{name}' is {} characters long; an integration name may have at most {MAX_INTEGRATION_NAME}, because it labels every ImportRun (label values stop at 63)",
                name.len()
            ),
        )
    });
    match (validate_spec(spec, policy), name_error) {
        (result, None) => result,
        (Ok(_), Some(e)) => Err(vec![e]),
        (Err(mut errors), Some(e)) => {
            errors.insert(0, e);
            Err(errors)
        }
    }
}

/// Validates everything that can be checked without I/O. Returns every problem found.
pub fn validate_spec(
    spec: &FreshteamIntegrationSpec,
    policy: EndpointPolicy,
) -> Result<ValidatedSpec, Vec<FieldError>> {
    let mut errors = Vec::new();

    let schedule = Schedule::parse(&spec.schedule)
        .map_err(|m| errors.push(err("spec.schedule", m)))
        .ok();
    let full_reconcile = Schedule::parse(&spec.full_reconcile.schedule)
        .map_err(|m| errors.push(err("spec.fullReconcile.schedule", m)))
        .ok();
    let time_zone = parse_time_zone(spec.time_zone.as_deref())
        .map_err(|m| errors.push(err("spec.timeZone", m)))
        .ok();

    if let Err(m) = validate_subdomain(&spec.source.subdomain) {
        errors.push(err("spec.source.subdomain", m));
    }
    check_secret_ref(
        &mut errors,
        "spec.source.apiKeySecretRef",
        &spec.source.api_key_secret_ref,
    );
    check_secret_ref(
        &mut errors,
        "spec.destination.scim.tokenSecretRef",
        &spec.destination.scim.token_secret_ref,
    );
    if let Some(base) = spec.source.base_url.as_deref() {
        if let Err(m) = check_custom_endpoint(base, policy, true) {
            errors.push(endpoint_err("spec.source.baseUrl", m));
        }
    }
    let scim_url = &spec.destination.scim.url;
    if let Err(m) = check_custom_endpoint(scim_url, policy, false) {
        errors.push(endpoint_err("spec.destination.scim.url", m));
    } else if spec.destination.scim.profile == ScimProfile::RewardGateway {
        if let Err(m) = check_reward_gateway_url(scim_url) {
            errors.push(endpoint_err("spec.destination.scim.url", m));
        }
    }

    let mapping = CompiledMapping::compile(&spec.mapping, &spec.leavers)
        .and_then(|m| m.with_scope(spec.scope.as_ref()))
        .map_err(|e| errors.push(err(e.field, e.message)))
        .ok();

    if spec.safety.max_leavers_percent > 100 {
        errors.push(err(
            "spec.safety.maxLeaversPercent",
            format!(
                "{} is not a percentage between 0 and 100",
                spec.safety.max_leavers_percent
            ),
        ));
    }
    for (i, r) in spec.notifications.recipients.iter().enumerate() {
        if let Err(why) = check_email(r.trim()) {
            errors.push(err(
                format!("spec.notifications.recipients[{i}]"),
                format!("'{r}' is not an e-mail address: {why}"),
            ));
        }
    }
    if let Some(login) = spec.welcome_email.login_url.as_deref() {
        match Url::parse(login) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => errors.push(err(
                "spec.welcomeEmail.loginUrl",
                format!("'{login}' is not an http(s) URL"),
            )),
        }
    }

    match (schedule, full_reconcile, time_zone, mapping) {
        (Some(schedule), Some(full_reconcile), Some(time_zone), Some(mapping))
            if errors.is_empty() =>
        {
            Ok(ValidatedSpec {
                schedule,
                full_reconcile,
                time_zone,
                mapping,
            })
        }
        _ => Err(errors),
    }
}

fn check_secret_ref(errors: &mut Vec<FieldError>, field: &str, r: &crate::api::SecretKeyRef) {
    if r.name.trim().is_empty() {
        errors.push(err(format!("{field}.name"), "must name a Secret"));
    }
    if r.key.trim().is_empty() {
        errors.push(err(format!("{field}.key"), "must name a key of the Secret"));
    }
}

/// True for `localhost` and loopback IP literals.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// The internal range of a URL whose host is an IP literal (names are checked when they
/// are resolved, by the clients).
fn internal_literal(url: &Url) -> Option<&'static str> {
    match url.host()? {
        url::Host::Ipv4(ip) => internal_range(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => internal_range(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// `custom` is true for `baseUrl` (any value is custom); for the SCIM URL only plain
/// http is.
fn check_custom_endpoint(
    text: &str,
    policy: EndpointPolicy,
    custom: bool,
) -> Result<(), EndpointError> {
    let url = parse_url(text)?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(EndpointError::NotHttp(text.into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::Credentials);
    }
    let custom = custom || url.scheme() == "http";
    if !custom {
        // An https URL on an IP literal: refused here with the field named, the same rule
        // the clients apply to every resolved address.
        if let Some(range) = internal_literal(&url) {
            match policy {
                EndpointPolicy::Allow => {}
                EndpointPolicy::LoopbackOnly if range == "loopback" => {}
                EndpointPolicy::LoopbackOnly => {
                    return Err(EndpointError::InternalForSync {
                        text: text.into(),
                        range,
                    })
                }
                EndpointPolicy::Deny => {
                    return Err(EndpointError::Internal {
                        text: text.into(),
                        range,
                    })
                }
            }
        }
        return Ok(());
    }
    let what = if url.scheme() == "http" {
        "a plain-http endpoint"
    } else {
        "a custom Freshteam endpoint"
    };
    match policy {
        EndpointPolicy::Allow => Ok(()),
        EndpointPolicy::LoopbackOnly if is_loopback(&url) => Ok(()),
        EndpointPolicy::LoopbackOnly => Err(EndpointError::NotLoopback {
            what,
            text: text.into(),
        }),
        EndpointPolicy::Deny => Err(EndpointError::Custom {
            what,
            text: text.into(),
        }),
    }
}

/// Reward Gateway's SCIM API host.
pub const REWARD_GATEWAY_HOST: &str = "api.rewardgateway.net";
const REWARD_GATEWAY_FORM: &str =
    "https://api.rewardgateway.net/{programme GUID}/scim/v2 (the \"SCIM URL (v2)\" of Reward Gateway's Integration Dashboard)";

/// With `profile: RewardGateway`, the URL must have Reward Gateway's SCIM form:
/// `https://api.rewardgateway.net/{programme GUID}/scim/v2`. The path is always
/// checked; the host only for an https URL that is not on loopback (a plain-http or
/// loopback URL is a test service or a proxy, allowed as a custom endpoint).
pub fn check_reward_gateway_url(text: &str) -> Result<(), EndpointError> {
    let url = parse_url(text)?;
    let wrong = |problem: String| EndpointError::NotRewardGateway {
        text: text.into(),
        problem,
    };
    let custom = url.scheme() == "http" || is_loopback(&url);
    let host = url.host_str().unwrap_or_default();
    if !custom && !host.eq_ignore_ascii_case(REWARD_GATEWAY_HOST) {
        let what = if host.to_ascii_lowercase().contains("rewardgateway") {
            format!(" is on {host}, a Reward Gateway web address, not its SCIM API ({REWARD_GATEWAY_HOST})")
        } else {
            format!(" is on {host}, not on Reward Gateway's SCIM API host {REWARD_GATEWAY_HOST}")
        };
        return Err(wrong(what));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(wrong(" has a query or fragment".into()));
    }
    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let problem = reward_gateway_path_problem(&segments);
    if let Some(problem) = problem {
        return Err(wrong(format!(" {problem}")));
    }
    if !is_guid(segments[0]) {
        return Err(wrong(format!(
            ": '{}' is not a programme GUID (32 hexadecimal digits, e.g. 0f8fad5b-d9cb-469f-a165-70867728950e)",
            segments[0]
        )));
    }
    Ok(())
}

fn parse_url(text: &str) -> Result<Url, EndpointError> {
    Url::parse(text).map_err(|reason| EndpointError::NotAUrl {
        text: text.into(),
        reason,
    })
}

/// What is wrong with the path of a Reward Gateway SCIM URL (its segments), if anything.
fn reward_gateway_path_problem(segments: &[&str]) -> Option<&'static str> {
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let Some(at) = lower.iter().position(|s| s == "scim") else {
        return Some("has no /scim/v2 after the programme GUID");
    };
    let rest = &lower[(at + 2).min(lower.len())..];
    match lower.get(at + 1).map(String::as_str) {
        Some("v1") => {
            Some("is the SCIM 1.1 API (/scim/v1); the operator speaks SCIM 2.0: use /scim/v2")
        }
        Some("v2") if rest.first().is_some_and(|s| s == "users") => {
            Some("ends in /Users: give the base URL, without /Users (the operator adds it)")
        }
        Some("v2") if !rest.is_empty() => Some("has more after /scim/v2"),
        Some("v2") if at != 1 => {
            Some("must have exactly one path segment, the programme GUID, before /scim/v2")
        }
        Some("v2") => None,
        _ => Some("has no /scim/v2 after the programme GUID"),
    }
}

/// 32 hexadecimal digits, plain or as 8-4-4-4-12.
fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    (lengths == [32] || lengths == [8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn rg(url: &str) -> Result<(), EndpointError> {
        check_reward_gateway_url(url)
    }

    #[test]
    fn reward_gateway_urls_of_the_published_form_pass() {
        for ok in [
            format!("https://api.rewardgateway.net/{GUID}/scim/v2"),
            format!("https://api.rewardgateway.net/{GUID}/scim/v2/"),
            format!(
                "https://API.RewardGateway.net/{}/SCIM/v2",
                GUID.to_uppercase()
            ),
            "https://api.rewardgateway.net/0f8fad5bd9cb469fa16570867728950e/scim/v2".into(),
            // Test services and proxies: the path form is checked, not the host.
            format!("http://127.0.0.1:8080/{GUID}/scim/v2"),
            format!("https://localhost:8443/{GUID}/scim/v2"),
            format!("http://rg-proxy.internal/{GUID}/scim/v2"),
        ] {
            assert_eq!(rg(&ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn a_pasted_dashboard_url_says_what_is_wrong_and_what_it_should_be() {
        let form = "it should look like https://api.rewardgateway.net/{programme GUID}/scim/v2";
        for (url, says) in [
            (
                format!("https://acme.rewardgateway.com/{GUID}/scim/v2"),
                "is on acme.rewardgateway.com, a Reward Gateway web address, not its SCIM API (api.rewardgateway.net)",
            ),
            (
                format!("https://members.example.com/{GUID}/scim/v2"),
                "is on members.example.com, not on Reward Gateway's SCIM API host",
            ),
            (
                format!("https://api.rewardgateway.net/{GUID}"),
                "has no /scim/v2 after the programme GUID",
            ),
            (
                format!("https://api.rewardgateway.net/{GUID}/scim/v1"),
                "is the SCIM 1.1 API (/scim/v1)",
            ),
            (
                format!("https://api.rewardgateway.net/{GUID}/scim/v2/Users"),
                "ends in /Users: give the base URL, without /Users",
            ),
            (
                format!("http://127.0.0.1:9000/{GUID}/scim/v2/Users"),
                "ends in /Users",
            ),
            (
                "https://api.rewardgateway.net/scim/v2".to_string(),
                "exactly one path segment, the programme GUID",
            ),
            (
                "https://api.rewardgateway.net/acme/scim/v2".to_string(),
                "'acme' is not a programme GUID",
            ),
            (
                "http://127.0.0.1:9000/v2".to_string(),
                "has no /scim/v2",
            ),
        ] {
            let message = rg(&url).expect_err(&url).to_string();
            assert!(message.contains(says), "{url}: {message}");
            assert!(message.contains(form), "{url}: {message}");
        }
    }

    #[test]
    fn the_profile_checks_the_url_through_validate_spec() {
        let mut spec = FreshteamIntegrationSpec::default();
        spec.source.subdomain = "acme".into();
        spec.source.api_key_secret_ref = crate::api::SecretKeyRef {
            name: "ft".into(),
            key: "k".into(),
        };
        spec.destination.scim.token_secret_ref = spec.source.api_key_secret_ref.clone();
        spec.mapping.email = Some("official_email".into());
        spec.schedule = "daily".into();
        spec.full_reconcile.schedule = "weekly".into();
        spec.destination.scim.url = format!("https://api.rewardgateway.net/{GUID}/scim/v2/Users");
        assert!(
            validate_spec(&spec, EndpointPolicy::Deny).is_ok(),
            "Generic checks no form"
        );
        spec.destination.scim.profile = ScimProfile::RewardGateway;
        let errors = validate_spec(&spec, EndpointPolicy::Deny).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.destination.scim.url");
        assert!(
            errors[0].message.contains("ends in /Users"),
            "{}",
            errors[0]
        );
        spec.destination.scim.url = format!("https://api.rewardgateway.net/{GUID}/scim/v2");
        assert!(validate_spec(&spec, EndpointPolicy::Deny).is_ok());
    }
}
