//! Reconcile one FreshteamIntegration in four steps: observe (the spec, the Secrets,
//! whether Freshteam accepts the key), decide whether to import (pure, see `decide`), act
//! (start the run), and write what was observed to `status` in one patch.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::authorization_queue::Turn;
use super::conditions::{
    self as cond, AUTHORIZED, DESTINATION_SUPPORTS_MAPPING, IMPORTING, MAPPING_VALID, PUBLISHED,
    READY,
};
use super::decide::{self, Decision, Inputs, StartRun};
use super::runner::{self, create_run, execute, new_run, RunRequest};
use super::status::ReconcilerStatus;
use super::Context;
use crate::api::{
    import_run_name, FreshteamIntegration, FreshteamIntegrationStatus, ImportPhase, ImportRun,
    ImportTrigger, SecretKeyRef, APPROVE_LEAVERS, FULL_RECONCILE_REQUESTED_AT, IMPORT_REQUESTED_AT,
};
use crate::clock::rfc3339;
use crate::secret::SecretString;
use crate::source::SourceError;
use crate::sync::mode::{spec_fingerprint, ModePolicy, RequestedMode};
use crate::validate::{validate_integration, EndpointPolicy, ValidatedSpec};

/// Failures that make the controller retry with backoff (Kubernetes API errors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the integration has no namespace")]
    NoNamespace,
}

/// Reason of `Authorized=Unknown` while an integration waits for its turn to authorize.
pub const AWAITING_AUTHORIZATION: &str = "AwaitingAuthorization";

/// How long to wait before checking an integration whose authorization failed again.
const REAUTHORIZE_AFTER: Duration = Duration::from_secs(300);

/// How soon to look again while a user's on-demand run waits for the run under way.
pub const ON_DEMAND_RECHECK: Duration = Duration::from_secs(5);

/// Observes the integration, decides whether to import now, acts on it, and writes the
/// status: the one status patch of a reconcile, when anything changed. Returns when to
/// reconcile again.
///
/// The span names the integration only: its spec (with the Secrets' names) and status
/// stay out of the logs.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(
        namespace = fti.metadata.namespace.as_deref().unwrap_or_default(),
        integration = %fti.name_any(),
    )
)]
pub async fn reconcile(fti: Arc<FreshteamIntegration>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.in_shard(&fti) {
        // Another shard's: not ours to touch (a label change moved it away).
        return Ok(Action::await_change());
    }
    let mut r = Reconciliation::begin(fti, ctx)?;
    let next = match r.observe().await {
        ControlFlow::Break(next) => next,
        ControlFlow::Continue(found) => {
            let Decision {
                start,
                requeue_after,
                ..
            } = r.decide(&found.spec).await?;
            if let Some(start) = start {
                r.act(found, start).await?;
            } else if !r.running {
                r.act_on_demand(found).await?;
            }
            let mut next = requeue_after
                .and_then(|d| d.to_std().ok())
                .unwrap_or(Duration::from_secs(3600));
            // A run under way may end without a later event reaching this integration
            // (its last write can be seen while it still counts as running).
            if r.ctx.on_demand.has(&r.key) {
                next = next.min(ON_DEMAND_RECHECK);
            }
            Action::requeue(next)
        }
    };
    r.write_status().await?;
    Ok(next)
}

/// One reconcile: the integration as read, and the status it writes at the end.
struct Reconciliation {
    fti: Arc<FreshteamIntegration>,
    ctx: Arc<Context>,
    ns: String,
    name: String,
    /// `namespace/name`: the integration's key for its run and its authorization turn.
    key: String,
    now: DateTime<Utc>,
    generation: Option<i64>,
    /// A run of this integration is under way in this process.
    running: bool,
    /// The status as read, and as it will be written.
    previous: FreshteamIntegrationStatus,
    status: FreshteamIntegrationStatus,
}

/// What observing found an importable integration to have.
struct Found {
    spec: ValidatedSpec,
    api_key: SecretString,
    token: SecretString,
}

