//! P12: REST API latency with concurrent keep-alive clients, and paging through the whole inventory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::report::{Latencies, Report, median};
use crate::server::{Admin, Server, TempDir, http_client};
use crate::sim;
use crate::{BenchArgs, Paths};

/// Requests in the first second are not counted: connections are being opened and caches warmed.
const WARMUP: Duration = Duration::from_secs(1);
/// How many times the whole inventory is paged through.
const PAGE_RUNS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    ListSystems,
    ShowSystem,
    ListGroups,
    CreateGroup,
    DeleteGroup,
}

impl Operation {
    const ALL: [Operation; 5] = [
        Operation::ListSystems,
        Operation::ShowSystem,
        Operation::ListGroups,
        Operation::CreateGroup,
        Operation::DeleteGroup,
    ];

    fn label(self) -> &'static str {
        match self {
            Operation::ListSystems => "GET /systems?limit=100",
            Operation::ShowSystem => "GET /systems/{name}",
            Operation::ListGroups => "GET /groups",
            Operation::CreateGroup => "POST /groups",
            Operation::DeleteGroup => "DELETE /groups/{name}",
        }
    }

    fn is_mutation(self) -> bool {
        matches!(self, Operation::CreateGroup | Operation::DeleteGroup)
    }
}

/// Each client cycles through this mix: 8 reads, then a group created and deleted again.
const MIX: [Operation; 10] = [
    Operation::ListSystems,
    Operation::ShowSystem,
    Operation::ListGroups,
    Operation::ShowSystem,
    Operation::ListSystems,
    Operation::ShowSystem,
    Operation::ListGroups,
    Operation::ShowSystem,
    Operation::CreateGroup,
    Operation::DeleteGroup,
];

#[derive(Default)]
struct ClientResult {
    samples: Vec<(Operation, Duration)>,
    errors: usize,
    first_error: Option<String>,
}

