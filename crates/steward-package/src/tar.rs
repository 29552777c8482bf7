//! Tar archives, as Debian packages carry them: a writer of GNU-format entries (what `dpkg-deb --build`
//! writes: 512-byte headers, `././@LongLink` records for names over 100 bytes, owner root:root) and a scanner
//! that is fed decompressed bytes (it is an `io::Write`), so any decompressor can push into it. The scanner
//! keeps no entry data except the one entry it was asked to capture, and that only up to a limit.

use std::io::{self, Read, Write};

use crate::{PackageError, PackageFormat};

const BLOCK: usize = 512;
const NAME_FIELD: usize = 100;
const TYPE_FILE: u8 = b'0';
const TYPE_SYMLINK: u8 = b'2';
const TYPE_DIRECTORY: u8 = b'5';
const TYPE_GNU_LONG_NAME: u8 = b'L';
const TYPE_GNU_LONG_LINK: u8 = b'K';
const TYPE_PAX_HEADER: u8 = b'x';
const TYPE_PAX_GLOBAL: u8 = b'g';
/// The longest name (a GNU long name or a pax `path`) the scanner accepts.
const MAX_NAME_LENGTH: u64 = 64 * 1024;

/// Writes a tar archive entry by entry; [`TarWriter::finish`] writes the end-of-archive blocks.
pub(crate) struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        Self { out }
    }

    pub(crate) fn append_directory(&mut self, path: &str, mode: u32, mtime: u64) -> io::Result<()> {
        self.write_header(path, TYPE_DIRECTORY, mode, 0, mtime, "")
    }

    pub(crate) fn append_symlink(&mut self, path: &str, target: &str, mtime: u64) -> io::Result<()> {
        self.write_header(path, TYPE_SYMLINK, 0o777, 0, mtime, target)
    }

    /// Appends a regular file of exactly `size` bytes read from `content`; fails if `content` has fewer.
    pub(crate) fn append_file(
        &mut self,
        path: &str,
        mode: u32,
        mtime: u64,
        size: u64,
        content: &mut dyn Read,
    ) -> io::Result<()> {
        self.write_header(path, TYPE_FILE, mode, size, mtime, "")?;
        let copied = io::copy(&mut content.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: expected {size} bytes, found {copied} (the file changed while it was packed)"),
            ));
        }
        self.pad(size)
    }

    /// Appends a regular file held in memory.
    pub(crate) fn append_bytes(&mut self, path: &str, mode: u32, mtime: u64, content: &[u8]) -> io::Result<()> {
        self.append_file(path, mode, mtime, content.len() as u64, &mut &content[..])
    }

    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0; 2 * BLOCK])?;
        Ok(self.out)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let remainder = (size % BLOCK as u64) as usize;
        if remainder != 0 {
            self.out.write_all(&[0; BLOCK][..BLOCK - remainder])?;
        }
        Ok(())
    }

    fn write_header(&mut self, path: &str, kind: u8, mode: u32, size: u64, mtime: u64, link: &str) -> io::Result<()> {
        if link.len() > NAME_FIELD {
            self.write_long_record(TYPE_GNU_LONG_LINK, link)?;
        }
        if path.len() > NAME_FIELD {
            self.write_long_record(TYPE_GNU_LONG_NAME, path)?;
        }
        let header = build_header(truncate(path), kind, mode, size, mtime, truncate(link));
        self.out.write_all(&header)
    }

    fn write_long_record(&mut self, kind: u8, name: &str) -> io::Result<()> {
        let mut content = name.as_bytes().to_vec();
        content.push(0);
        let header = build_header(b"././@LongLink", kind, 0o644, content.len() as u64, 0, b"");
        self.out.write_all(&header)?;
        self.out.write_all(&content)?;
        self.pad(content.len() as u64)
    }
}

fn truncate(text: &str) -> &[u8] {
    &text.as_bytes()[..text.len().min(NAME_FIELD)]
}

