//! Debian packages against Debian's own tools: a package built here is checked with `dpkg-deb` (info,
//! fields, contents, extraction, `md5sum -c` of its checksums) and installed into a scratch root with
//! `dpkg --root` (as root) and verified there; packages built by `dpkg-deb` with each compression (and any in
//! the apt cache) are read here and compared with what `dpkg-deb` says of them.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use steward_package::{Dependency, PackageFormat, RelationOp, build_deb, read_package};
use support::*;

#[test]
fn a_built_deb_is_what_dpkg_deb_reads() -> Result<()> {
    if !tool_available("dpkg-deb") {
        return Ok(());
    }
    let scratch = tempfile::tempdir()?;
    let spec = sample_spec(&sample_tree(&scratch.path().join("files"))?);
    let package = scratch.path().join("steward-hello_1.4.2-3_amd64.deb");
    build_deb(&spec, &package)?;
    let path = package.to_str().context("path")?;

    let info = run("dpkg-deb", &["--info", path])?;
    for expected in [
        "Package: steward-hello",
        "Version: 1.4.2-3",
        "Architecture: amd64",
        "Maintainer: Steward Operators <ops@example.org>",
        "Depends: bash (>= 4.0), coreutils",
        " Says hello for Steward's tests",
        "  It has nested files, a link and scripts.",
        "postinst",
        "prerm",
        "md5sums",
    ] {
        ensure!(info.contains(expected), "dpkg-deb --info lacks {expected:?}:\n{info}");
    }
    let fields = run("dpkg-deb", &["--field", path, "Package", "Version", "Architecture", "Depends"])?;
    ensure!(
        fields == "Package: steward-hello\nVersion: 1.4.2-3\nArchitecture: amd64\nDepends: bash (>= 4.0), coreutils\n",
        "dpkg-deb --field:\n{fields}"
    );

    // The listing: every entry owned by root, the modes of the files, the link, nested directories.
    let contents = run("dpkg-deb", &["--contents", path])?;
    let listing: Vec<(String, String, String)> = contents
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words[0].to_owned(), words[1].to_owned(), words[5..].join(" "))
        })
        .collect();
    ensure!(listing.iter().all(|(_, owner, _)| owner == "root/root"), "owners:\n{contents}");
    for (mode, name) in [
        ("-rwxr-xr-x", "./usr/bin/steward-hello"),
        ("-rw-------", "./etc/steward-hello/secret.conf"),
        ("-rw-r--r--", "./usr/lib/steward-hello/plugins/deep/plugin.conf"),
        ("lrwxrwxrwx", "./usr/bin/hello -> steward-hello"),
        ("drwxr-x---", "./var/lib/steward-hello/"),
        ("drwxr-xr-x", "./usr/share/steward-hello/data/"),
    ] {
        ensure!(
            listing.iter().any(|(listed_mode, _, listed)| listed_mode == mode && listed == name),
            "{mode} {name}:\n{contents}"
        );
    }

    // Unpacked without touching the host: the files, modes and link are the tree's.
    let unpacked = scratch.path().join("unpacked");
    run("dpkg-deb", &["--extract", path, unpacked.to_str().context("path")?])?;
    assert_sample_installed(&unpacked)?;

    // The control archive: scripts executable with the spec's text, checksums that `md5sum -c` accepts.
    let control = scratch.path().join("control");
    run("dpkg-deb", &["--control", path, control.to_str().context("path")?])?;
    ensure!(fs::read_to_string(control.join("postinst"))? == SAMPLE_POST_INSTALL, "postinst text");
    ensure!(fs::read_to_string(control.join("prerm"))? == format!("#!/bin/sh\n{SAMPLE_PRE_REMOVE}"), "prerm text");
    for script in ["postinst", "prerm"] {
        let mode = fs::metadata(control.join(script))?.permissions().mode() & 0o7777;
        ensure!(mode == 0o755, "{script} mode {mode:o}");
    }
    ensure!(!control.join("preinst").exists(), "a preinst that the spec did not have");
    ensure!(fs::read_to_string(control.join("conffiles"))? == "/etc/steward-hello/secret.conf\n", "conffiles");
    let md5sums = control.join("md5sums");
    let checked = run_in(Some(&unpacked), "md5sum", &["-c", md5sums.to_str().context("path")?], None)?;
    ensure!(checked.lines().count() == SAMPLE_FILES.len(), "md5sum -c:\n{checked}");

    // Read back here: the spec's metadata.
    let info = read_package(fs::File::open(&package)?)?;
    ensure!(info.format == PackageFormat::Deb);
    ensure!(info.name == spec.name && info.version == "1.4.2-3", "{info:?}");
    ensure!(info.architecture == "amd64" && info.normalized_architecture == "x86_64", "{info:?}");
    ensure!(info.summary == spec.summary && info.description == spec.description, "{info:?}");
    ensure!(info.maintainer.as_deref() == Some(spec.maintainer.as_str()), "{info:?}");
    ensure!(info.depends == spec.depends, "{:?}", info.depends);
    ensure!(info.file_count == listing.len() as u64 - 1, "{} entries, listing {}", info.file_count, listing.len());
    ensure!(info.installed_size.is_some_and(|size| size > 0 && size % 1024 == 0), "{:?}", info.installed_size);
    Ok(())
}

