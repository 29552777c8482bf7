//! Tar archives as directory transfers carry them (agent, server API and CLI agree on this): a streaming writer
//! and a streaming reader over `std::io`, neither of which holds more than one 512-byte block and one name.
//!
//! Written: GNU format (what `tar` writes by default on Linux): 512-byte headers, numeric owner and names,
//! `././@LongLink` records for names and link targets over 100 bytes, numbers too large for octal in base 256.
//! Read: that, POSIX ustar (with its name prefix) and pax extended headers (`path`, `linkpath`, `size`, `uid`,
//! `gid`, `uname`, `gname`, `mtime`), so archives made by GNU tar, bsdtar or Python come in. Regular files,
//! directories and symbolic links are the entries a transfer carries; hard links, devices and FIFOs are refused
//! with an error naming the entry, and a header whose checksum is wrong is refused as damage.

use std::io::{self, Read, Write};

use crate::files::EntryKind;

const BLOCK: usize = 512;
const NAME_FIELD: usize = 100;
/// The longest name or link target (GNU long record or pax value) accepted.
const MAX_NAME_BYTES: u64 = 64 * 1024;
/// The largest pax extended header accepted.
const MAX_PAX_BYTES: u64 = 1024 * 1024;

/// One entry of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// Relative to the archive's root, `/`-separated, without a trailing `/`; `.` is the root itself. As read, it
    /// is not yet checked: see [`relative_components`].
    pub path: String,
    pub kind: EntryKind,
    /// Data bytes that follow (files only).
    pub size: u64,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// The owner's names, empty when unknown.
    pub user: String,
    pub group: String,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// The target of a symbolic link (empty otherwise).
    pub link_target: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("reading or writing the archive failed")]
    Io(#[from] io::Error),
    #[error("the archive is damaged: {0}")]
    Malformed(String),
    #[error("archive entry {path:?}: {what} cannot be transferred (only files, directories and symbolic links)")]
    Unsupported { path: String, what: &'static str },
}

/// The components of an entry's relative path, checked: `./` prefixes and empty components are dropped; `..`,
/// an absolute path and a NUL byte are refused, naming the path. The root (`.`, `./`) has no components.
pub fn relative_components(path: &str) -> Result<Vec<&str>, String> {
    if path.starts_with('/') {
        return Err(format!("archive entry {path:?} is an absolute path"));
    }
    if path.contains('\0') {
        return Err(format!("archive entry {path:?} contains a NUL byte"));
    }
    let mut components = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(format!("archive entry {path:?} climbs out of the destination with `..`")),
            name => components.push(name),
        }
    }
    Ok(components)
}

/// Writes an archive entry by entry; [`TarWriter::finish`] writes the end-of-archive blocks.
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Appends `entry`; for a file, exactly `entry.size` bytes are copied from `content` (fewer is an error: the
    /// file shrank while it was read; more are left unread).
    pub fn append(&mut self, entry: &TarEntry, content: &mut dyn Read) -> io::Result<()> {
        let mut name = entry.path.clone();
        if entry.kind == EntryKind::Directory && !name.ends_with('/') {
            name.push('/');
        }
        if name.len() > NAME_FIELD {
            self.write_long_record(b'L', &name)?;
        }
        if entry.link_target.len() > NAME_FIELD {
            self.write_long_record(b'K', &entry.link_target)?;
        }
        let (kind, size) = match entry.kind {
            EntryKind::File => (b'0', entry.size),
            EntryKind::Directory => (b'5', 0),
            EntryKind::Symlink => (b'2', 0),
        };
        let mut header = [0u8; BLOCK];
        put_text(&mut header[0..100], name.as_bytes());
        write_number(&mut header[100..108], u64::from(entry.mode & 0o7777));
        write_number(&mut header[108..116], u64::from(entry.uid));
        write_number(&mut header[116..124], u64::from(entry.gid));
        write_number(&mut header[124..136], size);
        write_number(&mut header[136..148], u64::try_from(entry.mtime).unwrap_or(0));
        header[156] = kind;
        put_text(&mut header[157..257], entry.link_target.as_bytes());
        header[257..265].copy_from_slice(b"ustar  \0");
        put_text(&mut header[265..297], entry.user.as_bytes());
        put_text(&mut header[297..329], entry.group.as_bytes());
        seal(&mut header);
        self.out.write_all(&header)?;
        if size > 0 {
            let copied = io::copy(&mut content.take(size), &mut self.out)?;
            if copied != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: expected {size} bytes, found {copied} (the file shrank while it was read)",
                        entry.path
                    ),
                ));
            }
            self.pad(size)?;
        }
        Ok(())
    }

    /// Writes the two zero blocks that end an archive and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; BLOCK * 2])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let padding = padding_of(size);
        self.out.write_all(&[0u8; BLOCK][..padding as usize])
    }

    fn write_long_record(&mut self, kind: u8, text: &str) -> io::Result<()> {
        let size = text.len() as u64 + 1;
        let mut header = [0u8; BLOCK];
        put_text(&mut header[0..100], b"././@LongLink");
        write_number(&mut header[100..108], 0o644);
        write_number(&mut header[124..136], size);
        header[156] = kind;
        header[257..265].copy_from_slice(b"ustar  \0");
        seal(&mut header);
        self.out.write_all(&header)?;
        self.out.write_all(text.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(size)
    }
}

