//! The server side of the wire format, for responders and simulators: [`ParameterReader`] reads a request's
//! function-specific parameters (after [`crate::RequestFrame::parse`] has split off the common header), and
//! [`OutputWriter`] builds a reply's output data (counted string arrays, structure arrays, framed and unframed
//! NUL-terminated strings), which [`crate::Reply::encode`] then frames.
//!
//! Like the client side, the reader never trusts a length: each one is checked against the bytes present
//! before anything is taken, and a failure names the 1-based number of the parameter being read, which is what
//! a SMAPI syntax error (return code 24, reason `pp*100 + rr`) reports.

use crate::layout::split_nul_strings;
use crate::text;
use crate::wire::{Cursor, Shortfall};

/// Why a request's parameters could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    /// The parameter (or its length prefix) runs past the end of the request.
    #[error("parameter {parameter} needs {needed} bytes but only {available} remain")]
    Truncated { parameter: usize, needed: usize, available: usize },
    /// A length prefix is negative.
    #[error("parameter {parameter} has a negative length {length}")]
    NegativeLength { parameter: usize, length: i32 },
    /// A string is longer than the function allows.
    #[error("parameter {parameter} is {length} bytes long; at most {max} are allowed")]
    TooLong { parameter: usize, length: usize, max: usize },
    /// An unframed `key=value` entry has no `=`.
    #[error("parameter {parameter}: {entry:?} is not a key=value pair")]
    NotAPair { parameter: usize, entry: String },
}

impl ParameterError {
    /// The 1-based number of the parameter that failed.
    pub fn parameter(&self) -> usize {
        match self {
            ParameterError::Truncated { parameter, .. }
            | ParameterError::NegativeLength { parameter, .. }
            | ParameterError::TooLong { parameter, .. }
            | ParameterError::NotAPair { parameter, .. } => *parameter,
        }
    }
}

/// Reads a request's function-specific parameters in their documented order.
#[derive(Debug, Clone)]
pub struct ParameterReader<'a> {
    cursor: Cursor<'a>,
    parameter: usize,
}

impl<'a> ParameterReader<'a> {
    pub fn new(parameters: &'a [u8]) -> Self {
        ParameterReader { cursor: Cursor::new(parameters), parameter: 0 }
    }

    /// The number of parameters read so far (the current one, once a read started).
    pub fn parameter_number(&self) -> usize {
        self.parameter
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.cursor.is_empty()
    }

    pub fn remaining(&self) -> usize {
        self.cursor.remaining()
    }

    fn next(&mut self) -> usize {
        self.parameter += 1;
        self.parameter
    }

    fn error(parameter: usize, shortfall: Shortfall) -> ParameterError {
        match shortfall {
            Shortfall::Truncated { needed, available, .. } => {
                ParameterError::Truncated { parameter, needed, available }
            }
            Shortfall::NegativeLength { length, .. } => ParameterError::NegativeLength { parameter, length },
            // A NUL-terminated read is not used by the reader; an unterminated one is a truncation.
            Shortfall::Unterminated { .. } => ParameterError::Truncated { parameter, needed: 1, available: 0 },
        }
    }

    pub fn int1(&mut self) -> Result<u8, ParameterError> {
        let parameter = self.next();
        self.cursor.int1().map_err(|shortfall| Self::error(parameter, shortfall))
    }

    pub fn int4(&mut self) -> Result<i32, ParameterError> {
        let parameter = self.next();
        self.cursor.int4().map_err(|shortfall| Self::error(parameter, shortfall))
    }

    /// A string with an int4 length prefix, at most `max` bytes long (length 0 is "not specified").
    pub fn string(&mut self, max: usize) -> Result<String, ParameterError> {
        let parameter = self.next();
        let length = self.cursor.length().map_err(|shortfall| Self::error(parameter, shortfall))?;
        if length > max {
            return Err(ParameterError::TooLong { parameter, length, max });
        }
        let bytes = self.cursor.take(length).map_err(|shortfall| Self::error(parameter, shortfall))?;
        Ok(text::decode(bytes))
    }

