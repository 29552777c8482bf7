//! A complex's definition checked against the store and resolved: every template, network and pool looked up,
//! every value parsed, so that the handlers and sagas work with typed values and no request can start a change
//! that is bound to fail half-way.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use steward_types::api::complexes::{ComplexDefinition, Tier};
use steward_types::api::networks::Network;
use steward_types::api::os_templates::{OsTemplate, Personalization};
use steward_types::api::server_templates::ServerTemplate;
use steward_types::validate;

use crate::api::networks::find_network;
use crate::api::os_templates::find_os_template;
use crate::api::server_templates::find_server_template;
use crate::error::{ApiError, ApiResult};

pub const MAX_TIERS: usize = 16;
pub const MAX_TIER_NETWORKS: usize = 8;
pub const MAX_TIER_DISKS: usize = 8;
pub const MAX_SCRIPTS: usize = 16;
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;
pub const MAX_VARIABLES: usize = 64;
pub const MAX_VARIABLE_BYTES: usize = 4096;
/// The longest background check interval (a day); 0 turns the reconciler off for the complex.
pub const MAX_RECONCILE_INTERVAL_SECONDS: u64 = 86_400;
/// Script names Steward reserves for the scripts it generates itself.
pub const RESERVED_SCRIPT_PREFIX: &str = "steward-";

/// A range of addresses inside a network's subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    pub first: IpAddr,
    pub last: IpAddr,
    pub prefix: u8,
}

impl AddressPool {
    /// Every address of the pool, in order (pools are bounded to 65,536 addresses).
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (first, last) = (address_number(self.first), address_number(self.last));
        let ipv4 = self.first.is_ipv4();
        (first..=last).map(move |number| number_address(number, ipv4))
    }
}

