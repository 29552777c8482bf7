//! The consistency check: every enforced property of every member compared with reality, in two layers. The
//! hypervisor layer is the guest's stored definition and, when it runs, its live devices (`describe_guest`);
//! the guest layer is the inventory the member's agent collects on request. Properties:
//!
//! | property | layer | holds when |
//! |---|---|---|
//! | `running` | hypervisor | the guest runs (unless `stopped` was adopted) |
//! | `cpus`, `memory_mib`, `cpu_share` | hypervisor | definition and running process have the tier's value |
//! | `nic:NET` | hypervisor | a NIC with the member's MAC is on network NET in the definition and live |
//! | `disk:PATH` | hypervisor | the extra disk for mount point PATH (by serial) is in the definition and live |
//! | `agent` | guest | the agent answers (otherwise the guest layer is not checked) |
//! | `hostname` | guest | the guest's host name |
//! | `address:NET` | guest | the interface with the NIC's MAC has the member's static address |
//! | `mount:PATH` | guest | a filesystem of the tier's type is mounted at PATH |
//! | `script:NAME` | guest | the script ran and exited 0 |

use std::sync::Arc;

use steward_hypervisor::{GuestDescription, GuestState};
use steward_protocol::inventory::Inventory;
use steward_store::complexes::MemberRecord;
use steward_store::virtual_servers::VirtualServerState;
use steward_types::api::complexes::{Deviation, Layer};

use super::member::Desired;
use super::{Context, NOT_ENFORCED, agent};
use crate::state::AppState;

/// Members checked at the same time.
const PARALLEL_CHECKS: usize = 8;

/// A deviation with the value `adopt` takes over for it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub deviation: Deviation,
    pub adopt_value: String,
}

struct Findings<'a> {
    member: &'a str,
    found: Vec<Finding>,
}

impl Findings<'_> {
    fn push(
        &mut self,
        layer: Layer,
        property: String,
        expected: impl Into<String>,
        actual: impl Into<String>,
        adopt: String,
    ) {
        self.found.push(Finding {
            deviation: Deviation {
                member: self.member.to_owned(),
                property,
                expected: expected.into(),
                actual: actual.into(),
                layer,
            },
            adopt_value: adopt,
        });
    }

    /// Compares a number in the definition and in the running guest with the desired one.
    fn scalar(&mut self, property: &str, desired: u64, defined: u64, live: Option<u64>) {
        let actual = match live {
            Some(live) if live != defined => format!("{defined} (running with {live})"),
            _ => defined.to_string(),
        };
        if defined != desired || live.is_some_and(|live| live != desired) {
            self.push(Layer::Hypervisor, property.to_owned(), desired.to_string(), actual, defined.to_string());
        }
    }
}

/// Whether the member adopted `property` as not enforced.
fn not_enforced(member: &MemberRecord, property: &str) -> bool {
    member.adopted.get(property).map(String::as_str) == Some(NOT_ENFORCED)
}

/// Whether `property` is selected by a filter: equal, or the filter names its kind (`nic` selects `nic:lan`).
pub fn property_selected(property: &str, filter: Option<&str>) -> bool {
    match filter {
        None => true,
        Some(filter) => property == filter || property.split_once(':').is_some_and(|(kind, _)| kind == filter),
    }
}

