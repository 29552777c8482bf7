//! Disk pools and the DirMaint asynchronous minidisk functions: space queries, create, copy and delete
//! answered with 592 and polled to their end, a full pool, a failed operation, and an operation seen running.

mod support;

use std::time::Duration;

use smapi::functions::*;
use smapi::{Error, Outcome};
use support::*;
use zvm_sim::Simulator;

fn disk_create(target: &str, vdev: &str, group: &str, cylinders: u32) -> ImageDiskCreateDm {
    ImageDiskCreateDm {
        target: target.into(),
        vdev: vdev.into(),
        device_type: "3390".into(),
        allocation_type: "AUTOG".into(),
        area_or_volser: group.into(),
        unit: AllocationUnit::Cylinders,
        size: cylinders,
        mode: "MR".into(),
        format: DiskFormat::None,
        label: String::new(),
        passwords: DiskPasswords::default(),
    }
}

fn space(query: VolumeSpaceQuery, entry: VolumeSpaceEntry, names: &str) -> ImageVolumeSpaceQueryDm {
    ImageVolumeSpaceQueryDm::new("MAINT", query, entry, names)
}

async fn guest(simulator: &Simulator, userid: &str) {
    let records = vec![format!("USER {userid} PW 1G 2G G"), "INCLUDE LNXDFLT".into()];
    admin(simulator).call(&ImageCreateDm::from_records(userid, records)).await.expect("entry created");
}

#[tokio::test]
async fn pool_space_and_minidisks() {
    let simulator = start().await;
    let admin = admin(&simulator);
    guest(&simulator, "LINUX01").await;
    let groups = admin.call(&space(VolumeSpaceQuery::Definition, VolumeSpaceEntry::Group, "*")).await.expect("groups");
    assert_eq!(groups, ["LINUX SIM001 SIM002 SIM003"]);
    let volumes =
        admin.call(&space(VolumeSpaceQuery::Definition, VolumeSpaceEntry::Volume, "SIM001")).await.expect("volume");
    assert_eq!(volumes, ["SIM001 3390-09 1 10016"]);
    assert_eq!(codes(admin.call(&space(VolumeSpaceQuery::Free, VolumeSpaceEntry::Group, "NOPOOL")).await), (420, 8));

    // The call answers 592 with an operation id; the client polls it to its end.
    let started = admin.call_once(&disk_create("LINUX01", "0100", "LINUX", 3000)).await.expect("started");
    let Outcome::Started { operation, .. } = started else { panic!("expected 592, got {started:?}") };
    assert_eq!(operation.operation_ids.len(), 1);
    admin.wait_for_operation("Image_Disk_Create_DM", "LINUX01", operation.operation_ids[0]).await.expect("done");
    let used = admin.call(&space(VolumeSpaceQuery::Used, VolumeSpaceEntry::Region, "SIM001")).await.expect("used");
    assert_eq!(used, ["SIM001 3390 1 3000 LINUX01 0100 * * SIM001"]);
    assert_eq!(codes(admin.call(&disk_create("LINUX01", "100", "LINUX", 1)).await), (408, 4));

    admin.call(&disk_create("LINUX01", "0101", "LINUX", 9000)).await.expect("second disk");
    let free = admin.call(&space(VolumeSpaceQuery::Free, VolumeSpaceEntry::Group, "LINUX")).await.expect("free");
    assert_eq!(
        free,
        [
            "SIM001 3390-09 3001 7016 LINUX SIM001",
            "SIM002 3390-09 9001 1016 LINUX SIM002",
            "SIM003 3390-09 1 10016 LINUX SIM003"
        ]
    );
    let error = admin.call(&disk_create("LINUX01", "0102", "LINUX", 10017)).await.expect_err("no volume is that large");
    assert_eq!(error.kind(), Some(smapi::ErrorKind::NoSpace));
    assert_eq!(codes(admin.call(&disk_create("LINUX01", "0102", "NOPOOL", 1)).await), (420, 8));
    assert_eq!(codes(admin.call(&disk_create("NOSUCH", "0102", "LINUX", 1)).await), (400, 4));

    // A copy of the first disk, in the source's group, then a delete.
    guest(&simulator, "LINUX02").await;
    let copy = ImageDiskCopyDm {
        target: "LINUX02".into(),
        vdev: "0100".into(),
        source_image: "LINUX01".into(),
        source_vdev: "0100".into(),
        allocation_type: String::new(),
        area_or_volser: String::new(),
        mode: String::new(),
        passwords: DiskPasswords::default(),
    };
    admin.call(&copy).await.expect("copied");
    let records = admin.call(&ImageQueryDm::new("LINUX02")).await.expect("records");
    assert!(records.iter().any(|record| record.trim_end() == "MDISK 0100 3390 3001 3000 SIM001 MR"), "{records:?}");
    let missing = ImageDiskCopyDm { source_vdev: "0999".into(), vdev: "0101".into(), ..copy.clone() };
    assert_eq!(codes(admin.call(&missing).await), (408, 8));

    admin.call(&ImageDiskDeleteDm::new("LINUX01", "0100", DataSecurityErase::NoErase)).await.expect("deleted");
    assert_eq!(
        codes(admin.call(&ImageDiskDeleteDm::new("LINUX01", "0100", DataSecurityErase::NoErase)).await),
        (408, 8)
    );
    let used = admin.call(&space(VolumeSpaceQuery::Used, VolumeSpaceEntry::Volume, "SIM001")).await.expect("used");
    assert_eq!(used, ["SIM001 3390 3001 3000 LINUX02 0100 * * SIM001"], "LINUX01's deleted disk is gone");
    simulator.shutdown().await;
}