    /// A record array: an int4 total length, then each record with its own int4 length, each at most
    /// `max_record` bytes.
    pub fn record_array(&mut self, max_record: usize) -> Result<Vec<String>, ParameterError> {
        let parameter = self.next();
        let length = self.cursor.length().map_err(|shortfall| Self::error(parameter, shortfall))?;
        let mut section = self.cursor.section(length).map_err(|shortfall| Self::error(parameter, shortfall))?;
        let mut records = Vec::new();
        while !section.is_empty() {
            let record_length = section.length().map_err(|shortfall| Self::error(parameter, shortfall))?;
            if record_length > max_record {
                return Err(ParameterError::TooLong { parameter, length: record_length, max: max_record });
            }
            let bytes = section.take(record_length).map_err(|shortfall| Self::error(parameter, shortfall))?;
            records.push(text::decode(bytes));
        }
        Ok(records)
    }

    /// A framed list of NUL-terminated entries (an int4 total length first); a last entry without its NUL is
    /// still an entry.
    pub fn framed_list(&mut self) -> Result<Vec<String>, ParameterError> {
        let parameter = self.next();
        let length = self.cursor.length().map_err(|shortfall| Self::error(parameter, shortfall))?;
        let bytes = self.cursor.take(length).map_err(|shortfall| Self::error(parameter, shortfall))?;
        Ok(split_nul_strings(bytes))
    }

    /// A framed list of `key=value` entries (the `_Extended_DM` functions).
    pub fn framed_pairs(&mut self) -> Result<Vec<(String, String)>, ParameterError> {
        let entries = self.framed_list()?;
        pairs(self.parameter, entries)
    }

    /// The rest of the request as unframed `key=value\0` pairs (the `_Extended` functions).
    pub fn unframed_pairs(&mut self) -> Result<Vec<(String, String)>, ParameterError> {
        let parameter = self.next();
        let entries = split_nul_strings(self.cursor.rest());
        pairs(parameter, entries)
    }
}

fn pairs(parameter: usize, entries: Vec<String>) -> Result<Vec<(String, String)>, ParameterError> {
    entries
        .into_iter()
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.split_once('=') {
            Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
            None => Err(ParameterError::NotAPair { parameter, entry }),
        })
        .collect()
}

/// Builds a reply's output data. Text that ISO-8859-15 cannot carry is written as `?`, so building output
/// never fails.
#[derive(Debug, Default, Clone)]
pub struct OutputWriter {
    bytes: Vec<u8>,
}

