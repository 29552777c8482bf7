//! File helpers for crash safety: every file the drivers produce is written under a temporary name beside its
//! final one and renamed into place, so a crash never leaves a half-written file under the final name. A
//! leftover temporary file is recognizable by its prefix (`.partial-`) and overwritten by the next attempt.

use std::path::{Path, PathBuf};

use crate::error::{HypervisorError, Result};

/// The prefix of temporary files.
pub const TEMPORARY_PREFIX: &str = ".partial-";

/// The temporary name beside `path` (same directory, so the final rename is atomic). The name is fixed per
/// final name, so a retry after a crash overwrites the leftover instead of accumulating garbage.
pub fn temporary_sibling(path: &Path) -> Result<PathBuf> {
    let file_name = path
        .file_name()
        .ok_or_else(|| HypervisorError::invalid("path", format!("{} has no file name", path.display())))?;
    let mut temporary_name = std::ffi::OsString::from(TEMPORARY_PREFIX);
    temporary_name.push(file_name);
    Ok(path.with_file_name(temporary_name))
}

/// Renames `temporary` to `path` and makes the rename durable (fsync of the directory).
pub fn rename_into_place(temporary: &Path, path: &Path) -> Result<()> {
    std::fs::rename(temporary, path).map_err(|source| HypervisorError::io(path, source))?;
    if let Some(directory) = path.parent()
        && let Ok(handle) = std::fs::File::open(directory)
    {
        let _ = handle.sync_all();
    }
    Ok(())
}

/// Writes `contents` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let temporary = temporary_sibling(path)?;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()
    };
    write().map_err(|source| HypervisorError::io(&temporary, source))?;
    rename_into_place(&temporary, path)
}

/// Creates `directory` and its parents.
pub fn create_directory(directory: &Path) -> Result<()> {
    std::fs::create_dir_all(directory).map_err(|source| HypervisorError::io(directory, source))
}

/// Removes `path` if it exists.
pub fn remove_file_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(HypervisorError::io(path, source)),
    }
}

/// Makes a path absolute without requiring it to exist (relative paths are taken from the current directory).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|source| HypervisorError::io(path, source))
}
