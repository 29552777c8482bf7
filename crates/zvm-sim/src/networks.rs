//! Virtual switches, their grants, and NICs: in the directory (`NICDEF`, through the `_DM` functions) and in
//! running guests (coupled to a switch at logon or by `Virtual_Network_Adapter_Connect_Vswitch`).
//!
//! Coupling follows CP: the switch must exist (212/40), the NIC must be QDIO (212/28) and the guest must be
//! granted on the switch (212/8); a coupled NIC is 204/20. The `_DM` connect only writes the directory (it
//! checks the NIC exists, 404/8, and is QDIO, 412/28); the grant matters when the guest logs on. Revoking a
//! grant or deleting a switch uncouples the guests' NICs.
//!
//! `Virtual_Network_Vswitch_Set_Extended` grants (212/44 when granted already, unless it changes the VLANs;
//! VLANs on a VLAN-unaware switch are 396/2846), revokes (212/8 when not granted) and changes attributes;
//! settings the simulator does not act on are kept as given. An unknown keyword is 8/3002, a bad value 8/3003,
//! a missing switch name 8/3004.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use smapi::server::{OutputWriter, ParameterReader};

use crate::answer::{
    Answer, Context, Outcome, RC_CONNECTION_DEFINITION, RC_CP, RC_DEVICE_DEFINITION, RC_IMAGE, RC_IMAGE_DEVICE,
    RC_NETWORK, SYNTAX_REQUIRED, SYNTAX_UNRECOGNIZED,
};
use crate::directory::statements::{Nicdef, Statement, normalize_vdev, valid_name};
use crate::state::State;

/// A guest allowed on a switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub user: String,
    /// VLAN ids or ranges as given (`100`, `1-256`).
    #[serde(default)]
    pub vlans: Vec<String>,
    #[serde(default)]
    pub promiscuous: bool,
}

/// A virtual switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vswitch {
    pub name: String,
    pub real_devices: Vec<String>,
    /// `CONNECT`, `DISCON` or `NOUPLINK`.
    pub connection: String,
    /// `ETHERNET` or `IP`.
    pub transport: String,
    /// The default VLAN of a VLAN-aware switch; `None` for a VLAN-unaware one.
    pub vlan_id: Option<u16>,
    pub native_vlan: Option<u16>,
    /// `ACCESS` or `TRUNK`.
    pub port_type: String,
    pub queue_memory: u8,
    /// `NONROUTER` or `PRIROUTER` (IP switches).
    pub routing: String,
    pub gvrp: bool,
    /// `QDIO` or `IVL`.
    pub switch_type: String,
    pub persist: bool,
    pub mac: String,
    pub isolation: bool,
    pub mac_protect: String,
    pub port_based: bool,
    pub counters: bool,
    pub ip_timeout: u32,
    pub grants: Vec<Grant>,
    /// Settings kept as given, not acted on.
    #[serde(default)]
    pub other: BTreeMap<String, String>,
}

