//! Guests on z/VM: the host's facts, the directory entry (`define_guest`, `undefine_guest`,
//! `defined_guests`, `set_cpu_share`) and the lifecycle (`start`, `stop`, `status`, `list_guests`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use smapi::ErrorKind;
use smapi::functions::{
    DataSecurityErase, DeviceType, ForceTime, ImageActivate, ImageActiveConfigurationQuery, ImageCreateDm,
    ImageDeactivate, ImageDefinitionUpdateDm, ImageDeleteDm, ImageLockDm, ImageNameQueryDm, ImageReplaceDm,
    ImageStatusQuery, ImageUnlockDm, QueryApiFunctionalLevel, SystemInfoQuery,
};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::entry::{self, Entry};
use super::{ZvmHost, errors, names};
use crate::error::{HypervisorError, Result};
use crate::types::{
    Accelerator, Arch, DefineOutcome, EmulatorFacts, GuestListing, GuestSpec, GuestState, HostFacts, StartOutcome,
    StopOutcome,
};

/// z/VM guests are no host processes; every running guest reports this pid.
pub const ZVM_PID: u32 = 0;

/// How often `stop` looks whether a guest that got the shutdown signal has logged off.
const LOGOFF_POLL: Duration = Duration::from_millis(500);

impl ZvmHost {
    /// The functional level, CP level and storage of the system, and the space of the disk pool.
    pub async fn probe(&self) -> Result<HostFacts> {
        let level = self
            .client
            .call(&QueryApiFunctionalLevel::new(&self.smapi_user))
            .await
            .map_err(|error| errors::map("querying the SMAPI functional level", error))?;
        let system = self
            .client
            .call(&SystemInfoQuery::new(&self.smapi_user))
            .await
            .map_err(|error| errors::map("querying the system (System_Info_Query)", error))?;
        let storage = system.storage_info();
        let memory_bytes = entry::storage_mib(&storage.storage)
            .or_else(|| entry::storage_mib(&storage.configured))
            .unwrap_or(0)
            .saturating_mul(1 << 20);
        let (free_units, total_units) = self.pool_space().await?;
        let unit_bytes = self.unit_bytes();
        Ok(HostFacts {
            emulators: vec![EmulatorFacts {
                arch: Arch::S390x,
                binary: PathBuf::from(format!("z/VM CP at {}", self.client.config().address)),
                version: format!("{} (SMAPI level {}: {})", system.cp_level, level.level, level.description()),
                accelerator: Accelerator::ZvmCp,
            }],
            // SMAPI does not report the real processors through the functions this driver uses.
            cpus: 0,
            memory_total_bytes: memory_bytes,
            memory_available_bytes: memory_bytes,
            storage_directory: PathBuf::from(format!("DirMaint group {}", self.disk_pool)),
            storage_free_bytes: free_units.saturating_mul(unit_bytes),
            storage_total_bytes: total_units.saturating_mul(unit_bytes),
        })
    }

    /// Stores the guest's directory entry: creates it, completes `disk_create`'s placeholder, or replaces it
    /// (lock, replace, which unlocks) when it differs. Every virtual switch of its NICs is checked for the
    /// user's grant first, and granted only when the grant is missing.
    pub async fn define_guest(&self, spec: &GuestSpec) -> Result<DefineOutcome> {
        let entry::CheckedSpec { userid, disks, nics } = entry::check_spec(spec, &self.policy)?;
        let current = self.query_entry(&userid).await?;
        let Some(current) = current else {
            return Err(HypervisorError::DiskMissing { path: disks[0].to_path() });
        };
        if !current.is_steward_entry() {
            return Err(HypervisorError::invalid(
                "guest name",
                format!("{userid} has a directory entry Steward did not make; it is left alone"),
            ));
        }
        let records = entry::guest_records(spec, &current, &self.policy)?;
        let mut switches: Vec<&str> = nics.iter().map(|nic| nic.vswitch.as_str()).collect();
        switches.sort_unstable();
        switches.dedup();
        for vswitch in switches {
            self.ensure_grant(vswitch, &userid).await?;
        }
        if entry::same_records(&records, &current.records) {
            return Ok(DefineOutcome::Unchanged);
        }
        self.replace_entry(&userid, records).await?;
        info!(guest = %userid, "z/VM directory entry written");
        Ok(if current.guest_marker { DefineOutcome::Updated } else { DefineOutcome::Created })
    }

