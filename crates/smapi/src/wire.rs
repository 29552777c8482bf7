//! The parameter kinds of the SMAPI wire format, in both directions.
//!
//! [`ParameterWriter`] appends a request's function-specific parameters: big-endian int1/int4/int8, strings
//! with an int4 length prefix (length 0 means "not specified, use the default"), fixed-width strings, record
//! arrays (an int4 total length, then each record with its own int4 length), framed keyword lists (an int4
//! total length, then `KEYWORD=value\0` entries) and unframed `key=value\0` pairs (no length at all: the frame's
//! input length bounds them).
//!
//! `Cursor` (crate-internal) reads such data from a reply without ever trusting a length: every length is checked against the
//! bytes actually present before anything is taken or allocated.

use crate::error::EncodeError;
use crate::text;

/// The largest length an int4 length prefix can announce.
const MAX_INT4_LENGTH: usize = i32::MAX as usize;

/// The accepted length of a string parameter, in bytes (one byte per character on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min: usize,
    pub max: usize,
}

impl Limits {
    pub const fn range(min: usize, max: usize) -> Self {
        Limits { min, max }
    }

    /// Any length an int4 prefix can express, including 0 ("use the default").
    pub const ANY: Limits = Limits { min: 0, max: MAX_INT4_LENGTH };
}

/// Builds the function-specific parameters of one request.
#[derive(Debug, Default)]
pub struct ParameterWriter {
    bytes: Vec<u8>,
}

