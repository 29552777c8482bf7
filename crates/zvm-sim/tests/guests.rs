//! Guests at run time: logon, status, the live configuration, logoff with and without grace time.

mod support;

use smapi::functions::*;
use support::*;

#[tokio::test]
async fn a_guest_logs_on_and_off() {
    let simulator = start().await;
    let admin = admin(&simulator);
    admin.call(&ImageCreateDm::from_records("LINUX01", linux_entry("LINUX01"))).await.expect("created");

    let status = admin.call(&ImageStatusQuery::new("LINUX01")).await.expect("status");
    assert!(status.target_not_active && status.active_images.is_empty());
    assert_eq!(codes(admin.call(&ImageActiveConfigurationQuery::new("LINUX01")).await), (200, 12));
    assert_eq!(codes(admin.call(&ImageDeactivate::new("LINUX01", ForceTime::immediately())).await), (200, 12));

    admin.call(&ImageActivate::new("LINUX01")).await.expect("logged on");
    assert_eq!(codes(admin.call(&ImageActivate::new("LINUX01")).await), (200, 8));
    let status = admin.call(&ImageStatusQuery::new("linux01")).await.expect("status");
    assert_eq!(status.active_images, ["LINUX01"]);
    assert!(!status.target_not_active);
    let all = admin.call(&ImageStatusQuery::new("*")).await.expect("all active");
    assert_eq!(all.active_images, ["LINUX01"]);

    // A directory change does not touch the running guest.
    admin
        .call(&ImageDefinitionUpdateDm::new("LINUX01", vec!["STORAGE_INITIAL=2G".into(), "SHARE=RELATIVE=300".into()]))
        .await
        .expect("updated");
    let configuration = admin.call(&ImageActiveConfigurationQuery::new("LINUX01")).await.expect("configuration");
    assert_eq!((configuration.memory_size, configuration.memory_unit), (1, MemoryUnit::Gigabytes));
    assert_eq!((configuration.share_type, configuration.share_value.as_str()), (ShareType::Relative, "100"));
    assert_eq!(configuration.number_cpus, 1);
    assert_eq!(configuration.cpus[0].status, CpuStatus::Base);
    assert_eq!(configuration.cpus[0].id.len(), 16);
    let devices: Vec<(DeviceType, &str)> =
        configuration.devices.iter().map(|device| (device.device_type, device.address.as_str())).collect();
    assert_eq!(
        devices,
        [
            (DeviceType::Console, "0009"),
            (DeviceType::Reader, "000C"),
            (DeviceType::Punch, "000D"),
            (DeviceType::Printer, "000E"),
            (DeviceType::Dasd, "0100")
        ]
    );
    assert_eq!(codes(admin.call(&ImageDeleteDm::new("LINUX01", DataSecurityErase::NoErase)).await), (596, 6831));

    // A grace time: the guest shuts down (100 ms in the test configuration) and the reply says within how long.
    let down =
        admin.call(&ImageDeactivate::new("LINUX01", ForceTime::within(30).expect("a time"))).await.expect("down");
    assert_eq!(down.within_seconds, Some(1));
    assert!(admin.call(&ImageStatusQuery::new("LINUX01")).await.expect("status").target_not_active);

    // The new logon sees the new directory.
    admin.call(&ImageActivate::new("LINUX01")).await.expect("logged on again");
    let configuration = admin.call(&ImageActiveConfigurationQuery::new("LINUX01")).await.expect("configuration");
    assert_eq!((configuration.memory_size, configuration.share_value.as_str()), (2, "300"));
    let down = admin.call(&ImageDeactivate::new("LINUX01", ForceTime::immediately())).await.expect("down");
    assert_eq!(down.within_seconds, None);
    let not_a_time = ForceTime::parse("BY 99:00").expect("the client checks the form only");
    assert_eq!(codes(admin.call(&ImageDeactivate::new("LINUX01", not_a_time)).await), (24, 119));

    assert_eq!(codes(admin.call(&ImageActivate::new("LNXIMAGE")).await), (200, 4), "a NOLOG user cannot log on");
    assert_eq!(codes(admin.call(&ImageActivate::new("NOSUCH")).await), (200, 4));
    simulator.shutdown().await;
}
