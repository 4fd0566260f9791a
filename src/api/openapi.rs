//! `GET /api/openapi.json`: the API description, generated from the handlers' `#[utoipa::path]`
//! attributes and the request/response types, so it cannot drift from the code.

use axum::Json;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use super::{accounts, api_keys, experiments, invitations, logs, series, stream, workspaces};

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
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always "ok".
    pub status: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tora", description = "Self-hosted ML experiment tracking: the REST API under /api."),
    paths(
        health,
        openapi_json,
        accounts::signup,
        accounts::confirm,
        accounts::login,
        accounts::refresh,
        accounts::logout,
        accounts::end_sessions,
        accounts::setup,
        accounts::me,
        accounts::change_password,
        accounts::resend_confirmation,
        api_keys::list_api_keys,
        api_keys::create_api_key,
        api_keys::revoke_api_key,
        workspaces::list_workspaces,
        workspaces::create_workspace,
        workspaces::get_workspace,
        workspaces::delete_workspace,
        workspaces::leave_workspace,
        workspaces::list_members,
        workspaces::change_member_role,
        workspaces::remove_member,
        workspaces::list_workspace_experiments,
        workspaces::list_roles,
        invitations::invite,
        invitations::list_my_invitations,
        invitations::list_workspace_invitations,
        invitations::answer_invitation,
        invitations::cancel_invitation,
        invitations::preview_link,
        invitations::accept_link,
        invitations::decline_link,
        experiments::list_experiments,
        experiments::create_experiment,
        experiments::batch_experiments,
        experiments::get_experiment,
        experiments::update_experiment,
        experiments::delete_experiment,
        logs::create_log,
        logs::create_logs,
        logs::list_logs,
        logs::list_metrics,
        logs::list_results,
        logs::export_csv,
        series::get_series,
        series::compare_series,
        series::get_summary,
        stream::create_stream_token,
        stream::stream,
    ),
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

/// Liveness: answers without credentials.
#[utoipa::path(get, path = "/api/health", tag = "server", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "server", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
