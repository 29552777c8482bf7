//! P1: what cloning an OS template's disk costs per guest, copy-on-write overlay next to a full copy in the same
//! run and over images of several sizes, and the control-plane time to create and deploy 100 virtual servers on
//! overlays (disk, config drive, guest definition and records; no guest boots).
//!
//! Per guest, the interval starts when the deploy request is sent (this machine's clock, milliseconds) and ends
//! at the server's time stamps of the same clock: when the `clone_disk` step finished (the disk is ready) and
//! when the operation succeeded. Deploys of the clone-cost batches run one at a time, so each figure is the cost
//! of one clone on an otherwise idle server; the control-plane figure runs many at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use steward_types::api::operations::Operation;
use steward_types::api::os_templates::OsTemplate;
use tokio::sync::Semaphore;

use crate::provision::{
    CloneMethod, Deploy, LeftoverGuard, OPERATION_TIMEOUT, ProvisionApi, StarterImage, between, step_detail,
    step_finished, unix_millis_now,
};
use crate::report::{Latencies, Report};
use crate::server::{Server, TempDir};
use crate::{BenchArgs, Paths};

const NETWORK: &str = "p1net";
/// Guest addresses are `10.77.0.<10 + index>`, so at most this many guests exist at once.
const MAX_GUESTS: usize = 240;
/// Free space kept on the disk beyond what a batch of full copies needs.
const FREE_SPACE_MARGIN: u64 = 4 << 30;
/// Largest random image the benchmark writes.
const MAX_IMAGE_MIB: u64 = 64 * 1024;

/// One OS template the clones are made from.
struct Source {
    label: String,
    template: OsTemplate,
}

/// What one batch of clones measured.
struct Batch {
    disk_ready: Vec<Duration>,
    succeeded: Vec<Duration>,
    copy_rates_mib_per_second: Vec<f64>,
}

