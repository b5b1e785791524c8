use std::process::ExitCode;

fn main() -> ExitCode {
    freshteam_operator::cli::main()
}
