//! A `steward serve` of the benchmark's own, on loopback with a temporary data directory, killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::Paths;

/// How long a starting server may take to write `server.json`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A directory under `target/bench/tmp/`, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(paths: &Paths, label: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let path = paths.bench_dir.join("tmp").join(format!("{label}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[derive(Deserialize)]
struct Descriptor {
    api_url: String,
    gateway_address: SocketAddr,
    pid: u32,
}

/// A running `steward serve --listen 127.0.0.1:0`; SIGKILLed when dropped.
pub struct Server {
    binary: PathBuf,
    data_dir: PathBuf,
    child: Option<Child>,
    pub api_url: String,
    pub gateway: SocketAddr,
    pub admin_token: String,
}

impl Server {
    pub async fn start(paths: &Paths, data_dir: &Path) -> anyhow::Result<Self> {
        let mut server = Self {
            binary: paths.steward.clone(),
            data_dir: data_dir.to_path_buf(),
            child: None,
            api_url: String::new(),
            gateway: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token: String::new(),
        };
        server.spawn().await?;
        Ok(server)
    }

    /// Starts the server on the same data directory again (its ports may differ: rereads `server.json`).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let descriptor_path = self.data_dir.join("server.json");
        let _ = std::fs::remove_file(&descriptor_path);
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create {}", self.data_dir.display()))?;
        let log_path = self.data_dir.join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot share the server log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let pid = child.id();
        self.child = Some(child);
        let started = Instant::now();
        let descriptor = loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("steward serve exited during start ({status}); log:\n{}", log_tail(&log_path));
            }
            if let Ok(text) = std::fs::read_to_string(&descriptor_path)
                && let Ok(descriptor) = serde_json::from_str::<Descriptor>(&text)
                && descriptor.pid == pid
            {
                break descriptor;
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("steward serve did not write {} within {START_TIMEOUT:?}", descriptor_path.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if !descriptor.gateway_address.ip().is_loopback() || !descriptor.api_url.starts_with("http://127.") {
            bail!(
                "the server is not on loopback ({} / {}); refusing to send traffic",
                descriptor.api_url,
                descriptor.gateway_address
            );
        }
        self.api_url = descriptor.api_url;
        self.gateway = descriptor.gateway_address;
        let token_path = self.data_dir.join("admin-token");
        self.admin_token = std::fs::read_to_string(&token_path)
            .with_context(|| format!("cannot read {}", token_path.display()))?
            .trim()
            .to_string();
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// CPU time (user + system) the server has used so far, from `/proc/PID/stat`.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(self.pid()?)
    }

    /// Resident set size of the server now, from `/proc/PID/status` (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status_field(&status, "VmRSS:")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// utime + stime of a process, from fields 14 and 15 of `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some(Duration::from_secs_f64((utime + stime) as f64 / ticks))
}

/// The first number after `field` in a `/proc/PID/status`-style text.
pub fn status_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(field)).and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// An HTTP client for the admin API with keep-alive, and the few calls the benchmarks need.
#[derive(Clone)]
pub struct Admin {
    pub http: reqwest::Client,
    pub api_url: String,
    pub token: String,
}

impl Admin {
    pub fn new(server: &Server) -> anyhow::Result<Self> {
        let http = http_client(1)?;
        Ok(Self { http, api_url: server.api_url.clone(), token: server.admin_token.clone() })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.api_url)
    }

    /// Creates an enrollment token good for `uses` enrollments and returns its secret.
    pub async fn enrollment_token(&self, uses: usize) -> anyhow::Result<String> {
        let response = self
            .http
            .post(self.url("/enrollment-tokens"))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "uses": uses, "description": "cargo xtask bench" }))
            .send()
            .await
            .context("cannot create an enrollment token")?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.context("cannot read the enrollment token")?;
        if !status.is_success() {
            bail!("creating an enrollment token failed: {status} {body}");
        }
        body["token"].as_str().map(str::to_string).context("the enrollment token answer has no token")
    }

    /// One page of `GET /api/v1/systems` with the given query parameters.
    pub async fn systems_page(
        &self,
        query: &[(&str, String)],
    ) -> anyhow::Result<steward_types::api::Page<steward_types::api::systems::SystemSummary>> {
        self.http
            .get(self.url("/systems"))
            .bearer_auth(&self.token)
            .query(query)
            .send()
            .await
            .context("cannot list systems")?
            .error_for_status()
            .context("listing systems failed")?
            .json()
            .await
            .context("cannot read a systems page")
    }

    /// Pages through `/systems` (1000 at a time), optionally only systems in `state`; returns the systems' names.
    pub async fn system_names(&self, state: Option<&str>) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..1000 {
            let mut query = vec![("limit", "1000".to_string())];
            if let Some(state) = state {
                query.push(("state", state.to_string()));
            }
            if let Some(after) = &after {
                query.push(("after", after.clone()));
            }
            let page = self.systems_page(&query).await?;
            names.extend(page.items.into_iter().map(|system| system.name));
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(names),
            }
        }
        bail!("more than 1000 pages of systems")
    }
}

/// A keep-alive HTTP client for loopback with a bounded timeout.
pub fn http_client(idle_connections: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(idle_connections)
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")
}
