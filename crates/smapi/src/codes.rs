//! Return and reason codes: what IBM says each one means, and a classification callers can act on.
//!
//! The table follows the SMAPI reference's per-function return/reason code lists (as extracted in pysmapi's
//! `messages.py`), in our own words. A lookup tries, in order: an entry for this function and this exact pair,
//! an entry for any function and this exact pair, then the same two for the return code alone; a pair nobody
//! documented still gets a message naming both codes.
//!
//! Families: 0 success (the reason code may still say something: 0/12 "not active" from Image_Status_Query,
//! 0/28 "no entries", the functional level of Query_API_Functional_Level); 4 warning; 8 a keyword function
//! refused its input (the reason names why); 24 syntax error (reason = parameter number × 100 + reason);
//! 100 not authorized; 120 authentication failed; 200-212 run-time image, device, disk and network errors;
//! 396 CP error (the reason code is CP's); 400-448 directory errors; 500 directory manager; 520 CPU;
//! 592 asynchronous operation started; 596 DirMaint error (the reason code is the DirMaint message number);
//! 900 the SMAPI server itself.

use std::borrow::Cow;

/// Return code of a request that succeeded.
pub const RC_OK: i32 = 0;
/// Return code of a warning (Response_Recovery's 4/4: no such request).
pub const RC_WARNING: i32 = 4;
/// Return code of a refused keyword parameter list.
pub const RC_PARAMETER: i32 = 8;
/// Return code of a syntax error in a parameter.
pub const RC_SYNTAX: i32 = 24;
/// Return code of "asynchronous operation started": the operation id is in the output or in the reason code.
pub const RC_ASYNCHRONOUS: i32 = 592;
/// Return code of an internal DirMaint error; the reason code is the DirMaint message number.
pub const RC_DIRMAINT: i32 = 596;

/// What kind of failure a return and reason code describe, for callers that react to it (treat "already
/// exists" as done, retry "locked", report "not authorized").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// RC 4: the request completed with a warning.
    Warning,
    /// RC 8 (and a few others): the function refused a parameter (unknown keyword, bad operand, missing or
    /// conflicting parameter).
    InvalidParameter,
    /// RC 24: a parameter failed the server's syntax check.
    Syntax,
    /// RC 100 (and 212/8, 408/28-32): the caller may not do this.
    NotAuthorized,
    /// RC 120: the user ID or password is wrong.
    AuthenticationFailed,
    NotFound,
    AlreadyExists,
    /// 200/8: the guest is already logged on.
    AlreadyActive,
    /// 200/12: the guest is not logged on.
    NotActive,
    /// 200/16: the guest is being logged off.
    BeingDeactivated,
    /// 200/28-36: some guests of a name list failed.
    PartialFailure,
    /// 400/12, 404/12, 408/12: the directory entry or device is locked; retry later.
    Locked,
    /// 400/24 (and 404/24 for an unlock): the entry or device is not locked.
    NotLocked,
    /// 208/4: the disk is in use.
    InUse,
    /// 208/8 and 212/32: the disk or adapter is not in use or not connected.
    NotInUse,
    /// The request conflicts with what exists (a device of another type, a size that differs, an entry that
    /// cannot be deleted).
    Conflict,
    /// 408/24: no space in the group, region or volume.
    NoSpace,
    /// 212/44: the guest is already authorized on the virtual switch.
    AlreadyAuthorized,
    /// 444, 448: a password or account policy refused the value.
    PolicyViolation,
    /// 500/8: no directory manager (DirMaint) is available.
    DirectoryManagerUnavailable,
    /// 500/4: the directory manager does not accept updates now.
    DirectoryManagerNotAcceptingUpdates,
    /// 500 otherwise, and 596: the directory manager failed (596's reason code is the DirMaint message).
    DirectoryManagerError,
    /// 396: CP failed; the reason code is CP's.
    SystemError,
    /// 592: an asynchronous operation started (not a failure; the client polls it).
    AsynchronousOperationStarted,
    /// Response_Recovery 4/4: the server knows no request with that id.
    RequestNotFound,
    /// 900: the SMAPI server refused the request itself (unknown function, wrong length).
    ServerError,
    /// A code the table does not classify.
    Other,
}

