//! `steward events list`.

use clap::Subcommand;
use steward_types::api::events::Event;

use super::Context;
use crate::output::{Format, Table, json, label};

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List events, newest first.
    List {
        /// Only events of this type, for example `complex.deviation`.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Only events about this source (a complex's name, for example).
        #[arg(long)]
        source: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

pub async fn run(context: &Context, command: EventsCommand) -> anyhow::Result<String> {
    let EventsCommand::List { event_type, source, limit } = command;
    let mut query = Vec::new();
    if let Some(event_type) = event_type {
        query.push(("type", event_type));
    }
    if let Some(source) = source {
        query.push(("source", source));
    }
    let events: Vec<Event> = context.client.list_all("/events", &query, Some(limit)).await?;
    Ok(match context.format {
        Format::Json => json(&events),
        Format::Table => {
            let mut table = Table::new(&["AT", "TYPE", "SEVERITY", "SOURCE", "MESSAGE"]);
            for event in &events {
                table.row(vec![
                    event.created_at.to_string(),
                    event.event_type.clone(),
                    label(&event.severity),
                    format!("{} {}", event.source_kind, event.source),
                    event.message.clone(),
                ]);
            }
            table.render()
        }
    })
}
