//! The z/VM driver against the z/VM simulator (`zvm-sim`), started in this process on 127.0.0.1: the whole
//! lifecycle of guests, disks from the pool, grants on a virtual switch, capture and deploy, and the failures
//! a saga must be able to tell apart.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use smapi::{ClientConfig, Credentials};
use steward_hypervisor::zvm::{BYTES_PER_3390_CYLINDER, ZvmHost, ZvmHostConfig};
use steward_hypervisor::{
    Accelerator, Arch, Boot, DefineOutcome, DiskAttachment, DiskFormat, GuestSpec, GuestState, Hypervisor,
    HypervisorError, Nic, StartOutcome, StopOutcome,
};
use zvm_sim::{Fault, Simulator, SimulatorConfig, Timing};

const ADMIN: &str = "ADMIN";
const ADMIN_PASSWORD: &str = "Adm1n-Pass";
const GRANT_FUNCTION: &str = "Virtual_Network_Vswitch_Set_Extended";

/// A simulator with an administrator, a small pool (two volumes of 3000 cylinders in group LINUX) and short
/// durations; guests shut down within `guest_shutdown`.
async fn simulator(guest_shutdown: Duration) -> Result<Simulator> {
    let mut config = SimulatorConfig::new("127.0.0.1:0".parse()?);
    config.users.push(format!("{ADMIN}:{ADMIN_PASSWORD}").parse().map_err(anyhow::Error::msg)?);
    config.pools.push("LINUX:SIM001:3000".parse().map_err(anyhow::Error::msg)?);
    config.pools.push("LINUX:SIM002:3000".parse().map_err(anyhow::Error::msg)?);
    config.timing = Timing {
        operation: Duration::from_millis(30),
        copy_per_thousand_units: Duration::from_millis(10),
        guest_shutdown,
        signal_timeout: Duration::from_secs(300),
    };
    Ok(Simulator::start(config).await?)
}

fn client_config(address: String) -> ClientConfig {
    let mut client = ClientConfig::new(address);
    client.poll_interval = Duration::from_millis(20);
    client.poll_attempts = 500;
    client.recovery_delay = Duration::from_millis(10);
    client.connect_retry_delays = vec![Duration::from_millis(50); 2];
    client.request_timeout = Duration::from_secs(30);
    client.long_request_timeout = Duration::from_secs(30);
    client
}

fn host_config(address: String) -> Result<ZvmHostConfig> {
    let mut config = ZvmHostConfig::new(address, Credentials::new(ADMIN, ADMIN_PASSWORD)?, "LINUX");
    config.client = client_config(config.client.address.clone());
    config.profile = Some("LNXDFLT".to_owned());
    config.mac_prefix = "02:00:5a".to_owned();
    config.image_holder_prefix = "IMG".to_owned();
    config.max_cpus = 4;
    Ok(config)
}

fn host(simulator: &Simulator) -> Result<ZvmHost> {
    Ok(ZvmHost::new(host_config(simulator.address().to_string())?)?)
}

/// Bytes of `cylinders` 3390 cylinders.
fn cylinders(cylinders: u64) -> u64 {
    cylinders * BYTES_PER_3390_CYLINDER
}

fn spec(name: &str, mac_suffix: u8) -> GuestSpec {
    let userid = name.to_ascii_uppercase();
    GuestSpec {
        name: name.to_owned(),
        arch: Arch::S390x,
        cpus: 2,
        memory_mib: 1024,
        cpu_share: 150,
        disks: vec![
            DiskAttachment { path: format!("{userid}/0100").into(), format: DiskFormat::Raw, serial: None },
            DiskAttachment { path: format!("{userid}/0101").into(), format: DiskFormat::Raw, serial: None },
        ],
        config_drive: None,
        nics: vec![Nic {
            network: "VSW1".to_owned(),
            tap: "0600".to_owned(),
            mac: format!("02:00:5a:00:00:{mac_suffix:02x}"),
        }],
        boot: Boot::Firmware { firmware: None },
        agent_channel: true,
    }
}

