//! The state every handler and the gateway share.

use std::sync::Arc;

use steward_store::Store;

use crate::app::hosts::Hosts;
use crate::app::sagas::faults::FaultPlan;
use crate::gateway::Registry;
use crate::pki::CertificateAuthority;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub ca: Arc<CertificateAuthority>,
    /// The agents connected right now.
    pub agents: Arc<Registry>,
    /// Port of the agent gateway, told to agents at enrollment.
    pub gateway_port: u16,
    /// The hypervisor driver of every host this server provisions on.
    pub hosts: Arc<Hosts>,
    /// Monitors: sample ingest, plans, alert states.
    pub monitors: Arc<crate::app::monitors::Monitors>,
    /// The server's data directory.
    pub data_dir: Arc<std::path::PathBuf>,
    /// Faults tests inject into sagas (empty in production).
    pub faults: Arc<FaultPlan>,
}
