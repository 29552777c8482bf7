//! `steward accounts list SYSTEM` and the account changes on a system or, with `--group`, on every member of a
//! group: `create-user`, `modify-user`, `delete-user`, `set-password` (the password is read from standard
//! input, never from the command line), `lock`, `unlock`, `expire` (what `chage` sets), `add-to-groups`,
//! `remove-from-group`, `create-group`, `delete-group`.

use std::io::Read as _;

use clap::{Args, Subcommand};
use steward_types::api::packages::{
    AccountChange, AccountChangeOutcome, AccountListing, ExpirySettings, Secret, UserModification, UserSettings,
};
use steward_types::api::system_admin::GroupActionResult;

use super::{Context, ExitWithOutput};
use crate::client::segment;
use crate::output::{Format, Table, json, optional};

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// List a system's users (password state and aging, never the hash) and groups.
    List { system: String },
    /// Create a user (`useradd`).
    CreateUser {
        #[command(flatten)]
        on: On,
        name: String,
        #[arg(long)]
        uid: Option<u32>,
        #[arg(long)]
        primary_group: Option<String>,
        /// Supplementary groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        home: Option<String>,
        #[arg(long)]
        create_home: bool,
        #[arg(long)]
        shell: Option<String>,
        /// A system account.
        #[arg(long)]
        system_account: bool,
        /// Read the password from standard input (one line) and set it.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user (`usermod`).
    ModifyUser {
        #[command(flatten)]
        on: On,
        name: String,
        #[arg(long)]
        new_name: Option<String>,
        #[arg(long)]
        uid: Option<u32>,
        #[arg(long)]
        primary_group: Option<String>,
        /// Replace the supplementary groups (comma-separated).
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<String>>,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        home: Option<String>,
        #[arg(long)]
        move_home: bool,
        #[arg(long)]
        shell: Option<String>,
    },
    /// Delete a user (`userdel`).
    DeleteUser {
        #[command(flatten)]
        on: On,
        name: String,
        /// Remove the home directory and mail spool too.
        #[arg(long)]
        remove_home: bool,
    },
    /// Set a user's password, read from standard input (one line).
    SetPassword {
        #[command(flatten)]
        on: On,
        name: String,
    },
    /// Lock a user's password.
    Lock {
        #[command(flatten)]
        on: On,
        name: String,
    },
    /// Unlock a user's password.
    Unlock {
        #[command(flatten)]
        on: On,
        name: String,
    },
    /// Password and account aging (`chage`).
    Expire {
        #[command(flatten)]
        on: On,
        name: String,
        /// The day the account expires (YYYY-MM-DD) or `never`.
        #[arg(long)]
        account_expires: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        max_days: Option<i64>,
        #[arg(long, allow_hyphen_values = true)]
        min_days: Option<i64>,
        #[arg(long, allow_hyphen_values = true)]
        warn_days: Option<i64>,
        #[arg(long, allow_hyphen_values = true)]
        inactive_days: Option<i64>,
        /// The last password change (YYYY-MM-DD); `0` forces a change at the next login.
        #[arg(long)]
        last_change: Option<String>,
    },
    /// Add a user to supplementary groups.
    AddToGroups {
        #[command(flatten)]
        on: On,
        name: String,
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Remove a user from a supplementary group.
    RemoveFromGroup {
        #[command(flatten)]
        on: On,
        name: String,
        group: String,
    },
    /// Create a group (`groupadd`).
    CreateGroup {
        #[command(flatten)]
        on: On,
        name: String,
        #[arg(long)]
        gid: Option<u32>,
        #[arg(long)]
        system_group: bool,
    },
    /// Delete a group (`groupdel`).
    DeleteGroup {
        #[command(flatten)]
        on: On,
        name: String,
    },
}

/// Where a change is made.
#[derive(Debug, Args)]
pub struct On {
    /// The system.
    #[arg(long, required_unless_present = "group", conflicts_with = "group")]
    system: Option<String>,
    /// Every member of this group.
    #[arg(long)]
    group: Option<String>,
}

fn read_password() -> anyhow::Result<Secret> {
    let mut text = String::new();
    std::io::stdin().take(4096).read_to_string(&mut text)?;
    let password = text.lines().next().unwrap_or_default().to_string();
    if password.is_empty() {
        anyhow::bail!("no password on standard input");
    }
    Ok(Secret(password))
}

pub async fn run(context: &Context, command: AccountsCommand) -> anyhow::Result<String> {
    let (on, change) = match command {
        AccountsCommand::List { system } => return list(context, &system).await,
        AccountsCommand::CreateUser {
            on,
            name,
            uid,
            primary_group,
            groups,
            comment,
            home,
            create_home,
            shell,
            system_account,
            password_stdin,
        } => {
            let password = if password_stdin { Some(read_password()?) } else { None };
            let settings = UserSettings {
                name,
                uid,
                primary_group,
                groups,
                comment,
                home,
                create_home,
                shell,
                system: system_account,
                password,
            };
            (on, AccountChange::CreateUser(settings))
        }
        AccountsCommand::ModifyUser {
            on,
            name,
            new_name,
            uid,
            primary_group,
            groups,
            comment,
            home,
            move_home,
            shell,
        } => (
            on,
            AccountChange::ModifyUser(UserModification {
                name,
                new_name,
                uid,
                primary_group,
                groups,
                comment,
                home,
                move_home,
                shell,
            }),
        ),
        AccountsCommand::DeleteUser { on, name, remove_home } => (on, AccountChange::DeleteUser { name, remove_home }),
        AccountsCommand::SetPassword { on, name } => {
            (on, AccountChange::SetPassword { name, password: read_password()? })
        }
        AccountsCommand::Lock { on, name } => (on, AccountChange::Lock { name }),
        AccountsCommand::Unlock { on, name } => (on, AccountChange::Unlock { name }),
        AccountsCommand::Expire {
            on,
            name,
            account_expires,
            max_days,
            min_days,
            warn_days,
            inactive_days,
            last_change,
        } => (
            on,
            AccountChange::Expiry(ExpirySettings {
                name,
                account_expires,
                max_days,
                min_days,
                warn_days,
                inactive_days,
                last_change,
            }),
        ),
        AccountsCommand::AddToGroups { on, name, groups } => (on, AccountChange::AddToGroups { name, groups }),
        AccountsCommand::RemoveFromGroup { on, name, group } => (on, AccountChange::RemoveFromGroup { name, group }),
        AccountsCommand::CreateGroup { on, name, gid, system_group } => {
            (on, AccountChange::CreateGroup { name, gid, system: system_group })
        }
        AccountsCommand::DeleteGroup { on, name } => (on, AccountChange::DeleteGroup { name }),
    };
    change.validate().map_err(|reason| anyhow::anyhow!("{reason}"))?;
    match (on.system, on.group) {
        (Some(system), _) => {
            let outcome: AccountChangeOutcome =
                context.client.post(&format!("/systems/{}/accounts", segment(&system)), &change).await?;
            Ok(match context.format {
                Format::Json => json(&outcome),
                Format::Table => describe(&outcome),
            })
        }
        (None, Some(group)) => {
            let result: GroupActionResult<AccountChangeOutcome> =
                context.client.post(&format!("/groups/{}/accounts", segment(&group)), &change).await?;
            let output = match context.format {
                Format::Json => json(&result),
                Format::Table => {
                    let mut text = String::new();
                    for target in &result.targets {
                        if let Some(outcome) = &target.outcome {
                            text.push_str(&describe(outcome));
                        }
                        if let Some(error) = &target.error {
                            text.push_str(&format!("{}: failed: {}\n", target.system, error.message));
                        }
                    }
                    text.push_str(&format!("{} succeeded, {} failed\n", result.succeeded, result.failed));
                    text
                }
            };
            if result.failed > 0 {
                return Err(ExitWithOutput { output, code: 1 }.into());
            }
            Ok(output)
        }
        (None, None) => anyhow::bail!("give --system SYSTEM or --group GROUP"),
    }
}

fn describe(outcome: &AccountChangeOutcome) -> String {
    let mut text = format!("{}: {} {}\n", outcome.system, outcome.change, outcome.subject);
    for run in &outcome.runs {
        text.push_str(&format!("  `{}` exit code {}\n", run.command.join(" "), optional(&run.exit_code)));
        text.push_str(&run.stdout);
        text.push_str(&run.stderr);
    }
    text
}

async fn list(context: &Context, system: &str) -> anyhow::Result<String> {
    let listing: AccountListing = context.client.get(&format!("/systems/{}/accounts", segment(system)), &[]).await?;
    Ok(match context.format {
        Format::Json => json(&listing),
        Format::Table => {
            let mut users = Table::new(&["USER", "UID", "GROUP", "GROUPS", "HOME", "SHELL", "PASSWORD", "EXPIRES"]);
            for user in &listing.users {
                users.row(vec![
                    user.name.clone(),
                    user.uid.to_string(),
                    user.primary_group.clone().unwrap_or_else(|| user.gid.to_string()),
                    if user.groups.is_empty() { "-".into() } else { user.groups.join(",") },
                    user.home.clone(),
                    user.shell.clone(),
                    user.password.clone(),
                    optional(&user.account_expires),
                ]);
            }
            let mut groups = Table::new(&["GROUP", "GID", "MEMBERS"]);
            for group in &listing.groups {
                groups.row(vec![group.name.clone(), group.gid.to_string(), group.members.join(",")]);
            }
            format!("{}\n{}", users.render(), groups.render())
        }
    })
}