#[test]
fn a_built_deb_installs_into_a_scratch_root_and_verifies() -> Result<()> {
    if !tool_available("dpkg") {
        return Ok(());
    }
    if !is_root() {
        eprintln!("skipping: installing into a scratch root needs root (dpkg sets owners)");
        return Ok(());
    }
    let scratch = tempfile::tempdir()?;
    let mut spec = sample_spec(&sample_tree(&scratch.path().join("files"))?);
    // dpkg runs maintainer scripts chrooted into the root, which has no shell: this package has none.
    spec.scripts = Default::default();
    let package = scratch.path().join("steward-hello.deb");
    build_deb(&spec, &package)?;
    let root = scratch.path().join("root");
    let admin = root.join("var/lib/dpkg");
    fs::create_dir_all(admin.join("updates"))?;
    fs::create_dir_all(admin.join("info"))?;
    fs::write(admin.join("status"), "")?;
    let root_option = format!("--root={}", root.to_str().context("path")?);
    let dpkg = |arguments: &[&str]| run("dpkg", &[&[root_option.as_str(), "--log=/dev/null"], arguments].concat());
    dpkg(&["--force-depends", "--install", package.to_str().context("path")?])?;
    assert_sample_installed(&root)?;
    let status = fs::read_to_string(admin.join("status"))?;
    ensure!(status.contains("Status: install ok installed"), "{status}");
    ensure!(status.contains("Conffiles:\n /etc/steward-hello/secret.conf "), "{status}");
    let listed = dpkg(&["--listfiles", "steward-hello"])?;
    ensure!(listed.lines().any(|line| line == "/usr/bin/hello"), "{listed}");
    // dpkg --verify compares installed files with md5sums: nothing at first, then the changed file.
    let verified = dpkg(&["--verify", "steward-hello"])?;
    ensure!(verified.is_empty(), "dpkg --verify: {verified}");
    fs::write(root.join("usr/share/steward-hello/data/greeting.txt"), "changed\n")?;
    let verified = dpkg(&["--verify", "steward-hello"]).unwrap_or_else(|error| format!("{error:#}"));
    ensure!(
        verified.contains("??5?????? ") && verified.contains("/usr/share/steward-hello/data/greeting.txt"),
        "{verified}"
    );
    Ok(())
}

#[test]
fn building_twice_gives_the_same_bytes() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let spec = sample_spec(&sample_tree(&scratch.path().join("files"))?);
    let first = scratch.path().join("first.deb");
    let second = scratch.path().join("second.deb");
    build_deb(&spec, &first)?;
    build_deb(&spec, &second)?;
    ensure!(fs::read(&first)? == fs::read(&second)?, "the two builds differ");
    let leftovers: Vec<_> = fs::read_dir(scratch.path())?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    ensure!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    Ok(())
}

#[test]
fn an_invalid_spec_writes_nothing() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let mut spec = sample_spec(&sample_tree(&scratch.path().join("files"))?);
    spec.name = "Not_A_Debian_Name".to_owned();
    let package = scratch.path().join("bad.deb");
    let message = build_deb(&spec, &package).expect_err("invalid name").to_string();
    ensure!(message.contains("(name)"), "{message}");
    ensure!(!package.exists());
    ensure!(fs::read_dir(scratch.path())?.count() == 1, "something besides the files directory was written");
    Ok(())
}

