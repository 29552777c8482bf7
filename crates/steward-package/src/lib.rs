//! Software packages for Steward's package repository: read the metadata of an uploaded `.deb` or `.rpm`
//! ([`read_package`]), and build both from one directory of files, install scripts and metadata
//! ([`PackageSpec`], [`build_deb`], [`build_rpm`]).
//!
//! Reading takes bytes from users, so it trusts no length: every size read from a package is checked against
//! a limit ([`limits`]) before anything is allocated for it, decompression is bounded, and no input makes it
//! panic. The formats are written by this crate itself (ar, tar, cpio, the RPM header); the output is checked
//! by the tests with the system's own tools (`dpkg-deb`, `rpm`). See `docs/packages.md`.

mod ar;
mod arch;
mod compress;
mod control;
mod cpio;
mod deb;
mod dependency;
mod error;
mod output;
mod rpm;
mod spec;
mod tar;

use std::fmt;
use std::io::{self, Read};

pub use arch::{Architecture, normalize_architecture};
pub use control::{ControlFile, split_description};
pub use deb::build_deb;
pub use dependency::{Alternative, Dependency, RelationOp, VersionRelation, parse_deb_dependencies};
pub use error::PackageError;
pub use rpm::build_rpm;
pub use spec::{PackageSpec, Scripts};

/// The limits applied while reading a package. A package beyond one is refused with
/// [`PackageError::LimitExceeded`].
pub mod limits {
    /// The decompressed size of a Debian package's `control.tar`.
    pub const DEB_CONTROL_ARCHIVE_BYTES: u64 = 16 * 1024 * 1024;
    /// The size of its `control` file.
    pub const DEB_CONTROL_FILE_BYTES: u64 = 1024 * 1024;
    /// The decompressed size of a Debian package's `data.tar` (read to count its files).
    pub const DEB_DATA_ARCHIVE_BYTES: u64 = 16 * 1024 * 1024 * 1024;
    /// The number of entries of a package's file list, in either format.
    pub const FILE_ENTRIES: u64 = 1_000_000;
    /// The number of index entries (tags) of an RPM header.
    pub const RPM_HEADER_TAGS: u32 = 65_535;
    /// The size of an RPM header's data store (the main header; the signature header gets a sixteenth).
    pub const RPM_HEADER_BYTES: u32 = 64 * 1024 * 1024;
}

/// The two package formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackageFormat {
    Deb,
    Rpm,
}

impl fmt::Display for PackageFormat {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Deb => ".deb",
            Self::Rpm => ".rpm",
        })
    }
}

/// The metadata of a package, as read from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInfo {
    pub format: PackageFormat,
    pub name: String,
    /// The full version: Debian's `Version` (`[epoch:]upstream[-revision]`), RPM's `[epoch:]version-release`.
    pub version: String,
    /// The architecture as the package spells it (`amd64`, `x86_64`, `all`, `noarch`, ...).
    pub architecture: String,
    /// The architecture in the form shared by both formats ([`normalize_architecture`]): `x86_64`, `s390x`,
    /// `aarch64`, `ppc64le`, `all`, ...
    pub normalized_architecture: String,
    /// The one-line summary (Debian: the first line of `Description`).
    pub summary: String,
    /// The extended description (may be empty).
    pub description: String,
    /// Debian's `Maintainer`; RPM's `PACKAGER`.
    pub maintainer: Option<String>,
    /// RPM's `VENDOR`; Debian's `Origin`.
    pub vendor: Option<String>,
    /// Debian: `Pre-Depends` then `Depends`. RPM: the requirements, those rpm adds itself marked
    /// [`Dependency::internal`].
    pub depends: Vec<Dependency>,
    /// The installed size in bytes (Debian declares KiB; RPM's `SIZE`), when the package says it.
    pub installed_size: Option<u64>,
    /// The entries of the package's file list, directories included (Debian: the data archive's entries
    /// without its root `./`; RPM: the header's file list).
    pub file_count: u64,
}

const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
const RPM_LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];

/// Reads a package's metadata, detecting its format by its first bytes: the ar magic `!<arch>\n` (then the
/// first member must be `debian-binary`) or the RPM lead magic `ed ab ee db`. Reads the stream once, from
/// the start, without seeking; a Debian package is read to the end of its data archive (to count files).
pub fn read_package(reader: impl Read) -> Result<PackageInfo, PackageError> {
    let mut reader = reader;
    let mut magic = [0u8; 8];
    let mut filled = 0;
    while filled < magic.len() {
        match reader.read(&mut magic[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(PackageError::Read { format: PackageFormat::Deb, context: "the first bytes", source });
            }
        }
    }
    let magic = &magic[..filled];
    if magic == AR_MAGIC {
        return deb::read_deb(&mut reader);
    }
    if magic.starts_with(&RPM_LEAD_MAGIC) {
        let mut chained = io::Cursor::new(magic.to_vec()).chain(reader);
        return rpm::read_rpm(&mut chained);
    }
    let shown: Vec<String> = magic.iter().map(|byte| format!("{byte:02x}")).collect();
    Err(PackageError::UnknownFormat(if magic.is_empty() {
        "the input is empty".to_owned()
    } else {
        format!("it starts with {} (expected `!<arch>\\n` or ed ab ee db)", shown.join(" "))
    }))
}
