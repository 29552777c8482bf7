//! The hosts the server provisions on and what the sagas do with them: a `Driver` per host (the QEMU driver of
//! `steward-hypervisor` for the local machine), where a guest's and a template's files live, and the store
//! changes sagas make (each in its own short transaction, idempotent).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::Digest;
use steward_hypervisor::{
    Arch, Capabilities, DiskCopyReport, DiskFormat, DiskNaming, GuestSpec, GuestState, Hypervisor, StopOutcome,
};
use steward_store::templates::OsTemplateState;
use steward_store::virtual_servers::VirtualServerState;
use steward_types::api::Timestamp;
use steward_types::api::os_templates::OsTemplate;
use steward_types::api::virtual_servers::VirtualServer;
use steward_types::{ErrorCode, HostId, OsTemplateId, SystemId, VirtualServerId};

use crate::app::sagas::{StepError, StepResult};
use crate::state::AppState;

/// How long a guest gets to shut down after the power button before it is powered off, unless the caller says.
pub const DEFAULT_STOP_TIMEOUT_SECONDS: u64 = 30;

/// The name of the host the server runs on.
pub const LOCAL_HOST: &str = "local";

/// A host's hypervisor driver, with where Steward keeps its files on that host: `guests/<name>/` (the driver's
/// guest directories, holding the disks Steward creates for the guest) and `templates/<id>/`.
#[derive(Clone)]
pub struct Driver {
    hypervisor: Arc<dyn Hypervisor>,
    storage: PathBuf,
}

impl std::ops::Deref for Driver {
    type Target = dyn Hypervisor;

    fn deref(&self) -> &Self::Target {
        self.hypervisor.as_ref()
    }
}

impl Driver {
    pub fn new(hypervisor: Arc<dyn Hypervisor>, storage: PathBuf) -> Self {
        Self { hypervisor, storage }
    }

    pub fn storage_directory(&self) -> &Path {
        &self.storage
    }

    pub fn capabilities(&self) -> Capabilities {
        self.hypervisor.capabilities()
    }

    fn minidisks(&self) -> bool {
        self.capabilities().disk_naming == DiskNaming::Minidisks
    }

    /// The format of the disks Steward makes for guests: qcow2 files, or z/VM minidisks (raw).
    pub fn disk_format(&self) -> DiskFormat {
        if self.minidisks() { DiskFormat::Raw } else { DiskFormat::Qcow2 }
    }

    /// Where Steward keeps a guest's files on a host with image files (on z/VM nothing is ever put there).
    pub fn guest_directory(&self, name: &str) -> PathBuf {
        self.storage.join("guests").join(name)
    }

    /// Disk `index` as the create saga makes it: a file inside the guest's directory (so undefining removes
    /// it), or on z/VM the minidisk `NAME/0100` + index.
    pub fn disk_path(&self, name: &str, index: usize) -> PathBuf {
        if self.minidisks() {
            return minidisk(name, MINIDISK_FIRST + index);
        }
        self.guest_directory(name).join(format!("disk{index}.qcow2"))
    }

    /// The disk a deploy writes the new boot disk to, beside the current ones (the old one goes only when the
    /// deploy succeeded): `disk0-<suffix>.qcow2`, or on z/VM the first free device number from `0100`.
    pub fn replacement_boot_disk(&self, name: &str, current: &[String], suffix: &str) -> PathBuf {
        if !self.minidisks() {
            return self.guest_directory(name).join(format!("disk0-{suffix}.qcow2"));
        }
        (MINIDISK_FIRST..=0xFFFF)
            .map(|device| minidisk(name, device))
            .find(|candidate| !current.iter().any(|disk| disk.eq_ignore_ascii_case(&candidate.to_string_lossy())))
            .unwrap_or_else(|| minidisk(name, MINIDISK_FIRST))
    }

    /// The device a NIC is known by on the host: a tap device named after the virtual server (at most 15
    /// characters), or on z/VM the NIC's first virtual device number (`0600`, `0603`, ...: three each).
    pub fn nic_device(&self, virtual_server: VirtualServerId, position: usize) -> String {
        if self.minidisks() {
            return format!("{:04X}", NIC_FIRST + 3 * position);
        }
        format!("st{}n{position}", &virtual_server.0.simple().to_string()[..9])
    }

