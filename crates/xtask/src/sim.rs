//! Simulated agents in one process: key and CSR like the real agent, enrollment over the REST API, and the
//! gateway protocol (TLS with the agent's certificate, Hello, Welcome, Inventory) with the real agent's jittered
//! exponential reconnect backoff.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use steward_protocol::{
    AgentMessage, Filesystem, HostFacts, Inventory, MAX_FRAME_BYTES, NetworkInterface, OsRelease, PROTOCOL_VERSION,
    Package, PackageManager, ServerMessage, read_frame, write_frame,
};
use steward_types::api::enrollment::{EnrollmentRequest, EnrollmentResponse};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::client::TlsStream;

/// The agent version the simulated agents report.
pub const SIM_AGENT_VERSION: &str = "0.0.0-bench";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);
/// A simulated agent gives up after this many connection attempts (the real one never does).
const MAX_ATTEMPTS: u32 = 64;

/// A key and CSR generated before the timed enrollment phase.
pub struct Prepared {
    pub hostname: String,
    key_pem: String,
    csr_pem: String,
}

/// Generates `count` ECDSA P-256 keys and CSRs, as `steward-agent` does at enrollment.
pub fn prepare(count: usize, prefix: &str) -> anyhow::Result<Vec<Prepared>> {
    (0..count)
        .map(|index| {
            let hostname = format!("{prefix}-{index:05}");
            let key = rcgen::KeyPair::generate().context("cannot generate a key")?;
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name.push(rcgen::DnType::CommonName, hostname.as_str());
            let csr_pem = params.serialize_request(&key).and_then(|csr| csr.pem()).context("cannot build a CSR")?;
            Ok(Prepared { hostname, key_pem: key.serialize_pem(), csr_pem })
        })
        .collect()
}

/// An enrolled simulated agent: its identity and TLS client configuration.
pub struct Agent {
    pub system_name: String,
    tls: tokio_rustls::TlsConnector,
    inventory: Inventory,
    digest: String,
}

pub struct EnrollOutcome {
    pub agents: Vec<Agent>,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    pub failures: Vec<String>,
}

/// Enrolls every prepared agent with `concurrency` requests in flight, sharing one keep-alive client.
pub async fn enroll_all(
    api_url: &str,
    token: &str,
    prepared: Vec<Prepared>,
    concurrency: usize,
) -> anyhow::Result<EnrollOutcome> {
    let http = crate::server::http_client(concurrency)?;
    let endpoint = format!("{api_url}/api/v1/enrollments");
    let prepared = Arc::new(prepared);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (http, endpoint, token, prepared, next) =
            (http.clone(), endpoint.clone(), token.to_string(), prepared.clone(), next.clone());
        workers.spawn(async move {
            let mut results = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(agent) = prepared.get(index) else { break };
                let request = EnrollmentRequest {
                    token: token.clone(),
                    csr_pem: agent.csr_pem.clone(),
                    hostname: agent.hostname.clone(),
                    agent_version: SIM_AGENT_VERSION.to_string(),
                };
                let sent = Instant::now();
                let result = enroll_one(&http, &endpoint, &request).await;
                results.push((index, sent.elapsed(), result));
            }
            results
        });
    }
    let mut outcome =
        EnrollOutcome { agents: Vec::new(), latencies: Vec::new(), elapsed: Duration::ZERO, failures: Vec::new() };
    let mut answers = Vec::new();
    while let Some(joined) = workers.join_next().await {
        for (index, latency, result) in joined.context("an enrollment worker panicked")? {
            outcome.latencies.push(latency);
            match result {
                Ok(answer) => answers.push((index, answer)),
                Err(error) => outcome.failures.push(format!("{error:#}")),
            }
        }
    }
    outcome.elapsed = started.elapsed();
    answers.sort_by_key(|(index, _)| *index);
    for (index, answer) in answers {
        outcome.agents.push(Agent::new(&prepared[index], answer)?);
    }
    Ok(outcome)
}

async fn enroll_one(
    http: &reqwest::Client,
    endpoint: &str,
    request: &EnrollmentRequest,
) -> anyhow::Result<EnrollmentResponse> {
    let response = http.post(endpoint).json(request).send().await.context("enrollment request failed")?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("enrollment refused: {status} {}", text.chars().take(200).collect::<String>());
    }
    response.json().await.context("cannot read the enrollment answer")
}

impl Agent {
    fn new(prepared: &Prepared, answer: EnrollmentResponse) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(answer.ca_certificate_pem.as_bytes()) {
            roots.add(certificate.context("CA certificate")?).context("CA certificate")?;
        }
        let chain = CertificateDer::pem_slice_iter(answer.certificate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("agent certificate")?;
        let key = PrivateKeyDer::from_pem_slice(prepared.key_pem.as_bytes()).context("agent key")?;
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .context("agent TLS configuration")?;
        let inventory = inventory(&prepared.hostname);
        let digest = inventory.digest();
        Ok(Self {
            system_name: answer.system_name,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            inventory,
            digest,
        })
    }

