//! P1 for server complexes: the control-plane time to add 100 members to a complex tier (defined, not booted),
//! with copy-on-write boot disks and then with full copies, in one run against one server. Each member gets a
//! MAC and an address from the tier's pool, a config drive with its hostname, address and a script, and a guest
//! definition; nothing boots. The interval runs from the add-members request (this machine's clock) to the end
//! of the parent operation on the server (the same clock), and the client's view of it.

use std::time::Instant;

use anyhow::bail;
use serde_json::json;

use crate::provision::{CloneMethod, LeftoverGuard, OPERATION_TIMEOUT, ProvisionApi, StarterImage, between};
use crate::report::Report;
use crate::server::{Server, TempDir};
use crate::{BenchArgs, Paths};

const NETWORK: &str = "p1cx";
const COMPLEX: &str = "p1";
/// Members the server clones at once (the request's `parallel`).
const PARALLEL: usize = 8;

pub async fn run(paths: &Paths, args: &BenchArgs) -> anyhow::Result<()> {
    let count = args.control_plane_guests;
    if !(1..=200).contains(&count) {
        bail!("--control-plane-guests {count}: must be 1 to 200 (the pool holds 240 addresses)");
    }
    println!("== p1-complex: add {count} members (defined, not booted), overlay and then full copies");
    let mut report = Report::new("p1-complex");
    report.parameter("members", count);
    report.parameter("parallel", PARALLEL);
    report.note(
        "from the add-members request to the parent operation's end on the server; every member has one NIC with \
         an address from the tier's pool, a config drive with one script, a guest definition; nothing boots",
    );
    let starter = StarterImage::load(paths, "x86_64")?;
    let data = TempDir::new(paths, "p1-complex")?;
    let guard = LeftoverGuard::new(data.path());
    let server = Server::start(paths, data.path()).await?;
    let api = ProvisionApi::new(&server, 16)?;
    let template = api.os_template_import("p1-starter", &starter.disk, &starter).await?;
    api.network_create(NETWORK, "10.80.0.0/24").await?;
    let disk_bytes = template.disk_size_bytes.div_ceil(1 << 20) << 20;
    api.server_template_create("p1-member", "x86_64", 128, disk_bytes, &[]).await?;
    report.parameter("boot_disk_bytes", disk_bytes);
    let tier = |name: &str| {
        json!({
            "name": name, "server_template": "p1-member", "os_template": "p1-starter", "naming": format!("{name}-{{n}}"),
            "networks": [{ "network": NETWORK, "pool": "10.80.0.10-10.80.0.250", "gateway": "10.80.0.1" }],
            "scripts": [{ "name": "motd", "body": "#!/bin/sh\necho \"$STEWARD_TIER $STEWARD_MEMBER_INDEX\" > /etc/motd\n" }],
        })
    };
    let definition = json!({ "reconcile_interval_seconds": 0, "tiers": [tier("cow"), tier("full")] });
    api.complex_create(COMPLEX, &definition).await?;

    let mut seconds = Vec::new();
    for (tier, method) in [("cow", CloneMethod::Overlay), ("full", CloneMethod::Copy)] {
        eprintln!("adding {count} members with {}", method.storage());
        let cpu_before = server.cpu_time();
        let started = Instant::now();
        let (operation, sent) = api.complex_add_members(COMPLEX, tier, count, method, PARALLEL).await?;
        let finished = api.wait_succeeded(&operation, OPERATION_TIMEOUT).await?;
        let client = started.elapsed();
        let on_server = finished.finished_at.map(|at| between(sent, at.millis())).unwrap_or(client);
        let storage = method.storage();
        report.figure(
            &format!("p1 complex: add {count} members, {storage}, request to operation end on the server"),
            on_server.as_secs_f64(),
            "s",
            "< 2 for 100 (copy-on-write)",
        );
        report.figure(
            &format!("p1 complex: add {count} members, {storage}, until the client saw it succeed"),
            client.as_secs_f64(),
            "s",
            "n/a",
        );
        report.figure(
            &format!("p1 complex: rate, {storage}"),
            count as f64 / on_server.as_secs_f64(),
            "members/s",
            ">= 50 (copy-on-write)",
        );
        if let Some(cpu) = server.cpu_time().zip(cpu_before).map(|(after, before)| after.saturating_sub(before)) {
            report.figure(
                &format!("p1 complex: server CPU, {storage} (its own process, not the qemu-img it runs)"),
                cpu.as_secs_f64() / client.as_secs_f64() * 100.0,
                "% of one core",
                "n/a",
            );
        }
        seconds.push(on_server.as_secs_f64());
        let members: Vec<String> = (1..=count).map(|index| format!("{tier}-{index}")).collect();
        let removed = Instant::now();
        let operation = api.complex_remove_members(COMPLEX, &members).await?;
        api.wait_succeeded(&operation, OPERATION_TIMEOUT).await?;
        report.figure(
            &format!("p1 complex: remove {count} members ({storage})"),
            removed.elapsed().as_secs_f64(),
            "s",
            "n/a",
        );
    }
    if let [overlay, copy] = seconds[..] {
        report.figure("p1 complex: full copies / copy-on-write, add-members time", copy / overlay, "ratio", "n/a");
    }

    api.complex_delete(COMPLEX).await?;
    api.os_template_delete("p1-starter").await?;
    api.server_template_delete("p1-member").await?;
    api.network_delete(NETWORK).await?;
    let mut leftovers = Vec::new();
    for list in ["/virtual-servers", "/systems"] {
        leftovers.extend(api.names(list).await?.into_iter().map(|name| format!("{list}/{name}")));
    }
    leftovers.extend(guard.guest_processes().into_iter().map(|pid| format!("QEMU process {pid}")));
    leftovers.extend(guard.host_files().into_iter().map(|path| path.display().to_string()));
    if !leftovers.is_empty() {
        bail!("p1-complex left behind: {}", leftovers.join(", "));
    }
    drop(server);
    drop(guard);
    report.write(paths)
}