impl Reconciliation {
    /// The start of observing: whether a run is under way here, and `spec.published`.
    fn begin(fti: Arc<FreshteamIntegration>, ctx: Arc<Context>) -> Result<Self, Error> {
        let ns = fti.namespace().ok_or(Error::NoNamespace)?;
        let name = fti.name_any();
        let key = format!("{ns}/{name}");
        let now = ctx.clock.now();
        let generation = fti.metadata.generation;
        let previous = fti.status.clone().unwrap_or_default();
        let mut status = previous.clone();
        status.observed_generation = generation;
        if let Some(m) = &ctx.metrics {
            m.reconcile(&ns, &name);
        }
        let running = ctx.runs.is_running(&key);
        let published = fti.spec.published;
        let mut r = Reconciliation {
            fti,
            ctx,
            ns,
            name,
            key,
            now,
            generation,
            running,
            previous,
            status,
        };
        r.set(
            IMPORTING,
            running,
            if running { "ImportRunning" } else { "Idle" },
            if running {
                "an ImportRun is in progress".into()
            } else {
                "no import in progress".into()
            },
        );
        r.set(
            PUBLISHED,
            published,
            if published {
                "Published"
            } else {
                "Unpublished"
            },
            if published {
                "imports write to the destination on the schedule".into()
            } else {
                "spec.published is false: previews only, nothing is written".into()
            },
        );
        Ok(r)
    }

    fn set(&mut self, type_: &str, ok: bool, reason: &str, message: String) {
        cond::set(
            &mut self.status.conditions,
            type_,
            ok,
            reason,
            message,
            self.generation,
            self.now,
        )
    }

    /// Observe: is the spec valid, is the integration suspended, can its Secrets be read,
    /// does Freshteam accept the key. Each answer is recorded in the status; `Break`
    /// carries when to look again at an integration that cannot import now.
    async fn observe(&mut self) -> ControlFlow<Action, Found> {
        let spec = self.check_spec()?;
        self.check_suspended()?;
        let ((api_key, key_version), (token, token_version)) = self.read_credentials().await?;
        let fingerprint = format!(
            "{}/{key_version}/{token_version}",
            self.generation.unwrap_or(0)
        );
        self.authorize(&api_key, fingerprint).await?;
        ControlFlow::Continue(Found {
            spec,
            api_key,
            token,
        })
    }

    /// The spec itself: mapping, schedule and endpoints.
    fn check_spec(&mut self) -> ControlFlow<Action, ValidatedSpec> {
        let policy = if self.ctx.config.allow_custom_endpoints {
            EndpointPolicy::Allow
        } else {
            EndpointPolicy::Deny
        };
        match validate_integration(&self.name, &self.fti.spec, policy) {
            Ok(v) => {
                self.set(
                    MAPPING_VALID,
                    true,
                    "Valid",
                    "mapping, schedule and endpoints are valid".into(),
                );
                let last = self.previous.last_import.as_ref();
                if let Some(targets) = last.and_then(|l| l.unsupported_mapping_targets.clone()) {
                    let (ok, reason, message) = match targets.is_empty() {
                        true => (true, "AllTargetsKept", "the destination keeps every mapping target".to_string()),
                        false => (false, "TargetsNotKept", format!(
                            "the destination does not keep {}: left out of every write and never compared",
                            targets.join(", ")
                        )),
                    };
                    self.set(DESTINATION_SUPPORTS_MAPPING, ok, reason, message);
                }
                ControlFlow::Continue(v)
            }
            Err(errors) => {
                let message = errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                let reason = if errors.iter().any(|e| e.refused_by_policy) {
                    "CustomEndpointRefused"
                } else {
                    "InvalidSpec"
                };
                self.set(MAPPING_VALID, false, reason, message.clone());
                self.set(READY, false, reason, message);
                self.status.next_import_time = None;
                ControlFlow::Break(Action::await_change())
            }
        }
    }

    /// Revoked access: no call to Freshteam at all, and a run under way is stopped.
    fn check_suspended(&mut self) -> ControlFlow<Action> {
        if !self.fti.spec.suspend {
            return ControlFlow::Continue(());
        }
        let msg = "spec.suspend is true: no calls to Freshteam and no imports".to_string();
        if self.running {
            self.ctx
                .runs
                .stop_run(&self.key, "spec.suspend was set to true");
        }
        self.set(AUTHORIZED, false, "Suspended", msg.clone());
        self.set(READY, false, "Suspended", msg);
        self.status.next_import_time = None;
        ControlFlow::Break(Action::await_change())
    }

