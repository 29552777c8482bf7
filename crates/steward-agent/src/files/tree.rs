//! Writing files and directory trees safely, and reading trees as tar streams. Used by the agent for pushes and
//! pulls, and by the `steward files` CLI on the operator's side.
//!
//! Writing is staged: every file (and symbolic link) is written to a temporary name beside its final name
//! (`.NAME.steward-PID-N.tmp`, created exclusively, mode 0600) and synced; [`Staging::commit`] then sets each
//! one's owner, mode and modification time, renames it over its final name and syncs the directories. Until
//! then nothing has its final name, and a [`Staging`] dropped without being committed (an error, a checksum
//! mismatch, a lost connection) removes its temporary files and the directories it created (when empty).
//!
//! An archive is unpacked without following symbolic links: an entry whose parent in the destination is a link
//! (or not a directory) is refused, so an archive cannot write outside its destination, even with a link it
//! created itself.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use steward_protocol::files::EntryKind;
use steward_protocol::tar::{TarEntry, TarReader, TarWriter, relative_components};

use super::owners::Owners;
use super::policy::{FilePolicy, describe_io};

/// How deep a tree may nest (a loop of bind mounts must not recurse forever).
const MAX_DEPTH: usize = 256;

/// Metadata to give a written entry; `None` leaves what the system gives (or what an existing file had).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<i64>,
}

struct Staged {
    temp: PathBuf,
    target: PathBuf,
    meta: Meta,
    symlink: bool,
}

/// Files written under temporary names, waiting for [`Staging::commit`]; see the module documentation.
pub struct Staging {
    /// The final path of the file, or the destination directory of a tree.
    target: PathBuf,
    staged: Vec<Staged>,
    /// Directories to give their metadata at commit, in the order they were met.
    directories: Vec<(PathBuf, Meta)>,
    /// Directories this staging created, to remove (when empty) if it is not committed.
    created: Vec<PathBuf>,
    /// Whether archive entries keep their owners (only a root process can give files away).
    keep_owners: bool,
    owners: Owners,
    entries: u64,
    /// The final paths of `staged`, which no later entry may use as a directory.
    staged_targets: std::collections::HashSet<PathBuf>,
    /// How many of `staged` have their final name already.
    renamed: usize,
    committed: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Staging {
    /// Prepares writing the file `target` (its directory exists; an existing file there is replaced, a directory
    /// is refused). `meta` fields left `None` take an existing file's values, else the defaults (mode 0644).
    pub fn for_file(target: PathBuf, meta: Meta) -> Result<(Self, File), String> {
        let mut meta = meta;
        match std::fs::symlink_metadata(&target) {
            Ok(existing) if existing.is_dir() => {
                return Err(format!("{}: is a directory (push a directory as a tar stream)", target.display()));
            }
            Ok(existing) if existing.is_file() => {
                meta.mode = meta.mode.or(Some(existing.mode() & 0o7777));
                meta.uid = meta.uid.or(Some(existing.uid()));
                meta.gid = meta.gid.or(Some(existing.gid()));
            }
            _ => meta.mode = meta.mode.or(Some(0o644)),
        }
        let mut staging = Self::empty(target.clone(), false, Owners::default());
        let (temp, file) = create_temp(&target)?;
        staging.staged.push(Staged { temp, target, meta, symlink: false });
        staging.entries = 1;
        Ok((staging, file))
    }

    /// Prepares unpacking a tree into the directory `target`, created if it does not exist (its parent must).
    /// `meta` applies to `target` itself and wins over the archive's root entry. With `keep_owners`, entries get
    /// the archive's owners (by name where `owners` knows it, else by number).
    pub fn for_directory(target: PathBuf, meta: Meta, keep_owners: bool, owners: Owners) -> Result<Self, String> {
        let mut staging = Self::empty(target.clone(), keep_owners, owners);
        match std::fs::symlink_metadata(&target) {
            Ok(existing) if existing.is_dir() => {}
            Ok(_) => return Err(format!("{}: exists and is not a directory", target.display())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&target)
                    .map_err(|error| format!("cannot create {}: {}", target.display(), describe_io(&error)))?;
                staging.created.push(target.clone());
            }
            Err(error) => return Err(format!("{}: {}", target.display(), describe_io(&error))),
        }
        let created = staging.created.contains(&target);
        let mut meta = meta;
        if created {
            meta.mode = meta.mode.or(Some(0o755));
        }
        staging.directories.push((target, meta));
        Ok(staging)
    }