    /// Refuses a guest name the host cannot use (a z/VM user ID is 1 to 8 characters, never a system user's).
    pub fn check_guest_name(&self, field: &str, name: &str) -> crate::error::ApiResult<()> {
        self.hypervisor
            .check_guest_name(name)
            .map_err(|error| crate::error::ApiError::validation(field, crate::error_chain(&error)))
    }

    pub async fn spec(&self, name: &str) -> steward_hypervisor::Result<GuestSpec> {
        Ok(self.hypervisor.describe_guest(name).await?.spec)
    }

    /// Copies an image into template storage in its format: qcow2 through `qemu-img` (which also flattens a
    /// backing chain), raw byte for byte.
    pub async fn image_import(
        &self,
        source: &Path,
        destination: &Path,
        format: steward_types::api::os_templates::DiskFormat,
    ) -> StepResult<DiskCopyReport> {
        if format == steward_types::api::os_templates::DiskFormat::Qcow2 {
            return Ok(self.hypervisor.disk_copy(source, destination, None).await?);
        }
        let started = std::time::Instant::now();
        copy_file(source, destination).await?;
        let bytes = file_size(destination).await?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(DiskCopyReport {
            bytes,
            seconds,
            bytes_per_second: if seconds > 0.0 { bytes as f64 / seconds } else { 0.0 },
            already_present: false,
        })
    }

    /// Clones an OS template's image into a guest's boot disk: a copy-on-write overlay, or a full copy; returns
    /// what it did, for the step's detail.
    pub async fn clone_boot_disk(
        &self,
        disk: &Path,
        image: &Path,
        image_format: DiskFormat,
        overlay: bool,
        size_bytes: u64,
    ) -> StepResult {
        if overlay {
            self.hypervisor.disk_overlay(disk, image, image_format, Some(size_bytes)).await?;
            return Ok(Some("copy-on-write overlay".into()));
        }
        // A z/VM copy (DirMaint DATAMOVE) has the image's size; a file is grown to the server template's.
        let size = (!self.minidisks()).then_some(size_bytes);
        let report = self.hypervisor.disk_copy(image, disk, size).await?;
        Ok(Some(format!("full copy, {} MiB at {:.0} MiB/s", report.bytes >> 20, report.bytes_per_second / 1_048_576.0)))
    }

    /// The guest's status; a guest with no definition counts as stopped.
    pub async fn power(&self, name: &str) -> GuestState {
        self.hypervisor.status(name).await.unwrap_or(GuestState::Stopped)
    }
}

/// The first device number of a z/VM guest's minidisks and of its NICs.
const MINIDISK_FIRST: usize = 0x100;
const NIC_FIRST: usize = 0x600;

fn minidisk(name: &str, device: usize) -> PathBuf {
    PathBuf::from(format!("{}/{device:04X}", name.to_ascii_uppercase()))
}

/// The driver's architecture for an API architecture (the two crates keep their own enums: the driver does not
/// depend on the API types).
pub fn arch_to_driver(arch: steward_types::api::hosts::Arch) -> Arch {
    match arch {
        steward_types::api::hosts::Arch::X86_64 => Arch::X86_64,
        steward_types::api::hosts::Arch::S390x => Arch::S390x,
    }
}

pub fn arch_from_driver(arch: Arch) -> steward_types::api::hosts::Arch {
    match arch {
        Arch::X86_64 => steward_types::api::hosts::Arch::X86_64,
        Arch::S390x => steward_types::api::hosts::Arch::S390x,
    }
}

/// The disk format of the driver for a template's format.
pub fn driver_format(format: steward_types::api::os_templates::DiskFormat) -> DiskFormat {
    match format {
        steward_types::api::os_templates::DiskFormat::Qcow2 => DiskFormat::Qcow2,
        steward_types::api::os_templates::DiskFormat::Raw => DiskFormat::Raw,
    }
}

/// The drivers of the hosts this server provisions on, by host (hosts are registered and removed while the
/// server runs).
#[derive(Default)]
pub struct Hosts {
    drivers: std::sync::RwLock<HashMap<HostId, Driver>>,
}