    /// Replaces a whole entry: lock, replace (which releases the lock). A lock left by this SMAPI user (a crash
    /// between lock and replace) does not stop the replace; a lock someone else holds makes it fail (retryable).
    /// On failure, a lock taken here is released; one found is left to its holder.
    async fn replace_entry(&self, userid: &str, records: Vec<String>) -> Result<()> {
        let locked_here = match self.client.call(&ImageLockDm::new(userid, "")).await {
            Ok(_) => true,
            Err(error) if errors::is_kind(&error, ErrorKind::Locked) => {
                warn!(guest = %userid, "directory entry already locked; replacing it if the lock is ours");
                false
            }
            Err(error) => return Err(errors::map(format!("locking the directory entry of {userid}"), error)),
        };
        if let Err(error) = self.client.call(&ImageReplaceDm::new(userid, records)).await {
            if locked_here && let Err(unlock) = self.client.call(&ImageUnlockDm::new(userid, "")).await {
                warn!(guest = %userid, error = %unlock, "could not release the directory lock");
            }
            return Err(errors::map(format!("replacing the directory entry of {userid} (Image_Replace_DM)"), error));
        }
        Ok(())
    }

    /// Creates an entry from records; an entry that exists already counts as created.
    pub(crate) async fn create_entry(&self, userid: &str, records: Vec<String>) -> Result<()> {
        match self.client.call(&ImageCreateDm::from_records(userid, records)).await {
            Ok(_) => Ok(()),
            Err(error) if errors::is_kind(&error, ErrorKind::AlreadyExists) => Ok(()),
            Err(error) => {
                Err(errors::map(format!("creating the directory entry of {userid} (Image_Create_DM)"), error))
            }
        }
    }

    /// Logs the guest off at once if it runs, then deletes its entry with its minidisks; a missing entry is
    /// deleted already. An entry Steward did not make (a system user's) is refused, never logged off.
    pub async fn undefine_guest(&self, name: &str) -> Result<()> {
        let userid = names::guest_userid(name)?;
        match self.query_entry(&userid).await? {
            None => return Ok(()),
            Some(entry) if !entry.is_steward_entry() => {
                return Err(HypervisorError::invalid(
                    "guest name",
                    format!("{userid} has a directory entry Steward did not make; it is left alone"),
                ));
            }
            Some(_) => {}
        }
        self.deactivate_immediately(&userid).await?;
        match self.client.call(&ImageDeleteDm::new(&userid, DataSecurityErase::Unspecified)).await {
            Ok(_) => Ok(()),
            Err(error) if errors::is_kind(&error, ErrorKind::NotFound) => Ok(()),
            Err(error) => {
                Err(errors::map(format!("deleting the directory entry of {userid} (Image_Delete_DM)"), error))
            }
        }
    }

    /// Marks an entry Steward did not make as a Steward guest (explicit adoption, `virtual-servers register`),
    /// so that the other verbs may change it; the rest of the entry stays as it is. System users are refused.
    pub async fn adopt_guest(&self, name: &str) -> Result<()> {
        let userid = names::guest_userid(name)?;
        let entry =
            self.query_entry(&userid).await?.ok_or_else(|| HypervisorError::NotFound { guest: name.to_owned() })?;
        if entry.guest_marker {
            return Ok(());
        }
        if entry.placeholder_marker {
            return Err(HypervisorError::invalid(
                "guest name",
                format!("{userid} is a placeholder entry holding minidisks, not a guest"),
            ));
        }
        let mut records = entry.records.clone();
        records.insert(1.min(records.len()), entry::GUEST_MARKER.to_owned());
        self.replace_entry(&userid, records).await?;
        info!(guest = %userid, "directory entry adopted");
        Ok(())
    }

    /// Undoes `adopt_guest`: removes the marker, leaving the entry otherwise as it is.
    pub async fn release_guest(&self, name: &str) -> Result<()> {
        let userid = names::guest_userid(name)?;
        let Some(entry) = self.query_entry(&userid).await? else { return Ok(()) };
        if !entry.guest_marker {
            return Ok(());
        }
        let records = entry.records.iter().filter(|record| record.trim() != entry::GUEST_MARKER).cloned().collect();
        self.replace_entry(&userid, records).await?;
        info!(guest = %userid, "directory entry released");
        Ok(())
    }

