//! Reading a Debian package's metadata: the control file from `control.tar.*`, and the number of entries of
//! `data.tar.*`. The archive is read once, in order, and nothing is held but the control file.

use std::io::{self, Read};

use crate::ar::{read_member_header, skip_rest};
use crate::compress::{Compression, DecompressError, decompress};
use crate::control::{ControlFile, split_description};
use crate::tar::{ScanResult, TarScanner};
use crate::{PackageError, PackageFormat, PackageInfo, limits, normalize_architecture, parse_deb_dependencies};

const FORMAT: PackageFormat = PackageFormat::Deb;

/// Reads a Debian package whose ar magic has been consumed.
pub(crate) fn read_deb(reader: &mut dyn Read) -> Result<PackageInfo, PackageError> {
    let first = read_member_header(reader)?
        .ok_or_else(|| PackageError::UnknownFormat("an empty ar archive, not a Debian package".to_owned()))?;
    if first.name != "debian-binary" {
        return Err(PackageError::UnknownFormat(format!(
            "an ar archive whose first member is {:?}, not debian-binary",
            first.name
        )));
    }
    if first.size > 64 {
        return Err(PackageError::malformed(FORMAT, format!("debian-binary has {} bytes", first.size)));
    }
    let mut member = (&mut *reader).take(first.size);
    let mut version = Vec::new();
    member.read_to_end(&mut version).map_err(|source| PackageError::read(FORMAT, "debian-binary", source))?;
    skip_rest(&mut member, first.size)?;
    if !version.starts_with(b"2.") {
        return Err(PackageError::malformed(
            FORMAT,
            format!("format version {:?} (only 2.x is known)", String::from_utf8_lossy(&version).trim()),
        ));
    }

    let mut control: Option<ControlFile> = None;
    loop {
        let Some(header) = read_member_header(reader)? else {
            let missing = if control.is_none() { "control.tar" } else { "data.tar" };
            return Err(PackageError::malformed(FORMAT, format!("the package has no {missing} member")));
        };
        if header.name.starts_with('_') {
            skip_rest(&mut (&mut *reader).take(header.size), header.size)?;
            continue;
        }
        if let Some(compression) = Compression::of_member(&header.name, "control.tar") {
            if control.is_some() {
                return Err(PackageError::malformed(FORMAT, "the package has two control.tar members"));
            }
            let mut member = (&mut *reader).take(header.size);
            let scanner = TarScanner::new(FORMAT, &header.name, limits::FILE_ENTRIES)
                .capture("control", limits::DEB_CONTROL_FILE_BYTES);
            let scanned =
                scan_member(&header.name, compression, &mut member, scanner, limits::DEB_CONTROL_ARCHIVE_BYTES)?;
            skip_rest(&mut member, header.size)?;
            let bytes = scanned
                .captured
                .ok_or_else(|| PackageError::malformed(FORMAT, format!("{} has no control file", header.name)))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| PackageError::malformed(FORMAT, "the control file is not UTF-8"))?;
            control = Some(ControlFile::parse(&text)?);
            continue;
        }
        if let Some(compression) = Compression::of_member(&header.name, "data.tar") {
            let Some(control) = control else {
                return Err(PackageError::malformed(FORMAT, "data.tar comes before control.tar"));
            };
            let mut member = (&mut *reader).take(header.size);
            let scanner = TarScanner::new(FORMAT, &header.name, limits::FILE_ENTRIES);
            let scanned = scan_member(&header.name, compression, &mut member, scanner, limits::DEB_DATA_ARCHIVE_BYTES)?;
            return package_info(&control, scanned.entries);
        }
        return Err(PackageError::malformed(FORMAT, format!("unexpected member {:?}", header.name)));
    }
}

/// Decompresses a member into a tar scanner, turning each way of failing into the error that names it.
fn scan_member(
    member_name: &str,
    compression: Compression,
    member: &mut dyn Read,
    mut scanner: TarScanner,
    limit: u64,
) -> Result<ScanResult, PackageError> {
    match decompress(compression, member, &mut scanner, limit) {
        Ok(_) => scanner.finish(),
        Err(DecompressError::Output(error)) => Err(scanner.take_failure().unwrap_or_else(|| {
            PackageError::Decompress { format: FORMAT, member: member_name.to_owned(), source: error }
        })),
        Err(DecompressError::Input(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
            Err(PackageError::malformed(FORMAT, format!("{member_name} ends before its compressed stream does")))
        }
        Err(DecompressError::Input(source)) => {
            Err(PackageError::Decompress { format: FORMAT, member: member_name.to_owned(), source })
        }
        Err(DecompressError::TooLarge { limit }) => Err(PackageError::LimitExceeded {
            format: FORMAT,
            what: if member_name.starts_with("control") {
                "the decompressed control archive"
            } else {
                "the decompressed data archive"
            },
            actual: limit + 1,
            limit,
        }),
    }
}

fn package_info(control: &ControlFile, file_count: u64) -> Result<PackageInfo, PackageError> {
    let architecture = control.require("Architecture")?.to_owned();
    let (summary, description) = split_description(control.get("Description").unwrap_or_default());
    let mut depends = Vec::new();
    for field in ["Pre-Depends", "Depends"] {
        if let Some(value) = control.get(field) {
            depends.extend(parse_deb_dependencies(value)?);
        }
    }
    let installed_size =
        match control.get("Installed-Size") {
            None | Some("") => None,
            Some(value) => {
                Some(value.trim().parse::<u64>().ok().and_then(|kibibytes| kibibytes.checked_mul(1024)).ok_or_else(
                    || PackageError::malformed(FORMAT, format!("Installed-Size {value:?} is not a size")),
                )?)
            }
        };
    Ok(PackageInfo {
        format: FORMAT,
        name: control.require("Package")?.to_owned(),
        version: control.require("Version")?.to_owned(),
        normalized_architecture: normalize_architecture(&architecture),
        architecture,
        summary,
        description,
        maintainer: control.get("Maintainer").map(str::to_owned),
        vendor: control.get("Origin").map(str::to_owned),
        depends,
        installed_size,
        file_count,
    })
}
