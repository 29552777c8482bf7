//! Software distribution and system accounts: the requests the server makes of an agent to install, upgrade or
//! remove a package with the system's own tool, and to list and change users and groups with shadow-utils.
//!
//! A package is installed in three steps: [`AgentRequest::PackageStage`](crate::AgentRequest::PackageStage) makes a
//! private directory for it (answered with [`PackageStaged`]), the server pushes the package file there with an
//! ordinary file transfer (`files.rs`), then [`PackageOperation`] runs the tool on it; the agent removes the
//! staged file afterwards, whatever the tool did. Removing a package needs only its name.
//!
//! Every change answers with a [`ToolOutcome`]: each command the agent ran (its argument vector, never its
//! standard input), its exit code and its exact output, so the server reports what the tool reported.
//!
//! A password travels only inside [`AccountChange::SetPassword`] or [`AccountChange::CreateUser`] as a
//! [`Secret`], whose `Debug` form hides it; the agent writes it to `chpasswd`'s standard input, which computes the
//! hash. It is never part of a command line, a log line or an answer.

use serde::{Deserialize, Serialize};

use crate::CommandOutcome;

/// The longest user or group name (shadow-utils' default limit).
pub const MAX_ACCOUNT_NAME_BYTES: usize = 32;
/// The longest password accepted.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A package's format, which decides the tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageFormat {
    Deb,
    Rpm,
}

impl PackageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deb => "deb",
            Self::Rpm => "rpm",
        }
    }
}

/// What to do with a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PackageAction {
    /// Install the package file (dependencies through apt-get or dnf/zypper where the system has them).
    Install,
    /// Install the package file over an older version.
    Upgrade,
    /// Remove the package by name.
    Remove,
}

impl PackageAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Install => "install",
            Self::Upgrade => "upgrade",
            Self::Remove => "remove",
        }
    }
}

/// The answer to `PackageStage`: a fresh directory, writable by file transfers, where the package file goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageStaged {
    pub directory: String,
}

/// Install, upgrade or remove one package with the system's tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageOperation {
    pub action: PackageAction,
    pub format: PackageFormat,
    /// The package's name (what `remove` removes).
    pub name: String,
    /// The staged package file (install and upgrade); it must be inside a directory `PackageStage` made.
    #[serde(default)]
    pub file: Option<String>,
}

/// One command the agent ran for a change, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ToolRun {
    /// The argument vector as run (standard input, which may hold a password, is never shown).
    pub command: Vec<String>,
    /// The exit code, when the command exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// True when it was killed at its timeout.
    pub timed_out: bool,
    /// Its standard output and standard error exactly as written (each cut at 1 MiB).
    pub stdout: String,
    pub stderr: String,
}

impl ToolRun {
    /// The run of `command` that ended as `outcome` says.
    pub fn new(command: Vec<String>, outcome: CommandOutcome) -> Self {
        Self {
            command,
            exit_code: outcome.exit_code,
            signal: outcome.signal,
            timed_out: outcome.timed_out,
            stdout: outcome.stdout,
            stderr: outcome.stderr,
        }
    }

    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// The commands a change ran, in order; the first that failed is the last one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ToolOutcome {
    pub runs: Vec<ToolRun>,
}

impl ToolOutcome {
    /// True when every command ran and exited with 0.
    pub fn succeeded(&self) -> bool {
        !self.runs.is_empty() && self.runs.iter().all(ToolRun::succeeded)
    }

    /// The last command run (the failed one, when one failed).
    pub fn last(&self) -> Option<&ToolRun> {
        self.runs.last()
    }
}

/// A password: serialized as the plain string (it must reach the agent), shown by `Debug` as `<hidden>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = Password))]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("<hidden>")
    }
}

/// A change to the system's accounts, carried out with shadow-utils (also the API's body of an account change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "change", rename_all = "snake_case", deny_unknown_fields)]
pub enum AccountChange {
    /// `useradd` (then `chpasswd` when a password is given).
    CreateUser(UserSettings),
    /// `usermod` with the settings given.
    ModifyUser(UserModification),
    /// `userdel` (`-r`: with the home directory and mail spool).
    DeleteUser {
        name: String,
        #[serde(default)]
        remove_home: bool,
    },
    /// `chpasswd -c SHA512`, the password on its standard input.
    SetPassword { name: String, password: Secret },
    /// `usermod -L`: the password hash gets a `!` in front.
    Lock { name: String },
    /// `usermod -U`.
    Unlock { name: String },
    /// `chage` with the settings given.
    Expiry(ExpirySettings),
    /// `usermod -a -G`: add to these supplementary groups.
    AddToGroups { name: String, groups: Vec<String> },
    /// `gpasswd -d`: remove from one supplementary group.
    RemoveFromGroup { name: String, group: String },
    /// `groupadd`.
    CreateGroup {
        name: String,
        #[serde(default)]
        gid: Option<u32>,
        #[serde(default)]
        system: bool,
    },
    /// `groupdel`.
    DeleteGroup { name: String },
}

