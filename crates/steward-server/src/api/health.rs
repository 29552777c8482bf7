//! `GET /api/v1/health`: unauthenticated, so load balancers and service managers can probe it; says only
//! whether the store answers and which version runs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use steward_types::api::Health;

use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/health", tag = "health", security(()),
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let version = env!("CARGO_PKG_VERSION").to_string();
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(Health { status: "ok".into(), version })),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "store unavailable".into(), version })),
    }
}
