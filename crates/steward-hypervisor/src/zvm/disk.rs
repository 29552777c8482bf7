//! Minidisks: created from the disk pool, copied (deploy), captured into an image holder, deleted, and the
//! pool's space. A minidisk belongs to a directory entry; a user without one gets a placeholder entry
//! (`NOLOG`, `* STEWARD DISKS`) first, which goes away with its last minidisk.
//!
//! Sizes are whole cylinders of the configured disk type (3390: 849,960 bytes each), rounded up.

use std::path::Path;
use std::time::Instant;

use smapi::ErrorKind;
use smapi::functions::{
    AllocationUnit, DataSecurityErase, DiskFormat as SmapiDiskFormat, DiskPasswords, ImageDeleteDm, ImageDiskCopyDm,
    ImageDiskCreateDm, ImageDiskDeleteDm, ImageVolumeSpaceQueryDm, VolumeSpaceEntry, VolumeSpaceQuery,
};
use tracing::info;

use super::entry::{self, Entry, MinidiskRecord};
use super::names::{self, DiskPath};
use super::{BYTES_PER_3390_CYLINDER, ZvmHost, errors};
use crate::error::{HypervisorError, Result};
use crate::types::{DiskCopyReport, DiskInfo};

impl ZvmHost {
    /// The bytes of one allocation unit of the configured disk type (a 3390 cylinder; 512-byte blocks for FBA).
    pub(crate) fn unit_bytes(&self) -> u64 {
        if self.disk_type.starts_with("3390") { BYTES_PER_3390_CYLINDER } else { 512 }
    }

    /// The units needed for `size_bytes`, rounded up (at least 1).
    fn units_for(&self, what: &DiskPath, size_bytes: u64) -> Result<u32> {
        let units = size_bytes.div_ceil(self.unit_bytes()).max(1);
        u32::try_from(units).map_err(|_| {
            HypervisorError::invalid(
                format!("size of {what}"),
                format!("{size_bytes} bytes is more than a minidisk holds"),
            )
        })
    }

    /// Free and total units of the disk pool (`Image_Volume_Space_Query_DM` on the group).
    pub(crate) async fn pool_space(&self) -> Result<(u64, u64)> {
        let query = |kind, entry, names: &str| ImageVolumeSpaceQueryDm::new(&self.smapi_user, kind, entry, names);
        let operation = format!("querying disk pool {}", self.disk_pool);
        let free = self
            .client
            .call(&query(VolumeSpaceQuery::Free, VolumeSpaceEntry::Group, &self.disk_pool))
            .await
            .map_err(|error| errors::map(operation.clone(), error))?;
        // Free extents: `volid model start size group volid`.
        let free_units = free.iter().filter_map(|record| record.split_whitespace().nth(3)?.parse::<u64>().ok()).sum();
        let definition = self
            .client
            .call(&query(VolumeSpaceQuery::Definition, VolumeSpaceEntry::Group, &self.disk_pool))
            .await
            .map_err(|error| errors::map(operation.clone(), error))?;
        // The group's definition: `group volume volume ...`; each volume's definition: `volid model start size`.
        let volumes: Vec<String> = definition
            .iter()
            .filter_map(|record| {
                let mut words = record.split_whitespace();
                (words.next()? == self.disk_pool).then(|| words.collect::<Vec<_>>().join(" "))
            })
            .collect();
        let mut total_units = 0u64;
        if !volumes.is_empty() {
            let volumes = volumes.join(" ");
            let definitions = self
                .client
                .call(&query(VolumeSpaceQuery::Definition, VolumeSpaceEntry::Volume, &volumes))
                .await
                .map_err(|error| errors::map(operation.clone(), error))?;
            total_units =
                definitions.iter().filter_map(|record| record.split_whitespace().nth(3)?.parse::<u64>().ok()).sum();
        }
        Ok((free_units, total_units))
    }

    /// Refuses to change the minidisks of an entry Steward did not make (a system user's, another tool's),
    /// except image holders, which are found by their prefix.
    fn check_disk_owner(&self, owner: &str, entry: &Entry) -> Result<()> {
        if let Some(reason) = names::system_userid(owner) {
            return Err(HypervisorError::invalid("disk owner", reason));
        }
        if entry.is_steward_entry() || owner.starts_with(&self.image_holder_prefix) {
            return Ok(());
        }
        Err(HypervisorError::invalid(
            "disk path",
            format!("{owner} has a directory entry Steward did not make; its minidisks are left alone"),
        ))
    }

