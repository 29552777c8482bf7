//! Guest definitions and the QEMU process lifecycle.
//!
//! ```text
//!            define_guest                start                     stop / QEMU exits
//! (nothing) ─────────────> Stopped ────────────────> Running{pid} ──────────────────> Stopped
//!     ^                       │                                                         │
//!     └──── undefine_guest ───┴──────────── (undefine stops a running guest first) ─────┘
//! ```
//!
//! The definition is `guests/<name>/guest.json`. Whether a guest runs is read from the system, never
//! remembered: its pid file names a live, non-zombie process whose command line carries this guest's pid file
//! (so a stale pid file or a reused pid is not mistaken for the guest); when the pid file is gone, a /proc scan
//! for that command line finds the process anyway. That is also how a new `QemuHost` re-attaches to guests a
//! previous server process started.
//!
//! `stop` escalates: QMP `system_powerdown` and up to `timeout` for the guest to shut down (`Graceful`), then
//! QMP `quit`, then SIGKILL (`Forced`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::error::{HypervisorError, Result};
use crate::fsutil;
use crate::qemu::QemuHost;
use crate::qemu::cmdline::{self, GuestPaths};
use crate::qemu::command;
use crate::qemu::cpu_share;
use crate::qemu::live;
use crate::qemu::processes;
use crate::qemu::qmp::QmpClient;
use crate::types::{
    Boot, DefineOutcome, GuestDescription, GuestListing, GuestSpec, GuestState, StartOutcome, StopOutcome,
};
use crate::validate;

/// How long the daemonizing QEMU parent may take to report that the guest is set up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the QMP socket may take to answer after QEMU detached.
const QMP_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// A QEMU process started outside the driver and adopted by a guest: which process, and its monitor, if it has
/// one, for a graceful stop.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Adopted {
    pid: u32,
    start_ticks: u64,
    qmp_socket: Option<PathBuf>,
}