impl Vswitch {
    pub fn new(name: &str, real_devices: Vec<String>) -> Vswitch {
        let hash = name.bytes().fold(0x811c_9dc5u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
        Vswitch {
            name: name.to_owned(),
            real_devices,
            connection: "CONNECT".into(),
            transport: "ETHERNET".into(),
            vlan_id: None,
            native_vlan: None,
            port_type: "ACCESS".into(),
            queue_memory: 8,
            routing: "NONROUTER".into(),
            gvrp: true,
            switch_type: "QDIO".into(),
            persist: true,
            mac: format!("02-00-5B-{:02X}-{:02X}-{:02X}", (hash >> 16) & 0xFF, (hash >> 8) & 0xFF, hash & 0xFF),
            isolation: false,
            mac_protect: "UNSPECIFIED".into(),
            port_based: false,
            counters: false,
            ip_timeout: 5,
            grants: Vec::new(),
            other: BTreeMap::new(),
        }
    }

    fn grant(&self, user: &str) -> Option<&Grant> {
        self.grants.iter().find(|grant| grant.user == user)
    }

    /// The attribute line of `Virtual_Network_Vswitch_Query_Extended`.
    fn attributes(&self) -> String {
        let aware = self.vlan_id.is_some();
        let status = if !self.real_devices.is_empty() && self.connection == "CONNECT" { 8 } else { 3 };
        [
            self.name.clone(),
            self.transport.clone(),
            if aware { self.port_type.clone() } else { "NONE".into() },
            self.queue_memory.to_string(),
            if self.transport == "IP" { self.routing.clone() } else { "NA".into() },
            if aware { "AWARE".into() } else { "UNAWARE".into() },
            format!("{:05}", self.vlan_id.unwrap_or(0)),
            format!("{:05}", self.native_vlan.or(self.vlan_id).unwrap_or(0)),
            self.mac.clone(),
            if aware && self.gvrp { "GVRP".into() } else { "NOGVRP".into() },
            "NOGVRP".into(),
            status.to_string(),
            "LAG: 0 (NOGRP)".into(),
            self.ip_timeout.to_string(),
            self.switch_type.clone(),
            if self.isolation { "ISOLATION".into() } else { "NOISOLATION".into() },
            self.mac_protect.clone(),
            if self.port_based { "PORTBASED".into() } else { "USERBASED".into() },
            if self.counters { "COUNTERS".into() } else { "NOCOUNTERS".into() },
            "OFF".into(),
            "(NONE)".into(),
        ]
        .join(" ")
    }
}

/// Whether `userid`'s NIC of `adapter_type` may couple to `switch`.
pub fn check_coupling(state: &State, userid: &str, switch: &str, adapter_type: &str) -> Result<(), Answer> {
    let vswitch = state.vswitches.get(switch).ok_or_else(|| Answer::code(RC_NETWORK, 40))?;
    if adapter_type != "QDIO" {
        return Err(Answer::code(RC_NETWORK, 28));
    }
    if vswitch.grant(userid).is_none() {
        return Err(Answer::code(RC_NETWORK, 8));
    }
    Ok(())
}

/// Uncouples every running NIC of `user` (or of everyone, for `None`) from `switch`.
fn uncouple(state: &mut State, switch: &str, user: Option<&str>) {
    for (userid, guest) in &mut state.guests {
        if user.is_some_and(|user| user != userid) {
            continue;
        }
        for nic in guest.nics.values_mut() {
            if nic.vswitch.as_deref() == Some(switch) {
                nic.vswitch = None;
            }
        }
    }
}

fn yes_no(value: &str) -> Result<bool, Answer> {
    match value.to_uppercase().as_str() {
        "YES" | "ON" => Ok(true),
        "NO" | "OFF" => Ok(false),
        _ => Err(Answer::invalid_operand()),
    }
}

fn vlan(value: &str) -> Result<u16, Answer> {
    value.parse::<u16>().ok().filter(|vlan| (1..=4094).contains(vlan)).ok_or_else(Answer::invalid_operand)
}

fn real_devices(value: &str) -> Result<Vec<String>, Answer> {
    let upper = value.to_uppercase();
    if upper == "NONE" {
        return Ok(Vec::new());
    }
    let devices: Vec<String> = upper
        .split_whitespace()
        .map(|device| normalize_vdev(device.trim_end_matches(".P")).ok_or_else(Answer::invalid_operand))
        .collect::<Result<_, _>>()?;
    if devices.is_empty() || devices.len() > 3 {
        return Err(Answer::invalid_operand());
    }
    Ok(devices)
}

/// Applies one attribute shared by create and set; false if the key is not one.
fn set_attribute(vswitch: &mut Vswitch, key: &str, value: &str) -> Result<bool, Answer> {
    let upper = value.to_uppercase();
    match key {
        "real_device_address" => vswitch.real_devices = real_devices(value)?,
        "connection_value" => match upper.as_str() {
            "CONNECT" | "DISCON" | "NOUPLINK" => vswitch.connection = upper,
            _ => return Err(Answer::invalid_operand()),
        },
        "queue_memory_limit" => {
            vswitch.queue_memory =
                value.parse().ok().filter(|limit| (1..=8).contains(limit)).ok_or_else(Answer::invalid_operand)?
        }
        "routing_value" => match upper.as_str() {
            "NONROUTER" | "PRIROUTER" => vswitch.routing = upper,
            _ => return Err(Answer::invalid_operand()),
        },
        "port_type" => match upper.as_str() {
            "ACCESS" | "TRUNK" => vswitch.port_type = upper,
            _ => return Err(Answer::invalid_operand()),
        },
        "gvrp_value" => match upper.as_str() {
            "GVRP" => vswitch.gvrp = true,
            "NOGVRP" => vswitch.gvrp = false,
            _ => return Err(Answer::invalid_operand()),
        },
        "persist" => vswitch.persist = yes_no(value)?,
        "iptimeout" => {
            vswitch.ip_timeout =
                value.parse().ok().filter(|timeout| (1..=240).contains(timeout)).ok_or_else(Answer::invalid_operand)?
        }
        "port_isolation" => vswitch.isolation = yes_no(value)?,
        "mac_protect" => match upper.as_str() {
            "ON" | "YES" => vswitch.mac_protect = "MACPROTECT".into(),
            "OFF" | "NO" => vswitch.mac_protect = "NOMACPROTECT".into(),
            "UNSPECIFIED" => vswitch.mac_protect = upper,
            _ => return Err(Answer::invalid_operand()),
        },
        "vlan_counters" => vswitch.counters = yes_no(value)?,
        "mac_id" => {
            let suffix =
                u32::from_str_radix(value, 16).ok().filter(|_| value.len() == 6).ok_or_else(Answer::invalid_operand)?;
            vswitch.mac =
                format!("02-00-00-{:02X}-{:02X}-{:02X}", (suffix >> 16) & 0xFF, (suffix >> 8) & 0xFF, suffix & 0xFF);
        }
        "port_name" | "controller_name" | "group_name" | "vswitch_domain" | "vswitch_global" | "uplink" | "osd_sim"
        | "nic_userid" | "nic_vdev" | "lacp" | "interval" | "group_rdev" | "nic_portselection" | "portnum"
        | "portnum_modify" | "portnum_remove" | "vlan_port_add" | "vlan_port_remove" | "vlan_delete" | "vepa"
        | "trace_size" | "ivl_vlanid" | "ivl_heartbeat" | "lacp_group_type" => {
            vswitch.other.insert(key.to_owned(), value.to_owned());
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The unframed pairs with lower-case keys, and the switch name (8/3004 when missing).
fn switch_pairs(reader: &mut ParameterReader<'_>) -> Result<(String, Vec<(String, String)>), Answer> {
    let pairs: Vec<(String, String)> =
        reader.unframed_pairs()?.into_iter().map(|(key, value)| (key.to_lowercase(), value)).collect();
    let name = pairs
        .iter()
        .find(|(key, _)| key == "switch_name")
        .map(|(_, value)| value.to_uppercase())
        .ok_or_else(Answer::missing_keyword)?;
    Ok((name, pairs))
}

/// `Virtual_Network_Vswitch_Create_Extended`.
pub fn vswitch_create(state: &mut State, _context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let (name, pairs) = switch_pairs(reader)?;
    if !valid_name(&name) {
        return Err(Answer::invalid_operand());
    }
    if state.vswitches.contains_key(&name) {
        return Err(Answer::code(RC_NETWORK, 36));
    }
    let mut vswitch = Vswitch::new(&name, Vec::new());
    for (key, value) in pairs.iter().filter(|(key, _)| key != "switch_name") {
        let upper = value.to_uppercase();
        match key.as_str() {
            "transport_type" => match upper.as_str() {
                "ETHERNET" | "IP" => vswitch.transport = upper,
                _ => return Err(Answer::invalid_operand()),
            },
            "vlan_id" => vswitch.vlan_id = if upper == "UNAWARE" { None } else { Some(vlan(value)?) },
            "native_vlanid" => vswitch.native_vlan = Some(vlan(value)?),
            "vswitch_type" => match upper.as_str() {
                "QDIO" | "IVL" => vswitch.switch_type = upper,
                _ => return Err(Answer::invalid_operand()),
            },
            "port_selection" => match upper.as_str() {
                "USERBASED" | "PORTBASED" => vswitch.port_based = upper == "PORTBASED",
                _ => return Err(Answer::invalid_operand()),
            },
            other => {
                if !set_attribute(&mut vswitch, other, value)? {
                    return Err(Answer::code(crate::answer::RC_KEYWORD, 3002));
                }
            }
        }
    }
    state.vswitches.insert(name, vswitch);
    Ok(Answer::ok())
}

/// `Virtual_Network_Vswitch_Set_Extended`.
pub fn vswitch_set(state: &mut State, _context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let (name, pairs) = switch_pairs(reader)?;
    let mut vswitch = state.vswitches.get(&name).cloned().ok_or_else(|| Answer::code(RC_NETWORK, 40))?;
    let value_of = |wanted: &str| pairs.iter().find(|(key, _)| key == wanted).map(|(_, value)| value.clone());
    let vlans: Option<Vec<String>> =
        value_of("user_vlan_id").map(|vlans| vlans.split_whitespace().map(str::to_owned).collect());
    let promiscuous = value_of("promiscuous").map(|value| yes_no(&value)).transpose()?;
    let mut revoked = None;
    if let Some(user) = value_of("grant_userid").map(|user| user.to_uppercase()) {
        if !valid_name(&user) {
            return Err(Answer::invalid_operand());
        }
        if vlans.is_some() && vswitch.vlan_id.is_none() {
            return Err(Answer::code(RC_CP, 2846));
        }
        match vswitch.grants.iter_mut().find(|grant| grant.user == user) {
            Some(grant) if vlans.as_ref().is_some_and(|vlans| *vlans != grant.vlans) => {
                grant.vlans = vlans.clone().unwrap_or_default();
            }
            Some(_) => return Err(Answer::code(RC_NETWORK, 44)),
            None => vswitch.grants.push(Grant {
                user,
                vlans: vlans.clone().unwrap_or_default(),
                promiscuous: promiscuous.unwrap_or(false),
            }),
        }
    } else if vlans.is_some() {
        // A VLAN change names the guest it applies to.
        return Err(Answer::missing_keyword());
    }
    if let Some(user) = value_of("revoke_userid").map(|user| user.to_uppercase()) {
        let before = vswitch.grants.len();
        vswitch.grants.retain(|grant| grant.user != user);
        if vswitch.grants.len() == before {
            return Err(Answer::code(RC_NETWORK, 8));
        }
        revoked = Some(user);
    }
    for (key, value) in &pairs {
        match key.as_str() {
            "switch_name" | "grant_userid" | "user_vlan_id" | "revoke_userid" | "promiscuous" => {}
            other => {
                if !set_attribute(&mut vswitch, other, value)? {
                    return Err(Answer::code(crate::answer::RC_KEYWORD, 3002));
                }
            }
        }
    }
    state.vswitches.insert(name.clone(), vswitch);
    if let Some(user) = revoked {
        uncouple(state, &name, Some(&user));
    }
    Ok(Answer::ok())
}

/// `Virtual_Network_Vswitch_Delete_Extended`.
pub fn vswitch_delete(state: &mut State, _context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let (name, _) = switch_pairs(reader)?;
    if state.vswitches.remove(&name).is_none() {
        return Err(Answer::code(RC_NETWORK, 40));
    }
    uncouple(state, &name, None);
    Ok(Answer::ok())
}

/// `Virtual_Network_Vswitch_Query_Extended`: one switch, or `*` for all.
pub fn vswitch_query(state: &mut State, _context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let (name, _) = switch_pairs(reader)?;
    let switches: Vec<&Vswitch> = if name == "*" {
        state.vswitches.values().collect()
    } else {
        vec![state.vswitches.get(&name).ok_or_else(|| Answer::code(RC_NETWORK, 40))?]
    };
    let mut output = OutputWriter::new();
    output.int4(switches.len() as i32);
    for vswitch in switches {
        let devices: Vec<String> = vswitch
            .real_devices
            .iter()
            .map(|device| {
                if vswitch.connection == "CONNECT" {
                    format!("{device} 0600 DTCVSW1 (NONE) 1 0")
                } else {
                    format!("{device} 0000 (NONE) (NONE) 0 0")
                }
            })
            .collect();
        let users: Vec<String> = vswitch
            .grants
            .iter()
            .map(|grant| {
                let mut line = format!(
                    "0000 {} {} NOOSDSIM {} ",
                    grant.user,
                    if grant.promiscuous { "PROM" } else { "NOPROM" },
                    grant.vlans.len()
                );
                for vlan in &grant.vlans {
                    line.push_str(vlan);
                    line.push(' ');
                }
                line
            })
            .collect();
        let mut adapters = Vec::new();
        for (userid, guest) in &state.guests {
            for (vdev, nic) in &guest.nics {
                if nic.vswitch.as_deref() == Some(vswitch.name.as_str()) {
                    adapters.push(format!("{userid} {vdev} {} {}", nic.mac, nic.adapter_type));
                }
            }
        }
        output.framed(|structure| {
            structure.nul_list(&[vswitch.attributes()]).nul_list(&devices).nul_list(&users).nul_list(&adapters);
            structure.nul_list::<&str>(&[]).nul_list::<&str>(&[]);
        });
    }
    Ok(Answer::output(output))
}

/// The entry of the target, unlocked, for a NIC change.
fn nic_entry<'a>(state: &'a mut State, target: &str) -> Result<&'a mut crate::directory::Entry, Answer> {
    let entry = state.directory.entry_mut(target)?;
    entry.check_unlocked()?;
    Ok(entry)
}

/// `Virtual_Network_Adapter_Create_Extended_DM`: adds a NICDEF.
pub fn adapter_create_dm(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let pairs = reader.framed_pairs()?;
    let mut nic =
        Nicdef { vdev: String::new(), adapter_type: "QDIO".into(), devices: 3, lan: None, options: Vec::new() };
    for (key, value) in &pairs {
        let upper = value.trim().to_uppercase();
        match key.to_lowercase().as_str() {
            "image_device_number" => nic.vdev = normalize_vdev(&upper).ok_or_else(Answer::invalid_operand)?,
            "adapter_type" => {
                nic.adapter_type = match upper.as_str() {
                    "QDIO" => "QDIO".into(),
                    "HIPERSOCKETS" | "HIPERS" => "HIPERS".into(),
                    _ => return Err(Answer::invalid_operand()),
                }
            }
            "devices" => {
                nic.devices = upper
                    .parse()
                    .ok()
                    .filter(|devices| (3..=3072).contains(devices))
                    .ok_or_else(Answer::invalid_operand)?
            }
            "channel_path_id" => {
                if upper.len() != 2 || !upper.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                    return Err(Answer::invalid_operand());
                }
                nic.options.push(("CHPID".into(), upper));
            }
            "mac_id" => {
                if upper.len() != 6 || !upper.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                    return Err(Answer::invalid_operand());
                }
                nic.options.push(("MACID".into(), upper));
            }
            _ => return Err(Answer::code(crate::answer::RC_KEYWORD, 3002)),
        }
    }
    if nic.vdev.is_empty() {
        return Err(Answer::missing_keyword());
    }
    let entry = nic_entry(state, &context.target)?;
    if entry.has_device(&nic.vdev) {
        return Err(Answer::code(RC_DEVICE_DEFINITION, 4));
    }
    entry.statements.push(Statement::Nicdef(nic));
    Ok(Answer::ok())
}

