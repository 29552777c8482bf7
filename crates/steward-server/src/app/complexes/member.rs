//! What a member of a complex should be: its guest definition, its config drive (hostname, addresses, the
//! generated disk script and the tier's scripts with their parameters), and the values the consistency check
//! compares. One function computes the desired state from the tier and the member's own values (name, index,
//! MAC and static addresses, adopted values), for creation, check and apply alike.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use steward_hypervisor::{
    Boot, ConfigDrive, DiskAttachment, GuestSpec, Nic, NicAddressing, NicConfig, PersonalizationScript,
};
use steward_types::api::os_templates::BootMethod;
use steward_types::api::virtual_servers::VirtualServerNic;

use super::definition::{ResolvedDisk, ResolvedTier};
use crate::app::hosts::{Driver, TemplateFiles, arch_to_driver};

/// The script Steward generates to format and mount a member's extra disks at first boot.
pub const DISK_SCRIPT: &str = "steward-disks";

/// One NIC of a member as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredNic {
    pub network: String,
    pub mac: String,
    pub tap: String,
    /// The static address with its prefix, when the tier's network has a pool.
    pub address: Option<(IpAddr, u8)>,
    pub gateway: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
}

impl DesiredNic {
    pub fn address_text(&self) -> Option<String> {
        self.address.map(|(address, prefix)| format!("{address}/{prefix}"))
    }
}

/// Everything Steward enforces on one member.
#[derive(Debug, Clone)]
pub struct Desired {
    pub name: String,
    pub hostname: String,
    pub running: bool,
    pub cpus: u32,
    pub memory_mib: u64,
    pub cpu_share: u32,
    pub nics: Vec<DesiredNic>,
    /// Networks of the tier the member has no NIC on yet (apply gives it one, with an address of the pool).
    pub missing_networks: Vec<String>,
    pub disks: Vec<ResolvedDisk>,
    /// The tier's scripts with the parameters they run with.
    pub scripts: Vec<PersonalizationScript>,
    pub environment: BTreeMap<String, String>,
}

/// A tier's scripts as the driver runs them.
pub fn tier_scripts(tier: &ResolvedTier) -> Vec<PersonalizationScript> {
    tier.tier
        .scripts
        .iter()
        .map(|script| PersonalizationScript { name: script.name.clone(), body: script.body.clone() })
        .collect()
}

/// Where a member's files are: the boot disk, the template's further disks, the tier's extra disks.
pub fn boot_disk_path(driver: &Driver, name: &str) -> PathBuf {
    driver.disk_path(name, 0)
}

pub fn extra_disk_path(driver: &Driver, name: &str, serial: &str) -> PathBuf {
    driver.guest_directory(name).join(format!("data-{serial}.qcow2"))
}

pub fn config_drive_path(driver: &Driver, name: &str) -> PathBuf {
    driver.guest_directory(name).join("cidata.img")
}

/// An upper-case variable name for a network name (`shop-lan` -> `SHOP_LAN`).
fn variable_suffix(name: &str) -> String {
    name.chars()
        .map(|character| if character.is_ascii_alphanumeric() { character.to_ascii_uppercase() } else { '_' })
        .collect()
}

/// The parameters every script of a member gets.
pub fn environment(
    complex: &str,
    complex_variables: &BTreeMap<String, String>,
    tier: &ResolvedTier,
    index: u32,
    name: &str,
    nics: &[DesiredNic],
) -> BTreeMap<String, String> {
    let mut environment = BTreeMap::new();
    environment.insert("STEWARD_COMPLEX".to_owned(), complex.to_owned());
    environment.insert("STEWARD_TIER".to_owned(), tier.tier.name.clone());
    environment.insert("STEWARD_MEMBER_INDEX".to_owned(), index.to_string());
    environment.insert("STEWARD_MEMBER_NAME".to_owned(), name.to_owned());
    let mut addresses = Vec::new();
    for nic in nics {
        if let Some(address) = nic.address_text() {
            environment.insert(format!("STEWARD_ADDRESS_{}", variable_suffix(&nic.network)), address.clone());
            addresses.push(address);
        }
    }
    environment.insert("STEWARD_ADDRESSES".to_owned(), addresses.join(" "));
    for (variable, value) in complex_variables.iter().chain(tier.tier.variables.iter()) {
        environment.insert(format!("STEWARD_VAR_{}", variable.to_ascii_uppercase()), value.clone());
    }
    environment
}

