//! `cargo xtask images`: builds the starter guest images (x86_64 and s390x) that Steward imports as OS
//! templates and boots under QEMU with direct kernel boot.
//!
//! For each architecture it writes `vmlinuz` (Debian's kernel), `initrd.img` (a busybox initramfs that loads
//! the needed modules and switch_roots into the disk), `disk.qcow2` (an ext4 root filesystem over the whole
//! disk: busybox, the init scripts of `images/rootfs/`, and on x86_64 the static `steward-agent`) and
//! `template.json` (what Steward imports). Everything comes from Debian packages downloaded (not installed)
//! into `target/images/cache/` and from the repository; the outputs are byte-for-byte reproducible, and an
//! `input-digest` beside them lets a second run with unchanged inputs finish in seconds without rebuilding.
//! `docs/images.md` describes the images and the guest-side contract.

mod agent;
mod cpio;
mod digest;
mod modules;
mod packages;
mod rootfs;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::ValueEnum;
use serde::Serialize;

use cpio::{CpioArchive, EntryKind};
use digest::{InputDigest, sha256_file};
use rootfs::FilesystemIdentity;

/// The builder's own source: part of every image's input digest, so changing the builder rebuilds the images.
const BUILDER_SOURCES: [&str; 7] = [
    include_str!("mod.rs"),
    include_str!("agent.rs"),
    include_str!("cpio.rs"),
    include_str!("digest.rs"),
    include_str!("modules.rs"),
    include_str!("packages.rs"),
    include_str!("rootfs.rs"),
];

/// The time stamp of every file in the images (2024-01-01T00:00:00Z) unless `SOURCE_DATE_EPOCH` says otherwise.
const DEFAULT_TIMESTAMP: u64 = 1_704_067_200;

/// Which images to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchitectureChoice {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "s390x")]
    S390x,
    All,
}

/// Arguments of `cargo xtask images`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImagesArgs {
    /// Which architecture to build.
    #[arg(long, value_enum, default_value = "all")]
    pub arch: ArchitectureChoice,
    /// Output directory; each image goes to `<DIR>/<arch>/` (default: `target/images`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Build the x86_64 image without the steward-agent (its template then says `"agent": false`).
    #[arg(long)]
    pub without_agent: bool,
    /// Rebuild even when the input digest says the outputs are up to date.
    #[arg(long)]
    pub force: bool,
}

/// A guest architecture and what differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    X86_64,
    S390x,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::S390x => "s390x",
        }
    }

    pub fn debian_name(self) -> &'static str {
        match self {
            Self::X86_64 => "amd64",
            Self::S390x => "s390x",
        }
    }

    pub fn kernel_metapackage(self) -> &'static str {
        match self {
            Self::X86_64 => "linux-image-amd64",
            Self::S390x => "linux-image-s390x",
        }
    }

    fn console(self) -> &'static str {
        match self {
            Self::X86_64 => "ttyS0",
            Self::S390x => "ttysclp0",
        }
    }

    /// The modules the initramfs loads (their dependencies are added from the modules' own metadata).
    /// On s390x virtio and virtio-ccw are built in, and there is no PCI, e1000 or ACPI.
    fn initramfs_modules(self) -> Vec<&'static str> {
        let mut modules = vec![
            "virtio_blk",
            "virtio_net",
            "virtio_console",
            "ext4",
            "vfat",
            "nls_cp437",
            "nls_ascii",
            "nls_utf8",
            "nls_iso8859-1",
            "isofs",
        ];
        if self == Self::X86_64 {
            modules.extend(["virtio_pci", "e1000", "button", "evdev"]);
        }
        modules
    }

    /// Fixed filesystem identity (distinct per architecture).
    fn filesystem_identity(self, timestamp: u64) -> FilesystemIdentity {
        match self {
            Self::X86_64 => FilesystemIdentity {
                uuid: "5e3a0d1c-7b2f-4c6e-9a41-5d0e7a8b0001",
                hash_seed: "5e3a0d1c-7b2f-4c6e-9a41-5d0e7a8b1001",
                timestamp,
            },
            Self::S390x => FilesystemIdentity {
                uuid: "5e3a0d1c-7b2f-4c6e-9a41-5d0e7a8b0002",
                hash_seed: "5e3a0d1c-7b2f-4c6e-9a41-5d0e7a8b1002",
                timestamp,
            },
        }
    }
}

