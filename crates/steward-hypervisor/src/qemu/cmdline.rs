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
//!
//! Every device has an `id` derived from what it is, never from its position, so plugging one device in or out
//! of a running guest (`sync_live`) never renames another, and a device found in a running guest is matched to
//! its definition by id:
//!
//! | device | id |
//! |---|---|
//! | NIC (`-device`) | `nic-` and the MAC's 12 hex digits, lower case: `nic-525400123456` |
//! | its tap backend (`-netdev`) | `net-` and the tap's name: `net-tap0` |
//! | disk (`-drive` and `-device`, one id for both) | `disk-` and its serial; the boot disk without serial `disk0`; another disk without serial `disk.` and 16 hex digits of a hash of its path |
//! | config drive | `cidata` |
//! | management channel | `agent-serial` (the bus), `agent-port` (the port) |
//!
//! A disk's serial, when it has one, is passed as `serial=` so the guest finds it as `/sys/block/vdX/serial`.

use std::path::Path;

use crate::error::{HypervisorError, Result};
use crate::qemu::processes::escape_qemu_value;
use crate::types::{Accelerator, Arch, Boot, DiskAttachment, GuestSpec};

/// The name of the management channel port inside the guest.
pub const AGENT_PORT_NAME: &str = "org.steward.agent.0";
/// The drive and device id of the config drive.
pub const CONFIG_DRIVE_ID: &str = "cidata";

/// The device id of the NIC with this MAC address.
pub fn nic_device_id(mac: &str) -> String {
    let digits: String = mac.chars().filter(char::is_ascii_hexdigit).map(|c| c.to_ascii_lowercase()).collect();
    format!("nic-{digits}")
}

/// The id of the tap backend (`-netdev`) of a NIC.
pub fn netdev_id(tap: &str) -> String {
    format!("net-{tap}")
}

/// The tap name a netdev id stands for, when it is one of ours.
pub fn tap_of_netdev(netdev: &str) -> Option<&str> {
    netdev.strip_prefix("net-")
}

