//! `steward`: the server (`steward serve`) and the command-line client of its API (every other subcommand).
//!
//! The client reads the server URL and token from `--server`/`--token` or `STEWARD_SERVER`/`STEWARD_TOKEN`,
//! prints tables by default and JSON with `--output json`, and exits non-zero with one readable line on error.

mod client;
mod commands;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use crate::commands::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(finished) => {
            print!("{}", finished.stdout);
            eprint!("{}", finished.stderr);
            ExitCode::from(finished.exit_code)
        }
        Err(error) => {
            eprintln!("error: {}", commands::describe_error(&error));
            ExitCode::FAILURE
        }
    }
}
