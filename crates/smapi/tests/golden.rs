//! Golden tests against the 204 exchanges recorded on a real z/VM 7.1: every recorded request of a function
//! this crate implements is rebuilt from its typed form and must be byte-identical, and every recorded reply
//! must decode to the values the recording holds (request id, return and reason code, every output field,
//! the error text of failed calls). Every vector of the functions Steward needs must be covered.
//!
//! The recorder (pysmapi) splits NUL-terminated lists with a trailing empty string; [`Decoded::strings`] drops
//! that artefact before comparing.

mod support;

use std::fmt::Debug;

use serde_json::{Map, Value};
use smapi::functions::*;
use smapi::{CallError, Error, ErrorKind, Reply, SmapiRequest, encode_request, interpret};
use support::{Vector, hex, hex_decode, recorded_credentials, vectors};

/// Functions every recorded vector of which must be encoded and decoded by the crate.
const REQUIRED: &[&str] = &[
    "Check_Authentication",
    "Query_API_Functional_Level",
    "System_Info_Query",
    "Image_Name_Query_DM",
    "Image_Status_Query",
    "Image_Query_DM",
    "Image_Definition_Query_DM",
    "Image_Definition_Update_DM",
    "Image_Create_DM",
    "Image_Delete_DM",
    "Image_Lock_DM",
    "Image_Unlock_DM",
    "Image_Replace_DM",
    "Image_Activate",
    "Image_Deactivate",
    "Image_Disk_Create_DM",
    "Image_Disk_Copy_DM",
    "Image_Disk_Delete_DM",
    "Image_Volume_Space_Query_DM",
    "Image_Active_Configuration_Query",
    "Virtual_Network_Adapter_Create_Extended_DM",
    "Virtual_Network_Adapter_Connect_Vswitch_DM",
    "Virtual_Network_Adapter_Delete_DM",
    "Virtual_Network_Vswitch_Create_Extended",
    "Virtual_Network_Vswitch_Set_Extended",
    "Virtual_Network_Vswitch_Query_Extended",
    "Query_Asynchronous_Operation_DM",
    "Response_Recovery",
];

#[test]
fn recorded_exchanges_round_trip() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 204, "the recording has 204 exchanges");
    let mut covered = Vec::new();
    let mut failures = Vec::new();
    let mut uncovered_required = Vec::new();
    for vector in &vectors {
        match check(vector) {
            Some(Ok(())) => covered.push(vector.function.clone()),
            Some(Err(reason)) => failures.push(format!("{}: {reason}", vector.name())),
            None if REQUIRED.contains(&vector.function.as_str()) => uncovered_required.push(vector.name()),
            None => {}
        }
    }
    let mut functions = covered.clone();
    functions.dedup();
    println!(
        "covered {} of {} recorded vectors ({} functions); {} failed",
        covered.len(),
        vectors.len(),
        functions.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "vectors that do not round-trip:\n{}", failures.join("\n"));
    assert!(uncovered_required.is_empty(), "required vectors not covered: {uncovered_required:?}");
    let required_recorded = vectors.iter().filter(|vector| REQUIRED.contains(&vector.function.as_str())).count();
    let required_covered = covered.iter().filter(|function| REQUIRED.contains(&function.as_str())).count();
    assert_eq!(required_covered, required_recorded, "every vector of the required functions is covered");
    assert_eq!(required_recorded, 54, "the recording holds 54 vectors of the required functions");
}

