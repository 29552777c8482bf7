//! Planning the per-member operations of a complex inside the API's audited transaction: every check that can
//! fail is made before anything is created, and what must be unique (member names, MAC and static addresses,
//! member indexes) is reserved in the store, so parallel clones never collide.

use std::collections::BTreeSet;
use std::net::IpAddr;

use steward_hypervisor::{DiskAttachment, HostFacts, Nic};
use steward_store::complexes::MemberRecord;
use steward_store::virtual_servers::VirtualServerState;
use steward_types::api::Timestamp;
use steward_types::api::complexes::ComplexMembersAdd;
use steward_types::api::os_templates::{DiskFormat as TemplateFormat, Personalization};
use steward_types::api::virtual_servers::{
    CloneMethod, DiskOrigin, PowerState, VirtualServer, VirtualServerDisk, VirtualServerNic,
};
use steward_types::{NetworkId, SystemId, VirtualServerId, validate};

use super::check::Finding;
use super::definition::{ResolvedNetwork, ResolvedTier};
use super::member::{self, Desired, DesiredNic};
use super::{Context, NOT_ENFORCED};
use crate::app::hosts::{TemplateFiles, driver_format, fresh_mac};
use crate::app::sagas::complex_member_add;
use crate::app::sagas::complex_member_apply::{self, GuestAction, NicRow};
use crate::error::{ApiError, ApiResult};

/// The most members one request adds.
pub const MAX_MEMBERS_PER_REQUEST: u32 = 1000;

/// Free addresses of a network's pool, lowest first, skipping the ones in `taken`.
async fn free_addresses(
    conn: &mut steward_store::Conn,
    network: &ResolvedNetwork,
    wanted: usize,
) -> ApiResult<Vec<(IpAddr, u8)>> {
    let Some(pool) = network.pool else { return Ok(Vec::new()) };
    let taken: BTreeSet<String> =
        steward_store::complexes::addresses_taken(conn, network.network.id).await?.into_iter().collect();
    let free: Vec<(IpAddr, u8)> = pool
        .addresses()
        .filter(|address| !taken.contains(&address.to_string()))
        .take(wanted)
        .map(|address| (address, pool.prefix))
        .collect();
    if free.len() < wanted {
        return Err(ApiError::conflict(format!(
            "address pool {}-{} of network {:?} has {} free address(es); {wanted} needed",
            pool.first,
            pool.last,
            network.network.name,
            free.len()
        ))
        .with_details(serde_json::json!({ "network": network.network.name, "free": free.len(), "needed": wanted })));
    }
    Ok(free)
}

/// Whether members of the tier get a config drive (never on a host without them).
fn personalized(tier: &ResolvedTier, capabilities: &steward_hypervisor::Capabilities) -> bool {
    tier.os_template.personalization == Personalization::Nocloud && capabilities.config_drive
}

