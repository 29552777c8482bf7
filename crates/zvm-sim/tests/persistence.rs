//! The state file: everything the simulator knows survives a restart, operations in flight included.

mod support;

use std::time::Duration;

use smapi::Outcome;
use smapi::functions::*;
use support::*;
use zvm_sim::Simulator;

#[tokio::test]
async fn the_state_survives_a_restart() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("zvm-sim.json");
    let mut first_config = config(Some(path.clone()));
    first_config.timing.operation = Duration::from_secs(3600);
    let simulator = Simulator::start(first_config).await.expect("first start");
    assert!(!simulator.created().is_empty(), "a first start creates the default system");
    let client = support::admin(&simulator);
    client.call(&ImageCreateDm::from_records("LINUX01", linux_entry("LINUX01"))).await.expect("entry");
    client
        .call(&VirtualNetworkVswitchSetExtended {
            target: "MAINT".into(),
            switch_name: "VSW1".into(),
            settings: VswitchSettings { grant_userid: Some("LINUX01".into()), ..Default::default() },
        })
        .await
        .expect("granted");
    client.call(&ImageActivate::new("LINUX01")).await.expect("logged on");
    client.call(&ImageLockDm::new("LINUX01", "")).await.expect("locked");
    let disk = ImageDiskCreateDm {
        target: "LNXIMAGE".into(),
        vdev: "0100".into(),
        device_type: "3390".into(),
        allocation_type: "AUTOG".into(),
        area_or_volser: "LINUX".into(),
        unit: AllocationUnit::Cylinders,
        size: 100,
        mode: "RR".into(),
        format: DiskFormat::None,
        label: String::new(),
        passwords: DiskPasswords::default(),
    };
    let Outcome::Started { operation, .. } = client.call_once(&disk).await.expect("started") else {
        panic!("expected 592")
    };
    let before = simulator.state();
    simulator.shutdown().await;
    let text = std::fs::read_to_string(&path).expect("the state file");
    assert!(text.contains("\"MDISK 0100 3390 1 10 SIM001 MR\""), "statements are stored as directory lines");

    let simulator = Simulator::start(config(Some(path.clone()))).await.expect("second start");
    assert!(simulator.created().is_empty(), "the state came from the file");
    assert_eq!(simulator.state(), before);
    let client = support::admin(&simulator);
    let status = client.call(&ImageStatusQuery::new("LINUX01")).await.expect("status");
    assert_eq!(status.active_images, ["LINUX01"]);
    assert_eq!(codes(client.call(&ImageLockDm::new("LINUX01", "")).await), (400, 12), "the lock survived");
    let switches = client.call(&VirtualNetworkVswitchQueryExtended::new("MAINT", "VSW1", "")).await.expect("VSW1");
    assert_eq!(switches[0].connected_adapters.len(), 1);
    let id = operation.operation_ids[0];
    assert_eq!(
        client.call(&QueryAsynchronousOperationDm::new("LNXIMAGE", id)).await.expect("status"),
        OperationStatus::InProgress
    );
    simulator.with_state(|state| state.operations.operations.values_mut().for_each(|operation| operation.ends_at = 0));
    client.wait_for_operation("Image_Disk_Create_DM", "LNXIMAGE", id).await.expect("finished after the restart");
    simulator.shutdown().await;

    let reloaded = zvm_sim::State::load(&path).expect("readable").expect("present");
    assert!(reloaded.directory.entries["LNXIMAGE"].minidisk("0100").is_some(), "the finished operation was saved");
}