/// The two required functions the recording lacks, checked against frames built from the protocol description:
/// a header-only request, and a reply whose reason code carries the answer.
#[test]
fn functions_without_recordings() {
    let credentials = recorded_credentials();
    let frame = encode_request(&CheckAuthentication::new("maint"), &credentials).unwrap();
    let mut expected = hex_decode("0000003300000014");
    expected.extend_from_slice(b"Check_Authentication\x00\x00\x00\x05maint\x00\x00\x00\x05maint\x00\x00\x00\x05maint");
    assert_eq!(frame, expected);
    let ok = Reply::parse(&hex_decode("0000002a0000000c0000002a0000000000000000")).unwrap();
    assert!(matches!(interpret(&CheckAuthentication::new("maint"), &ok), Ok(smapi::Outcome::Completed { .. })));
    let refused = Reply::parse(&hex_decode("0000002a0000000c0000002a0000007800000000")).unwrap();
    let error = interpret(&CheckAuthentication::new("maint"), &refused).unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::AuthenticationFailed));
    assert!(error.to_string().contains("user ID or password not valid"), "{error}");

    let request = QueryApiFunctionalLevel::new("maint");
    let frame = encode_request(&request, &credentials).unwrap();
    assert_eq!(&frame[..8], hex_decode("000000390000001a").as_slice());
    assert!(
        frame.ends_with(b"Query_API_Functional_Level\x00\x00\x00\x05maint\x00\x00\x00\x05maint\x00\x00\x00\x05maint")
    );
    let reply = Reply::parse(&hex_decode("000000010000000c0000000100000000000002c6")).unwrap();
    let level = interpret(&request, &reply).unwrap().into_output();
    assert_eq!(level, ApiFunctionalLevel { level: 710 });
    assert_eq!(level.description(), "of z/VM 7.1");
}

