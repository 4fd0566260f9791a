//! MLflow's tracking REST API under `/api/2.0/mlflow`, so the official `mlflow` client works
//! with `MLFLOW_TRACKING_URI` pointed at Tora. An MLflow experiment is a Tora workspace, an
//! MLflow run a Tora experiment (the mapping is in README's "Coming from MLflow"). Requests and
//! answers have MLflow's JSON shapes and errors MLflow's `{"error_code", "message"}`.
//!
//! These routes are not in `/api/openapi.json`: they are MLflow's protocol, described by
//! MLflow's own protos, and answer in MLflow's shapes rather than Tora's envelope.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::error::{Error, MlflowError};
use crate::server::AppState;
use crate::store::experiments::Experiment;
use crate::store::workspaces::{self, Role, require_role};

mod experiments;
pub mod logins;
mod models;
mod runs;

/// Where `server::router` nests these routes.
pub const ROOT: &str = "/api/2.0/mlflow";

pub type Result<T> = std::result::Result<T, MlflowError>;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/experiments/create", post(experiments::create))
        .route("/experiments/get", get(experiments::get_one))
        .route("/experiments/get-by-name", get(experiments::get_by_name))
        .route(
            "/experiments/search",
            post(experiments::search).get(experiments::search_get),
        )
        .route("/experiments/update", post(experiments::update))
        .route("/experiments/delete", post(experiments::delete))
        .route("/experiments/restore", post(experiments::restore))
        .route(
            "/experiments/set-experiment-tag",
            post(experiments::set_tag),
        )
        .route("/runs/create", post(runs::create))
        .route("/runs/get", get(runs::get_one))
        .route("/runs/update", post(runs::update))
        .route("/runs/delete", post(runs::delete))
        .route("/runs/restore", post(runs::restore))
        .route("/runs/log-metric", post(runs::log_metric))
        .route("/runs/log-batch", post(runs::log_batch))
        .route("/runs/log-parameter", post(runs::log_param))
        .route("/runs/set-tag", post(runs::set_tag))
        .route("/runs/delete-tag", post(runs::delete_tag))
        .route("/runs/log-inputs", post(runs::log_inputs))
        .route("/runs/search", post(runs::search))
        .route("/metrics/get-history", get(runs::metric_history))
        .route("/runs/outputs", post(models::log_outputs))
        .route("/logged-models", post(models::create))
        .route("/logged-models/search", post(models::search))
        .route(
            "/logged-models/{model_id}",
            get(models::get_one).patch(models::finalize),
        )
        .route("/logged-models/{model_id}/params", post(models::log_params))
        .route(
            "/logged-models/{model_id}/tags",
            axum::routing::patch(models::set_tags),
        )
        .fallback(not_served)
        .method_not_allowed_fallback(not_served)
}

/// Everything under MLflow's prefixes that Tora does not serve: the model registry, traces,
/// prompts, webhooks and the rest.
pub async fn not_served(req: Request) -> MlflowError {
    MlflowError::EndpointNotFound(format!(
        "Tora does not serve {} {} (it speaks MLflow's tracking API: experiments, runs, metrics; see README \"Coming from MLflow\")",
        req.method(),
        req.uri().path()
    ))
}

/// A JSON body, with rejections in MLflow's error shape; bounded as Tora's own bodies are.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = MlflowError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self> {
        crate::api::Json::<T>::from_request(req, state)
            .await
            .map(|j| Body(j.0))
            .map_err(MlflowError::from)
    }
}

/// Query parameters (MLflow's GET requests), with rejections in MLflow's error shape.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Params<T> {
    type Rejection = MlflowError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        crate::api::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(MlflowError::from)
    }
}

/// Path parameters, with rejections in MLflow's error shape.
pub struct Segment<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Segment<T> {
    type Rejection = MlflowError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        crate::api::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Segment(p.0))
            .map_err(MlflowError::from)
    }
}

