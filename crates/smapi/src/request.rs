//! Request framing: the [`SmapiRequest`] trait every typed function implements, [`encode_request`] which puts
//! one on the wire, and [`RequestFrame`] which reads a frame back (for test responders and simulators).
//!
//! A request frame is: int4 input length (the bytes after it), then the function name, the authenticated user
//! ID (0-8 bytes), the password (0-200 bytes) and the target identifier (1-8 bytes), each with an int4 length
//! prefix, then the function's own parameters in their documented order, with no terminator.

use std::fmt;

use crate::error::{DecodeError, EncodeError};
use crate::layout::split_nul_strings;
use crate::response::Reply;
use crate::text;
use crate::wire::{Cursor, Limits, ParameterWriter, Shortfall};

/// The largest request frame this crate builds; SMAPI requests are small, and a much larger one is a mistake.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// The credentials sent with every request over TCP. Over IUCV both may be empty.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    userid: String,
    password: String,
}

impl Credentials {
    /// Checks what SMAPI accepts: a user ID of at most 8 characters and a password of at most 200 bytes, both
    /// encodable as ISO-8859-15.
    pub fn new(userid: impl Into<String>, password: impl Into<String>) -> Result<Self, EncodeError> {
        let credentials = Credentials { userid: userid.into(), password: password.into() };
        let mut scratch = ParameterWriter::new();
        scratch.string("authenticated user ID", &credentials.userid, Limits::range(0, 8))?;
        scratch.string("password", &credentials.password, Limits::range(0, 200))?;
        Ok(credentials)
    }

    /// Empty user ID and password, as sent over IUCV where the link identifies the caller.
    pub fn none() -> Self {
        Credentials { userid: String::new(), password: String::new() }
    }

    pub fn userid(&self) -> &str {
        &self.userid
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Credentials").field("userid", &self.userid).field("password", &"<redacted>").finish()
    }
}

/// How long the server may take to answer: most calls within the normal timeout, a few (disk copies) longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallDuration {
    Normal,
    Long,
}

/// One SMAPI function: its wire name, how its parameters are encoded and how its output is decoded.
pub trait SmapiRequest {
    /// The function name exactly as sent on the wire.
    const FUNCTION: &'static str;
    /// Which timeout applies while waiting for the reply.
    const DURATION: CallDuration = CallDuration::Normal;
    /// True for the keyword-list directory functions, whose "asynchronous operation started" reply (592/4)
    /// carries its operation data as NUL-terminated strings in the output rather than in the reason code.
    const KEYWORD_ASYNCHRONOUS_DATA: bool = false;

    type Output;

    /// The target identifier: a guest name, `*`, or a name for system-wide calls (ignored by the server).
    fn target(&self) -> &str;

    /// Appends the function-specific parameters.
    fn write_parameters(&self, writer: &mut ParameterWriter) -> Result<(), EncodeError>;

    /// Decodes the output of a successful (return code 0) or asynchronous (592) reply.
    fn decode_output(reply: &Reply) -> Result<Self::Output, DecodeError>;

    /// Text describing the output of a failed reply, for the error message. The default reads a framed list
    /// of NUL-terminated strings, or plain text, and otherwise only says how many bytes there were.
    fn error_diagnostics(reply: &Reply) -> Vec<String> {
        opaque_diagnostics(&reply.output)
    }
}

/// Encodes one request frame.
pub fn encode_request<R: SmapiRequest + ?Sized>(
    request: &R,
    credentials: &Credentials,
) -> Result<Vec<u8>, EncodeError> {
    let mut writer = ParameterWriter::new();
    writer.string("function name", R::FUNCTION, Limits::range(1, 64))?;
    writer.string("authenticated user ID", &credentials.userid, Limits::range(0, 8))?;
    writer.string("password", &credentials.password, Limits::range(0, 200))?;
    writer.string("target identifier", request.target(), Limits::range(1, 8))?;
    request.write_parameters(&mut writer)?;
    let body = writer.into_bytes();
    if body.len() + 4 > MAX_REQUEST_BYTES {
        return Err(EncodeError::FrameTooLarge { length: body.len() + 4 });
    }
    let input_length = u32::try_from(body.len()).map_err(|_| EncodeError::FrameTooLarge { length: body.len() + 4 })?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&input_length.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// A request frame read back from bytes: the common header and the undecoded function parameters.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestFrame {
    pub function: String,
    pub userid: String,
    pub password: String,
    pub target: String,
    pub parameters: Vec<u8>,
}

impl fmt::Debug for RequestFrame {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RequestFrame")
            .field("function", &self.function)
            .field("userid", &self.userid)
            .field("password", &"<redacted>")
            .field("target", &self.target)
            .field("parameters", &self.parameters.len())
            .finish()
    }
}

