//! Debian binary packages (deb(5)): an ar archive of `debian-binary` ("2.0\n"), `control.tar.*` (the
//! control file, checksums and maintainer scripts) and `data.tar.*` (the files).

mod read;
mod write;

pub(crate) use read::read_deb;
pub use write::build_deb;
