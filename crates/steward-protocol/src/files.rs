//! File transfer over the agent's one channel: a file (or a directory, as a tar stream) goes in chunks of at most
//! [`FILE_CHUNK_BYTES`], each chunk one request, with at most [`FILE_WINDOW_CHUNKS`] chunks in flight per
//! transfer. So neither side ever holds a file whole, and other messages (inventory, commands) pass between the
//! chunks on the same connection.
//!
//! Every step is an ordinary [`AgentRequest::File`](crate::AgentRequest::File) answered by one
//! [`AgentResponse::File`](crate::AgentResponse::File) (or an error), so the server's table of pending
//! requests, deadlines and "connection ended" handling apply to every chunk:
//!
//! ```text
//!  push (server -> agent)                              pull (agent -> server)
//!  PushBegin{path, format, mode, owner, mtime}         PullBegin{path}
//!    <- Started{transfer}                                <- Started{transfer, format, entry}
//!  PushChunk{transfer, sequence 0, data}               PullChunk{transfer, sequence 0}
//!  PushChunk{transfer, sequence 1, data}  } a window   PullChunk{transfer, sequence 1}  } a window
//!    <- ChunkAccepted{sequence 0}          } of 8        <- Data{sequence 0, data}       } of 8
//!  ...                                                 ...
//!  PushEnd{transfer, bytes, sha256}                      <- Data{sequence n, "", end{bytes, sha256}}
//!    <- Pushed{path, bytes, sha256, entries}           Close{transfer} <- Closed
//!  (or Close{transfer}: abandon, the agent removes what it wrote)
//! ```
//!
//! The receiver of the bytes acknowledges each chunk only once it has room for it (push: the agent's writer has
//! taken it; pull: the server asks for the next chunk only when it has sent one on), which is the flow control.
//! Chunks of one transfer carry consecutive sequence numbers from 0. The server sends the requests of a window
//! concurrently, so they may reach the agent out of order: the agent takes them in sequence, holding the early
//! ones (at most a window of them), and refuses a sequence number outside the window. Both sides compute SHA-256 while streaming: the agent
//! commits a push (renames its temporary files to their final names) only when its digest and byte count equal
//! the server's in `PushEnd`; the server compares a pull's bytes with the digest in the last chunk.
//!
//! A transfer lives as long as the conversation it started in: when the connection ends, the agent abandons
//! every open transfer and removes its temporary files.
//!
//! Compatibility: an agent older than this module reads `{"type":"file",...}` as
//! [`AgentRequest::Unsupported`](crate::AgentRequest::Unsupported) and answers an error saying so; the server
//! sends these requests only when an operator asks for a transfer. Chunk data is base64 in the JSON, which keeps
//! the frames valid JSON (and free of the `0xFF` bytes the virtio-serial framing reserves).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The most file bytes one chunk carries (before base64).
pub const FILE_CHUNK_BYTES: usize = 256 * 1024;

/// The most chunks of one transfer that may be in flight (sent and not yet answered).
pub const FILE_WINDOW_CHUNKS: usize = 8;

/// What the server asks of an agent about files; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FileRequest {
    PushBegin(PushBegin),
    PushChunk(PushChunk),
    PushEnd(PushEnd),
    PullBegin(PullBegin),
    PullChunk(PullChunk),
    /// Abandons a transfer (a push's temporary files are removed) or ends a pull.
    Close(TransferRef),
}

/// How the bytes of a transfer are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamFormat {
    /// The bytes of one regular file.
    File,
    /// A tar archive (ustar with GNU long names, see [`crate::tar`]) of a directory's entries, relative to it.
    Tar,
}

/// Starts writing `path` on the agent's system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushBegin {
    /// Absolute path of the file to write, or of the directory to unpack a tar stream into.
    pub path: String,
    pub format: StreamFormat,
    /// Permission bits (`0o7777` at most) of the file, or of the directory for a tar stream (whose entries carry
    /// their own). Without it: a new file gets `0644`, an existing one keeps its mode.
    #[serde(default)]
    pub mode: Option<u32>,
    /// Owner of the file (or directory); without it a new file belongs to the agent's user, an existing one keeps
    /// its owner.
    #[serde(default)]
    pub owner: Option<OwnerSpec>,
    /// Modification time, in seconds since the Unix epoch; without it, the time of writing.
    #[serde(default)]
    pub mtime: Option<i64>,
}

/// A user and a group, each a name (looked up on the agent's system) or a decimal number; either may be absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OwnerSpec {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
}

impl OwnerSpec {
    /// Parses `USER:GROUP`, `USER`, `:GROUP` or `USER:` (names or numbers).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (user, group) = match text.split_once(':') {
            Some((user, group)) => (user, group),
            None => (text, ""),
        };
        let part = |value: &str| -> Result<Option<String>, String> {
            if value.is_empty() {
                return Ok(None);
            }
            if value.len() > 64 || value.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':') {
                return Err(format!("{value:?} is not a user or group name"));
            }
            Ok(Some(value.to_string()))
        };
        let spec = Self { user: part(user)?, group: part(group)? };
        if spec.user.is_none() && spec.group.is_none() {
            return Err(format!("{text:?} names neither a user nor a group (use USER:GROUP)"));
        }
        Ok(spec)
    }
}

/// One chunk of a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushChunk {
    pub transfer: u64,
    /// 0 for the first chunk, then one more for each.
    pub sequence: u64,
    /// At most [`FILE_CHUNK_BYTES`] bytes, base64 ([`encode_chunk`]).
    pub data: String,
}

/// The end of a push: what the server sent, for the agent to compare with what it received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushEnd {
    pub transfer: u64,
    pub bytes: u64,
    /// Lower-case hexadecimal SHA-256 of every byte sent.
    pub sha256: String,
}

