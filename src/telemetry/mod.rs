//! Telemetry: Prometheus metrics, the `/metrics` `/healthz` `/readyz` server and
//! logging setup.

pub(crate) mod metrics;
pub(crate) mod server;
#[cfg(test)]
mod tests;

pub(crate) use metrics::{Metrics, RunningImport};
pub(crate) use server::{serve, Health};

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global logger, writing to stderr (stdout carries command output).
/// `RUST_LOG` overrides `default_level` (e.g. `info`, `freshteam_operator=debug`).
/// Does nothing if a logger is already installed, so tests may call it freely.
pub(crate) fn init_logging(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colour codes only help a person at a terminal; in a pod they litter the logs.
    let ansi = std::io::stderr().is_terminal();
    let _ = subscriber(format, filter, std::io::stderr, ansi).try_init();
}

fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        // Fields at the top level of each object, where log collectors index them.
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    }
}
