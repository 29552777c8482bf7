//! The state every handler and the gateway share.

use std::sync::Arc;

use steward_store::Store;

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
}
