//! The one error type of every hypervisor driver. Each variant carries the context a caller needs to tell the
//! user what went wrong (which guest, which file, which command); the underlying cause, when there is one, is in
//! `#[source]` and is not repeated in the message.

use std::path::PathBuf;
use std::time::Duration;

use crate::types::Arch;

/// What can go wrong in a hypervisor driver.
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    /// The emulator for this architecture is not installed (or not on the configured search path).
    #[error("qemu-system-{arch} was not found on the search path")]
    QemuMissing { arch: Arch },

    /// A helper program (qemu-img, ip, debugfs) is not installed.
    #[error("the program {program} was not found (is its package installed?)")]
    ToolMissing { program: String },

    /// No guest of this name is defined on this host.
    #[error("no guest named {guest:?} is defined on this host")]
    NotFound { guest: String },

    /// No network of this name exists on this host.
    #[error("no network named {network:?} exists on this host")]
    NetworkNotFound { network: String },

    /// A caller-supplied value is invalid; `what` names the field, `reason` says what is wrong with it.
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: String, reason: String },

    /// A helper program ran and failed.
    #[error("{program} {} failed with {}: {stderr}", args.join(" "), status.map_or("a signal".to_owned(), |code| format!("exit status {code}")))]
    Command { program: String, args: Vec<String>, status: Option<i32>, stderr: String },

    /// A helper program did not finish in time (it has been killed).
    #[error("{program} {} did not finish within {timeout:?}", args.join(" "))]
    CommandTimeout { program: String, args: Vec<String>, timeout: Duration },

    /// A helper program could not be started at all.
    #[error("could not run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// Reading or writing a file or directory failed.
    #[error("input/output error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON file of the driver (a guest definition) could not be read or written.
    #[error("malformed JSON in {}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// The QEMU monitor of a guest failed or answered with an error.
    #[error("QMP of guest {guest:?}: {message}")]
    Qmp { guest: String, message: String },

    /// QEMU refused a monitor command: `class` is QMP's error class (`GenericError`, `DeviceNotFound`,
    /// `CommandNotFound`, ...), `description` its message.
    #[error("QMP of guest {guest:?}: {command} failed: {description} ({class})")]
    QmpCommand { guest: String, command: String, class: String, description: String },

    /// A running guest did not release devices it was asked to give up (`sync_live`): on the `pc` machine the
    /// guest itself must eject a PCI device (ACPI PCI hot-plug, `acpiphp` in Linux), which a guest still
    /// booting, without ACPI, or without an operating system never does.
    #[error(
        "guest {guest:?} did not release {} within {waited:?}: the guest must eject PCI devices itself (ACPI \
         hot-plug: is it still booting, or without ACPI PCI hot-plug support?); the removal stays requested",
        devices.join(", ")
    )]
    UnplugTimeout { guest: String, devices: Vec<String>, waited: Duration },

    /// Talking to the QEMU monitor socket of a guest failed.
    #[error("QMP socket {} of guest {guest:?}", socket.display())]
    QmpIo {
        guest: String,
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// QEMU exited while starting the guest; `log` holds what it printed.
    #[error("guest {guest:?} failed to start: {log}")]
    StartFailed { guest: String, log: String },

    /// A disk image exists under the requested name but is not what was asked for, so an idempotent retry
    /// cannot simply accept it.
    #[error("disk {} already exists and differs from the request: {reason}", path.display())]
    DiskConflict { path: PathBuf, reason: String },

    /// A disk image needed by the operation does not exist.
    #[error("disk {} does not exist", path.display())]
    DiskMissing { path: PathBuf },

    /// The disk's root filesystem is not one the driver can seal offline.
    #[error("cannot seal {}: its root filesystem is {found}, only ext2/ext3/ext4 can be sealed", path.display())]
    UnsupportedFilesystem { path: PathBuf, found: String },

    /// A NIC of a guest refers to a tap device that does not exist (create it with `nic_create` first).
    #[error("guest {guest:?} uses tap {tap:?}, which does not exist in namespace {namespace:?}")]
    NicMissing { guest: String, tap: String, namespace: String },

    /// Setting the CPU share of a running guest failed.
    #[error("could not set the CPU share of guest {guest:?} (pid {pid})")]
    CpuShare {
        guest: String,
        pid: u32,
        #[source]
        source: std::io::Error,
    },

    /// The guest process did not go away, even after SIGKILL.
    #[error("guest {guest:?} (pid {pid}) did not exit after SIGKILL")]
    StopFailed { guest: String, pid: u32 },

    /// This driver cannot do this operation at all.
    #[error("the {driver} driver does not support {operation}")]
    Unsupported { driver: String, operation: String },

    /// The z/VM disk pool (a DirMaint group) has no free extent large enough (SMAPI 408/24).
    #[error("z/VM disk pool {pool} has no free space for {request}")]
    PoolFull {
        pool: String,
        /// What was asked for (`minidisk WEB01/0100 of 3339 cylinders`).
        request: String,
        #[source]
        source: Box<smapi::Error>,
    },

    /// z/VM's directory manager (DirMaint) is not available or refuses updates now (SMAPI 500/8, 500/4); retry
    /// when it is back.
    #[error("{operation}: the z/VM directory manager (DirMaint) {meaning}")]
    DirectoryManagerUnavailable {
        operation: String,
        meaning: String,
        #[source]
        source: Box<smapi::Error>,
    },

    /// The SMAPI user may not do this (not in VSMWORK1 AUTHLIST, or not authorized on the target: SMAPI 100,
    /// 212/8, 408/28) or its credentials were refused (120).
    #[error("{operation}: the z/VM SMAPI user is not authorized: {meaning}")]
    NotAuthorized {
        operation: String,
        meaning: String,
        #[source]
        source: Box<smapi::Error>,
    },

    /// A SMAPI call failed otherwise; `meaning` is IBM's meaning of the return and reason code (or what went
    /// wrong on the connection), `retryable` whether the same call may succeed later (a locked entry, a guest
    /// being logged off, DirMaint busy).
    #[error("{operation}: {meaning}")]
    Smapi {
        operation: String,
        meaning: String,
        retryable: bool,
        #[source]
        source: Box<smapi::Error>,
    },
}

/// The result type of the crate.
pub type Result<T, E = HypervisorError> = std::result::Result<T, E>;

impl HypervisorError {
    /// An `Io` error for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HypervisorError::Io { path: path.into(), source }
    }

    /// The QMP error class when QEMU refused a command (`GenericError`, `DeviceNotFound`, ...).
    pub fn qmp_class(&self) -> Option<&str> {
        match self {
            HypervisorError::QmpCommand { class, .. } => Some(class),
            _ => None,
        }
    }

    /// An `InvalidInput` error naming the field and the problem.
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        HypervisorError::InvalidInput { what: what.into(), reason: reason.into() }
    }
}
