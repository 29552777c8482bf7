//! Injectable faults: set at start (`--fault`), changed at run time (the admin commands on standard input of
//! `steward zvm-sim`, or [`crate::Simulator::add_fault`] and friends from tests).
//!
//! | spec | effect |
//! |---|---|
//! | `dirmaint-down` | every `*_DM` function answers 500/8 (the directory manager is not available) until cleared |
//! | `delay=MS` | every reply waits MS milliseconds after the request id went out |
//! | `drop-after-request-id=FUNCTION` | once: the next request of FUNCTION (`*` for any but `Response_Recovery`) is carried out, its request id sent, and the connection closed without the reply, which `Response_Recovery` then returns |
//! | `fail=FUNCTION:RC:RS` | once: the next request of FUNCTION answers RC/RS without being carried out |
//! | `fail-operation=FUNCTION` | once: the next asynchronous operation FUNCTION starts ends failed (reason 108) and is undone |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A one-shot failure of a named function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailOnce {
    pub function: String,
    pub return_code: i32,
    pub reason_code: i32,
}

/// The faults in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    pub dirmaint_unavailable: bool,
    pub reply_delay: Option<Duration>,
    /// One-shot each: function names, or `*`.
    pub drop_after_request_id: Vec<String>,
    pub fail_once: Vec<FailOnce>,
    /// One-shot each: function names whose next asynchronous operation fails.
    pub fail_operation_once: Vec<String>,
}

/// One fault, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    DirMaintUnavailable,
    ReplyDelay(Duration),
    DropAfterRequestId(String),
    FailOnce(FailOnce),
    FailOperationOnce(String),
}

impl Faults {
    pub fn add(&mut self, fault: Fault) {
        match fault {
            Fault::DirMaintUnavailable => self.dirmaint_unavailable = true,
            Fault::ReplyDelay(delay) => self.reply_delay = Some(delay),
            Fault::DropAfterRequestId(function) => self.drop_after_request_id.push(function),
            Fault::FailOnce(fail) => self.fail_once.push(fail),
            Fault::FailOperationOnce(function) => self.fail_operation_once.push(function),
        }
    }

    pub fn from_faults(faults: impl IntoIterator<Item = Fault>) -> Faults {
        let mut all = Faults::default();
        for fault in faults {
            all.add(fault);
        }
        all
    }

    pub fn is_empty(&self) -> bool {
        *self == Faults::default()
    }

    /// Takes the one-shot drop for `function`, if one is armed.
    pub fn take_drop(&mut self, function: &str) -> bool {
        let any = function != "Response_Recovery";
        take_first(&mut self.drop_after_request_id, |armed| {
            armed.eq_ignore_ascii_case(function) || (any && armed == "*")
        })
        .is_some()
    }

    /// Takes the one-shot failure for `function`, if one is armed.
    pub fn take_failure(&mut self, function: &str) -> Option<FailOnce> {
        take_first(&mut self.fail_once, |armed| armed.function.eq_ignore_ascii_case(function))
    }

    /// Takes the one-shot operation failure for `function`, if one is armed.
    pub fn take_operation_failure(&mut self, function: &str) -> bool {
        take_first(&mut self.fail_operation_once, |armed| armed.eq_ignore_ascii_case(function)).is_some()
    }

    /// One line per fault in force, in the command-line spelling.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.dirmaint_unavailable {
            lines.push(Fault::DirMaintUnavailable.to_string());
        }
        if let Some(delay) = self.reply_delay {
            lines.push(Fault::ReplyDelay(delay).to_string());
        }
        lines.extend(self.drop_after_request_id.iter().map(|f| Fault::DropAfterRequestId(f.clone()).to_string()));
        lines.extend(self.fail_once.iter().map(|f| Fault::FailOnce(f.clone()).to_string()));
        lines.extend(self.fail_operation_once.iter().map(|f| Fault::FailOperationOnce(f.clone()).to_string()));
        lines
    }
}

fn take_first<T>(items: &mut Vec<T>, matches: impl Fn(&T) -> bool) -> Option<T> {
    let index = items.iter().position(matches)?;
    Some(items.remove(index))
}

impl fmt::Display for Fault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::DirMaintUnavailable => write!(formatter, "dirmaint-down"),
            Fault::ReplyDelay(delay) => write!(formatter, "delay={}", delay.as_millis()),
            Fault::DropAfterRequestId(function) => write!(formatter, "drop-after-request-id={function}"),
            Fault::FailOnce(fail) => {
                write!(formatter, "fail={}:{}:{}", fail.function, fail.return_code, fail.reason_code)
            }
            Fault::FailOperationOnce(function) => write!(formatter, "fail-operation={function}"),
        }
    }
}

fn function_name(text: &str, allow_any: bool) -> Result<String, String> {
    let valid =
        !text.is_empty() && text.len() <= 64 && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    if valid || (allow_any && text == "*") {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not a SMAPI function name"))
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (text, None),
        };
        match (name, value) {
            ("dirmaint-down", None) => Ok(Fault::DirMaintUnavailable),
            ("delay", Some(milliseconds)) => milliseconds
                .parse::<u64>()
                .ok()
                .filter(|milliseconds| *milliseconds <= 3_600_000)
                .map(|milliseconds| Fault::ReplyDelay(Duration::from_millis(milliseconds)))
                .ok_or_else(|| format!("delay={milliseconds}: give milliseconds, at most 3600000")),
            ("drop-after-request-id", Some(function)) => Ok(Fault::DropAfterRequestId(function_name(function, true)?)),
            ("fail", Some(spec)) => {
                let parts: Vec<&str> = spec.split(':').collect();
                let [function, return_code, reason_code] = parts.as_slice() else {
                    return Err(format!("fail={spec}: give FUNCTION:RC:RS"));
                };
                let code =
                    |text: &str| text.parse::<i32>().map_err(|_| format!("fail={spec}: {text:?} is not a number"));
                Ok(Fault::FailOnce(FailOnce {
                    function: function_name(function, false)?,
                    return_code: code(return_code)?,
                    reason_code: code(reason_code)?,
                }))
            }
            ("fail-operation", Some(function)) => Ok(Fault::FailOperationOnce(function_name(function, false)?)),
            _ => Err(format!(
                "{text:?} is not a fault; use dirmaint-down, delay=MS, drop-after-request-id=FUNCTION, \
                 fail=FUNCTION:RC:RS or fail-operation=FUNCTION"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for spec in [
            "dirmaint-down",
            "delay=250",
            "drop-after-request-id=Image_Create_DM",
            "drop-after-request-id=*",
            "fail=Image_Activate:200:8",
            "fail-operation=Image_Disk_Copy_DM",
        ] {
            assert_eq!(spec.parse::<Fault>().unwrap().to_string(), spec);
        }
        for bad in ["", "dirmaint", "delay=soon", "fail=Image_Activate:200", "fail=x y:1:2", "drop-after-request-id="] {
            assert!(bad.parse::<Fault>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn one_shot_faults_fire_once() {
        let mut faults = Faults::from_faults([
            "drop-after-request-id=*".parse().unwrap(),
            "fail=Image_Activate:200:8".parse().unwrap(),
        ]);
        assert!(!faults.take_drop("Response_Recovery"));
        assert!(faults.take_drop("Image_Query_DM"));
        assert!(!faults.take_drop("Image_Query_DM"));
        assert_eq!(faults.take_failure("image_activate").map(|fail| fail.return_code), Some(200));
        assert!(faults.take_failure("Image_Activate").is_none());
        assert!(faults.is_empty());
    }
}
