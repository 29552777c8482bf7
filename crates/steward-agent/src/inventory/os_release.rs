//! The operating system's identity from `os-release(5)`.
//!
//! `/etc/os-release` is read, falling back to `/usr/lib/os-release` when it is missing (as the manual page asks).
//! The file is a list of `KEY=value` assignments in a subset of shell syntax: values may be unquoted, or enclosed
//! in double or single quotes, and several quoted and unquoted parts may follow each other. Outside quotes a
//! backslash escapes any character; inside double quotes it escapes only `$`, `"`, `\` and `` ` `` (before any
//! other character it stays literal); inside single quotes nothing is special. Blank lines and `#` comments are
//! ignored, and so are lines that are not assignments. Only the fields [`OsRelease`] carries are kept.

use std::path::Path;

use steward_protocol::OsRelease;

use super::{read_string, rooted};

/// Reads the os-release file under `root`; all fields empty when neither file is readable.
pub(super) fn read(root: &Path) -> OsRelease {
    let text =
        read_string(&rooted(root, "etc/os-release")).or_else(|| read_string(&rooted(root, "usr/lib/os-release")));
    text.map(|text| parse(&text)).unwrap_or_default()
}

/// Parses the contents of an os-release file.
pub(super) fn parse(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else { continue };
        let field = match key.trim_end() {
            "ID" => &mut os.id,
            "ID_LIKE" => &mut os.id_like,
            "NAME" => &mut os.name,
            "VERSION_ID" => &mut os.version_id,
            "VERSION" => &mut os.version,
            "PRETTY_NAME" => &mut os.pretty_name,
            _ => continue,
        };
        *field = unquote(raw.trim_start());
    }
    os
}

/// Removes the shell quoting from a value as os-release(5) describes it.
fn unquote(raw: &str) -> String {
    // The common case, a plain value without quotes or escapes, needs no work.
    if !raw.contains(['"', '\'', '\\']) {
        return raw.trim_end().to_owned();
    }
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    // Length of `value` up to the end of the last quoted part or escaped character: unquoted trailing whitespace
    // after it is dropped, quoted whitespace is kept.
    let mut protected = 0;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(escaped @ ('$' | '"' | '\\' | '`')) => value.push(escaped),
                            Some(other) => {
                                value.push('\\');
                                value.push(other);
                            }
                            None => value.push('\\'),
                        },
                        other => value.push(other),
                    }
                }
                protected = value.len();
            }
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    value.push(c);
                }
                protected = value.len();
            }
            '\\' => {
                if let Some(escaped) = chars.next() {
                    value.push(escaped);
                }
                protected = value.len();
            }
            other => value.push(other),
        }
    }
    let end = protected.max(value.trim_end().len());
    value.truncate(end);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian() {
        let os = parse(concat!(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
            "NAME=\"Debian GNU/Linux\"\n",
            "VERSION_ID=\"12\"\n",
            "VERSION=\"12 (bookworm)\"\n",
            "VERSION_CODENAME=bookworm\n",
            "ID=debian\n",
            "HOME_URL=\"https://www.debian.org/\"\n",
        ));
        assert_eq!(
            os,
            OsRelease {
                id: "debian".into(),
                id_like: String::new(),
                name: "Debian GNU/Linux".into(),
                version_id: "12".into(),
                version: "12 (bookworm)".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
            }
        );
    }

    #[test]
    fn parses_sles_with_single_quotes_and_comments() {
        let os = parse(concat!(
            "# SUSE Linux Enterprise Server\n",
            "\n",
            "NAME='SLES'\n",
            "VERSION=\"15-SP5\"\n",
            "VERSION_ID=\"15.5\"\n",
            "PRETTY_NAME=\"SUSE Linux Enterprise Server 15 SP5\"\n",
            "ID=\"sles\"\n",
            "ID_LIKE=\"suse\"\n",
            "not an assignment\n",
        ));
        assert_eq!(os.name, "SLES");
        assert_eq!(os.id, "sles");
        assert_eq!(os.id_like, "suse");
        assert_eq!(os.version_id, "15.5");
        assert_eq!(os.pretty_name, "SUSE Linux Enterprise Server 15 SP5");
    }

    #[test]
    fn unquotes_like_a_shell() {
        assert_eq!(unquote("plain"), "plain");
        assert_eq!(unquote("plain  "), "plain");
        assert_eq!(unquote("\"a \\\"quoted\\\" \\$word \\\\ \\` \\n\""), "a \"quoted\" $word \\ ` \\n");
        assert_eq!(unquote("'single \\ \"kept\"'"), "single \\ \"kept\"");
        assert_eq!(unquote("\"con\"'cat'enated"), "concatenated");
        assert_eq!(unquote("escaped\\ space"), "escaped space");
        assert_eq!(unquote("\"trailing  \""), "trailing  ");
        assert_eq!(unquote("\"unterminated"), "unterminated");
        assert_eq!(unquote("\"ends in backslash\\"), "ends in backslash\\");
        assert_eq!(unquote(""), "");
        assert_eq!(unquote("\"\""), "");
    }

    #[test]
    fn falls_back_to_usr_lib() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("usr/lib")).expect("mkdir");
        std::fs::write(dir.path().join("usr/lib/os-release"), "ID=fedora\nVERSION_ID=40\n").expect("write");
        let os = read(dir.path());
        assert_eq!(os.id, "fedora");
        assert_eq!(os.version_id, "40");

        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(dir.path().join("etc/os-release"), "ID=rhel\n").expect("write");
        assert_eq!(read(dir.path()).id, "rhel");
    }

    #[test]
    fn missing_file_gives_empty_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path()), OsRelease::default());
    }
}
