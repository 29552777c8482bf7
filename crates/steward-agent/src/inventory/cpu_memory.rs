//! CPUs and memory: `/sys/devices/system/cpu/online`, `/proc/cpuinfo` and `/proc/meminfo`.
//!
//! The CPU count is the number of online logical CPUs, from the range list in `/sys/devices/system/cpu/online`
//! (`0-3,5`); only when that file is missing are the `processor` entries of `/proc/cpuinfo` counted.
//! The model is the first `model name` of `/proc/cpuinfo` (x86, some Arm), else its `cpu` line (POWER); on s390x it is
//! the machine type, from the `machine = 3906` of the `processor 0:` line or a `machine` line, falling back to the
//! `Type` of `/proc/sysinfo`. `/proc/cpuinfo` is read only up to the end of its first CPU's block when the count is
//! already known, which on large machines saves formatting hundreds of blocks. Memory is `MemTotal` and `SwapTotal`
//! of `/proc/meminfo`, converted from kB (KiB, really) to bytes.

use std::path::Path;

use steward_protocol::{Cpu, Memory};

use super::zvm::SysInfo;
use super::{for_each_line, read_string, read_trimmed, rooted};

/// CPU facts plus what the hypervisor detection needs from `/proc/cpuinfo`.
#[derive(Debug, Default)]
pub(super) struct CpuFacts {
    pub cpu: Cpu,
    /// The x86 `hypervisor` CPU flag: the system runs virtualized.
    pub hypervisor_flag: bool,
}

pub(super) fn cpu(root: &Path, sysinfo: &SysInfo) -> CpuFacts {
    let online = read_trimmed(&rooted(root, "sys/devices/system/cpu/online")).and_then(|list| {
        let count = count_cpu_list(&list);
        if count.is_none() {
            tracing::debug!(list = %list, "unparsable online CPU list");
        }
        count
    });
    let mut scan = CpuinfoScan { need_count: online.is_none(), ..CpuinfoScan::default() };
    for_each_line(&rooted(root, "proc/cpuinfo"), |line| scan.line(line));
    let mut model = scan.model.or(scan.machine).unwrap_or_default();
    if model.is_empty() {
        model = sysinfo.machine_type.clone();
    }
    CpuFacts {
        cpu: Cpu { count: online.or(scan.processors).unwrap_or(0), model },
        hypervisor_flag: scan.hypervisor_flag,
    }
}

/// Counts the CPUs in a kernel CPU list such as `0-3,5,7-8`; `None` if it is not one.
pub(super) fn count_cpu_list(list: &str) -> Option<u32> {
    let mut count: u32 = 0;
    for part in list.trim().split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let n = match part.split_once('-') {
            Some((first, last)) => {
                let first: u32 = first.trim().parse().ok()?;
                let last: u32 = last.trim().parse().ok()?;
                last.checked_sub(first)? + 1
            }
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
        count = count.saturating_add(n);
    }
    Some(count)
}

/// State while streaming `/proc/cpuinfo`.
#[derive(Debug, Default)]
struct CpuinfoScan {
    need_count: bool,
    model: Option<String>,
    /// s390x machine type, used when there is no model name.
    machine: Option<String>,
    hypervisor_flag: bool,
    processors: Option<u32>,
    seen_content: bool,
}

impl CpuinfoScan {
    /// Takes one line; returns `false` once nothing more is needed.
    fn line(&mut self, line: &str) -> bool {
        if line.trim().is_empty() {
            // End of a block: after the first one everything but the count is known.
            return !(self.seen_content && !self.need_count && (self.model.is_some() || self.machine.is_some()));
        }
        self.seen_content = true;
        let Some((key, value)) = line.split_once(':') else { return true };
        let key = key.trim();
        let value = value.trim();
        match key {
            "processor" if self.need_count => *self.processors.get_or_insert(0) += 1,
            "model name" | "cpu" if self.model.is_none() && !value.is_empty() => self.model = Some(value.to_owned()),
            "machine" if self.machine.is_none() && !value.is_empty() => self.machine = Some(value.to_owned()),
            "flags" if !self.hypervisor_flag => {
                self.hypervisor_flag = value.split_ascii_whitespace().any(|flag| flag == "hypervisor");
            }
            "# processors" if self.need_count => self.processors = value.parse().ok(),
            _ if key.starts_with("processor ") && self.machine.is_none() => {
                // s390x: "processor 0: version = FF,  identification = 0133E8,  machine = 3906"
                self.machine = value
                    .split(',')
                    .filter_map(|field| field.split_once('='))
                    .find(|(name, _)| name.trim() == "machine")
                    .map(|(_, machine)| machine.trim().to_owned())
                    .filter(|machine| !machine.is_empty());
            }
            _ => {}
        }
        true
    }
}