    /// The owner's entry, made a placeholder first when the owner has none.
    async fn entry_for_disks(&self, owner: &str) -> Result<Entry> {
        if let Some(entry) = self.query_entry(owner).await? {
            self.check_disk_owner(owner, &entry)?;
            return Ok(entry);
        }
        self.create_entry(owner, entry::placeholder_records(owner)).await?;
        info!(owner, "placeholder directory entry created to hold minidisks");
        self.query_entry(owner).await?.ok_or_else(|| HypervisorError::DiskMissing { path: owner.into() })
    }

    /// An existing minidisk of the requested size and type counts as created; another is a conflict.
    fn check_existing(&self, path: &DiskPath, existing: &MinidiskRecord, units: Option<u64>) -> Result<()> {
        if existing.device_type != self.disk_type {
            return Err(HypervisorError::DiskConflict {
                path: path.to_path(),
                reason: format!("it is a {} minidisk, not {}", existing.device_type, self.disk_type),
            });
        }
        if let Some(units) = units.filter(|units| *units != existing.size) {
            return Err(HypervisorError::DiskConflict {
                path: path.to_path(),
                reason: format!("it has {} units, not the {units} asked for", existing.size),
            });
        }
        Ok(())
    }

    /// Creates an unformatted minidisk of `size_bytes` (rounded up to whole units) from the pool.
    pub async fn disk_create(&self, path: &Path, size_bytes: u64) -> Result<()> {
        let disk = DiskPath::parse(path)?;
        let units = self.units_for(&disk, size_bytes)?;
        let entry = self.entry_for_disks(&disk.owner).await?;
        if let Some(existing) = entry.minidisk(&disk.vdev) {
            return self.check_existing(&disk, existing, Some(u64::from(units)));
        }
        let request = ImageDiskCreateDm {
            target: disk.owner.clone(),
            vdev: disk.vdev.clone(),
            device_type: self.disk_type.clone(),
            allocation_type: "AUTOG".to_owned(),
            area_or_volser: self.disk_pool.clone(),
            unit: if self.unit_bytes() == BYTES_PER_3390_CYLINDER {
                AllocationUnit::Cylinders
            } else {
                AllocationUnit::Blocks512
            },
            size: units,
            mode: self.disk_mode.clone(),
            format: SmapiDiskFormat::None,
            label: String::new(),
            passwords: DiskPasswords::default(),
        };
        match self.client.call(&request).await {
            Ok(_) => Ok(()),
            Err(error) if errors::is_kind(&error, ErrorKind::AlreadyExists) => {
                let entry = self.query_entry(&disk.owner).await?.unwrap_or_default();
                match entry.minidisk(&disk.vdev) {
                    Some(existing) => self.check_existing(&disk, existing, Some(u64::from(units))),
                    None => Err(errors::map(format!("creating minidisk {disk}"), error)),
                }
            }
            Err(error) => Err(errors::map_allocation(
                format!("creating minidisk {disk} (Image_Disk_Create_DM)"),
                &self.disk_pool,
                format!("minidisk {disk} of {units} units of {}", self.disk_type),
                error,
            )),
        }
    }

    /// The minidisk's device type and size.
    pub async fn disk_info(&self, path: &Path) -> Result<DiskInfo> {
        let disk = DiskPath::parse(path)?;
        let entry = self.query_entry(&disk.owner).await?;
        let minidisk = entry
            .as_ref()
            .and_then(|entry| entry.minidisk(&disk.vdev))
            .ok_or_else(|| HypervisorError::DiskMissing { path: disk.to_path() })?;
        let bytes = minidisk.size.saturating_mul(self.unit_bytes());
        Ok(DiskInfo {
            // A minidisk has no image format; its device type says what it is.
            format: minidisk.device_type.clone(),
            virtual_size_bytes: bytes,
            actual_size_bytes: bytes,
            backing_file: None,
        })
    }