fn padding_of(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn put_text(field: &mut [u8], text: &[u8]) {
    let length = text.len().min(field.len());
    field[..length].copy_from_slice(&text[..length]);
}

/// Fills in the header checksum (the sum of all bytes with the checksum field as spaces).
fn seal(header: &mut [u8; BLOCK]) {
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&byte| u32::from(byte)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
}

/// Octal with a terminating NUL when it fits, else GNU base 256.
fn write_number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() <= digits {
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    } else {
        field.fill(0);
        let last = field.len() - 1;
        for (shift, byte) in (0..last.min(8)).zip(field.iter_mut().rev()) {
            *byte = (value >> (8 * shift)) as u8;
        }
        field[0] |= 0x80;
    }
}

fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&byte| byte & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &byte in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(byte))?;
        }
        return Some(value);
    }
    let text = field_text(field);
    let text = std::str::from_utf8(text).ok()?.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// A text field up to its first NUL.
fn field_text(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&byte| byte == 0).unwrap_or(field.len());
    &field[..end]
}

/// Values from a pax extended header or GNU long records, for the next entry.
#[derive(Default)]
struct Overrides {
    path: Option<String>,
    link_target: Option<String>,
    size: Option<u64>,
    uid: Option<u32>,
    gid: Option<u32>,
    user: Option<String>,
    group: Option<String>,
    mtime: Option<i64>,
}

/// Reads an archive entry by entry: [`TarReader::next_entry`] skips whatever of the previous entry's data was
/// not read, and [`TarReader::data`] reads the current entry's data.
pub struct TarReader<R: Read> {
    input: R,
    /// Data bytes of the current entry not yet read, then its padding.
    remaining: u64,
    padding: u64,
    finished: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(input: R) -> Self {
        Self { input, remaining: 0, padding: 0, finished: false }
    }

    /// The reader given to [`TarReader::new`] (for example to drain what follows the end of the archive).
    pub fn into_inner(self) -> R {
        self.input
    }

    /// The next entry, or `None` after the end-of-archive block.
    pub fn next_entry(&mut self) -> Result<Option<TarEntry>, TarError> {
        if self.finished {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut overrides = Overrides::default();
        loop {
            let mut header = [0u8; BLOCK];
            if !read_block(&mut self.input, &mut header)? {
                return Err(TarError::Malformed("the archive ends without its end-of-archive blocks".into()));
            }
            if header.iter().all(|&byte| byte == 0) {
                self.finished = true;
                return Ok(None);
            }
            check_sum(&header)?;
            let number = |range: std::ops::Range<usize>, what: &str| {
                parse_number(&header[range])
                    .ok_or_else(|| TarError::Malformed(format!("a header's {what} is not a number")))
            };
            let size = number(124..136, "size")?;
            let kind = header[156];
            match kind {
                b'L' | b'K' => {
                    let text = self.read_record(size, MAX_NAME_BYTES, "a long name")?;
                    let text = String::from_utf8_lossy(field_text(&text)).into_owned();
                    if kind == b'L' {
                        overrides.path = Some(text);
                    } else {
                        overrides.link_target = Some(text);
                    }
                    continue;
                }
                b'x' => {
                    let records = self.read_record(size, MAX_PAX_BYTES, "a pax header")?;
                    apply_pax(&records, &mut overrides)?;
                    continue;
                }
                b'g' => {
                    self.read_record(size, MAX_PAX_BYTES, "a global pax header")?;
                    continue;
                }
                _ => {}
            }
            let mut path = match overrides.path.take() {
                Some(path) => path,
                None => {
                    let name = String::from_utf8_lossy(field_text(&header[0..100])).into_owned();
                    // POSIX ustar splits long names into a prefix; GNU's magic (`ustar  `) uses those bytes for
                    // other things.
                    let prefix = field_text(&header[345..500]);
                    if &header[257..263] == b"ustar\0" && !prefix.is_empty() {
                        format!("{}/{name}", String::from_utf8_lossy(prefix))
                    } else {
                        name
                    }
                }
            };
            let kind = match kind {
                b'0' | 0 | b'7' => EntryKind::File,
                b'5' => EntryKind::Directory,
                b'2' => EntryKind::Symlink,
                other => {
                    let what = match other {
                        b'1' => "a hard link",
                        b'3' | b'4' => "a device",
                        b'6' => "a FIFO",
                        _ => "an entry of an unknown type",
                    };
                    return Err(TarError::Unsupported { path, what });
                }
            };
            while path.len() > 1 && path.ends_with('/') {
                path.pop();
            }
            let size = overrides.size.unwrap_or(size);
            let entry = TarEntry {
                path,
                kind,
                size: if kind == EntryKind::File { size } else { 0 },
                mode: (number(100..108, "mode")? & 0o7777) as u32,
                uid: overrides.uid.unwrap_or(u32::try_from(number(108..116, "uid")?).unwrap_or(u32::MAX)),
                gid: overrides.gid.unwrap_or(u32::try_from(number(116..124, "gid")?).unwrap_or(u32::MAX)),
                user: overrides
                    .user
                    .take()
                    .unwrap_or_else(|| String::from_utf8_lossy(field_text(&header[265..297])).into_owned()),
                group: overrides
                    .group
                    .take()
                    .unwrap_or_else(|| String::from_utf8_lossy(field_text(&header[297..329])).into_owned()),
                mtime: overrides.mtime.unwrap_or(i64::try_from(number(136..148, "mtime")?).unwrap_or(0)),
                link_target: overrides
                    .link_target
                    .take()
                    .unwrap_or_else(|| String::from_utf8_lossy(field_text(&header[157..257])).into_owned()),
            };
            // Directories and links may declare a size; their data (if any) is skipped.
            self.remaining = size;
            self.padding = padding_of(size);
            if kind != EntryKind::File {
                self.skip_rest()?;
            }
            return Ok(Some(entry));
        }
    }

    /// Reads the current entry's data; 0 at its end.
    pub fn data(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buffer.is_empty() {
            return Ok(0);
        }
        let wanted = buffer.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read = self.input.read(&mut buffer[..wanted])?;
        if read == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends inside an entry's data"));
        }
        self.remaining -= read as u64;
        Ok(read)
    }

