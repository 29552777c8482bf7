//! Shared by the tests that check packages with the system's own tools: finding a tool (a missing tool fails
//! the test under `CI=true`, and skips it elsewhere), running it, and the sample package every test builds.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use steward_package::{Architecture, Dependency, PackageSpec, RelationOp, Scripts};

/// Whether `tool` is installed. Under `CI=true` a missing tool is a failure (CI must have it: `scripts/test`
/// installs `rpm`, Debian ships `dpkg-deb`); elsewhere the test is skipped with the reason printed.
pub fn tool_available(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|directory| directory.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is not installed, and CI=true requires it (apt-get install -y dpkg rpm cpio)");
        }
        eprintln!("skipping: {tool} is not installed (apt-get install -y rpm for rpm, cpio for cpio)");
    }
    found
}

/// Whether the tests run as root (installing into a scratch root sets owners, which needs it); under `CI=true`,
/// which runs as root, not being root fails the test instead of skipping it.
pub fn is_root() -> bool {
    let root = fs::read_to_string("/proc/self/status")
        .map(|status| {
            status.lines().any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    assert!(root || std::env::var("CI").as_deref() != Ok("true"), "CI=true runs the tests as root");
    root
}

/// Runs a command and returns its standard output; fails with its error output if it does not succeed.
pub fn run(program: &str, arguments: &[&str]) -> Result<String> {
    run_in(None, program, arguments, None)
}

/// Runs a command in `directory`, optionally feeding `input`, and returns its standard output.
pub fn run_in(directory: Option<&Path>, program: &str, arguments: &[&str], input: Option<&[u8]>) -> Result<String> {
    let mut command = Command::new(program);
    command.args(arguments).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(directory) = directory {
        command.current_dir(directory);
    }
    let mut child = command.spawn().with_context(|| format!("starting {program}"))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let input = input.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        use std::io::Write;
        if let Some(input) = input {
            stdin.write_all(&input)?;
        }
        Ok(())
    });
    let output = child.wait_with_output().with_context(|| format!("waiting for {program}"))?;
    writer.join().map_err(|_| anyhow::anyhow!("the stdin writer panicked"))??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "{program} {arguments:?} failed ({}):\n{}\n{stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// A file of the sample tree: its path inside the package, mode, and content.
pub struct SampleFile {
    pub path: &'static str,
    pub mode: u32,
    pub content: &'static [u8],
}

/// The regular files of the sample package, in nested directories, one executable and one private.
pub const SAMPLE_FILES: &[SampleFile] = &[
    SampleFile { path: "usr/bin/steward-hello", mode: 0o755, content: b"#!/bin/sh\necho hello from steward\n" },
    SampleFile { path: "usr/share/steward-hello/data/greeting.txt", mode: 0o644, content: b"hello, world\n" },
    SampleFile { path: "usr/lib/steward-hello/plugins/deep/plugin.conf", mode: 0o644, content: b"enabled = true\n" },
    SampleFile { path: "etc/steward-hello/secret.conf", mode: 0o600, content: b"token = 42\n" },
    SampleFile { path: "usr/share/steward-hello/empty", mode: 0o644, content: b"" },
];

/// The symbolic link of the sample package and its target.
pub const SAMPLE_LINK: (&str, &str) = ("usr/bin/hello", "steward-hello");

/// An empty directory with a mode of its own.
pub const SAMPLE_EMPTY_DIRECTORY: (&str, u32) = ("var/lib/steward-hello", 0o750);

pub const SAMPLE_POST_INSTALL: &str = "#!/bin/sh\nset -e\necho configured steward-hello\n";
pub const SAMPLE_PRE_REMOVE: &str = "echo removing steward-hello\n";

/// Writes the sample tree under `root` (created) and returns `root`.
pub fn sample_tree(root: &Path) -> Result<PathBuf> {
    for file in SAMPLE_FILES {
        let path = root.join(file.path);
        fs::create_dir_all(path.parent().context("parent")?)?;
        fs::write(&path, file.content)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))?;
    }
    symlink(SAMPLE_LINK.1, root.join(SAMPLE_LINK.0))?;
    let empty = root.join(SAMPLE_EMPTY_DIRECTORY.0);
    fs::create_dir_all(&empty)?;
    fs::set_permissions(&empty, fs::Permissions::from_mode(SAMPLE_EMPTY_DIRECTORY.1))?;
    // Directories the umask made are set explicitly, so the package's modes do not depend on it.
    for directory in walk_directories(root)? {
        if directory != empty {
            fs::set_permissions(&directory, fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(root.to_owned())
}

fn walk_directories(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            found.push(entry.path());
            found.extend(walk_directories(&entry.path())?);
        }
    }
    Ok(found)
}

/// The sample spec over `files`.
pub fn sample_spec(files: &Path) -> PackageSpec {
    PackageSpec {
        name: "steward-hello".to_owned(),
        epoch: None,
        version: "1.4.2".to_owned(),
        release: "3".to_owned(),
        architecture: Architecture::X86_64,
        summary: "Says hello for Steward's tests".to_owned(),
        description: "A package built by steward-package.\n\nIt has nested files, a link and scripts.".to_owned(),
        maintainer: "Steward Operators <ops@example.org>".to_owned(),
        license: Some("Apache-2.0".to_owned()),
        depends: vec![Dependency::versioned("bash", RelationOp::GreaterOrEqual, "4.0"), Dependency::new("coreutils")],
        files: files.to_owned(),
        scripts: Scripts {
            post_install: Some(SAMPLE_POST_INSTALL.to_owned()),
            pre_remove: Some(SAMPLE_PRE_REMOVE.to_owned()),
            ..Scripts::default()
        },
        timestamp: 1_700_000_000,
    }
}

/// Checks that `root` holds the sample tree: every file's content and mode, the link, the empty directory.
pub fn assert_sample_installed(root: &Path) -> Result<()> {
    for file in SAMPLE_FILES {
        let path = root.join(file.path);
        let content = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        ensure!(content == file.content, "{}: content differs", file.path);
        let mode = fs::metadata(&path)?.permissions().mode() & 0o7777;
        ensure!(mode == file.mode, "{}: mode {mode:o}, expected {:o}", file.path, file.mode);
    }
    let target = fs::read_link(root.join(SAMPLE_LINK.0))?;
    ensure!(target == Path::new(SAMPLE_LINK.1), "link target {}", target.display());
    let empty = fs::metadata(root.join(SAMPLE_EMPTY_DIRECTORY.0))?;
    ensure!(empty.is_dir(), "the empty directory is missing");
    let mode = empty.permissions().mode() & 0o7777;
    ensure!(mode == SAMPLE_EMPTY_DIRECTORY.1, "empty directory mode {mode:o}");
    Ok(())
}
