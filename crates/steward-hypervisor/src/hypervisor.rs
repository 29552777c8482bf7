//! The `Hypervisor` trait: the verbs the server's sagas and reconcilers call on a host, whatever runs it
//! (QEMU processes, `qemu::QemuHost`; z/VM through SMAPI, `zvm::ZvmHost`). The trait is object-safe
//! (`Arc<dyn Hypervisor>`), so every verb returns a boxed future.
//!
//! **Every verb is idempotent**: calling it twice, or again after a crash half-way, is harmless and converges
//! on the requested state. Creating what exists (with the same parameters) succeeds; deleting what is gone
//! succeeds; `start` on a running guest reports `AlreadyRunning`, `stop` on a stopped one `AlreadyStopped`.
//! Undo steps are ordinary verbs, so they are idempotent too. Drivers never touch the server's database.
//!
//! Names on z/VM (`zvm::names`): a guest name is a z/VM user ID (1 to 8 characters; longer ones are refused
//! before any call), a disk path is `USERID/VDEV` (`WEB01/0100`, a minidisk of that user), a network is a
//! virtual switch name, a NIC's `tap` carries its virtual device number (`0600`) and its MAC is the system's
//! MAC prefix followed by the NICDEF's `MACID`.
//!
//! How the verbs map onto z/VM (`zvm`): `define_guest` is `Image_Replace_DM` (under `Image_Lock_DM`) of the
//! directory entry that `disk_create` started as a `NOLOG` placeholder (`Image_Create_DM`), `start`/`stop`
//! are `Image_Activate`/`Image_Deactivate` (with a grace time), disks are
//! minidisks (`Image_Disk_Create_DM`, `Image_Disk_Copy_DM`; a disk path names `USERID/VDEV` there), networks
//! are VSwitches and NICs are NICDEFs with grants, `set_cpu_share` is `Image_Definition_Update_DM SHARE=`.
//! `describe_guest`'s live devices are `Image_Active_Configuration_Query` (devices of the logged-on guest) and
//! the adapters coupled to its virtual switches (`Virtual_Network_Vswitch_Query_Extended`, with their MACs).
//! `sync_live` maps to the active-configuration functions, beside the `_DM` ones that changed the directory
//! entry: a missing NIC is
//! `Virtual_Network_Adapter_Create_Extended` plus `Virtual_Network_Adapter_Connect_Vswitch` (204/20, already
//! coupled, counts as done), a NIC to remove `Virtual_Network_Adapter_Disconnect` plus
//! `Virtual_Network_Adapter_Delete`, a missing minidisk `Image_Disk_Create` (links the defined minidisk into the
//! running guest), one to remove `Image_Disk_Delete` (detaches it from the running guest), the CPU share CP
//! `SET SHARE`; CPU count, memory and the IPL device need a re-IPL (`restart_required`). z/VM never needs the
//! guest's cooperation to detach a device; Linux on it sees the device go away. The z/VM driver does the
//! coupling and `Image_Disk_Create` now; creating or deleting a NIC of the running guest, detaching a
//! minidisk and `SET SHARE` are reported in `restart_required` until `smapi` (and `zvm-sim`) have those
//! functions. A disk's `serial` has no z/VM counterpart: there the guest finds a minidisk by its virtual
//! device number, which the disk path names (the z/VM driver refuses a serial).
//!
//! The NICs' grants on their virtual switches are checked (`Virtual_Network_Vswitch_Query_Extended`) before
//! `define_guest` writes the NICDEFs and made only when missing; `nic_create`/`nic_delete` only validate.
//!
//! Verbs a driver cannot do (z/VM has no copy-on-write disks, offline sealing, config drives, host processes
//! or sockets) return `HypervisorError::Unsupported` saying what z/VM uses instead.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use crate::error::Result;
use crate::types::{
    Capabilities, ConfigDrive, DefineOutcome, DiskCopyReport, DiskFormat, DiskInfo, GuestDescription, GuestListing,
    GuestSpec, GuestState, HostFacts, LiveSync, StartOutcome, StopOutcome,
};

/// The future every verb returns.
pub type HypervisorFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// One virtualization host.
pub trait Hypervisor: Send + Sync {
    /// The driver's name (`qemu`, `zvm`), for messages.
    fn driver_name(&self) -> &'static str;

    /// What this driver can do; the server plans with it before it calls any verb.
    fn capabilities(&self) -> Capabilities;

    /// Checks a guest name against the host's own rules (a z/VM user ID: 1 to 8 characters, never a system
    /// user's), without any call to the host. The default accepts every name the server accepts.
    fn check_guest_name(&self, _name: &str) -> Result<()> {
        Ok(())
    }

    /// Where template image number `index` (0, 1, ...) lives when the host names template disks itself (z/VM:
    /// a minidisk of an image holder, `STWIMG01/1000`); `None` where the server keeps them as files.
    fn image_location(&self, _index: u32) -> Option<PathBuf> {
        None
    }

    /// Takes over a guest definition Steward did not make (a z/VM directory entry), so that the other verbs may
    /// change it from now on; idempotent. Drivers whose guests are processes adopt those instead.
    fn adopt_guest<'a>(&'a self, _name: &'a str) -> HypervisorFuture<'a, ()> {
        let driver = self.driver_name().to_owned();
        Box::pin(async move {
            Err(crate::HypervisorError::Unsupported {
                driver,
                operation: "adopt_guest (guests of this host are adopted as running processes)".to_owned(),
            })
        })
    }

    /// Gives a definition taken over by `adopt_guest` back, unchanged otherwise; idempotent.
    fn release_guest<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, ()> {
        self.adopt_guest(name)
    }

