//! Running helper programs (`qemu-img`, `ip`, `debugfs`, the emulator itself for probes) with a timeout, and
//! turning their failures into `HypervisorError::Command` with the program, its arguments, its exit status and
//! what it printed on stderr. A program that is not installed becomes `ToolMissing`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::error::{HypervisorError, Result};

/// The default time limit for helper programs (copies of large disks get longer limits from their callers).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished program printed.
#[derive(Debug)]
pub struct Finished {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

fn describe_args<S: AsRef<OsStr>>(args: &[S]) -> Vec<String> {
    args.iter().map(|argument| argument.as_ref().to_string_lossy().into_owned()).collect()
}

fn program_name(program: &Path) -> String {
    program.display().to_string()
}

/// Runs `program` with `args`, returning what it printed whatever its exit status.
pub async fn run_unchecked<S: AsRef<OsStr>>(program: &Path, args: &[S], timeout: Duration) -> Result<Finished> {
    tracing::debug!(program = %program.display(), args = ?describe_args(args), "running");
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| spawn_error(program, source))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => Ok(Finished {
            status: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim_end().to_owned(),
        }),
        Ok(Err(source)) => Err(HypervisorError::Spawn { program: program_name(program), source }),
        Err(_elapsed) => {
            Err(HypervisorError::CommandTimeout { program: program_name(program), args: describe_args(args), timeout })
        }
    }
}

/// Runs `program` with `args` and fails unless it exits with status 0.
pub async fn run<S: AsRef<OsStr>>(program: &Path, args: &[S], timeout: Duration) -> Result<Finished> {
    let finished = run_unchecked(program, args, timeout).await?;
    if finished.success() { Ok(finished) } else { Err(failure(program, args, finished)) }
}

/// The `Command` error for a finished program.
pub fn failure<S: AsRef<OsStr>>(program: &Path, args: &[S], finished: Finished) -> HypervisorError {
    HypervisorError::Command {
        program: program_name(program),
        args: describe_args(args),
        status: finished.status,
        stderr: finished.stderr,
    }
}

fn spawn_error(program: &Path, source: std::io::Error) -> HypervisorError {
    if source.kind() == std::io::ErrorKind::NotFound {
        HypervisorError::ToolMissing { program: program_name(program) }
    } else {
        HypervisorError::Spawn { program: program_name(program), source }
    }
}

/// Finds `program` in the directories of `search_path` (a `PATH`-style list).
pub fn find_in_path(program: &str, search_path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .map(|directory| directory.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// The `PATH` of this process plus the sbin directories (where `ip` and `debugfs` live on Debian).
pub fn system_search_path() -> std::ffi::OsString {
    let mut directories: Vec<PathBuf> =
        std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect()).unwrap_or_default();
    for extra in ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let extra = PathBuf::from(extra);
        if !directories.contains(&extra) {
            directories.push(extra);
        }
    }
    std::env::join_paths(directories).unwrap_or_default()
}

/// Finds a system tool (`ip`, `debugfs`, `mkfs.ext4`) or fails with `ToolMissing`.
pub fn system_tool(program: &str) -> Result<PathBuf> {
    find_in_path(program, &system_search_path())
        .ok_or_else(|| HypervisorError::ToolMissing { program: program.to_owned() })
}
