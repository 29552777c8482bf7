//! Disk pools as DirMaint keeps them: volumes (each also a region of the same name) grouped into groups, with
//! the extents allocated on each volume. Allocation is first fit over the group's volumes in order; cylinder 0
//! of a volume holds its label, so space starts at cylinder 1.
//!
//! `Image_Volume_Space_Query_DM` answers text records, one per line of a counted string array:
//! - definition of groups: `GROUP REGION REGION ...`; of regions: `REGION VOLID START SIZE DEVTYPE`; of volumes:
//!   `VOLID DEVTYPE START SIZE`;
//! - free extents: `VOLID DEVTYPE START SIZE GROUP REGION` (the group is `*` when regions or volumes are asked);
//! - used extents: `VOLID DEVTYPE START SIZE OWNER VDEV * GROUP REGION`, as recorded on z/VM 7.1
//!   (`LX4004 3390 1 21846 LNX008 0100 * * LX4004` for a region query).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use smapi::server::{OutputWriter, ParameterReader};

use crate::answer::{Answer, Context, Outcome, RC_DISK_DEFINITION, RC_VOLUME_SPACE, SYNTAX_UNRECOGNIZED};
use crate::state::State;

/// One allocated extent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsedExtent {
    pub start: u32,
    pub size: u32,
    pub owner: String,
    pub vdev: String,
}

/// One DASD volume of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// `3390` (cylinders) or `9336` (512-byte blocks).
    pub device_type: String,
    /// Usable units: cylinders 1 to `size` (or blocks).
    pub size: u32,
    #[serde(default)]
    pub extents: Vec<UsedExtent>,
}

impl Volume {
    pub fn used(&self) -> u32 {
        self.extents.iter().map(|extent| extent.size).sum()
    }

    /// Free runs `(start, size)` in order.
    pub fn free_extents(&self) -> Vec<(u32, u32)> {
        let mut extents: Vec<&UsedExtent> = self.extents.iter().collect();
        extents.sort_by_key(|extent| extent.start);
        let mut free = Vec::new();
        let mut next = 1u32;
        for extent in extents {
            if extent.start > next {
                free.push((next, extent.start - next));
            }
            next = next.max(extent.start.saturating_add(extent.size));
        }
        let end = self.size.saturating_add(1);
        if end > next {
            free.push((next, end - next));
        }
        free
    }

    fn is_free(&self, start: u32, size: u32) -> bool {
        let end = start.saturating_add(size);
        start >= 1
            && end <= self.size.saturating_add(1)
            && self.extents.iter().all(|extent| end <= extent.start || start >= extent.start + extent.size)
    }

    /// The CKD model name DirMaint shows for the volume's size.
    fn model(&self) -> String {
        if self.device_type != "3390" {
            return self.device_type.clone();
        }
        let model = match self.size {
            0..=3339 => "03",
            3340..=10017 => "09",
            10018..=32760 => "27",
            32761..=65520 => "54",
            _ => "A",
        };
        format!("3390-{model}")
    }
}

/// Why space could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    /// 420/8: the group, region or volume is not defined.
    UnknownArea(String),
    /// 408/24: no free extent is large enough.
    NoSpace,
}

impl PoolError {
    pub fn answer(&self) -> Answer {
        match self {
            PoolError::UnknownArea(_) => Answer::code(RC_VOLUME_SPACE, 8),
            PoolError::NoSpace => Answer::code(RC_DISK_DEFINITION, 24),
        }
    }
}

/// Every pool volume and group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pools {
    pub volumes: BTreeMap<String, Volume>,
    /// Group name to its regions (volumes), in allocation order.
    pub groups: BTreeMap<String, Vec<String>>,
}

impl Pools {
    /// Adds a volume to a group (creating both as needed); an existing volume keeps its extents.
    pub fn add_volume(&mut self, group: &str, volid: &str, device_type: &str, size: u32) {
        self.volumes
            .entry(volid.to_owned())
            .and_modify(|volume| volume.size = volume.size.max(size))
            .or_insert_with(|| Volume { device_type: device_type.to_owned(), size, extents: Vec::new() });
        let members = self.groups.entry(group.to_owned()).or_default();
        if !members.iter().any(|member| member == volid) {
            members.push(volid.to_owned());
        }
    }