/// `template.json`: the OS template Steward imports (paths relative to its directory).
#[derive(Debug, Serialize)]
struct Template {
    arch: &'static str,
    boot: &'static str,
    kernel: &'static str,
    initrd: &'static str,
    cmdline: String,
    disk: &'static str,
    disk_format: &'static str,
    personalization: &'static str,
    agent: bool,
    sha256: TemplateDigests,
}

#[derive(Debug, Serialize)]
struct TemplateDigests {
    #[serde(rename = "disk.qcow2")]
    disk: String,
    vmlinuz: String,
    #[serde(rename = "initrd.img")]
    initrd: String,
}

const OUTPUT_FILES: [&str; 4] = ["vmlinuz", "initrd.img", "disk.qcow2", "template.json"];
const INPUT_DIGEST_FILE: &str = "input-digest";

/// Runs `cargo xtask images`.
pub fn run(args: ImagesArgs) -> anyhow::Result<()> {
    let paths = crate::Paths::discover()?;
    let target = paths.steward.parent().and_then(Path::parent).context("cannot find the target directory")?;
    let output_root = args.out.clone().unwrap_or_else(|| target.join("images"));
    let output_root = if output_root.is_absolute() { output_root } else { std::env::current_dir()?.join(output_root) };
    let cache = target.join("images").join("cache");
    let work_root = target.join("images").join("work");
    let timestamp = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => {
            let value: u64 =
                text.trim().parse().with_context(|| format!("SOURCE_DATE_EPOCH {text:?} is not a number"))?;
            if value > u64::from(u32::MAX) {
                bail!("SOURCE_DATE_EPOCH {value} does not fit the 32-bit time stamps of cpio");
            }
            value
        }
        Err(_) => DEFAULT_TIMESTAMP,
    };
    if std::env::consts::ARCH != "x86_64" {
        bail!("the image builder runs busybox from the amd64 package to list its applets: it needs an x86_64 host");
    }
    let architectures = match args.arch {
        ArchitectureChoice::X86_64 => vec![Architecture::X86_64],
        ArchitectureChoice::S390x => vec![Architecture::S390x],
        ArchitectureChoice::All => vec![Architecture::X86_64, Architecture::S390x],
    };
    packages::ensure_host_tools()?;
    let resolved = resolve_packages(&architectures)?;
    for (architecture, packages) in architectures.into_iter().zip(resolved) {
        let started = Instant::now();
        let builder = ImageBuilder {
            architecture,
            workspace_root: paths.root.clone(),
            target: target.to_path_buf(),
            cache: cache.clone(),
            work: work_root.join(architecture.name()),
            output: output_root.join(architecture.name()),
            timestamp,
            with_agent: architecture == Architecture::X86_64 && !args.without_agent,
        };
        let rebuilt = builder.build(&packages, args.force)?;
        let verb = if rebuilt { "built" } else { "up to date" };
        eprintln!(
            "images: {} {verb} in {:.1} s: {}",
            architecture.name(),
            started.elapsed().as_secs_f64(),
            builder.output.display()
        );
    }
    // The scratch directory is empty after successful builds; this removes it only if it is empty.
    let _ = std::fs::remove_dir(&work_root);
    Ok(())
}

/// The Debian packages one image is made of.
struct ImagePackages {
    kernel: packages::PackageVersion,
    busybox: packages::PackageVersion,
    /// The amd64 busybox of the same version: it runs here and lists the applets.
    host_busybox: packages::PackageVersion,
}

/// Resolves the packages of every architecture with two apt-cache runs (metapackages and busybox, then the
/// kernels), after making sure apt lists each architecture.
fn resolve_packages(architectures: &[Architecture]) -> anyhow::Result<Vec<ImagePackages>> {
    let host = Architecture::X86_64.debian_name();
    let mut wanted = vec![("busybox-static", host)];
    for architecture in architectures {
        packages::ensure_apt_architecture(*architecture)?;
        wanted.push((architecture.kernel_metapackage(), architecture.debian_name()));
        wanted.push(("busybox-static", architecture.debian_name()));
    }
    let first = packages::candidates(&wanted)?;
    let host_busybox = first[0].clone();
    let kernel_names: Vec<String> = architectures
        .iter()
        .enumerate()
        .map(|(index, _)| packages::kernel_package_name(&first[1 + 2 * index]))
        .collect::<anyhow::Result<_>>()?;
    let kernel_wanted: Vec<(&str, &str)> = architectures
        .iter()
        .zip(&kernel_names)
        .map(|(architecture, name)| (name.as_str(), architecture.debian_name()))
        .collect();
    let kernels = packages::candidates(&kernel_wanted)?;
    let mut resolved = Vec::new();
    for (index, kernel) in kernels.into_iter().enumerate() {
        let busybox = first[2 + 2 * index].clone();
        if busybox.version != host_busybox.version {
            bail!(
                "busybox-static {} for {host} and {} for {} differ: the applet list comes from the {host} one",
                host_busybox.version,
                busybox.version,
                busybox.architecture
            );
        }
        resolved.push(ImagePackages { kernel, busybox, host_busybox: host_busybox.clone() });
    }
    Ok(resolved)
}

