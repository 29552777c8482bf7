//! The checks `steward hosts add --type zvm` runs before a z/VM system is registered: the SMAPI server answers,
//! the credentials are valid, the SMAPI user is in `VSMWORK1 AUTHLIST`, the API level is recent enough,
//! DirMaint runs and accepts the SMAPI servers' requests, and the disk pool exists. Each problem comes with what
//! the operator must change on z/VM, because an administrator reading "RC 100" does not know which list to edit.

use serde::Serialize;
use smapi::ErrorKind;
use smapi::functions::{CheckAuthentication, ImageNameQueryDm, QueryApiFunctionalLevel, SystemInfoQuery};

use super::{ZvmHost, errors};

/// The oldest SMAPI functional level Steward uses (z/VM 6.4: every function of the driver exists there).
pub const MINIMUM_API_LEVEL: i32 = 640;

/// What the checks found on a system that passed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreflightReport {
    pub api_level: i32,
    /// The z/VM release of that level, in words.
    pub api_level_description: String,
    pub cp_level: String,
    pub directory_entries: usize,
    pub pool_free_bytes: u64,
    pub pool_total_bytes: u64,
}

/// One check that failed: what was checked, what went wrong, and what to change on z/VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreflightProblem {
    pub check: String,
    pub problem: String,
    pub fix: String,
}

impl ZvmHost {
    /// Runs the checks in order; a check that cannot pass makes the later ones pointless (no connection: no
    /// authentication check), so the problems found so far are returned then.
    pub async fn preflight(&self) -> Result<PreflightReport, Vec<PreflightProblem>> {
        let user = self.smapi_user.clone();
        let address = self.client.config().address.clone();
        let authlist_line = format!("{user:<65}{:<65}ALL", "ALL");
        let authlist_fix = |function: &str| {
            format!(
                "add the SMAPI user to VSMWORK1 AUTHLIST (the user ID in column 1, the target in column 66, the \
                 function in column 131), for example the line `{}`, so that it may call {function}; then restart \
                 the SMAPI servers (FORCE VSMGUARD, then XAUTOLOG VSMGUARD)",
                authlist_line.trim_end()
            )
        };
        let problem = |check: &str, error: smapi::Error, fix: String| PreflightProblem {
            check: check.to_owned(),
            problem: errors::map(check.to_owned(), error).to_string(),
            fix,
        };
        // The fix for a failure with nothing more specific to say: the AUTHLIST entry, or the codes' meaning.
        let authorization_fix = |error: &smapi::Error, function: &str| match error.kind() {
            Some(ErrorKind::NotAuthorized) => authlist_fix(function),
            _ => "see the meaning of the return and reason code above".to_owned(),
        };

        if let Err(error) = self.client.call(&CheckAuthentication::new(&user)).await {
            let fix = match error.kind() {
                Some(ErrorKind::AuthenticationFailed) => format!(
                    "z/VM refused user ID {user} with this password: check the user ID and the password file (a \
                     user the security manager revoked after failed logons must be resumed first)"
                ),
                Some(ErrorKind::NotAuthorized) => authlist_fix("Check_Authentication"),
                Some(_) => "see the meaning of the return and reason code above".to_owned(),
                None => format!(
                    "no SMAPI answer from {address}: check the address and port (44444 is the default), that the \
                     request server VSMREQIN (VSMREQI6 for IPv6) runs and listens there, that a firewall lets the \
                     connection through, and the TLS settings when the server uses TLS"
                ),
            };
            return Err(vec![problem("authentication (Check_Authentication)", error, fix)]);
        }

        let mut problems = Vec::new();
        let level = match self.client.call(&QueryApiFunctionalLevel::new(&user)).await {
            Ok(level) => {
                if level.level < MINIMUM_API_LEVEL {
                    problems.push(PreflightProblem {
                        check: "API level (Query_API_Functional_Level)".to_owned(),
                        problem: format!("SMAPI functional level {} ({})", level.level, level.description()),
                        fix: format!(
                            "Steward needs functional level {MINIMUM_API_LEVEL} (z/VM 6.4) or later; upgrade z/VM"
                        ),
                    });
                }
                Some(level)
            }
            Err(error) => {
                let fix = authorization_fix(&error, "Query_API_Functional_Level");
                problems.push(problem("API level (Query_API_Functional_Level)", error, fix));
                None
            }
        };
        let system = match self.client.call(&SystemInfoQuery::new(&user)).await {
            Ok(system) => Some(system),
            Err(error) => {
                let fix = authorization_fix(&error, "System_Info_Query");
                problems.push(problem("system information (System_Info_Query)", error, fix));
                None
            }
        };
        let directory = match self.client.call(&ImageNameQueryDm::new(&user)).await {
            Ok(names) => Some(names.len()),
            Err(error) => {
                let dirmaint_authorization = format!(
                    "authorize the SMAPI servers in DirMaint for every user: `DIRM FOR ALL AUTHFOR VSMWORK1 CMDL \
                     140A CMDS ADGHOPS` and `DIRM FOR ALL AUTHFOR VSMWORK1 CMDL 150A CMDS ADGHOPS` (the same for \
                     VSMWORK2, VSMWORK3 and VSMPROXY), and {}",
                    authlist_fix("the _DM functions")
                );
                let fix = match error.kind() {
                    Some(ErrorKind::DirectoryManagerUnavailable) => "DirMaint is not available to SMAPI: start the \
                         DIRMAINT service machine (XAUTOLOG DIRMAINT), and check that SMAPI is configured for \
                         DirMaint (DMSSICNF COPY: Directory_Manager = DIRMAINT)"
                        .to_owned(),
                    Some(ErrorKind::DirectoryManagerNotAcceptingUpdates) => {
                        "DirMaint does not accept requests now (DIRM DISABLE?): DIRM ENABLE".to_owned()
                    }
                    Some(ErrorKind::NotAuthorized) => dirmaint_authorization,
                    _ => "see the meaning of the return and reason code above".to_owned(),
                };
                problems.push(problem("DirMaint (Image_Name_Query_DM)", error, fix));
                None
            }
        };
        let pool = if directory.is_some() {
            match self.pool_space().await {
                Ok(space) => Some(space),
                Err(error) => {
                    problems.push(PreflightProblem {
                        check: format!("disk pool {}", self.disk_pool),
                        problem: error.to_string(),
                        fix: format!(
                            "name a DirMaint group that exists with --disk-pool, or define group {} in DirMaint's \
                             EXTENT CONTROL (its :GROUPS. section) with the 3390 volumes guests' minidisks come \
                             from, then DIRM RLDEXTN",
                            self.disk_pool
                        ),
                    });
                    None
                }
            }
        } else {
            None
        };
        match (problems.is_empty(), level, system, directory, pool) {
            (true, Some(level), Some(system), Some(directory_entries), Some((free_units, total_units))) => {
                Ok(PreflightReport {
                    api_level: level.level,
                    api_level_description: level.description(),
                    cp_level: system.cp_level,
                    directory_entries,
                    pool_free_bytes: free_units.saturating_mul(self.unit_bytes()),
                    pool_total_bytes: total_units.saturating_mul(self.unit_bytes()),
                })
            }
            _ => Err(problems),
        }
    }
}
