//! The RPM header structure, shared by the signature header and the main header: the magic `8e ad e8 01`,
//! four reserved bytes, the number of index entries and the size of the data store (both big-endian), then
//! the index (tag, type, offset, count: 16 bytes each) and the data store.
//!
//! Written headers are "immutable regions" as rpm itself writes them: the first index entry is the region
//! tag (62 for the signature, 63 for the main header) whose data, the trailer at the end of the store, is an
//! index entry pointing back over the whole index. Entries are sorted by tag and their data is laid out in
//! that order, each aligned to its type (rpm refuses overlapping or out-of-order data).

use std::collections::BTreeMap;
use std::io::Read;

use crate::{PackageError, PackageFormat};

const MAGIC: [u8; 8] = [0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
const FORMAT: PackageFormat = PackageFormat::Rpm;

/// The tag numbers used (rpmtag.h; signature tags in rpmsign's numbering).
pub(crate) mod tag {
    pub const HEADER_SIGNATURES: u32 = 62;
    pub const HEADER_IMMUTABLE: u32 = 63;
    pub const HEADER_I18N_TABLE: u32 = 100;

    pub const SIGNATURE_SHA256: u32 = 273;
    pub const SIGNATURE_SIZE: u32 = 1000;
    pub const SIGNATURE_MD5: u32 = 1004;
    pub const SIGNATURE_PAYLOAD_SIZE: u32 = 1007;

    pub const NAME: u32 = 1000;
    pub const VERSION: u32 = 1001;
    pub const RELEASE: u32 = 1002;
    pub const EPOCH: u32 = 1003;
    pub const SUMMARY: u32 = 1004;
    pub const DESCRIPTION: u32 = 1005;
    pub const BUILD_TIME: u32 = 1006;
    pub const BUILD_HOST: u32 = 1007;
    pub const SIZE: u32 = 1009;
    pub const VENDOR: u32 = 1011;
    pub const LICENSE: u32 = 1014;
    pub const PACKAGER: u32 = 1015;
    pub const GROUP: u32 = 1016;
    pub const OS: u32 = 1021;
    pub const ARCH: u32 = 1022;
    pub const PRE_INSTALL: u32 = 1023;
    pub const POST_INSTALL: u32 = 1024;
    pub const PRE_UNINSTALL: u32 = 1025;
    pub const POST_UNINSTALL: u32 = 1026;
    pub const OLD_FILE_NAMES: u32 = 1027;
    pub const FILE_SIZES: u32 = 1028;
    pub const FILE_MODES: u32 = 1030;
    pub const FILE_RDEVS: u32 = 1033;
    pub const FILE_MTIMES: u32 = 1034;
    pub const FILE_DIGESTS: u32 = 1035;
    pub const FILE_LINK_TOS: u32 = 1036;
    pub const FILE_FLAGS: u32 = 1037;
    pub const FILE_USER_NAME: u32 = 1039;
    pub const FILE_GROUP_NAME: u32 = 1040;
    pub const SOURCE_RPM: u32 = 1044;
    pub const FILE_VERIFY_FLAGS: u32 = 1045;
    pub const PROVIDE_NAME: u32 = 1047;
    pub const REQUIRE_FLAGS: u32 = 1048;
    pub const REQUIRE_NAME: u32 = 1049;
    pub const REQUIRE_VERSION: u32 = 1050;
    pub const RPM_VERSION: u32 = 1064;
    pub const PRE_INSTALL_PROGRAM: u32 = 1085;
    pub const POST_INSTALL_PROGRAM: u32 = 1086;
    pub const PRE_UNINSTALL_PROGRAM: u32 = 1087;
    pub const POST_UNINSTALL_PROGRAM: u32 = 1088;
    pub const FILE_DEVICES: u32 = 1095;
    pub const FILE_INODES: u32 = 1096;
    pub const FILE_LANGS: u32 = 1097;
    pub const PROVIDE_FLAGS: u32 = 1112;
    pub const PROVIDE_VERSION: u32 = 1113;
    pub const DIR_INDEXES: u32 = 1116;
    pub const BASE_NAMES: u32 = 1117;
    pub const DIR_NAMES: u32 = 1118;
    pub const PAYLOAD_FORMAT: u32 = 1124;
    pub const PAYLOAD_COMPRESSOR: u32 = 1125;
    pub const PAYLOAD_FLAGS: u32 = 1126;
    pub const LONG_SIZE: u32 = 5009;
    pub const FILE_DIGEST_ALGORITHM: u32 = 5011;
    pub const PAYLOAD_DIGEST: u32 = 5092;
    pub const PAYLOAD_DIGEST_ALGORITHM: u32 = 5093;
}

/// The data types of header entries.
mod kind {
    pub const INT16: u32 = 3;
    pub const INT32: u32 = 4;
    pub const INT64: u32 = 5;
    pub const STRING: u32 = 6;
    pub const BINARY: u32 = 7;
    pub const STRING_ARRAY: u32 = 8;
    pub const I18N_STRING: u32 = 9;
}

/// A value to write.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Int16(Vec<u16>),
    Int32(Vec<u32>),
    String(String),
    Binary(Vec<u8>),
    StringArray(Vec<String>),
    /// One string for the one locale ("C") of the header's I18N table.
    I18nString(String),
}

