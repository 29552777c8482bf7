//! From `smapi::Error` to `HypervisorError`, keeping IBM's meaning of the return and reason code in the
//! message: a full disk pool, an unavailable directory manager and a refused authorization get variants of their
//! own; everything else is `HypervisorError::Smapi` with the meaning and whether a retry may succeed.

use smapi::ErrorKind;

use crate::error::HypervisorError;

/// The return and reason code of a failed call, when the server answered one.
pub fn codes(error: &smapi::Error) -> Option<(i32, i32)> {
    error.call_error().map(|call| (call.return_code, call.reason_code))
}

/// Whether the error is z/VM's answer of this kind.
pub fn is_kind(error: &smapi::Error, kind: ErrorKind) -> bool {
    error.kind() == Some(kind)
}

/// What went wrong, in words: IBM's meaning with the codes, or the transport failure with its causes.
fn meaning(error: &smapi::Error) -> String {
    match error.call_error() {
        Some(call) => {
            let mut text =
                format!("{} (return code {}, reason code {})", call.meaning, call.return_code, call.reason_code);
            if !call.diagnostics.is_empty() {
                text.push_str(&format!(": {}", call.diagnostics.join("; ")));
            }
            text
        }
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

/// Maps a failed SMAPI call made for `operation` (`Image_Disk_Create_DM for WEB01/0100`).
pub fn map(operation: impl Into<String>, error: smapi::Error) -> HypervisorError {
    let operation = operation.into();
    let meaning = meaning(&error);
    match error.kind() {
        Some(ErrorKind::DirectoryManagerUnavailable | ErrorKind::DirectoryManagerNotAcceptingUpdates) => {
            HypervisorError::DirectoryManagerUnavailable { operation, meaning, source: Box::new(error) }
        }
        Some(ErrorKind::NotAuthorized | ErrorKind::AuthenticationFailed) => {
            HypervisorError::NotAuthorized { operation, meaning, source: Box::new(error) }
        }
        kind => {
            let retryable = kind.is_some_and(ErrorKind::is_transient)
                || matches!(
                    error,
                    smapi::Error::Connect { .. } | smapi::Error::Timeout { .. } | smapi::Error::Io { .. }
                );
            HypervisorError::Smapi { operation, meaning, retryable, source: Box::new(error) }
        }
    }
}

/// Maps a failed disk allocation: no space left (408/24) names the pool.
pub fn map_allocation(
    operation: impl Into<String>,
    pool: &str,
    request: String,
    error: smapi::Error,
) -> HypervisorError {
    if is_kind(&error, ErrorKind::NoSpace) {
        return HypervisorError::PoolFull { pool: pool.to_owned(), request, source: Box::new(error) };
    }
    map(operation, error)
}
