//! User and group names of the system, from `/etc/passwd` and `/etc/group` (read once per transfer; users that
//! only a directory service knows have no name here, and travel by number).

use std::collections::HashMap;
use std::path::Path;

use steward_protocol::files::OwnerSpec;

/// Names and numbers of users and groups.
#[derive(Debug, Default, Clone)]
pub struct Owners {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
    user_names: HashMap<u32, String>,
    group_names: HashMap<u32, String>,
}

impl Owners {
    /// The users and groups of the system whose root is `root` (`/` in production).
    pub fn load(root: &Path) -> Self {
        let mut owners = Self::default();
        for (file, names, numbers) in [
            ("etc/passwd", &mut owners.users, &mut owners.user_names),
            ("etc/group", &mut owners.groups, &mut owners.group_names),
        ] {
            let text = std::fs::read_to_string(root.join(file)).unwrap_or_default();
            for line in text.lines() {
                let mut fields = line.split(':');
                let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else { continue };
                let Ok(id) = id.parse::<u32>() else { continue };
                if name.is_empty() || name.starts_with('#') {
                    continue;
                }
                names.entry(name.to_string()).or_insert(id);
                numbers.entry(id).or_insert_with(|| name.to_string());
            }
        }
        owners
    }

    pub fn user_name(&self, uid: u32) -> Option<&str> {
        self.user_names.get(&uid).map(String::as_str)
    }

    pub fn group_name(&self, gid: u32) -> Option<&str> {
        self.group_names.get(&gid).map(String::as_str)
    }

    /// The numbers an operator's `USER:GROUP` names: a number is taken as it is, a name must exist here.
    pub fn resolve(&self, spec: &OwnerSpec) -> Result<(Option<u32>, Option<u32>), String> {
        let user = spec.user.as_deref().map(|user| lookup(user, &self.users, "user")).transpose()?;
        let group = spec.group.as_deref().map(|group| lookup(group, &self.groups, "group")).transpose()?;
        Ok((user, group))
    }

    /// The owner of an archive entry: its names where this system has them, else its numbers.
    pub fn for_entry(&self, user: &str, uid: u32, group: &str, gid: u32) -> (u32, u32) {
        let uid = self.users.get(user).copied().unwrap_or(uid);
        let gid = self.groups.get(group).copied().unwrap_or(gid);
        (uid, gid)
    }
}

fn lookup(text: &str, names: &HashMap<String, u32>, what: &str) -> Result<u32, String> {
    if let Ok(number) = text.parse::<u32>() {
        return Ok(number);
    }
    names.get(text).copied().ok_or_else(|| format!("there is no {what} {text:?} on this system"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_and_numbers_pass_through() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("etc")).expect("mkdir");
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nstaff:x:50:alice\n").expect("group");
        let owners = Owners::load(root.path());
        let spec = OwnerSpec { user: Some("alice".into()), group: Some("staff".into()) };
        assert_eq!(owners.resolve(&spec), Ok((Some(1000), Some(50))));
        let numeric = OwnerSpec { user: Some("4242".into()), group: None };
        assert_eq!(owners.resolve(&numeric), Ok((Some(4242), None)));
        let unknown = OwnerSpec { user: Some("mallory".into()), group: None };
        assert!(owners.resolve(&unknown).expect_err("unknown").contains("no user \"mallory\""));
        assert_eq!(owners.user_name(1000), Some("alice"));
        assert_eq!(owners.for_entry("alice", 7, "nogroup", 9), (1000, 9));
    }
}
