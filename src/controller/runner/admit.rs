//! Admission: the slots a run holds while it runs.

use std::sync::atomic::Ordering;

use tokio::sync::{AcquireError, OwnedSemaphorePermit};

use crate::api::FreshteamIntegrationSpec;
use crate::connect::account_key;
use crate::controller::Context;
use crate::telemetry::RunningImport;

/// The permits a run holds until it has recorded its outcome (dropped in this order).
pub(super) struct Slots {
    _running: Option<RunningImport>,
    _global: Result<OwnedSemaphorePermit, AcquireError>,
    _destination: Result<OwnedSemaphorePermit, AcquireError>,
    _account: Result<OwnedSemaphorePermit, AcquireError>,
}

/// Acquire: the run's Freshteam account slot and destination slot first, the global slot
/// last (a run waiting for a busy account must not hold a slot that another tenant's run
/// could use), counted in the queue depth while it waits.
pub(super) async fn acquire(ctx: &Context, spec: &FreshteamIntegrationSpec) -> Slots {
    let waiting = ctx.waiting.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(m) = &ctx.metrics {
        m.set_queue_depth(waiting);
    }
    let account = ctx
        .slot(
            &format!("freshteam {}", account_key(spec)),
            ctx.config.max_imports_per_account,
        )
        .acquire_owned()
        .await;
    let destination_host = url::Url::parse(&spec.destination.scim.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let destination = ctx
        .slot(
            &format!("destination {destination_host}"),
            ctx.config.max_imports_per_destination,
        )
        .acquire_owned()
        .await;
    let global = ctx.slots.clone().acquire_owned().await;
    let waiting = ctx.waiting.fetch_sub(1, Ordering::Relaxed) - 1;
    if let Some(m) = &ctx.metrics {
        m.set_queue_depth(waiting);
    }
    Slots {
        _running: ctx.metrics.as_ref().map(|m| m.running_import()),
        _global: global,
        _destination: destination,
        _account: account,
    }
}
