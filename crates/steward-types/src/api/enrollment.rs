//! Enrollment tokens and the agent's enrollment request.

use serde::{Deserialize, Serialize};

use super::Timestamp;
use crate::ids::{EnrollmentTokenId, SystemId};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnrollmentToken {
    pub id: EnrollmentTokenId,
    pub prefix: String,
    pub description: String,
    /// How many enrollments the token allows in all.
    pub uses: u32,
    pub used: u32,
    pub created_by: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentTokenCreate {
    /// How many agents may enroll with it (1 to 100000, default 1).
    #[serde(default)]
    pub uses: Option<u32>,
    /// Lifetime such as `24h` (the default) or `7d`.
    #[serde(default)]
    pub expires_in: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnrollmentTokenCreated {
    #[serde(flatten)]
    pub enrollment_token: EnrollmentToken,
    /// The secret the agent passes with `--enroll-token`; shown only now.
    pub token: String,
}

/// `POST /api/v1/enrollments`: sent by `steward-agent`, authenticated by the enrollment token it carries.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentRequest {
    pub token: String,
    /// PKCS#10 certificate signing request in PEM, for the key the agent generated and keeps.
    pub csr_pem: String,
    /// The agent's hostname, used as the system's name (made unique by the server).
    pub hostname: String,
    pub agent_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnrollmentResponse {
    pub system_id: SystemId,
    pub system_name: String,
    /// The agent's certificate, signed by the server's CA.
    pub certificate_pem: String,
    /// The server's CA certificate, which the agent trusts from now on.
    pub ca_certificate_pem: String,
    /// TCP port of the agent gateway on the same host as the API.
    pub gateway_port: u16,
}
