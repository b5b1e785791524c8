//! SCIM 2.0 client (RFC 7643/7644).
//!
//! One client serves one run: [`ScimClient::connect`] learns what the service supports
//! from `/ServiceProviderConfig`, [`MemberDirectory::list_members`] reads every User once,
//! and [`MemberDirectory::apply`] writes through `/Bulk` when announced, else one request
//! per member, PATCH when supported, else GET + PUT. Every write carries `If-Match` when
//! the service does ETags; a stale version (412) is re-read, re-planned and retried once.
//!
//! Parts: `config` (settings and capabilities), `transport` (requests, retries, error
//! text), `discovery` (what the service supports and keeps), `list` and `lookup`
//! (reads), `write` (one member at a time), `bulk` (the `/Bulk` path).

mod bulk;
mod config;
mod discovery;
mod list;
mod lookup;
pub(crate) mod model;
mod pacer;
mod transport;
mod write;

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tracing::debug;

use super::{
    DestinationError, DestinationMember, DestinationStats, MemberDirectory, MemberKeys, WriteOp,
    WriteOutcome,
};
use crate::member::{AttrSet, Member};
use config::check_scheme;
pub use config::{BulkLimits, BulkMode, Capabilities, ScimConfig};
pub(crate) use discovery::scim_name;
pub use discovery::Keeps;
use write::WriteForm;

/// The SCIM client.
pub struct ScimClient {
    config: ScimConfig,
    http: reqwest::Client,
    caps: Capabilities,
    /// Bounds requests in flight across everything the client does at once.
    permits: Semaphore,
    reads: AtomicU32,
    writes: AtomicU32,
    bulk_requests: AtomicU32,
    bulk_operations: AtomicU32,
    /// What `/Schemas` and `/ResourceTypes` say the service keeps.
    keeps: Keeps,
    /// The update form that works with this service, learnt during the run: a
    /// [`WriteForm`] as u8; only ever moves to a simpler form.
    form: AtomicU8,
    /// 429 and 5xx answers seen (the list's pacer backs off on them).
    throttled: AtomicU32,
    /// What looking members up by key has learnt about the service's filters.
    lookup: lookup::LookupState,
    /// Member attributes the service did not keep on the first create over `/Bulk` this
    /// run (read back once; see `bulk.rs`).
    bulk_unkept: std::sync::OnceLock<Vec<crate::member::Attr>>,
    /// What discovery yielded and when, for the convergence notes (see
    /// [`ScimClient::connect_remembering`]).
    discovered: String,
}

