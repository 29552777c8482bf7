//! Users and groups: listed from `/etc/passwd`, `/etc/group` and `/etc/shadow` (the shadow file gives only the
//! password's state and the aging fields, never the hash), changed with shadow-utils: `useradd`, `usermod`,
//! `userdel`, `chpasswd`, `chage`, `gpasswd`, `groupadd`, `groupdel`. With an account root (tests), every tool
//! gets it as its root option (`-R ROOT`; `gpasswd -Q ROOT`) and acts on that root's files only.
//!
//! A password is written to `chpasswd -c SHA512`'s standard input (`chpasswd` computes the hash, without PAM, so
//! it works the same in a scratch root); it is never on a command line nor in the answer.

use std::collections::BTreeMap;
use std::path::Path;

use steward_protocol::software::{
    AccountChange, AccountListing, ExpirySettings, GroupAccount, ToolOutcome, UserAccount, UserModification,
    UserSettings, date_of_days,
};

use super::{ToolCommand, run_all};

/// How long one account tool may run.
const TOOL_TIMEOUT_SECONDS: u32 = 120;

/// Reads the accounts of the system under `root`.
pub fn list(root: &Path) -> Result<AccountListing, String> {
    let read = |relative: &str| {
        let path = root.join(relative);
        std::fs::read_to_string(&path).map_err(|error| format!("cannot read {}: {error}", path.display()))
    };
    let passwd = read("etc/passwd")?;
    let group = read("etc/group")?;
    // Without the shadow file (not root, or none), passwords are `unknown`.
    let shadow = read("etc/shadow").unwrap_or_default();
    Ok(parse(&passwd, &group, &shadow))
}

/// The listing made of the three files' text; malformed lines are skipped.
pub fn parse(passwd: &str, group: &str, shadow: &str) -> AccountListing {
    let mut groups = Vec::new();
    for line in group.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 || fields[0].is_empty() {
            continue;
        }
        let Ok(gid) = fields[2].parse() else { continue };
        let members = fields[3].split(',').filter(|member| !member.is_empty()).map(str::to_string).collect();
        groups.push(GroupAccount { name: fields[0].to_string(), gid, members });
    }
    let shadows: BTreeMap<&str, Vec<&str>> = shadow
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 8).then(|| (fields[0], fields))
        })
        .collect();
    let mut users = Vec::new();
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || fields[0].is_empty() {
            continue;
        }
        let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse::<u32>()) else { continue };
        let name = fields[0].to_string();
        let number = |text: &str| text.parse::<i64>().ok();
        let entry = shadows.get(fields[0]);
        let (password, locked) = match entry.map(|fields| fields[1]) {
            None => ("unknown", false),
            Some("") => ("none", false),
            Some("*") => ("disabled", false),
            Some(hash) if hash.starts_with('!') => ("locked", true),
            Some(_) => ("set", false),
        };
        users.push(UserAccount {
            primary_group: groups.iter().find(|group| group.gid == gid).map(|group| group.name.clone()),
            groups: groups
                .iter()
                .filter(|group| group.members.contains(&name))
                .map(|group| group.name.clone())
                .collect(),
            name,
            uid,
            gid,
            comment: fields[4].to_string(),
            home: fields[5].to_string(),
            shell: fields[6].to_string(),
            password: password.to_string(),
            locked,
            last_change: entry.and_then(|fields| number(fields[2])).map(|days| match days {
                0 => "0".to_string(),
                days => date_of_days(days),
            }),
            min_days: entry.and_then(|fields| number(fields[3])),
            max_days: entry.and_then(|fields| number(fields[4])),
            warn_days: entry.and_then(|fields| number(fields[5])),
            inactive_days: entry.and_then(|fields| number(fields[6])),
            account_expires: entry.and_then(|fields| number(fields[7])).map(date_of_days),
        });
    }
    AccountListing { users, groups }
}

/// Checks `change` and carries it out with the tools, under `root` when given.
pub async fn carry_out(root: Option<&Path>, change: AccountChange) -> Result<ToolOutcome, String> {
    change.validate()?;
    let commands = commands(root, change);
    run_all(commands, TOOL_TIMEOUT_SECONDS, &[("LC_ALL", "C")]).await
}

