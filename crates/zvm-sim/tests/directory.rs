//! The directory through the `smapi` client: authentication and authorization, create, query (records and
//! keywords), update, lock, replace, unlock, delete, name query, and the failures z/VM answers.

mod support;

use smapi::functions::*;
use smapi::wire::ParameterWriter;
use smapi::{DecodeError, EncodeError, ErrorKind, Reply, SmapiRequest};
use support::*;

/// A function z/VM does not have.
struct Frobnicate;

impl SmapiRequest for Frobnicate {
    const FUNCTION: &'static str = "Image_Frobnicate_DM";
    type Output = ();

    fn target(&self) -> &str {
        "LINUX01"
    }

    fn write_parameters(&self, _writer: &mut ParameterWriter) -> Result<(), EncodeError> {
        Ok(())
    }

    fn decode_output(_reply: &Reply) -> Result<(), DecodeError> {
        Ok(())
    }
}

#[tokio::test]
async fn authentication_authorization_and_system_queries() {
    let simulator = start().await;
    let admin = admin(&simulator);
    admin.call(&CheckAuthentication::new("MAINT")).await.expect("valid credentials");
    let wrong = client_as(&simulator, ADMIN, "not-the-password");
    assert_eq!(codes(wrong.call(&CheckAuthentication::new("MAINT")).await), (120, 0));
    let unknown = client_as(&simulator, "NOBODY", ADMIN_PASSWORD);
    assert_eq!(codes(unknown.call(&ImageNameQueryDm::new("MAINT")).await), (120, 0));
    let case = client_as(&simulator, ADMIN, &ADMIN_PASSWORD.to_uppercase());
    assert_eq!(codes(case.call(&CheckAuthentication::new("MAINT")).await), (120, 0), "passwords are case-sensitive");

    let level = admin.call(&QueryApiFunctionalLevel::new("MAINT")).await.expect("level");
    assert_eq!(level.level, 710);
    assert!(level.description().contains("7.1"));
    let info = admin.call(&SystemInfoQuery::new("MAINT")).await.expect("system information");
    assert!(info.cp_level.starts_with("z/VM Version 7 Release 1.0"), "{}", info.cp_level);
    assert!(info.cp_level.contains("simulated"));
    assert!(info.clock().is_some(), "the clock reads {:?}", info.date_time);
    assert_eq!(info.storage_info().configured, "16G");

    // The operator may act on itself and query entries, nothing else.
    let operator = client_as(&simulator, OPERATOR, OPERATOR_PASSWORD);
    operator.call(&CheckAuthentication::new("ANYONE")).await.expect("authentication needs no AUTHLIST entry");
    assert_eq!(codes(operator.call(&ImageNameQueryDm::new("MAINT")).await), (100, 16));
    let refused = operator.call(&ImageActivate::new("LNXIMAGE")).await.expect_err("not authorized on LNXIMAGE");
    assert_eq!(refused.kind(), Some(ErrorKind::NotAuthorized));
    operator.call(&ImageQueryDm::new("LNXIMAGE")).await.expect("Image_Query_DM on any target");

    assert_eq!(codes(admin.call(&Frobnicate).await), (900, 12));
    simulator.shutdown().await;
}

