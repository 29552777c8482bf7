//! The metrics the server's monitors ask for (`steward_protocol::monitor`), sampled on the plan's intervals.
//!
//! Every metric's due times are multiples of its interval counted from when the plan arrived, so metrics whose
//! intervals divide each other fall due together and are sampled in one wake-up and sent in one message. With no
//! plan there is no timer. Rates (CPU busy share, disk and network bytes per second) are differences between the
//! counters read at one sample and at the previous one of the same metric; the counters are read once when the
//! plan arrives, so the first sample already has a difference.

use std::path::{Path, PathBuf};
use std::time::Duration;

use steward_protocol::monitor::{
    LoadWindow, MAX_INTERVAL_SECONDS, MAX_PLANNED_METRICS, MIN_INTERVAL_SECONDS, Metric, MonitorPlan, Sample,
};
use tokio::time::Instant;

/// How long `systemctl is-active` or an init script's `status` may take.
const SERVICE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

struct Planned {
    metric: Metric,
    key: String,
    interval: Duration,
    next_due: Instant,
    /// The counter and when it was read, for rates.
    previous: Option<(Instant, u64, u64)>,
}

/// The agent's sampling state; `proc_root` is `/proc` except in tests.
pub struct Sampler {
    planned: Vec<Planned>,
    proc_root: PathBuf,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new(PathBuf::from("/proc"))
    }
}

impl Sampler {
    pub fn new(proc_root: PathBuf) -> Self {
        Sampler { planned: Vec::new(), proc_root }
    }

    /// Replaces the plan after checking all of it (an invalid plan changes nothing); returns how many metrics
    /// are sampled now.
    pub fn configure(&mut self, plan: &MonitorPlan) -> Result<u32, String> {
        if plan.metrics.len() > MAX_PLANNED_METRICS {
            return Err(format!("{} metrics planned; at most {MAX_PLANNED_METRICS}", plan.metrics.len()));
        }
        let now = Instant::now();
        let mut planned = Vec::with_capacity(plan.metrics.len());
        for entry in &plan.metrics {
            let metric = Metric::parse(&entry.metric)?;
            if !(MIN_INTERVAL_SECONDS..=MAX_INTERVAL_SECONDS).contains(&entry.interval_seconds) {
                return Err(format!(
                    "{}: interval {} s is not {MIN_INTERVAL_SECONDS} to {MAX_INTERVAL_SECONDS}",
                    entry.metric, entry.interval_seconds
                ));
            }
            let interval = Duration::from_secs(u64::from(entry.interval_seconds));
            planned.push(Planned { key: metric.key(), metric, interval, next_due: now + interval, previous: None });
        }
        self.planned = planned;
        for index in 0..self.planned.len() {
            let counters = self.counters(&self.planned[index].metric);
            self.planned[index].previous = counters.ok().flatten().map(|(busy, total)| (now, busy, total));
        }
        Ok(self.planned.len() as u32)
    }

    /// When the next metric falls due; `None` without a plan.
    pub fn next_wake(&self) -> Option<Instant> {
        self.planned.iter().map(|planned| planned.next_due).min()
    }

    /// Samples every metric due at `now` (and those due within the next 10 ms, so one wake-up serves them).
    pub async fn sample_due(&mut self, now: Instant) -> Vec<Sample> {
        let horizon = now + Duration::from_millis(10);
        let mut samples = Vec::new();
        for index in 0..self.planned.len() {
            if self.planned[index].next_due > horizon {
                continue;
            }
            let result = self.sample(index, now).await;
            let planned = &mut self.planned[index];
            // The next multiple of the interval after now (missed ones are not made up).
            while planned.next_due <= horizon {
                planned.next_due += planned.interval;
            }
            samples.push(match result {
                Ok(value) => Sample { metric: planned.key.clone(), value: Some(value), error: None },
                Err(error) => Sample { metric: planned.key.clone(), value: None, error: Some(error) },
            });
        }
        samples
    }