impl ParameterWriter {
    pub fn new() -> Self {
        ParameterWriter::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// A one-byte unsigned integer.
    pub fn int1(&mut self, value: u8) {
        self.bytes.push(value);
    }

    /// A four-byte signed big-endian integer (`-1` is SMAPI's "unspecified" for several fields).
    pub fn int4(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    /// A four-byte unsigned big-endian integer (operation and request ids).
    pub fn uint4(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    /// An eight-byte signed big-endian integer.
    pub fn int8(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    /// A string with an int4 length prefix and no terminator.
    pub fn string(&mut self, field: &'static str, value: &str, limits: Limits) -> Result<(), EncodeError> {
        let length = checked_length(field, value, limits)?;
        self.bytes.extend_from_slice(&int4_length(field, length)?.to_be_bytes());
        push_text(&mut self.bytes, field, value)
    }

    /// A string in a fixed-width field, padded on the right with blanks; longer text is refused.
    pub fn fixed(&mut self, field: &'static str, value: &str, width: usize) -> Result<(), EncodeError> {
        let length = checked_length(field, value, Limits::range(0, width))?;
        push_text(&mut self.bytes, field, value)?;
        self.bytes.resize(self.bytes.len() + (width - length), b' ');
        Ok(())
    }

    /// A record array: the int4 byte length of the whole array, then each record as an int4 length and its
    /// bytes. Each record must be at most `max_record` bytes long (72 for directory statements).
    pub fn record_array<S: AsRef<str>>(
        &mut self,
        field: &'static str,
        records: &[S],
        max_record: usize,
    ) -> Result<(), EncodeError> {
        let mut array = Vec::new();
        for (index, record) in records.iter().enumerate() {
            let record = record.as_ref();
            let length =
                text::encoded_len(record).map_err(|character| EncodeError::Unencodable { field, character })?;
            if length > max_record {
                return Err(EncodeError::Invalid {
                    field,
                    reason: format!("record {index} is {length} bytes long; at most {max_record} are allowed"),
                });
            }
            array.extend_from_slice(&int4_length(field, length)?.to_be_bytes());
            push_text(&mut array, field, record)?;
        }
        self.bytes.extend_from_slice(&int4_length(field, array.len())?.to_be_bytes());
        self.bytes.extend_from_slice(&array);
        Ok(())
    }

    /// A framed list of NUL-terminated entries (`KEYWORD=value\0...`), preceded by its int4 byte length, NULs
    /// included. An entry must not contain a NUL itself.
    pub fn framed_list<S: AsRef<str>>(&mut self, field: &'static str, entries: &[S]) -> Result<(), EncodeError> {
        let mut list = Vec::new();
        for entry in entries {
            push_nul_terminated(&mut list, field, entry.as_ref())?;
        }
        self.bytes.extend_from_slice(&int4_length(field, list.len())?.to_be_bytes());
        self.bytes.extend_from_slice(&list);
        Ok(())
    }

    /// `key=value\0` pairs preceded by their int4 byte length (the `_Extended_DM` functions).
    pub fn framed_pairs(&mut self, field: &'static str, pairs: &KeywordPairs) -> Result<(), EncodeError> {
        let list = pairs.encode(field)?;
        self.bytes.extend_from_slice(&int4_length(field, list.len())?.to_be_bytes());
        self.bytes.extend_from_slice(&list);
        Ok(())
    }

    /// `key=value\0` pairs placed directly after the target, with no count and no length (the `_Extended`
    /// functions): the frame's input length bounds them.
    pub fn unframed_pairs(&mut self, field: &'static str, pairs: &KeywordPairs) -> Result<(), EncodeError> {
        let list = pairs.encode(field)?;
        self.bytes.extend_from_slice(&list);
        Ok(())
    }
}

/// An ordered list of `key=value` pairs for the keyword-style functions. A pair with an empty value is left
/// out, which SMAPI reads as "not specified".
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeywordPairs {
    pairs: Vec<(&'static str, String)>,
}

impl KeywordPairs {
    pub fn new() -> Self {
        KeywordPairs::default()
    }

    /// Adds `key=value`, unless the value is empty.
    pub fn push(&mut self, key: &'static str, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        if !value.is_empty() {
            self.pairs.push((key, value));
        }
        self
    }

    /// Adds `key=value` when a value is given and not empty.
    pub fn push_optional<T: ToString>(&mut self, key: &'static str, value: Option<&T>) -> &mut Self {
        if let Some(value) = value {
            self.push(key, value.to_string());
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    fn encode(&self, field: &'static str) -> Result<Vec<u8>, EncodeError> {
        let mut bytes = Vec::new();
        for (key, value) in &self.pairs {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(EncodeError::BadKeyword { field, keyword: (*key).to_owned() });
            }
            push_text(&mut bytes, field, key)?;
            bytes.push(b'=');
            push_nul_terminated(&mut bytes, field, value)?;
        }
        Ok(bytes)
    }
}

fn checked_length(field: &'static str, value: &str, limits: Limits) -> Result<usize, EncodeError> {
    let length = text::encoded_len(value).map_err(|character| EncodeError::Unencodable { field, character })?;
    if length < limits.min || length > limits.max {
        return Err(EncodeError::Length { field, length, min: limits.min, max: limits.max });
    }
    Ok(length)
}

fn int4_length(field: &'static str, length: usize) -> Result<u32, EncodeError> {
    if length > MAX_INT4_LENGTH {
        return Err(EncodeError::Length { field, length, min: 0, max: MAX_INT4_LENGTH });
    }
    u32::try_from(length).map_err(|_| EncodeError::Length { field, length, min: 0, max: MAX_INT4_LENGTH })
}

fn push_text(bytes: &mut Vec<u8>, field: &'static str, value: &str) -> Result<(), EncodeError> {
    text::encode_into(value, bytes).map_err(|character| EncodeError::Unencodable { field, character })
}

fn push_nul_terminated(bytes: &mut Vec<u8>, field: &'static str, value: &str) -> Result<(), EncodeError> {
    if value.contains('\0') {
        return Err(EncodeError::ContainsNul { field });
    }
    push_text(bytes, field, value)?;
    bytes.push(0);
    Ok(())
}

/// Why a read from a [`Cursor`] failed, before the caller names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shortfall {
    Truncated { offset: usize, needed: usize, available: usize },
    NegativeLength { offset: usize, length: i32 },
    Unterminated { offset: usize },
}

/// A bounded reader over part of a reply. `base` is the offset of `bytes` within the whole output data, so
/// errors in nested structures still report where they are in the reply.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, position: 0, base: 0 }
    }

    /// The offset of the next byte within the whole output data.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.position
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn take(&mut self, count: usize) -> Result<&'a [u8], Shortfall> {
        if count > self.remaining() {
            return Err(Shortfall::Truncated { offset: self.offset(), needed: count, available: self.remaining() });
        }
        let taken = &self.bytes[self.position..self.position + count];
        self.position += count;
        Ok(taken)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], Shortfall> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    pub(crate) fn int1(&mut self) -> Result<u8, Shortfall> {
        Ok(self.take_array::<1>()?[0])
    }

    pub(crate) fn int4(&mut self) -> Result<i32, Shortfall> {
        Ok(i32::from_be_bytes(self.take_array()?))
    }

    pub(crate) fn int8(&mut self) -> Result<i64, Shortfall> {
        Ok(i64::from_be_bytes(self.take_array()?))
    }

    /// An int4 length prefix: negative lengths are refused, and the length is only a claim (the caller takes
    /// that many bytes through [`Cursor::take`] or [`Cursor::section`], which check it).
    pub(crate) fn length(&mut self) -> Result<usize, Shortfall> {
        let offset = self.offset();
        let length = self.int4()?;
        usize::try_from(length).map_err(|_| Shortfall::NegativeLength { offset, length })
    }

    /// The next `length` bytes as a cursor of their own (a framed section), with offsets kept absolute.
    pub(crate) fn section(&mut self, length: usize) -> Result<Cursor<'a>, Shortfall> {
        let base = self.offset();
        let bytes = self.take(length)?;
        Ok(Cursor { bytes, position: 0, base })
    }