fn read_adopted(paths: &GuestPaths) -> Option<Adopted> {
    let text = std::fs::read(paths.adopted()).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The adopted process, if the guest has one and it still runs.
fn adopted_running(paths: &GuestPaths) -> Option<Adopted> {
    read_adopted(paths).filter(|adopted| {
        processes::process_alive(adopted.pid) && processes::start_ticks(adopted.pid) == Some(adopted.start_ticks)
    })
}

/// The pid of the adopted process, if the guest has one and it still runs.
pub(crate) fn adopted_pid(paths: &GuestPaths) -> Option<u32> {
    adopted_running(paths).map(|adopted| adopted.pid)
}

/// How long QEMU may take to exit after QMP `quit`, and the process after SIGKILL.
const EXIT_AFTER_QUIT: Duration = Duration::from_secs(5);
/// How often a waiting loop looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

impl QemuHost {
    pub(crate) fn guest_paths(&self, name: &str) -> Result<GuestPaths> {
        validate::guest_name(name)?;
        Ok(GuestPaths { directory: self.guests_directory.join(name) })
    }

    /// The stored definition of `name`.
    pub fn read_definition(&self, name: &str) -> Result<GuestSpec> {
        let paths = self.guest_paths(name)?;
        let path = paths.definition();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(HypervisorError::NotFound { guest: name.to_owned() });
            }
            Err(source) => return Err(HypervisorError::io(&path, source)),
        };
        serde_json::from_slice(&text).map_err(|source| HypervisorError::Json { path, source })
    }

    /// Stores the definition (atomically); an equal stored definition is left alone.
    pub async fn define_guest(&self, spec: &GuestSpec) -> Result<DefineOutcome> {
        validate::guest_spec(spec)?;
        let lock = self.guest_lock(&spec.name);
        let _guard = lock.lock().await;
        let paths = self.guest_paths(&spec.name)?;
        let outcome = match self.read_definition(&spec.name) {
            Ok(existing) if &existing == spec => return Ok(DefineOutcome::Unchanged),
            Ok(_) => DefineOutcome::Updated,
            Err(HypervisorError::NotFound { .. }) => DefineOutcome::Created,
            // An unreadable definition (a disk error, not a half write: writes are atomic) is replaced.
            Err(error) => {
                tracing::warn!(guest = spec.name, error = %error, "replacing an unreadable guest definition");
                DefineOutcome::Updated
            }
        };
        fsutil::create_directory(&paths.directory)?;
        let json = serde_json::to_vec_pretty(spec)
            .map_err(|source| HypervisorError::Json { path: paths.definition(), source })?;
        fsutil::write_atomic(&paths.definition(), &json)?;
        tracing::info!(guest = spec.name, ?outcome, "defined guest");
        Ok(outcome)
    }

    /// The names of the defined guests, sorted.
    pub fn defined_guests(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.guests_directory)
            .map_err(|source| HypervisorError::io(&self.guests_directory, source))?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|entry| entry.path().join("guest.json").exists())
            .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Stops the guest if it runs (without waiting for a graceful shutdown) and removes its directory, with
    /// everything in it. Disks outside the directory are the caller's (delete them with `disk_delete`).
    pub async fn undefine_guest(&self, name: &str) -> Result<()> {
        let paths = self.guest_paths(name)?;
        let lock = self.guest_lock(name);
        let _guard = lock.lock().await;
        if let Some(pid) = running_pid(&paths) {
            self.stop_process(name, &paths, pid, Duration::ZERO).await?;
        }
        match std::fs::remove_dir_all(&paths.directory) {
            Ok(()) => {
                tracing::info!(guest = name, "undefined guest");
                Ok(())
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(HypervisorError::io(&paths.directory, source)),
        }
    }

    /// Whether the guest runs.
    pub fn status(&self, name: &str) -> Result<GuestState> {
        let paths = self.guest_paths(name)?;
        if !paths.definition().exists() {
            return Err(HypervisorError::NotFound { guest: name.to_owned() });
        }
        Ok(match running_pid(&paths) {
            Some(pid) => GuestState::Running { pid },
            None => GuestState::Stopped,
        })
    }

    /// Starts the guest (or reports that it already runs), then applies its CPU share.
    pub async fn start(&self, name: &str) -> Result<StartOutcome> {
        let paths = self.guest_paths(name)?;
        let lock = self.guest_lock(name);
        let _guard = lock.lock().await;
        let spec = self.read_definition(name)?;
        if let Some(pid) = running_pid(&paths) {
            if let Err(error) = cpu_share::apply_share(name, pid, spec.cpu_share) {
                tracing::warn!(guest = name, error = %error, "cannot apply the CPU share");
            }
            return Ok(StartOutcome::AlreadyRunning { pid });
        }
        self.check_start_prerequisites(&spec).await?;
        let emulators = self.emulators().await?;
        let emulator = emulators
            .iter()
            .find(|emulator| emulator.arch == spec.arch)
            .ok_or(HypervisorError::QemuMissing { arch: spec.arch })?;
        for stale in [paths.pid_file(), paths.qmp_socket(), paths.agent_socket()] {
            fsutil::remove_file_if_present(&stale)?;
        }
        let arguments = cmdline::guest_arguments(&spec, &paths, emulator.accelerator)?;
        let (program, full_arguments) = if spec.nics.is_empty() {
            (emulator.binary.clone(), arguments)
        } else {
            let mut full = vec!["netns".to_owned(), "exec".to_owned(), self.namespace().to_owned()];
            full.push(emulator.binary.to_string_lossy().into_owned());
            full.extend(arguments);
            (command::system_tool("ip")?, full)
        };
        let started = Instant::now();
        self.spawn_daemon(name, &paths, &program, &full_arguments).await?;
        let pid = wait_for_pid(name, &paths).await?;
        if let Err(error) = self.wait_for_qmp(name, &paths).await {
            // A start that reports failure must not leave its guest running: a retry would find it "already
            // running" and a saga would undo around a live guest.
            let _ = self.stop_process(name, &paths, pid, Duration::ZERO).await;
            return Err(error);
        }
        tracing::info!(guest = name, pid, seconds = started.elapsed().as_secs_f64(), "started guest");
        // The share is a tuning: a guest that runs is started, even where the scheduler refuses the weight (an
        // unprivileged server cannot raise priority); `describe_guest` shows the live share for drift checks.
        if let Err(error) = cpu_share::apply_share(name, pid, spec.cpu_share) {
            tracing::warn!(guest = name, error = %error, "cannot apply the CPU share");
        }
        Ok(StartOutcome::Started { pid })
    }

    async fn check_start_prerequisites(&self, spec: &GuestSpec) -> Result<()> {
        for disk in &spec.disks {
            if !disk.path.exists() {
                return Err(HypervisorError::DiskMissing { path: disk.path.clone() });
            }
        }
        let mut files: Vec<(&str, &PathBuf)> = Vec::new();
        if let Some(config_drive) = &spec.config_drive {
            files.push(("config drive", config_drive));
        }
        match &spec.boot {
            Boot::Direct { kernel, initrd, .. } => {
                files.push(("kernel", kernel));
                if let Some(initrd) = initrd {
                    files.push(("initrd", initrd));
                }
            }
            Boot::Firmware { firmware: Some(firmware) } => files.push(("firmware", firmware)),
            Boot::Firmware { firmware: None } => {}
        }
        for (what, path) in files {
            if !path.exists() {
                return Err(HypervisorError::invalid(
                    format!("{what} of guest {:?}", spec.name),
                    format!("{} does not exist", path.display()),
                ));
            }
        }
        for nic in &spec.nics {
            if !self.networks.tap_exists(&nic.tap).await? {
                return Err(HypervisorError::NicMissing {
                    guest: spec.name.clone(),
                    tap: nic.tap.clone(),
                    namespace: self.namespace().to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Runs QEMU with `-daemonize`: the parent exits once the guest is set up (status 0) or failed.
    async fn spawn_daemon(&self, name: &str, paths: &GuestPaths, program: &Path, arguments: &[String]) -> Result<()> {
        let log_path = paths.start_log();
        let log = std::fs::File::create(&log_path).map_err(|source| HypervisorError::io(&log_path, source))?;
        let log_for_stderr = log.try_clone().map_err(|source| HypervisorError::io(&log_path, source))?;
        tracing::debug!(guest = name, program = %program.display(), ?arguments, "starting QEMU");
        let mut child = tokio::process::Command::new(program)
            .args(arguments)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| HypervisorError::Spawn { program: program.display().to_string(), source })?;
        let status = match tokio::time::timeout(START_TIMEOUT, child.wait()).await {
            Ok(status) => {
                status.map_err(|source| HypervisorError::Spawn { program: program.display().to_string(), source })?
            }
            Err(_elapsed) => {
                return Err(HypervisorError::StartFailed {
                    guest: name.to_owned(),
                    log: format!("QEMU did not finish starting within {START_TIMEOUT:?}"),
                });
            }
        };
        if !status.success() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default().trim().to_owned();
            return Err(HypervisorError::StartFailed {
                guest: name.to_owned(),
                log: if log.is_empty() { format!("QEMU exited with {status}") } else { log },
            });
        }
        Ok(())
    }

    async fn wait_for_qmp(&self, name: &str, paths: &GuestPaths) -> Result<()> {
        let deadline = Instant::now() + QMP_READY_TIMEOUT;
        loop {
            match QmpClient::connect(name, &paths.qmp_socket()).await {
                Ok(mut client) => {
                    client.run_state().await?;
                    return Ok(());
                }
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }

    /// Stops the guest: power button, up to `timeout` to shut down, then QMP `quit`, then SIGKILL.
    pub async fn stop(&self, name: &str, timeout: Duration) -> Result<StopOutcome> {
        let paths = self.guest_paths(name)?;
        let lock = self.guest_lock(name);
        let _guard = lock.lock().await;
        if !paths.definition().exists() {
            return Err(HypervisorError::NotFound { guest: name.to_owned() });
        }
        match running_pid(&paths) {
            Some(pid) => self.stop_process(name, &paths, pid, timeout).await,
            None => {
                remove_runtime_files(&paths)?;
                Ok(StopOutcome::AlreadyStopped)
            }
        }
    }

    /// Takes over a QEMU process started outside the driver (a guest installed by hand): from now on `status`,
    /// `stop` and `undefine_guest` treat it as the guest's process (stopping it through its own QMP socket if it
    /// has one, by signal otherwise); once it has stopped, `start` runs the guest from its definition.
    /// Idempotent for the same process.
    pub async fn adopt_process(&self, name: &str, pid: u32) -> Result<()> {
        let paths = self.guest_paths(name)?;
        let lock = self.guest_lock(name);
        let _guard = lock.lock().await;
        if !paths.definition().exists() {
            return Err(HypervisorError::NotFound { guest: name.to_owned() });
        }
        let arguments =
            processes::read_cmdline(pid).filter(|arguments| processes::emulator_arch(arguments).is_some()).ok_or_else(
                || HypervisorError::invalid("process to adopt", format!("process {pid} is not a running QEMU")),
            )?;
        let start_ticks = processes::start_ticks(pid)
            .ok_or_else(|| HypervisorError::invalid("process to adopt", format!("process {pid} has ended")))?;
        let adopted =
            Adopted { pid, start_ticks, qmp_socket: processes::qmp_socket_path(&arguments).map(PathBuf::from) };
        if read_adopted(&paths).as_ref() == Some(&adopted) {
            return Ok(());
        }
        if let Some(running) = running_pid(&paths).filter(|running| *running != pid) {
            return Err(HypervisorError::invalid(
                "process to adopt",
                format!("guest {name} already runs as process {running}"),
            ));
        }
        let json =
            serde_json::to_vec(&adopted).map_err(|source| HypervisorError::Json { path: paths.adopted(), source })?;
        fsutil::write_atomic(&paths.adopted(), &json)?;
        tracing::info!(guest = name, pid, "adopted a running QEMU process");
        Ok(())
    }

    /// Gives an adopted process back (it keeps running, no longer the guest's). Idempotent.
    pub async fn release_process(&self, name: &str) -> Result<()> {
        let paths = self.guest_paths(name)?;
        fsutil::remove_file_if_present(&paths.adopted())
    }

    async fn stop_process(&self, name: &str, paths: &GuestPaths, pid: u32, timeout: Duration) -> Result<StopOutcome> {
        let qmp_socket = match read_adopted(paths) {
            Some(adopted) if adopted.pid == pid => adopted.qmp_socket,
            _ => Some(paths.qmp_socket()),
        };
        let mut monitor = match &qmp_socket {
            Some(socket) => QmpClient::connect(name, socket).await,
            None => Err(HypervisorError::invalid("monitor", "the adopted process has no QMP socket")),
        };
        if !timeout.is_zero()
            && let Ok(client) = monitor.as_mut()
        {
            match client.execute("system_powerdown", None).await {
                Ok(_) => {
                    if wait_for_exit(pid, timeout).await {
                        tracing::info!(guest = name, pid, "guest shut down");
                        remove_runtime_files(paths)?;
                        return Ok(StopOutcome::Graceful);
                    }
                }
                Err(error) => tracing::warn!(guest = name, error = %error, "system_powerdown failed"),
            }
        }
        if let Ok(client) = monitor.as_mut() {
            // QEMU may close the connection before answering `quit`; the exit is what counts.
            let _ = client.execute("quit", None).await;
            if wait_for_exit(pid, EXIT_AFTER_QUIT).await {
                tracing::info!(guest = name, pid, "guest ended with QMP quit");
                remove_runtime_files(paths)?;
                return Ok(StopOutcome::Forced);
            }
        }
        if monitor.is_err() && !timeout.is_zero() {
            // No monitor (an adopted process without one): QEMU ends cleanly on SIGTERM; give it the timeout.
            // SAFETY: kill has no memory-safety preconditions; the pid was checked to be this guest's QEMU.
            let _ = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            if wait_for_exit(pid, timeout).await {
                tracing::info!(guest = name, pid, "guest ended on SIGTERM");
                remove_runtime_files(paths)?;
                return Ok(StopOutcome::Forced);
            }
        }
        // SAFETY: kill has no memory-safety preconditions; the pid was checked to be this guest's QEMU.
        let _ = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        if wait_for_exit(pid, EXIT_AFTER_QUIT).await {
            tracing::warn!(guest = name, pid, "guest killed");
            remove_runtime_files(paths)?;
            return Ok(StopOutcome::Forced);
        }
        Err(HypervisorError::StopFailed { guest: name.to_owned(), pid })
    }

    /// Stops and starts the guest again.
    pub async fn restart(&self, name: &str, timeout: Duration) -> Result<StartOutcome> {
        self.stop(name, timeout).await?;
        self.start(name).await
    }

    /// The definition with what is live: the process's command line (`live`; it does not show devices plugged
    /// in later), the run state, the CPU share, and the NICs and disks QMP reports (`live_devices`).
    pub async fn describe_guest(&self, name: &str) -> Result<GuestDescription> {
        let paths = self.guest_paths(name)?;
        let spec = self.read_definition(name)?;
        let Some(pid) = running_pid(&paths) else {
            return Ok(GuestDescription {
                spec,
                state: GuestState::Stopped,
                live: None,
                run_state: None,
                live_cpu_share: None,
                live_devices: None,
            });
        };
        let arguments = processes::read_cmdline(pid);
        let live = arguments
            .as_ref()
            .and_then(|arguments| processes::listing_from_cmdline(pid, arguments, &self.guests_directory));
        let qmp_socket = match read_adopted(&paths) {
            Some(adopted) if adopted.pid == pid => adopted.qmp_socket,
            _ => Some(paths.qmp_socket()),
        };
        let (run_state, live_devices) = match &qmp_socket {
            Some(socket) => match QmpClient::connect(name, socket).await {
                Ok(mut client) => {
                    let run_state = client.run_state().await.ok();
                    let devices = live::query_live_devices(&mut client, &spec, arguments.as_deref()).await;
                    if let Err(error) = &devices {
                        tracing::warn!(guest = name, error = %error, "cannot read the devices of the running guest");
                    }
                    (run_state, devices.ok())
                }
                Err(_) => (None, None),
            },
            None => (None, None),
        };
        // The nice value is coarser than the share, so a share whose nice value is in effect is reported as is.
        let live_cpu_share = cpu_share::current_share(pid).map(|share| {
            if cpu_share::nice_for_share(share) == cpu_share::nice_for_share(spec.cpu_share) {
                spec.cpu_share
            } else {
                share
            }
        });
        Ok(GuestDescription { spec, state: GuestState::Running { pid }, live, run_state, live_cpu_share, live_devices })
    }

    /// The last `max_bytes` of the console log (lossily decoded).
    pub fn console_log(&self, name: &str, max_bytes: usize) -> Result<String> {
        use std::io::{Read, Seek, SeekFrom};
        let paths = self.guest_paths(name)?;
        if !paths.definition().exists() {
            return Err(HypervisorError::NotFound { guest: name.to_owned() });
        }
        let path = paths.console_log();
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(source) => return Err(HypervisorError::io(&path, source)),
        };
        let length = file.metadata().map_err(|source| HypervisorError::io(&path, source))?.len();
        let start = length.saturating_sub(max_bytes as u64);
        file.seek(SeekFrom::Start(start)).map_err(|source| HypervisorError::io(&path, source))?;
        let mut bytes = Vec::new();
        file.take(max_bytes as u64).read_to_end(&mut bytes).map_err(|source| HypervisorError::io(&path, source))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Every QEMU process on the host.
    pub fn list_guests(&self) -> Vec<GuestListing> {
        let mut listings = processes::scan(&self.guests_directory);
        // Adopted processes were started elsewhere, but they are this host's guests now.
        let adopted: Vec<u32> = self
            .defined_guests()
            .unwrap_or_default()
            .iter()
            .filter_map(|name| self.guest_paths(name).ok())
            .filter_map(|paths| adopted_running(&paths))
            .map(|adopted| adopted.pid)
            .collect();
        for listing in &mut listings {
            listing.managed |= adopted.contains(&listing.pid);
        }
        listings
    }

    /// Stores the new share in the definition and applies it to the running process.
    pub async fn set_cpu_share(&self, name: &str, share: u32) -> Result<()> {
        validate::cpu_share(share)?;
        let mut spec = self.read_definition(name)?;
        if spec.cpu_share != share {
            spec.cpu_share = share;
            self.define_guest(&spec).await?;
        }
        let paths = self.guest_paths(name)?;
        if let Some(pid) = running_pid(&paths) {
            cpu_share::apply_share(name, pid, share)?;
        }
        Ok(())
    }

    /// The management channel socket of the guest (it exists while a guest with `agent_channel` runs).
    pub fn agent_socket(&self, name: &str) -> Result<PathBuf> {
        Ok(self.guest_paths(name)?.agent_socket())
    }
}

/// The pid of the guest's QEMU if it runs.
pub(crate) fn running_pid(paths: &GuestPaths) -> Option<u32> {
    let pid_file = paths.pid_file();
    let pid_file_text = pid_file.to_string_lossy().into_owned();
    let is_ours = |pid: u32| {
        processes::process_alive(pid)
            && processes::read_cmdline(pid).is_some_and(|arguments| arguments.contains(&pid_file_text))
    };
    if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|text| text.trim().parse::<u32>().ok())
        && is_ours(pid)
    {
        return Some(pid);
    }
    if let Some(adopted) = adopted_running(paths) {
        return Some(adopted.pid);
    }
    // The pid file may be missing (removed, or not yet written): look for the command line itself.
    let entries = std::fs::read_dir("/proc").ok()?;
    entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(|pid| {
        processes::read_cmdline(*pid).is_some_and(|arguments| {
            processes::emulator_arch(&arguments).is_some() && arguments.contains(&pid_file_text)
        }) && processes::process_alive(*pid)
    })
}

async fn wait_for_pid(name: &str, paths: &GuestPaths) -> Result<u32> {
    let deadline = Instant::now() + QMP_READY_TIMEOUT;
    loop {
        if let Some(pid) = running_pid(paths) {
            return Ok(pid);
        }
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(paths.start_log()).unwrap_or_default();
            return Err(HypervisorError::StartFailed {
                guest: name.to_owned(),
                log: format!("QEMU detached but no process is running: {}", log.trim()),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits up to `timeout` for `pid` to be gone (or a zombie); true when it is.
async fn wait_for_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !processes::process_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Removes the pid file and sockets of a stopped guest.
fn remove_runtime_files(paths: &GuestPaths) -> Result<()> {
    for path in [paths.pid_file(), paths.qmp_socket(), paths.agent_socket(), paths.adopted()] {
        fsutil::remove_file_if_present(&path)?;
    }
    Ok(())
}
