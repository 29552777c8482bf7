//! Installed software packages: dpkg's status database and the rpm database.
//!
//! **dpkg**: `/var/lib/dpkg/status` is a list of stanzas separated by blank lines, one per package dpkg knows.
//! A package counts as installed when the last word of its `Status:` (want, error flag, state) is `installed`: this
//! includes `install ok installed` and also packages on hold (`hold ok installed`) or selected for removal but not
//! yet removed (`deinstall ok installed`); configuration-only remains (`config-files`), half-installed and
//! not-installed entries are left out. Name, `Architecture` and `Version` (with its epoch, as dpkg writes it) are
//! taken; continuation lines are skipped without being looked at. The file (a few MiB on a big system) is streamed
//! line by line, so only the packages themselves are allocated.
//!
//! **rpm**: only when `/var/lib/rpm` exists under the root, the root is `/` (rpm reads its database itself) and an
//! `rpm` binary is on `PATH`, the agent runs `rpm -qa --qf '%{NAME}\t%{ARCH}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\n'`.
//! A `0:` epoch is dropped, so versions look like `rpm -q` prints them; the `(none)` architecture of pseudo packages
//! such as `gpg-pubkey` becomes empty. Both databases may exist on one system (rpm installed on Debian, say): both
//! are reported, each package with its manager.
//!
//! An agent started with `--package-root DIR` (tests) reads both databases under `DIR` instead (`rpm --root DIR`),
//! since its package tools act there.

use std::path::Path;
use std::process::{Command, Stdio};

use steward_protocol::{Package, PackageManager};

use super::{for_each_line, rooted};

/// The query format given to `rpm -qa`.
const RPM_QUERY_FORMAT: &str = "%{NAME}\t%{ARCH}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\n";

pub(super) fn collect(root: &Path, live: bool) -> Vec<Package> {
    let mut packages = Vec::new();
    // An agent whose package tools act on a scratch root (`--package-root`, for tests) reports that root's.
    let package_root = crate::software::package_root().filter(|_| live);
    let dpkg_root = package_root.unwrap_or(root);
    read_dpkg_status(&rooted(dpkg_root, "var/lib/dpkg/status"), &mut packages);
    // Under a package root the database may be wherever this host's rpm keeps it (`~/.rpmdb` on Debian): ask.
    if package_root.is_some() || rooted(root, "var/lib/rpm").is_dir() {
        if live {
            query_rpm(package_root, &mut packages);
        } else {
            tracing::debug!("rpm database under a fixture root is not queried");
        }
    }
    packages
}

/// Appends the installed packages of a dpkg status file; nothing when the file is missing.
pub(super) fn read_dpkg_status(path: &Path, packages: &mut Vec<Package>) {
    let mut stanza = DpkgStanza::default();
    for_each_line(path, |line| {
        stanza.line(line, packages);
        true
    });
    stanza.finish(packages);
}

/// The fields of the stanza being read.
#[derive(Debug, Default)]
struct DpkgStanza {
    name: String,
    arch: String,
    version: String,
    installed: bool,
}

impl DpkgStanza {
    fn line(&mut self, line: &str, packages: &mut Vec<Package>) {
        if line.is_empty() {
            self.finish(packages);
            return;
        }
        if line.starts_with([' ', '\t']) {
            return;
        }
        let Some((field, value)) = line.split_once(':') else { return };
        let value = value.trim();
        match field {
            "Package" => set(&mut self.name, value),
            "Architecture" => set(&mut self.arch, value),
            "Version" => set(&mut self.version, value),
            "Status" => self.installed = value.split_ascii_whitespace().last() == Some("installed"),
            _ => {}
        }
    }

    /// Ends the stanza: records it if it is an installed package, and resets the fields.
    fn finish(&mut self, packages: &mut Vec<Package>) {
        if self.installed && !self.name.is_empty() {
            packages.push(Package {
                name: self.name.clone(),
                arch: self.arch.clone(),
                version: self.version.clone(),
                manager: PackageManager::Dpkg,
            });
        }
        self.name.clear();
        self.arch.clear();
        self.version.clear();
        self.installed = false;
    }
}

fn set(field: &mut String, value: &str) {
    field.clear();
    field.push_str(value);
}

/// Runs `rpm -qa` and appends its packages; nothing when rpm is not installed or fails.
fn query_rpm(package_root: Option<&Path>, packages: &mut Vec<Package>) {
    let mut command = Command::new("rpm");
    if let Some(root) = package_root {
        command.arg("--root").arg(root);
    }
    let output = command.args(["-qa", "--qf", RPM_QUERY_FORMAT]).stdin(Stdio::null()).stderr(Stdio::null()).output();
    match output {
        Ok(output) if output.status.success() => parse_rpm_output(&String::from_utf8_lossy(&output.stdout), packages),
        Ok(output) => tracing::debug!(status = %output.status, "rpm -qa failed"),
        Err(error) => tracing::debug!(%error, "rpm not runnable"),
    }
}