pub async fn run(paths: &Paths, args: &BenchArgs) -> anyhow::Result<()> {
    let guests = args.guests;
    let control_plane_guests = args.control_plane_guests;
    if !(1..=MAX_GUESTS).contains(&guests) {
        bail!("--guests {guests}: must be 1 to {MAX_GUESTS} (the guests' addresses share one /24)");
    }
    if !(1..=MAX_GUESTS).contains(&control_plane_guests) {
        bail!("--control-plane-guests {control_plane_guests}: must be 1 to {MAX_GUESTS}");
    }
    let sizes_mib = parse_sizes(&args.image_sizes_mib)?;
    let concurrency = args.concurrency.clamp(1, 256);
    println!(
        "== p1-clone: {guests} guests per image and clone method, images: starter + {sizes_mib:?} MiB; \
         control plane: {control_plane_guests} guests, {concurrency} in flight"
    );
    let mut report = Report::new("p1-clone");
    report.parameter("guests_per_batch", guests);
    report.parameter("random_image_sizes_mib", sizes_mib.clone());
    report.parameter("control_plane_guests", control_plane_guests);
    report.parameter("control_plane_concurrency", concurrency);
    report.note(
        "per guest: from the deploy request to the clone_disk step done (disk ready) and to the operation \
         succeeded; deploys one at a time, no guest started; every guest has one NIC with a static address",
    );

    let starter = StarterImage::load(paths, "x86_64")?;
    let data = TempDir::new(paths, "p1")?;
    let image_dir = TempDir::new(paths, "p1-images")?;
    let guard = LeftoverGuard::new(data.path());
    let server = Server::start(paths, data.path()).await?;
    let api = ProvisionApi::new(&server, concurrency)?;

    // The OS templates: the starter image, then images of random data (nothing compresses or deduplicates).
    let mut sources = Vec::new();
    eprintln!("importing the starter image");
    let template = api.os_template_import("p1-starter", &starter.disk, &starter).await?;
    sources.push(Source { label: format!("starter image ({} MiB)", template.disk_size_bytes >> 20), template });
    for size in &sizes_mib {
        eprintln!("writing a {size} MiB image of random data and importing it");
        let file = random_qcow2(image_dir.path(), *size).await?;
        let name = format!("p1-random-{size}m");
        let template = api.os_template_import(&name, &file, &starter).await?;
        // The server copied the image; the source is not needed any more.
        std::fs::remove_file(&file).with_context(|| format!("cannot remove {}", file.display()))?;
        sources.push(Source { label: format!("{size} MiB image of random data"), template });
    }
    let disk_bytes =
        sources.iter().map(|source| source.template.disk_size_bytes).max().unwrap_or(0).div_ceil(1 << 20) << 20;
    api.network_create(NETWORK, "10.77.0.0/24").await?;
    api.server_template_create("p1-shape", "x86_64", 256, disk_bytes, &[NETWORK]).await?;
    report.parameter("boot_disk_bytes", disk_bytes);

    let mut overlay_medians = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        for method in [CloneMethod::Overlay, CloneMethod::Copy] {
            let mut count = guests;
            if method == CloneMethod::Copy {
                count = fit_copies(&data, source.template.disk_size_bytes, guests, &mut report);
            }
            eprintln!("{}: {count} deploys, {}", source.label, method.storage());
            let batch = clone_batch(&api, index, source, method, count, concurrency).await?;
            let ready = Latencies::new(&batch.disk_ready);
            let done = Latencies::new(&batch.succeeded);
            let what = format!("{}, {}, {} guests", method.storage(), source.label, ready.count());
            let target = match method {
                CloneMethod::Overlay => "independent of image size",
                CloneMethod::Copy => "n/a (the baseline)",
            };
            report.figure(&format!("p1 disk ready p50 ({what})"), ready.percentile(50.0), "ms", target);
            report.figure(&format!("p1 disk ready p99 ({what})"), ready.percentile(99.0), "ms", "n/a");
            report.figure(&format!("p1 deploy succeeded p50 ({what})"), done.percentile(50.0), "ms", "n/a");
            report.figure(&format!("p1 deploy succeeded p99 ({what})"), done.percentile(99.0), "ms", "n/a");
            if method == CloneMethod::Copy && !batch.copy_rates_mib_per_second.is_empty() {
                let mut rates = batch.copy_rates_mib_per_second.clone();
                report.figure(
                    &format!("p1 full copy rate, median ({})", source.label),
                    crate::report::median(&mut rates),
                    "MiB/s",
                    "P2: >= 80 % of the disk's sequential rate",
                );
            }
            if method == CloneMethod::Overlay {
                overlay_medians.push((source.template.disk_size_bytes, ready.percentile(50.0)));
            }
        }
    }
    overlay_medians.sort_by_key(|(bytes, _)| *bytes);
    if let (Some(smallest), Some(largest)) = (overlay_medians.first(), overlay_medians.last())
        && overlay_medians.len() > 1
    {
        report.figure(
            &format!("p1 overlay disk-ready p50, {} MiB image / {} MiB image", largest.0 >> 20, smallest.0 >> 20),
            largest.1 / smallest.1,
            "ratio",
            "~1 (independent of image size)",
        );
    }

    control_plane(&api, &server, &sources[0].template.name, control_plane_guests, concurrency, &mut report).await?;

    // Delete everything, then check that nothing stays.
    for source in &sources {
        api.os_template_delete(&source.template.name).await?;
    }
    api.server_template_delete("p1-shape").await?;
    api.network_delete(NETWORK).await?;
    let mut leftovers = Vec::new();
    for list in ["/virtual-servers", "/os-templates", "/server-templates", "/networks", "/systems"] {
        leftovers.extend(api.names(list).await?.into_iter().map(|name| format!("{list}/{name}")));
    }
    leftovers.extend(guard.guest_processes().into_iter().map(|pid| format!("QEMU process {pid}")));
    leftovers.extend(guard.host_files().into_iter().map(|path| path.display().to_string()));
    if guard.namespace_exists() {
        leftovers.push("the server's network namespace".to_string());
    }
    report.figure("p1 things left after deleting everything", leftovers.len() as f64, "items", "0");
    if !leftovers.is_empty() {
        report.note(format!("left after deleting everything: {}", leftovers.join(", ")));
    }
    drop(server);
    drop(guard);
    report.write(paths)
}

