//! Machine and hypervisor facts of IBM Z from `/proc/sysinfo`.
//!
//! On s390x the kernel formats the results of the STSI instruction as `Key:   value` lines: the machine
//! (`Manufacturer`, `Type`, `Model`, `Capability`, ...), the LPAR (`LPAR Name`, `LPAR CPUs Total`, ...) and, for
//! every hypervisor level the system runs under, a block of `VMnn` lines, `VM00` describing the virtual machine the
//! system itself runs in (`VM00 Name`, `VM00 Control Program`, `VM00 CPUs Total`, ...). The control program tells
//! z/VM (`z/VM    7.3.0`) from KVM (`KVM/Linux`). The file does not exist on other architectures.
//!
//! Field mapping into [`ZvmGuest`], which is filled only under z/VM: `userid` from `VM00 Name`, `control_program`
//! from `VM00 Control Program`, `lpar_name` from `LPAR Name`, `machine_type` from `Type`, `cpus_total` from
//! `VM00 CPUs Total`. The kernel prints no dedicated/shared split and no capability for a guest level, only for the
//! LPAR; `cpus_dedicated`, `cpus_shared` and `capability` are taken from `VM00 CPUs Dedicated`, `VM00 CPUs Shared`
//! and `VM00 Capability` when a kernel reports them and otherwise stay 0 (dedicated, shared) or fall back to the
//! machine's CPU `Capability` (the first number of that line).

use std::path::Path;

use steward_protocol::ZvmGuest;

use super::{read_string, rooted};

/// What the inventory uses from `/proc/sysinfo`; all empty when the file does not exist.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct SysInfo {
    /// `Type`: the machine type, for example `8561`.
    pub machine_type: String,
    /// `LPAR Name`.
    pub lpar_name: String,
    /// `Capability`: the machine's CPU capability.
    pub capability: Option<u64>,
    /// The `VM00` block, when the system runs under a hypervisor that reports one.
    pub vm: Option<Vm00>,
}

/// The `VM00` lines: the virtual machine this system runs in.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Vm00 {
    pub name: String,
    pub control_program: String,
    pub cpus_total: u32,
    pub cpus_dedicated: u32,
    pub cpus_shared: u32,
    pub capability: Option<u64>,
}

impl SysInfo {
    /// Whether the system is a z/VM guest.
    pub fn is_zvm(&self) -> bool {
        self.vm.as_ref().is_some_and(|vm| vm.control_program.starts_with("z/VM"))
    }

    /// Whether the system is a KVM guest on IBM Z.
    pub fn is_kvm(&self) -> bool {
        self.vm.as_ref().is_some_and(|vm| vm.control_program.contains("KVM"))
    }

    /// The z/VM guest facts, present only when the system runs under z/VM.
    pub fn zvm_guest(&self) -> Option<ZvmGuest> {
        if !self.is_zvm() {
            return None;
        }
        let vm = self.vm.as_ref()?;
        Some(ZvmGuest {
            userid: vm.name.clone(),
            control_program: vm.control_program.clone(),
            lpar_name: self.lpar_name.clone(),
            machine_type: self.machine_type.clone(),
            cpus_total: vm.cpus_total,
            cpus_dedicated: vm.cpus_dedicated,
            cpus_shared: vm.cpus_shared,
            capability: vm.capability.or(self.capability).unwrap_or(0),
        })
    }
}

/// Reads `/proc/sysinfo` under `root`; empty when it does not exist (any architecture but s390x).
pub(super) fn read(root: &Path) -> SysInfo {
    read_string(&rooted(root, "proc/sysinfo")).map(|text| parse(&text)).unwrap_or_default()
}

/// Parses the contents of `/proc/sysinfo`.
pub(super) fn parse(text: &str) -> SysInfo {
    let mut info = SysInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let key = key.trim();
        let value = value.trim();
        if let Some(vm_key) = key.strip_prefix("VM00 ") {
            let vm = info.vm.get_or_insert_with(Vm00::default);
            match vm_key {
                "Name" => vm.name = value.to_owned(),
                "Control Program" => vm.control_program = value.to_owned(),
                "CPUs Total" => vm.cpus_total = number(value).unwrap_or(0),
                "CPUs Dedicated" => vm.cpus_dedicated = number(value).unwrap_or(0),
                "CPUs Shared" => vm.cpus_shared = number(value).unwrap_or(0),
                "Capability" => vm.capability = number(value),
                _ => {}
            }
            continue;
        }
        match key {
            "Type" => info.machine_type = value.to_owned(),
            "LPAR Name" => info.lpar_name = value.to_owned(),
            "Capability" => info.capability = number(value),
            _ => {}
        }
    }
    info
}

/// The first whitespace-separated word of a value as a number (`Capability:  456 1152`).
fn number<T: std::str::FromStr>(value: &str) -> Option<T> {
    value.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tail of a z/VM 7.3 guest's `/proc/sysinfo` on a z15 (the full file is in the integration test fixtures).
    const ZVM_GUEST: &str = "\
Manufacturer:         IBM
Type:                 8561
Model:                716              T01
Capability:           456 1152
Nominal Capability:   456

LPAR Number:          21
LPAR Characteristics: Shared
LPAR Name:            ZVMLP01
LPAR Adjustment:      235
LPAR CPUs Total:      8
LPAR CPUs Dedicated:  0
LPAR CPUs Shared:     8

VM00 Name:            LNXWEB01
VM00 Control Program: z/VM    7.3.0
VM00 Adjustment:      62
VM00 CPUs Total:      2
VM00 CPUs Configured: 2
VM00 CPUs Standby:    0
VM00 CPUs Reserved:   0
";

    #[test]
    fn parses_a_zvm_guest() {
        let info = parse(ZVM_GUEST);
        assert!(info.is_zvm());
        assert!(!info.is_kvm());
        assert_eq!(
            info.zvm_guest(),
            Some(ZvmGuest {
                userid: "LNXWEB01".into(),
                control_program: "z/VM    7.3.0".into(),
                lpar_name: "ZVMLP01".into(),
                machine_type: "8561".into(),
                cpus_total: 2,
                cpus_dedicated: 0,
                cpus_shared: 0,
                capability: 456,
            })
        );
    }

    #[test]
    fn takes_guest_level_split_and_capability_when_reported() {
        let text = format!("{ZVM_GUEST}VM00 CPUs Dedicated: 1\nVM00 CPUs Shared:    1\nVM00 Capability:     900\n");
        let guest = parse(&text).zvm_guest().expect("z/VM guest");
        assert_eq!((guest.cpus_dedicated, guest.cpus_shared, guest.capability), (1, 1, 900));
    }

    #[test]
    fn kvm_on_z_is_not_zvm() {
        let info =
            parse("Type:                 3906\n\nVM00 Name:            guest01\nVM00 Control Program: KVM/Linux\n");
        assert!(info.is_kvm());
        assert!(!info.is_zvm());
        assert_eq!(info.zvm_guest(), None);
    }

    #[test]
    fn lpar_without_hypervisor_and_garbage() {
        let info = parse("Type:                 8561\nLPAR Name:            LP1\n");
        assert_eq!(info.machine_type, "8561");
        assert_eq!(info.vm, None);
        assert_eq!(info.zvm_guest(), None);

        let odd = parse("VM00 CPUs Total: lots\nVM00 Control Program: z/VM 7.1.0\n::::\nno colon\n");
        assert_eq!(odd.zvm_guest().map(|guest| guest.cpus_total), Some(0));
        assert_eq!(parse(""), SysInfo::default());
    }
}