impl ErrorKind {
    /// Whether the same request may succeed if simply sent again later.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Locked | ErrorKind::BeingDeactivated | ErrorKind::DirectoryManagerNotAcceptingUpdates)
    }
}

/// The meaning of one return and reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meaning {
    pub kind: ErrorKind,
    pub text: Cow<'static, str>,
}

/// One row of the table: `function` None applies to every function, `reason` None to every reason code.
struct Entry {
    function: Option<&'static str>,
    return_code: i32,
    reason: Option<i32>,
    kind: ErrorKind,
    text: &'static str,
}

const fn any(return_code: i32, reason: i32, kind: ErrorKind, text: &'static str) -> Entry {
    Entry { function: None, return_code, reason: Some(reason), kind, text }
}

const fn family(return_code: i32, kind: ErrorKind, text: &'static str) -> Entry {
    Entry { function: None, return_code, reason: None, kind, text }
}

const fn only(function: &'static str, return_code: i32, reason: i32, kind: ErrorKind, text: &'static str) -> Entry {
    Entry { function: Some(function), return_code, reason: Some(reason), kind, text }
}

use ErrorKind as K;

const TABLE: &[Entry] = &[
    // Success, with the reason codes that still carry information.
    any(0, 0, K::Other, "request successful"),
    any(0, 8, K::Other, "request successful; the object directory is offline"),
    any(0, 28, K::Other, "no matching entries found; the output is empty"),
    only("Image_Status_Query", 0, 12, K::NotActive, "the image is not active (not logged on)"),
    only(
        "Image_Definition_Query_DM",
        0,
        8,
        K::NotAuthorized,
        "the external security manager did not authorize returning the password",
    ),
    only("Query_Asynchronous_Operation_DM", 0, 100, K::Other, "the asynchronous operation succeeded"),
    only("Query_Asynchronous_Operation_DM", 0, 104, K::Other, "the asynchronous operation is still in progress"),
    only("Query_Asynchronous_Operation_DM", 0, 108, K::Other, "the asynchronous operation failed"),
    family(0, K::Other, "request successful"),
    // Warnings.
    only(
        "Response_Recovery",
        4,
        4,
        K::RequestNotFound,
        "no request with that request id exists (there is no reply to recover)",
    ),
    family(4, K::Warning, "request completed with a warning"),
    // Keyword-parameter errors.
    any(8, 24, K::InvalidParameter, "conflicting input parameters"),
    any(8, 3002, K::InvalidParameter, "invalid parameter name"),
    any(8, 3003, K::InvalidParameter, "invalid parameter operand"),
    any(8, 3004, K::InvalidParameter, "required parameter missing"),
    any(8, 3032, K::InvalidParameter, "invalid input"),
    family(8, K::InvalidParameter, "the function refused its input"),
    // Authorization and authentication.
    any(100, 8, K::NotAuthorized, "request not authorized by the external security manager"),
    any(100, 12, K::NotAuthorized, "request not authorized by the directory manager"),
    any(
        100,
        16,
        K::NotAuthorized,
        "request not authorized by the SMAPI server (the caller is missing from its authorization list)",
    ),
    any(100, 20, K::NotAuthorized, "the target image is not authorized for this function"),
    family(100, K::NotAuthorized, "request not authorized"),
    family(120, K::AuthenticationFailed, "authentication failed: user ID or password not valid"),
    // Images at run time.
    any(200, 4, K::NotFound, "image not found"),
    any(200, 8, K::AlreadyActive, "image already active"),
    any(200, 12, K::NotActive, "image not active"),
    any(200, 16, K::BeingDeactivated, "image being deactivated"),
    any(200, 24, K::NotFound, "name list not found"),
    any(200, 28, K::PartialFailure, "some images in the list were not activated"),
    any(200, 32, K::PartialFailure, "some images in the list were not deactivated"),
    only(
        "Image_Deactivate",
        200,
        36,
        K::InvalidParameter,
        "the requested time gives an interval longer than the maximum allowed",
    ),
    any(200, 36, K::PartialFailure, "some images in the list were not recycled"),
    family(200, K::Other, "image operation failed"),
    // Image devices, disks and network connections at run time.
    any(204, 2, K::InvalidParameter, "the image device number is not valid"),
    any(204, 4, K::AlreadyExists, "image device already exists"),
    any(204, 8, K::NotFound, "image device does not exist"),
    any(204, 12, K::InUse, "image device is busy"),
    any(204, 16, K::Conflict, "image device is not available"),
    any(204, 20, K::AlreadyExists, "image device already connected"),
    any(204, 28, K::Conflict, "image device already defined as a type other than a network adapter"),
    any(204, 48, K::NotInUse, "the virtual network adapter is already disconnected"),
    family(204, K::Other, "image device operation failed"),
    any(208, 4, K::InUse, "image disk already in use"),
    any(208, 8, K::NotInUse, "image disk not in use"),
    any(208, 12, K::Conflict, "image disk not available"),
    any(208, 28, K::NotAuthorized, "image disk does not have the required password"),
    any(208, 32, K::NotAuthorized, "incorrect password specified for the image disk"),
    any(208, 36, K::NotFound, "image disk does not exist"),
    family(208, K::Other, "image disk operation failed"),
    any(212, 4, K::NotFound, "partner image not found"),
    any(212, 8, K::NotAuthorized, "image not authorized to connect"),
    any(212, 12, K::NotFound, "LAN does not exist"),
    any(212, 20, K::NotActive, "the requested LAN owner is not active"),
    any(212, 24, K::Conflict, "a LAN of that name already exists with different attributes"),
    any(212, 28, K::Conflict, "image device is not the right type for the requested connection"),
    any(212, 32, K::NotInUse, "image device not connected"),
    any(212, 36, K::AlreadyExists, "virtual switch already exists"),
    any(212, 40, K::NotFound, "virtual switch does not exist"),
    any(212, 44, K::AlreadyAuthorized, "image already authorized on the virtual switch"),
    any(212, 48, K::NotFound, "VLAN does not exist"),
    any(212, 52, K::Conflict, "maximum number of connections reached"),
    family(212, K::Other, "virtual network operation failed"),
    // CP.
    family(396, K::SystemError, "internal system error"),
    // The directory.
    any(400, 4, K::NotFound, "image definition not found"),
    any(400, 8, K::AlreadyExists, "image name already defined"),
    any(400, 12, K::Locked, "image definition is locked"),
    any(400, 16, K::Conflict, "image definition cannot be deleted"),
    any(400, 20, K::NotFound, "image prototype is not defined"),
    any(400, 24, K::NotLocked, "image definition is not locked"),
    any(400, 40, K::InvalidParameter, "the directory entry has more than one USER statement"),
    family(400, K::Other, "image definition error"),
    any(404, 4, K::AlreadyExists, "image device already defined"),
    any(404, 8, K::NotFound, "image device not defined"),
    any(404, 12, K::Locked, "image device is locked"),
    only("Image_Unlock_DM", 404, 24, K::NotLocked, "image device is not locked"),
    any(404, 24, K::Conflict, "image device type is not the same as the source"),
    any(404, 28, K::Conflict, "image device size is not the same as the source"),
    family(404, K::Other, "image device definition error"),
    any(408, 4, K::AlreadyExists, "image disk already defined"),
    any(408, 8, K::NotFound, "image disk not defined"),
    any(408, 12, K::Locked, "image disk is locked"),
    any(408, 16, K::NotAuthorized, "the target image definition does not allow sharing the disk"),
    any(408, 24, K::NoSpace, "requested image disk space not available"),
    any(408, 28, K::NotAuthorized, "image disk does not have the required password"),
    any(408, 32, K::NotAuthorized, "incorrect password specified for the image disk"),
    family(408, K::Other, "image disk definition error"),
    any(412, 4, K::NotFound, "partner image not found"),
    any(412, 16, K::Conflict, "parameters do not match the existing directory statement"),
    any(412, 28, K::Conflict, "image device is not the right type for the requested connection"),
    family(412, K::Other, "connection definition error"),
    any(420, 4, K::AlreadyExists, "group, region or volume name is already defined"),
    any(420, 8, K::NotFound, "group, region or volume name is not defined"),
    any(420, 12, K::NotFound, "region name is not included in the group"),
    any(420, 36, K::Conflict, "the volume is offline or is not a DASD device"),
    family(420, K::Other, "volume space error"),
    any(436, 4, K::NotFound, "included profile not found"),
    any(436, 40, K::InvalidParameter, "more than one profile included"),
    family(436, K::Other, "profile error"),
    family(444, K::PolicyViolation, "password policy error"),
    family(448, K::PolicyViolation, "account policy error"),
    // The directory manager.
    any(500, 4, K::DirectoryManagerNotAcceptingUpdates, "the directory manager is not accepting updates"),
    any(500, 8, K::DirectoryManagerUnavailable, "the directory manager is not available"),
    any(500, 20, K::InvalidParameter, "password format not supported"),
    family(500, K::DirectoryManagerError, "directory manager error"),
    any(520, 24, K::InvalidParameter, "only one base CPU may be defined"),
    any(520, 28, K::InvalidParameter, "virtual CPU address out of range"),
    any(520, 30, K::NotFound, "CPU not found"),
    any(520, 32, K::InvalidParameter, "maximum allowed number of virtual CPUs exceeded"),
    family(520, K::Other, "CPU definition error"),
    family(592, K::AsynchronousOperationStarted, "asynchronous operation started"),
    family(596, K::DirectoryManagerError, "internal directory manager error"),
    // The SMAPI server.
    any(900, 12, K::ServerError, "the specified function does not exist"),
    any(900, 20, K::ServerError, "the total length does not match the input data"),
    any(900, 24, K::ServerError, "error accessing the SFS directory"),
    any(900, 36, K::ServerError, "a specified length is not valid (out of the server's range)"),
    only(
        "Virtual_Network_Vswitch_Query_Extended",
        900,
        99,
        K::ServerError,
        "the system changed during the call; issue it again",
    ),
    family(900, K::ServerError, "SMAPI server error"),
];

