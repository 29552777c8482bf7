//! File transfer: `PUT` and `GET /api/v1/systems/{system}/files`, `POST /api/v1/groups/{group}/files`. The file
//! itself is the request or response body (a tar archive for a directory), streamed; these are the query
//! parameters and the JSON results. See `docs/file-transfer.md`.

use serde::{Deserialize, Serialize};

use crate::validate::ValidationError;

/// The media type of a directory, in both directions.
pub const TAR_MEDIA_TYPE: &str = "application/x-tar";

/// Response headers of a pull (`GET`): what was read. `Steward-Sha256` and `Steward-Bytes` come as trailers, after
/// the body, for clients that send `TE: trailers`.
pub const HEADER_KIND: &str = "steward-kind";
pub const HEADER_SIZE: &str = "steward-size";
pub const HEADER_MODE: &str = "steward-mode";
pub const HEADER_UID: &str = "steward-uid";
pub const HEADER_GID: &str = "steward-gid";
pub const HEADER_USER: &str = "steward-user";
pub const HEADER_GROUP: &str = "steward-group";
pub const HEADER_MTIME: &str = "steward-mtime";
pub const TRAILER_SHA256: &str = "steward-sha256";
pub const TRAILER_BYTES: &str = "steward-bytes";

/// Where and how to write a pushed file (`PUT /systems/{system}/files`, `POST /groups/{group}/files`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FilePushQuery {
    /// Absolute path of the file to write, or of the directory a tar body is unpacked into.
    pub path: String,
    /// Permission bits in octal (`0644`, `755`, `4755`). Without it a new file gets 0644 and an existing one keeps
    /// its mode; a directory's entries keep the archive's modes.
    pub mode: Option<String>,
    /// `USER:GROUP`, `USER` or `:GROUP`, names (looked up on the system) or numbers.
    pub owner: Option<String>,
    /// Modification time to give the file, seconds since the Unix epoch.
    pub mtime: Option<i64>,
    /// SHA-256 (hexadecimal) the body must have; when given, nothing is written unless the body matches.
    pub sha256: Option<String>,
}

impl FilePushQuery {
    /// Checks the parameters; returns the mode as a number.
    pub fn validate(&self) -> Result<Option<u32>, ValidationError> {
        validate_path(&self.path)?;
        if let Some(sha256) = &self.sha256
            && (sha256.len() != 64 || !sha256.bytes().all(|byte| byte.is_ascii_hexdigit()))
        {
            return Err(ValidationError::new("sha256", "must be 64 hexadecimal digits"));
        }
        if let Some(owner) = &self.owner {
            steward_protocol::files::OwnerSpec::parse(owner).map_err(|reason| ValidationError::new("owner", reason))?;
        }
        self.mode.as_deref().map(parse_mode).transpose()
    }
}

/// Parses an octal permission mode (`0644`, `755`, `0o4755`).
pub fn parse_mode(text: &str) -> Result<u32, ValidationError> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 && !digits.is_empty() => Ok(mode),
        _ => Err(ValidationError::new("mode", format!("{text:?} is not an octal permission mode (0 to 7777)"))),
    }
}

/// What to read (`GET /systems/{system}/files`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FilePullQuery {
    /// Absolute path of a file (sent as it is) or a directory (sent as a tar archive).
    pub path: String,
}

pub fn validate_path(path: &str) -> Result<(), ValidationError> {
    if !path.starts_with('/') {
        return Err(ValidationError::new("path", "must be an absolute path (starting with /)"));
    }
    if path.split('/').any(|component| component == "..") {
        return Err(ValidationError::new("path", "must not contain `..`"));
    }
    if path.len() > 4096 || path.contains('\0') {
        return Err(ValidationError::new("path", "is longer than 4096 bytes or contains a NUL byte"));
    }
    Ok(())
}

/// A push that was verified and committed on one system.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct FilePushed {
    pub system: String,
    pub system_id: String,
    /// The path written, as the system resolved it.
    pub path: String,
    /// `file` or `tar`.
    pub format: String,
    pub bytes: u64,
    /// SHA-256 of the bytes, as both the server and the agent computed it.
    pub sha256: String,
    /// Entries written: 1 for a file, every directory, file and link of an archive.
    pub entries: u64,
}

/// One member's outcome of a group push.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct FileTargetResult {
    pub system: String,
    pub system_id: String,
    pub ok: bool,
    /// What was written, when `ok`.
    pub path: Option<String>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    pub entries: Option<u64>,
    /// Why not, when not `ok`: an error code and a message naming the system.
    pub error: Option<FileTargetError>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct FileTargetError {
    pub code: String,
    pub message: String,
}

/// The result of `POST /groups/{group}/files`: one entry per member, in name order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct GroupFilePush {
    pub group: String,
    pub path: String,
    /// Size and SHA-256 of the upload, as the server received it.
    pub bytes: u64,
    pub sha256: String,
    pub succeeded: u32,
    pub failed: u32,
    pub results: Vec<FileTargetResult>,
}

/// The bytes of a file or tar archive, as a request or response body (documentation only: bodies stream).
#[derive(Debug, Clone, utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct FileBody(pub Vec<u8>);
