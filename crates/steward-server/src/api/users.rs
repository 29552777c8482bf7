//! Users and API tokens: `/api/v1/users`, `/api/v1/tokens`, `/api/v1/whoami`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use steward_types::api::users::{Token, TokenCreate, TokenCreated, User, UserCreate, UserUpdate, WhoAmI};
use steward_types::api::{Page, PageQuery, Role, Timestamp};
use steward_types::{ErrorResponse, TokenId, validate};

use crate::api::extract::{Path, Query};
use crate::api::{Created, created, extract};
use crate::audit::{AuditEntry, finish};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::secrets;
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/whoami", tag = "users", responses((status = 200, body = WhoAmI)))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI { user: caller.user.name, role: caller.user.role, token: caller.token_name })
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageQuery),
    responses((status = 200, body = Page<User>), (status = 401, body = ErrorResponse)))]
pub async fn user_list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<User>>> {
    let mut conn = state.store.conn().await?;
    let (items, next) =
        steward_store::users::user_list(&mut conn, page.after.as_deref(), steward_store::page_limit(page.limit))
            .await?;
    Ok(Json(Page { items, next }))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = UserCreate,
    responses((status = 201, body = User), (status = 403, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn user_create(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<UserCreate>,
) -> ApiResult<Created<User>> {
    let entry =
        AuditEntry::new(&caller.user.name, "user.create", &body.name).details(serde_json::json!({ "role": body.role }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Administrator, &entry).await?;
    let result = async {
        validate::name("name", &body.name)?;
        let user = User {
            id: steward_types::UserId::new(),
            name: body.name.clone(),
            role: body.role,
            created_at: Timestamp::now(),
        };
        steward_store::users::user_insert(&mut tx, &user).await?;
        Ok(user)
    }
    .await;
    finish(&state, tx, entry, result).await.map(created)
}

async fn find_user(state: &AppState, id_or_name: &str) -> ApiResult<User> {
    let mut conn = state.store.conn().await?;
    steward_store::users::user_get(&mut conn, id_or_name).await?.ok_or_else(|| ApiError::not_found("user", id_or_name))
}

#[utoipa::path(get, path = "/api/v1/users/{user}", tag = "users", params(("user" = String, Path, description = "Name or ID")),
    responses((status = 200, body = User), (status = 404, body = ErrorResponse)))]
pub async fn user_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(find_user(&state, &user).await?))
}

#[utoipa::path(patch, path = "/api/v1/users/{user}", tag = "users", request_body = UserUpdate,
    params(("user" = String, Path, description = "Name or ID")),
    responses((status = 200, body = User), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn user_update(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
    extract::Json(body): extract::Json<UserUpdate>,
) -> ApiResult<Json<User>> {
    let mut entry =
        AuditEntry::new(&caller.user.name, "user.update", &user).details(serde_json::json!({ "role": body.role }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Administrator, &entry).await?;
    let result = async {
        let mut found =
            steward_store::users::user_get(&mut tx, &user).await?.ok_or_else(|| ApiError::not_found("user", &user))?;
        entry.details = serde_json::json!({ "before": { "role": found.role }, "after": { "role": body.role } });
        if found.role == Role::Administrator && body.role != Role::Administrator {
            ensure_another_administrator(&mut tx).await?;
        }
        steward_store::users::user_set_role(&mut tx, found.id, body.role).await?;
        found.role = body.role;
        Ok(found)
    }
    .await;
    finish(&state, tx, entry, result).await.map(Json)
}

async fn ensure_another_administrator(conn: &mut steward_store::Conn) -> ApiResult<()> {
    if steward_store::users::administrator_count(conn).await? <= 1 {
        return Err(ApiError::conflict("this is the last administrator; make another user administrator first"));
    }
    Ok(())
}

#[utoipa::path(delete, path = "/api/v1/users/{user}", tag = "users", params(("user" = String, Path, description = "Name or ID")),
    responses((status = 204), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn user_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "user.delete", &user);
    let mut tx = crate::audit::begin(&state, &caller, Role::Administrator, &entry).await?;
    let result = async {
        let found =
            steward_store::users::user_get(&mut tx, &user).await?.ok_or_else(|| ApiError::not_found("user", &user))?;
        if found.role == Role::Administrator {
            ensure_another_administrator(&mut tx).await?;
        }
        // Deleting a user deletes its tokens (ON DELETE CASCADE).
        steward_store::users::user_delete(&mut tx, found.id).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    finish(&state, tx, entry, result).await
}

/// Filters of `GET /api/v1/tokens`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TokenListQuery {
    pub limit: Option<u32>,
    pub after: Option<String>,
    /// Only this user's tokens (administrators only; others always see just their own).
    pub user: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(TokenListQuery),
    responses((status = 200, body = Page<Token>), (status = 403, body = ErrorResponse)))]
