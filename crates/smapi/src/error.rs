//! The crate's errors: building a request ([`EncodeError`]), reading a reply ([`DecodeError`]), a return and
//! reason code other than success ([`CallError`]), and everything a call through the client can end with
//! ([`Error`]).

use std::fmt;
use std::time::Duration;

use crate::codes::ErrorKind;

/// A request that cannot be put on the wire as given; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{field} is {length} bytes long; SMAPI accepts {min} to {max} bytes")]
    Length { field: &'static str, length: usize, min: usize, max: usize },
    #[error("{field} contains {character:?}, which has no ISO-8859-15 encoding")]
    Unencodable { field: &'static str, character: char },
    #[error("{field} contains a NUL byte, which would end the value early on the wire")]
    ContainsNul { field: &'static str },
    #[error("{field}: keyword {keyword:?} must be non-empty and contain neither '=' nor a NUL byte")]
    BadKeyword { field: &'static str, keyword: String },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("the request would be {length} bytes long, more than a SMAPI frame can carry")]
    FrameTooLarge { length: usize },
}

/// Bytes from the server (or a request frame from a client) that do not follow the layout they should.
///
/// Offsets count from the start of the function's output data, which begins 20 bytes into the reply frame
/// (after the request id, output length, request id again, return code and reason code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{field} at offset {offset}: needs {needed} bytes but only {available} remain")]
    Truncated { field: String, offset: usize, needed: usize, available: usize },
    #[error("{field} at offset {offset}: length {length} is negative")]
    NegativeLength { field: String, offset: usize, length: i32 },
    #[error("{field} at offset {offset}: text is not terminated by a NUL byte")]
    Unterminated { field: String, offset: usize },
    #[error("reply frame is {length} bytes long, shorter than the 8-byte reply header")]
    ShortReply { length: usize },
    #[error("reply header: output length {output_length} is below 12 (request id, return code, reason code)")]
    OutputLengthTooSmall { output_length: u32 },
    #[error("reply header: output length {output_length} exceeds the limit of {limit} bytes")]
    OutputLengthTooLarge { output_length: u32, limit: usize },
    #[error("reply header announces {output_length} bytes of output but {actual} bytes follow it")]
    ReplyLengthMismatch { output_length: u32, actual: usize },
    #[error("request frame: input length {input_length} does not match the {actual} bytes that follow it")]
    RequestLengthMismatch { input_length: u32, actual: usize },
    #[error("{field} at offset {offset}: {reason}")]
    Invalid { field: String, offset: usize, reason: String },
    #[error("decoded output has no field {field} (the function's layout and its typed output disagree)")]
    LayoutMismatch { field: &'static str },
}

/// A reply whose return code is neither success (0) nor "asynchronous operation started" (592), with IBM's
/// meaning of the return and reason code and whatever diagnostic text the function appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub function: &'static str,
    pub target: String,
    pub return_code: i32,
    pub reason_code: i32,
    pub kind: ErrorKind,
    pub meaning: String,
    /// Text the server appended to the reply (for example `UNKNOWN_DIRECTORY_KEYWORD_PARAMETER=BOGUS`), one
    /// entry per line or structure; empty when there was none.
    pub diagnostics: Vec<String>,
}

impl fmt::Display for CallError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} for {:?} failed with return code {}, reason code {}: {}",
            self.function, self.target, self.return_code, self.reason_code, self.meaning
        )?;
        if !self.diagnostics.is_empty() {
            write!(formatter, " ({})", self.diagnostics.join("; "))?;
        }
        Ok(())
    }
}

impl std::error::Error for CallError {}

/// Everything a SMAPI call can end with, from a request that could not be encoded to a DirMaint operation that
/// failed after it started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot encode {function}")]
    Encode {
        function: &'static str,
        #[source]
        source: EncodeError,
    },
    #[error("cannot decode the reply to {function}")]
    Decode {
        function: &'static str,
        #[source]
        source: DecodeError,
    },
    #[error(transparent)]
    Call(#[from] CallError),
    /// The server accepted the request as an asynchronous (DirMaint) operation, and polling it with
    /// `Query_Asynchronous_Operation_DM` reported that it failed (reason code 108) or answered a reason code
    /// that means neither success nor progress.
    #[error(
        "{function} for {target:?}: asynchronous operation {operation_id} failed (query reason code {reason_code})"
    )]
    AsynchronousOperationFailed { function: &'static str, target: String, operation_id: u32, reason_code: i32 },
    /// The asynchronous operation was still in progress after the configured number of polls.
    #[error("{function} for {target:?}: asynchronous operation {operation_id} still in progress after {polls} polls")]
    AsynchronousOperationStillRunning { function: &'static str, target: String, operation_id: u32, polls: u32 },
    /// The server answered "asynchronous operation started" without an operation id to poll.
    #[error("{function} for {target:?}: asynchronous operation started without an operation id to poll ({data:?})")]
    AsynchronousOperationNotPollable { function: &'static str, target: String, data: Vec<String> },
    #[error("cannot connect to the SMAPI server at {address} after {attempts} attempts")]
    Connect {
        address: String,
        attempts: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with the SMAPI server at {address} failed")]
    Tls {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{function}: connection to the SMAPI server failed while {stage}")]
    Io {
        function: &'static str,
        stage: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{function}: no answer from the SMAPI server within {after:?} while {stage}")]
    Timeout { function: &'static str, stage: &'static str, after: Duration },
    /// The connection dropped after the server had accepted the request (its request id had arrived), and
    /// `Response_Recovery` could not get the reply back either.
    #[error("{function}: the reply to request {request_id} was lost and could not be recovered")]
    ReplyLost {
        function: &'static str,
        request_id: u32,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// The return and reason code behind this error, when the server sent one.
    pub fn call_error(&self) -> Option<&CallError> {
        match self {
            Error::Call(call) => Some(call),
            Error::ReplyLost { source, .. } => source.call_error(),
            _ => None,
        }
    }

    /// The classification of the server's return and reason code, when there was one.
    pub fn kind(&self) -> Option<ErrorKind> {
        self.call_error().map(|call| call.kind)
    }
}
