//! Minidisks and disk pools: defining, copying and deleting minidisks in the directory, querying the space
//! of groups, regions and volumes, and the disks of a running guest.

use super::{DataSecurityErase, DirectoryOperation, decode, require_value, smapi_function};
use crate::error::DecodeError;
use crate::layout::{Field, Layout};
use crate::wire::{KeywordPairs, Limits};

/// The unit of a minidisk size (`allocation_unit_size`, an int1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocationUnit {
    /// Cylinders (CKD, for example 3390).
    Cylinders = 1,
    Blocks512 = 2,
    Blocks1024 = 3,
    Blocks2048 = 4,
    Blocks4096 = 5,
}

impl AllocationUnit {
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(AllocationUnit::Cylinders),
            2 => Some(AllocationUnit::Blocks512),
            3 => Some(AllocationUnit::Blocks1024),
            4 => Some(AllocationUnit::Blocks2048),
            5 => Some(AllocationUnit::Blocks4096),
            _ => None,
        }
    }
}

/// How DirMaint formats a new minidisk (`image_disk_formatting`, an int1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskFormat {
    #[default]
    Unspecified = 0,
    /// Not formatted (what Linux guests want).
    None = 1,
    Cms512 = 2,
    Cms1024 = 3,
    Cms2048 = 4,
    Cms4096 = 5,
    /// CMS-formatted with the default block size.
    Cms = 6,
}

impl DiskFormat {
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(DiskFormat::Unspecified),
            1 => Some(DiskFormat::None),
            2 => Some(DiskFormat::Cms512),
            3 => Some(DiskFormat::Cms1024),
            4 => Some(DiskFormat::Cms2048),
            5 => Some(DiskFormat::Cms4096),
            6 => Some(DiskFormat::Cms),
            _ => None,
        }
    }
}

/// The minidisk passwords (each at most 8 characters, empty for none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskPasswords {
    pub read: String,
    pub write: String,
    pub multi: String,
}

/// `Image_Disk_Create_DM`: adds a minidisk to the target's directory entry, allocated from a group or region
/// (`AUTOG`, `AUTOR`), on a volume (`AUTOV`, `DEVNO`), or a `T-DISK`/`V-DISK`. 408/4 means the address is
/// taken, 408/24 no space left, 420/8 an unknown group or volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDiskCreateDm {
    pub target: String,
    pub vdev: String,
    pub device_type: String,
    pub allocation_type: String,
    pub area_or_volser: String,
    pub unit: AllocationUnit,
    pub size: u32,
    pub mode: String,
    pub format: DiskFormat,
    pub label: String,
    pub passwords: DiskPasswords,
}

smapi_function!(ImageDiskCreateDm, "Image_Disk_Create_DM", DirectoryOperation,
    parameters(self, writer) {
        let size = i32::try_from(self.size).map_err(|_| crate::EncodeError::Invalid {
            field: "image_disk_size",
            reason: format!("{} does not fit a signed 32-bit size", self.size),
        })?;
        writer.string("image_disk_number", &self.vdev, Limits::range(1, 4))?;
        writer.string("image_disk_device_type", &self.device_type, Limits::range(1, 8))?;
        writer.string("image_disk_allocation_type", &self.allocation_type, Limits::range(0, 10))?;
        writer.string("allocation_area_name_or_volser", &self.area_or_volser, Limits::range(0, 8))?;
        writer.int1(self.unit as u8);
        writer.int4(size);
        writer.string("image_disk_mode", &self.mode, Limits::range(0, 3))?;
        writer.int1(self.format as u8);
        writer.string("image_disk_label", &self.label, Limits::range(0, 6))?;
        write_passwords(writer, &self.passwords)
    },
    output(reply) { DirectoryOperation::decode(reply) }
);

fn write_passwords(
    writer: &mut crate::wire::ParameterWriter,
    passwords: &DiskPasswords,
) -> Result<(), crate::EncodeError> {
    writer.string("read_password", &passwords.read, Limits::range(0, 8))?;
    writer.string("write_password", &passwords.write, Limits::range(0, 8))?;
    writer.string("multi_password", &passwords.multi, Limits::range(0, 8))
}

/// `Image_Disk_Copy_DM`: defines a minidisk on the target as a copy of another guest's minidisk (DirMaint
/// DATAMOVE; same device type and size). 404/24 and 404/28 mean type or size differ from the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDiskCopyDm {
    pub target: String,
    pub vdev: String,
    pub source_image: String,
    pub source_vdev: String,
    pub allocation_type: String,
    pub area_or_volser: String,
    pub mode: String,
    pub passwords: DiskPasswords,
}

smapi_function!(ImageDiskCopyDm, "Image_Disk_Copy_DM", DirectoryOperation,
    parameters(self, writer) {
        writer.string("image_disk_number", &self.vdev, Limits::range(1, 4))?;
        writer.string("source_image_name", &self.source_image, Limits::range(1, 8))?;
        writer.string("source_image_disk_number", &self.source_vdev, Limits::range(1, 4))?;
        writer.string("image_disk_allocation_type", &self.allocation_type, Limits::range(0, 10))?;
        writer.string("allocation_area_name_or_volser", &self.area_or_volser, Limits::range(0, 8))?;
        writer.string("image_disk_mode", &self.mode, Limits::range(0, 3))?;
        write_passwords(writer, &self.passwords)
    },
    output(reply) { DirectoryOperation::decode(reply) },
    duration = crate::request::CallDuration::Long
);