    /// Logs a guest off with `IMMED`; a guest that is not logged on is fine.
    async fn deactivate_immediately(&self, userid: &str) -> Result<()> {
        match self.client.call(&ImageDeactivate::new(userid, ForceTime::immediately())).await {
            Ok(_) => Ok(()),
            Err(error) if errors::is_kind(&error, ErrorKind::NotActive) => Ok(()),
            Err(error) => Err(errors::map(format!("logging {userid} off (Image_Deactivate IMMED)"), error)),
        }
    }

    /// The entries Steward defined as guests (marked `* STEWARD GUEST`), read concurrently within the client's
    /// request limit.
    pub async fn defined_guests(&self) -> Result<Vec<String>> {
        let names = match self.client.call(&ImageNameQueryDm::new(&self.smapi_user)).await {
            Ok(names) => names,
            Err(error) => return Err(errors::map("listing the directory (Image_Name_Query_DM)", error)),
        };
        let mut reads = JoinSet::new();
        for name in names.into_iter().filter(|name| names::userid(name).is_ok()) {
            let client = self.client.clone();
            reads.spawn(async move {
                let result = client.call(&smapi::functions::ImageQueryDm::new(&name)).await;
                (name, result)
            });
        }
        let mut guests = Vec::new();
        while let Some(joined) = reads.join_next().await {
            let Ok((name, result)) = joined else { continue };
            match result {
                Ok(records) if Entry::parse(&records).guest_marker => guests.push(name),
                Ok(_) => {}
                Err(error) if errors::is_kind(&error, ErrorKind::NotFound) => {}
                Err(error) => return Err(errors::map(format!("reading the directory entry of {name}"), error)),
            }
        }
        guests.sort();
        Ok(guests)
    }

    /// Logs the guest on (`Image_Activate`).
    pub async fn start(&self, name: &str) -> Result<StartOutcome> {
        let userid = names::guest_userid(name)?;
        match self.client.call(&ImageActivate::new(&userid)).await {
            Ok(_) => Ok(StartOutcome::Started { pid: ZVM_PID }),
            Err(error) if errors::is_kind(&error, ErrorKind::AlreadyActive) => {
                Ok(StartOutcome::AlreadyRunning { pid: ZVM_PID })
            }
            Err(error) if errors::codes(&error) == Some((200, 4)) => match self.query_entry(&userid).await? {
                None => Err(HypervisorError::NotFound { guest: name.to_owned() }),
                Some(entry) => Err(HypervisorError::invalid(
                    "guest",
                    format!(
                        "{userid} cannot log on: its entry's password is {} (define_guest has not completed it)",
                        entry.password
                    ),
                )),
            },
            Err(error) => Err(errors::map(format!("logging {userid} on (Image_Activate)"), error)),
        }
    }

    /// Signals the guest to shut down and gives it `timeout` (`Image_Deactivate WITHIN n`, at most what a
    /// request may take); a guest still logged on after that is logged off `IMMED`.
    pub async fn stop(&self, name: &str, timeout: Duration) -> Result<StopOutcome> {
        let userid = names::guest_userid(name)?;
        let began = Instant::now();
        // The reply waits for the logoff on some systems: keep the grace time within the request timeout.
        let request_limit = self.client.config().request_timeout.saturating_sub(Duration::from_secs(10));
        let grace = timeout.min(request_limit).as_secs().clamp(1, 65_535);
        let force_time = ForceTime::within(u16::try_from(grace).unwrap_or(u16::MAX))
            .map_err(|error| HypervisorError::invalid("stop timeout", error.to_string()))?;
        let within = match self.client.call(&ImageDeactivate::new(&userid, force_time)).await {
            Ok(result) => result.within_seconds,
            Err(error) if errors::is_kind(&error, ErrorKind::NotActive) => {
                return match self.query_entry(&userid).await? {
                    Some(_) => Ok(StopOutcome::AlreadyStopped),
                    None => Err(HypervisorError::NotFound { guest: name.to_owned() }),
                };
            }
            Err(error) if errors::is_kind(&error, ErrorKind::BeingDeactivated) => None,
            Err(error) => return Err(errors::map(format!("logging {userid} off (Image_Deactivate)"), error)),
        };
        // Wait for the logoff where the reply did not (z/VM answers when the signal went out).
        let deadline = began + timeout;
        while self.is_logged_on(&userid).await? {
            if Instant::now() >= deadline {
                self.deactivate_immediately(&userid).await?;
                return Ok(StopOutcome::Forced);
            }
            tokio::time::sleep(LOGOFF_POLL).await;
        }
        match within {
            Some(seconds) if u64::try_from(seconds).unwrap_or(u64::MAX) >= grace => Ok(StopOutcome::Forced),
            _ => Ok(StopOutcome::Graceful),
        }
    }

