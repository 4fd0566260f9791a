//! API keys: what scripts and the SDK authenticate with (`x-api-key`).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[allow(unused_imports)]
use super::openapi::{Envelope, Errors};
use super::{Json, Path, Reply, clean_name, created, ok, parse_id};
use crate::auth::{self, AuthUser};
use crate::error::{Error, Result};
use crate::server::AppState;
use crate::store::api_keys::{self, ApiKey};
use crate::time::{now_ms, rfc3339};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(revoke_api_key))
}

#[derive(Serialize, utoipa::ToSchema)]
struct ApiKeyOut {
    id: String,
    name: String,
    created_at: String,
    last_used: Option<String>,
    revoked: bool,
    /// Only in the reply to creation: the key itself is never stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

fn to_out(k: ApiKey, pending_use: Option<i64>, key: Option<String>) -> ApiKeyOut {
    let last_used = pending_use.max(k.last_used);
    ApiKeyOut {
        id: k.id,
        name: k.name,
        created_at: rfc3339(k.created_at),
        last_used: last_used.map(rfc3339),
        revoked: k.revoked,
        key,
    }
}

#[utoipa::path(get, path = "/api-keys", tag = "api keys", security(("api_key" = []), ("bearer" = [])), responses((status = 200, body = Envelope<Vec<ApiKeyOut>>), Errors))]
async fn list_api_keys(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Reply<Vec<ApiKeyOut>>> {
    let keys = state.db.read(move |c| api_keys::list(c, &user.id)).await?;
    let out = keys
        .into_iter()
        .map(|k| {
            let pending = state.auth.pending_key_use(&k.id);
            to_out(k, pending, None)
        })
        .collect();
    Ok(ok(out))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NewApiKey {
    name: String,
}

#[utoipa::path(post, path = "/api-keys", tag = "api keys", security(("api_key" = []), ("bearer" = [])), request_body = NewApiKey, responses((status = 201, body = Envelope<ApiKeyOut>), Errors))]
async fn create_api_key(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewApiKey>,
) -> Result<Reply<ApiKeyOut>> {
    let name = clean_name(&body.name, "the key name", 255)?;
    let key = auth::new_api_key();
    let hash = auth::sha256(&key);
    let stored = state
        .db
        .write(move |tx| api_keys::create(tx, &user.id, &name, &hash, now_ms()))
        .await?;
    Ok(created(to_out(stored, None, Some(key))))
}

#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api keys", security(("api_key" = []), ("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "API key id")), responses((status = 200, body = Envelope<Revoked>), Errors))]
async fn revoke_api_key(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<Revoked>> {
    let id = parse_id(&id, "API key")?;
    let key_id = id.clone();
    let found = state
        .db
        .write(move |tx| api_keys::revoke(tx, &user.id, &key_id))
        .await?;
    if !found {
        return Err(Error::not_found("API key"));
    }
    Ok(ok(Revoked { id, revoked: true }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Revoked {
    id: String,
    revoked: bool,
}
