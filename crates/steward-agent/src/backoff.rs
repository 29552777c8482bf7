//! Reconnect delays: exponential from one second to a minute, each drawn at random between half and all of the
//! nominal delay, so a fleet that lost its server together does not return in lockstep.
//!
//! The jitter comes from a small generator seeded with the clock and the process ID, not from the operating
//! system's random source: jitter needs no secrecy, and a statically linked agent reads that source through
//! `/dev/random`, which blocks in a freshly booted guest until the kernel has gathered entropy (minutes, or never,
//! in an emulated guest without a hardware source), so the agent would hang before its first reconnect.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Backoff {
    attempt: u32,
    base: Duration,
    cap: Duration,
    jitter: Jitter,
}

/// SplitMix64: tiny, fast, and good enough to spread reconnects.
struct Jitter {
    state: u64,
}

impl Jitter {
    fn seeded() -> Self {
        let clock = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos() as u64);
        Self { state: clock ^ (u64::from(std::process::id()) << 32) }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0.5, 1.0]`.
    fn factor(&mut self) -> f64 {
        0.5 + (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 0.5
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { attempt: 0, base, cap, jitter: Jitter::seeded() }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.base.saturating_mul(1u32 << self.attempt.min(16)).min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        nominal.mul_f64(self.jitter.factor())
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

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        let mut jitter = Jitter::seeded();
        let factors: Vec<f64> = (0..1000).map(|_| jitter.factor()).collect();
        assert!(factors.iter().all(|factor| (0.5..=1.0).contains(factor)));
        assert!(factors.iter().any(|factor| *factor < 0.6) && factors.iter().any(|factor| *factor > 0.9));
    }
}
