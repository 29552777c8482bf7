//! The one error type of the crate: every variant says what was wrong, with the cause (if any) as its source.

use std::io;
use std::path::PathBuf;

use crate::PackageFormat;

/// What went wrong reading, validating or building a package.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The bytes start with neither the ar magic followed by `debian-binary` nor the RPM lead magic.
    #[error("not a Debian or RPM package: {0}")]
    UnknownFormat(String),

    /// The package is damaged or does not follow its format; the message names the part and the problem.
    #[error("malformed {format} package: {message}")]
    Malformed { format: PackageFormat, message: String },

    /// A part of the package is larger than this crate accepts (see `docs/packages.md`, "Limits").
    #[error("{format} package: {what} is {actual}, more than the limit of {limit}")]
    LimitExceeded { format: PackageFormat, what: &'static str, actual: u64, limit: u64 },

    /// Reading the package's bytes failed (including a package cut short).
    #[error("reading the {format} package ({context})")]
    Read {
        format: PackageFormat,
        context: &'static str,
        #[source]
        source: io::Error,
    },

    /// A compressed member could not be decompressed.
    #[error("{format} package: decompressing {member} failed")]
    Decompress {
        format: PackageFormat,
        member: String,
        #[source]
        source: io::Error,
    },

    /// The package specification is not valid for the format being built.
    #[error("invalid package specification ({field}): {message}")]
    InvalidSpec { field: &'static str, message: String },

    /// A file of the package's files directory could not be read (or changed while the package was built).
    #[error("reading {path}")]
    ReadInput {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Writing the package file failed.
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl PackageError {
    pub(crate) fn malformed(format: PackageFormat, message: impl Into<String>) -> Self {
        Self::Malformed { format, message: message.into() }
    }

    pub(crate) fn invalid_spec(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidSpec { field, message: message.into() }
    }

    /// Wraps a reading error; a package cut short is reported as malformed rather than as an IO failure.
    pub(crate) fn read(format: PackageFormat, context: &'static str, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            Self::malformed(format, format!("the package ends in the middle of {context}"))
        } else {
            Self::Read { format, context, source }
        }
    }
}
