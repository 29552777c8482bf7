//! The root filesystem (`disk.qcow2`) and the initramfs (`initrd.img`) of a starter image.
//!
//! Both are described first as a tree of entries in memory (`CpioArchive`): the guest-side files from
//! `images/` in the repository, busybox with its applet links, generated files (`/etc/passwd`, the empty
//! `/etc/machine-id`, ...) and, on x86_64, the agent. The initramfs is that tree as a newc cpio, gzip'd with
//! `gzip -n`. The root filesystem is made without mounting anything: the tree is written to a staging
//! directory, `mkfs.ext4 -d` copies it into a raw file (fixed UUID and hash seed, `E2FSPROGS_FAKE_TIME`, our
//! own `mke2fs.conf` so the host's defaults do not matter), `debugfs` sets every inode's owner and times to
//! fixed values (mkfs copies the staging files' change times, which cannot be set), and `qemu-img convert`
//! turns it into qcow2.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::cpio::{CpioArchive, EntryKind};
use super::packages::{run_capture, run_checked};

/// Size of the root filesystem (and of the disk: the filesystem spans the whole disk, no partition table).
pub const ROOT_FILESYSTEM_BYTES: u64 = 96 * 1024 * 1024;
/// Label of the root filesystem.
pub const ROOT_FILESYSTEM_LABEL: &str = "steward-root";

/// The mke2fs configuration used instead of the host's `/etc/mke2fs.conf` (Debian 12's ext4 features).
const MKE2FS_CONFIG: &str = "[defaults]\n\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr\n\tdefault_mntopts = acl,user_xattr\n\tblocksize = 4096\n\tinode_size = 256\n\tinode_ratio = 16384\n\n[fs_types]\n\text4 = {\n\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize\n\t}\n";

