//! Architectures: the ones a package can be built for, how each format spells them, and the normalized form
//! under which packages read from either format are compared.

use std::fmt;
use std::str::FromStr;

use crate::PackageError;

/// An architecture a package can be built for. Each format has its own spelling ([`Architecture::deb_name`],
/// [`Architecture::rpm_name`]); [`Architecture::normalized`] is the form shared by both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// 64-bit x86: Debian `amd64`, RPM `x86_64`.
    X86_64,
    /// IBM Z: `s390x` in both formats.
    S390x,
    /// 64-bit ARM: Debian `arm64`, RPM `aarch64`.
    Aarch64,
    /// 64-bit little-endian POWER: Debian `ppc64el`, RPM `ppc64le`.
    Ppc64le,
    /// Architecture-independent content: Debian `all`, RPM `noarch`.
    All,
}

impl Architecture {
    /// Every architecture, in a stable order (for messages and tests).
    pub const ALL: [Architecture; 5] = [Self::X86_64, Self::S390x, Self::Aarch64, Self::Ppc64le, Self::All];

    /// The spelling of the `Architecture` field of a Debian package.
    pub fn deb_name(self) -> &'static str {
        match self {
            Self::X86_64 => "amd64",
            Self::S390x => "s390x",
            Self::Aarch64 => "arm64",
            Self::Ppc64le => "ppc64el",
            Self::All => "all",
        }
    }

    /// The spelling of the `ARCH` tag of an RPM package.
    pub fn rpm_name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::S390x => "s390x",
            Self::Aarch64 => "aarch64",
            Self::Ppc64le => "ppc64le",
            Self::All => "noarch",
        }
    }

    /// The form shared by both formats: `x86_64`, `s390x`, `aarch64`, `ppc64le` or `all`.
    pub fn normalized(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::S390x => "s390x",
            Self::Aarch64 => "aarch64",
            Self::Ppc64le => "ppc64le",
            Self::All => "all",
        }
    }

    /// The RPM lead's architecture number (the lead is legacy; rpm ignores it, but writes these values).
    pub(crate) fn rpm_lead_number(self) -> u16 {
        match self {
            Self::X86_64 | Self::All => 1,
            Self::S390x => 15,
            Self::Aarch64 => 19,
            Self::Ppc64le => 5,
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.normalized())
    }
}

impl FromStr for Architecture {
    type Err = PackageError;

    /// Accepts the normalized form and both formats' spellings.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Architecture::ALL
            .into_iter()
            .find(|architecture| {
                text == architecture.normalized() || text == architecture.deb_name() || text == architecture.rpm_name()
            })
            .ok_or_else(|| {
                let known: Vec<&str> = Architecture::ALL.iter().map(|architecture| architecture.normalized()).collect();
                PackageError::invalid_spec(
                    "architecture",
                    format!("unknown architecture {text:?} (known: {}, or a format's own spelling)", known.join(", ")),
                )
            })
    }
}

/// The normalized form of an architecture as a package spells it: the known ones map to
/// [`Architecture::normalized`], the 32-bit x86 family to `i686`, anything else stays as it is.
pub fn normalize_architecture(spelled: &str) -> String {
    if let Ok(architecture) = spelled.parse::<Architecture>() {
        return architecture.normalized().to_owned();
    }
    match spelled {
        "i386" | "i486" | "i586" | "i686" => "i686".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_normalizes_to_the_shared_form() {
        for (spelled, normalized) in [
            ("amd64", "x86_64"),
            ("x86_64", "x86_64"),
            ("s390x", "s390x"),
            ("arm64", "aarch64"),
            ("aarch64", "aarch64"),
            ("ppc64el", "ppc64le"),
            ("noarch", "all"),
            ("all", "all"),
            ("i386", "i686"),
            ("riscv64", "riscv64"),
        ] {
            assert_eq!(normalize_architecture(spelled), normalized, "{spelled}");
        }
    }

    #[test]
    fn an_unknown_architecture_is_refused_with_the_known_ones() {
        let error = "sparc".parse::<Architecture>().expect_err("sparc is not buildable");
        let message = error.to_string();
        assert!(message.contains("\"sparc\"") && message.contains("s390x"), "{message}");
    }
}
