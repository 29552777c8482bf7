//! What a package is built from ([`PackageSpec`]), its validation per format, and the walk of its files
//! directory into a sorted list of entries.

use std::fs;
use std::path::{Path, PathBuf};

use crate::dependency::{check_deb_package_name, check_version_characters};
use crate::{Architecture, Dependency, PackageError, PackageFormat};

/// The install scripts of a package: shell text run by `/bin/sh`, or by the interpreter named on its first
/// line (`#!/bin/bash`). Debian runs them as `preinst`, `postinst`, `prerm`, `postrm`; RPM as `%pre`,
/// `%post`, `%preun`, `%postun`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scripts {
    pub pre_install: Option<String>,
    pub post_install: Option<String>,
    pub pre_remove: Option<String>,
    pub post_remove: Option<String>,
}

impl Scripts {
    /// The scripts present, with Debian's name for each.
    pub(crate) fn deb_scripts(&self) -> Vec<(&'static str, &str)> {
        [
            ("preinst", &self.pre_install),
            ("postinst", &self.post_install),
            ("prerm", &self.pre_remove),
            ("postrm", &self.post_remove),
        ]
        .into_iter()
        .filter_map(|(name, script)| script.as_deref().map(|script| (name, script)))
        .collect()
    }
}

/// The program that runs a script: the words of its `#!` line (`/bin/bash -e`), or `/bin/sh`.
pub(crate) fn script_program(script: &str) -> Vec<&str> {
    let words: Vec<&str> = script
        .strip_prefix("#!")
        .and_then(|line| line.lines().next())
        .map(|line| line.split_whitespace().collect())
        .unwrap_or_default();
    if words.is_empty() { vec!["/bin/sh"] } else { words }
}

/// The interpreter of a script: the first word of [`script_program`].
pub(crate) fn script_interpreter(script: &str) -> &str {
    script_program(script).first().copied().unwrap_or("/bin/sh")
}

/// Everything a package is built from. The same spec builds a `.deb` ([`crate::build_deb`]) and an `.rpm`
/// ([`crate::build_rpm`]); each checks it first ([`PackageSpec::validate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSpec {
    /// The package name: for a `.deb` lower-case letters, digits, `+ - .` (two characters at least); RPM also
    /// accepts upper-case letters and `_`.
    pub name: String,
    /// An optional epoch (the `2` of `2:1.0-1`).
    pub epoch: Option<u32>,
    /// The upstream version: starts with a digit; letters, digits, `.`, `+`, `~`.
    pub version: String,
    /// The package's own revision (Debian revision, RPM release): letters, digits, `.`, `+`, `~`.
    pub release: String,
    pub architecture: Architecture,
    /// One line.
    pub summary: String,
    /// Any number of lines (may be empty).
    pub description: String,
    /// Who made the package, usually `Name <address>`: Debian's `Maintainer`, RPM's `PACKAGER` and `VENDOR`.
    pub maintainer: String,
    /// The license, for RPM's `LICENSE` tag (Debian has no such field in its control file).
    pub license: Option<String>,
    pub depends: Vec<Dependency>,
    /// The directory whose content is installed at `/`: `files/usr/bin/tool` becomes `/usr/bin/tool`.
    /// Regular files, directories and symbolic links; modes are kept, owner and group are always root.
    /// Regular files under `etc/` are configuration files, which upgrades do not overwrite when changed.
    pub files: PathBuf,
    pub scripts: Scripts,
    /// Seconds since 1970 used for every file's mtime and the build time, so the same spec and files give
    /// the same package bytes.
    pub timestamp: u64,
}

/// The longest path (inside the package) accepted.
const MAX_PATH_LENGTH: usize = 4096;
/// The most entries a built package may have.
const MAX_ENTRIES: usize = 100_000;

/// What an entry of the files directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Directory,
    File { size: u64, source: PathBuf },
    Symlink { target: String },
}

/// One entry of the files directory: its path inside the package (relative, no leading slash) and its
/// permission bits (with set-id and sticky bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub path: String,
    pub mode: u32,
    pub kind: EntryKind,
}

