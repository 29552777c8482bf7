//! `steward groups ...`.

use clap::Subcommand;
use steward_types::api::groups::{Group, GroupCreate, GroupKind, GroupMembersChange, GroupUpdate};
use steward_types::api::systems::SystemSummary;

use super::Context;
use super::systems::system_table;
use crate::client::segment;
use crate::output::{Format, Table, fields, json};

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List groups.
    List,
    /// Create a group: static, or dynamic with --query (see docs/query-language.md).
    Create {
        name: String,
        /// Makes the group dynamic: its members are the systems matching this query.
        #[arg(long)]
        query: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Show a group.
    Show { group: String },
    /// Change a group's query or description.
    Update {
        group: String,
        #[arg(long)]
        query: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Add systems to a static group.
    Add {
        group: String,
        #[arg(required = true)]
        systems: Vec<String>,
    },
    /// Remove a system from a static group.
    Remove { group: String, system: String },
    /// List a group's members.
    Members { group: String },
    /// Delete a group (its systems stay).
    Delete { group: String },
}

fn render_group(context: &Context, group: &Group) -> String {
    match context.format {
        Format::Json => json(group),
        Format::Table => fields(&[
            ("Name", group.name.clone()),
            ("ID", group.id.to_string()),
            ("Kind", kind(group.kind).into()),
            ("Query", group.query.clone().unwrap_or_else(|| "-".into())),
            ("Members", group.member_count.to_string()),
            ("Description", group.description.clone()),
            ("Created", group.created_at.to_string()),
        ]),
    }
}

fn kind(kind: GroupKind) -> &'static str {
    match kind {
        GroupKind::Static => "static",
        GroupKind::Dynamic => "dynamic",
    }
}

pub async fn run(context: &Context, command: GroupsCommand) -> anyhow::Result<String> {
    let client = &context.client;
    let group: Group = match command {
        GroupsCommand::List => {
            let groups: Vec<Group> = client.list_all("/groups", &[], None).await?;
            return Ok(match context.format {
                Format::Json => json(&groups),
                Format::Table => {
                    let mut table = Table::new(&["NAME", "KIND", "MEMBERS", "QUERY"]);
                    for group in &groups {
                        table.row(vec![
                            group.name.clone(),
                            kind(group.kind).into(),
                            group.member_count.to_string(),
                            group.query.clone().unwrap_or_else(|| "-".into()),
                        ]);
                    }
                    table.render()
                }
            });
        }
        GroupsCommand::Create { name, query, description } => {
            client.post("/groups", &GroupCreate { name, query, description }).await?
        }
        GroupsCommand::Show { group } => client.get(&format!("/groups/{}", segment(&group)), &[]).await?,
        GroupsCommand::Update { group, query, description } => {
            client.patch(&format!("/groups/{}", segment(&group)), &GroupUpdate { query, description }).await?
        }
        GroupsCommand::Add { group, systems } => {
            client.post(&format!("/groups/{}/members", segment(&group)), &GroupMembersChange { systems }).await?
        }
        GroupsCommand::Remove { group, system } => {
            client.delete(&format!("/groups/{}/members/{}", segment(&group), segment(&system))).await?;
            return Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "removed": system, "group": group })),
                Format::Table => format!("Removed {system} from {group}.\n"),
            });
        }
        GroupsCommand::Members { group } => {
            let systems: Vec<SystemSummary> =
                client.list_all(&format!("/groups/{}/members", segment(&group)), &[], None).await?;
            return Ok(match context.format {
                Format::Json => json(&systems),
                Format::Table => system_table(&systems),
            });
        }
        GroupsCommand::Delete { group } => {
            client.delete(&format!("/groups/{}", segment(&group))).await?;
            return Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "deleted": group })),
                Format::Table => format!("Deleted group {group}.\n"),
            });
        }
    };
    Ok(render_group(context, &group))
}
