//! Reply framing and its interpretation.
//!
//! A reply is: the request id (sent as soon as the server accepts the request, before it runs), the output
//! length (the bytes after it, at least 12), the request id again, the return code, the reason code, and the
//! function's output. [`Reply`] parses that with the lengths checked before anything is allocated; [`interpret`]
//! turns it into an [`Outcome`] (done, or an asynchronous operation started) or a [`CallError`] carrying IBM's
//! meaning of the codes.

use crate::codes::{self, RC_ASYNCHRONOUS, RC_OK};
use crate::error::{CallError, DecodeError, Error};
use crate::layout::split_nul_strings;
use crate::request::SmapiRequest;

/// The largest reply output accepted by default. Directory listings of big systems are a few hundred KiB.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;

/// The 12 bytes every output length covers: request id, return code, reason code.
const FIXED_OUTPUT_BYTES: usize = 12;

/// One reply from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The request id sent first, when the server accepted the request (needed for Response_Recovery).
    pub request_id: u32,
    /// The request id repeated inside the output.
    pub reply_request_id: u32,
    pub return_code: i32,
    pub reason_code: i32,
    /// The function's output data (possibly empty).
    pub output: Vec<u8>,
}

impl Reply {
    /// Parses a whole reply frame with the default output limit.
    pub fn parse(frame: &[u8]) -> Result<Reply, DecodeError> {
        Reply::parse_with_limit(frame, DEFAULT_MAX_OUTPUT_BYTES)
    }

    /// Parses a whole reply frame; its output length must match the bytes present exactly.
    pub fn parse_with_limit(frame: &[u8], limit: usize) -> Result<Reply, DecodeError> {
        if frame.len() < 8 {
            return Err(DecodeError::ShortReply { length: frame.len() });
        }
        let (header, body) = frame.split_at(8);
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(header);
        let (request_id, length) = Reply::read_header(prefix, limit)?;
        if body.len() != length {
            return Err(DecodeError::ReplyLengthMismatch { output_length: length as u32, actual: body.len() });
        }
        Reply::from_body(request_id, body.to_vec())
    }

    /// Reads the first 8 bytes of a reply (request id, output length) and returns the request id and the number
    /// of bytes still to read, refusing a length below 12 or above `limit` before anything is allocated.
    pub fn read_header(prefix: [u8; 8], limit: usize) -> Result<(u32, usize), DecodeError> {
        let request_id = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let output_length = u32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
        let length = usize::try_from(output_length).unwrap_or(usize::MAX);
        if length < FIXED_OUTPUT_BYTES {
            return Err(DecodeError::OutputLengthTooSmall { output_length });
        }
        if length > limit.saturating_add(FIXED_OUTPUT_BYTES) {
            return Err(DecodeError::OutputLengthTooLarge { output_length, limit });
        }
        Ok((request_id, length))
    }

    /// Builds a reply from the request id and the `output length` bytes that followed the header.
    pub fn from_body(request_id: u32, mut body: Vec<u8>) -> Result<Reply, DecodeError> {
        if body.len() < FIXED_OUTPUT_BYTES {
            return Err(DecodeError::OutputLengthTooSmall { output_length: body.len() as u32 });
        }
        let word = |index: usize| [body[index], body[index + 1], body[index + 2], body[index + 3]];
        let reply_request_id = u32::from_be_bytes(word(0));
        let return_code = i32::from_be_bytes(word(4));
        let reason_code = i32::from_be_bytes(word(8));
        body.drain(..FIXED_OUTPUT_BYTES);
        Ok(Reply { request_id, reply_request_id, return_code, reason_code, output: body })
    }

    /// The reply as the server sends it (for test responders and simulators).
    pub fn encode(&self) -> Vec<u8> {
        let mut frame = Vec::with_capacity(20 + self.output.len());
        frame.extend_from_slice(&self.request_id.to_be_bytes());
        frame.extend_from_slice(&((self.output.len() + FIXED_OUTPUT_BYTES) as u32).to_be_bytes());
        frame.extend_from_slice(&self.reply_request_id.to_be_bytes());
        frame.extend_from_slice(&self.return_code.to_be_bytes());
        frame.extend_from_slice(&self.reason_code.to_be_bytes());
        frame.extend_from_slice(&self.output);
        frame
    }
}

/// A DirMaint operation the server started instead of finishing the request (return code 592).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsynchronousOperation {
    /// The ids to poll with Query_Asynchronous_Operation_DM. Empty when the server gave none.
    pub operation_ids: Vec<u32>,
    /// The keyword functions' operation data, as sent.
    pub data: Vec<String>,
}

