//! The Steward server: REST API, application logic, agent gateway and PKI, started by `steward serve`.
//!
//! ```text
//!  HTTP(S) :8440 ──> api (axum) ──> app / store
//!  TLS     :8441 ──> gateway ─────> app / store     (one connection per agent, mutual TLS)
//! ```
//! [`start`] opens the store, creates the CA and the first administrator on first start, binds both listeners and
//! returns a [`RunningServer`]; dropping nothing stops it, [`RunningServer::shutdown`] does.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
mod bootstrap;
pub mod error;
pub mod gateway;
mod https;
pub mod pki;
pub mod secrets;
pub mod state;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::AppState;

/// Everything `steward serve` can be told.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Address of the API and console. Loopback addresses speak plain HTTP, any other HTTPS.
    pub listen: SocketAddr,
    /// Address of the agent gateway; by default the API's IP with port 8441 (port 0 when the API's port is 0).
    pub gateway_listen: Option<SocketAddr>,
    /// Database URL; by default `DATA/steward.db` (SQLite).
    pub database: Option<String>,
    /// Operator-given HTTPS certificate chain and key (PEM); by default the server issues its own from its CA.
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Faults to inject into sagas, for tests (`STEWARD_FAULT_INJECTION`); empty in production.
    pub faults: app::sagas::faults::FaultPlan,
    /// How event action deliveries are retried.
    pub delivery: app::actions::DeliverySettings,
}

pub use app::sagas::faults::{ENVIRONMENT_VARIABLE as FAULT_INJECTION_VARIABLE, FaultPlan};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8440";
pub const DEFAULT_GATEWAY_PORT: u16 = 8441;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the local QEMU host")]
    Hypervisor(#[source] Box<steward_hypervisor::HypervisorError>),
    #[error("cannot open the store")]
    Store(#[from] steward_store::StoreError),
    #[error("cannot set up the certificate authority or TLS")]
    Pki(#[from] pki::PkiError),
    #[error("cannot listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--tls-certificate and --tls-key must be given together")]
    TlsPair,
}

/// A started server.
pub struct RunningServer {
    /// `http://127.0.0.1:8440` or `https://...`.
    pub api_url: String,
    pub gateway_address: SocketAddr,
    pub admin_token_path: PathBuf,
    /// True when this start created the administrator token.
    pub created_admin_token: bool,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    store: steward_store::Store,
}

impl RunningServer {
    /// Stops accepting, says goodbye to agents, finishes in-flight requests and closes the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.store.close().await;
    }
}

/// Formats an error with all its causes: `outer: cause: root cause`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether an address only this machine can reach: plain HTTP is allowed there.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    create_data_dir(&config.data_dir)?;
    let store = match &config.database {
        Some(url) => steward_store::Store::open_url(url).await?,
        None => steward_store::Store::open_file(&config.data_dir.join("steward.db")).await?,
    };
    {
        let mut conn = store.conn().await?;
        steward_store::systems::mark_all_offline(&mut conn).await?;
    }
    let admin_token_path = config.data_dir.join("admin-token");
    let created_admin_token = bootstrap::first_administrator(&store, &admin_token_path).await?;
    let ca = Arc::new(pki::CertificateAuthority::load_or_create(&config.data_dir)?);

    // Probing the emulators takes a moment (KVM is tried for real); it is done before anything listens, so that
    // nobody connects to a server that is not ready.
    let hosts = local_host(&store, &config.data_dir).await?;
    let zvm_hosts = app::zvm::load_registered(&store, &config.data_dir, &hosts).await?;
    if zvm_hosts > 0 {
        tracing::info!(zvm_hosts, "z/VM hosts opened");
    }
    let api_listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen { address: config.listen, source })?;
    let api_address =
        api_listener.local_addr().map_err(|source| StartError::Listen { address: config.listen, source })?;
    let gateway_wanted = config.gateway_listen.unwrap_or_else(|| {
        SocketAddr::new(config.listen.ip(), if config.listen.port() == 0 { 0 } else { DEFAULT_GATEWAY_PORT })
    });
    let gateway_listener = TcpListener::bind(gateway_wanted)
        .await
        .map_err(|source| StartError::Listen { address: gateway_wanted, source })?;
    let gateway_address =
        gateway_listener.local_addr().map_err(|source| StartError::Listen { address: gateway_wanted, source })?;

    let state = AppState {
        store: store.clone(),
        ca: ca.clone(),
        agents: Arc::new(gateway::Registry::default()),
        gateway_port: gateway_address.port(),
        monitors: Arc::new(crate::app::monitors::Monitors::default()),
        hosts: Arc::new(hosts),
        data_dir: Arc::new(config.data_dir.clone()),
        faults: Arc::new(config.faults.clone()),
    };
    // Guests outlive the server: talk to the agents of those that run, and finish what a previous run left.
    let attached = app::hosts::reattach_running_guests(&state).await?;
    let resumed = app::sagas::engine::resume_all(&state).await?;
    if attached > 0 || resumed > 0 {
        tracing::info!(attached, resumed, "re-attached to running guests and resumed unfinished operations");
    }
    app::complexes::reconciler::spawn(state.clone());
    app::scheduler::spawn(state.clone());
    app::monitors::spawn(state.clone());
    {
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(error) = app::monitors::plan_all_systems(&state).await {
                tracing::warn!(error = %error_chain(&error), "cannot plan the monitors");
            }
        });
    }
    app::actions::spawn(state.clone(), config.delivery.clone());
    let (shutdown, shutdown_receiver) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(gateway::serve(
        gateway_listener,
        ca.gateway_tls_config()?,
        state.clone(),
        shutdown_receiver.clone(),
    )));

    let router = api::router(state);
    let tls = match (&config.tls_certificate, &config.tls_key) {
        (Some(certificate), Some(key)) => Some(pki::https_tls_config(pki::load_identity(certificate, key)?)?),
        (None, None) if is_loopback(api_address.ip()) => None,
        (None, None) => Some(pki::https_tls_config(ca.issue_server(&https_names(api_address.ip()))?)?),
        _ => return Err(StartError::TlsPair),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    // A wildcard bind is reachable on loopback too; that is the URL this machine's own tools can use.
    let host = match api_address.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let api_url = format!("{scheme}://{host}:{}", api_address.port());
    tasks.push(tokio::spawn(https::serve(api_listener, tls, router, shutdown_receiver)));

    let descriptor = serde_json::json!({
        "api_url": api_url,
        "gateway_address": gateway_address.to_string(),
        "pid": std::process::id(),
        // Tools and tests that clean up after a server find its networks' namespace here.
        "network_namespace": network_namespace(&config.data_dir),
    });
    let descriptor_path = config.data_dir.join("server.json");
    std::fs::write(&descriptor_path, descriptor.to_string() + "\n")
        .map_err(|source| StartError::Write { path: descriptor_path, source })?;

    Ok(RunningServer { api_url, gateway_address, admin_token_path, created_admin_token, shutdown, tasks, store })
}