/// The drive and device id of `disk`, the `index`th disk of its guest (see the module documentation).
pub fn disk_id(disk: &DiskAttachment, index: usize) -> String {
    match &disk.serial {
        Some(serial) => format!("disk-{serial}"),
        None if index == 0 => "disk0".to_owned(),
        None => {
            // FNV-1a over the path: stable for the disk, whatever its position.
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in disk.path.as_os_str().as_encoded_bytes() {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
            format!("disk.{hash:016x}")
        }
    }
}

/// The bus suffix of device types on `arch` (`virtio-blk-pci`, `virtio-blk-ccw`).
pub fn bus(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "pci",
        Arch::S390x => "ccw",
    }
}

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
    let bus = bus(spec.arch);
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
        Arch::S390x => push(&["-device", "sclpconsole,chardev=console,id=console"]),
    }
    for (index, disk) in spec.disks.iter().enumerate() {
        let file = path_text(&format!("path of disk {index}"), &disk.path)?;
        let id = disk_id(disk, index);
        push(&["-drive", &format!("file={file},if=none,id={id},format={}", disk.format.as_str())]);
        let serial = disk.serial.as_ref().map(|serial| format!(",serial={serial}")).unwrap_or_default();
        let boot_index = if index == 0 { ",bootindex=1" } else { "" };
        push(&["-device", &format!("virtio-blk-{bus},drive={id},id={id}{serial}{boot_index}")]);
    }
    if let Some(config_drive) = &spec.config_drive {
        let file = path_text("config drive path", config_drive)?;
        push(&["-drive", &format!("file={file},if=none,id={CONFIG_DRIVE_ID},format=raw,readonly=on")]);
        push(&["-device", &format!("virtio-blk-{bus},drive={CONFIG_DRIVE_ID},id={CONFIG_DRIVE_ID}")]);
    }
    for nic in &spec.nics {
        let netdev = netdev_id(&nic.tap);
        push(&["-netdev", &format!("tap,id={netdev},ifname={},script=no,downscript=no", nic.tap)]);
        let rom = if spec.arch == Arch::X86_64 { ",romfile=" } else { "" };
        let id = nic_device_id(&nic.mac);
        push(&["-device", &format!("virtio-net-{bus},netdev={netdev},id={id},mac={}{rom}", nic.mac)]);
    }
    if spec.agent_channel {
        push(&["-device", &format!("virtio-serial-{bus},id=agent-serial")]);
        push(&[
            "-chardev",
            &format!("socket,id=agent,path={},server=on,wait=off", path_text("agent socket", &paths.agent_socket())?),
        ]);
        push(&["-device", &format!("virtserialport,chardev=agent,name={AGENT_PORT_NAME},id=agent-port")]);
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

    fn disk(path: &str, serial: Option<&str>) -> DiskAttachment {
        DiskAttachment { path: PathBuf::from(path), format: DiskFormat::Qcow2, serial: serial.map(str::to_owned) }
    }

    fn nic(network: &str, tap: &str, mac: &str) -> Nic {
        Nic { network: network.to_owned(), tap: tap.to_owned(), mac: mac.to_owned() }
    }

    fn web01() -> GuestSpec {
        GuestSpec {
            name: "web01".to_owned(),
            arch: Arch::X86_64,
            cpus: 2,
            memory_mib: 256,
            cpu_share: 100,
            disks: vec![disk("/d/root.qcow2", None), disk("/d/data.qcow2", Some("data1")), disk("/d/logs.qcow2", None)],
            config_drive: Some(PathBuf::from("/d/cidata.img")),
            nics: vec![nic("lan", "tap0", "52:54:00:00:00:01"), nic("san", "tap1", "52:54:00:AB:00:02")],
            boot: Boot::Direct {
                kernel: PathBuf::from("/k/vmlinuz"),
                initrd: None,
                cmdline: "console=ttyS0 quiet".to_owned(),
            },
            agent_channel: true,
        }
    }

    #[test]
    fn an_x86_guest_with_everything_gets_the_documented_command_line() {
        let paths = GuestPaths { directory: PathBuf::from("/data/guests/web01") };
        let arguments = guest_arguments(&web01(), &paths, Accelerator::Tcg).unwrap().join(" ");
        assert_eq!(
            arguments,
            "-name web01,process=stw-web01 -nodefaults -no-user-config -display none -accel tcg -M pc -m 256 -smp 2 \
             -daemonize -pidfile /data/guests/web01/qemu.pid -qmp unix:/data/guests/web01/qmp.sock,server=on,wait=off \
             -chardev file,id=console,path=/data/guests/web01/console.log -serial chardev:console \
             -drive file=/d/root.qcow2,if=none,id=disk0,format=qcow2 \
             -device virtio-blk-pci,drive=disk0,id=disk0,bootindex=1 \
             -drive file=/d/data.qcow2,if=none,id=disk-data1,format=qcow2 \
             -device virtio-blk-pci,drive=disk-data1,id=disk-data1,serial=data1 \
             -drive file=/d/logs.qcow2,if=none,id=disk.8f9ee05aa28e6672,format=qcow2 \
             -device virtio-blk-pci,drive=disk.8f9ee05aa28e6672,id=disk.8f9ee05aa28e6672 \
             -drive file=/d/cidata.img,if=none,id=cidata,format=raw,readonly=on \
             -device virtio-blk-pci,drive=cidata,id=cidata \
             -netdev tap,id=net-tap0,ifname=tap0,script=no,downscript=no \
             -device virtio-net-pci,netdev=net-tap0,id=nic-525400000001,mac=52:54:00:00:00:01,romfile= \
             -netdev tap,id=net-tap1,ifname=tap1,script=no,downscript=no \
             -device virtio-net-pci,netdev=net-tap1,id=nic-525400ab0002,mac=52:54:00:AB:00:02,romfile= \
             -device virtio-serial-pci,id=agent-serial \
             -chardev socket,id=agent,path=/data/guests/web01/agent.sock,server=on,wait=off \
             -device virtserialport,chardev=agent,name=org.steward.agent.0,id=agent-port \
             -kernel /k/vmlinuz -append console=ttyS0 quiet"
        );
    }

    #[test]
    fn removing_a_device_renames_no_other() {
        let paths = GuestPaths { directory: PathBuf::from("/g") };
        let devices = |spec: &GuestSpec| -> Vec<String> {
            let arguments = guest_arguments(spec, &paths, Accelerator::Tcg).unwrap();
            arguments
                .windows(2)
                .filter(|pair| pair[0] == "-device" || pair[0] == "-netdev")
                .map(|pair| pair[1].clone())
                .collect()
        };
        let full = devices(&web01());
        let mut smaller = web01();
        smaller.nics.remove(0);
        smaller.disks.remove(1);
        for remaining in devices(&smaller) {
            assert!(full.contains(&remaining), "{remaining} changed when other devices were removed");
        }
        // Moving a disk without serial to another position keeps its id too.
        let logs = disk("/d/logs.qcow2", None);
        assert_eq!(disk_id(&logs, 2), disk_id(&logs, 1));
        assert_ne!(disk_id(&logs, 1), disk_id(&disk("/d/other.qcow2", None), 1));
    }

    #[test]
    fn an_s390x_guest_uses_ccw_devices_and_the_sclp_console() {
        let spec = GuestSpec {
            name: "z1".to_owned(),
            arch: Arch::S390x,
            cpus: 1,
            memory_mib: 512,
            cpu_share: 100,
            disks: vec![disk("/d/z.qcow2", Some("root")), disk("/d/x.qcow2", Some("x"))],
            config_drive: None,
            nics: vec![nic("lan", "tapz", "02:00:00:00:00:07")],
            boot: Boot::Firmware { firmware: None },
            agent_channel: true,
        };
        let paths = GuestPaths { directory: PathBuf::from("/g/z1") };
        let arguments = guest_arguments(&spec, &paths, Accelerator::Tcg).unwrap().join(" ");
        assert!(arguments.contains("-M s390-ccw-virtio"));
        assert!(arguments.contains("-device sclpconsole,chardev=console,id=console"));
        assert!(arguments.contains("-device virtio-blk-ccw,drive=disk-root,id=disk-root,serial=root,bootindex=1"));
        assert!(arguments.contains("-device virtio-blk-ccw,drive=disk-x,id=disk-x,serial=x "));
        assert!(
            arguments.contains("-device virtio-net-ccw,netdev=net-tapz,id=nic-020000000007,mac=02:00:00:00:00:07 ")
        );
        assert!(arguments.contains("-device virtio-serial-ccw,id=agent-serial"));
        assert!(!arguments.contains(" -serial "));
        assert!(!arguments.contains("romfile"));
    }
}
