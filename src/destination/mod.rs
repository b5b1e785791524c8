//! The destination: the rewards platform's member directory (SCIM 2.0).

pub(crate) mod convergence;
pub(crate) mod profile;
pub(crate) mod scim;

use async_trait::async_trait;

use crate::member::{Attr, AttrSet, Change, Member, MemberFields, PackedMember};

pub use convergence::{ConvergenceNotes, Refusal, Refusals};
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

/// A [`DestinationMember`] packed (see [`PackedMember`]): what a run holds of each
/// account while it plans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account(PackedMember);

impl Account {
    pub fn new(m: &DestinationMember) -> Self {
        Account(PackedMember::new(
            &m.member,
            [Some(m.id.as_str()), m.version.as_deref()],
            m.has_work_email,
        ))
    }
    /// An account as its member was just created.
    pub fn created(id: &str, member: &Member) -> Self {
        Account(PackedMember::new(member, [Some(id), None], true))
    }
    pub fn id(&self) -> &str {
        self.0.extra(0).unwrap_or("")
    }
    pub fn version(&self) -> Option<&str> {
        self.0.extra(1)
    }
    pub fn has_work_email(&self) -> bool {
        self.0.flag()
    }
    /// The externalId (empty when the account has none).
    pub fn employee_id(&self) -> &str {
        self.0.employee_id()
    }
    pub fn email(&self) -> &str {
        self.0.email()
    }
    pub fn active(&self) -> bool {
        self.0.active()
    }
    pub fn member(&self) -> Member {
        self.0.unpack()
    }
    pub fn unpack(&self) -> DestinationMember {
        DestinationMember {
            id: self.id().to_string(),
            version: self.version().map(str::to_string),
            member: self.member(),
            has_work_email: self.has_work_email(),
        }
    }
}

impl MemberFields for Account {
    fn field(&self, attr: Attr) -> Option<&str> {
        self.0.field(attr)
    }
}

/// Every account the destination listed, packed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts(Vec<Account>);

impl Accounts {
    /// Adds a page of the list.
    pub fn extend(&mut self, page: &[DestinationMember]) {
        self.0.extend(page.iter().map(Account::new));
    }
    pub fn push(&mut self, account: Account) {
        self.0.push(account);
    }
    /// Keeps the first of each account listed twice (a member created or deleted while
    /// the list was paged shifts the pages).
    pub fn dedup(&mut self) {
        let mut order: Vec<u32> = (0..self.0.len() as u32).collect();
        order.sort_by(|&a, &b| {
            self.0[a as usize]
                .id()
                .cmp(self.0[b as usize].id())
                .then(a.cmp(&b))
        });
        let mut drop = vec![false; self.0.len()];
        for pair in order.windows(2) {
            if self.0[pair[0] as usize].id() == self.0[pair[1] as usize].id() {
                drop[pair[1] as usize] = true;
            }
        }
        if drop.contains(&true) {
            let mut i = 0;
            self.0.retain(|_| {
                i += 1;
                !drop[i - 1]
            });
        }
        self.0.shrink_to_fit();
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, Account> {
        self.0.iter()
    }
    pub fn get(&self, i: usize) -> &Account {
        &self.0[i]
    }
}

impl From<&[DestinationMember]> for Accounts {
    fn from(members: &[DestinationMember]) -> Self {
        Accounts(members.iter().map(Account::new).collect())
    }
}

/// One write the plan asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Create a member (new employee).
    Create { member: Member },
    /// Change an existing member.
    Update(UpdateOp),
}

/// A change to an existing member. `desired` and `managed` let the destination recompute
/// `changes` after re-reading a member whose version went stale (HTTP 412).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateOp {
    pub id: String,
    pub version: Option<String>,
    pub has_work_email: bool,
    pub changes: Vec<Change>,
    pub desired: Member,
    pub managed: AttrSet,
}

impl WriteOp {
    pub fn employee_id(&self) -> &str {
        match self {
            WriteOp::Create { member } => &member.employee_id,
            WriteOp::Update(update) => &update.desired.employee_id,
        }
    }
    pub fn email(&self) -> &str {
        match self {
            WriteOp::Create { member } => &member.email,
            WriteOp::Update(update) => &update.desired.email,
        }
    }
}

/// What became of one [`WriteOp`] (same index as the op).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Created with this destination id. `unkept`: what the service's answer (the
    /// resource it returned) shows it did not keep as written, as the changes a later
    /// run would plan for it; empty when it kept everything or its answer did not say.
    Created { id: String, unkept: Vec<Change> },
    /// Updated (or found already up to date after a re-read).
    Updated,
    /// Not applied; the message goes into the report as the member's error row.
    Failed {
        field: Option<String>,
        message: String,
        /// Set when the service refused the member's values (HTTP 400): its answer
        /// (`400 invalidValue: …`). The same write is then not sent again until the
        /// values change ([`convergence::Refusals`]).
        refused: Option<String>,
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
    /// [`MemberDirectory::list_members`] handed over page by page as pages arrive, so
    /// that no caller has to hold a whole list of [`DestinationMember`]s. An account
    /// may come twice (pages shift when members come and go while they are read).
    async fn list_pages(
        &self,
        page: &(dyn Fn(Vec<DestinationMember>) + Send + Sync),
    ) -> Result<(), DestinationError> {
        page(self.list_members().await?);
        Ok(())
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
    /// Takes what earlier runs learnt about this destination (e.g. the update form that
    /// works there) from the convergence notes, before the first write.
    fn remember(&self, notes: &ConvergenceNotes) {
        let _ = notes;
    }
    /// Notes what this run learnt about the destination, for the next run.
    fn learnt(&self, notes: &mut ConvergenceNotes) {
        let _ = notes;
    }
    /// Where a member field goes in the destination, for messages.
    fn target_name(&self, attr: crate::member::Attr) -> String {
        attr.field_name().to_string()
    }
}
