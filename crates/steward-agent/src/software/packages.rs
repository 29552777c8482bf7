//! Packages changed with the system's own tool: for a `.deb`, `apt-get install -y FILE` where apt-get exists
//! (it fetches dependencies), otherwise `dpkg --install`, and `dpkg --remove`; for an `.rpm`, `dnf install -y`,
//! `zypper --non-interactive install` or `rpm -ivh`/`-Uvh`, and `rpm -e`. With a package root (tests), only
//! `dpkg --root=ROOT` and `rpm --root ROOT` are used: apt, dnf and zypper have no such option that keeps them off
//! the host's own configuration.
//!
//! Package files are pushed by the server into a fresh directory under the staging directory ([`stage`]); the
//! operation checks that its file is in one, and removes that directory when the tool is done. Directories left
//! behind by transfers that failed are removed at the next staging after an hour.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use steward_protocol::software::{PackageAction, PackageFormat, PackageOperation, PackageStaged, ToolOutcome};

use super::{SoftwareSettings, ToolCommand, on_path, run_all};

/// How long a package tool may run.
pub const TOOL_TIMEOUT_SECONDS: u32 = 1800;
/// Staged directories older than this are left over from failed transfers.
const STALE_STAGING: Duration = Duration::from_secs(3600);

/// Makes a private directory (mode 0700) under `staging` for one package file.
pub fn stage(staging: &Path) -> Result<PackageStaged, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(staging)
        .map_err(|error| format!("cannot create the staging directory {}: {error}", staging.display()))?;
    remove_stale(staging);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    for attempt in 0..16u32 {
        let name = format!("{:x}-{:x}-{attempt}", std::process::id(), nanos);
        let directory = staging.join(name);
        match std::fs::DirBuilder::new().mode(0o700).create(&directory) {
            Ok(()) => {
                let directory = std::fs::canonicalize(&directory).unwrap_or(directory);
                return Ok(PackageStaged { directory: directory.to_string_lossy().into_owned() });
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(format!("cannot create a directory in {}: {error}", staging.display())),
        }
    }
    Err(format!("cannot find a free directory name in {}", staging.display()))
}

fn remove_stale(staging: &Path) {
    let Ok(entries) = std::fs::read_dir(staging) else { return };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|metadata| metadata.modified())
            .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age > STALE_STAGING));
        if old && entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Checks `operation`, runs the tool, and removes the staged file's directory whatever happened.
pub async fn carry_out(settings: &SoftwareSettings, operation: PackageOperation) -> Result<ToolOutcome, String> {
    package_name(&operation.name)?;
    let staged = match (&operation.action, &operation.file) {
        (PackageAction::Remove, _) => None,
        (_, None) => return Err(format!("{} needs the staged package file", operation.action.as_str())),
        (_, Some(file)) => Some(staged_file(&settings.staging, file)?),
    };
    let commands = commands(&operation, staged.as_deref(), settings.package_root.as_deref());
    let result = match commands {
        Ok(commands) => {
            run_all(commands, TOOL_TIMEOUT_SECONDS, &[("DEBIAN_FRONTEND", "noninteractive"), ("LC_ALL", "C")]).await
        }
        Err(message) => Err(message),
    };
    if let Some(file) = &staged
        && let Some(directory) = file.parent()
    {
        let _ = std::fs::remove_dir_all(directory);
    }
    result
}

/// The package file `file`, which must be a regular file directly inside a directory [`stage`] made.
fn staged_file(staging: &Path, file: &str) -> Result<PathBuf, String> {
    let real = std::fs::canonicalize(file).map_err(|error| format!("the staged package {file}: {error}"))?;
    let staging = std::fs::canonicalize(staging).unwrap_or_else(|_| staging.to_path_buf());
    let directory = real.parent().filter(|directory| directory.parent() == Some(staging.as_path()));
    if directory.is_none() {
        return Err(format!("{file} is not a package file staged by this agent (in {})", staging.display()));
    }
    let metadata = std::fs::metadata(&real).map_err(|error| format!("{file}: {error}"))?;
    if !metadata.is_file() {
        return Err(format!("{file} is not a regular file"));
    }
    // The tools run as root: nobody else may have written the file since it was pushed.
    if metadata.permissions().mode() & 0o022 != 0 {
        let _ = std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600));
    }
    Ok(real)
}

