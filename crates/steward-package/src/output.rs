//! Writing a package file atomically: into a temporary file beside the destination, synced, then renamed
//! over it, so a reader never sees half a package and a failed build leaves nothing behind.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::PackageError;

/// A package file being written; dropped without [`OutputFile::commit`], its temporary file is removed.
pub(crate) struct OutputFile {
    destination: PathBuf,
    temporary: tempfile::NamedTempFile,
}

impl OutputFile {
    pub(crate) fn create(destination: &Path) -> Result<Self, PackageError> {
        let directory = match destination.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let name = destination.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let temporary = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(directory)
            .map_err(|source| PackageError::Write { path: destination.to_owned(), source })?;
        Ok(Self { destination: destination.to_owned(), temporary })
    }

    /// A scratch file in the same directory (for a member built before its size is known).
    pub(crate) fn scratch(&self) -> Result<File, PackageError> {
        let directory = self.temporary.path().parent().unwrap_or(Path::new("."));
        tempfile::tempfile_in(directory).map_err(|source| self.write_error(source))
    }

    pub(crate) fn writer(&mut self) -> BufWriter<&mut File> {
        BufWriter::with_capacity(256 * 1024, self.temporary.as_file_mut())
    }

    pub(crate) fn write_error(&self, source: std::io::Error) -> PackageError {
        PackageError::Write { path: self.destination.clone(), source }
    }

    /// Syncs the file, gives it the usual mode of a package (0644) and renames it to its destination.
    pub(crate) fn commit(self) -> Result<(), PackageError> {
        use std::os::unix::fs::PermissionsExt;
        let file = self.temporary.as_file();
        let result = file.set_permissions(std::fs::Permissions::from_mode(0o644)).and_then(|()| file.sync_all());
        if let Err(source) = result {
            return Err(self.write_error(source));
        }
        let destination = self.destination.clone();
        let directory = self.temporary.path().parent().map(Path::to_owned);
        self.temporary
            .persist(&destination)
            .map_err(|error| PackageError::Write { path: destination.clone(), source: error.error })?;
        // The rename itself is made durable by syncing the directory that holds it.
        if let Some(directory) = directory {
            File::open(&directory)
                .and_then(|directory| directory.sync_all())
                .map_err(|source| PackageError::Write { path: destination, source })?;
        }
        Ok(())
    }
}

/// A reader that shows every byte it passes to `inspect` (to hash a file while it is packed).
pub(crate) struct InspectReader<R, F> {
    pub inner: R,
    inspect: F,
}

impl<R: std::io::Read, F: FnMut(&[u8])> InspectReader<R, F> {
    pub(crate) fn new(inner: R, inspect: F) -> Self {
        Self { inner, inspect }
    }
}

impl<R: std::io::Read, F: FnMut(&[u8])> std::io::Read for InspectReader<R, F> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        (self.inspect)(&buffer[..read]);
        Ok(read)
    }
}

/// Fails if `file` has more bytes after what was packed (it grew while the package was built).
pub(crate) fn ensure_ended(file: &mut File, path: &Path) -> Result<(), PackageError> {
    let mut extra = [0u8; 1];
    match std::io::Read::read(file, &mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(PackageError::ReadInput {
            path: path.to_owned(),
            source: std::io::Error::other("the file grew while the package was built"),
        }),
        Err(source) => Err(PackageError::ReadInput { path: path.to_owned(), source }),
    }
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