impl Entry {
    /// Whether the entry is a configuration file: a regular file under `/etc`. Debian lists these as
    /// `conffiles` and RPM flags them `%config(noreplace)`, so an upgrade keeps an administrator's changes.
    pub(crate) fn is_configuration(&self) -> bool {
        matches!(self.kind, EntryKind::File { .. }) && self.path.starts_with("etc/")
    }
}

impl PackageSpec {
    /// The full version as `format` spells it: Debian `[epoch:]version-release`, RPM the same (rpm shows
    /// the epoch that way too).
    pub fn full_version(&self) -> String {
        match self.epoch {
            Some(epoch) => format!("{epoch}:{}-{}", self.version, self.release),
            None => format!("{}-{}", self.version, self.release),
        }
    }

    /// Checks the spec for `format`: names, versions, text fields, dependencies, scripts and the files
    /// directory (which must exist). Errors name the field and what is wrong.
    pub fn validate(&self, format: PackageFormat) -> Result<(), PackageError> {
        let invalid = |field: &'static str, message: String| Err(PackageError::invalid_spec(field, message));
        match format {
            PackageFormat::Deb => {
                check_deb_package_name(&self.name).or_else(|message| invalid("name", message))?;
            }
            PackageFormat::Rpm => check_rpm_name(&self.name).or_else(|message| invalid("name", message))?,
        }
        check_version_part(&self.version, true).or_else(|message| invalid("version", message))?;
        check_version_part(&self.release, false).or_else(|message| invalid("release", message))?;
        check_line(&self.summary, true).or_else(|message| invalid("summary", message))?;
        check_line(&self.maintainer, true).or_else(|message| invalid("maintainer", message))?;
        if let Some(license) = &self.license {
            check_line(license, true).or_else(|message| invalid("license", message))?;
        }
        if let Some(character) =
            self.description.chars().find(|character| character.is_control() && !matches!(character, '\n' | '\t'))
        {
            return invalid("description", format!("control character {character:?}"));
        }
        if format == PackageFormat::Deb && self.description.lines().any(|line| line.trim() == ".") {
            return invalid(
                "description",
                "a line of only \".\" means an empty line in a Debian control file".to_owned(),
            );
        }
        for dependency in &self.depends {
            for (name, relation) in dependency.choices() {
                let checked = match format {
                    PackageFormat::Deb => check_deb_package_name(name),
                    PackageFormat::Rpm => check_rpm_capability(name),
                };
                checked.or_else(|message| invalid("depends", message))?;
                if let Some(relation) = relation {
                    check_version_characters(&relation.version).or_else(|message| {
                        invalid("depends", format!("version {:?} of {name}: {message}", relation.version))
                    })?;
                }
            }
        }
        let scripts = [
            &self.scripts.pre_install,
            &self.scripts.post_install,
            &self.scripts.pre_remove,
            &self.scripts.post_remove,
        ];
        for script in scripts.into_iter().flatten() {
            if script.trim().is_empty() {
                return invalid("scripts", "a script is empty (leave it out instead)".to_owned());
            }
            if script.contains('\0') {
                return invalid("scripts", "a script contains a NUL byte".to_owned());
            }
            if !script_interpreter(script).starts_with('/') {
                return invalid("scripts", "a script's #! line must name an absolute interpreter path".to_owned());
            }
        }
        match fs::metadata(&self.files) {
            Ok(metadata) if metadata.is_dir() => Ok(()),
            Ok(_) => invalid("files", format!("{} is not a directory", self.files.display())),
            Err(error) => invalid("files", format!("{}: {error}", self.files.display())),
        }
    }

    /// Walks the files directory: every entry, directories before their content, siblings sorted by name.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>, PackageError> {
        let mut entries = Vec::new();
        walk(&self.files, "", &mut entries)?;
        Ok(entries)
    }
}