fn hypervisor_layer(
    findings: &mut Findings<'_>,
    desired: &Desired,
    member: &MemberRecord,
    description: &GuestDescription,
) {
    let spec = &description.spec;
    let running = matches!(description.state, GuestState::Running { .. });
    if running != desired.running {
        let (expected, actual) = if desired.running { ("running", "stopped") } else { ("stopped", "running") };
        findings.push(Layer::Hypervisor, "running".into(), expected, actual, actual.to_owned());
    }
    let live = description.live.as_ref().filter(|_| running);
    findings.scalar("cpus", desired.cpus.into(), spec.cpus.into(), live.and_then(|live| live.cpus).map(u64::from));
    findings.scalar("memory_mib", desired.memory_mib, spec.memory_mib, live.and_then(|live| live.memory_mib));
    findings.scalar(
        "cpu_share",
        desired.cpu_share.into(),
        spec.cpu_share.into(),
        description.live_cpu_share.filter(|_| running).map(u64::from),
    );
    let live_devices = description.live_devices.as_ref().filter(|_| running);
    for nic in &desired.nics {
        let property = format!("nic:{}", nic.network);
        let expected = format!("present (MAC {})", nic.mac);
        match spec.nics.iter().find(|defined| defined.mac == nic.mac) {
            None => {
                findings.push(Layer::Hypervisor, property, expected, "absent from the definition", NOT_ENFORCED.into())
            }
            Some(defined) if defined.network != nic.network => findings.push(
                Layer::Hypervisor,
                property,
                expected,
                format!("on network {}", defined.network),
                NOT_ENFORCED.into(),
            ),
            Some(_) => {
                if let Some(devices) = live_devices
                    && !devices.nics.iter().any(|live| live.mac.eq_ignore_ascii_case(&nic.mac))
                {
                    findings.push(
                        Layer::Hypervisor,
                        property,
                        expected,
                        "detached from the running guest",
                        NOT_ENFORCED.into(),
                    );
                }
            }
        }
    }
    for network in &desired.missing_networks {
        findings.push(
            Layer::Hypervisor,
            format!("nic:{network}"),
            "present",
            "no NIC on this network",
            NOT_ENFORCED.into(),
        );
    }
    // NICs on networks the tier no longer has (or whose enforcement was not adopted away).
    for defined in &spec.nics {
        if !desired.nics.iter().any(|nic| nic.mac == defined.mac)
            && !member.adopted.contains_key(&format!("nic:{}", defined.network))
        {
            findings.push(
                Layer::Hypervisor,
                format!("nic:{}", defined.network),
                "absent",
                format!("present (MAC {})", defined.mac),
                NOT_ENFORCED.into(),
            );
        }
    }
    for disk in &desired.disks {
        let property = format!("disk:{}", disk.mount_point);
        let expected = format!("{} MiB disk {}", disk.size_bytes >> 20, disk.serial);
        if !spec.disks.iter().any(|defined| defined.serial.as_deref() == Some(disk.serial.as_str())) {
            findings.push(Layer::Hypervisor, property, expected, "absent from the definition", NOT_ENFORCED.into());
        } else if let Some(devices) = live_devices
            && !devices.disks.iter().any(|live| live.serial.as_deref() == Some(disk.serial.as_str()))
        {
            findings.push(
                Layer::Hypervisor,
                property,
                expected,
                "detached from the running guest",
                NOT_ENFORCED.into(),
            );
        }
    }
}

fn guest_layer(findings: &mut Findings<'_>, desired: &Desired, member: &MemberRecord, inventory: &Inventory) {
    if inventory.host.hostname != desired.hostname {
        findings.push(
            Layer::Guest,
            "hostname".into(),
            desired.hostname.clone(),
            inventory.host.hostname.clone(),
            inventory.host.hostname.clone(),
        );
    }
    for nic in &desired.nics {
        let Some(address) = nic.address_text() else { continue };
        if not_enforced(member, &format!("address:{}", nic.network)) {
            continue;
        }
        let interface = inventory.interfaces.iter().find(|interface| interface.mac.eq_ignore_ascii_case(&nic.mac));
        let actual = match interface {
            None => "no interface with the NIC's MAC".to_owned(),
            Some(interface) if interface.addresses.contains(&address) => continue,
            Some(interface) if interface.addresses.is_empty() => format!("{} has no address", interface.name),
            Some(interface) => format!("{} has {}", interface.name, interface.addresses.join(", ")),
        };
        findings.push(Layer::Guest, format!("address:{}", nic.network), address, actual, NOT_ENFORCED.into());
    }
    for disk in &desired.disks {
        let property = format!("mount:{}", disk.mount_point);
        if not_enforced(member, &property) {
            continue;
        }
        let expected = format!("{} mounted", disk.filesystem);
        match inventory.filesystems.iter().find(|filesystem| filesystem.mount_point == disk.mount_point) {
            None => findings.push(Layer::Guest, property, expected, "not mounted", NOT_ENFORCED.into()),
            Some(filesystem) if filesystem.fs_type != disk.filesystem => findings.push(
                Layer::Guest,
                property,
                expected,
                format!("{} from {}", filesystem.fs_type, filesystem.device),
                NOT_ENFORCED.into(),
            ),
            Some(_) => {}
        }
    }
    for script in &desired.scripts {
        let property = format!("script:{}", script.name);
        if not_enforced(member, &property) {
            continue;
        }
        match inventory.personalization.iter().find(|result| result.name == script.name) {
            Some(result) if result.exit_code == 0 => {}
            Some(result) => findings.push(
                Layer::Guest,
                property,
                "exit 0",
                format!("exit {}", result.exit_code),
                NOT_ENFORCED.into(),
            ),
            None => findings.push(Layer::Guest, property, "exit 0", "not run", NOT_ENFORCED.into()),
        }
    }
}

