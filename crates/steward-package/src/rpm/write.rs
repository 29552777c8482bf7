//! Building an RPM package: the payload first (a gzip'd cpio archive, into a scratch file, hashing each file
//! with SHA-256 and the compressed payload too), then the main header (which lists the files with those
//! digests), then the signature header over header and payload (SHA-256 of the header, MD5 of both, sizes),
//! then the lead, written atomically.
//!
//! The package owns its files, symbolic links and directories, except the directories of the base system
//! (`/usr`, `/usr/bin`, `/etc`, ...; see `SYSTEM_DIRECTORIES`), which belong to the distribution's
//! filesystem package: rpm creates them if they are missing.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use flate2::Compression as GzipLevel;
use flate2::write::GzEncoder;
use sha2::Digest as _;

use super::LEAD_LENGTH;
use super::header::{HeaderBuilder, Value, tag};
use crate::cpio::{CpioEntry, CpioWriter};
use crate::dependency::sense;
use crate::output::{InspectReader, OutputFile, ensure_ended, hex};
use crate::spec::{Entry, EntryKind, script_interpreter, script_program};
use crate::{PackageError, PackageFormat, PackageSpec};

/// Directories that the base system owns; a package does not list them.
const SYSTEM_DIRECTORIES: &[&str] = &[
    "bin",
    "boot",
    "etc",
    "etc/default",
    "etc/cron.d",
    "etc/logrotate.d",
    "etc/profile.d",
    "etc/sysconfig",
    "etc/systemd",
    "etc/systemd/system",
    "home",
    "lib",
    "lib/systemd",
    "lib/systemd/system",
    "lib64",
    "opt",
    "root",
    "run",
    "sbin",
    "srv",
    "usr",
    "usr/bin",
    "usr/include",
    "usr/lib",
    "usr/lib/systemd",
    "usr/lib/systemd/system",
    "usr/lib64",
    "usr/libexec",
    "usr/local",
    "usr/local/bin",
    "usr/local/etc",
    "usr/local/lib",
    "usr/local/sbin",
    "usr/local/share",
    "usr/sbin",
    "usr/share",
    "usr/share/doc",
    "usr/share/info",
    "usr/share/licenses",
    "usr/share/man",
    "usr/share/man/man1",
    "usr/share/man/man5",
    "usr/share/man/man8",
    "var",
    "var/cache",
    "var/lib",
    "var/log",
    "var/opt",
    "var/spool",
    "var/tmp",
];

const FILE_DIGEST_ALGORITHM_SHA256: u32 = 8;
/// RPMFILE_CONFIG | RPMFILE_NOREPLACE: `%config(noreplace)`.
const CONFIG_NO_REPLACE: u32 = 1 | (1 << 4);
const TYPE_REGULAR: u32 = 0o100000;
const TYPE_DIRECTORY: u32 = 0o040000;
const TYPE_SYMLINK: u32 = 0o120000;

/// Builds `out` (an `.rpm`) from `spec`, after validating it for RPM. The file appears complete or not at
/// all: it is written under a temporary name in the same directory, then renamed.
pub fn build_rpm(spec: &PackageSpec, out: &Path) -> Result<(), PackageError> {
    spec.validate(PackageFormat::Rpm)?;
    let timestamp = u32::try_from(spec.timestamp)
        .map_err(|_| PackageError::invalid_spec("timestamp", "RPM keeps times in 32 bits (until 2106)"))?;
    let mut files: Vec<Entry> = spec
        .entries()?
        .into_iter()
        .filter(|entry| !(entry.kind == EntryKind::Directory && SYSTEM_DIRECTORIES.contains(&entry.path.as_str())))
        .collect();
    // rpm looks files up by path, so the file list is sorted by the full path.
    files.sort_by(|left, right| left.path.cmp(&right.path));
    for entry in &files {
        if let EntryKind::File { size, .. } = entry.kind
            && size > u64::from(u32::MAX)
        {
            return Err(PackageError::invalid_spec(
                "files",
                format!("{} is larger than 4 GiB, which this RPM writer does not support", entry.path),
            ));
        }
    }

    let mut output = OutputFile::create(out)?;
    let mut payload_file = output.scratch()?;
    let payload = write_payload(&files, timestamp, &mut payload_file)?;
    let main_header = main_header(spec, &files, &payload, timestamp).build(tag::HEADER_IMMUTABLE);
    let signed_size = main_header.len() as u64 + payload.compressed_size;
    let signed_size = u32::try_from(signed_size)
        .map_err(|_| PackageError::invalid_spec("files", "the package would be larger than 4 GiB"))?;

    payload_file.seek(SeekFrom::Start(0)).map_err(|source| output.write_error(source))?;
    let mut md5 = <md5::Md5 as md5::Digest>::new();
    md5::Digest::update(&mut md5, &main_header);
    {
        let mut hashing = InspectReader::new(&mut payload_file, |bytes: &[u8]| md5::Digest::update(&mut md5, bytes));
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|source| output.write_error(source))?;
    }
    let mut signature = HeaderBuilder::default();
    signature.set(tag::SIGNATURE_SHA256, Value::String(hex(&sha2::Sha256::digest(&main_header))));
    signature.set(tag::SIGNATURE_SIZE, Value::Int32(vec![signed_size]));
    signature.set(tag::SIGNATURE_MD5, Value::Binary(md5::Digest::finalize(md5).to_vec()));
    signature.set(tag::SIGNATURE_PAYLOAD_SIZE, Value::Int32(vec![payload.uncompressed_size]));
    let signature = signature.build(tag::HEADER_SIGNATURES);

    payload_file.seek(SeekFrom::Start(0)).map_err(|source| output.write_error(source))?;
    let lead = lead(spec);
    let mut writer = output.writer();
    let written = (|| -> std::io::Result<()> {
        writer.write_all(&lead)?;
        writer.write_all(&signature)?;
        writer.write_all(&[0; 8][..(8 - signature.len() % 8) % 8])?;
        writer.write_all(&main_header)?;
        let copied = std::io::copy(&mut payload_file, &mut writer)?;
        if copied != payload.compressed_size {
            return Err(std::io::Error::other("the scratch payload changed size"));
        }
        writer.flush()
    })();
    drop(writer);
    written.map_err(|source| output.write_error(source))?;
    output.commit()
}

