//! `kubectl-freshteam`: the kubectl plugin (`kubectl freshteam …` once on PATH).

use std::process::ExitCode;

fn main() -> ExitCode {
    freshteam_operator::plugin::main()
}