/// The commands of `change`, each with its standard input.
pub fn commands(root: Option<&Path>, change: AccountChange) -> Vec<ToolCommand> {
    let tool = |program: &str, root_flag: &str| {
        let mut argv = vec![program.to_string()];
        if let Some(root) = root {
            argv.push(root_flag.to_string());
            argv.push(root.display().to_string());
        }
        argv
    };
    let chpasswd = |name: &str, password: &str| {
        let mut argv = tool("chpasswd", "-R");
        argv.extend(["-c".to_string(), "SHA512".to_string()]);
        (argv, Some(format!("{name}:{password}\n")))
    };
    let push = |argv: &mut Vec<String>, flag: &str, value: &Option<String>| {
        if let Some(value) = value {
            argv.push(flag.to_string());
            argv.push(value.clone());
        }
    };
    match change {
        AccountChange::CreateUser(UserSettings {
            name,
            uid,
            primary_group,
            groups,
            comment,
            home,
            create_home,
            shell,
            system,
            password,
        }) => {
            let mut argv = tool("useradd", "-R");
            push(&mut argv, "-u", &uid.map(|uid| uid.to_string()));
            push(&mut argv, "-g", &primary_group);
            push(&mut argv, "-G", &(!groups.is_empty()).then(|| groups.join(",")));
            push(&mut argv, "-c", &comment);
            push(&mut argv, "-d", &home);
            push(&mut argv, "-s", &shell);
            argv.push(if create_home { "-m" } else { "-M" }.into());
            if system {
                argv.push("-r".into());
            }
            argv.push("--".into());
            argv.push(name.clone());
            let mut commands = vec![(argv, None)];
            if let Some(password) = password {
                commands.push(chpasswd(&name, &password.0));
            }
            commands
        }
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
        }) => {
            let mut argv = tool("usermod", "-R");
            push(&mut argv, "-l", &new_name);
            push(&mut argv, "-u", &uid.map(|uid| uid.to_string()));
            push(&mut argv, "-g", &primary_group);
            push(&mut argv, "-G", &groups.map(|groups| groups.join(",")));
            push(&mut argv, "-c", &comment);
            push(&mut argv, "-d", &home);
            if move_home {
                argv.push("-m".into());
            }
            push(&mut argv, "-s", &shell);
            argv.extend(["--".to_string(), name]);
            vec![(argv, None)]
        }
        AccountChange::DeleteUser { name, remove_home } => {
            let mut argv = tool("userdel", "-R");
            if remove_home {
                argv.push("-r".into());
            }
            argv.extend(["--".to_string(), name]);
            vec![(argv, None)]
        }
        AccountChange::SetPassword { name, password } => vec![chpasswd(&name, &password.0)],
        AccountChange::Lock { name } => {
            let mut argv = tool("usermod", "-R");
            argv.extend(["-L".to_string(), "--".to_string(), name]);
            vec![(argv, None)]
        }
        AccountChange::Unlock { name } => {
            let mut argv = tool("usermod", "-R");
            argv.extend(["-U".to_string(), "--".to_string(), name]);
            vec![(argv, None)]
        }
        AccountChange::Expiry(ExpirySettings {
            name,
            account_expires,
            max_days,
            min_days,
            warn_days,
            inactive_days,
            last_change,
        }) => {
            let mut argv = tool("chage", "-R");
            let expires = account_expires.map(|day| if day == "never" { "-1".to_string() } else { day });
            push(&mut argv, "-E", &expires);
            push(&mut argv, "-M", &max_days.map(|days| days.to_string()));
            push(&mut argv, "-m", &min_days.map(|days| days.to_string()));
            push(&mut argv, "-W", &warn_days.map(|days| days.to_string()));
            push(&mut argv, "-I", &inactive_days.map(|days| days.to_string()));
            push(&mut argv, "-d", &last_change);
            argv.extend(["--".to_string(), name]);
            vec![(argv, None)]
        }
        AccountChange::AddToGroups { name, groups } => {
            let mut argv = tool("usermod", "-R");
            argv.extend(["-a".to_string(), "-G".to_string(), groups.join(","), "--".to_string(), name]);
            vec![(argv, None)]
        }
        AccountChange::RemoveFromGroup { name, group } => {
            let mut argv = tool("gpasswd", "-Q");
            argv.extend(["-d".to_string(), name, group]);
            vec![(argv, None)]
        }
        AccountChange::CreateGroup { name, gid, system } => {
            let mut argv = tool("groupadd", "-R");
            push(&mut argv, "-g", &gid.map(|gid| gid.to_string()));
            if system {
                argv.push("-r".into());
            }
            argv.extend(["--".to_string(), name]);
            vec![(argv, None)]
        }
        AccountChange::DeleteGroup { name } => {
            let mut argv = tool("groupdel", "-R");
            argv.extend(["--".to_string(), name]);
            vec![(argv, None)]
        }
    }
}

#[cfg(test)]
mod tests {
    use steward_protocol::software::Secret;

    use super::*;

    #[test]
    fn the_files_are_read_without_any_hash() {
        let listing = parse(
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:100:Alice:/home/alice:/bin/sh\nbroken\n",
            "root:x:0:\nusers:x:100:\nadm:x:4:alice,bob\n",
            "root:*:19000:0:99999:7:::\nalice:!$6$salt$hash:20000:1:90:7:14:21915:\n",
        );
        assert_eq!(listing.users.len(), 2);
        let alice = &listing.users[1];
        assert_eq!(alice.primary_group.as_deref(), Some("users"));
        assert_eq!(alice.groups, ["adm"]);
        assert!(alice.locked);
        assert_eq!(alice.password, "locked");
        assert_eq!(alice.account_expires.as_deref(), Some("2030-01-01"));
        assert_eq!(
            (alice.min_days, alice.max_days, alice.warn_days, alice.inactive_days),
            (Some(1), Some(90), Some(7), Some(14))
        );
        assert_eq!(listing.users[0].password, "disabled");
        let text = serde_json::to_string(&listing).expect("serialize");
        assert!(!text.contains("$6$"), "{text}");
    }

    #[test]
    fn the_password_goes_to_standard_input_only() {
        let change = AccountChange::CreateUser(UserSettings {
            name: "alice".into(),
            create_home: true,
            password: Some(Secret("s3cret".into())),
            ..UserSettings::default()
        });
        let commands = commands(Some(Path::new("/scratch")), change);
        assert_eq!(commands[0].0, ["useradd", "-R", "/scratch", "-m", "--", "alice"]);
        assert_eq!(commands[1].0, ["chpasswd", "-R", "/scratch", "-c", "SHA512"]);
        assert_eq!(commands[1].1.as_deref(), Some("alice:s3cret\n"));
        assert!(commands.iter().all(|(argv, _)| argv.iter().all(|word| !word.contains("s3cret"))));
    }
}
