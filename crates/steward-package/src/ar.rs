//! The ar archive that wraps a Debian package (deb(5)): the magic `!<arch>\n`, then members, each with a
//! 60-byte header (name, mtime, owner, group, octal mode, decimal size, "`\n") and its data padded to an
//! even length.

use std::io::{self, Read, Write};

use crate::{PackageError, PackageFormat};

const HEADER_LENGTH: usize = 60;

/// A member's header as read.
#[derive(Debug)]
pub(crate) struct MemberHeader {
    pub name: String,
    pub size: u64,
}

/// Reads the next member header; `None` at the end of the archive.
pub(crate) fn read_member_header(reader: &mut dyn Read) -> Result<Option<MemberHeader>, PackageError> {
    let mut header = [0u8; HEADER_LENGTH];
    let mut filled = 0;
    while filled < HEADER_LENGTH {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => {
                return Err(PackageError::malformed(PackageFormat::Deb, "the ar archive ends inside a member header"));
            }
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(PackageError::read(PackageFormat::Deb, "an ar member header", source)),
        }
    }
    if &header[58..60] != b"`\n" {
        return Err(PackageError::malformed(PackageFormat::Deb, "an ar member header lacks its end marker"));
    }
    let name = String::from_utf8_lossy(&header[..16]);
    let name = name.trim_end_matches(' ');
    let name = name.strip_suffix('/').unwrap_or(name).to_owned();
    let size_text = String::from_utf8_lossy(&header[48..58]);
    let size = size_text.trim_end_matches(' ').parse::<u64>().map_err(|_| {
        PackageError::malformed(PackageFormat::Deb, format!("the ar member {name:?} has a bad size {size_text:?}"))
    })?;
    Ok(Some(MemberHeader { name, size }))
}

/// Skips the rest of a member (what its reader did not consume) and its padding byte.
pub(crate) fn skip_rest<R: Read>(member: &mut io::Take<R>, size: u64) -> Result<(), PackageError> {
    io::copy(member, &mut io::sink())
        .map_err(|source| PackageError::read(PackageFormat::Deb, "an ar member", source))?;
    if member.limit() > 0 {
        return Err(PackageError::malformed(PackageFormat::Deb, "the ar archive ends inside a member"));
    }
    if size % 2 == 1 {
        let mut padding = [0u8; 1];
        // The last member's padding may be missing; dpkg accepts that too.
        let reader = member.get_mut();
        if let Err(source) = reader.read_exact(&mut padding)
            && source.kind() != io::ErrorKind::UnexpectedEof
        {
            return Err(PackageError::read(PackageFormat::Deb, "an ar member's padding", source));
        }
    }
    Ok(())
}

/// Writes the archive magic.
pub(crate) fn write_magic(out: &mut dyn Write) -> io::Result<()> {
    out.write_all(crate::AR_MAGIC)
}

/// Writes a member header (owner root, mode 0644, the given mtime); the caller writes `size` bytes of data and
/// then [`write_padding`].
pub(crate) fn write_member_header(out: &mut dyn Write, name: &str, mtime: u64, size: u64) -> io::Result<()> {
    let header = format!("{name:<16}{mtime:<12}{:<6}{:<6}{:<8}{size:<10}`\n", 0, 0, "100644");
    if header.len() != HEADER_LENGTH {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("ar member {name:?} does not fit a header")));
    }
    out.write_all(header.as_bytes())
}

/// Pads a member of `size` bytes to an even length.
pub(crate) fn write_padding(out: &mut dyn Write, size: u64) -> io::Result<()> {
    if size % 2 == 1 {
        out.write_all(b"\n")?;
    }
    Ok(())
}
