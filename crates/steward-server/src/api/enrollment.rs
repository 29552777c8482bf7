//! Enrollment tokens (`/api/v1/enrollment-tokens`) and agent enrollment (`POST /api/v1/enrollments`).
//!
//! An agent enrolls by sending a CSR with a valid enrollment token; it gets back a certificate signed by the
//! server's CA whose common name is its new system ID, the CA certificate, and the gateway port. From then on it
//! authenticates with that certificate only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use steward_types::api::enrollment::{
    EnrollmentRequest, EnrollmentResponse, EnrollmentToken, EnrollmentTokenCreate, EnrollmentTokenCreated,
};
use steward_types::api::{Page, PageQuery, Role, Timestamp};
use steward_types::{EnrollmentTokenId, ErrorResponse, SystemId, validate};

use crate::api::extract::{self, Path, Query};
use crate::api::{Created, created};
use crate::audit::{AuditEntry, finish};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::secrets;
use crate::state::AppState;

/// Enrollment tokens expire after a day unless asked otherwise.
const DEFAULT_ENROLLMENT_TOKEN_LIFETIME: &str = "24h";
const MAX_ENROLLMENT_TOKEN_USES: u32 = 100_000;

#[utoipa::path(get, path = "/api/v1/enrollment-tokens", tag = "enrollment", params(PageQuery),
    responses((status = 200, body = Page<EnrollmentToken>)))]
pub async fn enrollment_token_list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<EnrollmentToken>>> {
    let mut conn = state.store.conn().await?;
    let (items, next) =
        steward_store::enrollment::list(&mut conn, page.after.as_deref(), steward_store::page_limit(page.limit))
            .await?;
    Ok(Json(Page { items, next }))
}

#[utoipa::path(post, path = "/api/v1/enrollment-tokens", tag = "enrollment", request_body = EnrollmentTokenCreate,
    responses((status = 201, body = EnrollmentTokenCreated), (status = 403, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn enrollment_token_create(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<EnrollmentTokenCreate>,
) -> ApiResult<Created<EnrollmentTokenCreated>> {
    let entry = AuditEntry::new(&caller.user.name, "enrollment_token.create", "")
        .details(serde_json::json!({ "uses": body.uses, "expires_in": body.expires_in }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let mut target = String::new();
    let result = async {
        let uses = body.uses.unwrap_or(1);
        if !(1..=MAX_ENROLLMENT_TOKEN_USES).contains(&uses) {
            return Err(ApiError::validation("uses", format!("must be between 1 and {MAX_ENROLLMENT_TOKEN_USES}")));
        }
        let lifetime = validate::duration_seconds(
            "expires_in",
            body.expires_in.as_deref().unwrap_or(DEFAULT_ENROLLMENT_TOKEN_LIFETIME),
        )?;
        let description = body.description.clone().unwrap_or_default();
        validate::description("description", &description)?;
        let secret = secrets::generate(secrets::ENROLLMENT_TOKEN_PREFIX);
        let now = Timestamp::now();
        let token = EnrollmentToken {
            id: EnrollmentTokenId::new(),
            prefix: secrets::display_prefix(&secret),
            description,
            uses,
            used: 0,
            created_by: caller.user.name.clone(),
            created_at: now,
            expires_at: now.plus_seconds(lifetime),
        };
        target = token.id.to_string();
        steward_store::enrollment::insert(&mut tx, &token, &secrets::hash(&secret)).await?;
        Ok(EnrollmentTokenCreated { enrollment_token: token, token: secret })
    }
    .await;
    let entry = AuditEntry { target, ..entry };
    finish(&state, tx, entry, result).await.map(created)
}

#[utoipa::path(delete, path = "/api/v1/enrollment-tokens/{token}", tag = "enrollment",
    params(("token" = String, Path, description = "Enrollment token ID")),
    responses((status = 204), (status = 404, body = ErrorResponse)))]
pub async fn enrollment_token_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(token): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "enrollment_token.delete", &token);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let id = EnrollmentTokenId::parse(&token)
            .ok_or_else(|| ApiError::validation("token", "must be an enrollment token ID"))?;
        steward_store::enrollment::get(&mut tx, id)
            .await?
            .ok_or_else(|| ApiError::not_found("enrollment token", &token))?;
        steward_store::enrollment::delete(&mut tx, id).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    finish(&state, tx, entry, result).await
}

