//! What the operator's HTTP clients (Freshteam and SCIM) may reach and how much they read.
//!
//! - Redirects stay on the request's origin (scheme, host and port), so neither a
//!   credential nor employee data can be bounced to another host or down to plain http;
//!   at most [`MAX_REDIRECTS`] hops.
//! - Addresses are checked where the connection is made: a resolver that vets every
//!   address a name resolves to, so a name that resolves to a public address when the spec
//!   is checked and to `10.0.0.1` a second later (DNS rebinding) is still refused. IP
//!   literals never reach a resolver: [`Egress::check_url`] vets them before a request.
//! - Bodies are read with a size cap, headers the clients parse with a length cap.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use futures::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Redirect hops followed within one origin.
pub const MAX_REDIRECTS: usize = 3;
/// Largest response body read into memory (a SCIM page of 1000 users is about 2 MiB).
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// Longest header value the clients parse (`Link`, `Retry-After`, counts).
pub const MAX_HEADER_BYTES: usize = 8 << 10;
/// Largest header block accepted over HTTP/2 (hyper's HTTP/1 parser has its own cap).
const MAX_HEADER_LIST_BYTES: u32 = 64 << 10;

/// Which addresses a client may connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressRule {
    /// Anything (the controller with `--allow-custom-endpoints`).
    Any,
    /// Public addresses and loopback (`sync`: a local check against local peers).
    PublicOrLoopback,
    /// Public addresses only (the controller's default in a shared cluster).
    PublicOnly,
}

/// The egress policy of one HTTP client.
#[derive(Clone)]
pub struct Egress {
    pub addresses: AddressRule,
    pub max_body_bytes: usize,
    /// Resolves names before the rule is applied; the system resolver when `None`.
    /// Tests put fixed answers here so that no real lookup (or traffic) is needed.
    resolver: Option<Arc<dyn Resolve>>,
}

impl fmt::Debug for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Egress")
            .field("addresses", &self.addresses)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("custom_resolver", &self.resolver.is_some())
            .finish()
    }
}

impl Default for Egress {
    /// The `sync` policy: public addresses and loopback.
    fn default() -> Self {
        Egress::new(AddressRule::PublicOrLoopback)
    }
}

impl Egress {
    pub fn new(addresses: AddressRule) -> Self {
        Egress {
            addresses,
            max_body_bytes: MAX_BODY_BYTES,
            resolver: None,
        }
    }

    /// The controller's policy: public addresses only unless custom endpoints are allowed.
    pub fn operator(allow_custom_endpoints: bool) -> Self {
        Egress::new(if allow_custom_endpoints {
            AddressRule::Any
        } else {
            AddressRule::PublicOnly
        })
    }

    /// Answers every lookup of `host` with `addrs` (and refuses other names), for tests.
    pub fn with_fixed_dns(mut self, host: &str, addrs: Vec<IpAddr>) -> Self {
        self.resolver = Some(Arc::new(FixedDns {
            host: host.to_ascii_lowercase(),
            addrs,
        }));
        self
    }

    /// A client builder with the redirect policy, the checking resolver and header caps.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let builder = reqwest::Client::builder()
            .redirect(same_origin_redirects())
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES);
        if self.addresses == AddressRule::Any && self.resolver.is_none() {
            return builder;
        }
        builder.dns_resolver(Arc::new(CheckingResolver {
            rule: self.addresses,
            inner: self.resolver.clone(),
        }))
    }

    /// Vets a URL whose host is an IP literal (names are vetted when resolved).
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        check_address(self.addresses, url.host_str().unwrap_or(""), ip)
    }
}

/// Why the policy stopped a request. Travels inside a `reqwest::Error`; [`refusal`]
/// finds it again so that the clients fail at once instead of retrying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    Address {
        host: String,
        ip: IpAddr,
        range: &'static str,
    },
    Redirect {
        from: String,
        to: String,
    },
    TooManyRedirects,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Address { host, ip, range } if host == &ip.to_string() => write!(
                f,
                "refused to connect to {ip} ({range} address): the operator reaches only public addresses unless started with --allow-custom-endpoints"
            ),
            Refused::Address { host, ip, range } => write!(
                f,
                "refused to connect to {host}: it resolves to {ip} ({range} address), and the operator reaches only public addresses unless started with --allow-custom-endpoints"
            ),
            Refused::Redirect { from, to } => write!(
                f,
                "refused a redirect from {from} to {to}: the operator follows redirects only within the same origin (scheme, host and port); point the URL at the address that answers"
            ),
            Refused::TooManyRedirects => write!(
                f,
                "refused to follow more than {MAX_REDIRECTS} redirects"
            ),
        }
    }
}

