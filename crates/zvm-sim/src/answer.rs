//! What a handler answers: a return code, a reason code and output data, with constructors for the codes the
//! simulator uses, and the context every handler gets.

use std::time::{Duration, SystemTime};

use smapi::server::{OutputWriter, ParameterError};

use crate::config::Timing;

/// Return codes (see `smapi::codes` for their meanings).
pub const RC_OK: i32 = 0;
pub const RC_WARNING: i32 = 4;
pub const RC_KEYWORD: i32 = 8;
pub const RC_SYNTAX: i32 = 24;
pub const RC_NOT_AUTHORIZED: i32 = 100;
pub const RC_AUTHENTICATION: i32 = 120;
pub const RC_IMAGE: i32 = 200;
pub const RC_IMAGE_DEVICE: i32 = 204;
pub const RC_NETWORK: i32 = 212;
pub const RC_CP: i32 = 396;
pub const RC_DIRECTORY: i32 = 400;
pub const RC_DEVICE_DEFINITION: i32 = 404;
pub const RC_DISK_DEFINITION: i32 = 408;
pub const RC_CONNECTION_DEFINITION: i32 = 412;
pub const RC_VOLUME_SPACE: i32 = 420;
pub const RC_PROFILE: i32 = 436;
pub const RC_DIRECTORY_MANAGER: i32 = 500;
pub const RC_CPU: i32 = 520;
pub const RC_ASYNCHRONOUS: i32 = 592;
pub const RC_DIRMAINT: i32 = 596;
pub const RC_SERVER: i32 = 900;

/// Syntax error reasons (the `rr` of `pp*100 + rr`).
pub const SYNTAX_TOO_LONG: i32 = 13;
pub const SYNTAX_UNRECOGNIZED: i32 = 19;
pub const SYNTAX_REQUIRED: i32 = 24;

/// One reply's codes and output data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub return_code: i32,
    pub reason_code: i32,
    pub output: Vec<u8>,
}

impl Answer {
    pub fn ok() -> Answer {
        Answer::code(RC_OK, 0)
    }

    pub fn code(return_code: i32, reason_code: i32) -> Answer {
        Answer { return_code, reason_code, output: Vec::new() }
    }

    pub fn with_output(return_code: i32, reason_code: i32, output: OutputWriter) -> Answer {
        Answer { return_code, reason_code, output: output.into_bytes() }
    }

    /// Success with output data.
    pub fn output(output: OutputWriter) -> Answer {
        Answer::with_output(RC_OK, 0, output)
    }

    /// A syntax error in the 1-based parameter `parameter` (the target is not counted).
    pub fn syntax(parameter: usize, reason: i32) -> Answer {
        let parameter = i32::try_from(parameter).unwrap_or(99).min(99);
        Answer::code(RC_SYNTAX, parameter * 100 + reason)
    }

    /// The classic directory functions' output when they finished synchronously: operation id `FF FF FF FF`.
    pub fn completed_operation() -> Answer {
        let mut output = OutputWriter::new();
        output.int4(-1);
        Answer::output(output)
    }

    /// A keyword function that refused a keyword: 8/3002 with `UNKNOWN_DIRECTORY_KEYWORD_PARAMETER=...`.
    pub fn unknown_keyword(keyword: &str) -> Answer {
        let mut output = OutputWriter::new();
        output.nul_list(&[format!("UNKNOWN_DIRECTORY_KEYWORD_PARAMETER={keyword}")]);
        Answer::with_output(RC_KEYWORD, 3002, output)
    }

    /// 8/3003: a keyword's operand is not valid.
    pub fn invalid_operand() -> Answer {
        Answer::code(RC_KEYWORD, 3003)
    }

    /// 8/3004: a required keyword is missing.
    pub fn missing_keyword() -> Answer {
        Answer::code(RC_KEYWORD, 3004)
    }
}

impl From<ParameterError> for Answer {
    fn from(error: ParameterError) -> Answer {
        Answer::syntax(error.parameter(), SYNTAX_TOO_LONG)
    }
}

/// A handler's result: `Err` carries a failure reply, so handlers can use `?`.
pub type Outcome = Result<Answer, Answer>;

/// What a handler knows about the request besides its parameters.
#[derive(Debug, Clone)]
pub struct Context {
    /// The authenticated user, upper case.
    pub caller: String,
    /// The target identifier, upper case.
    pub target: String,
    pub function: String,
    pub timing: Timing,
    pub now: SystemTime,
    /// The next asynchronous operation started by this request ends in failure (an injected fault).
    pub fail_operation: bool,
}

impl Context {
    /// Milliseconds since the Unix epoch, the clock the state file keeps.
    pub fn now_millis(&self) -> u64 {
        millis(self.now)
    }
}

pub fn millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as u64).unwrap_or(0)
}

/// Seconds, rounded up, for "deactivated within n seconds".
pub fn whole_seconds_up(duration: Duration) -> i32 {
    let seconds = duration.as_millis().div_ceil(1000);
    i32::try_from(seconds).unwrap_or(i32::MAX)
}
