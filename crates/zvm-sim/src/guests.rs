//! Guests at run time: logon (`Image_Activate`), logoff (`Image_Deactivate`), `Image_Status_Query` and
//! `Image_Active_Configuration_Query`.
//!
//! At logon the guest takes a snapshot of its directory entry (with its profile): storage, CPU share, CPUs
//! (`CPU` statements and `COMMAND DEFINE CPU`), devices (console, spool, minidisks and links) and NICs. Later
//! directory changes do not touch a running guest, as on z/VM. NICs defined on a virtual switch are coupled at
//! logon when the guest is granted on the switch; otherwise they stay uncoupled (as CP leaves them).
//!
//! Codes: 200/4 when there is no entry, or when the entry's password is NOLOG (CP does not log such a user
//! on); 200/8 already logged on; 200/12 not logged on; 200/16 already going down. `Image_Status_Query` answers
//! 0/12 for a guest that is not logged on.
//!
//! Deactivation: `IMMED` logs off at once (0/0). Otherwise the guest gets the shutdown signal and logs off when
//! its operating system is down (the configured shutdown time) or when the grace time runs out (`WITHIN n`
//! seconds, `BY hh:mm[:ss]` in UTC, or the system signal timeout), whichever comes first; the reply waits for
//! that and says within how many seconds (0/n). A grace time above 65535 seconds is 200/36.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use smapi::server::{OutputWriter, ParameterReader};

use crate::answer::{Answer, Context, Outcome, RC_IMAGE, SYNTAX_UNRECOGNIZED, whole_seconds_up};
use crate::directory::statements::{Statement, normalize_vdev, storage_bytes};
use crate::networks;
use crate::state::State;

/// One logged-on guest, as it was when it logged on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guest {
    /// Logon time, milliseconds since the Unix epoch.
    pub logged_on_at: u64,
    pub storage: String,
    /// `RELATIVE 100` or `ABSOLUTE 10%`.
    pub share: String,
    pub cpus: Vec<RunningCpu>,
    pub devices: Vec<RunningDevice>,
    pub nics: BTreeMap<String, RunningNic>,
    /// Set while the guest is shutting down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivating_since: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningCpu {
    pub address: String,
    pub base: bool,
}

/// A device and its `Image_Active_Configuration_Query` type: 1 console, 2 reader, 3 punch, 4 printer, 5 DASD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningDevice {
    pub kind: u8,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningNic {
    pub adapter_type: String,
    /// `02-00-5A-xx-xx-xx`.
    pub mac: String,
    /// The virtual switch it is coupled to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vswitch: Option<String>,
}

/// The MAC address of a NIC: the simulator's prefix and the NICDEF's MACID, or the next free suffix.
pub fn mac_address(state: &mut State, macid: Option<&str>) -> String {
    let suffix = match macid.and_then(|macid| u32::from_str_radix(macid, 16).ok()).filter(|value| *value <= 0xFF_FFFF) {
        Some(value) => value,
        None => {
            let value = state.next_mac & 0xFF_FFFF;
            state.next_mac = state.next_mac.wrapping_add(1);
            value
        }
    };
    format!("02-00-5A-{:02X}-{:02X}-{:02X}", (suffix >> 16) & 0xFF, (suffix >> 8) & 0xFF, suffix & 0xFF)
}

