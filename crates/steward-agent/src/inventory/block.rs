//! Block devices from `/sys/block`.
//!
//! Every entry of `/sys/block` is a whole disk (partitions live below their disk). Left out are the memory-backed
//! and loop devices (`loop*`, `ram*`, `zram*`) and any device whose size is 0 (an empty CD drive, an unattached
//! `nbd`). For each device: the size from `size` (always in 512-byte sectors, whatever the logical block size),
//! the model from `device/model` (trimmed; virtio and DASD devices have none), `queue/rotational`, `ro`, and the
//! partitions: the subdirectories named after the disk (`vda1`, `nvme0n1p1`, `dasda1`) that have a `partition`
//! file.

use std::path::Path;

use steward_protocol::BlockDevice;

use super::{read_trimmed, read_u64, rooted};

/// Device name prefixes that are never reported.
const SKIPPED_PREFIXES: [&str; 3] = ["loop", "ram", "zram"];

pub(super) fn collect(root: &Path) -> Vec<BlockDevice> {
    let dir = rooted(root, "sys/block");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::debug!(path = %dir.display(), %error, "block devices not readable");
            return Vec::new();
        }
    };
    let mut devices = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        if SKIPPED_PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
            continue;
        }
        let path = entry.path();
        let sectors = read_u64(&path.join("size")).unwrap_or(0);
        if sectors == 0 {
            continue;
        }
        let partitions = partitions(&path, &name);
        devices.push(BlockDevice {
            size_bytes: sectors.saturating_mul(512),
            model: read_trimmed(&path.join("device/model")).unwrap_or_default(),
            rotational: read_u64(&path.join("queue/rotational")) == Some(1),
            read_only: read_u64(&path.join("ro")).is_some_and(|ro| ro != 0),
            partitions,
            name,
        });
    }
    devices
}

/// The partitions of the disk whose sysfs directory is `dir`.
fn partitions(dir: &Path, disk: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.len() > disk.len() && name.starts_with(disk))
        .filter(|name| dir.join(name).join("partition").is_file())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, contents: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
    }

    #[test]
    fn lists_disks_with_partitions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "sys/block/sda/size", "976773168\n");
        write(root, "sys/block/sda/device/model", "ST500DM002-1BD14 \n");
        write(root, "sys/block/sda/queue/rotational", "1\n");
        write(root, "sys/block/sda/ro", "0\n");
        write(root, "sys/block/sda/sda1/partition", "1\n");
        write(root, "sys/block/sda/sda2/partition", "2\n");
        write(root, "sys/block/sda/sda2/size", "2048\n");
        std::fs::create_dir_all(root.join("sys/block/sda/sdaextra")).expect("mkdir");
        std::fs::create_dir_all(root.join("sys/block/sda/holders")).expect("mkdir");
        write(root, "sys/block/dasda/size", "14424480\n");
        write(root, "sys/block/dasda/queue/rotational", "0\n");
        write(root, "sys/block/dasda/ro", "1\n");
        write(root, "sys/block/loop0/size", "1024\n");
        write(root, "sys/block/zram0/size", "1024\n");
        write(root, "sys/block/ram0/size", "1024\n");
        write(root, "sys/block/sr0/size", "0\n");
        write(root, "sys/block/odd/size", "many\n");

        let mut devices = collect(root);
        devices.sort_by(|a, b| a.name.cmp(&b.name));
        for device in &mut devices {
            device.partitions.sort();
        }
        assert_eq!(
            devices,
            [
                BlockDevice {
                    name: "dasda".into(),
                    size_bytes: 14_424_480 * 512,
                    model: String::new(),
                    rotational: false,
                    read_only: true,
                    partitions: vec![],
                },
                BlockDevice {
                    name: "sda".into(),
                    size_bytes: 976_773_168 * 512,
                    model: "ST500DM002-1BD14".into(),
                    rotational: true,
                    read_only: false,
                    partitions: vec!["sda1".into(), "sda2".into()],
                },
            ]
        );
    }

    #[test]
    fn missing_sys_block_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(collect(dir.path()).is_empty());
    }
}
