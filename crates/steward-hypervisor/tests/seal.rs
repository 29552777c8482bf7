//! Sealing captured images offline: an ext4 root filesystem made with `mkfs.ext4 -d` (on the whole disk and
//! in an MBR partition) loses exactly its machine identity, keeps everything else, stays consistent
//! (`e2fsck`), and a second seal finds nothing. A non-ext filesystem is refused by name.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use steward_hypervisor::{ConfigDrive, Hypervisor, HypervisorError};

/// A root tree with identity files and files that must survive.
fn make_root_tree(root: &Path) {
    let files: [(&str, &str); 14] = [
        ("etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
        ("etc/hostname", "template\n"),
        ("etc/ssh/ssh_host_rsa_key", "private\n"),
        ("etc/ssh/ssh_host_rsa_key.pub", "public\n"),
        ("etc/ssh/ssh_host_ed25519_key", "private\n"),
        ("etc/ssh/sshd_config", "PermitRootLogin no\n"),
        ("etc/steward/network.conf", "mac=52:54:00:12:34:56\n"),
        ("etc/steward/agent.conf", "server=steward\n"),
        ("etc/udev/rules.d/70-persistent-net.rules", "SUBSYSTEM==\"net\"\n"),
        ("var/lib/steward-agent/identity.json", "{}\n"),
        ("var/lib/steward-agent/certs/agent.pem", "cert\n"),
        ("var/lib/steward/instance-id", "vs-1\n"),
        ("var/lib/cloud/instances/vs-1/boot-finished", "done\n"),
        ("var/lib/dhcp/dhclient.eth0.leases", "lease {}\n"),
    ];
    for (path, contents) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
    }
    std::fs::set_permissions(root.join("etc/machine-id"), std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::create_dir_all(root.join("var/lib/cloud/data")).unwrap();
    symlink("/var/lib/cloud/instances/vs-1", root.join("var/lib/cloud/instance")).unwrap();
}

fn mkfs_ext4(tree: &Path, image: &Path) {
    let output = Command::new("mkfs.ext4").args(["-q", "-F", "-d"]).arg(tree).arg(image).arg("32M").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn to_qcow2(raw: &Path, qcow2: &Path) {
    assert!(Command::new("qemu-img").args(["convert", "-O", "qcow2"]).arg(raw).arg(qcow2).status().unwrap().success());
}

/// Converts a sealed image back to raw and returns it with the filesystem offset as a debugfs device.
fn inspectable(qcow2: &Path, offset: u64) -> (PathBuf, String) {
    let raw = qcow2.with_extension("inspect.raw");
    assert!(Command::new("qemu-img").args(["convert", "-O", "raw"]).arg(qcow2).arg(&raw).status().unwrap().success());
    let device = if offset == 0 { raw.display().to_string() } else { format!("{}?offset={offset}", raw.display()) };
    (raw, device)
}

fn debugfs(device: &str, request: &str) -> String {
    let output = Command::new("debugfs").args(["-R", request, device]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn expected_sealed() -> Vec<String> {
    [
        "emptied /etc/machine-id",
        "removed /etc/ssh/ssh_host_ed25519_key",
        "removed /etc/ssh/ssh_host_rsa_key",
        "removed /etc/ssh/ssh_host_rsa_key.pub",
        "removed /etc/steward/network.conf",
        "removed /etc/udev/rules.d/70-persistent-net.rules",
        "removed /var/lib/steward-agent/certs",
        "removed /var/lib/steward-agent/identity.json",
        "removed /var/lib/steward/instance-id",
        "removed /var/lib/cloud/instance",
        "removed /var/lib/cloud/instances",
        "removed /var/lib/dhcp/dhclient.eth0.leases",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn check_sealed_filesystem(qcow2: &Path, offset: u64) {
    let (raw, device) = inspectable(qcow2, offset);
    let etc = debugfs(&device, "ls -p /etc");
    assert!(etc.contains("/hostname/"), "{etc}");
    let machine_id = etc.lines().find(|line| line.contains("/machine-id/")).unwrap();
    assert!(machine_id.contains("/100444/0/0/machine-id/0/"), "{machine_id}");
    let ssh = debugfs(&device, "ls -p /etc/ssh");
    assert!(ssh.contains("/sshd_config/") && !ssh.contains("ssh_host_"), "{ssh}");
    let steward = debugfs(&device, "ls -p /etc/steward");
    assert!(steward.contains("/agent.conf/") && !steward.contains("network.conf"), "{steward}");
    let cloud = debugfs(&device, "ls -p /var/lib/cloud");
    assert!(cloud.contains("/data/") && !cloud.contains("instance"), "{cloud}");
    let agent = debugfs(&device, "ls -p /var/lib/steward-agent");
    assert_eq!(agent.lines().filter(|line| !line.trim().is_empty()).count(), 2, "only . and .. remain: {agent:?}");
    // The filesystem is consistent after the offline edits.
    if offset == 0 {
        let fsck = Command::new("e2fsck").args(["-f", "-n"]).arg(&raw).output().unwrap();
        assert!(
            fsck.status.success(),
            "{}{}",
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        );
    }
    std::fs::remove_file(raw).unwrap();
}

#[tokio::test]
async fn sealing_an_ext4_disk_removes_exactly_the_identity() {
    if !support::qemu_available() {
        return;
    }
    let test_host = support::TestHost::new();
    let host = test_host.open();
    let tree = test_host.path("tree");
    make_root_tree(&tree);
    let raw = test_host.path("root.raw");
    mkfs_ext4(&tree, &raw);
    let guest_disk = test_host.path("guest.qcow2");
    to_qcow2(&raw, &guest_disk);

    let template = test_host.path("template.qcow2");
    host.disk_capture(&guest_disk, &template).await.unwrap();
    let mut sealed = host.seal_disk(&template).await.unwrap();
    sealed.sort();
    let mut expected = expected_sealed();
    expected.sort();
    assert_eq!(sealed, expected);
    let info = host.disk_info(&template).await.unwrap();
    assert_eq!((info.format.as_str(), info.backing_file), ("qcow2", None));
    check_sealed_filesystem(&template, 0);

    // Sealing again finds nothing; no temporary file is left behind.
    assert_eq!(host.seal_disk(&template).await.unwrap(), Vec::<String>::new());
    let leftovers: Vec<_> = std::fs::read_dir(test_host.directory.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn sealing_finds_ext4_in_the_first_mbr_partition() {
    if !support::qemu_available() {
        return;
    }
    let test_host = support::TestHost::new();
    let host = test_host.open();
    let tree = test_host.path("tree");
    make_root_tree(&tree);
    let filesystem = test_host.path("partition.raw");
    mkfs_ext4(&tree, &filesystem);
    // A disk with an MBR whose first partition (type 0x83) starts at 1 MiB and holds the filesystem.
    let filesystem_bytes = std::fs::read(&filesystem).unwrap();
    let mut disk = vec![0u8; (1 << 20) + filesystem_bytes.len()];
    let entry = &mut disk[446..462];
    entry[4] = 0x83;
    entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
    entry[12..16].copy_from_slice(&((filesystem_bytes.len() / 512) as u32).to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xAA;
    disk[1 << 20..].copy_from_slice(&filesystem_bytes);
    let raw = test_host.path("disk.raw");
    std::fs::write(&raw, disk).unwrap();
    let image = test_host.path("partitioned.qcow2");
    to_qcow2(&raw, &image);

    let mut sealed = host.seal_disk(&image).await.unwrap();
    sealed.sort();
    let mut expected = expected_sealed();
    expected.sort();
    assert_eq!(sealed, expected);
    check_sealed_filesystem(&image, 1 << 20);
}

#[tokio::test]
async fn sealing_refuses_a_filesystem_it_cannot_edit() {
    if !support::qemu_available() {
        return;
    }
    let test_host = support::TestHost::new();
    let host = test_host.open();
    let vfat = test_host.path("cidata.img");
    let drive = ConfigDrive {
        instance_id: "i".to_owned(),
        hostname: "h".to_owned(),
        nics: vec![],
        scripts: vec![],
        environment: Default::default(),
    };
    host.config_drive_write(&vfat, &drive).await.unwrap();
    let image = test_host.path("vfat.qcow2");
    to_qcow2(&vfat, &image);
    match host.seal_disk(&image).await.unwrap_err() {
        HypervisorError::UnsupportedFilesystem { found, .. } => assert_eq!(found, "vfat"),
        other => panic!("unexpected error {other}"),
    }
    let blank = test_host.path("blank.qcow2");
    host.disk_create(&blank, 8 << 20).await.unwrap();
    let error = host.seal_disk(&blank).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "cannot seal {}: its root filesystem is not recognized, only ext2/ext3/ext4 can be sealed",
            blank.display()
        )
    );
}
