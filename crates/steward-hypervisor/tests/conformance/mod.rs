//! The driver conformance suite: one contract (the `Hypervisor` trait's, `src/hypervisor.rs`) checked the same
//! way against every driver. `conformance_qemu.rs` runs it against real QEMU, `conformance_zvm.rs` against the
//! z/VM driver talking to `zvm-sim`.
//!
//! A driver's test gives a `Fixture`: the names the contract needs in that driver's terms (a guest name the
//! host accepts, disk paths, a network, a NIC's device) and the normalization `describe_guest` applies to a
//! definition (documented on `Hypervisor::describe_guest`). Each check is a `pub async fn` taking
//! `&dyn Hypervisor` and the fixture, uses a guest of its own (`Fixture::guest_name(check number)`) and cleans
//! up after itself (guest, disks, NICs, network), also when it fails part-way: failures are `anyhow` errors,
//! never panics, so the cleanup always runs.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use steward_hypervisor::{
    Arch, Boot, ConfigDrive, DefineOutcome, DiskAttachment, DiskFormat, DiskNaming, GuestSpec, GuestState, Hypervisor,
    HypervisorError, Nic, StartOutcome, StopOutcome,
};

/// The size the checks ask for their disks: 16 MiB, which is no whole number of 3390 cylinders, so drivers
/// that round up show they do.
pub const DISK_SIZE_BYTES: u64 = 16 << 20;

/// What the contract needs, in one driver's terms.
pub trait Fixture: Sync {
    /// A guest name the driver accepts, distinct for each `index` (each check uses its own), spelled the way
    /// `defined_guests` lists it.
    fn guest_name(&self, index: u32) -> String;
    /// The architecture of the checks' guests.
    fn arch(&self) -> Arch;
    /// The path of disk `index` (0 is the boot disk) of guest `guest`.
    fn disk_path(&self, guest: &str, index: u32) -> PathBuf;
    /// The format a guest's disks are attached with.
    fn disk_format(&self) -> DiskFormat;
    /// A network name the driver accepts.
    fn network_name(&self) -> String;
    /// The host-side device of NIC `index` of guest `guest` (a tap on QEMU, a device number on z/VM).
    fn nic_tap(&self, guest: &str, index: u32) -> String;
    /// How long `stop` may wait for a guest's shutdown in the checks.
    fn stop_timeout(&self) -> Duration;
    /// Guest names the driver cannot use: `check_guest_name` and `define_guest` must refuse them.
    fn refused_guest_names(&self) -> Vec<String>;
    /// `spec` as `describe_guest` gives it back after `define_guest(spec)`: the normalization documented on
    /// `Hypervisor::describe_guest` (z/VM: names of disks, networks and devices upper case).
    fn described(&self, spec: &GuestSpec) -> GuestSpec;
    /// `spec` spelled differently but meaning the same on this driver (z/VM: lower case, short device
    /// numbers), which `define_guest` must find `Unchanged`; `None` where every spelling is significant.
    fn respelled(&self, _spec: &GuestSpec) -> Option<GuestSpec> {
        None
    }
}

/// The MAC address of NIC `nic` of check `check`'s guest: the driver's prefix and three bytes of the suite's.
pub fn mac_address(hypervisor: &dyn Hypervisor, check: u32, nic: u8) -> String {
    let [first, second, third] = hypervisor.capabilities().mac_prefix;
    format!("{first:02x}:{second:02x}:{third:02x}:c0:{:02x}:{nic:02x}", check & 0xff)
}

/// A definition the driver can run: one CPU, 64 MiB, `disks` blank disks, no NICs, booting from the first
/// disk with the default firmware (a QEMU guest sits in its firmware; a z/VM guest IPLs nothing), with the
/// agent channel when the driver has one.
pub fn guest_spec(hypervisor: &dyn Hypervisor, fixture: &dyn Fixture, name: &str, disks: u32) -> GuestSpec {
    GuestSpec {
        name: name.to_owned(),
        arch: fixture.arch(),
        cpus: 1,
        memory_mib: 64,
        cpu_share: 100,
        disks: (0..disks)
            .map(|index| DiskAttachment {
                path: fixture.disk_path(name, index),
                format: fixture.disk_format(),
                serial: None,
            })
            .collect(),
        config_drive: None,
        nics: Vec::new(),
        boot: Boot::Firmware { firmware: None },
        agent_channel: hypervisor.capabilities().agent_channel,
    }
}

