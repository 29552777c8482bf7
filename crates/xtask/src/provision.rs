//! The provisioning API as the P1 and P3 benchmarks drive it: networks, server and OS templates, virtual servers
//! and the operations (sagas) behind them, plus what those benchmarks share: the starter images of
//! `cargo xtask images`, wall-clock arithmetic between the client's and the server's time stamps (both come from
//! this machine's clock, in milliseconds), and a guard that removes what a failed run would leave behind (QEMU
//! guests survive their server, and the server's network namespace outlives it).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use steward_types::api::Timestamp;
use steward_types::api::operations::{Operation, OperationAccepted, OperationState};
use steward_types::api::os_templates::OsTemplate;

use crate::Paths;
use crate::server::{Server, http_client};

/// How long one operation may run before the benchmark gives up on it (a full copy of a large image, a boot).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(600);

/// A client of `/api/v1` for provisioning; every failed request becomes an error naming the request and the
/// server's answer.
#[derive(Clone)]
pub struct ProvisionApi {
    http: reqwest::Client,
    api_url: String,
    token: String,
}

impl ProvisionApi {
    /// A client with up to `connections` idle keep-alive connections to the server.
    pub fn new(server: &Server, connections: usize) -> anyhow::Result<Self> {
        Ok(Self { http: http_client(connections)?, api_url: server.api_url.clone(), token: server.admin_token.clone() })
    }

    /// Sends one request; returns the status and the body as JSON (`null` for an empty body).
    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<(StatusCode, Value)> {
        let url = format!("{}/api/v1{path}", self.api_url);
        let mut request = self.http.request(method.clone(), &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("{method} {path}: no answer"))?;
        let status = response.status();
        let bytes = response.bytes().await.with_context(|| format!("{method} {path}: cannot read the answer"))?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Ok((status, value))
    }