    fn empty(target: PathBuf, keep_owners: bool, owners: Owners) -> Self {
        Self {
            target,
            staged: Vec::new(),
            directories: Vec::new(),
            created: Vec::new(),
            keep_owners,
            owners,
            entries: 0,
            staged_targets: Default::default(),
            renamed: 0,
            committed: false,
        }
    }

    /// The final path of the file, or the destination directory.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Copies `content` to the temporary file of [`Staging::for_file`] and syncs it; returns the bytes written.
    pub fn write_file(&mut self, mut file: File, content: &mut dyn Read) -> Result<u64, String> {
        let temp = self.staged.first().map(|staged| staged.target.clone()).unwrap_or_default();
        let written = copy_into(content, &mut file, &temp)?;
        file.sync_all().map_err(|error| format!("cannot write {}: {}", temp.display(), describe_io(&error)))?;
        Ok(written)
    }

    /// Unpacks a tar stream into the directory of [`Staging::for_directory`]; files and links are staged, and
    /// whatever follows the end of the archive is read (and ignored) to the end of `input`.
    pub fn unpack(&mut self, input: &mut dyn Read) -> Result<(), String> {
        let mut reader = TarReader::new(input);
        while let Some(entry) = reader.next_entry().map_err(|error| error.to_string())? {
            let components = relative_components(&entry.path)?;
            let meta = self.entry_meta(&entry);
            let Some((name, parents)) = components.split_last() else {
                if entry.kind != EntryKind::Directory {
                    return Err(format!("archive entry {:?}: the archive's root must be a directory", entry.path));
                }
                // The archive's root is the destination: the operator's metadata wins over the archive's.
                if let Some((_, target_meta)) = self.directories.first_mut() {
                    *target_meta = Meta {
                        mode: target_meta.mode.or(meta.mode),
                        uid: target_meta.uid.or(meta.uid),
                        gid: target_meta.gid.or(meta.gid),
                        mtime: target_meta.mtime.or(meta.mtime),
                    };
                }
                continue;
            };
            let parent = self.ensure_parents(&entry.path, parents)?;
            let target = parent.join(name);
            match entry.kind {
                EntryKind::Directory => {
                    if self.staged_targets.contains(&target) {
                        return Err(format!("archive entry {:?}: a file or link of that name came first", entry.path));
                    }
                    match std::fs::symlink_metadata(&target) {
                        Ok(existing) if existing.is_dir() => {}
                        Ok(_) => {
                            return Err(format!(
                                "archive entry {:?}: {} exists and is not a directory",
                                entry.path,
                                target.display()
                            ));
                        }
                        Err(_) => {
                            std::fs::DirBuilder::new().mode(0o700).create(&target).map_err(|error| {
                                format!("cannot create {}: {}", target.display(), describe_io(&error))
                            })?;
                            self.created.push(target.clone());
                        }
                    }
                    self.directories.push((target, meta));
                }
                EntryKind::File => {
                    if std::fs::symlink_metadata(&target).is_ok_and(|existing| existing.is_dir()) {
                        return Err(format!("archive entry {:?}: {} is a directory", entry.path, target.display()));
                    }
                    let (temp, mut file) = create_temp(&target)?;
                    self.staged_targets.insert(target.clone());
                    self.staged.push(Staged { temp, target: target.clone(), meta, symlink: false });
                    let written = copy_into(&mut reader.entry_data(), &mut file, &target)?;
                    if written != entry.size {
                        return Err(format!("archive entry {:?} is cut short", entry.path));
                    }
                    file.sync_all()
                        .map_err(|error| format!("cannot write {}: {}", target.display(), describe_io(&error)))?;
                }
                EntryKind::Symlink => {
                    if entry.link_target.is_empty() || entry.link_target.contains('\0') {
                        return Err(format!("archive entry {:?}: a symbolic link without a target", entry.path));
                    }
                    let temp = temp_name(&target);
                    std::os::unix::fs::symlink(&entry.link_target, &temp)
                        .map_err(|error| format!("cannot create {}: {}", target.display(), describe_io(&error)))?;
                    self.staged_targets.insert(target.clone());
                    self.staged.push(Staged { temp, target, meta, symlink: true });
                }
            }
            self.entries += 1;
        }
        io::copy(&mut reader.into_inner(), &mut io::sink())
            .map_err(|error| format!("reading the stream failed: {}", describe_io(&error)))?;
        Ok(())
    }