/// Builds a package with `dpkg-deb` from a DEBIAN/control and a few files, compressed with `compression`.
fn dpkg_built_package(directory: &Path, compression: &str) -> Result<std::path::PathBuf> {
    let root = directory.join(format!("root-{compression}"));
    fs::create_dir_all(root.join("DEBIAN"))?;
    fs::create_dir_all(root.join("usr/share/doc/probe"))?;
    fs::write(root.join("usr/share/doc/probe/README"), "probe\n")?;
    fs::write(root.join("usr/share/doc/probe/NEWS"), "news\n")?;
    fs::write(
        root.join("DEBIAN/control"),
        "Package: probe\nVersion: 2:0.9~rc1-1\nArchitecture: all\nMaintainer: Someone <someone@example.org>\n\
         Installed-Size: 12\nPre-Depends: dpkg (>= 1.19)\nDepends: libc6 (>= 2.36), python3:any | perl (<< 6)\n\
         Origin: Steward\nDescription: probes the reader\n A longer text\n .\n with two paragraphs.\n",
    )?;
    let package = directory.join(format!("probe-{compression}.deb"));
    run(
        "dpkg-deb",
        &[
            "--root-owner-group",
            &format!("-Z{compression}"),
            "--build",
            root.to_str().context("path")?,
            package.to_str().context("path")?,
        ],
    )?;
    Ok(package)
}

#[test]
fn packages_built_by_dpkg_deb_are_read_with_every_compression() -> Result<()> {
    if !tool_available("dpkg-deb") {
        return Ok(());
    }
    let scratch = tempfile::tempdir()?;
    for compression in ["gzip", "xz", "zstd", "none"] {
        let package = match dpkg_built_package(scratch.path(), compression) {
            Ok(package) => package,
            // An older dpkg-deb without zstd support cannot make this one; the others still count.
            Err(error) if compression == "zstd" && error.to_string().contains("unknown compression") => continue,
            Err(error) => return Err(error),
        };
        let info = read_package(fs::File::open(&package)?).with_context(|| compression.to_owned())?;
        ensure!(info.name == "probe" && info.version == "2:0.9~rc1-1", "{compression}: {info:?}");
        ensure!(info.architecture == "all" && info.normalized_architecture == "all", "{compression}");
        ensure!(info.summary == "probes the reader", "{compression}: {:?}", info.summary);
        ensure!(info.description == "A longer text\n\nwith two paragraphs.", "{compression}: {:?}", info.description);
        ensure!(info.vendor.as_deref() == Some("Steward") && info.installed_size == Some(12 * 1024));
        ensure!(
            info.depends
                == vec![
                    Dependency::versioned("dpkg", RelationOp::GreaterOrEqual, "1.19"),
                    Dependency::versioned("libc6", RelationOp::GreaterOrEqual, "2.36"),
                    Dependency::new("python3:any").or("perl", Some((RelationOp::Less, "6"))),
                ],
            "{compression}: {:?}",
            info.depends
        );
        let listed = run("dpkg-deb", &["--contents", package.to_str().context("path")?])?.lines().count() as u64;
        ensure!(info.file_count == listed - 1, "{compression}: {} files, dpkg-deb lists {listed}", info.file_count);
    }
    Ok(())
}

#[test]
fn packages_in_the_apt_cache_read_as_dpkg_deb_reads_them() -> Result<()> {
    // Real Debian packages: the apt cache, and the ones the starter images were built from (`scripts/test`
    // downloads them before the tests run).
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/images/cache");
    let packages: Vec<_> = [Path::new("/var/cache/apt/archives"), images.as_path()]
        .iter()
        .filter_map(|directory| fs::read_dir(directory).ok())
        .flatten()
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "deb"))
        .take(5)
        .collect();
    if packages.is_empty() || !tool_available("dpkg-deb") {
        ensure!(std::env::var("CI").as_deref() != Ok("true"), "CI=true needs real .deb files: run scripts/test");
        eprintln!("skipping: no Debian package at hand");
        return Ok(());
    }
    for package in packages {
        let info = read_package(fs::File::open(&package)?).with_context(|| package.display().to_string())?;
        let path = package.to_str().context("path")?;
        let fields = run("dpkg-deb", &["--field", path, "Package", "Version", "Architecture"])?;
        let expected =
            format!("Package: {}\nVersion: {}\nArchitecture: {}\n", info.name, info.version, info.architecture);
        ensure!(fields == expected, "{path}: dpkg-deb says\n{fields}we read\n{expected}");
    }
    Ok(())
}