/// Starts reading `path`: a regular file is sent as it is, a directory as a tar stream of its entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullBegin {
    pub path: String,
}

/// Asks for the next chunk of a pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullChunk {
    pub transfer: u64,
    pub sequence: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRef {
    pub transfer: u64,
}

/// The agent's answers about files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FileResponse {
    /// A transfer is open; for a pull, what is being read.
    Started(TransferStarted),
    /// A push chunk was taken by the writer.
    ChunkAccepted(ChunkAccepted),
    /// A push was verified and committed under its final name(s).
    Pushed(PushOutcome),
    /// A pull chunk; the last one is empty and carries `end`.
    Data(PullData),
    /// The transfer is closed.
    Closed(TransferRef),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferStarted {
    pub transfer: u64,
    pub format: StreamFormat,
    /// For a pull: the file or directory read (resolved through symbolic links).
    #[serde(default)]
    pub entry: Option<EntryMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkAccepted {
    pub transfer: u64,
    pub sequence: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushOutcome {
    /// The final path written.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    /// Entries written: 1 for a file, every directory, file and link of a tar stream.
    pub entries: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullData {
    pub transfer: u64,
    pub sequence: u64,
    /// Base64 ([`decode_chunk`]); empty in the last chunk.
    pub data: String,
    /// Present in the last chunk (and in answers to chunks asked for after it): the whole stream's size and
    /// SHA-256.
    #[serde(default)]
    pub end: Option<StreamEnd>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamEnd {
    pub bytes: u64,
    pub sha256: String,
}

/// The kind of a file-system entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
}

/// What a pull reports of the entry it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryMetadata {
    pub kind: EntryKind,
    /// The size of a file (0 for a directory).
    pub size: u64,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// The owner's names, where the agent's system has names for them.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
}

/// Chunk bytes as they travel in the JSON.
pub fn encode_chunk(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes a chunk, refusing one longer than [`FILE_CHUNK_BYTES`] before decoding it.
pub fn decode_chunk(text: &str) -> Result<Vec<u8>, String> {
    if text.len() > base64::encoded_len(FILE_CHUNK_BYTES, true).unwrap_or(usize::MAX) {
        return Err(format!("a chunk of {} base64 characters is longer than {FILE_CHUNK_BYTES} bytes", text.len()));
    }
    base64::engine::general_purpose::STANDARD.decode(text).map_err(|error| format!("a chunk is not base64: {error}"))
}

/// Lower-case hexadecimal of a digest.
pub fn hex_digest(digest: &[u8]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentMessage, AgentRequest, AgentResponse, ServerMessage};

    #[test]
    fn file_requests_nest_in_the_request_envelope() {
        let message = ServerMessage::Request {
            id: 4,
            request: AgentRequest::File(FileRequest::PushChunk(PushChunk {
                transfer: 2,
                sequence: 0,
                data: encode_chunk(b"hello"),
            })),
        };
        let value = serde_json::to_value(&message).expect("serialize");
        assert_eq!(
            value,
            serde_json::json!({"type": "request", "id": 4, "request":
                {"type": "file", "op": "push_chunk", "transfer": 2, "sequence": 0, "data": "aGVsbG8="}})
        );
        let back: ServerMessage = serde_json::from_value(value).expect("deserialize");
        assert_eq!(back, message);

        let answer = AgentMessage::Response {
            id: 4,
            response: AgentResponse::File(FileResponse::Data(PullData {
                transfer: 2,
                sequence: 7,
                data: String::new(),
                end: Some(StreamEnd { bytes: 5, sha256: "ab".into() }),
            })),
        };
        let text = serde_json::to_string(&answer).expect("serialize");
        assert_eq!(serde_json::from_str::<AgentMessage>(&text).expect("deserialize"), answer);
    }

    #[test]
    fn unknown_fields_and_operations_are_refused() {
        let extra =
            r#"{"type":"request","id":1,"request":{"type":"file","op":"pull_begin","path":"/x","follow":true}}"#;
        let error = serde_json::from_str::<ServerMessage>(extra).expect_err("unknown field").to_string();
        assert!(error.contains("unknown field `follow`"), "{error}");
        let unknown = r#"{"type":"request","id":1,"request":{"type":"file","op":"delete","path":"/x"}}"#;
        let error = serde_json::from_str::<ServerMessage>(unknown).expect_err("unknown op").to_string();
        assert!(error.contains("unknown variant `delete`"), "{error}");
    }

    #[test]
    fn chunks_round_trip_and_oversized_ones_are_refused_before_decoding() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(FILE_CHUNK_BYTES).collect();
        assert_eq!(decode_chunk(&encode_chunk(&bytes)).expect("decodes"), bytes);
        let too_long = encode_chunk(&vec![0u8; FILE_CHUNK_BYTES + 3]);
        assert!(decode_chunk(&too_long).expect_err("too long").contains("longer than"));
        assert!(decode_chunk("not base64!").expect_err("bad").contains("not base64"));
    }

    #[test]
    fn owners_parse_from_user_colon_group() {
        assert_eq!(
            OwnerSpec::parse("www-data:adm").expect("parses"),
            OwnerSpec { user: Some("www-data".into()), group: Some("adm".into()) }
        );
        assert_eq!(OwnerSpec::parse("0").expect("parses"), OwnerSpec { user: Some("0".into()), group: None });
        assert_eq!(OwnerSpec::parse(":12").expect("parses"), OwnerSpec { user: None, group: Some("12".into()) });
        assert!(OwnerSpec::parse(":").is_err());
        assert!(OwnerSpec::parse("a b:c").is_err());
    }
}
