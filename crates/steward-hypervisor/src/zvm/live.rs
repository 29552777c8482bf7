//! What a logged-on guest has, beside its directory entry: `describe_guest` (the entry parsed back into a
//! `GuestSpec`, the running configuration from `Image_Active_Configuration_Query`, the NICs coupled to its
//! virtual switches from `Virtual_Network_Vswitch_Query_Extended`), and `sync_live`.
//!
//! `sync_live` does what SMAPI can do to a running guest: couple a defined NIC that is not coupled
//! (`Virtual_Network_Adapter_Connect_Vswitch`; 204/20, coupled already, is done) and link a defined minidisk
//! the guest lacks (`Image_Disk_Create`). What it cannot do through the functions the system offers (a NIC the
//! guest does not have at all, a minidisk to take away, the CPU share, CPUs, memory, the IPL device) is listed
//! in `restart_required`: the next logon takes the directory entry as it is.

use std::collections::BTreeSet;

use smapi::ErrorKind;
use smapi::functions::{
    ActiveConfiguration, DeviceType, ImageActiveConfigurationQuery, ImageDiskCreate, MemoryUnit, ShareType,
    VirtualNetworkAdapterConnectVswitch,
};

use super::guest::ZVM_PID;
use super::{ZvmHost, errors, names};
use crate::error::{HypervisorError, Result};
use crate::types::{GuestDescription, GuestSpec, GuestState, LiveDevices, LiveDisk, LiveNic, LiveSync};

impl ZvmHost {
    /// The guest's definition parsed from its directory entry, with what runs when it is logged on.
    pub async fn describe_guest(&self, name: &str) -> Result<GuestDescription> {
        let userid = names::userid(name)?;
        let entry =
            self.query_entry(&userid).await?.ok_or_else(|| HypervisorError::NotFound { guest: name.to_owned() })?;
        let spec = super::entry::spec_from_entry(name, &entry, &self.policy);
        if !self.is_logged_on(&userid).await? {
            return Ok(GuestDescription {
                spec,
                state: GuestState::Stopped,
                live: None,
                run_state: None,
                live_cpu_share: None,
                live_devices: None,
            });
        }
        let configuration = match self.client.call(&ImageActiveConfigurationQuery::new(&userid)).await {
            Ok(configuration) => Some(configuration),
            Err(error) if errors::is_kind(&error, ErrorKind::NotActive) => None,
            Err(error) => return Err(errors::map(format!("querying the running configuration of {userid}"), error)),
        };
        let live = self.listing(&userid, entry.guest_marker).await?;
        let live_cpu_share = configuration.as_ref().and_then(relative_share);
        let live_devices = match &configuration {
            Some(configuration) => Some(self.live_devices(&userid, &spec, configuration).await?),
            None => None,
        };
        Ok(GuestDescription {
            spec,
            state: GuestState::Running { pid: ZVM_PID },
            live: Some(live),
            run_state: Some(if configuration.is_some() { "logged on" } else { "logging off" }.to_owned()),
            live_cpu_share,
            live_devices,
        })
    }

    /// The minidisks of the running guest and its NICs coupled to the virtual switches of its definition.
    async fn live_devices(
        &self,
        userid: &str,
        spec: &GuestSpec,
        configuration: &ActiveConfiguration,
    ) -> Result<LiveDevices> {
        let disks = configuration
            .devices
            .iter()
            .filter(|device| device.device_type == DeviceType::Dasd)
            .filter_map(|device| names::vdev("device", &device.address).ok())
            .map(|vdev| LiveDisk {
                device_id: vdev.clone(),
                path: Some(names::DiskPath { owner: userid.to_owned(), vdev }.to_path()),
                serial: None,
                read_only: false,
            })
            .collect();
        let switches: BTreeSet<String> = spec.nics.iter().map(|nic| nic.network.to_ascii_uppercase()).collect();
        let mut nics = Vec::new();
        for switch in switches {
            let Some(info) = self.query_vswitch(&switch).await? else { continue };
            for adapter in info.connected_adapters.iter().filter(|adapter| adapter.owner.eq_ignore_ascii_case(userid)) {
                nics.push(LiveNic {
                    mac: names::mac_from_cp(&adapter.mac_address),
                    device_id: names::vdev("adapter", &adapter.vdev).unwrap_or_else(|_| adapter.vdev.clone()),
                });
            }
        }
        nics.sort_by(|left, right| left.device_id.cmp(&right.device_id));
        Ok(LiveDevices { nics, disks })
    }