impl AccountChange {
    /// The user or group the change is about.
    pub fn subject(&self) -> &str {
        match self {
            Self::CreateUser(settings) => &settings.name,
            Self::ModifyUser(modification) => &modification.name,
            Self::Expiry(expiry) => &expiry.name,
            Self::DeleteUser { name, .. }
            | Self::SetPassword { name, .. }
            | Self::Lock { name }
            | Self::Unlock { name }
            | Self::AddToGroups { name, .. }
            | Self::RemoveFromGroup { name, .. }
            | Self::CreateGroup { name, .. }
            | Self::DeleteGroup { name } => name,
        }
    }

    /// The change's name as the API spells it (`create_user`, `lock`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::CreateUser(_) => "create_user",
            Self::ModifyUser(_) => "modify_user",
            Self::DeleteUser { .. } => "delete_user",
            Self::SetPassword { .. } => "set_password",
            Self::Lock { .. } => "lock",
            Self::Unlock { .. } => "unlock",
            Self::Expiry(_) => "expiry",
            Self::AddToGroups { .. } => "add_to_groups",
            Self::RemoveFromGroup { .. } => "remove_from_group",
            Self::CreateGroup { .. } => "create_group",
            Self::DeleteGroup { .. } => "delete_group",
        }
    }

    /// Checks every name, path and text both ends rely on; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::CreateUser(settings) => settings.validate(),
            Self::ModifyUser(modification) => modification.validate(),
            Self::Expiry(expiry) => expiry.validate(),
            Self::SetPassword { name, password } => {
                account_name("name", name)?;
                password_text("password", &password.0)
            }
            Self::AddToGroups { name, groups } => {
                account_name("name", name)?;
                if groups.is_empty() {
                    return Err("groups: name at least one group".into());
                }
                groups.iter().try_for_each(|group| account_name("groups", group))
            }
            Self::RemoveFromGroup { name, group } => {
                account_name("name", name)?;
                account_name("group", group)
            }
            Self::DeleteUser { name, .. }
            | Self::Lock { name }
            | Self::Unlock { name }
            | Self::CreateGroup { name, .. }
            | Self::DeleteGroup { name } => account_name("name", name),
        }
    }
}

/// A new user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserSettings {
    pub name: String,
    #[serde(default)]
    pub uid: Option<u32>,
    /// The primary group (name or number); by default what `useradd` chooses (a group of the user's name, or
    /// `users`, as the system's `/etc/login.defs` says).
    #[serde(default)]
    pub primary_group: Option<String>,
    /// Supplementary groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The GECOS field (the full name).
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub home: Option<String>,
    /// Create the home directory (`useradd -m`).
    #[serde(default)]
    pub create_home: bool,
    #[serde(default)]
    pub shell: Option<String>,
    /// A system account (`useradd -r`: a UID below `UID_MIN`, no aging).
    #[serde(default)]
    pub system: bool,
    /// Set with `chpasswd` after the user is created; never recorded.
    #[serde(default)]
    pub password: Option<Secret>,
}

impl UserSettings {
    pub fn validate(&self) -> Result<(), String> {
        account_name("name", &self.name)?;
        if let Some(group) = &self.primary_group {
            group_reference("primary_group", group)?;
        }
        self.groups.iter().try_for_each(|group| account_name("groups", group))?;
        if let Some(comment) = &self.comment {
            field_text("comment", comment)?;
        }
        if let Some(home) = &self.home {
            absolute_path("home", home)?;
        }
        if let Some(shell) = &self.shell {
            absolute_path("shell", shell)?;
        }
        if let Some(password) = &self.password {
            password_text("password", &password.0)?;
        }
        Ok(())
    }
}

/// Changes to an existing user; absent fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserModification {
    pub name: String,
    #[serde(default)]
    pub new_name: Option<String>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub primary_group: Option<String>,
    /// Replaces the supplementary groups (`usermod -G`); use `add_to_groups` to add.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub home: Option<String>,
    /// Move the home directory's content to the new `home` (`usermod -m`).
    #[serde(default)]
    pub move_home: bool,
    #[serde(default)]
    pub shell: Option<String>,
}