impl Hosts {
    pub fn with(self, host: HostId, driver: Driver) -> Self {
        self.insert(host, driver);
        self
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<HostId, Driver>> {
        // A panic while the map was written leaves it whole (insert and remove are single calls).
        self.drivers.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn insert(&self, host: HostId, driver: Driver) {
        self.drivers.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(host, driver);
    }

    pub fn remove(&self, host: HostId) {
        self.drivers.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&host);
    }

    pub fn driver(&self, host: HostId) -> StepResult<Driver> {
        self.read().get(&host).cloned().ok_or_else(|| {
            StepError::new(
                ErrorCode::Unavailable,
                format!("host {host} has no driver in this server (is QEMU installed? could its settings be read?)"),
            )
        })
    }

    pub fn all(&self) -> Vec<(HostId, Driver)> {
        self.read().iter().map(|(id, driver)| (*id, driver.clone())).collect()
    }
}

/// The files of an OS template in its host's storage: `templates/<id>/{disk.<format>,vmlinuz,initrd.img}`.
pub struct TemplateFiles {
    pub directory: PathBuf,
    pub disk: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

impl TemplateFiles {
    pub fn new(driver: &Driver, template: &OsTemplate) -> Self {
        let directory = driver.storage_directory().join("templates").join(template.id.to_string());
        Self {
            disk: match &template.disk_location {
                Some(location) => PathBuf::from(location),
                None => directory.join(format!("disk.{}", template.disk_format.as_str())),
            },
            kernel: directory.join("vmlinuz"),
            initrd: directory.join("initrd.img"),
            directory,
        }
    }

    pub async fn copy_boot_files(&self, kernel: Option<&Path>, initrd: Option<&Path>) -> StepResult {
        let mut copied = Vec::new();
        for (source, destination) in [(kernel, &self.kernel), (initrd, &self.initrd)] {
            let Some(source) = source else { continue };
            copy_file(source, destination).await?;
            copied.push(destination.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default());
        }
        Ok((!copied.is_empty()).then(|| format!("copied {}", copied.join(", "))))
    }

    /// Fills in the image's sizes and checksum; returns a line for the step's detail. A minidisk's data cannot
    /// be read through SMAPI, so a z/VM image has its size and no checksum.
    pub async fn describe(&self, driver: &Driver, template: &mut OsTemplate) -> StepResult<String> {
        let info = driver.disk_info(&self.disk).await?;
        template.disk_size_bytes = info.virtual_size_bytes;
        if template.disk_location.is_some() {
            template.file_size_bytes = info.actual_size_bytes;
            return Ok(format!(
                "{} MiB minidisk {} (no checksum: SMAPI does not read a minidisk's data)",
                info.virtual_size_bytes >> 20,
                self.disk.display()
            ));
        }
        template.file_size_bytes = file_size(&self.disk).await?;
        template.sha256 = sha256_file(&self.disk).await?;
        template.has_kernel = tokio::fs::try_exists(&self.kernel).await.unwrap_or(false);
        template.has_initrd = tokio::fs::try_exists(&self.initrd).await.unwrap_or(false);
        Ok(format!("sha256 {}, {} MiB on disk", template.sha256, template.file_size_bytes >> 20))
    }

    /// Removes the image (a minidisk on z/VM) and the template's directory.
    pub async fn remove_all(&self, driver: &Driver, template: &OsTemplate) -> StepResult<()> {
        if template.disk_location.is_some() {
            driver.disk_delete(&self.disk).await?;
        }
        match tokio::fs::remove_dir_all(&self.directory).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io_error("remove", &self.directory, error)),
        }
    }
}

fn io_error(verb: &str, path: &Path, error: std::io::Error) -> StepError {
    StepError::new(ErrorCode::Internal, format!("cannot {verb} {}: {error}", path.display()))
}

/// Removes a directory a step created, unless something else was put in it since.
pub async fn remove_directory_if_empty(directory: &Path) -> StepResult<()> {
    match tokio::fs::remove_dir(directory).await {
        Ok(()) => Ok(()),
        Err(error) if matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::DirectoryNotEmpty) => {
            Ok(())
        }
        Err(error) => Err(io_error("remove", directory, error)),
    }
}

