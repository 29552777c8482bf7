//! P11: enrollment rate, gateway connection rate, and a reconnect storm after the server is SIGKILLed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::report::{Latencies, Report};
use crate::server::{Admin, Server, TempDir};
use crate::sim::{self, Fleet};
use crate::{BenchArgs, Paths};

pub async fn run(paths: &Paths, args: &BenchArgs) -> anyhow::Result<()> {
    let count = args.agents.max(1);
    let concurrency = args.concurrency.max(1);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("== p11-enrollment: {count} simulated agents, concurrency {concurrency}, {cores} cores");
    let mut report = Report::new("p11-enrollment");
    report.parameter("agents", count);
    report.parameter("concurrency", concurrency);
    report.parameter("server_cores", cores);
    report.parameter("open_files_limit", crate::open_files_limit());

    let data = TempDir::new(paths, "p11")?;
    let mut server = Server::start(paths, data.path()).await?;
    let admin = Admin::new(&server)?;
    let token = admin.enrollment_token(count).await?;
    let prepared =
        tokio::task::spawn_blocking(move || sim::prepare(count, "sim")).await.context("key generation")??;

    // Phase 1: enrollment.
    let cpu_before = server.cpu_time();
    let outcome = sim::enroll_all(&server.api_url, &token, prepared, concurrency).await?;
    let cpu = server.cpu_time().zip(cpu_before).map(|(after, before)| after.saturating_sub(before));
    let enrolled = outcome.agents.len();
    let elapsed = outcome.elapsed.as_secs_f64();
    let rate = enrolled as f64 / elapsed;
    let latencies = Latencies::new(&outcome.latencies);
    let per_core_target = 20.0;
    report.figure("p11 enrollments", enrolled as f64, &format!("of {count}"), &format!("{count}"));
    report.figure("p11 enrollment rate", rate, "agents/s", &format!(">= {}", per_core_target * cores as f64));
    report.figure("p11 enrollment rate per server core", rate / cores as f64, "agents/s/core", ">= 20");
    report.figure("p11 enrollment latency p50", latencies.percentile(50.0), "ms", "n/a");
    report.figure("p11 enrollment latency p99", latencies.percentile(99.0), "ms", "n/a");
    if let Some(cpu) = cpu {
        let seconds = cpu.as_secs_f64();
        report.figure("p11 server CPU time during enrollment", seconds, "s", "n/a");
        report.figure(
            "p11 server CPU utilisation during enrollment",
            seconds / elapsed * 100.0,
            "% of one core",
            "n/a",
        );
        if seconds > 0.0 {
            report.figure("p11 enrollments per server CPU-second", enrolled as f64 / seconds, "agents/s/core", ">= 20");
        }
    }
    report.note(format!(
        "keys and CSRs were generated before the timed phase; the load generator shares the machine's {cores} cores \
         with the server, so the per-core figure (rate / cores) is conservative"
    ));
    if !outcome.failures.is_empty() {
        report.note(format!("{} enrollments failed; first: {}", outcome.failures.len(), outcome.failures[0]));
    }

    // Phase 2: every agent opens its gateway connection.
    let agents = Arc::new(outcome.agents);
    let cpu_before = server.cpu_time();
    let fleet = Fleet::start(&agents, server.gateway, concurrency);
    let deadline = Duration::from_secs(60 + enrolled as u64 / 10);
    let all_online = fleet.wait_for(deadline, |online| online == enrolled).await;
    let cpu = server.cpu_time().zip(cpu_before).map(|(after, before)| after.saturating_sub(before));
    match all_online {
        Some(waited) => {
            let seconds = waited.as_secs_f64();
            report.figure("p11 gateway connections established", enrolled as f64 / seconds, "connections/s", "n/a");
            report.figure("p11 time until all agents online", seconds, "s", "n/a");
        }
        None => report.note(format!(
            "only {} of {enrolled} agents were online after {deadline:?} ({} failed attempts)",
            fleet.online(),
            fleet.failed_attempts.load(std::sync::atomic::Ordering::Relaxed)
        )),
    }
    if let Some(cpu) = cpu {
        report.figure("p11 server CPU time during connection phase", cpu.as_secs_f64(), "s", "n/a");
    }
    let online_by_api = admin.system_names(Some("online")).await?.len();
    report.figure(
        "p11 systems online per the API after connecting",
        online_by_api as f64,
        "systems",
        &format!("{enrolled}"),
    );
    if let Some(rss) = server.rss_kib() {
        report.figure("p11 server RSS with all agents connected", rss as f64 / 1024.0, "MiB", "n/a");
    }

    // Phase 3: SIGKILL the server, restart it on the same data directory, let the agents come back.
    let failed_before = fleet.failed_attempts.load(std::sync::atomic::Ordering::Relaxed);
    let killed = Instant::now();
    server.kill();
    let noticed = fleet.wait_for(Duration::from_secs(30), |online| online == 0).await;
    if noticed.is_none() {
        report.note(format!("{} agents had not noticed the server's death after 30 s", fleet.online()));
    }
    server.restart().await?;
    fleet.set_gateway(server.gateway);
    let restart_took = killed.elapsed();
    let cpu_before = server.cpu_time();
    let storm_deadline = Duration::from_secs(180);
    let back = fleet.wait_for(storm_deadline, |online| online == enrolled).await;
    let cpu = server.cpu_time().zip(cpu_before).map(|(after, before)| after.saturating_sub(before));
    let reconnected = fleet.online();
    let failed = fleet.failed_attempts.load(std::sync::atomic::Ordering::Relaxed) - failed_before;
    report.figure("p11 server restart (kill to ready)", restart_took.as_secs_f64(), "s", "n/a");
    report.figure(
        "p11 agents reconnected after restart",
        reconnected as f64,
        &format!("of {enrolled}"),
        &format!("{enrolled} (no collapse)"),
    );
    if let Some(waited) = back {
        report.figure("p11 reconnect storm: restart to all online", waited.as_secs_f64(), "s", "n/a");
        report.figure("p11 reconnect storm: kill to all online", killed.elapsed().as_secs_f64(), "s", "n/a");
    } else {
        report.note(format!("collapse: only {reconnected} of {enrolled} agents were back after {storm_deadline:?}"));
    }
    report.figure("p11 reconnect storm: failed connection attempts", failed as f64, "attempts", "n/a");
    if let Some(cpu) = cpu {
        report.figure("p11 server CPU time during reconnect storm", cpu.as_secs_f64(), "s", "n/a");
    }
    let admin = Admin::new(&server)?;
    let online_by_api = admin.system_names(Some("online")).await?.len();
    report.figure(
        "p11 systems online per the API after the storm",
        online_by_api as f64,
        "systems",
        &format!("{enrolled}"),
    );
    if fleet.refused() || fleet.gave_up.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        report.note(format!(
            "{} simulated agents gave up (refused by the server or out of attempts)",
            fleet.gave_up.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    report.note(
        "reconnect backoff as in crates/steward-agent/src/backoff.rs: 1 s base doubling to 60 s, jitter 0.5..1.0; \
         agents send the digest of their last inventory on reconnect",
    );
    fleet.stop().await;
    drop(server);
    report.write(paths)
}