/// The network namespace of the local host's networks: named after the canonical data directory, so servers
/// with different data directories never share one.
pub fn network_namespace(data_dir: &Path) -> String {
    use sha2::Digest;
    let canonical = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = sha2::Sha256::digest(canonical.to_string_lossy().as_bytes());
    format!("steward-{}", digest.iter().take(4).map(|byte| format!("{byte:02x}")).collect::<String>())
}

/// Registers this machine as host `local` when a QEMU emulator is installed, with its storage in
/// `DATA/hosts/local` and its networks in a network namespace named after the data directory (so that servers
/// with different data directories never share bridges).
async fn local_host(store: &steward_store::Store, data_dir: &Path) -> Result<app::hosts::Hosts, StartError> {
    let root = data_dir.join("hosts").join(app::hosts::LOCAL_HOST);
    let namespace = network_namespace(data_dir);
    let driver = steward_hypervisor::qemu::QemuHost::new(steward_hypervisor::qemu::QemuHostConfig {
        root: root.clone(),
        namespace,
        search_path: None,
    })
    .map_err(|source| StartError::Hypervisor(Box::new(source)))?;
    let emulators = driver.emulators().await.map_err(|source| StartError::Hypervisor(Box::new(source)))?;
    if emulators.is_empty() {
        tracing::info!("no qemu-system-x86_64 or qemu-system-s390x installed: no local host");
        return Ok(app::hosts::Hosts::default());
    }
    let mut conn = store.conn().await?;
    let host =
        steward_store::hosts::ensure(&mut conn, app::hosts::LOCAL_HOST, steward_types::api::hosts::HostKind::Qemu)
            .await?;
    Ok(app::hosts::Hosts::default().with(host.id, app::hosts::Driver::new(Arc::new(driver), root)))
}

/// Names the self-issued HTTPS certificate carries: the bound address (or, for a wildcard bind, every address
/// of the machine's interfaces at start), `localhost` and the host name.
fn https_names(ip: IpAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if ip.is_unspecified() {
        for address in local_addresses() {
            if !names.contains(&address.to_string()) {
                names.push(address.to_string());
            }
        }
    } else {
        names.insert(0, ip.to_string());
    }
    if let Ok(hostname) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let hostname = hostname.trim();
        if !hostname.is_empty() {
            names.push(hostname.to_string());
        }
    }
    names
}

/// The IP addresses of this machine's interfaces.
fn local_addresses() -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we only read and then free with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return addresses;
    }
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let node = unsafe { &*entry };
        if !node.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family tells its real type.
            let family = i32::from(unsafe { (*node.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: the family is AF_INET, so this is a sockaddr_in.
                let v4 = unsafe { &*(node.ifa_addr as *const libc::sockaddr_in) };
                addresses.push(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()));
            } else if family == libc::AF_INET6 {
                // SAFETY: the family is AF_INET6, so this is a sockaddr_in6.
                let v6 = unsafe { &*(node.ifa_addr as *const libc::sockaddr_in6) };
                addresses.push(IpAddr::from(v6.sin6_addr.s6_addr));
            }
        }
        entry = node.ifa_next;
    }
    // SAFETY: `list` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    addresses
}

fn create_data_dir(path: &std::path::Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| StartError::DataDir { path: path.to_path_buf(), source })
}
