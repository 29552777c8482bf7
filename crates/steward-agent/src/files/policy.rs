//! Which paths the agent may read and write for the server: absolute paths only, no `..`, resolved through
//! symbolic links, then checked against configured roots. Kernel pseudo-filesystems (`/proc`, `/sys`, `/dev`)
//! are never read nor written, whatever the roots.
//!
//! The default roots are `/` for both reads and writes: the agent acts for the fleet's administrators, who may
//! copy any file (configuration, keys, logs) as root would. An agent is narrowed with `--file-read-root` and
//! `--file-write-root` (repeatable), for example to `/srv` and `/etc/myapp`.
//!
//! A write resolves the *directory* of the path (which must exist) and checks the final path in it: the file is
//! written to a temporary name there and renamed over the final name, so a symbolic link at the final name is
//! replaced, never followed.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Never read nor written, whatever the configured roots.
pub const PSEUDO_FILESYSTEMS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// The longest path accepted (the kernel's `PATH_MAX`).
const MAX_PATH_BYTES: usize = 4096;

/// The roots reads and writes must stay under.
#[derive(Debug, Clone)]
pub struct FilePolicy {
    read_roots: Vec<PathBuf>,
    write_roots: Vec<PathBuf>,
}

impl Default for FilePolicy {
    fn default() -> Self {
        Self { read_roots: vec![PathBuf::from("/")], write_roots: vec![PathBuf::from("/")] }
    }
}

impl FilePolicy {
    /// A policy with these roots (each absolute; resolved through symbolic links where it exists). An empty list
    /// means the default, `/`.
    pub fn new(read_roots: Vec<PathBuf>, write_roots: Vec<PathBuf>) -> Result<Self, String> {
        let resolve = |roots: Vec<PathBuf>, flag: &str| -> Result<Vec<PathBuf>, String> {
            if roots.is_empty() {
                return Ok(vec![PathBuf::from("/")]);
            }
            roots
                .into_iter()
                .map(|root| {
                    let text = root.to_string_lossy().into_owned();
                    let checked = syntax(&text).map_err(|error| format!("{flag}: {error}"))?;
                    Ok(std::fs::canonicalize(&checked).unwrap_or(checked))
                })
                .collect()
        };
        Ok(Self {
            read_roots: resolve(read_roots, "--file-read-root")?,
            write_roots: resolve(write_roots, "--file-write-root")?,
        })
    }

    /// The real path to read for `path` (which must exist).
    pub fn readable(&self, path: &str) -> Result<PathBuf, String> {
        let checked = syntax(path)?;
        let real = std::fs::canonicalize(&checked).map_err(|error| format!("{path}: {}", describe_io(&error)))?;
        self.check(path, &real, &self.read_roots, "read")?;
        Ok(real)
    }

    /// The real path to write for `path`: its directory resolved (it must exist), its last component kept.
    pub fn writable(&self, path: &str) -> Result<PathBuf, String> {
        let checked = syntax(path)?;
        let (Some(parent), Some(name)) = (checked.parent(), checked.file_name()) else {
            return Err(format!("{path}: the root directory itself cannot be written"));
        };
        let name: OsString = name.to_os_string();
        let real_parent = std::fs::canonicalize(parent).map_err(|error| {
            format!("{path}: its directory {} cannot be used: {}", parent.display(), describe_io(&error))
        })?;
        if !real_parent.is_dir() {
            return Err(format!("{path}: {} is not a directory", parent.display()));
        }
        let real = real_parent.join(name);
        self.check(path, &real, &self.write_roots, "write")?;
        Ok(real)
    }

    /// Whether `real` is under a pseudo-filesystem (for walks of a directory tree, which skip them).
    pub fn is_pseudo_filesystem(real: &Path) -> bool {
        PSEUDO_FILESYSTEMS.iter().any(|pseudo| real.starts_with(pseudo))
    }

    fn check(&self, asked: &str, real: &Path, roots: &[PathBuf], verb: &str) -> Result<(), String> {
        let resolved =
            if Path::new(asked) == real { String::new() } else { format!(" (resolved to {})", real.display()) };
        if let Some(pseudo) = PSEUDO_FILESYSTEMS.iter().find(|pseudo| real.starts_with(pseudo)) {
            return Err(format!(
                "{asked}{resolved}: {pseudo} is a kernel pseudo-filesystem, which file transfer never touches"
            ));
        }
        if !roots.iter().any(|root| real.starts_with(root)) {
            let roots: Vec<String> = roots.iter().map(|root| root.display().to_string()).collect();
            return Err(format!(
                "{asked}{resolved}: outside the directories this agent may {verb} ({})",
                roots.join(", ")
            ));
        }
        Ok(())
    }
}

/// Checks a path's form: absolute, no `..`, no NUL, not too long.
fn syntax(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("the path is longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.contains('\0') {
        return Err(format!("{path:?}: a path cannot contain a NUL byte"));
    }
    if !path.starts_with('/') {
        return Err(format!("{path}: not an absolute path (it must start with /)"));
    }
    let parsed = Path::new(path);
    if parsed.components().any(|component| component == Component::ParentDir) {
        return Err(format!("{path}: `..` is not allowed in a path"));
    }
    Ok(parsed.components().collect())
}

/// An IO error in words, without Rust's `(os error N)` where the words say it.
pub fn describe_io(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_absolute_and_inside_the_roots() {
        let temp = tempfile::tempdir().expect("tempdir");
        let allowed = temp.path().join("allowed");
        let outside = temp.path().join("outside");
        std::fs::create_dir_all(&allowed).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("secret"), "x").expect("write");
        std::os::unix::fs::symlink(&outside, allowed.join("escape")).expect("symlink");
        let policy = FilePolicy::new(vec![allowed.clone()], vec![allowed.clone()]).expect("policy");
        let inside = format!("{}/new", allowed.display());
        assert_eq!(
            policy.writable(&inside).expect("inside"),
            std::fs::canonicalize(&allowed).expect("real").join("new")
        );
        for (path, reason) in [
            ("relative/path".to_string(), "not an absolute path"),
            (format!("{}/../outside/x", allowed.display()), "`..` is not allowed"),
            (format!("{}/x", outside.display()), "outside the directories this agent may write"),
            (format!("{}/escape/x", allowed.display()), "resolved to"),
            (format!("{}/missing/x", allowed.display()), "no such file or directory"),
            ("/".to_string(), "root directory"),
            ("/proc/self/x".to_string(), "pseudo-filesystem"),
        ] {
            let error = policy.writable(&path).expect_err(&path);
            assert!(error.contains(reason), "{path}: {error}");
        }
        let error = policy.readable(&format!("{}/escape/secret", allowed.display())).expect_err("escape");
        assert!(error.contains("outside the directories this agent may read"), "{error}");
        assert!(FilePolicy::default().readable("/proc/self/status").expect_err("proc").contains("pseudo"));
    }
}