/// Runs `body`, then `cleanup` whatever `body` did; the body's error comes first.
async fn with_cleanup(body: impl Future<Output = Result<()>>, cleanup: impl Future<Output = Result<()>>) -> Result<()> {
    let outcome = body.await;
    let cleaned = cleanup.await;
    match (outcome, cleaned) {
        (Ok(()), cleaned) => cleaned.context("cleaning up after the check"),
        (Err(error), Ok(())) => Err(error),
        (Err(error), Err(cleanup_error)) => Err(error.context(format!("(the cleanup failed too: {cleanup_error:#})"))),
    }
}

/// Creates the disks of `spec`.
async fn create_disks(hypervisor: &dyn Hypervisor, spec: &GuestSpec) -> Result<()> {
    for disk in &spec.disks {
        hypervisor
            .disk_create(&disk.path, DISK_SIZE_BYTES)
            .await
            .with_context(|| format!("disk_create {}", disk.path.display()))?;
    }
    Ok(())
}

/// Removes the guest `name` (taking its definition back first where the driver adopts definitions, since a
/// released one is not Steward's to delete) and deletes disks `0..disks` of it.
async fn remove_guest(hypervisor: &dyn Hypervisor, fixture: &dyn Fixture, name: &str, disks: u32) -> Result<()> {
    if hypervisor.capabilities().definition_adoption {
        // A guest that was never defined has nothing to adopt: that error is expected here.
        let _ = hypervisor.adopt_guest(name).await;
    }
    hypervisor.undefine_guest(name).await.with_context(|| format!("undefine_guest {name}"))?;
    for index in 0..disks {
        let path = fixture.disk_path(name, index);
        hypervisor.disk_delete(&path).await.with_context(|| format!("disk_delete {}", path.display()))?;
    }
    Ok(())
}

/// Fails unless `result` is an error that `is_kind` accepts; `what` names the call.
fn expect_error<T: std::fmt::Debug>(
    what: &str,
    result: steward_hypervisor::Result<T>,
    kind: &str,
    is_kind: impl Fn(&HypervisorError) -> bool,
) -> Result<()> {
    match result {
        Ok(value) => bail!("{what}: expected a {kind} error, got Ok({value:?})"),
        Err(error) if is_kind(&error) => Ok(()),
        Err(error) => bail!("{what}: expected a {kind} error, got {error:?}"),
    }
}

/// Fails unless `result` is `Unsupported`.
fn expect_unsupported<T: std::fmt::Debug>(what: &str, result: steward_hypervisor::Result<T>) -> Result<()> {
    expect_error(what, result, "Unsupported", |error| matches!(error, HypervisorError::Unsupported { .. }))
}

/// Fails if `result` is `Unsupported`; any other outcome (success, or a refusal of this particular input) shows
/// the driver does the verb.
fn expect_supported<T>(what: &str, result: steward_hypervisor::Result<T>) -> Result<()> {
    match result {
        Err(error @ HypervisorError::Unsupported { .. }) => {
            bail!("{what}: the capability says yes, the verb says {error}")
        }
        _ => Ok(()),
    }
}

/// Compares a described spec with the expected one field by field, naming every field that differs.
pub fn compare_specs(actual: &GuestSpec, expected: &GuestSpec) -> Result<()> {
    let mut differences = Vec::new();
    let mut field = |name: &str, actual: String, expected: String| {
        if actual != expected {
            differences.push(format!("{name}: described {actual}, defined {expected}"));
        }
    };
    field("name", format!("{:?}", actual.name), format!("{:?}", expected.name));
    field("arch", format!("{:?}", actual.arch), format!("{:?}", expected.arch));
    field("cpus", actual.cpus.to_string(), expected.cpus.to_string());
    field("memory_mib", actual.memory_mib.to_string(), expected.memory_mib.to_string());
    field("cpu_share", actual.cpu_share.to_string(), expected.cpu_share.to_string());
    field("disks", format!("{:?}", actual.disks), format!("{:?}", expected.disks));
    field("config_drive", format!("{:?}", actual.config_drive), format!("{:?}", expected.config_drive));
    field("nics", format!("{:?}", actual.nics), format!("{:?}", expected.nics));
    field("boot", format!("{:?}", actual.boot), format!("{:?}", expected.boot));
    field("agent_channel", actual.agent_channel.to_string(), expected.agent_channel.to_string());
    ensure!(differences.is_empty(), "describe_guest's spec differs: {}", differences.join("; "));
    // Every field is listed above; a field added to GuestSpec and not to this list still makes this fail.
    ensure!(actual == expected, "describe_guest's spec differs in a field the comparison does not list");
    Ok(())
}

