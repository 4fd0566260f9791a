//! `GET /api/openapi.json`: the parts of the API description no handler owns (title, security
//! schemes, the envelope and error types). The paths come from the same `routes!` calls that
//! build the router (`api::described`), so they cannot drift from the code.

use std::sync::OnceLock;

use axum::Json;
use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::error::{Error, Result};

/// The success envelope.
#[derive(Serialize, ToSchema)]
pub struct Envelope<T> {
    /// The HTTP status, repeated.
    pub status: u16,
    pub data: T,
}

/// Every error: `{"status": 404, "error": "NOT_FOUND", "message": "experiment not found"}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub status: u16,
    /// A stable code: BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, ...
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
}

/// The errors any endpoint may answer with.
#[derive(IntoResponses)]
#[allow(dead_code)] // only describes responses; never built
pub enum Errors {
    /// Malformed JSON, a wrong field, an invalid id
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No valid credentials
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A member whose role is too weak
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Unknown, or not visible to the caller
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Wrong method on a known path
    #[response(status = 405)]
    MethodNotAllowed(ErrorBody),
    /// Already exists
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// Removed on purpose: a run's raw points, compacted to aggregates by its workspace's
    /// retention policy (reading them, or logging to the run)
    #[response(status = 410)]
    Gone(ErrorBody),
    /// The body is over the limit
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// The body is not JSON
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// The Host header names a host this server does not answer for
    #[response(status = 421)]
    Misdirected(ErrorBody),
    /// Too many attempts; see Retry-After
    #[response(status = 429)]
    TooManyRequests(ErrorBody),
    /// The server's disk is full: nothing was stored; retry once space is freed
    #[response(status = 507)]
    StorageFull(ErrorBody),
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// "ok", or "degraded" while the database cannot be written (reads still work).
    pub status: &'static str,
    pub database: DatabaseHealth,
}

#[derive(Serialize, ToSchema)]
pub struct DatabaseHealth {
    pub writable: bool,
    /// Why not: "read-only filesystem" or "disk full".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Bytes free on the filesystem holding the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tora", description = "Self-hosted ML experiment tracking: the REST API under /api."),
    components(schemas(ErrorBody)),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Liveness, and whether the database can be written: answers without credentials and without
/// a database connection (always 200 while the process serves; `status` says "degraded" when
/// writes would be refused).
#[utoipa::path(get, path = "/health", tag = "server", responses((status = 200, body = Health)))]
pub async fn health(
    axum::extract::State(state): axum::extract::State<crate::server::AppState>,
) -> Json<Health> {
    let (writable, reason, free_bytes) = crate::telemetry::writable(&state.db);
    Json(Health {
        status: if writable { "ok" } else { "degraded" },
        database: DatabaseHealth {
            writable,
            reason,
            free_bytes,
        },
    })
}

/// `/api/openapi.json`'s body (or why it could not be made), set by `api::router()` from the same
/// construction as the routes.
pub static DESCRIPTION: OnceLock<std::result::Result<Bytes, String>> = OnceLock::new();

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "server", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> Result<Response> {
    match DESCRIPTION.get() {
        Some(Ok(json)) => {
            Ok(([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response())
        }
        Some(Err(e)) => Err(Error::Internal(format!(
            "serialize the API description: {e}"
        ))),
        None => Err(Error::Internal(
            "the API description was never built".into(),
        )),
    }
}