/// Everything needed to build one architecture's image.
struct ImageBuilder {
    architecture: Architecture,
    workspace_root: PathBuf,
    target: PathBuf,
    cache: PathBuf,
    work: PathBuf,
    output: PathBuf,
    timestamp: u64,
    with_agent: bool,
}

impl ImageBuilder {
    /// Builds the image unless its input digest is unchanged; returns whether it built.
    fn build(&self, packages: &ImagePackages, force: bool) -> anyhow::Result<bool> {
        let architecture = self.architecture;
        let ImagePackages { kernel, busybox, host_busybox } = packages;
        let kernel_deb = packages::fetch(kernel, &self.cache)?;
        let busybox_deb = packages::fetch(busybox, &self.cache)?;
        let host_busybox_deb = packages::fetch(host_busybox, &self.cache)?;
        let agent =
            if self.with_agent { Some(agent::build_static_agent(&self.workspace_root, &self.target)?) } else { None };
        let guest_files = self.workspace_root.join("images");

        let mut inputs = InputDigest::default();
        for (index, source) in BUILDER_SOURCES.iter().enumerate() {
            inputs.add(&format!("builder source {index}"), source.as_bytes());
        }
        inputs.add("architecture", architecture.name().as_bytes());
        inputs.add("timestamp", self.timestamp.to_string().as_bytes());
        for package in [kernel, busybox, host_busybox] {
            inputs.add(&package.deb_file_name(), package.sha256.as_bytes());
        }
        let mut guest_tree = CpioArchive::default();
        rootfs::add_directory(&mut guest_tree, &guest_files, "")?;
        inputs.add("guest files", &guest_tree.to_bytes(0)?);
        if let Some(agent) = &agent {
            inputs.add("steward-agent", sha256_file(agent)?.as_bytes());
        }
        let input_digest = inputs.finish();
        let digest_path = self.output.join(INPUT_DIGEST_FILE);
        let up_to_date =
            std::fs::read_to_string(&digest_path).map(|stored| stored.trim() == input_digest).unwrap_or(false)
                && OUTPUT_FILES.iter().all(|file| self.output.join(file).is_file());
        if up_to_date && !force {
            return Ok(false);
        }

        std::fs::create_dir_all(&self.output).with_context(|| format!("cannot create {}", self.output.display()))?;
        if digest_path.exists() {
            std::fs::remove_file(&digest_path).with_context(|| format!("cannot remove {}", digest_path.display()))?;
        }
        if self.work.exists() {
            std::fs::remove_dir_all(&self.work).with_context(|| format!("cannot remove {}", self.work.display()))?;
        }
        std::fs::create_dir_all(&self.work).with_context(|| format!("cannot create {}", self.work.display()))?;

        let busybox_root = self.work.join("busybox");
        packages::unpack(&busybox_deb, &busybox_root)?;
        let busybox_binary =
            std::fs::read(busybox_root.join("bin/busybox")).context("the busybox-static package has no bin/busybox")?;
        let host_busybox_root = self.work.join("host-busybox");
        packages::unpack(&host_busybox_deb, &host_busybox_root)?;
        let applets = rootfs::busybox_applets(&host_busybox_root.join("bin/busybox"))?;
        rootfs::check_busybox_has_applets(&busybox_binary, &applets)
            .with_context(|| format!("busybox-static for {}", architecture.name()))?;

        let kernel_root = self.work.join("kernel");
        packages::unpack(&kernel_deb, &kernel_root)?;
        let kernel_release = kernel.name.trim_start_matches("linux-image-").to_owned();
        let vmlinuz = kernel_root.join("boot").join(format!("vmlinuz-{kernel_release}"));
        let modules_root = kernel_root.join("lib/modules").join(&kernel_release);

        eprintln!("images: {}: initramfs", architecture.name());
        let initrd = self.initramfs(&guest_files, &modules_root, &busybox_binary)?;
        write_atomically(&self.output.join("initrd.img"), &initrd)?;
        let kernel_bytes = std::fs::read(&vmlinuz).with_context(|| format!("cannot read {}", vmlinuz.display()))?;
        write_atomically(&self.output.join("vmlinuz"), &kernel_bytes)?;
        std::fs::remove_dir_all(&kernel_root).with_context(|| format!("cannot remove {}", kernel_root.display()))?;

        eprintln!("images: {}: root filesystem", architecture.name());
        let root_tree = self.root_tree(&guest_files, busybox_binary, &applets, agent.as_deref())?;
        let identity = architecture.filesystem_identity(self.timestamp);
        rootfs::make_root_disk(&root_tree, &identity, &self.work, &self.output.join("disk.qcow2"))?;

        let template = Template {
            arch: architecture.name(),
            boot: "direct",
            kernel: "vmlinuz",
            initrd: "initrd.img",
            cmdline: format!("console={} root=/dev/vda rw quiet panic=-1", architecture.console()),
            disk: "disk.qcow2",
            disk_format: "qcow2",
            personalization: "nocloud",
            agent: agent.is_some(),
            sha256: TemplateDigests {
                disk: sha256_file(&self.output.join("disk.qcow2"))?,
                vmlinuz: sha256_file(&self.output.join("vmlinuz"))?,
                initrd: sha256_file(&self.output.join("initrd.img"))?,
            },
        };
        let mut template_text = serde_json::to_string_pretty(&template).context("cannot serialize template.json")?;
        template_text.push('\n');
        write_atomically(&self.output.join("template.json"), template_text.as_bytes())?;
        std::fs::remove_dir_all(&self.work).with_context(|| format!("cannot remove {}", self.work.display()))?;
        write_atomically(&digest_path, format!("{input_digest}\n").as_bytes())?;
        Ok(true)
    }

