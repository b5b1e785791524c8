//! The `freshteam-simulator` command line: a standalone simulator for demos and scripts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::{SimConfig, Simulator};

/// Runs a Freshteam API simulator until Ctrl-C or SIGTERM.
#[derive(Clone, clap::Args)]
pub struct SimulateArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 8081)]
    pub port: u16,
    /// Address to listen on (0.0.0.0 to reach it from other hosts or pods).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Generated employees.
    #[arg(long, default_value_t = 50)]
    pub employees: usize,
    /// Employees per list page.
    #[arg(long, default_value_t = 25)]
    pub page_size: usize,
    /// API key clients must send as `Authorization: Bearer <key>`.
    #[arg(
        long,
        env = "SIM_API_KEY",
        default_value = "sim-api-key",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub api_key: String,
    /// Seed for the generated employees.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Requests per window (unlimited when absent).
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Rate-limit window in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    pub window_ms: u64,
    /// Answer every Nth API request with 503.
    #[arg(long)]
    pub fail_every: Option<u32>,
    /// Delay added to every API response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// List everyone (leavers and drafts too) when the list has no filter, instead of
    /// current staff only as Freshteam documents it.
    #[arg(long)]
    pub permissive_list: bool,
}

/// The key is never printed.
impl std::fmt::Debug for SimulateArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulateArgs")
            .field("port", &self.port)
            .field("bind", &self.bind)
            .field("employees", &self.employees)
            .field("page_size", &self.page_size)
            .field("api_key", &"[redacted]")
            .field("seed", &self.seed)
            .field("rate_limit", &self.rate_limit)
            .field("window_ms", &self.window_ms)
            .field("fail_every", &self.fail_every)
            .field("latency_ms", &self.latency_ms)
            .field("permissive_list", &self.permissive_list)
            .finish()
    }
}

impl SimulateArgs {
    /// The simulator configuration these arguments describe.
    pub fn config(&self) -> SimConfig {
        SimConfig {
            employees: self.employees,
            page_size: self.page_size.max(1),
            api_key: self.api_key.clone(),
            seed: self.seed,
            rate_limit: self.rate_limit,
            window: Duration::from_millis(self.window_ms.max(1)),
            latency: Duration::from_millis(self.latency_ms),
            fail_every: self.fail_every,
            list_mode: if self.permissive_list {
                super::ListMode::Permissive
            } else {
                super::ListMode::Documented
            },
            ..SimConfig::default()
        }
    }
}

/// Starts the simulator, prints where it listens (never the key) and serves until
/// Ctrl-C or SIGTERM.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let config = args.config();
    let sim = Simulator::start_on(config.clone(), SocketAddr::new(args.bind, args.port))
        .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}", args.bind, args.port))?;
    let shown = if args.bind.is_unspecified() {
        format!("http://127.0.0.1:{}/api", sim.addr().port())
    } else {
        sim.base_url()
    };
    let limit = match config.rate_limit {
        Some(n) => format!(", {n} requests per {} ms", args.window_ms),
        None => String::new(),
    };
    eprintln!(
        "Freshteam simulator: {} employees at {shown} (page size {}{limit})",
        config.employees, config.page_size
    );
    wait_for_stop().await?;
    sim.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_stop() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_stop() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await?;
    Ok(())
}
