//! Sealing a captured image: removing what makes a guest *that* guest (machine id, SSH host keys, MAC-bound
//! network configuration, agent identity, cloud-init instance state, DHCP leases) so clones of the image come
//! up as new machines. Done offline, without mounting: the image is converted to a raw temporary file, the
//! root filesystem (ext2/3/4 on the whole disk, or in the first MBR or GPT partition) is edited with
//! `debugfs -w`, and the result is converted back to a compressed qcow2 image and renamed over the original.
//!
//! Sealing is idempotent: a second run finds nothing left and returns an empty list.

use std::path::{Path, PathBuf};

use crate::error::{HypervisorError, Result};
use crate::fsutil;
use crate::qemu::command;
use crate::qemu::disk::DiskTool;

/// The ext superblock magic, at byte 56 of the superblock (which starts 1024 bytes into the filesystem).
const EXT_MAGIC: u16 = 0xEF53;
/// The superblock's incompatible-feature flag saying the journal must be replayed first.
const EXT_INCOMPAT_RECOVER: u32 = 0x4;

/// Seals the qcow2 (or raw) image at `path` in place and returns what was emptied or removed.
pub async fn seal_disk(disks: &DiskTool, path: &Path) -> Result<Vec<String>> {
    let info = disks.info(path).await?;
    let raw = path.with_file_name(format!(
        "{}sealing-{}.raw",
        fsutil::TEMPORARY_PREFIX,
        path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let outcome = seal_via_raw(disks, path, &raw, &info.format).await;
    fsutil::remove_file_if_present(&raw)?;
    outcome
}

async fn seal_via_raw(disks: &DiskTool, path: &Path, raw: &Path, format: &str) -> Result<Vec<String>> {
    disks.convert_to_raw(path, raw).await?;
    let offset = find_ext_filesystem(path, raw)?;
    let debugfs = DebugFs::new(raw, offset)?;
    let sealed = debugfs.seal().await?;
    if sealed.is_empty() {
        tracing::info!(disk = %path.display(), "nothing to seal");
        return Ok(sealed);
    }
    let temporary = fsutil::temporary_sibling(path)?;
    disks.convert_compressed(raw, &temporary, "raw").await?;
    fsutil::rename_into_place(&temporary, path)?;
    tracing::info!(disk = %path.display(), previous_format = format, ?sealed, "sealed disk");
    Ok(sealed)
}

fn read_at(file: &std::fs::File, offset: u64, buffer: &mut [u8]) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    file.read_at(buffer, offset)
}

/// The byte offset of the ext filesystem holding the root: the whole disk, else the first MBR or GPT partition.
fn find_ext_filesystem(original: &Path, raw: &Path) -> Result<u64> {
    let file = std::fs::File::open(raw).map_err(|source| HypervisorError::io(raw, source))?;
    let io_error = |source| HypervisorError::io(raw, source);
    let mut candidates = vec![0u64];
    let mut sector = [0u8; 512];
    if read_at(&file, 0, &mut sector).map_err(io_error)? == 512 && sector[510] == 0x55 && sector[511] == 0xAA {
        let first_entry = &sector[446..462];
        let partition_type = first_entry[4];
        let start_lba =
            u64::from(u32::from_le_bytes([first_entry[8], first_entry[9], first_entry[10], first_entry[11]]));
        if partition_type == 0xEE {
            if let Some(start) = first_gpt_partition_start(&file).map_err(io_error)? {
                candidates.extend(start.checked_mul(512));
            }
        } else if partition_type != 0 && start_lba != 0 {
            candidates.push(start_lba * 512);
        }
    }
    let mut found = "not recognized".to_owned();
    for offset in candidates {
        let mut superblock = [0u8; 1024];
        if read_at(&file, offset + 1024, &mut superblock).map_err(io_error)? < 1024 {
            continue;
        }
        if u16::from_le_bytes([superblock[56], superblock[57]]) == EXT_MAGIC {
            let incompatible =
                u32::from_le_bytes([superblock[0x60], superblock[0x61], superblock[0x62], superblock[0x63]]);
            if incompatible & EXT_INCOMPAT_RECOVER != 0 {
                return Err(HypervisorError::invalid(
                    "disk to seal",
                    format!(
                        "the filesystem of {} needs journal recovery (the guest was not shut down cleanly)",
                        original.display()
                    ),
                ));
            }
            return Ok(offset);
        }
        if let Some(name) = other_filesystem_name(&file, offset).map_err(io_error)? {
            found = name.to_owned();
        }
    }
    Err(HypervisorError::UnsupportedFilesystem { path: original.to_path_buf(), found })
}

/// The first LBA of the first used GPT partition entry.
fn first_gpt_partition_start(file: &std::fs::File) -> std::io::Result<Option<u64>> {
    let mut header = [0u8; 92];
    if read_at(file, 512, &mut header)? < 92 || &header[0..8] != b"EFI PART" {
        return Ok(None);
    }
    let entries_lba = u64::from_le_bytes(header[72..80].try_into().unwrap_or_default());
    let entry_size = u64::from(u32::from_le_bytes(header[84..88].try_into().unwrap_or_default()));
    let entry_count = u32::from_le_bytes(header[80..84].try_into().unwrap_or_default());
    for index in 0..u64::from(entry_count.min(128)) {
        let mut entry = [0u8; 48];
        let Some(offset) =
            entries_lba.checked_mul(512).and_then(|base| base.checked_add(index.checked_mul(entry_size)?))
        else {
            return Ok(None);
        };
        if read_at(file, offset, &mut entry)? < 48 {
            return Ok(None);
        }
        if entry[0..16].iter().any(|byte| *byte != 0) {
            return Ok(Some(u64::from_le_bytes(entry[32..40].try_into().unwrap_or_default())));
        }
    }
    Ok(None)
}

/// Names a few common non-ext filesystems for the error message.
fn other_filesystem_name(file: &std::fs::File, offset: u64) -> std::io::Result<Option<&'static str>> {
    let mut start = [0u8; 512];
    if read_at(file, offset, &mut start)? < 512 {
        return Ok(None);
    }
    let mut btrfs = [0u8; 8];
    read_at(file, offset + 0x10040, &mut btrfs)?;
    Ok(if &start[0..4] == b"XFSB" {
        Some("xfs")
    } else if &btrfs == b"_BHRfS_M" {
        Some("btrfs")
    } else if &start[82..87] == b"FAT32" || &start[54..59] == b"FAT16" || &start[54..59] == b"FAT12" {
        Some("vfat")
    } else {
        None
    })
}