    /// The group a volume belongs to (the first, if several).
    pub fn group_of(&self, volid: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|(_, members)| members.iter().any(|member| member == volid))
            .map(|(name, _)| name.as_str())
    }

    /// The volumes `kind` (`AUTOG`, `AUTOR`, `AUTOV`) names.
    fn candidates(&self, kind: &str, area: &str) -> Result<Vec<String>, PoolError> {
        match kind {
            "AUTOG" => self.groups.get(area).cloned().ok_or_else(|| PoolError::UnknownArea(area.to_owned())),
            _ if self.volumes.contains_key(area) => Ok(vec![area.to_owned()]),
            _ => Err(PoolError::UnknownArea(area.to_owned())),
        }
    }

    /// The device type of the volumes an allocation would use.
    pub fn device_type_for(&self, kind: &str, area: &str) -> Result<String, PoolError> {
        let candidates = self.candidates(kind, area)?;
        candidates
            .first()
            .and_then(|volid| self.volumes.get(volid))
            .map(|volume| volume.device_type.clone())
            .ok_or_else(|| PoolError::UnknownArea(area.to_owned()))
    }

    /// Allocates `size` units first fit; returns the volume and the start.
    pub fn allocate(
        &mut self,
        kind: &str,
        area: &str,
        size: u32,
        owner: &str,
        vdev: &str,
    ) -> Result<(String, u32), PoolError> {
        for volid in self.candidates(kind, area)? {
            let Some(volume) = self.volumes.get_mut(&volid) else { continue };
            if let Some((start, _)) = volume.free_extents().into_iter().find(|(_, free)| *free >= size) {
                volume.extents.push(UsedExtent { start, size, owner: owner.to_owned(), vdev: vdev.to_owned() });
                return Ok((volid, start));
            }
        }
        Err(PoolError::NoSpace)
    }

    /// Records an explicitly placed extent. Volumes outside every pool are not accounted (DirMaint does not
    /// manage them); on a pool volume the extent must be free.
    pub fn claim(&mut self, volid: &str, start: u32, size: u32, owner: &str, vdev: &str) -> Result<(), PoolError> {
        let Some(volume) = self.volumes.get_mut(volid) else {
            return Ok(());
        };
        if !volume.is_free(start, size) {
            return Err(PoolError::NoSpace);
        }
        volume.extents.push(UsedExtent { start, size, owner: owner.to_owned(), vdev: vdev.to_owned() });
        Ok(())
    }

    /// Frees the extent of one minidisk.
    pub fn release(&mut self, owner: &str, vdev: &str) {
        for volume in self.volumes.values_mut() {
            volume.extents.retain(|extent| !(extent.owner == owner && extent.vdev == vdev));
        }
    }

    /// Frees every extent of an owner.
    pub fn release_owner(&mut self, owner: &str) {
        for volume in self.volumes.values_mut() {
            volume.extents.retain(|extent| extent.owner != owner);
        }
    }

    /// Total and free units of a group.
    pub fn group_space(&self, group: &str) -> Option<(u64, u64)> {
        let members = self.groups.get(group)?;
        let mut total = 0u64;
        let mut free = 0u64;
        for volume in members.iter().filter_map(|volid| self.volumes.get(volid)) {
            total += u64::from(volume.size);
            free += u64::from(volume.size) - u64::from(volume.used().min(volume.size));
        }
        Some((total, free))
    }
}

