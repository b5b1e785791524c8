//! The Freshteam source: employee records and the lookups that name their ids.

pub(crate) mod client;
pub(crate) mod link;
pub(crate) mod project;

use std::collections::HashMap;

use async_trait::async_trait;

use crate::progress::ProgressSink;

pub use client::{AccountLimiter, FreshteamClient, FreshteamConfig};

/// Employee fields the list endpoint carries; anything else needs the detail call.
pub const LIST_FIELDS: &[&str] = &[
    "id",
    "employee_id",
    "first_name",
    "middle_name",
    "last_name",
    "official_email",
    "status",
    "terminated",
    "termination_date",
    "deleted",
    "draft",
    "employee_type",
    "designation",
    "department_id",
    "sub_department_id",
    "business_unit_id",
    "branch_id",
    "team_id",
    "reporting_to_id",
    "joining_date",
    "created_at",
    "updated_at",
];

/// A lookup endpoint that turns an id on the employee record into a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LookupKind {
    Departments,
    SubDepartments,
    Branches,
    BusinessUnits,
    Teams,
    Levels,
}

impl LookupKind {
    /// Path below the API root, e.g. `departments` for `/api/departments`.
    pub fn path(self) -> &'static str {
        match self {
            LookupKind::Departments => "departments",
            LookupKind::SubDepartments => "sub_departments",
            LookupKind::Branches => "branches",
            LookupKind::BusinessUnits => "business_units",
            LookupKind::Teams => "teams",
            LookupKind::Levels => "levels",
        }
    }
}

/// What a run needs from Freshteam, derived from the mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceRequest {
    /// Employee fields to keep from each record (`employee_id`, `department_id`, or a
    /// dotted path such as `custom_field_values.tshirt`). Everything else is dropped as
    /// soon as a page is parsed.
    pub fields: Vec<String>,
    /// Lookup endpoints to read once.
    pub lookups: Vec<LookupKind>,
    /// Fields of looked-up records besides `name` (`branches`' `city`), each read from
    /// the same one call per endpoint (the kind is in [`SourceRequest::lookups`]).
    pub lookup_fields: Vec<(LookupKind, String)>,
    /// True when a field is only on `GET /api/employees/{id}`.
    pub needs_detail: bool,
    /// Fields holding another employee's Freshteam id whose record the mapping reads
    /// (`reporting_to_id`, `hr_incharge_id`). A partial read (incremental or named) also
    /// reads, by detail, the people they name who are not among its records, so that the
    /// records can name them ([`RecordSink::referenced`]).
    pub people: Vec<String>,
    /// Read only employees changed since this instant (an incremental read): every
    /// population pass adds `updated_since=<its UTC date>`. Freshteam documents the
    /// parameter as a date and its granularity is unconfirmed, so the whole day is
    /// asked for and the caller subtracts its own safety overlap. `None` reads everyone.
    pub updated_since: Option<chrono::DateTime<chrono::Utc>>,
}

impl SourceRequest {
    /// The `updated_since` query value: the UTC date of [`Self::updated_since`].
    pub fn updated_since_param(&self) -> Option<String> {
        self.updated_since
            .map(|t| t.date_naive().format("%Y-%m-%d").to_string())
    }
}

/// One employee, reduced to the requested fields (same order as
/// [`SourceRequest::fields`]); numbers and booleans arrive as their text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmployeeRecord {
    /// Freshteam's own numeric id (what `reporting_to_id` refers to).
    pub id: i64,
    pub values: Vec<Option<String>>,
    /// Where the employee stands in Freshteam.
    pub population: Population,
}

/// A group of Freshteam employees, read with its own filter. Ordered by precedence: a
/// record seen in several passes belongs to the greatest (deleted beats terminated
/// beats inactive beats draft beats active).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Population {
    /// Current staff.
    #[default]
    Active,
    /// A draft profile (e.g. a hire not yet started): never provisioned.
    Draft,
    /// `status` inactive (long leave, archived).
    Inactive,
    /// No longer part of the organisation.
    Terminated,
    /// Record deleted.
    Deleted,
}

impl Population {
    pub const ALL: [Population; 5] = [
        Population::Active,
        Population::Inactive,
        Population::Terminated,
        Population::Deleted,
        Population::Draft,
    ];

    /// The list filter that reads this population (`GET /api/employees?…`). Current
    /// staff are asked for the way a client known to run against live accounts does.
    pub fn filter(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Population::Active => &[
                ("status", "active"),
                ("terminated", "false"),
                ("deleted", "false"),
            ],
            Population::Inactive => &[("status", "inactive")],
            Population::Terminated => &[("terminated", "true")],
            Population::Deleted => &[("deleted", "true")],
            Population::Draft => &[("draft", "true")],
        }
    }

    /// `active`, `inactive`, `terminated`, `deleted`, `draft`.
    pub fn name(self) -> &'static str {
        match self {
            Population::Active => "active",
            Population::Draft => "draft",
            Population::Inactive => "inactive",
            Population::Terminated => "terminated",
            Population::Deleted => "deleted",
        }
    }
}

/// Everything a run reads from Freshteam.
#[derive(Clone, Debug, Default)]
pub struct SourceSnapshot {
    pub employees: Vec<EmployeeRecord>,
    /// id → name, per lookup endpoint.
    pub lookups: HashMap<LookupKind, HashMap<i64, String>>,
    /// id → value of the requested [`SourceRequest::lookup_fields`].
    pub lookup_fields: LookupFields,
    /// Requests made, for the run report and benchmarks.
    pub stats: SourceStats,
}

