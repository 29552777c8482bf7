//! The QEMU command line of a guest, built from its definition. The process is detached (`-daemonize`, with a
//! pid file) so guests survive the server; it is controlled through a QMP socket; its console goes to a log
//! file; it has no default devices, no user configuration, no display and no option ROMs on its NICs.
//!
//! | | x86_64 | s390x |
//! |---|---|---|
//! | machine | `pc` | `s390-ccw-virtio` |
//! | console | serial port on `console.log` | SCLP console on `console.log` |
//! | disks, config drive | `virtio-blk-pci` | `virtio-blk-ccw` |
//! | NICs | `virtio-net-pci,romfile=` (tap) | `virtio-net-ccw` (tap) |
//! | agent channel | `virtio-serial-pci` + `virtserialport` | `virtio-serial-ccw` + `virtserialport` |

use std::path::Path;

use crate::error::{HypervisorError, Result};
use crate::qemu::processes::escape_qemu_value;
use crate::types::{Accelerator, Arch, Boot, GuestSpec};

/// The name of the management channel port inside the guest.
pub const AGENT_PORT_NAME: &str = "org.steward.agent.0";

/// The files of one guest's directory.
#[derive(Debug, Clone)]
pub struct GuestPaths {
    pub directory: std::path::PathBuf,
}

impl GuestPaths {
    pub fn definition(&self) -> std::path::PathBuf {
        self.directory.join("guest.json")
    }
    pub fn pid_file(&self) -> std::path::PathBuf {
        self.directory.join("qemu.pid")
    }
    pub fn qmp_socket(&self) -> std::path::PathBuf {
        self.directory.join("qmp.sock")
    }
    pub fn agent_socket(&self) -> std::path::PathBuf {
        self.directory.join("agent.sock")
    }
    pub fn console_log(&self) -> std::path::PathBuf {
        self.directory.join("console.log")
    }
    /// A process started outside the driver that the guest adopted (see `QemuHost::adopt_process`).
    pub fn adopted(&self) -> std::path::PathBuf {
        self.directory.join("adopted.json")
    }
    /// What QEMU printed while starting (errors before it detached).
    pub fn start_log(&self) -> std::path::PathBuf {
        self.directory.join("qemu.log")
    }
}

fn path_text(what: &str, path: &Path) -> Result<String> {
    path.to_str()
        .map(escape_qemu_value)
        .ok_or_else(|| HypervisorError::invalid(what, format!("{} is not valid UTF-8", path.display())))
}

/// The process name QEMU gives itself (`comm`, at most 15 characters).
fn process_name(guest: &str) -> String {
    let mut name = format!("stw-{guest}");
    name.truncate(15);
    name
}

