//! `steward-agent`: over TLS (the default), enroll once with `--enroll-token`, then keep reporting to the server;
//! with `--channel virtio-serial`, report over the guest's virtio-serial port, which needs no enrollment.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use steward_agent::serial::SerialDevice;
use steward_agent::session::{Session, Transport};
use steward_agent::state::StateDir;
use steward_agent::tls::TlsTransport;
use steward_agent::watch::ChangeWatcher;

/// How the agent reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Channel {
    /// Mutual TLS to the server's agent gateway, after enrolling with a token.
    Tls,
    /// The guest's virtio-serial port `--port-name` (QEMU guests created by Steward): no token, no TLS.
    VirtioSerial,
}

#[derive(Debug, Parser)]
#[command(name = "steward-agent", version, about = "The Steward agent: reports this system to a Steward server.")]
struct Args {
    /// URL of the Steward server's API, for enrollment (`http://127.0.0.1:8440`).
    #[arg(long, env = "STEWARD_SERVER")]
    server: Option<String>,
    /// One-time token from `steward enrollment-tokens create`; needed only for the first start.
    #[arg(long, env = "STEWARD_ENROLL_TOKEN", hide_env_values = true)]
    enroll_token: Option<String>,
    /// CA certificate of an HTTPS server (the server's DATA/ca.pem), for enrollment over HTTPS.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Where the agent keeps its key, certificate and last report (over virtio-serial, only the last report).
    #[arg(long, default_value = "/var/lib/steward-agent")]
    state_dir: PathBuf,
    /// The channel to the server.
    #[arg(long, value_enum, env = "STEWARD_AGENT_CHANNEL", default_value = "tls")]
    channel: Channel,
    /// With `--channel virtio-serial`: the name of the port, as in `/sys/class/virtio-ports/*/name`.
    #[arg(long, default_value = steward_protocol::SERIAL_PORT_NAME)]
    port_name: String,
    /// With `--channel virtio-serial`: open this character device instead of looking the port up by name (for
    /// tests: a pseudo-terminal).
    #[arg(long)]
    channel_device: Option<PathBuf>,
    /// Use the init scripts of this directory for services (`DIR/NAME start|stop|restart|status`), even where
    /// systemd runs. For tests (a scratch directory) and unusual layouts; by default the agent uses systemd where
    /// it runs and /etc/init.d elsewhere.
    #[arg(long, env = "STEWARD_AGENT_INIT_DIR", value_name = "DIR")]
    init_directory: Option<PathBuf>,
    /// File transfers may read only under this directory (repeatable; default `/`). `/proc`, `/sys` and `/dev`
    /// are never transferred.
    #[arg(long = "file-read-root", value_name = "DIR")]
    file_read_roots: Vec<PathBuf>,
    /// File transfers may write only under this directory (repeatable; default `/`).
    #[arg(long = "file-write-root", value_name = "DIR")]
    file_write_roots: Vec<PathBuf>,
    /// For tests: package tools act on this root (`dpkg --root`, `rpm --root`; never apt, dnf or zypper) and the
    /// inventory reports the packages of its dpkg database instead of the system's.
    #[arg(long, env = "STEWARD_AGENT_PACKAGE_ROOT", value_name = "DIR")]
    package_root: Option<PathBuf>,
    /// For tests: account tools act on this root (`useradd -R DIR`, ...) and accounts are listed from its
    /// `etc/passwd`, `etc/group` and `etc/shadow` instead of the system's.
    #[arg(long, env = "STEWARD_AGENT_ACCOUNT_ROOT", value_name = "DIR")]
    account_root: Option<PathBuf>,
    /// Log filter (`warn`, `info`, `debug`).
    #[arg(long, env = "STEWARD_AGENT_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let state = StateDir::open(&args.state_dir)?;
    if let Some(directory) = &args.init_directory {
        steward_agent::admin::services::set_init_directory(directory.clone());
    }
    // Package files are pushed to the staging directory, which narrowed write roots must therefore include.
    let staging = args.state_dir.join("packages");
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&staging)
            .with_context(|| format!("cannot create {}", staging.display()))?;
    }
    let mut write_roots = args.file_write_roots.clone();
    if !write_roots.is_empty() {
        write_roots.push(staging.clone());
    }
    let file_policy = steward_agent::files::policy::FilePolicy::new(args.file_read_roots.clone(), write_roots)
        .map_err(|error| anyhow::anyhow!(error))?;
    for (flag, root) in [("--package-root", &args.package_root), ("--account-root", &args.account_root)] {
        if let Some(root) = root
            && !root.is_absolute()
        {
            anyhow::bail!("{flag} {} is not an absolute path", root.display());
        }
    }
    steward_agent::software::configure(steward_agent::software::SoftwareSettings {
        staging,
        package_root: args.package_root.clone(),
        account_root: args.account_root.clone(),
    });
    let transport = match args.channel {
        Channel::Tls => {
            if args.channel_device.is_some() {
                anyhow::bail!("--channel-device needs --channel virtio-serial");
            }
            let enrolled = enrolled_or_enroll(&args, &state).await?;
            Transport::Tls(
                TlsTransport::new(enrolled)
                    .map_err(|error| anyhow::anyhow!("cannot set up TLS from {}: {error}", args.state_dir.display()))?,
            )
        }
        Channel::VirtioSerial => {
            if args.enroll_token.is_some() || args.server.is_some() {
                anyhow::bail!(
                    "--server and --enroll-token are for --channel tls: the virtio-serial port needs no enrollment"
                );
            }
            if args.port_name.is_empty() || args.port_name.contains('/') {
                anyhow::bail!(
                    "--port-name {:?} is not a port name (like {})",
                    args.port_name,
                    steward_protocol::SERIAL_PORT_NAME
                );
            }
            Transport::Serial(match args.channel_device.clone() {
                Some(path) => SerialDevice::Path(path),
                None => SerialDevice::PortName(args.port_name.clone()),
            })
        }
    };
    let mut watcher = ChangeWatcher::new(std::path::Path::new("/")).context("cannot watch the system for changes")?;
    let (stop, mut stopped) = tokio::sync::mpsc::channel(1);
    // Installed here, not in the task: if they cannot be, the agent must fail, not take the dropped sender for an
    // order to stop.
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        let _ = stop.send(()).await;
    });
    let session = Session::new(transport, state, PathBuf::from("/")).with_file_policy(file_policy);
    session.run(&mut watcher, &mut stopped).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The stored enrollment, or a new one made with `--server` and `--enroll-token`.
async fn enrolled_or_enroll(args: &Args, state: &StateDir) -> anyhow::Result<steward_agent::state::Enrolled> {
    use anyhow::Context as _;
    if let Some(enrolled) = state.enrolled()? {
        if args.enroll_token.is_some() {
            tracing::info!(system = %enrolled.identity.system_name, "already enrolled; the enrollment token is not needed");
        }
        return Ok(enrolled);
    }
    let server =
        args.server.as_deref().context("this agent is not enrolled yet: pass --server URL and --enroll-token TOKEN")?;
    let token = args.enroll_token.as_deref().context("this agent is not enrolled yet: pass --enroll-token TOKEN")?;
    let ca = match &args.ca_file {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?),
        None => None,
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    let enrolled = steward_agent::enroll::enroll(server, token.trim(), &hostname, ca.as_deref()).await?;
    state.save_enrolled(&enrolled)?;
    tracing::info!(system = %enrolled.identity.system_name, id = %enrolled.identity.system_id, "enrolled");
    Ok(enrolled)
}