/// What `return_code`/`reason_code` mean for `function`.
pub fn meaning(function: &str, return_code: i32, reason_code: i32) -> Meaning {
    match return_code {
        RC_SYNTAX => return syntax_meaning(reason_code),
        396 => {
            return Meaning {
                kind: K::SystemError,
                text: format!("internal system error; CP reason code {reason_code}").into(),
            };
        }
        RC_DIRMAINT => {
            return Meaning {
                kind: K::DirectoryManagerError,
                text: format!("internal directory manager error; DirMaint message number {reason_code}").into(),
            };
        }
        RC_ASYNCHRONOUS if reason_code != 0 => {
            return Meaning {
                kind: K::AsynchronousOperationStarted,
                text: format!("asynchronous operation started; operation id or product data {reason_code}").into(),
            };
        }
        RC_OK if function == "Image_Deactivate" && reason_code != 0 => {
            return Meaning { kind: K::Other, text: format!("image deactivated within {reason_code} seconds").into() };
        }
        RC_OK if function == "Query_API_Functional_Level" => {
            return Meaning {
                kind: K::Other,
                text: format!("API functional level {}", functional_level(reason_code)).into(),
            };
        }
        _ => {}
    }
    let matches = |entry: &&Entry, by_function: bool, by_reason: bool| {
        entry.return_code == return_code
            && if by_function { entry.function == Some(function) } else { entry.function.is_none() }
            && if by_reason { entry.reason == Some(reason_code) } else { entry.reason.is_none() }
    };
    let found = [(true, true), (false, true), (true, false), (false, false)]
        .into_iter()
        .find_map(|(by_function, by_reason)| TABLE.iter().find(|entry| matches(entry, by_function, by_reason)));
    match found {
        Some(entry) if entry.reason.is_some() => Meaning { kind: entry.kind, text: Cow::Borrowed(entry.text) },
        Some(entry) => Meaning { kind: entry.kind, text: format!("{} (reason code {reason_code})", entry.text).into() },
        None => Meaning {
            kind: K::Other,
            text: format!("undocumented return code {return_code} with reason code {reason_code}").into(),
        },
    }
}