/// `Image_Activate`.
pub fn activate(state: &mut State, context: &Context, _reader: &mut ParameterReader<'_>) -> Outcome {
    let target = &context.target;
    let entry = state.directory.entries.get(target).ok_or_else(|| Answer::code(RC_IMAGE, 4))?;
    if entry.user().is_none_or(|user| user.password == "NOLOG") {
        return Err(Answer::code(RC_IMAGE, 4));
    }
    if let Some(guest) = state.guests.get(target) {
        let reason = if guest.deactivating_since.is_some() { 16 } else { 8 };
        return Err(Answer::code(RC_IMAGE, reason));
    }
    let statements = state.directory.effective(target);
    let mut guest = Guest {
        logged_on_at: context.now_millis(),
        storage: entry.user().map(|user| user.storage.clone()).unwrap_or_else(|| "1M".into()),
        share: "RELATIVE 100".into(),
        cpus: Vec::new(),
        devices: Vec::new(),
        nics: BTreeMap::new(),
        deactivating_since: None,
    };
    let mut nic_definitions = Vec::new();
    for statement in &statements {
        match statement {
            Statement::Share { kind, value } => guest.share = format!("{kind} {value}"),
            Statement::Cpu { address, base, .. } => {
                guest.cpus.push(RunningCpu { address: address.clone(), base: *base })
            }
            Statement::Mdisk(disk) => guest.devices.push(RunningDevice { kind: 5, address: disk.vdev.clone() }),
            Statement::Nicdef(nic) => nic_definitions.push(nic.clone()),
            Statement::Other(text) => {
                let words: Vec<&str> = text.split_whitespace().collect();
                let device = match words.as_slice() {
                    ["CONSOLE", vdev, ..] => Some((1, *vdev)),
                    ["SPOOL", vdev, _, "READER", ..] => Some((2, *vdev)),
                    ["SPOOL", vdev, _, "PUNCH", ..] => Some((3, *vdev)),
                    ["SPOOL", vdev, ..] => Some((4, *vdev)),
                    ["LINK", _, _, vdev, ..] => Some((5, *vdev)),
                    ["COMMAND", "DEFINE", "CPU", address, ..] => {
                        if let Ok(Statement::Cpu { address, .. }) = Statement::parse(&format!("CPU {address}")) {
                            guest.cpus.push(RunningCpu { address, base: false });
                        }
                        None
                    }
                    _ => None,
                };
                if let Some((kind, vdev)) =
                    device.and_then(|(kind, vdev)| normalize_vdev(vdev).map(|vdev| (kind, vdev)))
                {
                    guest.devices.push(RunningDevice { kind, address: vdev });
                }
            }
            _ => {}
        }
    }
    if guest.cpus.is_empty() {
        guest.cpus.push(RunningCpu { address: "00".into(), base: true });
    }
    if !guest.cpus.iter().any(|cpu| cpu.base) {
        guest.cpus[0].base = true;
    }
    guest.cpus.sort_by(|left, right| left.address.cmp(&right.address));
    guest.cpus.dedup_by(|left, right| left.address == right.address);
    guest.devices.sort_by(|left, right| left.address.cmp(&right.address));
    for nic in nic_definitions {
        let mac = mac_address(state, nic.option("MACID"));
        let vswitch = nic
            .vswitch()
            .filter(|switch| networks::check_coupling(state, target, switch, &nic.adapter_type).is_ok())
            .map(str::to_owned);
        guest.nics.insert(nic.vdev.clone(), RunningNic { adapter_type: nic.adapter_type.clone(), mac, vswitch });
    }
    state.guests.insert(target.clone(), guest);
    Ok(Answer::ok())
}

/// How a deactivation goes on after the request was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deactivation {
    /// Answered at once.
    Done(Answer),
    /// The guest logs off after this long; then [`finish_deactivation`] answers.
    After(Duration),
}

/// The grace time of a force time: `IMMED` (zero), `WITHIN n`, `BY hh:mm[:ss]` (UTC), or empty (the signal
/// timeout).
fn grace_time(force_time: &str, context: &Context) -> Result<Duration, Answer> {
    let upper = force_time.to_uppercase();
    let words: Vec<&str> = upper.split_whitespace().collect();
    let invalid = || Answer::syntax(1, SYNTAX_UNRECOGNIZED);
    let seconds: u64 = match words.as_slice() {
        [] => return Ok(context.timing.signal_timeout),
        ["IMMED"] => 0,
        ["WITHIN", seconds] => seconds.parse::<u64>().ok().filter(|seconds| *seconds > 0).ok_or_else(invalid)?,
        ["BY", time] => {
            let parts: Vec<u64> =
                time.split(':').map(|part| part.parse::<u64>()).collect::<Result<_, _>>().map_err(|_| invalid())?;
            let (hour, minute, second) = match parts.as_slice() {
                [hour, minute] => (*hour, *minute, 0),
                [hour, minute, second] => (*hour, *minute, *second),
                _ => return Err(invalid()),
            };
            if hour > 23 || minute > 59 || second > 59 {
                return Err(invalid());
            }
            let now = context.now_millis() / 1000 % 86_400;
            let then = hour * 3600 + minute * 60 + second;
            (then + 86_400 - now) % 86_400
        }
        _ => return Err(invalid()),
    };
    if seconds > 65_535 {
        return Err(Answer::code(RC_IMAGE, 36));
    }
    Ok(Duration::from_secs(seconds))
}