/// `Image_Disk_Delete_DM`: removes a minidisk from the directory entry. 408/12 means it is locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDiskDeleteDm {
    pub target: String,
    pub vdev: String,
    pub data_security_erase: DataSecurityErase,
}

impl ImageDiskDeleteDm {
    pub fn new(target: impl Into<String>, vdev: impl Into<String>, data_security_erase: DataSecurityErase) -> Self {
        ImageDiskDeleteDm { target: target.into(), vdev: vdev.into(), data_security_erase }
    }
}

smapi_function!(ImageDiskDeleteDm, "Image_Disk_Delete_DM", DirectoryOperation,
    parameters(self, writer) {
        writer.string("image_disk_number", &self.vdev, Limits::range(1, 4))?;
        writer.int1(self.data_security_erase as u8);
        Ok(())
    },
    output(reply) { DirectoryOperation::decode(reply) }
);

/// What `Image_Volume_Space_Query_DM` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeSpaceQuery {
    /// How the space is defined.
    Definition = 1,
    /// Free extents.
    Free = 2,
    /// Used extents.
    Used = 3,
}

/// What the names of `Image_Volume_Space_Query_DM` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeSpaceEntry {
    Volume = 1,
    Region = 2,
    Group = 3,
}

/// `Image_Volume_Space_Query_DM`: disk pool space by volume, region or group (`*` or blank-separated names).
/// 420/8 means a name is not defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageVolumeSpaceQueryDm {
    pub target: String,
    pub query: VolumeSpaceQuery,
    pub entry: VolumeSpaceEntry,
    pub entry_names: String,
}

impl ImageVolumeSpaceQueryDm {
    pub fn new(
        target: impl Into<String>,
        query: VolumeSpaceQuery,
        entry: VolumeSpaceEntry,
        entry_names: impl Into<String>,
    ) -> Self {
        ImageVolumeSpaceQueryDm { target: target.into(), query, entry, entry_names: entry_names.into() }
    }
}

const VOLUME_SPACE_LAYOUT: Layout = Layout { fields: &[Field::StringArray("records")], optional: true };

smapi_function!(ImageVolumeSpaceQueryDm, "Image_Volume_Space_Query_DM", Vec<String>,
    parameters(self, writer) {
        require_value("entry_names", &self.entry_names)?;
        writer.int1(self.query as u8);
        writer.int1(self.entry as u8);
        writer.string("entry_names", &self.entry_names, Limits::ANY)
    },
    output(reply) { decode(&VOLUME_SPACE_LAYOUT, reply)?.texts("records") }
);

/// `Image_Disk_Query`: the DASD of a running guest, all (`ALL`) or one virtual device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDiskQuery {
    pub target: String,
    pub vdasd_id: String,
}

impl ImageDiskQuery {
    pub fn new(target: impl Into<String>, vdasd_id: impl Into<String>) -> Self {
        ImageDiskQuery { target: target.into(), vdasd_id: vdasd_id.into() }
    }
}

/// 29-byte records back to back: vdev, rdev, access, device type, size, unit, volume label, NUL.
const DISK_QUERY_LAYOUT: Layout = Layout {
    fields: &[Field::RecordsToEnd(
        "vdasds",
        &[
            Field::Fixed("vdev", 4),
            Field::Fixed("rdev", 4),
            Field::Int1("access_type"),
            Field::Fixed("device_type", 4),
            Field::Int8("size"),
            Field::Int1("unit"),
            Field::Fixed("volid", 6),
            Field::Padding(1),
        ],
    )],
    optional: true,
};

/// One disk of a running guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualDasd {
    pub vdev: String,
    pub rdev: String,
    /// 1 read-only, 2 read-write.
    pub access_type: u8,
    pub device_type: String,
    pub size: i64,
    /// 1 cylinders, 2 blocks.
    pub unit: u8,
    pub volid: String,
}

smapi_function!(ImageDiskQuery, "Image_Disk_Query", Vec<VirtualDasd>,
    parameters(self, writer) {
        require_value("vdasd_id", &self.vdasd_id)?;
        let mut pairs = KeywordPairs::new();
        pairs.push("vdasd_id", self.vdasd_id.as_str());
        writer.unframed_pairs("vdasd_id", &pairs)
    },
    output(reply) {
        decode(&DISK_QUERY_LAYOUT, reply)?
            .records("vdasds")?
            .into_iter()
            .map(|mut disk| {
                Ok(VirtualDasd {
                    vdev: disk.text("vdev")?,
                    rdev: disk.text("rdev")?,
                    access_type: disk.int1("access_type")?,
                    device_type: disk.text("device_type")?,
                    size: disk.int8("size")?,
                    unit: disk.int1("unit")?,
                    volid: disk.text("volid")?,
                })
            })
            .collect::<Result<_, DecodeError>>()
    }
);

/// `Image_Disk_Create`: links a minidisk newly defined in the directory into the running guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDiskCreate {
    pub target: String,
    pub vdev: String,
    pub mode: String,
}

impl ImageDiskCreate {
    pub fn new(target: impl Into<String>, vdev: impl Into<String>, mode: impl Into<String>) -> Self {
        ImageDiskCreate { target: target.into(), vdev: vdev.into(), mode: mode.into() }
    }
}

smapi_function!(ImageDiskCreate, "Image_Disk_Create", (),
    parameters(self, writer) {
        writer.string("image_disk_number", &self.vdev, Limits::range(1, 4))?;
        writer.string("image_disk_mode", &self.mode, Limits::range(0, 3))
    },
    output(_reply) { Ok(()) }
);