/// What the payload tells the headers.
struct Payload {
    /// The SHA-256 of each regular file, in file-list order ("" for others).
    file_digests: Vec<String>,
    compressed_size: u64,
    uncompressed_size: u32,
    compressed_sha256: String,
}

/// The mode with its file-type bits, and the size rpm records, of an entry.
fn mode_and_size(entry: &Entry) -> (u32, u32) {
    match &entry.kind {
        EntryKind::Directory => (TYPE_DIRECTORY | entry.mode, 4096),
        EntryKind::File { size, .. } => (TYPE_REGULAR | entry.mode, *size as u32),
        EntryKind::Symlink { target } => (TYPE_SYMLINK | 0o777, target.len() as u32),
    }
}

/// Counts and hashes what passes through (the compressed payload on its way to the scratch file).
struct CountingHasher<W: Write> {
    inner: W,
    count: u64,
    hasher: sha2::Sha256,
}

impl<W: Write> Write for CountingHasher<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.count += written as u64;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_payload(files: &[Entry], mtime: u32, out: &mut File) -> Result<Payload, PackageError> {
    let scratch_error = |source| PackageError::Write { path: "(scratch payload)".into(), source };
    let counting = CountingHasher { inner: std::io::BufWriter::new(out), count: 0, hasher: sha2::Sha256::new() };
    let mut cpio = CpioWriter::new(GzEncoder::new(counting, GzipLevel::best()));
    let mut file_digests = Vec::with_capacity(files.len());
    for (index, entry) in files.iter().enumerate() {
        let (mode, size) = mode_and_size(entry);
        let name = format!("./{}", entry.path);
        let links = if entry.kind == EntryKind::Directory { 2 } else { 1 };
        let header = CpioEntry { name: &name, inode: index as u32 + 1, mode, links, mtime, size: 0 };
        match &entry.kind {
            EntryKind::Directory => {
                cpio.append(&header, &mut std::io::empty()).map_err(scratch_error)?;
                file_digests.push(String::new());
            }
            EntryKind::Symlink { target } => {
                cpio.append(&CpioEntry { size, ..header }, &mut target.as_bytes()).map_err(scratch_error)?;
                file_digests.push(String::new());
            }
            EntryKind::File { source, .. } => {
                let read_error = |error| PackageError::ReadInput { path: source.clone(), source: error };
                let mut file = File::open(source).map_err(read_error)?;
                let mut digest = sha2::Sha256::new();
                let mut reader = InspectReader::new(&mut file, |bytes: &[u8]| digest.update(bytes));
                match cpio.append(&CpioEntry { size, ..header }, &mut reader) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Err(read_error(error)),
                    Err(error) => return Err(scratch_error(error)),
                }
                ensure_ended(&mut file, source)?;
                file_digests.push(hex(&digest.finalize()));
            }
        }
    }
    let (encoder, uncompressed_size) = cpio.finish().map_err(scratch_error)?;
    let mut counting = encoder.finish().map_err(scratch_error)?;
    counting.flush().map_err(scratch_error)?;
    let uncompressed_size = u32::try_from(uncompressed_size)
        .map_err(|_| PackageError::invalid_spec("files", "the files add up to more than 4 GiB"))?;
    Ok(Payload {
        file_digests,
        compressed_size: counting.count,
        uncompressed_size,
        compressed_sha256: hex(&counting.hasher.finalize()),
    })
}