    /// The gzip'd initramfs: busybox, /init, /dev/console and the modules with their load order.
    fn initramfs(&self, guest_files: &Path, modules_root: &Path, busybox: &[u8]) -> anyhow::Result<Vec<u8>> {
        let tree = modules::ModuleTree::open(modules_root)?;
        let order = tree.resolve(&self.architecture.initramfs_modules())?;
        let mut archive = CpioArchive::default();
        let init_path = guest_files.join("initrd/init");
        let init = std::fs::read(&init_path).with_context(|| format!("cannot read {}", init_path.display()))?;
        archive.add("init", EntryKind::File { contents: init }, 0o755)?;
        archive.add("bin/busybox", EntryKind::File { contents: busybox.to_vec() }, 0o755)?;
        archive.add("bin/sh", EntryKind::Symlink { target: "busybox".to_owned() }, 0o777)?;
        archive.add("dev/console", EntryKind::CharacterDevice { major: 5, minor: 1 }, 0o600)?;
        for directory in ["proc", "sys", "newroot", "lib/modules"] {
            archive.add(directory, EntryKind::Directory, 0o755)?;
        }
        let mut load_order = String::from("# Written by cargo xtask images: insmod order, dependencies first.\n");
        for module in &order {
            let file_name = format!("{}.ko", module.name);
            let contents = std::fs::read(tree.absolute_path(module))
                .with_context(|| format!("cannot read module {}", module.path.display()))?;
            archive.add(&format!("lib/modules/{file_name}"), EntryKind::File { contents }, 0o644)?;
            load_order.push_str(&file_name);
            load_order.push('\n');
        }
        let names: Vec<&str> = order.iter().map(|module| module.name.as_str()).collect();
        eprintln!("images: {}: initramfs modules: {}", self.architecture.name(), names.join(" "));
        archive.add("lib/modules/load-order", EntryKind::File { contents: load_order.into_bytes() }, 0o644)?;
        let cpio = archive.to_bytes(u32::try_from(self.timestamp).context("time stamp beyond 2106")?)?;
        rootfs::gzip(&cpio)
    }