/// `Image_Volume_Space_Query_DM`: `query_type` (1 definition, 2 free, 3 used), `entry_type` (1 volume,
/// 2 region, 3 group), `entry_names` (`*` or blank-separated names).
pub fn volume_space_query(state: &mut State, _context: &Context, reader: &mut ParameterReader<'_>) -> Outcome {
    let query_type = reader.int1()?;
    let entry_type = reader.int1()?;
    let names = reader.string(4096)?.to_uppercase();
    if !(1..=3).contains(&query_type) {
        return Err(Answer::syntax(1, SYNTAX_UNRECOGNIZED));
    }
    if !(1..=3).contains(&entry_type) {
        return Err(Answer::syntax(2, SYNTAX_UNRECOGNIZED));
    }
    let pools = &state.pools;
    let wanted: Vec<String> = names.split_whitespace().map(str::to_owned).collect();
    if wanted.is_empty() {
        return Err(Answer::syntax(3, crate::answer::SYNTAX_REQUIRED));
    }
    let all = wanted.iter().any(|name| name == "*");
    // Which volumes (with the group they are reported under) the query covers.
    let mut selected: Vec<(String, String)> = Vec::new();
    match entry_type {
        3 => {
            let groups: Vec<&String> = if all { pools.groups.keys().collect() } else { wanted.iter().collect() };
            for group in groups {
                let members = pools.groups.get(group).ok_or_else(|| Answer::code(RC_VOLUME_SPACE, 8))?;
                selected.extend(members.iter().map(|volid| (volid.clone(), group.clone())));
            }
        }
        _ => {
            let volumes: Vec<&String> = if all { pools.volumes.keys().collect() } else { wanted.iter().collect() };
            for volid in volumes {
                if !pools.volumes.contains_key(volid) {
                    return Err(Answer::code(RC_VOLUME_SPACE, 8));
                }
                selected.push((volid.clone(), "*".to_owned()));
            }
        }
    }
    let mut records = Vec::new();
    if query_type == 1 && entry_type == 3 {
        let groups: Vec<&String> = if all { pools.groups.keys().collect() } else { wanted.iter().collect() };
        for group in groups {
            if let Some(members) = pools.groups.get(group) {
                records.push(format!("{group} {}", members.join(" ")));
            }
        }
    }
    for (volid, group) in &selected {
        let Some(volume) = pools.volumes.get(volid) else { continue };
        match (query_type, entry_type) {
            (1, 3) => {}
            (1, 2) => records.push(format!("{volid} {volid} 1 {} {}", volume.size, volume.model())),
            (1, _) => records.push(format!("{volid} {} 1 {}", volume.model(), volume.size)),
            (2, _) => {
                for (start, size) in volume.free_extents() {
                    records.push(format!("{volid} {} {start} {size} {group} {volid}", volume.model()));
                }
            }
            _ => {
                let mut extents: Vec<&UsedExtent> = volume.extents.iter().collect();
                extents.sort_by_key(|extent| extent.start);
                for extent in extents {
                    records.push(format!(
                        "{volid} {} {} {} {} {} * {group} {volid}",
                        volume.device_type, extent.start, extent.size, extent.owner, extent.vdev
                    ));
                }
            }
        }
    }
    let mut output = OutputWriter::new();
    output.string_array(&records);
    Ok(Answer::output(output))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools() -> Pools {
        let mut pools = Pools::default();
        pools.add_volume("LINUX", "SIM001", "3390", 100);
        pools.add_volume("LINUX", "SIM002", "3390", 50);
        pools
    }

    #[test]
    fn first_fit_over_the_group() {
        let mut pools = pools();
        assert_eq!(pools.allocate("AUTOG", "LINUX", 60, "A", "0100"), Ok(("SIM001".into(), 1)));
        assert_eq!(pools.allocate("AUTOG", "LINUX", 40, "A", "0101"), Ok(("SIM001".into(), 61)));
        assert_eq!(pools.allocate("AUTOG", "LINUX", 40, "B", "0100"), Ok(("SIM002".into(), 1)));
        assert_eq!(pools.allocate("AUTOG", "LINUX", 11, "B", "0101"), Err(PoolError::NoSpace));
        assert_eq!(pools.allocate("AUTOG", "NOPE", 1, "B", "0101"), Err(PoolError::UnknownArea("NOPE".into())));
        pools.release("A", "0100");
        assert_eq!(pools.volumes["SIM001"].free_extents(), vec![(1, 60)]);
        assert_eq!(pools.allocate("AUTOV", "SIM001", 60, "C", "0200"), Ok(("SIM001".into(), 1)));
        pools.release_owner("C");
        assert_eq!(pools.group_space("LINUX"), Some((150, 150 - 40 - 40)));
    }

    #[test]
    fn explicit_extents_must_be_free_on_pool_volumes() {
        let mut pools = pools();
        assert_eq!(pools.claim("SIM001", 1, 10, "A", "0100"), Ok(()));
        assert_eq!(pools.claim("SIM001", 5, 10, "B", "0100"), Err(PoolError::NoSpace));
        assert_eq!(pools.claim("SIM001", 95, 10, "B", "0100"), Err(PoolError::NoSpace));
        assert_eq!(pools.claim("OTHER1", 1, 10, "B", "0100"), Ok(()));
        assert_eq!(pools.volumes["SIM001"].free_extents(), vec![(11, 90)]);
    }
}