    /// The API key and the SCIM token, each with its Secret's version. A Secret that
    /// cannot be read stops a run under way and is announced once per reason.
    async fn read_credentials(
        &mut self,
    ) -> ControlFlow<Action, ((SecretString, String), (SecretString, String))> {
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let spec = &self.fti.spec;
        let credentials = async {
            let key = read_secret(
                &secrets,
                "spec.source.apiKeySecretRef",
                &spec.source.api_key_secret_ref,
            )
            .await?;
            let token = read_secret(
                &secrets,
                "spec.destination.scim.tokenSecretRef",
                &spec.destination.scim.token_secret_ref,
            )
            .await?;
            Ok::<_, SecretError>((key, token))
        }
        .await;
        let (reason, message) = match credentials {
            Ok(c) => return ControlFlow::Continue(c),
            Err(e) => (e.reason(), e.to_string()),
        };
        if self.running {
            self.ctx.runs.stop_run(&self.key, &message);
        }
        let was = cond::get(&self.previous.conditions, AUTHORIZED).map(|c| c.reason.clone());
        if was.as_deref() != Some(reason) {
            self.ctx
                .event(
                    &self.fti,
                    EventType::Warning,
                    "AuthorizationFailed",
                    message.clone(),
                )
                .await;
        }
        self.set(AUTHORIZED, false, reason, message.clone());
        self.set(READY, false, reason, message);
        self.status.authorized_for = None;
        if let Some(m) = &self.ctx.metrics {
            m.set_authorized(&self.ns, &self.name, false);
        }
        ControlFlow::Break(Action::await_change())
    }

    /// Authorizes with Freshteam when the spec or a Secret changed (`fingerprint`), or to
    /// retry a failure, in the integration's turn. `Break` unless it is authorized.
    async fn authorize(
        &mut self,
        api_key: &SecretString,
        fingerprint: String,
    ) -> ControlFlow<Action> {
        if self.authorization_due(&fingerprint) {
            if let Turn::At(at) = self.ctx.authorizations.turn(&self.key, self.now) {
                return ControlFlow::Break(self.await_turn(at));
            }
            let ctx = self.ctx.clone();
            let fti = self.fti.clone();
            let result = match ctx.connector.source(&fti.spec, api_key.clone()).await {
                Ok(source) => source
                    .authorize()
                    .await
                    .map_err(|e| (reason_of(&e), e.to_string())),
                Err(e) => Err(("InvalidSource".to_string(), e.reason().to_string())),
            };
            self.status.authorized_for = Some(fingerprint);
            match result {
                Ok(info) => self.set(
                    AUTHORIZED,
                    true,
                    "Connected",
                    format!(
                        "Connected to {} ({} employees)",
                        info.host,
                        group_thousands(info.employees)
                    ),
                ),
                Err((reason, message)) => {
                    ctx.event(
                        &fti,
                        EventType::Warning,
                        "AuthorizationFailed",
                        message.clone(),
                    )
                    .await;
                    self.set(AUTHORIZED, false, &reason, message);
                }
            }
        }
        let authorized = cond::is_true(&self.status.conditions, AUTHORIZED);
        if let Some(m) = &self.ctx.metrics {
            m.set_authorized(&self.ns, &self.name, authorized);
        }
        if !authorized {
            let message = cond::get(&self.status.conditions, AUTHORIZED)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            self.set(READY, false, "NotAuthorized", message);
            return ControlFlow::Break(Action::requeue(REAUTHORIZE_AFTER));
        }
        ControlFlow::Continue(())
    }

    /// The spec or a Secret changed since the last authorization, a failure is due for a
    /// retry, or the integration was waiting for its turn.
    fn authorization_due(&self, fingerprint: &str) -> bool {
        let conditions = &self.status.conditions;
        let authorized = cond::is_true(conditions, AUTHORIZED);
        let retry_due = cond::get(conditions, AUTHORIZED)
            .map(|c| {
                self.now.timestamp() - c.last_transition_time.0.as_second()
                    >= REAUTHORIZE_AFTER.as_secs() as i64
            })
            .unwrap_or(true);
        let awaiting =
            cond::get(conditions, AUTHORIZED).is_some_and(|c| c.reason == AWAITING_AUTHORIZATION);
        self.status.authorized_for.as_deref() != Some(fingerprint)
            || (!authorized && retry_due)
            || awaiting
    }