/// Creates the two disks of `spec` (100 and 50 cylinders).
async fn create_disks(host: &ZvmHost, name: &str) -> Result<()> {
    let userid = name.to_ascii_uppercase();
    host.disk_create(Path::new(&format!("{userid}/0100")), cylinders(100)).await?;
    host.disk_create(Path::new(&format!("{userid}/0101")), cylinders(50)).await?;
    Ok(())
}

/// The users granted on VSW1.
fn grants(simulator: &Simulator) -> Vec<String> {
    simulator.state().vswitches["VSW1"].grants.iter().map(|grant| grant.user.clone()).collect()
}

/// Arms a one-shot failure of the grant function: if the driver granted, its call would fail and the fault
/// would be gone.
fn arm_grant_tripwire(simulator: &Simulator) -> Result<()> {
    simulator.add_fault(format!("fail={GRANT_FUNCTION}:100:16").parse().map_err(anyhow::Error::msg)?);
    Ok(())
}

fn grant_tripwire_armed(simulator: &Simulator) -> bool {
    simulator.faults().fail_once.iter().any(|fail| fail.function == GRANT_FUNCTION)
}

/// The password on the USER statement of an entry in the simulator.
fn entry_password(simulator: &Simulator, userid: &str) -> Option<String> {
    simulator.state().directory.entries.get(userid).and_then(|entry| entry.user().map(|user| user.password.clone()))
}