fn nic_vdev(reader: &mut ParameterReader<'_>) -> Result<String, Answer> {
    let vdev = reader.string(4)?;
    if vdev.is_empty() {
        return Err(Answer::syntax(1, SYNTAX_REQUIRED));
    }
    normalize_vdev(&vdev).ok_or_else(|| Answer::syntax(1, SYNTAX_UNRECOGNIZED))
}

fn switch_name(reader: &mut ParameterReader<'_>) -> Result<String, Answer> {
    let name = reader.string(8)?.to_uppercase();
    if !valid_name(&name) {
        return Err(Answer::syntax(2, if name.is_empty() { SYNTAX_REQUIRED } else { SYNTAX_UNRECOGNIZED }));
    }
    Ok(name)
}

/// `Virtual_Network_Adapter_Connect_Vswitch_DM`: `NICDEF vdev ... LAN SYSTEM switch` in the directory.
pub fn adapter_connect_dm(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let vdev = nic_vdev(reader)?;
    let switch = switch_name(reader)?;
    let entry = nic_entry(state, &context.target)?;
    let locked = entry.device_locks.contains_key(&vdev);
    let nic = entry
        .statements
        .iter_mut()
        .find_map(|statement| match statement {
            Statement::Nicdef(nic) if nic.vdev == vdev => Some(nic),
            _ => None,
        })
        .ok_or_else(|| Answer::code(RC_DEVICE_DEFINITION, 8))?;
    if locked {
        return Err(Answer::code(RC_DEVICE_DEFINITION, 12));
    }
    if nic.adapter_type != "QDIO" {
        return Err(Answer::code(RC_CONNECTION_DEFINITION, 28));
    }
    nic.lan = Some(("SYSTEM".into(), switch));
    Ok(Answer::ok())
}

