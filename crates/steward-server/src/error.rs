//! `ApiError`: what every handler returns on failure, rendered as the JSON error shape of PRODUCT.md.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use steward_store::StoreError;
use steward_types::validate::ValidationError;
use steward_types::{ErrorBody, ErrorCode, ErrorResponse};

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: serde_json::Value,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: serde_json::json!({}) }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn not_found(kind: &str, id_or_name: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("no {kind} named or with ID {id_or_name:?}"))
            .with_details(serde_json::json!({ "kind": kind, "id": id_or_name }))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn validation(field: &str, reason: impl Into<String>) -> Self {
        ValidationError::new(field, reason).into()
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        ApiError::new(ErrorCode::ValidationFailed, error.to_string())
            .with_details(serde_json::json!({ "field": error.field }))
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { what } => ApiError::conflict(format!("{what} already exists")),
            other => {
                tracing::error!(error = %crate::error_chain(&other), "store failure");
                ApiError::internal("the store failed to carry out the request; the server log has the cause")
            }
        }
    }
}

/// What the hypervisor could not do, for a request that asked it something directly (sagas report their own).
/// A host's refusal is the caller's to fix (a name the host does not accept, a full disk pool, something the
/// host cannot do) or the host's state (its directory manager down, the server not authorized there); only the
/// rest is an internal failure.
impl From<steward_hypervisor::HypervisorError> for ApiError {
    fn from(error: steward_hypervisor::HypervisorError) -> Self {
        use steward_hypervisor::HypervisorError;
        let message = crate::error_chain(&error);
        match &error {
            HypervisorError::InvalidInput { what, .. } => ApiError::validation(what, message),
            HypervisorError::Unsupported { .. } => ApiError::validation("host", message),
            HypervisorError::PoolFull { .. } | HypervisorError::DiskConflict { .. } => ApiError::conflict(message),
            HypervisorError::NotFound { .. } | HypervisorError::NetworkNotFound { .. } => {
                ApiError::new(ErrorCode::NotFound, message)
            }
            HypervisorError::DirectoryManagerUnavailable { .. } | HypervisorError::NotAuthorized { .. } => {
                ApiError::new(ErrorCode::Unavailable, format!("the host refused: {message}"))
            }
            _ => ApiError::internal(format!("the hypervisor failed: {message}")),
        }
    }
}

/// What became of a request to an agent, for an API caller: an agent that is not connected is a conflict with the
/// system's state (409, like any request to an offline system), one that cannot take the request now or went away
/// meanwhile is unavailable (503: try again), one that does not answer in time is a timeout (504), and the agent's
/// own refusal (no such program, busy) is a conflict with what is on that system (409). `details.reason` tells
/// them apart for programs.
impl From<crate::gateway::AgentRequestError> for ApiError {
    fn from(error: crate::gateway::AgentRequestError) -> Self {
        use crate::gateway::AgentRequestError;
        let message = error.to_string();
        let (code, details) = match error {
            AgentRequestError::Offline => (ErrorCode::Conflict, serde_json::json!({ "reason": "system_offline" })),
            AgentRequestError::QueueFull => (ErrorCode::Unavailable, serde_json::json!({ "reason": "queue_full" })),
            AgentRequestError::Disconnected => {
                (ErrorCode::Unavailable, serde_json::json!({ "reason": "agent_disconnected" }))
            }
            AgentRequestError::TimedOut { seconds } => {
                (ErrorCode::Timeout, serde_json::json!({ "reason": "agent_timeout", "seconds": seconds }))
            }
            AgentRequestError::Agent(_) => (ErrorCode::Conflict, serde_json::json!({ "reason": "agent_error" })),
        };
        ApiError::new(code, message).with_details(details)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorResponse { error: ErrorBody { code: self.code, message: self.message, details: self.details } };
        (status, axum::Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