/// Cylinders the pool has given to `owner`.
fn allocated_to(simulator: &Simulator, owner: &str) -> u32 {
    simulator
        .state()
        .pools
        .volumes
        .values()
        .flat_map(|volume| volume.extents.iter())
        .filter(|extent| extent.owner == owner)
        .map(|extent| extent.size)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_lifecycle_with_disks_from_the_pool_and_a_nic_granted_once() -> Result<()> {
    let simulator = simulator(Duration::from_millis(100)).await?;
    let host = host(&simulator)?;

    let facts = host.probe().await?;
    assert_eq!(facts.emulators.len(), 1);
    assert_eq!((facts.emulators[0].arch, facts.emulators[0].accelerator), (Arch::S390x, Accelerator::ZvmCp));
    assert!(facts.emulators[0].version.contains("710"), "{}", facts.emulators[0].version);
    assert_eq!(facts.storage_total_bytes, cylinders(6000));
    assert_eq!(facts.memory_total_bytes, 16 << 30);

    // Disks first: they make a NOLOG placeholder entry; a second create of the same disk is a success.
    create_disks(&host, "web01").await?;
    assert_eq!(entry_password(&simulator, "WEB01").as_deref(), Some("NOLOG"));
    host.disk_create(Path::new("WEB01/0100"), cylinders(100)).await?;
    assert_eq!(allocated_to(&simulator, "WEB01"), 150);
    let info = host.disk_info(Path::new("web01/100")).await?;
    assert_eq!((info.format.as_str(), info.virtual_size_bytes), ("3390", cylinders(100)));
    let conflict = host.disk_create(Path::new("WEB01/0100"), cylinders(200)).await.unwrap_err();
    assert!(matches!(conflict, HypervisorError::DiskConflict { .. }), "{conflict}");
    assert_eq!(facts.storage_free_bytes, cylinders(6000));
    assert_eq!(host.probe().await?.storage_free_bytes, cylinders(6000 - 150));

    // The definition completes the entry; the user is granted on VSW1 exactly once.
    assert!(grants(&simulator).is_empty());
    let web01 = spec("web01", 7);
    assert_eq!(host.define_guest(&web01).await?, DefineOutcome::Created);
    assert_eq!(grants(&simulator), ["WEB01"]);
    assert_eq!(entry_password(&simulator, "WEB01").as_deref(), Some("AUTOONLY"));
    assert_eq!(allocated_to(&simulator, "WEB01"), 150, "the replace kept the minidisks where they were");

    // Defining again, the same or changed, never grants again.
    arm_grant_tripwire(&simulator)?;
    assert_eq!(host.define_guest(&web01).await?, DefineOutcome::Unchanged);
    let mut changed = web01.clone();
    changed.memory_mib = 2048;
    assert_eq!(host.define_guest(&changed).await?, DefineOutcome::Updated);
    assert_eq!(host.define_guest(&web01).await?, DefineOutcome::Updated);
    assert!(grant_tripwire_armed(&simulator), "a re-define called {GRANT_FUNCTION}");
    simulator.clear_faults();

    // A second guest on the same switch is granted once, then never again.
    create_disks(&host, "web02").await?;
    let web02 = spec("web02", 8);
    assert_eq!(host.define_guest(&web02).await?, DefineOutcome::Created);
    assert_eq!(grants(&simulator), ["WEB01", "WEB02"]);
    arm_grant_tripwire(&simulator)?;
    assert_eq!(host.define_guest(&web02).await?, DefineOutcome::Unchanged);
    assert!(grant_tripwire_armed(&simulator));
    simulator.clear_faults();
    assert_eq!(grants(&simulator), ["WEB01", "WEB02"]);

    // describe(define(spec)).spec == spec.
    let description = host.describe_guest("web01").await?;
    assert_eq!(description.spec, web01);
    assert_eq!(description.state, GuestState::Stopped);
    assert!(description.live.is_none() && description.live_devices.is_none());
    assert_eq!(host.defined_guests().await?, ["WEB01", "WEB02"], "placeholders and system users are not guests");

    // Start, status, describe with live devices.
    assert_eq!(host.start("web01").await?, StartOutcome::Started { pid: 0 });
    assert_eq!(host.start("web01").await?, StartOutcome::AlreadyRunning { pid: 0 });
    assert_eq!(host.status("web01").await?, GuestState::Running { pid: 0 });
    let running = host.describe_guest("web01").await?;
    assert_eq!(running.spec, web01);
    assert_eq!(running.live_cpu_share, Some(150));
    let live = running.live.clone().expect("a running guest has a listing");
    assert_eq!((live.memory_mib, live.cpus, live.managed), (Some(1024), Some(2), true));
    let devices = running.live_devices.expect("a running guest has live devices");
    let disk_ids: Vec<&str> = devices.disks.iter().map(|disk| disk.device_id.as_str()).collect();
    assert_eq!(disk_ids, ["0100", "0101"]);
    assert_eq!(devices.nics.len(), 1);
    assert_eq!((devices.nics[0].device_id.as_str(), devices.nics[0].mac.as_str()), ("0600", "02:00:5a:00:00:07"));
    let listed = host.list_guests().await?;
    assert!(listed.iter().any(|guest| guest.name.as_deref() == Some("WEB01") && guest.managed), "{listed:?}");

    // The CPU share changes in the directory; the running guest keeps its own until the next logon.
    host.set_cpu_share("web01", 300).await?;
    let shared = host.describe_guest("web01").await?;
    assert_eq!((shared.spec.cpu_share, shared.live_cpu_share), (300, Some(150)));
    let sync = host.sync_live("web01").await?;
    assert!(sync.restart_required.iter().any(|item| item.contains("cpu share 300")), "{sync:?}");
    assert!(sync.attached.is_empty() && sync.detached.is_empty());

    // Stop within the timeout, then again.
    assert_eq!(host.stop("web01", Duration::from_secs(30)).await?, StopOutcome::Graceful);
    assert_eq!(host.stop("web01", Duration::from_secs(30)).await?, StopOutcome::AlreadyStopped);
    assert_eq!(host.status("web01").await?, GuestState::Stopped);
    assert!(host.sync_live("web01").await?.is_empty(), "a stopped guest is left alone");
    host.start("web01").await?;
    assert_eq!(host.describe_guest("web01").await?.live_cpu_share, Some(300));
    assert_eq!(host.restart("web01", Duration::from_secs(30)).await?, StartOutcome::Started { pid: 0 });

    // Capture into an image holder, then deploy a new guest from it.
    let image = host.image_holder_userid(1)?;
    assert_eq!(image, "IMG00001");
    host.disk_capture(Path::new("WEB01/0100"), Path::new("IMG00001/0100")).await?;
    assert_eq!(entry_password(&simulator, "IMG00001").as_deref(), Some("NOLOG"));
    assert_eq!(allocated_to(&simulator, "IMG00001"), 100);
    host.disk_capture(Path::new("WEB01/0100"), Path::new("IMG00001/0100")).await?;
    assert_eq!(allocated_to(&simulator, "IMG00001"), 100, "a second capture finds the copy made");
    let not_a_holder = host.disk_capture(Path::new("WEB01/0100"), Path::new("WEB09/0100")).await.unwrap_err();
    assert!(not_a_holder.to_string().contains("image holder"), "{not_a_holder}");

    let copy = host.disk_copy(Path::new("IMG00001/0100"), Path::new("WEB03/0100"), Some(cylinders(100))).await?;
    assert_eq!((copy.bytes, copy.already_present), (cylinders(100), false));
    let again = host.disk_copy(Path::new("IMG00001/0100"), Path::new("WEB03/0100"), None).await?;
    assert!(again.already_present);
    let bigger = host.disk_copy(Path::new("IMG00001/0100"), Path::new("WEB03/0102"), Some(cylinders(200))).await;
    assert!(bigger.unwrap_err().to_string().contains("source's size"));
    host.disk_create(Path::new("WEB03/0101"), cylinders(50)).await?;
    let web03 = spec("web03", 9);
    assert_eq!(host.define_guest(&web03).await?, DefineOutcome::Created);
    assert_eq!(host.describe_guest("web03").await?.spec, web03);
    assert_eq!(host.start("web03").await?, StartOutcome::Started { pid: 0 });

    // Delete: logged off first, the entry and its minidisks go; a second delete is a success.
    host.undefine_guest("web01").await?;
    host.undefine_guest("web01").await?;
    assert!(matches!(host.status("web01").await, Err(HypervisorError::NotFound { .. })));
    assert!(matches!(host.describe_guest("web01").await, Err(HypervisorError::NotFound { .. })));
    assert_eq!(allocated_to(&simulator, "WEB01"), 0);
    assert!(!simulator.state().guests.contains_key("WEB01"));
    host.undefine_guest("web03").await?;
    assert_eq!(host.defined_guests().await?, ["WEB02"]);

    // Deleting the image holder's last disk deletes the holder; deleting it again is a success.
    host.disk_delete(Path::new("IMG00001/0100")).await?;
    host.disk_delete(Path::new("IMG00001/0100")).await?;
    assert!(!simulator.state().directory.entries.contains_key("IMG00001"));
    simulator.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_live_couples_a_nic_uncoupled_behind_stewards_back() -> Result<()> {
    let simulator = simulator(Duration::from_millis(100)).await?;
    let host = host(&simulator)?;
    create_disks(&host, "app01").await?;
    host.define_guest(&spec("app01", 0x21)).await?;
    host.start("app01").await?;
    assert!(host.sync_live("app01").await?.is_empty(), "a guest as defined needs nothing");
    simulator.with_state(|state| {
        if let Some(nic) = state.guests.get_mut("APP01").and_then(|guest| guest.nics.get_mut("0600")) {
            nic.vswitch = None;
        }
    });
    let before = host.describe_guest("app01").await?.live_devices.expect("live devices");
    assert!(before.nics.is_empty(), "{before:?}");
    let sync = host.sync_live("app01").await?;
    assert_eq!(sync.attached, ["nic 0600 on network VSW1"]);
    assert!(sync.restart_required.is_empty(), "{sync:?}");
    assert!(host.sync_live("app01").await?.is_empty(), "a second sync reports nothing");
    assert_eq!(host.describe_guest("app01").await?.live_devices.expect("live devices").nics.len(), 1);
    simulator.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_does_not_shut_down_in_time_is_forced_off() -> Result<()> {
    let simulator = simulator(Duration::from_secs(20)).await?;
    let host = host(&simulator)?;
    create_disks(&host, "slow01").await?;
    host.define_guest(&spec("slow01", 0x31)).await?;
    host.start("slow01").await?;
    assert_eq!(host.stop("slow01", Duration::from_secs(1)).await?, StopOutcome::Forced);
    assert_eq!(host.status("slow01").await?, GuestState::Stopped);
    simulator.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_is_a_typed_error_naming_the_pool() -> Result<()> {
    let simulator = simulator(Duration::from_millis(100)).await?;
    let host = host(&simulator)?;
    let error = host.disk_create(Path::new("BIG01/0100"), cylinders(3500)).await.unwrap_err();
    match &error {
        HypervisorError::PoolFull { pool, request, .. } => {
            assert_eq!(pool, "LINUX");
            assert!(request.contains("BIG01/0100") && request.contains("3500"), "{request}");
        }
        other => panic!("expected PoolFull, got {other:?}"),
    }
    assert!(error.to_string().contains("LINUX"), "{error}");
    // The undo of the failed step removes the placeholder entry the create made.
    host.disk_delete(Path::new("BIG01/0100")).await?;
    assert!(!simulator.state().directory.entries.contains_key("BIG01"));
    simulator.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirmaint_unavailable_is_a_typed_error() -> Result<()> {
    let simulator = simulator(Duration::from_millis(100)).await?;
    let host = host(&simulator)?;
    simulator.add_fault(Fault::DirMaintUnavailable);
    let error = host.disk_create(Path::new("WEB01/0100"), cylinders(10)).await.unwrap_err();
    assert!(matches!(error, HypervisorError::DirectoryManagerUnavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("DirMaint"), "{error}");
    let error = host.describe_guest("web01").await.unwrap_err();
    assert!(matches!(error, HypervisorError::DirectoryManagerUnavailable { .. }), "{error:?}");
    simulator.clear_faults();
    host.disk_create(Path::new("WEB01/0100"), cylinders(10)).await?;
    simulator.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn names_z_vm_cannot_take_are_refused_before_any_call() -> Result<()> {
    // Nothing listens on this port: any SMAPI call would fail to connect instead.
    let mut config = host_config("127.0.0.1:1".to_owned())?;
    config.client.connect_retry_delays = Vec::new();
    let host = ZvmHost::new(config)?;
    let long = spec("webserver01", 1);
    for error in [
        host.define_guest(&long).await.unwrap_err(),
        host.start("webserver01").await.unwrap_err(),
        host.undefine_guest("webserver01").await.unwrap_err(),
        host.disk_create(Path::new("WEBSERVER01/0100"), cylinders(10)).await.unwrap_err(),
    ] {
        assert!(matches!(error, HypervisorError::InvalidInput { .. }), "{error:?}");
        assert!(error.to_string().contains("1 to 8 characters"), "{error}");
    }
    let mut foreign_mac = spec("web01", 1);
    foreign_mac.nics[0].mac = "52:54:00:00:00:01".to_owned();
    let error = host.define_guest(&foreign_mac).await.unwrap_err();
    assert!(error.to_string().contains("MAC prefix"), "{error}");
    let qemu_path = host.disk_create(Path::new("/var/lib/steward/web01.qcow2"), 1).await.unwrap_err();
    assert!(qemu_path.to_string().contains("USERID/VDEV"), "{qemu_path}");
    Ok(())
}

#[tokio::test]
async fn what_z_vm_cannot_do_is_unsupported_with_the_reason() -> Result<()> {
    let host = ZvmHost::new(host_config("127.0.0.1:1".to_owned())?)?;
    let overlay = host.disk_overlay(Path::new("A/0100"), Path::new("B/0100"), DiskFormat::Raw, None).await;
    assert!(overlay.unwrap_err().to_string().contains("disk_copy"));
    assert!(matches!(host.seal_disk(Path::new("A/0100")).await, Err(HypervisorError::Unsupported { .. })));
    assert!(matches!(host.agent_socket("web01"), Err(HypervisorError::Unsupported { .. })));
    assert!(matches!(host.adopt_process("web01", 1).await, Err(HypervisorError::Unsupported { .. })));
    assert!(matches!(host.console_log("web01", 100).await, Err(HypervisorError::Unsupported { .. })));
    // NICs are NICDEFs of the entry: creating one only checks its names.
    host.nic_create("VSW1", "0600").await?;
    assert!(host.nic_create("VSW1", "tap-web01").await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_are_virtual_switches() -> Result<()> {
    let simulator = simulator(Duration::from_millis(100)).await?;
    let host = host(&simulator)?;
    host.network_create("lan2").await?;
    host.network_create("LAN2").await?;
    assert!(simulator.state().vswitches.contains_key("LAN2"));
    host.network_delete("lan2").await?;
    host.network_delete("lan2").await?;
    assert!(!simulator.state().vswitches.contains_key("LAN2"));
    // A NIC on a switch that does not exist stops the definition before the directory changes.
    create_disks(&host, "web05").await?;
    let mut missing = spec("web05", 0x51);
    missing.nics[0].network = "NOSUCH".to_owned();
    let error = host.define_guest(&missing).await.unwrap_err();
    assert!(matches!(error, HypervisorError::NetworkNotFound { .. }), "{error:?}");
    assert_eq!(entry_password(&simulator, "WEB05").as_deref(), Some("NOLOG"));
    simulator.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_left_by_a_crash_does_not_stop_the_next_define() -> Result<()> {
    let simulator = simulator(Duration::from_millis(100)).await?;
    let host = host(&simulator)?;
    create_disks(&host, "web06").await?;
    let web06 = spec("web06", 0x61);
    host.define_guest(&web06).await?;
    // The previous define locked the entry and crashed before its replace.
    simulator.with_state(|state| {
        if let Some(entry) = state.directory.entries.get_mut("WEB06") {
            entry.lock = Some(ADMIN.to_owned());
        }
    });
    let mut changed = web06.clone();
    changed.cpus = 3;
    assert_eq!(host.define_guest(&changed).await?, DefineOutcome::Updated);
    assert!(simulator.state().directory.entries["WEB06"].lock.is_none(), "the replace released the lock");
    assert_eq!(host.describe_guest("web06").await?.spec, changed);
    simulator.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_steward_did_not_make_are_left_alone() -> Result<()> {
    let simulator = simulator(Duration::from_millis(100)).await?;
    let host = host(&simulator)?;
    let before = simulator.state().directory.entries["LNXIMAGE"].clone();
    let mut foreign = spec("lnximage", 0x71);
    foreign.disks.truncate(1);
    let error = host.define_guest(&foreign).await.unwrap_err();
    assert!(error.to_string().contains("Steward did not make"), "{error}");
    assert_eq!(simulator.state().directory.entries["LNXIMAGE"], before);
    assert!(!host.defined_guests().await?.contains(&"LNXIMAGE".to_owned()));
    let error = host.undefine_guest("lnximage").await.unwrap_err();
    assert!(error.to_string().contains("Steward did not make"), "{error}");
    let error = host.disk_create(Path::new("LNXIMAGE/0200"), cylinders(10)).await.unwrap_err();
    assert!(error.to_string().contains("Steward did not make"), "{error}");
    assert!(host.disk_delete(Path::new("LNXIMAGE/0200")).await.is_err());
    assert_eq!(simulator.state().directory.entries["LNXIMAGE"], before);
    // Verbs on a guest that does not exist say so.
    assert!(matches!(host.start("nosuch").await, Err(HypervisorError::NotFound { .. })));
    assert!(matches!(host.stop("nosuch", Duration::from_secs(5)).await, Err(HypervisorError::NotFound { .. })));
    assert!(matches!(host.set_cpu_share("nosuch", 200).await, Err(HypervisorError::NotFound { .. })));
    host.undefine_guest("nosuch").await?;
    // A guest whose disks were never created cannot be defined: the minidisks carry the entry.
    let error = host.define_guest(&spec("web07", 0x72)).await.unwrap_err();
    assert!(matches!(error, HypervisorError::DiskMissing { .. }), "{error:?}");
    simulator.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_live_lists_what_needs_a_re_ipl() -> Result<()> {
    let simulator = simulator(Duration::from_millis(100)).await?;
    let host = host(&simulator)?;
    create_disks(&host, "web08").await?;
    let web08 = spec("web08", 0x81);
    host.define_guest(&web08).await?;
    host.start("web08").await?;
    // A disk and a NIC added to the definition of the running guest, and more memory.
    host.disk_create(Path::new("WEB08/0102"), cylinders(20)).await?;
    let mut grown = web08.clone();
    grown.disks.push(DiskAttachment { path: "WEB08/0102".into(), format: DiskFormat::Raw, serial: None });
    grown.nics.push(Nic { network: "VSW1".to_owned(), tap: "0700".to_owned(), mac: "02:00:5a:00:00:82".to_owned() });
    grown.memory_mib = 2048;
    assert_eq!(host.define_guest(&grown).await?, DefineOutcome::Updated);
    let sync = host.sync_live("web08").await?;
    let needs = sync.restart_required.join("; ");
    assert!(needs.contains("disk WEB08/0102"), "{needs}");
    assert!(needs.contains("nic 0700 on network VSW1"), "{needs}");
    assert!(needs.contains("memory 2048 MiB"), "{needs}");
    assert!(sync.attached.is_empty(), "{sync:?}");
    // After a re-IPL the guest has everything.
    host.restart("web08", Duration::from_secs(30)).await?;
    assert!(host.sync_live("web08").await?.is_empty());
    let devices = host.describe_guest("web08").await?.live_devices.expect("live devices");
    assert_eq!(devices.nics.len(), 2);
    assert_eq!(devices.disks.len(), 3);
    simulator.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smapi_refusals_keep_ibm_meaning() -> Result<()> {
    let simulator = simulator(Duration::from_millis(100)).await?;
    let host = host(&simulator)?;
    create_disks(&host, "web09").await?;
    let web09 = spec("web09", 0x91);
    host.define_guest(&web09).await?;
    // Someone else holds the entry's lock: a retryable failure naming DirMaint's codes.
    simulator.with_state(|state| {
        if let Some(entry) = state.directory.entries.get_mut("WEB09") {
            entry.lock = Some("OTHER".to_owned());
        }
    });
    let mut changed = web09.clone();
    changed.cpus = 1;
    match host.define_guest(&changed).await.unwrap_err() {
        HypervisorError::Smapi { meaning, retryable, .. } => {
            assert!(retryable, "a locked entry is worth retrying");
            assert!(meaning.contains("return code 400, reason code 12") && meaning.contains("lock"), "{meaning}");
        }
        other => panic!("expected a SMAPI error, got {other:?}"),
    }
    assert_eq!(simulator.state().directory.entries["WEB09"].lock.as_deref(), Some("OTHER"), "not ours to release");

    // Wrong credentials are refused as such.
    let mut config = host_config(simulator.address().to_string())?;
    config.credentials = Credentials::new(ADMIN, "wrong-password")?;
    let intruder = ZvmHost::new(config)?;
    let error = intruder.status("web09").await.unwrap_err();
    assert!(matches!(error, HypervisorError::NotAuthorized { .. }), "{error:?}");
    assert!(error.to_string().contains("return code 120"), "{error}");
    simulator.shutdown().await;
    Ok(())
}