/// Checks that `count` new members of `tier` fit on the host and reserves them: virtual servers in state
/// `creating` with their NICs (MACs, static addresses) and memberships. Returns one saga's parameters each.
pub async fn members_add(
    conn: &mut steward_store::Conn,
    context: &Context,
    facts: &HostFacts,
    tier: &ResolvedTier,
    request: &ComplexMembersAdd,
) -> ApiResult<Vec<complex_member_add::Params>> {
    let count = request.count;
    if !(1..=MAX_MEMBERS_PER_REQUEST).contains(&count) {
        return Err(ApiError::validation("count", format!("must be 1 to {MAX_MEMBERS_PER_REQUEST}")));
    }
    let complex = &context.complex.name;
    let first_index = steward_store::complexes::highest_index(conn, context.complex.id, &tier.tier.name).await? + 1;
    let names: Vec<(u32, String)> =
        (first_index..first_index + count).map(|index| (index, tier.member_name(complex, index))).collect();
    let capabilities = context.driver.capabilities();
    if request.start && !capabilities.agent_channel {
        return Err(ApiError::validation(
            "start",
            format!(
                "members on host {} cannot be started by add-members yet: a started member is personalized and \
                 checked through its agent, and Steward has no agent channel to z/VM guests (docs/zvm.md); add \
                 them with --no-start",
                context.host.name
            ),
        ));
    }
    for (_, name) in &names {
        validate::name("tier.naming", name)?;
        context.driver.check_guest_name("tier.naming", name)?;
        if steward_store::virtual_servers::get(conn, name).await?.is_some() {
            return Err(ApiError::conflict(format!(
                "member name {name:?} (pattern {:?}) is already a virtual server's name; change the tier's naming",
                tier.tier.naming
            )));
        }
        if steward_store::systems::name_taken(conn, name).await? {
            return Err(ApiError::conflict(format!(
                "member name {name:?} (pattern {:?}) is already a managed system's name; change the tier's naming",
                tier.tier.naming
            )));
        }
    }
    let image_bytes = tier.os_template.disk_size_bytes;
    let boot_disk_bytes = tier.server_template.disks.first().copied().unwrap_or(image_bytes).max(image_bytes);
    let overlay = match request.clone.unwrap_or(CloneMethod::Auto) {
        CloneMethod::Auto => tier.os_template.disk_format == TemplateFormat::Qcow2 && capabilities.copy_on_write,
        CloneMethod::Overlay if !capabilities.copy_on_write => {
            return Err(ApiError::validation(
                "clone",
                format!("host {} has no copy-on-write disks (z/VM minidisks): use copy or auto", context.host.name),
            ));
        }
        CloneMethod::Overlay => true,
        CloneMethod::Copy => false,
    };
    if facts.emulator(crate::app::hosts::arch_to_driver(tier.server_template.arch)).is_none() {
        return Err(ApiError::validation(
            "tier",
            format!("host {} has no emulator for {} guests", context.host.name, tier.server_template.arch),
        ));
    }
    let memory_needed = u64::from(count) * (tier.memory_mib << 20);
    if request.start && memory_needed > facts.memory_available_bytes {
        return Err(ApiError::conflict(format!(
            "host {} is out of memory: {count} member(s) of {} MiB need {} MiB, {} MiB are available",
            context.host.name,
            tier.memory_mib,
            memory_needed >> 20,
            facts.memory_available_bytes >> 20
        )));
    }
    // qcow2 disks grow as they are written; refuse only what could never fit.
    let per_member: u64 = (if overlay { 0 } else { boot_disk_bytes })
        + tier.server_template.disks.iter().skip(1).sum::<u64>()
        + tier.disks.iter().map(|disk| disk.size_bytes).sum::<u64>();
    let disk_needed = u64::from(count).saturating_mul(per_member);
    if disk_needed > facts.storage_free_bytes {
        return Err(ApiError::conflict(format!(
            "host {} is out of disk space: {count} member(s) need up to {} MiB, {} MiB are free",
            context.host.name,
            disk_needed >> 20,
            facts.storage_free_bytes >> 20
        )));
    }
    let mut pools = Vec::new();
    for network in &tier.networks {
        pools.push(free_addresses(conn, network, count as usize).await?);
    }
    let driver = &context.driver;
    let files = TemplateFiles::new(driver, &tier.os_template);
    let mut planned = Vec::new();
    for (position, (index, name)) in names.iter().enumerate() {
        let id = VirtualServerId::new();
        let system = SystemId::new();
        let mut nics = Vec::new();
        for (nic_position, network) in tier.networks.iter().enumerate() {
            nics.push(DesiredNic {
                network: network.network.name.clone(),
                mac: fresh_mac(conn, driver).await?,
                tap: driver.nic_device(id, nic_position),
                address: pools[nic_position].get(position).copied(),
                gateway: network.gateway,
                dns: network.dns.clone(),
            });
        }
        let desired = Desired {
            name: name.clone(),
            hostname: name.clone(),
            running: request.start,
            cpus: tier.cpus,
            memory_mib: tier.memory_mib,
            cpu_share: tier.cpu_share,
            environment: member::environment(complex, &context.complex.definition.variables, tier, *index, name, &nics),
            nics,
            missing_networks: Vec::new(),
            disks: tier.disks.clone(),
            scripts: member::tier_scripts(tier),
        };
        let spec = member::guest_spec(driver, tier, &desired, personalized(tier, &capabilities));
        let mut blank_disks: Vec<_> = tier
            .server_template
            .disks
            .iter()
            .enumerate()
            .skip(1)
            .map(|(disk, size)| (driver.disk_path(name, disk), *size))
            .collect();
        blank_disks.extend(
            tier.disks.iter().map(|disk| (member::extra_disk_path(driver, name, &disk.serial), disk.size_bytes)),
        );
        let mut disk_views = vec![VirtualServerDisk {
            size_bytes: boot_disk_bytes,
            origin: if overlay { DiskOrigin::Overlay } else { DiskOrigin::Copy },
            path: member::boot_disk_path(driver, name).display().to_string(),
        }];
        disk_views.extend(blank_disks.iter().map(|(path, size)| VirtualServerDisk {
            size_bytes: *size,
            origin: DiskOrigin::Blank,
            path: path.display().to_string(),
        }));
        let server = VirtualServer {
            id,
            name: name.clone(),
            host: context.host.name.clone(),
            server_template: Some(tier.server_template.name.clone()),
            arch: tier.server_template.arch,
            cpus: tier.cpus,
            memory_mib: tier.memory_mib,
            cpu_share: tier.cpu_share,
            disks: disk_views,
            nics: desired
                .nics
                .iter()
                .map(|nic| VirtualServerNic {
                    network: nic.network.clone(),
                    mac: nic.mac.clone(),
                    address: nic.address_text(),
                })
                .collect(),
            os_template: Some(tier.os_template.name.clone()),
            hostname: Some(name.clone()),
            power: PowerState::Stopped,
            system: Some(system),
            registered: false,
            created_at: Timestamp::now(),
        };
        steward_store::virtual_servers::insert(
            conn,
            &server,
            context.host.id,
            Some(tier.server_template.id),
            VirtualServerState::Creating,
        )
        .await?;
        for (nic_position, (nic, network)) in desired.nics.iter().zip(&tier.networks).enumerate() {
            let address = nic.address.map(|(address, _)| address.to_string());
            steward_store::virtual_servers::nic_insert(
                conn,
                id,
                nic_position as u32,
                network.network.id,
                &nic.mac,
                address.as_deref(),
            )
            .await?;
        }
        steward_store::complexes::member_insert(conn, context.complex.id, id, &tier.tier.name, *index).await?;
        if !request.start {
            // A member added without starting it is meant to stay stopped until someone starts it.
            let stopped = std::collections::BTreeMap::from([("running".to_owned(), "stopped".to_owned())]);
            steward_store::complexes::member_set_adopted(conn, id, &stopped).await?;
        }
        let mut scripts: Vec<String> = desired.scripts.iter().map(|script| script.name.clone()).collect();
        if !desired.disks.is_empty() {
            scripts.insert(0, member::DISK_SCRIPT.to_owned());
        }
        planned.push(complex_member_add::Params {
            host: context.host.id,
            os_template: tier.os_template.id,
            image: files.disk.clone(),
            image_format: driver_format(tier.os_template.disk_format),
            overlay,
            boot_disk_bytes,
            blank_disks,
            config_drive: personalized(tier, &capabilities)
                .then(|| (member::config_drive_path(driver, name), member::config_drive(&id.to_string(), &desired))),
            spec,
            start: request.start,
            scripts: if personalized(tier, &capabilities) { scripts } else { Vec::new() },
            server,
        });
    }
    Ok(planned)
}