/// Checks one vector; `None` when the crate does not implement its function.
fn check(vector: &Vector) -> Option<Result<(), String>> {
    let mut kw = Kwargs { map: vector.kwargs.clone(), used: Vec::new() };
    let target = kw.text("target");
    let result = match vector.function.as_str() {
        "Image_Activate" => {
            exchange(vector, ImageActivate::new(&target), |out, d| check_activation(&out, d, "activated"))
        }
        "Image_Deactivate" => match ForceTime::parse(&kw.text("force_time")) {
            Ok(force_time) => exchange(vector, ImageDeactivate::new(&target, force_time), |out, d| {
                same(out.within_seconds, None, "within seconds")?;
                check_activation(&out.result, d, "deactivated")
            }),
            Err(error) => Err(error.to_string()),
        },
        "Image_Status_Query" => exchange(vector, ImageStatusQuery::new(&target), |out, d| {
            let names: Vec<String> =
                d.objects("_image_name_array")?.iter().map(|entry| field_text(entry, "image_name")).collect();
            same(out.active_images, names, "active images")?;
            same(out.target_not_active, false, "target not active")
        }),
        "Image_Active_Configuration_Query" => {
            exchange(vector, ImageActiveConfigurationQuery::new(&target), |out, d| {
                same(i64::from(out.memory_size), d.int("_memory_size")?, "memory size")?;
                same(i64::from(out.memory_unit.code()), d.int("_memory_unit")?, "memory unit")?;
                same(i64::from(out.share_type.code()), d.int("_share_type")?, "share type")?;
                same(out.share_value, d.text("_share_value")?, "share value")?;
                same(i64::from(out.number_cpus), d.int("_number_cpus")?, "number of CPUs")?;
                let cpus: Vec<(i64, String, i64)> = d
                    .objects("_cpu_info_array")?
                    .iter()
                    .map(|cpu| (field_int(cpu, "cpu_number"), field_text(cpu, "cpu_id"), field_int(cpu, "cpu_status")))
                    .collect();
                let ours: Vec<(i64, String, i64)> = out
                    .cpus
                    .iter()
                    .map(|cpu| (i64::from(cpu.number), cpu.id.clone(), i64::from(cpu.status.code())))
                    .collect();
                same(ours, cpus, "CPUs")?;
                let devices: Vec<(String, i64)> = d
                    .objects("_device_info_array")?
                    .iter()
                    .map(|device| (field_text(device, "device_address"), field_int(device, "device_type")))
                    .collect();
                let ours: Vec<(String, i64)> = out
                    .devices
                    .iter()
                    .map(|device| (device.address.clone(), i64::from(device.device_type.code())))
                    .collect();
                same(ours, devices, "devices")
            })
        }
        "System_Info_Query" => exchange(vector, SystemInfoQuery::new(&target), |out, d| {
            same(out.time_zone.clone(), d.text("_time_zone")?, "time zone")?;
            same(out.clock().map(|clock| clock.to_date_time_zone()), Some(d.text("_date_time")?), "date and time")?;
            same(out.cp_level.clone(), d.text("_cp_level")?, "CP level")?;
            same(out.generation_time.clone(), d.text("_gen_date_time")?, "generation time")?;
            same(out.ipl_time.clone(), d.text("_ipl_date_time")?, "IPL time")?;
            let storage = out.storage_info();
            let recorded = d.object("_storage_info")?;
            same(storage.storage, field_text(recorded, "storage"), "storage")?;
            same(storage.configured, field_text(recorded, "configured"), "configured storage")?;
            same(storage.increment, field_text(recorded, "inc"), "storage increment")?;
            same(storage.standby, field_text(recorded, "standby"), "standby storage")?;
            same(storage.reserved, field_text(recorded, "reserved"), "reserved storage")
        }),
        "System_Information_Query" => exchange(vector, SystemInformationQuery::new(&target), |out, d| {
            same(out, d.strings("_system_information_data")?, "system information")
        }),
        "Query_Asynchronous_Operation_DM" => {
            let request = QueryAsynchronousOperationDm::new(&target, kw.number("operation_id") as u32);
            exchange(vector, request, |out, _| same(out, OperationStatus::Succeeded, "operation status"))
        }
        "Response_Recovery" => {
            let request = ResponseRecovery::new(&target, kw.number("failed_request_id") as u32);
            match exchange(vector, request, |out, d| same(smapi::text::decode(&out), d.text("_response_data")?, "data"))
            {
                Ok(Some(call)) => {
                    same(call.kind, ErrorKind::RequestNotFound, "Response_Recovery 4/4").map(|_| Some(call))
                }
                other => other,
            }
        }
        "Image_Name_Query_DM" => exchange(vector, ImageNameQueryDm::new(&target), |out, d| {
            let names: Vec<String> =
                d.objects("_image_name_array")?.iter().map(|entry| field_text(entry, "image_name")).collect();
            same(out, names, "image names")
        }),
        "Image_Query_DM" => exchange(vector, ImageQueryDm::new(&target), |out, d| {
            same(out, d.strings("_image_record_array")?, "directory records")
        }),
        "Image_Definition_Query_DM" => {
            let keywords = kw.list("definition_query_directory_keyword_parameter_list");
            exchange(vector, ImageDefinitionQueryDm::new(&target, keywords), |out, d| {
                same(out, d.strings("_directory_information_data")?, "directory information")
            })
        }
        "Image_Definition_Update_DM" => {
            let keywords = kw.list("definition_update_directory_keyword_parameter_list");
            exchange(vector, ImageDefinitionUpdateDm::new(&target, keywords), check_keyword_update)
        }
        "Image_Definition_Create_DM" => {
            let keywords = kw.list("definition_create_directory_keyword_parameter_list");
            exchange(vector, ImageDefinitionCreateDm::new(&target, keywords), check_keyword_update)
        }
        "Image_Definition_Delete_DM" => {
            let keywords = kw.list("definition_delete_directory_keyword_parameter_list");
            exchange(vector, ImageDefinitionDeleteDm::new(&target, keywords), check_keyword_update)
        }
        "Image_Create_DM" => {
            let request = ImageCreateDm {
                target: target.clone(),
                prototype_name: kw.text("prototype_name"),
                initial_password: kw.text("initial_password"),
                initial_account: kw.text("initial_account_number"),
                records: kw.list("image_record_array"),
            };
            exchange(vector, request, check_operation)
        }
        "Image_Delete_DM" => match DataSecurityErase::from_code(kw.number("data_security_erase") as u8) {
            Some(erase) => exchange(vector, ImageDeleteDm::new(&target, erase), check_operation),
            None => Err("unknown data_security_erase".into()),
        },
        "Image_Lock_DM" => exchange(vector, ImageLockDm::new(&target, kw.text("device_address")), |(), _| Ok(())),
        "Image_Unlock_DM" => exchange(vector, ImageUnlockDm::new(&target, kw.text("device_address")), |(), _| Ok(())),
        "Image_Replace_DM" => {
            exchange(vector, ImageReplaceDm::new(&target, kw.list("image_record_array")), |(), _| Ok(()))
        }
        "Image_Disk_Create_DM" => {
            let (Some(unit), Some(format)) = (
                AllocationUnit::from_code(kw.number("allocation_unit_size") as u8),
                DiskFormat::from_code(kw.number("image_disk_formatting") as u8),
            ) else {
                return Some(Err("unknown unit or format".into()));
            };
            let request = ImageDiskCreateDm {
                target: target.clone(),
                vdev: kw.text("image_disk_number"),
                device_type: kw.text("image_disk_device_type"),
                allocation_type: kw.text("image_disk_allocation_type"),
                area_or_volser: kw.text("allocation_area_name_or_volser"),
                unit,
                size: kw.number("image_disk_size") as u32,
                mode: kw.text("image_disk_mode"),
                format,
                label: kw.text("image_disk_label"),
                passwords: disk_passwords(&mut kw),
            };
            exchange(vector, request, check_operation)
        }
        "Image_Disk_Copy_DM" => {
            let request = ImageDiskCopyDm {
                target: target.clone(),
                vdev: kw.text("image_disk_number"),
                source_image: kw.text("source_image_name"),
                source_vdev: kw.text("source_image_disk_number"),
                allocation_type: kw.text("image_disk_allocation_type"),
                area_or_volser: kw.text("allocation_area_name_or_volser"),
                mode: kw.text("image_disk_mode"),
                passwords: disk_passwords(&mut kw),
            };
            exchange(vector, request, check_operation)
        }
        "Image_Disk_Delete_DM" => match DataSecurityErase::from_code(kw.number("data_security_erase") as u8) {
            Some(erase) => {
                exchange(vector, ImageDiskDeleteDm::new(&target, kw.text("image_disk_number"), erase), check_operation)
            }
            None => Err("unknown data_security_erase".into()),
        },
        "Image_Volume_Space_Query_DM" => {
            let query = match kw.number("query_type") {
                1 => VolumeSpaceQuery::Definition,
                2 => VolumeSpaceQuery::Free,
                _ => VolumeSpaceQuery::Used,
            };
            let entry = match kw.number("entry_type") {
                1 => VolumeSpaceEntry::Volume,
                2 => VolumeSpaceEntry::Region,
                _ => VolumeSpaceEntry::Group,
            };
            let request = ImageVolumeSpaceQueryDm::new(&target, query, entry, kw.text("entry_names"));
            exchange(vector, request, |out, d| same(out, d.strings("_record_array")?, "volume space records"))
        }
        "Image_Disk_Query" => exchange(vector, ImageDiskQuery::new(&target, kw.text("vdasd_id")), |out, d| {
            let recorded: Vec<VirtualDasd> = d
                .objects("_vdasd_array")?
                .iter()
                .map(|disk| VirtualDasd {
                    vdev: hex_text(&disk["vdasd_vdev"]),
                    rdev: hex_text(&disk["vdasd_rdev"]),
                    access_type: field_int(disk, "vdasd_access_type") as u8,
                    device_type: hex_text(&disk["vdasd_devtype"]),
                    size: field_int(disk, "vdasd_size"),
                    unit: field_int(disk, "vdasd_unit") as u8,
                    volid: hex_text(&disk["vdasd_volid"]),
                })
                .collect();
            same(out, recorded, "virtual DASD")
        }),
        "Image_Disk_Create" => {
            let request = ImageDiskCreate::new(&target, kw.text("image_disk_number"), kw.text("image_disk_mode"));
            exchange(vector, request, |(), _| Ok(()))
        }
        "Virtual_Network_Adapter_Create_Extended_DM" => {
            let request = VirtualNetworkAdapterCreateExtendedDm {
                target: target.clone(),
                image_device_number: kw.text("image_device_number"),
                adapter_type: kw.text("adapter_type"),
                devices: kw.optional("devices").map(|devices| devices.parse().expect("numeric devices")),
                channel_path_id: kw.text("channel_path_id"),
                mac_id: kw.text("mac_id"),
            };
            exchange(vector, request, |out, d| {
                same(out.asynch_data, Vec::<String>::new(), "asynch data")?;
                same(String::new(), d.text("_mac_id")?, "MAC id")
            })
        }
        "Virtual_Network_Adapter_Connect_Vswitch_DM" => {
            let request = VirtualNetworkAdapterConnectVswitchDm::new(
                &target,
                kw.text("image_device_number"),
                kw.text("switch_name"),
            );
            exchange(vector, request, |(), _| Ok(()))
        }
        "Virtual_Network_Adapter_Connect_Vswitch" => {
            let request = VirtualNetworkAdapterConnectVswitch::new(
                &target,
                kw.text("image_device_number"),
                kw.text("switch_name"),
            );
            exchange(vector, request, |(), _| Ok(()))
        }
        "Virtual_Network_Adapter_Delete_DM" => exchange(
            vector,
            VirtualNetworkAdapterDeleteDm::new(&target, kw.text("image_device_number")),
            |(), _| Ok(()),
        ),
        "Virtual_Network_Vswitch_Create_Extended" => {
            let request = VirtualNetworkVswitchCreateExtended {
                target: target.clone(),
                switch_name: kw.text("switch_name"),
                real_device_address: kw.text("real_device_address"),
                port_name: kw.text("port_name"),
                controller_name: kw.text("controller_name"),
                connection_value: kw.text("connection_value"),
                queue_memory_limit: kw.optional("queue_memory_limit").map(|value| value.parse().expect("numeric")),
                routing_value: kw.text("routing_value"),
                transport_type: kw.text("transport_type"),
                vlan_id: kw.text("vlan_id"),
                port_type: kw.text("port_type"),
                persist: kw.yes_no("persist"),
                gvrp_value: kw.text("gvrp_value"),
                native_vlanid: kw.optional("native_vlanid").map(|value| value.parse().expect("numeric")),
                vswitch_type: kw.text("vswitch_type"),
                iptimeout: kw.optional("iptimeout").map(|value| value.parse().expect("numeric")),
                port_selection: kw.text("port_selection"),
                group_name: kw.text("group_name"),
                vswitch_domain: kw.text("vswitch_domain"),
                vswitch_global: kw.text("vswitch_global"),
            };
            exchange(vector, request, |(), _| Ok(()))
        }
        "Virtual_Network_Vswitch_Set_Extended" => {
            let request = VirtualNetworkVswitchSetExtended {
                target: target.clone(),
                switch_name: kw.text("switch_name"),
                settings: vswitch_settings(&mut kw),
            };
            exchange(vector, request, |(), _| Ok(()))
        }
        "Virtual_Network_Vswitch_Delete_Extended" => {
            let request =
                VirtualNetworkVswitchDeleteExtended::new(&target, kw.text("switch_name"), kw.yes_no("persist"));
            exchange(vector, request, |(), _| Ok(()))
        }
        "Virtual_Network_Vswitch_Query_Extended" => {
            let request =
                VirtualNetworkVswitchQueryExtended::new(&target, kw.text("switch_name"), kw.text("vepa_status"));
            exchange(vector, request, check_vswitches)
        }
        _ => return None,
    };
    Some(result.and_then(|_| kw.finish()))
}