impl Value {
    fn kind_and_count(&self) -> (u32, usize) {
        match self {
            Self::Int16(values) => (kind::INT16, values.len()),
            Self::Int32(values) => (kind::INT32, values.len()),
            Self::String(_) => (kind::STRING, 1),
            Self::Binary(bytes) => (kind::BINARY, bytes.len()),
            Self::StringArray(strings) => (kind::STRING_ARRAY, strings.len()),
            Self::I18nString(_) => (kind::I18N_STRING, 1),
        }
    }

    fn alignment(&self) -> usize {
        match self {
            Self::Int16(_) => 2,
            Self::Int32(_) => 4,
            _ => 1,
        }
    }

    fn write(&self, store: &mut Vec<u8>) {
        match self {
            Self::Int16(values) => values.iter().for_each(|value| store.extend_from_slice(&value.to_be_bytes())),
            Self::Int32(values) => values.iter().for_each(|value| store.extend_from_slice(&value.to_be_bytes())),
            Self::String(text) | Self::I18nString(text) => {
                store.extend_from_slice(text.as_bytes());
                store.push(0);
            }
            Self::Binary(bytes) => store.extend_from_slice(bytes),
            Self::StringArray(strings) => strings.iter().for_each(|text| {
                store.extend_from_slice(text.as_bytes());
                store.push(0);
            }),
        }
    }
}

/// A header being assembled: tags and values, written in tag order.
#[derive(Debug, Default)]
pub(crate) struct HeaderBuilder {
    entries: BTreeMap<u32, Value>,
}

impl HeaderBuilder {
    pub(crate) fn set(&mut self, tag: u32, value: Value) {
        self.entries.insert(tag, value);
    }

    /// The header's bytes (magic to the end of the store) as an immutable region under `region_tag`.
    pub(crate) fn build(&self, region_tag: u32) -> Vec<u8> {
        let index_count = self.entries.len() + 1;
        let mut index: Vec<[u32; 4]> = Vec::with_capacity(index_count);
        let mut store = Vec::new();
        for (&tag, value) in &self.entries {
            let alignment = value.alignment();
            while store.len() % alignment != 0 {
                store.push(0);
            }
            let (value_kind, count) = value.kind_and_count();
            index.push([tag, value_kind, store.len() as u32, count as u32]);
            value.write(&mut store);
        }
        let trailer_offset = store.len() as u32;
        let back_reference = (-(16 * index_count as i64)) as i32 as u32;
        for word in [region_tag, kind::BINARY, back_reference, 16] {
            store.extend_from_slice(&word.to_be_bytes());
        }
        index.insert(0, [region_tag, kind::BINARY, trailer_offset, 16]);

        let mut header = Vec::with_capacity(16 + 16 * index_count + store.len());
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&(index_count as u32).to_be_bytes());
        header.extend_from_slice(&(store.len() as u32).to_be_bytes());
        for entry in &index {
            for word in entry {
                header.extend_from_slice(&word.to_be_bytes());
            }
        }
        header.extend_from_slice(&store);
        header
    }
}

/// One index entry as read.
#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    tag: u32,
    kind: u32,
    offset: usize,
    count: usize,
}

/// A header as read: its index and data store, every access checked against the store's bounds.
#[derive(Debug)]
pub(crate) struct Header {
    index: Vec<IndexEntry>,
    store: Vec<u8>,
    /// The header's size in the file (preamble, index and store).
    pub length: u64,
}

