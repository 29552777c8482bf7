//! Test support: a real `steward serve` process on port 0 with a fresh data directory, the real `steward`
//! CLI and the real `steward-agent` binary, plus an HTTP client for the API.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `steward` binary under test.
pub fn steward_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_steward"))
}

/// The `steward-agent` binary, built next to `steward` (the test command builds every binary first).
pub fn agent_binary() -> PathBuf {
    let path = steward_binary().with_file_name("steward-agent");
    assert!(path.exists(), "{} is missing: build it first with `cargo build --workspace --bins`", path.display());
    path
}

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub data_dir: PathBuf,
    pub api_url: String,
    pub gateway_address: String,
    pub token: String,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server with a fresh data directory on loopback port 0.
    pub fn start() -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Server::start_in(&data_dir, &[]);
        server._temp = Some(temp);
        server
    }

    /// Starts a server with a fresh data directory and extra environment (for example fault injection).
    pub fn start_with_env(env: &[(&str, &str)]) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Server::start_in_env(&data_dir, &[], env);
        server._temp = Some(temp);
        server
    }

    /// Starts a server on an existing data directory (to test restarts), with extra `serve` arguments.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_in_env(data_dir, extra, &[])
    }

    pub fn start_in_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let _ = std::fs::remove_file(data_dir.join("server.json"));
        let mut command = Command::new(steward_binary());
        command.arg("serve").arg("--data-dir").arg(data_dir);
        if !extra.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command
            .args(extra)
            .env("STEWARD_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file(data_dir, "server")));
        let child = command.spawn().expect("start steward serve");
        Server::attach(child, data_dir)
    }

    /// Waits for a started server process to write its descriptor.
    pub fn attach(mut child: Child, data_dir: &Path) -> Server {
        let descriptor = data_dir.join("server.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&descriptor)
                && text.ends_with('\n')
            {
                break text;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("steward serve exited with {status}: {}", read_log(data_dir, "server"));
            }
            assert!(Instant::now() < deadline, "steward serve did not start: {}", read_log(data_dir, "server"));
            std::thread::sleep(Duration::from_millis(20));
        };
        let value: serde_json::Value = serde_json::from_str(&text).expect("server.json");
        let token = std::fs::read_to_string(data_dir.join("admin-token")).expect("admin-token").trim().to_string();
        Server {
            child,
            data_dir: data_dir.to_path_buf(),
            api_url: value["api_url"].as_str().expect("api_url").to_string(),
            gateway_address: value["gateway_address"].as_str().expect("gateway_address").to_string(),
            token,
            _temp: None,
        }
    }

    /// Runs the CLI against this server as the administrator.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(&self.token, args)
    }

    pub fn cli_as(&self, token: &str, args: &[&str]) -> Output {
        Command::new(steward_binary())
            .args(args)
            .env("STEWARD_SERVER", &self.api_url)
            .env("STEWARD_TOKEN", token)
            .env_remove("STEWARD_CA_FILE")
            .output()
            .expect("run steward")
    }

    /// Runs the CLI and returns its stdout, failing the test if it failed.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(output.status.success(), "steward {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("utf-8")
    }

    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.cli_ok(&all)).expect("JSON output")
    }

    pub fn api(&self) -> Api {
        Api { base: format!("{}/api/v1", self.api_url), token: Some(self.token.clone()) }
    }

    /// A fresh enrollment token allowing `uses` enrollments.
    pub fn enrollment_token(&self, uses: u32) -> String {
        self.cli_ok(&["enrollment-tokens", "create", "--uses", &uses.to_string()]).trim().to_string()
    }

    /// Kills the process at once (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn terminate(&mut self) {
        signal(&self.child, libc_sigterm());
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        read_log(&self.data_dir, "server")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Guests outlive their server by design; a test's guests must not outlive the test (even a failed one).
        let guests = self.data_dir.join("hosts/local/guests");
        for pid in qemu_processes(&format!("{}/", guests.display())) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        let namespace = steward_server::network_namespace(&self.data_dir);
        let _ = Command::new("ip").args(["netns", "delete", &namespace]).stderr(Stdio::null()).status();
    }
}

fn libc_sigterm() -> i32 {
    15
}

pub fn signal(child: &Child, signal: i32) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
}

pub fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::create_dir_all(dir).expect("create dir");
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{name}.log"))).expect("log file")
}

pub fn read_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// A running agent; killed when dropped.
pub struct Agent {
    pub child: Child,
    pub state_dir: PathBuf,
}

impl Agent {
    /// Starts `steward-agent` against `server_url`, enrolling with `token` if given.
    pub fn start(server_url: &str, token: Option<&str>, state_dir: &Path) -> Agent {
        Agent::start_with(Command::new(agent_binary()), server_url, token, state_dir)
    }

