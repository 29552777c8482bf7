//! Finding what the host offers: which emulators are installed, their versions, and whether KVM really runs
//! guests. `/dev/kvm` existing proves nothing (under nested virtualization `KVM_CREATE_VM` succeeds and guests
//! then hang), so the probe boots a 64 KiB firmware that enters 64-bit long mode with paging and exits through
//! `isa-debug-exit`, under `-accel kvm` with a short timeout: the expected exit status means KVM works, anything
//! else (or a timeout) means TCG. (A real-mode-only firmware is not enough: here KVM runs real-mode code and
//! hangs only once paging is on; see `firmware`.)
//! s390x guests on any other host architecture always use TCG.
//!
//! The emulator facts are cached per process, keyed by the binary's path, because a KVM probe costs up to its
//! timeout; memory and storage figures are read fresh on every call.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use crate::error::{HypervisorError, Result};
use crate::qemu::command;
use crate::qemu::firmware;
use crate::types::{Accelerator, Arch, EmulatorFacts, HostFacts};

/// How long a KVM test guest may take to exit before KVM is declared unusable.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The value the probe firmware writes to the debug-exit port.
const PROBE_EXIT_VALUE: u8 = 0x2a;

static EMULATOR_CACHE: LazyLock<Mutex<HashMap<PathBuf, EmulatorFacts>>> = LazyLock::new(Default::default);

/// The emulator binary name of an architecture.
pub fn emulator_program(arch: Arch) -> String {
    format!("qemu-system-{arch}")
}

/// Facts about the emulators found on `search_path` (cached per binary).
pub async fn probe_emulators(search_path: &OsStr, scratch_directory: &Path) -> Result<Vec<EmulatorFacts>> {
    let mut emulators = Vec::new();
    for arch in Arch::ALL {
        let Some(binary) = command::find_in_path(&emulator_program(arch), search_path) else {
            continue;
        };
        let cached = EMULATOR_CACHE.lock().ok().and_then(|cache| cache.get(&binary).cloned());
        let facts = match cached {
            Some(facts) => facts,
            None => {
                let facts = probe_emulator(arch, &binary, scratch_directory).await?;
                if let Ok(mut cache) = EMULATOR_CACHE.lock() {
                    cache.insert(binary.clone(), facts.clone());
                }
                facts
            }
        };
        emulators.push(facts);
    }
    Ok(emulators)
}

async fn probe_emulator(arch: Arch, binary: &Path, scratch_directory: &Path) -> Result<EmulatorFacts> {
    let version_output = command::run(binary, &["--version"], command::DEFAULT_TIMEOUT).await?;
    let version = parse_version(&version_output.stdout).unwrap_or_else(|| "unknown".to_owned());
    let accelerator = if arch == Arch::X86_64 && host_arch() == Some(Arch::X86_64) && kvm_device_present() {
        if accelerator_runs_guests(binary, Accelerator::Kvm, scratch_directory, KVM_PROBE_TIMEOUT).await? {
            Accelerator::Kvm
        } else {
            Accelerator::Tcg
        }
    } else {
        Accelerator::Tcg
    };
    tracing::info!(arch = %arch, binary = %binary.display(), version, accelerator = accelerator.as_str(), "probed emulator");
    Ok(EmulatorFacts { arch, binary: binary.to_path_buf(), version, accelerator })
}

/// The version from `qemu-system-* --version` ("QEMU emulator version 7.2.22 (Debian ...)").
pub fn parse_version(output: &str) -> Option<String> {
    let first_line = output.lines().next()?;
    let rest = first_line.split("version ").nth(1)?;
    rest.split_whitespace().next().map(str::to_owned)
}

fn host_arch() -> Option<Arch> {
    Arch::from_name(std::env::consts::ARCH)
}

fn kvm_device_present() -> bool {
    Path::new("/dev/kvm").exists()
}

/// Boots the long-mode debug-exit firmware with `binary` (an x86_64 emulator) under `accelerator` and reports
/// whether it exited as expected within `timeout`.
pub async fn accelerator_runs_guests(
    binary: &Path,
    accelerator: Accelerator,
    scratch_directory: &Path,
    timeout: Duration,
) -> Result<bool> {
    crate::fsutil::create_directory(scratch_directory)?;
    static PROBE_COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let firmware_path = scratch_directory.join(format!(
        "accelerator-probe-{}-{}.bin",
        std::process::id(),
        PROBE_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&firmware_path, firmware::debug_exit_bios(PROBE_EXIT_VALUE))
        .map_err(|source| HypervisorError::io(&firmware_path, source))?;
    let firmware_argument = firmware_path.to_string_lossy().into_owned();
    let args = [
        "-accel",
        accelerator.as_str(),
        "-M",
        "pc",
        "-m",
        "16",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-bios",
        firmware_argument.as_str(),
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ];
    let outcome = command::run_unchecked(binary, &args, timeout).await;
    let _ = std::fs::remove_file(&firmware_path);
    match outcome {
        Ok(finished) if finished.status == Some(firmware::debug_exit_status(PROBE_EXIT_VALUE)) => Ok(true),
        Ok(finished) => {
            tracing::info!(accelerator = accelerator.as_str(), status = ?finished.status, stderr = finished.stderr, "probe guest failed");
            Ok(false)
        }
        Err(HypervisorError::CommandTimeout { .. }) => {
            tracing::info!(accelerator = accelerator.as_str(), ?timeout, "probe guest hung");
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Everything `probe` reports.
pub async fn probe_host(search_path: &OsStr, storage_directory: &Path) -> Result<HostFacts> {
    let emulators = probe_emulators(search_path, &storage_directory.join("tmp")).await?;
    let (memory_total_bytes, memory_available_bytes) = read_meminfo()?;
    let (storage_free_bytes, storage_total_bytes) = filesystem_space(storage_directory)?;
    Ok(HostFacts {
        emulators,
        cpus: online_cpus(),
        memory_total_bytes,
        memory_available_bytes,
        storage_directory: storage_directory.to_path_buf(),
        storage_free_bytes,
        storage_total_bytes,
    })
}

fn online_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let count = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(count).unwrap_or(1).max(1)
}

/// Total and available memory in bytes from /proc/meminfo.
fn read_meminfo() -> Result<(u64, u64)> {
    let path = Path::new("/proc/meminfo");
    let text = std::fs::read_to_string(path).map_err(|source| HypervisorError::io(path, source))?;
    Ok(parse_meminfo(&text))
}

/// `MemTotal` and `MemAvailable` (kB in the file) in bytes.
pub fn parse_meminfo(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("MemTotal"), field("MemAvailable"))
}

/// Free (for unprivileged users) and total bytes of the filesystem holding `path`.
fn filesystem_space(path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| HypervisorError::invalid("storage directory", "contains a NUL byte"))?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and stats points to writable memory of the right type.
    let status = unsafe { libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) };
    if status != 0 {
        return Err(HypervisorError::io(path, std::io::Error::last_os_error()));
    }
    // SAFETY: statvfs returned 0, so it filled the structure.
    let stats = unsafe { stats.assume_init() };
    let fragment = stats.f_frsize;
    Ok((stats.f_bavail * fragment, stats.f_blocks * fragment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_meminfo_are_parsed() {
        assert_eq!(
            parse_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b2)\nCopyright").as_deref(),
            Some("7.2.22")
        );
        assert_eq!(parse_version("garbage"), None);
        let meminfo = "MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(parse_meminfo(meminfo), (8_000_000 * 1024, 4_000_000 * 1024));
    }
}
