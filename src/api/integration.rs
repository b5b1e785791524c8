//! `FreshteamIntegration`: what a platform team applies to connect one Freshteam account
//! to one SCIM destination.

// kube's printcolumn syntax repeats `type_` and `json_path` by design.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::import_run::{ImportPhase, ImportSummary};

/// Connects a Freshteam HR directory to a rewards platform that speaks SCIM 2.0 and keeps
/// its members in step with the employees: new hires get an account, changes are copied,
/// leavers are deactivated.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "freshteam.provisioning.dev",
    version = "v1alpha1",
    kind = "FreshteamIntegration",
    doc = "Connects a Freshteam account to a SCIM 2.0 rewards platform and imports its employees as members.",
    namespaced,
    status = "FreshteamIntegrationStatus",
    shortname = "fti",
    derive = "Default",
    derive = "PartialEq",
    printcolumn(name = "Published", type_ = "boolean", json_path = ".spec.published"),
    printcolumn(
        name = "Authorized",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Authorized\")].status"
    ),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(
        name = "Last import",
        type_ = "date",
        json_path = ".status.lastImport.completionTime"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.lastImport.phase"
    ),
    // A string: kubectl shows a future `date` as "<invalid>".
    printcolumn(name = "Next", type_ = "string", json_path = ".status.nextImportTime"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FreshteamIntegrationSpec {
    /// When false (the default) nothing is written to the destination: the operator only
    /// computes a preview of what an import would do (`status.preview`). Set to true to
    /// run imports on the schedule.
    #[serde(default)]
    pub published: bool,

    /// Stops every call to Freshteam and every import while true. Nothing is deleted.
    #[serde(default)]
    pub suspend: bool,

    /// How often to import: `hourly`, `daily`, `weekly`, or a 5-field cron expression
    /// such as `0 3 * * 1-5`.
    #[serde(default = "default_schedule")]
    pub schedule: String,

    /// IANA time zone the schedule is read in, such as `Europe/London`. Defaults to UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,

    /// The Freshteam account to read employees from.
    pub source: SourceSpec,

    /// Where members are provisioned.
    pub destination: DestinationSpec,

    /// Which Freshteam field fills which member field.
    pub mapping: MappingSpec,

    /// Who is provisioned at all. Unset: every current employee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeSpec>,

    /// How leavers are recognised.
    #[serde(default)]
    pub leavers: LeaversSpec,

    /// The invitation e-mail sent to every newly created member.
    #[serde(default)]
    pub welcome_email: WelcomeEmailSpec,

    /// Who receives the summary e-mail after each import.
    #[serde(default)]
    pub notifications: NotificationsSpec,

    /// Guards against mass deactivation caused by bad source data.
    #[serde(default)]
    pub safety: SafetySpec,

    /// How many finished ImportRuns are kept.
    #[serde(default)]
    pub history: HistorySpec,

    /// When a run compares everything instead of only what changed.
    #[serde(default)]
    pub full_reconcile: FullReconcileSpec,

    /// How long one run may take (a duration such as `24h`, `90m`); default `24h`. A
    /// run still going then (waiting for the destination's rate limit, say) ends
    /// `Failed`; what it wrote stays, and the next run continues from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h|d))+$')").message("runDeadline must be a duration such as 24h, 90m or 30s"))]
    pub run_deadline: Option<String>,
}

/// `spec.runDeadline` when unset.
pub const DEFAULT_RUN_DEADLINE: &str = "24h";

fn default_schedule() -> String {
    "daily".to_string()
}

/// The Freshteam account.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// The account's subdomain: `acme` for https://acme.freshteam.com.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?$')").message("subdomain must be a DNS label such as 'acme' (lower-case letters, digits and inner hyphens)"))]
    pub subdomain: String,

    /// The Secret key holding the Freshteam API key. The Secret must live in the
    /// integration's namespace.
    pub api_key_secret_ref: SecretKeyRef,

    /// API root replacing `https://{subdomain}.freshteam.com/api`, for a simulator or a
    /// proxy. The operator accepts it only when started with `--allow-custom-endpoints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

/// A key of a Secret in the integration's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret's data.
    pub key: String,
}