pub(super) fn memory(root: &Path) -> Memory {
    read_string(&rooted(root, "proc/meminfo")).map(|text| parse_meminfo(&text)).unwrap_or_default()
}

/// Takes `MemTotal` and `SwapTotal` from `/proc/meminfo` contents, in bytes.
pub(super) fn parse_meminfo(text: &str) -> Memory {
    let mut memory = Memory::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let target = match key {
            "MemTotal" => &mut memory.total_bytes,
            "SwapTotal" => &mut memory.swap_total_bytes,
            _ => continue,
        };
        let mut words = value.split_whitespace();
        let amount: u64 = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let unit = match words.next() {
            Some("kB") => 1024,
            Some("mB") | Some("MB") => 1024 * 1024,
            _ => 1,
        };
        *target = amount.saturating_mul(unit);
    }
    memory
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cpu_lists() {
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-3\n"), Some(4));
        assert_eq!(count_cpu_list("0-3,5"), Some(5));
        assert_eq!(count_cpu_list("0-1,4-7,9"), Some(7));
        assert_eq!(count_cpu_list(""), Some(0));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("a-b"), None);
    }

    fn scan(text: &str, need_count: bool) -> CpuinfoScan {
        let mut scan = CpuinfoScan { need_count, ..CpuinfoScan::default() };
        for line in text.lines() {
            if !scan.line(line) {
                break;
            }
        }
        scan
    }

    const X86: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n\
        flags\t\t: fpu vme sse2 hypervisor lahf_lm\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n\
        model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\nflags\t\t: fpu vme sse2 hypervisor lahf_lm\n\n";

    #[test]
    fn reads_x86_cpuinfo() {
        let counted = scan(X86, true);
        assert_eq!(counted.model.as_deref(), Some("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"));
        assert!(counted.hypervisor_flag);
        assert_eq!(counted.processors, Some(2));
        // Without the need to count, the scan stops after the first block.
        assert_eq!(scan(X86, false).processors, None);
        assert!(!scan("flags\t: fpu hypervisorx\n", false).hypervisor_flag);
    }

    #[test]
    fn reads_s390x_cpuinfo() {
        let text = "vendor_id       : IBM/S390\n# processors    : 2\nbogomips per cpu: 3241.00\n\
            features\t: esan3 zarch stfle msa ldisp eimm dfp edat etf3eh highgprs te vx sie\n\
            processor 0: version = FF,  identification = 0133E8,  machine = 8561\n\
            processor 1: version = FF,  identification = 0133E8,  machine = 8561\n\n\
            cpu number      : 0\nmachine         : 8561\n";
        let s390 = scan(text, true);
        assert_eq!(s390.model, None);
        assert_eq!(s390.machine.as_deref(), Some("8561"));
        assert_eq!(s390.processors, Some(2));
        assert!(!s390.hypervisor_flag);
    }

    #[test]
    fn reads_power_and_arm_cpuinfo() {
        let power =
            scan("processor\t: 0\ncpu\t\t: POWER9 (architected), altivec supported\nclock\t\t: 2750MHz\n\n", false);
        assert_eq!(power.model.as_deref(), Some("POWER9 (architected), altivec supported"));
        let arm = scan("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n\n", true);
        assert_eq!(arm.model, None);
        assert_eq!(arm.processors, Some(1));
    }

    #[test]
    fn model_falls_back_to_sysinfo_type_and_count_to_cpuinfo() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("proc")).expect("mkdir");
        std::fs::write(dir.path().join("proc/cpuinfo"), "vendor_id : IBM/S390\n# processors    : 4\n").expect("write");
        let sysinfo = SysInfo { machine_type: "3906".into(), ..SysInfo::default() };
        let facts = cpu(dir.path(), &sysinfo);
        assert_eq!(facts.cpu, Cpu { count: 4, model: "3906".into() });
    }

    #[test]
    fn missing_sources_give_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let facts = cpu(dir.path(), &SysInfo::default());
        assert_eq!(facts.cpu, Cpu::default());
        assert_eq!(memory(dir.path()), Memory::default());
    }

    #[test]
    fn parses_meminfo() {
        let memory = parse_meminfo(
            "MemTotal:       16303412 kB\nMemFree:         1187464 kB\nSwapCached:            0 kB\n\
             SwapTotal:       2097148 kB\nSwapFree:        2097148 kB\nHugePages_Total:       0\n",
        );
        assert_eq!(memory, Memory { total_bytes: 16_303_412 * 1024, swap_total_bytes: 2_097_148 * 1024 });
        assert_eq!(parse_meminfo("MemTotal: lots kB\ngarbage\n"), Memory::default());
    }
}