#[tokio::test]
async fn an_entry_from_create_to_delete() {
    let simulator = start().await;
    let admin = admin(&simulator);
    let created = admin.call(&ImageCreateDm::from_records("linux01", linux_entry("linux01"))).await.expect("created");
    assert_eq!(created.operation_id, None, "Image_Create_DM completes synchronously (FF FF FF FF)");
    assert_eq!(codes(admin.call(&ImageCreateDm::from_records("LINUX01", linux_entry("LINUX01"))).await), (400, 8));

    let names = admin.call(&ImageNameQueryDm::new("MAINT")).await.expect("names");
    assert_eq!(names, ["LINUX01", "LNXIMAGE"]);

    let records = admin.call(&ImageQueryDm::new("LINUX01")).await.expect("records");
    assert!(records.iter().all(|record| record.len() == 72));
    let trimmed: Vec<&str> = records.iter().map(|record| record.trim_end()).collect();
    assert_eq!(trimmed[0], "USER LINUX01 LNXPW    1G 4G G");
    assert!(trimmed.contains(&"MDISK 0100 3390 1 10 SIM001 MR"), "the AUTOG disk is placed: {trimmed:?}");
    assert!(trimmed.contains(&"NICDEF 1000 TYPE QDIO DEVICES 3 LAN SYSTEM VSW1"));
    assert_eq!(codes(admin.call(&ImageQueryDm::new("NOSUCH")).await), (400, 4));

    let mdisk = admin.call(&ImageDefinitionQueryDm::new("LINUX01", vec!["MDISK".into()])).await.expect("MDISK");
    assert_eq!(mdisk, ["MDISK=VDEV=0100 DEVTYPE=3390 DISKTYPE=PERM START=1 COUNT=10 VOLID=SIM001 MODE=MR"]);
    let everything = admin.call(&ImageDefinitionQueryDm::new("LINUX01", vec!["*".into()])).await.expect("all");
    for expected in ["CPU_MAXIMUM=COUNT=4 TYPE=ESA", "INCLUDE=LNXDFLT", "LNXPW", "STORAGE_MAXIMUM=4G", "SHARE="] {
        assert!(everything.iter().any(|line| line == expected), "{expected} missing from {everything:?}");
    }
    let bogus = admin.call(&ImageDefinitionQueryDm::new("LINUX01", vec!["BOGUS_KEYWORD=BAD".into()])).await;
    let error = bogus.expect_err("unknown keyword");
    let call = error.call_error().expect("a SMAPI error");
    assert_eq!((call.return_code, call.reason_code), (8, 3002));
    assert_eq!(call.diagnostics, ["UNKNOWN_DIRECTORY_KEYWORD_PARAMETER=BOGUS_KEYWORD=BAD"]);

    let update = ImageDefinitionUpdateDm::new(
        "LINUX01",
        vec![
            "STORAGE_INITIAL=2G".into(),
            "SHARE=RELATIVE=200".into(),
            "CPU=CPUADDR=01".into(),
            "MDISK=OPERATION=ADD VDEV=0200 COUNT=20 DEVTYPE=XXXX DISKTYPE=AUTOG NAME=LINUX".into(),
        ],
    );
    admin.call(&update).await.expect("updated");
    let updated = admin
        .call(&ImageDefinitionQueryDm::new("LINUX01", vec!["STORAGE_INITIAL".into(), "SHARE".into(), "CPU".into()]))
        .await
        .expect("updated keywords");
    assert_eq!(
        updated,
        [
            "STORAGE_INITIAL=2G",
            "SHARE=RELATIVE=200",
            "CPU=CPUADDR=00 BASE=YES DEDICATE=NO",
            "CPU=CPUADDR=01 BASE=NO DEDICATE=NO"
        ]
    );
    let error = admin.call(&ImageDefinitionUpdateDm::new("LINUX01", vec!["BOGUS_KEYWORD=BAD".into()])).await;
    let error = error.expect_err("unknown keyword");
    assert_eq!(
        error.call_error().map(|call| call.diagnostics.clone()),
        Some(vec!["UNKNOWN_DIRECTORY_KEYWORD_PARAMETER=BOGUS_KEYWORD".into()])
    );
    assert_eq!(
        codes(admin.call(&ImageDefinitionUpdateDm::new("LINUX01", vec!["CPU=CPUADDR=07".into()])).await),
        (520, 28)
    );
    assert_eq!(
        codes(admin.call(&ImageDefinitionUpdateDm::new("LINUX01", vec!["INCLUDE=NOPROF".into()])).await),
        (436, 4)
    );

    admin.call(&ImageDeleteDm::new("LINUX01", DataSecurityErase::NoErase)).await.expect("deleted");
    assert_eq!(codes(admin.call(&ImageDeleteDm::new("LINUX01", DataSecurityErase::NoErase)).await), (400, 4));
    let state = simulator.state();
    assert!(state.pools.volumes.values().all(|volume| volume.extents.is_empty()), "its disks' space is free again");
    simulator.shutdown().await;
}

