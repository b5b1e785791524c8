//! `ImportRun`: one import of one integration, kept as history.

// kube's printcolumn syntax repeats `type_` and `json_path` by design.
#![allow(clippy::duplicated_attributes)]

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The name of an import run of `integration` started `at`, the same for the operator's
/// ImportRuns and the runs of `sync`: `<integration>-<YYYYMMDD>-<HHMMSS>` (UTC).
pub fn import_run_name(integration: &str, at: DateTime<Utc>) -> String {
    format!("{integration}-{}", at.format("%Y%m%d-%H%M%S"))
}

/// One import of a FreshteamIntegration: its trigger, progress, counts and errors.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "freshteam.provisioning.dev",
    version = "v1alpha1",
    kind = "ImportRun",
    doc = "One import of a FreshteamIntegration, kept as history (kubectl get importruns).",
    namespaced,
    status = "ImportRunStatus",
    shortname = "ir",
    derive = "Default",
    derive = "PartialEq",
    printcolumn(
        name = "Integration",
        type_ = "string",
        json_path = ".spec.integration"
    ),
    printcolumn(name = "Trigger", type_ = "string", json_path = ".spec.trigger"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".status.mode"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Progress",
        type_ = "integer",
        json_path = ".status.progress.percent"
    ),
    printcolumn(
        name = "Created",
        type_ = "integer",
        json_path = ".status.summary.created"
    ),
    printcolumn(
        name = "Updated",
        type_ = "integer",
        json_path = ".status.summary.updated"
    ),
    printcolumn(
        name = "Leavers",
        type_ = "integer",
        json_path = ".status.summary.leavers"
    ),
    printcolumn(
        name = "Errors",
        type_ = "integer",
        json_path = ".status.summary.errors"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    // While Running: what the run waits for and until when (the destination's rate limit).
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message")
)]
#[serde(rename_all = "camelCase")]
pub struct ImportRunSpec {
    /// Name of the FreshteamIntegration (same namespace) this run imports for.
    pub integration: String,
    /// What started the run.
    #[serde(default)]
    pub trigger: ImportTrigger,
    /// When true nothing is written to the destination and no e-mail is sent; the summary
    /// counts what would have happened.
    #[serde(default)]
    pub dry_run: bool,
    /// `trigger: OnDemand` only: the Employee IDs to import; nobody else is read, written
    /// or marked as a leaver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub employee_ids: Vec<String>,
}

/// What started a run.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum ImportTrigger {
    /// The integration's schedule.
    #[default]
    Scheduled,
    /// The `freshteam.provisioning.dev/import-requested-at` annotation, or `sync`.
    Manual,
    /// A dry run of an unpublished integration.
    Preview,
    /// Created by a user for `spec.employeeIds` alone (provision on demand), or
    /// `sync --only`.
    OnDemand,
}

/// A run's lifecycle phase.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum ImportPhase {
    /// Created, not started.
    #[default]
    Pending,
    /// Importing.
    Running,
    /// Every record went through.
    Succeeded,
    /// Finished; some records were rejected (see `errors`).
    PartiallySucceeded,
    /// The import could not complete (source or destination unusable).
    Failed,
    /// The operator stopped during the run; the next run converges.
    Interrupted,
    /// Too many leavers: nothing was deactivated, waiting for approval.
    Blocked,
}

impl ImportPhase {
    /// True once the run has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, ImportPhase::Pending | ImportPhase::Running)
    }

    /// True for outcomes that count against `history.successfulRunsLimit`.
    pub fn is_successful(self) -> bool {
        matches!(
            self,
            ImportPhase::Succeeded | ImportPhase::PartiallySucceeded
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ImportPhase::Pending => "Pending",
            ImportPhase::Running => "Running",
            ImportPhase::Succeeded => "Succeeded",
            ImportPhase::PartiallySucceeded => "PartiallySucceeded",
            ImportPhase::Failed => "Failed",
            ImportPhase::Interrupted => "Interrupted",
            ImportPhase::Blocked => "Blocked",
        }
    }
}