/// Per looked-up record field: id → the field's value as text.
pub type LookupFields = HashMap<(LookupKind, String), HashMap<i64, String>>;

/// Counts of calls a run made to Freshteam.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// List pages over all passes (the sum of `list_by_population`).
    pub list_requests: u32,
    /// List pages per population pass, in [`Population::ALL`] order.
    pub list_by_population: [u32; 5],
    pub detail_requests: u32,
    pub lookup_requests: u32,
    pub throttled: u32,
    pub retries: u32,
}

/// The account behind an API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountInfo {
    /// `acme.freshteam.com`, or the custom base URL's host.
    pub host: String,
    pub employees: u64,
}

/// Why Freshteam could not be used. Every message says what to do about it and none
/// carries the API key.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SourceError {
    #[error("Freshteam rejected the API key for {host} (401 invalid_credentials): check the key in the Secret; keys are under Settings → API Settings in Freshteam")]
    InvalidCredentials { host: String },
    #[error("the API key for {host} is valid but its role lacks API access (403 forbidden): give the user an admin or HR role with API access")]
    Forbidden { host: String },
    #[error("{host} answered 404 not_found for {path}: the subdomain is probably wrong")]
    UnknownAccount { host: String, path: String },
    #[error("cannot reach {host}: {detail}")]
    Unreachable { host: String, detail: String },
    #[error("Freshteam kept failing after {attempts} attempts on {path}: {detail}")]
    RetriesExhausted {
        path: String,
        attempts: u32,
        detail: String,
    },
    #[error("Freshteam sent a response the operator cannot read on {path}: {detail}")]
    BadResponse { path: String, detail: String },
    #[error("invalid source configuration: {0}")]
    Config(String),
    #[error("{host} refused {path} with HTTP {status}: {detail}")]
    Rejected {
        host: String,
        path: String,
        status: u16,
        detail: String,
    },
    #[error("Freshteam kept rate-limiting {host} ({detail}); a run waits at most {limit_secs}s in total for the rate limit, which is per account per minute and shared with every other API client of the account: run again later, or read fewer fields so that no detail calls are needed")]
    RateLimited {
        host: String,
        limit_secs: u64,
        detail: String,
    },
}

/// Where employees come from. The production implementation is [`FreshteamClient`];
/// tests and the simulator plug in behind the same trait.
#[async_trait]
pub trait EmployeeSource: Send + Sync {
    /// Checks the key and counts the account's employees (one cheap call).
    async fn authorize(&self) -> Result<AccountInfo, SourceError>;
    /// Reads every employee and the lookups the request names.
    async fn fetch(
        &self,
        request: &SourceRequest,
        progress: &dyn ProgressSink,
    ) -> Result<SourceSnapshot, SourceError>;
    /// [`EmployeeSource::fetch`], handing the lookups and then each record to `sink`
    /// instead of returning them all at once; returns the calls made.
    async fn fetch_each(
        &self,
        request: &SourceRequest,
        progress: &dyn ProgressSink,
        sink: &mut dyn RecordSink,
    ) -> Result<SourceStats, SourceError> {
        let snapshot = self.fetch(request, progress).await?;
        sink.lookups(snapshot.lookups);
        sink.lookup_fields(snapshot.lookup_fields);
        for record in snapshot.employees {
            sink.record(record);
        }
        Ok(snapshot.stats)
    }
    /// [`EmployeeSource::fetch_each`] for the employees whose `employee_id` is among
    /// `ids` (an on-demand run). The Freshteam client asks for those alone; this default
    /// reads everyone, and the caller keeps only the employees it named.
    async fn fetch_named(
        &self,
        ids: &[String],
        request: &SourceRequest,
        progress: &dyn ProgressSink,
        sink: &mut dyn RecordSink,
    ) -> Result<SourceStats, SourceError> {
        let _ = ids;
        self.fetch_each(request, progress, sink).await
    }
}

/// Where [`EmployeeSource::fetch_each`] hands what it read.
pub trait RecordSink: Send {
    /// id → name, per lookup endpoint; before any record.
    fn lookups(&mut self, lookups: HashMap<LookupKind, HashMap<i64, String>>);
    /// The requested fields of looked-up records; before any record.
    fn lookup_fields(&mut self, fields: LookupFields) {
        let _ = fields;
    }
    /// One employee; in Freshteam id order, each once.
    fn record(&mut self, record: EmployeeRecord);
    /// Another employee's record, read only so that the records can name them (the
    /// people of [`SourceRequest::people`] a partial read did not list): never a member
    /// itself.
    fn referenced(&mut self, record: EmployeeRecord) {
        let _ = record;
    }
}

/// Checks that a subdomain is a DNS label (`[a-z0-9]([a-z0-9-]*[a-z0-9])?`) before any
/// URL is built from it.
pub fn validate_subdomain(subdomain: &str) -> Result<(), InvalidSubdomain> {
    let ok = !subdomain.is_empty()
        && subdomain.len() <= 63
        && subdomain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !subdomain.starts_with('-')
        && !subdomain.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(InvalidSubdomain(subdomain.into()))
    }
}

/// A subdomain that is not a DNS label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a Freshteam subdomain: use the DNS label before .freshteam.com, e.g. 'acme' for acme.freshteam.com (lower-case letters, digits and inner hyphens, at most 63)")]
pub struct InvalidSubdomain(pub String);