/// Encodes `request`, compares it with the recording, decodes the recorded reply and hands a successful output
/// to `check`. A failing reply must carry the recorded error text; it is returned for further checks.
fn exchange<R: SmapiRequest>(
    vector: &Vector,
    request: R,
    check: impl FnOnce(R::Output, &Decoded) -> Result<(), String>,
) -> Result<Option<CallError>, String> {
    let encoded = encode_request(&request, &recorded_credentials()).map_err(|error| format!("encode: {error}"))?;
    if encoded != vector.request {
        return Err(format!("request differs\n  ours:     {}\n  recorded: {}", hex(&encoded), hex(&vector.request)));
    }
    let reply = Reply::parse(&vector.response).map_err(|error| format!("reply: {error}"))?;
    let decoded = Decoded(&vector.decoded);
    same(i64::from(reply.request_id), decoded.int("_request_id")?, "request id")?;
    same(i64::from(reply.return_code), decoded.int("_return_code")?, "return code")?;
    same(i64::from(reply.reason_code), decoded.int("_reason_code")?, "reason code")?;
    match interpret(&request, &reply) {
        Ok(outcome) => check(outcome.into_output(), &decoded).map(|()| None),
        Err(Error::Call(call)) => {
            same(call.function, vector.function.as_str(), "function")?;
            let recorded =
                if decoded.0.contains_key("_error_data") { decoded.strings("_error_data")? } else { Vec::new() };
            same(call.diagnostics.clone(), recorded, "error data")?;
            if call.meaning.starts_with("undocumented") {
                return Err(format!("no meaning for {}/{}", call.return_code, call.reason_code));
            }
            Ok(Some(call))
        }
        Err(other) => Err(format!("{other}: {:?}", std::error::Error::source(&other))),
    }
}