/// Creates `count` virtual servers, deploys `source` into each one at a time with `method`, and deletes them.
async fn clone_batch(
    api: &ProvisionApi,
    source_index: usize,
    source: &Source,
    method: CloneMethod,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Batch> {
    let letter = &method.as_str()[..1];
    let names: Vec<String> = (0..count).map(|index| format!("p1-{source_index}{letter}-{index:03}")).collect();
    concurrently(api, &names, concurrency, |api, name| async move {
        let operation = api.virtual_server_create(&name, "p1-shape").await?;
        api.wait_succeeded(&operation, OPERATION_TIMEOUT).await.map(drop)
    })
    .await?;
    let mut batch = Batch { disk_ready: Vec::new(), succeeded: Vec::new(), copy_rates_mib_per_second: Vec::new() };
    for (index, name) in names.iter().enumerate() {
        let address = format!("10.77.0.{}/24", 10 + index);
        let deploy =
            Deploy { os_template: &source.template.name, clone: method, start: false, address: Some(&address) };
        let (operation, sent) = api.virtual_server_deploy(name, &deploy).await?;
        let finished = api.wait_succeeded(&operation, OPERATION_TIMEOUT).await?;
        let (disk_ready, succeeded) = deploy_times(&finished, sent)?;
        batch.disk_ready.push(disk_ready);
        batch.succeeded.push(succeeded);
        if let Some(rate) = step_detail(&finished, "clone_disk").and_then(copy_rate) {
            batch.copy_rates_mib_per_second.push(rate);
        }
    }
    delete_all(api, &names, concurrency).await?;
    Ok(batch)
}

/// From the deploy request to the disk ready and to the operation succeeded.
fn deploy_times(operation: &Operation, sent: i64) -> anyhow::Result<(Duration, Duration)> {
    let disk_ready = step_finished(operation, "clone_disk")
        .with_context(|| format!("operation {} has no finished clone_disk step", operation.id))?;
    let succeeded = operation.finished_at.with_context(|| format!("operation {} has no end time", operation.id))?;
    Ok((between(sent, disk_ready), between(sent, succeeded.millis())))
}

/// The rate a full copy reported in its step detail (`full copy, N MiB at R MiB/s`).
fn copy_rate(detail: &str) -> Option<f64> {
    detail.strip_prefix("full copy, ")?.split(" at ").nth(1)?.strip_suffix(" MiB/s")?.parse().ok()
}

/// The control-plane figure: create and deploy (overlay, no start) `count` virtual servers, `concurrency` at a
/// time, until every operation succeeded.
async fn control_plane(
    api: &ProvisionApi,
    server: &Server,
    os_template: &str,
    count: usize,
    concurrency: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!("control plane: creating and deploying {count} virtual servers on overlays, {concurrency} at a time");
    let names: Vec<String> = (0..count).map(|index| format!("p1-cp-{index:03}")).collect();
    let server_cpu_before = server.cpu_time();
    let first_request = unix_millis_now();
    let started = Instant::now();
    let template = os_template.to_string();
    let results = concurrently(api, &names, concurrency, move |api, name| {
        let template = template.clone();
        async move {
            let index: usize = name.rsplit('-').next().and_then(|number| number.parse().ok()).unwrap_or(0);
            let created = api.virtual_server_create(&name, "p1-shape").await?;
            let created = api.wait_succeeded(&created, OPERATION_TIMEOUT).await?;
            let address = format!("10.77.0.{}/24", 10 + index);
            let deploy =
                Deploy { os_template: &template, clone: CloneMethod::Overlay, start: false, address: Some(&address) };
            let (deployed, _) = api.virtual_server_deploy(&name, &deploy).await?;
            let deployed = api.wait_succeeded(&deployed, OPERATION_TIMEOUT).await?;
            Ok((operation_duration(&created), operation_duration(&deployed), deployed.finished_at))
        }
    })
    .await?;
    let wall = started.elapsed();
    if let Some(cpu) = server.cpu_time().zip(server_cpu_before).map(|(after, before)| after.saturating_sub(before)) {
        report.figure(
            "p1 control plane: server CPU (its own process, not the qemu-img and ip it runs)",
            cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
            "% of one core",
            "n/a",
        );
    }
    let last_finished = results.iter().filter_map(|(_, _, finished)| finished.map(|at| at.millis())).max();
    report.figure(
        &format!("p1 control plane: create + deploy {count} virtual servers (qcow2 overlay, {concurrency} in flight), until the client saw every operation succeed"),
        wall.as_secs_f64(),
        "s",
        "< 2 for 100",
    );
    if let Some(last) = last_finished {
        report.figure(
            &format!("p1 control plane: first request to the last deploy's end on the server ({count}, qcow2 overlay)"),
            between(first_request, last).as_secs_f64(),
            "s",
            "< 2 for 100",
        );
    }
    let creates: Vec<Duration> = results.iter().map(|(create, _, _)| *create).collect();
    let deploys: Vec<Duration> = results.iter().map(|(_, deploy, _)| *deploy).collect();
    let creates = Latencies::new(&creates);
    let deploys = Latencies::new(&deploys);
    report.figure("p1 control plane: create operation p50 (under load)", creates.percentile(50.0), "ms", "n/a");
    report.figure("p1 control plane: create operation p99 (under load)", creates.percentile(99.0), "ms", "n/a");
    report.figure(
        "p1 control plane: deploy operation p50 (qcow2 overlay, under load)",
        deploys.percentile(50.0),
        "ms",
        "n/a",
    );
    report.figure(
        "p1 control plane: deploy operation p99 (qcow2 overlay, under load)",
        deploys.percentile(99.0),
        "ms",
        "n/a",
    );
    report.figure(
        &format!("p1 control plane: rate ({count} guests, qcow2 overlay)"),
        count as f64 / wall.as_secs_f64(),
        "guests/s",
        ">= 50 (100 in < 2 s)",
    );
    let deleting = Instant::now();
    delete_all(api, &names, concurrency).await?;
    report.figure(
        &format!("p1 control plane: delete {count} virtual servers ({concurrency} in flight)"),
        deleting.elapsed().as_secs_f64(),
        "s",
        "n/a",
    );
    Ok(())
}

/// An operation's time on the server, from its creation to its end.
fn operation_duration(operation: &Operation) -> Duration {
    let finished = operation.finished_at.map(|at| at.millis()).unwrap_or(operation.created_at.millis());
    between(operation.created_at.millis(), finished)
}

/// Deletes the named virtual servers, `concurrency` at a time, waiting for every delete to succeed.
async fn delete_all(api: &ProvisionApi, names: &[String], concurrency: usize) -> anyhow::Result<()> {
    concurrently(api, names, concurrency, |api, name| async move {
        let operation = api.virtual_server_delete(&name).await?;
        api.wait_succeeded(&operation, OPERATION_TIMEOUT).await.map(drop)
    })
    .await
    .map(drop)
}

/// Runs `task` for every name, at most `concurrency` at once; returns the results in the names' order, or the
/// first error (naming the virtual server).
async fn concurrently<T, F, Fut>(
    api: &ProvisionApi,
    names: &[String],
    concurrency: usize,
    task: F,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(ProvisionApi, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, name) in names.iter().enumerate() {
        let permits = permits.clone();
        let future = task(api.clone(), name.clone());
        let name = name.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.context("the semaphore closed")?;
            future.await.with_context(|| format!("virtual server {name}")).map(|value| (index, value))
        });
    }
    let mut results: Vec<Option<T>> = (0..names.len()).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (index, value) = joined.context("a provisioning task panicked")??;
        results[index] = Some(value);
    }
    results.into_iter().map(|value| value.context("a provisioning task gave no result")).collect()
}

