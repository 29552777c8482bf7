//! Reading an RPM package's metadata from its lead, signature header and main header (the payload is not
//! read: the header lists the files).

use std::io::Read;

use super::LEAD_LENGTH;
use super::header::{Header, tag};
use crate::dependency::sense;
use crate::{
    Alternative, Dependency, PackageError, PackageFormat, PackageInfo, RelationOp, VersionRelation, limits,
    normalize_architecture,
};

const FORMAT: PackageFormat = PackageFormat::Rpm;

/// Reads an RPM package from its first byte.
pub(crate) fn read_rpm(reader: &mut dyn Read) -> Result<PackageInfo, PackageError> {
    let mut lead = [0u8; LEAD_LENGTH];
    reader.read_exact(&mut lead).map_err(|source| PackageError::read(FORMAT, "the lead", source))?;
    let source_package = u16::from_be_bytes([lead[6], lead[7]]) == 1;

    let signature = Header::read(reader, "signature header", limits::RPM_HEADER_TAGS, limits::RPM_HEADER_BYTES / 16)?;
    let padding = (8 - signature.length % 8) % 8;
    let mut skipped = [0u8; 8];
    reader
        .read_exact(&mut skipped[..padding as usize])
        .map_err(|source| PackageError::read(FORMAT, "the signature padding", source))?;
    let header = Header::read(reader, "main header", limits::RPM_HEADER_TAGS, limits::RPM_HEADER_BYTES)?;
    package_info(&header, source_package)
}

fn required(header: &Header, tag: u32, name: &str) -> Result<String, PackageError> {
    match header.string(tag)? {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(PackageError::malformed(FORMAT, format!("the header has no {name}"))),
    }
}

fn package_info(header: &Header, source_package: bool) -> Result<PackageInfo, PackageError> {
    let name = required(header, tag::NAME, "NAME")?;
    let version = required(header, tag::VERSION, "VERSION")?;
    let release = required(header, tag::RELEASE, "RELEASE")?;
    let full_version = match header.integer(tag::EPOCH)? {
        Some(epoch) => format!("{epoch}:{version}-{release}"),
        None => format!("{version}-{release}"),
    };
    // A source package has no SOURCERPM tag; its architecture is "src" whatever ARCH says.
    let source_package = source_package || header.count(tag::SOURCE_RPM) == 0;
    let architecture = if source_package { "src".to_owned() } else { header.string(tag::ARCH)?.unwrap_or_default() };
    let installed_size = match header.integer(tag::LONG_SIZE)? {
        Some(size) => Some(size),
        None => header.integer(tag::SIZE)?,
    };
    let file_count = match header.count(tag::BASE_NAMES) {
        0 => header.count(tag::OLD_FILE_NAMES),
        count => count,
    } as u64;
    if file_count > limits::FILE_ENTRIES {
        return Err(PackageError::LimitExceeded {
            format: FORMAT,
            what: "the number of files",
            actual: file_count,
            limit: limits::FILE_ENTRIES,
        });
    }
    Ok(PackageInfo {
        format: FORMAT,
        name,
        version: full_version,
        normalized_architecture: normalize_architecture(&architecture),
        architecture,
        summary: header.string(tag::SUMMARY)?.unwrap_or_default(),
        description: header.string(tag::DESCRIPTION)?.unwrap_or_default(),
        maintainer: header.string(tag::PACKAGER)?,
        vendor: header.string(tag::VENDOR)?,
        depends: requirements(header)?,
        installed_size,
        file_count,
    })
}

/// The requirements: three parallel arrays (names, sense flags, versions); flags and versions may be absent.
fn requirements(header: &Header) -> Result<Vec<Dependency>, PackageError> {
    let names = header.string_array(tag::REQUIRE_NAME)?;
    let flags = header.integers(tag::REQUIRE_FLAGS)?;
    let versions = header.string_array(tag::REQUIRE_VERSION)?;
    if (!flags.is_empty() && flags.len() != names.len()) || (!versions.is_empty() && versions.len() != names.len()) {
        return Err(PackageError::malformed(
            FORMAT,
            format!(
                "{} requirement names, {} flags and {} versions (they must match)",
                names.len(),
                flags.len(),
                versions.len()
            ),
        ));
    }
    Ok(names
        .into_iter()
        .enumerate()
        .map(|(index, name)| {
            let flags = flags.get(index).copied().unwrap_or(0) as u32;
            let version = versions.get(index).cloned().unwrap_or_default();
            let relation = match RelationOp::from_rpm_flags(flags) {
                Some(op) if !version.is_empty() => Some(VersionRelation { op, version }),
                _ => None,
            };
            let internal = flags & (sense::RPMLIB | sense::INTERPRETER | sense::CONFIG) != 0
                || name.starts_with("rpmlib(")
                || name.starts_with("config(");
            match parse_simple_rich_dependency(&name) {
                Some(mut dependency) if relation.is_none() => {
                    dependency.internal = internal;
                    dependency
                }
                _ => Dependency { name, relation, alternatives: Vec::new(), internal },
            }
        })
        .collect())
}

/// Reads back the rich dependencies this crate writes, `(a >= 1 or b)`: alternatives of a name with an
/// optional relation. Anything richer (`if`, `with`, nesting) is not parsed and stays a whole name.
fn parse_simple_rich_dependency(name: &str) -> Option<Dependency> {
    let inner = name.strip_prefix('(')?.strip_suffix(')')?;
    if inner.contains(['(', ')']) {
        return None;
    }
    let mut choices = inner.split(" or ").map(|choice| {
        let words: Vec<&str> = choice.split_whitespace().collect();
        match words[..] {
            [name] => Some(Alternative { name: name.to_owned(), relation: None }),
            [name, symbol, version] => {
                let op = match symbol {
                    "<" => RelationOp::Less,
                    "<=" => RelationOp::LessOrEqual,
                    "=" | "==" => RelationOp::Equal,
                    ">=" => RelationOp::GreaterOrEqual,
                    ">" => RelationOp::Greater,
                    _ => return None,
                };
                Some(Alternative {
                    name: name.to_owned(),
                    relation: Some(VersionRelation { op, version: version.to_owned() }),
                })
            }
            _ => None,
        }
    });
    let first = choices.next()??;
    let alternatives = choices.collect::<Option<Vec<_>>>()?;
    if alternatives.is_empty() {
        return None;
    }
    Some(Dependency { name: first.name, relation: first.relation, alternatives, internal: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_rich_dependencies_become_alternatives() {
        let parsed = parse_simple_rich_dependency("(a >= 1.0 or b or c < 2)").expect("simple rich dependency");
        assert_eq!(
            parsed,
            Dependency::versioned("a", RelationOp::GreaterOrEqual, "1.0")
                .or("b", None)
                .or("c", Some((RelationOp::Less, "2")))
        );
        assert!(parse_simple_rich_dependency("(a if b)").is_none());
        assert!(parse_simple_rich_dependency("(a or (b and c))").is_none());
        assert!(parse_simple_rich_dependency("(a)").is_none());
        assert!(parse_simple_rich_dependency("a").is_none());
    }
}
