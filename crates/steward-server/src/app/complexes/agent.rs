//! What complexes ask of a member's agent: its inventory now (the guest layer of the consistency check), shell
//! commands (apply), and waiting until a new member's first boot reported every script's result.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use steward_protocol::inventory::Inventory;
use steward_protocol::request::{AgentRequest, AgentResponse, CommandOutcome, CommandRequest};
use steward_types::SystemId;

use crate::state::AppState;

/// How long one inventory collection may take.
pub const INVENTORY_TIMEOUT: Duration = Duration::from_secs(30);

/// The guest's inventory, collected now; the error says why there is none (offline, timed out ...).
pub async fn collect_inventory(state: &AppState, system: SystemId) -> Result<Inventory, String> {
    match state.agents.request(system, AgentRequest::CollectInventory, INVENTORY_TIMEOUT).await {
        Ok(AgentResponse::Inventory(inventory)) => Ok(*inventory),
        Ok(AgentResponse::Error { message }) => Err(format!("the agent failed to collect its inventory: {message}")),
        Ok(_) => Err("the agent answered an inventory request with something else".to_owned()),
        Err(error) => Err(crate::error_chain(&error)),
    }
}

/// Runs a shell script in the guest (`/bin/sh -c`), with `stdin` and `environment`; the error names why it
/// did not run or what it printed when it failed.
pub async fn run_shell(
    state: &AppState,
    system: SystemId,
    script: &str,
    stdin: Option<String>,
    environment: BTreeMap<String, String>,
    timeout_seconds: u32,
) -> Result<CommandOutcome, String> {
    let request = AgentRequest::RunCommand(CommandRequest {
        argv: vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()],
        environment,
        stdin,
        timeout_seconds,
        working_directory: None,
    });
    let wait = Duration::from_secs(u64::from(timeout_seconds) + 10);
    match state.agents.request(system, request, wait).await {
        Ok(AgentResponse::Command(outcome)) => {
            if outcome.exit_code == Some(0) {
                Ok(outcome)
            } else {
                let status = match (outcome.exit_code, outcome.signal, outcome.timed_out) {
                    (_, _, true) => format!("timed out after {timeout_seconds} s"),
                    (Some(code), _, _) => format!("exited with {code}"),
                    (None, Some(signal), _) => format!("was killed by signal {signal}"),
                    (None, None, _) => "ended without a status".to_owned(),
                };
                let output = format!("{}{}", outcome.stderr.trim(), outcome.stdout.trim());
                Err(format!("{status}: {}", truncate(&output, 400)))
            }
        }
        Ok(AgentResponse::Error { message }) => Err(message),
        Ok(_) => Err("the agent answered a command with something else".to_owned()),
        Err(error) => Err(crate::error_chain(&error)),
    }
}

fn truncate(text: &str, limit: usize) -> &str {
    match text.char_indices().nth(limit) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Waits until the agent answers and reports a result for every one of `scripts`; fails at once when one
/// failed, or when `wait` passes.
pub async fn await_personalization(
    state: &AppState,
    system: SystemId,
    scripts: &[String],
    wait: Duration,
) -> Result<String, String> {
    let started = Instant::now();
    let mut last = "the agent has not answered yet".to_owned();
    while started.elapsed() < wait {
        match collect_inventory(state, system).await {
            Ok(inventory) => {
                let mut reported = Vec::new();
                let mut missing = Vec::new();
                for script in scripts {
                    match inventory.personalization.iter().find(|result| &result.name == script) {
                        Some(result) if result.exit_code != 0 => {
                            return Err(format!("personalization script {script} exited with {}", result.exit_code));
                        }
                        Some(_) => reported.push(script.as_str()),
                        None => missing.push(script.as_str()),
                    }
                }
                if missing.is_empty() {
                    let seconds = started.elapsed().as_secs_f64();
                    return Ok(if scripts.is_empty() {
                        format!("agent answered after {seconds:.1} s")
                    } else {
                        format!("{} succeeded; agent answered after {seconds:.1} s", reported.join(", "))
                    });
                }
                last = format!("no result yet for {}", missing.join(", "));
            }
            Err(error) => last = error,
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Err(format!("no complete report from the agent within {} s ({last})", wait.as_secs()))
}