    /// Bytes up to the next NUL, which is consumed but not returned.
    pub(crate) fn nul_terminated(&mut self) -> Result<&'a [u8], Shortfall> {
        let rest = &self.bytes[self.position..];
        let end = rest.iter().position(|&byte| byte == 0).ok_or(Shortfall::Unterminated { offset: self.offset() })?;
        let text = &rest[..end];
        self.position += end + 1;
        Ok(text)
    }

    /// Everything that is left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.position..];
        self.position = self.bytes.len();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_carry_an_int4_length() {
        let mut writer = ParameterWriter::new();
        writer.string("vdev", "999", Limits::range(1, 4)).unwrap();
        writer.string("label", "", Limits::range(0, 6)).unwrap();
        assert_eq!(writer.into_bytes(), b"\x00\x00\x00\x03999\x00\x00\x00\x00");
    }

    #[test]
    fn string_limits_are_enforced() {
        let mut writer = ParameterWriter::new();
        let error = writer.string("vdev", "12345", Limits::range(1, 4)).unwrap_err();
        assert_eq!(error, EncodeError::Length { field: "vdev", length: 5, min: 1, max: 4 });
        assert!(error.to_string().contains("vdev is 5 bytes long"));
    }

    #[test]
    fn fixed_fields_are_padded_with_blanks() {
        let mut writer = ParameterWriter::new();
        writer.fixed("volid", "VM01", 6).unwrap();
        assert_eq!(writer.into_bytes(), b"VM01  ");
        assert!(ParameterWriter::new().fixed("volid", "TOOLONG", 6).is_err());
    }

    #[test]
    fn record_arrays_carry_a_total_and_per_record_lengths() {
        let mut writer = ParameterWriter::new();
        writer.record_array("records", &["AB", "C"], 72).unwrap();
        assert_eq!(writer.into_bytes(), b"\x00\x00\x00\x0b\x00\x00\x00\x02AB\x00\x00\x00\x01C");
        let long = "X".repeat(73);
        assert!(ParameterWriter::new().record_array("records", &[long], 72).is_err());
    }

    #[test]
    fn keyword_lists_are_framed_or_not() {
        let mut pairs = KeywordPairs::new();
        pairs.push("switch_name", "vsw1").push("routing_value", "").push_optional("vlan_id", Some(&5u32));
        let mut framed = ParameterWriter::new();
        framed.framed_pairs("pairs", &pairs).unwrap();
        assert_eq!(framed.into_bytes(), b"\x00\x00\x00\x1bswitch_name=vsw1\x00vlan_id=5\x00");
        let mut unframed = ParameterWriter::new();
        unframed.unframed_pairs("pairs", &pairs).unwrap();
        assert_eq!(unframed.into_bytes(), b"switch_name=vsw1\x00vlan_id=5\x00");
        let mut list = ParameterWriter::new();
        list.framed_list("keywords", &["MDISK"]).unwrap();
        assert_eq!(list.into_bytes(), b"\x00\x00\x00\x06MDISK\x00");
    }

    #[test]
    fn nul_inside_a_value_is_refused() {
        let mut pairs = KeywordPairs::new();
        pairs.push("switch_name", "a\0b");
        assert_eq!(
            ParameterWriter::new().unframed_pairs("pairs", &pairs),
            Err(EncodeError::ContainsNul { field: "pairs" })
        );
        assert!(ParameterWriter::new().framed_list("keywords", &["A\0"]).is_err());
    }

    #[test]
    fn cursor_refuses_lengths_beyond_the_data() {
        let mut cursor = Cursor::new(b"\x7f\xff\xff\xffabc");
        let length = cursor.length().unwrap();
        assert_eq!(cursor.take(length), Err(Shortfall::Truncated { offset: 4, needed: length, available: 3 }));
        let mut negative = Cursor::new(b"\xff\xff\xff\xfe");
        assert_eq!(negative.length(), Err(Shortfall::NegativeLength { offset: 0, length: -2 }));
    }

    #[test]
    fn sections_keep_absolute_offsets() {
        let mut cursor = Cursor::new(b"\x00\x00\x00\x02ab\x00");
        let length = cursor.length().unwrap();
        let mut section = cursor.section(length).unwrap();
        assert_eq!(section.offset(), 4);
        assert_eq!(section.nul_terminated(), Err(Shortfall::Unterminated { offset: 4 }));
        assert_eq!(cursor.nul_terminated().unwrap(), b"");
    }
}
