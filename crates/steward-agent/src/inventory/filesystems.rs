//! Mounted filesystems from `/proc/self/mounts`, with their usage from `statvfs(3)`.
//!
//! Each line of the mount table is `device mount-point type options dump pass`, where the kernel writes space, tab,
//! newline and backslash in the first two fields as octal escapes (`\040`); those are decoded. When one mount point
//! appears several times only the last mount counts, because it hides the earlier ones; that decision is taken
//! before pseudo filesystems are dropped, so a `tmpfs` mounted over a disk's directory hides the disk's entry too.
//!
//! Pseudo and memory-backed filesystems ([`PSEUDO_FS_TYPES`], and squashfs images of snaps under `/snap/`) are left
//! out; `overlay` is kept because it is what containers' root filesystems are made of.
//!
//! Usage comes from `statvfs` on the mount point joined with the root. It is not asked for network filesystems
//! ([`NETWORK_FS_TYPES`]): on a hard NFS mount whose server is gone `statvfs` blocks forever, and the agent's only
//! thread must not hang, so their usage stays 0. Usage also stays 0 where `statvfs` fails.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use steward_protocol::Filesystem;

use super::{for_each_line, rooted};

/// Filesystem types that are not backed by a disk or a network share.
pub(super) const PSEUDO_FS_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nfsd",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// Network filesystem types, whose usage is not asked for (see the module documentation).
pub(super) const NETWORK_FS_TYPES: &[&str] =
    &["nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "9p", "afs"];

pub(super) fn collect(root: &Path) -> Vec<Filesystem> {
    let mut filesystems: Vec<Filesystem> = Vec::new();
    for_each_line(&rooted(root, "proc/self/mounts"), |line| {
        if let Some(mount) = parse_mount_line(line) {
            match filesystems.iter_mut().find(|existing| existing.mount_point == mount.mount_point) {
                Some(existing) => *existing = mount,
                None => filesystems.push(mount),
            }
        }
        true
    });
    filesystems.retain(|fs| !is_pseudo(&fs.fs_type, &fs.mount_point));
    for fs in &mut filesystems {
        if !NETWORK_FS_TYPES.contains(&fs.fs_type.as_str()) {
            fill_usage(root, fs);
        }
    }
    filesystems
}

fn is_pseudo(fs_type: &str, mount_point: &str) -> bool {
    PSEUDO_FS_TYPES.contains(&fs_type) || (fs_type == "squashfs" && mount_point.starts_with("/snap/"))
}

/// Parses one line of the mount table into a filesystem without usage.
pub(super) fn parse_mount_line(line: &str) -> Option<Filesystem> {
    let mut fields = line.split_ascii_whitespace();
    let device = fields.next()?;
    let mount_point = fields.next()?;
    let fs_type = fields.next()?;
    Some(Filesystem {
        mount_point: unescape(mount_point),
        device: unescape(device),
        fs_type: fs_type.to_owned(),
        ..Filesystem::default()
    })
}

/// Decodes the kernel's octal escapes (`\040` for a space) in a mount table field.
pub(super) fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && is_octal_escape(&bytes[i + 1..i + 4]) {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

fn is_octal_escape(digits: &[u8]) -> bool {
    digits.len() == 3 && (b'0'..=b'3').contains(&digits[0]) && digits[1..].iter().all(|d| (b'0'..=b'7').contains(d))
}

/// Fills size, used and available bytes from `statvfs`, as `df` computes them; leaves them 0 on failure.
// The `statvfs` fields are 32 bits wide on some 32-bit targets, so the casts are needed there.
#[allow(clippy::unnecessary_cast)]
fn fill_usage(root: &Path, fs: &mut Filesystem) {
    let path = rooted(root, &fs.mount_point);
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else { return };
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable memory of the right type,
    // which `statvfs` fills completely when it returns 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        tracing::debug!(path = %path.display(), error = %std::io::Error::last_os_error(), "statvfs failed");
        return;
    }
    // SAFETY: `statvfs` returned 0, so the structure is initialized (it was zeroed before, in any case).
    let stat = unsafe { stat.assume_init() };
    let fragment = stat.f_frsize as u64;
    let blocks = stat.f_blocks as u64;
    let free = stat.f_bfree as u64;
    let available = stat.f_bavail as u64;
    fs.size_bytes = blocks.saturating_mul(fragment);
    fs.used_bytes = blocks.saturating_sub(free).saturating_mul(fragment);
    fs.available_bytes = available.saturating_mul(fragment);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape("/a\\011b\\012c\\134d"), "/a\tb\nc\\d");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/trailing\\04"), "/trailing\\04");
        assert_eq!(unescape("/bad\\999"), "/bad\\999");
        assert_eq!(unescape("\\"), "\\");
    }

    #[test]
    fn parses_lines() {
        let fs = parse_mount_line("/dev/sda1 /mnt/USB\\040Stick vfat rw,relatime 0 0").expect("line");
        assert_eq!(
            (fs.device.as_str(), fs.mount_point.as_str(), fs.fs_type.as_str()),
            ("/dev/sda1", "/mnt/USB Stick", "vfat")
        );
        assert_eq!(parse_mount_line("short line"), None);
        assert_eq!(parse_mount_line(""), None);
    }

    #[test]
    fn keeps_real_filesystems_last_mount_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/self")).expect("mkdir");
        std::fs::write(
            root.join("proc/self/mounts"),
            "proc /proc proc rw 0 0\n\
             sysfs /sys sysfs rw 0 0\n\
             /dev/vda1 / ext4 rw,relatime 0 0\n\
             /dev/vda2 /data xfs rw 0 0\n\
             tmpfs /data tmpfs rw 0 0\n\
             /dev/vdb1 /srv ext4 rw 0 0\n\
             /dev/vdc1 /srv xfs rw 0 0\n\
             overlay /var/lib/containers/x/merged overlay rw 0 0\n\
             /dev/loop3 /snap/core/123 squashfs ro 0 0\n\
             nfs.example.com:/export /mnt/nfs nfs4 rw 0 0\n\
             garbage\n",
        )
        .expect("write");
        let filesystems = collect(root);
        let summary: Vec<_> =
            filesystems.iter().map(|fs| (fs.mount_point.as_str(), fs.device.as_str(), fs.fs_type.as_str())).collect();
        assert_eq!(
            summary,
            [
                ("/", "/dev/vda1", "ext4"),
                ("/srv", "/dev/vdc1", "xfs"),
                ("/var/lib/containers/x/merged", "overlay", "overlay"),
                ("/mnt/nfs", "nfs.example.com:/export", "nfs4"),
            ]
        );
        // "/" is the temporary directory itself, so statvfs works there; the others do not exist.
        assert!(filesystems[0].size_bytes > 0);
        assert!(filesystems[0].used_bytes + filesystems[0].available_bytes <= filesystems[0].size_bytes);
        assert!(filesystems[1..].iter().all(|fs| fs.size_bytes == 0 && fs.used_bytes == 0));
    }
}
