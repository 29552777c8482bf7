//! `steward audit list`.

use clap::Subcommand;
use steward_types::api::audit::{AuditOutcome, AuditRecord};

use super::Context;
use crate::output::{Format, Table, json};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit records, newest first.
    List {
        /// Only records by this user.
        #[arg(long)]
        actor: Option<String>,
        /// Only actions starting with this, for example `group.` or `system.delete`.
        #[arg(long)]
        action: Option<String>,
        /// At most this many records.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

pub async fn run(context: &Context, command: AuditCommand) -> anyhow::Result<String> {
    let AuditCommand::List { actor, action, limit } = command;
    let mut query = Vec::new();
    if let Some(actor) = actor {
        query.push(("actor", actor));
    }
    if let Some(action) = action {
        query.push(("action", action));
    }
    let records: Vec<AuditRecord> = context.client.list_all("/audit", &query, Some(limit)).await?;
    Ok(match context.format {
        Format::Json => json(&records),
        Format::Table => {
            let mut table = Table::new(&["ID", "AT", "ACTOR", "ACTION", "TARGET", "OUTCOME"]);
            for record in &records {
                let outcome = match record.outcome {
                    AuditOutcome::Success => "success".to_string(),
                    AuditOutcome::Failure => format!(
                        "failure: {}",
                        record.details.pointer("/error/message").and_then(|m| m.as_str()).unwrap_or("")
                    ),
                };
                table.row(vec![
                    record.id.to_string(),
                    record.at.to_string(),
                    record.actor.clone(),
                    record.action.clone(),
                    record.target.clone(),
                    outcome,
                ]);
            }
            table.render()
        }
    })
}
