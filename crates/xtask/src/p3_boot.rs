//! P3: from the API call to a guest that is up: the guest agent registered (x86_64, whose starter image runs
//! `steward-agent` on its virtio-serial channel) or personalization finished (`steward-firstboot: done` on the
//! console of s390x, whose image has no agent); boot-to-init reported separately. QEMU runs under TCG here.
//!
//! Each run creates a virtual server, deploys the starter image into it on a qcow2 overlay with `start: true`
//! and polls every 50 ms: the operation (for when the `start_guest` step finished), the console (for the first
//! line of the image's userspace, `steward-rc:` or `steward-firstboot:`) and, on x86_64, the system's state.
//! Boot-to-init runs from the start of the guest's QEMU process (`/proc/PID/stat`, 10 ms resolution) to that
//! first userspace line. The guest is then powered off and deleted before the next run.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use steward_types::api::operations::{Operation, OperationState, StepState};

use crate::provision::{
    CloneMethod, Deploy, LeftoverGuard, OPERATION_TIMEOUT, ProvisionApi, StarterImage, between, describe_failure,
    process_start_unix_millis, step_finished, unix_millis_now,
};
use crate::report::{Latencies, Report};
use crate::server::{Server, TempDir};
use crate::{BenchArgs, P3Arch, Paths};

const NETWORK: &str = "p3net";
/// How often the console, the system and the operation are polled.
const POLL: Duration = Duration::from_millis(50);
/// How long one guest may take from the deploy request until it is up.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// How much of the console's tail each poll reads.
const CONSOLE_BYTES: usize = 256 * 1024;
/// Most runs per architecture accepted.
const MAX_RUNS: usize = 1000;

/// Console lines that only the image's userspace prints: rcS and steward-firstboot.
const INIT_MARKERS: [&str; 2] = ["steward-rc:", "steward-firstboot:"];
const FIRSTBOOT_DONE: &str = "steward-firstboot: done";

/// The times of one boot, in Unix milliseconds of this machine's clock.
struct BootTimes {
    requested: i64,
    guest_started: i64,
    qemu_started: Option<i64>,
    init_seen: i64,
    up: i64,
}

pub async fn run(paths: &Paths, args: &BenchArgs) -> anyhow::Result<()> {
    let runs = args.runs;
    if !(1..=MAX_RUNS).contains(&runs) {
        bail!("--runs {runs}: must be 1 to {MAX_RUNS}");
    }
    let arches: &[&str] = match args.arch {
        P3Arch::All => &["x86_64", "s390x"],
        P3Arch::X86_64 => &["x86_64"],
        P3Arch::S390x => &["s390x"],
    };
    println!("== p3-boot: {runs} runs for {}", arches.join(" and "));
    let mut report = Report::new("p3-boot");
    report.parameter("runs", runs);
    report.parameter("architectures", arches.to_vec());
    report.parameter("poll_interval_ms", POLL.as_millis() as u64);
    report.note(
        "one guest at a time, deployed on a qcow2 overlay of the starter image with start: true, 1 vCPU, QEMU TCG; \
         intervals from the deploy request (client clock) to server time stamps or to the poll that saw the change \
         (every 50 ms)",
    );
    let images = arches.iter().map(|arch| StarterImage::load(paths, arch)).collect::<anyhow::Result<Vec<_>>>()?;

    let data = TempDir::new(paths, "p3")?;
    let guard = LeftoverGuard::new(data.path());
    let server = Server::start(paths, data.path()).await?;
    let api = ProvisionApi::new(&server, 4)?;
    api.network_create(NETWORK, "10.78.0.0/24").await?;

    for image in &images {
        let arch = image.arch.as_str();
        let template_name = format!("p3-{arch}");
        eprintln!("{arch}: importing the starter image");
        let template = api.os_template_import(&template_name, &image.disk, image).await?;
        // s390x guests get more memory: the reference measurements booted them with 512 MiB.
        let memory_mib = if arch == "s390x" { 512 } else { 256 };
        let disk_bytes = template.disk_size_bytes.div_ceil(1 << 20) << 20;
        api.server_template_create(&template_name, arch, memory_mib, disk_bytes, &[NETWORK]).await?;

        let mut samples = Vec::new();
        for run in 0..runs {
            let name = format!("p3-{}-{run:03}", if arch == "s390x" { "z" } else { "x" });
            let times = boot_once(&api, &name, &template_name, image.agent, run).await?;
            eprintln!(
                "{name}: started {} ms, init {} ms, up {} ms after the request",
                between(times.requested, times.guest_started).as_millis(),
                between(times.requested, times.init_seen).as_millis(),
                between(times.requested, times.up).as_millis()
            );
            samples.push(times);
            api.virtual_server_stop(&name).await?;
            let deleted = api.virtual_server_delete(&name).await?;
            api.wait_succeeded(&deleted, OPERATION_TIMEOUT).await?;
        }
        figures(&mut report, arch, image.agent, &samples);
        api.server_template_delete(&template_name).await?;
        api.os_template_delete(&template_name).await?;
    }
    api.network_delete(NETWORK).await?;
    let processes = guard.guest_processes();
    if !processes.is_empty() {
        report.note(format!("QEMU processes left after deleting every guest: {processes:?}"));
    }
    drop(server);
    drop(guard);
    report.write(paths)
}