    /// The root filesystem's tree.
    fn root_tree(
        &self,
        guest_files: &Path,
        busybox: Vec<u8>,
        applets: &[String],
        agent: Option<&Path>,
    ) -> anyhow::Result<CpioArchive> {
        let mut tree = CpioArchive::default();
        rootfs::add_directory(&mut tree, &guest_files.join("rootfs"), "")?;
        for (directory, permissions) in [
            ("bin", 0o755),
            ("sbin", 0o755),
            ("usr/bin", 0o755),
            ("usr/sbin", 0o755),
            ("dev", 0o755),
            ("proc", 0o555),
            ("sys", 0o555),
            ("run", 0o755),
            ("tmp", 0o1777),
            ("root", 0o700),
            ("home", 0o755),
            ("mnt", 0o755),
            ("var/log", 0o755),
            ("var/tmp", 0o1777),
            ("var/lib/steward", 0o755),
            ("var/lib/steward-agent", 0o700),
            ("etc/steward", 0o755),
        ] {
            tree.add(directory, EntryKind::Directory, permissions)?;
        }
        let generated: [(&str, &str, u32); 5] = [
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
            ("etc/group", "root:x:0:\ntty:x:5:\n", 0o644),
            ("etc/hostname", "steward\n", 0o644),
            // Empty: generated at first boot (and emptied again when an image is sealed at capture).
            ("etc/machine-id", "", 0o444),
            ("etc/resolv.conf", "", 0o644),
        ];
        for (path, contents, permissions) in generated {
            tree.add(path, EntryKind::File { contents: contents.as_bytes().to_vec() }, permissions)?;
        }
        if let Some(agent) = agent {
            let contents = std::fs::read(agent).with_context(|| format!("cannot read {}", agent.display()))?;
            tree.add("usr/bin/steward-agent", EntryKind::File { contents }, 0o755)?;
            let fragment_path = guest_files.join("agent/inittab");
            let fragment =
                std::fs::read(&fragment_path).with_context(|| format!("cannot read {}", fragment_path.display()))?;
            tree.append_to_file("etc/inittab", b"\n")?;
            tree.append_to_file("etc/inittab", &fragment)?;
        } else {
            // Without the agent its service script has nothing to run.
            let mut without = CpioArchive::default();
            for (path, entry) in tree.entries().filter(|(path, _)| path.as_str() != "usr/lib/steward/agent-service") {
                without.add(path, entry.kind.clone(), entry.permissions)?;
            }
            tree = without;
        }
        rootfs::add_busybox(&mut tree, busybox, applets)?;
        Ok(tree)
    }
}

/// Writes a file under a temporary name, then renames it, so an interrupted build leaves no half file.
fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot rename to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    /// The guest's network-config parser (run here with the host's awk; the guest runs it with busybox awk)
    /// on the exact shape the QEMU driver writes: static with gateway and DNS, DHCP, static without gateway.
    #[test]
    fn guest_network_config_parser_reads_the_driver_format() {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../images/rootfs/usr/lib/steward/network-config.awk");
        let config = std::env::temp_dir().join(format!("steward-network-config-{}.yaml", std::process::id()));
        std::fs::write(
            &config,
            "version: 1\nconfig:\n  - type: physical\n    name: eth0\n    mac_address: \"52:54:00:12:34:56\"\n    \
             subnets:\n      - type: static\n        address: 10.77.0.2/24\n        gateway: 10.77.0.1\n        \
             dns_nameservers:\n          - 10.77.0.1\n          - 10.77.0.9\n  - type: physical\n    name: eth1\n    \
             mac_address: \"52:54:00:AB:CD:EF\"\n    subnets:\n      - type: dhcp\n  - type: physical\n    \
             name: eth2\n    mac_address: \"52:54:00:00:00:03\"\n    subnets:\n      - type: static\n        \
             address: 192.168.5.4/16\n",
        )
        .unwrap();
        let output = Command::new("awk").arg("-f").arg(&script).arg(&config).output().unwrap();
        std::fs::remove_file(&config).unwrap();
        assert!(output.status.success(), "awk failed: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            "52:54:00:12:34:56 eth0 static 10.77.0.2/24 10.77.0.1 10.77.0.1,10.77.0.9\n\
             52:54:00:ab:cd:ef eth1 dhcp - - -\n\
             52:54:00:00:00:03 eth2 static 192.168.5.4/16 - -\n"
        );
    }
}
