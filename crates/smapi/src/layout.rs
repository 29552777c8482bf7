//! Declarative output layouts and the one interpreter that decodes them.
//!
//! Each function describes its output as a static [`Layout`] (a list of [`Field`]s, nested for arrays of
//! structures), the way zthin's parser tables do; [`decode`] walks any layout over the output bytes and returns
//! a [`Record`] of named [`Value`]s, which the function then maps onto its typed output. No function parses
//! bytes by hand.
//!
//! The interpreter never trusts a length from the wire: a length is checked against the bytes present before
//! anything is taken, lists grow one decoded element at a time (never pre-sized from a count), and every error
//! names the field (with its path through nested arrays, such as `vswitches[2].authorized_users`) and the offset
//! in the output data.

use crate::error::DecodeError;
use crate::text;
use crate::wire::{Cursor, Shortfall};

/// One field of a function's output.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    /// A one-byte unsigned integer.
    Int1(&'static str),
    /// A four-byte signed big-endian integer.
    Int4(&'static str),
    /// An eight-byte signed big-endian integer.
    Int8(&'static str),
    /// A string with an int4 length prefix.
    String(&'static str),
    /// A string in a fixed number of bytes.
    Fixed(&'static str, usize),
    /// Bytes to skip (a terminator or reserved space in a fixed record).
    Padding(usize),
    /// A string ended by a NUL byte, with no length.
    NulTerminated(&'static str),
    /// An int4 byte length, then NUL-terminated strings (a framed NUL-string list).
    NulList(&'static str),
    /// An int4 byte length, then strings, each with its own int4 length (a counted string array).
    StringArray(&'static str),
    /// An int4 byte length, then structures, each an int4 structure length followed by its fields.
    StructArray(&'static str, &'static [Field]),
    /// An int4 count, then that many structures, each an int4 structure length followed by its fields.
    CountedStructArray(&'static str, &'static [Field]),
    /// Records of the given fields back to back, with no lengths, until the enclosing data ends.
    RecordsToEnd(&'static str, &'static [Field]),
    /// An int4 byte length, then one NUL-terminated line of blank-separated words, named in order.
    Words(&'static str, Words),
    /// An int4 byte length, then NUL-terminated lines, each a record of blank-separated words named in order.
    WordLines(&'static str, Words),
}

/// How a line of blank-separated words maps to names: the first words get `names` in order (a missing word is an
/// empty string, for older servers that send fewer), and words beyond them go to the list `rest`, if named.
#[derive(Debug, Clone, Copy)]
pub struct Words {
    pub names: &'static [&'static str],
    pub rest: Option<&'static str>,
}

/// A function's whole output.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub fields: &'static [Field],
    /// When true, an empty output is valid and decodes to an empty record: the server sends output only in
    /// some cases (for example the failure array of `Image_Activate`, only for a name list).
    pub optional: bool,
}

impl Layout {
    /// An output with no data at all.
    pub const NONE: Layout = Layout { fields: &[], optional: true };
}

/// A decoded field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int1(u8),
    Int4(i32),
    Int8(i64),
    Text(String),
    Texts(Vec<String>),
    Record(Record),
    Records(Vec<Record>),
}

/// Named values in layout order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    fields: Vec<(&'static str, Value)>,
}

impl Record {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(field, _)| *field == name).map(|(_, value)| value)
    }

    /// Removes a field, leaving the rest; `None` when there is none (an optional output that was empty).
    pub fn take(&mut self, name: &'static str) -> Option<Value> {
        let index = self.fields.iter().position(|(field, _)| *field == name)?;
        Some(self.fields.remove(index).1)
    }

    pub fn int1(&mut self, name: &'static str) -> Result<u8, DecodeError> {
        match self.take(name) {
            Some(Value::Int1(value)) => Ok(value),
            _ => Err(DecodeError::LayoutMismatch { field: name }),
        }
    }

    pub fn int4(&mut self, name: &'static str) -> Result<i32, DecodeError> {
        self.optional_int4(name)?.ok_or(DecodeError::LayoutMismatch { field: name })
    }

    /// An int4 that an optional output may lack.
    pub fn optional_int4(&mut self, name: &'static str) -> Result<Option<i32>, DecodeError> {
        match self.take(name) {
            Some(Value::Int4(value)) => Ok(Some(value)),
            None => Ok(None),
            Some(_) => Err(DecodeError::LayoutMismatch { field: name }),
        }
    }

    pub fn int8(&mut self, name: &'static str) -> Result<i64, DecodeError> {
        match self.take(name) {
            Some(Value::Int8(value)) => Ok(value),
            _ => Err(DecodeError::LayoutMismatch { field: name }),
        }
    }

    pub fn text(&mut self, name: &'static str) -> Result<String, DecodeError> {
        match self.take(name) {
            Some(Value::Text(value)) => Ok(value),
            _ => Err(DecodeError::LayoutMismatch { field: name }),
        }
    }

    /// A string list; an absent one (from an empty optional output) is empty.
    pub fn texts(&mut self, name: &'static str) -> Result<Vec<String>, DecodeError> {
        match self.take(name) {
            Some(Value::Texts(values)) => Ok(values),
            None => Ok(Vec::new()),
            Some(_) => Err(DecodeError::LayoutMismatch { field: name }),
        }
    }

    pub fn record(&mut self, name: &'static str) -> Result<Record, DecodeError> {
        match self.take(name) {
            Some(Value::Record(record)) => Ok(record),
            _ => Err(DecodeError::LayoutMismatch { field: name }),
        }
    }

    /// A list of structures; an absent one (from an empty optional output) is empty.
    pub fn records(&mut self, name: &'static str) -> Result<Vec<Record>, DecodeError> {
        match self.take(name) {
            Some(Value::Records(values)) => Ok(values),
            None => Ok(Vec::new()),
            Some(_) => Err(DecodeError::LayoutMismatch { field: name }),
        }
    }

    fn push(&mut self, name: &'static str, value: Value) {
        self.fields.push((name, value));
    }
}

/// Decodes `output` with `layout`. Bytes after the last field are ignored (newer z/VM levels append fields).
pub fn decode(layout: &Layout, output: &[u8]) -> Result<Record, DecodeError> {
    if output.is_empty() && layout.optional {
        return Ok(Record::default());
    }
    let mut cursor = Cursor::new(output);
    let mut path = Path::default();
    decode_fields(layout.fields, &mut cursor, &mut path)
}

/// Splits the NUL-terminated strings of `bytes` (the last terminator may be missing); used for framed lists and
/// for diagnostic text.
pub fn split_nul_strings(bytes: &[u8]) -> Vec<String> {
    let mut strings: Vec<String> = bytes.split(|&byte| byte == 0).map(text::decode).collect();
    // A final terminator leaves one empty piece after it, which is not an entry.
    if bytes.last() == Some(&0) || bytes.is_empty() {
        strings.pop();
    }
    strings
}

/// Where the interpreter is, for error messages: field names and array indexes from the top.
#[derive(Debug, Default)]
struct Path {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy)]
enum Segment {
    Name(&'static str),
    Index(usize),
}

impl Path {
    fn render(&self, last: &str) -> String {
        let mut rendered = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Name(name) => {
                    if !rendered.is_empty() {
                        rendered.push('.');
                    }
                    rendered.push_str(name);
                }
                Segment::Index(index) => rendered.push_str(&format!("[{index}]")),
            }
        }
        if !last.is_empty() {
            if !rendered.is_empty() {
                rendered.push('.');
            }
            rendered.push_str(last);
        }
        rendered
    }

    fn error(&self, field: &str, shortfall: Shortfall) -> DecodeError {
        let field = self.render(field);
        match shortfall {
            Shortfall::Truncated { offset, needed, available } => {
                DecodeError::Truncated { field, offset, needed, available }
            }
            Shortfall::NegativeLength { offset, length } => DecodeError::NegativeLength { field, offset, length },
            Shortfall::Unterminated { offset } => DecodeError::Unterminated { field, offset },
        }
    }
}

fn decode_fields(fields: &[Field], cursor: &mut Cursor<'_>, path: &mut Path) -> Result<Record, DecodeError> {
    let mut record = Record::default();
    for field in fields {
        decode_field(field, cursor, path, &mut record)?;
    }
    Ok(record)
}

fn decode_field(
    field: &Field,
    cursor: &mut Cursor<'_>,
    path: &mut Path,
    record: &mut Record,
) -> Result<(), DecodeError> {
    match *field {
        Field::Int1(name) => {
            let value = cursor.int1().map_err(|shortfall| path.error(name, shortfall))?;
            record.push(name, Value::Int1(value));
        }
        Field::Int4(name) => {
            let value = cursor.int4().map_err(|shortfall| path.error(name, shortfall))?;
            record.push(name, Value::Int4(value));
        }
        Field::Int8(name) => {
            let value = cursor.int8().map_err(|shortfall| path.error(name, shortfall))?;
            record.push(name, Value::Int8(value));
        }
        Field::String(name) => {
            let length = cursor.length().map_err(|shortfall| path.error(name, shortfall))?;
            let bytes = cursor.take(length).map_err(|shortfall| path.error(name, shortfall))?;
            record.push(name, Value::Text(text::decode(bytes)));
        }
        Field::Fixed(name, width) => {
            let bytes = cursor.take(width).map_err(|shortfall| path.error(name, shortfall))?;
            record.push(name, Value::Text(text::decode(bytes)));
        }
        Field::Padding(width) => {
            cursor.take(width).map_err(|shortfall| path.error("padding", shortfall))?;
        }
        Field::NulTerminated(name) => {
            let bytes = cursor.nul_terminated().map_err(|shortfall| path.error(name, shortfall))?;
            record.push(name, Value::Text(text::decode(bytes)));
        }
        Field::NulList(name) => {
            let mut section = framed_section(cursor, path, name)?;
            record.push(name, Value::Texts(split_nul_strings(section.rest())));
        }
        Field::StringArray(name) => {
            let mut section = framed_section(cursor, path, name)?;
            let mut strings = Vec::new();
            while !section.is_empty() {
                let length =
                    section.length().map_err(|shortfall| indexed_error(path, name, strings.len(), shortfall))?;
                let bytes =
                    section.take(length).map_err(|shortfall| indexed_error(path, name, strings.len(), shortfall))?;
                strings.push(text::decode(bytes));
            }
            record.push(name, Value::Texts(strings));
        }
        Field::StructArray(name, element) => {
            let mut section = framed_section(cursor, path, name)?;
            let mut structures = Vec::new();
            while !section.is_empty() {
                structures.push(decode_structure(&mut section, path, name, structures.len(), element)?);
            }
            record.push(name, Value::Records(structures));
        }
        Field::CountedStructArray(name, element) => {
            let offset = cursor.offset();
            let count = cursor.int4().map_err(|shortfall| path.error(name, shortfall))?;
            let count = usize::try_from(count)
                .map_err(|_| path.error(name, Shortfall::NegativeLength { offset, length: count }))?;
            let mut structures = Vec::new();
            for index in 0..count {
                // Each structure takes at least its 4-byte length: a count beyond the data fails here, before
                // any further work, instead of looping over a hostile count.
                structures.push(decode_structure(cursor, path, name, index, element)?);
            }
            record.push(name, Value::Records(structures));
        }
        Field::RecordsToEnd(name, element) => {
            let mut records = Vec::new();
            while !cursor.is_empty() {
                let start = cursor.offset();
                path.segments.push(Segment::Name(name));
                path.segments.push(Segment::Index(records.len()));
                let decoded = decode_fields(element, cursor, path);
                path.segments.truncate(path.segments.len() - 2);
                records.push(decoded?);
                if cursor.offset() == start {
                    // A record that takes no bytes would repeat forever; layouts never describe one.
                    return Err(DecodeError::Invalid {
                        field: path.render(name),
                        offset: start,
                        reason: "the record layout consumes no bytes".into(),
                    });
                }
            }
            record.push(name, Value::Records(records));
        }
        Field::Words(name, words) => {
            let mut section = framed_section(cursor, path, name)?;
            let line = split_nul_strings(section.rest()).into_iter().next().unwrap_or_default();
            record.push(name, Value::Record(words_record(&line, words)));
        }
        Field::WordLines(name, words) => {
            let mut section = framed_section(cursor, path, name)?;
            let lines = split_nul_strings(section.rest());
            let records = lines.iter().map(|line| words_record(line, words)).collect();
            record.push(name, Value::Records(records));
        }
    }
    Ok(())
}

/// An int4 byte length and the section of that many bytes after it.
fn framed_section<'a>(cursor: &mut Cursor<'a>, path: &Path, name: &'static str) -> Result<Cursor<'a>, DecodeError> {
    let length = cursor.length().map_err(|shortfall| path.error(name, shortfall))?;
    cursor.section(length).map_err(|shortfall| path.error(name, shortfall))
}

/// One structure of an array: an int4 structure length, then the element's fields within that many bytes
/// (bytes the element does not describe are skipped, for newer levels that append fields).
fn decode_structure(
    cursor: &mut Cursor<'_>,
    path: &mut Path,
    name: &'static str,
    index: usize,
    element: &[Field],
) -> Result<Record, DecodeError> {
    let length = cursor.length().map_err(|shortfall| indexed_error(path, name, index, shortfall))?;
    let mut structure = cursor.section(length).map_err(|shortfall| indexed_error(path, name, index, shortfall))?;
    path.segments.push(Segment::Name(name));
    path.segments.push(Segment::Index(index));
    let decoded = decode_fields(element, &mut structure, path);
    path.segments.truncate(path.segments.len() - 2);
    decoded
}

fn indexed_error(path: &mut Path, name: &'static str, index: usize, shortfall: Shortfall) -> DecodeError {
    path.segments.push(Segment::Name(name));
    path.segments.push(Segment::Index(index));
    let error = path.error("", shortfall);
    path.segments.truncate(path.segments.len() - 2);
    error
}

fn words_record(line: &str, words: Words) -> Record {
    let mut split = line.split_whitespace();
    let mut record = Record::default();
    for name in words.names {
        record.push(name, Value::Text(split.next().unwrap_or_default().to_owned()));
    }
    if let Some(rest) = words.rest {
        record.push(rest, Value::Texts(split.map(str::to_owned).collect()));
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILURES: Layout = Layout {
        fields: &[
            Field::Int4("activated"),
            Field::StructArray("failing", &[Field::String("image_name"), Field::Int4("return_code")]),
        ],
        optional: true,
    };

    #[test]
    fn nested_structures_decode() {
        let bytes = b"\x00\x00\x00\x01\x00\x00\x00\x0f\x00\x00\x00\x0b\x00\x00\x00\x03ABC\x00\x00\x00\xc8";
        let mut record = decode(&FAILURES, bytes).unwrap();
        assert_eq!(record.int4("activated").unwrap(), 1);
        let mut failing = record.records("failing").unwrap();
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].text("image_name").unwrap(), "ABC");
        assert_eq!(failing[0].int4("return_code").unwrap(), 200);
    }

    #[test]
    fn errors_name_the_nested_field_and_offset() {
        // The image name claims 9 bytes inside a structure of 11.
        let bytes = b"\x00\x00\x00\x01\x00\x00\x00\x0f\x00\x00\x00\x0b\x00\x00\x00\x09ABC\x00\x00\x00\xc8";
        let error = decode(&FAILURES, bytes).unwrap_err();
        assert_eq!(
            error,
            DecodeError::Truncated { field: "failing[0].image_name".into(), offset: 16, needed: 9, available: 7 }
        );
    }

    #[test]
    fn empty_optional_output_is_an_empty_record() {
        let mut record = decode(&FAILURES, b"").unwrap();
        assert_eq!(record.optional_int4("activated").unwrap(), None);
        assert!(record.records("failing").unwrap().is_empty());
    }

    #[test]
    fn hostile_counts_stop_at_the_data() {
        const COUNTED: Layout =
            Layout { fields: &[Field::CountedStructArray("switches", &[Field::Int1("x")])], optional: false };
        let error = decode(&COUNTED, b"\x7f\xff\xff\xff\x00\x00\x00\x01\x05").unwrap_err();
        assert_eq!(error, DecodeError::Truncated { field: "switches[1]".into(), offset: 9, needed: 4, available: 0 });
    }

    #[test]
    fn words_and_fixed_records() {
        const LINES: Layout = Layout {
            fields: &[Field::WordLines("users", Words { names: &["port", "user"], rest: Some("vlans") })],
            optional: false,
        };
        let mut record = decode(&LINES, b"\x00\x00\x00\x1a 0001 GT@PING 10 20 \x000002\x00").unwrap();
        let mut users = record.records("users").unwrap();
        assert_eq!(users[0].text("user").unwrap(), "GT@PING");
        assert_eq!(users[0].texts("vlans").unwrap(), ["10", "20"]);
        assert_eq!(users[1].text("user").unwrap(), "");

        const FIXED: Layout = Layout {
            fields: &[Field::RecordsToEnd("disks", &[Field::Fixed("vdev", 4), Field::Int1("mode"), Field::Padding(1)])],
            optional: true,
        };
        let mut record = decode(&FIXED, b"0191\x01\x000192\x02\x00").unwrap();
        let mut disks = record.records("disks").unwrap();
        assert_eq!(disks.len(), 2);
        assert_eq!(disks[1].text("vdev").unwrap(), "0192");
        assert!(decode(&FIXED, b"0191\x01").is_err());
    }

    #[test]
    fn nul_lists_drop_only_the_final_terminator() {
        assert_eq!(split_nul_strings(b"A=1\0\0B=2\0"), ["A=1", "", "B=2"]);
        assert_eq!(split_nul_strings(b"A=1\0B"), ["A=1", "B"]);
        assert!(split_nul_strings(b"").is_empty());
    }
}