/// Checks one member; a member still being created or removed is not checked (no findings).
pub async fn check_member(state: &AppState, context: &Context, member: &MemberRecord) -> Vec<Finding> {
    let name = member.virtual_server.server.name.as_str();
    let mut findings = Findings { member: name, found: Vec::new() };
    let Some(desired) = context.desired(member) else {
        findings.push(
            Layer::Hypervisor,
            "tier".into(),
            member.tier.clone(),
            "no such tier in the definition",
            member.tier.clone(),
        );
        return findings.found;
    };
    let description = match context.driver.describe_guest(name).await {
        Ok(mut description) => {
            if let Some(tier) = context.tier(&member.tier) {
                super::member::align_network_names(&mut description.spec, tier);
            }
            description
        }
        Err(error) => {
            findings.push(
                Layer::Hypervisor,
                "definition".into(),
                "defined",
                crate::error_chain(&error),
                "undefined".into(),
            );
            return findings.found;
        }
    };
    hypervisor_layer(&mut findings, &desired, member, &description);
    if !matches!(description.state, GuestState::Running { .. }) {
        return findings.found;
    }
    let inventory = match member.virtual_server.server.system {
        Some(system) => agent::collect_inventory(state, system).await,
        None => Err("the member has no managed system".to_owned()),
    };
    match inventory {
        Ok(inventory) => guest_layer(&mut findings, &desired, member, &inventory),
        Err(error) => findings.push(Layer::Guest, "agent".into(), "answering", error, NOT_ENFORCED.into()),
    }
    findings.found
}

/// Checks the ready members of a complex (or the one named), at most `PARALLEL_CHECKS` at a time. Returns the
/// findings, sorted by member and property, and the members checked.
pub async fn check(state: &AppState, context: Arc<Context>, only: Option<&str>) -> (Vec<Finding>, Vec<String>) {
    let members: Vec<usize> = context
        .members
        .iter()
        .enumerate()
        .filter(|(_, member)| member.virtual_server.state == VirtualServerState::Ready)
        .filter(|(_, member)| only.is_none_or(|name| member.virtual_server.server.name == name))
        .map(|(index, _)| index)
        .collect();
    let checked: Vec<String> =
        members.iter().map(|index| context.members[*index].virtual_server.server.name.clone()).collect();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(PARALLEL_CHECKS));
    let mut tasks = tokio::task::JoinSet::new();
    for index in members {
        let (state, context, semaphore) = (state.clone(), context.clone(), semaphore.clone());
        tasks.spawn(async move {
            let _permit = semaphore.acquire().await;
            check_member(&state, &context, &context.members[index]).await
        });
    }
    let mut findings = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(found) => findings.extend(found),
            Err(error) => tracing::error!(%error, "a member check failed to run"),
        }
    }
    findings.sort_by(|a, b| {
        (&a.deviation.member, a.deviation.layer, &a.deviation.property).cmp(&(
            &b.deviation.member,
            b.deviation.layer,
            &b.deviation.property,
        ))
    });
    (findings, checked)
}
