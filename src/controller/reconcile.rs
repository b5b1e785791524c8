//! Reconcile one FreshteamIntegration: validate, authorize, decide whether to import,
//! start the run, and record what was observed in `status`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::authorization_queue::Turn;
use super::conditions::{
    self as cond, AUTHORIZED, DESTINATION_SUPPORTS_MAPPING, IMPORTING, MAPPING_VALID, PUBLISHED,
    READY,
};
use super::decide::{decide, Inputs};
use super::runner::{create_run, execute, new_run, RunRequest};
use super::Context;
use crate::api::{
    FreshteamIntegration, FreshteamIntegrationStatus, ImportPhase, ImportRun, SecretKeyRef,
    APPROVE_LEAVERS, FULL_RECONCILE_REQUESTED_AT, IMPORT_REQUESTED_AT,
};
use crate::clock::rfc3339;
use crate::secret::SecretString;
use crate::source::SourceError;
use crate::sync::mode::{spec_fingerprint, ModePolicy, RequestedMode};
use crate::validate::{validate_integration, EndpointPolicy};

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

pub async fn reconcile(fti: Arc<FreshteamIntegration>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.in_shard(&fti) {
        // Another shard's: not ours to touch (a label change moved it away).
        return Ok(Action::await_change());
    }
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
    let running = ctx.is_running(&key);
    let mut extra = serde_json::Map::new();

    let set =
        |status: &mut FreshteamIntegrationStatus, t: &str, ok: bool, reason: &str, msg: String| {
            cond::set(&mut status.conditions, t, ok, reason, msg, generation, now)
        };
    set(
        &mut status,
        IMPORTING,
        running,
        if running { "ImportRunning" } else { "Idle" },
        if running {
            "an ImportRun is in progress".into()
        } else {
            "no import in progress".into()
        },
    );
    set(
        &mut status,
        PUBLISHED,
        fti.spec.published,
        if fti.spec.published {
            "Published"
        } else {
            "Unpublished"
        },
        if fti.spec.published {
            "imports write to the destination on the schedule".into()
        } else {
            "spec.published is false: previews only, nothing is written".into()
        },
    );

    // 1. The spec itself.
    let policy = if ctx.config.allow_custom_endpoints {
        EndpointPolicy::Allow
    } else {
        EndpointPolicy::Deny
    };
    let validated = match validate_integration(&name, &fti.spec, policy) {
        Ok(v) => {
            set(
                &mut status,
                MAPPING_VALID,
                true,
                "Valid",
                "mapping, schedule and endpoints are valid".into(),
            );
            let last = previous.last_import.as_ref();
            if let Some(targets) = last.and_then(|l| l.unsupported_mapping_targets.as_ref()) {
                let (ok, reason, message) = match targets.is_empty() {
                    true => (true, "AllTargetsKept", "the destination keeps every mapping target".to_string()),
                    false => (false, "TargetsNotKept", format!(
                        "the destination does not keep {}: left out of every write and never compared",
                        targets.join(", ")
                    )),
                };
                set(
                    &mut status,
                    DESTINATION_SUPPORTS_MAPPING,
                    ok,
                    reason,
                    message,
                );
            }
            v
        }
        Err(errors) => {
            let message = errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            let reason = if message.contains("--allow-custom-endpoints") {
                "CustomEndpointRefused"
            } else {
                "InvalidSpec"
            };
            set(&mut status, MAPPING_VALID, false, reason, message.clone());
            set(&mut status, READY, false, reason, message);
            status.next_import_time = None;
            extra.insert("nextImportTime".into(), serde_json::Value::Null);
            write_status(&ctx, &ns, &name, &previous, &status, extra).await?;
            return Ok(Action::await_change());
        }
    };

    // 2. Revoked access: no call to Freshteam at all.
    if fti.spec.suspend {
        let msg = "spec.suspend is true: no calls to Freshteam and no imports".to_string();
        if running {
            ctx.stop_run(&key, "spec.suspend was set to true");
        }
        set(&mut status, AUTHORIZED, false, "Suspended", msg.clone());
        set(&mut status, READY, false, "Suspended", msg);
        status.next_import_time = None;
        extra.insert("nextImportTime".into(), serde_json::Value::Null);
        write_status(&ctx, &ns, &name, &previous, &status, extra).await?;
        return Ok(Action::await_change());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let credentials = async {
        let key = read_secret(
            &secrets,
            "spec.source.apiKeySecretRef",
            &fti.spec.source.api_key_secret_ref,
        )
        .await?;
        let token = read_secret(
            &secrets,
            "spec.destination.scim.tokenSecretRef",
            &fti.spec.destination.scim.token_secret_ref,
        )
        .await?;
        Ok::<_, (String, String)>((key, token))
    }
    .await;
    let ((api_key, key_version), (token, token_version)) = match credentials {
        Ok(c) => c,
        Err((reason, message)) => {
            if running {
                ctx.stop_run(&key, &message);
            }
            let was = cond::get(&previous.conditions, AUTHORIZED).map(|c| c.reason.clone());
            if was.as_deref() != Some(reason.as_str()) {
                ctx.event(
                    &fti,
                    EventType::Warning,
                    "AuthorizationFailed",
                    message.clone(),
                )
                .await;
            }
            set(&mut status, AUTHORIZED, false, &reason, message.clone());
            set(&mut status, READY, false, &reason, message);
            status.authorized_for = None;
            extra.insert("authorizedFor".into(), serde_json::Value::Null);
            if let Some(m) = &ctx.metrics {
                m.set_authorized(&ns, &name, false);
            }
            write_status(&ctx, &ns, &name, &previous, &status, extra).await?;
            return Ok(Action::await_change());
        }
    };

    // 3. Authorize when the spec or a Secret changed, or to retry a failure.
    let fingerprint = format!("{}/{key_version}/{token_version}", generation.unwrap_or(0));
    let authorized = cond::is_true(&status.conditions, AUTHORIZED);
    let retry_due = cond::get(&status.conditions, AUTHORIZED)
        .map(|c| {
            now.timestamp() - c.last_transition_time.0.as_second()
                >= REAUTHORIZE_AFTER.as_secs() as i64
        })
        .unwrap_or(true);
    let awaiting = cond::get(&status.conditions, AUTHORIZED)
        .is_some_and(|c| c.reason == AWAITING_AUTHORIZATION);
    if status.authorized_for.as_deref() != Some(fingerprint.as_str())
        || (!authorized && retry_due)
        || awaiting
    {
        if let Turn::At(at) = ctx.authorizations.turn(&key, now) {
            let message = format!(
                "waiting for its turn to authorize with Freshteam (at most {} per second across the operator), due at {}",
                ctx.authorizations.per_second(),
                rfc3339(whole_second_after(at))
            );
            cond::set_status(
                &mut status.conditions,
                AUTHORIZED,
                "Unknown",
                AWAITING_AUTHORIZATION,
                message.clone(),
                generation,
                now,
            );
            set(&mut status, READY, false, AWAITING_AUTHORIZATION, message);
            if let Some(m) = &ctx.metrics {
                m.set_authorized(&ns, &name, false);
            }
            write_status(&ctx, &ns, &name, &previous, &status, extra).await?;
            let wait = (at - now).to_std().unwrap_or_default();
            return Ok(Action::requeue(wait + Duration::from_millis(1)));
        }
        let result = match ctx.connector.source(&fti.spec, api_key.clone()).await {
            Ok(source) => source
                .authorize()
                .await
                .map_err(|e| (reason_of(&e), e.to_string())),
            Err(e) => Err(("InvalidSource".to_string(), e.reason().to_string())),
        };
        status.authorized_for = Some(fingerprint);
        match result {
            Ok(info) => set(
                &mut status,
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
                set(&mut status, AUTHORIZED, false, &reason, message);
            }
        }
    }
    let authorized = cond::is_true(&status.conditions, AUTHORIZED);
    if let Some(m) = &ctx.metrics {
        m.set_authorized(&ns, &name, authorized);
    }
    if !authorized {
        let message = cond::get(&status.conditions, AUTHORIZED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        set(&mut status, READY, false, "NotAuthorized", message);
        write_status(&ctx, &ns, &name, &previous, &status, extra).await?;
        return Ok(Action::requeue(REAUTHORIZE_AFTER));
    }

    // 4. Decide whether to import now.
    let annotations = fti.annotations();
    let parse_time = |s: &Option<String>| -> Option<DateTime<Utc>> {
        s.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let inputs = Inputs {
        now,
        published: fti.spec.published,
        generation: generation.unwrap_or(0),
        schedule: &validated.schedule,
        time_zone: validated.time_zone,
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
        running,
    };
    let mut decision = decide(&inputs);
    // Only when a run would start: is one still going elsewhere (the previous shard or
    // leader)? Then this reconcile decides as if it were running here.
    if decision.start.is_some() && run_in_progress_elsewhere(&ctx, &ns, &name).await? {
        decision = decide(&Inputs {
            running: true,
            ..inputs
        });
    }
    status.next_import_time = decision.next_import_time.map(rfc3339);
    if status.next_import_time.is_none() {
        extra.insert("nextImportTime".into(), serde_json::Value::Null);
    }
    if let Some(t) = decision.last_schedule_time {
        status.last_schedule_time = Some(rfc3339(t));
    }

    if let Some(start) = decision.start {
        let run_name = format!("{name}-{}", now.format("%Y%m%d-%H%M%S"));
        let runs: Api<ImportRun> = Api::namespaced(ctx.client.clone(), &ns);
        let run = create_run(&runs, new_run(&fti, &run_name, &start)).await?;
        let run_name = run.name_any();
        if let Some(r) = &start.request {
            status.last_handled_import_request = Some(r.clone());
        }
        if let Some(r) = &start.full_request {
            status.last_handled_full_reconcile_request = Some(r.clone());
        }
        if let Some(a) = &start.approval {
            status.last_handled_approval = Some(a.clone());
        }
        set(
            &mut status,
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
        ctx.start(
            &key,
            execute(
                ctx.clone(),
                RunRequest {
                    integration: fti.clone(),
                    run_name,
                    start,
                    mode: ModePolicy {
                        requested,
                        full_schedule: validated.full_reconcile,
                        time_zone: validated.time_zone,
                        fingerprint: spec_fingerprint(&fti.spec),
                    },
                    mapping: validated.mapping,
                    api_key,
                    token,
                },
            ),
        );
    }

    let ready_message = match &status.next_import_time {
        Some(next) => format!("next import at {next}"),
        None => "unpublished: previews only; set spec.published: true to import".into(),
    };
    set(&mut status, READY, true, "Ready", ready_message);
    write_status(&ctx, &ns, &name, &previous, &status, extra).await?;
    Ok(match decision.requeue_after.and_then(|d| d.to_std().ok()) {
        Some(d) => Action::requeue(d),
        None => Action::requeue(Duration::from_secs(3600)),
    })
}

/// An unfinished ImportRun this process does not run: the integration's previous shard
/// or leader is still at it. Waiting for it keeps one run at a time per integration.
async fn run_in_progress_elsewhere(ctx: &Context, ns: &str, name: &str) -> Result<bool, Error> {
    let runs: Api<ImportRun> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{}={name}", crate::api::INTEGRATION_LABEL);
    let list = runs
        .list(&kube::api::ListParams::default().labels(&selector))
        .await?;
    Ok(list.items.iter().any(|r| {
        !r.status
            .as_ref()
            .map(|s| s.phase)
            .unwrap_or_default()
            .is_final()
    }))
}

/// The reconciler writes what it owns; `lastImport` and `preview` belong to the run and
/// are never written here (a copy read before the run wrote them would be stale).
async fn write_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    previous: &FreshteamIntegrationStatus,
    status: &FreshteamIntegrationStatus,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Result<(), Error> {
    // An unchanged status is not written: every write is a watch event that would
    // reconcile again.
    if status == previous {
        return Ok(());
    }
    let mut value = serde_json::to_value(status).expect("status serialises");
    let before = serde_json::to_value(previous).expect("status serialises");
    if let Some(obj) = value.as_object_mut() {
        obj.remove("lastImport");
        obj.remove("preview");
        // Only what this reconcile changed: one that read a stale copy (the cache lags
        // behind the last write) must not put back an older lastHandledImportRequest.
        obj.retain(|k, v| before.get(k) != Some(v));
        for (k, v) in extra {
            obj.insert(k, v);
        }
    }
    let api: Api<FreshteamIntegration> = Api::namespaced(ctx.client.clone(), ns);
    let patch = Patch::Merge(json!({ "status": value }));
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

/// A key of a Secret in the integration's namespace, with the Secret's version.
/// Errors are (condition reason, message naming the field).
async fn read_secret(
    secrets: &Api<Secret>,
    field: &str,
    r: &SecretKeyRef,
) -> Result<(SecretString, String), (String, String)> {
    let secret = match secrets.get_opt(&r.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err((
                "SecretNotFound".into(),
                format!(
                    "{field}: Secret '{}' not found in the integration's namespace",
                    r.name
                ),
            ))
        }
        Err(e) => {
            return Err((
                "SecretUnreadable".into(),
                format!("{field}: cannot read Secret '{}': {e}", r.name),
            ))
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
        None => Err((
            "SecretKeyMissing".into(),
            format!(
                "{field}: Secret '{}' has no non-empty key '{}'",
                r.name, r.key
            ),
        )),
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
