//! The z/VM driver: one `ZvmHost` per z/VM system, driven off-box through its SMAPI request server
//! (`smapi::SmapiClient`). The driver keeps no state of its own: the user directory (through DirMaint), the
//! disk pools, the logged-on guests and the virtual switches are the state, so any number of servers can open
//! the same host and a crash loses nothing.
//!
//! # Steward's names on z/VM
//!
//! | Steward | z/VM |
//! |---|---|
//! | guest name | a user ID: 1 to 8 of letters, digits and `@#$+-:_` (others are refused before any call) |
//! | disk path | `USERID/VDEV`, a minidisk of the user's entry (`WEB01/0100`), sized in cylinders (3390) |
//! | network | a virtual switch name (`VSW1`) |
//! | NIC `tap` | the NIC's virtual device number (`0600`; a QDIO NIC takes three numbers from there) |
//! | NIC `mac` | the system's MAC prefix (`ZvmHostConfig::mac_prefix`, `VMLAN MACPREFIX`) and the `MACID` |
//! | `GuestSpec` | the directory entry (see `entry` for its statements) |
//! | agent channel | an `IUCV` statement allowing the guest to reach `ZvmHostConfig::agent_iucv_peer` |
//!
//! Names are accepted in any case and written upper case; `describe_guest` gives disk paths, networks and
//! device numbers back upper case (and the guest name as the caller spelled it), so a spec written that way
//! comes back equal.
//!
//! # Verbs
//!
//! - Disks come before the guest (the sagas' order, as on QEMU). A minidisk belongs to a directory entry, so
//!   `disk_create` for a user without one first creates a placeholder entry (`NOLOG`, marked
//!   `* STEWARD DISKS`) and adds the minidisk from the pool (`Image_Disk_Create_DM`, `AUTOG`, polled while
//!   DirMaint works: RC 592). `define_guest` then completes the entry: `Image_Lock_DM`, `Image_Replace_DM`
//!   with the guest's statements and the entry's MDISK statements as they are, which releases the lock.
//!   `disk_delete` deletes the placeholder with its last minidisk.
//! - NICs are NICDEF statements of the entry, written by `define_guest`. Before, each virtual switch is
//!   queried (`Virtual_Network_Vswitch_Query_Extended`) and the user granted
//!   (`Virtual_Network_Vswitch_Set_Extended grant_userid`) only when it is not yet: granting again disturbs the
//!   guest's running NICs. `nic_create`/`nic_delete` therefore only validate their arguments.
//! - `start`/`stop` are `Image_Activate`/`Image_Deactivate` (the stop timeout is the grace time, `WITHIN n`;
//!   a guest still logged on after it is logged off `IMMED`), `status` is `Image_Status_Query`.
//!   z/VM guests are no host processes: their `pid` is always 0.
//! - `undefine_guest`: `Image_Deactivate IMMED`, then `Image_Delete_DM` (which frees the minidisks); an entry
//!   that does not exist counts as deleted.
//! - `disk_copy` is `Image_Disk_Copy_DM` (DirMaint DATAMOVE: the copy has the source's size);
//!   `disk_capture` copies a guest's minidisk into an image holder, a `NOLOG` user whose name starts with
//!   `ZvmHostConfig::image_holder_prefix` (created when missing); deploying is `disk_copy` from the holder.
//! - z/VM has no copy-on-write disks, config drives, offline sealing, host processes or sockets, so
//!   `disk_overlay`, `config_drive_write`, `seal_disk`, `agent_socket`, `adopt_process`, `release_process`
//!   and `console_log` return `Unsupported` with what z/VM does instead.
//!
//! Modules: `names` (user IDs, disk paths, MAC addresses), `entry` (the directory entry of a `GuestSpec` and
//! back), `errors` (SMAPI errors to `HypervisorError`), `guest` (definition and lifecycle), `disk`
//! (minidisks), `network` (virtual switches and grants), `live` (what a logged-on guest has, `sync_live`).