    /// Brings a logged-on guest as close to its directory entry as SMAPI allows (see the module).
    pub async fn sync_live(&self, name: &str) -> Result<LiveSync> {
        let description = self.describe_guest(name).await?;
        let mut report = LiveSync::default();
        let (Some(live), Some(devices)) = (&description.live, &description.live_devices) else {
            return Ok(report);
        };
        let userid = names::userid(name)?;
        let spec = &description.spec;
        for nic in &spec.nics {
            if devices.nics.iter().any(|live| live.device_id == nic.tap) {
                continue;
            }
            let connect = VirtualNetworkAdapterConnectVswitch::new(&userid, &nic.tap, &nic.network);
            match self.client.call(&connect).await {
                Ok(()) => report.attached.push(format!("nic {} on network {}", nic.tap, nic.network)),
                Err(error) if errors::codes(&error) == Some((204, 20)) => {}
                Err(error) if errors::codes(&error) == Some((204, 8)) => report
                    .restart_required
                    .push(format!("nic {} on network {} (the running guest has no such NIC)", nic.tap, nic.network)),
                Err(error) => {
                    return Err(errors::map(format!("coupling NIC {} of {userid} to {}", nic.tap, nic.network), error));
                }
            }
        }
        for disk in &spec.disks {
            if devices.disks.iter().any(|live| live.path.as_ref() == Some(&disk.path)) {
                continue;
            }
            let vdev = names::DiskPath::parse(&disk.path)?.vdev;
            match self.client.call(&ImageDiskCreate::new(&userid, &vdev, "")).await {
                Ok(()) => report.attached.push(format!("disk {}", disk.path.display())),
                Err(error) if errors::is_kind(&error, ErrorKind::ServerError) => report
                    .restart_required
                    .push(format!("disk {} (Image_Disk_Create is not available on this system)", disk.path.display())),
                Err(error) => {
                    return Err(errors::map(format!("linking minidisk {} into {userid}", disk.path.display()), error));
                }
            }
        }
        for live_disk in &devices.disks {
            if !spec.disks.iter().any(|disk| Some(&disk.path) == live_disk.path.as_ref()) {
                report.restart_required.push(format!("removing disk {}", live_disk.device_id));
            }
        }
        if description.live_cpu_share.is_some_and(|share| share != spec.cpu_share) {
            report
                .restart_required
                .push(format!("cpu share {} (CP SET SHARE is not available through SMAPI)", spec.cpu_share));
        }
        if live.cpus.is_some_and(|cpus| cpus != spec.cpus) {
            report.restart_required.push(format!("cpus {}", spec.cpus));
        }
        if live.memory_mib.is_some_and(|memory| memory != spec.memory_mib) {
            report.restart_required.push(format!("memory {} MiB", spec.memory_mib));
        }
        Ok(report)
    }
}

/// The relative share of a running guest (an absolute one has no Steward counterpart).
fn relative_share(configuration: &ActiveConfiguration) -> Option<u32> {
    match configuration.share_type {
        ShareType::Relative => configuration.share_value.trim().parse().ok(),
        _ => None,
    }
}

/// Megabytes of a running configuration's memory.
pub fn memory_mib(configuration: &ActiveConfiguration) -> Option<u64> {
    let size = u64::try_from(configuration.memory_size).ok()?;
    match configuration.memory_unit {
        MemoryUnit::Kilobytes => Some(size / 1024),
        MemoryUnit::Megabytes => Some(size),
        MemoryUnit::Gigabytes => size.checked_mul(1024),
        MemoryUnit::Unknown(_) => None,
    }
}