impl UserModification {
    pub fn validate(&self) -> Result<(), String> {
        account_name("name", &self.name)?;
        if let Some(new_name) = &self.new_name {
            account_name("new_name", new_name)?;
        }
        if let Some(group) = &self.primary_group {
            group_reference("primary_group", group)?;
        }
        if let Some(groups) = &self.groups {
            groups.iter().try_for_each(|group| account_name("groups", group))?;
        }
        if let Some(comment) = &self.comment {
            field_text("comment", comment)?;
        }
        if let Some(home) = &self.home {
            absolute_path("home", home)?;
        }
        if let Some(shell) = &self.shell {
            absolute_path("shell", shell)?;
        }
        if self.move_home && self.home.is_none() {
            return Err("move_home: needs a new home".into());
        }
        let changes = [
            self.new_name.is_some(),
            self.uid.is_some(),
            self.primary_group.is_some(),
            self.groups.is_some(),
            self.comment.is_some(),
            self.home.is_some(),
            self.shell.is_some(),
        ];
        if !changes.contains(&true) {
            return Err("nothing to change: give new_name, uid, primary_group, groups, comment, home or shell".into());
        }
        Ok(())
    }
}

/// Password and account aging, as `chage` sets them; absent fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExpirySettings {
    pub name: String,
    /// The day the account expires, `YYYY-MM-DD`, or `never` (`chage -E`).
    #[serde(default)]
    pub account_expires: Option<String>,
    /// Days a password stays valid (`chage -M`; -1: no limit).
    #[serde(default)]
    pub max_days: Option<i64>,
    /// Days before a password may be changed again (`chage -m`).
    #[serde(default)]
    pub min_days: Option<i64>,
    /// Days of warning before a password expires (`chage -W`).
    #[serde(default)]
    pub warn_days: Option<i64>,
    /// Days after a password expired until the account is disabled (`chage -I`; -1: never).
    #[serde(default)]
    pub inactive_days: Option<i64>,
    /// The date of the last password change, `YYYY-MM-DD`; `0` forces a change at the next login (`chage -d`).
    #[serde(default)]
    pub last_change: Option<String>,
}