/// Check 1, disks: create twice, `disk_info` at least the size asked for, a different size conflicts, delete twice,
/// `disk_info` of the deleted disk is `DiskMissing`.
pub async fn check_disks(hypervisor: &dyn Hypervisor, fixture: &dyn Fixture) -> Result<()> {
    let guest = fixture.guest_name(1);
    let path = fixture.disk_path(&guest, 0);
    let body = async {
        hypervisor.disk_create(&path, DISK_SIZE_BYTES).await.context("the first disk_create")?;
        hypervisor.disk_create(&path, DISK_SIZE_BYTES).await.context("disk_create of an existing disk")?;
        let info = hypervisor.disk_info(&path).await.context("disk_info")?;
        ensure!(
            info.virtual_size_bytes >= DISK_SIZE_BYTES,
            "disk_info reports {} bytes, less than the {DISK_SIZE_BYTES} asked for",
            info.virtual_size_bytes
        );
        expect_error(
            "disk_create of an existing disk with another size",
            hypervisor.disk_create(&path, DISK_SIZE_BYTES * 2).await,
            "DiskConflict",
            |error| matches!(error, HypervisorError::DiskConflict { .. }),
        )?;
        hypervisor.disk_delete(&path).await.context("the first disk_delete")?;
        hypervisor.disk_delete(&path).await.context("disk_delete of a deleted disk")?;
        expect_error("disk_info of a deleted disk", hypervisor.disk_info(&path).await, "DiskMissing", |error| {
            matches!(error, HypervisorError::DiskMissing { .. })
        })
    };
    with_cleanup(body, async { hypervisor.disk_delete(&path).await.context("disk_delete") }).await
}

/// Check 2, definitions: Created, Unchanged (also spelled differently), Updated; `describe_guest` gives the spec back
/// (as `Fixture::described`); `defined_guests` lists the guest; undefine twice; then `NotFound`.
pub async fn check_definition(hypervisor: &dyn Hypervisor, fixture: &dyn Fixture) -> Result<()> {
    let guest = fixture.guest_name(2);
    let spec = guest_spec(hypervisor, fixture, &guest, 2);
    let body = async {
        create_disks(hypervisor, &spec).await?;
        let outcome = hypervisor.define_guest(&spec).await.context("the first define_guest")?;
        ensure!(outcome == DefineOutcome::Created, "the first define_guest answered {outcome:?}, not Created");
        let outcome = hypervisor.define_guest(&spec).await.context("define_guest of the same spec")?;
        ensure!(outcome == DefineOutcome::Unchanged, "define_guest of the same spec answered {outcome:?}");
        if let Some(respelled) = fixture.respelled(&spec) {
            let outcome = hypervisor.define_guest(&respelled).await.context("define_guest of the spec respelled")?;
            ensure!(outcome == DefineOutcome::Unchanged, "define_guest of {respelled:?} answered {outcome:?}");
        }
        compare_specs(
            &hypervisor.describe_guest(&guest).await.context("describe_guest")?.spec,
            &fixture.described(&spec),
        )?;

        let mut changed = spec.clone();
        changed.cpus = 2;
        let outcome = hypervisor.define_guest(&changed).await.context("define_guest with two CPUs")?;
        ensure!(outcome == DefineOutcome::Updated, "define_guest of a changed spec answered {outcome:?}");
        let description = hypervisor.describe_guest(&guest).await.context("describe_guest after the update")?;
        compare_specs(&description.spec, &fixture.described(&changed))?;
        ensure!(description.state == GuestState::Stopped, "a guest never started is {:?}", description.state);
        let listed = hypervisor.defined_guests().await.context("defined_guests")?;
        ensure!(listed.contains(&guest), "defined_guests {listed:?} lacks {guest}");

        hypervisor.undefine_guest(&guest).await.context("the first undefine_guest")?;
        hypervisor.undefine_guest(&guest).await.context("undefine_guest of an undefined guest")?;
        let is_not_found = |error: &HypervisorError| matches!(error, HypervisorError::NotFound { .. });
        expect_error(
            "describe_guest of an undefined guest",
            hypervisor.describe_guest(&guest).await,
            "NotFound",
            is_not_found,
        )?;
        expect_error("status of an undefined guest", hypervisor.status(&guest).await, "NotFound", is_not_found)?;
        expect_error("start of an undefined guest", hypervisor.start(&guest).await, "NotFound", is_not_found)?;
        let listed = hypervisor.defined_guests().await.context("defined_guests after undefine_guest")?;
        ensure!(!listed.contains(&guest), "defined_guests {listed:?} still lists {guest}");
        Ok(())
    };
    with_cleanup(body, remove_guest(hypervisor, fixture, &guest, 2)).await
}