    /// What the host offers: emulators and accelerators, CPUs, memory, storage.
    fn probe(&self) -> HypervisorFuture<'_, HostFacts>;

    /// Stores (or replaces) a guest definition. A running guest picks up a changed one at its next start, or
    /// at once for what `sync_live` can change.
    fn define_guest<'a>(&'a self, spec: &'a GuestSpec) -> HypervisorFuture<'a, DefineOutcome>;
    /// Stops the guest if it runs and removes its definition and everything the driver created for it.
    fn undefine_guest<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, ()>;
    /// The names of the defined guests.
    fn defined_guests(&self) -> HypervisorFuture<'_, Vec<String>>;
    /// Starts a defined guest.
    fn start<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, StartOutcome>;
    /// Asks the guest to shut down, waits up to `timeout`, then ends it.
    fn stop<'a>(&'a self, name: &'a str, timeout: Duration) -> HypervisorFuture<'a, StopOutcome>;
    /// Stops (as `stop`) and starts the guest again with its current definition.
    fn restart<'a>(&'a self, name: &'a str, timeout: Duration) -> HypervisorFuture<'a, StartOutcome>;
    /// Whether a defined guest runs.
    fn status<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, GuestState>;
    /// The definition with what is live, for drift checks. The `spec` is the one the last `define_guest` was
    /// given, field for field, up to the host's spelling of names: QEMU keeps it as given; z/VM gives disk
    /// paths, networks and NIC device numbers back upper case (device numbers in four digits) and MACs lower
    /// case, and the guest name as the caller spelled it (so a spec written that way comes back equal, and
    /// `define_guest` of another spelling of the same spec is `Unchanged`). `tests/conformance/` checks this.
    fn describe_guest<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, GuestDescription>;
    /// Makes a running guest's devices match its stored definition (the last `define_guest`): plugs in the NICs
    /// and disks it lacks, removes the ones the definition no longer has, applies the CPU share, and lists what
    /// only a restart can change (CPU count, memory, boot). A guest that does not run is left alone (empty
    /// report); a second call reports nothing. A removal the guest must acknowledge (PCI under ACPI on x86) is
    /// waited for a bounded time, then reported as an error.
    fn sync_live<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, LiveSync>;
    /// The last `max_bytes` of the guest's console output.
    fn console_log<'a>(&'a self, name: &'a str, max_bytes: usize) -> HypervisorFuture<'a, String>;
    /// Every guest running on the host, including ones this driver did not start (`managed: false`).
    fn list_guests(&self) -> HypervisorFuture<'_, Vec<GuestListing>>;
    /// Changes the guest's relative CPU weight (100 is normal), in its definition and, if it runs, live.
    fn set_cpu_share<'a>(&'a self, name: &'a str, share: u32) -> HypervisorFuture<'a, ()>;
    /// Takes over a guest process started outside the driver, so that stop and delete act on it.
    fn adopt_process<'a>(&'a self, name: &'a str, pid: u32) -> HypervisorFuture<'a, ()>;
    /// Gives an adopted process back without stopping it.
    fn release_process<'a>(&'a self, name: &'a str) -> HypervisorFuture<'a, ()>;
    /// Where the server connects to the guest's management channel.
    fn agent_socket(&self, name: &str) -> Result<PathBuf>;

    /// Creates an empty disk.
    fn disk_create<'a>(&'a self, path: &'a Path, size_bytes: u64) -> HypervisorFuture<'a, ()>;
    /// Creates a copy-on-write clone of `backing` (default size: the backing's).
    fn disk_overlay<'a>(
        &'a self,
        path: &'a Path,
        backing: &'a Path,
        backing_format: DiskFormat,
        size_bytes: Option<u64>,
    ) -> HypervisorFuture<'a, ()>;
    /// Creates a full, independent copy (the fallback when copy-on-write is not possible).
    fn disk_copy<'a>(
        &'a self,
        source: &'a Path,
        destination: &'a Path,
        size_bytes: Option<u64>,
    ) -> HypervisorFuture<'a, DiskCopyReport>;
    /// Creates a standalone, compressed image of a guest disk (for a template).
    fn disk_capture<'a>(&'a self, source: &'a Path, destination: &'a Path) -> HypervisorFuture<'a, ()>;
    /// Facts about a disk.
    fn disk_info<'a>(&'a self, path: &'a Path) -> HypervisorFuture<'a, DiskInfo>;
    /// Deletes a disk.
    fn disk_delete<'a>(&'a self, path: &'a Path) -> HypervisorFuture<'a, ()>;
    /// Removes machine identity from a captured image; returns what was emptied or removed.
    fn seal_disk<'a>(&'a self, path: &'a Path) -> HypervisorFuture<'a, Vec<String>>;
    /// Writes a NoCloud config drive image.
    fn config_drive_write<'a>(&'a self, path: &'a Path, drive: &'a ConfigDrive) -> HypervisorFuture<'a, ()>;

    /// Creates an isolated network.
    fn network_create<'a>(&'a self, network: &'a str) -> HypervisorFuture<'a, ()>;
    /// Deletes a network.
    fn network_delete<'a>(&'a self, network: &'a str) -> HypervisorFuture<'a, ()>;
    /// Creates the host side of a guest NIC on `network`.
    fn nic_create<'a>(&'a self, network: &'a str, tap: &'a str) -> HypervisorFuture<'a, ()>;
    /// Deletes the host side of a guest NIC.
    fn nic_delete<'a>(&'a self, tap: &'a str) -> HypervisorFuture<'a, ()>;
}
