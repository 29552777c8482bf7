//! Authentication and authorization, as the SMAPI request server does them.
//!
//! Every request over TCP carries a user ID and a password: a user the simulator does not know, or a wrong
//! password, gets 120/0. User IDs are case-insensitive, passwords case-sensitive. The simulator's users are its
//! own list (on z/VM they are the system's users, checked by CP or the security manager).
//!
//! Authorization follows VSMWORK1's AUTHLIST: an entry lets a user call a function on a target. The target is
//! `ALL`, a user ID, or `=` (the caller itself); the function is `ALL` or a function name. Function classes of
//! the real AUTHLIST (such as `IMAGE_CHARACTERISTICS`) are not modelled. Without a matching entry: 100/16.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::state::State;

/// One AUTHLIST entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthEntry {
    pub user: String,
    pub target: String,
    pub function: String,
}

impl AuthEntry {
    /// Everything, on every target.
    pub fn all(user: &str) -> AuthEntry {
        AuthEntry { user: user.to_uppercase(), target: "ALL".into(), function: "ALL".into() }
    }

    fn allows(&self, caller: &str, target: &str, function: &str) -> bool {
        let target_matches = self.target == "ALL" || self.target == target || (self.target == "=" && target == caller);
        let function_matches = self.function == "ALL" || self.function.eq_ignore_ascii_case(function);
        self.user == caller && target_matches && function_matches
    }
}

impl FromStr for AuthEntry {
    type Err = String;

    /// `USER:TARGET:FUNCTION`, for example `OPER1:=:ALL` or `AUDIT:ALL:Image_Query_DM`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(':').collect();
        let [user, target, function] = parts.as_slice() else {
            return Err(format!("{text:?} is not USER:TARGET:FUNCTION"));
        };
        if !crate::directory::statements::valid_name(user) {
            return Err(format!("{user:?} is not a valid user ID"));
        }
        if *target != "=" && !crate::directory::statements::valid_name(target) {
            return Err(format!("{target:?} is not ALL, = or a user ID"));
        }
        if function.is_empty() || !function.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_') {
            return Err(format!("{function:?} is not ALL or a function name"));
        }
        let function = if function.eq_ignore_ascii_case("ALL") { "ALL".to_owned() } else { (*function).to_owned() };
        Ok(AuthEntry { user: user.to_uppercase(), target: target.to_uppercase(), function })
    }
}

/// Whether the user ID and password are valid.
pub fn authenticate(state: &State, userid: &str, password: &str) -> bool {
    state.users.get(&userid.to_uppercase()).is_some_and(|expected| constant_time_equal(expected, password))
}

/// Whether the AUTHLIST lets `caller` call `function` on `target` (both upper case).
pub fn authorize(state: &State, caller: &str, target: &str, function: &str) -> bool {
    state.authlist.iter().any(|entry| entry.allows(caller, target, function))
}

/// Compares without stopping at the first difference, so timing does not tell how much of a password matched.
fn constant_time_equal(expected: &str, given: &str) -> bool {
    let (expected, given) = (expected.as_bytes(), given.as_bytes());
    let mut difference = expected.len() ^ given.len();
    for (index, byte) in given.iter().enumerate() {
        difference |= usize::from(expected.get(index).copied().unwrap_or(0) ^ byte);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_match_user_target_and_function() {
        let own: AuthEntry = "oper1:=:ALL".parse().unwrap();
        assert!(own.allows("OPER1", "OPER1", "Image_Activate"));
        assert!(!own.allows("OPER1", "LINUX01", "Image_Activate"));
        let query: AuthEntry = "audit:all:image_query_dm".parse().unwrap();
        assert!(query.allows("AUDIT", "LINUX01", "Image_Query_DM"));
        assert!(!query.allows("AUDIT", "LINUX01", "Image_Delete_DM"));
        assert!(AuthEntry::all("maint").allows("MAINT", "ANY", "Image_Delete_DM"));
        assert!("a:b".parse::<AuthEntry>().is_err());
        assert!("a:b:c d".parse::<AuthEntry>().is_err());
    }

    #[test]
    fn password_comparison() {
        assert!(constant_time_equal("Secret", "Secret"));
        assert!(!constant_time_equal("Secret", "secret"));
        assert!(!constant_time_equal("Secret", "Secret1"));
        assert!(!constant_time_equal("Secret", ""));
    }
}
