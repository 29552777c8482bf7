//! The user directory as DirMaint keeps it: entries of statements ([`statements`]), profiles that entries
//! INCLUDE, and locks; the functions that read and change it (this module), and its keyword view
//! ([`keywords`]: `Image_Definition_Query_DM`, `Image_Definition_Update_DM`).
//!
//! Rules the simulator enforces, with the codes z/VM answers:
//! - create: the name is free (400/8), the records start with one USER statement for the target (400/40 for
//!   several), an INCLUDEd profile exists (436/4), automatic minidisks find space (420/8 unknown group, 408/24
//!   no space); prototypes are not modelled (400/20);
//! - a locked entry refuses every change but a replace by the lock holder (400/12); a replace needs the lock
//!   (400/24) and releases it, as DirMaint's REPLACE does; locking a locked entry is 400/12, unlocking an
//!   unlocked one 400/24 (404/12 and 404/24 for device locks);
//! - delete: the guest must be logged off (596/6831, DirMaint's "still logged on"); its minidisks' space is
//!   freed.
//!
//! Malformed directory statements are a syntax error in the records parameter (24, reason `pp19`).

pub mod keywords;
pub mod statements;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use smapi::server::{OutputWriter, ParameterReader};
use tracing::info;

use crate::answer::{
    Answer, Context, Outcome, RC_DEVICE_DEFINITION, RC_DIRECTORY, RC_DIRMAINT, RC_DISK_DEFINITION, RC_PROFILE,
    SYNTAX_REQUIRED, SYNTAX_UNRECOGNIZED,
};
use crate::pools::Pools;
use crate::state::State;
use statements::{Extent, Minidisk, Statement, UserStatement, normalize_vdev, padded};

/// The longest directory record.
pub const RECORD_BYTES: usize = 72;

/// One user's directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub statements: Vec<Statement>,
    /// Who holds the lock on the whole entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// Locked devices and who holds each lock.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub device_locks: BTreeMap<String, String>,
}

impl Entry {
    pub fn new(statements: Vec<Statement>) -> Entry {
        Entry { statements, lock: None, device_locks: BTreeMap::new() }
    }

    pub fn user(&self) -> Option<&UserStatement> {
        self.statements.iter().find_map(|statement| match statement {
            Statement::User(user) => Some(user),
            _ => None,
        })
    }

    pub fn user_mut(&mut self) -> Option<&mut UserStatement> {
        self.statements.iter_mut().find_map(|statement| match statement {
            Statement::User(user) => Some(user),
            _ => None,
        })
    }

    pub fn minidisks(&self) -> impl Iterator<Item = &Minidisk> {
        self.statements.iter().filter_map(|statement| match statement {
            Statement::Mdisk(disk) => Some(disk),
            _ => None,
        })
    }

    pub fn minidisk(&self, vdev: &str) -> Option<&Minidisk> {
        self.minidisks().find(|disk| disk.vdev == vdev)
    }

    pub fn nics(&self) -> impl Iterator<Item = &statements::Nicdef> {
        self.statements.iter().filter_map(|statement| match statement {
            Statement::Nicdef(nic) => Some(nic),
            _ => None,
        })
    }

    pub fn has_device(&self, vdev: &str) -> bool {
        self.statements.iter().any(|statement| statement.device().as_deref() == Some(vdev))
    }

    /// Adds a control statement before the first device statement.
    pub fn insert_control(&mut self, statement: Statement) {
        let index = self.statements.iter().position(Statement::is_device).unwrap_or(self.statements.len());
        self.statements.insert(index, statement);
    }

    /// Replaces the first statement `matches` selects, or adds the statement as a control statement.
    pub fn set_control(&mut self, statement: Statement, matches: impl Fn(&Statement) -> bool) {
        match self.statements.iter().position(matches) {
            Some(index) => self.statements[index] = statement,
            None => self.insert_control(statement),
        }
    }

    /// Removes the statement defining `vdev`.
    pub fn remove_device(&mut self, vdev: &str) -> Option<Statement> {
        let index = self.statements.iter().position(|statement| statement.device().as_deref() == Some(vdev))?;
        Some(self.statements.remove(index))
    }

    /// 400/12 when the entry is locked.
    pub fn check_unlocked(&self) -> Result<(), Answer> {
        if self.lock.is_some() { Err(Answer::code(RC_DIRECTORY, 12)) } else { Ok(()) }
    }

