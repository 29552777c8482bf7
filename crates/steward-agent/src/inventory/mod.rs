//! Inventory collection: builds a [`steward_protocol::Inventory`] for the running Linux system.
//!
//! Everything is read from the kernel's and the package managers' own files, relative to a `root` directory that is
//! `/` in production and a fixture tree in tests (`<root>/proc/...`, `<root>/sys/...`, `<root>/etc/...`, ...).
//! Only a few things cannot come from files and are therefore asked from the running kernel when `root` is `/`:
//! the addresses of the network interfaces (`getifaddrs`), filesystem usage (`statvfs`, on the mount point joined
//! with `root`), the rpm database (through the `rpm` binary) and, on x86, the CPUID hypervisor signature.
//!
//! The collector never panics on odd content and never fails as a whole: a missing or unreadable source leaves
//! its part of the inventory empty (or zero) and is logged at debug level. It spawns no threads (only the `rpm`
//! process where rpm is used) and streams the larger files (`/var/lib/dpkg/status`, `/proc/cpuinfo`, the mount
//! table) line by line through a small reused line buffer instead of reading them whole, so a collection costs a
//! few milliseconds and does not grow the agent's resident memory by the size of the package database.
//!
//! One file per source:
//! - `os_release.rs` reads `/etc/os-release` (falling back to `/usr/lib/os-release`),
//! - `cpu_memory.rs` reads `/sys/devices/system/cpu/online`, `/proc/cpuinfo`, `/proc/meminfo`,
//! - `hypervisor.rs` works out which hypervisor the system runs on,
//! - `block.rs` reads `/sys/block`,
//! - `filesystems.rs` reads `/proc/self/mounts` and calls `statvfs`,
//! - `network.rs` reads `/sys/class/net` and calls `getifaddrs`,
//! - `packages.rs` reads `/var/lib/dpkg/status` and runs `rpm -qa`,
//! - `zvm.rs` reads `/proc/sysinfo` on s390x,
//! - `personalization.rs` reads the first-boot results of Steward guests in `/var/lib/steward/personalization`.

mod block;
mod cpu_memory;
mod filesystems;
mod hypervisor;
mod network;
mod os_release;
mod packages;
mod personalization;
mod zvm;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use steward_protocol::{HostFacts, Inventory, Kernel};

pub use network::FIXTURE_ADDRESSES;

/// Collects the inventory of the system found under `root` (`/` for the running system).
///
/// The result is normalized (every list in its canonical order), ready to be reported or diffed.
pub fn collect(root: &Path) -> Inventory {
    let live = is_live(root);
    let sysinfo = zvm::read(root);
    let cpu = cpu_memory::cpu(root, &sysinfo);
    let hypervisor = hypervisor::detect(root, live, &sysinfo, cpu.hypervisor_flag);
    let mut inventory = Inventory {
        host: HostFacts {
            hostname: read_trimmed(&rooted(root, "proc/sys/kernel/hostname")).unwrap_or_default(),
            os: os_release::read(root),
            kernel: Kernel {
                release: read_trimmed(&rooted(root, "proc/sys/kernel/osrelease")).unwrap_or_default(),
                version: read_trimmed(&rooted(root, "proc/sys/kernel/version")).unwrap_or_default(),
            },
            arch: uname_arch().to_owned(),
            cpu: cpu.cpu,
            memory: cpu_memory::memory(root),
            hypervisor: hypervisor.to_owned(),
        },
        block_devices: block::collect(root),
        filesystems: filesystems::collect(root),
        interfaces: network::collect(root, live),
        packages: packages::collect(root, live),
        zvm: sysinfo.zvm_guest(),
        personalization: personalization::collect(root),
    };
    inventory.normalize();
    inventory
}

/// The network interfaces of the system under `root`, sorted by name, each with its addresses sorted (as in
/// the inventory); for the network configuration request.
pub fn interfaces(root: &Path) -> Vec<steward_protocol::NetworkInterface> {
    let mut interfaces = network::collect(root, is_live(root));
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    for interface in &mut interfaces {
        interface.addresses.sort();
    }
    interfaces
}

/// Whether `root` is the running system's root, where the kernel may be asked directly.
fn is_live(root: &Path) -> bool {
    root == Path::new("/")
}