    /// Sends one request that must succeed; returns the answer's body.
    async fn expect(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, value) = self.send(method.clone(), path, body).await?;
        if !status.is_success() {
            bail!("{method} {path} failed: {status} {value}");
        }
        Ok(value)
    }

    /// Sends a request answered by `202 Accepted` with an operation; returns the operation.
    async fn accepted(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Operation> {
        let value = self.expect(method.clone(), path, body).await?;
        let accepted: OperationAccepted = serde_json::from_value(value)
            .with_context(|| format!("{method} {path}: the answer is not an operation"))?;
        Ok(accepted.operation)
    }

    pub async fn network_create(&self, name: &str, subnet: &str) -> anyhow::Result<()> {
        let body = json!({ "name": name, "host": "local", "subnet": subnet });
        self.expect(Method::POST, "/networks", Some(&body)).await.map(drop)
    }

    pub async fn network_delete(&self, name: &str) -> anyhow::Result<()> {
        self.expect(Method::DELETE, &format!("/networks/{name}"), None).await.map(drop)
    }

    /// A server template with one boot disk of `disk_bytes` and one NIC on each of `networks`.
    pub async fn server_template_create(
        &self,
        name: &str,
        arch: &str,
        memory_mib: u64,
        disk_bytes: u64,
        networks: &[&str],
    ) -> anyhow::Result<()> {
        let body = json!({
            "name": name, "arch": arch, "cpus": 1, "memory_mib": memory_mib,
            "disks": [disk_bytes], "nics": networks,
        });
        self.expect(Method::POST, "/server-templates", Some(&body)).await.map(drop)
    }

    pub async fn server_template_delete(&self, name: &str) -> anyhow::Result<()> {
        self.expect(Method::DELETE, &format!("/server-templates/{name}"), None).await.map(drop)
    }

    /// Imports `disk` as an OS template booted directly with the starter image's kernel, initrd and command line,
    /// waits until the import succeeded and returns the template (with its disk's virtual size).
    pub async fn os_template_import(
        &self,
        name: &str,
        disk: &Path,
        image: &StarterImage,
    ) -> anyhow::Result<OsTemplate> {
        let body = json!({
            "name": name, "host": "local", "file": path_text(disk)?, "arch": image.arch, "boot": "direct",
            "kernel": path_text(&image.kernel)?, "initrd": path_text(&image.initrd)?, "cmdline": image.cmdline,
            "personalization": image.personalization, "agent": image.agent,
        });
        let operation = self.accepted(Method::POST, "/os-templates", Some(&body)).await?;
        self.wait_succeeded(&operation, OPERATION_TIMEOUT).await?;
        let value = self.expect(Method::GET, &format!("/os-templates/{name}"), None).await?;
        serde_json::from_value(value).with_context(|| format!("OS template {name}: unexpected answer"))
    }

    pub async fn os_template_delete(&self, name: &str) -> anyhow::Result<()> {
        self.expect(Method::DELETE, &format!("/os-templates/{name}"), None).await.map(drop)
    }

    /// `POST /virtual-servers`: returns the create operation (not waited for).
    pub async fn virtual_server_create(&self, name: &str, server_template: &str) -> anyhow::Result<Operation> {
        let body = json!({ "name": name, "host": "local", "server_template": server_template });
        self.accepted(Method::POST, "/virtual-servers", Some(&body)).await
    }

    /// `POST /virtual-servers/{name}/deploy`: returns the deploy operation and when the request was sent (Unix
    /// milliseconds, this machine's clock, the same clock the server stamps steps with).
    pub async fn virtual_server_deploy(&self, name: &str, deploy: &Deploy<'_>) -> anyhow::Result<(Operation, i64)> {
        let mut body = json!({
            "os_template": deploy.os_template, "hostname": name, "clone": deploy.clone.as_str(), "start": deploy.start,
        });
        if let Some(address) = deploy.address {
            body["nics"] = json!([{ "address": address }]);
        }
        let sent = unix_millis_now();
        let operation = self.accepted(Method::POST, &format!("/virtual-servers/{name}/deploy"), Some(&body)).await?;
        Ok((operation, sent))
    }

    /// `POST /virtual-servers/{name}/stop` with `force`: powers off at once; waits for the operation.
    pub async fn virtual_server_stop(&self, name: &str) -> anyhow::Result<()> {
        let body = json!({ "force": true });
        let operation = self.accepted(Method::POST, &format!("/virtual-servers/{name}/stop"), Some(&body)).await?;
        self.wait_succeeded(&operation, OPERATION_TIMEOUT).await.map(drop)
    }

    /// `DELETE /virtual-servers/{name}`: returns the delete operation (not waited for).
    pub async fn virtual_server_delete(&self, name: &str) -> anyhow::Result<Operation> {
        self.accepted(Method::DELETE, &format!("/virtual-servers/{name}"), None).await
    }

    pub async fn operation(&self, operation: &Operation) -> anyhow::Result<Operation> {
        let value = self.expect(Method::GET, &format!("/operations/{}", operation.id), None).await?;
        serde_json::from_value(value).with_context(|| format!("operation {}: unexpected answer", operation.id))
    }

    /// Polls an operation until it is finished (first after 10 ms, then backing off to every 100 ms, so that
    /// many waiting clients do not load the server); an operation that did not succeed is an error naming its
    /// kind, target and error.
    pub async fn wait_succeeded(&self, operation: &Operation, timeout: Duration) -> anyhow::Result<Operation> {
        let started = Instant::now();
        let mut interval = Duration::from_millis(10);
        loop {
            let current = self.operation(operation).await?;
            if current.state.is_finished() {
                if current.state != OperationState::Succeeded {
                    bail!("{}", describe_failure(&current));
                }
                return Ok(current);
            }
            if started.elapsed() > timeout {
                bail!(
                    "operation {} ({} of {}) still {} after {timeout:?}",
                    current.id,
                    current.kind,
                    current.target,
                    current.state.as_str()
                );
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 3 / 2).min(Duration::from_millis(100));
        }
    }

    /// `POST /complexes` with a definition document; the complex is on host `local`.
    pub async fn complex_create(&self, name: &str, definition: &Value) -> anyhow::Result<()> {
        let body = json!({ "name": name, "host": "local", "definition": definition });
        self.expect(Method::POST, "/complexes", Some(&body)).await.map(drop)
    }

    pub async fn complex_delete(&self, name: &str) -> anyhow::Result<()> {
        self.expect(Method::DELETE, &format!("/complexes/{name}"), None).await.map(drop)
    }

    /// `POST /complexes/{name}/add-members`, members defined but not started; returns the parent operation and
    /// when the request was sent (Unix milliseconds).
    pub async fn complex_add_members(
        &self,
        name: &str,
        tier: &str,
        count: usize,
        clone: CloneMethod,
        parallel: usize,
    ) -> anyhow::Result<(Operation, i64)> {
        let body =
            json!({ "tier": tier, "count": count, "start": false, "clone": clone.as_str(), "parallel": parallel });
        let sent = unix_millis_now();
        let operation = self.accepted(Method::POST, &format!("/complexes/{name}/add-members"), Some(&body)).await?;
        Ok((operation, sent))
    }

    pub async fn complex_remove_members(&self, name: &str, members: &[String]) -> anyhow::Result<Operation> {
        let body = json!({ "members": members });
        self.accepted(Method::POST, &format!("/complexes/{name}/remove-members"), Some(&body)).await
    }

    /// The last `bytes` of a virtual server's console.
    pub async fn console(&self, name: &str, bytes: usize) -> anyhow::Result<String> {
        let value = self.expect(Method::GET, &format!("/virtual-servers/{name}/console?bytes={bytes}"), None).await?;
        value["text"].as_str().map(str::to_string).with_context(|| format!("console of {name}: no text in {value}"))
    }

    /// The state of a managed system (`online` or `offline`), or `None` when there is no such system.
    pub async fn system_state(&self, name: &str) -> anyhow::Result<Option<String>> {
        let (status, value) = self.send(Method::GET, &format!("/systems/{name}"), None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            bail!("GET /systems/{name} failed: {status} {value}");
        }
        value["state"].as_str().map(|state| Some(state.to_string())).with_context(|| format!("system {name}: no state"))
    }

    /// The process ID of a running virtual server's QEMU, from the host's guest list.
    pub async fn guest_pid(&self, name: &str) -> anyhow::Result<Option<u32>> {
        let value = self.expect(Method::GET, "/hosts/local/guests?limit=1000", None).await?;
        let items = value["items"].as_array().context("GET /hosts/local/guests: no items")?;
        Ok(items
            .iter()
            .find(|guest| guest["virtual_server"].as_str() == Some(name) || guest["name"].as_str() == Some(name))
            .and_then(|guest| guest["pid"].as_u64())
            .and_then(|pid| u32::try_from(pid).ok()))
    }

    /// The `name` of every item of a list endpoint (for example `/virtual-servers`), all pages.
    pub async fn names(&self, path: &str) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..1000 {
            let query = match &after {
                Some(after) => format!("{path}?limit=1000&after={after}"),
                None => format!("{path}?limit=1000"),
            };
            let page = self.expect(Method::GET, &query, None).await?;
            let items = page["items"].as_array().with_context(|| format!("GET {path}: no items"))?;
            names.extend(items.iter().filter_map(|item| item["name"].as_str().map(str::to_string)));
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => return Ok(names),
            }
        }
        bail!("GET {path}: more than 1000 pages")
    }
}