    /// Not this integration's turn to authorize yet: `Authorized=Unknown` until `at`.
    fn await_turn(&mut self, at: DateTime<Utc>) -> Action {
        let message = format!(
            "waiting for its turn to authorize with Freshteam (at most {} per second across the operator), due at {}",
            self.ctx.authorizations.per_second(),
            rfc3339(whole_second_after(at))
        );
        cond::set_status(
            &mut self.status.conditions,
            AUTHORIZED,
            "Unknown",
            AWAITING_AUTHORIZATION,
            message.clone(),
            self.generation,
            self.now,
        );
        self.set(READY, false, AWAITING_AUTHORIZATION, message);
        if let Some(m) = &self.ctx.metrics {
            m.set_authorized(&self.ns, &self.name, false);
        }
        let wait = (at - self.now).to_std().unwrap_or_default();
        Action::requeue(wait + Duration::from_millis(1))
    }

    /// Decide: whether to import now and when next ([`decide::decide`], pure), recorded
    /// as `nextImportTime`, `lastScheduleTime` and `Ready`. Only when a run would start
    /// is one still going elsewhere (the previous shard or leader) looked for: then this
    /// reconcile decides as if it were running here.
    async fn decide(&mut self, spec: &ValidatedSpec) -> Result<Decision, Error> {
        let annotations = self.fti.annotations();
        let parse_time = |s: &Option<String>| -> Option<DateTime<Utc>> {
            s.as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let status = &self.status;
        let inputs = Inputs {
            now: self.now,
            published: self.fti.spec.published,
            generation: self.generation.unwrap_or(0),
            schedule: &spec.schedule,
            time_zone: spec.time_zone,
            requested_at: annotations.get(IMPORT_REQUESTED_AT).map(String::as_str),
            last_handled_request: status.last_handled_import_request.as_deref(),
            full_requested_at: annotations
                .get(FULL_RECONCILE_REQUESTED_AT)
                .map(String::as_str),
            last_handled_full_request: status.last_handled_full_reconcile_request.as_deref(),
            // An interrupted preview is computed again.
            preview_generation: status
                .preview
                .as_ref()
                .filter(|p| p.phase != Some(ImportPhase::Interrupted))
                .and_then(|p| p.generation),
            last_schedule_time: parse_time(&status.last_schedule_time),
            approved_run: annotations.get(APPROVE_LEAVERS).map(String::as_str),
            last_handled_approval: status.last_handled_approval.as_deref(),
            running: self.running,
        };
        let mut decision = decide::decide(&inputs);
        if decision.start.is_some()
            && run_in_progress_elsewhere(&self.ctx, &self.ns, &self.name).await?
        {
            decision = decide::decide(&Inputs {
                running: true,
                ..inputs
            });
        }
        self.status.next_import_time = decision.next_import_time.map(rfc3339);
        if let Some(t) = decision.last_schedule_time {
            self.status.last_schedule_time = Some(rfc3339(t));
        }
        let ready_message = match &self.status.next_import_time {
            Some(next) => format!("next import at {next}"),
            None => "unpublished: previews only; set spec.published: true to import".into(),
        };
        self.set(READY, true, "Ready", ready_message);
        Ok(decision)
    }

    /// Act: creates the ImportRun, starts it in the background and records the requests
    /// it handles.
    async fn act(&mut self, found: Found, start: StartRun) -> Result<(), Error> {
        let run_name = import_run_name(&self.name, self.now);
        let runs: Api<ImportRun> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let run = create_run(&runs, new_run(&self.fti, &run_name, &start)).await?;
        self.start(found, start, run.name_any(), None);
        Ok(())
    }

    /// A user's on-demand run waiting for this integration, when nothing else runs: taken
    /// (see [`runner::take`]), then started, or ended `Failed` when its spec cannot run.
    async fn act_on_demand(&mut self, found: Found) -> Result<(), Error> {
        if !self.ctx.on_demand.has(&self.key)
            || run_in_progress_elsewhere(&self.ctx, &self.ns, &self.name).await?
        {
            return Ok(());
        }
        let runs: Api<ImportRun> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        while let Some(name) = self.ctx.on_demand.next(&self.key) {
            let Some(run) = runner::take(&runs, &self.fti, &name).await? else {
                continue;
            };
            if let Err(e) = runner::adopt(&runs, &self.fti, &run).await {
                // The run goes on; only its clean-up with the integration is missing.
                tracing::warn!(run = %name, error = %e, "could not adopt an on-demand ImportRun");
            }
            if let Some(why) = runner::refusal(&run, &self.fti) {
                runner::refuse(&runs, &name, why, self.now).await?;
                continue;
            }
            let start = StartRun {
                trigger: ImportTrigger::OnDemand,
                dry_run: run.spec.dry_run,
                request: None,
                full_request: None,
                approval: None,
                slot: None,
            };
            let only = Some(run.spec.employee_ids.clone());
            self.start(found, start, name, only);
            break;
        }
        Ok(())
    }

    /// Starts the run `run_name` in the background and records the requests it handles.
    fn start(
        &mut self,
        found: Found,
        start: StartRun,
        run_name: String,
        only: Option<Vec<String>>,
    ) {
        if let Some(r) = &start.request {
            self.status.last_handled_import_request = Some(r.clone());
        }
        if let Some(r) = &start.full_request {
            self.status.last_handled_full_reconcile_request = Some(r.clone());
        }
        if let Some(a) = &start.approval {
            self.status.last_handled_approval = Some(a.clone());
        }
        self.set(
            IMPORTING,
            true,
            "ImportRunning",
            format!("ImportRun {run_name} is in progress"),
        );
        let requested = if start.full_request.is_some() {
            RequestedMode::Full
        } else {
            RequestedMode::Auto
        };
        let Found {
            spec,
            api_key,
            token,
        } = found;
        self.ctx.runs.start(
            &self.key,
            execute(
                self.ctx.clone(),
                RunRequest {
                    integration: self.fti.clone(),
                    run_name,
                    start,
                    mode: ModePolicy {
                        requested,
                        full_schedule: spec.full_reconcile,
                        time_zone: spec.time_zone,
                        fingerprint: spec_fingerprint(&self.fti.spec),
                    },
                    mapping: spec.mapping,
                    api_key,
                    token,
                    only,
                },
            ),
        );
    }

    /// Write status: the one patch of what this reconcile owns, changed fields only.
    async fn write_status(self) -> Result<(), Error> {
        log_authorization_change(&self.previous, &self.status);
        write_status(
            &self.ctx,
            &self.ns,
            &self.name,
            &self.previous,
            &self.status,
        )
        .await
    }
}

/// An unfinished ImportRun this process does not run: the integration's previous shard
/// or leader is still at it. Waiting for it keeps one run at a time per integration. A
/// user's on-demand run nobody took yet is not under way.
async fn run_in_progress_elsewhere(ctx: &Context, ns: &str, name: &str) -> Result<bool, Error> {
    let runs: Api<ImportRun> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{}={name}", crate::api::INTEGRATION_LABEL);
    let list = runs
        .list(&kube::api::ListParams::default().labels(&selector))
        .await?;
    Ok(list.items.iter().any(|r| {
        !runner::is_waiting(r)
            && !r
                .status
                .as_ref()
                .map(|s| s.phase)
                .unwrap_or_default()
                .is_final()
    }))
}

/// One log line when the `Authorized` condition changes (granted, refused, revoked,
/// suspended): the operator's log tells when access came and went, not only the status.
/// The message is the condition's, which carries no secret.
fn log_authorization_change(
    previous: &FreshteamIntegrationStatus,
    status: &FreshteamIntegrationStatus,
) {
    let key = |s: &FreshteamIntegrationStatus| {
        cond::get(&s.conditions, AUTHORIZED).map(|c| (c.status.clone(), c.reason.clone()))
    };
    if key(previous) == key(status) {
        return;
    }
    let Some(now) = cond::get(&status.conditions, AUTHORIZED) else {
        return;
    };
    match now.status.as_str() {
        "True" => tracing::info!(reason = %now.reason, detail = %now.message, "authorized"),
        "False" => tracing::warn!(reason = %now.reason, detail = %now.message, "not authorized"),
        // Waiting for its turn: the answer comes later.
        _ => {}
    }
}

/// The reconciler writes what it owns; `lastImport` and `preview` belong to the run and
/// are never written here (a copy read before the run wrote them would be stale).
async fn write_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    previous: &FreshteamIntegrationStatus,
    status: &FreshteamIntegrationStatus,
) -> Result<(), Error> {
    // An unchanged status is not written: every write is a watch event that would
    // reconcile again.
    if status == previous {
        return Ok(());
    }
    let api: Api<FreshteamIntegration> = Api::namespaced(ctx.client.clone(), ns);
    let patch = Patch::Merge(ReconcilerStatus::changes(previous, status).into_patch());
    // The patch carries no resourceVersion, so a conflict (an API that applies merge
    // patches as read-modify-write, racing the run's own status writes) is retried.
    let mut attempts = 0;
    loop {
        match api
            .patch_status(name, &PatchParams::default(), &patch)
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 409 && attempts < 3 => attempts += 1,
            other => return other.map(|_| ()).map_err(Error::from),
        }
    }
}