impl Header {
    /// Reads a header, refusing more than `max_tags` entries or a store over `max_bytes` before reading
    /// them. `what` names the header in messages.
    pub(crate) fn read(
        reader: &mut dyn Read,
        what: &'static str,
        max_tags: u32,
        max_bytes: u32,
    ) -> Result<Self, PackageError> {
        let mut preamble = [0u8; 16];
        reader.read_exact(&mut preamble).map_err(|source| PackageError::read(FORMAT, what, source))?;
        if preamble[..4] != MAGIC[..4] {
            return Err(PackageError::malformed(FORMAT, format!("the {what} lacks the header magic")));
        }
        let tags = u32::from_be_bytes([preamble[8], preamble[9], preamble[10], preamble[11]]);
        let bytes = u32::from_be_bytes([preamble[12], preamble[13], preamble[14], preamble[15]]);
        if tags > max_tags {
            return Err(PackageError::LimitExceeded {
                format: FORMAT,
                what: "the number of tags of a header",
                actual: u64::from(tags),
                limit: u64::from(max_tags),
            });
        }
        if bytes > max_bytes {
            return Err(PackageError::LimitExceeded {
                format: FORMAT,
                what: "the data size of a header",
                actual: u64::from(bytes),
                limit: u64::from(max_bytes),
            });
        }
        let index_bytes = read_up_to(reader, 16 * u64::from(tags), what)?;
        let store = read_up_to(reader, u64::from(bytes), what)?;
        let index = index_bytes
            .chunks_exact(16)
            .map(|chunk| {
                let word = |at: usize| u32::from_be_bytes([chunk[at], chunk[at + 1], chunk[at + 2], chunk[at + 3]]);
                IndexEntry { tag: word(0), kind: word(4), offset: word(8) as usize, count: word(12) as usize }
            })
            .collect();
        let length = 16 + index_bytes.len() as u64 + store.len() as u64;
        Ok(Self { index, store, length })
    }

    fn entry(&self, tag: u32) -> Option<IndexEntry> {
        self.index.iter().find(|entry| entry.tag == tag).copied()
    }

    fn bad(&self, tag: u32, problem: &str) -> PackageError {
        PackageError::malformed(FORMAT, format!("header tag {tag}: {problem}"))
    }

    /// The `count` NUL-terminated strings starting at the entry's offset.
    fn strings(&self, entry: IndexEntry, count: usize) -> Result<Vec<String>, PackageError> {
        let mut rest = self.store.get(entry.offset..).ok_or_else(|| self.bad(entry.tag, "offset outside the data"))?;
        // Every string takes at least its NUL, so a count larger than the bytes left is a lie: refuse it
        // before anything is allocated for it.
        if count > rest.len() {
            return Err(self.bad(entry.tag, "more strings than bytes"));
        }
        let mut strings = Vec::with_capacity(count);
        for _ in 0..count {
            let end =
                rest.iter().position(|&byte| byte == 0).ok_or_else(|| self.bad(entry.tag, "unterminated string"))?;
            strings.push(String::from_utf8_lossy(&rest[..end]).into_owned());
            rest = &rest[end + 1..];
        }
        Ok(strings)
    }

    /// A string tag (STRING, the first locale of an I18N string, or the first of a string array).
    pub(crate) fn string(&self, tag: u32) -> Result<Option<String>, PackageError> {
        let Some(entry) = self.entry(tag) else { return Ok(None) };
        match entry.kind {
            kind::STRING | kind::I18N_STRING | kind::STRING_ARRAY if entry.count >= 1 => {
                Ok(self.strings(entry, 1)?.into_iter().next())
            }
            _ => Err(self.bad(tag, "not a string")),
        }
    }

    /// A string array tag (empty when absent).
    pub(crate) fn string_array(&self, tag: u32) -> Result<Vec<String>, PackageError> {
        let Some(entry) = self.entry(tag) else { return Ok(Vec::new()) };
        match entry.kind {
            kind::STRING_ARRAY => self.strings(entry, entry.count),
            kind::STRING if entry.count == 1 => self.strings(entry, 1),
            _ => Err(self.bad(tag, "not a string array")),
        }
    }