fn build_header(name: &[u8], kind: u8, mode: u32, size: u64, mtime: u64, link: &[u8]) -> [u8; BLOCK] {
    let mut header = [0u8; BLOCK];
    header[..name.len()].copy_from_slice(name);
    write_octal(&mut header[100..108], u64::from(mode));
    write_octal(&mut header[108..116], 0);
    write_octal(&mut header[116..124], 0);
    write_number(&mut header[124..136], size);
    write_number(&mut header[136..148], mtime);
    header[156] = kind;
    header[157..157 + link.len()].copy_from_slice(link);
    // GNU magic and version: "ustar  \0", as GNU tar (and so dpkg-deb) writes.
    header[257..265].copy_from_slice(b"ustar  \0");
    header[265..269].copy_from_slice(b"root");
    header[297..301].copy_from_slice(b"root");
    header[148..156].copy_from_slice(b"        ");
    let checksum: u32 = header.iter().map(|&byte| u32::from(byte)).sum();
    let text = format!("{checksum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
    header
}

/// Writes `value` as zero-padded octal digits followed by a NUL.
fn write_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// Writes octal when it fits, else GNU's base-256 form (first byte 0x80, the value big-endian).
fn write_number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if digits >= 22 || value < 1 << (3 * digits) {
        write_octal(field, value);
    } else {
        field.fill(0);
        field[0] = 0x80;
        let bytes = value.to_be_bytes();
        let length = field.len();
        field[length - 8..].copy_from_slice(&bytes);
    }
}

/// Reads a numeric header field: octal (spaces and NULs around it) or GNU base-256.
fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|byte| byte & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &byte in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(byte))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?.trim_matches(|character| character == ' ' || character == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn field_text(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&byte| byte == 0).unwrap_or(field.len());
    &field[..end]
}

/// The parts of an archive the scanner was asked for.
#[derive(Debug, Default)]
pub(crate) struct ScanResult {
    /// The content of the entry named by [`TarScanner::capture`], if the archive has it.
    pub captured: Option<Vec<u8>>,
    /// The number of entries (directories, files, links), without the archive's root directory `./`.
    pub entries: u64,
}

enum ScanState {
    Header,
    Data { remaining: u64, padding: u64, purpose: DataPurpose },
    End,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DataPurpose {
    Skip,
    Capture,
    LongName,
    PaxHeader,
}

/// A tar reader fed through `io::Write`. Errors found in the archive are kept (see [`TarScanner::finish`])
/// and stop the writing with an `io::Error`, so the decompressor feeding it stops too.
pub(crate) struct TarScanner {
    format: PackageFormat,
    member: String,
    capture_name: Option<&'static str>,
    capture_limit: u64,
    entry_limit: u64,
    header: [u8; BLOCK],
    header_filled: usize,
    state: ScanState,
    buffer: Vec<u8>,
    next_name: Option<Vec<u8>>,
    result: ScanResult,
    failure: Option<PackageError>,
}

impl TarScanner {
    /// A scanner of the archive `member` (for messages) that counts entries, failing past `entry_limit`.
    pub(crate) fn new(format: PackageFormat, member: &str, entry_limit: u64) -> Self {
        Self {
            format,
            member: member.to_owned(),
            capture_name: None,
            capture_limit: 0,
            entry_limit,
            header: [0; BLOCK],
            header_filled: 0,
            state: ScanState::Header,
            buffer: Vec::new(),
            next_name: None,
            result: ScanResult::default(),
            failure: None,
        }
    }

    /// Also keep the content of the regular file `name` (compared without a leading `./`), failing if it is
    /// larger than `limit` bytes.
    pub(crate) fn capture(mut self, name: &'static str, limit: u64) -> Self {
        self.capture_name = Some(name);
        self.capture_limit = limit;
        self
    }

    /// The result, or the first problem found. An archive that stops in the middle of an entry is malformed;
    /// one that ends without its end-of-archive blocks is accepted, as GNU tar accepts it.
    pub(crate) fn finish(self) -> Result<ScanResult, PackageError> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        match self.state {
            ScanState::Header if self.header_filled == 0 => Ok(self.result),
            ScanState::End => Ok(self.result),
            _ => Err(PackageError::malformed(self.format, format!("{} ends in the middle of an entry", self.member))),
        }
    }

    /// Takes the failure recorded while writing, if any (so the caller can report it instead of the
    /// decompressor's wrapped `io::Error`).
    pub(crate) fn take_failure(&mut self) -> Option<PackageError> {
        self.failure.take()
    }

    fn fail(&mut self, failure: PackageError) -> io::Error {
        let message = failure.to_string();
        self.failure = Some(failure);
        io::Error::new(io::ErrorKind::InvalidData, message)
    }