/// `Virtual_Network_Adapter_Delete_DM`: removes the NICDEF.
pub fn adapter_delete_dm(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let vdev = nic_vdev(reader)?;
    let entry = nic_entry(state, &context.target)?;
    if !entry.nics().any(|nic| nic.vdev == vdev) {
        return Err(Answer::code(RC_DEVICE_DEFINITION, 8));
    }
    if entry.device_locks.contains_key(&vdev) {
        return Err(Answer::code(RC_DEVICE_DEFINITION, 12));
    }
    entry.remove_device(&vdev);
    Ok(Answer::ok())
}

/// `Virtual_Network_Adapter_Connect_Vswitch`: couples a running guest's NIC.
pub fn adapter_connect(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let vdev = nic_vdev(reader)?;
    let switch = switch_name(reader)?;
    let guest = state.guests.get(&context.target).ok_or_else(|| Answer::code(RC_IMAGE, 12))?;
    let nic = guest.nics.get(&vdev).ok_or_else(|| Answer::code(RC_IMAGE_DEVICE, 8))?;
    check_coupling(state, &context.target, &switch, &nic.adapter_type)?;
    if nic.vswitch.is_some() {
        return Err(Answer::code(RC_IMAGE_DEVICE, 20));
    }
    if let Some(nic) = state.guests.get_mut(&context.target).and_then(|guest| guest.nics.get_mut(&vdev)) {
        nic.vswitch = Some(switch);
    }
    Ok(Answer::ok())
}