impl std::error::Error for Refused {}

/// The policy refusal under a reqwest error, if that is what it is.
pub fn refusal(e: &reqwest::Error) -> Option<Refused> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        cause = c.source();
    }
    None
}

fn origin(url: &Url) -> String {
    match url.port() {
        Some(p) => format!("{}://{}:{p}", url.scheme(), url.host_str().unwrap_or("")),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or("")),
    }
}

fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.follow();
        };
        if attempt.url().origin() != first.origin() {
            let refused = Refused::Redirect {
                from: origin(first),
                to: origin(attempt.url()),
            };
            attempt.error(refused)
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(Refused::TooManyRedirects)
        } else {
            attempt.follow()
        }
    })
}

/// The named internal range `ip` falls in, if any.
pub fn internal_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            let seg = v6.segments();
            if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some("cloud metadata")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some("unique-local")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if seg[0] == 0x64 && seg[1] == 0xff9b {
                // NAT64 embeds an IPv4 address in the last 32 bits.
                internal_v4(Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                ))
            } else if seg[0] & 0xff00 == 0xff00 {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("cloud metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("carrier-grade NAT")
    } else if o[0] == 0 || ip.is_broadcast() || ip.is_multicast() || o[0] >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn check_address(rule: AddressRule, host: &str, ip: IpAddr) -> Result<(), Refused> {
    match (rule, internal_range(ip)) {
        (AddressRule::Any, _) | (_, None) => Ok(()),
        (AddressRule::PublicOrLoopback, Some("loopback")) => Ok(()),
        (_, Some(range)) => Err(Refused::Address {
            host: host.to_string(),
            ip,
            range,
        }),
    }
}

/// Resolves with the inner resolver (or the system's) and refuses the whole answer when
/// any address is outside the rule: one bad address could be the one picked.
struct CheckingResolver {
    rule: AddressRule,
    inner: Option<Arc<dyn Resolve>>,
}

impl Resolve for CheckingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let rule = self.rule;
        let host = name.as_str().to_string();
        let inner = self.inner.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match inner {
                Some(inner) => inner.resolve(name).await?.collect(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            for a in &addrs {
                check_address(rule, &host, a.ip())?;
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

struct FixedDns {
    host: String,
    addrs: Vec<IpAddr>,
}

impl Resolve for FixedDns {
    fn resolve(&self, name: Name) -> Resolving {
        let answer = if name.as_str().eq_ignore_ascii_case(&self.host) {
            Ok(self
                .addrs
                .iter()
                .map(|ip| SocketAddr::new(*ip, 0))
                .collect::<Vec<_>>())
        } else {
            Err(format!("no fixed DNS answer for {}", name.as_str()))
        };
        Box::pin(async move {
            let addrs: Addrs = Box::new(answer?.into_iter());
            Ok(addrs)
        })
    }
}

/// A body that would not fit in [`Egress::max_body_bytes`], or a read that failed.
#[derive(Debug)]
pub enum BodyError {
    TooLarge { limit: usize },
    Read(reqwest::Error),
}

impl BodyError {
    /// `"the answer exceeds the 16 MiB limit on a response body"` and the like.
    pub fn describe(&self) -> String {
        match self {
            BodyError::TooLarge { limit } => format!(
                "the answer is larger than the {} limit on one response body",
                size(*limit)
            ),
            BodyError::Read(e) => e.to_string(),
        }
    }
}

/// Reads a body, stopping as soon as it passes `limit` bytes (announced or streamed).
pub async fn read_body(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A header value as text, when it is short enough to be worth parsing.
pub fn header_text<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .filter(|v| v.len() <= MAX_HEADER_BYTES)
        .and_then(|v| v.to_str().ok())
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests;