    fn malformed(&mut self, message: String) -> io::Error {
        let failure = PackageError::malformed(self.format, format!("{}: {message}", self.member));
        self.fail(failure)
    }

    fn process_header(&mut self) -> io::Result<()> {
        let header = self.header;
        if header.iter().all(|&byte| byte == 0) {
            self.state = ScanState::End;
            return Ok(());
        }
        let stored = parse_number(&header[148..156]);
        let mut computed: u64 = header.iter().map(|&byte| u64::from(byte)).sum();
        computed -= header[148..156].iter().map(|&byte| u64::from(byte)).sum::<u64>();
        computed += 8 * u64::from(b' ');
        if stored != Some(computed) {
            return Err(self.malformed("a header's checksum is wrong (not a tar archive, or damaged)".to_owned()));
        }
        let Some(size) = parse_number(&header[124..136]) else {
            return Err(self.malformed("a header's size field is not a number".to_owned()));
        };
        let kind = header[156];
        let name = match self.next_name.take() {
            Some(long_name) => long_name,
            None => {
                let mut name = Vec::new();
                // POSIX ustar keeps a prefix in bytes 345..500; GNU's magic ("ustar  ") uses them otherwise.
                if &header[257..263] == b"ustar\0" {
                    let prefix = field_text(&header[345..500]);
                    if !prefix.is_empty() {
                        name.extend_from_slice(prefix);
                        name.push(b'/');
                    }
                }
                name.extend_from_slice(field_text(&header[..NAME_FIELD]));
                name
            }
        };
        let purpose = match kind {
            TYPE_GNU_LONG_NAME | TYPE_PAX_HEADER => {
                if size > MAX_NAME_LENGTH {
                    let failure = PackageError::LimitExceeded {
                        format: self.format,
                        what: "a tar long name or pax header",
                        actual: size,
                        limit: MAX_NAME_LENGTH,
                    };
                    return Err(self.fail(failure));
                }
                self.buffer.clear();
                if kind == TYPE_GNU_LONG_NAME { DataPurpose::LongName } else { DataPurpose::PaxHeader }
            }
            TYPE_GNU_LONG_LINK | TYPE_PAX_GLOBAL => DataPurpose::Skip,
            _ => {
                let relative = name.strip_prefix(b"./").unwrap_or(&name);
                if !(relative.is_empty() || relative == b".") {
                    self.result.entries += 1;
                    if self.result.entries > self.entry_limit {
                        let failure = PackageError::LimitExceeded {
                            format: self.format,
                            what: "the number of entries in the data archive",
                            actual: self.result.entries,
                            limit: self.entry_limit,
                        };
                        return Err(self.fail(failure));
                    }
                }
                let wanted = self.capture_name.is_some_and(|wanted| relative == wanted.as_bytes());
                let regular = kind == TYPE_FILE || kind == 0 || kind == b'7';
                if wanted && regular && self.result.captured.is_none() {
                    if size > self.capture_limit {
                        let failure = PackageError::LimitExceeded {
                            format: self.format,
                            what: "the control file",
                            actual: size,
                            limit: self.capture_limit,
                        };
                        return Err(self.fail(failure));
                    }
                    self.buffer.clear();
                    DataPurpose::Capture
                } else {
                    DataPurpose::Skip
                }
            }
        };
        // Hard links, symbolic links, directories and devices have no data whatever the size field says.
        let has_data = !matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        let size = if has_data { size } else { 0 };
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.state = ScanState::Data { remaining: size, padding, purpose };
        self.finish_data_if_done();
        Ok(())
    }

    fn finish_data_if_done(&mut self) {
        let ScanState::Data { remaining: 0, padding: 0, purpose } = self.state else {
            return;
        };
        match purpose {
            DataPurpose::Skip => {}
            DataPurpose::Capture => self.result.captured = Some(std::mem::take(&mut self.buffer)),
            DataPurpose::LongName => {
                let name = field_text(&self.buffer).to_vec();
                self.next_name = Some(name);
            }
            DataPurpose::PaxHeader => {
                if let Some(path) = pax_path(&self.buffer) {
                    self.next_name = Some(path);
                }
            }
        }
        self.state = ScanState::Header;
    }
}