pub async fn token_list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<TokenListQuery>,
) -> ApiResult<Json<Page<Token>>> {
    let user = match (&query.user, caller.user.role) {
        (Some(user), Role::Administrator) => Some(find_user(&state, user).await?.id),
        (None, Role::Administrator) => None,
        (Some(user), _) if *user != caller.user.name && *user != caller.user.id.to_string() => {
            return Err(ApiError::forbidden("only administrators can list other users' tokens"));
        }
        _ => Some(caller.user.id),
    };
    let mut conn = state.store.conn().await?;
    let (items, next) = steward_store::users::token_list(
        &mut conn,
        user,
        query.after.as_deref(),
        steward_store::page_limit(query.limit),
    )
    .await?;
    Ok(Json(Page { items, next }))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = TokenCreate,
    responses((status = 201, body = TokenCreated), (status = 403, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn token_create(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<TokenCreate>,
) -> ApiResult<Created<TokenCreated>> {
    let owner_name = body.user.clone().unwrap_or_else(|| caller.user.name.clone());
    let entry = AuditEntry::new(&caller.user.name, "token.create", format!("{owner_name}/{}", body.name))
        .details(serde_json::json!({ "expires_in": body.expires_in }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        validate::name("name", &body.name)?;
        let owner = steward_store::users::user_get(&mut tx, &owner_name)
            .await?
            .ok_or_else(|| ApiError::not_found("user", &owner_name))?;
        if owner.id != caller.user.id {
            caller.require(Role::Administrator)?;
        }
        let now = Timestamp::now();
        let expires_at = body
            .expires_in
            .as_deref()
            .map(|text| validate::duration_seconds("expires_in", text).map(|seconds| now.plus_seconds(seconds)))
            .transpose()?;
        let secret = secrets::generate(secrets::API_TOKEN_PREFIX);
        let token = Token {
            id: TokenId::new(),
            name: body.name.clone(),
            user: owner.name.clone(),
            prefix: secrets::display_prefix(&secret),
            created_at: now,
            expires_at,
            last_used_at: None,
        };
        steward_store::users::token_insert(&mut tx, &token, owner.id, &secrets::hash(&secret)).await?;
        Ok(TokenCreated { token, secret })
    }
    .await;
    finish(&state, tx, entry, result).await.map(created)
}

#[utoipa::path(delete, path = "/api/v1/tokens/{token}", tag = "tokens", params(("token" = String, Path, description = "Token ID")),
    responses((status = 204), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn token_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(token): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "token.delete", &token);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let id = TokenId::parse(&token).ok_or_else(|| ApiError::validation("token", "must be a token ID"))?;
        let (_, owner) =
            steward_store::users::token_get(&mut tx, id).await?.ok_or_else(|| ApiError::not_found("token", &token))?;
        if owner != caller.user.id {
            caller.require(Role::Administrator)?;
        }
        steward_store::users::token_delete(&mut tx, id).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    finish(&state, tx, entry, result).await
}
