//! Dependencies: the shared model, Debian's `Depends` syntax (parse and write) and the RPM sense flags.
//!
//! A Debian dependency list is `name [(op version)] [| name [(op version)]]...` separated by commas
//! (deb-control(5)); an RPM requirement is a name, a sense (flags) and a version in three parallel header
//! arrays. Alternatives (`a | b`) are written to RPM as a rich dependency `(a or b)`, which rpm reads since 4.13.

use std::fmt;

use crate::{PackageError, PackageFormat};

/// The comparison of a versioned dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelationOp {
    /// Strictly earlier (Debian `<<`, RPM `<`).
    Less,
    /// Earlier or equal (`<=`; Debian's obsolete `<` means this too).
    LessOrEqual,
    /// Exactly equal (`=`).
    Equal,
    /// Later or equal (`>=`; Debian's obsolete `>` means this too).
    GreaterOrEqual,
    /// Strictly later (Debian `>>`, RPM `>`).
    Greater,
}

/// RPM's sense flags (rpmds.h): the comparison bits and the bits that mark requirements rpm adds itself.
pub(crate) mod sense {
    pub const LESS: u32 = 1 << 1;
    pub const GREATER: u32 = 1 << 2;
    pub const EQUAL: u32 = 1 << 3;
    pub const COMPARISON_MASK: u32 = LESS | GREATER | EQUAL;
    pub const INTERPRETER: u32 = 1 << 8;
    pub const SCRIPT_PRE: u32 = 1 << 9;
    pub const SCRIPT_POST: u32 = 1 << 10;
    pub const SCRIPT_PREUN: u32 = 1 << 11;
    pub const SCRIPT_POSTUN: u32 = 1 << 12;
    pub const RPMLIB: u32 = 1 << 24;
    pub const CONFIG: u32 = 1 << 28;
}

impl RelationOp {
    /// Debian's spelling (deb-control(5)).
    pub fn deb_symbol(self) -> &'static str {
        match self {
            Self::Less => "<<",
            Self::LessOrEqual => "<=",
            Self::Equal => "=",
            Self::GreaterOrEqual => ">=",
            Self::Greater => ">>",
        }
    }

    /// RPM's spelling (as in `rpm -qp --requires` and rich dependencies).
    pub fn rpm_symbol(self) -> &'static str {
        match self {
            Self::Less => "<",
            Self::LessOrEqual => "<=",
            Self::Equal => "=",
            Self::GreaterOrEqual => ">=",
            Self::Greater => ">",
        }
    }

    pub(crate) fn rpm_flags(self) -> u32 {
        match self {
            Self::Less => sense::LESS,
            Self::LessOrEqual => sense::LESS | sense::EQUAL,
            Self::Equal => sense::EQUAL,
            Self::GreaterOrEqual => sense::GREATER | sense::EQUAL,
            Self::Greater => sense::GREATER,
        }
    }

    /// The comparison of RPM sense flags, or `None` when they hold none (an unversioned requirement) or a
    /// combination that compares nothing (`<` and `>` together).
    pub(crate) fn from_rpm_flags(flags: u32) -> Option<Self> {
        match flags & sense::COMPARISON_MASK {
            value if value == sense::LESS => Some(Self::Less),
            value if value == sense::LESS | sense::EQUAL => Some(Self::LessOrEqual),
            value if value == sense::EQUAL => Some(Self::Equal),
            value if value == sense::GREATER | sense::EQUAL => Some(Self::GreaterOrEqual),
            value if value == sense::GREATER => Some(Self::Greater),
            _ => None,
        }
    }

    fn from_deb_symbol(symbol: &str) -> Option<Self> {
        match symbol {
            "<<" => Some(Self::Less),
            "<=" | "<" => Some(Self::LessOrEqual),
            "=" => Some(Self::Equal),
            ">=" | ">" => Some(Self::GreaterOrEqual),
            ">>" => Some(Self::Greater),
            _ => None,
        }
    }
}