/// Check 3, power: Started, AlreadyRunning (same pid), Running, stopped (Graceful or Forced), AlreadyStopped, Stopped.
pub async fn check_power(hypervisor: &dyn Hypervisor, fixture: &dyn Fixture) -> Result<()> {
    let guest = fixture.guest_name(3);
    let spec = guest_spec(hypervisor, fixture, &guest, 1);
    let body = async {
        create_disks(hypervisor, &spec).await?;
        hypervisor.define_guest(&spec).await.context("define_guest")?;
        let state = hypervisor.status(&guest).await.context("status before start")?;
        ensure!(state == GuestState::Stopped, "a defined guest never started is {state:?}");
        let pid = match hypervisor.start(&guest).await.context("the first start")? {
            StartOutcome::Started { pid } => pid,
            other => bail!("the first start answered {other:?}, not Started"),
        };
        let again = hypervisor.start(&guest).await.context("start of a running guest")?;
        ensure!(again == StartOutcome::AlreadyRunning { pid }, "start of a running guest answered {again:?}");
        let state = hypervisor.status(&guest).await.context("status of the running guest")?;
        ensure!(state == GuestState::Running { pid }, "status of the running guest is {state:?}");
        let description = hypervisor.describe_guest(&guest).await.context("describe_guest of the running guest")?;
        ensure!(description.state == GuestState::Running { pid }, "describe_guest says {:?}", description.state);
        compare_specs(&description.spec, &fixture.described(&spec))?;

        let stopped = hypervisor.stop(&guest, fixture.stop_timeout()).await.context("the first stop")?;
        ensure!(
            matches!(stopped, StopOutcome::Graceful | StopOutcome::Forced),
            "stop of a running guest answered {stopped:?}"
        );
        let again = hypervisor.stop(&guest, fixture.stop_timeout()).await.context("stop of a stopped guest")?;
        ensure!(again == StopOutcome::AlreadyStopped, "stop of a stopped guest answered {again:?}");
        let state = hypervisor.status(&guest).await.context("status after stop")?;
        ensure!(state == GuestState::Stopped, "status after stop is {state:?}");
        Ok(())
    };
    with_cleanup(body, remove_guest(hypervisor, fixture, &guest, 1)).await
}

/// Check 4, CPU share: `set_cpu_share` shows in `describe_guest`'s spec; an invalid share is refused; a guest that
/// does not exist is `NotFound`.
pub async fn check_cpu_share(hypervisor: &dyn Hypervisor, fixture: &dyn Fixture) -> Result<()> {
    let guest = fixture.guest_name(4);
    let spec = guest_spec(hypervisor, fixture, &guest, 1);
    let body = async {
        create_disks(hypervisor, &spec).await?;
        hypervisor.define_guest(&spec).await.context("define_guest")?;
        hypervisor.set_cpu_share(&guest, 300).await.context("set_cpu_share 300")?;
        let mut expected = spec.clone();
        expected.cpu_share = 300;
        compare_specs(
            &hypervisor.describe_guest(&guest).await.context("describe_guest")?.spec,
            &fixture.described(&expected),
        )?;
        hypervisor.set_cpu_share(&guest, 300).await.context("set_cpu_share 300 again")?;
        expect_error("set_cpu_share 0", hypervisor.set_cpu_share(&guest, 0).await, "InvalidInput", |error| {
            matches!(error, HypervisorError::InvalidInput { .. })
        })?;
        let missing = fixture.guest_name(40);
        expect_error(
            "set_cpu_share of a guest that does not exist",
            hypervisor.set_cpu_share(&missing, 200).await,
            "NotFound",
            |error| matches!(error, HypervisorError::NotFound { .. }),
        )
    };
    with_cleanup(body, remove_guest(hypervisor, fixture, &guest, 1)).await
}

