//! The operator's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::Metrics;

/// Content type of the OpenMetrics text exposition.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Readiness of the process, shared between the controller and `/readyz`.
///
/// The controller sets it ready once it has started, whether it holds the leader Lease
/// or stands by: readiness says "this replica can serve metrics and take over", and a
/// standby that reported not-ready would stall every rolling update of a replicated
/// Deployment. Leadership is visible in the Lease, not here.
#[derive(Clone, Debug)]
pub(crate) struct Health {
    state: Arc<RwLock<Readiness>>,
}

#[derive(Debug)]
struct Readiness {
    ready: bool,
    reason: String,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Not ready, reason "starting".
    pub(crate) fn new() -> Self {
        Health {
            state: Arc::new(RwLock::new(Readiness {
                ready: false,
                reason: "starting".to_string(),
            })),
        }
    }

    /// `reason` is shown by `/readyz` while not ready; keep it short and free of secrets.
    pub(crate) fn set_ready(&self, ready: bool, reason: impl Into<String>) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.ready = ready;
        state.reason = reason.into();
    }

    /// `Ok` when ready, otherwise the reason on one line. A `String` on purpose: it is
    /// the body of `/readyz`, read by people and probes, never by code.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        if state.ready {
            return Ok(());
        }
        // Probes and `kubectl describe` show the body as one line.
        let line = state
            .reason
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Err(if line.is_empty() {
            "not ready".to_string()
        } else {
            line
        })
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Health,
}

/// The routes, for embedding or for serving on a listener of one's own.
pub(crate) fn router(metrics: Metrics, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.health.readiness() {
        Ok(()) => (StatusCode::OK, "ok".to_string()).into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

/// Binds `addr` and returns the listener with the address actually bound (useful with
/// port 0).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves the endpoints on an already bound listener until `shutdown` completes.
pub(crate) async fn serve_listener(
    listener: TcpListener,
    metrics: Metrics,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `addr` and serves the endpoints until `shutdown` completes.
pub(crate) async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (listener, local) = bind(addr).await?;
    tracing::info!(address = %local, "serving /metrics, /healthz and /readyz");
    serve_listener(listener, metrics, health, shutdown).await
}