/// How many full copies of an image of `bytes` fit on the data directory's disk (at most `wanted`), noting it
/// in the report when fewer than wanted fit.
fn fit_copies(data: &TempDir, bytes: u64, wanted: usize, report: &mut Report) -> usize {
    let Some(free) = free_bytes(data.path()) else { return wanted };
    let fitting = (free.saturating_sub(FREE_SPACE_MARGIN) / bytes.max(1)) as usize;
    if fitting >= wanted {
        return wanted;
    }
    let count = fitting.max(1);
    report.note(format!(
        "only {count} full copies of the {} MiB image fit in the {} MiB free on the disk (keeping {} MiB free); \
         the batch has {count} guests instead of {wanted}",
        bytes >> 20,
        free >> 20,
        FREE_SPACE_MARGIN >> 20
    ));
    count
}

/// Free bytes for an unprivileged writer on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let text = std::ffi::CString::new(path.to_str()?).ok()?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `text` is a NUL-terminated path and `stats` a valid, writable statvfs for the duration of the call.
    if unsafe { libc::statvfs(text.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    Some(stats.f_bavail as u64 * stats.f_frsize as u64)
}

/// Parses `--image-sizes-mib` (comma-separated MiB, may be empty for the starter image alone).
fn parse_sizes(text: &str) -> anyhow::Result<Vec<u64>> {
    let mut sizes = Vec::new();
    for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let size: u64 =
            part.parse().with_context(|| format!("--image-sizes-mib: {part:?} is not a whole number of MiB"))?;
        if !(1..=MAX_IMAGE_MIB).contains(&size) {
            bail!("--image-sizes-mib: {size} MiB is outside 1 to {MAX_IMAGE_MIB}");
        }
        sizes.push(size);
    }
    sizes.sort_unstable();
    sizes.dedup();
    Ok(sizes)
}