#[utoipa::path(post, path = "/api/v1/enrollments", tag = "enrollment", request_body = EnrollmentRequest, security(()),
    responses((status = 201, body = EnrollmentResponse), (status = 401, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn enrollment_create(
    State(state): State<AppState>,
    extract::Json(body): extract::Json<EnrollmentRequest>,
) -> ApiResult<Created<EnrollmentResponse>> {
    let actor = format!("enrollment-token:{}", secrets::display_prefix(&body.token));
    let entry = AuditEntry::new(&actor, "system.enroll", &body.hostname)
        .details(serde_json::json!({ "hostname": body.hostname, "agent_version": body.agent_version }));
    let mut tx = state.store.begin().await?;
    let mut target = body.hostname.clone();
    let result = async {
        if body.hostname.is_empty() || body.hostname.len() > 255 {
            return Err(ApiError::validation("hostname", "must be 1 to 255 characters long"));
        }
        if body.hostname.chars().any(char::is_control) || body.agent_version.chars().any(char::is_control) {
            return Err(ApiError::validation("hostname", "must not contain control characters"));
        }
        if body.agent_version.is_empty() || body.agent_version.len() > 64 {
            return Err(ApiError::validation("agent_version", "must be 1 to 64 characters long"));
        }
        let now = Timestamp::now();
        let token = steward_store::enrollment::get_by_hash(&mut tx, &secrets::hash(&body.token))
            .await?
            .ok_or_else(|| ApiError::unauthorized("the enrollment token is not known"))?;
        if !steward_store::enrollment::consume(&mut tx, token.id, now).await? {
            return Err(if token.expires_at <= now {
                ApiError::unauthorized(format!("the enrollment token expired at {}", token.expires_at))
            } else {
                ApiError::unauthorized(format!(
                    "the enrollment token has been used up ({} of {} uses)",
                    token.used, token.uses
                ))
            });
        }
        let name = unique_system_name(&mut tx, &system_name_from_hostname(&body.hostname)).await?;
        target = name.clone();
        let system_id = SystemId::new();
        let certificate = state
            .ca
            .sign_agent(&body.csr_pem, &system_id.to_string())
            .map_err(|error| ApiError::validation("csr_pem", crate::error_chain(&error)))?;
        let system = steward_store::systems::NewSystem {
            id: system_id,
            name: &name,
            hostname: &body.hostname,
            agent_version: &body.agent_version,
            enrolled_at: now,
        };
        steward_store::systems::insert(&mut tx, &system).await?;
        steward_store::systems::certificate_insert(&mut tx, &certificate.serial_hex, system_id, now).await?;
        tracing::info!(system = %name, id = %system_id, "agent enrolled");
        Ok(EnrollmentResponse {
            system_id,
            system_name: name,
            certificate_pem: certificate.pem,
            ca_certificate_pem: state.ca.ca_pem().to_string(),
            gateway_port: state.gateway_port,
        })
    }
    .await;
    let entry = AuditEntry { target, ..entry };
    finish(&state, tx, entry, result).await.map(created)
}

/// A valid system name derived from whatever hostname the agent reports.
fn system_name_from_hostname(hostname: &str) -> String {
    let mut name: String = hostname
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(56)
        .collect();
    if name.is_empty() || validate::name("name", &name).is_err() {
        name = "system".to_string();
    }
    name
}

/// `base`, or `base-2`, `base-3`, ... whichever is free first.
async fn unique_system_name(conn: &mut steward_store::Conn, base: &str) -> ApiResult<String> {
    if !steward_store::systems::name_taken(conn, base).await? {
        return Ok(base.to_string());
    }
    for suffix in 2..10_000 {
        let candidate = format!("{base}-{suffix}");
        if !steward_store::systems::name_taken(conn, &candidate).await? {
            return Ok(candidate);
        }
    }
    Err(ApiError::conflict(format!("too many systems are named after {base:?}")))
}

#[cfg(test)]
mod tests {
    use super::system_name_from_hostname;

    #[test]
    fn hostnames_become_valid_names() {
        assert_eq!(system_name_from_hostname("web01.example.com"), "web01.example.com");
        assert_eq!(system_name_from_hostname("-odd host!"), "odd-host-");
        assert_eq!(system_name_from_hostname(""), "system");
        assert_eq!(system_name_from_hostname("6f1c2b9e-8e1a-4d5e-9f3c-2a1b0c9d8e7f"), "system");
    }
}