    /// Whether the user is logged on (`Image_Status_Query`).
    pub(crate) async fn is_logged_on(&self, userid: &str) -> Result<bool> {
        let status = self
            .client
            .call(&ImageStatusQuery::new(userid))
            .await
            .map_err(|error| errors::map(format!("querying the status of {userid} (Image_Status_Query)"), error))?;
        Ok(!status.target_not_active && status.active_images.iter().any(|image| image.eq_ignore_ascii_case(userid)))
    }

    /// Whether a defined guest is logged on.
    pub async fn status(&self, name: &str) -> Result<GuestState> {
        let userid = names::userid(name)?;
        if self.is_logged_on(&userid).await? {
            return Ok(GuestState::Running { pid: ZVM_PID });
        }
        match self.query_entry(&userid).await? {
            Some(_) => Ok(GuestState::Stopped),
            None => Err(HypervisorError::NotFound { guest: name.to_owned() }),
        }
    }

    /// Changes the relative CPU share in the directory (`Image_Definition_Update_DM SHARE=RELATIVE=n`); a
    /// logged-on guest keeps its share until `sync_live` or its next logon.
    pub async fn set_cpu_share(&self, name: &str, share: u32) -> Result<()> {
        let userid = names::guest_userid(name)?;
        crate::validate::cpu_share(share)?;
        let update = ImageDefinitionUpdateDm::new(&userid, vec![format!("SHARE=RELATIVE={share}")]);
        match self.client.call(&update).await {
            Ok(_) => Ok(()),
            Err(error) if errors::is_kind(&error, ErrorKind::NotFound) => {
                Err(HypervisorError::NotFound { guest: name.to_owned() })
            }
            Err(error) => {
                Err(errors::map(format!("setting the CPU share of {userid} (Image_Definition_Update_DM)"), error))
            }
        }
    }

    /// Every logged-on user with what `Image_Active_Configuration_Query` tells of it; `managed` for the guests
    /// Steward defined.
    pub async fn list_guests(&self) -> Result<Vec<GuestListing>> {
        let status = self
            .client
            .call(&ImageStatusQuery::new("*"))
            .await
            .map_err(|error| errors::map("listing the logged-on users (Image_Status_Query *)", error))?;
        let mut listings = Vec::with_capacity(status.active_images.len());
        for userid in status.active_images {
            let managed = matches!(self.query_entry(&userid).await, Ok(Some(entry)) if entry.guest_marker);
            listings.push(self.listing(&userid, managed).await?);
        }
        Ok(listings)
    }

    /// One logged-on user as a listing; a user that logged off meanwhile is listed by name only.
    pub(crate) async fn listing(&self, userid: &str, managed: bool) -> Result<GuestListing> {
        let mut listing = GuestListing {
            pid: ZVM_PID,
            name: Some(userid.to_owned()),
            arch: Some(Arch::S390x),
            memory_mib: None,
            cpus: None,
            disks: Vec::new(),
            managed,
        };
        match self.client.call(&ImageActiveConfigurationQuery::new(userid)).await {
            Ok(configuration) => {
                listing.memory_mib = super::live::memory_mib(&configuration);
                listing.cpus = u32::try_from(configuration.number_cpus).ok();
                listing.disks = configuration
                    .devices
                    .iter()
                    .filter(|device| device.device_type == DeviceType::Dasd)
                    .filter_map(|device| names::vdev("device", &device.address).ok())
                    .map(|vdev| names::DiskPath { owner: userid.to_owned(), vdev }.to_path())
                    .collect();
            }
            Err(error) if errors::is_kind(&error, ErrorKind::NotActive) => {}
            Err(error) => return Err(errors::map(format!("querying the running configuration of {userid}"), error)),
        }
        Ok(listing)
    }
}
