//! How a simulator is started: where it listens, where its state lives, what the first start creates, the
//! faults it begins with, and how long simulated work takes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::auth::AuthEntry;
use crate::faults::Faults;

/// How long the simulated system takes for things that take time on z/VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// A DirMaint asynchronous operation (disk create and delete, and the base of a copy).
    pub operation: Duration,
    /// Added to a disk copy per 1000 cylinders (or 1000 blocks) copied.
    pub copy_per_thousand_units: Duration,
    /// How long a guest's operating system takes to shut down after the shutdown signal.
    pub guest_shutdown: Duration,
    /// The system's signal timeout: the grace time of a deactivation without a time.
    pub signal_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            operation: Duration::from_millis(200),
            copy_per_thousand_units: Duration::from_millis(100),
            guest_shutdown: Duration::from_millis(500),
            signal_timeout: Duration::from_secs(300),
        }
    }
}

/// A disk pool volume to create: `GROUP:VOLUME:CYLINDERS` on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolVolumeSpec {
    pub group: String,
    pub volume: String,
    pub cylinders: u32,
}

impl FromStr for PoolVolumeSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(':').collect();
        let [group, volume, cylinders] = parts.as_slice() else {
            return Err(format!("{text:?} is not GROUP:VOLUME:CYLINDERS"));
        };
        let cylinders: u32 = cylinders
            .parse()
            .ok()
            .filter(|cylinders| (1..=1_182_006).contains(cylinders))
            .ok_or_else(|| format!("{cylinders:?} is not a cylinder count (1 to 1182006)"))?;
        for (what, name) in [("group", group), ("volume", volume)] {
            if !crate::directory::statements::valid_name(name) || (what == "volume" && name.len() > 6) {
                return Err(format!("{name:?} is not a valid {what} name"));
            }
        }
        Ok(PoolVolumeSpec { group: group.to_uppercase(), volume: volume.to_uppercase(), cylinders })
    }
}

/// A SMAPI user to create: `NAME:PASSWORD` on the command line.
#[derive(Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for UserSpec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("UserSpec").field("name", &self.name).field("password", &"<redacted>").finish()
    }
}

impl FromStr for UserSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((name, password)) = text.split_once(':') else {
            return Err("a user is NAME:PASSWORD".to_owned());
        };
        if !crate::directory::statements::valid_name(name) {
            return Err(format!("{name:?} is not a valid user ID (1-8 of A-Z, 0-9, @#$+-:_)"));
        }
        if password.is_empty() || password.len() > 200 {
            return Err("the password must be 1 to 200 characters".to_owned());
        }
        Ok(UserSpec { name: name.to_uppercase(), password: password.to_owned() })
    }
}

/// Everything a simulator starts from.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    pub listen: SocketAddr,
    /// The JSON state file: loaded at start when it exists, written (atomically) after every change. Without
    /// one the state lives in memory only.
    pub state_file: Option<PathBuf>,
    /// SMAPI users to create (or whose password to replace). On the first start the first of them is the
    /// administrator; without any, an administrator `MAINT` with a generated password is created.
    pub users: Vec<UserSpec>,
    /// AUTHLIST entries to add.
    pub authorizations: Vec<AuthEntry>,
    /// Disk pool volumes to add. On the first start without any, a default pool is created.
    pub pools: Vec<PoolVolumeSpec>,
    pub faults: Faults,
    pub timing: Timing,
    /// How long a client may take to send its request.
    pub read_timeout: Duration,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// On the first start with the default pool, also define guest LINUX01 by hand (not marked as Steward's),
    /// for trying the first of the five steps (registering an existing guest).
    pub example_guest: bool,
}

impl SimulatorConfig {
    /// Defaults, listening on `listen`, state in memory.
    pub fn new(listen: SocketAddr) -> Self {
        SimulatorConfig {
            listen,
            state_file: None,
            users: Vec::new(),
            authorizations: Vec::new(),
            pools: Vec::new(),
            faults: Faults::default(),
            timing: Timing::default(),
            read_timeout: Duration::from_secs(30),
            max_connections: 64,
            example_guest: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_specs() {
        let volume: PoolVolumeSpec = "linux:sim001:10016".parse().unwrap();
        assert_eq!(volume, PoolVolumeSpec { group: "LINUX".into(), volume: "SIM001".into(), cylinders: 10016 });
        assert!("LINUX:SIM001".parse::<PoolVolumeSpec>().is_err());
        assert!("LINUX:TOOLONGVOL:10".parse::<PoolVolumeSpec>().is_err());
        assert!("LINUX:SIM001:0".parse::<PoolVolumeSpec>().is_err());
        let user: UserSpec = "admin:Secret:1".parse().unwrap();
        assert_eq!((user.name.as_str(), user.password.as_str()), ("ADMIN", "Secret:1"));
        assert!("admin".parse::<UserSpec>().is_err());
        assert!("admin:".parse::<UserSpec>().is_err());
        assert!(!format!("{user:?}").contains("Secret"));
    }
}
