//! Debian packages for the images: which versions, downloading them into the cache, and the host's tools.
//!
//! Versions come from the machine's apt lists (`apt-cache show --no-all-versions`): the kernel is the package
//! that `linux-image-amd64` / `linux-image-s390x` depends on. Downloads go to `target/images/cache/` with
//! `apt-get download` and are checked against the SHA-256 that apt lists for that version, so a cached file
//! is reused only if it is exactly the package apt describes. The s390x architecture is added to dpkg (and
//! apt's lists updated) when missing, which needs root; nothing is installed for a foreign architecture.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::Architecture;
use super::digest::sha256_file;

/// A package version as apt describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageVersion {
    pub name: String,
    pub architecture: String,
    pub version: String,
    pub sha256: String,
    pub depends: String,
}

impl PackageVersion {
    /// `name:architecture=version`, as `apt-get download` takes it.
    fn apt_spec(&self) -> String {
        format!("{}:{}={}", self.name, self.architecture, self.version)
    }

    /// The file name `apt-get download` gives the package (the epoch's `:` is written `%3a`).
    pub fn deb_file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.architecture)
    }
}

/// Runs a command and returns its standard output, or an error naming the command and its standard error.
pub fn run_capture(command: &mut Command) -> anyhow::Result<String> {
    let description = format!("{command:?}");
    let output = command.output().with_context(|| format!("cannot run {description}"))?;
    if !output.status.success() {
        bail!("{description} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    String::from_utf8(output.stdout).with_context(|| format!("{description} printed something that is not UTF-8"))
}

/// Runs a command (its output goes to ours), failing with its name if it does not succeed.
pub fn run_checked(command: &mut Command) -> anyhow::Result<()> {
    let description = format!("{command:?}");
    let status = command.status().with_context(|| format!("cannot run {description}"))?;
    if !status.success() {
        bail!("{description} failed ({status})");
    }
    Ok(())
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn program_exists(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|directory| directory.join(program).is_file()))
        .unwrap_or(false)
}

/// Makes sure the host tools exist: installs their Debian packages when missing and running as root,
/// otherwise fails naming every missing tool and its package.
pub fn ensure_host_tools() -> anyhow::Result<()> {
    let tools = [
        ("apt-get", "apt"),
        ("apt-cache", "apt"),
        ("dpkg-deb", "dpkg"),
        ("mkfs.ext4", "e2fsprogs"),
        ("debugfs", "e2fsprogs"),
        ("e2fsck", "e2fsprogs"),
        ("qemu-img", "qemu-utils"),
        ("gzip", "gzip"),
        ("file", "file"),
    ];
    let missing: Vec<(&str, &str)> = tools.iter().copied().filter(|(program, _)| !program_exists(program)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
    packages.sort_unstable();
    packages.dedup();
    if !running_as_root() || !program_exists("apt-get") {
        let names: Vec<String> = missing.iter().map(|(program, package)| format!("{program} ({package})")).collect();
        bail!("missing host tools: {}; install them with `apt-get install {}`", names.join(", "), packages.join(" "));
    }
    eprintln!("images: installing host tools: {}", packages.join(" "));
    run_checked(Command::new("apt-get").args(["install", "-y", "-q"]).args(&packages))?;
    Ok(())
}

/// Makes sure apt knows the packages of `architecture`: adds the dpkg architecture and updates apt's lists
/// when either is missing (as root; otherwise fails saying what to run).
pub fn ensure_apt_architecture(architecture: Architecture) -> anyhow::Result<()> {
    let wanted = architecture.debian_name();
    let native = run_capture(Command::new("dpkg").arg("--print-architecture"))?;
    if native.trim() == wanted {
        return Ok(());
    }
    let foreign = run_capture(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    let known_to_dpkg = foreign.lines().any(|line| line.trim() == wanted);
    let list_suffix = format!("_binary-{wanted}_Packages");
    let known_to_apt = std::fs::read_dir("/var/lib/apt/lists")
        .map(|entries| {
            entries.filter_map(Result::ok).any(|entry| entry.file_name().to_string_lossy().contains(&list_suffix))
        })
        .unwrap_or(false);
    if known_to_dpkg && known_to_apt {
        return Ok(());
    }
    if !running_as_root() {
        bail!(
            "apt does not list {wanted} packages; as root run `dpkg --add-architecture {wanted} && apt-get update` \
             (nothing gets installed for {wanted}, packages are only downloaded)"
        );
    }
    if !known_to_dpkg {
        eprintln!("images: dpkg --add-architecture {wanted}");
        run_checked(Command::new("dpkg").args(["--add-architecture", wanted]))?;
    }
    eprintln!("images: apt-get update (for {wanted} package lists)");
    run_checked(Command::new("apt-get").args(["update", "-q"]))?;
    Ok(())
}

/// The candidate versions of `(name, architecture)` packages from apt's lists, in the order asked (one
/// `apt-cache` run for all of them: each run costs about a second).
pub fn candidates(wanted: &[(&str, &str)]) -> anyhow::Result<Vec<PackageVersion>> {
    let specs: Vec<String> = wanted.iter().map(|(name, architecture)| format!("{name}:{architecture}")).collect();
    let text = run_capture(Command::new("apt-cache").args(["show", "--no-all-versions"]).args(&specs))
        .with_context(|| format!("apt does not know all of the packages {}", specs.join(" ")))?;
    let mut found = Vec::new();
    for stanza in text.split("\n\n").filter(|stanza| !stanza.trim().is_empty()) {
        let field = |key: &str| -> Option<String> {
            stanza
                .lines()
                .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix(": ")))
                .map(str::to_owned)
        };
        let name = field("Package").context("apt-cache show printed a stanza without Package")?;
        let architecture = field("Architecture").with_context(|| format!("apt-cache show {name}: no Architecture"))?;
        let version = field("Version").with_context(|| format!("apt-cache show {name}: no Version field"))?;
        let sha256 = field("SHA256").with_context(|| format!("apt-cache show {name}: no SHA256 field"))?;
        if sha256.len() != 64 || !sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            bail!("apt-cache show {name}: SHA256 field {sha256:?} is not a SHA-256");
        }
        found.push(PackageVersion {
            name,
            architecture,
            version,
            sha256: sha256.to_ascii_lowercase(),
            depends: field("Depends").unwrap_or_default(),
        });
    }
    wanted
        .iter()
        .map(|(name, architecture)| {
            found
                .iter()
                .find(|package| package.name == *name && package.architecture == *architecture)
                .cloned()
                .with_context(|| format!("apt-cache show printed nothing for {name}:{architecture}"))
        })
        .collect()
}

