//! The progress ticker: the run's progress and waits patched, the integration watched.

use std::sync::Arc;

use super::objects::apply_run_status;
use crate::controller::status::RunProgress;
use kube::{Api, ResourceExt};
use tracing::Instrument;

use crate::api::{FreshteamIntegration, ImportRun};
use crate::controller::Context;
use crate::sync::ProgressCounter;

/// The integration a run belongs to, checked on every progress tick: once it is deleted
/// (or re-created under the same name) or suspended, the run is asked to stop.
pub(super) struct Watched {
    pub(super) integration: Arc<FreshteamIntegration>,
    pub(super) stop: crate::sync::StopSignal,
}

impl Watched {
    async fn check(&self, ctx: &Context) {
        let fti = &self.integration;
        let api: Api<FreshteamIntegration> =
            Api::namespaced(ctx.client.clone(), &fti.namespace().unwrap_or_default());
        let reason = match api.get_opt(&fti.name_any()).await {
            Ok(None) => Some("the integration was deleted"),
            Ok(Some(now)) if now.metadata.uid != fti.metadata.uid => {
                Some("the integration was deleted (and re-created)")
            }
            Ok(Some(now)) if now.metadata.deletion_timestamp.is_some() => {
                Some("the integration is being deleted")
            }
            Ok(Some(now)) if now.spec.suspend => Some("spec.suspend was set to true"),
            // An API hiccup is no reason to stop.
            _ => None,
        };
        if let Some(reason) = reason {
            self.stop.stop(reason);
        }
    }
}

/// The ticker of a run under way.
pub(super) struct Ticker {
    handle: tokio::task::JoinHandle<()>,
    done: tokio::sync::watch::Sender<bool>,
}

impl Ticker {
    /// Ends the ticker between two ticks and waits for it: no write of its can land
    /// after the run's outcome (an apply of `Running` would take the outcome back).
    pub(super) async fn stop(self) {
        let _ = self.done.send(true);
        let _ = self.handle.await;
    }
}

pub(super) fn spawn_progress_ticker(
    ctx: Arc<Context>,
    runs: Api<ImportRun>,
    name: String,
    progress: Arc<ProgressCounter>,
    watched: Watched,
    mut status: RunProgress,
) -> Ticker {
    let (done, mut stopped) = tokio::sync::watch::channel(false);
    // In the run's span: what it logs belongs to the run.
    let handle = tokio::spawn(
        async move {
            let mut written = status.clone();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(ctx.config.progress_interval) => {}
                    _ = stopped.changed() => return,
                }
                status.progress = Some(progress.snapshot());
                // While the run waits for the destination's rate limit, its message says
                // so and until when; cleared when it resumes.
                status.message = progress.waiting();
                if status != written {
                    let _ = apply_run_status(&runs, &name, &status).await;
                    written = status.clone();
                }
                watched.check(&ctx).await;
            }
        }
        .in_current_span(),
    );
    Ticker { handle, done }
}