/// The `path` record of a pax extended header (`<length> path=<value>\n` records).
fn pax_path(records: &[u8]) -> Option<Vec<u8>> {
    let mut rest = records;
    while !rest.is_empty() {
        let space = rest.iter().position(|&byte| byte == b' ')?;
        let length: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if length <= space || length > rest.len() {
            return None;
        }
        let record = &rest[space + 1..length];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(path) = record.strip_prefix(b"path=") {
            return Some(path.to_vec());
        }
        rest = &rest[length..];
    }
    None
}

impl Write for TarScanner {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the archive was already found malformed"));
        }
        let mut input = bytes;
        while !input.is_empty() {
            match &mut self.state {
                ScanState::End => break,
                ScanState::Header => {
                    let wanted = (BLOCK - self.header_filled).min(input.len());
                    self.header[self.header_filled..self.header_filled + wanted].copy_from_slice(&input[..wanted]);
                    self.header_filled += wanted;
                    input = &input[wanted..];
                    if self.header_filled == BLOCK {
                        self.header_filled = 0;
                        self.process_header()?;
                    }
                }
                ScanState::Data { remaining, padding, purpose } => {
                    if *remaining > 0 {
                        let taken = (*remaining).min(input.len() as u64) as usize;
                        if *purpose != DataPurpose::Skip {
                            self.buffer.extend_from_slice(&input[..taken]);
                        }
                        *remaining -= taken as u64;
                        input = &input[taken..];
                    } else {
                        let taken = (*padding).min(input.len() as u64) as usize;
                        *padding -= taken as u64;
                        input = &input[taken..];
                    }
                    self.finish_data_if_done();
                }
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(archive: &[u8], chunk: usize) -> Result<ScanResult, PackageError> {
        let mut scanner = TarScanner::new(PackageFormat::Deb, "test.tar", 100).capture("control", 1024);
        for piece in archive.chunks(chunk) {
            if scanner.write_all(piece).is_err() {
                break;
            }
        }
        scanner.finish()
    }

    fn sample_archive() -> io::Result<Vec<u8>> {
        let long_name = format!("./{}/file", "d".repeat(150));
        let mut writer = TarWriter::new(Vec::new());
        writer.append_directory("./", 0o755, 7)?;
        writer.append_bytes("./control", 0o644, 7, b"Package: x\n")?;
        writer.append_bytes(&long_name, 0o600, 7, &[1; 700])?;
        writer.append_symlink("./link", &"t".repeat(120), 7)?;
        writer.finish()
    }

    #[test]
    fn written_archives_scan_back_whatever_the_chunking() -> io::Result<()> {
        let archive = sample_archive()?;
        assert_eq!(archive.len() % BLOCK, 0);
        for chunk in [1, 7, 512, 100_000] {
            let result = scan(&archive, chunk).map_err(io::Error::other)?;
            assert_eq!(result.entries, 3, "chunk {chunk}");
            assert_eq!(result.captured.as_deref(), Some(&b"Package: x\n"[..]));
        }
        Ok(())
    }

    #[test]
    fn damage_is_reported_not_ignored() -> io::Result<()> {
        let mut archive = sample_archive()?;
        archive[BLOCK + 10] ^= 0x40;
        let message = scan(&archive, 64).expect_err("damaged header").to_string();
        assert!(message.contains("checksum"), "{message}");
        let archive = sample_archive()?;
        let message = scan(&archive[..BLOCK * 2 + 100], 64).expect_err("truncated").to_string();
        assert!(message.contains("middle of an entry"), "{message}");
        Ok(())
    }

    #[test]
    fn a_large_capture_is_refused() -> io::Result<()> {
        let mut writer = TarWriter::new(Vec::new());
        writer.append_bytes("./control", 0o644, 0, &[b'a'; 2000])?;
        let archive = writer.finish()?;
        let message = scan(&archive, 512).expect_err("over the limit").to_string();
        assert!(message.contains("limit of 1024"), "{message}");
        Ok(())
    }

    #[test]
    fn numbers_too_large_for_octal_use_base_256() {
        let mut field = [0u8; 12];
        let large = 9 * 1024 * 1024 * 1024;
        write_number(&mut field, large);
        assert_eq!(field[0], 0x80);
        assert_eq!(parse_number(&field), Some(large));
        write_number(&mut field, 0o17);
        assert_eq!(parse_number(&field), Some(0o17));
    }
}
