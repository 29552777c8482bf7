//! `steward serve`: runs the server until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where the database, the CA and the administrator token live.
    #[arg(long, env = "STEWARD_DATA_DIR", default_value = "./steward-data")]
    data_dir: PathBuf,
    /// Address of the API and web console; loopback speaks HTTP, any other address HTTPS.
    #[arg(long, env = "STEWARD_LISTEN", default_value = steward_server::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Address agents connect to (TLS); by default the API's address with port 8441.
    #[arg(long, env = "STEWARD_GATEWAY_LISTEN")]
    gateway_listen: Option<SocketAddr>,
    /// Database URL; by default SQLite in the data directory.
    #[arg(long, env = "STEWARD_DATABASE")]
    database: Option<String>,
    /// HTTPS certificate chain (PEM) to use instead of one issued by Steward's own CA.
    #[arg(long, requires = "tls_key")]
    tls_certificate: Option<PathBuf>,
    /// Private key (PEM) of --tls-certificate.
    #[arg(long, requires = "tls_certificate")]
    tls_key: Option<PathBuf>,
    /// Seconds before a failed event action delivery is tried again the first time (the wait doubles after each
    /// further failure, up to 20 minutes; a delivery is given up after 8 attempts).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    delivery_retry_seconds: u64,
    /// Log filter, for example `info` or `steward_server=debug`.
    #[arg(long, env = "STEWARD_LOG", default_value = "info")]
    log: String,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log).context("--log is not a valid log filter")?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    // Tests inject saga faults through the environment; a production server never has it set.
    let faults = match std::env::var(steward_server::FAULT_INJECTION_VARIABLE) {
        Ok(plan) => steward_server::FaultPlan::parse(&plan).map_err(|error| anyhow::anyhow!("{error}"))?,
        Err(_) => steward_server::FaultPlan::default(),
    };
    if !faults.is_empty() {
        tracing::warn!("fault injection is active: this server is for tests only");
    }
    let config = steward_server::Config {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        gateway_listen: args.gateway_listen,
        database: args.database,
        tls_certificate: args.tls_certificate,
        tls_key: args.tls_key,
        faults,
        delivery: steward_server::app::actions::DeliverySettings {
            first_retry: std::time::Duration::from_secs(args.delivery_retry_seconds),
            ..Default::default()
        },
    };
    let server =
        steward_server::start(config).await.map_err(|error| anyhow::anyhow!(steward_server::error_chain(&error)))?;
    println!("Steward {} is running.", env!("CARGO_PKG_VERSION"));
    println!("  API:            {}/api/v1 (OpenAPI at {}/api/v1/openapi.json)", server.api_url, server.api_url);
    println!("  Agent gateway:  {} (TLS)", server.gateway_address);
    println!("  Data directory: {}", args.data_dir.display());
    if server.created_admin_token {
        println!("  First start: the administrator token is in {}", server.admin_token_path.display());
    } else {
        println!("  Administrator token: {}", server.admin_token_path.display());
    }
    println!("Stop with Ctrl-C.");
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(String::new())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