/// The member's NICs from its virtual server's record (MACs and addresses reserved when it was created), in
/// the tier's network order; a network of the tier the member has no NIC on yet is left out.
pub fn desired_nics(
    driver: &Driver,
    tier: &ResolvedTier,
    virtual_server: steward_types::VirtualServerId,
    recorded: &[VirtualServerNic],
) -> Vec<DesiredNic> {
    let mut nics = Vec::new();
    for network in &tier.networks {
        let Some((position, nic)) = recorded.iter().enumerate().find(|(_, nic)| nic.network == network.network.name)
        else {
            continue;
        };
        let address = nic.address.as_deref().and_then(|text| {
            let (address, prefix) = text.split_once('/')?;
            Some((address.parse().ok()?, prefix.parse().ok()?))
        });
        nics.push(DesiredNic {
            network: network.network.name.clone(),
            mac: nic.mac.clone(),
            tap: driver.nic_device(virtual_server, position),
            address,
            gateway: network.gateway,
            dns: network.dns.clone(),
        });
    }
    nics
}

/// Spells the networks of a described definition as the tier does: z/VM gives virtual switch names back upper
/// case (`LAN1` for network `lan1`).
pub fn align_network_names(spec: &mut GuestSpec, tier: &ResolvedTier) {
    for nic in &mut spec.nics {
        if let Some(network) =
            tier.networks.iter().find(|network| network.network.name.eq_ignore_ascii_case(&nic.network))
        {
            nic.network = network.network.name.clone();
        }
    }
}

/// The guest definition of a member.
pub fn guest_spec(driver: &Driver, tier: &ResolvedTier, desired: &Desired, personalized: bool) -> GuestSpec {
    let mut disks = vec![DiskAttachment {
        path: boot_disk_path(driver, &desired.name),
        format: driver.disk_format(),
        serial: None,
    }];
    for index in 1..tier.server_template.disks.len() {
        disks.push(DiskAttachment {
            path: driver.disk_path(&desired.name, index),
            format: driver.disk_format(),
            serial: None,
        });
    }
    for disk in &desired.disks {
        disks.push(DiskAttachment {
            path: extra_disk_path(driver, &desired.name, &disk.serial),
            format: driver.disk_format(),
            serial: Some(disk.serial.clone()),
        });
    }
    let files = TemplateFiles::new(driver, &tier.os_template);
    let boot = match tier.os_template.boot {
        BootMethod::Direct => Boot::Direct {
            kernel: files.kernel.clone(),
            initrd: tier.os_template.has_initrd.then(|| files.initrd.clone()),
            cmdline: tier.os_template.cmdline.clone().unwrap_or_default(),
        },
        BootMethod::Firmware => Boot::Firmware { firmware: None },
    };
    GuestSpec {
        name: desired.name.clone(),
        arch: arch_to_driver(tier.server_template.arch),
        cpus: desired.cpus,
        memory_mib: desired.memory_mib,
        cpu_share: desired.cpu_share,
        disks,
        config_drive: personalized.then(|| config_drive_path(driver, &desired.name)),
        nics: desired
            .nics
            .iter()
            .map(|nic| Nic { network: nic.network.clone(), tap: nic.tap.clone(), mac: nic.mac.clone() })
            .collect(),
        boot,
        agent_channel: true,
    }
}

/// Quotes a value for the shell (single quotes; a single quote becomes `'\''`).
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// A shell function that formats (only a blank disk) and mounts the disk with a serial number; used by the
/// first-boot disk script and by `apply`.
const MOUNT_FUNCTION: &str = r#"steward_mount() {
    serial=$1 fs=$2 point=$3 device="" waited=0
    # A disk plugged in a moment ago may take the guest a few seconds to see.
    while [ -z "$device" ] && [ "$waited" -le 30 ]; do
        for block in /sys/block/*; do
            if [ -f "$block/serial" ] && [ "$(cat "$block/serial")" = "$serial" ]; then device=/dev/${block##*/}; fi
        done
        [ -n "$device" ] || { sleep 1; waited=$((waited + 1)); }
    done
    if [ -z "$device" ]; then echo "no disk with serial $serial for $point" >&2; return 1; fi
    if grep -q "^[^ ]* $point " /proc/mounts; then return 0; fi
    mkdir -p "$point" || return 1
    if ! mount -t "$fs" "$device" "$point" 2>/dev/null; then
        # Only a blank disk (nothing but zeros in its first 64 KiB) is formatted.
        if [ "$(dd if="$device" bs=65536 count=1 2>/dev/null | tr -d '\000' | wc -c)" != 0 ]; then
            echo "$device ($serial) holds data that does not mount as $fs; not formatting it" >&2; return 1
        fi
        if command -v "mkfs.$fs" >/dev/null 2>&1; then "mkfs.$fs" -L "$serial" "$device" >/dev/null || return 1
        elif [ "$fs" = ext2 ] && command -v mke2fs >/dev/null 2>&1; then mke2fs -L "$serial" "$device" >/dev/null || return 1
        else echo "no mkfs.$fs in the guest" >&2; return 1; fi
        mount -t "$fs" "$device" "$point" || return 1
    fi
    grep -q "^LABEL=$serial " /etc/fstab 2>/dev/null || echo "LABEL=$serial $point $fs defaults 0 2" >> /etc/fstab
    echo "mounted $device ($serial) on $point"
}
"#;