    /// 400/12 when the entry is locked, 404/12 when the device is.
    pub fn check_device_unlocked(&self, vdev: &str) -> Result<(), Answer> {
        self.check_unlocked()?;
        if self.device_locks.contains_key(vdev) { Err(Answer::code(RC_DEVICE_DEFINITION, 12)) } else { Ok(()) }
    }

    /// The entry as `Image_Query_DM` returns it: one 72-column record per statement.
    pub fn records(&self) -> Vec<String> {
        self.statements.iter().map(|statement| padded(&statement.render())).collect()
    }
}

/// Every entry and profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    pub entries: BTreeMap<String, Entry>,
    /// Profile name to its statements (after the PROFILE statement).
    #[serde(default)]
    pub profiles: BTreeMap<String, Vec<Statement>>,
}

impl Directory {
    /// The entry of `target`, or 400/4.
    pub fn entry(&self, target: &str) -> Result<&Entry, Answer> {
        self.entries.get(target).ok_or_else(|| Answer::code(RC_DIRECTORY, 4))
    }

    pub fn entry_mut(&mut self, target: &str) -> Result<&mut Entry, Answer> {
        self.entries.get_mut(target).ok_or_else(|| Answer::code(RC_DIRECTORY, 4))
    }

    /// The entry's statements with its profile's spliced in where it is INCLUDEd (what CP sees at logon).
    pub fn effective(&self, target: &str) -> Vec<Statement> {
        let Some(entry) = self.entries.get(target) else { return Vec::new() };
        let mut effective = Vec::new();
        for statement in &entry.statements {
            match statement {
                Statement::Include(profile) => {
                    effective.extend(self.profiles.get(profile).into_iter().flatten().cloned());
                }
                other => effective.push(other.clone()),
            }
        }
        effective
    }
}

/// Parses the records of a whole entry for `target` and places its minidisks in `pools` (a copy the caller
/// commits on success). `parameter` is the records' parameter number, for syntax errors.
pub fn parse_entry(
    directory: &Directory,
    pools: &mut Pools,
    target: &str,
    records: &[String],
    parameter: usize,
) -> Result<Vec<Statement>, Answer> {
    let mut parsed = Vec::with_capacity(records.len());
    for record in records {
        let statement = Statement::parse(record).map_err(|error| {
            info!(%error, "refusing a directory entry");
            Answer::syntax(parameter, SYNTAX_UNRECOGNIZED)
        })?;
        parsed.push(statement);
    }
    let users: Vec<&UserStatement> = parsed
        .iter()
        .filter_map(|statement| match statement {
            Statement::User(user) => Some(user),
            _ => None,
        })
        .collect();
    match users.as_slice() {
        [] => return Err(Answer::syntax(parameter, SYNTAX_REQUIRED)),
        [user] if user.userid != target => {
            info!(userid = %user.userid, target, "the USER statement names another user than the target");
            return Err(Answer::syntax(parameter, SYNTAX_UNRECOGNIZED));
        }
        [_] => {}
        _ => return Err(Answer::code(RC_DIRECTORY, 40)),
    }
    if parsed.iter().any(|statement| matches!(statement, Statement::Profile(_))) {
        return Err(Answer::syntax(parameter, SYNTAX_UNRECOGNIZED));
    }
    let includes: Vec<&String> = parsed
        .iter()
        .filter_map(|statement| match statement {
            Statement::Include(profile) => Some(profile),
            _ => None,
        })
        .collect();
    if includes.len() > 1 {
        return Err(Answer::code(RC_PROFILE, 40));
    }
    if includes.iter().any(|profile| !directory.profiles.contains_key(*profile)) {
        return Err(Answer::code(RC_PROFILE, 4));
    }
    let mut devices = Vec::new();
    for statement in &parsed {
        if let Some(vdev) = statement.device() {
            if devices.contains(&vdev) {
                return Err(Answer::code(RC_DEVICE_DEFINITION, 4));
            }
            devices.push(vdev);
        }
    }
    for statement in &mut parsed {
        if let Statement::Mdisk(disk) = statement {
            place_minidisk(pools, target, disk)?;
        }
    }
    Ok(parsed)
}