pub mod disk;
pub mod entry;
pub mod errors;
pub mod guest;
pub mod live;
pub mod names;
pub mod network;
pub mod preflight;

use std::path::{Path, PathBuf};
use std::time::Duration;

use smapi::functions::ImageQueryDm;
use smapi::{ClientConfig, Credentials, ErrorKind, SmapiClient};

use crate::error::{HypervisorError, Result};
use crate::hypervisor::{Hypervisor, HypervisorFuture};
use crate::types::{
    Capabilities, ConfigDrive, DefineOutcome, DiskCopyReport, DiskFormat, DiskInfo, DiskNaming, GuestDescription,
    GuestListing, GuestSpec, GuestState, HostFacts, LiveSync, StartOutcome, StopOutcome,
};
use entry::{Entry, EntryPolicy};
use names::MacPrefix;

/// The bytes of one 3390 cylinder (15 tracks of 56,664 bytes).
pub const BYTES_PER_3390_CYLINDER: u64 = 15 * 56_664;

/// How to reach and use one z/VM system.
#[derive(Debug, Clone)]
pub struct ZvmHostConfig {
    /// The SMAPI request server: address (`host:port`, 44444 by default), optional TLS, timeouts, how many
    /// requests at once, how DirMaint operations are polled.
    pub client: ClientConfig,
    /// The SMAPI user (listed in VSMWORK1 AUTHLIST) and its password.
    pub credentials: Credentials,
    /// The DirMaint group new minidisks are allocated from (`AUTOG`).
    pub disk_pool: String,
    /// The device type of new minidisks (`3390`).
    pub disk_type: String,
    /// The access mode of new minidisks (`MR`: multiple-read, write when no one else writes).
    pub disk_mode: String,
    /// The first characters of image-holder user IDs (the `NOLOG` users holding captured template disks).
    pub image_holder_prefix: String,
    /// The password of guest entries: `AUTOONLY` (SMAPI and AUTOLOG may log the guest on, nobody can log on
    /// with a password), or `LBYONLY`, or a real password where the site wants one. Placeholder and image-holder
    /// entries are always `NOLOG`.
    pub guest_password: String,
    /// The profile guest entries `INCLUDE` (console and spool devices), if any.
    pub profile: Option<String>,
    /// The maximum CPU count of `MACHINE ESA n` (at least the guest's CPU count).
    pub max_cpus: u32,
    /// The system's MAC prefix (`VMLAN MACPREFIX`, for example `02:00:5a`).
    pub mac_prefix: String,
    /// The user the guests' agents talk to over IUCV (the server's user on this system), written as
    /// `IUCV <peer>` into the entry of a guest with an agent channel.
    pub agent_iucv_peer: String,
    /// The real device (OSA) of virtual switches `network_create` defines, if any (`NOUPLINK` without).
    pub vswitch_real_device: Option<String>,
}

impl ZvmHostConfig {
    /// Defaults for a system at `address` with these credentials, allocating from `disk_pool`.
    pub fn new(address: impl Into<String>, credentials: Credentials, disk_pool: impl Into<String>) -> Self {
        ZvmHostConfig {
            client: ClientConfig::new(address),
            credentials,
            disk_pool: disk_pool.into(),
            disk_type: "3390".to_owned(),
            disk_mode: "MR".to_owned(),
            image_holder_prefix: "STWIMG".to_owned(),
            guest_password: "AUTOONLY".to_owned(),
            profile: None,
            max_cpus: 8,
            mac_prefix: "02:00:00".to_owned(),
            agent_iucv_peer: "STEWARD".to_owned(),
            vswitch_real_device: None,
        }
    }
}

/// A z/VM system, driven through SMAPI.
pub struct ZvmHost {
    client: SmapiClient,
    /// The SMAPI user, the target of system-wide requests.
    smapi_user: String,
    disk_pool: String,
    disk_type: String,
    disk_mode: String,
    image_holder_prefix: String,
    vswitch_real_device: Option<String>,
    policy: EntryPolicy,
}

