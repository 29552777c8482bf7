//! Measurements for the report (run with `cargo test -p steward-hypervisor --test measure -- --ignored
//! --nocapture`): overlay creation versus full copy for a 64 MiB and a 1 GiB template (median of 10 each),
//! and the time to start a guest (process up, QMP answering; median of 10).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use steward_hypervisor::qemu::firmware;
use steward_hypervisor::{Arch, Boot, DiskFormat, GuestSpec, Hypervisor};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

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

#[tokio::test]
#[ignore = "a measurement, not a check; run on demand"]
async fn measure_overlay_versus_copy_and_guest_start() {
    if !support::qemu_available() {
        return;
    }
    let test_host = support::TestHost::new();
    let host = test_host.open();
    for (label, mebibytes) in [("64 MiB", 64), ("1 GiB", 1024)] {
        let template = filled_qcow2(test_host.directory.path(), &format!("template-{mebibytes}"), mebibytes);
        let mut overlay_times = Vec::new();
        let mut copy_times = Vec::new();
        let mut rates = Vec::new();
        for run in 0..10 {
            let overlay = test_host.path(&format!("overlay-{mebibytes}-{run}.qcow2"));
            let started = Instant::now();
            host.disk_overlay(&overlay, &template, DiskFormat::Qcow2, None).await.unwrap();
            overlay_times.push(started.elapsed());
            let copy = test_host.path(&format!("copy-{mebibytes}-{run}.qcow2"));
            let started = Instant::now();
            let report = host.disk_copy(&template, &copy, None).await.unwrap();
            copy_times.push(started.elapsed());
            rates.push(report.bytes_per_second);
            host.disk_delete(&copy).await.unwrap();
            host.disk_delete(&overlay).await.unwrap();
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "{label}: overlay median {:?}, full copy median {:?} ({:.0} MiB/s median)",
            median(overlay_times),
            median(copy_times),
            rates[rates.len() / 2] / (1024.0 * 1024.0)
        );
        host.disk_delete(&template).await.unwrap();
    }

    let firmware_path = test_host.path("idle.bin");
    std::fs::write(&firmware_path, firmware::idle_loop_bios()).unwrap();
    let spec = GuestSpec {
        name: "timing".to_owned(),
        arch: Arch::X86_64,
        cpus: 1,
        memory_mib: 64,
        cpu_share: 100,
        disks: vec![],
        config_drive: None,
        nics: vec![],
        boot: Boot::Firmware { firmware: Some(firmware_path) },
        agent_channel: true,
    };
    host.define_guest(&spec).await.unwrap();
    let mut start_times = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        host.start("timing").await.unwrap();
        start_times.push(started.elapsed());
        host.stop("timing", Duration::ZERO).await.unwrap();
    }
    println!("x86_64 guest start (process up, QMP answering): median {:?}", median(start_times));
    host.undefine_guest("timing").await.unwrap();
}