fn check_activation(out: &ActivationResult, d: &Decoded, verb: &str) -> Result<(), String> {
    same(i64::from(out.succeeded.unwrap_or(0)), d.int(&format!("_{verb}"))?, verb)?;
    same(i64::from(out.failed.unwrap_or(0)), d.int(&format!("_not_{verb}"))?, "not changed")?;
    same(out.failures.len(), d.objects("_failing_array")?.len(), "failures")
}

fn check_operation(out: DirectoryOperation, d: &Decoded) -> Result<(), String> {
    let recorded = d.int("_operation_id")?;
    let expected = if recorded == i64::from(u32::MAX) { None } else { Some(recorded as u32) };
    same(out.operation_id, expected, "operation id")
}

fn check_keyword_update(out: KeywordUpdate, d: &Decoded) -> Result<(), String> {
    same(out.asynch_data, d.strings("_asynch_data")?, "asynch data")
}

fn check_vswitches(out: Vec<VswitchInfo>, d: &Decoded) -> Result<(), String> {
    let recorded = d.objects("_vswitch_array")?;
    same(out.len(), recorded.len(), "number of virtual switches")?;
    for (ours, theirs) in out.iter().zip(recorded) {
        let attributes = [
            (&ours.switch_name, "switch_name"),
            (&ours.transport_type, "transport_type"),
            (&ours.port_type, "port_type"),
            (&ours.queue_memory_limit, "queue_memory_limit"),
            (&ours.routing_value, "routing_value"),
            (&ours.vlan_awareness, "vlan_awareness"),
            (&ours.vlan_id, "vlan_id"),
            (&ours.native_vlan_id, "native_vlan_id"),
            (&ours.mac_address, "mac_address"),
            (&ours.gvrp_request_attribute, "gvrp_request_attribute"),
            (&ours.gvrp_enabled_attribute, "gvrp_enabled_attribute"),
            (&ours.switch_status, "switch_status"),
            (&ours.link_ag, "link_ag"),
            (&ours.lag_interval, "lag_interval"),
            (&ours.lag_group, "lag_group"),
            (&ours.ip_timeout, "IP_timeout"),
            (&ours.switch_type, "switch_type"),
            (&ours.isolation_status, "isolation_status"),
            (&ours.mac_protect, "MAC_protect"),
            (&ours.user_port_based, "user_port_based"),
            (&ours.vlan_counters, "VLAN_counters"),
            (&ours.vepa_status, "vepa_status"),
            (&ours.spg_scope, "spg_scope"),
        ];
        for (value, key) in attributes {
            same(value.clone(), field_text(theirs, key), key)?;
        }
        let devices: Vec<Vec<String>> = objects_of(theirs, "real_device_info_array")
            .iter()
            .map(|device| {
                [
                    "real_device_address",
                    "virtual_device_address",
                    "controller_name",
                    "port_name",
                    "device_status",
                    "device_error_status",
                ]
                .iter()
                .map(|key| field_text(device, key))
                .collect()
            })
            .collect();
        let ours_devices: Vec<Vec<String>> = ours
            .real_devices
            .iter()
            .map(|device| {
                vec![
                    device.real_device_address.clone(),
                    device.virtual_device_address.clone(),
                    device.controller_name.clone(),
                    device.port_name.clone(),
                    device.device_status.clone(),
                    device.device_error_status.clone(),
                ]
            })
            .collect();
        same(ours_devices, devices, "real devices")?;
        let users: Vec<(String, String, String, String, Vec<String>)> = objects_of(theirs, "authorized_user_array")
            .iter()
            .map(|user| {
                let vlans =
                    objects_of(user, "vlan_array").iter().map(|vlan| field_text(vlan, "user_vlan_id")).collect();
                (
                    field_text(user, "port_num"),
                    field_text(user, "grant_userid"),
                    field_text(user, "promiscuous_mode"),
                    field_text(user, "osd_sim"),
                    vlans,
                )
            })
            .collect();
        let ours_users: Vec<(String, String, String, String, Vec<String>)> = ours
            .authorized_users
            .iter()
            .map(|user| {
                (
                    user.port_number.clone(),
                    user.grant_userid.clone(),
                    user.promiscuous_mode.clone(),
                    user.osd_sim.clone(),
                    user.vlan_ids.clone(),
                )
            })
            .collect();
        same(ours_users, users, "authorized users")?;
        let adapters: Vec<[String; 4]> = objects_of(theirs, "connected_adapter_array")
            .iter()
            .map(|adapter| {
                ["adapter_owner", "adapter_vdev", "adapter_macaddr", "adapter_type"].map(|key| field_text(adapter, key))
            })
            .collect();
        let ours_adapters: Vec<[String; 4]> = ours
            .connected_adapters
            .iter()
            .map(|adapter| {
                [adapter.owner.clone(), adapter.vdev.clone(), adapter.mac_address.clone(), adapter.adapter_type.clone()]
            })
            .collect();
        same(ours_adapters, adapters, "connected adapters")?;
        same(ours.uplink_nics.len(), objects_of(theirs, "uplink_structure").len(), "uplink NICs")?;
        same(ours.global_members.len(), objects_of(theirs, "global_member_array").len(), "global members")?;
    }
    Ok(())
}