/// The destination service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationSpec {
    /// A SCIM 2.0 service provider (RFC 7643/7644).
    pub scim: ScimDestinationSpec,
}

/// A SCIM 2.0 service provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimDestinationSpec {
    /// Base URL of the SCIM API, e.g. `https://members.example.com/scim/v2`.
    pub url: String,
    /// Which service this is, for checks before anything is sent: `Generic` (the
    /// default) checks nothing beyond RFC 7643; `RewardGateway` checks the URL form and
    /// Reward Gateway's published member validation (names, e-mail), so that a member it
    /// would refuse is an error row without a request.
    #[serde(default)]
    pub profile: ScimProfile,
    /// The Secret key holding the SCIM bearer token.
    pub token_secret_ref: SecretKeyRef,
    /// At most `requests` requests per `window` to each endpoint of the service, from
    /// the first request (before any rate-limit header was seen). Unset: the operator's
    /// `--default-rate-limit`, if any; the service's own rate-limit headers pace on top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
}

/// A request budget: `requests` per `window`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Requests per window (at least 1).
    #[x_kube(validation = Rule::new("self >= 1").message("rateLimit.requests must be at least 1"))]
    pub requests: u32,
    /// The window: a duration such as `15m`, `2s`, `1h` or `900s`.
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h|d))+$') && !self.matches('^(0+(ms|s|m|h|d))+$')").message("rateLimit.window must be a duration longer than zero such as 15m, 2s or 1h"))]
    pub window: String,
}

/// `spec.destination.scim.profile`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum ScimProfile {
    /// Any SCIM 2.0 service: nothing checked beyond RFC 7643.
    #[default]
    Generic,
    /// Reward Gateway (`https://api.rewardgateway.net/{programme GUID}/scim/v2`).
    RewardGateway,
}

/// Member field ← Freshteam field. A Freshteam field is a field name of the employee
/// record (`first_name`), a looked-up name (`department`, `sub_department`, `branch`,
/// `business_unit`, `team`, resolved from their `*_id`), `reporting_to` (the manager's
/// Employee ID), or `custom_field_values.<name>`. Unmapped member fields are never
/// written.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(cel, validation = Rule::new("has(self.email) && self.email != ''").message("mapping.email is required: every member needs an e-mail address"))]
pub struct MappingSpec {
    /// Field that identifies a member (SCIM `externalId`). Defaults to `employee_id`.
    #[serde(default = "default_employee_id")]
    pub employee_id: String,
    /// Field for the member's e-mail (SCIM `userName` and work e-mail). Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Field for the given name (SCIM `name.givenName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Field for the family name (SCIM `name.familyName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Field for the display name (SCIM `displayName`). When unset and a first or last
    /// name is mapped, the display name is "first last".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Field for the job title (SCIM `title`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    /// Field for the department (enterprise extension `department`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Field for the employee number (enterprise extension `employeeNumber`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_number: Option<String>,
    /// Field naming the manager (enterprise extension `manager`), normally
    /// `reporting_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// Any other SCIM attribute the destination keeps, each filled from exactly one of
    /// `from`, `value` or `expression`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub attributes: Vec<AttributeMapping>,
}