#[tokio::test]
async fn an_operation_is_seen_running_then_failing() {
    let mut config = config(None);
    config.timing.operation = Duration::from_secs(3600);
    let simulator = Simulator::start(config).await.expect("simulator starts");
    let admin = admin(&simulator);
    guest(&simulator, "LINUX01").await;
    let Outcome::Started { operation, .. } =
        admin.call_once(&disk_create("LINUX01", "0100", "LINUX", 10)).await.expect("started")
    else {
        panic!("expected 592")
    };
    let id = operation.operation_ids[0];
    let status = admin.call(&QueryAsynchronousOperationDm::new("LINUX01", id)).await.expect("status");
    assert_eq!(status, OperationStatus::InProgress);
    assert_eq!(
        codes(admin.call(&disk_create("LINUX01", "0100", "LINUX", 10)).await),
        (408, 4),
        "the vdev is being added"
    );
    // Bring the end forward instead of waiting an hour.
    simulator.with_state(|state| {
        for operation in state.operations.operations.values_mut() {
            operation.ends_at = 0;
        }
    });
    admin.wait_for_operation("Image_Disk_Create_DM", "LINUX01", id).await.expect("succeeded");
    assert_eq!(
        admin.call(&QueryAsynchronousOperationDm::new("LINUX01", id)).await.expect("status"),
        OperationStatus::Succeeded
    );
    assert_eq!(codes(admin.call(&QueryAsynchronousOperationDm::new("LINUX01", 999_999)).await), (24, 119));

    // An injected failure: the operation ends failed and its space is given back.
    simulator.add_fault("fail-operation=Image_Disk_Create_DM".parse().expect("a fault"));
    let Outcome::Started { operation, .. } =
        admin.call_once(&disk_create("LINUX01", "0101", "LINUX", 10)).await.expect("started")
    else {
        panic!("expected 592")
    };
    simulator.with_state(|state| state.operations.operations.values_mut().for_each(|operation| operation.ends_at = 0));
    let error = admin.wait_for_operation("Image_Disk_Create_DM", "LINUX01", operation.operation_ids[0]).await;
    assert!(matches!(error, Err(Error::AsynchronousOperationFailed { reason_code: 108, .. })), "{error:?}");
    let state = simulator.state();
    assert!(state.directory.entries["LINUX01"].minidisk("0101").is_none());
    assert_eq!(state.pools.volumes["SIM001"].extents.len(), 1, "only the first disk holds space");
    simulator.shutdown().await;
}
