//! The simulated system's whole state, its JSON state file (written to a temporary file, synced, then renamed
//! over the old one, so a crash leaves either the old or the new state), and the default system a first start
//! creates.
//!
//! A restart of the simulator is not an IPL of the simulated system: guests stay logged on, virtual switches
//! defined without `persist` stay defined, DirMaint operations in flight finish when their time comes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::auth::AuthEntry;
use crate::config::SimulatorConfig;
use crate::directory::statements::Statement;
use crate::directory::{Directory, Entry};
use crate::guests::Guest;
use crate::networks::Vswitch;
use crate::operations::Operations;
use crate::pools::Pools;

/// The version of the state file layout.
pub const STATE_VERSION: u32 = 1;

/// Facts about the simulated system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub name: String,
    /// The CP level `System_Info_Query` reports.
    pub cp_level: String,
    /// The reason code of `Query_API_Functional_Level` (710 is z/VM 7.1).
    pub api_level: i32,
    /// When the simulated system was "IPLed": its creation, in seconds since the Unix epoch.
    pub ipl_time: u64,
    /// The real storage the simulated system reports.
    pub storage: String,
}

/// Everything the simulator knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub system: SystemInfo,
    /// SMAPI users and their passwords.
    pub users: BTreeMap<String, String>,
    pub authlist: Vec<AuthEntry>,
    pub directory: Directory,
    pub pools: Pools,
    /// Logged-on guests.
    #[serde(default)]
    pub guests: BTreeMap<String, Guest>,
    #[serde(default)]
    pub vswitches: BTreeMap<String, Vswitch>,
    #[serde(default)]
    pub operations: Operations,
    /// The next MAC address suffix handed out.
    #[serde(default = "first_mac")]
    pub next_mac: u32,
}

fn first_mac() -> u32 {
    1
}

/// The minidisk of the hand-made guest LINUX01 of a new system: 2 GiB in 3390 cylinders.
const HAND_MADE_GUEST_CYLINDERS: u32 = 2527;

/// Why the state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot set up the initial system: {0}")]
    Initial(String),
    #[error("cannot read the state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state file {path} is not a simulator state")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the state file {path} has layout version {found}; this simulator reads version {STATE_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write the state file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate a password for the administrator")]
    Random(#[source] std::io::Error),
}

impl State {
    /// An empty system (no users, no directory).
    pub fn empty(now: SystemTime) -> State {
        State {
            version: STATE_VERSION,
            system: SystemInfo {
                name: "ZVMSIM1".into(),
                cp_level: "z/VM Version 7 Release 1.0, service level 2001 (64-bit), simulated by zvm-sim".into(),
                api_level: 710,
                ipl_time: now.duration_since(SystemTime::UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0),
                storage: "16G CONFIGURED = 16G INC = 256M STANDBY = 0  RESERVED = 0".into(),
            },
            users: BTreeMap::new(),
            authlist: Vec::new(),
            directory: Directory::default(),
            pools: Pools::default(),
            guests: BTreeMap::new(),
            vswitches: BTreeMap::new(),
            operations: Operations::default(),
            next_mac: first_mac(),
        }
    }

    /// The default system of a first start, shaped by the configuration; returns what it created, in words.
    pub fn initial(config: &SimulatorConfig, now: SystemTime) -> Result<(State, Vec<String>), StateError> {
        let mut state = State::empty(now);
        let mut created =
            vec![format!("system {} (simulated; API level {})", state.system.name, state.system.api_level)];
        if config.users.is_empty() {
            let password = generated_password().map_err(StateError::Random)?;
            state.users.insert("MAINT".into(), password.clone());
            state.authlist.push(AuthEntry::all("MAINT"));
            created.push(format!(
                "administrator MAINT with password {password} (authorized for ALL functions on ALL targets)"
            ));
        } else if let Some(first) = config.users.first() {
            state.authlist.push(AuthEntry::all(&first.name));
            created.push(format!("administrator {} (authorized for ALL functions on ALL targets)", first.name));
        }
        if config.pools.is_empty() {
            for volume in ["SIM001", "SIM002", "SIM003"] {
                state.pools.add_volume("LINUX", volume, "3390", 10016);
            }
            created.push("disk pool group LINUX: volumes SIM001, SIM002, SIM003 (3390, 10016 cylinders each)".into());
        }
        created.push("MAC prefix 02:00:5a (VMLAN MACPREFIX: every guest NIC's MAC starts with it)".into());
        state.vswitches.insert("VSW1".into(), Vswitch::new("VSW1", vec!["1000".into()]));
        created.push(
            "virtual switch VSW1 (ETHERNET, VLAN-unaware, real device 1000); grant guests before coupling".into(),
        );
        let profile =
            ["CONSOLE 0009 3215 T", "SPOOL 000C 2540 READER *", "SPOOL 000D 2540 PUNCH A", "SPOOL 000E 1403 A"];
        state
            .directory
            .profiles
            .insert("LNXDFLT".into(), profile.iter().filter_map(|line| Statement::parse(line).ok()).collect());
        created.push("profile LNXDFLT (console and spool devices)".into());
        let holder = ["USER LNXIMAGE NOLOG 64M 64M G", "INCLUDE LNXDFLT"];
        state.directory.entries.insert(
            "LNXIMAGE".into(),
            Entry::new(holder.iter().filter_map(|line| Statement::parse(line).ok()).collect()),
        );
        created.push("NOLOG user LNXIMAGE, to hold template disks".into());
        if config.pools.is_empty() && config.example_guest {
            // A guest an administrator defined by hand (no Steward marker), with a 2 GiB minidisk: what the first of
            // the five steps, registering an existing guest, starts from.
            let (volume, start) = state
                .pools
                .allocate("AUTOG", "LINUX", HAND_MADE_GUEST_CYLINDERS, "LINUX01", "0100")
                .map_err(|error| StateError::Initial(format!("{error:?}")))?;
            let guest = [
                "USER LINUX01 LBYONLY 2G 4G G".to_owned(),
                "INCLUDE LNXDFLT".to_owned(),
                "MACHINE ESA 4".to_owned(),
                "CPU 00".to_owned(),
                "IPL 0100".to_owned(),
                format!("MDISK 0100 3390 {start} {HAND_MADE_GUEST_CYLINDERS} {volume} MR"),
                "NICDEF 0600 TYPE QDIO DEVICES 3 LAN SYSTEM VSW1".to_owned(),
            ];
            state.directory.entries.insert(
                "LINUX01".into(),
                Entry::new(guest.iter().filter_map(|line| Statement::parse(line).ok()).collect()),
            );
            created.push(format!(
                "guest LINUX01 defined by hand (not by Steward): 2 GiB, minidisk 0100 ({HAND_MADE_GUEST_CYLINDERS} \
                 cylinders on {volume}), a NIC on VSW1"
            ));
        }
        Ok((state, created))
    }