/// A package name as both formats allow: letters, digits, `+ - . _ ~ :` and `@`, not starting with `-`.
fn package_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 256
        && !name.starts_with('-')
        && name.chars().all(|character| character.is_ascii_alphanumeric() || "+-._~@".contains(character));
    if valid { Ok(()) } else { Err(format!("{name:?} is not a package name")) }
}

/// The commands that carry out `operation` on this system.
fn commands(
    operation: &PackageOperation,
    file: Option<&Path>,
    root: Option<&Path>,
) -> Result<Vec<ToolCommand>, String> {
    let file = file.map(|file| file.to_string_lossy().into_owned());
    let name = operation.name.clone();
    let argv = |words: &[&str]| words.iter().map(|word| word.to_string()).collect::<Vec<String>>();
    let with_file = |mut words: Vec<String>| {
        words.push(file.clone().unwrap_or_default());
        words
    };
    let command = match operation.format {
        PackageFormat::Deb => {
            if !on_path("dpkg") {
                return Err("this system has no dpkg: a .deb package cannot be installed or removed here".into());
            }
            let mut dpkg = argv(&["dpkg"]);
            if let Some(root) = root {
                dpkg.push(format!("--root={}", root.display()));
                dpkg.push("--log=/dev/null".into());
            }
            match operation.action {
                PackageAction::Remove => [dpkg, vec!["--remove".into(), name]].concat(),
                _ if root.is_none() && on_path("apt-get") => with_file(argv(&["apt-get", "install", "-y"])),
                _ => with_file([dpkg, vec!["--install".into()]].concat()),
            }
        }
        PackageFormat::Rpm => {
            if !on_path("rpm") {
                return Err("this system has no rpm: an .rpm package cannot be installed or removed here".into());
            }
            let mut rpm = argv(&["rpm"]);
            if let Some(root) = root {
                rpm.push("--root".into());
                rpm.push(root.display().to_string());
            }
            let front_end = root.is_none();
            match operation.action {
                PackageAction::Remove => [rpm, vec!["-e".into(), name]].concat(),
                PackageAction::Install if front_end && on_path("dnf") => with_file(argv(&["dnf", "install", "-y"])),
                PackageAction::Upgrade if front_end && on_path("dnf") => with_file(argv(&["dnf", "upgrade", "-y"])),
                _ if front_end && on_path("zypper") => {
                    with_file(argv(&["zypper", "--non-interactive", "install", "--allow-unsigned-rpm"]))
                }
                PackageAction::Install => with_file([rpm, vec!["-ivh".into()]].concat()),
                PackageAction::Upgrade => with_file([rpm, vec!["-Uvh".into()]].concat()),
            }
        }
    };
    Ok(vec![(command, None)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_outside_a_staged_directory_is_refused() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let staging = scratch.path().join("staging");
        let staged = stage(&staging).expect("stage");
        let inside = Path::new(&staged.directory).join("p.deb");
        std::fs::write(&inside, b"x").expect("write");
        assert_eq!(staged_file(&staging, inside.to_str().expect("path")).expect("accepted"), inside);
        let outside = scratch.path().join("p.deb");
        std::fs::write(&outside, b"x").expect("write");
        let error = staged_file(&staging, outside.to_str().expect("path")).expect_err("refused");
        assert!(error.contains("not a package file staged"), "{error}");
        let direct = staging.join("p.deb");
        std::fs::write(&direct, b"x").expect("write");
        assert!(staged_file(&staging, direct.to_str().expect("path")).is_err());
    }

    #[test]
    fn package_names_are_checked() {
        assert!(package_name("steward-hello").is_ok());
        assert!(package_name("libstdc++6").is_ok());
        for bad in ["", "-rf", "a b", "a;b", "a/b"] {
            assert!(package_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_scratch_root_uses_dpkg_with_its_root() {
        if !on_path("dpkg") {
            return;
        }
        let operation = PackageOperation {
            action: PackageAction::Install,
            format: PackageFormat::Deb,
            name: "x".into(),
            file: None,
        };
        let commands = commands(&operation, Some(Path::new("/s/d/x.deb")), Some(Path::new("/scratch"))).expect("ok");
        assert_eq!(commands[0].0, ["dpkg", "--root=/scratch", "--log=/dev/null", "--install", "/s/d/x.deb"]);
    }
}
