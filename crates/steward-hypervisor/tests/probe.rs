//! The probe against the real emulators of this machine: both architectures are found, and KVM is not
//! reported because guests do not really run under it here (nested virtualization hangs).
#![allow(clippy::unwrap_used)]

mod support;

use steward_hypervisor::{Accelerator, Arch, Hypervisor};

#[tokio::test]
async fn probe_finds_both_emulators_with_tcg_and_the_host_resources() {
    if !support::qemu_available() {
        return;
    }
    let test_host = support::TestHost::new();
    let host = test_host.open();
    let started = std::time::Instant::now();
    let facts = Hypervisor::probe(&host).await.unwrap();
    let first_probe = started.elapsed();

    for arch in [Arch::X86_64, Arch::S390x] {
        let emulator = facts.emulator(arch).unwrap_or_else(|| panic!("no emulator for {arch}"));
        assert!(emulator.binary.ends_with(format!("qemu-system-{arch}")));
        assert!(emulator.version.chars().next().unwrap().is_ascii_digit(), "{}", emulator.version);
    }
    assert_eq!(facts.emulator(Arch::S390x).unwrap().accelerator, Accelerator::Tcg);
    // On this machine /dev/kvm exists but hangs guests, so the real-guest test must answer TCG.
    if std::env::var("STEWARD_EXPECT_KVM").is_err() {
        assert_eq!(facts.emulator(Arch::X86_64).unwrap().accelerator, Accelerator::Tcg);
    }
    assert!(facts.cpus >= 1);
    assert!(facts.memory_total_bytes >= facts.memory_available_bytes && facts.memory_available_bytes > 0);
    assert!(facts.storage_total_bytes >= facts.storage_free_bytes && facts.storage_free_bytes > 0);
    assert_eq!(facts.storage_directory, test_host.root());

    // The emulator facts are cached per process: the second probe runs no test guest.
    let started = std::time::Instant::now();
    let again = Hypervisor::probe(&host).await.unwrap();
    assert_eq!(again.emulators, facts.emulators);
    assert!(started.elapsed() < first_probe.max(std::time::Duration::from_millis(50)));
    eprintln!("first probe {first_probe:?}, cached probe {:?}", started.elapsed());
}

#[tokio::test]
async fn a_missing_emulator_is_reported_by_architecture() {
    if !support::qemu_available() {
        return;
    }
    let test_host = support::TestHost::new();
    let empty_path = test_host.path("empty-bin");
    std::fs::create_dir_all(&empty_path).unwrap();
    let host = steward_hypervisor::qemu::QemuHost::new(steward_hypervisor::qemu::QemuHostConfig {
        root: test_host.root(),
        namespace: test_host.namespace.clone(),
        search_path: Some(empty_path.into_os_string()),
    })
    .unwrap();
    let facts = host.probe().await.unwrap();
    assert!(facts.emulators.is_empty());
    let error = host.disks().unwrap_err();
    assert_eq!(error.to_string(), "the program qemu-img was not found (is its package installed?)");
}

#[tokio::test]
async fn the_probe_firmware_really_runs_under_tcg() {
    if !support::qemu_available() {
        return;
    }
    // The KVM verdict means something only if the probe guest works where guests do run.
    let test_host = support::TestHost::new();
    let binary =
        steward_hypervisor::qemu::command::find_in_path("qemu-system-x86_64", &std::env::var_os("PATH").unwrap())
            .unwrap();
    let runs = steward_hypervisor::qemu::probe::accelerator_runs_guests(
        &binary,
        Accelerator::Tcg,
        &test_host.path("scratch"),
        std::time::Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert!(runs);
    assert_eq!(std::fs::read_dir(test_host.path("scratch")).unwrap().count(), 0, "the probe firmware is removed");
}
