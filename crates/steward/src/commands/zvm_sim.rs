//! `steward zvm-sim`: runs the z/VM SMAPI **simulator** (`zvm-sim`) until SIGINT or SIGTERM, for development
//! and tests without a mainframe. It is not z/VM. See `docs/zvm-sim.md`.
//!
//! While it runs, standard input takes admin commands, one per line: `fault SPEC` (for example
//! `fault dirmaint-down`), `clear` (no faults), `faults` (list them), `functions` (the modelled functions),
//! `help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use zvm_sim::{AuthEntry, Fault, PoolVolumeSpec, Simulator, SimulatorConfig, Timing, UserSpec};

#[derive(Debug, clap::Args)]
pub struct ZvmSimArgs {
    /// Address to serve SMAPI on (z/VM's request server listens on port 44444).
    #[arg(long, default_value = "127.0.0.1:44444")]
    listen: SocketAddr,
    /// JSON state file: loaded at start when it exists, rewritten after every change.
    #[arg(long)]
    state: Option<PathBuf>,
    /// A SMAPI user; the first one is the administrator of a new system. Repeatable.
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    users: Vec<UserSpec>,
    /// A disk pool volume (3390); replaces the default pool of a new system. Repeatable.
    #[arg(long = "pool", value_name = "GROUP:VOLUME:CYLINDERS")]
    pools: Vec<PoolVolumeSpec>,
    /// An AUTHLIST entry: TARGET is ALL, = (the user itself) or a user ID; FUNCTION is ALL or a name. Repeatable.
    #[arg(long = "authorize", value_name = "USER:TARGET:FUNCTION")]
    authorizations: Vec<AuthEntry>,
    /// A fault to start with: dirmaint-down, delay=MS, drop-after-request-id=FUNCTION, fail=FUNCTION:RC:RS,
    /// fail-operation=FUNCTION. Repeatable.
    #[arg(long = "fault", value_name = "FAULT")]
    faults: Vec<Fault>,
    /// How long a DirMaint asynchronous operation takes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    operation_ms: u64,
    /// Time a disk copy takes per 1000 cylinders, in milliseconds, on top of --operation-ms.
    #[arg(long, default_value_t = 100)]
    copy_ms_per_thousand_cylinders: u64,
    /// How long a simulated guest takes to shut down after the shutdown signal, in milliseconds.
    #[arg(long, default_value_t = 500)]
    guest_shutdown_ms: u64,
    /// Do not define the example guest LINUX01 (a guest defined by hand, to register) on a new system.
    #[arg(long)]
    no_example_guest: bool,
    /// Log filter, for example `info` or `zvm_sim=debug` (every request is logged at debug).
    #[arg(long, env = "STEWARD_LOG", default_value = "info")]
    log: String,
}

pub async fn run(args: ZvmSimArgs) -> anyhow::Result<String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log).context("--log is not a valid log filter")?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let mut config = SimulatorConfig::new(args.listen);
    config.state_file = args.state.clone();
    config.users = args.users;
    config.pools = args.pools;
    config.authorizations = args.authorizations;
    config.faults = zvm_sim::Faults::from_faults(args.faults);
    config.example_guest = !args.no_example_guest;
    config.timing = Timing {
        operation: Duration::from_millis(args.operation_ms),
        copy_per_thousand_units: Duration::from_millis(args.copy_ms_per_thousand_cylinders),
        guest_shutdown: Duration::from_millis(args.guest_shutdown_ms),
        ..Timing::default()
    };
    let simulator = Simulator::start(config).await.map_err(|error| anyhow::anyhow!(zvm_sim::error_chain(&error)))?;
    println!("z/VM SMAPI simulator (zvm-sim, not z/VM) listening on {}", simulator.address());
    if simulator.created().is_empty() {
        println!(
            "  State loaded from {}",
            args.state.as_deref().map(|path| path.display().to_string()).unwrap_or_default()
        );
    } else {
        println!("  Created a new simulated system:");
        for line in simulator.created() {
            println!("    - {line}");
        }
    }
    match &args.state {
        Some(path) => println!("  State file: {} (rewritten after every change)", path.display()),
        None => println!("  State: in memory only (pass --state FILE to keep it)"),
    }
    println!("  Connect a SMAPI client to {} with a user ID and password above.", simulator.address());
    let faults = simulator.faults().describe();
    if !faults.is_empty() {
        println!("  Faults: {}", faults.join(", "));
    }
    println!("Admin commands on standard input: fault SPEC, clear, faults, functions, help. Stop with Ctrl-C.");
    serve_admin_commands(&simulator).await;
    tracing::info!("shutting down");
    simulator.shutdown().await;
    Ok(String::new())
}

/// Reads admin commands from standard input until a signal arrives (standard input closing only ends them).
async fn serve_admin_commands(simulator: &Simulator) {
    let (lines, mut receiver) = tokio::sync::mpsc::channel::<String>(16);
    // Standard input is read on a thread of its own: a blocking read must not hold a runtime thread.
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if lines.blocking_send(line).is_err() {
                return;
            }
        }
    });
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => return,
            line = receiver.recv() => match line {
                Some(line) => println!("{}", admin_command(simulator, line.trim())),
                None => {
                    signal.await;
                    return;
                }
            },
        }
    }
}

/// One admin command's answer.
fn admin_command(simulator: &Simulator, line: &str) -> String {
    let (command, argument) = line.split_once(' ').map(|(command, rest)| (command, rest.trim())).unwrap_or((line, ""));
    match command {
        "" => String::new(),
        "fault" => match argument.parse::<Fault>() {
            Ok(fault) => {
                simulator.add_fault(fault);
                format!("faults: {}", simulator.faults().describe().join(", "))
            }
            Err(error) => format!("error: {error}"),
        },
        "clear" => {
            simulator.clear_faults();
            "faults cleared".to_owned()
        }
        "faults" => {
            let faults = simulator.faults().describe();
            if faults.is_empty() { "no faults".to_owned() } else { format!("faults: {}", faults.join(", ")) }
        }
        "functions" => zvm_sim::modelled_functions().collect::<Vec<_>>().join("\n"),
        "help" => "fault SPEC   add a fault (dirmaint-down, delay=MS, drop-after-request-id=FUNCTION, \
                   fail=FUNCTION:RC:RS, fail-operation=FUNCTION)\nclear        remove every fault\n\
                   faults       list the faults in force\nfunctions    list the modelled SMAPI functions"
            .to_owned(),
        other => format!("error: unknown command {other:?}; try help"),
    }
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