    /// Connects, says hello (with the digest of the last inventory reported, if any), waits for the welcome and
    /// sends the inventory if the server asks for it. Returns the live stream.
    async fn connect(&self, address: SocketAddr, reported: bool) -> anyhow::Result<TlsStream<TcpStream>> {
        if !address.ip().is_loopback() {
            bail!("refusing to connect to {address}: benchmarks stay on loopback");
        }
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .context("connect timed out")?
            .context("connect failed")?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(steward_protocol::GATEWAY_TLS_NAME).context("gateway TLS name")?;
        let mut tls = tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(name, tcp))
            .await
            .context("TLS handshake timed out")?
            .context("TLS handshake failed")?;
        let hello = AgentMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: SIM_AGENT_VERSION.to_string(),
            inventory_digest: reported.then(|| self.digest.clone()),
        };
        write_frame(&mut tls, &hello).await.context("cannot send hello")?;
        let welcome = tokio::time::timeout(WELCOME_TIMEOUT, read_frame::<ServerMessage, _>(&mut tls, MAX_FRAME_BYTES))
            .await
            .context("no welcome in time")?
            .context("no welcome")?;
        match welcome {
            ServerMessage::Welcome { send_full_inventory, .. } => {
                if send_full_inventory {
                    let message = AgentMessage::Inventory { inventory: Box::new(self.inventory.clone()) };
                    write_frame(&mut tls, &message).await.context("cannot send the inventory")?;
                }
                Ok(tls)
            }
            ServerMessage::Goodbye { reason, retry } => bail!("goodbye (retry {retry}): {reason}"),
            other => bail!("expected a welcome, got {other:?}"),
        }
    }
}

/// A small but valid inventory: host facts, one filesystem, one interface, a few packages.
pub fn inventory(hostname: &str) -> Inventory {
    let mut inventory = Inventory {
        host: HostFacts {
            hostname: hostname.to_string(),
            os: OsRelease {
                id: "debian".into(),
                id_like: String::new(),
                name: "Debian GNU/Linux".into(),
                version_id: "12".into(),
                version: "12 (bookworm)".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
            },
            kernel: steward_protocol::Kernel { release: "6.1.0-25-amd64".into(), version: "#1 SMP Debian".into() },
            arch: "x86_64".into(),
            cpu: steward_protocol::Cpu { count: 2, model: "Simulated CPU".into() },
            memory: steward_protocol::Memory { total_bytes: 2 << 30, swap_total_bytes: 0 },
            hypervisor: "kvm".into(),
        },
        block_devices: Vec::new(),
        filesystems: vec![Filesystem {
            mount_point: "/".into(),
            device: "/dev/vda1".into(),
            fs_type: "ext4".into(),
            size_bytes: 20 << 30,
            used_bytes: 5 << 30,
            available_bytes: 14 << 30,
        }],
        interfaces: vec![NetworkInterface {
            name: "eth0".into(),
            mac: "52:54:00:12:34:56".into(),
            mtu: 1500,
            state: "up".into(),
            addresses: vec!["192.0.2.10/24".into()],
        }],
        packages: ["bash 5.2.15-2", "coreutils 9.1-1", "libc6 2.36-9", "openssl 3.0.14-1", "systemd 252.30-1"]
            .iter()
            .map(|entry| {
                let (name, version) = entry.split_once(' ').unwrap_or((entry, ""));
                Package {
                    name: name.into(),
                    arch: "amd64".into(),
                    version: version.into(),
                    manager: PackageManager::Dpkg,
                }
            })
            .collect(),
        zvm: None,
        personalization: vec![],
    };
    inventory.normalize();
    inventory
}

/// Connects every agent once, sends its inventory, and closes: fills the server with inventories.
pub async fn upload_all(agents: &Arc<Vec<Agent>>, gateway: SocketAddr, concurrency: usize) -> anyhow::Result<usize> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (agents, next) = (agents.clone(), next.clone());
        workers.spawn(async move {
            let mut failures = 0;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(agent) = agents.get(index) else { break };
                match agent.connect(gateway, false).await {
                    Ok(mut tls) => {
                        // Give the server a moment to store the inventory before the connection goes away.
                        let _ = tls.flush().await;
                        let _ = tokio::time::timeout(Duration::from_millis(200), tls.shutdown()).await;
                        let _ = tokio::time::timeout(
                            Duration::from_secs(2),
                            read_frame::<ServerMessage, _>(&mut tls, MAX_FRAME_BYTES),
                        )
                        .await;
                    }
                    Err(_) => failures += 1,
                }
            }
            failures
        });
    }
    let mut failures = 0;
    while let Some(joined) = workers.join_next().await {
        failures += joined.context("an upload worker panicked")?;
    }
    Ok(failures)
}