/// Check 5, networks: create twice, delete twice; a NIC on the network comes back from `describe_guest` with its MAC,
/// in the definition and, while the guest runs, among its live devices.
pub async fn check_networks(hypervisor: &dyn Hypervisor, fixture: &dyn Fixture) -> Result<()> {
    let guest = fixture.guest_name(5);
    let network = fixture.network_name();
    let tap = fixture.nic_tap(&guest, 0);
    let mut spec = guest_spec(hypervisor, fixture, &guest, 1);
    spec.nics = vec![Nic { network: network.clone(), tap: tap.clone(), mac: mac_address(hypervisor, 5, 1) }];
    let body = async {
        hypervisor.network_create(&network).await.context("the first network_create")?;
        hypervisor.network_create(&network).await.context("network_create of an existing network")?;
        hypervisor.nic_create(&network, &tap).await.context("the first nic_create")?;
        hypervisor.nic_create(&network, &tap).await.context("nic_create of an existing NIC")?;
        create_disks(hypervisor, &spec).await?;
        hypervisor.define_guest(&spec).await.context("define_guest with a NIC")?;
        let description = hypervisor.describe_guest(&guest).await.context("describe_guest")?;
        compare_specs(&description.spec, &fixture.described(&spec))?;

        hypervisor.start(&guest).await.context("start of the guest with a NIC")?;
        let description = hypervisor.describe_guest(&guest).await.context("describe_guest of the running guest")?;
        let devices = description.live_devices.ok_or_else(|| anyhow!("a running guest has no live devices"))?;
        ensure!(
            devices.nics.iter().any(|nic| nic.mac.eq_ignore_ascii_case(&spec.nics[0].mac)),
            "the running guest's NICs {:?} lack {}",
            devices.nics,
            spec.nics[0].mac
        );
        hypervisor.stop(&guest, fixture.stop_timeout()).await.context("stop")?;
        hypervisor.undefine_guest(&guest).await.context("undefine_guest")?;
        hypervisor.nic_delete(&tap).await.context("the first nic_delete")?;
        hypervisor.nic_delete(&tap).await.context("nic_delete of a deleted NIC")?;
        hypervisor.network_delete(&network).await.context("the first network_delete")?;
        hypervisor.network_delete(&network).await.context("network_delete of a deleted network")?;
        Ok(())
    };
    let cleanup = async {
        remove_guest(hypervisor, fixture, &guest, 1).await?;
        hypervisor.nic_delete(&tap).await.context("nic_delete")?;
        hypervisor.network_delete(&network).await.context("network_delete")
    };
    with_cleanup(body, cleanup).await
}