impl std::fmt::Display for ImportPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Progress and outcome of a run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportRunStatus {
    /// Pending, Running, Succeeded, PartiallySucceeded, Failed, Interrupted or Blocked.
    #[serde(default)]
    pub phase: ImportPhase,
    /// When the run started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the run ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Employee records handled so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Counts of what the run did (or, for a dry run, would have done).
    #[serde(default)]
    pub summary: ImportSummary,
    /// The first 50 record errors and warnings; the full list is in `errorReport`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RecordError>,
    /// Where the full CSV report of errors and warnings is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_report: Option<ErrorReportRef>,
    /// A sentence on the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Leavers a `Blocked` run held back; approving the run lets up to this many through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leavers_awaiting_approval: Option<u32>,
    /// Requests the run made to each system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_calls: Option<ApiCalls>,
    /// Whether the run compared everything or only what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ImportMode>,
    /// Why the run was of that kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode_reason: Option<String>,
    /// On-demand runs only: each named employee's steps, in the order named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberSteps>,
}

/// What an on-demand run did for one employee, step by step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberSteps {
    /// The Employee ID asked for.
    pub employee_id: String,
    /// Whether Freshteam has an employee with this ID.
    pub found: bool,
    /// The Freshteam population it was found in: `active`, `inactive`, `terminated`,
    /// `deleted` or `draft`; none when not found or its record could not be mapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub population: Option<String>,
    /// Whether the employee is in the integration's scope; none when not found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_scope: Option<bool>,
    /// The member values the mapping made, by member field (`email`, `jobTitle`, ...).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub values: std::collections::BTreeMap<String, String>,
    /// The destination account it matched, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<MatchedAccount>,
    /// What the run does for it.
    pub action: MemberAction,
    /// The values the action changes, old → new.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    /// The destination's answer (a dry run: what it would send).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The invitation e-mail: due, sent after the run, or why none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation: Option<String>,
    /// Why it was not applied (unknown Employee ID, a record or value refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The destination account an employee matched, and how.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchedAccount {
    /// The destination's id (SCIM `id`).
    pub id: String,
    /// How it was matched.
    pub by: MatchedBy,
}

/// How an account was matched to an employee.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum MatchedBy {
    /// The ledger recorded this account for the employee.
    #[default]
    Ledger,
    /// Its `externalId` is the Employee ID.
    ExternalId,
    /// Its `userName` is the employee's e-mail (and its `externalId` is not the ID).
    UserName,
}

impl MatchedBy {
    /// `ledger`, `externalId` or `userName`.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedBy::Ledger => "ledger",
            MatchedBy::ExternalId => "externalId",
            MatchedBy::UserName => "userName",
        }
    }
}

/// What an on-demand run does for one employee.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum MemberAction {
    /// Nothing to write: the account is up to date.
    #[default]
    None,
    Create,
    Update,
    Reactivate,
    /// Marked as leaver (`active: false`).
    Leaver,
    /// Deliberately not applied (a leaver or draft without an account).
    Skip,
    /// Not applied: see `error`.
    Error,
}

impl MemberAction {
    /// `none`, `create`, `update`, `reactivate`, `leaver`, `skip` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberAction::None => "none",
            MemberAction::Create => "create",
            MemberAction::Update => "update",
            MemberAction::Reactivate => "reactivate",
            MemberAction::Leaver => "leaver",
            MemberAction::Skip => "skip",
            MemberAction::Error => "error",
        }
    }
}

/// One value an action changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    /// The member field (`jobTitle`, `active`, ...).
    pub field: String,
    /// The account's value before; none when it had none (or there was no account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    /// The value written; none when the value is cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

/// What a run compares.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum ImportMode {
    /// Every employee and every destination account (a full reconciliation).
    #[default]
    Full,
    /// Only the employees Freshteam reports changed since the last successful run, and
    /// their accounts.
    Incremental,
    /// Only the employees an on-demand run names, and their accounts; the incremental
    /// cursor stays where it was.
    OnDemand,
}