/// Prints the figures of one architecture.
fn figures(report: &mut Report, arch: &str, agent: bool, samples: &[BootTimes]) {
    let storage = "qcow2 overlay";
    let series = |pick: &dyn Fn(&BootTimes) -> Option<Duration>| -> Latencies {
        Latencies::new(&samples.iter().filter_map(pick).collect::<Vec<_>>())
    };
    let up_label = if agent { "agent registered (system online)" } else { "steward-firstboot: done on the console" };
    let up = series(&|times| Some(between(times.requested, times.up)));
    let started = series(&|times| Some(between(times.requested, times.guest_started)));
    let init = series(&|times| Some(between(times.requested, times.init_seen)));
    let boot_to_init = series(&|times| times.qemu_started.map(|qemu| between(qemu, times.init_seen)));
    let init_to_up = series(&|times| Some(between(times.init_seen, times.up)));
    let runs = up.count();
    for (what, latencies, target) in [
        (format!("API call -> {up_label}"), &up, "< 10000"),
        ("API call -> guest started (start_guest done)".to_string(), &started, "n/a"),
        ("API call -> first userspace console line".to_string(), &init, "n/a"),
        ("boot-to-init: QEMU process start -> first userspace console line".to_string(), &boot_to_init, "n/a"),
        (format!("first userspace console line -> {up_label}"), &init_to_up, "n/a"),
    ] {
        for percentile in [50.0, 99.0] {
            report.figure(
                &format!("p3 {arch} {what} p{percentile:.0} ({storage}, {} runs)", latencies.count()),
                latencies.percentile(percentile),
                "ms",
                target,
            );
        }
    }
    if boot_to_init.count() < runs {
        report.note(format!(
            "{arch}: the QEMU process start was found in {} of {runs} runs (the guest list did not name it in time)",
            boot_to_init.count()
        ));
    }
}

/// Creates `name`, deploys the starter image with `start: true` and waits until the guest is up.
async fn boot_once(
    api: &ProvisionApi,
    name: &str,
    template: &str,
    agent: bool,
    run: usize,
) -> anyhow::Result<BootTimes> {
    let created = api.virtual_server_create(name, template).await?;
    api.wait_succeeded(&created, OPERATION_TIMEOUT).await?;
    let address = format!("10.78.0.{}/24", 10 + run % 200);
    let deploy = Deploy { os_template: template, clone: CloneMethod::Overlay, start: true, address: Some(&address) };
    let (operation, requested) = api.virtual_server_deploy(name, &deploy).await?;
    let started = Instant::now();
    let mut finished: Option<Operation> = None;
    let mut guest_started = false;
    let mut qemu_started: Option<i64> = None;
    let mut init_seen: Option<i64> = None;
    let mut up: Option<i64> = None;
    loop {
        if finished.is_none() {
            let current = api.operation(&operation).await?;
            guest_started = start_guest_done(&current);
            if current.state.is_finished() {
                if current.state != OperationState::Succeeded {
                    bail!("{}", describe_failure(&current));
                }
                finished = Some(current);
            }
        }
        if qemu_started.is_none() && guest_started {
            qemu_started = api.guest_pid(name).await?.and_then(process_start_unix_millis);
        }
        if init_seen.is_none() || (!agent && up.is_none()) {
            let console = api.console(name, CONSOLE_BYTES).await?;
            let now = unix_millis_now();
            if init_seen.is_none() && INIT_MARKERS.iter().any(|marker| console.contains(marker)) {
                init_seen = Some(now);
            }
            if !agent && up.is_none() && console.contains(FIRSTBOOT_DONE) {
                up = Some(now);
            }
        }
        if agent && up.is_none() && api.system_state(name).await?.as_deref() == Some("online") {
            up = Some(unix_millis_now());
        }
        if let (Some(operation), Some(init_seen), Some(up)) = (&finished, init_seen, up) {
            let guest_started = step_finished(operation, "start_guest")
                .with_context(|| format!("operation {} has no finished start_guest step", operation.id))?;
            return Ok(BootTimes { requested, guest_started, qemu_started, init_seen, up });
        }
        if started.elapsed() > BOOT_TIMEOUT {
            let console = api.console(name, 4096).await.unwrap_or_default();
            bail!(
                "{name} was not up {BOOT_TIMEOUT:?} after the deploy request (operation finished: {}, init seen: {}, \
                 up: {}); console tail:\n{console}",
                finished.is_some(),
                init_seen.is_some(),
                up.is_some()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the deploy's `start_guest` step is done (QEMU runs and answers on its QMP socket).
fn start_guest_done(operation: &Operation) -> bool {
    operation.steps.iter().any(|step| step.name == "start_guest" && step.state == StepState::Done)
}
