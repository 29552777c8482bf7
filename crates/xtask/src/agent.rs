//! P4 (agent memory) and P5 (agent wake-ups with nothing monitored), on the real `steward-agent` as shipped
//! (the size-optimized `agent` profile).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::report::Report;
use crate::server::{Admin, Server, TempDir, status_field};
use crate::{BenchArgs, Paths};

/// How long the agent may take to enroll, collect its inventory and show as online.
const ONLINE_TIMEOUT: Duration = Duration::from_secs(120);
/// Quiet time after connecting before the wake-up window starts.
const SETTLE: Duration = Duration::from_secs(5);

/// perf starts this long before the counted window and stops this long after it.
const PERF_MARGIN: Duration = Duration::from_secs(1);

/// The agent process, killed on drop.
struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Memory {
    rss_kib: u64,
    pss_kib: u64,
    threads: u64,
}

fn memory(pid: u32) -> anyhow::Result<Memory> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).context("cannot read smaps_rollup")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("cannot read status")?;
    Ok(Memory {
        rss_kib: status_field(&smaps, "Rss:").context("no Rss in smaps_rollup")?,
        pss_kib: status_field(&smaps, "Pss:").context("no Pss in smaps_rollup")?,
        threads: status_field(&status, "Threads:").context("no Threads in status")?,
    })
}

/// Voluntary + involuntary context switches summed over every thread of the process.
fn context_switches(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).context("cannot list the agent's threads")? {
        let path = entry?.path().join("status");
        let Ok(status) = std::fs::read_to_string(&path) else { continue };
        total += status_field(&status, "voluntary_ctxt_switches:").unwrap_or(0);
        total += status_field(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
    }
    Ok(total)
}