/// Requests a run made, per system.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiCalls {
    /// Freshteam employee-list pages read.
    pub freshteam_list: u32,
    /// Freshteam employee-detail reads.
    pub freshteam_detail: u32,
    /// Freshteam lookup reads (departments, branches, ...).
    pub freshteam_lookups: u32,
    /// Freshteam calls answered 429.
    pub freshteam_throttled: u32,
    /// Freshteam calls repeated after a 5xx, timeout or connection error.
    pub freshteam_retries: u32,
    /// Destination read requests.
    pub destination_reads: u32,
    /// Destination writes (individual requests and operations inside bulk requests).
    pub destination_writes: u32,
    /// Destination /Bulk requests.
    pub destination_bulk: u32,
    /// Of the destination reads, the filtered ones that looked the changed employees'
    /// accounts up (an incremental run); 0 when the whole list was read.
    #[serde(default)]
    pub destination_lookups: u32,
}

/// Records handled so far.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Records handled.
    pub processed: u64,
    /// Records in the source.
    pub total: u64,
    /// processed / total, 0–100.
    pub percent: u32,
}

impl Progress {
    pub fn new(processed: u64, total: u64) -> Self {
        let percent = (processed.min(total) * 100)
            .checked_div(total)
            .map_or(100, |p| p as u32);
        Progress {
            processed,
            total,
            percent,
        }
    }
}

/// Counts of a run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportSummary {
    /// Members created.
    #[serde(default)]
    pub created: u32,
    /// Members whose attributes changed.
    #[serde(default)]
    pub updated: u32,
    /// Members already up to date.
    #[serde(default)]
    pub unchanged: u32,
    /// Members marked as leavers (`active: false`).
    #[serde(default)]
    pub leavers: u32,
    /// Leavers who returned and were re-activated.
    #[serde(default)]
    pub reactivated: u32,
    /// Records deliberately not applied (an inactive employee without a member).
    #[serde(default)]
    pub skipped: u32,
    /// Records rejected; each is a row in the report.
    #[serde(default)]
    pub errors: u32,
    /// Warnings; each is a row in the report.
    #[serde(default)]
    pub warnings: u32,
    /// Invitation e-mails sent.
    #[serde(default)]
    pub invitations_sent: u32,
}

/// One row of a run's report: a record it could not apply, a warning, or a change it made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordError {
    /// The record's Employee ID, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_id: Option<String>,
    /// The record's e-mail, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The member field at fault, when one is (on a `change` row: `created`, `updated`,
    /// `leaver` or `reactivated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `error` (the record was not applied), `warning`, or `change` (what the run changed,
    /// or a dry run would change: in the CSV report and the summary e-mail, never in
    /// `status.errors`).
    #[serde(default)]
    pub severity: Severity,
    /// What is wrong and what to do about it (on a `change` row: what changed).
    pub message: String,
}

/// What a report row is: the CSV, the summary e-mail and the counts read it.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The record was not applied.
    #[default]
    Error,
    /// Applied, or left alone on purpose, with something to look at.
    Warning,
    /// What the run changed (or a dry run would change).
    Change,
}

impl Severity {
    /// The word written in reports: `error`, `warning` or `change`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Change => "change",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Location of a run's full CSV report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReportRef {
    /// ConfigMap owned by the ImportRun.
    pub config_map_name: String,
    /// Key of the CSV in the ConfigMap.
    pub key: String,
    /// A report too large for one object is split: part `i` (from 2) is in ConfigMap
    /// `<configMapName>-<i>` under the same key, each part a CSV with the header row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_run_is_named_after_its_integration_and_start_second() {
        let at = Utc.with_ymd_and_hms(2026, 7, 1, 9, 0, 1).unwrap();
        assert_eq!(import_run_name("acme", at), "acme-20260701-090001");
    }
}
