//! Isolated virtual networks: one Linux network namespace per `QemuHost` (its `namespace` name) holding one
//! bridge per Steward network and one tap per guest NIC, attached to its network's bridge. There is no uplink,
//! so nothing a guest sends leaves the namespace. Guests with NICs run inside the namespace
//! (`ip netns exec`), where QEMU opens their taps.
//!
//! Every verb is idempotent: creating what exists and deleting what is gone succeed. The namespace is created
//! with the first network and removed with the last one. Operations are serialized within the process by a
//! lock, so "is this the last network?" cannot race with a concurrent create.

use std::path::PathBuf;

use tokio::sync::Mutex;

use crate::error::{HypervisorError, Result};
use crate::qemu::command;
use crate::validate;

/// The prefix of bridge names; the rest is a hash of the network name.
const BRIDGE_PREFIX: &str = "stb";

/// The bridge name of a network: `stb` plus 12 hex digits of a 64-bit FNV-1a hash of the network name, so it
/// fits Linux's 15-character limit whatever the network is called.
pub fn bridge_name(network: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in network.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{BRIDGE_PREFIX}{:012x}", hash >> 16)
}

/// The networks of one host, in one namespace.
#[derive(Debug)]
pub struct Networks {
    namespace: String,
    lock: Mutex<()>,
}