/// Shared state of a fleet of persistent simulated agents.
pub struct Fleet {
    gateway: RwLock<SocketAddr>,
    online: AtomicUsize,
    /// Successful connections (welcome received) in all.
    pub connections: AtomicU64,
    /// Failed connection attempts in all.
    pub failed_attempts: AtomicU64,
    /// Agents that gave up (MAX_ATTEMPTS or a goodbye without retry).
    pub gave_up: AtomicUsize,
    refused: AtomicBool,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<tokio::task::JoinSet<()>>,
}

impl Fleet {
    /// Starts one task per agent; at most `concurrency` initial handshakes run at once.
    pub fn start(agents: &Arc<Vec<Agent>>, gateway: SocketAddr, concurrency: usize) -> Arc<Self> {
        let (stop, _) = watch::channel(false);
        let fleet = Arc::new(Self {
            gateway: RwLock::new(gateway),
            online: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            gave_up: AtomicUsize::new(0),
            refused: AtomicBool::new(false),
            stop,
            tasks: std::sync::Mutex::new(tokio::task::JoinSet::new()),
        });
        let gate = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..agents.len() {
            let (agents, fleet, gate) = (agents.clone(), fleet.clone(), gate.clone());
            tasks.spawn(async move { run_agent(&agents[index], &fleet, gate).await });
        }
        if let Ok(mut slot) = fleet.tasks.lock() {
            *slot = tasks;
        }
        fleet
    }

    pub fn online(&self) -> usize {
        self.online.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn set_gateway(&self, address: SocketAddr) {
        if let Ok(mut gateway) = self.gateway.write() {
            *gateway = address;
        }
    }

    fn gateway(&self) -> SocketAddr {
        self.gateway.read().map(|gateway| *gateway).unwrap_or_else(|poisoned| *poisoned.into_inner())
    }

    /// Waits until `predicate(online)` holds or `deadline` passes; returns the time waited if it held.
    pub async fn wait_for(&self, deadline: Duration, predicate: impl Fn(usize) -> bool) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < deadline {
            if predicate(self.online()) {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }

    /// Stops every agent task and waits for them.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let tasks = self.tasks.lock().map(|mut slot| std::mem::take(&mut *slot)).unwrap_or_default();
        let _ = tokio::time::timeout(Duration::from_secs(10), tasks.join_all()).await;
    }
}

async fn run_agent(agent: &Agent, fleet: &Fleet, gate: Arc<Semaphore>) {
    let mut stop = fleet.stop.subscribe();
    let mut permit = gate.acquire_owned().await.ok();
    let mut backoff = Backoff::default();
    let mut reported = false;
    for _ in 0..MAX_ATTEMPTS {
        if *stop.borrow() {
            return;
        }
        let attempt = tokio::select! {
            attempt = agent.connect(fleet.gateway(), reported) => attempt,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        permit.take();
        match attempt {
            Ok(tls) => {
                reported = true;
                backoff.reset();
                fleet.connections.fetch_add(1, Ordering::Relaxed);
                fleet.online.fetch_add(1, Ordering::Relaxed);
                let refused = hold(tls, &mut stop).await;
                fleet.online.fetch_sub(1, Ordering::Relaxed);
                if refused {
                    fleet.refused.store(true, Ordering::Relaxed);
                    fleet.gave_up.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            Err(_) => {
                fleet.failed_attempts.fetch_add(1, Ordering::Relaxed);
            }
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
    fleet.gave_up.fetch_add(1, Ordering::Relaxed);
}

/// Keeps a connection open until the server closes it or the fleet stops; true on a goodbye without retry.
async fn hold(mut tls: TlsStream<TcpStream>, stop: &mut watch::Receiver<bool>) -> bool {
    loop {
        tokio::select! {
            frame = read_frame::<ServerMessage, _>(&mut tls, MAX_FRAME_BYTES) => match frame {
                Ok(ServerMessage::Goodbye { retry, .. }) => return !retry,
                Ok(_) => continue,
                Err(_) => return false,
            },
            _ = stop.wait_for(|stopped| *stopped) => return false,
        }
    }
}

/// The real agent's backoff (crates/steward-agent/src/backoff.rs): 1 s doubling to 60 s, times 0.5..1.0.
#[derive(Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let nominal = Duration::from_secs(1).saturating_mul(1u32 << self.attempt.min(16)).min(Duration::from_secs(60));
        self.attempt = self.attempt.saturating_add(1);
        nominal.mul_f64(rand::random_range(0.5..=1.0))
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}
