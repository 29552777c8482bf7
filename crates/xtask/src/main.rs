//! `cargo xtask`: project tasks that are programs rather than tests.
//!
//! `cargo xtask bench <name>` builds the release binaries, starts its own `steward serve` on loopback with a
//! temporary data directory, measures, prints one line per figure and writes `target/bench/<benchmark>.json`.
//! See `docs/benchmarks.md` for what each benchmark measures and how.
//!
//! Network rule: every benchmark talks to 127.0.0.1 only, and every loop is bounded in count and time.

mod agent;
mod api;
mod enroll;
mod images;
mod p1_clone;
mod p1_complex;
mod p3_boot;
mod provision;
mod report;
mod server;
mod sim;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "Steward project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a benchmark (or `all`) against release builds of `steward` and `steward-agent`.
    Bench(BenchArgs),
    /// Build the starter guest images (x86_64, s390x) into `target/images/<arch>/` (see docs/images.md).
    Images(images::ImagesArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bench {
    All,
    #[value(name = "p4-agent-rss")]
    P4AgentRss,
    #[value(name = "p5-agent-wakeups")]
    P5AgentWakeups,
    #[value(name = "p11-enrollment")]
    P11Enrollment,
    #[value(name = "p12-api-latency")]
    P12ApiLatency,
    /// Not part of `all` (about 6 minutes): clone cost per guest, overlay vs full copy, and 100 creates+deploys.
    #[value(name = "p1-clone")]
    P1Clone,
    /// Not part of `all` (about 2 minutes): add 100 complex members on overlays, then 100 with full copies.
    #[value(name = "p1-complex")]
    P1Complex,
    /// Not part of `all` (about 3 minutes for 10 runs per architecture): API call to a booted, registered guest.
    #[value(name = "p3-boot")]
    P3Boot,
}

/// The guest architectures P3 boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum P3Arch {
    All,
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "s390x")]
    S390x,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Which benchmark to run.
    name: Bench,
    /// P4: how long the agent idles before its memory is sampled (BENCHMARKS.md: 600).
    #[arg(long, default_value_t = 60)]
    pub idle_seconds: u64,
    /// P5: the window over which context switches are counted (BENCHMARKS.md: 600).
    #[arg(long, default_value_t = 60)]
    pub window_seconds: u64,
    /// P11: how many simulated agents enroll and connect.
    #[arg(long, default_value_t = 500)]
    pub agents: usize,
    /// P11/P12: how many enrollments (and gateway handshakes) are in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// P12: how long the concurrent clients run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// P12: how many concurrent API clients.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// P12: how many systems to enroll (the inventory-page figure pages through all of them).
    #[arg(long, default_value_t = 200)]
    pub systems: usize,
    /// P5: skip the `perf stat` cross-check (perf attaching to the agent can itself cost a few switches).
    #[arg(long)]
    pub no_perf: bool,
    /// P1: virtual servers deployed per image and clone method (one at a time).
    #[arg(long, default_value_t = 30)]
    pub guests: usize,
    /// P1: virtual servers created and deployed at once for the control-plane figure; p1-complex: members added.
    #[arg(long, default_value_t = 100)]
    pub control_plane_guests: usize,
    /// P1: sizes in MiB of the random-data images imported next to the starter image (comma-separated).
    #[arg(long, default_value = "256,1024")]
    pub image_sizes_mib: String,
    /// P3: boots per architecture (BENCHMARKS.md: at least 30).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// P3: which architectures to boot.
    #[arg(long, value_enum, default_value_t = P3Arch::All)]
    pub arch: P3Arch,
    /// Skip building (use `target/release/steward` and `target/agent/steward-agent` as they are).
    #[arg(long)]
    pub no_build: bool,
}

/// Where things are: the workspace root, the release binaries and the output directory.
pub struct Paths {
    pub root: PathBuf,
    pub steward: PathBuf,
    pub agent: PathBuf,
    pub bench_dir: PathBuf,
}

impl Paths {
    fn discover() -> anyhow::Result<Self> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest.ancestors().nth(2).context("the xtask crate is not inside the workspace")?.to_path_buf();
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
        let target = if target.is_absolute() { target } else { root.join(target) };
        Ok(Self {
            steward: target.join("release").join("steward"),
            // The agent as shipped to managed systems: the size-optimized `agent` profile.
            agent: target.join("agent").join("steward-agent"),
            bench_dir: target.join("bench"),
            root,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Command::Bench(args) => bench(args),
        Command::Images(args) => images::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let paths = Paths::discover()?;
    if !args.no_build {
        build_release(&paths)?;
    }
    for binary in [&paths.steward, &paths.agent] {
        if !binary.is_file() {
            bail!(
                "{} is missing; build it with `cargo build --release -p steward && cargo build --profile agent -p steward-agent`",
                binary.display()
            );
        }
    }
    std::fs::create_dir_all(&paths.bench_dir)
        .with_context(|| format!("cannot create {}", paths.bench_dir.display()))?;
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        match args.name {
            Bench::All => {
                enroll::run(&paths, &args).await?;
                api::run(&paths, &args).await?;
                agent::run(&paths, &args, true, true).await
            }
            Bench::P4AgentRss => agent::run(&paths, &args, true, false).await,
            Bench::P5AgentWakeups => agent::run(&paths, &args, false, true).await,
            Bench::P11Enrollment => enroll::run(&paths, &args).await,
            Bench::P12ApiLatency => api::run(&paths, &args).await,
            Bench::P1Clone => p1_clone::run(&paths, &args).await,
            Bench::P1Complex => p1_complex::run(&paths, &args).await,
            Bench::P3Boot => p3_boot::run(&paths, &args).await,
        }
    })
}

/// Builds the server in the release profile and the agent in the `agent` profile (as shipped).
fn build_release(paths: &Paths) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let builds: [&[&str]; 2] =
        [&["build", "--release", "-p", "steward"], &["build", "--profile", "agent", "-p", "steward-agent"]];
    for args in builds {
        eprintln!("building: cargo {}", args.join(" "));
        let status = std::process::Command::new(&cargo)
            .args(args)
            .current_dir(&paths.root)
            .status()
            .context("cannot run cargo")?;
        if !status.success() {
            bail!("cargo {} failed ({status})", args.join(" "));
        }
    }
    Ok(())
}

/// Simulated agents need one descriptor each, and so does the server for each of them: raise the soft limit to
/// the hard limit (children, including the server, inherit it).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit; raising the soft limit up to the hard limit needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            eprintln!("warning: cannot raise the open-files limit to {}", limit.rlim_max);
        }
    }
}

/// The open-files soft limit now in force.
pub fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    limit.rlim_cur
}
