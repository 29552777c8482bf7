//! Server complexes: a persistent desired state for a tiered group of guests. `definition` checks and resolves
//! what the user wrote; `member` turns a tier and a member's own values into the member's desired state (guest
//! definition, config drive, scripts); `check` compares that with reality in both layers; `agent` is what is
//! asked of a member's agent; `reconciler` checks complexes in the background and records events.
//!
//! **Adopted values**: `complexes adopt` takes a member's actual value into the desired state of that member
//! alone (`complex_members.adopted`, property -> value): a number or name for scalar properties (`cpu_share`,
//! `hostname`, `running` ...), `not enforced` for presence properties (`nic:NET`, `disk:PATH`, `mount:PATH`,
//! `address:NET`, `script:NAME`).

pub mod agent;
pub mod check;
pub mod definition;
pub mod member;
pub mod plan;
pub mod reconciler;

use steward_store::complexes::{ComplexRecord, MemberRecord};
use steward_store::hosts::HostRecord;

use self::definition::ResolvedTier;
use self::member::Desired;
use crate::api::hosts::find_host;
use crate::app::hosts::Driver;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The value an adopted presence property holds.
pub const NOT_ENFORCED: &str = "not enforced";

/// A complex with everything its operations need: host, driver, resolved tiers and members.
pub struct Context {
    pub complex: ComplexRecord,
    pub host: HostRecord,
    pub driver: Driver,
    pub tiers: Vec<ResolvedTier>,
    pub members: Vec<MemberRecord>,
}

pub async fn find_complex(conn: &mut steward_store::Conn, id_or_name: &str) -> ApiResult<ComplexRecord> {
    steward_store::complexes::get(conn, id_or_name).await?.ok_or_else(|| ApiError::not_found("complex", id_or_name))
}

impl Context {
    pub async fn load(state: &AppState, conn: &mut steward_store::Conn, id_or_name: &str) -> ApiResult<Context> {
        let complex = find_complex(conn, id_or_name).await?;
        let (host, driver) = find_host(state, conn, &complex.host.to_string()).await?;
        let tiers =
            definition::resolve(conn, &complex.name, &host.name, &driver.capabilities(), None, &complex.definition)
                .await?;
        let members = steward_store::complexes::members(conn, complex.id).await?;
        Ok(Context { complex, host, driver, tiers, members })
    }

    pub fn tier(&self, name: &str) -> Option<&ResolvedTier> {
        self.tiers.iter().find(|tier| tier.tier.name == name)
    }

    pub fn member(&self, name: &str) -> ApiResult<&MemberRecord> {
        self.members.iter().find(|member| member.virtual_server.server.name == name).ok_or_else(|| {
            ApiError::not_found("member", name).with_details(serde_json::json!({
                "kind": "member", "id": name, "complex": self.complex.name,
            }))
        })
    }

    /// What Steward enforces on a member: its tier's properties, its own name, NICs and addresses, and what
    /// was adopted for it.
    pub fn desired(&self, member: &MemberRecord) -> Option<Desired> {
        let tier = self.tier(&member.tier)?;
        let server = &member.virtual_server.server;
        let adopted = |property: &str| member.adopted.get(property).map(String::as_str);
        let enforced = |property: String| adopted(&property) != Some(NOT_ENFORCED);
        let number = |property: &str| adopted(property).and_then(|value| value.parse::<u64>().ok());
        let nics: Vec<_> = member::desired_nics(&self.driver, tier, server.id, &server.nics)
            .into_iter()
            .filter(|nic| enforced(format!("nic:{}", nic.network)))
            .collect();
        let missing_networks = tier
            .networks
            .iter()
            .map(|network| network.network.name.clone())
            .filter(|network| !server.nics.iter().any(|nic| &nic.network == network))
            .filter(|network| enforced(format!("nic:{network}")))
            .collect();
        let disks = tier.disks.iter().filter(|disk| enforced(format!("disk:{}", disk.mount_point))).cloned().collect();
        let environment = member::environment(
            &self.complex.name,
            &self.complex.definition.variables,
            tier,
            member.index,
            &server.name,
            &nics,
        );
        Some(Desired {
            name: server.name.clone(),
            hostname: adopted("hostname")
                .map(str::to_owned)
                .or_else(|| server.hostname.clone())
                .unwrap_or_else(|| server.name.clone()),
            running: adopted("running") != Some("stopped"),
            cpus: number("cpus").map_or(tier.cpus, |value| value as u32),
            memory_mib: number("memory_mib").unwrap_or(tier.memory_mib),
            cpu_share: number("cpu_share").map_or(tier.cpu_share, |value| value as u32),
            nics,
            missing_networks,
            disks,
            scripts: member::tier_scripts(tier),
            environment,
        })
    }
}