/// A version constraint: `op version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionRelation {
    pub op: RelationOp,
    /// The version as the package spells it (`1.2-3`, `2:1.0`).
    pub version: String,
}

/// Another package that satisfies a [`Dependency`] instead of its first one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Alternative {
    pub name: String,
    pub relation: Option<VersionRelation>,
}

/// One dependency of a package: a package name with an optional version constraint, satisfied also by any of
/// its `alternatives` (Debian's `a | b`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dependency {
    /// The package (or, in RPM, capability or file) required. An RPM rich dependency that this crate did not
    /// write (`(a if b)`) is kept whole here, unparsed.
    pub name: String,
    pub relation: Option<VersionRelation>,
    pub alternatives: Vec<Alternative>,
    /// RPM only: a requirement rpm adds itself (`rpmlib(...)` features, a scriptlet's interpreter such as
    /// `/bin/sh`), which a user interface may hide. Always false for Debian packages and for specs.
    pub internal: bool,
}

impl Dependency {
    /// A dependency on any version of `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), relation: None, alternatives: Vec::new(), internal: false }
    }

    /// A dependency on `name` with a version constraint.
    pub fn versioned(name: impl Into<String>, op: RelationOp, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            relation: Some(VersionRelation { op, version: version.into() }),
            alternatives: Vec::new(),
            internal: false,
        }
    }

    /// The same dependency, also satisfied by `name` (with an optional constraint).
    pub fn or(mut self, name: impl Into<String>, relation: Option<(RelationOp, &str)>) -> Self {
        self.alternatives.push(Alternative {
            name: name.into(),
            relation: relation.map(|(op, version)| VersionRelation { op, version: version.to_owned() }),
        });
        self
    }

    /// Every choice in order: the first package, then the alternatives.
    pub fn choices(&self) -> impl Iterator<Item = (&str, Option<&VersionRelation>)> {
        std::iter::once((self.name.as_str(), self.relation.as_ref())).chain(
            self.alternatives.iter().map(|alternative| (alternative.name.as_str(), alternative.relation.as_ref())),
        )
    }

    /// Debian's spelling: `a (>= 1.0) | b`.
    pub fn to_deb_string(&self) -> String {
        let choices: Vec<String> = self
            .choices()
            .map(|(name, relation)| match relation {
                Some(relation) => format!("{name} ({} {})", relation.op.deb_symbol(), relation.version),
                None => name.to_owned(),
            })
            .collect();
        choices.join(" | ")
    }

    /// RPM's spelling of the requirement's name: the name itself, or a rich dependency `(a >= 1.0 or b)` when
    /// there are alternatives (whose constraints are then inside the name).
    pub(crate) fn to_rpm_name(&self) -> String {
        if self.alternatives.is_empty() {
            return self.name.clone();
        }
        let choices: Vec<String> = self
            .choices()
            .map(|(name, relation)| match relation {
                Some(relation) => format!("{name} {} {}", relation.op.rpm_symbol(), relation.version),
                None => name.to_owned(),
            })
            .collect();
        format!("({})", choices.join(" or "))
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_deb_string())
    }
}

/// Parses a Debian dependency field (`Depends`, `Pre-Depends`, ...): comma-separated entries of alternatives
/// separated by `|`, each `name[:arch-qualifier] [(op version)]`. Fails on an empty entry or alternative, a
/// name with characters Debian does not allow, an unknown operator, a missing version or parenthesis.
pub fn parse_deb_dependencies(field: &str) -> Result<Vec<Dependency>, PackageError> {
    let field = field.trim();
    if field.is_empty() {
        return Ok(Vec::new());
    }
    field
        .split(',')
        .enumerate()
        .map(|(index, entry)| {
            parse_deb_entry(entry).map_err(|message| {
                PackageError::malformed(
                    PackageFormat::Deb,
                    format!("dependency {} ({:?}): {message}", index + 1, entry.trim()),
                )
            })
        })
        .collect()
}