/// Why a credential could not be read; `field` names the spec's reference.
#[derive(Debug, thiserror::Error)]
enum SecretError {
    #[error("{field}: Secret '{name}' not found in the integration's namespace")]
    NotFound { field: &'static str, name: String },
    #[error("{field}: cannot read Secret '{name}': {source}")]
    Unreadable {
        field: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("{field}: Secret '{name}' has no non-empty key '{key}'")]
    KeyMissing {
        field: &'static str,
        name: String,
        key: String,
    },
}

impl SecretError {
    /// The reason of the `Authorized` and `Ready` conditions.
    fn reason(&self) -> &'static str {
        match self {
            SecretError::NotFound { .. } => "SecretNotFound",
            SecretError::Unreadable { .. } => "SecretUnreadable",
            SecretError::KeyMissing { .. } => "SecretKeyMissing",
        }
    }
}

/// A key of a Secret in the integration's namespace, with the Secret's version.
async fn read_secret(
    secrets: &Api<Secret>,
    field: &'static str,
    r: &SecretKeyRef,
) -> Result<(SecretString, String), SecretError> {
    let name = r.name.clone();
    let secret = match secrets.get_opt(&r.name).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(SecretError::NotFound { field, name }),
        Err(source) => {
            return Err(SecretError::Unreadable {
                field,
                name,
                source,
            })
        }
    };
    let version = secret.resource_version().unwrap_or_default();
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string());
    let from_string = secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|s| s.trim().to_string());
    match from_string.or(from_data).filter(|v| !v.is_empty()) {
        Some(v) => Ok((SecretString::new(v), version)),
        None => Err(SecretError::KeyMissing {
            field,
            name,
            key: r.key.clone(),
        }),
    }
}