/// A syntax error: the reason code is the 1-based parameter number times 100 plus the reason.
fn syntax_meaning(reason_code: i32) -> Meaning {
    let parameter = reason_code / 100;
    let reason = reason_code % 100;
    let why = match reason {
        1 => "the list name starts with a colon",
        10 => "characters other than 0-9",
        11 => "unsupported function",
        13 => "longer than the maximum, or beyond the total length",
        14 => "shorter than the minimum",
        15 => "numeric value below the minimum, or a null value",
        16 => "characters other than hexadecimal digits",
        17 => "characters other than hexadecimal digits and '-'",
        18 => "numeric value above the maximum",
        19 => "unrecognized value",
        23 => "conflicting parameter specified",
        24 => "required parameter not specified",
        25 => "extraneous parameter specified",
        26 => "characters other than A-Z",
        36 => "characters other than A-Z and 0-9",
        37 => "characters other than A-Z, 0-9 and '-'",
        42 => "characters other than A-Z, 0-9 and @#$+-:",
        43 => "characters other than A-Z, 0-9 and @#$+-:_",
        44 => "characters other than A-Z, 0-9 and @#$+-:_=",
        45 => "directory name not valid",
        46 => "error parsing the file",
        88 => "unexpected end of data",
        99 => "characters that are not allowed (blank, null, delete, line end)",
        _ => "reason not documented",
    };
    Meaning { kind: K::Syntax, text: format!("syntax error in parameter {parameter}: {why} (reason {reason})").into() }
}