fn parse_deb_entry(entry: &str) -> Result<Dependency, String> {
    let mut choices = entry.split('|').map(parse_deb_choice);
    let (name, relation) = choices.next().ok_or_else(|| "empty entry".to_owned())??;
    let mut dependency = Dependency { name, relation, alternatives: Vec::new(), internal: false };
    for choice in choices {
        let (name, relation) = choice?;
        dependency.alternatives.push(Alternative { name, relation });
    }
    Ok(dependency)
}

fn parse_deb_choice(choice: &str) -> Result<(String, Option<VersionRelation>), String> {
    let choice = choice.trim();
    if choice.is_empty() {
        return Err("empty package name".to_owned());
    }
    let name_end = choice.find(|character: char| character.is_whitespace() || character == '(').unwrap_or(choice.len());
    let (name, rest) = choice.split_at(name_end);
    check_deb_dependency_name(name)?;
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok((name.to_owned(), None));
    }
    let inner = rest
        .strip_prefix('(')
        .ok_or_else(|| format!("unexpected {rest:?} after the package name"))?
        .strip_suffix(')')
        .ok_or_else(|| {
            format!("the version relation {rest:?} lacks its closing parenthesis or is followed by more text")
        })?
        .trim();
    let op_end = inner.find(|character: char| !matches!(character, '<' | '>' | '=')).unwrap_or(inner.len());
    let (symbol, version) = inner.split_at(op_end);
    let op = RelationOp::from_deb_symbol(symbol).ok_or_else(|| {
        if symbol.is_empty() {
            format!("the version relation ({inner}) has no operator (<<, <=, =, >=, >>)")
        } else {
            format!("unknown operator {symbol:?} (expected <<, <=, =, >= or >>)")
        }
    })?;
    let version = version.trim();
    if version.is_empty() {
        return Err(format!("the operator {symbol} has no version"));
    }
    check_version_characters(version).map_err(|message| format!("version {version:?}: {message}"))?;
    Ok((name.to_owned(), Some(VersionRelation { op, version: version.to_owned() })))
}

/// A Debian package name (policy 5.6.1): lower-case letters, digits, `+`, `-`, `.`, at least two characters,
/// starting with a letter or digit; in a dependency it may carry an architecture qualifier (`:any`).
fn check_deb_dependency_name(name: &str) -> Result<(), String> {
    let (package, qualifier) = match name.split_once(':') {
        Some((package, qualifier)) => (package, Some(qualifier)),
        None => (name, None),
    };
    check_deb_package_name(package)?;
    if let Some(qualifier) = qualifier
        && (qualifier.is_empty()
            || !qualifier.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'))
    {
        return Err(format!("bad architecture qualifier {qualifier:?} in {name:?}"));
    }
    Ok(())
}

/// Checks a Debian package name (policy 5.6.1).
pub(crate) fn check_deb_package_name(name: &str) -> Result<(), String> {
    let valid_characters =
        name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"+-.".contains(&byte));
    let valid_start = name.bytes().next().is_some_and(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit());
    if name.len() < 2 || !valid_characters || !valid_start {
        return Err(format!(
            "{name:?} is not a Debian package name (at least two of a-z 0-9 + - ., starting with a letter or digit)"
        ));
    }
    Ok(())
}