/// The arguments (without the program) that run `spec`.
pub fn guest_arguments(spec: &GuestSpec, paths: &GuestPaths, accelerator: Accelerator) -> Result<Vec<String>> {
    let bus = match spec.arch {
        Arch::X86_64 => "pci",
        Arch::S390x => "ccw",
    };
    let mut arguments: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| arguments.extend(items.iter().map(|item| (*item).to_owned()));
    push(&["-name", &format!("{},process={}", escape_qemu_value(&spec.name), process_name(&spec.name))]);
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&["-accel", accelerator.as_str()]);
    match spec.arch {
        Arch::X86_64 => push(&["-M", "pc"]),
        Arch::S390x => push(&["-M", "s390-ccw-virtio"]),
    }
    push(&["-m", &spec.memory_mib.to_string(), "-smp", &spec.cpus.to_string()]);
    push(&["-daemonize", "-pidfile", &path_text("pid file", &paths.pid_file())?]);
    push(&["-qmp", &format!("unix:{},server=on,wait=off", path_text("QMP socket", &paths.qmp_socket())?)]);
    push(&["-chardev", &format!("file,id=console,path={}", path_text("console log", &paths.console_log())?)]);
    match spec.arch {
        Arch::X86_64 => push(&["-serial", "chardev:console"]),
        Arch::S390x => push(&["-device", "sclpconsole,chardev=console"]),
    }
    for (index, disk) in spec.disks.iter().enumerate() {
        let file = path_text(&format!("path of disk {index}"), &disk.path)?;
        push(&["-drive", &format!("file={file},if=none,id=disk{index},format={}", disk.format.as_str())]);
        let boot_index = if index == 0 { ",bootindex=1" } else { "" };
        push(&["-device", &format!("virtio-blk-{bus},drive=disk{index}{boot_index}")]);
    }
    if let Some(config_drive) = &spec.config_drive {
        let file = path_text("config drive path", config_drive)?;
        push(&["-drive", &format!("file={file},if=none,id=cidata,format=raw,readonly=on")]);
        push(&["-device", &format!("virtio-blk-{bus},drive=cidata")]);
    }
    for (index, nic) in spec.nics.iter().enumerate() {
        push(&["-netdev", &format!("tap,id=net{index},ifname={},script=no,downscript=no", nic.tap)]);
        let rom = if spec.arch == Arch::X86_64 { ",romfile=" } else { "" };
        push(&["-device", &format!("virtio-net-{bus},netdev=net{index},mac={}{rom}", nic.mac)]);
    }
    if spec.agent_channel {
        push(&["-device", &format!("virtio-serial-{bus}")]);
        push(&[
            "-chardev",
            &format!("socket,id=agent,path={},server=on,wait=off", path_text("agent socket", &paths.agent_socket())?),
        ]);
        push(&["-device", &format!("virtserialport,chardev=agent,name={AGENT_PORT_NAME}")]);
    }
    match &spec.boot {
        Boot::Direct { kernel, initrd, cmdline } => {
            push(&["-kernel", &path_text("kernel path", kernel)?]);
            if let Some(initrd) = initrd {
                push(&["-initrd", &path_text("initrd path", initrd)?]);
            }
            push(&["-append", cmdline]);
        }
        Boot::Firmware { firmware: Some(firmware) } => push(&["-bios", &path_text("firmware path", firmware)?]),
        Boot::Firmware { firmware: None } => {}
    }
    Ok(arguments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DiskAttachment, DiskFormat, Nic};
    use std::path::PathBuf;

    #[test]
    fn an_x86_guest_with_everything_gets_the_documented_command_line() {
        let spec = GuestSpec {
            name: "web01".to_owned(),
            arch: Arch::X86_64,
            cpus: 2,
            memory_mib: 256,
            cpu_share: 100,
            disks: vec![DiskAttachment { path: PathBuf::from("/d/root.qcow2"), format: DiskFormat::Qcow2 }],
            config_drive: Some(PathBuf::from("/d/cidata.img")),
            nics: vec![Nic { network: "lan".to_owned(), tap: "tap0".to_owned(), mac: "52:54:00:00:00:01".to_owned() }],
            boot: Boot::Direct {
                kernel: PathBuf::from("/k/vmlinuz"),
                initrd: None,
                cmdline: "console=ttyS0 quiet".to_owned(),
            },
            agent_channel: true,
        };
        let paths = GuestPaths { directory: PathBuf::from("/data/guests/web01") };
        let arguments = guest_arguments(&spec, &paths, Accelerator::Tcg).unwrap().join(" ");
        assert_eq!(
            arguments,
            "-name web01,process=stw-web01 -nodefaults -no-user-config -display none -accel tcg -M pc -m 256 -smp 2 \
             -daemonize -pidfile /data/guests/web01/qemu.pid -qmp unix:/data/guests/web01/qmp.sock,server=on,wait=off \
             -chardev file,id=console,path=/data/guests/web01/console.log -serial chardev:console \
             -drive file=/d/root.qcow2,if=none,id=disk0,format=qcow2 -device virtio-blk-pci,drive=disk0,bootindex=1 \
             -drive file=/d/cidata.img,if=none,id=cidata,format=raw,readonly=on -device virtio-blk-pci,drive=cidata \
             -netdev tap,id=net0,ifname=tap0,script=no,downscript=no \
             -device virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01,romfile= \
             -device virtio-serial-pci -chardev socket,id=agent,path=/data/guests/web01/agent.sock,server=on,wait=off \
             -device virtserialport,chardev=agent,name=org.steward.agent.0 \
             -kernel /k/vmlinuz -append console=ttyS0 quiet"
        );
    }

    #[test]
    fn an_s390x_guest_uses_ccw_devices_and_the_sclp_console() {
        let spec = GuestSpec {
            name: "z1".to_owned(),
            arch: Arch::S390x,
            cpus: 1,
            memory_mib: 512,
            cpu_share: 100,
            disks: vec![DiskAttachment { path: PathBuf::from("/d/z.qcow2"), format: DiskFormat::Qcow2 }],
            config_drive: None,
            nics: vec![],
            boot: Boot::Firmware { firmware: None },
            agent_channel: true,
        };
        let paths = GuestPaths { directory: PathBuf::from("/g/z1") };
        let arguments = guest_arguments(&spec, &paths, Accelerator::Tcg).unwrap().join(" ");
        assert!(arguments.contains("-M s390-ccw-virtio"));
        assert!(arguments.contains("-device sclpconsole,chardev=console"));
        assert!(arguments.contains("-device virtio-blk-ccw,drive=disk0,bootindex=1"));
        assert!(arguments.contains("-device virtio-serial-ccw"));
        assert!(!arguments.contains(" -serial "));
    }
}