/// A script that mounts the given disks (formatting blank ones), failing if any cannot be mounted.
pub fn mount_script(disks: &[ResolvedDisk]) -> String {
    let mut script = String::from("#!/bin/sh\n# Generated by Steward: formats blank extra disks and mounts them.\n");
    script.push_str(MOUNT_FUNCTION);
    script.push_str("status=0\n");
    for disk in disks {
        script.push_str(&format!(
            "steward_mount {} {} {} || status=1\n",
            shell_quote(&disk.serial),
            shell_quote(&disk.filesystem),
            shell_quote(&disk.mount_point)
        ));
    }
    script.push_str("exit $status\n");
    script
}

/// The config drive of a member: instance `instance_id` (a new one runs the scripts again).
pub fn config_drive(instance_id: &str, desired: &Desired) -> ConfigDrive {
    let mut scripts = Vec::new();
    if !desired.disks.is_empty() {
        scripts.push(PersonalizationScript { name: DISK_SCRIPT.to_owned(), body: mount_script(&desired.disks) });
    }
    scripts.extend(desired.scripts.iter().cloned());
    ConfigDrive {
        instance_id: instance_id.to_owned(),
        hostname: desired.hostname.clone(),
        nics: desired
            .nics
            .iter()
            .map(|nic| NicConfig {
                mac: nic.mac.clone(),
                config: match nic.address {
                    Some((address, prefix)) => {
                        NicAddressing::Static { address, prefix, gateway: nic.gateway, dns: nic.dns.clone() }
                    }
                    None => NicAddressing::Dhcp,
                },
            })
            .collect(),
        scripts,
        environment: desired.environment.clone(),
    }
}

/// A shell script (run through the agent) that gives the guest its host name as the first boot does.
pub fn hostname_script(hostname: &str) -> String {
    let quoted = shell_quote(hostname);
    format!(
        "hostname {quoted} && echo {quoted} > /etc/hostname && \
         {{ grep -v '^127\\.0\\.1\\.1[[:space:]]' /etc/hosts; printf '127.0.1.1\\t%s\\n' {quoted}; }} > /etc/hosts.steward && \
         mv /etc/hosts.steward /etc/hosts"
    )
}

/// A shell script that puts a static address on the interface with `mac` (brought up), unless it has it; it
/// waits up to 30 s for an interface plugged in a moment ago to appear.
pub fn address_script(mac: &str, address: &str) -> String {
    const BODY: &str = r#"interface="" waited=0
while [ -z "$interface" ] && [ "$waited" -le 30 ]; do
    for path in /sys/class/net/*; do
        if [ "$(tr 'A-Z' 'a-z' < "$path/address")" = "$mac" ]; then interface=${path##*/}; fi
    done
    [ -n "$interface" ] || { sleep 1; waited=$((waited + 1)); }
done
[ -n "$interface" ] || { echo "no interface with MAC $mac" >&2; exit 1; }
ip link set "$interface" up
ip -o addr show dev "$interface" | grep -q " $address " || ip addr add "$address" dev "$interface"
"#;
    format!("mac={} address={}\n{BODY}", shell_quote(mac), shell_quote(address))
}

/// A shell script that runs a personalization script (its body on standard input) again and records its exit
/// code where the first boot records it (`/var/lib/steward/personalization/NAME`, reported by the agent).
pub fn rerun_script(name: &str) -> String {
    format!(
        "directory=/var/lib/steward/personalization name={name}\n\
         mkdir -p \"$directory\" && file=$(mktemp /var/lib/steward/.script.XXXXXX) || exit 1\n\
         cat > \"$file\" && chmod 700 \"$file\" || exit 1\n\
         \"$file\" </dev/null\ncode=$?\nrm -f \"$file\"\n\
         echo \"$code\" > \"$directory/.$name.new\" && mv \"$directory/.$name.new\" \"$directory/$name\"\n\
         exit \"$code\"",
        name = shell_quote(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_hostile_values() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn the_mount_script_mounts_every_disk_and_fails_if_one_fails() {
        let disks = vec![ResolvedDisk {
            size_bytes: 1 << 26,
            filesystem: "ext2".into(),
            mount_point: "/srv/data".into(),
            serial: "stw01234567".into(),
        }];
        let script = mount_script(&disks);
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains("steward_mount 'stw01234567' 'ext2' '/srv/data' || status=1\n"));
        assert!(script.ends_with("exit $status\n"));
    }
}
