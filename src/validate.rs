//! Checks of a `FreshteamIntegrationSpec` beyond what the schema and CEL can see. Every
//! problem names the field in manifest terms (`spec.mapping.email`).

use std::fmt;
use std::net::IpAddr;

use chrono_tz::Tz;
use url::Url;

use crate::api::FreshteamIntegrationSpec;
use crate::egress::internal_range;
use crate::mapping::{check_email, CompiledMapping};
use crate::schedule::{parse_time_zone, Schedule};
use crate::source::validate_subdomain;

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
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
            errors.push(err("spec.source.baseUrl", m));
        }
    }
    if let Err(m) = check_custom_endpoint(&spec.destination.scim.url, policy, false) {
        errors.push(err("spec.destination.scim.url", m));
    }

    let mapping = CompiledMapping::compile(&spec.mapping, &spec.leavers)
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
fn check_custom_endpoint(text: &str, policy: EndpointPolicy, custom: bool) -> Result<(), String> {
    let url = Url::parse(text).map_err(|e| format!("'{text}' is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("'{text}' must be an http(s) URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials: put them in the referenced Secret".into());
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
                    return Err(format!(
                        "'{text}' is a {range} address; sync reaches only public and loopback addresses"
                    ))
                }
                EndpointPolicy::Deny => {
                    return Err(format!(
                        "'{text}' is a {range} address: the operator reaches only public addresses unless started with --allow-custom-endpoints"
                    ))
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
        EndpointPolicy::LoopbackOnly => Err(format!(
            "{what} is accepted by sync only on a loopback address (127.0.0.1, ::1, localhost); '{text}' is not"
        )),
        EndpointPolicy::Deny => Err(format!(
            "{what} ('{text}') is refused: the operator accepts it only when started with --allow-custom-endpoints"
        )),
    }
}