#[tokio::test]
async fn locks_and_replace() {
    let simulator = start().await;
    let admin = admin(&simulator);
    admin.call(&ImageCreateDm::from_records("LINUX02", linux_entry("LINUX02"))).await.expect("created");
    let operator = client_as(&simulator, OPERATOR, OPERATOR_PASSWORD);
    simulator.with_state(|state| state.authlist.push("OPER1:LINUX02:ALL".parse().expect("an entry")));

    let mut replacement = linux_entry("LINUX02");
    replacement[6] = "NICDEF 1000 TYPE QDIO DEVICES 3 LAN SYSTEM VSW1 VLAN 100".into();
    assert_eq!(codes(admin.call(&ImageReplaceDm::new("LINUX02", replacement.clone())).await), (400, 24));
    assert_eq!(codes(admin.call(&ImageUnlockDm::new("LINUX02", "")).await), (400, 24));

    admin.call(&ImageLockDm::new("LINUX02", "")).await.expect("locked");
    assert_eq!(codes(operator.call(&ImageLockDm::new("LINUX02", "")).await), (400, 12), "locked by another");
    assert_eq!(codes(operator.call(&ImageReplaceDm::new("LINUX02", replacement.clone())).await), (400, 12));
    let update = ImageDefinitionUpdateDm::new("LINUX02", vec!["STORAGE_INITIAL=2G".into()]);
    assert_eq!(codes(operator.call(&update).await), (400, 12), "a locked entry refuses changes");

    admin.call(&ImageReplaceDm::new("LINUX02", replacement)).await.expect("replaced");
    let records = admin.call(&ImageQueryDm::new("LINUX02")).await.expect("records");
    assert!(
        records.iter().any(|record| record.trim_end() == "NICDEF 1000 TYPE QDIO DEVICES 3 LAN SYSTEM VSW1 VLAN 100")
    );
    assert_eq!(codes(admin.call(&ImageUnlockDm::new("LINUX02", "")).await), (400, 24), "replace released the lock");

    admin.call(&ImageLockDm::new("LINUX02", "100")).await.expect("device locked");
    assert_eq!(codes(admin.call(&ImageLockDm::new("LINUX02", "0100")).await), (404, 12));
    assert_eq!(codes(admin.call(&ImageLockDm::new("LINUX02", "0999")).await), (404, 8));
    admin.call(&ImageUnlockDm::new("LINUX02", "0100")).await.expect("device unlocked");
    assert_eq!(codes(admin.call(&ImageUnlockDm::new("LINUX02", "0100")).await), (404, 24));

    let mut two_users = linux_entry("LINUX02");
    two_users.push("USER LINUX02 PW 1G".into());
    admin.call(&ImageLockDm::new("LINUX02", "")).await.expect("locked again");
    assert_eq!(codes(admin.call(&ImageReplaceDm::new("LINUX02", two_users)).await), (400, 40));
    let mut bad = linux_entry("LINUX02");
    bad.push("MDISK 0300 3390 SOMEWHERE".into());
    assert_eq!(codes(admin.call(&ImageReplaceDm::new("LINUX02", bad)).await), (24, 119));
    simulator.shutdown().await;
}

#[tokio::test]
async fn dirmaint_down_refuses_directory_functions_only() {
    let simulator = start().await;
    let admin = admin(&simulator);
    simulator.add_fault("dirmaint-down".parse().expect("a fault"));
    let error = admin.call(&ImageQueryDm::new("LNXIMAGE")).await.expect_err("DirMaint is down");
    assert_eq!(error.kind(), Some(ErrorKind::DirectoryManagerUnavailable));
    assert_eq!(codes(admin.call(&ImageCreateDm::from_records("LINUX03", linux_entry("LINUX03"))).await), (500, 8));
    admin.call(&ImageStatusQuery::new("LNXIMAGE")).await.expect("CP functions still answer");
    simulator.clear_faults();
    admin.call(&ImageQueryDm::new("LNXIMAGE")).await.expect("DirMaint is back");

    simulator.add_fault("fail=Image_Query_DM:596:3658".parse().expect("a fault"));
    assert_eq!(codes(admin.call(&ImageQueryDm::new("LNXIMAGE")).await), (596, 3658));
    admin.call(&ImageQueryDm::new("LNXIMAGE")).await.expect("the failure was one-shot");
    simulator.shutdown().await;
}