/// How a deploy clones the OS template's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneMethod {
    /// A qcow2 copy-on-write overlay on the template's image.
    Overlay,
    /// A full copy of the template's image.
    Copy,
}

impl CloneMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CloneMethod::Overlay => "overlay",
            CloneMethod::Copy => "copy",
        }
    }

    /// How figures name the storage.
    pub fn storage(self) -> &'static str {
        match self {
            CloneMethod::Overlay => "qcow2 overlay",
            CloneMethod::Copy => "full copy",
        }
    }
}

/// What one deploy asks for.
pub struct Deploy<'a> {
    pub os_template: &'a str,
    pub clone: CloneMethod,
    pub start: bool,
    /// A static address (CIDR) for the first NIC.
    pub address: Option<&'a str>,
}

/// Why an operation did not succeed: its kind, target, state, error and the step that failed.
pub fn describe_failure(operation: &Operation) -> String {
    let failed_step = operation
        .steps
        .iter()
        .find(|step| step.state == steward_types::api::operations::StepState::Failed)
        .map(|step| format!("; step {} failed: {}", step.name, step.detail.as_deref().unwrap_or("no detail")))
        .unwrap_or_default();
    let error = operation.error.as_ref().map(|error| error.message.clone()).unwrap_or_else(|| "no error".into());
    format!(
        "operation {} ({} of {}) ended {}: {error}{failed_step}",
        operation.id,
        operation.kind,
        operation.target,
        operation.state.as_str()
    )
}

/// When the named step of an operation finished (Unix milliseconds), if it did.
pub fn step_finished(operation: &Operation, step: &str) -> Option<i64> {
    operation.steps.iter().find(|candidate| candidate.name == step)?.finished_at.map(Timestamp::millis)
}

/// The detail the named step reported.
pub fn step_detail<'a>(operation: &'a Operation, step: &str) -> Option<&'a str> {
    operation.steps.iter().find(|candidate| candidate.name == step)?.detail.as_deref()
}

/// Milliseconds since the Unix epoch now, on this machine's clock.
pub fn unix_millis_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_millis() as i64).unwrap_or(0)
}

/// The time from `from` to `to` (both Unix milliseconds); zero if `to` is earlier (the clocks are the same
/// clock, so only rounding to milliseconds can make it so).
pub fn between(from: i64, to: i64) -> Duration {
    Duration::from_millis(u64::try_from(to - from).unwrap_or(0))
}

/// When a process started, in Unix milliseconds: `starttime` of `/proc/PID/stat` counts clock ticks (10 ms) on
/// the boot-time clock, which is turned into wall-clock time by reading both clocks now (`btime` of `/proc/stat`
/// is rounded to whole seconds, too coarse for a boot of a few seconds).
pub fn process_start_unix_millis(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    // Field 22 of the whole line; `rest` starts at field 3.
    let start_ticks: i64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as i64 } else { 100 };
    let mut boot_clock = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `boot_clock` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut boot_clock) } != 0 {
        return None;
    }
    let now_unix = unix_millis_now();
    let now_since_boot = boot_clock.tv_sec * 1000 + boot_clock.tv_nsec / 1_000_000;
    let start_since_boot = start_ticks * 1000 / ticks;
    Some(now_unix - (now_since_boot - start_since_boot))
}

