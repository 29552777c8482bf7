//! RPM packages against rpm itself: a package built here is checked with `rpm -qip`, `-qlp`, `--requires`,
//! `--scripts`, `-K` (digests), its payload is unpacked with `cpio` and compared with the tree, and (as root)
//! it is installed into a scratch root and verified there with `rpm -V`. A package built by `rpmbuild` is
//! read here and compared with what rpm says of it.

mod support;

use std::fs;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use steward_package::{Dependency, PackageFormat, RelationOp, build_deb, build_rpm, read_package};
use support::*;

/// The payload of an RPM file, decompressed: what follows the lead, the signature header (padded to 8) and
/// the main header. Written here, independently of the crate's reader, to unpack with `cpio`.
fn rpm_payload(bytes: &[u8]) -> Result<Vec<u8>> {
    let header_length = |at: usize| -> Result<usize> {
        let preamble = bytes.get(at..at + 16).context("truncated header")?;
        ensure!(preamble[..3] == [0x8e, 0xad, 0xe8], "no header magic at {at}");
        let tags = u32::from_be_bytes(preamble[8..12].try_into()?) as usize;
        let store = u32::from_be_bytes(preamble[12..16].try_into()?) as usize;
        Ok(16 + 16 * tags + store)
    };
    let signature_end = 96 + header_length(96)?;
    let header_start = signature_end.div_ceil(8) * 8;
    let payload_start = header_start + header_length(header_start)?;
    let mut payload = Vec::new();
    flate2::read::GzDecoder::new(&bytes[payload_start..]).read_to_end(&mut payload)?;
    Ok(payload)
}

#[test]
fn a_built_rpm_is_what_rpm_reads() -> Result<()> {
    if !tool_available("rpm") || !tool_available("cpio") {
        return Ok(());
    }
    let scratch = tempfile::tempdir()?;
    let spec = sample_spec(&sample_tree(&scratch.path().join("files"))?);
    let package = scratch.path().join("steward-hello-1.4.2-3.x86_64.rpm");
    build_rpm(&spec, &package)?;
    let path = package.to_str().context("path")?;

    let checked = run("rpm", &["-K", "--nosignature", path])?;
    ensure!(checked.trim_end().ends_with("digests OK"), "rpm -K: {checked}");
    let verbose = run("rpm", &["-Kv", "--nosignature", path])?;
    for digest in ["Header SHA256 digest: OK", "Payload SHA256 digest: OK", "MD5 digest: OK"] {
        ensure!(verbose.contains(digest), "rpm -Kv lacks {digest:?}:\n{verbose}");
    }

    let info = run("rpm", &["-qip", path])?;
    for expected in [
        "Name        : steward-hello",
        "Version     : 1.4.2",
        "Release     : 3",
        "Architecture: x86_64",
        "License     : Apache-2.0",
        "Packager    : Steward Operators <ops@example.org>",
        "Summary     : Says hello for Steward's tests",
        "Source RPM  : steward-hello-1.4.2-3.src.rpm",
        "It has nested files, a link and scripts.",
    ] {
        ensure!(info.contains(expected), "rpm -qip lacks {expected:?}:\n{info}");
    }

    // The file list: the tree's files, link and own directories, not the system's directories.
    let listed: Vec<String> = run("rpm", &["-qlp", path])?.lines().map(str::to_owned).collect();
    for file in SAMPLE_FILES {
        ensure!(listed.contains(&format!("/{}", file.path)), "{} not listed: {listed:?}", file.path);
    }
    for expected in ["/usr/bin/hello", "/var/lib/steward-hello", "/usr/lib/steward-hello/plugins/deep"] {
        ensure!(listed.iter().any(|path| path == expected), "{expected} not listed: {listed:?}");
    }
    for system in ["/usr", "/usr/bin", "/etc", "/var/lib"] {
        ensure!(!listed.iter().any(|path| path == system), "{system} is listed: {listed:?}");
    }
    let modes =
        run("rpm", &["-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]", path])?;
    for expected in [
        "-rwxr-xr-x root:root /usr/bin/steward-hello",
        "-rw------- root:root /etc/steward-hello/secret.conf",
        "lrwxrwxrwx root:root /usr/bin/hello",
        "drwxr-x--- root:root /var/lib/steward-hello",
    ] {
        ensure!(modes.lines().any(|line| line == expected), "{expected:?} not in\n{modes}");
    }

    let configuration = run("rpm", &["-qcp", path])?;
    ensure!(configuration == "/etc/steward-hello/secret.conf\n", "rpm -qcp: {configuration}");
    let flags = run("rpm", &["-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", path])?;
    ensure!(flags.lines().any(|line| line == "cn /etc/steward-hello/secret.conf"), "{flags}");

    let requires = run("rpm", &["-qp", "--requires", path])?;
    for expected in ["bash >= 4.0", "coreutils", "/bin/sh", "rpmlib(FileDigests) <= 4.6.0-1"] {
        ensure!(requires.lines().any(|line| line == expected), "{expected:?} not required:\n{requires}");
    }
    let scripts = run("rpm", &["-qp", "--scripts", path])?;
    ensure!(
        scripts.contains("postinstall scriptlet (using /bin/sh):\n#!/bin/sh\nset -e\necho configured steward-hello"),
        "{scripts}"
    );
    ensure!(scripts.contains("preuninstall scriptlet (using /bin/sh):\necho removing steward-hello"), "{scripts}");

    // The payload, unpacked with cpio: the tree's files, modes and link.
    let unpacked = scratch.path().join("unpacked");
    fs::create_dir(&unpacked)?;
    let payload = rpm_payload(&fs::read(&package)?)?;
    run_in(Some(&unpacked), "cpio", &["-idm", "--quiet", "--no-absolute-filenames"], Some(&payload))?;
    assert_sample_installed(&unpacked)?;

    // Read back here: the spec's metadata.
    let read = read_package(fs::File::open(&package)?)?;
    ensure!(read.format == PackageFormat::Rpm);
    ensure!(read.name == spec.name && read.version == "1.4.2-3", "{read:?}");
    ensure!(read.architecture == "x86_64" && read.normalized_architecture == "x86_64", "{read:?}");
    ensure!(read.summary == spec.summary && read.description == spec.description, "{read:?}");
    ensure!(read.maintainer.as_deref() == Some(spec.maintainer.as_str()), "{read:?}");
    let own: Vec<Dependency> = read.depends.iter().filter(|dependency| !dependency.internal).cloned().collect();
    ensure!(own == spec.depends, "{:?}", read.depends);
    ensure!(
        read.depends.iter().any(|dependency| dependency.internal && dependency.name == "/bin/sh"),
        "{:?}",
        read.depends
    );
    ensure!(read.file_count == listed.len() as u64, "{} files, rpm lists {}", read.file_count, listed.len());
    Ok(())
}

