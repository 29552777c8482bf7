//! RPM packages (v4, as rpm 4.x reads and writes them): a 96-byte lead, the signature header (padded to
//! eight bytes), the main header, and the payload (here a gzip'd cpio archive).

mod header;
mod read;
mod write;

pub(crate) use read::read_rpm;
pub use write::build_rpm;

/// The size of the lead, a legacy block before the headers.
pub(crate) const LEAD_LENGTH: usize = 96;
