//! The `freshteam-operator` command line.

mod progress;
pub(crate) mod sync;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Provisions rewards-platform members (SCIM 2.0) from a Freshteam HR directory.
#[derive(Parser, Debug)]
#[command(name = "freshteam-operator", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller: reconcile FreshteamIntegrations into scheduled imports
    /// (leader election, /metrics, /healthz, /readyz).
    Run(crate::controller::operator::RunArgs),
    /// Print the CustomResourceDefinitions as YAML (kubectl apply -f -).
    Crds,
    /// Run one import without a cluster, from a file holding the FreshteamIntegration and
    /// its Secrets.
    Sync(sync::SyncArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // One TLS provider for kube, reqwest and lettre, whatever else is linked in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => {
            print!("{}", crate::api::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Sync(args) => runtime().block_on(sync::run(args)),
        Command::Run(args) => match runtime().block_on(crate::controller::operator::run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Logs to stderr; `RUST_LOG` overrides the default level.
pub(crate) fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