pub async fn run(paths: &Paths, args: &BenchArgs) -> anyhow::Result<()> {
    let systems = args.systems.max(1);
    let clients = args.clients.max(1);
    let seconds = args.seconds.max(2);
    println!("== p12-api-latency: {clients} clients for {seconds} s over {systems} systems");
    let mut report = Report::new("p12-api-latency");
    report.parameter("clients", clients);
    report.parameter("seconds", seconds);
    report.parameter("warmup_seconds", WARMUP.as_secs());
    report.parameter("systems", systems);
    report.parameter("mix", MIX.iter().map(|op| op.label()).collect::<Vec<_>>());

    let data = TempDir::new(paths, "p12")?;
    let server = Server::start(paths, data.path()).await?;
    let admin = Admin::new(&server)?;
    let token = admin.enrollment_token(systems).await?;
    eprintln!("enrolling {systems} simulated systems and uploading their inventories");
    let prepared =
        tokio::task::spawn_blocking(move || sim::prepare(systems, "api")).await.context("key generation")??;
    let outcome = sim::enroll_all(&server.api_url, &token, prepared, args.concurrency).await?;
    if !outcome.failures.is_empty() {
        report.note(format!("{} enrollments failed; first: {}", outcome.failures.len(), outcome.failures[0]));
    }
    let agents = Arc::new(outcome.agents);
    let upload_failures = sim::upload_all(&agents, server.gateway, args.concurrency).await?;
    if upload_failures > 0 {
        report.note(format!("{upload_failures} inventory uploads failed"));
    }
    let names: Arc<Vec<String>> = Arc::new(agents.iter().map(|agent| agent.system_name.clone()).collect());
    report.parameter("systems_enrolled", names.len());

    // Baseline: one client alone, so queueing under load can be told from the cost of one request.
    let (baseline, _) = run_clients("baseline", 1, Duration::from_secs(2), &admin, &names).await?;
    let baseline_samples: Vec<Duration> =
        baseline.iter().flat_map(|result| result.samples.iter()).map(|(_, latency)| *latency).collect();
    let baseline = Latencies::new(&baseline_samples);

    // Concurrent clients.
    let server_cpu_before = server.cpu_time();
    let own_cpu_before = own_cpu_time();
    let (results, measured) = run_clients("load", clients, Duration::from_secs(seconds), &admin, &names).await?;
    let server_cpu = server.cpu_time().zip(server_cpu_before).map(|(after, before)| after.saturating_sub(before));
    let own_cpu = own_cpu_time().saturating_sub(own_cpu_before);

    let mut gets = Vec::new();
    let mut mutations = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for result in &results {
        errors += result.errors;
        if first_error.is_none() {
            first_error = result.first_error.clone();
        }
        for (operation, latency) in &result.samples {
            if operation.is_mutation() { mutations.push(*latency) } else { gets.push(*latency) }
        }
    }
    let total = gets.len() + mutations.len();
    report.figure("p12 requests", total as f64 / measured, "requests/s", "n/a");
    let gets_latency = Latencies::new(&gets);
    report.figure("p12 GET latency p50", gets_latency.percentile(50.0), "ms", "n/a");
    report.figure("p12 GET latency p99", gets_latency.percentile(99.0), "ms", "< 5");
    let mutations_latency = Latencies::new(&mutations);
    report.figure("p12 mutation latency p50", mutations_latency.percentile(50.0), "ms", "n/a");
    report.figure("p12 mutation latency p99", mutations_latency.percentile(99.0), "ms", "< 20");
    for operation in Operation::ALL {
        let samples: Vec<Duration> = results
            .iter()
            .flat_map(|result| result.samples.iter())
            .filter(|(op, _)| *op == operation)
            .map(|(_, latency)| *latency)
            .collect();
        let latencies = Latencies::new(&samples);
        let target = if operation.is_mutation() { "< 20" } else { "< 5" };
        report.figure(
            &format!(
                "p12 {} p99 ({} requests, p50 {:.2} ms)",
                operation.label(),
                latencies.count(),
                latencies.percentile(50.0)
            ),
            latencies.percentile(99.0),
            "ms",
            target,
        );
    }
    report.figure("p12 failed requests", errors as f64, "requests", "0");
    report.figure("p12 baseline (1 client) latency p50, all requests", baseline.percentile(50.0), "ms", "n/a");
    report.figure("p12 baseline (1 client) latency p99, all requests", baseline.percentile(99.0), "ms", "n/a");
    let window = measured + WARMUP.as_secs_f64();
    if let Some(cpu) = server_cpu {
        report.figure("p12 server CPU during the run", cpu.as_secs_f64() / window * 100.0, "% of one core", "n/a");
    }
    report.figure(
        "p12 load generator CPU during the run",
        own_cpu.as_secs_f64() / window * 100.0,
        "% of one core",
        "n/a",
    );
    if let Some(error) = first_error {
        report.note(format!("first failed request: {error}"));
    }

    // The inventory page: all systems, 1000 at a time.
    let mut totals = Vec::new();
    let mut slowest_page = Vec::new();
    let mut pages = 0;
    for _ in 0..PAGE_RUNS {
        let (total, slowest, count, listed) = page_through(&admin).await?;
        totals.push(total.as_secs_f64() * 1000.0);
        slowest_page.push(slowest.as_secs_f64() * 1000.0);
        pages = count;
        if listed != names.len() {
            report.note(format!("paging listed {listed} systems, {} were enrolled", names.len()));
        }
    }
    report.figure(
        &format!("p12 inventory page: all {} systems in {pages} pages of 1000 (median of {PAGE_RUNS})", names.len()),
        median(&mut totals),
        "ms",
        "< 200 for 10000 systems",
    );
    report.figure("p12 inventory page: slowest single page (median of runs)", median(&mut slowest_page), "ms", "n/a");
    if names.len() < 10_000 {
        report.note(format!(
            "the inventory-page figure used {} systems; run with --systems 10000 for the target's 10k",
            names.len()
        ));
    }
    drop(server);
    report.write(paths)
}

