//! Waiting for an operation to finish: polling `GET /operations/{id}`, a one-line progress bar on a terminal,
//! and turning the end state into the finished operation or one readable error line.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use steward_types::api::operations::{Operation, OperationState, StepState};

use crate::client::{Client, ClientError};

/// How often the operation is polled while it runs.
const POLL_INTERVAL: Duration = Duration::from_millis(300);

/// How many cells the bar has.
const BAR_WIDTH: u32 = 20;

/// An operation that ended without succeeding; its message is the line the CLI prints.
#[derive(Debug, thiserror::Error)]
#[error("{}", failure_line(.0))]
pub struct OperationFailed(pub Box<Operation>);

/// How long a wait goes on while the server cannot be reached (it may be restarting).
const UNREACHABLE_PATIENCE: Duration = Duration::from_secs(60);

/// Polls `operation` until it finishes, redrawing a progress bar on stderr when stderr is a terminal.
/// Returns the succeeded operation, or an [`OperationFailed`] error when it failed.
pub async fn wait(client: &Client, operation: Operation) -> anyhow::Result<Operation> {
    let mut bar = Bar::new(std::io::stderr().is_terminal());
    let mut operation = operation;
    let id = operation.id.to_string();
    // One Ctrl-C listener for the whole wait, raced against the sleep and the request alike: Ctrl-C stops the
    // waiting (not the operation, which the server carries on with), even while the server does not answer.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut unreachable_since: Option<std::time::Instant> = None;
    loop {
        bar.draw(&operation);
        if operation.state.is_finished() {
            break;
        }
        let poll = async {
            tokio::time::sleep(POLL_INTERVAL).await;
            client.operation(&id).await
        };
        let answer = tokio::select! {
            answer = poll => answer,
            _ = &mut interrupted => {
                bar.finish();
                anyhow::bail!("stopped waiting; operation {id} goes on (follow it with `steward operations wait {id}`)");
            }
        };
        match answer {
            Ok(fresh) => {
                operation = fresh;
                unreachable_since = None;
            }
            // Operations survive a server restart, so the wait survives a short absence of the server too.
            Err(ClientError::Unreachable { .. })
                if unreachable_since.get_or_insert_with(std::time::Instant::now).elapsed() < UNREACHABLE_PATIENCE => {}
            Err(error) => {
                bar.finish();
                return Err(anyhow::Error::new(error)
                    .context(format!("operation {id} goes on; follow it with `steward operations wait {id}`")));
            }
        }
    }
    bar.finish();
    if operation.state == OperationState::Succeeded {
        Ok(operation)
    } else {
        Err(OperationFailed(Box::new(operation)).into())
    }
}

/// The bar on stderr, or nothing when stderr is not a terminal.
struct Bar {
    enabled: bool,
    last: String,
}

impl Bar {
    fn new(enabled: bool) -> Self {
        Self { enabled, last: String::new() }
    }