#[test]
fn a_built_rpm_installs_into_a_scratch_root_and_verifies() -> Result<()> {
    if !tool_available("rpm") {
        return Ok(());
    }
    if !is_root() {
        eprintln!("skipping: installing into a scratch root needs root (rpm sets owners)");
        return Ok(());
    }
    let scratch = tempfile::tempdir()?;
    let spec = sample_spec(&sample_tree(&scratch.path().join("files"))?);
    let package = scratch.path().join("steward-hello.rpm");
    build_rpm(&spec, &package)?;
    let root = scratch.path().join("root");
    fs::create_dir(&root)?;
    let root_text = root.to_str().context("path")?;
    // Everything stays under the scratch root (rpm takes the database path inside it): its own database, no
    // scripts, no dependency checks.
    let install = ["--root", root_text, "--define", "_dbpath /rpmdb"];
    run("rpm", &[&install[..], &["--initdb"]].concat())?;
    let package_text = package.to_str().context("path")?;
    run(
        "rpm",
        &[&install[..], &["-i", "--nodeps", "--noscripts", "--ignorearch", "--ignoreos", package_text]].concat(),
    )?;
    assert_sample_installed(&root)?;
    ensure!(root.join("rpmdb").is_dir(), "the scratch database is not under the scratch root");
    // rpm -V compares every installed file with the header: size, mode, digest, link, owner, group, mtime.
    let verify = [&install[..], &["-V", "--nodeps", "steward-hello"]].concat();
    match run("rpm", &verify) {
        Ok(output) if output.trim().is_empty() => {}
        Ok(output) => bail!("rpm -V reports differences:\n{output}"),
        Err(error) => bail!("rpm -V failed: {error:#}"),
    }
    // And it does compare: a changed file is reported (rpm -V then exits non-zero).
    fs::write(root.join("usr/share/steward-hello/data/greeting.txt"), "changed\n")?;
    let message = format!("{:#}", run("rpm", &verify).expect_err("a changed file"));
    ensure!(message.contains("S.5") && message.contains("/usr/share/steward-hello/data/greeting.txt"), "{message}");
    Ok(())
}