impl std::fmt::Debug for ZvmHost {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ZvmHost")
            .field("address", &self.client.config().address)
            .field("smapi_user", &self.smapi_user)
            .field("disk_pool", &self.disk_pool)
            .finish_non_exhaustive()
    }
}

impl ZvmHost {
    /// Checks the configuration (names, MAC prefix) and makes the client; nothing is sent yet.
    pub fn new(config: ZvmHostConfig) -> Result<Self> {
        let disk_pool = names::zvm_name("disk pool (DirMaint group)", &config.disk_pool)?;
        let image_holder_prefix = config.image_holder_prefix.to_ascii_uppercase();
        if image_holder_prefix.is_empty() || image_holder_prefix.len() > 7 {
            return Err(HypervisorError::invalid(
                "image holder prefix",
                "must be 1 to 7 characters, so that a holder's user ID (at most 8) can extend it",
            ));
        }
        names::zvm_name("image holder prefix", &image_holder_prefix)?;
        let profile = config.profile.as_deref().map(|profile| names::zvm_name("profile", profile)).transpose()?;
        let iucv_peer = names::zvm_name("agent IUCV peer", &config.agent_iucv_peer)?;
        if !(1..=64).contains(&config.max_cpus) {
            return Err(HypervisorError::invalid("maximum CPU count", "must be 1 to 64"));
        }
        for (what, value) in [("guest password", &config.guest_password), ("disk type", &config.disk_type)] {
            if value.is_empty() || value.len() > 8 || !value.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
                return Err(HypervisorError::invalid(what, format!("{value:?} is not 1 to 8 letters and digits")));
            }
        }
        if !["R", "RR", "W", "WR", "M", "MR", "MW"].contains(&config.disk_mode.to_ascii_uppercase().as_str()) {
            return Err(HypervisorError::invalid(
                "disk mode",
                format!("{:?} is not a minidisk access mode", config.disk_mode),
            ));
        }
        let vswitch_real_device = config
            .vswitch_real_device
            .as_deref()
            .map(|device| names::vdev("virtual switch real device", device))
            .transpose()?;
        Ok(ZvmHost {
            smapi_user: config.credentials.userid().to_ascii_uppercase(),
            client: SmapiClient::new(config.client, config.credentials),
            disk_pool,
            disk_type: config.disk_type.to_ascii_uppercase(),
            disk_mode: config.disk_mode.to_ascii_uppercase(),
            image_holder_prefix,
            vswitch_real_device,
            policy: EntryPolicy {
                password: config.guest_password.to_ascii_uppercase(),
                profile,
                max_cpus: config.max_cpus,
                iucv_peer,
                mac_prefix: MacPrefix::parse(&config.mac_prefix)?,
            },
        })
    }

    /// The SMAPI client (for tools and tests that need a function the trait does not cover).
    pub fn client(&self) -> &SmapiClient {
        &self.client
    }

    /// The DirMaint group minidisks come from.
    pub fn disk_pool(&self) -> &str {
        &self.disk_pool
    }

    /// The user ID of image holder number `index` (`STWIMG01`): the prefix, then the number in as many
    /// decimal digits as the 8 characters leave (at least 1).
    pub fn image_holder_userid(&self, index: u32) -> Result<String> {
        let width = 8 - self.image_holder_prefix.len();
        let number = format!("{index:0width$}");
        if number.len() > width {
            return Err(HypervisorError::invalid(
                "image holder number",
                format!("{index} does not fit the {width} characters after {}", self.image_holder_prefix),
            ));
        }
        Ok(format!("{}{number}", self.image_holder_prefix))
    }

    /// The user's directory entry; `None` when it has none (400/4).
    pub(crate) async fn query_entry(&self, userid: &str) -> Result<Option<Entry>> {
        match self.client.call(&ImageQueryDm::new(userid)).await {
            Ok(records) => Ok(Some(Entry::parse(&records))),
            Err(error) if errors::is_kind(&error, ErrorKind::NotFound) => Ok(None),
            Err(error) => Err(errors::map(format!("reading the directory entry of {userid} (Image_Query_DM)"), error)),
        }
    }

    /// An `Unsupported` error saying why and what z/VM uses instead.
    fn unsupported(operation: &str, instead: &str) -> HypervisorError {
        HypervisorError::Unsupported { driver: "zvm".to_owned(), operation: format!("{operation} ({instead})") }
    }
}