/// Claims a minidisk's explicit extent, or allocates an automatic one and rewrites it as a volume extent.
pub fn place_minidisk(pools: &mut Pools, owner: &str, disk: &mut Minidisk) -> Result<(), Answer> {
    match &disk.extent {
        Extent::Volume { start, size, volid } => {
            pools.claim(volid, *start, *size, owner, &disk.vdev).map_err(|error| error.answer())
        }
        Extent::Automatic { kind, size, area } => {
            let (volid, start) =
                pools.allocate(kind, area, *size, owner, &disk.vdev).map_err(|error| error.answer())?;
            disk.extent = Extent::Volume { start, size: *size, volid };
            Ok(())
        }
        Extent::Virtual { .. } => Ok(()),
    }
}

/// `Image_Name_Query_DM`: every user entry's name; 0/28 when there are none.
pub fn name_query(state: &mut State, _context: &Context, _reader: &mut ParameterReader<'_>) -> Outcome {
    let names: Vec<&String> = state.directory.entries.keys().collect();
    if names.is_empty() {
        return Ok(Answer::code(0, 28));
    }
    let mut output = OutputWriter::new();
    output.string_array(&names);
    Ok(Answer::output(output))
}

/// `Image_Query_DM`: the entry's records.
pub fn query(state: &mut State, context: &Context, _reader: &mut ParameterReader<'_>) -> Outcome {
    let entry = state.directory.entry(&context.target)?;
    let mut output = OutputWriter::new();
    output.string_array(&entry.records());
    Ok(Answer::output(output))
}

/// `Image_Create_DM`: a new entry from directory records.
pub fn create(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let prototype = reader.string(8)?;
    let password = reader.string(200)?;
    let account = reader.string(8)?;
    let records = reader.record_array(RECORD_BYTES)?;
    if !prototype.is_empty() {
        return Err(Answer::code(RC_DIRECTORY, 20));
    }
    if records.is_empty() {
        return Err(Answer::syntax(4, SYNTAX_REQUIRED));
    }
    if !password.is_empty() || !account.is_empty() {
        return Err(Answer::syntax(if password.is_empty() { 3 } else { 2 }, 23));
    }
    let target = &context.target;
    if state.directory.entries.contains_key(target) || state.directory.profiles.contains_key(target) {
        return Err(Answer::code(RC_DIRECTORY, 8));
    }
    let mut pools = state.pools.clone();
    let statements = parse_entry(&state.directory, &mut pools, target, &records, 4)?;
    state.pools = pools;
    state.directory.entries.insert(target.clone(), Entry::new(statements));
    Ok(Answer::completed_operation())
}

/// `Image_Delete_DM`: removes a logged-off entry and frees its minidisks.
pub fn delete(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let erase = reader.int1()?;
    if erase > 2 {
        return Err(Answer::syntax(1, SYNTAX_UNRECOGNIZED));
    }
    let entry = state.directory.entry(&context.target)?;
    entry.check_unlocked()?;
    if !entry.device_locks.is_empty() {
        return Err(Answer::code(RC_DISK_DEFINITION, 12));
    }
    if state.guests.contains_key(&context.target) {
        return Err(Answer::code(RC_DIRMAINT, 6831));
    }
    state.directory.entries.remove(&context.target);
    state.pools.release_owner(&context.target);
    Ok(Answer::completed_operation())
}

/// The device address parameter of the lock functions: empty for the whole entry.
fn lock_device(reader: &mut ParameterReader<'_>) -> Result<Option<String>, Answer> {
    let device = reader.string(4)?;
    if device.is_empty() {
        return Ok(None);
    }
    normalize_vdev(&device).map(Some).ok_or_else(|| Answer::syntax(1, SYNTAX_UNRECOGNIZED))
}

/// `Image_Lock_DM`: locks the entry or one of its devices for the caller.
pub fn lock(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let device = lock_device(reader)?;
    let entry = state.directory.entry_mut(&context.target)?;
    entry.check_unlocked()?;
    match device {
        None => entry.lock = Some(context.caller.clone()),
        Some(vdev) => {
            if !entry.has_device(&vdev) {
                return Err(Answer::code(RC_DEVICE_DEFINITION, 8));
            }
            if entry.device_locks.contains_key(&vdev) {
                return Err(Answer::code(RC_DEVICE_DEFINITION, 12));
            }
            entry.device_locks.insert(vdev, context.caller.clone());
        }
    }
    Ok(Answer::ok())
}

