//! A reproducible writer of `newc` cpio archives, the format the kernel unpacks as an initramfs.
//!
//! Entries are sorted by path (a parent directory sorts before its children, as the kernel needs), every entry
//! gets the same fixed modification time, owner root, and inode numbers in order, so the same entries always
//! give the same bytes. Device nodes (`/dev/console`) can be written without privileges.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

/// What one archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File { contents: Vec<u8> },
    Symlink { target: String },
    CharacterDevice { major: u32, minor: u32 },
}

/// One entry: its kind and permission bits (without the file type bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub permissions: u32,
}

/// The archive under construction, keyed by path relative to the archive root (no leading `/`).
#[derive(Debug, Default)]
pub struct CpioArchive {
    entries: BTreeMap<String, Entry>,
}

impl CpioArchive {
    /// Adds an entry, and every missing parent directory (mode 0755). A path may be added once only.
    pub fn add(&mut self, path: &str, kind: EntryKind, permissions: u32) -> anyhow::Result<()> {
        validate_archive_path(path)?;
        if permissions & !0o7777 != 0 {
            bail!("cpio entry {path}: permissions {permissions:o} have bits beyond 07777");
        }
        let mut parent = String::new();
        let components: Vec<&str> = path.split('/').collect();
        for component in &components[..components.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            match self.entries.get(&parent) {
                Some(Entry { kind: EntryKind::Directory, .. }) => {}
                Some(_) => bail!("cpio entry {path}: its parent {parent} is not a directory"),
                None => {
                    self.entries.insert(parent.clone(), Entry { kind: EntryKind::Directory, permissions: 0o755 });
                }
            }
        }
        if let Some(existing) = self.entries.get(path) {
            // An implicitly created directory may be added again explicitly (to set its permissions).
            if !(existing.kind == EntryKind::Directory && kind == EntryKind::Directory) {
                bail!("cpio entry {path} was added twice");
            }
        }
        self.entries.insert(path.to_owned(), Entry { kind, permissions });
        Ok(())
    }

    /// Appends bytes to a regular file already in the archive.
    pub fn append_to_file(&mut self, path: &str, bytes: &[u8]) -> anyhow::Result<()> {
        match self.entries.get_mut(path) {
            Some(Entry { kind: EntryKind::File { contents }, .. }) => {
                contents.extend_from_slice(bytes);
                Ok(())
            }
            Some(_) => bail!("cpio entry {path} is not a regular file"),
            None => bail!("cpio entry {path} does not exist"),
        }
    }

    /// Every entry, in path order.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// The archive's bytes: every entry in path order with `modification_time`, then the trailer.
    pub fn to_bytes(&self, modification_time: u32) -> anyhow::Result<Vec<u8>> {
        let mut output = Vec::new();
        for (index, (path, entry)) in self.entries.iter().enumerate() {
            let inode = u32::try_from(index + 1).context("too many cpio entries")?;
            let (file_type, data, nlink, rdev): (u32, &[u8], u32, (u32, u32)) = match &entry.kind {
                EntryKind::Directory => (0o040000, &[], 2, (0, 0)),
                EntryKind::File { contents } => (0o100000, contents, 1, (0, 0)),
                EntryKind::Symlink { target } => (0o120000, target.as_bytes(), 1, (0, 0)),
                EntryKind::CharacterDevice { major, minor } => (0o020000, &[], 1, (*major, *minor)),
            };
            let header = NewcHeader {
                inode,
                mode: file_type | entry.permissions,
                nlink,
                modification_time,
                file_size: u32::try_from(data.len()).with_context(|| format!("cpio entry {path} is over 4 GiB"))?,
                rdev_major: rdev.0,
                rdev_minor: rdev.1,
            };
            write_entry(&mut output, &header, path, data)?;
        }
        let trailer = NewcHeader {
            inode: 0,
            mode: 0,
            nlink: 1,
            modification_time: 0,
            file_size: 0,
            rdev_major: 0,
            rdev_minor: 0,
        };
        write_entry(&mut output, &trailer, "TRAILER!!!", &[])?;
        Ok(output)
    }
}

/// The fields of a newc header that vary between entries (owner, device and checksum are always zero).
struct NewcHeader {
    inode: u32,
    mode: u32,
    nlink: u32,
    modification_time: u32,
    file_size: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

fn write_entry(output: &mut Vec<u8>, header: &NewcHeader, name: &str, data: &[u8]) -> anyhow::Result<()> {
    let name_size = u32::try_from(name.len() + 1).context("cpio entry name too long")?;
    let fields = [
        header.inode,
        header.mode,
        0, // uid
        0, // gid
        header.nlink,
        header.modification_time,
        header.file_size,
        0, // devmajor
        0, // devminor
        header.rdev_major,
        header.rdev_minor,
        name_size,
        0, // check
    ];
    output.extend_from_slice(b"070701");
    for field in fields {
        output.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    output.extend_from_slice(name.as_bytes());
    output.push(0);
    pad_to_four(output);
    output.extend_from_slice(data);
    pad_to_four(output);
    Ok(())
}

fn pad_to_four(output: &mut Vec<u8>) {
    while !output.len().is_multiple_of(4) {
        output.push(0);
    }
}

fn validate_archive_path(path: &str) -> anyhow::Result<()> {
    if path.is_empty() || path.starts_with('/') || path.ends_with('/') {
        bail!("cpio entry path {path:?} must be relative, non-empty and not end with '/'");
    }
    if path.split('/').any(|component| component.is_empty() || component == "." || component == "..") {
        bail!("cpio entry path {path:?} has an empty, '.' or '..' component");
    }
    if path.bytes().any(|byte| byte == 0) {
        bail!("cpio entry path {path:?} contains a NUL byte");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_and_output_is_stable() {
        let mut archive = CpioArchive::default();
        archive.add("bin/busybox", EntryKind::File { contents: b"elf".to_vec() }, 0o755).unwrap();
        archive.add("bin/sh", EntryKind::Symlink { target: "busybox".into() }, 0o777).unwrap();
        archive.add("dev/console", EntryKind::CharacterDevice { major: 5, minor: 1 }, 0o600).unwrap();
        let bytes = archive.to_bytes(1_700_000_000).unwrap();
        assert_eq!(bytes, archive.to_bytes(1_700_000_000).unwrap());
        assert_eq!(bytes.len() % 4, 0);
        // The first entry is the implicit directory `bin`, with mode 040755.
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(&bytes[14..22], b"000041ed");
        assert_eq!(&bytes[110..113], b"bin");
        let text = String::from_utf8_lossy(&bytes);
        let order: Vec<usize> = ["bin\0", "bin/busybox\0", "bin/sh\0", "dev\0", "dev/console\0", "TRAILER!!!\0"]
            .iter()
            .map(|name| text.find(name).unwrap())
            .collect();
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "entries out of order: {order:?}");
    }

    #[test]
    fn rejects_bad_paths_and_duplicates() {
        let mut archive = CpioArchive::default();
        for bad in ["", "/init", "a/../b", "a//b", "dir/"] {
            assert!(archive.add(bad, EntryKind::Directory, 0o755).is_err(), "{bad:?} was accepted");
        }
        archive.add("init", EntryKind::File { contents: Vec::new() }, 0o755).unwrap();
        assert!(archive.add("init", EntryKind::File { contents: Vec::new() }, 0o755).is_err());
        assert!(archive.add("init/x", EntryKind::Directory, 0o755).is_err());
    }
}