/// Checks the characters of a version in a relation: those both formats allow (`A-Z a-z 0-9 . + ~ : -`).
pub(crate) fn check_version_characters(version: &str) -> Result<(), String> {
    if version.is_empty() {
        return Err("empty".to_owned());
    }
    match version.chars().find(|character| !(character.is_ascii_alphanumeric() || ".+~:-".contains(*character))) {
        Some(character) => Err(format!("character {character:?} is not allowed (only A-Z a-z 0-9 . + ~ : -)")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_relations_and_qualifiers_are_parsed() -> Result<(), PackageError> {
        let parsed = parse_deb_dependencies(
            "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0,python3:any, adduser,\n perl (<< 6~), awk (=1:2-3)",
        )?;
        assert_eq!(
            parsed,
            vec![
                Dependency::versioned("libc6", RelationOp::GreaterOrEqual, "2.34"),
                Dependency::versioned("debconf", RelationOp::GreaterOrEqual, "0.5").or("debconf-2.0", None),
                Dependency::new("python3:any"),
                Dependency::new("adduser"),
                Dependency::versioned("perl", RelationOp::Less, "6~"),
                Dependency::versioned("awk", RelationOp::Equal, "1:2-3"),
            ]
        );
        Ok(())
    }

    #[test]
    fn obsolete_operators_mean_or_equal() -> Result<(), PackageError> {
        let parsed = parse_deb_dependencies("pa (< 1), pb (> 2)")?;
        assert_eq!(parsed[0].relation.as_ref().map(|relation| relation.op), Some(RelationOp::LessOrEqual));
        assert_eq!(parsed[1].relation.as_ref().map(|relation| relation.op), Some(RelationOp::GreaterOrEqual));
        Ok(())
    }

    #[test]
    fn an_empty_field_has_no_dependencies() -> Result<(), PackageError> {
        assert!(parse_deb_dependencies("  \n ")?.is_empty());
        Ok(())
    }

    #[test]
    fn written_dependencies_parse_back() -> Result<(), PackageError> {
        let dependencies = vec![
            Dependency::versioned("libssl3", RelationOp::GreaterOrEqual, "3.0.0").or("libssl1.1", None),
            Dependency::versioned("bash", RelationOp::Greater, "5"),
        ];
        let written: Vec<String> = dependencies.iter().map(Dependency::to_deb_string).collect();
        assert_eq!(written, ["libssl3 (>= 3.0.0) | libssl1.1", "bash (>> 5)"]);
        assert_eq!(parse_deb_dependencies(&written.join(", "))?, dependencies);
        Ok(())
    }

    #[test]
    fn rich_rpm_names_carry_the_alternatives() {
        let dependency = Dependency::versioned("a", RelationOp::GreaterOrEqual, "1").or("b", None);
        assert_eq!(dependency.to_rpm_name(), "(a >= 1 or b)");
        assert_eq!(Dependency::new("a").to_rpm_name(), "a");
    }

    #[test]
    fn bad_input_is_refused_with_what_was_wrong() {
        for (input, expected) in [
            ("pa, , pb", "empty package name"),
            ("pa |", "empty package name"),
            ("pa (>= 1", "closing parenthesis"),
            ("pa (=> 1)", "unknown operator"),
            ("pa (1.0)", "no operator"),
            ("pa (>=)", "has no version"),
            ("pa (>= 1 2)", "not allowed"),
            ("Foo", "not a Debian package name"),
            ("pa pb", "unexpected"),
            ("x", "not a Debian package name"),
            ("pa:", "architecture qualifier"),
            ("pa (>= 1) [amd64]", "closing parenthesis"),
        ] {
            let error = parse_deb_dependencies(input).expect_err(input);
            let message = error.to_string();
            assert!(message.contains(expected), "{input:?}: {message}");
        }
    }

    #[test]
    fn rpm_flags_round_trip_every_operator() {
        for op in [
            RelationOp::Less,
            RelationOp::LessOrEqual,
            RelationOp::Equal,
            RelationOp::GreaterOrEqual,
            RelationOp::Greater,
        ] {
            assert_eq!(RelationOp::from_rpm_flags(op.rpm_flags() | sense::RPMLIB), Some(op));
        }
        assert_eq!(RelationOp::from_rpm_flags(0), None);
        assert_eq!(RelationOp::from_rpm_flags(sense::LESS | sense::GREATER), None);
    }
}
