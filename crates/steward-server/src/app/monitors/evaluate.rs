//! A monitor's state machine on one system, evaluated on every sample as it arrives:
//!
//! ```text
//!          condition holds                  held for hold_seconds
//!   ok ───────────────────────► pending ─────────────────────────► raised  (event monitor.raised)
//!    ▲ ◄─── condition fails ───────┘                                  │
//!    └──────────── value passes the clear threshold ──────────────────┘   (event monitor.cleared)
//! ```
//!
//! With a hold time of 0 the first sample past the threshold raises. A raised monitor clears only when the value
//! passes the clear threshold (hysteresis), not merely when it falls back under the threshold.

use steward_types::api::monitors::{AlertState, Comparison};

/// The condition part of a monitor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub comparison: Comparison,
    pub threshold: f64,
    pub clear_threshold: f64,
    pub hold_millis: i64,
}

/// A monitor's state on one system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tracked {
    pub state: AlertState,
    /// When it entered the state (ms).
    pub since: i64,
}

/// What a sample changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing visible (still ok, still pending, still raised).
    None,
    /// Ok to pending, or pending back to ok: stored, no event.
    Quiet,
    Raised,
    Cleared,
}

impl Condition {
    fn clears(&self, value: f64) -> bool {
        // The clear threshold is passed in the other direction: back at or under it for a rising condition.
        if self.comparison.rising() { value <= self.clear_threshold } else { value >= self.clear_threshold }
    }

    /// The state after a sample `value` at `at` (ms).
    pub fn step(&self, tracked: Tracked, value: f64, at: i64) -> (Tracked, Transition) {
        let holds = self.comparison.holds(value, self.threshold);
        match tracked.state {
            AlertState::Raised => {
                if self.clears(value) {
                    (Tracked { state: AlertState::Ok, since: at }, Transition::Cleared)
                } else {
                    (tracked, Transition::None)
                }
            }
            AlertState::Pending if !holds => (Tracked { state: AlertState::Ok, since: at }, Transition::Quiet),
            AlertState::Pending => {
                if at - tracked.since >= self.hold_millis {
                    (Tracked { state: AlertState::Raised, since: at }, Transition::Raised)
                } else {
                    (tracked, Transition::None)
                }
            }
            AlertState::Ok if !holds => (tracked, Transition::None),
            AlertState::Ok if self.hold_millis == 0 => {
                (Tracked { state: AlertState::Raised, since: at }, Transition::Raised)
            }
            AlertState::Ok => (Tracked { state: AlertState::Pending, since: at }, Transition::Quiet),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(comparison: Comparison, threshold: f64, clear: f64, hold_millis: i64) -> Condition {
        Condition { comparison, threshold, clear_threshold: clear, hold_millis }
    }

    fn run(condition: &Condition, samples: &[(f64, i64)]) -> Vec<(AlertState, Transition)> {
        let mut tracked = Tracked { state: AlertState::Ok, since: 0 };
        samples
            .iter()
            .map(|(value, at)| {
                let (next, transition) = condition.step(tracked, *value, *at);
                tracked = next;
                (next.state, transition)
            })
            .collect()
    }

    #[test]
    fn hold_time_hysteresis_and_direction() {
        use AlertState::*;
        let above = condition(Comparison::Above, 90.0, 80.0, 120_000);
        let steps = run(
            &above,
            &[
                (95.0, 0),
                (96.0, 60_000),
                (85.0, 120_000),
                (97.0, 180_000),
                (95.0, 300_000),
                (85.0, 360_000),
                (79.0, 420_000),
            ],
        );
        assert_eq!(
            steps,
            [
                (Pending, Transition::Quiet),
                (Pending, Transition::None),
                (Ok, Transition::Quiet),
                (Pending, Transition::Quiet),
                (Raised, Transition::Raised),
                (Raised, Transition::None), // 85 is under 90 but not at the clear threshold 80
                (Ok, Transition::Cleared),
            ]
        );
        let at_once = condition(Comparison::Above, 90.0, 90.0, 0);
        assert_eq!(run(&at_once, &[(91.0, 0), (90.0, 1)]), [(Raised, Transition::Raised), (Ok, Transition::Cleared)]);
        let below = condition(Comparison::Below, 10.0, 20.0, 0);
        assert_eq!(
            run(&below, &[(5.0, 0), (15.0, 1), (25.0, 2)]),
            [(Raised, Transition::Raised), (Raised, Transition::None), (Ok, Transition::Cleared)]
        );
    }
}
