//! Minidisks through DirMaint: `Image_Disk_Create_DM`, `Image_Disk_Copy_DM` and `Image_Disk_Delete_DM`, each
//! an asynchronous operation (592 with an operation id).
//!
//! Space is taken from the pool when the operation starts (so concurrent requests see it gone) and the MDISK
//! statement appears in the entry when it ends; a delete removes the statement at once and frees the space
//! when it ends. A copy takes the configured base time plus time per 1000 cylinders of the source.
//!
//! Allocation types: `AUTOG` (group), `AUTOR` (region), `AUTOV` (volume), `V-DISK` and `T-DISK` (no pool
//! space); `DEVNO` (a dedicated full volume) is not modelled (24, reason `319`). Units: cylinders (1) for 3390
//! volumes; blocks (2-5, counted in 512-byte blocks) for 9336 volumes.

use smapi::server::ParameterReader;

use crate::answer::{Answer, Context, Outcome, RC_DIRECTORY, RC_DISK_DEFINITION, SYNTAX_REQUIRED, SYNTAX_UNRECOGNIZED};
use crate::directory::place_minidisk;
use crate::directory::statements::{Extent, Minidisk, Statement, normalize_vdev, valid_name};
use crate::operations::{Work, started};
use crate::state::State;

fn vdev_parameter(text: &str, parameter: usize) -> Result<String, Answer> {
    if text.is_empty() {
        return Err(Answer::syntax(parameter, SYNTAX_REQUIRED));
    }
    normalize_vdev(text).ok_or_else(|| Answer::syntax(parameter, SYNTAX_UNRECOGNIZED))
}

/// Checks that `owner` has an unlocked entry where `vdev` is free (also of minidisks still being added).
fn check_free_device(state: &State, owner: &str, vdev: &str) -> Result<(), Answer> {
    let entry = state.directory.entry(owner)?;
    entry.check_unlocked()?;
    if entry.has_device(vdev) || state.operations.adding(owner, vdev) {
        return Err(Answer::code(RC_DISK_DEFINITION, 4));
    }
    Ok(())
}

/// The minidisk passwords (three strings of at most 8), kept in order up to the last one given.
fn passwords(reader: &mut ParameterReader<'_>) -> Result<Vec<String>, Answer> {
    let mut passwords =
        vec![reader.string(8)?.to_uppercase(), reader.string(8)?.to_uppercase(), reader.string(8)?.to_uppercase()];
    while passwords.last().is_some_and(String::is_empty) {
        passwords.pop();
    }
    if passwords.iter().any(String::is_empty) {
        // A write password without a read password cannot be written as an MDISK statement.
        return Err(Answer::syntax(10, SYNTAX_REQUIRED));
    }
    Ok(passwords)
}

/// `Image_Disk_Create_DM`.
pub fn create(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let vdev = reader.string(4)?;
    let device_type = reader.string(8)?.to_uppercase();
    let allocation = reader.string(10)?.to_uppercase();
    let area = reader.string(8)?.to_uppercase();
    let unit = reader.int1()?;
    let size = reader.int4()?;
    let mode = reader.string(3)?.to_uppercase();
    let format = reader.int1()?;
    let _label = reader.string(6)?;
    let passwords = passwords(reader)?;
    let vdev = vdev_parameter(&vdev, 1)?;
    if device_type.is_empty() {
        return Err(Answer::syntax(2, SYNTAX_REQUIRED));
    }
    if !(1..=5).contains(&unit) {
        return Err(Answer::syntax(5, SYNTAX_UNRECOGNIZED));
    }
    let size = u32::try_from(size).ok().filter(|size| *size > 0).ok_or_else(|| Answer::syntax(6, 15))?;
    if format > 6 {
        return Err(Answer::syntax(8, SYNTAX_UNRECOGNIZED));
    }
    check_free_device(state, &context.target, &vdev)?;
    let extent = match allocation.as_str() {
        "AUTOG" | "AUTOR" | "AUTOV" => {
            if !valid_name(&area) {
                return Err(Answer::syntax(4, SYNTAX_REQUIRED));
            }
            let volume_type = state.pools.device_type_for(&allocation, &area).map_err(|error| error.answer())?;
            let size = match (volume_type.as_str(), unit) {
                ("3390", 1) => size,
                ("3390", _) => return Err(Answer::syntax(5, SYNTAX_UNRECOGNIZED)),
                (_, 1) => return Err(Answer::syntax(5, SYNTAX_UNRECOGNIZED)),
                (_, blocks) => size.checked_mul(1 << (blocks - 2)).ok_or_else(|| Answer::syntax(6, 18))?,
            };
            let fba_alias = volume_type == "9336" && device_type.starts_with("FB");
            if !(device_type.starts_with(&volume_type) || fba_alias) {
                return Err(Answer::syntax(2, SYNTAX_UNRECOGNIZED));
            }
            Extent::Automatic { kind: allocation.clone(), size, area }
        }
        "V-DISK" | "T-DISK" => Extent::Virtual { kind: allocation.clone(), size },
        "" => return Err(Answer::syntax(3, SYNTAX_REQUIRED)),
        _ => return Err(Answer::syntax(3, SYNTAX_UNRECOGNIZED)),
    };
    let mut disk =
        Minidisk { vdev, device_type, extent, mode: if mode.is_empty() { "W".to_owned() } else { mode }, passwords };
    place_minidisk(&mut state.pools, &context.target, &mut disk)?;
    let work = Work::AddMinidisk { owner: context.target.clone(), statement: Statement::Mdisk(disk) };
    let id = state.operations.start(context, context.timing.operation, work);
    Ok(started(id))
}

