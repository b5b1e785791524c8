//! `freshteam-simulator`: serves a Freshteam API simulator until Ctrl-C or SIGTERM (for
//! the demo, tests and benchmarks; see the crate's doc).

use std::process::ExitCode;

use clap::Parser;
use freshteam_simulator::SimulateArgs;

/// Serve a Freshteam API simulator (for demos, tests and benchmarks).
#[derive(Parser, Debug)]
#[command(name = "freshteam-simulator", version, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging("info");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(freshteam_simulator::run(cli.args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default level.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