/// Writes a raw file of `size_mib` MiB of random data and converts it to qcow2 (every cluster allocated);
/// returns the qcow2 file.
async fn random_qcow2(directory: &Path, size_mib: u64) -> anyhow::Result<PathBuf> {
    let raw = directory.join(format!("random-{size_mib}m.raw"));
    let qcow2 = directory.join(format!("random-{size_mib}m.qcow2"));
    let (raw_path, qcow2_path) = (raw.clone(), qcow2.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut source = std::fs::File::open("/dev/urandom").context("cannot open /dev/urandom")?;
        let mut file =
            std::fs::File::create(&raw_path).with_context(|| format!("cannot create {}", raw_path.display()))?;
        let copied = std::io::copy(&mut std::io::Read::take(&mut source, size_mib << 20), &mut file)
            .with_context(|| format!("cannot write {}", raw_path.display()))?;
        if copied != size_mib << 20 {
            bail!("wrote {copied} bytes of random data to {}, wanted {}", raw_path.display(), size_mib << 20);
        }
        let status = std::process::Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw_path)
            .arg(&qcow2_path)
            .status()
            .context("cannot run qemu-img (package qemu-utils)")?;
        if !status.success() {
            bail!("qemu-img convert {} -> {} failed ({status})", raw_path.display(), qcow2_path.display());
        }
        std::fs::remove_file(&raw_path).with_context(|| format!("cannot remove {}", raw_path.display()))
    })
    .await
    .context("the random-image writer panicked")??;
    Ok(qcow2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sizes_parse_sort_and_reject_nonsense() {
        assert_eq!(parse_sizes("1024, 256,256").unwrap(), vec![256, 1024]);
        assert_eq!(parse_sizes("").unwrap(), Vec::<u64>::new());
        assert!(parse_sizes("0").unwrap_err().to_string().contains("outside"));
        assert!(parse_sizes("1G").unwrap_err().to_string().contains("\"1G\""));
    }

    #[test]
    fn copy_rate_is_read_from_the_step_detail() {
        assert_eq!(copy_rate("full copy, 1024 MiB at 512 MiB/s"), Some(512.0));
        assert_eq!(copy_rate("copy-on-write overlay"), None);
    }
}