/// One entry of `debugfs ls -p`.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
}

impl Entry {
    fn is_directory(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

/// Parses `debugfs ls -p` output: lines `/inode/mode/uid/gid/name/size/`.
fn parse_listing(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.trim().strip_prefix('/')?.strip_suffix('/')?.split('/').collect();
            let [inode, mode, uid, gid, name, size] = fields.as_slice() else { return None };
            if inode.parse::<u64>().ok()? == 0 || *name == "." || *name == ".." {
                return None;
            }
            Some(Entry {
                name: (*name).to_owned(),
                mode: u32::from_str_radix(mode, 8).ok()?,
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
                size: size.parse().unwrap_or(0),
            })
        })
        .collect()
}

/// Which entries of a directory sealing removes.
#[derive(Debug, Clone, Copy)]
enum NameFilter {
    Any,
    Exact(&'static str),
    Prefix(&'static str),
    Suffix(&'static str),
}

impl NameFilter {
    fn matches(self, name: &str) -> bool {
        match self {
            NameFilter::Any => true,
            NameFilter::Exact(exact) => name == exact,
            NameFilter::Prefix(prefix) => name.starts_with(prefix),
            NameFilter::Suffix(suffix) => name.ends_with(suffix),
        }
    }
}

/// `debugfs` on one filesystem of a raw image.
struct DebugFs {
    program: PathBuf,
    device: String,
    raw: PathBuf,
}

fn quote(path: &str) -> Result<String> {
    if path.contains(['"', '\n', '\\']) {
        return Err(HypervisorError::invalid(
            "file name in the image",
            format!("{path:?} cannot be passed to debugfs"),
        ));
    }
    Ok(format!("\"{path}\""))
}

impl DebugFs {
    fn new(raw: &Path, offset: u64) -> Result<Self> {
        let mut device = raw.to_string_lossy().into_owned();
        if offset > 0 {
            device.push_str(&format!("?offset={offset}"));
        }
        Ok(DebugFs { program: command::system_tool("debugfs")?, device, raw: raw.to_path_buf() })
    }

    /// The entries of `directory`, or `None` when it does not exist.
    async fn list(&self, directory: &str) -> Result<Option<Vec<Entry>>> {
        let request = format!("ls -p {}", quote(directory)?);
        let finished =
            command::run(&self.program, &["-R", request.as_str(), self.device.as_str()], command::DEFAULT_TIMEOUT)
                .await?;
        if finished.stdout.trim().is_empty() {
            return Ok(None);
        }
        Ok(Some(parse_listing(&finished.stdout)))
    }

    /// The entry `name` in `directory`.
    async fn find(&self, directory: &str, name: &str) -> Result<Option<Entry>> {
        Ok(self.list(directory).await?.and_then(|entries| entries.into_iter().find(|entry| entry.name == name)))
    }

    /// Appends the commands removing `path` (recursively when it is a directory).
    async fn removal_commands(&self, path: &str, entry: &Entry, commands: &mut Vec<String>) -> Result<()> {
        if entry.is_directory() {
            let children = self.list(path).await?.unwrap_or_default();
            for child in children {
                Box::pin(self.removal_commands(&format!("{path}/{}", child.name), &child, commands)).await?;
            }
            commands.push(format!("rmdir {}", quote(path)?));
        } else {
            commands.push(format!("rm {}", quote(path)?));
        }
        Ok(())
    }

    /// Plans and applies every sealing step; returns what was done.
    async fn seal(&self) -> Result<Vec<String>> {
        let mut commands = Vec::new();
        let mut sealed = Vec::new();
        let mut removed_paths = Vec::new();

        if let Some(machine_id) = self.find("/etc", "machine-id").await?
            && !machine_id.is_directory()
            && machine_id.size > 0
        {
            commands.push("cd /etc".to_owned());
            commands.push("rm machine-id".to_owned());
            commands.push(format!("write {} machine-id", quote(&self.empty_file_path().to_string_lossy())?));
            commands.push(format!("sif machine-id mode 0{:o}", 0o100000 | (machine_id.mode & 0o7777)));
            commands.push(format!("sif machine-id uid {}", machine_id.uid));
            commands.push(format!("sif machine-id gid {}", machine_id.gid));
            commands.push("cd /".to_owned());
            sealed.push("emptied /etc/machine-id".to_owned());
        }

        // Every entry of these directories whose name matches is removed, directories recursively.
        let removals = [
            ("/etc/ssh", NameFilter::Prefix("ssh_host_")),
            ("/etc/steward", NameFilter::Exact("network.conf")),
            ("/etc/udev/rules.d", NameFilter::Exact("70-persistent-net.rules")),
            ("/var/lib/steward-agent", NameFilter::Any),
            ("/var/lib/steward", NameFilter::Exact("instance-id")),
            ("/var/lib/cloud", NameFilter::Prefix("instance")),
            ("/var/lib/dhcp", NameFilter::Any),
            ("/var/lib/dhclient", NameFilter::Suffix(".leases")),
        ];
        for (directory, matches) in removals {
            let Some(entries) = self.list(directory).await? else { continue };
            for entry in entries.iter().filter(|entry| matches.matches(&entry.name)) {
                let path = format!("{directory}/{}", entry.name);
                self.removal_commands(&path, entry, &mut commands).await?;
                sealed.push(format!("removed {path}"));
                removed_paths.push((directory, entry.name.clone()));
            }
        }
        if commands.is_empty() {
            return Ok(sealed);
        }
        self.apply(&commands).await?;
        self.verify(&removed_paths, sealed.first().is_some_and(|first| first.starts_with("emptied"))).await?;
        Ok(sealed)
    }

    fn empty_file_path(&self) -> PathBuf {
        self.raw.with_extension("empty")
    }

    async fn apply(&self, commands: &[String]) -> Result<()> {
        let empty_file = self.empty_file_path();
        std::fs::write(&empty_file, b"").map_err(|source| HypervisorError::io(&empty_file, source))?;
        let script = self.raw.with_extension("debugfs");
        let mut text = commands.join("\n");
        text.push('\n');
        std::fs::write(&script, text).map_err(|source| HypervisorError::io(&script, source))?;
        let script_argument = script.to_string_lossy().into_owned();
        let result = command::run(
            &self.program,
            &["-w", "-f", script_argument.as_str(), self.device.as_str()],
            command::DEFAULT_TIMEOUT,
        )
        .await;
        let _ = std::fs::remove_file(&script);
        let _ = std::fs::remove_file(&empty_file);
        let finished = result?;
        tracing::debug!(stderr = finished.stderr, "debugfs applied the sealing commands");
        Ok(())
    }

    /// debugfs reports command errors on stderr but exits 0, so the result is checked by listing again.
    async fn verify(&self, removed: &[(&str, String)], emptied_machine_id: bool) -> Result<()> {
        for (directory, name) in removed {
            if self.find(directory, name).await?.is_some() {
                return Err(HypervisorError::invalid(
                    "disk to seal",
                    format!("debugfs could not remove {directory}/{name} (is the filesystem damaged?)"),
                ));
            }
        }
        if emptied_machine_id && self.find("/etc", "machine-id").await?.is_none_or(|entry| entry.size != 0) {
            return Err(HypervisorError::invalid("disk to seal", "debugfs could not empty /etc/machine-id"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debugfs_listings_are_parsed() {
        let text =
            "/2/040755/0/0/./\n/2/040755/0/0/../\n/12/100600/0/0/ssh_host_rsa_key/2602/\n/13/120777/0/0/instance/27/\n";
        let entries = parse_listing(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, "ssh_host_rsa_key");
        assert_eq!(entries[0].mode, 0o100600);
        assert_eq!(entries[0].size, 2602);
        assert!(!entries[0].is_directory());
        assert_eq!(entries[1].mode, 0o120777);
    }
}
