//! `kubectl-freshteam`: a kubectl plugin to start an import now and follow it, and to
//! read history, error reports, previews and status. The binary in
//! `src/bin/kubectl-freshteam.rs` calls [`main`]; the commands live in [`commands`] and
//! take a `kube::Client`, so tests drive them against an in-process API.

pub(crate) mod commands;
pub(crate) mod format;
pub(crate) mod view;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub use commands::{HistoryFormat, ImportNowOptions, Output, Plugin};
pub use view::{FollowView, SilentView, TerminalView};

use crate::exit;

/// Start Freshteam imports now and follow them; read import history, error reports,
/// previews and status of FreshteamIntegrations.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl-freshteam",
    bin_name = "kubectl freshteam",
    version,
    about
)]
pub struct Cli {
    /// Namespace of the integration or run (default: the context's namespace, else
    /// "default").
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else the
    /// in-cluster service account).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start an import now and follow it to its end (a preview if unpublished). Exits 0
    /// Succeeded, 3 PartiallySucceeded, 1 Failed/Interrupted/Blocked or timeout.
    ImportNow {
        /// The FreshteamIntegration.
        name: String,
        /// Stop following after this long (e.g. 90s, 30m, 1h); the run goes on.
        #[arg(long, default_value = "30m", value_parser = format::parse_duration)]
        timeout: Duration,
        /// Only request the import; do not wait for it.
        #[arg(long)]
        no_follow: bool,
    },
    /// Provision one employee now (an OnDemand ImportRun): follow it and print each
    /// step (found in Freshteam, in scope, mapped values, the account matched, the
    /// action, the destination's answer, the invitation). Exits as import-now.
    Provision {
        /// The FreshteamIntegration.
        name: String,
        /// The employee's Employee ID.
        employee_id: String,
        /// Write nothing: what would happen (the only kind an unpublished integration
        /// runs).
        #[arg(long)]
        dry_run: bool,
        /// Stop following after this long (e.g. 90s, 30m); the run goes on.
        #[arg(long, default_value = "10m", value_parser = format::parse_duration)]
        timeout: Duration,
    },
    /// What the kept runs did to one member, oldest first (from their reports), and how
    /// far back the kept history goes.
    Member {
        /// The FreshteamIntegration.
        name: String,
        /// The employee's Employee ID.
        employee_id: String,
    },
    /// The integration's ImportRuns, newest first.
    History {
        /// The FreshteamIntegration.
        name: String,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = HistoryFormat::Table)]
        output: HistoryFormat,
    },
    /// Write an ImportRun's error report (CSV) to a file or stdout.
    Errors {
        /// The ImportRun.
        run: String,
        /// Write to FILE instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// What an import would do (status.preview), and how to publish.
    Preview {
        /// The FreshteamIntegration.
        name: String,
    },
    /// Conditions, last and next import, published and suspended.
    Status {
        /// The FreshteamIntegration.
        name: String,
    },
}

/// Why no Kubernetes client could be built from the flags.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("--kubeconfig {path}: {reason}")]
    File { path: String, reason: String },
    #[error("--context {context}: {reason}")]
    Context { context: String, reason: String },
    #[error("no Kubernetes configuration: {0}")]
    Missing(String),
    #[error("cannot build a client: {0}")]
    Client(String),
}

/// A client for the kubeconfig and context the flags name, and the namespace to use.
pub async fn connect(cli: &Cli) -> Result<(Client, String), KubeconfigError> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&cli.kubeconfig, &cli.context) {
        (Some(path), _) => {
            let file = |e: &dyn std::fmt::Display| KubeconfigError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            };
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| file(&e))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| file(&e))?
        }
        (None, Some(context)) => {
            Config::from_kubeconfig(&options)
                .await
                .map_err(|e| KubeconfigError::Context {
                    context: context.clone(),
                    reason: e.to_string(),
                })?
        }
        // No flag: kubeconfig as kubectl finds it, else in-cluster.
        (None, None) => Config::infer()
            .await
            .map_err(|e| KubeconfigError::Missing(e.to_string()))?,
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| KubeconfigError::Client(e.to_string()))?;
    Ok((client, namespace))
}

/// Runs one parsed command.
pub async fn run(plugin: &Plugin, command: &Command, view: &dyn FollowView) -> Output {
    match command {
        Command::ImportNow {
            name,
            timeout,
            no_follow,
        } => {
            let options = ImportNowOptions {
                timeout: *timeout,
                follow: !no_follow,
            };
            plugin.import_now(name, &options, view).await
        }
        Command::Provision {
            name,
            employee_id,
            dry_run,
            timeout,
        } => {
            plugin
                .provision(name, employee_id, *dry_run, *timeout, view)
                .await
        }
        Command::Member { name, employee_id } => plugin.member(name, employee_id).await,
        Command::History { name, output } => plugin.history(name, *output).await,
        Command::Errors { run, file } => plugin.errors(run, file.as_deref()).await,
        Command::Preview { name } => plugin.preview(name).await,
        Command::Status { name } => plugin.status(name).await,
    }
}

/// Entry point of the `kubectl-freshteam` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Two rustls providers can be linked (test builds add aws-lc-rs); choose the one
    // kube and reqwest are configured for. An error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let output = runtime.block_on(async {
        match connect(&cli).await {
            Ok((client, namespace)) => {
                let plugin = Plugin::new(client, namespace);
                run(&plugin, &cli.command, &TerminalView::new()).await
            }
            Err(e) => Output {
                code: exit::INVALID_INPUT,
                stdout: String::new(),
                stderr: format!("error: {e}\n"),
            },
        }
    });
    print!("{}", output.stdout);
    eprint!("{}", output.stderr);
    ExitCode::from(output.code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_like_kubectl() {
        let cli = Cli::try_parse_from([
            "kubectl-freshteam",
            "import-now",
            "acme",
            "-n",
            "hr",
            "--context",
            "prod",
            "--timeout",
            "90s",
        ])
        .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("hr"));
        assert_eq!(cli.context.as_deref(), Some("prod"));
        match cli.command {
            Command::ImportNow {
                name,
                timeout,
                no_follow,
            } => {
                assert_eq!(name, "acme");
                assert_eq!(timeout, Duration::from_secs(90));
                assert!(!no_follow);
            }
            other => panic!("{other:?}"),
        }

        let cli =
            Cli::try_parse_from(["kubectl-freshteam", "errors", "run-1", "-o", "r.csv"]).unwrap();
        assert!(
            matches!(cli.command, Command::Errors { ref run, ref file } if run == "run-1" && file.as_deref() == Some(std::path::Path::new("r.csv")))
        );
        let cli =
            Cli::try_parse_from(["kubectl-freshteam", "history", "acme", "-o", "yaml"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::History {
                output: HistoryFormat::Yaml,
                ..
            }
        ));
        // Usage errors exit 2, as clap reports them.
        let e = Cli::try_parse_from([
            "kubectl-freshteam",
            "import-now",
            "acme",
            "--timeout",
            "soon",
        ])
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