    async fn sample(&mut self, index: usize, now: Instant) -> Result<f64, String> {
        let metric = self.planned[index].metric.clone();
        match &metric {
            Metric::Load(window) => load(&self.proc_root, *window),
            Metric::MemoryUsed => memory_used(&self.proc_root),
            Metric::FilesystemUsed(mount) => filesystem_used(&self.proc_root, mount),
            Metric::ProcessCount(name) => process_count(&self.proc_root, name),
            Metric::ServiceActive(name) => service_active(name).await,
            Metric::CpuUtilization
            | Metric::DiskRead(_)
            | Metric::DiskWrite(_)
            | Metric::NetworkReceive(_)
            | Metric::NetworkTransmit(_) => {
                let Some((busy, total)) = self.counters(&metric)? else {
                    return Err(format!("{} was not found", metric.key()));
                };
                let planned = &mut self.planned[index];
                let previous = planned.previous.replace((now, busy, total));
                let Some((then, previous_busy, previous_total)) = previous else {
                    return Err("no previous reading yet".into());
                };
                if metric == Metric::CpuUtilization {
                    let total = total.saturating_sub(previous_total);
                    return Ok(if total == 0 {
                        0.0
                    } else {
                        busy.saturating_sub(previous_busy) as f64 * 100.0 / total as f64
                    });
                }
                let seconds = now.duration_since(then).as_secs_f64();
                Ok(if seconds > 0.0 { busy.saturating_sub(previous_busy) as f64 / seconds } else { 0.0 })
            }
        }
    }

    /// The counters a rate metric is computed from: (busy, total) jiffies for the CPU, (bytes, 0) otherwise;
    /// `None` for a metric that is not a rate or a device that does not exist.
    fn counters(&self, metric: &Metric) -> Result<Option<(u64, u64)>, String> {
        Ok(match metric {
            Metric::CpuUtilization => Some(cpu_jiffies(&self.proc_root)?),
            Metric::DiskRead(device) => disk_sectors(&self.proc_root, device, 0)?.map(|sectors| (sectors * 512, 0)),
            Metric::DiskWrite(device) => disk_sectors(&self.proc_root, device, 1)?.map(|sectors| (sectors * 512, 0)),
            Metric::NetworkReceive(interface) => network_bytes(&self.proc_root, interface, 0)?.map(|bytes| (bytes, 0)),
            Metric::NetworkTransmit(interface) => network_bytes(&self.proc_root, interface, 8)?.map(|bytes| (bytes, 0)),
            _ => None,
        })
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// (busy, total) jiffies of all CPUs: busy is everything but idle and iowait.
fn cpu_jiffies(proc_root: &Path) -> Result<(u64, u64), String> {
    let stat = read(&proc_root.join("stat"))?;
    let line = stat.lines().find(|line| line.starts_with("cpu ")).ok_or("no cpu line in /proc/stat")?;
    let values: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|value| value.parse().ok()).collect();
    if values.len() < 5 {
        return Err("the cpu line of /proc/stat is short".into());
    }
    let total: u64 = values.iter().sum();
    let idle = values[3] + values[4];
    Ok((total - idle, total))
}

fn load(proc_root: &Path, window: LoadWindow) -> Result<f64, String> {
    let text = read(&proc_root.join("loadavg"))?;
    let field = match window {
        LoadWindow::One => 0,
        LoadWindow::Five => 1,
        LoadWindow::Fifteen => 2,
    };
    text.split_whitespace().nth(field).and_then(|value| value.parse().ok()).ok_or_else(|| "loadavg is malformed".into())
}

fn memory_used(proc_root: &Path) -> Result<f64, String> {
    let text = read(&proc_root.join("meminfo"))?;
    let field = |name: &str| -> Option<f64> {
        text.lines().find(|line| line.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
    };
    let (Some(total), Some(available)) = (field("MemTotal:"), field("MemAvailable:")) else {
        return Err("meminfo lacks MemTotal or MemAvailable".into());
    };
    Ok(if total > 0.0 { (total - available) * 100.0 / total } else { 0.0 })
}

/// Used share as `df` shows it: used / (used + available to unprivileged users).
fn filesystem_used(proc_root: &Path, mount: &str) -> Result<f64, String> {
    let mountinfo = read(&proc_root.join("self/mountinfo"))?;
    let mounted =
        mountinfo.lines().any(|line| line.split_whitespace().nth(4).map(unescape_mount) == Some(mount.to_owned()));
    if !mounted {
        return Err(format!("nothing is mounted at {mount}"));
    }
    let path = std::ffi::CString::new(mount).map_err(|_| format!("{mount:?} contains a NUL byte"))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `stat` a properly sized, writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(format!("statvfs {mount}: {}", std::io::Error::last_os_error()));
    }
    let used = stat.f_blocks.saturating_sub(stat.f_bfree) as f64;
    let usable = used + stat.f_bavail as f64;
    Ok(if usable > 0.0 { used * 100.0 / usable } else { 0.0 })
}

/// Mount points in mountinfo escape space, tab, newline and backslash as octal.
fn unescape_mount(text: &str) -> String {
    text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Sectors read (`field` 0) or written (1) by a block device.
fn disk_sectors(proc_root: &Path, device: &str, field: usize) -> Result<Option<u64>, String> {
    let text = read(&proc_root.join("diskstats"))?;
    Ok(text.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        (words.get(2) == Some(&device)).then(|| words.get(if field == 0 { 5 } else { 9 })?.parse().ok()).flatten()
    }))
}

