//! The driver conformance suite (`conformance/mod.rs`) against the z/VM driver, talking SMAPI to `zvm-sim`
//! started in this process on 127.0.0.1 (a fresh simulator per check).

mod conformance;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use smapi::{ClientConfig, Credentials};
use steward_hypervisor::zvm::{ZvmHost, ZvmHostConfig};
use steward_hypervisor::{Arch, DiskAttachment, DiskFormat, GuestSpec, Nic};
use zvm_sim::{Simulator, SimulatorConfig, Timing};

use conformance::Fixture;

const ADMIN: &str = "ADMIN";
const ADMIN_PASSWORD: &str = "Adm1n-Pass";

/// The suite's names on z/VM: user IDs `CONF<n>`, minidisks `CONF<n>/0100` and up, virtual switch `CONFNET`,
/// NICs at device `0600` (three device numbers each).
struct ZvmFixture;

/// A z/VM device number written as the driver writes it: four upper-case hexadecimal digits.
fn canonical_vdev(vdev: &str) -> String {
    format!("{:0>4}", vdev.to_ascii_uppercase())
}

/// A disk path `USERID/VDEV` as the driver writes it.
fn canonical_disk_path(path: &std::path::Path) -> PathBuf {
    let text = path.to_string_lossy();
    match text.split_once('/') {
        Some((owner, vdev)) => format!("{}/{}", owner.to_ascii_uppercase(), canonical_vdev(vdev)).into(),
        None => path.to_path_buf(),
    }
}

impl Fixture for ZvmFixture {
    fn guest_name(&self, index: u32) -> String {
        format!("CONF{index}")
    }

    fn arch(&self) -> Arch {
        Arch::S390x
    }

    fn disk_path(&self, guest: &str, index: u32) -> PathBuf {
        format!("{}/{:04X}", guest.to_ascii_uppercase(), 0x100 + index).into()
    }

    fn disk_format(&self) -> DiskFormat {
        DiskFormat::Raw
    }

    fn network_name(&self) -> String {
        "CONFNET".to_owned()
    }

    fn nic_tap(&self, _guest: &str, index: u32) -> String {
        format!("{:04X}", 0x600 + 3 * index)
    }

    fn stop_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn refused_guest_names(&self) -> Vec<String> {
        ["CONFLONG9", "MAINT", "OPERATOR", "CONF.1", ""].map(str::to_owned).to_vec()
    }

    /// Documented on `ZvmHost` (`zvm/mod.rs`): disk paths, networks and device numbers come back upper case
    /// (device numbers in four digits), MACs lower case, the guest name as given.
    fn described(&self, spec: &GuestSpec) -> GuestSpec {
        let mut described = spec.clone();
        for disk in &mut described.disks {
            disk.path = canonical_disk_path(&disk.path);
        }
        for nic in &mut described.nics {
            nic.network = nic.network.to_ascii_uppercase();
            nic.tap = canonical_vdev(&nic.tap);
            nic.mac = nic.mac.to_ascii_lowercase();
        }
        described
    }

    /// The same guest in lower case with device numbers without leading zeros (`conf2/100`, tap `600`).
    fn respelled(&self, spec: &GuestSpec) -> Option<GuestSpec> {
        let mut respelled = spec.clone();
        respelled.name = spec.name.to_ascii_lowercase();
        respelled.disks = spec
            .disks
            .iter()
            .map(|disk| {
                let text = disk.path.to_string_lossy().to_ascii_lowercase();
                let path = match text.split_once('/') {
                    Some((owner, vdev)) => format!("{owner}/{}", vdev.trim_start_matches('0')),
                    None => text,
                };
                DiskAttachment { path: path.into(), ..disk.clone() }
            })
            .collect();
        respelled.nics = spec
            .nics
            .iter()
            .map(|nic| Nic {
                network: nic.network.to_ascii_lowercase(),
                tap: nic.tap.trim_start_matches('0').to_owned(),
                mac: nic.mac.to_ascii_uppercase(),
            })
            .collect();
        Some(respelled)
    }
}

/// A simulator with an administrator, a pool of two 3000-cylinder volumes in group LINUX, and guests that shut
/// down within 100 ms of the signal.
async fn simulator() -> Result<Simulator> {
    let mut config = SimulatorConfig::new("127.0.0.1:0".parse()?);
    config.users.push(format!("{ADMIN}:{ADMIN_PASSWORD}").parse().map_err(anyhow::Error::msg)?);
    config.pools.push("LINUX:SIM001:3000".parse().map_err(anyhow::Error::msg)?);
    config.pools.push("LINUX:SIM002:3000".parse().map_err(anyhow::Error::msg)?);
    config.timing = Timing {
        operation: Duration::from_millis(20),
        copy_per_thousand_units: Duration::from_millis(10),
        guest_shutdown: Duration::from_millis(100),
        signal_timeout: Duration::from_secs(300),
    };
    Ok(Simulator::start(config).await?)
}

fn host(simulator: &Simulator) -> Result<ZvmHost> {
    let mut client = ClientConfig::new(simulator.address().to_string());
    client.poll_interval = Duration::from_millis(20);
    client.poll_attempts = 500;
    client.recovery_delay = Duration::from_millis(10);
    client.connect_retry_delays = vec![Duration::from_millis(50); 2];
    client.request_timeout = Duration::from_secs(30);
    client.long_request_timeout = Duration::from_secs(30);
    let mut config = ZvmHostConfig::new(client.address.clone(), Credentials::new(ADMIN, ADMIN_PASSWORD)?, "LINUX");
    config.client = client;
    config.profile = Some("LNXDFLT".to_owned());
    config.mac_prefix = "02:00:5a".to_owned();
    Ok(ZvmHost::new(config)?)
}

/// Runs one check against a fresh simulator, then shows that the check left nothing behind: no guest, no
/// directory entry, no virtual switch, the whole pool free.
macro_rules! conformance_test {
    ($name:ident, $check:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> Result<()> {
            let simulator = simulator().await?;
            let before = simulator.state();
            let host = host(&simulator)?;
            let outcome = $check(&host, &ZvmFixture).await;
            let after = simulator.state();
            simulator.shutdown().await;
            outcome?;
            let entries = |state: &zvm_sim::State| state.directory.entries.keys().cloned().collect::<Vec<_>>();
            anyhow::ensure!(entries(&after) == entries(&before), "directory entries left: {:?}", entries(&after));
            let switches = |state: &zvm_sim::State| state.vswitches.keys().cloned().collect::<Vec<_>>();
            anyhow::ensure!(switches(&after) == switches(&before), "virtual switches left: {:?}", switches(&after));
            anyhow::ensure!(after.pools == before.pools, "the pool's extents differ after the check");
            Ok(())
        }
    };
}

conformance_test!(disks_conform, conformance::check_disks);
conformance_test!(definitions_conform, conformance::check_definition);
conformance_test!(power_conforms, conformance::check_power);
conformance_test!(cpu_share_conforms, conformance::check_cpu_share);
conformance_test!(networks_conform, conformance::check_networks);
conformance_test!(capabilities_are_honest, conformance::check_capabilities);
conformance_test!(names_conform, conformance::check_names);