    fn draw(&mut self, operation: &Operation) {
        if !self.enabled {
            return;
        }
        let line = progress_line(operation);
        if line == self.last {
            return;
        }
        // `\r` returns to the line's start and `ESC [ K` erases what a longer previous line left behind.
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r{line}\x1b[K");
        let _ = stderr.flush();
        self.last = line;
    }

    fn finish(&mut self) {
        if self.enabled && !self.last.is_empty() {
            let _ = writeln!(std::io::stderr().lock());
        }
    }
}

/// `[##########----------] 3/6 create_disks`: steps done out of all, and what runs now.
pub fn progress_line(operation: &Operation) -> String {
    let total = operation.progress_total;
    let done = operation.progress_done.min(total);
    let filled = (u64::from(done) * u64::from(BAR_WIDTH)).checked_div(u64::from(total)).unwrap_or(0) as usize;
    let mut line = format!("[{}{}] {done}/{total}", "#".repeat(filled), "-".repeat(BAR_WIDTH as usize - filled));
    let current = match operation.state {
        OperationState::Unwinding => operation
            .steps
            .iter()
            .rev()
            .find(|step| step.state == StepState::Undoing)
            .map(|step| format!("undoing {}", step.name))
            .or_else(|| Some("undoing".to_string())),
        OperationState::Running => operation
            .steps
            .iter()
            .find(|step| step.state == StepState::Running)
            .or_else(|| operation.steps.iter().find(|step| step.state == StepState::Pending))
            .map(|step| step.name.clone()),
        state => Some(state.as_str().to_string()),
    };
    if let Some(current) = current {
        line.push(' ');
        line.push_str(&current);
    }
    crate::output::printable(&line)
}

/// The step an operation failed at: the step marked failed, else the one the error names, else `unknown`.
pub fn failed_step(operation: &Operation) -> String {
    if let Some(step) = operation.steps.iter().find(|step| step.state == StepState::Failed) {
        return step.name.clone();
    }
    operation
        .error
        .as_ref()
        .and_then(|error| error.details.get("step"))
        .and_then(|step| step.as_str())
        .unwrap_or("unknown")
        .to_string()
}

/// `virtual_server_deploy failed at step create_disks: <message>; ...what became of its changes`.
pub fn failure_line(operation: &Operation) -> String {
    let message = operation.error.as_ref().map_or("no reason was given", |error| error.message.as_str());
    let aftermath = match operation.state {
        OperationState::Failed => "; the changes it made were undone".to_string(),
        OperationState::UnwindFailed => format!(
            "; undoing its changes failed too (the server retries at its next start; see `steward operations show {}`)",
            operation.id
        ),
        _ => String::new(),
    };
    crate::output::printable(&format!(
        "{} failed at step {}: {message}{aftermath}",
        operation.kind,
        failed_step(operation)
    ))
}

#[cfg(test)]
mod tests {
    use steward_types::api::Timestamp;
    use steward_types::api::operations::OperationStep;
    use steward_types::ids::OperationId;
    use steward_types::{ErrorBody, ErrorCode};

    use super::*;

    fn step(name: &str, state: StepState) -> OperationStep {
        OperationStep { name: name.into(), state, started_at: None, finished_at: None, detail: None }
    }

    fn operation(state: OperationState, steps: Vec<OperationStep>, error: Option<&str>) -> Operation {
        let done = steps.iter().filter(|step| step.state == StepState::Done).count() as u32;
        Operation {
            id: OperationId::new(),
            kind: "virtual_server_deploy".into(),
            target_kind: "virtual_server".into(),
            target: "web1".into(),
            state,
            progress_done: done,
            progress_total: steps.len() as u32,
            steps,
            error: error.map(|message| ErrorBody {
                code: ErrorCode::Internal,
                message: message.into(),
                details: serde_json::json!({}),
            }),
            created_by: "admin".into(),
            created_at: Timestamp(0),
            finished_at: None,
            parent: None,
        }
    }

    #[test]
    fn the_bar_shows_steps_done_and_the_running_step() {
        let running = operation(
            OperationState::Running,
            vec![
                step("check", StepState::Done),
                step("clone_disk", StepState::Done),
                step("write_config_drive", StepState::Running),
                step("start", StepState::Pending),
            ],
            None,
        );
        assert_eq!(progress_line(&running), "[##########----------] 2/4 write_config_drive");
        let unwinding = operation(
            OperationState::Unwinding,
            vec![step("check", StepState::Done), step("clone_disk", StepState::Undoing), step("x", StepState::Failed)],
            None,
        );
        assert_eq!(progress_line(&unwinding), "[######--------------] 1/3 undoing clone_disk");
        let empty = operation(OperationState::Succeeded, vec![], None);
        assert_eq!(progress_line(&empty), "[--------------------] 0/0 succeeded");
    }

    #[test]
    fn a_failure_names_the_kind_the_step_the_reason_and_the_undo() {
        let failed = operation(
            OperationState::Failed,
            vec![step("check", StepState::Undone), step("clone_disk", StepState::Failed)],
            Some("no space left on device"),
        );
        assert_eq!(
            failure_line(&failed),
            "virtual_server_deploy failed at step clone_disk: no space left on device; the changes it made were undone"
        );
        let mut unwind_failed = failed.clone();
        unwind_failed.state = OperationState::UnwindFailed;
        let line = failure_line(&unwind_failed);
        assert!(line.contains("undoing its changes failed too"), "{line}");
        assert!(line.contains(&unwind_failed.id.to_string()), "{line}");
        assert!(!line.contains('\n'));

        let mut unnamed = operation(OperationState::Failed, vec![], None);
        unnamed.error = Some(ErrorBody {
            code: ErrorCode::Internal,
            message: "boom".into(),
            details: serde_json::json!({"step": "start"}),
        });
        assert!(failure_line(&unnamed).starts_with("virtual_server_deploy failed at step start: boom"));
    }
}
