//! `steward run SYSTEM [--timeout SECONDS] [--env NAME=VALUE]... -- COMMAND [ARG]...`: runs a command on a
//! system through its agent, prints what it wrote to the matching streams, and exits with its exit code.

use std::io::Read;

use clap::Args;
use steward_types::api::systems::{CommandOutcome, DEFAULT_COMMAND_TIMEOUT_SECONDS, SystemCommand};

use super::{Context, Finished};
use crate::client::segment;
use crate::output::Format;

/// The exit code when the command was killed at its timeout (as `timeout(1)` uses).
pub const EXIT_TIMED_OUT: u8 = 124;

/// The exit code when the command could not be run at all (as `ssh` uses): so it is told apart from a command
/// that ran and failed.
pub const EXIT_NOT_RUN: u8 = 255;

/// The most input `--stdin` passes on: the API takes bodies of 1 MiB, JSON included.
const MAX_STDIN_BYTES: u64 = 512 * 1024;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The system: its name or ID.
    system: String,
    /// Kill the command (and everything it started) after this many seconds (1 to 86400).
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_COMMAND_TIMEOUT_SECONDS)]
    timeout: u32,
    /// Add a variable to the command's environment; `NAME` alone passes this shell's value on.
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    environment: Vec<String>,
    /// Give the command this file as its standard input (`-`: this command's standard input).
    #[arg(long, value_name = "FILE")]
    stdin: Option<std::path::PathBuf>,
    /// Run in this absolute directory on the system.
    #[arg(long, value_name = "DIR")]
    working_directory: Option<String>,
    /// Write the command's output here as it comes (instead of all at the end), without the 1 MiB cap.
    #[arg(long)]
    stream: bool,
    /// Run as this user of the system (implies --stream).
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// The program and its arguments, after `--`; no shell unless you name one (`-- sh -c '...'`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub async fn run(context: &Context, args: RunArgs) -> anyhow::Result<Finished> {
    let mut environment = std::collections::BTreeMap::new();
    for assignment in &args.environment {
        let (name, value) = match assignment.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => {
                let value = std::env::var(assignment).map_err(|_| {
                    anyhow::anyhow!("--env {assignment}: there is no such variable here; use --env NAME=VALUE")
                })?;
                (assignment.clone(), value)
            }
        };
        environment.insert(name, value);
    }
    let body = SystemCommand {
        argv: args.command,
        environment,
        stdin: args.stdin.as_deref().map(read_input).transpose()?,
        timeout_seconds: args.timeout,
        working_directory: args.working_directory,
    };
    // The server checks the same rules; checking here saves a round trip and names the flag.
    body.validate().map_err(|error| anyhow::anyhow!("{error}"))?;
    if args.stream || args.user.is_some() {
        return super::shell::run_streamed(context, &args.system, args.user.as_deref(), &body).await;
    }
    let outcome: CommandOutcome =
        context.client.post(&format!("/systems/{}/commands", segment(&args.system)), &body).await?;
    let mut finished = match context.format {
        Format::Json => Finished { stdout: crate::output::json(&outcome), ..Finished::default() },
        Format::Table => Finished { stdout: outcome.stdout.clone(), stderr: outcome.stderr.clone(), exit_code: 0 },
    };
    for (truncated, stream) in [(outcome.stdout_truncated, "output"), (outcome.stderr_truncated, "error output")] {
        if truncated {
            finished.stderr.push_str(&format!("steward: the command's {stream} was cut short (1 MiB is kept)\n"));
        }
    }
    finished.exit_code = if outcome.timed_out {
        finished.stderr.push_str(&format!(
            "steward: the command was still running after {} seconds and was killed\n",
            args.timeout
        ));
        EXIT_TIMED_OUT
    } else if let Some(signal) = outcome.signal {
        finished.stderr.push_str(&format!("steward: the command was killed by signal {signal}\n"));
        signal.checked_add(128).and_then(|code| u8::try_from(code).ok()).unwrap_or(EXIT_NOT_RUN)
    } else {
        outcome.exit_code.and_then(|code| u8::try_from(code).ok()).unwrap_or(EXIT_NOT_RUN)
    };
    Ok(finished)
}

/// The command's input: a file, or this command's standard input for `-`; bounded, and text.
fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    let name =
        if path == std::path::Path::new("-") { "standard input".to_string() } else { path.display().to_string() };
    let read = if path == std::path::Path::new("-") {
        std::io::stdin().lock().take(MAX_STDIN_BYTES + 1).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|file| file.take(MAX_STDIN_BYTES + 1).read_to_end(&mut bytes))
    };
    read.map_err(|error| anyhow::anyhow!("--stdin: cannot read {name}: {error}"))?;
    if bytes.len() as u64 > MAX_STDIN_BYTES {
        anyhow::bail!(
            "--stdin: {name} is larger than {} KiB, more than a command's input may be",
            MAX_STDIN_BYTES / 1024
        );
    }
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("--stdin: {name} is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    fn parse(args: &[&str]) -> Result<RunArgs, String> {
        let cli = Cli::try_parse_from([&["steward", "run"], args].concat()).map_err(|e| e.to_string())?;
        match cli.command {
            Command::Run(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn everything_after_the_system_and_the_flags_is_the_command() {
        let args = parse(&["web-1", "--timeout", "5", "-e", "A=1", "--env", "B=x=y", "--", "ls", "-l", "--all"])
            .expect("parses");
        assert_eq!(args.system, "web-1");
        assert_eq!(args.timeout, 5);
        assert_eq!(args.environment, ["A=1", "B=x=y"]);
        assert_eq!(args.command, ["ls", "-l", "--all"]);
        // Without `--` the command's own flags still belong to it once it started.
        let args = parse(&["web-1", "uname", "-a"]).expect("parses");
        assert_eq!(args.command, ["uname", "-a"]);
        assert_eq!(args.timeout, DEFAULT_COMMAND_TIMEOUT_SECONDS);
        assert!(parse(&["web-1"]).expect_err("no command").contains("COMMAND"));
        assert!(parse(&["web-1", "--timeout", "soon", "--", "true"]).expect_err("bad timeout").contains("soon"));
    }

    #[test]
    fn input_is_bounded_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = dir.path().join("small");
        std::fs::write(&small, "hello\n").expect("write");
        assert_eq!(read_input(&small).expect("reads"), "hello\n");
        let large = dir.path().join("large");
        std::fs::write(&large, vec![b'a'; MAX_STDIN_BYTES as usize + 1]).expect("write");
        assert!(read_input(&large).expect_err("too large").to_string().contains("larger than 512 KiB"));
        let binary = dir.path().join("binary");
        std::fs::write(&binary, b"\xff\xfe").expect("write");
        assert!(read_input(&binary).expect_err("not text").to_string().contains("not UTF-8"));
        let missing = read_input(&dir.path().join("missing")).expect_err("missing").to_string();
        assert!(missing.contains("cannot read"), "{missing}");
    }
}