#[test]
fn both_formats_read_back_the_same_metadata() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let mut spec = sample_spec(&sample_tree(&scratch.path().join("files"))?);
    spec.epoch = Some(2);
    spec.depends.push(Dependency::versioned("libssl3", RelationOp::GreaterOrEqual, "3.0").or("libssl1.1", None));
    spec.scripts.pre_install = Some("#!/bin/bash -e\necho before\n".to_owned());
    let deb = scratch.path().join("package.deb");
    let rpm = scratch.path().join("package.rpm");
    build_deb(&spec, &deb)?;
    build_rpm(&spec, &rpm)?;
    let from_deb = read_package(fs::File::open(&deb)?)?;
    let from_rpm = read_package(fs::File::open(&rpm)?)?;
    for read in [&from_deb, &from_rpm] {
        ensure!(read.name == "steward-hello" && read.version == "2:1.4.2-3", "{read:?}");
        ensure!(read.normalized_architecture == "x86_64" && read.summary == spec.summary, "{read:?}");
        ensure!(read.description == spec.description, "{read:?}");
        let own: Vec<Dependency> = read.depends.iter().filter(|dependency| !dependency.internal).cloned().collect();
        ensure!(own == spec.depends, "{:?}: {:?}", read.format, read.depends);
    }
    if tool_available("rpm") {
        let requires = run("rpm", &["-qp", "--requires", rpm.to_str().context("path")?])?;
        ensure!(requires.lines().any(|line| line == "(libssl3 >= 3.0 or libssl1.1)"), "{requires}");
        ensure!(requires.lines().any(|line| line.starts_with("rpmlib(RichDependencies)")), "{requires}");
        ensure!(requires.lines().any(|line| line == "/bin/bash"), "{requires}");
        let scripts = run("rpm", &["-qp", "--scripts", rpm.to_str().context("path")?])?;
        ensure!(
            scripts.contains("preinstall scriptlet (using /bin/bash -e):\n#!/bin/bash -e\necho before"),
            "{scripts}"
        );
        let checked = run("rpm", &["-K", "--nosignature", rpm.to_str().context("path")?])?;
        ensure!(checked.trim_end().ends_with("digests OK"), "rpm -K: {checked}");
    }
    Ok(())
}

/// Builds a small noarch package with rpmbuild (its own top directory, nothing outside the scratch one).
fn rpmbuild_package(directory: &Path) -> Result<std::path::PathBuf> {
    let spec = directory.join("probe.spec");
    fs::write(
        &spec,
        "Name: probe\nVersion: 0.9\nRelease: 2\nEpoch: 1\nSummary: probes the reader\nLicense: MIT\n\
         BuildArch: noarch\nPackager: Someone <someone@example.org>\nVendor: Steward\n\
         Requires: bash >= 4\nRequires: (python3 or perl)\nRequires(post): coreutils\n\
         %description\nA longer text.\n%install\nmkdir -p %{buildroot}/usr/share/probe\n\
         echo probe > %{buildroot}/usr/share/probe/README\necho news > %{buildroot}/usr/share/probe/NEWS\n\
         %post\necho installed\n%files\n/usr/share/probe\n",
    )?;
    let top = directory.join("rpmbuild");
    run(
        "rpmbuild",
        &[
            "--define",
            &format!("_topdir {}", top.to_str().context("path")?),
            "--define",
            "_build_id_links none",
            "--nodeps",
            "-bb",
            spec.to_str().context("path")?,
        ],
    )?;
    Ok(top.join("RPMS/noarch/probe-0.9-2.noarch.rpm"))
}

#[test]
fn a_package_built_by_rpmbuild_reads_as_rpm_reads_it() -> Result<()> {
    if !tool_available("rpmbuild") {
        return Ok(());
    }
    let scratch = tempfile::tempdir()?;
    let package = rpmbuild_package(scratch.path())?;
    let read = read_package(fs::File::open(&package)?)?;
    let path = package.to_str().context("path")?;
    let expected = run(
        "rpm",
        &[
            "-qp",
            "--qf",
            "%{NAME}|%{EPOCH}:%{VERSION}-%{RELEASE}|%{ARCH}|%{SUMMARY}|%{PACKAGER}|%{VENDOR}|%{SIZE}",
            path,
        ],
    )?;
    let ours = format!(
        "{}|{}|{}|{}|{}|{}|{}",
        read.name,
        read.version,
        read.architecture,
        read.summary,
        read.maintainer.as_deref().unwrap_or_default(),
        read.vendor.as_deref().unwrap_or_default(),
        read.installed_size.unwrap_or_default()
    );
    ensure!(ours == expected, "rpm says {expected}, we read {ours}");
    ensure!(read.normalized_architecture == "all" && read.description == "A longer text.", "{read:?}");
    let listed = run("rpm", &["-qlp", path])?.lines().count() as u64;
    ensure!(read.file_count == listed, "{} files, rpm lists {listed}", read.file_count);
    // Every requirement rpm lists, with the ones rpm added itself marked internal.
    let requires: Vec<String> = run("rpm", &["-qp", "--requires", path])?.lines().map(str::to_owned).collect();
    ensure!(read.depends.len() == requires.len(), "{:?} vs {requires:?}", read.depends);
    let own: Vec<&Dependency> = read.depends.iter().filter(|dependency| !dependency.internal).collect();
    ensure!(own.contains(&&Dependency::versioned("bash", RelationOp::GreaterOrEqual, "4")), "{own:?}");
    ensure!(own.contains(&&Dependency::new("python3").or("perl", None)), "{own:?}");
    ensure!(own.contains(&&Dependency::new("coreutils")), "{own:?}");
    ensure!(
        read.depends.iter().all(|dependency| !dependency.name.starts_with("rpmlib(") || dependency.internal),
        "{:?}",
        read.depends
    );
    Ok(())
}
