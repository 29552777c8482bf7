//! The server's requests for the administration of the running system (`steward_protocol::system_admin`):
//! processes (`processes.rs`, reading `/proc` through `procfs.rs`), services (`services.rs`) and the network
//! configuration (`network.rs`). [`carry_out`] answers one of them; `requests.rs` runs it in a task of its own,
//! like every request.

pub mod network;
pub mod processes;
pub mod procfs;
pub mod services;

use std::path::Path;

use steward_protocol::{AgentRequest, AgentResponse};

/// Carries out one of the administration requests; any other request is answered with an error.
pub async fn carry_out(id: u64, request: AgentRequest) -> AgentResponse {
    let proc_root = Path::new("/proc");
    let result = match request {
        AgentRequest::ListProcesses => {
            tracing::info!(id, "listing the processes for the server");
            processes::list(processes::ProcessSource::live(), processes::SAMPLE).await.map(AgentResponse::Processes)
        }
        AgentRequest::SignalProcess(signal) => {
            tracing::info!(id, pid = signal.pid, signal = %signal.signal, "signalling a process for the server");
            blocking(move || processes::signal_one(proc_root, signal.pid, signal.start_time, &signal.signal))
                .await
                .map(AgentResponse::Signalled)
        }
        AgentRequest::SignalProcessesByName(signal) => {
            tracing::info!(id, name = %signal.name, signal = %signal.signal, "signalling processes by name");
            blocking(move || processes::signal_by_name(proc_root, &signal.name, &signal.signal))
                .await
                .map(AgentResponse::Signalled)
        }
        AgentRequest::ListServices => {
            tracing::info!(id, "listing the services for the server");
            services::list(&services::Manager::detect()).await.map(AgentResponse::Services)
        }
        AgentRequest::ServiceAction(action) => {
            tracing::info!(id, service = %action.name, action = action.action.as_str(), "acting on a service");
            services::act(&services::Manager::detect(), &action.name, action.action)
                .await
                .map(AgentResponse::ServiceAction)
        }
        AgentRequest::NetworkConfiguration => {
            tracing::info!(id, "reading the network configuration for the server");
            blocking(|| Ok(network::collect(Path::new("/")))).await.map(AgentResponse::Network)
        }
        other => Err(format!("not an administration request: {other:?}")),
    };
    result.unwrap_or_else(|message| {
        tracing::info!(id, %message, "the request was refused or failed");
        AgentResponse::Error { message }
    })
}

/// Runs `work` off the runtime's only thread: it reads many files.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|error| Err(format!("the request failed: {error}")))
}