fn kind_of(property: &str) -> (&str, &str) {
    property.split_once(':').unwrap_or((property, ""))
}

/// Plans making `member` consistent for the selected findings (all of them the member's); `None` when none of
/// them is something apply can change (an agent that does not answer, for example). New NICs are reserved in
/// `conn`.
pub async fn member_apply(
    conn: &mut steward_store::Conn,
    context: &Context,
    member: &MemberRecord,
    findings: &[&Finding],
) -> ApiResult<Option<complex_member_apply::Params>> {
    let Some(tier) = context.tier(&member.tier) else { return Ok(None) };
    let Some(mut desired) = context.desired(member) else { return Ok(None) };
    let previous_drive = member::config_drive(&member.virtual_server.server.id.to_string(), &desired);
    let before = member.virtual_server.server.clone();
    let name = before.name.clone();
    let driver = &context.driver;
    let mut spec = driver.spec(&name).await?;
    if let Some(tier) = context.tier(&member.tier) {
        member::align_network_names(&mut spec, tier);
    }
    let mut after = before.clone();
    let mut plan = complex_member_apply::Params {
        host: context.host.id,
        before: before.clone(),
        after: before.clone(),
        reserved_nics: Vec::new(),
        dropped_nics: Vec::new(),
        create_disks: Vec::new(),
        create_nics: Vec::new(),
        config_drive: None,
        previous_config_drive: None,
        spec: spec.clone(),
        sync_live: false,
        run: None,
        guest_actions: Vec::new(),
        previous_spec: None,
        was_running: None,
    };
    let address_action = |nic: &DesiredNic| {
        nic.address_text().map(|address| GuestAction {
            property: format!("address:{}", nic.network),
            script: member::address_script(&nic.mac, &address),
            stdin: None,
            environment: Default::default(),
        })
    };
    for finding in findings {
        let property = finding.deviation.property.as_str();
        let (kind, subject) = kind_of(property);
        match kind {
            "running" => plan.run = Some(desired.running),
            "cpus" => {
                spec.cpus = desired.cpus;
                after.cpus = desired.cpus;
                plan.sync_live = true;
            }
            "memory_mib" => {
                spec.memory_mib = desired.memory_mib;
                after.memory_mib = desired.memory_mib;
                plan.sync_live = true;
            }
            "cpu_share" => {
                spec.cpu_share = desired.cpu_share;
                after.cpu_share = desired.cpu_share;
                plan.sync_live = true;
            }
            "nic" => {
                plan.sync_live = true;
                if let Some(nic) = desired.nics.iter().find(|nic| nic.network == subject) {
                    if !spec.nics.iter().any(|defined| defined.mac == nic.mac) {
                        spec.nics.retain(|defined| defined.network != nic.network);
                        let defined = Nic { network: nic.network.clone(), tap: nic.tap.clone(), mac: nic.mac.clone() };
                        spec.nics.push(defined.clone());
                        plan.create_nics.push(defined);
                    }
                    plan.guest_actions.extend(address_action(nic));
                } else if let Some(network) = tier.networks.iter().find(|network| network.network.name == subject) {
                    // The tier gained a network: a new NIC with a MAC and an address of its pool.
                    let position = after.nics.len();
                    let address = free_addresses(conn, network, 1).await?.first().copied();
                    let nic = DesiredNic {
                        network: network.network.name.clone(),
                        mac: fresh_mac(conn, driver).await?,
                        tap: driver.nic_device(before.id, position),
                        address,
                        gateway: network.gateway,
                        dns: network.dns.clone(),
                    };
                    let row = NicRow {
                        network: network.network.id,
                        position: position as u32,
                        nic: Nic { network: nic.network.clone(), tap: nic.tap.clone(), mac: nic.mac.clone() },
                        address: address.map(|(address, _)| address.to_string()),
                    };
                    steward_store::virtual_servers::nic_insert(
                        conn,
                        before.id,
                        row.position,
                        row.network,
                        &row.nic.mac,
                        row.address.as_deref(),
                    )
                    .await?;
                    spec.nics.push(row.nic.clone());
                    plan.create_nics.push(row.nic.clone());
                    plan.reserved_nics.push(row);
                    after.nics.push(VirtualServerNic {
                        network: nic.network.clone(),
                        mac: nic.mac.clone(),
                        address: nic.address_text(),
                    });
                    plan.guest_actions.extend(address_action(&nic));
                    desired.nics.push(nic);
                } else {
                    // A network the tier no longer has: the NIC goes.
                    let dropped: Vec<Nic> = spec.nics.iter().filter(|nic| nic.network == subject).cloned().collect();
                    spec.nics.retain(|nic| nic.network != subject);
                    for nic in dropped {
                        let position = before.nics.iter().position(|recorded| recorded.mac == nic.mac).unwrap_or(0);
                        let address = before.nics.get(position).and_then(|recorded| recorded.address.clone());
                        let network: NetworkId = crate::api::networks::find_network(conn, &nic.network).await?.id;
                        plan.dropped_nics.push(NicRow {
                            network,
                            position: position as u32,
                            nic,
                            address: address
                                .and_then(|text| text.split_once('/').map(|(address, _)| address.to_owned())),
                        });
                    }
                    after.nics.retain(|recorded| recorded.network != subject);
                }
            }
            "disk" => {
                let Some(disk) = desired.disks.iter().find(|disk| disk.mount_point == subject) else { continue };
                plan.sync_live = true;
                if !spec.disks.iter().any(|defined| defined.serial.as_deref() == Some(disk.serial.as_str())) {
                    let path = member::extra_disk_path(driver, &name, &disk.serial);
                    spec.disks.push(DiskAttachment {
                        path: path.clone(),
                        format: driver.disk_format(),
                        serial: Some(disk.serial.clone()),
                    });
                    plan.create_disks.push((path.clone(), disk.size_bytes));
                    after.disks.push(VirtualServerDisk {
                        size_bytes: disk.size_bytes,
                        origin: DiskOrigin::Blank,
                        path: path.display().to_string(),
                    });
                }
                plan.guest_actions.push(GuestAction {
                    property: format!("mount:{}", disk.mount_point),
                    script: member::mount_script(std::slice::from_ref(disk)),
                    stdin: None,
                    environment: Default::default(),
                });
            }
            "hostname" => plan.guest_actions.push(GuestAction {
                property: property.to_owned(),
                script: member::hostname_script(&desired.hostname),
                stdin: None,
                environment: Default::default(),
            }),
            "address" => {
                if let Some(nic) = desired.nics.iter().find(|nic| nic.network == subject) {
                    plan.guest_actions.extend(address_action(nic));
                }
            }
            "mount" => {
                if let Some(disk) = desired.disks.iter().find(|disk| disk.mount_point == subject) {
                    plan.guest_actions.push(GuestAction {
                        property: property.to_owned(),
                        script: member::mount_script(std::slice::from_ref(disk)),
                        stdin: None,
                        environment: Default::default(),
                    });
                }
            }
            "script" => {
                if let Some(script) = desired.scripts.iter().find(|script| script.name == subject) {
                    plan.guest_actions.push(GuestAction {
                        property: property.to_owned(),
                        script: member::rerun_script(&script.name),
                        stdin: Some(script.body.clone()),
                        environment: desired.environment.clone(),
                    });
                }
            }
            // Not something apply can change: an agent that does not answer, a guest without a definition.
            _ => {}
        }
    }
    // Actions on the same property (a re-attached NIC and its address) run once.
    let mut seen = BTreeSet::new();
    plan.guest_actions.retain(|action| seen.insert(action.property.clone()));
    let hypervisor_changes = plan.sync_live || plan.run.is_some();
    if !hypervisor_changes && plan.guest_actions.is_empty() {
        return Ok(None);
    }
    let nics_changed = !plan.reserved_nics.is_empty() || !plan.dropped_nics.is_empty();
    if let (true, Some(path)) = (nics_changed, spec.config_drive.clone()) {
        // The config drive follows the member's NICs, so a later boot configures them too; same path and
        // instance, so neither the running guest nor the first-boot scripts notice.
        desired.nics.retain(|nic| !plan.dropped_nics.iter().any(|row| row.nic.mac == nic.mac));
        desired.environment = member::environment(
            &context.complex.name,
            &context.complex.definition.variables,
            tier,
            member.index,
            &name,
            &desired.nics,
        );
        plan.config_drive = Some((path, member::config_drive(&before.id.to_string(), &desired)));
        plan.previous_config_drive = Some(previous_drive);
    }
    plan.spec = spec;
    plan.after = after;
    Ok(Some(plan))
}

/// Whether a finding may be adopted, and the value adopting it stores.
pub fn adoptable(finding: &Finding) -> ApiResult<String> {
    let (kind, _) = kind_of(&finding.deviation.property);
    match kind {
        "running" | "cpus" | "memory_mib" | "cpu_share" | "hostname" => Ok(finding.adopt_value.clone()),
        "nic" | "disk" | "address" | "mount" | "script" => Ok(NOT_ENFORCED.to_owned()),
        _ => Err(ApiError::validation(
            "property",
            format!("{} cannot be adopted: it is not a property of the complex", finding.deviation.property),
        )),
    }
}
