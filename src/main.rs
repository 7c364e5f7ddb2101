//! The `op25b` binary: parses arguments and hands over to `cli`.
#![warn(clippy::too_many_lines)]
use clap::Parser;

mod cli;

fn main() -> std::process::ExitCode {
    match cli::Cli::try_parse() {
        Ok(c) => cli::run(c),
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `op25b` alone: the help, and a failing exit.
            let _ = e.print();
            std::process::ExitCode::from(cli::exit::USAGE)
        }
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            // One line: what is wrong, and where to look.
            eprintln!(
                "{} (see `op25b --help`, or `op25b <command> --help`)",
                op25b::control::daemon::stdout::clap_error_line(&e)
            );
            std::process::ExitCode::from(cli::exit::USAGE)
        }
    }
}