impl Hypervisor for ZvmHost {
    fn driver_name(&self) -> &'static str {
        "zvm"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            copy_on_write: false,
            config_drive: false,
            sealing: false,
            // The agent's IUCV channel is not built yet (docs/zvm.md).
            agent_channel: false,
            // SMAPI cannot upload a file into a minidisk.
            image_import: false,
            process_adoption: false,
            definition_adoption: true,
            mac_prefix: self.policy.mac_prefix.0,
            disk_naming: DiskNaming::Minidisks,
        }
    }

    fn image_location(&self, index: u32) -> Option<PathBuf> {
        // Image holder 01 first, 0x1000 minidisks each (device numbers 1000 to 1FFF), then holder 02, ...
        let holder = self.image_holder_userid(index / 0x1000 + 1).ok()?;
        Some(PathBuf::from(format!("{holder}/{:04X}", 0x1000 + index % 0x1000)))
    }

    fn check_guest_name(&self, name: &str) -> Result<()> {
        names::guest_userid(name).map(drop)
    }

    fn adopt_guest<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(ZvmHost::adopt_guest(self, name))
    }

    fn release_guest<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(ZvmHost::release_guest(self, name))
    }

    fn probe(&self) -> HypervisorFuture<'_, HostFacts> {
        Box::pin(ZvmHost::probe(self))
    }

    fn define_guest<'a>(&'a self, spec: &'a GuestSpec) -> HypervisorFuture<'a, DefineOutcome> {
        Box::pin(ZvmHost::define_guest(self, spec))
    }

    fn undefine_guest<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(ZvmHost::undefine_guest(self, name))
    }

    fn defined_guests(&self) -> HypervisorFuture<'_, Vec<String>> {
        Box::pin(ZvmHost::defined_guests(self))
    }

    fn start<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, StartOutcome> {
        Box::pin(ZvmHost::start(self, name))
    }

    fn stop<'a>(&'a self, name: &'a str, timeout: Duration) -> HypervisorFuture<'a, StopOutcome> {
        Box::pin(ZvmHost::stop(self, name, timeout))
    }

    fn restart<'a>(&'a self, name: &'a str, timeout: Duration) -> HypervisorFuture<'a, StartOutcome> {
        Box::pin(async move {
            ZvmHost::stop(self, name, timeout).await?;
            ZvmHost::start(self, name).await
        })
    }

    fn status<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, GuestState> {
        Box::pin(ZvmHost::status(self, name))
    }

    fn describe_guest<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, GuestDescription> {
        Box::pin(ZvmHost::describe_guest(self, name))
    }

    fn sync_live<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, LiveSync> {
        Box::pin(ZvmHost::sync_live(self, name))
    }

    fn console_log<'a>(&'a self, _name: &'a str, _max_bytes: usize) -> HypervisorFuture<'a, String> {
        Box::pin(async move {
            Err(ZvmHost::unsupported(
                "console_log",
                "a z/VM guest's console is a 3215 device of CP, not a file; SMAPI cannot read it, the agent reports \
                 the guest's logs",
            ))
        })
    }

    fn list_guests(&self) -> HypervisorFuture<'_, Vec<GuestListing>> {
        Box::pin(ZvmHost::list_guests(self))
    }

    fn set_cpu_share<'a>(&'a self, name: &'a str, share: u32) -> HypervisorFuture<'a, ()> {
        Box::pin(ZvmHost::set_cpu_share(self, name, share))
    }

    fn adopt_process<'a>(&'a self, _name: &'a str, _pid: u32) -> HypervisorFuture<'a, ()> {
        Box::pin(async move {
            Err(ZvmHost::unsupported(
                "adopt_process",
                "z/VM guests are user IDs, not host processes; every directory entry is already reachable by name",
            ))
        })
    }

    fn release_process<'a>(&'a self, _name: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(async move {
            Err(ZvmHost::unsupported("release_process", "z/VM guests are user IDs, not host processes to hand back"))
        })
    }

    fn agent_socket(&self, _name: &str) -> Result<PathBuf> {
        Err(ZvmHost::unsupported(
            "agent_socket",
            "on z/VM the agent channel is IUCV between the guest and the server's user, not a socket on a host",
        ))
    }

    fn disk_create<'a>(&'a self, path: &'a Path, size_bytes: u64) -> HypervisorFuture<'a, ()> {
        Box::pin(ZvmHost::disk_create(self, path, size_bytes))
    }

    fn disk_overlay<'a>(
        &'a self,
        _path: &'a Path,
        _backing: &'a Path,
        _backing_format: DiskFormat,
        _size_bytes: Option<u64>,
    ) -> HypervisorFuture<'a, ()> {
        Box::pin(async move {
            Err(ZvmHost::unsupported(
                "disk_overlay",
                "z/VM minidisks have no copy-on-write; use disk_copy (Image_Disk_Copy_DM) instead",
            ))
        })
    }

    fn disk_copy<'a>(
        &'a self,
        source: &'a Path,
        destination: &'a Path,
        size_bytes: Option<u64>,
    ) -> HypervisorFuture<'a, DiskCopyReport> {
        Box::pin(ZvmHost::disk_copy(self, source, destination, size_bytes))
    }

    fn disk_capture<'a>(&'a self, source: &'a Path, destination: &'a Path) -> HypervisorFuture<'a, ()> {
        Box::pin(ZvmHost::disk_capture(self, source, destination))
    }

    fn disk_info<'a>(&'a self, path: &'a Path) -> HypervisorFuture<'a, DiskInfo> {
        Box::pin(ZvmHost::disk_info(self, path))
    }

    fn disk_delete<'a>(&'a self, path: &'a Path) -> HypervisorFuture<'a, ()> {
        Box::pin(ZvmHost::disk_delete(self, path))
    }

    fn seal_disk<'a>(&'a self, _path: &'a Path) -> HypervisorFuture<'a, Vec<String>> {
        Box::pin(async move {
            Err(ZvmHost::unsupported(
                "seal_disk",
                "the driver cannot read a minidisk's file system off-line; the image must reset its identity \
                 itself at first boot (docs/zvm.md)",
            ))
        })
    }

    fn config_drive_write<'a>(&'a self, _path: &'a Path, _drive: &'a ConfigDrive) -> HypervisorFuture<'a, ()> {
        Box::pin(async move {
            Err(ZvmHost::unsupported(
                "config_drive_write",
                "z/VM has no config drives; personalization reaches the guest through the agent at first boot",
            ))
        })
    }

    fn network_create<'a>(&'a self, network: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(ZvmHost::network_create(self, network))
    }

    fn network_delete<'a>(&'a self, network: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(ZvmHost::network_delete(self, network))
    }

    fn nic_create<'a>(&'a self, network: &'a str, tap: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(async move {
            // A NIC is a NICDEF of the guest's entry, written by define_guest (with the grant checked first).
            names::zvm_name("network (a virtual switch)", network)?;
            names::vdev("tap (the NIC's virtual device number)", tap)?;
            Ok(())
        })
    }

    fn nic_delete<'a>(&'a self, tap: &'a str) -> HypervisorFuture<'a, ()> {
        Box::pin(async move {
            // The NICDEF goes with the entry (undefine_guest) or with the next define_guest without it.
            names::vdev("tap (the NIC's virtual device number)", tap)?;
            Ok(())
        })
    }
}
