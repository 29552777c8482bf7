//! Validation rules shared by the server (which enforces them) and the CLI (which can check early).

/// Why a value was refused; the server turns it into a `validation_failed` error naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

/// Names of users, groups, systems and tokens: 1 to 64 characters from `A-Z a-z 0-9 . _ -`, starting with a letter
/// or digit, and not a UUID (IDs and names share the same path segment, so a name must never look like an ID).
pub fn name(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() || value.chars().count() > 64 {
        return Err(ValidationError::new(field, "must be 1 to 64 characters long"));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(ValidationError::new(field, "must start with a letter or digit"));
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(ValidationError::new(
            field,
            format!("must contain only letters, digits, '.', '_' and '-', not {bad:?}"),
        ));
    }
    if uuid::Uuid::try_parse(value).is_ok() {
        return Err(ValidationError::new(field, "must not have the form of an ID (UUID)"));
    }
    Ok(())
}

/// Free-text descriptions: at most 1024 characters, no control characters other than newline and tab.
pub fn description(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.chars().count() > 1024 {
        return Err(ValidationError::new(field, "must be at most 1024 characters long"));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(())
}

/// Parses a duration such as `90s`, `15m`, `24h`, `7d` (one number, one unit), in seconds.
pub fn duration_seconds(field: &str, value: &str) -> Result<u64, ValidationError> {
    let error = || ValidationError::new(field, format!("{value:?} is not a duration like 90s, 15m, 24h or 7d"));
    let split = value.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().map_err(|_| error())?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(error()),
    };
    let seconds = number.checked_mul(factor).ok_or_else(error)?;
    if seconds == 0 || seconds > 366 * 86_400 {
        return Err(ValidationError::new(field, "must be between 1 second and 366 days"));
    }
    Ok(seconds)
}

/// Parses a size such as `512M`, `10G`, `1T` or a plain number of bytes, in bytes (binary units: K = 1024).
pub fn size_bytes(field: &str, value: &str) -> Result<u64, ValidationError> {
    let error = || ValidationError::new(field, format!("{value:?} is not a size like 512M, 10G or 1T"));
    let trimmed = value.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|_| error())?;
    let factor: u64 = match unit.trim_end_matches(['i', 'B']).to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(error()),
    };
    number.checked_mul(factor).ok_or_else(error)
}

/// A host name as a guest gets it: RFC 1123 labels (letters, digits, '-', not at either end) separated by dots,
/// at most 253 characters, each label at most 63.
pub fn hostname(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() || value.len() > 253 {
        return Err(ValidationError::new(field, "must be 1 to 253 characters long"));
    }
    for label in value.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(ValidationError::new(field, format!("{value:?} has an empty or over-long label")));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(ValidationError::new(field, format!("label {label:?} must not start or end with '-'")));
        }
        if let Some(bad) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(ValidationError::new(
                field,
                format!("{value:?} may contain only letters, digits, '-' and '.', not {bad:?}"),
            ));
        }
    }
    Ok(())
}

/// Parses an address with its prefix length (`10.77.0.2/24`, `fd00::5/64`).
pub fn cidr(field: &str, value: &str) -> Result<(std::net::IpAddr, u8), ValidationError> {
    let error = |why: &str| ValidationError::new(field, format!("{value:?} is not an address with a prefix: {why}"));
    let (address, prefix) = value.split_once('/').ok_or_else(|| error("expected ADDRESS/PREFIX"))?;
    let address: std::net::IpAddr = address.parse().map_err(|_| error("the address is not IPv4 or IPv6"))?;
    let prefix: u8 = prefix.parse().map_err(|_| error("the prefix is not a number"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(error(&format!("the prefix must be at most {max}")));
    }
    Ok((address, prefix))
}

/// Parses a plain IP address.
pub fn ip_address(field: &str, value: &str) -> Result<std::net::IpAddr, ValidationError> {
    value.parse().map_err(|_| ValidationError::new(field, format!("{value:?} is not an IPv4 or IPv6 address")))
}

/// The network address of `address/prefix` (host bits cleared).
pub fn network_address(address: std::net::IpAddr, prefix: u8) -> std::net::IpAddr {
    match address {
        std::net::IpAddr::V4(a) => {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
            std::net::IpAddr::V4((u32::from(a) & mask).into())
        }
        std::net::IpAddr::V6(a) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix.min(128))) };
            std::net::IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

/// Whether `address` lies in `network/prefix`.
pub fn in_subnet(address: std::net::IpAddr, network: std::net::IpAddr, prefix: u8) -> bool {
    match (address, network) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(n)) => {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(n)) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("name", "web-01.example_a").is_ok());
        assert!(name("name", "").is_err());
        assert!(name("name", "-x").is_err());
        assert!(name("name", "a b").is_err());
        assert!(name("name", &"a".repeat(65)).is_err());
        assert!(name("name", "6f1c2b9e-8e1a-4d5e-9f3c-2a1b0c9d8e7f").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration_seconds("expires", "24h"), Ok(86_400));
        assert_eq!(duration_seconds("expires", "90s"), Ok(90));
        assert!(duration_seconds("expires", "0s").is_err());
        assert!(duration_seconds("expires", "24").is_err());
        assert!(duration_seconds("expires", "h").is_err());
        assert!(duration_seconds("expires", "99999999999999999999d").is_err());
        assert!(duration_seconds("expires", "400d").is_err());
    }

    #[test]
    fn sizes_hostnames_and_addresses() {
        assert_eq!(size_bytes("disk", "512M").unwrap(), 512 << 20);
        assert_eq!(size_bytes("disk", "10GiB").unwrap(), 10 << 30);
        assert_eq!(size_bytes("disk", "4096").unwrap(), 4096);
        assert!(size_bytes("disk", "ten").is_err());
        assert!(size_bytes("disk", "5X").is_err());
        assert!(size_bytes("disk", "99999999999T").is_err());
        assert!(hostname("hostname", "web-1.example").is_ok());
        assert!(hostname("hostname", "-web").is_err());
        assert!(hostname("hostname", "a_b").is_err());
        assert!(hostname("hostname", "a..b").is_err());
        let (address, prefix) = cidr("address", "10.77.0.2/24").unwrap();
        assert_eq!(prefix, 24);
        assert!(in_subnet(address, "10.77.0.0".parse().unwrap(), 24));
        assert!(!in_subnet(address, "10.78.0.0".parse().unwrap(), 24));
        assert!(cidr("address", "10.77.0.2/33").is_err());
        assert!(cidr("address", "10.77.0.2").is_err());
        assert!(cidr("address", "fd00::1/64").is_ok());
    }
}