/// `Image_Disk_Copy_DM`: a new minidisk of the source's type and size, allocated like the source unless an
/// allocation is given (then from that group, region or volume).
pub fn copy(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let vdev = reader.string(4)?;
    let source_image = reader.string(8)?.to_uppercase();
    let source_vdev = reader.string(4)?;
    let allocation = reader.string(10)?.to_uppercase();
    let area = reader.string(8)?.to_uppercase();
    let mode = reader.string(3)?.to_uppercase();
    let passwords = passwords(reader)?;
    let vdev = vdev_parameter(&vdev, 1)?;
    if source_image.is_empty() {
        return Err(Answer::syntax(2, SYNTAX_REQUIRED));
    }
    let source_vdev = vdev_parameter(&source_vdev, 3)?;
    check_free_device(state, &context.target, &vdev)?;
    let source = state
        .directory
        .entries
        .get(&source_image)
        .ok_or_else(|| Answer::code(RC_DIRECTORY, 4))?
        .minidisk(&source_vdev)
        .cloned()
        .ok_or_else(|| Answer::code(RC_DISK_DEFINITION, 8))?;
    let Extent::Volume { size, volid, .. } = &source.extent else {
        // A virtual disk has no contents to copy.
        return Err(Answer::code(RC_DISK_DEFINITION, 8));
    };
    let (kind, area) = match (allocation.as_str(), area.is_empty()) {
        ("" | "AUTOG", true) => match state.pools.group_of(volid) {
            Some(group) => ("AUTOG".to_owned(), group.to_owned()),
            None => return Err(Answer::syntax(5, SYNTAX_REQUIRED)),
        },
        ("", false) => ("AUTOG".to_owned(), area),
        ("AUTOG" | "AUTOR" | "AUTOV", false) => (allocation.clone(), area),
        ("AUTOR" | "AUTOV", true) => return Err(Answer::syntax(5, SYNTAX_REQUIRED)),
        _ => return Err(Answer::syntax(4, SYNTAX_UNRECOGNIZED)),
    };
    let mut disk = Minidisk {
        vdev,
        device_type: source.device_type.clone(),
        extent: Extent::Automatic { kind, size: *size, area },
        mode: if mode.is_empty() { source.mode.clone() } else { mode },
        passwords,
    };
    place_minidisk(&mut state.pools, &context.target, &mut disk)?;
    let duration = context.timing.operation + context.timing.copy_per_thousand_units.mul_f64(f64::from(*size) / 1000.0);
    let work = Work::AddMinidisk { owner: context.target.clone(), statement: Statement::Mdisk(disk) };
    let id = state.operations.start(context, duration, work);
    Ok(started(id))
}

/// `Image_Disk_Delete_DM`.
pub fn delete(state: &mut State, context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let vdev = reader.string(4)?;
    let erase = reader.int1()?;
    let vdev = vdev_parameter(&vdev, 1)?;
    if erase > 2 {
        return Err(Answer::syntax(2, SYNTAX_UNRECOGNIZED));
    }
    let entry = state.directory.entry_mut(&context.target)?;
    entry.check_unlocked()?;
    if entry.device_locks.contains_key(&vdev) {
        return Err(Answer::code(RC_DISK_DEFINITION, 12));
    }
    if entry.minidisk(&vdev).is_none() {
        return Err(Answer::code(RC_DISK_DEFINITION, 8));
    }
    let Some(statement) = entry.remove_device(&vdev) else {
        return Err(Answer::code(RC_DISK_DEFINITION, 8));
    };
    let work = Work::RemoveMinidisk { owner: context.target.clone(), statement };
    let id = state.operations.start(context, context.timing.operation, work);
    Ok(started(id))
}