    fn entry_meta(&self, entry: &TarEntry) -> Meta {
        let (uid, gid) = if self.keep_owners {
            let (uid, gid) = self.owners.for_entry(&entry.user, entry.uid, &entry.group, entry.gid);
            (Some(uid), Some(gid))
        } else {
            (None, None)
        };
        Meta { mode: Some(entry.mode), uid, gid, mtime: Some(entry.mtime) }
    }

    /// The directory an entry goes in, creating missing parents; a parent that is a link or not a directory is
    /// refused.
    fn ensure_parents(&mut self, entry: &str, parents: &[&str]) -> Result<PathBuf, String> {
        let mut directory = self.target.clone();
        for component in parents {
            directory.push(component);
            if self.staged_targets.contains(&directory) {
                return Err(format!(
                    "archive entry {entry:?}: {} is a file or a symbolic link earlier in the archive (links are never \
                     followed)",
                    directory.display()
                ));
            }
            match std::fs::symlink_metadata(&directory) {
                Ok(existing) if existing.is_dir() => {}
                Ok(existing) => {
                    let what = if existing.file_type().is_symlink() { "a symbolic link" } else { "not a directory" };
                    return Err(format!(
                        "archive entry {entry:?}: {} is {what} in the destination (links are never followed)",
                        directory.display()
                    ));
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    std::fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&directory)
                        .map_err(|error| format!("cannot create {}: {}", directory.display(), describe_io(&error)))?;
                    self.created.push(directory.clone());
                }
                Err(error) => return Err(format!("{}: {}", directory.display(), describe_io(&error))),
            }
        }
        Ok(directory)
    }

    /// Gives every staged entry its metadata and final name, then the directories theirs (deepest first), and
    /// syncs the directories; returns the number of entries.
    pub fn commit(mut self) -> Result<u64, String> {
        let mut synced: BTreeSet<PathBuf> = BTreeSet::new();
        while let Some(staged) = self.staged.get(self.renamed) {
            apply_meta(&staged.temp, &staged.meta, staged.symlink)
                .map_err(|error| format!("cannot set the metadata of {}: {error}", staged.target.display()))?;
            std::fs::rename(&staged.temp, &staged.target)
                .map_err(|error| format!("cannot rename into {}: {}", staged.target.display(), describe_io(&error)))?;
            if let Some(parent) = staged.target.parent() {
                synced.insert(parent.to_path_buf());
            }
            self.renamed += 1;
        }
        self.committed = true;
        for (directory, meta) in self.directories.iter().rev() {
            apply_meta(directory, meta, false)
                .map_err(|error| format!("cannot set the metadata of {}: {error}", directory.display()))?;
            synced.insert(directory.clone());
            if let Some(parent) = directory.parent() {
                synced.insert(parent.to_path_buf());
            }
        }
        for directory in synced {
            if let Ok(handle) = File::open(&directory) {
                let _ = handle.sync_all();
            }
        }
        Ok(self.entries)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        for staged in self.staged.iter().skip(self.renamed) {
            let _ = std::fs::remove_file(&staged.temp);
        }
        if !self.committed {
            for directory in self.created.iter().rev() {
                let _ = std::fs::remove_dir(directory);
            }
        }
    }
}

