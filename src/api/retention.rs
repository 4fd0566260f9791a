//! A workspace's retention policy: read by any member, set or removed by an OWNER, with a dry
//! run of what it deletes. Setting one applies it at once (the server then applies every policy
//! hourly: `crate::retention`).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[allow(unused_imports)]
use super::openapi::{Envelope, Errors};
use super::{Json, Path, Query, Reply, ok, parse_id};
use crate::auth::AuthUser;
use crate::error::{Error, Result};
use crate::server::AppState;
use crate::store::retention::{self, MAX_DAYS, MIN_DAYS, Policy, Preview};
use crate::store::workspaces::{Role, require_role};
use crate::time::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_retention, set_retention, clear_retention))
        .routes(routes!(preview_retention))
}

/// The longest keep tag.
const MAX_TAG: usize = 64;

#[derive(Deserialize, Serialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PolicyIo {
    /// Runs whose last activity (creation, last point, heartbeat, end) is older than this many
    /// days are deleted; 1 to 36500.
    delete_after_days: i64,
    /// Runs with this tag (any case) are kept whatever their age; default "keep".
    #[serde(default)]
    keep_tag: Option<String>,
}

impl PolicyIo {
    fn policy(&self) -> Result<Policy> {
        if !(MIN_DAYS..=MAX_DAYS).contains(&self.delete_after_days) {
            return Err(Error::bad_request(format!(
                "delete_after_days must be from {MIN_DAYS} to {MAX_DAYS}"
            )));
        }
        let tag = self.keep_tag.as_deref().unwrap_or("keep").trim();
        if tag.is_empty() || tag.chars().count() > MAX_TAG || tag.chars().any(char::is_control) {
            return Err(Error::bad_request(format!(
                "keep_tag must be 1 to {MAX_TAG} characters, no control characters"
            )));
        }
        Ok(Policy {
            delete_after_days: self.delete_after_days,
            keep_tag: tag.to_string(),
        })
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PreviewOut {
    /// Runs it deletes now.
    runs: i64,
    /// Their points.
    points: i64,
    /// About the bytes deleting them frees (packed points and artifacts).
    bytes: i64,
}

impl From<Preview> for PreviewOut {
    fn from(p: Preview) -> Self {
        PreviewOut {
            runs: p.runs,
            points: p.points,
            bytes: p.bytes,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RetentionOut {
    /// The policy in force, if any.
    policy: Option<PolicyIo>,
    /// What it deletes if applied now (null without a policy).
    due: Option<PreviewOut>,
}

fn answer(c: &crate::sql::Connection, workspace: &str) -> Result<RetentionOut> {
    let policy = retention::get(c, workspace)?;
    let due = match &policy {
        Some(p) => Some(retention::preview(c, workspace, p, now_ms())?.into()),
        None => None,
    };
    Ok(RetentionOut {
        policy: policy.map(|p| PolicyIo {
            delete_after_days: p.delete_after_days,
            keep_tag: Some(p.keep_tag),
        }),
        due,
    })
}

/// The workspace's retention policy and what it deletes if applied now.
#[utoipa::path(get, path = "/workspaces/{id}/retention", tag = "workspaces", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<RetentionOut>), Errors))]
async fn get_retention(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<RetentionOut>> {
    let id = parse_id(&id, "workspace")?;
    let out = state
        .db
        .read(move |c| {
            require_role(c, &id, &user.id, Role::Viewer)?;
            answer(c, &id)
        })
        .await?;
    Ok(ok(out))
}

/// A dry run: what a policy would delete from the workspace now (nothing is changed).
#[utoipa::path(get, path = "/workspaces/{id}/retention/preview", tag = "workspaces", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path), PolicyIo), responses((status = 200, body = Envelope<PreviewOut>), Errors))]
async fn preview_retention(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Query(q): Query<PolicyIo>,
) -> Result<Reply<PreviewOut>> {
    let id = parse_id(&id, "workspace")?;
    let policy = q.policy()?;
    let out = state
        .db
        .read(move |c| {
            require_role(c, &id, &user.id, Role::Viewer)?;
            retention::preview(c, &id, &policy, now_ms())
        })
        .await?;
    Ok(ok(out.into()))
}

/// Sets the policy (OWNER) and applies it at once: the runs it names are deleted within
/// seconds, then every hour those that come of age.
#[utoipa::path(put, path = "/workspaces/{id}/retention", tag = "workspaces", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = PolicyIo, responses((status = 200, body = Envelope<RetentionOut>), Errors))]
async fn set_retention(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<PolicyIo>,
) -> Result<Reply<RetentionOut>> {
    let id = parse_id(&id, "workspace")?;
    let policy = body.policy()?;
    let out = state
        .db
        .write(move |tx| {
            require_role(tx, &id, &user.id, Role::Owner)?;
            retention::set(tx, &id, &policy, &user.id, now_ms())?;
            answer(tx, &id)
        })
        .await?;
    state.retention.notify_one();
    Ok(ok(out))
}

/// Removes the policy (OWNER): nothing is deleted by age any more.
#[utoipa::path(delete, path = "/workspaces/{id}/retention", tag = "workspaces", security(("api_key" = []), ("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Envelope<RetentionOut>), Errors))]
async fn clear_retention(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Reply<RetentionOut>> {
    let id = parse_id(&id, "workspace")?;
    let out = state
        .db
        .write(move |tx| {
            require_role(tx, &id, &user.id, Role::Owner)?;
            retention::clear(tx, &id)?;
            answer(tx, &id)
        })
        .await?;
    Ok(ok(out))
}
