//! The driver conformance suite (`conformance/mod.rs`) against the QEMU driver: real QEMU under TCG on x86_64,
//! each check on a host of its own (a temporary storage directory and a network namespace of its own, so it
//! needs root like the other network tests). The guests boot QEMU's default firmware from a blank disk and
//! sit there, which is all the contract needs.
#![allow(clippy::unwrap_used)]

mod conformance;
mod support;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use steward_hypervisor::{Arch, DiskFormat, GuestSpec};

use conformance::Fixture;

/// The suite's names on QEMU: guests `conf<n>`, qcow2 files in the test's directory, network `confnet`, taps
/// `tapconf<n>-<i>`.
struct QemuFixture {
    disks: PathBuf,
}

impl Fixture for QemuFixture {
    fn guest_name(&self, index: u32) -> String {
        format!("conf{index}")
    }

    fn arch(&self) -> Arch {
        Arch::X86_64
    }

    fn disk_path(&self, guest: &str, index: u32) -> PathBuf {
        self.disks.join(format!("{guest}-{index}.qcow2"))
    }

    fn disk_format(&self) -> DiskFormat {
        DiskFormat::Qcow2
    }

    fn network_name(&self) -> String {
        "confnet".to_owned()
    }

    fn nic_tap(&self, guest: &str, index: u32) -> String {
        format!("tap{guest}-{index}")
    }

    /// The default firmware ignores the power button: the stop is forced after this.
    fn stop_timeout(&self) -> Duration {
        Duration::from_millis(500)
    }

    fn refused_guest_names(&self) -> Vec<String> {
        vec![String::new(), "-conf".to_owned(), "conf/1".to_owned(), "conf 1".to_owned(), "c".repeat(64)]
    }

    /// QEMU keeps the definition as given.
    fn described(&self, spec: &GuestSpec) -> GuestSpec {
        spec.clone()
    }
}

/// Runs one check on a fresh host when QEMU is installed (a failure under `CI=true` otherwise) and this
/// process may create network namespaces, then shows that the check left nothing behind: no guest, no QEMU
/// process, no disk file, no namespace (it goes with the last network).
macro_rules! conformance_test {
    ($name:ident, $check:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> Result<()> {
            if !support::qemu_available() || !support::can_create_namespaces() {
                return Ok(());
            }
            let test_host = support::TestHost::new();
            let host = test_host.open();
            let fixture = QemuFixture { disks: test_host.path("disks") };
            $check(&host, &fixture).await?;
            let left = host.defined_guests()?;
            anyhow::ensure!(left.is_empty(), "the check left guests behind: {left:?}");
            let processes = support::processes_mentioning(test_host.directory.path());
            anyhow::ensure!(processes.is_empty(), "the check left processes behind: {processes:?}");
            let files: Vec<_> = match std::fs::read_dir(&fixture.disks) {
                Ok(entries) => entries.flatten().map(|entry| entry.path()).collect(),
                Err(_) => Vec::new(),
            };
            anyhow::ensure!(files.is_empty(), "the check left disks behind: {files:?}");
            let namespace = std::path::Path::new("/run/netns").join(&test_host.namespace);
            anyhow::ensure!(!namespace.exists(), "the check left namespace {} behind", test_host.namespace);
            Ok(())
        }
    };
}

conformance_test!(disks_conform, conformance::check_disks);
conformance_test!(definitions_conform, conformance::check_definition);
conformance_test!(power_conforms, conformance::check_power);
conformance_test!(cpu_share_conforms, conformance::check_cpu_share);
conformance_test!(networks_conform, conformance::check_networks);
conformance_test!(capabilities_are_honest, conformance::check_capabilities);
conformance_test!(names_conform, conformance::check_names);