fn apply_meta(path: &Path, meta: &Meta, symlink: bool) -> io::Result<()> {
    if meta.uid.is_some() || meta.gid.is_some() {
        std::os::unix::fs::lchown(path, meta.uid, meta.gid)?;
    }
    if symlink {
        // Links have no mode of their own, and std has no `lutimes`: their time is the time of writing.
        return Ok(());
    }
    if let Some(mode) = meta.mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    if let Some(mtime) = meta.mtime {
        let time = if mtime >= 0 {
            UNIX_EPOCH + Duration::from_secs(mtime as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(mtime.unsigned_abs())
        };
        File::open(path)?.set_times(std::fs::FileTimes::new().set_modified(time).set_accessed(SystemTime::now()))?;
    }
    Ok(())
}

/// A fresh temporary name beside `target`.
fn temp_name(target: &Path) -> PathBuf {
    let name = target.file_name().map(|name| name.as_bytes()).unwrap_or(b"file");
    // Room for the decoration within the usual 255-byte name limit.
    let kept = String::from_utf8_lossy(&name[..name.len().min(200)]).into_owned();
    let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{kept}.steward-{}-{counter}.tmp", std::process::id()))
}

fn create_temp(target: &Path) -> Result<(PathBuf, File), String> {
    let temp = temp_name(target);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|error| format!("cannot create a file beside {}: {}", target.display(), describe_io(&error)))?;
    Ok((temp, file))
}

fn copy_into(content: &mut dyn Read, file: &mut File, target: &Path) -> Result<u64, String> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        let read = match content.read(&mut buffer) {
            Ok(0) => return Ok(written),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(format!("reading the stream for {} failed: {}", target.display(), describe_io(&error)));
            }
        };
        file.write_all(&buffer[..read])
            .map_err(|error| format!("cannot write {}: {}", target.display(), describe_io(&error)))?;
        written += read as u64;
    }
}

/// The metadata of `path` (not following a final link) as a pull reports it.
pub fn entry_metadata(path: &Path, owners: &Owners) -> io::Result<steward_protocol::files::EntryMetadata> {
    let metadata = std::fs::symlink_metadata(path)?;
    let kind = if metadata.is_dir() {
        EntryKind::Directory
    } else if metadata.file_type().is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::File
    };
    Ok(steward_protocol::files::EntryMetadata {
        kind,
        size: if kind == EntryKind::File { metadata.len() } else { 0 },
        mode: metadata.mode() & 0o7777,
        uid: metadata.uid(),
        gid: metadata.gid(),
        user: owners.user_name(metadata.uid()).map(str::to_string),
        group: owners.group_name(metadata.gid()).map(str::to_string),
        mtime: metadata.mtime(),
    })
}

/// Writes the tree under `root` as a tar stream: the root as `./`, then every entry depth first in name order,
/// with owners (numbers and names), modes and times. Links are stored, not followed; sockets, FIFOs and devices
/// are skipped, as are kernel pseudo-filesystems met on the way. A name that is not UTF-8 is an error naming it.
pub fn pack(root: &Path, out: &mut dyn Write, owners: &Owners) -> Result<(), String> {
    let mut writer = TarWriter::new(out);
    append_tree(&mut writer, root, ".", owners, 0)?;
    writer.finish().map_err(|error| format!("writing the stream failed: {}", describe_io(&error)))?;
    Ok(())
}

