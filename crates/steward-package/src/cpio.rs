//! The cpio "newc" format (SVR4 without checksums) that carries an RPM payload: per entry a 110-byte ASCII
//! header (`070701` and thirteen 8-digit hexadecimal fields), the NUL-terminated name padded to four bytes,
//! the data padded to four bytes; the archive ends with the entry `TRAILER!!!`.

use std::io::{self, Read, Write};

const MAGIC: &str = "070701";

/// What the header of one entry says.
pub(crate) struct CpioEntry<'a> {
    pub name: &'a str,
    pub inode: u32,
    pub mode: u32,
    pub links: u32,
    pub mtime: u32,
    pub size: u32,
}

/// Writes a newc archive, counting its position for the padding.
pub(crate) struct CpioWriter<W: Write> {
    out: W,
    position: u64,
}

impl<W: Write> CpioWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        Self { out, position: 0 }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.position += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let padding = ((4 - self.position % 4) % 4) as usize;
        self.write(&[0; 3][..padding])
    }

    /// Writes an entry whose data (`entry.size` bytes) comes from `content`; fails if it has fewer.
    pub(crate) fn append(&mut self, entry: &CpioEntry<'_>, content: &mut dyn Read) -> io::Result<()> {
        let header = format!(
            "{MAGIC}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            entry.inode,
            entry.mode,
            0,
            0,
            entry.links,
            entry.mtime,
            entry.size,
            0,
            0,
            0,
            0,
            entry.name.len() + 1,
            0
        );
        self.write(header.as_bytes())?;
        self.write(entry.name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        let size = u64::from(entry.size);
        let copied = io::copy(&mut content.take(size), &mut self.out)?;
        self.position += copied;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: expected {size} bytes, found {copied} (the file changed while it was packed)", entry.name),
            ));
        }
        self.pad()
    }

    /// Writes the trailer entry and returns the output and the archive's size.
    pub(crate) fn finish(mut self) -> io::Result<(W, u64)> {
        let trailer = CpioEntry { name: "TRAILER!!!", inode: 0, mode: 0, links: 1, mtime: 0, size: 0 };
        self.append(&trailer, &mut io::empty())?;
        Ok((self.out, self.position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_padded_to_four_bytes() -> io::Result<()> {
        let mut writer = CpioWriter::new(Vec::new());
        let entry = CpioEntry { name: "./a", inode: 1, mode: 0o100644, links: 1, mtime: 7, size: 5 };
        writer.append(&entry, &mut &b"hello"[..])?;
        let (bytes, size) = writer.finish()?;
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"07070100000001000081a4"));
        // 110-byte header + "./a\0" = 114, padded to 116; then 5 bytes of data padded to 8.
        assert_eq!(&bytes[110..114], b"./a\0");
        assert_eq!(&bytes[116..121], b"hello");
        assert_eq!(&bytes[124..130], MAGIC.as_bytes());
        Ok(())
    }
}