/// `Image_Deactivate`: checks the request and starts the shutdown.
pub fn begin_deactivation(
    state: &mut State,
    context: &Context,
    reader: &mut ParameterReader<'_>,
) -> Result<Deactivation, Answer> {
    let force_time = reader.string(12)?;
    let grace = grace_time(&force_time, context)?;
    let guest = state.guests.get_mut(&context.target).ok_or_else(|| Answer::code(RC_IMAGE, 12))?;
    if guest.deactivating_since.is_some() {
        return Err(Answer::code(RC_IMAGE, 16));
    }
    if grace.is_zero() {
        state.guests.remove(&context.target);
        return Ok(Deactivation::Done(Answer::ok()));
    }
    guest.deactivating_since = Some(context.now_millis());
    Ok(Deactivation::After(grace.min(context.timing.guest_shutdown)))
}

/// Logs the guest off after its shutdown and answers how long it took.
pub fn finish_deactivation(state: &mut State, userid: &str, waited: Duration) -> Answer {
    match state.guests.get(userid) {
        Some(guest) if guest.deactivating_since.is_some() => {
            state.guests.remove(userid);
            Answer::code(0, whole_seconds_up(waited))
        }
        // Logged off meanwhile (by an IMMED deactivation from elsewhere): it is down all the same.
        _ => Answer::code(0, whole_seconds_up(waited)),
    }
}

/// `Image_Status_Query`: the target if it is logged on (0/0), else 0/12; `*` lists every logged-on guest.
pub fn status_query(state: &mut State, context: &Context, _reader: &mut ParameterReader<'_>) -> Outcome {
    let mut output = OutputWriter::new();
    if context.target == "*" {
        let names: Vec<&String> = state.guests.keys().collect();
        output.string_array(&names);
        return Ok(Answer::output(output));
    }
    if !state.guests.contains_key(&context.target) {
        return Ok(Answer::code(0, 12));
    }
    output.string_array(&[context.target.as_str()]);
    Ok(Answer::output(output))
}

/// `Image_Active_Configuration_Query`: memory, share, CPUs and devices of a logged-on guest.
pub fn active_configuration_query(state: &mut State, context: &Context, _reader: &mut ParameterReader<'_>) -> Outcome {
    let guest = state.guests.get(&context.target).ok_or_else(|| Answer::code(RC_IMAGE, 12))?;
    let bytes = storage_bytes(&guest.storage).unwrap_or(1 << 20);
    let (size, unit) = if bytes.is_multiple_of(1 << 30) {
        (bytes >> 30, 3)
    } else if bytes.is_multiple_of(1 << 20) {
        (bytes >> 20, 2)
    } else {
        (bytes >> 10, 1)
    };
    let (share_kind, share_value) = guest.share.split_once(' ').unwrap_or(("RELATIVE", "100"));
    let mut output = OutputWriter::new();
    output
        .int4(i32::try_from(size).unwrap_or(i32::MAX))
        .int1(unit)
        .int1(if share_kind == "ABSOLUTE" { 2 } else { 1 })
        .string(share_value)
        .int4(guest.cpus.len() as i32);
    output.framed(|cpus| {
        for cpu in &guest.cpus {
            let number = i32::from_str_radix(&cpu.address, 16).unwrap_or(0);
            cpus.framed(|structure| {
                structure.int4(number).string(&format!("FF{:02X}51512964{:04X}", number, 0)).int1(if cpu.base {
                    1
                } else {
                    4
                });
            });
        }
    });
    output.framed(|devices| {
        for device in &guest.devices {
            devices.framed(|structure| {
                structure.int1(device.kind).string(&device.address);
            });
        }
    });
    Ok(Answer::output(output))
}
