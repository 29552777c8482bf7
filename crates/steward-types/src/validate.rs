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
}
