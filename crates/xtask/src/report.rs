//! Figures: the summary line per figure, percentiles, and the JSON file under `target/bench/`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::Paths;

pub struct Report {
    benchmark: String,
    figures: Vec<Value>,
    parameters: Map<String, Value>,
    notes: Vec<String>,
}

impl Report {
    pub fn new(benchmark: &str) -> Self {
        Self { benchmark: benchmark.to_string(), figures: Vec::new(), parameters: Map::new(), notes: Vec::new() }
    }

    pub fn parameter(&mut self, name: &str, value: impl Into<Value>) {
        self.parameters.insert(name.to_string(), value.into());
    }

    /// Prints `<name>: <value> <unit> (target <target>)` and keeps the figure for the JSON file.
    pub fn figure(&mut self, name: &str, value: f64, unit: &str, target: &str) {
        println!("{name}: {} {unit} (target {target})", format_value(value));
        self.figures.push(json!({ "name": name, "value": value, "unit": unit, "target": target }));
    }

    /// A remark printed now and kept in the JSON file (how something was measured, what was not available).
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("  note: {text}");
        self.notes.push(text);
    }

    pub fn write(&self, paths: &Paths) -> anyhow::Result<()> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let document = json!({
            "benchmark": self.benchmark,
            "timestamp": rfc3339(now),
            "unix_time": now.as_secs(),
            "machine": { "cores": cores, "kernel": kernel_release() },
            "parameters": self.parameters,
            "figures": self.figures,
            "notes": self.notes,
        });
        let path = paths.bench_dir.join(format!("{}.json", self.benchmark));
        let text = serde_json::to_string_pretty(&document).context("cannot encode the report")? + "\n";
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("  wrote {}", path.display());
        Ok(())
    }
}

fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() < 10.0 {
        format!("{value:.3}")
    } else {
        format!("{value:.1}")
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

/// `2025-01-31T12:34:56Z` from a time since the Unix epoch (UTC, civil calendar).
fn rfc3339(since_epoch: Duration) -> String {
    let seconds = since_epoch.as_secs() as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Latency percentiles in milliseconds over a set of samples.
pub struct Latencies {
    sorted_ms: Vec<f64>,
}

impl Latencies {
    pub fn new(samples: &[Duration]) -> Self {
        let mut sorted_ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        sorted_ms.sort_by(f64::total_cmp);
        Self { sorted_ms }
    }

    pub fn count(&self) -> usize {
        self.sorted_ms.len()
    }

    /// Nearest-rank percentile; NaN without samples.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.sorted_ms.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.sorted_ms.len() as f64).ceil() as usize;
        self.sorted_ms[rank.clamp(1, self.sorted_ms.len()) - 1]
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 { values[middle] } else { (values[middle - 1] + values[middle]) / 2.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(rfc3339(Duration::from_secs(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(Duration::from_secs(1_735_689_599)), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let latencies = Latencies::new(&samples);
        assert_eq!(latencies.percentile(50.0), 50.0);
        assert_eq!(latencies.percentile(99.0), 99.0);
        assert_eq!(latencies.percentile(100.0), 100.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
