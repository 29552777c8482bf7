//! Virtual switches, grants and NICs: create, query, grant and revoke; NICs defined, connected in the
//! directory and coupled at run time, which needs a grant as on z/VM.

mod support;

use smapi::functions::*;
use support::*;

fn grant(switch: &str, user: &str, vlans: Option<&str>) -> VirtualNetworkVswitchSetExtended {
    VirtualNetworkVswitchSetExtended {
        target: "MAINT".into(),
        switch_name: switch.into(),
        settings: VswitchSettings {
            grant_userid: Some(user.into()),
            user_vlan_id: vlans.map(str::to_owned),
            persist: Some(true),
            ..Default::default()
        },
    }
}

fn revoke(switch: &str, user: &str) -> VirtualNetworkVswitchSetExtended {
    VirtualNetworkVswitchSetExtended {
        target: "MAINT".into(),
        switch_name: switch.into(),
        settings: VswitchSettings { revoke_userid: Some(user.into()), persist: Some(true), ..Default::default() },
    }
}

fn query(switch: &str) -> VirtualNetworkVswitchQueryExtended {
    VirtualNetworkVswitchQueryExtended::new("MAINT", switch, "YES")
}

#[tokio::test]
async fn switches_grants_and_couplings() {
    let simulator = start().await;
    let admin = admin(&simulator);
    let create = VirtualNetworkVswitchCreateExtended {
        target: "MAINT".into(),
        switch_name: "vsw2".into(),
        real_device_address: "600 610".into(),
        connection_value: "DISCON".into(),
        vlan_id: "100".into(),
        port_type: "TRUNK".into(),
        native_vlanid: Some(1),
        persist: Some(true),
        ..Default::default()
    };
    admin.call(&create).await.expect("created");
    assert_eq!(codes(admin.call(&create).await), (212, 36));
    let switches = admin.call(&query("*")).await.expect("all switches");
    let names: Vec<&str> = switches.iter().map(|switch| switch.switch_name.as_str()).collect();
    assert_eq!(names, ["VSW1", "VSW2"]);
    let vsw2 = &switches[1];
    assert_eq!(
        (vsw2.vlan_awareness.as_str(), vsw2.vlan_id.as_str(), vsw2.port_type.as_str()),
        ("AWARE", "00100", "TRUNK")
    );
    assert_eq!(vsw2.real_devices.len(), 2);
    assert_eq!(vsw2.real_devices[0].real_device_address, "0600");
    assert_eq!(switches[0].vlan_awareness, "UNAWARE");
    assert_eq!(codes(admin.call(&query("NOSUCH")).await), (212, 40));

    // A guest with a NIC on VSW1 (in its entry) and one more defined and connected through the _DM calls.
    admin.call(&ImageCreateDm::from_records("LINUX01", linux_entry("LINUX01"))).await.expect("entry");
    let nic = VirtualNetworkAdapterCreateExtendedDm {
        target: "LINUX01".into(),
        image_device_number: "2000".into(),
        adapter_type: "qdio".into(),
        devices: Some(3),
        channel_path_id: String::new(),
        mac_id: "00AB01".into(),
    };
    admin.call(&nic).await.expect("NIC defined");
    assert_eq!(codes(admin.call(&nic).await), (404, 4));
    admin.call(&VirtualNetworkAdapterConnectVswitchDm::new("LINUX01", "2000", "VSW2")).await.expect("connected");
    assert_eq!(
        codes(admin.call(&VirtualNetworkAdapterConnectVswitchDm::new("LINUX01", "2001", "VSW2")).await),
        (404, 8)
    );
    let nics = admin.call(&ImageDefinitionQueryDm::new("LINUX01", vec!["NICDEF".into()])).await.expect("NICDEFs");
    assert_eq!(
        nics,
        [
            "NICDEF=VDEV=1000 TYPE=QDIO DEVICES=3 LAN=SYSTEM SWITCHNAME=VSW1",
            "NICDEF=VDEV=2000 TYPE=QDIO DEVICES=3 LAN=SYSTEM SWITCHNAME=VSW2 MACID=00AB01"
        ]
    );

    // Without grants the guest logs on with both NICs uncoupled, and coupling by hand is refused.
    admin.call(&ImageActivate::new("LINUX01")).await.expect("logged on");
    let vsw1 = admin.call(&query("VSW1")).await.expect("VSW1");
    assert!(vsw1[0].connected_adapters.is_empty());
    let refused = VirtualNetworkAdapterConnectVswitch::new("LINUX01", "1000", "VSW1");
    assert_eq!(codes(admin.call(&refused).await), (212, 8), "coupling without a grant fails");
    assert_eq!(codes(admin.call(&VirtualNetworkAdapterConnectVswitch::new("LINUX01", "3000", "VSW1")).await), (204, 8));
    assert_eq!(
        codes(admin.call(&VirtualNetworkAdapterConnectVswitch::new("LINUX01", "1000", "NOSUCH")).await),
        (212, 40)
    );

    admin.call(&grant("VSW1", "LINUX01", None)).await.expect("granted");
    assert_eq!(codes(admin.call(&grant("VSW1", "LINUX01", None)).await), (212, 44));
    assert_eq!(codes(admin.call(&grant("VSW1", "LINUX02", Some("100"))).await), (396, 2846), "VSW1 is VLAN-unaware");
    admin.call(&VirtualNetworkAdapterConnectVswitch::new("LINUX01", "1000", "VSW1")).await.expect("coupled");
    assert_eq!(
        codes(admin.call(&VirtualNetworkAdapterConnectVswitch::new("LINUX01", "1000", "VSW1")).await),
        (204, 20)
    );
    let vsw1 = admin.call(&query("VSW1")).await.expect("VSW1");
    assert_eq!(vsw1[0].authorized_users[0].grant_userid, "LINUX01");
    let adapter = &vsw1[0].connected_adapters[0];
    assert_eq!(
        (adapter.owner.as_str(), adapter.vdev.as_str(), adapter.adapter_type.as_str()),
        ("LINUX01", "1000", "QDIO")
    );
    assert!(adapter.mac_address.starts_with("02-00-5A-"), "{}", adapter.mac_address);

    // Granted on VSW2 with VLANs, the guest's NIC couples at its next logon, with the MAC of its MACID.
    admin.call(&grant("VSW2", "LINUX01", Some("100 200"))).await.expect("granted with VLANs");
    admin.call(&ImageDeactivate::new("LINUX01", ForceTime::immediately())).await.expect("logged off");
    admin.call(&ImageActivate::new("LINUX01")).await.expect("logged on");
    let vsw2 = admin.call(&query("VSW2")).await.expect("VSW2");
    assert_eq!(vsw2[0].authorized_users[0].vlan_ids, ["100", "200"]);
    assert_eq!(vsw2[0].connected_adapters[0].mac_address, "02-00-5A-00-AB-01");
    assert_eq!(admin.call(&query("VSW1")).await.expect("VSW1")[0].connected_adapters.len(), 1, "granted at logon");

    // Revoking uncouples.
    admin.call(&revoke("VSW1", "LINUX01")).await.expect("revoked");
    assert_eq!(codes(admin.call(&revoke("VSW1", "LINUX01")).await), (212, 8));
    let vsw1 = admin.call(&query("VSW1")).await.expect("VSW1");
    assert!(vsw1[0].authorized_users.is_empty() && vsw1[0].connected_adapters.is_empty());
    assert_eq!(codes(admin.call(&revoke("NOSUCH", "LINUX01")).await), (212, 40));

    admin.call(&VirtualNetworkAdapterDeleteDm::new("LINUX01", "2000")).await.expect("NIC removed");
    assert_eq!(codes(admin.call(&VirtualNetworkAdapterDeleteDm::new("LINUX01", "2000")).await), (404, 8));
    admin.call(&VirtualNetworkVswitchDeleteExtended::new("MAINT", "VSW2", Some(true))).await.expect("deleted");
    assert_eq!(codes(admin.call(&VirtualNetworkVswitchDeleteExtended::new("MAINT", "VSW2", None)).await), (212, 40));
    simulator.shutdown().await;
}
