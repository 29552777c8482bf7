//! Services: list them with their state; start, stop, restart one.
//!
//! Where systemd runs (`/run/systemd/system` exists, as `sd_booted(3)` checks) the agent asks `systemctl`;
//! elsewhere it runs the init system's scripts, `/etc/init.d/NAME start|stop|restart|status`, and reads a
//! script's state from the exit code of `status` (LSB: 0 running, 1 and 2 dead with a stale pid or lock file,
//! 3 not running, 4 unknown). The agent option `--init-directory` (`STEWARD_AGENT_INIT_DIR`) names another
//! directory of scripts and makes the agent use scripts even where systemd runs: for tests (a scratch directory
//! instead of the host's services) and unusual layouts.
//!
//! Every program runs through [`crate::command::run`]: without a shell, in a process group of its own that a
//! timeout kills whole, with its output captured. What a failed action printed is returned exactly.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use steward_protocol::CommandRequest;
use steward_protocol::system_admin::{
    ServiceActionOutcome, ServiceInfo, ServiceListing, ServiceManager, ServiceVerb, check_service_name,
};

/// How long a start, stop or restart may take before it is killed.
pub const ACTION_TIMEOUT_SECONDS: u32 = 120;

/// How long one script's `status` may take while listing.
const STATUS_TIMEOUT_SECONDS: u32 = 10;

/// How many `status` scripts run at the same time while listing.
const STATUS_CONCURRENCY: usize = 8;

/// The scripts' directory when the init system's scripts are used and no other is configured.
const DEFAULT_INIT_DIRECTORY: &str = "/etc/init.d";

/// Files of an init directory that are not services.
const NOT_SERVICES: [&str; 5] = ["README", "skeleton", "rc", "rcS", "functions"];

static INIT_DIRECTORY: OnceLock<PathBuf> = OnceLock::new();

/// Makes the agent use the init scripts of `directory` (the `--init-directory` option); set once, at start.
pub fn set_init_directory(directory: PathBuf) {
    if INIT_DIRECTORY.set(directory).is_err() {
        tracing::warn!("the init directory was set twice; the first one is kept");
    }
}

/// The service manager the agent drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    InitScripts(PathBuf),
}

impl Manager {
    /// The configured init directory, else systemd where it runs, else `/etc/init.d`.
    pub fn detect() -> Manager {
        if let Some(directory) = INIT_DIRECTORY.get() {
            return Manager::InitScripts(directory.clone());
        }
        if Path::new("/run/systemd/system").is_dir() {
            return Manager::Systemd;
        }
        Manager::InitScripts(PathBuf::from(DEFAULT_INIT_DIRECTORY))
    }

    fn kind(&self) -> ServiceManager {
        match self {
            Manager::Systemd => ServiceManager::Systemd,
            Manager::InitScripts(_) => ServiceManager::InitScripts,
        }
    }
}

/// Lists the services of `manager` with their state.
pub async fn list(manager: &Manager) -> Result<ServiceListing, String> {
    match manager {
        Manager::Systemd => {
            let argv = ["systemctl", "list-units", "--type=service", "--all", "--no-legend", "--plain", "--no-pager"];
            let outcome = run(&argv, STATUS_TIMEOUT_SECONDS * 3).await?;
            if outcome.exit_code != Some(0) {
                return Err(format!("`{}` failed: {}", argv.join(" "), printed(&outcome)));
            }
            Ok(ServiceListing {
                manager: ServiceManager::Systemd,
                directory: None,
                services: parse_systemd_units(&outcome.stdout),
            })
        }
        Manager::InitScripts(directory) => {
            let names = script_names(directory)?;
            let limit = Arc::new(tokio::sync::Semaphore::new(STATUS_CONCURRENCY));
            let mut tasks = tokio::task::JoinSet::new();
            for (index, name) in names.iter().enumerate() {
                let (limit, script) = (Arc::clone(&limit), directory.join(name));
                tasks.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    (index, script_status(&script).await)
                });
            }
            let mut states = vec![(String::new(), String::new()); names.len()];
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok((index, state)) => states[index] = state,
                    Err(error) => return Err(format!("checking a script's status failed: {error}")),
                }
            }
            let services = names
                .into_iter()
                .zip(states)
                .map(|(name, (state, detail))| ServiceInfo { name, state, detail, description: String::new() })
                .collect();
            Ok(ServiceListing {
                manager: ServiceManager::InitScripts,
                directory: Some(directory.display().to_string()),
                services,
            })
        }
    }
}