    /// The current entry's data as a reader.
    pub fn entry_data(&mut self) -> EntryData<'_, R> {
        EntryData { reader: self }
    }

    fn skip_rest(&mut self) -> io::Result<()> {
        let total = self.remaining + self.padding;
        if total > 0 {
            let skipped = io::copy(&mut (&mut self.input).take(total), &mut io::sink())?;
            if skipped != total {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends inside an entry's data"));
            }
        }
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }

    fn read_record(&mut self, size: u64, limit: u64, what: &str) -> Result<Vec<u8>, TarError> {
        if size > limit {
            return Err(TarError::Malformed(format!("{what} of {size} bytes is larger than {limit}")));
        }
        let mut record = vec![0u8; size as usize];
        self.input.read_exact(&mut record)?;
        let padding = padding_of(size);
        io::copy(&mut (&mut self.input).take(padding), &mut io::sink())?;
        Ok(record)
    }
}

/// The data of a [`TarReader`]'s current entry.
pub struct EntryData<'a, R: Read> {
    reader: &'a mut TarReader<R>,
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.reader.data(buffer)
    }
}

/// Reads a whole block; false at a clean end of input before it.
fn read_block(input: &mut impl Read, block: &mut [u8; BLOCK]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < BLOCK {
        match input.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends inside a header")),
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

fn check_sum(header: &[u8; BLOCK]) -> Result<(), TarError> {
    let recorded = parse_number(&header[148..156]);
    let unsigned: u64 = header
        .iter()
        .enumerate()
        .map(|(index, &byte)| if (148..156).contains(&index) { u64::from(b' ') } else { u64::from(byte) })
        .sum();
    if recorded != Some(unsigned) {
        return Err(TarError::Malformed(format!(
            "a header's checksum is wrong (recorded {recorded:?}, computed {unsigned}): not a tar archive, or damaged"
        )));
    }
    Ok(())
}

/// Applies the records (`<length> <key>=<value>\n`) of a pax extended header.
fn apply_pax(records: &[u8], overrides: &mut Overrides) -> Result<(), TarError> {
    let damaged = || TarError::Malformed("a pax extended header is damaged".into());
    let mut rest = records;
    while !rest.is_empty() {
        let space = rest.iter().position(|&byte| byte == b' ').ok_or_else(damaged)?;
        let length: usize =
            std::str::from_utf8(&rest[..space]).ok().and_then(|text| text.parse().ok()).ok_or_else(damaged)?;
        if length <= space + 1 || length > rest.len() {
            return Err(damaged());
        }
        let record = &rest[space + 1..length];
        rest = &rest[length..];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        let Some(equals) = record.iter().position(|&byte| byte == b'=') else { return Err(damaged()) };
        let value = String::from_utf8_lossy(&record[equals + 1..]).into_owned();
        let number = |text: &str| text.split('.').next().and_then(|whole| whole.parse::<i64>().ok());
        match &record[..equals] {
            b"path" => overrides.path = Some(value),
            b"linkpath" => overrides.link_target = Some(value),
            b"size" => overrides.size = Some(number(&value).and_then(|n| u64::try_from(n).ok()).ok_or_else(damaged)?),
            b"uid" => overrides.uid = number(&value).and_then(|n| u32::try_from(n).ok()),
            b"gid" => overrides.gid = number(&value).and_then(|n| u32::try_from(n).ok()),
            b"uname" => overrides.user = Some(value),
            b"gname" => overrides.group = Some(value),
            b"mtime" => overrides.mtime = number(&value),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind, size: u64) -> TarEntry {
        TarEntry {
            path: path.into(),
            kind,
            size,
            mode: 0o640,
            uid: 1000,
            gid: 100,
            user: "alice".into(),
            group: "users".into(),
            mtime: 1_700_000_000,
            link_target: String::new(),
        }
    }

    fn archive(entries: &[(TarEntry, Vec<u8>)]) -> Vec<u8> {
        let mut writer = TarWriter::new(Vec::new());
        for (entry, content) in entries {
            writer.append(entry, &mut content.as_slice()).expect("append");
        }
        writer.finish().expect("finish")
    }

    #[test]
    fn entries_round_trip_with_long_names_and_large_ids() {
        let long_name = format!("{}/file.txt", "deep/".repeat(40));
        let mut link = entry("link", EntryKind::Symlink, 0);
        link.link_target = "x".repeat(150);
        let mut big = entry(&long_name, EntryKind::File, 3);
        big.uid = 4_000_000_000;
        let entries = vec![
            (entry(".", EntryKind::Directory, 0), Vec::new()),
            (entry("sub", EntryKind::Directory, 0), Vec::new()),
            (entry("sub/a", EntryKind::File, 600), vec![7u8; 600]),
            (big, b"abc".to_vec()),
            (link, Vec::new()),
        ];
        let bytes = archive(&entries);
        assert_eq!(bytes.len() % BLOCK, 0);
        let mut reader = TarReader::new(bytes.as_slice());
        for (expected, content) in &entries {
            let found = reader.next_entry().expect("entry").expect("not the end");
            assert_eq!(&found, expected);
            let mut data = Vec::new();
            reader.entry_data().read_to_end(&mut data).expect("data");
            assert_eq!(&data, content);
        }
        assert!(reader.next_entry().expect("end").is_none());
    }

    #[test]
    fn unread_data_is_skipped_and_damage_is_reported() {
        let bytes = archive(&[
            (entry("a", EntryKind::File, 1000), vec![1u8; 1000]),
            (entry("b", EntryKind::File, 1), vec![2u8]),
        ]);
        let mut reader = TarReader::new(bytes.as_slice());
        assert_eq!(reader.next_entry().expect("a").expect("a").path, "a");
        assert_eq!(reader.next_entry().expect("b").expect("b").path, "b");

        let mut damaged = bytes.clone();
        damaged[10] ^= 1;
        let error = TarReader::new(damaged.as_slice()).next_entry().expect_err("checksum");
        assert!(error.to_string().contains("checksum"), "{error}");

        let truncated = &bytes[..BLOCK + 100];
        let mut reader = TarReader::new(truncated);
        reader.next_entry().expect("header").expect("entry");
        let mut data = Vec::new();
        assert!(reader.entry_data().read_to_end(&mut data).is_err());
    }

    #[test]
    fn hard_links_and_devices_are_refused_by_name() {
        let mut bytes = archive(&[(entry("dev", EntryKind::File, 0), Vec::new())]);
        bytes[156] = b'3';
        let mut header: [u8; BLOCK] = bytes[..BLOCK].try_into().expect("block");
        seal(&mut header);
        bytes[..BLOCK].copy_from_slice(&header);
        let error = TarReader::new(bytes.as_slice()).next_entry().expect_err("device");
        assert!(error.to_string().contains("\"dev\": a device"), "{error}");
    }

    #[test]
    fn relative_paths_are_checked() {
        assert_eq!(relative_components("./a/b/").expect("ok"), ["a", "b"]);
        assert!(relative_components(".").expect("root").is_empty());
        assert!(relative_components("a/../../etc").expect_err("dotdot").contains("`..`"));
        assert!(relative_components("/etc/passwd").expect_err("absolute").contains("absolute"));
    }

    #[test]
    fn numbers_use_base_256_beyond_octal() {
        let mut field = [0u8; 12];
        write_number(&mut field, 1 << 40);
        assert_eq!(field[0], 0x80);
        assert_eq!(parse_number(&field), Some(1 << 40));
        write_number(&mut field, 0o755);
        assert_eq!(parse_number(&field), Some(0o755));
    }
}
