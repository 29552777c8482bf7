//! Building a Debian package: `data.tar.gz` first (into a scratch file, hashing each file for `md5sums`),
//! then `control.tar.gz` in memory, then the ar archive around them, written atomically.
//!
//! The output is deterministic: entries in sorted order, every mtime the spec's timestamp, owner root:root,
//! gzip headers without a time.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use flate2::Compression as GzipLevel;
use flate2::write::GzEncoder;
use md5::Digest;

use crate::ar;
use crate::control::encode_description;
use crate::output::{InspectReader, OutputFile, ensure_ended, hex};
use crate::spec::{Entry, EntryKind};
use crate::tar::TarWriter;
use crate::{PackageError, PackageFormat, PackageSpec};

/// Builds `out` (a `.deb`) from `spec`, after validating it for Debian. The file appears complete or not at
/// all: it is written under a temporary name in the same directory, then renamed.
pub fn build_deb(spec: &PackageSpec, out: &Path) -> Result<(), PackageError> {
    spec.validate(PackageFormat::Deb)?;
    let entries = spec.entries()?;
    let mut output = OutputFile::create(out)?;

    let mut data_file = output.scratch()?;
    let data = write_data_archive(spec, &entries, &mut data_file).map_err(|error| match error {
        BuildFailure::Input(error) => error,
        BuildFailure::Output(source) => output.write_error(source),
    })?;
    let control_archive = control_archive(spec, &data).map_err(|source| output.write_error(source))?;

    let data_size = data_file.seek(SeekFrom::End(0)).map_err(|source| output.write_error(source))?;
    data_file.seek(SeekFrom::Start(0)).map_err(|source| output.write_error(source))?;
    let mtime = spec.timestamp;
    let mut writer = output.writer();
    let written = (|| -> std::io::Result<()> {
        ar::write_magic(&mut writer)?;
        ar::write_member_header(&mut writer, "debian-binary", mtime, 4)?;
        writer.write_all(b"2.0\n")?;
        ar::write_member_header(&mut writer, "control.tar.gz", mtime, control_archive.len() as u64)?;
        writer.write_all(&control_archive)?;
        ar::write_padding(&mut writer, control_archive.len() as u64)?;
        ar::write_member_header(&mut writer, "data.tar.gz", mtime, data_size)?;
        let copied = std::io::copy(&mut data_file, &mut writer)?;
        if copied != data_size {
            return Err(std::io::Error::other("the scratch data archive changed size"));
        }
        ar::write_padding(&mut writer, data_size)?;
        writer.flush()
    })();
    drop(writer);
    written.map_err(|source| output.write_error(source))?;
    output.commit()
}

/// What the data archive tells the control file.
struct DataSummary {
    /// `md5sums` lines: `<md5>  <path>` for every regular file.
    md5sums: String,
    /// Debian's installed size: every file rounded up to a KiB, one KiB per other entry.
    installed_kibibytes: u64,
    /// `conffiles` lines: the absolute path of every configuration file.
    conffiles: String,
}

enum BuildFailure {
    Input(PackageError),
    Output(std::io::Error),
}

impl From<std::io::Error> for BuildFailure {
    fn from(error: std::io::Error) -> Self {
        Self::Output(error)
    }
}

fn write_data_archive(spec: &PackageSpec, entries: &[Entry], out: &mut File) -> Result<DataSummary, BuildFailure> {
    let encoder = GzEncoder::new(std::io::BufWriter::new(out), GzipLevel::best());
    let mut tar = TarWriter::new(encoder);
    let mtime = spec.timestamp;
    let mut summary = DataSummary { md5sums: String::new(), installed_kibibytes: 0, conffiles: String::new() };
    tar.append_directory("./", 0o755, mtime)?;
    for entry in entries {
        match &entry.kind {
            EntryKind::Directory => {
                tar.append_directory(&format!("./{}/", entry.path), entry.mode, mtime)?;
                summary.installed_kibibytes += 1;
            }
            EntryKind::Symlink { target } => {
                tar.append_symlink(&format!("./{}", entry.path), target, mtime)?;
                summary.installed_kibibytes += 1;
            }
            EntryKind::File { size, source } => {
                let read_error =
                    |error| BuildFailure::Input(PackageError::ReadInput { path: source.clone(), source: error });
                let mut file = File::open(source).map_err(read_error)?;
                let mut digest = md5::Md5::new();
                let mut reader = InspectReader::new(&mut file, |bytes: &[u8]| digest.update(bytes));
                match tar.append_file(&format!("./{}", entry.path), entry.mode, mtime, *size, &mut reader) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Err(read_error(error)),
                    Err(error) => return Err(error.into()),
                }
                ensure_ended(&mut file, source).map_err(BuildFailure::Input)?;
                summary.md5sums.push_str(&format!("{}  {}\n", hex(&digest.finalize()), entry.path));
                if entry.is_configuration() {
                    summary.conffiles.push_str(&format!("/{}\n", entry.path));
                }
                summary.installed_kibibytes += size.div_ceil(1024);
            }
        }
    }
    let encoder = tar.finish()?;
    encoder.finish()?.flush()?;
    Ok(summary)
}

/// The control file's text.
fn control_text(spec: &PackageSpec, data: &DataSummary) -> String {
    let mut fields: Vec<(&str, String)> = vec![
        ("Package", spec.name.clone()),
        ("Version", spec.full_version()),
        ("Architecture", spec.architecture.deb_name().to_owned()),
        ("Maintainer", spec.maintainer.clone()),
        ("Installed-Size", data.installed_kibibytes.to_string()),
    ];
    if !spec.depends.is_empty() {
        let depends: Vec<String> = spec.depends.iter().map(|dependency| dependency.to_deb_string()).collect();
        fields.push(("Depends", depends.join(", ")));
    }
    fields.push(("Section", "misc".to_owned()));
    fields.push(("Priority", "optional".to_owned()));
    fields.push(("Description", encode_description(&spec.summary, &spec.description)));
    fields.iter().map(|(name, value)| format!("{name}: {value}\n")).collect()
}

fn control_archive(spec: &PackageSpec, data: &DataSummary) -> std::io::Result<Vec<u8>> {
    let mtime = spec.timestamp;
    let encoder = GzEncoder::new(Vec::new(), GzipLevel::best());
    let mut tar = TarWriter::new(encoder);
    tar.append_directory("./", 0o755, mtime)?;
    tar.append_bytes("./control", 0o644, mtime, control_text(spec, data).as_bytes())?;
    if !data.conffiles.is_empty() {
        tar.append_bytes("./conffiles", 0o644, mtime, data.conffiles.as_bytes())?;
    }
    if !data.md5sums.is_empty() {
        tar.append_bytes("./md5sums", 0o644, mtime, data.md5sums.as_bytes())?;
    }
    for (name, script) in spec.scripts.deb_scripts() {
        // dpkg runs a maintainer script as a program, so it needs its #! line.
        let script = if script.starts_with("#!") { script.to_owned() } else { format!("#!/bin/sh\n{script}") };
        let script = if script.ends_with('\n') { script } else { format!("{script}\n") };
        tar.append_bytes(&format!("./{name}"), 0o755, mtime, script.as_bytes())?;
    }
    tar.finish()?.finish()
}