/// Starts, stops or restarts service `name`. A failed action is an outcome too (its exit code and output); an
/// error means nothing was run.
pub async fn act(manager: &Manager, name: &str, verb: ServiceVerb) -> Result<ServiceActionOutcome, String> {
    check_service_name(name)?;
    let command: Vec<String> = match manager {
        Manager::Systemd => vec!["systemctl".into(), verb.as_str().into(), name.into()],
        Manager::InitScripts(directory) => {
            let script = existing_script(directory, name)?;
            vec![script.display().to_string(), verb.as_str().into()]
        }
    };
    let argv: Vec<&str> = command.iter().map(String::as_str).collect();
    let outcome = run(&argv, ACTION_TIMEOUT_SECONDS).await?;
    let state_after = match manager {
        Manager::Systemd => match run(&["systemctl", "is-active", name], STATUS_TIMEOUT_SECONDS).await {
            Ok(active) => systemd_state(active.stdout.trim()).to_string(),
            Err(_) => "unknown".into(),
        },
        Manager::InitScripts(directory) => script_status(&directory.join(name)).await.0,
    };
    Ok(ServiceActionOutcome {
        name: name.to_string(),
        action: verb,
        manager: manager.kind(),
        command,
        exit_code: outcome.exit_code,
        timed_out: outcome.timed_out,
        output: printed(&outcome),
        state_after,
    })
}

/// The script of service `name` in `directory`, which must exist (the name was checked: it holds no `/`).
fn existing_script(directory: &Path, name: &str) -> Result<PathBuf, String> {
    let script = directory.join(name);
    match std::fs::metadata(&script) {
        Ok(metadata) if metadata.is_file() => Ok(script),
        Ok(_) => Err(format!("{} is not a script", script.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("there is no service {name:?}: {} does not exist", script.display()))
        }
        Err(error) => Err(format!("cannot use {}: {error}", script.display())),
    }
}

/// The services of an init directory: its executable files, but for the helpers that are not services and
/// package managers' leftovers, sorted.
fn script_names(directory: &Path) -> Result<Vec<String>, String> {
    let entries =
        std::fs::read_dir(directory).map_err(|error| format!("cannot read {}: {error}", directory.display()))?;
    let mut names = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        let leftover = [".dpkg-old", ".dpkg-dist", ".dpkg-new", ".rpmsave", ".rpmnew", "~"];
        if NOT_SERVICES.contains(&name.as_str())
            || leftover.iter().any(|suffix| name.ends_with(suffix))
            || check_service_name(&name).is_err()
        {
            continue;
        }
        // Follows symbolic links, as running the script would.
        let executable = std::fs::metadata(entry.path())
            .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0);
        if executable {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// A script's state from `SCRIPT status`: the state and what it means.
async fn script_status(script: &Path) -> (String, String) {
    let path = script.display().to_string();
    match run(&[path.as_str(), "status"], STATUS_TIMEOUT_SECONDS).await {
        Ok(outcome) if outcome.timed_out => {
            ("unknown".into(), format!("`status` did not finish within {STATUS_TIMEOUT_SECONDS} seconds"))
        }
        Ok(outcome) => match outcome.exit_code {
            Some(code) => {
                let (state, meaning) = lsb_status(code);
                (state.into(), format!("status exit code {code}: {meaning}"))
            }
            None => ("unknown".into(), format!("`status` was killed by signal {}", outcome.signal.unwrap_or(0))),
        },
        Err(error) => ("unknown".into(), error),
    }
}

/// The state an LSB `status` exit code stands for, and its meaning.
pub fn lsb_status(code: i32) -> (&'static str, &'static str) {
    match code {
        0 => ("running", "program is running"),
        1 => ("failed", "program is dead and the pid file exists"),
        2 => ("failed", "program is dead and the lock file exists"),
        3 => ("stopped", "program is not running"),
        4 => ("unknown", "program or service status is unknown"),
        _ => ("unknown", "not an LSB status code"),
    }
}

/// The rows of `systemctl list-units --no-legend --plain`: `UNIT LOAD ACTIVE SUB DESCRIPTION...`. A leading
/// status mark (`●`, or `*` without UTF-8) that some versions print anyway is skipped.
pub fn parse_systemd_units(text: &str) -> Vec<ServiceInfo> {
    let mut services = Vec::new();
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches(['●', '*', '×']).trim_start();
        let mut words = line.split_whitespace();
        let (Some(unit), Some(load), Some(active), Some(sub)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        let description = words.collect::<Vec<_>>().join(" ");
        services.push(ServiceInfo {
            name: unit.to_string(),
            state: systemd_state(active).to_string(),
            detail: format!("{load} {active} {sub}"),
            description,
        });
    }
    services
}

/// A systemd active state as one of the listing's states.
fn systemd_state(active: &str) -> &'static str {
    match active {
        "active" | "reloading" => "running",
        "inactive" => "stopped",
        "failed" => "failed",
        "activating" => "starting",
        "deactivating" => "stopping",
        _ => "unknown",
    }
}

