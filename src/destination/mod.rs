//! The destination: the rewards platform's member directory (SCIM 2.0).

pub mod convergence;
pub mod scim;

use async_trait::async_trait;

use crate::member::{AttrSet, Change, Member};

pub use convergence::ConvergenceNotes;
pub use scim::{BulkLimits, BulkMode, Capabilities, Keeps, ScimClient, ScimConfig};

/// A member as the destination holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationMember {
    /// The destination's id (SCIM `id`).
    pub id: String,
    /// Entity tag for `If-Match` (SCIM `meta.version`), when the service has one.
    pub version: Option<String>,
    /// Attributes, with `employee_id` from `externalId` (empty when the account has none:
    /// such an account is never managed).
    pub member: Member,
    /// True when the account has a `work` e-mail entry (decides how e-mail is patched).
    pub has_work_email: bool,
}

/// One write the plan asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Create a member (new employee).
    Create { member: Member },
    /// Change an existing member. `desired` and `managed` let the destination recompute
    /// `changes` after re-reading a member whose version went stale (HTTP 412).
    Update {
        id: String,
        version: Option<String>,
        has_work_email: bool,
        changes: Vec<Change>,
        desired: Member,
        managed: AttrSet,
    },
}

impl WriteOp {
    pub fn employee_id(&self) -> &str {
        match self {
            WriteOp::Create { member } => &member.employee_id,
            WriteOp::Update { desired, .. } => &desired.employee_id,
        }
    }
    pub fn email(&self) -> &str {
        match self {
            WriteOp::Create { member } => &member.email,
            WriteOp::Update { desired, .. } => &desired.email,
        }
    }
}

/// What became of one [`WriteOp`] (same index as the op).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Created with this destination id.
    Created { id: String },
    /// Updated (or found already up to date after a re-read).
    Updated,
    /// Not applied; the message goes into the report as the member's error row.
    Failed {
        field: Option<String>,
        message: String,
    },
}

/// Counts of calls a run made to the destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestinationStats {
    /// GET requests (service config, list pages, lookups, re-reads), retries included.
    pub reads: u32,
    /// Individual write requests (POST/PATCH/PUT), retries included; not `/Bulk`.
    pub writes: u32,
    /// `POST /Bulk` requests, retries included.
    pub bulk_requests: u32,
    /// Operations carried inside those bulk requests.
    pub bulk_operations: u32,
    /// Of `reads`, the filtered GETs that looked members up by key
    /// ([`MemberDirectory::find_members`]).
    pub lookup_requests: u32,
}

/// Accounts to look up by key (an incremental run reads only these).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberKeys {
    pub external_ids: Vec<String>,
    pub user_names: Vec<String>,
}

/// Why the destination could not be used at all (record-level failures are
/// [`WriteOutcome::Failed`] instead).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DestinationError {
    #[error("the SCIM service at {url} rejected the bearer token ({status}): check the token in the Secret")]
    Unauthorized { url: String, status: u16 },
    #[error("cannot reach the SCIM service at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the SCIM service at {url} answered {status}: {detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("the SCIM service at {url} sent a response the operator cannot read: {detail}")]
    BadResponse { url: String, detail: String },
    #[error("invalid destination configuration: {0}")]
    Config(String),
}

/// Where members live. The production implementation is [`ScimClient`].
#[async_trait]
pub trait MemberDirectory: Send + Sync {
    /// Reads every member once (the run diffs against this in memory).
    async fn list_members(&self) -> Result<Vec<DestinationMember>, DestinationError>;
    /// The accounts whose externalId or userName (case-insensitive) is among `keys`, each once.
    /// `Ok(None)`: this directory cannot look accounts up (the caller lists every member).
    async fn find_members(
        &self,
        keys: &MemberKeys,
    ) -> Result<Option<Vec<DestinationMember>>, DestinationError> {
        let _ = keys;
        Ok(None)
    }
    /// The accounts with these destination ids (as the ledger recorded them), those that
    /// still exist. `Ok(None)`: this directory cannot read accounts by id.
    async fn get_members(
        &self,
        ids: &[String],
    ) -> Result<Option<Vec<DestinationMember>>, DestinationError> {
        let _ = ids;
        Ok(None)
    }
    /// Applies writes, in bulk where the service allows, calling `on_done` as each
    /// finishes. Returns one outcome per op, in order. A failure of one op never stops
    /// the others.
    ///
    /// The `for<'o>` is needed: `#[async_trait]` would otherwise tie the outcome's
    /// lifetime to the call, and no implementation could pass a local outcome.
    async fn apply(
        &self,
        ops: &[WriteOp],
        on_done: &(dyn for<'o> Fn(usize, &'o WriteOutcome) + Send + Sync),
    ) -> Vec<WriteOutcome>;
    /// Calls made so far.
    fn stats(&self) -> DestinationStats;
    /// The most writes the service takes in one request (its `/Bulk` `maxOperations`),
    /// when it takes several at once.
    fn writes_per_request(&self) -> Option<usize> {
        None
    }
    /// Member fields the destination keeps (from its schemas); the others are left out
    /// of every write and never compared.
    fn keeps(&self) -> AttrSet {
        crate::member::Attr::ALL.into_iter().collect()
    }
    /// Where a member field goes in the destination, for messages.
    fn target_name(&self, attr: crate::member::Attr) -> String {
        attr.field_name().to_string()
    }
}
