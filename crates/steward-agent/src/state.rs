//! The agent's persistent state, in its state directory (default `/var/lib/steward-agent`, mode 0700):
//!
//! | file             | what                                                                  |
//! |------------------|-----------------------------------------------------------------------|
//! | `identity.json`  | server URL, gateway address, system ID and name                       |
//! | `agent.key`      | the agent's private key (0600), generated at enrollment, never sent   |
//! | `agent.pem`      | its certificate, signed by the server's CA                            |
//! | `ca.pem`         | the server's CA certificate, the only root the agent trusts           |
//! | `inventory.json` | the inventory last reported, to send only changes after a restart     |
//!
//! Every file is written to a temporary name and renamed, so a crash never leaves a half-written identity.
//! Over virtio-serial the agent has no identity of its own (the port identifies the guest): only
//! `inventory.json` is kept.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use steward_protocol::Inventory;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub server_url: String,
    /// Host (name or IP) and port of the agent gateway.
    pub gateway_host: String,
    pub gateway_port: u16,
    pub system_id: String,
    pub system_name: String,
}

/// Everything needed to connect: the identity and the PEM texts of key, certificate and CA.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub identity: Identity,
    pub key_pem: String,
    pub certificate_pem: String,
    pub ca_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged; remove the state directory and enroll again")]
    Damaged {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    pub fn open(path: &Path) -> Result<Self, StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| StateError::Io { path: path.to_path_buf(), source })?;
        Ok(Self { path: path.to_path_buf() })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn read(&self, name: &str) -> Result<Option<String>, StateError> {
        let path = self.file(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    fn write(&self, name: &str, contents: &[u8], mode: u32) -> Result<(), StateError> {
        let path = self.file(name);
        let temporary = self.file(&format!(".{name}.tmp"));
        let io = |source| StateError::Io { path: path.clone(), source };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temporary)
            .map_err(io)?;
        file.write_all(contents).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, &path).map_err(io)?;
        // The rename is durable only once the directory is: identity.json must not outlive a lost agent.key.
        std::fs::File::open(&self.path).and_then(|directory| directory.sync_all()).map_err(io)?;
        Ok(())
    }

    /// The stored enrollment, if the agent has enrolled.
    pub fn enrolled(&self) -> Result<Option<Enrolled>, StateError> {
        let Some(identity) = self.read("identity.json")? else { return Ok(None) };
        let identity: Identity = serde_json::from_str(&identity)
            .map_err(|source| StateError::Damaged { path: self.file("identity.json"), source })?;
        let missing = |name: &str| StateError::Io {
            path: self.file(name),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "missing although identity.json exists"),
        };
        Ok(Some(Enrolled {
            identity,
            key_pem: self.read("agent.key")?.ok_or_else(|| missing("agent.key"))?,
            certificate_pem: self.read("agent.pem")?.ok_or_else(|| missing("agent.pem"))?,
            ca_pem: self.read("ca.pem")?.ok_or_else(|| missing("ca.pem"))?,
        }))
    }

    /// Stores a new enrollment; `identity.json` is written last, so it exists only when the rest does.
    pub fn save_enrolled(&self, enrolled: &Enrolled) -> Result<(), StateError> {
        self.write("agent.key", enrolled.key_pem.as_bytes(), 0o600)?;
        self.write("agent.pem", enrolled.certificate_pem.as_bytes(), 0o644)?;
        self.write("ca.pem", enrolled.ca_pem.as_bytes(), 0o644)?;
        let _ = std::fs::remove_file(self.file("inventory.json"));
        let identity = serde_json::to_vec_pretty(&enrolled.identity).unwrap_or_default();
        self.write("identity.json", &identity, 0o600)
    }

    /// The inventory last reported; `None` if none was, or the file is unreadable (then a full report follows).
    pub fn last_inventory(&self) -> Option<Inventory> {
        self.read("inventory.json").ok().flatten().and_then(|text| serde_json::from_str(&text).ok())
    }

    pub fn save_last_inventory(&self, inventory: &Inventory) -> Result<(), StateError> {
        let text = serde_json::to_vec(inventory).unwrap_or_default();
        self.write("inventory.json", &text, 0o600)
    }
}
