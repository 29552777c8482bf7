//! `steward operations ...`, and what every command that starts an operation shares: `--no-wait`, and waiting
//! with a progress bar until the operation ends.

use clap::{Args, Subcommand};
use steward_types::api::operations::{Operation, OperationState};

use super::Context;
use crate::output::{Format, Table, fields, json, optional};
use crate::progress;

#[derive(Debug, Subcommand)]
pub enum OperationsCommand {
    /// List operations, newest first.
    List {
        /// Only operations in this state: running, succeeded, unwinding, failed or unwind_failed.
        #[arg(long, value_parser = parse_state)]
        state: Option<OperationState>,
        /// At most this many operations.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show an operation with its steps.
    Show { id: String },
    /// Wait for an operation to end, showing its progress; fails if the operation failed.
    Wait { id: String },
}

/// The flag of every command that starts an operation.
#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArgs {
    /// Print the operation's ID and return at once instead of waiting for it.
    #[arg(long)]
    pub no_wait: bool,
}

/// What became of a started operation.
pub enum Outcome {
    /// `--no-wait`: the text to print (the operation's ID, or the operation as JSON).
    Detached(String),
    /// It ran to success.
    Finished,
}

fn parse_state(text: &str) -> Result<OperationState, String> {
    OperationState::parse(text).ok_or_else(|| {
        format!("{text:?} is not an operation state: use running, succeeded, unwinding, failed or unwind_failed")
    })
}

/// Waits for `operation` unless `--no-wait` was given. A failed operation is an error whose line says at which
/// step it failed and why.
pub async fn follow(context: &Context, operation: Operation, wait: WaitArgs) -> anyhow::Result<Outcome> {
    if wait.no_wait {
        return Ok(Outcome::Detached(match context.format {
            Format::Json => json(&operation),
            Format::Table => {
                eprintln!(
                    "Started {} of {} {} as operation {}; follow it with `steward operations wait {}`.",
                    operation.kind,
                    operation.target_kind.replace('_', " "),
                    operation.target,
                    operation.id,
                    operation.id
                );
                format!("{}\n", operation.id)
            }
        }));
    }
    progress::wait(&context.client, operation).await?;
    Ok(Outcome::Finished)
}

pub async fn run(context: &Context, command: OperationsCommand) -> anyhow::Result<String> {
    let client = &context.client;
    match command {
        OperationsCommand::List { state, limit } => {
            let query: Vec<(&str, String)> =
                state.map(|state| vec![("state", state.as_str().to_string())]).unwrap_or_default();
            let operations: Vec<Operation> = client.list_all("/operations", &query, Some(limit)).await?;
            Ok(match context.format {
                Format::Json => json(&operations),
                Format::Table => {
                    let mut table = Table::new(&["ID", "KIND", "TARGET", "STATE", "PROGRESS", "BY", "CREATED"]);
                    for operation in &operations {
                        table.row(vec![
                            operation.id.to_string(),
                            operation.kind.clone(),
                            format!("{} {}", operation.target_kind, operation.target),
                            operation.state.as_str().into(),
                            format!("{}/{}", operation.progress_done, operation.progress_total),
                            operation.created_by.clone(),
                            operation.created_at.to_string(),
                        ]);
                    }
                    table.render()
                }
            })
        }
        OperationsCommand::Show { id } => {
            let operation = client.operation(&id).await?;
            Ok(render_operation(context, &operation))
        }
        OperationsCommand::Wait { id } => {
            let operation = client.operation(&id).await?;
            let operation = progress::wait(client, operation).await?;
            Ok(render_operation(context, &operation))
        }
    }
}

/// An operation as key/value lines followed by its steps.
pub fn render_operation(context: &Context, operation: &Operation) -> String {
    if context.format == Format::Json {
        return json(operation);
    }
    let mut pairs = vec![
        ("ID", operation.id.to_string()),
        ("Kind", operation.kind.clone()),
        ("Target", format!("{} {}", operation.target_kind, operation.target)),
        ("State", operation.state.as_str().to_string()),
        ("Progress", format!("{}/{}", operation.progress_done, operation.progress_total)),
        ("Created by", operation.created_by.clone()),
        ("Created", operation.created_at.to_string()),
        ("Finished", optional(&operation.finished_at)),
    ];
    if let Some(error) = &operation.error {
        pairs.push(("Error", format!("{} (at step {})", error.message, progress::failed_step(operation))));
    }
    let mut out = fields(&pairs);
    out.push_str("\nSteps:\n");
    let mut table = Table::new(&["STEP", "STATE", "STARTED", "FINISHED", "DETAIL"]);
    for step in &operation.steps {
        table.row(vec![
            step.name.clone(),
            step.state.as_str().into(),
            optional(&step.started_at),
            optional(&step.finished_at),
            step.detail.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out.push_str(&table.render());
    out
}