impl RequestFrame {
    /// Parses a whole frame, input length included; the length must match the bytes that follow it.
    pub fn parse(frame: &[u8]) -> Result<RequestFrame, DecodeError> {
        let mut cursor = Cursor::new(frame);
        let input_length = cursor.int4().map_err(|shortfall| named("input length", shortfall))? as u32;
        if usize::try_from(input_length).ok() != Some(cursor.remaining()) {
            return Err(DecodeError::RequestLengthMismatch { input_length, actual: cursor.remaining() });
        }
        let mut string = |field: &'static str| -> Result<String, DecodeError> {
            let length = cursor.length().map_err(|shortfall| named(field, shortfall))?;
            let bytes = cursor.take(length).map_err(|shortfall| named(field, shortfall))?;
            Ok(text::decode(bytes))
        };
        let function = string("function name")?;
        let userid = string("authenticated user ID")?;
        let password = string("password")?;
        let target = string("target identifier")?;
        Ok(RequestFrame { function, userid, password, target, parameters: cursor.rest().to_vec() })
    }
}

fn named(field: &str, shortfall: Shortfall) -> DecodeError {
    let field = field.to_owned();
    match shortfall {
        Shortfall::Truncated { offset, needed, available } => {
            DecodeError::Truncated { field, offset, needed, available }
        }
        Shortfall::NegativeLength { offset, length } => DecodeError::NegativeLength { field, offset, length },
        Shortfall::Unterminated { offset } => DecodeError::Unterminated { field, offset },
    }
}

/// Diagnostic text from an output whose layout is not known: a framed NUL-string list, else printable text,
/// else just its size.
pub fn opaque_diagnostics(output: &[u8]) -> Vec<String> {
    if output.is_empty() {
        return Vec::new();
    }
    if output.len() >= 4 {
        let (length, rest) = output.split_at(4);
        let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]);
        if usize::try_from(length).ok() == Some(rest.len()) && is_text(rest) {
            return split_nul_strings(rest);
        }
    }
    if is_text(output) {
        return split_nul_strings(output);
    }
    vec![format!("{} bytes of binary diagnostic data", output.len())]
}

fn is_text(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| byte == 0 || byte == b'\n' || (0x20..0x7f).contains(&byte) || byte >= 0xa0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe(&'static str);

    impl SmapiRequest for Probe {
        const FUNCTION: &'static str = "Image_Activate";
        type Output = ();

        fn target(&self) -> &str {
            self.0
        }

        fn write_parameters(&self, _writer: &mut ParameterWriter) -> Result<(), EncodeError> {
            Ok(())
        }

        fn decode_output(_reply: &Reply) -> Result<(), DecodeError> {
            Ok(())
        }
    }

    #[test]
    fn frames_the_common_header() {
        let credentials = Credentials::new("maint", "maint").unwrap();
        let frame = encode_request(&Probe("gt@ping"), &credentials).unwrap();
        let mut expected = vec![0, 0, 0, 0x2f, 0, 0, 0, 0x0e];
        expected.extend_from_slice(b"Image_Activate\x00\x00\x00\x05maint\x00\x00\x00\x05maint\x00\x00\x00\x07gt@ping");
        assert_eq!(frame, expected);
        let parsed = RequestFrame::parse(&frame).unwrap();
        assert_eq!(parsed.function, "Image_Activate");
        assert_eq!(parsed.target, "gt@ping");
        assert!(parsed.parameters.is_empty());
        assert!(format!("{parsed:?}").contains("password: \"<redacted>\""));
    }

    #[test]
    fn bad_headers_are_refused() {
        let credentials = Credentials::none();
        assert!(matches!(
            encode_request(&Probe(""), &credentials),
            Err(EncodeError::Length { field: "target identifier", .. })
        ));
        assert!(encode_request(&Probe("NINECHARS"), &credentials).is_err());
        assert!(Credentials::new("TOOLONGUSER", "x").is_err());
        assert!(Credentials::new("maint", "p".repeat(201)).is_err());
        assert!(!format!("{:?}", Credentials::new("maint", "secret").unwrap()).contains("secret"));
    }

    #[test]
    fn request_frames_must_match_their_length() {
        assert!(matches!(
            RequestFrame::parse(b"\x00\x00\x00\x09\x00\x00\x00\x01A"),
            Err(DecodeError::RequestLengthMismatch { input_length: 9, actual: 5 })
        ));
        assert!(matches!(RequestFrame::parse(b"\x00\x00"), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn opaque_diagnostics_prefer_text() {
        assert_eq!(opaque_diagnostics(b"\x00\x00\x00\x04AB=\x00"), ["AB="]);
        assert_eq!(opaque_diagnostics(b"HCP003E Invalid option"), ["HCP003E Invalid option"]);
        assert_eq!(opaque_diagnostics(b"\x01\x02\x03"), ["3 bytes of binary diagnostic data"]);
        assert!(opaque_diagnostics(b"").is_empty());
    }
}