    /// An INT32 (or INT16, or INT64 if it fits) array tag (empty when absent).
    pub(crate) fn integers(&self, tag: u32) -> Result<Vec<u64>, PackageError> {
        let Some(entry) = self.entry(tag) else { return Ok(Vec::new()) };
        let width = match entry.kind {
            kind::INT16 => 2,
            kind::INT32 => 4,
            kind::INT64 => 8,
            _ => return Err(self.bad(tag, "not an integer")),
        };
        let length = entry.count.checked_mul(width).ok_or_else(|| self.bad(tag, "count too large"))?;
        let end = entry.offset.checked_add(length).ok_or_else(|| self.bad(tag, "count too large"))?;
        let bytes = self.store.get(entry.offset..end).ok_or_else(|| self.bad(tag, "data outside the store"))?;
        Ok(bytes
            .chunks_exact(width)
            .map(|chunk| chunk.iter().fold(0u64, |value, &byte| (value << 8) | u64::from(byte)))
            .collect())
    }

    /// The first value of an integer tag.
    pub(crate) fn integer(&self, tag: u32) -> Result<Option<u64>, PackageError> {
        Ok(self.integers(tag)?.first().copied())
    }

    /// The number of values of a tag (0 when absent), without reading them.
    pub(crate) fn count(&self, tag: u32) -> usize {
        self.entry(tag).map_or(0, |entry| entry.count)
    }
}

/// Reads exactly `length` bytes, growing the buffer only as bytes arrive (a lying length costs nothing).
fn read_up_to(reader: &mut dyn Read, length: u64, what: &'static str) -> Result<Vec<u8>, PackageError> {
    let mut bytes = Vec::new();
    reader.take(length).read_to_end(&mut bytes).map_err(|source| PackageError::read(FORMAT, what, source))?;
    if (bytes.len() as u64) < length {
        return Err(PackageError::malformed(FORMAT, format!("the package ends in the middle of the {what}")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_header_reads_back_with_its_region() -> Result<(), PackageError> {
        let mut builder = HeaderBuilder::default();
        builder.set(tag::NAME, Value::String("tool".to_owned()));
        builder.set(tag::FILE_MODES, Value::Int16(vec![0o100755, 0o040755]));
        builder.set(tag::FILE_SIZES, Value::Int32(vec![5, 4096]));
        builder.set(tag::BASE_NAMES, Value::StringArray(vec!["a".to_owned(), "b".to_owned()]));
        builder.set(tag::SUMMARY, Value::I18nString("sum".to_owned()));
        let bytes = builder.build(tag::HEADER_IMMUTABLE);
        let header = Header::read(&mut &bytes[..], "header", 100, 1 << 20)?;
        assert_eq!(header.length, bytes.len() as u64);
        assert_eq!(header.string(tag::NAME)?.as_deref(), Some("tool"));
        assert_eq!(header.string(tag::SUMMARY)?.as_deref(), Some("sum"));
        assert_eq!(header.integers(tag::FILE_MODES)?, vec![0o100755, 0o040755]);
        assert_eq!(header.integers(tag::FILE_SIZES)?, vec![5, 4096]);
        assert_eq!(header.string_array(tag::BASE_NAMES)?, vec!["a", "b"]);
        assert_eq!(header.count(tag::BASE_NAMES), 2);
        // The region entry comes first and its trailer points back over the whole index (6 entries).
        let region = header.entry(tag::HEADER_IMMUTABLE).expect("region entry");
        let trailer = &header.store[region.offset..region.offset + 16];
        assert_eq!(&trailer[8..12], &(-(16 * 6_i32)).to_be_bytes());
        Ok(())
    }

    #[test]
    fn lying_counts_are_refused_before_allocating() -> Result<(), PackageError> {
        let mut builder = HeaderBuilder::default();
        builder.set(tag::BASE_NAMES, Value::StringArray(vec!["a".to_owned()]));
        let mut bytes = builder.build(tag::HEADER_IMMUTABLE);
        // The second index entry (BASE_NAMES) claims four billion strings.
        let count_at = 16 + 16 + 12;
        bytes[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let header = Header::read(&mut &bytes[..], "header", 100, 1 << 20)?;
        let message = header.string_array(tag::BASE_NAMES).expect_err("lying count").to_string();
        assert!(message.contains("more strings than bytes"), "{message}");
        // A header claiming a huge store is refused by the limit, not read.
        let mut huge = bytes.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        let message = Header::read(&mut &huge[..], "header", 100, 1 << 20).expect_err("limit").to_string();
        assert!(message.contains("limit"), "{message}");
        Ok(())
    }
}
