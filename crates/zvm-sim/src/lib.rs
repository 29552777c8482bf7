//! `zvm-sim`: a **simulator** of a z/VM host as seen through SMAPI, for development and tests. It is not
//! z/VM and does not run guests; it keeps a model of what z/VM and DirMaint keep (the user directory, disk
//! pools, logged-on guests, virtual switches, DirMaint operations) and answers SMAPI requests over TCP with the
//! return and reason codes and output layouts z/VM 7.1 was recorded answering
//! (`../shared/reference/smapi-vectors/`).
//!
//! Areas, one module each: [`auth`] (users, AUTHLIST), [`directory`] (entries, statements, the keyword view),
//! [`pools`] (groups, volumes, extents), [`operations`] (DirMaint asynchronous operations) and [`disks`] (the
//! minidisk functions that start them), [`guests`] (logon, logoff, status), [`networks`] (virtual switches,
//! grants, NICs), [`faults`] (injected failures), [`state`] (the model and its JSON file); `dispatch` routes a
//! request through authentication, authorization and faults to its function, `server` is the TCP side.
//!
//! ```no_run
//! # async fn example() -> Result<(), zvm_sim::SimulatorError> {
//! use zvm_sim::{Simulator, SimulatorConfig};
//! let mut config = SimulatorConfig::new("127.0.0.1:0".parse().expect("an address"));
//! config.users.push("ADMIN:secret".parse().expect("a user"));
//! let simulator = Simulator::start(config).await?;
//! println!("SMAPI simulator on {}", simulator.address());
//! simulator.add_fault("dirmaint-down".parse().expect("a fault"));
//! simulator.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod answer;
pub mod auth;
pub mod config;
pub mod directory;
pub mod disks;
mod dispatch;
pub mod faults;
pub mod guests;
pub mod networks;
pub mod operations;
pub mod pools;
mod server;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use auth::AuthEntry;
pub use config::{PoolVolumeSpec, SimulatorConfig, Timing, UserSpec};
pub use dispatch::modelled_functions;
pub use faults::{FailOnce, Fault, Faults};
pub use server::MAX_REQUEST_BYTES;
pub use state::{State, StateError};

use dispatch::Shared;

/// Why a simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running simulator. Dropping it without [`Simulator::shutdown`] leaves its tasks to end with the runtime.
pub struct Simulator {
    address: SocketAddr,
    shared: Arc<Shared>,
    created: Vec<String>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Simulator {
    /// Loads the state file (or creates the default system), applies the configured users, authorizations
    /// and pool volumes, saves, and starts listening.
    pub async fn start(config: SimulatorConfig) -> Result<Simulator, SimulatorError> {
        let loaded = match &config.state_file {
            Some(path) => State::load(path)?,
            None => None,
        };
        let (mut state, created) = match loaded {
            Some(state) => (state, Vec::new()),
            None => State::initial(&config, SystemTime::now())?,
        };
        state.apply_config(&config);
        if let Some(path) = &config.state_file {
            state.save(path)?;
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| SimulatorError::Listen { address: config.listen, source })?;
        let address =
            listener.local_addr().map_err(|source| SimulatorError::Listen { address: config.listen, source })?;
        let shared =
            Arc::new(Shared::new(state, config.faults.clone(), config.state_file.clone(), config.timing.clone()));
        let (shutdown, receiver) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(server::accept_loop(
                listener,
                Arc::clone(&shared),
                config.read_timeout,
                config.max_connections,
                receiver.clone(),
            )),
            tokio::spawn(server::operations_loop(Arc::clone(&shared), receiver)),
        ];
        tracing::info!(%address, "z/VM SMAPI simulator listening");
        Ok(Simulator { address, shared, created, shutdown, tasks })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What the first start created, in words; empty when the state came from the state file.
    pub fn created(&self) -> &[String] {
        &self.created
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults().clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults() = faults;
    }

    pub fn add_fault(&self, fault: Fault) {
        self.shared.faults().add(fault);
    }

    pub fn clear_faults(&self) {
        *self.shared.faults() = Faults::default();
    }

    /// A copy of the whole state.
    pub fn state(&self) -> State {
        self.shared.snapshot()
    }

    /// Changes the state directly (for tests and the admin interface); the change is saved.
    pub fn with_state<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        self.shared.with_state(change)
    }

    /// Stops listening and waits for the simulator's tasks; connections in progress finish on their own.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// An error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
