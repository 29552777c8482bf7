//! `steward network show SYSTEM`: a system's interfaces, routes and DNS resolvers, as its agent reads them now
//! (read-only).

use clap::Subcommand;
use steward_types::api::system_admin::NetworkConfiguration;

use super::Context;
use crate::client::segment;
use crate::output::{Format, Table, fields, json};

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Show a system's network configuration: interfaces, routes, DNS.
    Show { system: String },
}

pub async fn run(context: &Context, command: NetworkCommand) -> anyhow::Result<String> {
    let NetworkCommand::Show { system } = command;
    let configuration: NetworkConfiguration =
        context.client.get(&format!("/systems/{}/network", segment(&system)), &[]).await?;
    Ok(match context.format {
        Format::Json => json(&configuration),
        Format::Table => render(&configuration),
    })
}

fn render(configuration: &NetworkConfiguration) -> String {
    let mut out = String::from("Interfaces:\n");
    let mut table = Table::new(&["NAME", "STATE", "MAC", "MTU", "ADDRESSES"]);
    for interface in &configuration.interfaces {
        table.row(vec![
            interface.name.clone(),
            interface.state.clone(),
            if interface.mac.is_empty() { "-".into() } else { interface.mac.clone() },
            interface.mtu.to_string(),
            if interface.addresses.is_empty() { "-".into() } else { interface.addresses.join(" ") },
        ]);
    }
    out.push_str(&table.render());
    out.push_str("\nRoutes:\n");
    let mut table = Table::new(&["DESTINATION", "GATEWAY", "INTERFACE", "METRIC"]);
    for route in &configuration.routes {
        table.row(vec![
            route.destination.clone(),
            route.gateway.clone().unwrap_or_else(|| "-".into()),
            route.interface.clone(),
            route.metric.to_string(),
        ]);
    }
    out.push_str(&table.render());
    out.push_str("\nDNS:\n");
    let list = |items: &[String]| if items.is_empty() { "-".to_string() } else { items.join(" ") };
    out.push_str(&fields(&[
        ("Nameservers", list(&configuration.dns.nameservers)),
        ("Search", list(&configuration.dns.search)),
    ]));
    out
}
