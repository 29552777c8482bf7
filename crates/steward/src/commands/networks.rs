//! `steward networks ...`: isolated virtual networks on a host.

use clap::Subcommand;
use steward_types::api::networks::{Network, NetworkCreate};
use steward_types::validate;

use super::Context;
use crate::client::segment;
use crate::output::{Format, Table, fields, json, optional};

#[derive(Debug, Subcommand)]
pub enum NetworksCommand {
    /// Create a network on a host.
    Create {
        name: String,
        /// The host (name or ID) the network lives on.
        #[arg(long)]
        host: String,
        /// The subnet guest addresses must belong to, for example 10.77.0.0/24.
        #[arg(long, value_parser = subnet)]
        subnet: Option<String>,
        /// Free text saying what it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List networks.
    List,
    /// Show a network.
    Show { network: String },
    /// Delete a network (no NIC may be attached to it).
    Delete { network: String },
}

/// `--subnet`: a network address with its prefix, for example `10.77.0.0/24`.
pub fn subnet(text: &str) -> Result<String, String> {
    validate::cidr("--subnet", text).map(|_| text.to_string()).map_err(|error| error.reason)
}

pub async fn run(context: &Context, command: NetworksCommand) -> anyhow::Result<String> {
    let client = &context.client;
    let network: Network = match command {
        NetworksCommand::Create { name, host, subnet, description } => {
            validate::name("name", &name)?;
            client.post("/networks", &NetworkCreate { name, host, subnet, description }).await?
        }
        NetworksCommand::List => {
            let networks: Vec<Network> = client.list_all("/networks", &[], None).await?;
            return Ok(match context.format {
                Format::Json => json(&networks),
                Format::Table => {
                    let mut table = Table::new(&["NAME", "HOST", "SUBNET", "NICS", "DESCRIPTION"]);
                    for network in &networks {
                        table.row(vec![
                            network.name.clone(),
                            network.host.clone(),
                            optional(&network.subnet),
                            network.attached_nics.to_string(),
                            network.description.clone(),
                        ]);
                    }
                    table.render()
                }
            });
        }
        NetworksCommand::Show { network } => client.get(&format!("/networks/{}", segment(&network)), &[]).await?,
        NetworksCommand::Delete { network } => {
            client.delete(&format!("/networks/{}", segment(&network))).await?;
            return Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "deleted": network })),
                Format::Table => format!("Deleted network {network}.\n"),
            });
        }
    };
    Ok(match context.format {
        Format::Json => json(&network),
        Format::Table => fields(&[
            ("Name", network.name.clone()),
            ("ID", network.id.to_string()),
            ("Host", network.host.clone()),
            ("Subnet", optional(&network.subnet)),
            ("Attached NICs", network.attached_nics.to_string()),
            ("Description", network.description.clone()),
            ("Created", network.created_at.to_string()),
        ]),
    })
}