/// Whether `perf stat -e sched:sched_wakeup` works here (perf installed, tracepoint readable).
fn perf_works() -> bool {
    Command::new("perf")
        .args(["stat", "-x", ",", "-e", "sched:sched_wakeup", "--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Starts `perf stat` on `pid` for `window`; its CSV output goes to `output`.
fn start_perf(pid: u32, window: Duration, output: &Path) -> Option<Child> {
    Command::new("perf")
        .args(["stat", "-x", ",", "-e", "sched:sched_wakeup", "-p", &pid.to_string(), "-o"])
        .arg(output)
        .args(["--", "sleep", &window.as_secs().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// The counter value from `perf stat -x ,` output.
fn perf_count(output: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(output).ok()?;
    let value = text.lines().find(|line| line.contains("sched:sched_wakeup"))?.split(',').next()?.trim();
    // perf says "<not counted>" when the task never ran while it watched: no wake-ups at all.
    if value == "<not counted>" { Some(0) } else { value.parse().ok() }
}

pub async fn run(paths: &Paths, args: &BenchArgs, rss: bool, wakeups: bool) -> anyhow::Result<()> {
    let idle = Duration::from_secs(args.idle_seconds);
    let window = Duration::from_secs(args.window_seconds.max(1));
    println!(
        "== agent: {}{}",
        if rss { format!("p4-agent-rss (idle {} s) ", idle.as_secs()) } else { String::new() },
        if wakeups { format!("p5-agent-wakeups (window {} s)", window.as_secs()) } else { String::new() }
    );
    let data = TempDir::new(paths, "agent")?;
    let server_dir = data.path().join("server");
    let state_dir = data.path().join("agent-state");
    std::fs::create_dir_all(&state_dir).context("cannot create the agent's state directory")?;
    let server = Server::start(paths, &server_dir).await?;
    let admin = Admin::new(&server)?;
    let token = admin.enrollment_token(1).await?;
    let log_path = data.path().join("agent.log");
    let log = std::fs::File::create(&log_path).context("cannot create the agent log")?;
    let child = Command::new(&paths.agent)
        .args(["--server", &server.api_url, "--enroll-token", &token, "--state-dir"])
        .arg(&state_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot share the agent log")?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", paths.agent.display()))?;
    let mut agent = AgentProcess { child };
    let pid = agent.pid();

    let started = Instant::now();
    loop {
        if let Some(status) = agent.exited() {
            bail!("steward-agent exited ({status}); log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
        }
        if admin.system_names(Some("online")).await?.len() == 1 {
            break;
        }
        if started.elapsed() > ONLINE_TIMEOUT {
            bail!("the agent was not online after {ONLINE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let online_at = Instant::now();
    let time_to_online = started.elapsed();
    let at_connect = memory(pid)?;

    let mut p5 = Report::new("p5-agent-wakeups");
    if wakeups {
        p5.parameter("window_seconds", window.as_secs());
        p5.parameter("settle_seconds", SETTLE.as_secs());
        tokio::time::sleep(SETTLE).await;
        let perf_output = data.path().join("perf.csv");
        // perf attaches before and detaches after the counted window: attaching costs the agent a switch or two.
        let perf =
            if !args.no_perf && perf_works() { start_perf(pid, window + PERF_MARGIN * 2, &perf_output) } else { None };
        if perf.is_some() {
            tokio::time::sleep(PERF_MARGIN).await;
        }
        let log_before = std::fs::metadata(&log_path).map(|meta| meta.len()).unwrap_or(0);
        let before = context_switches(pid)?;
        tokio::time::sleep(window).await;
        let after = context_switches(pid)?;
        let logged = std::fs::read(&log_path).unwrap_or_default();
        let logged = String::from_utf8_lossy(logged.get(log_before as usize..).unwrap_or_default()).into_owned();
        if !logged.trim().is_empty() {
            let lines: Vec<&str> = logged.lines().take(10).collect();
            p5.note(format!("the agent logged during the window (first lines): {}", lines.join(" | ")));
        }
        if let Some(status) = agent.exited() {
            bail!("steward-agent exited during the window ({status})");
        }
        p5.figure(
            &format!("p5 agent context switches over {} s idle", window.as_secs()),
            after.saturating_sub(before) as f64,
            "switches",
            "0 over 600 s",
        );
        match perf {
            Some(mut perf) => {
                let waited = Instant::now();
                while perf.try_wait().ok().flatten().is_none() && waited.elapsed() < Duration::from_secs(10) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let _ = perf.kill();
                let _ = perf.wait();
                match perf_count(&perf_output) {
                    Some(count) => p5.figure(
                        &format!("p5 perf sched:sched_wakeup events over {} s", (window + PERF_MARGIN * 2).as_secs()),
                        count as f64,
                        "wakeups",
                        "0",
                    ),
                    None => p5.note("perf stat ran but its output could not be read"),
                }
                p5.note(
                    "perf counts sched_wakeup events raised while the agent's threads run (wake-ups it causes), over \
                     the window plus 1 s either side; attaching and detaching perf itself costs one or two",
                );
            }
            None if args.no_perf => p5.note("perf cross-check skipped (--no-perf)"),
            None => p5.note("perf stat -e sched:sched_wakeup was not available here; cross-check skipped"),
        }
        if window < Duration::from_secs(600) {
            p5.note(format!("window {} s; BENCHMARKS.md asks for 600 s (--window-seconds 600)", window.as_secs()));
        }
    }

    if rss {
        let mut p4 = Report::new("p4-agent-rss");
        p4.parameter("idle_seconds", idle.as_secs());
        if let Some(remaining) = idle.checked_sub(online_at.elapsed()) {
            tokio::time::sleep(remaining).await;
        }
        if let Some(status) = agent.exited() {
            bail!("steward-agent exited while idle ({status})");
        }
        let idle_for = online_at.elapsed().as_secs();
        let sample = memory(pid)?;
        p4.figure(
            &format!("p4 agent RSS after {idle_for} s idle"),
            sample.rss_kib as f64 / 1024.0,
            "MiB",
            "<= 8 (stretch 4)",
        );
        p4.figure(&format!("p4 agent PSS after {idle_for} s idle"), sample.pss_kib as f64 / 1024.0, "MiB", "n/a");
        p4.figure("p4 agent threads", sample.threads as f64, "threads", "<= 2");
        p4.figure("p4 agent RSS right after connecting", at_connect.rss_kib as f64 / 1024.0, "MiB", "n/a");
        p4.figure("p4 agent enroll+connect time", time_to_online.as_secs_f64(), "s", "n/a");
        p4.parameter("idle_seconds_actual", idle_for);
        if idle < Duration::from_secs(600) {
            p4.note(format!("idle window {} s; BENCHMARKS.md asks for 600 s (--idle-seconds 600)", idle.as_secs()));
        }
        p4.note("the agent reports this machine's real inventory (its state directory is temporary)");
        p4.write(paths)?;
    }
    if wakeups {
        p5.write(paths)?;
    }
    let still_online = admin.system_names(Some("online")).await?.len() == 1;
    if !still_online {
        eprintln!("warning: the agent was no longer online at the end of the run");
    }
    drop(agent);
    drop(server);
    Ok(())
}