fn append_tree(
    writer: &mut TarWriter<&mut dyn Write>,
    path: &Path,
    name: &str,
    owners: &Owners,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{}: directories nest deeper than {MAX_DEPTH} levels", path.display()));
    }
    let failed = |error: io::Error| format!("{}: {}", path.display(), describe_io(&error));
    let metadata = std::fs::symlink_metadata(path).map_err(failed)?;
    let file_type = metadata.file_type();
    let mut entry = TarEntry {
        path: name.to_string(),
        kind: EntryKind::File,
        size: 0,
        mode: metadata.mode() & 0o7777,
        uid: metadata.uid(),
        gid: metadata.gid(),
        user: owners.user_name(metadata.uid()).unwrap_or_default().to_string(),
        group: owners.group_name(metadata.gid()).unwrap_or_default().to_string(),
        mtime: metadata.mtime(),
        link_target: String::new(),
    };
    let written = if file_type.is_dir() {
        entry.kind = EntryKind::Directory;
        writer.append(&entry, &mut io::empty())
    } else if file_type.is_symlink() {
        entry.kind = EntryKind::Symlink;
        let target = std::fs::read_link(path).map_err(failed)?;
        entry.link_target = target
            .to_str()
            .ok_or_else(|| {
                format!("{}: the link's target is not UTF-8, which a transfer cannot carry", path.display())
            })?
            .to_string();
        writer.append(&entry, &mut io::empty())
    } else if file_type.is_file() {
        entry.size = metadata.len();
        let mut file = File::open(path).map_err(failed)?;
        writer.append(&entry, &mut file)
    } else {
        tracing::debug!(path = %path.display(), "skipping a socket, FIFO or device");
        return Ok(());
    };
    written.map_err(|error| format!("{}: {}", path.display(), describe_io(&error)))?;
    if !file_type.is_dir() {
        return Ok(());
    }
    let mut children: Vec<_> = std::fs::read_dir(path)
        .map_err(failed)?
        .map(|child| child.map(|child| child.file_name()))
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    children.sort();
    for child in children {
        let child_path = path.join(&child);
        if FilePolicy::is_pseudo_filesystem(&child_path) {
            continue;
        }
        let child_name = child
            .to_str()
            .ok_or_else(|| format!("{}: the name is not UTF-8, which a transfer cannot carry", child_path.display()))?;
        let relative = if name == "." { format!("./{child_name}") } else { format!("{name}/{child_name}") };
        append_tree(writer, &child_path, &relative, owners, depth + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
        std::fs::write(root.join("top.txt"), "top").expect("write");
        std::fs::write(root.join("sub/deeper/script.sh"), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(root.join("sub/deeper/script.sh"), std::fs::Permissions::from_mode(0o750))
            .expect("chmod");
        std::fs::set_permissions(root.join("sub"), std::fs::Permissions::from_mode(0o711)).expect("chmod");
        std::os::unix::fs::symlink("sub/deeper/script.sh", root.join("link")).expect("symlink");
    }

    #[test]
    fn a_tree_packs_and_unpacks_with_its_modes_and_links() {
        let temp = tempfile::tempdir().expect("tempdir");
        let source = temp.path().join("source");
        tree(&source);
        let mut stream = Vec::new();
        pack(&source, &mut stream, &Owners::default()).expect("pack");
        let destination = temp.path().join("copy");
        let mut staging =
            Staging::for_directory(destination.clone(), Meta::default(), false, Owners::default()).expect("stage");
        staging.unpack(&mut stream.as_slice()).expect("unpack");
        assert!(!destination.join("top.txt").exists(), "nothing has its final name before the commit");
        assert_eq!(staging.commit().expect("commit"), 5);
        assert_eq!(std::fs::read_to_string(destination.join("top.txt")).expect("read"), "top");
        let mode = |path: &str| std::fs::metadata(destination.join(path)).expect("stat").mode() & 0o7777;
        assert_eq!(mode("sub/deeper/script.sh"), 0o750);
        assert_eq!(mode("sub"), 0o711);
        assert_eq!(std::fs::read_link(destination.join("link")).expect("link"), Path::new("sub/deeper/script.sh"));
        let leftovers: Vec<_> = walk(&destination).into_iter().filter(|path| path.contains(".steward-")).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn an_uncommitted_staging_leaves_nothing_and_links_are_never_followed() {
        let temp = tempfile::tempdir().expect("tempdir");
        let destination = temp.path().join("new");
        let mut stream = Vec::new();
        let mut writer = TarWriter::new(&mut stream);
        let mut entry = TarEntry {
            path: "a/b/file".into(),
            kind: EntryKind::File,
            size: 3,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            mtime: 0,
            link_target: String::new(),
        };
        writer.append(&entry, &mut &b"abc"[..]).expect("append");
        writer.finish().expect("finish");
        let mut staging =
            Staging::for_directory(destination.clone(), Meta::default(), false, Owners::default()).expect("stage");
        staging.unpack(&mut stream.as_slice()).expect("unpack");
        drop(staging);
        assert!(!destination.exists(), "the directories it created are gone");

        // A link in the archive, then an entry through it: refused.
        let outside = temp.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        let mut stream = Vec::new();
        let mut writer = TarWriter::new(&mut stream);
        let link = TarEntry {
            path: "escape".into(),
            kind: EntryKind::Symlink,
            link_target: outside.display().to_string(),
            size: 0,
            ..entry.clone()
        };
        writer.append(&link, &mut io::empty()).expect("append");
        entry.path = "escape/planted".into();
        writer.append(&entry, &mut &b"abc"[..]).expect("append");
        writer.finish().expect("finish");
        let mut staging =
            Staging::for_directory(destination.clone(), Meta::default(), false, Owners::default()).expect("stage");
        let error = staging.unpack(&mut stream.as_slice()).expect_err("through a link");
        assert!(error.contains("links are never followed"), "{error}");
        drop(staging);
        assert!(!outside.join("planted").exists());
        assert!(!destination.exists());
    }

    #[test]
    fn a_file_keeps_the_mode_of_the_file_it_replaces() {
        let temp = tempfile::tempdir().expect("tempdir");
        let target = temp.path().join("config");
        std::fs::write(&target, "old").expect("write");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let (mut staging, file) = Staging::for_file(target.clone(), Meta::default()).expect("stage");
        staging.write_file(file, &mut &b"new"[..]).expect("write");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "old");
        staging.commit().expect("commit");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "new");
        assert_eq!(std::fs::metadata(&target).expect("stat").mode() & 0o7777, 0o600);
        assert_eq!(std::fs::read_dir(temp.path()).expect("list").count(), 1, "no temporary file is left");
    }

    #[test]
    fn archives_of_gnu_tar_come_in_and_ours_read_back_in_gnu_tar() {
        let temp = tempfile::tempdir().expect("tempdir");
        let source = temp.path().join("source");
        tree(&source);
        let long = source.join("a-name-longer-than-one-hundred-bytes-".repeat(3));
        std::fs::write(&long, "long").expect("write");
        // GNU tar's own archive (long names included), unpacked here.
        let archive = std::process::Command::new("tar")
            .arg("-C")
            .arg(&source)
            .args(["-cf", "-", "."])
            .output()
            .expect("GNU tar")
            .stdout;
        let destination = temp.path().join("from-gnu");
        let mut staging =
            Staging::for_directory(destination.clone(), Meta::default(), false, Owners::default()).expect("stage");
        staging.unpack(&mut archive.as_slice()).expect("unpack GNU tar's archive");
        staging.commit().expect("commit");
        assert_eq!(std::fs::read_to_string(destination.join(long.file_name().expect("name"))).expect("read"), "long");
        assert_eq!(std::fs::metadata(destination.join("sub")).expect("stat").mode() & 0o7777, 0o711);

        // Ours, listed by GNU tar.
        let ours = temp.path().join("ours.tar");
        let mut file = File::create(&ours).expect("create");
        pack(&source, &mut file, &Owners::default()).expect("pack");
        let listing = std::process::Command::new("tar").arg("-tvf").arg(&ours).output().expect("tar -t");
        assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.contains("./sub/deeper/script.sh") && listing.contains("./link -> sub/deeper/script.sh"),
            "{listing}"
        );
        assert!(listing.contains(long.file_name().expect("name").to_str().expect("utf-8")), "{listing}");
    }

    fn walk(root: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(root).expect("list") {
            let path = entry.expect("entry").path();
            found.push(path.display().to_string());
            if path.is_dir() && !path.is_symlink() {
                found.extend(walk(&path));
            }
        }
        found
    }
}