fn address_number(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn number_address(number: u128, ipv4: bool) -> IpAddr {
    if ipv4 { IpAddr::V4((number as u32).into()) } else { IpAddr::V6(number.into()) }
}

/// The most addresses one pool may hold.
const MAX_POOL_ADDRESSES: u128 = 65_536;

#[derive(Debug, Clone)]
pub struct ResolvedNetwork {
    pub network: Network,
    pub pool: Option<AddressPool>,
    pub gateway: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDisk {
    pub size_bytes: u64,
    pub filesystem: String,
    pub mount_point: String,
    /// The disk's serial number, which the guest finds it by: derived from the mount point, so it is stable
    /// whatever the order of the tier's disks.
    pub serial: String,
}

#[derive(Debug, Clone)]
pub struct ResolvedTier {
    pub tier: Tier,
    pub server_template: ServerTemplate,
    pub os_template: OsTemplate,
    pub cpus: u32,
    pub memory_mib: u64,
    pub cpu_share: u32,
    pub networks: Vec<ResolvedNetwork>,
    pub disks: Vec<ResolvedDisk>,
}

impl ResolvedTier {
    /// The member name for index `n`.
    pub fn member_name(&self, complex: &str, n: u32) -> String {
        member_name(&self.tier.naming, complex, &self.tier.name, n)
    }
}

pub fn member_name(pattern: &str, complex: &str, tier: &str, n: u32) -> String {
    pattern.replace("{complex}", complex).replace("{tier}", tier).replace("{n}", &n.to_string())
}

/// The serial of the extra disk mounted at `mount_point`: 11 characters, within virtio-blk's limit (20) and
/// usable as a filesystem label too (XFS allows 12).
pub fn disk_serial(mount_point: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(mount_point.as_bytes());
    digest[..4].iter().fold(String::from("stw"), |serial, byte| serial + &format!("{byte:02x}"))
}

fn variable_name(field: &str, name: &str) -> ApiResult<()> {
    let mut characters = name.chars();
    let valid = characters.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
        && name.len() <= 64;
    if !valid {
        return Err(ApiError::validation(
            field,
            format!("{name:?} is not a variable name (letters, digits and _, not starting with a digit, at most 64)"),
        ));
    }
    Ok(())
}

fn variables(field: &str, variables: &BTreeMap<String, String>) -> ApiResult<()> {
    if variables.len() > MAX_VARIABLES {
        return Err(ApiError::validation(field, format!("at most {MAX_VARIABLES} variables")));
    }
    for (name, value) in variables {
        variable_name(&format!("{field}.{name}"), name)?;
        if value.len() > MAX_VARIABLE_BYTES || value.contains('\0') {
            return Err(ApiError::validation(
                &format!("{field}.{name}"),
                format!("must be text without NUL of at most {MAX_VARIABLE_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

/// Checks a tier's member naming pattern: `{n}` present, and the names it makes are valid names.
fn naming(field: &str, tier: &Tier, complex: &str) -> ApiResult<()> {
    if !tier.naming.contains("{n}") {
        return Err(ApiError::validation(field, format!("{:?} has no {{n}}: members would share a name", tier.naming)));
    }
    let sample = member_name(&tier.naming, complex, &tier.name, 1000);
    if sample.contains(['{', '}']) {
        return Err(ApiError::validation(
            field,
            format!("{:?}: only {{n}}, {{tier}} and {{complex}} are replaced", tier.naming),
        ));
    }
    validate::name(field, &sample)?;
    validate::hostname(field, &sample)
        .map_err(|_| ApiError::validation(field, format!("{sample:?} (a member name) is not a valid host name")))?;
    Ok(())
}

fn pool(field: &str, text: &str, network: &Network) -> ApiResult<AddressPool> {
    let Some(subnet) = &network.subnet else {
        return Err(ApiError::validation(
            field,
            format!("network {:?} has no subnet; create it with --subnet to give addresses from a pool", network.name),
        ));
    };
    let (subnet_address, prefix) = validate::cidr("subnet", subnet)?;
    let Some((first, last)) = text.split_once('-') else {
        return Err(ApiError::validation(field, format!("{text:?} is not a range like 10.77.0.10-10.77.0.99")));
    };
    let first = validate::ip_address(field, first.trim())?;
    let last = validate::ip_address(field, last.trim())?;
    for address in [first, last] {
        if !validate::in_subnet(address, subnet_address, prefix) {
            return Err(ApiError::validation(
                field,
                format!("{address} is outside network {:?}'s subnet {subnet}", network.name),
            ));
        }
    }
    let (first_number, last_number) = (address_number(first), address_number(last));
    if first_number > last_number {
        return Err(ApiError::validation(field, format!("{first} comes after {last}")));
    }
    if last_number - first_number >= MAX_POOL_ADDRESSES {
        return Err(ApiError::validation(field, format!("a pool holds at most {MAX_POOL_ADDRESSES} addresses")));
    }
    Ok(AddressPool { first, last, prefix })
}

fn disk(field: &str, disk: &steward_types::api::complexes::TierDisk) -> ApiResult<ResolvedDisk> {
    let size_bytes = validate::size_bytes(&format!("{field}.size"), &disk.size)?;
    if size_bytes < 1 << 20 {
        return Err(ApiError::validation(&format!("{field}.size"), "must be at least 1M"));
    }
    let valid_filesystem = !disk.filesystem.is_empty()
        && disk.filesystem.len() <= 16
        && disk.filesystem.chars().all(|character| character.is_ascii_lowercase() || character.is_ascii_digit());
    if !valid_filesystem {
        return Err(ApiError::validation(
            &format!("{field}.filesystem"),
            format!("{:?} is not a filesystem type like ext4 or xfs", disk.filesystem),
        ));
    }
    let mount_point = &disk.mount_point;
    let valid_mount = mount_point.starts_with('/')
        && mount_point.len() > 1
        && mount_point.len() <= 256
        && !mount_point.ends_with('/')
        && mount_point.split('/').skip(1).all(|part| !part.is_empty() && part != "." && part != "..")
        && mount_point.chars().all(|character| character.is_ascii_alphanumeric() || "/._-".contains(character));
    if !valid_mount {
        return Err(ApiError::validation(
            &format!("{field}.mount_point"),
            format!("{mount_point:?} is not an absolute path of letters, digits, '.', '_' and '-' (not /)"),
        ));
    }
    Ok(ResolvedDisk {
        size_bytes,
        filesystem: disk.filesystem.clone(),
        mount_point: mount_point.clone(),
        serial: disk_serial(mount_point),
    })
}

/// Checks a definition on its own and against the store; `host` is the complex's host name.
pub async fn resolve(
    conn: &mut steward_store::Conn,
    complex: &str,
    host: &str,
    capabilities: &steward_hypervisor::Capabilities,
    host_memory_bytes: Option<u64>,
    definition: &ComplexDefinition,
) -> ApiResult<Vec<ResolvedTier>> {
    validate::description("definition.description", &definition.description)?;
    variables("definition.variables", &definition.variables)?;
    if let Some(interval) = definition.reconcile_interval_seconds
        && interval > MAX_RECONCILE_INTERVAL_SECONDS
    {
        return Err(ApiError::validation(
            "definition.reconcile_interval_seconds",
            format!("at most {MAX_RECONCILE_INTERVAL_SECONDS} (a day); 0 turns the background check off"),
        ));
    }
    if definition.tiers.is_empty() || definition.tiers.len() > MAX_TIERS {
        return Err(ApiError::validation("definition.tiers", format!("a complex has 1 to {MAX_TIERS} tiers")));
    }
    let mut names = BTreeSet::new();
    let mut patterns = BTreeSet::new();
    let mut resolved = Vec::new();
    for (position, tier) in definition.tiers.iter().enumerate() {
        let field = |name: &str| format!("definition.tiers[{position}].{name}");
        validate::name(&field("name"), &tier.name)?;
        if !names.insert(tier.name.clone()) {
            return Err(ApiError::validation(&field("name"), format!("tier {:?} is defined twice", tier.name)));
        }
        naming(&field("naming"), tier, complex)?;
        if !patterns.insert(member_name(&tier.naming, complex, &tier.name, 0)) {
            return Err(ApiError::validation(
                &field("naming"),
                format!("{:?} makes the same member names as another tier", tier.naming),
            ));
        }
        variables(&field("variables"), &tier.variables)?;
        let server_template = find_server_template(conn, &tier.server_template).await?;
        let os_template = find_os_template(conn, &tier.os_template).await?;
        if server_template.arch != os_template.arch {
            return Err(ApiError::validation(
                &field("os_template"),
                format!(
                    "{:?} is an {} template; server template {:?} is {}",
                    os_template.name, os_template.arch, server_template.name, server_template.arch
                ),
            ));
        }
        if os_template.host != host {
            return Err(ApiError::validation(
                &field("os_template"),
                format!("{:?} is on host {}; the complex is on {host}", os_template.name, os_template.host),
            ));
        }
        if !capabilities.config_drive {
            // Without a config drive (z/VM), what a member is given at first boot would have to come through its
            // agent, whose channel on z/VM (IUCV) does not exist yet: only what the directory holds is offered.
            let unsupported = if !tier.disks.is_empty() {
                Some("disks")
            } else if !tier.scripts.is_empty() {
                Some("scripts")
            } else if tier.networks.iter().any(|network| network.pool.is_some() || network.gateway.is_some()) {
                Some("networks")
            } else {
                None
            };
            if let Some(what) = unsupported {
                return Err(ApiError::validation(
                    &field(what),
                    format!(
                        "host {host} has no config drive (z/VM): extra disks, scripts and address pools reach a \
                         member through its agent at first boot, and Steward has no agent channel to z/VM guests \
                         yet (docs/zvm.md); tiers there have networks without pools (DHCP), and no disks or scripts"
                    ),
                ));
            }
        }
        let personalized = !tier.networks.is_empty() || !tier.disks.is_empty() || !tier.scripts.is_empty();
        if personalized && capabilities.config_drive && os_template.personalization != Personalization::Nocloud {
            return Err(ApiError::validation(
                &field("os_template"),
                format!(
                    "{:?} is not personalized (no config drive): a tier with networks, disks or scripts needs one",
                    os_template.name
                ),
            ));
        }
        if !os_template.agent {
            return Err(ApiError::validation(
                &field("os_template"),
                format!(
                    "{:?} does not start the Steward agent; complex members are checked through it",
                    os_template.name
                ),
            ));
        }
        let cpus = tier.cpus.unwrap_or(server_template.cpus);
        let memory_mib = tier.memory_mib.unwrap_or(server_template.memory_mib);
        let cpu_share = tier.cpu_share.unwrap_or(server_template.cpu_share);
        if !(1..=64).contains(&cpus) {
            return Err(ApiError::validation(&field("cpus"), "must be 1 to 64"));
        }
        if !(16..=1 << 20).contains(&memory_mib) {
            return Err(ApiError::validation(&field("memory_mib"), "must be 16 to 1048576"));
        }
        if let Some(total) = host_memory_bytes
            && memory_mib << 20 > total
        {
            return Err(ApiError::validation(
                &field("memory_mib"),
                format!("{memory_mib} MiB exceed host {host}'s {} MiB", total >> 20),
            ));
        }
        if !(1..=10_000).contains(&cpu_share) {
            return Err(ApiError::validation(&field("cpu_share"), "must be 1 to 10000"));
        }
        if tier.networks.len() > MAX_TIER_NETWORKS {
            return Err(ApiError::validation(&field("networks"), format!("at most {MAX_TIER_NETWORKS} NICs")));
        }
        let mut networks = Vec::new();
        for (index, entry) in tier.networks.iter().enumerate() {
            let field = |name: &str| format!("definition.tiers[{position}].networks[{index}].{name}");
            let network = find_network(conn, &entry.network).await?;
            if network.host != host {
                return Err(ApiError::validation(
                    &field("network"),
                    format!("network {:?} is on host {}, not {host}", network.name, network.host),
                ));
            }
            if networks.iter().any(|known: &ResolvedNetwork| known.network.id == network.id) {
                return Err(ApiError::validation(
                    &field("network"),
                    format!("network {:?} is listed twice; a member has one NIC per network", network.name),
                ));
            }
            let pool = entry.pool.as_deref().map(|text| pool(&field("pool"), text, &network)).transpose()?;
            if pool.is_none() && (entry.gateway.is_some() || !entry.dns.is_empty()) {
                return Err(ApiError::validation(
                    &field("pool"),
                    "a gateway or DNS servers need static addresses from a pool",
                ));
            }
            let gateway =
                entry.gateway.as_deref().map(|text| validate::ip_address(&field("gateway"), text)).transpose()?;
            if let (Some(gateway), Some(pool)) = (gateway, pool)
                && (!validate::in_subnet(gateway, pool.first, pool.prefix)
                    || pool.addresses().any(|address| address == gateway))
            {
                return Err(ApiError::validation(
                    &field("gateway"),
                    format!("{gateway} must be in the network's subnet and outside the pool"),
                ));
            }
            let dns = entry
                .dns
                .iter()
                .enumerate()
                .map(|(server, text)| validate::ip_address(&field(&format!("dns[{server}]")), text))
                .collect::<Result<Vec<_>, _>>()?;
            networks.push(ResolvedNetwork { network, pool, gateway, dns });
        }
        if tier.disks.len() > MAX_TIER_DISKS {
            return Err(ApiError::validation(&field("disks"), format!("at most {MAX_TIER_DISKS} extra disks")));
        }
        let mut disks: Vec<ResolvedDisk> = Vec::new();
        for (index, entry) in tier.disks.iter().enumerate() {
            let resolved_disk = disk(&format!("definition.tiers[{position}].disks[{index}]"), entry)?;
            if disks.iter().any(|known| known.mount_point == resolved_disk.mount_point) {
                return Err(ApiError::validation(
                    &format!("definition.tiers[{position}].disks[{index}].mount_point"),
                    format!("{} is mounted twice", resolved_disk.mount_point),
                ));
            }
            disks.push(resolved_disk);
        }
        if tier.scripts.len() > MAX_SCRIPTS {
            return Err(ApiError::validation(&field("scripts"), format!("at most {MAX_SCRIPTS} scripts")));
        }
        let mut script_names = BTreeSet::new();
        for (index, script) in tier.scripts.iter().enumerate() {
            let field = format!("definition.tiers[{position}].scripts[{index}]");
            validate::name(&format!("{field}.name"), &script.name)?;
            if script.name.starts_with(RESERVED_SCRIPT_PREFIX) {
                return Err(ApiError::validation(
                    &format!("{field}.name"),
                    format!("names starting with {RESERVED_SCRIPT_PREFIX:?} are Steward's own"),
                ));
            }
            if !script_names.insert(&script.name) {
                return Err(ApiError::validation(&format!("{field}.name"), format!("{:?} is used twice", script.name)));
            }
            if script.body.len() > MAX_SCRIPT_BYTES || script.body.contains('\0') {
                return Err(ApiError::validation(&format!("{field}.body"), "must be text of at most 64 KiB"));
            }
        }
        resolved.push(ResolvedTier {
            tier: tier.clone(),
            server_template,
            os_template,
            cpus,
            memory_mib,
            cpu_share,
            networks,
            disks,
        });
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_lists_its_addresses_in_order() {
        let pool = AddressPool { first: "10.0.0.254".parse().unwrap(), last: "10.0.1.1".parse().unwrap(), prefix: 16 };
        let addresses: Vec<String> = pool.addresses().map(|address| address.to_string()).collect();
        assert_eq!(addresses, ["10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1"]);
    }

    #[test]
    fn disk_serials_fit_virtio_and_differ_per_mount_point() {
        let (data, logs) = (disk_serial("/srv/data"), disk_serial("/var/log/app"));
        assert!(data.len() <= 20 && data.chars().all(|c| c.is_ascii_alphanumeric()), "{data}");
        assert_ne!(data, logs);
        assert_eq!(data, disk_serial("/srv/data"));
    }

    #[test]
    fn member_names_replace_every_placeholder() {
        assert_eq!(member_name("{complex}-{tier}-{n}", "shop", "web", 3), "shop-web-3");
        assert_eq!(member_name("web{n}", "shop", "web", 12), "web12");
    }
}