    /// Starts the agent through a prepared command (for example `ip netns exec NS steward-agent`).
    pub fn start_with(mut command: Command, server_url: &str, token: Option<&str>, state_dir: &Path) -> Agent {
        command.arg("--server").arg(server_url).arg("--state-dir").arg(state_dir).arg("--log").arg("debug");
        if let Some(token) = token {
            command.arg("--enroll-token").arg(token);
        }
        command.stdout(Stdio::null()).stderr(Stdio::from(log_file(state_dir, "agent")));
        Agent { child: command.spawn().expect("start steward-agent"), state_dir: state_dir.to_path_buf() }
    }

    pub fn log(&self) -> String {
        read_log(&self.state_dir, "agent")
    }

    /// Waits for the agent process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn system_id(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.state_dir.join("identity.json")).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value["system_id"].as_str().map(str::to_string)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns `Some` or the timeout passes; a condition, not a timing assertion.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal blocking HTTP client for API tests, speaking to the server over loopback.
pub struct Api {
    pub base: String,
    pub token: Option<String>,
}

/// An HTTP answer: status and parsed JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

impl Api {
    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api { base: self.base.clone(), token: token.map(str::to_string) }
    }

    /// Sends a request with an optional raw body and content type.
    pub fn raw(&self, method: &str, path: &str, content_type: Option<&str>, body: Option<Vec<u8>>) -> Answer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let client = reqwest::Client::new();
            let mut request = client.request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{}{path}", self.base),
            );
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            if let Some(body) = body {
                request = request.body(body);
            }
            let response = request.send().await.expect("send request");
            let status = response.status().as_u16();
            let bytes = response.bytes().await.expect("read body");
            let body = if bytes.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| panic!("body is not JSON: {}", String::from_utf8_lossy(&bytes)))
            };
            Answer { status, body }
        })
    }

    pub fn get(&self, path: &str) -> Answer {
        self.raw("GET", path, None, None)
    }

    pub fn delete(&self, path: &str) -> Answer {
        self.raw("DELETE", path, None, None)
    }

    pub fn send(&self, method: &str, path: &str, body: serde_json::Value) -> Answer {
        self.raw(method, path, Some("application/json"), Some(body.to_string().into_bytes()))
    }

    pub fn post(&self, path: &str, body: serde_json::Value) -> Answer {
        self.send("POST", path, body)
    }

    /// Waits for the operation a `202 Accepted` answer started to finish; returns the finished operation.
    pub fn wait_operation(&self, accepted: &Answer) -> serde_json::Value {
        assert_eq!(accepted.status, 202, "expected an operation, got {:?}", accepted.body);
        let id = accepted.body["operation"]["id"].as_str().expect("operation id").to_string();
        eventually(&format!("operation {id} finishes"), Duration::from_secs(180), || {
            let operation = self.get(&format!("/operations/{id}")).body;
            let state = operation["state"].as_str().unwrap_or("");
            (!matches!(state, "running" | "unwinding")).then_some(operation)
        })
    }
}

/// QEMU must be installed for the virtualization tests (`scripts/test` installs it); they fail, never skip.
pub fn require_qemu() {
    for program in ["qemu-system-x86_64", "qemu-system-s390x", "qemu-img"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
        assert!(
            found,
            "{program} is not installed: run scripts/test (it installs qemu-system-x86 and qemu-system-misc)"
        );
    }
}

/// A small, real OS disk for tests that do not boot it: an ext4 filesystem over the whole disk (as the starter
/// images have) holding what sealing removes, as qcow2; and a stand-in kernel file.
pub fn tiny_os_image(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("rootfs");
    for sub in ["etc/steward", "etc/ssh", "var/lib/steward-agent", "var/lib/steward"] {
        std::fs::create_dir_all(root.join(sub)).expect("rootfs dir");
    }
    std::fs::write(root.join("etc/machine-id"), "0123456789abcdef0123456789abcdef\n").expect("machine-id");
    std::fs::write(root.join("etc/steward/network.conf"), "mac=52:54:00:00:00:01\n").expect("network.conf");
    std::fs::write(root.join("etc/ssh/ssh_host_ed25519_key"), "key\n").expect("host key");
    std::fs::write(root.join("var/lib/steward-agent/identity.json"), "{}\n").expect("identity");
    let raw = dir.join("tiny.raw");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "steward-root", "-d"])
        .arg(&root)
        .arg(&raw)
        .arg("16M")
        .stdout(Stdio::null())
        .status()
        .expect("run mkfs.ext4");
    assert!(status.success(), "mkfs.ext4 failed");
    let disk = dir.join("tiny.qcow2");
    let status = Command::new("qemu-img")
        .args(["convert", "-q", "-O", "qcow2"])
        .arg(&raw)
        .arg(&disk)
        .status()
        .expect("run qemu-img");
    assert!(status.success(), "qemu-img convert failed");
    let kernel = dir.join("vmlinuz");
    std::fs::write(&kernel, b"not a kernel: these tests never boot it").expect("kernel");
    (disk, kernel)
}

/// Every `qemu-system-*` process whose command line mentions `needle`.
pub fn qemu_processes(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains("qemu-system-") && text.contains(needle) {
            found.push(pid);
        }
    }
    found
}
