//! The `op25b` binary: parses arguments and hands over to `cli`.
use clap::Parser;

mod cli;
mod cli_bench;

fn main() -> std::process::ExitCode {
    cli::run(cli::Cli::parse())
}