fn walk(directory: &Path, prefix: &str, entries: &mut Vec<Entry>) -> Result<(), PackageError> {
    use std::os::unix::fs::PermissionsExt;
    let read_error = |path: &Path, source| PackageError::ReadInput { path: path.to_owned(), source };
    let mut children: Vec<(String, PathBuf)> = Vec::new();
    for child in fs::read_dir(directory).map_err(|source| read_error(directory, source))? {
        let child = child.map_err(|source| read_error(directory, source))?;
        let name = child.file_name().into_string().map_err(|name| {
            PackageError::invalid_spec("files", format!("the name {name:?} in {} is not UTF-8", directory.display()))
        })?;
        children.push((name, child.path()));
    }
    children.sort();
    for (name, source) in children {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        check_path(&path)?;
        if entries.len() >= MAX_ENTRIES {
            return Err(PackageError::invalid_spec("files", format!("more than {MAX_ENTRIES} entries")));
        }
        let metadata = fs::symlink_metadata(&source).map_err(|error| read_error(&source, error))?;
        let mode = metadata.permissions().mode() & 0o7777;
        let file_type = metadata.file_type();
        if file_type.is_dir() {
            entries.push(Entry { path: path.clone(), mode, kind: EntryKind::Directory });
            walk(&source, &path, entries)?;
        } else if file_type.is_file() {
            entries.push(Entry { path, mode, kind: EntryKind::File { size: metadata.len(), source } });
        } else if file_type.is_symlink() {
            let target = fs::read_link(&source).map_err(|error| read_error(&source, error))?;
            let target = target.into_os_string().into_string().map_err(|target| {
                PackageError::invalid_spec("files", format!("the link target {target:?} of {path} is not UTF-8"))
            })?;
            if target.is_empty() || target.chars().any(char::is_control) || target.len() > MAX_PATH_LENGTH {
                return Err(PackageError::invalid_spec("files", format!("the link target {target:?} of {path}")));
            }
            entries.push(Entry { path, mode: 0o777, kind: EntryKind::Symlink { target } });
        } else {
            return Err(PackageError::invalid_spec(
                "files",
                format!("{path} is neither a regular file, a directory nor a symbolic link"),
            ));
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), PackageError> {
    if path.len() > MAX_PATH_LENGTH {
        return Err(PackageError::invalid_spec("files", format!("a path is longer than {MAX_PATH_LENGTH} bytes")));
    }
    if let Some(character) = path.chars().find(|character| character.is_control()) {
        return Err(PackageError::invalid_spec("files", format!("the path {path:?} contains {character:?}")));
    }
    Ok(())
}

/// An RPM package name: letters, digits and `- . _ + ^ ~`, starting with a letter or digit.
fn check_rpm_name(name: &str) -> Result<(), String> {
    let valid_start = name.chars().next().is_some_and(|character| character.is_ascii_alphanumeric());
    let valid = name.chars().all(|character| character.is_ascii_alphanumeric() || "-._+".contains(character));
    if !valid_start || !valid {
        return Err(format!(
            "{name:?} is not an RPM package name (A-Z a-z 0-9 - . _ +, starting with a letter or digit)"
        ));
    }
    Ok(())
}

/// An RPM capability: a package name, a file path, or a `name(...)` capability; no spaces or commas.
fn check_rpm_capability(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with(['(', '-'])
        && name.chars().all(|character| character.is_ascii_graphic() && character != ',');
    if !valid {
        return Err(format!("{name:?} is not an RPM capability (printable, no spaces or commas)"));
    }
    Ok(())
}

/// A version or release: letters, digits, `.`, `+`, `~` (no `-` or `:`, which separate release and epoch);
/// a version must start with a digit.
fn check_version_part(text: &str, must_start_with_digit: bool) -> Result<(), String> {
    if text.is_empty() {
        return Err("empty".to_owned());
    }
    if must_start_with_digit && !text.starts_with(|character: char| character.is_ascii_digit()) {
        return Err(format!("{text:?} does not start with a digit"));
    }
    if let Some(character) =
        text.chars().find(|character| !(character.is_ascii_alphanumeric() || ".+~".contains(*character)))
    {
        return Err(format!("{text:?}: character {character:?} is not allowed (only A-Z a-z 0-9 . + ~)"));
    }
    Ok(())
}

/// One line of text without control characters.
fn check_line(text: &str, required: bool) -> Result<(), String> {
    if required && text.trim().is_empty() {
        return Err("empty".to_owned());
    }
    if let Some(character) = text.chars().find(|character| character.is_control()) {
        return Err(format!("{text:?} contains {character:?} (one line of text is expected)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RelationOp;

    fn spec(files: &Path) -> PackageSpec {
        PackageSpec {
            name: "steward-tool".to_owned(),
            epoch: None,
            version: "1.2.3".to_owned(),
            release: "1".to_owned(),
            architecture: Architecture::X86_64,
            summary: "A tool".to_owned(),
            description: "Does things.\n\nWell.".to_owned(),
            maintainer: "Ops <ops@example.org>".to_owned(),
            license: Some("Apache-2.0".to_owned()),
            depends: vec![Dependency::versioned("libc6", RelationOp::GreaterOrEqual, "2.34")],
            files: files.to_owned(),
            scripts: Scripts::default(),
            timestamp: 1_700_000_000,
        }
    }

    #[test]
    fn a_good_spec_is_valid_for_both_formats() -> Result<(), PackageError> {
        let directory =
            tempfile::tempdir().map_err(|source| PackageError::ReadInput { path: "/tmp".into(), source })?;
        let spec = spec(directory.path());
        spec.validate(PackageFormat::Deb)?;
        spec.validate(PackageFormat::Rpm)?;
        assert_eq!(spec.full_version(), "1.2.3-1");
        assert_eq!(PackageSpec { epoch: Some(2), ..spec }.full_version(), "2:1.2.3-1");
        Ok(())
    }

    #[test]
    fn every_bad_field_is_named() -> Result<(), PackageError> {
        let directory =
            tempfile::tempdir().map_err(|source| PackageError::ReadInput { path: "/tmp".into(), source })?;
        let good = spec(directory.path());
        let cases: Vec<(PackageSpec, PackageFormat, &str)> = vec![
            (PackageSpec { name: "Tool".into(), ..good.clone() }, PackageFormat::Deb, "(name)"),
            (PackageSpec { name: "tool_x".into(), ..good.clone() }, PackageFormat::Deb, "(name)"),
            (PackageSpec { name: "-tool".into(), ..good.clone() }, PackageFormat::Rpm, "(name)"),
            (PackageSpec { version: "v1".into(), ..good.clone() }, PackageFormat::Deb, "(version)"),
            (PackageSpec { version: "1-2".into(), ..good.clone() }, PackageFormat::Rpm, "(version)"),
            (PackageSpec { release: "".into(), ..good.clone() }, PackageFormat::Rpm, "(release)"),
            (PackageSpec { summary: "two\nlines".into(), ..good.clone() }, PackageFormat::Deb, "(summary)"),
            (PackageSpec { maintainer: " ".into(), ..good.clone() }, PackageFormat::Deb, "(maintainer)"),
            (PackageSpec { description: "bell\u{7}".into(), ..good.clone() }, PackageFormat::Rpm, "(description)"),
            (
                PackageSpec { depends: vec![Dependency::new("Bad Name")], ..good.clone() },
                PackageFormat::Deb,
                "(depends)",
            ),
            (
                PackageSpec { depends: vec![Dependency::versioned("a", RelationOp::Equal, "1 2")], ..good.clone() },
                PackageFormat::Rpm,
                "(depends)",
            ),
            (
                PackageSpec {
                    scripts: Scripts { post_install: Some("#!bash\necho".into()), ..Scripts::default() },
                    ..good.clone()
                },
                PackageFormat::Deb,
                "(scripts)",
            ),
            (PackageSpec { files: directory.path().join("missing"), ..good.clone() }, PackageFormat::Deb, "(files)"),
            (PackageSpec { description: "a\n.\nb".into(), ..good.clone() }, PackageFormat::Deb, "(description)"),
        ];
        for (spec, format, expected) in cases {
            let message = spec.validate(format).expect_err(expected).to_string();
            assert!(message.contains(expected), "{message}");
        }
        Ok(())
    }

    #[test]
    fn interpreters_come_from_the_first_line() {
        assert_eq!(script_interpreter("#!/bin/bash -e\necho"), "/bin/bash");
        assert_eq!(script_interpreter("echo hi"), "/bin/sh");
        assert_eq!(script_program("#!/bin/bash -e\necho"), ["/bin/bash", "-e"]);
        assert_eq!(script_program("#!\necho"), ["/bin/sh"]);
    }
}