/// How a request ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// Return code 0; the reason code may still carry information (for example 0/12 "not active").
    Completed { output: T, reason_code: i32 },
    /// Return code 592: the work goes on in DirMaint; poll the operation to learn how it ends.
    Started { operation: AsynchronousOperation, output: T },
}

impl<T> Outcome<T> {
    pub fn output(&self) -> &T {
        match self {
            Outcome::Completed { output, .. } | Outcome::Started { output, .. } => output,
        }
    }

    pub fn into_output(self) -> T {
        match self {
            Outcome::Completed { output, .. } | Outcome::Started { output, .. } => output,
        }
    }
}

/// Interprets a reply to `request`: success and asynchronous starts decode the output; any other return code
/// becomes a [`CallError`].
pub fn interpret<R: SmapiRequest>(request: &R, reply: &Reply) -> Result<Outcome<R::Output>, Error> {
    let decode =
        |reply: &Reply| R::decode_output(reply).map_err(|source| Error::Decode { function: R::FUNCTION, source });
    match reply.return_code {
        RC_OK => Ok(Outcome::Completed { output: decode(reply)?, reason_code: reply.reason_code }),
        RC_ASYNCHRONOUS => {
            let operation = asynchronous_operation::<R>(reply);
            Ok(Outcome::Started { output: decode(reply)?, operation })
        }
        _ => Err(Error::Call(call_error::<R>(request.target(), reply))),
    }
}

/// The [`CallError`] for a reply to `R` with a failing return code.
pub fn call_error<R: SmapiRequest>(target: &str, reply: &Reply) -> CallError {
    let meaning = codes::meaning(R::FUNCTION, reply.return_code, reply.reason_code);
    CallError {
        function: R::FUNCTION,
        target: target.to_owned(),
        return_code: reply.return_code,
        reason_code: reply.reason_code,
        kind: meaning.kind,
        meaning: meaning.text.into_owned(),
        diagnostics: R::error_diagnostics(reply),
    }
}

/// Where the operation id of a 592 reply is: for keyword functions, the NUL-terminated strings of the output
/// (numeric ones are operation ids); otherwise a non-zero reason code, else the int4 operation id output.
fn asynchronous_operation<R: SmapiRequest>(reply: &Reply) -> AsynchronousOperation {
    if R::KEYWORD_ASYNCHRONOUS_DATA {
        let data = keyword_data(&reply.output);
        let operation_ids = data.iter().filter_map(|entry| entry.trim().parse::<u32>().ok()).collect();
        return AsynchronousOperation { operation_ids, data };
    }
    let operation_ids = if reply.reason_code != 0 {
        vec![reply.reason_code as u32]
    } else if let Some(first) = reply.output.get(..4) {
        vec![u32::from_be_bytes([first[0], first[1], first[2], first[3]])]
    } else {
        Vec::new()
    };
    AsynchronousOperation { operation_ids, data: Vec::new() }
}

/// The framed NUL-string list of a keyword function's output, or nothing if it is not one.
fn keyword_data(output: &[u8]) -> Vec<String> {
    let Some((length, rest)) = output.split_first_chunk::<4>() else {
        return Vec::new();
    };
    let length = usize::try_from(u32::from_be_bytes(*length)).unwrap_or(usize::MAX);
    rest.get(..length).map(split_nul_strings).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_encodes_a_reply() {
        let frame = b"\x00\x00\x00\x07\x00\x00\x00\x10\x00\x00\x00\x07\x00\x00\x02\x50\x00\x00\x00\x00\xff\xff\xff\xff";
        let reply = Reply::parse(frame).unwrap();
        assert_eq!(reply.request_id, 7);
        assert_eq!(reply.return_code, 592);
        assert_eq!(reply.output, [0xff; 4]);
        assert_eq!(reply.encode(), frame);
    }

    #[test]
    fn header_lengths_are_checked_first() {
        assert_eq!(Reply::parse(b"\x00\x00"), Err(DecodeError::ShortReply { length: 2 }));
        assert_eq!(
            Reply::read_header(*b"\x00\x00\x00\x01\x00\x00\x00\x0b", 100),
            Err(DecodeError::OutputLengthTooSmall { output_length: 11 })
        );
        assert_eq!(
            Reply::read_header(*b"\x00\x00\x00\x01\xff\xff\xff\xff", 100),
            Err(DecodeError::OutputLengthTooLarge { output_length: u32::MAX, limit: 100 })
        );
        assert_eq!(
            Reply::parse(b"\x00\x00\x00\x01\x00\x00\x00\x0c\x00\x00"),
            Err(DecodeError::ReplyLengthMismatch { output_length: 12, actual: 2 })
        );
    }
}