impl ExpirySettings {
    pub fn validate(&self) -> Result<(), String> {
        account_name("name", &self.name)?;
        if let Some(expires) = &self.account_expires
            && expires != "never"
        {
            date("account_expires", expires)?;
        }
        if let Some(last) = &self.last_change
            && last != "0"
        {
            date("last_change", last)?;
        }
        for (field, value) in [
            ("max_days", self.max_days),
            ("min_days", self.min_days),
            ("warn_days", self.warn_days),
            ("inactive_days", self.inactive_days),
        ] {
            if let Some(value) = value
                && !(-1..=99_999).contains(&value)
            {
                return Err(format!("{field}: {value} is not -1 to 99999"));
            }
        }
        if [&self.account_expires, &self.last_change].iter().all(|value| value.is_none())
            && [self.max_days, self.min_days, self.warn_days, self.inactive_days].iter().all(Option::is_none)
        {
            return Err(
                "nothing to change: give account_expires, max_days, min_days, warn_days, inactive_days or last_change"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The accounts of a system, from `/etc/passwd`, `/etc/group` and `/etc/shadow` (never a hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AccountListing {
    pub users: Vec<UserAccount>,
    pub groups: Vec<GroupAccount>,
}

/// One user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserAccount {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The primary group's name, when `/etc/group` has it.
    pub primary_group: Option<String>,
    pub comment: String,
    pub home: String,
    pub shell: String,
    /// Supplementary groups (those listing the user as a member).
    pub groups: Vec<String>,
    /// `set`, `locked` (a `!` in front of the hash), `none` (empty: no password needed), `disabled` (`*` or `!`
    /// alone: no password login) or `unknown` (no shadow entry).
    pub password: String,
    /// True when the password is locked.
    pub locked: bool,
    /// Aging, from the shadow entry: the last change as `YYYY-MM-DD` (or `0`: must change at the next login).
    pub last_change: Option<String>,
    pub min_days: Option<i64>,
    pub max_days: Option<i64>,
    pub warn_days: Option<i64>,
    pub inactive_days: Option<i64>,
    /// The day the account expires, `YYYY-MM-DD`.
    pub account_expires: Option<String>,
}

/// One group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupAccount {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// A user or group name: 1 to 32 bytes of `A-Z a-z 0-9 . _ -` (a `$` at the end for machine accounts), not
/// starting with `-`, not all digits.
pub fn account_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_ACCOUNT_NAME_BYTES {
        return Err(format!("{field}: {name:?} must be 1 to {MAX_ACCOUNT_NAME_BYTES} bytes long"));
    }
    let body = name.strip_suffix('$').unwrap_or(name);
    if body.is_empty()
        || name.starts_with('-')
        || !body.chars().all(|character| character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-'))
    {
        return Err(format!(
            "{field}: {name:?} is not a valid name (letters, digits, `.`, `_`, `-`, not starting with `-`)"
        ));
    }
    if body.chars().all(|character| character.is_ascii_digit()) || name == "." || name == ".." {
        return Err(format!("{field}: {name:?} cannot be used as a name"));
    }
    Ok(())
}

/// A group given by name or number.
fn group_reference(field: &str, group: &str) -> Result<(), String> {
    if !group.is_empty() && group.len() <= 10 && group.chars().all(|character| character.is_ascii_digit()) {
        return Ok(());
    }
    account_name(field, group)
}

/// Text stored in a `:`-separated line: no `:`, no newline, no control character; at most 256 bytes.
fn field_text(field: &str, text: &str) -> Result<(), String> {
    if text.len() > 256 {
        return Err(format!("{field}: longer than 256 bytes"));
    }
    if let Some(character) = text.chars().find(|character| *character == ':' || character.is_control()) {
        return Err(format!("{field}: {character:?} cannot be stored in /etc/passwd"));
    }
    Ok(())
}

fn absolute_path(field: &str, path: &str) -> Result<(), String> {
    field_text(field, path)?;
    if !path.starts_with('/') {
        return Err(format!("{field}: {path:?} is not an absolute path"));
    }
    Ok(())
}

fn password_text(field: &str, password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err(format!("{field}: empty (lock the account instead)"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("{field}: longer than {MAX_PASSWORD_BYTES} bytes"));
    }
    if password.contains(['\n', '\r', '\0']) {
        return Err(format!("{field}: contains a line break or NUL character"));
    }
    Ok(())
}

/// A date `YYYY-MM-DD` of the Gregorian calendar, from 1970 on.
fn date(field: &str, text: &str) -> Result<(), String> {
    if days_since_epoch(text).is_none() {
        return Err(format!("{field}: {text:?} is not a date YYYY-MM-DD (from 1970-01-01)"));
    }
    Ok(())
}

/// The days from 1970-01-01 to the date `YYYY-MM-DD`, if it is one.
pub fn days_since_epoch(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let (year, month, day): (i64, i64, i64) = (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if year < 1970 || !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let shifted = if month <= 2 { year - 1 } else { year };
    let era = shifted.div_euclid(400);
    let year_of_era = shifted - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// The date `YYYY-MM-DD` of a day counted from 1970-01-01.
pub fn date_of_days(days: i64) -> String {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_both_ways() {
        assert_eq!(days_since_epoch("1970-01-01"), Some(0));
        assert_eq!(days_since_epoch("2030-01-01"), Some(21_915));
        assert_eq!(days_since_epoch("2024-02-29"), Some(19_782));
        assert_eq!(days_since_epoch("2023-02-29"), None);
        assert_eq!(days_since_epoch("1969-12-31"), None);
        assert_eq!(days_since_epoch("2030-1-01"), None);
        for days in [0, 59, 60, 365, 19_782, 21_915, 40_000] {
            assert_eq!(days_since_epoch(&date_of_days(days)), Some(days), "{days}");
        }
    }

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(account_name("name", "alice").is_ok());
        assert!(account_name("name", "svc_backup-01").is_ok());
        assert!(account_name("name", "host$").is_ok());
        for bad in ["", "-x", "a:b", "a b", "1234", "..", "é", &"x".repeat(33)] {
            assert!(account_name("name", bad).is_err(), "{bad:?}");
        }
        let change = AccountChange::SetPassword { name: "alice".into(), password: Secret("two\nlines".into()) };
        assert!(change.validate().unwrap_err().contains("password"));
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let change = AccountChange::SetPassword { name: "alice".into(), password: Secret("hunter2".into()) };
        let shown = format!("{change:?}");
        assert!(!shown.contains("hunter2") && shown.contains("<hidden>"), "{shown}");
        let text = serde_json::to_string(&change).expect("serialize");
        assert_eq!(serde_json::from_str::<AccountChange>(&text).expect("deserialize"), change);
    }
}