fn disk_passwords(kw: &mut Kwargs) -> DiskPasswords {
    DiskPasswords { read: kw.text("read_password"), write: kw.text("write_password"), multi: kw.text("multi_password") }
}

fn vswitch_settings(kw: &mut Kwargs) -> VswitchSettings {
    VswitchSettings {
        grant_userid: kw.optional("grant_userid"),
        user_vlan_id: kw.optional("user_vlan_id"),
        revoke_userid: kw.optional("revoke_userid"),
        real_device_address: kw.optional("real_device_address"),
        port_name: kw.optional("port_name"),
        controller_name: kw.optional("controller_name"),
        connection_value: kw.optional("connection_value"),
        queue_memory_limit: kw.optional("queue_memory_limit"),
        routing_value: kw.optional("routing_value"),
        port_type: kw.optional("port_type"),
        persist: kw.yes_no("persist"),
        gvrp_value: kw.optional("gvrp_value"),
        mac_id: kw.optional("mac_id"),
        uplink: kw.optional("uplink"),
        osd_sim: kw.optional("osd_sim"),
        nic_userid: kw.optional("nic_userid"),
        nic_vdev: kw.optional("nic_vdev"),
        lacp: kw.optional("lacp"),
        interval: kw.optional("interval"),
        group_rdev: kw.optional("group_rdev"),
        iptimeout: kw.optional("iptimeout"),
        port_isolation: kw.optional("port_isolation"),
        promiscuous: kw.optional("promiscuous"),
        mac_protect: kw.optional("MAC_protect"),
        vlan_counters: kw.optional("VLAN_counters"),
        nic_portselection: kw.optional("nic_portselection"),
        portnum: kw.optional("portnum"),
        portnum_modify: kw.optional("portnum_modify"),
        portnum_remove: kw.optional("portnum_remove"),
        vlan_port_add: kw.optional("vlan_port_add"),
        vlan_port_remove: kw.optional("vlan_port_remove"),
        vlan_delete: kw.optional("vlan_delete"),
        vepa: kw.optional("vepa"),
        trace_size: kw.optional("trace_size"),
        ivl_vlanid: kw.optional("ivl_vlanid"),
        ivl_heartbeat: kw.optional("ivl_heartbeat"),
        lacp_group_type: kw.optional("lacp_group_type"),
    }
}