fn path_text(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("{} is not valid UTF-8", path.display()))
}

/// A starter image built by `cargo xtask images`, as its `template.json` describes it (paths made absolute).
pub struct StarterImage {
    pub arch: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub disk: PathBuf,
    pub cmdline: String,
    pub personalization: String,
    pub agent: bool,
}

#[derive(Deserialize)]
struct TemplateJson {
    arch: String,
    boot: String,
    kernel: Option<String>,
    initrd: Option<String>,
    cmdline: Option<String>,
    disk: String,
    personalization: String,
    agent: bool,
}

impl StarterImage {
    /// Reads `target/images/<arch>/template.json`; the error says how to build the image when it is missing.
    pub fn load(paths: &Paths, arch: &str) -> anyhow::Result<Self> {
        let target = paths.bench_dir.parent().context("the bench directory has no parent")?;
        let directory = target.join("images").join(arch);
        let description = directory.join("template.json");
        let text = std::fs::read_to_string(&description).with_context(|| {
            format!(
                "cannot read {}; build the starter image with `cargo xtask images --arch {arch}`",
                description.display()
            )
        })?;
        let template: TemplateJson = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a template description", description.display()))?;
        if template.arch != arch {
            bail!("{} describes an {} image, not {arch}", description.display(), template.arch);
        }
        if template.boot != "direct" {
            bail!("{}: boot {:?}; the benchmarks need a direct-boot image", description.display(), template.boot);
        }
        let file = |field: &str, name: Option<String>| -> anyhow::Result<PathBuf> {
            let name = name.with_context(|| format!("{} has no {field}", description.display()))?;
            let path = directory.join(name);
            if !path.is_file() {
                bail!(
                    "{} (the image's {field}) is missing; rebuild with `cargo xtask images --arch {arch}`",
                    path.display()
                );
            }
            Ok(path)
        };
        Ok(Self {
            kernel: file("kernel", template.kernel)?,
            initrd: file("initrd", template.initrd)?,
            disk: file("disk", Some(template.disk))?,
            arch: template.arch,
            cmdline: template.cmdline.unwrap_or_default(),
            personalization: template.personalization,
            agent: template.agent,
        })
    }
}

/// Removes what a benchmark's server leaves when it is killed: QEMU processes started from its data directory
/// (they run detached and survive the server) and its network namespace. Runs on drop, so also on error; drop
/// it after the server.
pub struct LeftoverGuard {
    data_dir: PathBuf,
}

impl LeftoverGuard {
    pub fn new(data_dir: &Path) -> Self {
        Self { data_dir: std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()) }
    }

    /// The namespace of the server's networks, as it wrote it in `DATA/server.json`.
    fn namespace(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.data_dir.join("server.json")).ok()?;
        let descriptor: serde_json::Value = serde_json::from_str(&text).ok()?;
        descriptor["network_namespace"].as_str().map(str::to_string)
    }

    /// Process IDs of QEMU guests whose command line names a file in this data directory.
    pub fn guest_processes(&self) -> Vec<u32> {
        let marker = self.data_dir.to_string_lossy().into_owned();
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
                let arguments: Vec<String> =
                    cmdline.split(|byte| *byte == 0).map(|part| String::from_utf8_lossy(part).into_owned()).collect();
                arguments.first().is_some_and(|program| program.contains("qemu-system"))
                    && arguments.iter().any(|argument| argument.contains(&marker))
            })
            .collect()
    }

    /// Whether the server's network namespace still exists.
    pub fn namespace_exists(&self) -> bool {
        self.namespace().is_some_and(|namespace| Path::new("/run/netns").join(namespace).exists())
    }

    /// Regular files left under the local host's directory of the data directory (disks, logs, templates).
    pub fn host_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut pending = vec![self.data_dir.join("hosts")];
        while let Some(directory) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&directory) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                match entry.file_type() {
                    Ok(kind) if kind.is_dir() => pending.push(path),
                    Ok(_) => files.push(path),
                    Err(_) => {}
                }
            }
        }
        files.sort();
        files
    }
}

impl Drop for LeftoverGuard {
    fn drop(&mut self) {
        for pid in self.guest_processes() {
            eprintln!("killing guest QEMU {pid} left by the benchmark's server");
            // SAFETY: kill has no memory-safety preconditions; the process is a QEMU started from this
            // benchmark's own data directory.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        if let Some(namespace) = self.namespace().filter(|_| self.namespace_exists()) {
            let _ = std::process::Command::new("ip").args(["netns", "delete", &namespace]).status();
        }
    }
}