fn strings(values: impl IntoIterator<Item = impl Into<String>>) -> Value {
    Value::StringArray(values.into_iter().map(Into::into).collect())
}

fn main_header(spec: &PackageSpec, files: &[Entry], payload: &Payload, timestamp: u32) -> HeaderBuilder {
    let mut header = HeaderBuilder::default();
    header.set(tag::HEADER_I18N_TABLE, strings(["C"]));
    header.set(tag::NAME, Value::String(spec.name.clone()));
    header.set(tag::VERSION, Value::String(spec.version.clone()));
    header.set(tag::RELEASE, Value::String(spec.release.clone()));
    if let Some(epoch) = spec.epoch {
        header.set(tag::EPOCH, Value::Int32(vec![epoch]));
    }
    header.set(tag::SUMMARY, Value::I18nString(spec.summary.clone()));
    header.set(tag::DESCRIPTION, Value::I18nString(spec.description.clone()));
    header.set(tag::BUILD_TIME, Value::Int32(vec![timestamp]));
    header.set(tag::BUILD_HOST, Value::String("localhost".to_owned()));
    if let Some(license) = &spec.license {
        header.set(tag::LICENSE, Value::String(license.clone()));
    }
    header.set(tag::PACKAGER, Value::String(spec.maintainer.clone()));
    header.set(tag::GROUP, Value::I18nString("Unspecified".to_owned()));
    header.set(tag::OS, Value::String("linux".to_owned()));
    header.set(tag::ARCH, Value::String(spec.architecture.rpm_name().to_owned()));
    let source_rpm = format!("{}-{}-{}.src.rpm", spec.name, spec.version, spec.release);
    header.set(tag::SOURCE_RPM, Value::String(source_rpm));
    header.set(tag::RPM_VERSION, Value::String("4.16.0".to_owned()));

    let scripts = [
        (&spec.scripts.pre_install, tag::PRE_INSTALL, tag::PRE_INSTALL_PROGRAM, sense::SCRIPT_PRE),
        (&spec.scripts.post_install, tag::POST_INSTALL, tag::POST_INSTALL_PROGRAM, sense::SCRIPT_POST),
        (&spec.scripts.pre_remove, tag::PRE_UNINSTALL, tag::PRE_UNINSTALL_PROGRAM, sense::SCRIPT_PREUN),
        (&spec.scripts.post_remove, tag::POST_UNINSTALL, tag::POST_UNINSTALL_PROGRAM, sense::SCRIPT_POSTUN),
    ];
    let mut requirements: Vec<(String, u32, String)> = Vec::new();
    for (script, script_tag, program_tag, script_sense) in scripts {
        if let Some(script) = script {
            let interpreter = script_interpreter(script).to_owned();
            header.set(script_tag, Value::String(script.clone()));
            // A string array, as rpmbuild writes it: the interpreter and its options.
            header.set(program_tag, strings(script_program(script)));
            requirements.push((interpreter, sense::INTERPRETER | script_sense, String::new()));
        }
    }
    for dependency in &spec.depends {
        let (flags, version) = match (&dependency.relation, dependency.alternatives.is_empty()) {
            (Some(relation), true) => (relation.op.rpm_flags(), relation.version.clone()),
            _ => (0, String::new()),
        };
        requirements.push((dependency.to_rpm_name(), flags, version));
    }
    let rpmlib = sense::RPMLIB | sense::LESS | sense::EQUAL;
    let mut features =
        vec![("CompressedFileNames", "3.0.4-1"), ("FileDigests", "4.6.0-1"), ("PayloadFilesHavePrefix", "4.0-1")];
    if spec.depends.iter().any(|dependency| !dependency.alternatives.is_empty()) {
        features.push(("RichDependencies", "4.12.0-1"));
    }
    for (feature, version) in features {
        requirements.push((format!("rpmlib({feature})"), rpmlib, version.to_owned()));
    }
    header.set(tag::REQUIRE_NAME, strings(requirements.iter().map(|(name, _, _)| name.clone())));
    header.set(tag::REQUIRE_FLAGS, Value::Int32(requirements.iter().map(|(_, flags, _)| *flags).collect()));
    header.set(tag::REQUIRE_VERSION, strings(requirements.iter().map(|(_, _, version)| version.clone())));
    header.set(tag::PROVIDE_NAME, strings([spec.name.clone()]));
    header.set(tag::PROVIDE_FLAGS, Value::Int32(vec![sense::EQUAL]));
    let provided_version = match spec.epoch {
        Some(epoch) => format!("{epoch}:{}-{}", spec.version, spec.release),
        None => format!("{}-{}", spec.version, spec.release),
    };
    header.set(tag::PROVIDE_VERSION, strings([provided_version]));

    let total_size: u64 = files.iter().map(|entry| u64::from(mode_and_size(entry).1)).sum();
    header.set(tag::SIZE, Value::Int32(vec![u32::try_from(total_size).unwrap_or(u32::MAX)]));
    header.set(tag::PAYLOAD_FORMAT, Value::String("cpio".to_owned()));
    header.set(tag::PAYLOAD_COMPRESSOR, Value::String("gzip".to_owned()));
    header.set(tag::PAYLOAD_FLAGS, Value::String("9".to_owned()));
    header.set(tag::PAYLOAD_DIGEST, strings([payload.compressed_sha256.clone()]));
    header.set(tag::PAYLOAD_DIGEST_ALGORITHM, Value::Int32(vec![FILE_DIGEST_ALGORITHM_SHA256]));
    if !files.is_empty() {
        set_file_list(&mut header, files, payload, timestamp);
    }
    header
}