/// Runs `clients` concurrent clients for WARMUP + `length`; returns their results and the measured seconds.
async fn run_clients(
    label: &'static str,
    clients: usize,
    length: Duration,
    admin: &Admin,
    names: &Arc<Vec<String>>,
) -> anyhow::Result<(Vec<ClientResult>, f64)> {
    let started = Instant::now();
    let measure_from = started + WARMUP;
    let deadline = started + WARMUP + length;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (admin, names) = (admin.clone(), names.clone());
        tasks.spawn(async move {
            run_client(format!("{label}{client}"), client, admin, names, measure_from, deadline).await
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.context("an API client panicked")??);
    }
    Ok((results, deadline.saturating_duration_since(measure_from).as_secs_f64()))
}

/// CPU time (user + system) this process has used so far.
fn own_cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let micros = |time: libc::timeval| time.tv_sec as u64 * 1_000_000 + time.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

async fn run_client(
    group_prefix: String,
    client: usize,
    admin: Admin,
    names: Arc<Vec<String>>,
    measure_from: Instant,
    deadline: Instant,
) -> anyhow::Result<ClientResult> {
    let http = http_client(1)?;
    let mut result = ClientResult::default();
    let mut pending_group: Option<String> = None;
    let mut created = 0usize;
    let mut step = client;
    // Bounded by the deadline, and by a request count no loopback server can reach in the time.
    for _ in 0..10_000_000u64 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let mut operation = MIX[step % MIX.len()];
        step += 1;
        if operation == Operation::DeleteGroup && pending_group.is_none() {
            operation = Operation::ListGroups;
        }
        let request = match operation {
            Operation::ListSystems => http.get(admin.url("/systems")).query(&[("limit", "100")]),
            Operation::ShowSystem => http.get(admin.url(&format!("/systems/{}", names[step % names.len()]))),
            Operation::ListGroups => http.get(admin.url("/groups")),
            Operation::CreateGroup => {
                if let Some(stale) = pending_group.take() {
                    // The previous create's delete never ran; delete it first so names stay unique.
                    let _ = http.delete(admin.url(&format!("/groups/{stale}"))).bearer_auth(&admin.token).send().await;
                }
                created += 1;
                let name = format!("bench-{group_prefix}-{created}");
                pending_group = Some(name.clone());
                http.post(admin.url("/groups")).json(&serde_json::json!({ "name": name }))
            }
            Operation::DeleteGroup => {
                let name = pending_group.take().unwrap_or_default();
                http.delete(admin.url(&format!("/groups/{name}")))
            }
        };
        let sent = Instant::now();
        let outcome = match request.bearer_auth(&admin.token).send().await {
            Ok(response) => {
                let status = response.status();
                let body = response.bytes().await;
                match body {
                    Ok(_) if status.is_success() => Ok(()),
                    Ok(body) => Err(format!("{} -> {status}: {}", operation.label(), String::from_utf8_lossy(&body))),
                    Err(error) => Err(format!("{} -> {error}", operation.label())),
                }
            }
            Err(error) => Err(format!("{} -> {error}", operation.label())),
        };
        let latency = sent.elapsed();
        if sent < measure_from {
            continue;
        }
        match outcome {
            Ok(()) => result.samples.push((operation, latency)),
            Err(error) => {
                result.errors += 1;
                result.first_error.get_or_insert(error);
            }
        }
    }
    Ok(result)
}

/// Pages through every system 1000 at a time: (total time, slowest page, pages, systems listed).
async fn page_through(admin: &Admin) -> anyhow::Result<(Duration, Duration, usize, usize)> {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut after: Option<String> = None;
    let mut listed = 0;
    for page_number in 1..=1000 {
        let mut query = vec![("limit", "1000".to_string())];
        if let Some(after) = &after {
            query.push(("after", after.clone()));
        }
        let sent = Instant::now();
        let page = admin.systems_page(&query).await?;
        slowest = slowest.max(sent.elapsed());
        listed += page.items.len();
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok((started.elapsed(), slowest, page_number, listed)),
        }
    }
    anyhow::bail!("more than 1000 pages of systems")
}
