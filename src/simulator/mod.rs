//! A protocol-faithful Freshteam API simulator for tests, benchmarks and the demo.

/// Options of `freshteam-operator simulate`.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {}

pub async fn run(_args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
