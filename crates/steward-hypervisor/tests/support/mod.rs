//! Shared helpers of the integration tests: QEMU presence (a failure under `CI=true`, a skip elsewhere),
//! unique network namespace names, and drop guards that kill every process a test started and delete its
//! namespace even when the test fails.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use steward_hypervisor::qemu::{QemuHost, QemuHostConfig};

/// Whether the QEMU tools are installed; under `CI=true` their absence fails the test instead of skipping it.
pub fn qemu_available() -> bool {
    let present = ["qemu-system-x86_64", "qemu-system-s390x", "qemu-img"].iter().all(|program| {
        steward_hypervisor::qemu::command::find_in_path(program, &std::env::var_os("PATH").unwrap_or_default())
            .is_some()
    });
    if !present {
        if std::env::var("CI").is_ok_and(|value| value == "true") {
            panic!("QEMU (qemu-system-x86_64, qemu-system-s390x, qemu-img) is required under CI=true");
        }
        eprintln!("skipping: QEMU is not installed");
    }
    present
}

/// Whether this process may create network namespaces (root).
pub fn can_create_namespaces() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if std::env::var("CI").is_ok_and(|value| value == "true") {
            panic!("network tests need root under CI=true");
        }
        eprintln!("skipping: network namespaces need root");
    }
    root
}

/// The directory of the starter guest image for `arch` (`cargo xtask images`): `$STEWARD_IMAGES/<arch>` when
/// that variable is set, the workspace's `target/images/<arch>` otherwise. Missing, the test is skipped (a
/// failure under `CI=true`).
pub fn starter_image(arch: &str) -> Option<PathBuf> {
    let base = match std::env::var_os("STEWARD_IMAGES") {
        Some(directory) => PathBuf::from(directory),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/images"),
    };
    let directory = base.join(arch);
    if directory.join("template.json").exists() {
        return Some(directory);
    }
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("the {arch} starter image is missing in {}: run `cargo xtask images`", directory.display());
    }
    eprintln!("skipping: the {arch} starter image is missing in {} (run `cargo xtask images`)", directory.display());
    None
}

/// A namespace name unique to this test process and call.
pub fn unique_namespace() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("stwt{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// A temporary host: its directory, its namespace, and cleanup of both (and of every QEMU whose command line
/// mentions the directory) on drop.
pub struct TestHost {
    pub directory: tempfile::TempDir,
    pub namespace: String,
    pub extra_pids: Vec<u32>,
}

impl TestHost {
    pub fn new() -> Self {
        TestHost { directory: tempfile::tempdir().unwrap(), namespace: unique_namespace(), extra_pids: Vec::new() }
    }

    pub fn root(&self) -> PathBuf {
        self.directory.path().join("hosts/local")
    }

    pub fn open(&self) -> QemuHost {
        QemuHost::new(QemuHostConfig { root: self.root(), namespace: self.namespace.clone(), search_path: None })
            .unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }
}

/// The pids of processes whose command line mentions `directory`.
pub fn processes_mentioning(directory: &Path) -> Vec<u32> {
    let needle = directory.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(&needle))
        })
        .filter(|pid| steward_hypervisor::qemu::processes::process_alive(*pid))
        .collect()
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let mut pids = processes_mentioning(self.directory.path());
        pids.extend(&self.extra_pids);
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions; these are processes this test started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        if Path::new("/run/netns").join(&self.namespace).exists() {
            let _ = std::process::Command::new("ip").args(["netns", "delete", &self.namespace]).status();
        }
    }
}