/// One SCIM attribute written from a Freshteam field, a constant or a CEL expression.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(cel, validation = Rule::new("(has(self.from) ? 1 : 0) + (has(self.value) ? 1 : 0) + (has(self.expression) ? 1 : 0) == 1").message("exactly one of from, value or expression fills a target"))]
pub struct AttributeMapping {
    /// The SCIM attribute path: a core attribute (`nickName`, `addresses[type eq
    /// "work"].locality`), the enterprise extension or an extension the service announces
    /// in `/Schemas`, URN-prefixed
    /// (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter`).
    pub target: String,
    /// A Freshteam field path: a list or detail field (`joining_date`),
    /// `custom_field_values.<name>`, a lookup by relation (`branch.city`, `department`,
    /// `level`), or another employee's field (`reporting_to.first_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A constant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A CEL expression over `employee` (the record with its lookups nested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// Written when the source is empty or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// Who is provisioned at all.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeSpec {
    /// A CEL expression over `employee`; false puts the employee out of scope (never
    /// created). Unset: everyone is in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// What happens to a managed member whose employee leaves the scope: `Deactivate`
    /// (default) marks them as a leaver with reason "out of scope"; `Ignore` leaves them
    /// as they are.
    #[serde(default)]
    pub when_out_of_scope: WhenOutOfScope,
}

/// `spec.scope.whenOutOfScope`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum WhenOutOfScope {
    /// Mark the member as a leaver (SCIM `active: false`).
    #[default]
    Deactivate,
    /// Leave the member as it is.
    Ignore,
}

impl Default for MappingSpec {
    fn default() -> Self {
        MappingSpec {
            employee_id: default_employee_id(),
            email: Some("official_email".into()),
            first_name: Some("first_name".into()),
            last_name: Some("last_name".into()),
            display_name: None,
            job_title: Some("designation".into()),
            department: Some("department".into()),
            employee_number: None,
            manager: None,
            attributes: Vec::new(),
        }
    }
}

fn default_employee_id() -> String {
    "employee_id".to_string()
}

/// How leavers are recognised.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaversSpec {
    /// Freshteam employment statuses that make a member a leaver (SCIM `active: false`).
    /// Terminated and deleted employees are always leavers.
    #[serde(default = "default_leaver_statuses")]
    pub statuses: Vec<String>,
    /// What happens to a managed member whose employee is in no Freshteam list any more
    /// ("Delete Forever"): `Deactivate` (default) marks them as a leaver with reason
    /// "removed from Freshteam"; `Ignore` leaves them as they are.
    #[serde(default)]
    pub when_removed: WhenRemoved,
}

impl Default for LeaversSpec {
    fn default() -> Self {
        LeaversSpec {
            statuses: default_leaver_statuses(),
            when_removed: WhenRemoved::default(),
        }
    }
}

/// `spec.leavers.whenRemoved`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum WhenRemoved {
    /// Mark the member as a leaver (SCIM `active: false`).
    #[default]
    Deactivate,
    /// Leave the member as it is.
    Ignore,
}

fn default_leaver_statuses() -> Vec<String> {
    vec!["inactive".to_string()]
}

/// The invitation e-mail to new members.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WelcomeEmailSpec {
    /// Send one invitation to every newly created member.
    #[serde(default)]
    pub enabled: bool,
    /// Where the member activates the account; quoted in the invitation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_url: Option<String>,
}

/// Import summary e-mails.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsSpec {
    /// Addresses that receive the summary after every import.
    #[serde(default)]
    pub recipients: Vec<String>,
}

/// Guards against mass deactivation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SafetySpec {
    /// A run that would mark more than this percentage of managed members as leavers is
    /// `Blocked` until approved with the annotation
    /// `freshteam.provisioning.dev/approve-leavers: <run name>`.
    #[serde(default = "default_max_leavers_percent")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("safety.maxLeaversPercent must be between 0 and 100"))]
    pub max_leavers_percent: u32,
}

impl Default for SafetySpec {
    fn default() -> Self {
        SafetySpec {
            max_leavers_percent: default_max_leavers_percent(),
        }
    }
}

fn default_max_leavers_percent() -> u32 {
    20
}

/// Full reconciliations: runs that read every employee and every destination account.
/// Between them, runs read only what Freshteam says changed (incremental runs). A full
/// run also happens first, after a spec change, on the
/// `freshteam.provisioning.dev/full-reconcile-requested-at` annotation, and whenever
/// the incremental cursor is missing or suspect.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FullReconcileSpec {
    /// `hourly`, `daily`, `weekly` (default) or a 5-field cron expression, in
    /// `spec.timeZone`: the first run at or after each of its times is a full one. A
    /// change made by hand in the destination is corrected by then at the latest.
    #[serde(default = "default_full_reconcile_schedule")]
    pub schedule: String,
}