/// The versioned kernel package name (`linux-image-6.1.0-N-<flavour>`) that a kernel metapackage depends on.
pub fn kernel_package_name(metapackage: &PackageVersion) -> anyhow::Result<String> {
    metapackage
        .depends
        .split([',', '|'])
        .map(|alternative| alternative.trim().split([' ', ':']).next().unwrap_or_default())
        .find(|name| name.starts_with("linux-image-6.1.0-"))
        .map(str::to_owned)
        .with_context(|| {
            format!("{} depends on no linux-image-6.1.0-* package (Depends: {})", metapackage.name, metapackage.depends)
        })
}

/// The package's file in the cache, downloaded unless a file with the expected SHA-256 is already there.
pub fn fetch(package: &PackageVersion, cache: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let path = cache.join(package.deb_file_name());
    if path.is_file() {
        if sha256_file(&path)? == package.sha256 {
            return Ok(path);
        }
        eprintln!("images: {} does not match apt's SHA-256, downloading it again", path.display());
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    eprintln!("images: apt-get download {}", package.apt_spec());
    let output = Command::new("apt-get")
        .args(["download", "-q", &package.apt_spec()])
        .current_dir(cache)
        .output()
        .context("cannot run apt-get download")?;
    if !output.status.success() {
        bail!("apt-get download {} failed: {}", package.apt_spec(), String::from_utf8_lossy(&output.stderr).trim());
    }
    if !path.is_file() {
        bail!("apt-get download {} did not write {}", package.apt_spec(), path.display());
    }
    let actual = sha256_file(&path)?;
    if actual != package.sha256 {
        bail!("{} has SHA-256 {actual}, apt lists {}", path.display(), package.sha256);
    }
    Ok(path)
}

/// Unpacks a package's files into `destination` (which is emptied first).
pub fn unpack(deb: &Path, destination: &Path) -> anyhow::Result<()> {
    if destination.exists() {
        std::fs::remove_dir_all(destination).with_context(|| format!("cannot remove {}", destination.display()))?;
    }
    std::fs::create_dir_all(destination).with_context(|| format!("cannot create {}", destination.display()))?;
    run_checked(Command::new("dpkg-deb").arg("-x").arg(deb).arg(destination))
}