/// Runs `argv` through the agent's command runner.
async fn run(argv: &[&str], timeout_seconds: u32) -> Result<steward_protocol::CommandOutcome, String> {
    crate::command::run(CommandRequest {
        argv: argv.iter().map(|argument| argument.to_string()).collect(),
        environment: BTreeMap::new(),
        stdin: None,
        timeout_seconds,
        working_directory: None,
    })
    .await
}

/// What a program printed: its standard output, then its standard error.
fn printed(outcome: &steward_protocol::CommandOutcome) -> String {
    let mut text = outcome.stdout.clone();
    text.push_str(&outcome.stderr);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_systemctl_units() {
        let text = "\
cron.service                         loaded    active   running Regular background program processing daemon
dbus.service                         loaded    active   running D-Bus System Message Bus
● nfs-server.service                 not-found inactive dead    nfs-server.service
networking.service                   loaded    failed   failed  Raise network interfaces
systemd-fsck@dev-disk-by\\x2dlabel-boot.service loaded active exited File System Check on /dev/disk/by-label/boot
postgresql.service                   loaded    activating start PostgreSQL

";
        let services = parse_systemd_units(text);
        let summary: Vec<(&str, &str, &str)> =
            services.iter().map(|s| (s.name.as_str(), s.state.as_str(), s.detail.as_str())).collect();
        assert_eq!(
            summary,
            [
                ("cron.service", "running", "loaded active running"),
                ("dbus.service", "running", "loaded active running"),
                ("nfs-server.service", "stopped", "not-found inactive dead"),
                ("networking.service", "failed", "loaded failed failed"),
                ("systemd-fsck@dev-disk-by\\x2dlabel-boot.service", "running", "loaded active exited"),
                ("postgresql.service", "starting", "loaded activating start"),
            ]
        );
        assert_eq!(services[0].description, "Regular background program processing daemon");
        assert_eq!(services[2].description, "nfs-server.service");
    }

    /// A scratch init directory with one service whose script keeps its state in a file.
    fn scratch() -> (tempfile::TempDir, Manager) {
        let dir = tempfile::tempdir().expect("tempdir");
        let init = dir.path().join("init.d");
        std::fs::create_dir_all(&init).expect("mkdir");
        let state = dir.path().join("demo.state");
        let script = format!(
            "#!/bin/sh\nSTATE={}\ncase \"$1\" in\n\
             start) echo running > \"$STATE\"; echo started ;;\n\
             stop) echo stopped > \"$STATE\"; echo stopped ;;\n\
             restart) echo running > \"$STATE\"; echo restarted ;;\n\
             status) [ \"$(cat \"$STATE\" 2>/dev/null)\" = running ] && exit 0; exit 3 ;;\n\
             *) echo \"usage: $0 start|stop|restart|status\" >&2; exit 2 ;;\nesac\n",
            state.display()
        );
        for (name, mode) in [("demo", 0o755), ("broken", 0o755), ("README", 0o755), ("notes", 0o644)] {
            let text =
                if name == "broken" { "#!/bin/sh\necho \"cannot $1: no config\" >&2\nexit 6\n" } else { &script };
            std::fs::write(init.join(name), text).expect("script");
            std::fs::set_permissions(init.join(name), std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        (dir, Manager::InitScripts(init))
    }

    #[tokio::test]
    async fn init_scripts_are_listed_started_and_stopped() {
        let (_dir, manager) = scratch();
        let listing = list(&manager).await.expect("lists");
        assert_eq!(listing.manager, ServiceManager::InitScripts);
        let states: Vec<(&str, &str)> = listing.services.iter().map(|s| (s.name.as_str(), s.state.as_str())).collect();
        assert_eq!(states, [("broken", "unknown"), ("demo", "stopped")]);
        assert_eq!(listing.services[1].detail, "status exit code 3: program is not running");

        let started = act(&manager, "demo", ServiceVerb::Start).await.expect("runs");
        assert!(started.succeeded());
        assert_eq!((started.output.as_str(), started.state_after.as_str()), ("started\n", "running"));
        let stopped = act(&manager, "demo", ServiceVerb::Stop).await.expect("runs");
        assert_eq!(stopped.state_after, "stopped");

        let failed = act(&manager, "broken", ServiceVerb::Restart).await.expect("runs");
        assert!(!failed.succeeded());
        assert_eq!((failed.exit_code, failed.output.as_str()), (Some(6), "cannot restart: no config\n"));

        let missing = act(&manager, "absent", ServiceVerb::Start).await.expect_err("no such script");
        assert!(missing.contains("there is no service \"absent\""), "{missing}");
        for bad in ["../demo", "-x", "a b"] {
            assert!(act(&manager, bad, ServiceVerb::Start).await.is_err(), "{bad}");
        }
    }

    #[test]
    fn lsb_codes() {
        assert_eq!(lsb_status(0).0, "running");
        assert_eq!(lsb_status(3).0, "stopped");
        assert_eq!(lsb_status(1).0, "failed");
        assert_eq!(lsb_status(42).0, "unknown");
    }
}