/// Copies through a temporary name, so the destination is either absent or complete.
async fn copy_file(source: &Path, destination: &Path) -> StepResult<()> {
    if let Some(parent) = destination.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|error| io_error("create", parent, error))?;
    }
    let temporary = destination.with_extension("partial");
    tokio::fs::copy(source, &temporary).await.map_err(|error| io_error("copy", source, error))?;
    tokio::fs::rename(&temporary, destination).await.map_err(|error| io_error("rename", &temporary, error))
}

async fn file_size(path: &Path) -> StepResult<u64> {
    let metadata = tokio::fs::metadata(path).await.map_err(|error| io_error("read", path, error))?;
    Ok(std::os::unix::fs::MetadataExt::blocks(&metadata) * 512)
}

async fn sha256_file(path: &Path) -> StepResult<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).map_err(|error| io_error("read", &path, error))?;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut file, &mut hasher).map_err(|error| io_error("read", &path, error))?;
        Ok(hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect())
    })
    .await
    .map_err(|error| StepError::new(ErrorCode::Internal, format!("checksum task failed: {error}")))?
}

/// Starts the guest and attaches its agent channel; idempotent.
pub async fn guest_start(state: &AppState, driver: &Driver, server: &VirtualServer) -> StepResult {
    let outcome = driver.start(&server.name).await?;
    attach_agent(state, driver, server);
    Ok(Some(format!("{outcome:?}")))
}

/// Stops the guest (power button, then power off after the timeout; `None`: at once) and detaches its agent.
pub async fn guest_stop(
    state: &AppState,
    driver: &Driver,
    server: &VirtualServer,
    timeout_seconds: Option<u64>,
) -> StepResult {
    let timeout = std::time::Duration::from_secs(timeout_seconds.unwrap_or(0));
    let outcome = match driver.stop(&server.name, timeout).await {
        Err(steward_hypervisor::HypervisorError::NotFound { .. }) => StopOutcome::AlreadyStopped,
        other => other?,
    };
    if let Some(system) = server.system {
        state.agents.detach_serial(system);
    }
    Ok(Some(
        match outcome {
            StopOutcome::Graceful => "shut down by the guest",
            StopOutcome::Forced => "powered off after the timeout",
            StopOutcome::AlreadyStopped => "was not running",
        }
        .to_string(),
    ))
}

/// Lets the server talk to the guest's agent over its management channel, where the host has one.
pub fn attach_agent(state: &AppState, driver: &Driver, server: &VirtualServer) {
    if !driver.capabilities().agent_channel {
        return;
    }
    if let Some(system) = server.system {
        let attached = driver
            .agent_socket(&server.name)
            .map_err(|error| error.to_string())
            .and_then(|socket| state.agents.attach_serial(state, system, socket).map_err(|error| error.to_string()));
        if let Err(error) = attached {
            tracing::warn!(guest = %server.name, %error, "no management channel");
        }
    }
}

/// Re-attaches to the agents of every guest that runs (after a server restart).
pub async fn reattach_running_guests(state: &AppState) -> Result<usize, steward_store::StoreError> {
    let mut attached = 0;
    for (host, driver) in state.hosts.all() {
        if !driver.capabilities().agent_channel {
            continue;
        }
        let mut conn = state.store.conn().await?;
        let servers = steward_store::virtual_servers::list_on_host(&mut conn, host).await?;
        drop(conn);
        for record in servers {
            if matches!(driver.power(&record.server.name).await, GuestState::Running { .. }) {
                attach_agent(state, &driver, &record.server);
                attached += 1;
            }
        }
    }
    Ok(attached)
}

pub async fn power_state(driver: &Driver, name: &str) -> steward_types::api::virtual_servers::PowerState {
    use steward_types::api::virtual_servers::PowerState;
    match driver.power(name).await {
        GuestState::Running { .. } => PowerState::Running,
        GuestState::Stopped => PowerState::Stopped,
    }
}

/// Creates the system record a guest's agent will speak for, unless it exists.
pub async fn system_record_ensure(state: &AppState, system: SystemId, name: &str) -> StepResult<()> {
    let mut tx = state.store.begin().await?;
    if steward_store::systems::get(&mut tx, &system.to_string()).await?.is_none() {
        steward_store::systems::insert(
            &mut tx,
            &steward_store::systems::NewSystem {
                id: system,
                name,
                hostname: name,
                agent_version: "",
                enrolled_at: Timestamp::now(),
            },
        )
        .await?;
        tracing::debug!(system = %system, guest = name, "system record created for a guest");
    }
    tx.commit().await?;
    Ok(())
}

