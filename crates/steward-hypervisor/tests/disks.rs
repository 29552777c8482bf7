//! Disks through the real `qemu-img`: creation, copy-on-write overlays (O(1): small and independent of the
//! template's size), full copies, captures (flattened, compressed), idempotent retries and conflicts.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::Path;

use steward_hypervisor::{DiskFormat, Hypervisor, HypervisorError};

/// Writes a qcow2 image of `mebibytes` filled with non-zero data (so copies have real work to do).
fn filled_qcow2(directory: &Path, name: &str, mebibytes: usize) -> std::path::PathBuf {
    let raw = directory.join(format!("{name}.raw"));
    let mut file = std::fs::File::create(&raw).unwrap();
    let chunk: Vec<u8> = (0..1024 * 1024).map(|index| (index % 251) as u8 + 1).collect();
    for _ in 0..mebibytes {
        file.write_all(&chunk).unwrap();
    }
    drop(file);
    let qcow2 = directory.join(format!("{name}.qcow2"));
    let status =
        std::process::Command::new("qemu-img").args(["convert", "-O", "qcow2"]).arg(&raw).arg(&qcow2).status().unwrap();
    assert!(status.success());
    std::fs::remove_file(raw).unwrap();
    qcow2
}

fn images_identical(first: &Path, second: &Path) -> bool {
    std::process::Command::new("qemu-img").arg("compare").arg(first).arg(second).output().unwrap().status.success()
}

#[tokio::test]
async fn create_is_idempotent_and_refuses_a_different_existing_disk() {
    if !support::qemu_available() {
        return;
    }
    let test_host = support::TestHost::new();
    let host = test_host.open();
    let path = test_host.path("disks/blank.qcow2");
    host.disk_create(&path, 64 << 20).await.unwrap();
    host.disk_create(&path, 64 << 20).await.unwrap();
    let info = host.disk_info(&path).await.unwrap();
    assert_eq!(info.format, "qcow2");
    assert_eq!(info.virtual_size_bytes, 64 << 20);
    assert_eq!(info.backing_file, None);
    let conflict = host.disk_create(&path, 128 << 20).await.unwrap_err();
    assert!(matches!(conflict, HypervisorError::DiskConflict { .. }), "{conflict}");
    assert!(host.disk_create(&test_host.path("odd.qcow2"), 1000).await.is_err());
    // No temporary file is left beside the disk.
    assert_eq!(std::fs::read_dir(test_host.path("disks")).unwrap().count(), 1);

    host.disk_delete(&path).await.unwrap();
    host.disk_delete(&path).await.unwrap();
    assert!(!path.exists());
    let missing = host.disk_info(&path).await.unwrap_err();
    assert!(matches!(missing, HypervisorError::DiskMissing { .. }), "{missing}");
}

#[tokio::test]
async fn overlays_are_constant_cost_whatever_the_template_size() {
    if !support::qemu_available() {
        return;
    }
    let test_host = support::TestHost::new();
    let host = test_host.open();
    let small = filled_qcow2(test_host.directory.path(), "small", 16);
    let large = filled_qcow2(test_host.directory.path(), "large", 256);

    let small_overlay = test_host.path("small-clone.qcow2");
    let large_overlay = test_host.path("large-clone.qcow2");
    host.disk_overlay(&small_overlay, &small, DiskFormat::Qcow2, None).await.unwrap();
    host.disk_overlay(&large_overlay, &large, DiskFormat::Qcow2, Some(512 << 20)).await.unwrap();
    // Retrying is harmless.
    host.disk_overlay(&large_overlay, &large, DiskFormat::Qcow2, Some(512 << 20)).await.unwrap();

    let small_info = host.disk_info(&small_overlay).await.unwrap();
    let large_info = host.disk_info(&large_overlay).await.unwrap();
    assert_eq!(small_info.backing_file.as_deref(), Some(small.as_path()));
    assert_eq!(large_info.virtual_size_bytes, 512 << 20);
    assert!(large_info.actual_size_bytes < 1 << 20, "overlay takes {} bytes", large_info.actual_size_bytes);
    assert_eq!(small_info.actual_size_bytes, large_info.actual_size_bytes);
    assert!(host.disk_info(&large).await.unwrap().actual_size_bytes > 200 << 20);
    assert!(images_identical(&small, &small_overlay));

    // Smaller than the template, or a different backing under the same name: refused.
    let too_small = host.disk_overlay(&test_host.path("tiny.qcow2"), &large, DiskFormat::Qcow2, Some(1 << 20)).await;
    assert!(too_small.unwrap_err().to_string().contains("smaller than the backing image"));
    let conflict = host.disk_overlay(&large_overlay, &small, DiskFormat::Qcow2, Some(512 << 20)).await.unwrap_err();
    assert!(matches!(conflict, HypervisorError::DiskConflict { .. }), "{conflict}");
}

#[tokio::test]
async fn copies_are_complete_and_captures_flatten_and_compress() {
    if !support::qemu_available() {
        return;
    }
    let test_host = support::TestHost::new();
    let host = test_host.open();
    let template = filled_qcow2(test_host.directory.path(), "template", 32);

    let copy = test_host.path("copy.qcow2");
    let report = host.disk_copy(&template, &copy, Some(64 << 20)).await.unwrap();
    assert!(!report.already_present);
    assert_eq!(report.bytes, 64 << 20);
    assert!(report.bytes_per_second > 0.0);
    let again = host.disk_copy(&template, &copy, Some(64 << 20)).await.unwrap();
    assert!(again.already_present);
    let copy_info = host.disk_info(&copy).await.unwrap();
    assert_eq!(copy_info.backing_file, None);
    assert_eq!(copy_info.virtual_size_bytes, 64 << 20);

    // A guest's overlay with its own writes, captured: no backing chain, same contents, compressed.
    let overlay = test_host.path("guest.qcow2");
    host.disk_overlay(&overlay, &template, DiskFormat::Qcow2, None).await.unwrap();
    let status = std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x5a 1M 2M"])
        .arg(&overlay)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let captured = test_host.path("captured.qcow2");
    host.disk_capture(&overlay, &captured).await.unwrap();
    host.disk_capture(&overlay, &captured).await.unwrap();
    let captured_info = host.disk_info(&captured).await.unwrap();
    assert_eq!(captured_info.backing_file, None);
    assert_eq!(captured_info.format, "qcow2");
    assert!(images_identical(&overlay, &captured));
    assert!(!images_identical(&template, &captured));
    // The repetitive test data compresses well below its 32 MiB.
    assert!(
        captured_info.actual_size_bytes < 16 << 20,
        "captured image takes {} bytes",
        captured_info.actual_size_bytes
    );
}