    /// Deletes the minidisk (a missing one, or a missing owner, is deleted already); a placeholder entry goes
    /// with its last minidisk.
    pub async fn disk_delete(&self, path: &Path) -> Result<()> {
        let disk = DiskPath::parse(path)?;
        let Some(entry) = self.query_entry(&disk.owner).await? else { return Ok(()) };
        self.check_disk_owner(&disk.owner, &entry)?;
        if entry.minidisk(&disk.vdev).is_some() {
            let request = ImageDiskDeleteDm::new(&disk.owner, &disk.vdev, DataSecurityErase::Unspecified);
            match self.client.call(&request).await {
                Ok(_) => {}
                Err(error) if errors::is_kind(&error, ErrorKind::NotFound) => {}
                Err(error) => {
                    return Err(errors::map(format!("deleting minidisk {disk} (Image_Disk_Delete_DM)"), error));
                }
            }
        }
        let entry = self.query_entry(&disk.owner).await?;
        if entry.is_some_and(|entry| entry.placeholder_marker && entry.minidisks.is_empty()) {
            match self.client.call(&ImageDeleteDm::new(&disk.owner, DataSecurityErase::Unspecified)).await {
                Ok(_) => info!(owner = %disk.owner, "empty placeholder directory entry deleted"),
                Err(error) if errors::is_kind(&error, ErrorKind::NotFound) => {}
                Err(error) => {
                    return Err(errors::map(format!("deleting the placeholder entry of {}", disk.owner), error));
                }
            }
        }
        Ok(())
    }

    /// Copies a minidisk into another user's entry (`Image_Disk_Copy_DM`, allocated from the pool). The copy
    /// has the source's size; asking for more is refused (DirMaint copies, it does not grow).
    pub async fn disk_copy(
        &self,
        source: &Path,
        destination: &Path,
        size_bytes: Option<u64>,
    ) -> Result<DiskCopyReport> {
        let source = DiskPath::parse(source)?;
        let destination = DiskPath::parse(destination)?;
        let source_disk = self
            .query_entry(&source.owner)
            .await?
            .and_then(|entry| entry.minidisk(&source.vdev).cloned())
            .ok_or_else(|| HypervisorError::DiskMissing { path: source.to_path() })?;
        let bytes = source_disk.size.saturating_mul(self.unit_bytes());
        if let Some(requested) = size_bytes {
            let units = u64::from(self.units_for(&destination, requested)?);
            if units > source_disk.size {
                return Err(HypervisorError::invalid(
                    format!("size of {destination}"),
                    format!(
                        "{requested} bytes is more than the {} units of {source}; a z/VM copy (DirMaint DATAMOVE) has \
                         the source's size",
                        source_disk.size
                    ),
                ));
            }
        }
        let entry = self.entry_for_disks(&destination.owner).await?;
        if let Some(existing) = entry.minidisk(&destination.vdev) {
            self.check_existing(&destination, existing, Some(source_disk.size))?;
            return Ok(DiskCopyReport { bytes, seconds: 0.0, bytes_per_second: 0.0, already_present: true });
        }
        let began = Instant::now();
        let request = ImageDiskCopyDm {
            target: destination.owner.clone(),
            vdev: destination.vdev.clone(),
            source_image: source.owner.clone(),
            source_vdev: source.vdev.clone(),
            allocation_type: "AUTOG".to_owned(),
            area_or_volser: self.disk_pool.clone(),
            mode: self.disk_mode.clone(),
            passwords: DiskPasswords::default(),
        };
        self.client.call(&request).await.map_err(|error| {
            errors::map_allocation(
                format!("copying minidisk {source} to {destination} (Image_Disk_Copy_DM)"),
                &self.disk_pool,
                format!("minidisk {destination} of {} units (a copy of {source})", source_disk.size),
                error,
            )
        })?;
        let seconds = began.elapsed().as_secs_f64();
        Ok(DiskCopyReport {
            bytes,
            seconds,
            bytes_per_second: if seconds > 0.0 { bytes as f64 / seconds } else { 0.0 },
            already_present: false,
        })
    }

    /// Copies a guest's minidisk into an image holder (a `NOLOG` user whose name starts with the configured
    /// prefix, created when missing), where templates keep their disks.
    pub async fn disk_capture(&self, source: &Path, destination: &Path) -> Result<()> {
        let holder = DiskPath::parse(destination)?;
        if !holder.owner.starts_with(&self.image_holder_prefix) {
            return Err(HypervisorError::invalid(
                "capture destination",
                format!(
                    "{holder} is not a minidisk of an image holder: their user IDs start with {} (see \
                     ZvmHost::image_holder_userid)",
                    self.image_holder_prefix
                ),
            ));
        }
        self.disk_copy(source, destination, None).await?;
        Ok(())
    }
}