pub async fn virtual_server_set_state(
    state: &AppState,
    id: VirtualServerId,
    server_state: VirtualServerState,
) -> StepResult<()> {
    let mut tx = state.store.begin().await?;
    steward_store::virtual_servers::set_state(&mut tx, id, server_state).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn virtual_server_store(
    state: &AppState,
    server: &VirtualServer,
    os_template: Option<OsTemplateId>,
    server_state: VirtualServerState,
) -> StepResult<()> {
    let mut tx = state.store.begin().await?;
    steward_store::virtual_servers::update(&mut tx, server, os_template, server_state).await?;
    tx.commit().await?;
    Ok(())
}

/// Removes a virtual server's records (and its NICs with it) and the system its agent spoke for.
pub async fn virtual_server_forget(state: &AppState, id: VirtualServerId, system: Option<SystemId>) -> StepResult<()> {
    let mut tx = state.store.begin().await?;
    steward_store::virtual_servers::delete(&mut tx, id).await?;
    if let Some(system) = system {
        steward_store::systems::delete(&mut tx, system).await?;
    }
    tx.commit().await?;
    if let Some(system) = system {
        state.agents.detach_serial(system);
    }
    Ok(())
}

pub async fn os_template_store(
    state: &AppState,
    template: &OsTemplate,
    template_state: OsTemplateState,
) -> StepResult<()> {
    let mut tx = state.store.begin().await?;
    steward_store::templates::os_template_update(&mut tx, template, template_state).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn os_template_forget(state: &AppState, id: OsTemplateId) -> StepResult<()> {
    let mut tx = state.store.begin().await?;
    steward_store::templates::os_template_delete(&mut tx, id).await?;
    tx.commit().await?;
    Ok(())
}

/// A MAC address with the host's prefix (QEMU's locally administered 52:54:00, a z/VM system's MAC prefix)
/// that no NIC in the store has.
pub async fn fresh_mac(conn: &mut steward_store::Conn, driver: &Driver) -> crate::error::ApiResult<String> {
    let [first, second, third] = driver.capabilities().mac_prefix;
    for _ in 0..16 {
        let bytes: [u8; 3] = rand::random();
        let mac = format!("{first:02x}:{second:02x}:{third:02x}:{:02x}:{:02x}:{:02x}", bytes[0], bytes[1], bytes[2]);
        if !steward_store::virtual_servers::mac_taken(conn, &mac).await? {
            return Ok(mac);
        }
    }
    Err(crate::error::ApiError::internal("could not find a free MAC address"))
}

/// Probes every host and raises `host.unreachable` when one stops answering (and `host.reachable` when it
/// answers again); `known` holds each host's last answer between calls (a host not known yet raises nothing
/// when it answers).
pub async fn check_reachability(
    state: &AppState,
    known: &mut HashMap<HostId, bool>,
) -> Result<(), steward_store::StoreError> {
    for (host, driver) in state.hosts.all() {
        let answer = driver.probe().await;
        let reachable = answer.is_ok();
        let was = known.insert(host, reachable);
        if was == Some(reachable) || (was.is_none() && reachable) {
            continue;
        }
        let mut tx = state.store.begin().await?;
        let name = steward_store::hosts::get_by_id(&mut tx, host).await?.map(|record| record.name).unwrap_or_default();
        let event = steward_types::api::events::Event {
            id: steward_types::EventId::new(),
            event_type: if reachable { "host.reachable" } else { "host.unreachable" }.to_owned(),
            severity: if reachable {
                steward_types::api::events::Severity::Info
            } else {
                steward_types::api::events::Severity::Critical
            },
            source_kind: "host".to_owned(),
            source: name.clone(),
            system_id: None,
            message: match &answer {
                Ok(_) => format!("host {name} answers again"),
                Err(error) => format!("host {name} does not answer: {}", crate::error_chain(error)),
            },
            details: serde_json::json!({}),
            created_at: Timestamp::now(),
        };
        crate::app::events::raise(&mut tx, &event, &host.to_string()).await?;
        tx.commit().await?;
    }
    Ok(())
}