fn reason_of(e: &SourceError) -> String {
    match e {
        SourceError::InvalidCredentials { .. } => "InvalidCredentials",
        SourceError::Forbidden { .. } => "Forbidden",
        SourceError::UnknownAccount { .. } => "UnknownSubdomain",
        SourceError::Unreachable { .. } => "Unreachable",
        SourceError::RateLimited { .. } => "RateLimited",
        _ => "AuthorizationFailed",
    }
    .to_string()
}

/// `t`, or the next whole second (status times have whole seconds).
fn whole_second_after(t: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        t
    } else {
        t + chrono::Duration::nanoseconds(1_000_000_000 - i64::from(nanos))
    }
}

/// 1204 → "1,204".
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Retries with a short backoff after a Kubernetes API error.
pub fn error_policy(fti: Arc<FreshteamIntegration>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(integration = %fti.name_any(), error = %error, "reconcile failed");
    if let Some(m) = &ctx.metrics {
        m.reconcile_error(
            &fti.namespace().unwrap_or_default(),
            &fti.name_any(),
            "kube",
        );
    }
    Action::requeue(Duration::from_secs(15))
}

#[cfg(test)]
mod tests {
    use super::group_thousands;

    #[test]
    fn thousands() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1204), "1,204");
        assert_eq!(group_thousands(1234567), "1,234,567");
    }
}