/// Parses the output of `rpm -qa --qf` with [`RPM_QUERY_FORMAT`].
pub(super) fn parse_rpm_output(text: &str, packages: &mut Vec<Package>) {
    for line in text.lines() {
        let mut fields = line.split('\t');
        let (Some(name), Some(arch), Some(version), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            if !line.is_empty() {
                tracing::debug!(line, "unexpected rpm output line");
            }
            continue;
        };
        if name.is_empty() {
            continue;
        }
        packages.push(Package {
            name: name.to_owned(),
            arch: if arch == "(none)" { String::new() } else { arch.to_owned() },
            version: version.strip_prefix("0:").unwrap_or(version).to_owned(),
            manager: PackageManager::Rpm,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: bash
Essential: yes
Status: install ok installed
Priority: required
Section: shells
Installed-Size: 7164
Maintainer: Matthias Klose <doko@debian.org>
Architecture: amd64
Multi-Arch: foreign
Version: 5.2.15-2+b2
Depends: base-files (>= 2.1.12), debianutils (>= 5.6-0.1)
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter.
 .
 Package: not-a-package
Homepage: http://tiswww.case.edu/php/chet/bash/bashtop.html

Package: libc6
Status: hold ok installed
Architecture: i386
Version: 2.36-9+deb12u4

Package: removed-leftovers
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: half
Status: install reinstreq half-installed
Architecture: amd64
Version: 2.0

Package: perl-base
Status: install ok installed
Architecture: amd64
Version: 1:5.36.0-7+deb12u1";

    #[test]
    fn reads_installed_dpkg_packages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("status");
        std::fs::write(&path, STATUS).expect("write");
        let mut packages = Vec::new();
        read_dpkg_status(&path, &mut packages);
        let dpkg = |name: &str, arch: &str, version: &str| Package {
            name: name.into(),
            arch: arch.into(),
            version: version.into(),
            manager: PackageManager::Dpkg,
        };
        assert_eq!(
            packages,
            [
                dpkg("bash", "amd64", "5.2.15-2+b2"),
                dpkg("libc6", "i386", "2.36-9+deb12u4"),
                dpkg("perl-base", "amd64", "1:5.36.0-7+deb12u1"),
            ]
        );
    }

    #[test]
    fn missing_or_garbage_status_is_harmless() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut packages = Vec::new();
        read_dpkg_status(&dir.path().join("missing"), &mut packages);
        assert!(packages.is_empty());
        let path = dir.path().join("status");
        std::fs::write(&path, "Status: install ok installed\n\n\n:::\nPackage:\nStatus: installed\n").expect("write");
        read_dpkg_status(&path, &mut packages);
        assert!(packages.is_empty());
    }

    #[test]
    fn parses_rpm_output() {
        let mut packages = Vec::new();
        parse_rpm_output(
            "bash\tx86_64\t0:5.1.8-6.el9\nperl-Errno\tx86_64\t0:1.30-480.el9\n\
             shadow-utils\ts390x\t2:4.9-8.el9\ngpg-pubkey\t(none)\t0:fd431d51-4ae0493b\nbroken line\n\n",
            &mut packages,
        );
        let rpm = |name: &str, arch: &str, version: &str| Package {
            name: name.into(),
            arch: arch.into(),
            version: version.into(),
            manager: PackageManager::Rpm,
        };
        assert_eq!(
            packages,
            [
                rpm("bash", "x86_64", "5.1.8-6.el9"),
                rpm("perl-Errno", "x86_64", "1.30-480.el9"),
                rpm("shadow-utils", "s390x", "2:4.9-8.el9"),
                rpm("gpg-pubkey", "", "fd431d51-4ae0493b"),
            ]
        );
    }

    #[test]
    fn rpm_database_is_not_queried_under_a_fixture_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("var/lib/rpm")).expect("mkdir");
        assert!(collect(dir.path(), false).is_empty());
    }

    #[test]
    fn dpkg_status_of_this_machine_reads_quickly() {
        let path = Path::new("/var/lib/dpkg/status");
        if !path.exists() {
            return;
        }
        let started = std::time::Instant::now();
        let mut packages = Vec::new();
        read_dpkg_status(path, &mut packages);
        let elapsed = started.elapsed();
        assert!(!packages.is_empty());
        // Generous even for a debug build on a loaded machine; a release build takes a few milliseconds.
        assert!(elapsed < std::time::Duration::from_secs(2), "{elapsed:?} for {} packages", packages.len());
    }
}