/// The caller, as MLflow's client presents itself: `Authorization: Bearer <Tora API key>`
/// (`MLFLOW_TRACKING_TOKEN`), `Authorization: Basic` e-mail and password
/// (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`), or Tora's own `x-api-key` and
/// access tokens.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = MlflowError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let (scheme, credentials) = header
            .and_then(|h| h.split_once(' '))
            .map(|(s, c)| (s.to_ascii_lowercase(), c.trim()))
            .unwrap_or_default();
        if scheme == "basic" {
            let ip = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
            let id = logins::check(state, credentials, ip).await?;
            return Ok(Caller { id });
        }
        let mut headers = parts.headers.clone();
        if scheme == "bearer" && credentials.starts_with(crate::auth::API_KEY_PREFIX) {
            let key = axum::http::HeaderValue::from_str(credentials)
                .map_err(|_| Error::Unauthorized("invalid API key".into()))?;
            headers.remove(axum::http::header::AUTHORIZATION);
            headers.insert("x-api-key", key);
        }
        let user = crate::auth::authenticate(state, &headers)
            .await
            .map_err(|e| match e {
                Error::Unauthorized(_) if header.is_none() => Error::Unauthorized(
                    "sign in: set MLFLOW_TRACKING_TOKEN to a Tora API key, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD".into(),
                ),
                other => other,
            })?;
        Ok(Caller { id: user.id })
    }
}

impl From<Caller> for crate::auth::AuthUser {
    fn from(c: Caller) -> Self {
        crate::auth::AuthUser { id: c.id }
    }
}

/// The workspace an MLflow experiment id names, if the caller has `needed` in it: "0"
/// (MLflow's Default experiment) is the caller's Personal workspace. Unknown and hidden
/// workspaces are the same 404. `create`: the time to create a missing Personal workspace at
/// (in a write); None on a read, where a missing one is a 404.
fn workspace_of(
    conn: &crate::sql::Connection,
    raw: &str,
    user_id: &str,
    needed: Role,
    create: Option<i64>,
) -> crate::error::Result<String> {
    let id = if raw.trim() == "0" {
        match create {
            Some(now) => workspaces::personal(conn, user_id, now)?,
            None => workspaces::personal_of(conn, user_id)?.ok_or_else(|| no_experiment(raw))?,
        }
    } else {
        uuid::Uuid::try_parse(raw.trim())
            .map(|u| u.to_string())
            .map_err(|_| no_experiment(raw))?
    };
    require_role(conn, &id, user_id, needed).map_err(|e| match e {
        Error::NotFound(_) => no_experiment(raw),
        other => other,
    })?;
    Ok(id)
}

fn no_experiment(raw: &str) -> Error {
    Error::NotFound(format!(
        "No Experiment with id={} exists",
        raw.chars().take(64).collect::<String>()
    ))
}

/// The run an MLflow run id names, if the caller has `needed` in its workspace.
fn run_of(
    conn: &crate::sql::Connection,
    raw: &str,
    user_id: &str,
    needed: Role,
) -> crate::error::Result<Experiment> {
    let missing = || {
        Error::NotFound(format!(
            "Run with id={} not found",
            raw.chars().take(64).collect::<String>()
        ))
    };
    let id = uuid::Uuid::try_parse(raw.trim())
        .map(|u| u.to_string())
        .map_err(|_| missing())?;
    let exp = crate::store::experiments::get(conn, &id)?.ok_or_else(missing)?;
    require_role(conn, &exp.workspace_id, user_id, needed).map_err(|e| match e {
        Error::NotFound(_) => missing(),
        other => other,
    })?;
    Ok(exp)
}

/// Checks a key (metric, param or tag) as MLflow does: 1 to 250 characters, no control
/// characters.
fn clean_key(raw: &str, what: &str) -> crate::error::Result<String> {
    if raw.is_empty() || raw.chars().count() > MAX_KEY || raw.chars().any(char::is_control) {
        return Err(Error::bad_request(format!(
            "the {what} key must be 1 to {MAX_KEY} characters without control characters"
        )));
    }
    Ok(raw.to_string())
}

/// MLflow's own limit on metric, param and tag keys.
const MAX_KEY: usize = 250;