/// The file list: parallel arrays, one value per file, and the path split into directory and base name.
fn set_file_list(header: &mut HeaderBuilder, files: &[Entry], payload: &Payload, timestamp: u32) {
    let count = files.len();
    let mut directory_names: Vec<String> = Vec::new();
    let mut directory_indexes = Vec::with_capacity(count);
    let mut base_names = Vec::with_capacity(count);
    for entry in files {
        let (directory, base) = match entry.path.rsplit_once('/') {
            Some((parent, base)) => (format!("/{parent}/"), base),
            None => ("/".to_owned(), entry.path.as_str()),
        };
        let index = match directory_names.iter().position(|known| *known == directory) {
            Some(index) => index,
            None => {
                directory_names.push(directory);
                directory_names.len() - 1
            }
        };
        directory_indexes.push(index as u32);
        base_names.push(base.to_owned());
    }
    let (modes, sizes): (Vec<u32>, Vec<u32>) = files.iter().map(mode_and_size).unzip();
    header.set(tag::FILE_SIZES, Value::Int32(sizes));
    header.set(tag::FILE_MODES, Value::Int16(modes.iter().map(|&mode| mode as u16).collect()));
    header.set(tag::FILE_RDEVS, Value::Int16(vec![0; count]));
    header.set(tag::FILE_MTIMES, Value::Int32(vec![timestamp; count]));
    header.set(tag::FILE_DIGESTS, strings(payload.file_digests.iter().cloned()));
    let link_targets = files.iter().map(|entry| match &entry.kind {
        EntryKind::Symlink { target } => target.clone(),
        _ => String::new(),
    });
    header.set(tag::FILE_LINK_TOS, strings(link_targets));
    let flags = files.iter().map(|entry| if entry.is_configuration() { CONFIG_NO_REPLACE } else { 0 });
    header.set(tag::FILE_FLAGS, Value::Int32(flags.collect()));
    header.set(tag::FILE_USER_NAME, strings(vec!["root"; count]));
    header.set(tag::FILE_GROUP_NAME, strings(vec!["root"; count]));
    header.set(tag::FILE_VERIFY_FLAGS, Value::Int32(vec![u32::MAX; count]));
    header.set(tag::FILE_DEVICES, Value::Int32(vec![1; count]));
    header.set(tag::FILE_INODES, Value::Int32((1..=count as u32).collect()));
    header.set(tag::FILE_LANGS, strings(vec![""; count]));
    header.set(tag::DIR_INDEXES, Value::Int32(directory_indexes));
    header.set(tag::BASE_NAMES, strings(base_names));
    header.set(tag::DIR_NAMES, strings(directory_names));
    header.set(tag::FILE_DIGEST_ALGORITHM, Value::Int32(vec![FILE_DIGEST_ALGORITHM_SHA256]));
}

/// The lead: magic, format 3.0, binary, architecture number, `name-version-release`, Linux, signature type 5
/// (a header-style signature follows).
fn lead(spec: &PackageSpec) -> [u8; LEAD_LENGTH] {
    let mut lead = [0u8; LEAD_LENGTH];
    lead[..4].copy_from_slice(&crate::RPM_LEAD_MAGIC);
    lead[4] = 3;
    lead[5] = 0;
    lead[8..10].copy_from_slice(&spec.architecture.rpm_lead_number().to_be_bytes());
    let name = format!("{}-{}-{}", spec.name, spec.version, spec.release);
    let length = name.len().min(65);
    lead[10..10 + length].copy_from_slice(&name.as_bytes()[..length]);
    lead[76..78].copy_from_slice(&1u16.to_be_bytes());
    lead[78..80].copy_from_slice(&5u16.to_be_bytes());
    lead
}
