//! Reconnect delays: exponential from one second to a minute, each drawn at random between half and all of the
//! nominal delay, so a fleet that lost its server together does not return in lockstep.

use std::time::Duration;

pub struct Backoff {
    attempt: u32,
    base: Duration,
    cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { attempt: 0, base, cap }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.base.saturating_mul(1u32 << self.attempt.min(16)).min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        nominal.mul_f64(rand::random_range(0.5..=1.0))
    }

    /// After a successful connection, start again from the base delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        for (attempt, delay) in delays.iter().enumerate() {
            let nominal = Duration::from_secs(1 << attempt).min(Duration::from_secs(60));
            assert!(*delay >= nominal / 2 && *delay <= nominal, "attempt {attempt}: {delay:?} vs {nominal:?}");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_secs(1));
    }
}