fn same<A: PartialEq<B> + Debug, B: Debug>(ours: A, recorded: B, what: &str) -> Result<(), String> {
    if ours == recorded { Ok(()) } else { Err(format!("{what}: ours {ours:?}, recorded {recorded:?}")) }
}

/// The recording's inputs; every one of them must be used, so no input is silently dropped.
struct Kwargs {
    map: Map<String, Value>,
    used: Vec<String>,
}

impl Kwargs {
    fn raw(&mut self, key: &str) -> Option<Value> {
        self.used.push(key.to_owned());
        self.map.get(key).cloned()
    }

    fn text(&mut self, key: &str) -> String {
        match self.raw(key) {
            Some(Value::String(text)) => text,
            Some(other) => panic!("kwarg {key} is not text: {other}"),
            None => String::new(),
        }
    }

    fn optional(&mut self, key: &str) -> Option<String> {
        Some(self.text(key)).filter(|text| !text.is_empty())
    }

    fn yes_no(&mut self, key: &str) -> Option<bool> {
        self.optional(key).map(|value| match value.as_str() {
            "YES" => true,
            "NO" => false,
            other => panic!("kwarg {key} is {other}, not YES or NO"),
        })
    }

    fn number(&mut self, key: &str) -> u64 {
        self.raw(key).and_then(|value| value.as_u64()).unwrap_or_else(|| panic!("kwarg {key} is a number"))
    }