impl OutputWriter {
    pub fn new() -> Self {
        OutputWriter::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn int1(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }

    pub fn int4(&mut self, value: i32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn int8(&mut self, value: i64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// Text with no length and no terminator.
    pub fn text(&mut self, value: &str) -> &mut Self {
        push_lossy(&mut self.bytes, value);
        self
    }

    /// A string with an int4 length prefix.
    pub fn string(&mut self, value: &str) -> &mut Self {
        let mut encoded = Vec::with_capacity(value.len());
        push_lossy(&mut encoded, value);
        self.int4(length_of(&encoded));
        self.bytes.extend_from_slice(&encoded);
        self
    }

    /// A string followed by a NUL, with no length.
    pub fn nul_terminated(&mut self, value: &str) -> &mut Self {
        push_lossy(&mut self.bytes, value);
        self.bytes.push(0);
        self
    }

    /// A counted string array: the int4 byte length of the array, then each string with its int4 length.
    pub fn string_array<S: AsRef<str>>(&mut self, strings: &[S]) -> &mut Self {
        self.framed(|array| {
            for string in strings {
                array.string(string.as_ref());
            }
        })
    }

    /// A framed NUL-string list: the int4 byte length, then each string followed by a NUL.
    pub fn nul_list<S: AsRef<str>>(&mut self, strings: &[S]) -> &mut Self {
        self.framed(|list| {
            for string in strings {
                list.nul_terminated(string.as_ref());
            }
        })
    }

    /// An int4 byte length, then whatever `build` writes (one structure of an array, or a whole array).
    pub fn framed(&mut self, build: impl FnOnce(&mut OutputWriter)) -> &mut Self {
        let mut inner = OutputWriter::new();
        build(&mut inner);
        self.int4(length_of(&inner.bytes));
        self.bytes.extend_from_slice(&inner.bytes);
        self
    }
}

fn push_lossy(bytes: &mut Vec<u8>, value: &str) {
    for character in value.chars() {
        let mut encoded = [0u8; 4];
        let single = character.encode_utf8(&mut encoded);
        let before = bytes.len();
        if text::encode_into(single, bytes).is_err() {
            bytes.truncate(before);
            bytes.push(b'?');
        }
    }
}

/// Output data is bounded by the reply frame's int4 length; longer data cannot be sent at all.
fn length_of(bytes: &[u8]) -> i32 {
    i32::try_from(bytes.len()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{KeywordPairs, ParameterWriter};

    #[test]
    fn reads_what_the_client_writes() {
        let mut writer = ParameterWriter::new();
        writer.string("vdev", "0100", crate::wire::Limits::range(1, 4)).unwrap();
        writer.int1(1);
        writer.int4(10);
        writer.record_array("records", &["USER A", "MDISK 0100"], 72).unwrap();
        writer.framed_list("keywords", &["MDISK", "SHARE=RELATIVE=100"]).unwrap();
        let mut pairs = KeywordPairs::new();
        pairs.push("switch_name", "VSW1").push("persist", "YES");
        writer.unframed_pairs("pairs", &pairs).unwrap();
        let bytes = writer.into_bytes();

        let mut reader = ParameterReader::new(&bytes);
        assert_eq!(reader.string(4).unwrap(), "0100");
        assert_eq!(reader.int1().unwrap(), 1);
        assert_eq!(reader.int4().unwrap(), 10);
        assert_eq!(reader.record_array(72).unwrap(), ["USER A", "MDISK 0100"]);
        assert_eq!(reader.framed_list().unwrap(), ["MDISK", "SHARE=RELATIVE=100"]);
        assert_eq!(
            reader.unframed_pairs().unwrap(),
            [("switch_name".to_owned(), "VSW1".to_owned()), ("persist".to_owned(), "YES".to_owned())]
        );
        assert!(reader.is_empty());
    }

    #[test]
    fn failures_name_the_parameter() {
        let mut reader = ParameterReader::new(b"\x00\x00\x00\x02AB\x00\x00\x00\x09ABC");
        assert_eq!(reader.string(8).unwrap(), "AB");
        assert_eq!(reader.string(8), Err(ParameterError::TooLong { parameter: 2, length: 9, max: 8 }));
        let mut reader = ParameterReader::new(b"\x00\x00\x00\x05ABC");
        assert_eq!(reader.string(8), Err(ParameterError::Truncated { parameter: 1, needed: 5, available: 3 }));
        let mut reader = ParameterReader::new(b"\xff\xff\xff\xff");
        assert_eq!(reader.record_array(72), Err(ParameterError::NegativeLength { parameter: 1, length: -1 }));
        let mut reader = ParameterReader::new(b"novalue\0");
        assert!(matches!(reader.unframed_pairs(), Err(ParameterError::NotAPair { parameter: 1, .. })));
        assert_eq!(ParameterReader::new(b"").int1().unwrap_err().parameter(), 1);
    }

    #[test]
    fn output_layouts() {
        let mut writer = OutputWriter::new();
        writer.string_array(&["GT@PONG"]);
        assert_eq!(writer.into_bytes(), b"\x00\x00\x00\x0b\x00\x00\x00\x07GT@PONG");
        let mut writer = OutputWriter::new();
        writer.nul_list(&["A=1", "B="]);
        assert_eq!(writer.into_bytes(), b"\x00\x00\x00\x07A=1\x00B=\x00");
        let mut writer = OutputWriter::new();
        writer.int4(1).framed(|structure| {
            structure.string("X").int1(2);
        });
        assert_eq!(writer.into_bytes(), b"\x00\x00\x00\x01\x00\x00\x00\x06\x00\x00\x00\x01X\x02");
        let mut writer = OutputWriter::new();
        writer.nul_terminated("caf\u{e9}\u{4e2d}");
        assert_eq!(writer.into_bytes(), b"caf\xe9?\x00");
    }
}