/// Bytes received (`offset` 0) or transmitted (8) by an interface.
fn network_bytes(proc_root: &Path, interface: &str, offset: usize) -> Result<Option<u64>, String> {
    let text = read(&proc_root.join("net/dev"))?;
    Ok(text.lines().find_map(|line| {
        let (name, counters) = line.split_once(':')?;
        (name.trim() == interface).then(|| counters.split_whitespace().nth(offset)?.parse().ok()).flatten()
    }))
}

/// Processes whose command name is `name` (the kernel keeps 15 characters of it).
fn process_count(proc_root: &Path, name: &str) -> Result<f64, String> {
    let wanted: String = name.chars().take(15).collect();
    let entries =
        std::fs::read_dir(proc_root).map_err(|error| format!("cannot list {}: {error}", proc_root.display()))?;
    let mut count = 0u32;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        if !file_name.to_string_lossy().bytes().all(|byte| byte.is_ascii_digit()) {
            continue;
        }
        if let Ok(comm) = std::fs::read_to_string(entry.path().join("comm"))
            && comm.trim_end_matches('\n') == wanted
        {
            count += 1;
        }
    }
    Ok(f64::from(count))
}

/// 1 when the service runs: systemd's view where systemd runs, the init script's `status` otherwise.
async fn service_active(name: &str) -> Result<f64, String> {
    let mut command = if Path::new("/run/systemd/system").is_dir() {
        let mut command = tokio::process::Command::new("systemctl");
        command.args(["is-active", "--quiet", name]);
        command
    } else {
        let script = Path::new("/etc/init.d").join(name);
        if !script.is_file() {
            return Err(format!("no systemd and no /etc/init.d/{name}"));
        }
        let mut command = tokio::process::Command::new(script);
        command.arg("status");
        command
    };
    command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    command.kill_on_drop(true);
    let status = tokio::time::timeout(SERVICE_CHECK_TIMEOUT, command.status())
        .await
        .map_err(|_| format!("checking {name} took more than {} s", SERVICE_CHECK_TIMEOUT.as_secs()))?
        .map_err(|error| format!("cannot check {name}: {error}"))?;
    Ok(if status.success() { 1.0 } else { 0.0 })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use steward_protocol::monitor::PlannedMetric;

    use super::*;

    fn fixture(dir: &Path, stat_busy: u64, stat_idle: u64, rx: u64) {
        std::fs::create_dir_all(dir.join("net")).unwrap();
        std::fs::create_dir_all(dir.join("self")).unwrap();
        std::fs::write(
            dir.join("stat"),
            format!("cpu  {stat_busy} 0 0 {stat_idle} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0\n"),
        )
        .unwrap();
        std::fs::write(dir.join("loadavg"), "0.50 0.25 0.10 1/100 42\n").unwrap();
        std::fs::write(dir.join("meminfo"), "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\n").unwrap();
        std::fs::write(
            dir.join("net/dev"),
            format!("Inter-|   Receive\n face |bytes\n  eth0: {rx} 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n"),
        )
        .unwrap();
        std::fs::write(dir.join("diskstats"), "   8       0 sda 10 0 2048 5 20 0 4096 9 0 0 0\n").unwrap();
        std::fs::write(dir.join("self/mountinfo"), "").unwrap();
    }

    fn plan(keys: &[(&str, u32)]) -> MonitorPlan {
        MonitorPlan {
            metrics: keys
                .iter()
                .map(|(key, interval)| PlannedMetric { metric: (*key).to_owned(), interval_seconds: *interval })
                .collect(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_from_proc_with_rates_and_coalesced_wake_ups() {
        let temp = tempfile::tempdir().unwrap();
        fixture(temp.path(), 100, 900, 1000);
        let mut sampler = Sampler::new(temp.path().to_path_buf());
        assert_eq!(sampler.next_wake(), None, "no plan, no timer");
        let start = Instant::now();
        let configured = sampler.configure(&plan(&[
            ("cpu.utilization", 10),
            ("load.5", 10),
            ("memory.used", 20),
            ("network.receive:eth0", 10),
            ("filesystem.used:/nowhere", 20),
        ]));
        assert_eq!(configured, Ok(5));
        assert_eq!(sampler.next_wake(), Some(start + Duration::from_secs(10)));
        // 10 s later: the CPU was busy 50 of 100 jiffies, eth0 received 5000 bytes.
        fixture(temp.path(), 150, 950, 6000);
        tokio::time::advance(Duration::from_secs(10)).await;
        let samples = sampler.sample_due(Instant::now()).await;
        let value = |key: &str| samples.iter().find(|sample| sample.metric == key).and_then(|sample| sample.value);
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(value("cpu.utilization"), Some(50.0));
        assert_eq!(value("load.5"), Some(0.25));
        assert_eq!(value("network.receive:eth0"), Some(500.0));
        assert_eq!(sampler.next_wake(), Some(start + Duration::from_secs(20)));
        tokio::time::advance(Duration::from_secs(10)).await;
        let samples = sampler.sample_due(Instant::now()).await;
        assert_eq!(samples.len(), 5, "the 10 s and 20 s metrics together: {samples:?}");
        let memory = samples.iter().find(|sample| sample.metric == "memory.used").unwrap();
        assert_eq!(memory.value, Some(75.0));
        let missing = samples.iter().find(|sample| sample.metric == "filesystem.used:/nowhere").unwrap();
        assert!(missing.error.as_deref().unwrap().contains("nothing is mounted"), "{missing:?}");
    }

    #[test]
    fn a_bad_plan_changes_nothing() {
        let mut sampler = Sampler::new(PathBuf::from("/proc"));
        assert_eq!(sampler.configure(&plan(&[("load.1", 60)])), Ok(1));
        assert!(sampler.configure(&plan(&[("load.1", 60), ("cpu.heat", 60)])).unwrap_err().contains("not a metric"));
        assert!(sampler.configure(&plan(&[("load.1", 0)])).unwrap_err().contains("interval"));
        assert_eq!(sampler.planned.len(), 1);
        assert_eq!(sampler.configure(&MonitorPlan::default()), Ok(0));
        assert_eq!(sampler.next_wake(), None);
    }
}