/// The machine architecture as `uname -m` names it, for the architecture this agent was built for.
pub fn uname_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "i686",
        "arm" => "armv7l",
        "powerpc" => "ppc",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        // x86_64, aarch64, s390x, riscv64, loongarch64, mips64, sparc64 are spelled the same by both.
        other => other,
    }
}

/// `root` joined with an absolute system path given without its leading slash (`"proc/meminfo"`).
fn rooted(root: &Path, relative: &str) -> PathBuf {
    root.join(relative.trim_start_matches('/'))
}

/// Reads a whole (small) file; `None`, logged at debug level, when it is missing or unreadable.
fn read_string(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "inventory source not readable");
            None
        }
    }
}

/// Reads a one-value file such as a sysfs attribute, without surrounding whitespace.
fn read_trimmed(path: &Path) -> Option<String> {
    let mut text = read_string(path)?;
    let end = text.trim_end().len();
    text.truncate(end);
    let start = text.len() - text.trim_start().len();
    if start > 0 {
        text.drain(..start);
    }
    Some(text)
}

/// Reads a file holding one unsigned number (sysfs attributes); `None` when missing or not a number.
fn read_u64(path: &Path) -> Option<u64> {
    let text = read_trimmed(path)?;
    match text.parse() {
        Ok(value) => Some(value),
        Err(_) => {
            tracing::debug!(path = %path.display(), value = %text, "inventory source is not a number");
            None
        }
    }
}

/// Streams a file line by line through one reused buffer; `on_line` gets each line without its line end
/// and returns `false` to stop early. Returns `false` when the file could not be opened.
fn for_each_line(path: &Path, mut on_line: impl FnMut(&str) -> bool) -> bool {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "inventory source not readable");
            return false;
        }
    };
    let mut reader = BufReader::with_capacity(16 * 1024, file);
    let mut line = String::with_capacity(256);
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {
                if !on_line(line.trim_end_matches(['\n', '\r'])) {
                    break;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                // A line that is not UTF-8: skip it rather than losing the rest of the file. `read_line` has
                // consumed the line's bytes but left `line` empty.
                tracing::debug!(path = %path.display(), "skipping a line that is not UTF-8");
            }
            Err(error) => {
                tracing::debug!(path = %path.display(), %error, "error while reading inventory source");
                break;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_is_a_uname_name() {
        let arch = uname_arch();
        assert!(!arch.is_empty());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(arch, "x86_64");
        }
    }

    #[test]
    fn the_inventory_holds_the_personalization_results_of_its_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join(personalization::RESULTS_DIR);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("20-packages"), "100\n").expect("write");
        std::fs::write(dir.join("10-hostname"), "0\n").expect("write");
        let inventory = collect(root.path());
        let results: Vec<_> = inventory.personalization.iter().map(|r| (r.name.as_str(), r.exit_code)).collect();
        assert_eq!(results, [("10-hostname", 0), ("20-packages", 100)]);
    }

    #[test]
    fn rooted_joins_below_root() {
        assert_eq!(rooted(Path::new("/tmp/x"), "/proc/meminfo"), PathBuf::from("/tmp/x/proc/meminfo"));
        assert_eq!(rooted(Path::new("/"), "proc/meminfo"), PathBuf::from("/proc/meminfo"));
    }

    #[test]
    fn helpers_tolerate_missing_and_odd_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_trimmed(&dir.path().join("missing")), None);
        std::fs::write(dir.path().join("value"), "  42 \n").expect("write");
        assert_eq!(read_trimmed(&dir.path().join("value")).as_deref(), Some("42"));
        assert_eq!(read_u64(&dir.path().join("value")), Some(42));
        std::fs::write(dir.path().join("word"), "many\n").expect("write");
        assert_eq!(read_u64(&dir.path().join("word")), None);

        std::fs::write(dir.path().join("lines"), b"one\n\xff\xfe\nthree\r\nfour").expect("write");
        let mut lines = Vec::new();
        assert!(for_each_line(&dir.path().join("lines"), |line| {
            lines.push(line.to_owned());
            true
        }));
        assert_eq!(lines, ["one", "three", "four"]);
        assert!(!for_each_line(&dir.path().join("missing"), |_| true));
    }
}
