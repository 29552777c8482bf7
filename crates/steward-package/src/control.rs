//! The Debian control file (deb-control(5)): one paragraph of `Field: value` lines, where a line starting with
//! a space or tab continues the previous field's value (a folded or multi-line field).

use crate::{PackageError, PackageFormat};

/// A parsed control paragraph: fields in file order, looked up without regard to case (as dpkg does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFile {
    fields: Vec<(String, String)>,
}

impl ControlFile {
    /// Parses one paragraph. A value keeps its continuation lines, joined by `\n`, each without its first
    /// whitespace character (so `Description`'s ` .` lines and indented verbatim lines stay recognizable).
    /// Fails, naming the line, on a line without a colon, a continuation line before any field, a field
    /// name with a space or control character, a field given twice, or a second paragraph.
    pub fn parse(text: &str) -> Result<Self, PackageError> {
        let malformed = |line_number: usize, message: String| {
            PackageError::malformed(PackageFormat::Deb, format!("control file, line {line_number}: {message}"))
        };
        let mut fields: Vec<(String, String)> = Vec::new();
        let mut paragraph_ended = false;
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            if line.trim().is_empty() {
                if !fields.is_empty() {
                    paragraph_ended = true;
                }
                continue;
            }
            if paragraph_ended {
                return Err(malformed(line_number, "a second paragraph (a package has exactly one)".to_owned()));
            }
            if line.starts_with([' ', '\t']) {
                let Some((_, value)) = fields.last_mut() else {
                    return Err(malformed(line_number, "a continuation line before any field".to_owned()));
                };
                value.push('\n');
                value.push_str(line[1..].trim_end());
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(malformed(line_number, format!("{line:?} is neither `Field: value` nor a continuation")));
            };
            let valid_name = !name.is_empty()
                && !name.starts_with(['#', '-'])
                && name.bytes().all(|byte| byte.is_ascii_graphic() && byte != b':');
            if !valid_name {
                return Err(malformed(line_number, format!("{name:?} is not a field name")));
            }
            if fields.iter().any(|(existing, _)| existing.eq_ignore_ascii_case(name)) {
                return Err(malformed(line_number, format!("the field {name} is given twice")));
            }
            fields.push((name.to_owned(), value.trim().to_owned()));
        }
        Ok(Self { fields })
    }

    /// The value of a field (case-insensitive name), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(field, _)| field.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The value of a field that must be present and not empty.
    pub fn require(&self, name: &'static str) -> Result<&str, PackageError> {
        match self.get(name) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(PackageError::malformed(PackageFormat::Deb, format!("the control file has no {name} field"))),
        }
    }

    /// Every field in file order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

/// Splits a `Description` value into the synopsis (first line) and the extended description, undoing the
/// control file's encoding: ` .` lines become empty lines.
pub fn split_description(value: &str) -> (String, String) {
    let mut lines = value.lines();
    let synopsis = lines.next().unwrap_or_default().trim().to_owned();
    let extended: Vec<&str> = lines.map(|line| if line.trim() == "." { "" } else { line }).collect();
    (synopsis, extended.join("\n"))
}

/// Encodes a synopsis and an extended description as a `Description` value for a control file: every
/// extended line indented by one space, empty lines written as ` .`.
pub(crate) fn encode_description(synopsis: &str, extended: &str) -> String {
    let mut value = synopsis.to_owned();
    for line in extended.lines() {
        value.push('\n');
        if line.trim().is_empty() {
            value.push_str(" .")
        } else {
            value.push(' ');
            value.push_str(line.trim_end())
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_folded_lines_and_case_insensitive_lookup() -> Result<(), PackageError> {
        let control = ControlFile::parse(
            "Package: hello\nVersion: 2.10-3\nDepends: libc6 (>= 2.34),\n libfoo\nDescription: greets\n \
             The GNU hello program.\n .\n  verbatim line\n\n\n",
        )?;
        assert_eq!(control.get("package"), Some("hello"));
        assert_eq!(control.get("VERSION"), Some("2.10-3"));
        assert_eq!(control.get("Depends"), Some("libc6 (>= 2.34),\nlibfoo"));
        assert_eq!(control.get("Missing"), None);
        let (synopsis, extended) = split_description(control.require("Description")?);
        assert_eq!(synopsis, "greets");
        assert_eq!(extended, "The GNU hello program.\n\n verbatim line");
        assert_eq!(control.fields().count(), 4);
        Ok(())
    }

    #[test]
    fn descriptions_round_trip_through_the_encoding() -> Result<(), PackageError> {
        let encoded = encode_description("A tool", "First paragraph.\n\nSecond one.");
        assert_eq!(encoded, "A tool\n First paragraph.\n .\n Second one.");
        let control = ControlFile::parse(&format!("Description: {encoded}\n"))?;
        let (synopsis, extended) = split_description(control.require("Description")?);
        assert_eq!((synopsis.as_str(), extended.as_str()), ("A tool", "First paragraph.\n\nSecond one."));
        Ok(())
    }

    #[test]
    fn bad_control_files_are_refused_naming_the_line() {
        for (input, expected) in [
            (" continued\nPackage: a\n", "line 1: a continuation line before any field"),
            ("Package: a\nnot a field\n", "line 2: \"not a field\" is neither"),
            ("Package: a\npackage: b\n", "line 2: the field package is given twice"),
            ("Package: a\n\nPackage: b\n", "line 3: a second paragraph"),
            ("Bad Name: x\n", "line 1: \"Bad Name\" is not a field name"),
            (": x\n", "is not a field name"),
            ("#comment: x\n", "is not a field name"),
        ] {
            let error = ControlFile::parse(input).expect_err(input);
            let message = error.to_string();
            assert!(message.contains(expected), "{input:?}: {message}");
        }
    }

    #[test]
    fn a_required_field_that_is_missing_or_empty_is_named() {
        let control = ControlFile::parse("Package: a\nVersion:\n").expect("valid control file");
        let message = control.require("Version").expect_err("empty").to_string();
        assert!(message.contains("no Version field"), "{message}");
        assert!(control.require("Architecture").is_err());
    }
}