/// The z/VM release a Query_API_Functional_Level reason code stands for.
pub fn functional_level(level: i32) -> String {
    match level {
        0 => "of z/VM 5.3".into(),
        540 => "of z/VM 5.4".into(),
        610 => "of z/VM 6.1".into(),
        611 | 612 => "of z/VM 6.1 with updates".into(),
        620 => "of z/VM 6.2".into(),
        621 => "of z/VM 6.2 with network monitoring and HiperSockets bridge support".into(),
        630..=639 => "of z/VM 6.3".into(),
        640..=709 => "of z/VM 6.4".into(),
        710..=719 => "of z/VM 7.1".into(),
        level if level >= 720 => format!("{level} (z/VM 7.2 or later)"),
        level => format!("{level} (unknown)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_pairs_win_over_families() {
        let meaning = meaning("Image_Create_DM", 408, 24);
        assert_eq!(meaning.kind, ErrorKind::NoSpace);
        assert_eq!(meaning.text, "requested image disk space not available");
        assert_eq!(super::meaning("Image_Delete_DM", 400, 4).kind, ErrorKind::NotFound);
        assert_eq!(super::meaning("Image_Disk_Create_DM", 500, 8).kind, ErrorKind::DirectoryManagerUnavailable);
        assert_eq!(super::meaning("Check_Authentication", 100, 16).kind, ErrorKind::NotAuthorized);
    }

    #[test]
    fn function_specific_entries_win_over_general_ones() {
        assert_eq!(meaning("Image_Unlock_DM", 404, 24).kind, ErrorKind::NotLocked);
        assert_eq!(meaning("Image_Disk_Copy_DM", 404, 24).kind, ErrorKind::Conflict);
        assert_eq!(meaning("Response_Recovery", 4, 4).kind, ErrorKind::RequestNotFound);
        assert_eq!(meaning("Image_Status_Query", 0, 12).kind, ErrorKind::NotActive);
    }

    #[test]
    fn families_name_the_reason_code() {
        let meaning = meaning("Image_Create_DM", 400, 99);
        assert_eq!(meaning.kind, ErrorKind::Other);
        assert_eq!(meaning.text, "image definition error (reason code 99)");
        assert!(super::meaning("Image_Create_DM", 777, 1).text.contains("undocumented return code 777"));
    }

    #[test]
    fn computed_meanings() {
        assert_eq!(
            meaning("Image_Create_DM", 24, 313).text,
            "syntax error in parameter 3: longer than the maximum, or beyond the total length (reason 13)"
        );
        assert_eq!(
            meaning("Image_Delete_DM", 596, 6831).text,
            "internal directory manager error; DirMaint message number 6831"
        );
        assert_eq!(meaning("Virtual_Network_Vswitch_Set_Extended", 396, 3040).kind, ErrorKind::SystemError);
        assert_eq!(meaning("Image_Deactivate", 0, 30).text, "image deactivated within 30 seconds");
        assert_eq!(meaning("Query_API_Functional_Level", 0, 712).text, "API functional level of z/VM 7.1");
        assert_eq!(meaning("Image_Lock_DM", 592, 77).kind, ErrorKind::AsynchronousOperationStarted);
    }

    #[test]
    fn transient_kinds() {
        assert!(ErrorKind::Locked.is_transient());
        assert!(!ErrorKind::NotFound.is_transient());
    }
}