/// Check 6, capabilities are honest: a capability the driver lacks makes its verb `Unsupported`; one it has does
/// not, for a well-formed call.
pub async fn check_capabilities(hypervisor: &dyn Hypervisor, fixture: &dyn Fixture) -> Result<()> {
    let capabilities = hypervisor.capabilities();
    let guest = fixture.guest_name(6);
    let spec = guest_spec(hypervisor, fixture, &guest, 1);
    let backing = fixture.disk_path(&guest, 0);
    let overlay = fixture.disk_path(&guest, 1);
    let drive_path = fixture.disk_path(&guest, 2);
    let body = async {
        create_disks(hypervisor, &spec).await?;
        hypervisor.define_guest(&spec).await.context("define_guest")?;

        let result = hypervisor.disk_overlay(&overlay, &backing, fixture.disk_format(), None).await;
        if capabilities.copy_on_write {
            result.context("disk_overlay (copy_on_write is true)")?;
            let info = hypervisor.disk_info(&overlay).await.context("disk_info of the overlay")?;
            ensure!(info.virtual_size_bytes >= DISK_SIZE_BYTES, "the overlay is smaller than its backing: {info:?}");
        } else {
            expect_unsupported("disk_overlay (copy_on_write is false)", result)?;
        }

        let drive = ConfigDrive {
            instance_id: format!("conformance-{guest}"),
            hostname: guest.to_ascii_lowercase(),
            nics: Vec::new(),
            scripts: Vec::new(),
            environment: Default::default(),
        };
        let result = hypervisor.config_drive_write(&drive_path, &drive).await;
        if capabilities.config_drive {
            result.context("config_drive_write (config_drive is true)")?;
        } else {
            expect_unsupported("config_drive_write (config_drive is false)", result)?;
        }

        // A blank disk has no file system to seal: a capable driver refuses it for that, not as unsupported.
        let result = hypervisor.seal_disk(&backing).await;
        if capabilities.sealing {
            expect_supported("seal_disk (sealing is true)", result)?;
        } else {
            expect_unsupported("seal_disk (sealing is false)", result)?;
        }

        let result = hypervisor.agent_socket(&guest);
        if capabilities.agent_channel {
            result.context("agent_socket (agent_channel is true)")?;
        } else {
            expect_unsupported("agent_socket (agent_channel is false)", result)?;
        }

        // This test process is no guest: a capable driver refuses it for that.
        let result = hypervisor.adopt_process(&guest, std::process::id()).await;
        if capabilities.process_adoption {
            expect_supported("adopt_process (process_adoption is true)", result)?;
        } else {
            expect_unsupported("adopt_process (process_adoption is false)", result)?;
        }

        if capabilities.definition_adoption {
            // The guest's own definition: adopting it again changes nothing; released, it is no longer listed
            // as a guest; adopted, it is again.
            hypervisor.adopt_guest(&guest).await.context("adopt_guest of a defined guest")?;
            hypervisor.release_guest(&guest).await.context("release_guest")?;
            hypervisor.release_guest(&guest).await.context("release_guest of a released guest")?;
            let listed = hypervisor.defined_guests().await.context("defined_guests after release_guest")?;
            ensure!(!listed.contains(&guest), "defined_guests {listed:?} lists the released {guest}");
            hypervisor.adopt_guest(&guest).await.context("adopt_guest of the released guest")?;
            hypervisor.adopt_guest(&guest).await.context("adopt_guest again")?;
            let listed = hypervisor.defined_guests().await.context("defined_guests after adopt_guest")?;
            ensure!(listed.contains(&guest), "defined_guests {listed:?} lacks the adopted {guest}");
        } else {
            expect_unsupported("adopt_guest (definition_adoption is false)", hypervisor.adopt_guest(&guest).await)?;
            expect_unsupported("release_guest (definition_adoption is false)", hypervisor.release_guest(&guest).await)?;
        }

        let location = hypervisor.image_location(0);
        match capabilities.disk_naming {
            DiskNaming::Files => ensure!(location.is_none(), "a host of files names template disks: {location:?}"),
            DiskNaming::Minidisks => {
                ensure!(location.is_some(), "a host of minidisks names no template disk")
            }
        }
        Ok(())
    };
    let cleanup = async {
        remove_guest(hypervisor, fixture, &guest, 3).await?;
        Ok(())
    };
    with_cleanup(body, cleanup).await
}

/// Check 7, names: `check_guest_name` refuses the names the driver cannot use, and so does `define_guest` (before
/// anything is created); the fixture's names pass.
pub async fn check_names(hypervisor: &dyn Hypervisor, fixture: &dyn Fixture) -> Result<()> {
    let is_invalid = |error: &HypervisorError| matches!(error, HypervisorError::InvalidInput { .. });
    for name in fixture.refused_guest_names() {
        expect_error(
            &format!("check_guest_name({name:?})"),
            hypervisor.check_guest_name(&name),
            "InvalidInput",
            is_invalid,
        )?;
        let spec = guest_spec(hypervisor, fixture, &name, 0);
        expect_error(
            &format!("define_guest named {name:?}"),
            hypervisor.define_guest(&spec).await,
            "InvalidInput",
            is_invalid,
        )?;
    }
    for index in 1..=7 {
        let name = fixture.guest_name(index);
        hypervisor.check_guest_name(&name).with_context(|| format!("check_guest_name({name:?})"))?;
    }
    Ok(())
}