    /// Adds the users, authorizations and pool volumes of the configuration (a user's password is replaced).
    pub fn apply_config(&mut self, config: &SimulatorConfig) {
        for user in &config.users {
            self.users.insert(user.name.clone(), user.password.clone());
        }
        for entry in &config.authorizations {
            if !self.authlist.contains(entry) {
                self.authlist.push(entry.clone());
            }
        }
        for volume in &config.pools {
            self.pools.add_volume(&volume.group, &volume.volume, "3390", volume.cylinders);
        }
    }

    /// Reads a state file; `None` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<State>, StateError> {
        let mut text = String::new();
        match std::fs::File::open(path) {
            Ok(mut file) => {
                file.read_to_string(&mut text).map_err(|source| StateError::Read { path: path.to_owned(), source })?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path: path.to_owned(), source }),
        };
        let version: Option<u32> = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|value| value.get("version").and_then(serde_json::Value::as_u64))
            .and_then(|version| u32::try_from(version).ok());
        if let Some(found) = version.filter(|version| *version != STATE_VERSION) {
            return Err(StateError::Version { path: path.to_owned(), found });
        }
        let state =
            serde_json::from_str(&text).map_err(|source| StateError::Parse { path: path.to_owned(), source })?;
        Ok(Some(state))
    }

    /// Writes the state file atomically: a temporary file beside it, synced, renamed over it.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let write = |source| StateError::Write { path: path.to_owned(), source };
        let text = serde_json::to_vec_pretty(self).map_err(|error| write(std::io::Error::other(error)))?;
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        // The state holds passwords: only its owner may read it.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(write)?;
        file.write_all(&text).map_err(write)?;
        file.sync_all().map_err(write)?;
        drop(file);
        std::fs::rename(&temporary, path).map_err(write)?;
        if let Some(directory) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            // Syncing the directory makes the rename itself durable; not every file system allows it.
            if let Ok(directory) = std::fs::File::open(directory) {
                let _ = directory.sync_all();
            }
        }
        Ok(())
    }
}

/// Twelve random letters and digits from the kernel's generator.
fn generated_password() -> std::io::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 12];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|byte| char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_system() {
        let config = SimulatorConfig::new("127.0.0.1:0".parse().unwrap());
        let (state, created) = State::initial(&config, SystemTime::now()).unwrap();
        assert_eq!(state.users.len(), 1);
        assert_eq!(state.users["MAINT"].len(), 12);
        assert!(created.iter().any(|line| line.contains(&state.users["MAINT"])));
        assert_eq!(state.pools.groups["LINUX"].len(), 3);
        assert!(state.vswitches.contains_key("VSW1"));
        assert_eq!(state.directory.entries["LNXIMAGE"].user().unwrap().password, "NOLOG");
    }

    #[test]
    fn saved_state_loads_back() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("state.json");
        assert!(State::load(&path).unwrap().is_none());
        let config = SimulatorConfig::new("127.0.0.1:0".parse().unwrap());
        let (state, _) = State::initial(&config, SystemTime::now()).unwrap();
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), Some(state));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, b"{\"version\": 9}").unwrap();
        assert!(matches!(State::load(&path), Err(StateError::Version { found: 9, .. })));
        std::fs::write(&path, b"not json").unwrap();
        assert!(matches!(State::load(&path), Err(StateError::Parse { .. })));
    }
}