impl Default for FullReconcileSpec {
    fn default() -> Self {
        FullReconcileSpec {
            schedule: default_full_reconcile_schedule(),
        }
    }
}

fn default_full_reconcile_schedule() -> String {
    "weekly".to_string()
}

/// ImportRun history limits, like a CronJob's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistorySpec {
    /// Finished runs (Succeeded, PartiallySucceeded) to keep.
    #[serde(default = "default_successful_runs_limit")]
    pub successful_runs_limit: u32,
    /// Failed, Interrupted and Blocked runs to keep.
    #[serde(default = "default_failed_runs_limit")]
    pub failed_runs_limit: u32,
}

impl Default for HistorySpec {
    fn default() -> Self {
        HistorySpec {
            successful_runs_limit: default_successful_runs_limit(),
            failed_runs_limit: default_failed_runs_limit(),
        }
    }
}

fn default_successful_runs_limit() -> u32 {
    10
}

fn default_failed_runs_limit() -> u32 {
    5
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreshteamIntegrationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Authorized`, `MappingValid`, `Published` and `Importing`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The most recent import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_import: Option<LastImport>,
    /// When the next scheduled import starts (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_import_time: Option<String>,
    /// What an import would do, computed while the integration is unpublished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Preview>,
    /// The last value of the `freshteam.provisioning.dev/import-requested-at` annotation
    /// that started a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_import_request: Option<String>,
    /// The last value of the `freshteam.provisioning.dev/full-reconcile-requested-at`
    /// annotation that started a full reconciliation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_full_reconcile_request: Option<String>,
    /// The last value of the `freshteam.provisioning.dev/approve-leavers` annotation that
    /// was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_approval: Option<String>,
    /// The schedule slot of the last scheduled import (RFC 3339), or when scheduling
    /// began; slots after it are due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    /// The spec generation and Secret versions the `Authorized` condition was checked
    /// against; a change re-authorizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized_for: Option<String>,
}

/// Summary of the most recent import.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastImport {
    /// Name of the ImportRun.
    pub run_name: String,
    /// Its phase.
    pub phase: ImportPhase,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Its counts.
    #[serde(default)]
    pub summary: ImportSummary,
    /// Mapping targets the destination does not keep (left out of every write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported_mapping_targets: Option<Vec<String>>,
}

/// What an import would do if the integration were published. Written by the preview run
/// alone: when it starts (`phase: Running`, no counts yet) and when it ends.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    /// The preview ImportRun.
    pub run_name: String,
    /// `Running` while the preview is under way, then the run's final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ImportPhase>,
    /// When it was computed (RFC 3339); absent while it runs.
    #[serde(default)]
    pub computed_at: Option<String>,
    /// The spec generation it is computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Members that would be created (absent until the preview has finished).
    #[serde(default)]
    pub would_create: Option<u32>,
    /// Members that would be updated.
    #[serde(default)]
    pub would_update: Option<u32>,
    /// Members that would be marked as leavers.
    #[serde(default)]
    pub would_mark_as_leavers: Option<u32>,
    /// Members that would be re-activated.
    #[serde(default)]
    pub would_reactivate: Option<u32>,
    /// Records that would be rejected.
    #[serde(default)]
    pub errors: Option<u32>,
    /// Employees in `spec.scope` (set when a scope filter is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_scope: Option<u32>,
    /// Employees out of `spec.scope`: never created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_scope: Option<u32>,
    /// The first few mapped members, values as they would be written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<PreviewMember>,
}

/// One mapped member in `status.preview.sample`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewMember {
    /// The member's Employee ID.
    pub employee_id: String,
    /// Target → value, as the member would be written (`userName`, `title`,
    /// `urn:…:costCenter`).
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
}