    fn list(&mut self, key: &str) -> Vec<String> {
        match self.raw(key) {
            Some(Value::Array(items)) => {
                items.iter().map(|item| item.as_str().expect("list items are text").to_owned()).collect()
            }
            other => panic!("kwarg {key} is not a list: {other:?}"),
        }
    }

    fn finish(self) -> Result<(), String> {
        let unused: Vec<&String> = self.map.keys().filter(|key| !self.used.contains(key)).collect();
        if unused.is_empty() { Ok(()) } else { Err(format!("inputs not used by the typed request: {unused:?}")) }
    }
}

/// The recorder's decoded view of a reply.
struct Decoded<'a>(&'a Map<String, Value>);

impl Decoded<'_> {
    fn get(&self, key: &str) -> Result<&Value, String> {
        self.0.get(key).ok_or_else(|| format!("the recording has no {key}"))
    }

    fn int(&self, key: &str) -> Result<i64, String> {
        self.get(key)?.as_i64().ok_or_else(|| format!("{key} is not an integer"))
    }

    fn text(&self, key: &str) -> Result<String, String> {
        self.get(key)?.as_str().map(str::to_owned).ok_or_else(|| format!("{key} is not text"))
    }

    fn object(&self, key: &str) -> Result<&Value, String> {
        self.get(key)
    }

    fn objects(&self, key: &str) -> Result<&Vec<Value>, String> {
        self.get(key)?.as_array().ok_or_else(|| format!("{key} is not a list"))
    }

    /// A list of strings, without the empty string the recorder's split leaves after a final NUL.
    fn strings(&self, key: &str) -> Result<Vec<String>, String> {
        let mut strings: Vec<String> =
            self.objects(key)?.iter().map(|item| item.as_str().unwrap_or_default().to_owned()).collect();
        if strings.last().is_some_and(String::is_empty) {
            strings.pop();
        }
        Ok(strings)
    }
}

fn field_text(object: &Value, key: &str) -> String {
    object[key].as_str().unwrap_or_else(|| panic!("{key} is text in {object}")).to_owned()
}

fn field_int(object: &Value, key: &str) -> i64 {
    object[key].as_i64().unwrap_or_else(|| panic!("{key} is an integer in {object}"))
}

fn objects_of<'a>(object: &'a Value, key: &str) -> &'a Vec<Value> {
    object[key].as_array().unwrap_or_else(|| panic!("{key} is a list in {object}"))
}

fn hex_text(value: &Value) -> String {
    smapi::text::decode(&hex_decode(value["hex"].as_str().expect("hex bytes")))
}
