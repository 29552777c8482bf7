//! Fault injection for tests: `STEWARD_FAULT_INJECTION=<fault>:<operation kind>:<step>[:<target>][,...]` makes
//! the saga engine misbehave at one step (`*`: every step) of operations of that kind (only those acting on the
//! named target, when one is given, so one server can run many cases), so tests can check that every failure leaves nothing behind, that repeating a
//! step or an undo is harmless, and that a server killed in the middle of an operation recovers.
//!
//! Faults: `fail` (the step fails before it runs), `fail_after` (the step runs, then reports failure),
//! `repeat` (the step runs twice), `repeat_undo` (the step's undo runs twice), `fail_undo` (the undo reports
//! failure after running), `crash` (the server aborts right after the step ran, before recording it).
//! Unset, nothing is injected; production servers never set it.

use steward_types::validate::ValidationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Fail,
    FailAfter,
    Repeat,
    RepeatUndo,
    FailUndo,
    Crash,
}

#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    fault: Fault,
    kind: String,
    step: String,
    target: Option<String>,
}

pub const ENVIRONMENT_VARIABLE: &str = "STEWARD_FAULT_INJECTION";

impl FaultPlan {
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let mut entries = Vec::new();
        for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let mut parts = item.splitn(4, ':');
            let (Some(fault), Some(kind), Some(step)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(ValidationError::new(
                    ENVIRONMENT_VARIABLE,
                    format!("{item:?} is not FAULT:KIND:STEP[:TARGET]"),
                ));
            };
            let target = parts.next().map(str::to_string);
            let fault = match fault {
                "fail" => Fault::Fail,
                "fail_after" => Fault::FailAfter,
                "repeat" => Fault::Repeat,
                "repeat_undo" => Fault::RepeatUndo,
                "fail_undo" => Fault::FailUndo,
                "crash" => Fault::Crash,
                other => {
                    return Err(ValidationError::new(
                        ENVIRONMENT_VARIABLE,
                        format!("unknown fault {other:?} (fail, fail_after, repeat, repeat_undo, fail_undo, crash)"),
                    ));
                }
            };
            entries.push(Entry { fault, kind: kind.to_string(), step: step.to_string(), target });
        }
        Ok(Self { entries })
    }

    /// Whether `fault` is planned for a step of an operation kind acting on `target`.
    pub fn has(&self, fault: Fault, kind: &str, step: &str, target: &str) -> bool {
        self.entries.iter().any(|entry| {
            entry.fault == fault
                && entry.kind == kind
                && (entry.step == step || entry.step == "*")
                && entry.target.as_deref().is_none_or(|planned| planned == target)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let plan = FaultPlan::parse("fail:virtual_server_create:create_disks, repeat:os_template_import:*:t1").unwrap();
        assert!(plan.has(Fault::Fail, "virtual_server_create", "create_disks", "any"));
        assert!(!plan.has(Fault::Fail, "virtual_server_create", "define_guest", "any"));
        assert!(plan.has(Fault::Repeat, "os_template_import", "copy_image", "t1"));
        assert!(!plan.has(Fault::Repeat, "os_template_import", "copy_image", "t2"));
        assert!(FaultPlan::parse("explode:a:b").is_err());
        assert!(FaultPlan::parse("fail:a").is_err());
        assert!(FaultPlan::parse("").unwrap().is_empty());
    }
}