/// Seconds since the Unix epoch (when a remembered update form was learnt).
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ScimClient {
    /// Reads `/ServiceProviderConfig`, `/Schemas` and `/ResourceTypes` to learn what the
    /// service supports and keeps. A rejected token there is `Unauthorized`; where those
    /// documents are public, the run's first read of `/Users` (its list, or its lookups)
    /// finds a rejected token instead, so no request is spent on checking it alone.
    pub async fn connect(config: ScimConfig) -> Result<Self, DestinationError> {
        Self::connect_remembering(config, &super::ConvergenceNotes::default()).await
    }

    /// [`ScimClient::connect`], without reading the discovery documents when `notes`
    /// hold what they said at this base URL less than a day ago: the run's first read of
    /// `/Users` then finds a rejected token. What the client used goes back into the
    /// run's notes through [`MemberDirectory::learnt`] (with the date it was learnt, so
    /// a remembered entry is read again once a day old).
    pub async fn connect_remembering(
        config: ScimConfig,
        notes: &super::ConvergenceNotes,
    ) -> Result<Self, DestinationError> {
        let mut client = Self::new(config)?;
        let remembered = notes.discovery(client.config.base_url.as_str());
        let now = chrono::Utc::now();
        match remembered.and_then(|n| discovery::remembered_discovery(n, now)) {
            Some((caps, keeps)) => {
                debug!(
                    ?caps,
                    ?keeps,
                    "SCIM discovery remembered from an earlier run"
                );
                client.caps = caps;
                client.keeps = keeps;
                client.discovered = remembered.unwrap_or_default().to_string();
            }
            None => {
                client.caps = client.read_capabilities().await?;
                debug!(capabilities = ?client.caps, "SCIM service provider config");
                client.keeps = client.read_keeps().await?;
                debug!(keeps = ?client.keeps, "SCIM schemas");
                client.discovered = discovery::discovery_note(&client.caps, client.keeps, now);
            }
        }
        client.reset_form();
        Ok(client)
    }

    /// A client that has learnt nothing yet about the service.
    fn new(config: ScimConfig) -> Result<Self, DestinationError> {
        check_scheme(&config.base_url)?;
        config
            .egress
            .check_url(&config.base_url)
            .map_err(|r| DestinationError::Config(r.to_string()))?;
        let http = config
            .egress
            .client_builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("freshteam-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DestinationError::Config(format!("cannot build an HTTP client: {e}")))?;
        Ok(ScimClient {
            permits: Semaphore::new(config.concurrency.max(1)),
            config,
            http,
            caps: Capabilities::minimal(),
            reads: AtomicU32::new(0),
            writes: AtomicU32::new(0),
            bulk_requests: AtomicU32::new(0),
            bulk_operations: AtomicU32::new(0),
            keeps: Keeps::everything(),
            form: AtomicU8::new(WriteForm::ValuePaths as u8),
            throttled: AtomicU32::new(0),
            lookup: lookup::LookupState::default(),
            bulk_unkept: std::sync::OnceLock::new(),
            discovered: String::new(),
        })
    }

    /// Replaces what `/ServiceProviderConfig` announced, e.g. to exercise the PUT or the
    /// one-request-per-member paths against a service that supports more.
    /// Not noted as discovery's yield.
    pub fn with_capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self.discovered.clear();
        self.reset_form();
        self
    }

    /// Replaces what discovery found the service keeps (not noted as discovery's yield).
    pub fn with_keeps(mut self, keeps: Keeps) -> Self {
        self.keeps = keeps;
        self.discovered.clear();
        self
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// What `/Schemas` and `/ResourceTypes` say the service keeps.
    pub fn keeps(&self) -> Keeps {
        self.keeps
    }

    /// The body of `POST /Users` for `member`, without the mapped targets the service
    /// does not keep (a service may refuse an unknown extension outright).
    pub(crate) fn create_body(&self, member: &Member) -> serde_json::Value {
        let unkept = self.keeps.unkept;
        if member.extra.iter().any(|(t, _)| unkept.contains(t)) {
            let mut kept = member.clone();
            kept.extra.retain(|(t, _)| !unkept.contains(t));
            model::create_body_for(&kept, self.keeps.emails)
        } else {
            model::create_body_for(member, self.keeps.emails)
        }
    }
}

#[async_trait]
impl MemberDirectory for ScimClient {
    fn writes_per_request(&self) -> Option<usize> {
        self.bulk_limits().map(|l| l.max_operations)
    }

    async fn list_members(&self) -> Result<Vec<DestinationMember>, DestinationError> {
        self.list_all().await
    }

    async fn list_pages(
        &self,
        out: &(dyn Fn(Vec<DestinationMember>) + Send + Sync),
    ) -> Result<(), DestinationError> {
        self.list_paged(out).await
    }

    async fn find_members(
        &self,
        keys: &MemberKeys,
    ) -> Result<Option<Vec<DestinationMember>>, DestinationError> {
        self.find_by_filter(keys).await
    }

    async fn get_members(
        &self,
        ids: &[String],
    ) -> Result<Option<Vec<DestinationMember>>, DestinationError> {
        self.get_by_ids(ids).await.map(Some)
    }

    async fn apply(
        &self,
        ops: &[WriteOp],
        on_done: &(dyn for<'o> Fn(usize, &'o WriteOutcome) + Send + Sync),
    ) -> Vec<WriteOutcome> {
        self.write_all(ops, on_done).await
    }

    fn keeps(&self) -> AttrSet {
        self.keeps.with_extras(self.config.extras)
    }

    fn remember(&self, notes: &super::ConvergenceNotes) {
        let url = self.config.base_url.as_str();
        if let Some(form) = notes
            .write_form(url)
            .and_then(|n| write::remembered(n, now()))
        {
            debug!(
                ?form,
                "starting with the update form an earlier run found working"
            );
            self.start_with_form(form);
        }
    }

    fn learnt(&self, notes: &mut super::ConvergenceNotes) {
        let url = self.config.base_url.as_str();
        let now = now();
        let note = self.learnt_form().map(|form| {
            // The same form as remembered keeps its date: it is tried again once old.
            match notes.write_form(url) {
                Some(n) if write::remembered(n, now) == Some(form) => n.to_string(),
                _ => write::form_note(form, now),
            }
        });
        notes.set_write_form(url, note.as_deref());
        if !self.discovered.is_empty() {
            notes.set_discovery(url, Some(&self.discovered));
        }
    }

    fn target_name(&self, attr: crate::member::Attr) -> String {
        format!("{attr} (SCIM {})", scim_name(attr))
    }

    fn stats(&self) -> DestinationStats {
        DestinationStats {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            bulk_requests: self.bulk_requests.load(Ordering::Relaxed),
            bulk_operations: self.bulk_operations.load(Ordering::Relaxed),
            lookup_requests: self.lookup.requests.load(Ordering::Relaxed),
        }
    }
}