impl Networks {
    pub fn new(namespace: String) -> Result<Self> {
        validate::simple_name("network namespace name", &namespace, 64)?;
        Ok(Networks { namespace, lock: Mutex::new(()) })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn ip() -> Result<PathBuf> {
        command::system_tool("ip")
    }

    /// Runs `ip -n NAMESPACE args...`.
    async fn ip_in_namespace(&self, args: &[&str]) -> Result<command::Finished> {
        let mut full = vec!["-n", self.namespace.as_str()];
        full.extend_from_slice(args);
        command::run(&Self::ip()?, &full, command::DEFAULT_TIMEOUT).await
    }

    /// Whether process `pid` runs inside this host's namespace (where its taps are); false when either is gone.
    pub fn process_in_namespace(&self, pid: u32) -> bool {
        use std::os::unix::fs::MetadataExt;
        let namespace = std::fs::metadata(std::path::Path::new("/run/netns").join(&self.namespace));
        let process = std::fs::metadata(format!("/proc/{pid}/ns/net"));
        match (namespace, process) {
            (Ok(namespace), Ok(process)) => namespace.dev() == process.dev() && namespace.ino() == process.ino(),
            _ => false,
        }
    }

    /// Whether the namespace exists.
    pub async fn namespace_exists(&self) -> Result<bool> {
        Ok(std::path::Path::new("/run/netns").join(&self.namespace).exists())
    }

    async fn ensure_namespace(&self) -> Result<()> {
        if !self.namespace_exists().await? {
            let finished =
                command::run_unchecked(&Self::ip()?, &["netns", "add", &self.namespace], command::DEFAULT_TIMEOUT)
                    .await?;
            // Another process may have created it in the meantime; only a missing namespace is a failure.
            if !finished.success() && !self.namespace_exists().await? {
                return Err(command::failure(&Self::ip()?, &["netns", "add", &self.namespace], finished));
            }
        }
        self.ip_in_namespace(&["link", "set", "lo", "up"]).await?;
        Ok(())
    }

    /// Whether the link `name` exists in the namespace.
    async fn link_exists(&self, name: &str) -> Result<bool> {
        if !self.namespace_exists().await? {
            return Ok(false);
        }
        let finished = command::run_unchecked(
            &Self::ip()?,
            &["-n", self.namespace.as_str(), "link", "show", "dev", name],
            command::DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(finished.success())
    }

    /// Whether the network exists.
    pub async fn network_exists(&self, network: &str) -> Result<bool> {
        validate::simple_name("network name", network, 64)?;
        self.link_exists(&bridge_name(network)).await
    }

    /// Whether the tap exists.
    pub async fn tap_exists(&self, tap: &str) -> Result<bool> {
        validate::interface_name("tap name", tap)?;
        self.link_exists(tap).await
    }

    /// Creates the network's bridge (and the namespace, the first time).
    pub async fn network_create(&self, network: &str) -> Result<()> {
        validate::simple_name("network name", network, 64)?;
        let _guard = self.lock.lock().await;
        self.ensure_namespace().await?;
        let bridge = bridge_name(network);
        if !self.link_exists(&bridge).await? {
            self.ip_in_namespace(&["link", "add", "name", &bridge, "type", "bridge"]).await?;
            tracing::info!(network, bridge, namespace = self.namespace, "created network");
        }
        self.ip_in_namespace(&["link", "set", "dev", &bridge, "up"]).await?;
        Ok(())
    }

    /// Deletes the network's bridge (its taps are detached, not deleted) and the namespace with the last one.
    pub async fn network_delete(&self, network: &str) -> Result<()> {
        validate::simple_name("network name", network, 64)?;
        let _guard = self.lock.lock().await;
        let bridge = bridge_name(network);
        if self.link_exists(&bridge).await? {
            self.ip_in_namespace(&["link", "delete", "dev", &bridge]).await?;
            tracing::info!(network, bridge, namespace = self.namespace, "deleted network");
        }
        if self.namespace_exists().await? && self.bridge_count().await? == 0 && self.tap_count().await? == 0 {
            let finished =
                command::run_unchecked(&Self::ip()?, &["netns", "delete", &self.namespace], command::DEFAULT_TIMEOUT)
                    .await?;
            if !finished.success() && self.namespace_exists().await? {
                return Err(command::failure(&Self::ip()?, &["netns", "delete", &self.namespace], finished));
            }
        }
        Ok(())
    }

    async fn bridge_count(&self) -> Result<usize> {
        let finished = self.ip_in_namespace(&["-o", "link", "show", "type", "bridge"]).await?;
        Ok(finished.stdout.lines().filter(|line| !line.trim().is_empty()).count())
    }

    async fn tap_count(&self) -> Result<usize> {
        let finished = self.ip_in_namespace(&["-o", "link", "show", "type", "tun"]).await?;
        Ok(finished.stdout.lines().filter(|line| !line.trim().is_empty()).count())
    }

    /// Creates the tap (if needed) and attaches it, up, to the network's bridge.
    pub async fn nic_create(&self, network: &str, tap: &str) -> Result<()> {
        validate::simple_name("network name", network, 64)?;
        validate::interface_name("tap name", tap)?;
        let _guard = self.lock.lock().await;
        let bridge = bridge_name(network);
        if !self.link_exists(&bridge).await? {
            return Err(HypervisorError::NetworkNotFound { network: network.to_owned() });
        }
        if !self.link_exists(tap).await? {
            self.ip_in_namespace(&["tuntap", "add", "name", tap, "mode", "tap"]).await?;
            tracing::info!(network, tap, namespace = self.namespace, "created tap");
        }
        self.ip_in_namespace(&["link", "set", "dev", tap, "master", &bridge, "up"]).await?;
        Ok(())
    }

    /// Deletes the tap if it exists.
    pub async fn nic_delete(&self, tap: &str) -> Result<()> {
        validate::interface_name("tap name", tap)?;
        let _guard = self.lock.lock().await;
        if self.link_exists(tap).await? {
            self.ip_in_namespace(&["link", "delete", "dev", tap]).await?;
            tracing::info!(tap, namespace = self.namespace, "deleted tap");
        }
        Ok(())
    }

    /// The bridge a tap is attached to, if the tap exists and is attached.
    pub async fn tap_master(&self, tap: &str) -> Result<Option<String>> {
        if !self.tap_exists(tap).await? {
            return Ok(None);
        }
        let finished = self.ip_in_namespace(&["-o", "link", "show", "dev", tap]).await?;
        Ok(finished.stdout.split_whitespace().skip_while(|word| *word != "master").nth(1).map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_fit_and_are_stable() {
        let name = bridge_name("a-very-long-network-name-indeed");
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("stb"));
        assert_eq!(name, bridge_name("a-very-long-network-name-indeed"));
        assert_ne!(bridge_name("net1"), bridge_name("net2"));
    }
}