/// `Image_Unlock_DM`: releases a lock (whoever holds it, as a DirMaint administrator may).
pub fn unlock(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let device = lock_device(reader)?;
    let entry = state.directory.entry_mut(&context.target)?;
    match device {
        None if entry.lock.take().is_some() => Ok(Answer::ok()),
        None => Err(Answer::code(RC_DIRECTORY, 24)),
        Some(vdev) if entry.device_locks.remove(&vdev).is_some() => Ok(Answer::ok()),
        Some(_) => Err(Answer::code(RC_DEVICE_DEFINITION, 24)),
    }
}

/// `Image_Replace_DM`: replaces the locked entry and unlocks it.
pub fn replace(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let records = reader.record_array(RECORD_BYTES)?;
    if records.is_empty() {
        return Err(Answer::syntax(1, SYNTAX_REQUIRED));
    }
    let target = &context.target;
    let entry = state.directory.entry(target)?;
    match &entry.lock {
        None => return Err(Answer::code(RC_DIRECTORY, 24)),
        Some(holder) if *holder != context.caller => return Err(Answer::code(RC_DIRECTORY, 12)),
        Some(_) => {}
    }
    let mut pools = state.pools.clone();
    pools.release_owner(target);
    let statements = parse_entry(&state.directory, &mut pools, target, &records, 1)?;
    state.pools = pools;
    let entry = state.directory.entry_mut(target)?;
    entry.statements = statements;
    entry.lock = None;
    let remaining: Vec<String> = entry.statements.iter().filter_map(Statement::device).collect();
    entry.device_locks.retain(|vdev, _| remaining.contains(vdev));
    Ok(Answer::ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory_with_profile() -> Directory {
        let mut directory = Directory::default();
        directory.profiles.insert("LNXDFLT".into(), vec![Statement::parse("CONSOLE 0009 3215 T").unwrap()]);
        directory
    }

    fn records(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|line| (*line).to_owned()).collect()
    }

    #[test]
    fn entries_are_checked_and_their_disks_placed() {
        let directory = directory_with_profile();
        let mut pools = Pools::default();
        pools.add_volume("LINUX", "SIM001", "3390", 100);
        let parsed = parse_entry(
            &directory,
            &mut pools,
            "LINUX01",
            &records(&["USER LINUX01 PW 1G 2G G", "INCLUDE LNXDFLT", "MDISK 0100 3390 AUTOG 10 LINUX MR"]),
            4,
        )
        .unwrap();
        assert_eq!(parsed[2].render(), "MDISK 0100 3390 1 10 SIM001 MR");
        let refuse =
            |lines: &[&str]| parse_entry(&directory, &mut pools.clone(), "LINUX01", &records(lines), 4).unwrap_err();
        assert_eq!(refuse(&["USER LINUX02 PW 1G"]), Answer::syntax(4, SYNTAX_UNRECOGNIZED));
        assert_eq!(refuse(&["IPL CMS"]), Answer::syntax(4, SYNTAX_REQUIRED));
        assert_eq!(refuse(&["USER LINUX01 PW 1G", "USER LINUX01 PW 1G"]), Answer::code(400, 40));
        assert_eq!(refuse(&["USER LINUX01 PW 1G", "INCLUDE NOPE"]), Answer::code(436, 4));
        assert_eq!(refuse(&["USER LINUX01 PW 1G", "MDISK 0100 3390 AUTOG 1000 LINUX MR"]), Answer::code(408, 24));
        assert_eq!(refuse(&["USER LINUX01 PW 1G", "MDISK 0100 3390 AUTOG 1 OTHER MR"]), Answer::code(420, 8));
        assert_eq!(
            refuse(&["USER LINUX01 PW 1G", "MDISK 0100 3390 1 5 SIM001 MR", "NICDEF 0100 TYPE QDIO"]),
            Answer::code(404, 4)
        );
    }

    #[test]
    fn control_statements_go_before_devices() {
        let mut entry = Entry::new(
            ["USER A PW 1G", "IPL CMS", "  CONSOLE 0009 3215", "MDISK 0100 3390 1 10 V1 W"]
                .iter()
                .map(|line| Statement::parse(line).unwrap())
                .collect(),
        );
        entry.insert_control(Statement::parse("MACHINE ESA 4").unwrap());
        assert_eq!(entry.statements[2].render(), "MACHINE ESA 4");
        assert!(entry.has_device("0009"));
        assert!(entry.remove_device("0100").is_some());
        assert!(entry.minidisk("0100").is_none());
    }
}
