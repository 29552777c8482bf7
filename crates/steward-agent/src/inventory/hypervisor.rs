//! Which hypervisor the system runs on: `kvm`, `zvm`, `qemu`, `xen`, `vmware`, `hyperv` or `none`.
//!
//! The sources, first match wins:
//! 1. On IBM Z, the `VM00 Control Program` of `/proc/sysinfo`: `z/VM ...` is `zvm`, `KVM/Linux` is `kvm`.
//! 2. `/sys/hypervisor/type` (Xen guests have it): `xen`.
//! 3. The firmware's DMI strings `/sys/class/dmi/id/sys_vendor` and `product_name`, matched by substring:
//!    QEMU, KVM, Red Hat, oVirt, Amazon EC2, Google Compute Engine are `kvm` (QEMU is reported as `kvm` because
//!    it almost always runs with KVM acceleration, and the DMI strings do not tell the two apart); VMware is
//!    `vmware`; Microsoft's "Virtual Machine" is `hyperv`; Xen is `xen`.
//! 4. On x86 only, when `/proc/cpuinfo` has the `hypervisor` flag and the running system is inspected (not a
//!    fixture root): the CPUID hypervisor signature (leaf 0x40000000), which finds hypervisors without DMI tables
//!    such as Firecracker: `KVMKVMKVM` is `kvm`, `TCGTCGTCGTCG` is `qemu`, `VMwareVMware` is `vmware`,
//!    `Microsoft Hv` is `hyperv`, `XenVMMXenVMM` is `xen`.
//!
//! Anything else is `none`, including an unrecognised hypervisor (logged at debug level).

use std::path::Path;

use super::zvm::SysInfo;
use super::{read_trimmed, rooted};

pub(super) fn detect(root: &Path, live: bool, sysinfo: &SysInfo, hypervisor_flag: bool) -> &'static str {
    if sysinfo.is_zvm() {
        return "zvm";
    }
    if sysinfo.is_kvm() {
        return "kvm";
    }
    if read_trimmed(&rooted(root, "sys/hypervisor/type")).is_some_and(|kind| kind.eq_ignore_ascii_case("xen")) {
        return "xen";
    }
    let vendor = read_trimmed(&rooted(root, "sys/class/dmi/id/sys_vendor")).unwrap_or_default();
    let product = read_trimmed(&rooted(root, "sys/class/dmi/id/product_name")).unwrap_or_default();
    if let Some(found) = from_dmi(&vendor, &product) {
        return found;
    }
    if live
        && hypervisor_flag
        && let Some(found) = cpuid_signature().as_deref().and_then(from_cpuid_signature)
    {
        return found;
    }
    if hypervisor_flag || sysinfo.vm.is_some() {
        tracing::debug!(%vendor, %product, "running under an unrecognised hypervisor");
    }
    "none"
}

/// Classifies the DMI system vendor and product name.
pub(super) fn from_dmi(vendor: &str, product: &str) -> Option<&'static str> {
    const KVM: [&str; 6] = ["QEMU", "KVM", "Red Hat", "oVirt", "Amazon EC2", "Google"];
    let any = |needle: &str| vendor.contains(needle) || product.contains(needle);
    if KVM.iter().any(|needle| any(needle)) {
        Some("kvm")
    } else if any("VMware") {
        Some("vmware")
    } else if vendor.contains("Microsoft") && product.contains("Virtual Machine") {
        Some("hyperv")
    } else if any("Xen") {
        Some("xen")
    } else {
        None
    }
}

/// Classifies the 12-byte CPUID hypervisor vendor signature.
pub(super) fn from_cpuid_signature(signature: &str) -> Option<&'static str> {
    match signature.trim_end_matches('\0') {
        "KVMKVMKVM" | "Linux KVM Hv" => Some("kvm"),
        "TCGTCGTCGTCG" => Some("qemu"),
        "VMwareVMware" => Some("vmware"),
        "Microsoft Hv" => Some("hyperv"),
        "XenVMMXenVMM" => Some("xen"),
        _ => None,
    }
}

/// The CPUID hypervisor vendor signature (leaf 0x40000000); only meaningful when the `hypervisor` flag is set.
#[cfg(target_arch = "x86_64")]
fn cpuid_signature() -> Option<String> {
    // `cpuid` is available on every x86_64 CPU and has no side effects.
    let leaf = std::arch::x86_64::__cpuid(0x4000_0000);
    let mut bytes = [0u8; 12];
    bytes[0..4].copy_from_slice(&leaf.ebx.to_le_bytes());
    bytes[4..8].copy_from_slice(&leaf.ecx.to_le_bytes());
    bytes[8..12].copy_from_slice(&leaf.edx.to_le_bytes());
    std::str::from_utf8(&bytes).ok().map(str::to_owned)
}

#[cfg(not(target_arch = "x86_64"))]
fn cpuid_signature() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::zvm;

    #[test]
    fn classifies_dmi_strings() {
        assert_eq!(from_dmi("QEMU", "Standard PC (Q35 + ICH9, 2009)"), Some("kvm"));
        assert_eq!(from_dmi("Red Hat", "KVM"), Some("kvm"));
        assert_eq!(from_dmi("Amazon EC2", "m6i.large"), Some("kvm"));
        assert_eq!(from_dmi("VMware, Inc.", "VMware Virtual Platform"), Some("vmware"));
        assert_eq!(from_dmi("Microsoft Corporation", "Virtual Machine"), Some("hyperv"));
        assert_eq!(from_dmi("Microsoft Corporation", "Surface Laptop"), None);
        assert_eq!(from_dmi("Xen", "HVM domU"), Some("xen"));
        assert_eq!(from_dmi("Dell Inc.", "PowerEdge R750"), None);
        assert_eq!(from_dmi("", ""), None);
    }

    #[test]
    fn classifies_cpuid_signatures() {
        assert_eq!(from_cpuid_signature("KVMKVMKVM\0\0\0"), Some("kvm"));
        assert_eq!(from_cpuid_signature("TCGTCGTCGTCG"), Some("qemu"));
        assert_eq!(from_cpuid_signature("Microsoft Hv"), Some("hyperv"));
        assert_eq!(from_cpuid_signature("\0\0\0\0"), None);
    }

    #[test]
    fn sysinfo_and_files_take_precedence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let zvm = zvm::parse("VM00 Name:            LINUX01\nVM00 Control Program: z/VM    7.3.0\n");
        assert_eq!(detect(dir.path(), false, &zvm, false), "zvm");
        let kvm = zvm::parse("VM00 Name:            guest\nVM00 Control Program: KVM/Linux\n");
        assert_eq!(detect(dir.path(), false, &kvm, false), "kvm");
        assert_eq!(detect(dir.path(), false, &SysInfo::default(), true), "none");

        std::fs::create_dir_all(dir.path().join("sys/class/dmi/id")).expect("mkdir");
        std::fs::write(dir.path().join("sys/class/dmi/id/sys_vendor"), "VMware, Inc.\n").expect("write");
        assert_eq!(detect(dir.path(), false, &SysInfo::default(), true), "vmware");

        std::fs::create_dir_all(dir.path().join("sys/hypervisor")).expect("mkdir");
        std::fs::write(dir.path().join("sys/hypervisor/type"), "xen\n").expect("write");
        assert_eq!(detect(dir.path(), false, &SysInfo::default(), true), "xen");
    }
}