/// Adds every file under `source` (a directory of the repository's `images/`) to `tree` under `prefix`.
/// Permissions are normalized: 0755 if the file is executable by its owner, 0644 otherwise.
pub fn add_directory(tree: &mut CpioArchive, source: &Path, prefix: &str) -> anyhow::Result<()> {
    let mut pending = vec![(source.to_path_buf(), prefix.to_owned())];
    while let Some((directory, archive_path)) = pending.pop() {
        let mut children: Vec<_> = std::fs::read_dir(&directory)
            .with_context(|| format!("cannot list {}", directory.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot list {}", directory.display()))?;
        children.sort_by_key(|entry| entry.file_name());
        for child in children {
            let name = child
                .file_name()
                .into_string()
                .map_err(|name| anyhow::anyhow!("{}: file name {name:?} is not UTF-8", directory.display()))?;
            if name.chars().any(|character| character.is_whitespace() || character == '"') {
                bail!("{}: file name {name:?} contains whitespace or quotes", directory.display());
            }
            let path = child.path();
            let child_archive_path = if archive_path.is_empty() { name } else { format!("{archive_path}/{name}") };
            let metadata =
                std::fs::symlink_metadata(&path).with_context(|| format!("cannot stat {}", path.display()))?;
            if metadata.is_dir() {
                tree.add(&child_archive_path, EntryKind::Directory, 0o755)?;
                pending.push((path, child_archive_path));
            } else if metadata.is_file() {
                let contents = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                let permissions = if metadata.permissions().mode() & 0o100 != 0 { 0o755 } else { 0o644 };
                tree.add(&child_archive_path, EntryKind::File { contents }, permissions)?;
            } else {
                bail!("{} is neither a file nor a directory", path.display());
            }
        }
    }
    Ok(())
}

/// The busybox applets of a busybox binary that runs on this machine, as `(install path, name)`, from
/// `busybox --list-full` (for example `sbin/init`).
pub fn busybox_applets(host_busybox: &Path) -> anyhow::Result<Vec<String>> {
    let listing = run_capture(Command::new(host_busybox).arg("--list-full"))?;
    let applets: Vec<String> =
        listing.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_owned).collect();
    if applets.len() < 50 || !applets.iter().any(|applet| applet == "sbin/init") {
        bail!("{} --list-full lists {} applets and no sbin/init", host_busybox.display(), applets.len());
    }
    Ok(applets)
}

/// Checks that a (possibly foreign-architecture) busybox binary has exactly the applets listed: busybox keeps
/// the sorted applet names as one NUL-separated string, which must appear in the binary as is.
pub fn check_busybox_has_applets(busybox: &[u8], applets: &[String]) -> anyhow::Result<()> {
    let mut names = vec![0u8];
    for applet in applets {
        names.extend_from_slice(applet.rsplit('/').next().unwrap_or(applet).as_bytes());
        names.push(0);
    }
    if !busybox.windows(names.len()).any(|window| window == names.as_slice()) {
        bail!("the busybox binary does not carry the same applet table as the host's busybox of the same version");
    }
    Ok(())
}

/// Adds `/bin/busybox` and a symbolic link to it for every applet (unless the tree already has that path).
pub fn add_busybox(tree: &mut CpioArchive, busybox: Vec<u8>, applets: &[String]) -> anyhow::Result<()> {
    tree.add("bin/busybox", EntryKind::File { contents: busybox }, 0o755)?;
    let existing: std::collections::BTreeSet<String> = tree.entries().map(|(path, _)| path.clone()).collect();
    for applet in applets {
        if applet == "bin/busybox" || existing.contains(applet) {
            continue;
        }
        tree.add(applet, EntryKind::Symlink { target: "/bin/busybox".to_owned() }, 0o777)?;
    }
    Ok(())
}

/// Gzips bytes with `gzip -n -9` (no name, no time stamp: the same input gives the same output).
pub fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new("gzip")
        .args(["-n", "-9", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run gzip")?;
    let mut stdin = child.stdin.take().context("gzip has no standard input")?;
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().context("cannot read gzip's output")?;
    writer.join().map_err(|_| anyhow::anyhow!("the gzip writer thread panicked"))?.context("cannot feed gzip")?;
    if !output.status.success() {
        bail!("gzip failed ({})", output.status);
    }
    Ok(output.stdout)
}

/// Fixed identities of the filesystem, so that two builds give the same bytes.
pub struct FilesystemIdentity {
    pub uuid: &'static str,
    pub hash_seed: &'static str,
    pub timestamp: u64,
}

/// Makes `disk.qcow2` at `output` from `tree`, using `work` as scratch space.
pub fn make_root_disk(
    tree: &CpioArchive,
    identity: &FilesystemIdentity,
    work: &Path,
    output: &Path,
) -> anyhow::Result<()> {
    let staging = work.join("rootfs");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    write_staging_tree(tree, &staging)?;

    let config = work.join("mke2fs.conf");
    std::fs::write(&config, MKE2FS_CONFIG).with_context(|| format!("cannot write {}", config.display()))?;
    let raw = work.join("disk.raw");
    if raw.exists() {
        std::fs::remove_file(&raw).with_context(|| format!("cannot remove {}", raw.display()))?;
    }
    let file = std::fs::File::create(&raw).with_context(|| format!("cannot create {}", raw.display()))?;
    file.set_len(ROOT_FILESYSTEM_BYTES).with_context(|| format!("cannot size {}", raw.display()))?;
    drop(file);
    let fake_time = identity.timestamp.to_string();
    run_capture(
        Command::new("mkfs.ext4")
            .env("MKE2FS_CONFIG", &config)
            .env("E2FSPROGS_FAKE_TIME", &fake_time)
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-L", ROOT_FILESYSTEM_LABEL, "-U", identity.uuid, "-E"])
            .arg(format!("hash_seed={},root_owner=0:0", identity.hash_seed))
            .arg("-d")
            .arg(&staging)
            .arg(&raw),
    )?;

    // Every inode gets owner root and the fixed time: mkfs.ext4 -d copies the staging files' owners and their
    // change times (which only the kernel sets).
    let mut commands = String::new();
    let paths = std::iter::once("/".to_owned())
        .chain(std::iter::once("/lost+found".to_owned()))
        .chain(tree.entries().map(|(path, _)| format!("/{path}")));
    for path in paths {
        for (field, value) in [
            ("uid", "0"),
            ("gid", "0"),
            ("atime", fake_time.as_str()),
            ("mtime", fake_time.as_str()),
            ("ctime", fake_time.as_str()),
            ("crtime", fake_time.as_str()),
        ] {
            let value = if field.ends_with("time") { format!("@{value}") } else { value.to_owned() };
            commands.push_str(&format!("set_inode_field {path} {field} {value}\n"));
        }
    }
    let script = work.join("debugfs.commands");
    std::fs::write(&script, commands).with_context(|| format!("cannot write {}", script.display()))?;
    let debugfs = Command::new("debugfs")
        .env("E2FSPROGS_FAKE_TIME", &fake_time)
        .arg("-w")
        .arg("-f")
        .arg(&script)
        .arg(&raw)
        .output()
        .context("cannot run debugfs")?;
    let complaints = String::from_utf8_lossy(&debugfs.stderr);
    // debugfs always prints its version banner on standard error; anything else is a failed command.
    if let Some(problem) = complaints.lines().find(|line| !line.starts_with("debugfs ") && !line.trim().is_empty()) {
        bail!("debugfs could not set inode owners and times: {problem}");
    }
    if !debugfs.status.success() {
        bail!("debugfs failed ({})", debugfs.status);
    }
    run_capture(Command::new("e2fsck").args(["-f", "-n"]).arg(&raw)).context("the new root filesystem is not clean")?;

    let temporary = output.with_extension("qcow2.tmp");
    run_checked(
        Command::new("qemu-img").args(["convert", "-q", "-f", "raw", "-O", "qcow2"]).arg(&raw).arg(&temporary),
    )?;
    std::fs::rename(&temporary, output).with_context(|| format!("cannot rename to {}", output.display()))?;
    std::fs::remove_file(&raw).with_context(|| format!("cannot remove {}", raw.display()))?;
    std::fs::remove_dir_all(&staging).with_context(|| format!("cannot remove {}", staging.display()))?;
    Ok(())
}

fn write_staging_tree(tree: &CpioArchive, staging: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(staging).with_context(|| format!("cannot create {}", staging.display()))?;
    for (path, entry) in tree.entries() {
        let target: PathBuf = staging.join(path);
        match &entry.kind {
            EntryKind::Directory => {
                std::fs::create_dir_all(&target).with_context(|| format!("cannot create {}", target.display()))?;
            }
            EntryKind::File { contents } => {
                std::fs::write(&target, contents).with_context(|| format!("cannot write {}", target.display()))?;
            }
            EntryKind::Symlink { target: link } => {
                std::os::unix::fs::symlink(link, &target)
                    .with_context(|| format!("cannot link {}", target.display()))?;
            }
            EntryKind::CharacterDevice { .. } => bail!("{path}: the root filesystem takes no device nodes"),
        }
        if !matches!(entry.kind, EntryKind::Symlink { .. }) {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(entry.permissions))
                .with_context(|| format!("cannot set permissions of {}", target.display()))?;
        }
    }
    Ok(())
}
